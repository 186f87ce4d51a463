"""The training ACT step: the model's own ``act_step``, with TRM's ``no_act_continue`` rule.

``HookedAIR.act_step`` implements the paper's rule (SPEC 1.3): halt when q_halt > q_continue,
with a Q-continue target from one extra no-grad segment; with ``no_act_continue`` (TRM) it halts
when q_halt > 0 and drops that segment. :func:`compiled_act_step` is the same step through
``torch.compile``, which fuses the elementwise work between the matmuls (benchmarks/train_step.py).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

import torch

from air_interp.model import ACTCarry, HookedAIR

ActStep = Callable[..., tuple[ACTCarry, dict[str, torch.Tensor]]]


def train_act_step(model: HookedAIR, carry: ACTCarry, batch: Mapping[str, torch.Tensor],
                   no_act_continue: bool = False, act_step: ActStep | None = None
                   ) -> tuple[ACTCarry, dict[str, torch.Tensor]]:
    """One training ACT step; ``act_step`` is ``model.act_step`` or a compiled version of it."""
    return (act_step or model.act_step)(carry, batch, no_act_continue=no_act_continue)


def compiler_problem(device: torch.device) -> str | None:
    """None when ``torch.compile`` works on ``device``, else why not (on a CPU it needs a C++
    compiler): a tiny function is compiled and run as a probe."""
    try:
        probe = torch.compile(lambda t: torch.sin(t) + 1, dynamic=False)
        probe(torch.ones(4, device=device))
    except Exception as err:  # the compiler stack raises many types (missing toolchain, bad flags)
        lines = str(err).strip().splitlines()
        return lines[0] if lines else type(err).__name__
    return None


def compiled_act_step(model: HookedAIR) -> ActStep:
    """``model.act_step`` through ``torch.compile``; where the compiler is missing, a warning and
    the eager step. Random draws (ACT exploration) stay PyTorch's own, so a compiled run takes the
    eager run's random stream and differs from it only by rounding."""
    problem = compiler_problem(model.device)
    if problem is not None:
        warnings.warn(f"--compile: torch.compile does not work here ({problem}); training runs eagerly",
                      stacklevel=2)
        return model.act_step
    torch._inductor.config.fallback_random = True
    return torch.compile(model.act_step)
