"""Activation patching between two puzzles: which state carries the answer, and how long it sticks.

For a pair (target puzzle, source puzzle) we run the target's rollout but, at one site (the last
update of z_H or of z_L in one ACT step), replace the whole state with the source's state at the
same site, then let the rollout finish on the target's input. On the cells where the two
solutions differ we measure the final z_H decode: the fraction that follows the source's solution
(the patched state won) and the fraction that follows the target's (the input pulled it back).

Pairs are ``(i, sources[i])``; by default each puzzle's source is the next puzzle, so every puzzle
is a target once. Every site is one more batched rollout with a hook that returns the source's
cached tensor; nothing in the model is replaced.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from air_interp.errors import AirInterpError
from air_interp.hooks import FwdHooks
from air_interp.model import HookedAIR

from .lens import check_states, model_states, step_end_sites
from air_interp.output import save_figure, styled


def next_puzzle(n: int) -> np.ndarray:
    """The default pairing: puzzle ``i`` takes its patch from puzzle ``i + 1`` (the last from 0)."""
    return (np.arange(n) + 1) % n


def _final(model: HookedAIR, batch: dict[str, np.ndarray], hooks: Sequence[tuple[Any, Any]] = ()) -> torch.Tensor:
    """The output state's decode at the end of the rollout, with ``hooks`` attached."""
    output, last_step = model.cfg.output_state, model.cfg.halt_max_steps - 1
    final = {name for _, name in step_end_sites(model, output, [last_step])}
    cache = model.trace(batch, [output], keep="decode", batch_size=len(batch["inputs"]), fwd_hooks=hooks,
                        at=lambda name, site: site.name(f"hook_{output}") in final)
    return cache.decode(output)[-1]


def patch(model: HookedAIR, inputs: np.ndarray, labels: np.ndarray, sources: Optional[np.ndarray] = None,
          states: Optional[Sequence[str]] = None, steps: Optional[Sequence[int]] = None, batch_size: int = 64,
          progress: bool = True, puzzle_identifiers: Optional[np.ndarray] = None) -> pd.DataFrame:
    """One row per target puzzle x patched state (default: every state) x ACT step (``state="none"``:
    the unpatched run).

    Columns: ``follows_source`` / ``follows_target`` (fraction of the cells where the two solutions
    differ on which the final z_H decode equals the source's / the target's solution),
    ``target_exact`` (the target is still solved), ``changed`` (cells that differ from the
    unpatched target's final decode)."""
    states = model_states(model) if states is None else check_states(model, states)
    inputs, labels = np.asarray(inputs), np.asarray(labels)
    sources = next_puzzle(len(inputs)) if sources is None else np.asarray(sources)
    if sources.shape != (len(inputs),) or sources.min() < 0 or sources.max() >= len(inputs):
        raise AirInterpError(f"sources must hold one puzzle index in [0, {len(inputs)}) per puzzle")
    sites = [(state, step, name) for state in states for step, name in step_end_sites(model, state, steps)]
    patched_names = {name for _, _, name in sites}
    ids = np.zeros(len(inputs), np.int64) if puzzle_identifiers is None else np.asarray(puzzle_identifiers)
    rows = []
    for batch in tqdm([slice(start, min(start + batch_size, len(inputs))) for start in range(0, len(inputs), batch_size)],
                      desc="patch", unit="batch", disable=not progress, leave=False):
        target = {"inputs": inputs[batch], "puzzle_identifiers": ids[batch]}
        source = model.trace({"inputs": inputs[sources[batch]], "puzzle_identifiers": ids[sources[batch]]}, states,
                             batch_size=len(target["inputs"]), at=lambda name, site: site.name(f"hook_{site.state}") in patched_names)
        clean = _final(model, target)
        rows.append(_pair_rows(clean, clean, batch, "none", -1, labels, sources))
        for state, step, name in sites:
            cached = source.states(state, step=step)[-1].to(model.device)
            patched = _final(model, target, [(name, lambda z, hook, cached=cached: cached)])
            rows.append(_pair_rows(patched, clean, batch, state, step, labels, sources))
    return pd.concat(rows, ignore_index=True)


def _pair_rows(final: torch.Tensor, clean: torch.Tensor, batch: slice, state: str, step: int,
               labels: np.ndarray, sources: np.ndarray) -> pd.DataFrame:
    final_tokens, clean_tokens = final.cpu().numpy(), clean.cpu().numpy()
    own, other = labels[batch], labels[sources[batch]]
    differ = own != other
    count = np.maximum(differ.sum(-1), 1)
    return pd.DataFrame({
        "puzzle": np.arange(batch.start, batch.stop), "source": sources[batch], "state": state, "step": step,
        "follows_source": ((final_tokens == other) & differ).sum(-1) / count,
        "follows_target": ((final_tokens == own) & differ).sum(-1) / count,
        "target_exact": (final_tokens == own).all(-1),
        "changed": (final_tokens != clean_tokens).sum(-1),
        "differing_cells": differ.sum(-1),
    })


def patch_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per patched state and ACT step: mean and sem over pairs of every measure."""
    measures = ["follows_source", "follows_target", "target_exact", "changed"]
    stats = rows.groupby(["state", "step"], sort=False)[measures].agg(["mean", "sem"])
    stats.columns = [f"{column}_{stat}" for column, stat in stats.columns]
    return stats.reset_index()


@styled
def plot_patching(summary: pd.DataFrame, path: Path, title: str = "") -> list[Path]:
    """Fraction of differing cells that follow the source (solid) or the target (dashed) after a
    patch of z_H or z_L at each ACT step, mean over pairs with ±1 standard-error bars; the
    unpatched run as grey lines."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    colours = {"z_H": "#c62828", "z_L": "#1565c0"}
    styles = {"follows_source": "-", "follows_target": "--"}
    for state, group in summary[summary["state"] != "none"].groupby("state", sort=False):
        for measure, style in styles.items():
            ax.errorbar(group["step"], group[f"{measure}_mean"], yerr=group[f"{measure}_sem"], color=colours.get(state),
                        linestyle=style, marker="o", markersize=3, capsize=2,
                        label=f"{state} patched: {measure.replace('_', ' ')}")
    clean = summary[summary["state"] == "none"]
    for measure, style in styles.items():
        if len(clean):
            ax.axhline(clean[f"{measure}_mean"].iloc[0], color="#9e9e9e", linestyle=style, linewidth=0.8,
                       label=f"no patch: {measure.replace('_', ' ')}")
    ax.set_xlabel("ACT step of the patch (last update of the state)")
    ax.set_ylabel("fraction of cells where the solutions differ")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    caption = "final z_H decode of the target puzzle; mean over pairs, bars: ±1 standard error"
    ax.set_title(f"{title}\n{caption}" if title else caption)
    return save_figure(fig, path)
