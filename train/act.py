"""The training ACT step: the model's own ``act_step``, with TRM's ``no_act_continue`` rule.

``HookedAIR.act_step`` implements the paper's rule (SPEC 1.3): halt when q_halt > q_continue,
with a Q-continue target from one extra no-grad segment; with ``no_act_continue`` (TRM) it halts
when q_halt > 0 and drops that segment.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from air_interp.model import ACTCarry, HookedAIR

ActStep = Callable[..., tuple[ACTCarry, dict[str, torch.Tensor]]]


def train_act_step(model: HookedAIR, carry: ACTCarry, batch: Mapping[str, torch.Tensor],
                   no_act_continue: bool = False, act_step: ActStep | None = None
                   ) -> tuple[ACTCarry, dict[str, torch.Tensor]]:
    """One training ACT step; ``act_step`` is ``model.act_step`` or a compiled version of it."""
    return (act_step or model.act_step)(carry, batch, no_act_continue=no_act_continue)
