"""The training objective (docs/model.md): stablemax cross-entropy and the two Q-learning halting losses.

Losses are *sums* over the local batch; the trainer divides by the global batch size, so data
parallel workers whose gradients are summed give the gradient of the whole batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from air_interp.evaluate import IGNORE_LABEL



def _stablemax_s(x: torch.Tensor) -> torch.Tensor:
    """s(x) = x + 1 for x >= 0, 1 / (1 - x) for x < 0.

    Each branch sees only its own half of the inputs, so the branch not taken never produces an
    inf (whose zero-weighted gradient would be a NaN).
    """
    return torch.where(x < 0, 1 / (1 - x.clamp(max=0)), x.clamp(min=0) + 1)


def log_stablemax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    s = _stablemax_s(x)
    return torch.log(s / s.sum(dim=dim, keepdim=True))


def stablemax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                            ignore_index: int = IGNORE_LABEL) -> torch.Tensor:
    """Per-token stablemax cross-entropy in float64, 0 at ignored positions. Shape of ``labels``."""
    logprobs = log_stablemax(logits.to(torch.float64))
    valid = labels != ignore_index
    picked = logprobs.gather(-1, torch.where(valid, labels, 0).long().unsqueeze(-1)).squeeze(-1)
    return -torch.where(valid, picked, 0)


def act_loss(outputs: dict[str, torch.Tensor], labels: torch.Tensor, halted: torch.Tensor,
             steps: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Summed loss of one ACT step and summed metrics.

    ``lm + 0.5 * (q_halt + q_continue)``: token loss per sequence averaged over its supervised
    positions; q_halt learns whether the sequence is exactly right; q_continue learns the
    bootstrapped ``target_q_continue`` when the step produced one (not under ``no_act_continue``,
    not with halt_max_steps = 1). Metrics are counted
    on the rows that halted at this step (the finished puzzles), as in the public code.
    """
    logits = outputs["logits"]
    mask = labels != IGNORE_LABEL
    counts = mask.sum(-1)
    divisor = counts.clamp_min(1).unsqueeze(-1)
    with torch.no_grad():
        correct = mask & (logits.argmax(-1) == labels)
        seq_correct = correct.sum(-1) == counts
    lm_loss = (stablemax_cross_entropy(logits, labels) / divisor).sum()
    q_halt = outputs["q_halt_logits"]
    q_halt_loss = F.binary_cross_entropy_with_logits(q_halt, seq_correct.to(q_halt.dtype), reduction="sum")
    q_continue_loss = torch.zeros((), device=q_halt.device)
    if "target_q_continue" in outputs:
        q_continue_loss = F.binary_cross_entropy_with_logits(
            outputs["q_continue_logits"], outputs["target_q_continue"], reduction="sum")
    loss = lm_loss + 0.5 * (q_halt_loss + q_continue_loss)
    with torch.no_grad():
        done = halted & (counts > 0)
        metrics = {
            "count": done.sum().float(),
            "accuracy": torch.where(done, correct.sum(-1) / divisor.squeeze(-1), 0).sum().float(),
            "exact_accuracy": (done & seq_correct).sum().float(),
            "q_halt_accuracy": (done & ((q_halt >= 0) == seq_correct)).sum().float(),
            "act_steps": torch.where(done, steps, 0).sum().float(),
            "loss": loss.detach().float(),
            "lm_loss": lm_loss.detach().float(),
            "q_halt_loss": q_halt_loss.detach().float(),
            "q_continue_loss": q_continue_loss.detach().float(),
        }
    return loss, metrics


# Metrics that are sums over examples (divided by the number of examples) rather than over
# finished puzzles (divided by ``count``).
PER_EXAMPLE_METRICS = ("loss", "lm_loss", "q_halt_loss", "q_continue_loss")
