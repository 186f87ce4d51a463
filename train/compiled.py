"""The training ACT step through ``torch.compile``, which fuses the elementwise work between the
matmuls (measured in benchmarks/train_step.py), with an eager fallback where the compiler is missing."""
from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from air_interp.model import ACTCarry, HookedAIR

ActStep = Callable[..., tuple[ACTCarry, dict[str, torch.Tensor]]]


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
