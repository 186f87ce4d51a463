"""Training step speed against the machine's own matmul throughput, per precision (issue 12).

    python benchmarks/train_step.py [--data data/sudoku-hard] [--steps 5] [--dtypes float32 bfloat16]
                                    [--compile] [--no-act-continue] [--paper-steps 0] [--paper-batch 96] [--threads 1]

Each step is the real one (``Trainer.train_step``: ACT segment, Q-continue segment, loss,
backward, AdamATan2 and sign-SGD) at the CPU scale (Lx_H, d=128, 2 layers, batch 64, 8 ACT
steps, Sudoku). Every (dtype, eager or compiled) trainer and the matmul reference of each dtype
run interleaved, round by round, so a busy machine slows them alike; medians are reported.

Model FLOPs per step (:func:`step_flops`, matmuls only, per layer call as in ``flops.py``:
``2 B P d (3d + d + 2i + i) + 4 B P^2 d``). A training step runs the 6 sub-steps of the ACT
segment and the 6 of the Q-continue segment forward, and the backward of the two sub-steps with a
gradient costs twice their forward; ``lm_head`` adds ``3 x 2 B L d V``. At the CPU scale (B=64,
P=82 positions, d=128, SwiGLU inner size i=512, 2 layers) that is 24 + 2 x 4 = 32 layer calls of
2.97 GFLOP: 95.1 GFLOP per step
(``--no-act-continue``, TRM's rule used by the shipped CPU runs, drops the Q-continue segment:
12 + 8 = 20 layer calls, 59.5 GFLOP).

Matmul reference: the step's own projection GEMMs (its shapes, forward x W^T and the two backward
products) run back to back in the same dtype and thread count, counted in the same proportions as
in the step. ``ratio`` = step GFLOP/s / that. A large square GEMM (2048^3) is shown for context.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from air_interp.train.config import TrainConfig
from air_interp.train.loop import Trainer
from flops import layer_call_flops, lm_head_flops, projection_flops, projection_shapes

from air_interp.config import AIRConfig
from air_interp.hardware import machine_summary, set_threads

DTYPES = ("float32", "bfloat16")


def layer_calls(cfg: AIRConfig, q_continue: bool) -> tuple[int, int]:
    """(forward layer calls, layer calls with a backward) of one training step."""
    per_segment = sum(cfg.layers_of(kind) for kind in cfg.schedule)
    with_grad = sum(cfg.layers_of(kind) for kind in cfg.schedule[-2:])
    return per_segment * (2 if q_continue else 1), with_grad


def step_flops(cfg: AIRConfig, batch: int, q_continue: bool) -> float:
    """Model FLOPs of one training step (see the module docstring)."""
    forward, backward = layer_calls(cfg, q_continue)
    return (forward + 2 * backward) * layer_call_flops(cfg, batch) + 3 * lm_head_flops(cfg, batch)


class MatmulReference:
    """The step's projection GEMMs alone, in one dtype: one forward set and one backward set."""

    def __init__(self, cfg: AIRConfig, batch: int, dtype: torch.dtype, q_continue: bool) -> None:
        rows = batch * cfg.carry_len
        gen = torch.Generator().manual_seed(0)
        self.tensors = [(torch.randn(rows, k, generator=gen).to(dtype), torch.randn(n, k, generator=gen).to(dtype),
                         torch.randn(rows, n, generator=gen).to(dtype)) for k, n in projection_shapes(cfg)]
        self.forward_calls, self.backward_calls = layer_calls(cfg, q_continue)
        self.flops = projection_flops(cfg, batch) * (self.forward_calls + 2 * self.backward_calls)

    def seconds(self) -> float:
        """Time of the step's GEMMs: forward and backward sets timed once, weighted by their counts."""
        forward = timed(lambda: [F.linear(x, w) for x, w, _ in self.tensors])
        backward = timed(lambda: [(dy @ w, dy.t() @ x) for x, w, dy in self.tensors])
        return self.forward_calls * forward + self.backward_calls * backward


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def square_gemm_gflops(dtype: torch.dtype, size: int = 2048) -> float:
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b  # warm-up
    return 2 * size ** 3 / min(timed(lambda: a @ b) for _ in range(3)) / 1e9


def make_trainer(data: str, scale: str, run_dir: Path, **overrides) -> Trainer:
    cfg = TrainConfig.for_scale(scale, data=data, augmentations=0, steps=10 ** 6, log_every=10 ** 6, **overrides)
    return Trainer(cfg, run_dir, progress=False)


def compare(data: str, tmp: Path, steps: int, dtypes: list[str], compile_too: bool, no_act_continue: bool,
            threads: int) -> None:
    """Eager (and compiled) trainers of every dtype and each dtype's matmul reference, interleaved."""
    modes = [(dtype, compiled) for dtype in dtypes for compiled in ((False, True) if compile_too else (False,))]
    trainers = {mode: make_trainer(data, "cpu", tmp / f"{mode[0]}-{mode[1]}", dtype=mode[0], compile=mode[1],
                                   threads=threads, no_act_continue=no_act_continue) for mode in modes}
    model_cfg = next(iter(trainers.values())).model_cfg
    batch = next(iter(trainers.values())).cfg.global_batch_size
    q_continue = model_cfg.halt_max_steps > 1 and not no_act_continue
    references = {dtype: MatmulReference(model_cfg, batch, getattr(torch, dtype), q_continue) for dtype in dtypes}
    for trainer in trainers.values():  # warm-up (and compilation)
        trainer.train_step()
        trainer.train_step()
    step_times: dict[tuple[str, bool], list[float]] = {mode: [] for mode in modes}
    matmul_times: dict[str, list[float]] = {dtype: [] for dtype in dtypes}
    for _ in range(steps):
        for mode, trainer in trainers.items():
            step_times[mode].append(timed(trainer.train_step))
        for dtype, reference in references.items():
            matmul_times[dtype].append(reference.seconds())
    total = step_flops(model_cfg, batch, q_continue)
    print(f"model FLOPs per step: {total / 1e9:.1f} GFLOP (Lx_H, d={model_cfg.d_model}, {model_cfg.n_layers} "
          f"layers, batch {batch}, {model_cfg.carry_len} positions, halt {model_cfg.halt_max_steps}, "
          f"{'with' if q_continue else 'without'} the Q-continue segment)\n")
    print("| dtype | torch.compile | step (median) | step GFLOP/s | matmul GFLOP/s (step's shapes) | ratio | "
          "square GEMM GFLOP/s | steps per core-hour |\n|---|---|---|---|---|---|---|---|")
    for (dtype, compiled), times in step_times.items():
        step = statistics.median(times)
        matmul = references[dtype].flops / statistics.median(matmul_times[dtype])
        achieved = total / step
        print(f"| {dtype} | {'yes' if compiled else 'no'} | {step * 1000:.0f} ms | {achieved / 1e9:.0f} | "
              f"{matmul / 1e9:.0f} | {achieved / matmul:.2f} | {square_gemm_gflops(getattr(torch, dtype)):.0f} | "
              f"{3600 / (step * threads):,.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/sudoku-hard")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per trainer at the CPU scale (0: skip)")
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=DTYPES)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd trainers")
    parser.add_argument("--no-act-continue", action="store_true", help="TRM's halting: no Q-continue segment")
    parser.add_argument("--paper-steps", type=int, default=0, help="timed steps at the paper config (default 0: skip)")
    parser.add_argument("--paper-batch", type=int, default=96)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1: the machine is shared)")
    args = parser.parse_args()
    threads = set_threads(args.threads)
    print(machine_summary())
    print(f"dtypes: {', '.join(args.dtypes)}\n")
    with tempfile.TemporaryDirectory() as tmp:
        if args.steps:
            compare(args.data, Path(tmp), args.steps, args.dtypes, args.compile, args.no_act_continue, threads)
        if args.paper_steps:
            paper = make_trainer(args.data, "paper", Path(tmp) / "paper", global_batch_size=args.paper_batch,
                                 dtype=args.dtypes[0], threads=threads)
            seconds = statistics.median(timed(paper.train_step) for _ in range(args.paper_steps))
            total = step_flops(paper.model_cfg, args.paper_batch, True)
            print(f"\npaper config (d=512, 4 layers, batch {args.paper_batch}, halt 16), {args.dtypes[0]}: "
                  f"{seconds:.1f} s per step, {total / seconds / 1e9:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
