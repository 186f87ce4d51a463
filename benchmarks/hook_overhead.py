"""Cost of the hook points: a full evaluation rollout with and without them, and with caches.

    python benchmarks/hook_overhead.py [--preset Lx_H] [--d-model 128] [--layers 2] [--batch 16] [--dtype auto] [--threads 1]

Modes (all on the same model and batch, interleaved, median of --repeats):
  no hook points  the ACT wrapper called halt_max_steps times (the training path: no hook points)
  hooked, idle    model(batch): every hook point in place, nothing attached
  state cache     run_with_cache of every z_L / z_H (96 tensors for a 16-step rollout)
  trace (decode)  model.trace(keep="decode"): every state's logit lens at every update
  pattern cache   run_with_cache of every attention pattern (explicit attention everywhere; not for mlp_t)
Ratios are to "no hook points"; this machine is noisy, so only ratios measured side by side count.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from air_interp import AIRConfig, HookedAIR
from air_interp.hardware import DTYPE_CHOICES, machine_summary, resolve_dtype, set_threads


def rollout_without_hook_points(model: HookedAIR, batch: dict) -> torch.Tensor:
    carry = model.initial_carry(batch)
    for _ in range(model.cfg.halt_max_steps):
        carry, outputs = model.act_step(carry, batch)
    return outputs["logits"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--preset", default="Lx_H", help="model variant (default Lx_H; trm, trm_hier6, ...)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    args = parser.parse_args()
    set_threads(args.threads)
    dtype = resolve_dtype(args.dtype, "cpu")

    torch.manual_seed(0)
    cfg = AIRConfig.preset(args.preset, d_model=args.d_model, n_layers=args.layers, n_heads=args.heads,
                           puzzle_emb_ndim=args.d_model, forward_dtype=dtype)
    model = HookedAIR(cfg).eval()
    batch = {"inputs": torch.randint(0, cfg.vocab_size, (args.batch, cfg.seq_len)),
             "puzzle_identifiers": torch.zeros(args.batch, dtype=torch.long)}
    modes: dict[str, Callable[[], object]] = {
        "no hook points": lambda: rollout_without_hook_points(model, batch),
        "hooked, idle": lambda: model(batch),
        "state cache": lambda: model.run_with_cache(batch, names_filter=r".*\.hook_z_(H|L\d*)"),
        "trace (decode)": lambda: model.trace(batch, keep="decode", batch_size=args.batch),
    }
    if cfg.mixer == "attention":
        modes["pattern cache"] = lambda: model.run_with_cache(batch, names_filter=r".*hook_pattern")
    times: dict[str, list[float]] = {name: [] for name in modes}
    with torch.inference_mode():
        for fn in modes.values():
            fn()  # warm-up
        for _ in range(args.repeats):
            for name, fn in modes.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)

    base = statistics.median(times["no hook points"])
    print(machine_summary())
    print(f"{cfg.variant}, d={args.d_model}, {args.layers} layers, batch {args.batch}, {dtype}, "
          f"{cfg.halt_max_steps} ACT steps x {cfg.sub_steps} sub-steps, {len(model.hook_dict)} hook points, "
          f"{torch.get_num_threads()} threads")
    print("| mode | median s / rollout | ratio to no hook points |\n|---|---|---|")
    for name in modes:
        median = statistics.median(times[name])
        print(f"| {name} | {median:.3f} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
