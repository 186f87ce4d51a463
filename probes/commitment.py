"""Commitment: from which sub-step on does each cell's decoded answer stay final, and how often
does it flip before that?

Read from the decode probe's grids (``decode(...).grids``, the logit lens of z_H and z_L after
every global sub-step; no rollout of its own). For each puzzle, state and cell: ``commit``, the
first global sub-step ``6 s + k`` from which the decoded value equals its value at the end of the
rollout, and ``flips``, the number of consecutive sub-steps whose decoded values differ. A state
decodes the same at sub-steps that do not update it, so flips are changes between consecutive
updates of the state. Each state is read from its own first update on (z_L's at sub-step 0, z_H's
at the first H sub-step): before it the grid holds the reset value, which is no answer, so the
first update is never a flip and a cell that never changes after it commits there.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from air_interp.output import save_figure, styled

from .decode import DecodeResult
from .linear import open_cells
from .render import draw_blocks

STATE_COLOURS = {"z_H": "#c62828", "z_L": "#1565c0", "z_M": "#2e7d32"}


def commitment(result: DecodeResult) -> pd.DataFrame:
    """One row per puzzle x state x cell: ``commit`` (global sub-step) with its ``commit_step`` and
    ``commit_sub``, ``flips``, the ``final`` token and, with labels, ``open`` (a cell the solution
    fills: Sudoku blanks, open maze cells) and ``correct`` (the final token is the solution's)."""
    grids, width = result.grids, len(result.schedule)  # grids: (puzzles, sub-steps, states, cells)
    puzzles, _, states, cells = grids.shape
    parts = []
    for s, state in enumerate(result.states):
        first = result.first_update(state)
        changed = grids[:, first + 1:, s] != grids[:, first:-1, s]
        after = np.arange(1, changed.shape[1] + 1)[None, :, None]  # a change at j makes sub-step first + j + 1 final
        commit = first + (changed * after).max(1, initial=0)
        parts.append(pd.DataFrame({
            "puzzle": np.repeat(np.arange(puzzles), cells), "state": state, "cell": np.tile(np.arange(cells), puzzles),
            "commit": commit.reshape(-1), "commit_step": commit.reshape(-1) // width,
            "commit_sub": commit.reshape(-1) % width, "flips": changed.sum(1).reshape(-1),
            "final": grids[:, -1, s].reshape(-1),
        }))
    table = pd.concat(parts).sort_values(["puzzle", "state", "cell"], kind="stable", ignore_index=True)
    if result.labels is not None:
        labels = np.asarray(result.labels)
        table["open"] = np.repeat(open_cells(result.inputs, labels)[:, None], states, 1).reshape(-1)
        table["correct"] = (grids[:, -1] == labels[:, None]).reshape(-1)
    return table


def commitment_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per state (and open vs given cells, with labels): cells, mean and median commit sub-step,
    mean flips, the share of cells that never flip and the share right at the end."""
    keys = ["state", "open"] if "open" in table else ["state"]
    grouped = table.groupby(keys, sort=False)
    out = pd.DataFrame({
        "cells": grouped.size(), "commit_mean": grouped["commit"].mean(), "commit_median": grouped["commit"].median(),
        "flips_mean": grouped["flips"].mean(), "never_flipped": grouped["flips"].apply(lambda f: (f == 0).mean()),
    })
    if "correct" in table:
        out["final_correct"] = grouped["correct"].mean()
    return out.reset_index()


@styled
def plot_commitment(result: DecodeResult, table: pd.DataFrame, path: Path, title: str = "") -> list[Path]:
    """Top: the mean commit sub-step of every cell, a board per state, on the task's grid. Bottom:
    the distributions per state of the commit sub-step and of the flips (open cells when known)."""
    task, total, width = result.task, result.grids.shape[1], len(result.schedule)
    states = result.states
    fig, axes = plt.subplots(2, max(len(states), 2), figsize=(4.5 * max(len(states), 2), 7.4), height_ratios=[1.15, 1],
                             layout="constrained", squeeze=False)
    means = table.groupby(["state", "cell"])["commit"].mean()
    for ax, state in zip(axes[0], states):
        image = ax.imshow(means[state].to_numpy().reshape(task.side, task.side), cmap="viridis", vmin=0,
                          vmax=max(means.max(), 1), interpolation="nearest")
        draw_blocks(ax, task)
        ax.set_title(f"{state}: mean commit sub-step per cell")
    fig.colorbar(image, ax=axes[0], label=f"global sub-step ({width} × ACT step + sub-step)", shrink=0.9)
    shown = table[table["open"]] if "open" in table else table
    commit_ax, flips_ax = axes[1][:2]
    for extra in [*axes[0][len(states):], *axes[1][2:]]:
        extra.axis("off")
    for state in states:
        cells, colour = shown[shown["state"] == state], STATE_COLOURS.get(state)
        commit_ax.hist(cells["commit"], bins=np.arange(total + 1) - 0.5, histtype="step", density=True,
                       color=colour, label=state)
        flips_ax.hist(cells["flips"], bins=np.arange(cells["flips"].max() + 2) - 0.5, histtype="step",
                      density=True, color=colour, label=state)
    for boundary in range(width, total, width):
        commit_ax.axvline(boundary - 0.5, color="#9e9e9e", linewidth=0.5)
    commit_ax.set_xlabel("commit sub-step (grey lines: ACT step boundaries)")
    flips_ax.set_xlabel("flips (changes of the decoded value) per cell")
    for ax in (commit_ax, flips_ax):
        ax.set_ylabel(f"share of {'open ' if 'open' in table else ''}cells")
        ax.legend()
    caption = (f"{table['puzzle'].nunique()} puzzles; commit = first sub-step from which the decoded value is final "
               "(lm_head argmax)")
    fig.suptitle(f"{title}\n{caption}" if title else caption)
    return save_figure(fig, path)

