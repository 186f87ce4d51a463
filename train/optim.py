"""Optimisers (AdamATan2 for the network, sparse sign-SGD for puzzle embeddings), the learning-rate
schedule and an exponential moving average of the weights."""
from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from adam_atan2_pytorch import AdamAtan2
from torch import nn
from torch.optim import Optimizer

from .config import TrainConfig


class SparseSignSGD(Optimizer):
    """Sign-SGD with decoupled weight decay on the rows of an embedding table used in the batch.

    A puzzle embedding is seen by few examples per step, so its gradient is sparse and noisy;
    the public code uses the sign ("Adam ~ sign-SGD for very sparse gradients"). Rows absent
    from the batch keep their value (no decay either). ``step(rows=...)`` names the used rows;
    without it every row with a gradient counts as used.
    """

    def __init__(self, params, lr: float = 1e-4, weight_decay: float = 0.0) -> None:
        if lr < 0 or weight_decay < 0:
            raise ValueError("lr and weight_decay must be >= 0")
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None, rows: torch.Tensor | None = None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                used = torch.arange(p.shape[0], device=p.device) if rows is None else rows.unique()
                updated = p[used] * (1 - group["lr"] * group["weight_decay"]) - group["lr"] * p.grad[used].sign()
                p[used] = updated


def lr_at(step: int, base_lr: float, cfg: TrainConfig, total_steps: int) -> float:
    """Learning rate of (1-based) ``step``: linear warm-up, then constant or cosine down to
    ``base_lr * lr_min_ratio``."""
    if step < cfg.lr_warmup_steps:
        return base_lr * step / cfg.lr_warmup_steps
    if cfg.lr_schedule == "constant":
        return base_lr
    progress = (step - cfg.lr_warmup_steps) / max(1, total_steps - cfg.lr_warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return base_lr * (cfg.lr_min_ratio + (1 - cfg.lr_min_ratio) * cosine)


def build_optimizers(model: nn.Module, cfg: TrainConfig) -> tuple[SparseSignSGD | None, AdamAtan2]:
    """(sign-SGD on the puzzle embedding or None, AdamATan2 on everything else).

    AdamATan2 runs at the package defaults a=1.27, b=1 used by the AIR release; the learning rates
    are set by the schedule before every step (the constructor needs some lr > 0).
    """
    puzzle = getattr(model, "puzzle_emb", None)
    puzzle_params = [] if puzzle is None else [puzzle.weight]
    others = [p for p in model.parameters() if all(p is not q for q in puzzle_params)]
    adam = AdamAtan2(others, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    sign = SparseSignSGD(puzzle_params, lr=cfg.puzzle_emb_lr, weight_decay=cfg.puzzle_emb_weight_decay) \
        if puzzle_params else None
    return sign, adam


class EMA:
    """Exponential moving average of the parameters: ``ema = d * ema + (1 - d) * param``.

    The decay warms up as ``d = min(decay, (1 + step) / (10 + step))`` (TensorFlow's num_updates
    rule): without it the average of a run of a few thousand steps (a CPU run) still holds a large
    share of its random initial weights (0.999 ** 1000 = 0.37).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {name: p.detach().clone() for name, p in model.named_parameters()}

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Average in the weights after optimiser step ``step`` (1 for the first)."""
        decay = self.decay_at(step)
        for name, p in model.named_parameters():
            self.shadow[name].lerp_(p.detach(), 1 - decay)

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """Temporarily give ``model`` the averaged weights (for evaluation and saving)."""
        params = dict(model.named_parameters())
        saved = {name: p.detach().clone() for name, p in params.items()}
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(self.shadow[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(saved[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: t.cpu() for name, t in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name, t in self.shadow.items():
            t.copy_(state[name])
