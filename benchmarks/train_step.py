"""Training step time: fp32 vs bf16 at a CPU-scale config, and the paper's config once.

    python benchmarks/train_step.py [--data data/sudoku-hard] [--steps 10] [--paper-steps 1] [--paper-batch 768] [--threads N]

Each step is the real one (``Trainer.train_step``: ACT segment, Q-continue segment, loss,
backward, AdamATan2 and sign-SGD). The CPU-scale dtypes run interleaved on identical trainers
(same seed, same data), so a busy machine slows both alike; the median step is reported.
``--paper-steps 0`` skips the paper config (d=512, 4 layers, batch 768: minutes per step on a CPU).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from air_interp.train.config import TrainConfig
from air_interp.train.loop import Trainer


def make_trainer(data: str, scale: str, run_dir: Path, **overrides) -> Trainer:
    cfg = TrainConfig.for_scale(scale, data=data, augmentations=0, steps=10**6, log_every=10**6, **overrides)
    return Trainer(cfg, run_dir, progress=False)


def timed_step(trainer: Trainer) -> float:
    start = time.perf_counter()
    trainer.train_step()
    return time.perf_counter() - start


def row(name: str, trainer: Trainer, times: list[float]) -> str:
    median = statistics.median(times)
    tokens = trainer.cfg.global_batch_size * trainer.model_cfg.seq_len / median
    m = trainer.model_cfg
    return (f"| {name} | d={m.d_model}, {m.n_layers} layers, batch {trainer.cfg.global_batch_size}, "
            f"halt {m.halt_max_steps} | {m.forward_dtype} | {median * 1000:.0f} ms | {tokens:,.0f} |")


def compare_dtypes(data: str, tmp: Path, steps: int) -> None:
    """fp32 and bf16 trainers at the CPU scale, stepped alternately."""
    trainers = {dtype: make_trainer(data, "cpu", tmp / dtype, dtype=dtype) for dtype in ("float32", "bfloat16")}
    times: dict[str, list[float]] = {dtype: [] for dtype in trainers}
    for trainer in trainers.values():
        timed_step(trainer)  # warm-up
    for _ in range(steps):
        for dtype, trainer in trainers.items():
            times[dtype].append(timed_step(trainer))
    for dtype, trainer in trainers.items():
        print(row("cpu scale", trainer, times[dtype]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/sudoku-hard")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per dtype at the CPU scale (0: skip)")
    parser.add_argument("--paper-steps", type=int, default=1, help="timed steps at the paper config (0: skip)")
    parser.add_argument("--paper-batch", type=int, default=768)
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's; 1 on a shared machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device: {device}, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| config | size | dtype | step (median) | tokens/s |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        if args.steps:
            compare_dtypes(args.data, Path(tmp), args.steps)
        if args.paper_steps:
            paper = make_trainer(args.data, "paper", Path(tmp) / "paper", global_batch_size=args.paper_batch)
            paper_times = [timed_step(paper) for _ in range(args.paper_steps)]
            print(row("paper", paper, paper_times))


if __name__ == "__main__":
    main()
