"""Evaluation as the paper reports it: every test puzzle runs halt_max_steps ACT segments.

Exact accuracy (whole grid right) and cell accuracy are read after the last segment. The
Q-halting statistics say what adaptive halting would have given: the segment where the Q head
first says "halt" under the halting rule the model was trained with (``HookedAIR.halts``: the
paper's q_halt > q_continue, or TRM's q_halt > 0), the accuracy of the prediction there, and
whether the final q_halt sign predicts correctness. Exact accuracy after each segment is
reported too. A model whose states or logits stop being finite gives no metrics: the evaluation
ends in an AirInterpError naming the first ACT step that went non-finite.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .data.dataset import Split
from .errors import AirInterpError
from .model import ACTCarry, HookedAIR

IGNORE_LABEL = 0  # PAD: positions whose label is PAD are not supervised (nor scored)


def make_batch(split: Split, rows: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
    """The model's batch dict for ``rows`` (every dataset here has one puzzle identifier, 0)."""
    return {
        "inputs": torch.from_numpy(split.inputs[rows].astype(np.int64)).to(device),
        "labels": torch.from_numpy(split.labels[rows].astype(np.int64)).to(device),
        "puzzle_identifiers": torch.zeros(len(rows), dtype=torch.long, device=device),
    }


def _segment_stats(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(exactly right, fraction of supervised cells right) per row."""
    mask = labels != IGNORE_LABEL
    correct = (mask & (logits.argmax(-1) == labels)).sum(-1)
    counts = mask.sum(-1)
    return correct == counts, correct / counts.clamp_min(1)


def _finite(carry: ACTCarry, out: dict[str, torch.Tensor]) -> torch.Tensor:
    """True (a 0-d tensor) when the segment's states and logits are all finite."""
    values = (*carry.states.values(), out["logits"], out["q_halt_logits"], out["q_continue_logits"])
    return torch.stack([torch.isfinite(v).all() for v in values]).all()


@torch.inference_mode()
def _evaluate_batch(model: HookedAIR, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Summed statistics of one batch (a tensor per name; ``exact_by_step`` has one entry per segment,
    ``diverged_at`` is the first ACT step, from 1, whose states or logits are not finite, or 0)."""
    n_steps = model.cfg.halt_max_steps
    carry = model.initial_carry(batch)
    exact = []
    halt_step = torch.zeros_like(batch["inputs"][:, 0])  # 0: the Q head has not said "halt" yet
    halted_exact = torch.zeros_like(halt_step, dtype=torch.bool)
    diverged_at = torch.zeros((), dtype=torch.long, device=halt_step.device)
    for step in range(1, n_steps + 1):
        carry, out = model.act_step(carry, batch)
        diverged_at = torch.where((diverged_at == 0) & ~_finite(carry, out), step, diverged_at)
        seq_exact, cells = _segment_stats(out["logits"], batch["labels"])
        exact.append(seq_exact)
        q_halt = out["q_halt_logits"]
        says_halt = model.halts(q_halt, out["q_continue_logits"])
        first = (halt_step == 0) & (says_halt | (step == n_steps))
        halt_step = torch.where(first, step, halt_step)
        halted_exact = torch.where(first, seq_exact, halted_exact)
    final = exact[-1]
    return {
        "count": torch.tensor(float(len(final)), device=final.device),
        "exact_accuracy": final.sum().float(),
        "accuracy": cells.sum().float(),
        "q_halt_accuracy": ((q_halt >= 0) == final).sum().float(),
        "halt_step": halt_step.sum().float(),
        "halted_exact_accuracy": halted_exact.sum().float(),
        "exact_by_step": torch.stack([e.sum().float() for e in exact]),
        "diverged_at": diverged_at,
    }


_SCALARS = ("count", "exact_accuracy", "accuracy", "q_halt_accuracy", "halt_step", "halted_exact_accuracy")


def evaluate(model: HookedAIR, split: Split, batch_size: int = 256, rank: int = 0,
             world_size: int = 1) -> dict[str, Any]:
    """Metrics over the whole ``split``: averages per puzzle, ``count`` puzzles.

    Each rank takes a contiguous shard and the sums are all-reduced, so every rank returns the
    metrics of the whole split (or, on every rank alike, the AirInterpError of a diverged model).
    """
    was_training = model.training
    model.eval()
    rows = np.array_split(np.arange(len(split)), world_size)[rank]
    n_steps = model.cfg.halt_max_steps
    totals = torch.zeros(len(_SCALARS) + n_steps, dtype=torch.float64, device=model.device)
    diverged_at = torch.tensor(n_steps + 1, device=model.device)  # n_steps + 1: never
    try:
        for start in range(0, len(rows), batch_size):
            stats = _evaluate_batch(model, make_batch(split, rows[start:start + batch_size], model.device))
            if stats["diverged_at"] > 0:
                diverged_at = stats["diverged_at"]
                break
            totals += torch.cat([torch.stack([stats[k] for k in _SCALARS]), stats["exact_by_step"]]).double()
    finally:
        model.train(was_training)
    if world_size > 1:
        dist.all_reduce(totals)
        dist.all_reduce(diverged_at, op=dist.ReduceOp.MIN)
    if diverged_at <= n_steps:
        raise AirInterpError(f"the model's states or logits are not finite (NaN or inf) from ACT step "
                             f"{int(diverged_at)} of {n_steps} on; a diverged model gives no metrics")
    values = totals.cpu().numpy()
    count = max(values[0], 1.0)
    result: dict[str, Any] = {"count": int(values[0])}
    result.update({name: float(v / count) for name, v in zip(_SCALARS[1:], values[1:len(_SCALARS)])})
    result["exact_by_step"] = [float(v / count) for v in values[len(_SCALARS):]]
    return result
