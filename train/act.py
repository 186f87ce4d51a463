"""The training ACT step, including TRM's ``no_act_continue`` halting rule.

``HookedAIR.act_step`` implements the paper's rule (SPEC 1.3): halt when q_halt > q_continue,
with a Q-continue target from one extra no-grad segment. TRM drops that extra segment and halts
when q_halt > 0. The model has no switch for it, so here the model's step runs in eval mode
(halting only at halt_max_steps, no extra segment) and the TRM rule is applied to its carry.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import torch

from air_interp.model import ACTCarry, HookedAIR

ActStep = Callable[[ACTCarry, Mapping[str, torch.Tensor]], tuple[ACTCarry, dict[str, torch.Tensor]]]


def train_act_step(model: HookedAIR, carry: ACTCarry, batch: Mapping[str, torch.Tensor],
                   no_act_continue: bool = False, act_step: ActStep | None = None
                   ) -> tuple[ACTCarry, dict[str, torch.Tensor]]:
    """One training ACT step; ``act_step`` is ``model.act_step`` or a compiled version of it."""
    act_step = act_step or model.act_step
    if not no_act_continue:
        return act_step(carry, batch)
    model.eval()
    try:
        carry, outputs = act_step(carry, batch)
    finally:
        model.train()
    return dataclasses.replace(carry, halted=_q_halt_rule(model, carry, outputs)), outputs


@torch.no_grad()
def _q_halt_rule(model: HookedAIR, carry: ACTCarry, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """TRM: halt at the step limit or when q_halt > 0, after an exploration minimum of steps."""
    cfg = model.cfg
    if cfg.halt_max_steps == 1:
        return carry.halted
    q_halt = outputs["q_halt_logits"]
    halted = carry.halted | (q_halt > 0)
    explore = torch.rand_like(q_halt) < cfg.halt_exploration_prob
    min_steps = explore * torch.randint_like(carry.steps, low=2, high=cfg.halt_max_steps + 1)
    return halted & (carry.steps >= min_steps)
