"""Matmul FLOP counts of the model (2 FLOPs per multiply-add), shared by the benchmarks.

One layer call at P positions of a batch of B costs ``2 B P d (3d + d + 2i + i)`` in the qkv,
output, gate/up and down projections (``i`` the SwiGLU inner size) plus ``4 B P^2 d`` in
attention (the scores and the weighted sum, over all heads). Norms, RoPE and softmax are not
counted: they are memory-bound, and the point of the counts is what fraction of the machine's
matmul throughput a step or a rollout reaches.
"""
from __future__ import annotations

from air_interp.config import AIRConfig


def swiglu_inner(cfg: AIRConfig) -> int:
    return -(round(cfg.expansion * cfg.d_model * 2 / 3) // -256) * 256


def projection_shapes(cfg: AIRConfig) -> list[tuple[int, int]]:
    """(in, out) of every projection of one block: qkv, output, gate/up, down."""
    d, inner = cfg.d_model, swiglu_inner(cfg)
    return [(d, 3 * d), (d, d), (d, 2 * inner), (inner, d)]


def projection_flops(cfg: AIRConfig, batch: int) -> float:
    """The projections of one layer call over ``batch`` carries."""
    return sum(2 * batch * cfg.carry_len * k * n for k, n in projection_shapes(cfg))


def layer_call_flops(cfg: AIRConfig, batch: int) -> float:
    """Projections and attention of one layer call over ``batch`` carries."""
    return projection_flops(cfg, batch) + 4 * batch * cfg.carry_len ** 2 * cfg.d_model


def lm_head_flops(cfg: AIRConfig, batch: int) -> float:
    return 2 * batch * cfg.seq_len * cfg.d_model * cfg.vocab_size


def rollout_flops(cfg: AIRConfig, batch: int) -> float:
    """An evaluation rollout: every sub-step of every ACT step forward, then ``lm_head``."""
    calls = cfg.halt_max_steps * sum(cfg.layers_of(kind) for kind in cfg.schedule)
    return calls * layer_call_flops(cfg, batch) + lm_head_flops(cfg, batch)
