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
from typing import Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from air_interp.errors import AirInterpError
from air_interp.hooks import FwdHooks
from air_interp.model import HookedAIR

from .lens import check_states, decode_state, model_states, puzzle_batch, step_end_sites, stream
from air_interp.output import save_figure, styled


def next_puzzle(n: int) -> np.ndarray:
    """The default pairing: puzzle ``i`` takes its patch from puzzle ``i + 1`` (the last from 0)."""
    return (np.arange(n) + 1) % n


def _final(model: HookedAIR, batch: dict[str, torch.Tensor], hooks: FwdHooks) -> torch.Tensor:
    with model.hooks(fwd_hooks=hooks):
        return decode_state(model, model(batch, return_type="all").states[model.cfg.output_state])


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
    rows = []
    with torch.inference_mode():
        for batch, target in stream(model, inputs, batch_size, "patch", progress, puzzle_identifiers):
            source = puzzle_batch(model, inputs, puzzle_identifiers, sources[batch])
            _, cache = model.run_with_cache(source, names_filter=[name for _, _, name in sites])
            clean = _final(model, target, [])
            rows.append(_pair_rows(clean, clean, batch, "none", -1, labels, sources))
            for state, step, name in sites:
                patched = _final(model, target, [(name, lambda z, hook, cached=cache[name]: cached)])
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
