"""Probe throughput against a plain batched rollout, and against one puzzle at a time.

    python benchmarks/probes.py [--preset Lx_H|trm|trm_hier6|trm_mlp_t|...] [--size cpu|paper]
                                [--dtype auto|float32|bfloat16] [--puzzles 16] [--repeats 3]
                                [--memory-puzzles 1000] [--threads 1]

Model: ``--preset`` (default Lx_H) with random weights (speed does not depend on training), 16 ACT
steps, on the shipped Sudoku test puzzles; ``--size cpu`` is d=128, 2 layers, 4 heads; ``--size
paper`` is d=512, 8 heads and the preset's depth (4 layers for AIR, 2 for TRM). In one process and one dtype, interleaved ``--repeats`` times
(medians): a plain batched rollout (``model(batch)``, no hook attached) and each probe over the
same batch of ``--puzzles``; ``vs rollout`` is the probe's throughput over the rollout's (the
issue's target at the paper size: >= 0.8). "One at a time" is the public scripts' way, timed once:
a rollout per puzzle, and for attention a rollout per puzzle *and per layer*. Peak memory is the
maximum resident set of a fresh process running the batched probe over ``--memory-puzzles``;
for ``trace`` (``model.trace(keep="decode")``) and ``trace states`` (``keep="states"``) beside the
bound :func:`air_interp.trace.trace_memory_bytes` states for what the trace keeps.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

from flops import rollout_flops

from air_interp import AIRConfig, HookedAIR
from air_interp.data import load_dataset
from air_interp.defaults import DEFAULT_DATASETS
from air_interp.hardware import DTYPE_CHOICES, machine_summary, resolve_dtype, set_threads
from air_interp.probes.attention import AttentionOptions, attention_contrasts
from air_interp.probes.decode import decode
from air_interp.probes.freeze import freeze
from air_interp.probes.linear import collect
from air_interp.probes.patching import patch
from air_interp.trace import trace_memory_bytes

PROBES = ("decode", "freeze", "attention", "linear", "patch", "trace", "trace states")
ONE_AT_A_TIME = ("decode", "freeze", "attention")  # the public scripts' probes
SIZES = {"cpu": dict(d_model=128, n_layers=2, n_heads=4), "paper": dict(d_model=512, n_heads=8)}


def make_model(preset: str, size: str, dtype: str) -> HookedAIR:
    torch.manual_seed(0)
    sizes = SIZES[size]
    cfg = AIRConfig.preset(preset, puzzle_emb_ndim=sizes["d_model"], forward_dtype=dtype, **sizes)
    return HookedAIR(cfg).eval()


def rollout(model: HookedAIR, inputs, batch_size: int) -> None:
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            model({"inputs": torch.as_tensor(inputs[start:start + batch_size]).long()})


def run(probe: str, model: HookedAIR, inputs, labels, batch_size: int, layers=None) -> None:
    if probe == "decode":
        decode(model, inputs, labels, batch_size=batch_size, progress=False)
    elif probe == "freeze":
        freeze(model, inputs, labels, model.cfg.states[0], batch_size=batch_size, progress=False)
    elif probe == "attention":
        attention_contrasts(model, inputs, labels, AttentionOptions(layers=layers), batch_size=batch_size, progress=False)
    elif probe == "linear":
        collect(model, inputs, labels, batch_size=batch_size, progress=False)
    elif probe == "patch":
        patch(model, inputs, labels, steps=[model.cfg.halt_max_steps // 2], batch_size=batch_size, progress=False)
    else:
        model.trace(inputs, keep="states" if probe == "trace states" else "decode", batch_size=batch_size)


def one_at_a_time(probe: str, model: HookedAIR, inputs, labels) -> None:
    layers = [(layer,) for layer in range(model.cfg.n_layers)] if probe == "attention" else [None]
    for i in range(len(inputs)):
        for layer in layers:
            run(probe, model, inputs[i:i + 1], labels[i:i + 1], 1, layer)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def peak_memory_mb(probe: str, args: argparse.Namespace, dtype: str) -> float:
    """Max resident set of a fresh process (this script with ``--memory-run``) running ``probe``."""
    command = [sys.executable, __file__, "--memory-run", probe, "--memory-puzzles", str(args.memory_puzzles),
               "--threads", str(args.threads), "--size", args.size, "--dtype", dtype, "--preset", args.preset]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="Lx_H", help="model variant (default Lx_H)")
    parser.add_argument("--size", choices=SIZES, default="cpu")
    parser.add_argument("--probes", nargs="+", choices=PROBES, default=PROBES, help="jobs to time (default all)")
    parser.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto")
    parser.add_argument("--puzzles", type=int, default=16, help="puzzles per timed run, one batch (default 16)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved batched runs (default 3; medians)")
    parser.add_argument("--memory-puzzles", type=int, default=1000, help="puzzles of the peak-memory runs; 0 skips")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--memory-run", choices=PROBES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    set_threads(args.threads)
    dtype = resolve_dtype(args.dtype, "cpu")
    split = load_dataset(DEFAULT_DATASETS["sudoku"]).split("test")
    model = make_model(args.preset, args.size, dtype)
    if args.memory_run:
        run(args.memory_run, model, split.inputs[:args.memory_puzzles], split.labels[:args.memory_puzzles], 16)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        return
    inputs, labels, batch = split.inputs[:args.puzzles], split.labels[:args.puzzles], args.puzzles
    print(machine_summary())
    cfg = model.cfg
    print(f"{cfg.variant} d={cfg.d_model}, {cfg.n_layers} layers, {cfg.n_heads} heads, {cfg.halt_max_steps} ACT "
          f"steps, {cfg.sub_steps} sub-steps each, {dtype}, {args.puzzles} Sudoku puzzles per batch, medians of "
          f"{args.repeats}\n")
    probes = [p for p in args.probes if p != "attention" or cfg.mixer == "attention"]  # mlp_t has no attention
    jobs = {"rollout": lambda: rollout(model, inputs, batch)}
    jobs.update({probe: (lambda probe=probe: run(probe, model, inputs, labels, batch)) for probe in probes})
    for job in jobs.values():  # warm-up
        job()
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(args.repeats):
        for name, job in jobs.items():
            times[name].append(timed(job))
    rates = {name: args.puzzles / statistics.median(seconds) for name, seconds in times.items()}
    per_puzzle = rollout_flops(cfg, 1)
    print(f"plain rollout: {per_puzzle / 1e9:.1f} GFLOP per puzzle (matmuls), "
          f"{rates['rollout'] * per_puzzle / 1e9:.0f} GFLOP/s\n")
    print(f"| job | batched puzzles/s | vs rollout | one at a time puzzles/s | batched speed-up | peak RSS, "
          f"{args.memory_puzzles} puzzles |\n|---|---|---|---|---|---|")
    print(f"| plain rollout | {rates['rollout']:.2f} | 1.00 | - | - | - |")
    for probe in probes:
        single = args.puzzles / timed(lambda: one_at_a_time(probe, model, inputs, labels)) \
            if probe in ONE_AT_A_TIME else None
        memory = f"{peak_memory_mb(probe, args, dtype):,.0f} MB" if args.memory_puzzles else "-"
        if probe.startswith("trace") and args.memory_puzzles:
            keep = "states" if probe == "trace states" else "decode"
            memory += f" (kept: {trace_memory_bytes(model, args.memory_puzzles, keep) / 2**20:,.1f} MB)"
        speed_up = "-" if single is None else f"{rates[probe] / single:.1f}x"
        print(f"| {probe} | {rates[probe]:.2f} | {rates[probe] / rates['rollout']:.2f} | "
              f"{'-' if single is None else f'{single:.2f}'} | {speed_up} | {memory} |", flush=True)


if __name__ == "__main__":
    main()
