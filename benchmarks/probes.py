"""Probe throughput: batched vs one puzzle at a time, and peak memory for many puzzles.

    python benchmarks/probes.py [--puzzles 16] [--memory-puzzles 1000] [--threads 1]

"One at a time" is what the public analysis scripts do: a rollout per puzzle (and, for attention,
a rollout per puzzle *and per layer*). Both ways run side by side in this one process on the same
model (Lx_H, d=128, 2 layers, 16 ACT steps, random weights: speed does not depend on training) and
the shipped Sudoku test puzzles. Peak memory is the maximum resident set of a fresh process that
runs each batched probe over ``--memory-puzzles`` puzzles.
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

import torch

from air_interp import AIRConfig, HookedAIR
from air_interp.data import load_dataset
from air_interp.defaults import DEFAULT_DATASETS
from air_interp.probes.attention import AttentionOptions, attention_contrasts
from air_interp.probes.decode import decode
from air_interp.probes.freeze import freeze

PROBES = ("decode", "freeze", "attention")


def make_model() -> HookedAIR:
    torch.manual_seed(0)
    cfg = AIRConfig.preset("Lx_H", d_model=128, n_layers=2, n_heads=4, puzzle_emb_ndim=128, forward_dtype="float32")
    return HookedAIR(cfg).eval()


def run(probe: str, model: HookedAIR, inputs, labels, batch_size: int, layers=None) -> None:
    if probe == "decode":
        decode(model, inputs, labels, batch_size=batch_size, progress=False)
    elif probe == "freeze":
        freeze(model, inputs, labels, "zH", batch_size=batch_size, progress=False)
    else:
        attention_contrasts(model, inputs, labels, AttentionOptions(layers=layers), batch_size=batch_size, progress=False)


def one_at_a_time(probe: str, model: HookedAIR, inputs, labels) -> None:
    layers = [(layer,) for layer in range(model.cfg.n_layers)] if probe == "attention" else [None]
    for i in range(len(inputs)):
        for layer in layers:
            run(probe, model, inputs[i:i + 1], labels[i:i + 1], 1, layer)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def peak_memory_mb(probe: str, puzzles: int, threads: int) -> float:
    """Max resident set of a fresh process (this script with ``--memory-run``) running ``probe``."""
    command = [sys.executable, __file__, "--memory-run", probe, "--memory-puzzles", str(puzzles), "--threads", str(threads)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--puzzles", type=int, default=16, help="puzzles timed both ways (default 16)")
    parser.add_argument("--memory-puzzles", type=int, default=1000, help="puzzles of the peak-memory runs; 0 skips")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--memory-run", choices=PROBES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    split = load_dataset(DEFAULT_DATASETS["sudoku"]).split("test")
    if args.memory_run:
        run(args.memory_run, make_model(), split.inputs[:args.memory_puzzles], split.labels[:args.memory_puzzles], 16)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        return
    inputs, labels = split.inputs[:args.puzzles], split.labels[:args.puzzles]
    model = make_model()
    run("decode", model, inputs[:2], labels[:2], 2)  # warm-up
    print(f"Lx_H d=128, 2 layers, 16 ACT steps, {args.puzzles} Sudoku puzzles, {args.threads} thread(s)")
    print("| probe | batched (16) puzzles/s | one at a time puzzles/s | speed-up | peak RSS, "
          f"{args.memory_puzzles} puzzles batched |\n|---|---|---|---|---|")
    for probe in PROBES:
        batched = timed(lambda: run(probe, model, inputs, labels, 16))
        single = timed(lambda: one_at_a_time(probe, model, inputs, labels))
        memory = f"{peak_memory_mb(probe, args.memory_puzzles, args.threads):.0f} MB" if args.memory_puzzles else "-"
        print(f"| {probe} | {args.puzzles / batched:.2f} | {args.puzzles / single:.2f} | {single / batched:.1f}x | {memory} |",
              flush=True)


if __name__ == "__main__":
    main()
