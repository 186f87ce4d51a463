"""Freeze: hold a state (z_H, z_L, or any subset of a model's states) at its reset value for the
whole rollout and watch the others.

For every pair of consecutive updates of an observed state we count, per puzzle, the decoded
tokens that changed, the *mask flips* (a cell switches between undecided and decided) and the
*content changes* (a token changed without a mask flip). Consecutive updates are the state's own
updates (z_L at L sub-steps, z_H at H sub-steps). Where the sequence starts is ``count_from``:

* ``"published"`` (default, the public scripts and the paper's totals): each state's value at the
  end of the first sub-step, so z_L is counted from its first update and z_H from its reset
  value. The two states are counted inconsistently (a known defect of the public scripts).
* ``"reset"``: both from their reset values; ``"first_update"``: both from their first update.

Final exact accuracy is always read from the decode of the output state (z_H; z_L in a one-state
model) after the last sub-step (the public scripts read the
"normal" accuracy from z_L in one place; docs/analyses.md).

The freeze follows whatever variant the model is (the public scripts replay one hard-coded update
rule, and their "symmetric" runs load a (2, 1) model; docs/analyses.md): it is a hook on the
model's own state hook points that returns ``hook.previous``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from air_interp.errors import AirInterpError
from air_interp.model import HookedAIR
from air_interp.tasks import Task, get_task

from .lens import check_states, model_states, trace_states
from air_interp.output import save_figure, styled

COUNTS = ("changes", "mask_flips", "content_changes")
COUNT_STARTS = ("published", "reset", "first_update")


def first_counted_update(model: HookedAIR, state: str, count_from: str) -> int:
    """Index into a state's trace (0 = reset, 1 = first update) where its counted sequence starts."""
    if count_from not in COUNT_STARTS:
        raise AirInterpError(f"count_from must be one of {', '.join(COUNT_STARTS)}, got {count_from!r}")
    if count_from == "published":  # the value at the end of sub-step 0: updated there only if its kind runs first
        return int(model.cfg.schedule[0].writes == state)
    return int(count_from == "first_update")


def change_counts(tokens: np.ndarray, task: Task) -> dict[str, np.ndarray]:
    """Counts between consecutive decoded updates; ``tokens`` (puzzles, updates + 1, seq_len) -> (puzzles, updates)."""
    previous, current = tokens[:, :-1], tokens[:, 1:]
    changed = previous != current
    flips = task.undecided_mask(previous) != task.undecided_mask(current)
    return {"changes": changed.sum(-1), "mask_flips": flips.sum(-1), "content_changes": (changed & ~flips).sum(-1)}


def frozen_states(model: HookedAIR, setting: Union[str, Sequence[str]]) -> tuple[str, ...]:
    """The states a freeze setting holds: ``"none"`` -> (), ``"z_H"`` -> ('z_H',), ``"z_H+z_L3"`` or
    ``["z_H", "z_L3"]`` -> both; a one-line AirInterpError for a state the model does not have."""
    if isinstance(setting, str):
        setting = [] if setting == "none" else setting.split("+")
    states = check_states(model, list(setting), "state to freeze")
    if len(set(states)) < len(states):
        raise AirInterpError(f"a state is named twice in the freeze setting {'+'.join(states)!r}")
    return states


def setting_name(frozen: Sequence[str]) -> str:
    """How tables name a freeze setting: ``none``, ``z_H``, ``z_H+z_L3``."""
    return "+".join(frozen) or "none"


def freeze(model: HookedAIR, inputs: np.ndarray, labels: Optional[np.ndarray],
           state: Union[str, Sequence[str]] = "z_H", batch_size: int = 64, progress: bool = True,
           count_from: str = "published", puzzle_identifiers: Optional[np.ndarray] = None
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run rollouts with ``state`` frozen ("z_H", "z_L", "none", any state of the model, or several:
    "z_H+z_L3" or a list); counts start as ``count_from`` says.

    Returns ``(updates, puzzles)``: a tidy table with one row per puzzle x observed state x update
    (counts against the previous update), and one row per puzzle with the totals per observed state
    and the final exact accuracy from the output state.
    """
    frozen = frozen_states(model, state)
    setting = setting_name(frozen)
    if set(frozen) == set(model_states(model)):
        raise AirInterpError(f"freezing {setting} leaves no state to observe")
    task = get_task(model.cfg.task)
    traces = trace_states(model, inputs, freeze=frozen, batch_size=batch_size, progress=progress,
                          puzzle_identifiers=puzzle_identifiers)
    width = model.cfg.sub_steps
    rows, totals = [], {}
    for observed in model_states(model):
        if observed in frozen:
            continue
        trace = traces[observed]
        start = first_counted_update(model, observed, count_from)
        counts = change_counts(trace.tokens[:, start:], task)
        n_puzzles, n_updates = counts["changes"].shape
        index = np.tile(trace.sub_index[start + 1:], n_puzzles)
        rows.append(pd.DataFrame({
            "freeze": setting, "observed": observed,
            "puzzle": np.repeat(np.arange(n_puzzles), n_updates),
            "update": np.tile(np.arange(start + 1, start + n_updates + 1), n_puzzles),
            "index": index, "step": index // width, "sub": index % width,
            **{name: values.reshape(-1) for name, values in counts.items()},
        }))
        for name, values in counts.items():
            totals[f"{observed}_{name}"] = values.sum(-1)
    puzzles = pd.DataFrame({"freeze": setting, "puzzle": np.arange(len(inputs)), **totals})
    if labels is not None:
        final = traces[model.cfg.output_state].tokens[:, -1]
        puzzles["exact"] = (final == np.asarray(labels)).all(-1)
        puzzles["cell_accuracy"] = (final == np.asarray(labels)).mean(-1)
    return pd.concat(rows, ignore_index=True), puzzles


def freeze_table(puzzles: pd.DataFrame) -> pd.DataFrame:
    """The freeze table: per run setting, mean / std / sem over puzzles (or over runs, when a
    ``run`` column holds several checkpoints) of every total, and exact accuracy."""
    value_columns = [c for c in puzzles if c.endswith(COUNTS) or c == "exact"]
    if "run" in puzzles and puzzles["run"].nunique() > 1:
        puzzles = puzzles.groupby(["freeze", "run"])[value_columns].mean().reset_index()
    stats = puzzles.groupby("freeze", sort=False)[value_columns].agg(["mean", "std", "sem"])
    stats.columns = [f"{column}_{stat}" for column, stat in stats.columns]
    return stats.reset_index()


def freeze_matrix(puzzles: pd.DataFrame, count: str = "content_changes") -> pd.DataFrame:
    """What freezing each state does to the others: one row per run, frozen setting and observed
    state, with ``ratio`` = the observed state's mean ``count`` with the setting frozen over its mean
    in the normal rollout (1: unaffected, 0: it stops changing too), and the setting's final
    ``exact`` and ``cell_accuracy`` beside the normal rollout's (``exact_normal``,
    ``cell_accuracy_normal``): a state whose freeze leaves the accuracy intact is redundant. Needs the ``"none"`` setting among ``puzzles``'."""
    if "none" not in set(puzzles["freeze"]):
        raise AirInterpError("the freeze matrix compares with the normal rollout: run the 'none' setting too")
    puzzles = puzzles if "run" in puzzles else puzzles.assign(run=0)
    observed = [column.removesuffix(f"_{count}") for column in puzzles if column.endswith(f"_{count}")]
    rows = []
    for run, per_run in puzzles.groupby("run", sort=False):
        normal = per_run[per_run["freeze"] == "none"]
        for setting, group in per_run[per_run["freeze"] != "none"].groupby("freeze", sort=False):
            for state in observed:
                values = group[f"{state}_{count}"]
                if values.isna().all():  # a frozen state is not observed
                    continue
                baseline = normal[f"{state}_{count}"].mean()
                rows.append({"run": run, "freeze": setting, "observed": state, "count": count,
                             "frozen_mean": values.mean(), "normal_mean": baseline,
                             "ratio": values.mean() / baseline if baseline else np.nan,
                             **{f"{accuracy}{suffix}": part[accuracy].mean() if accuracy in part else np.nan
                                for accuracy in ("exact", "cell_accuracy")
                                for suffix, part in (("", group), ("_normal", normal))}})
    return pd.DataFrame(rows)


@styled
def plot_freeze_matrix(matrix: pd.DataFrame, path: Path, title: str = "") -> list[Path]:
    """The freeze matrix as a grid: frozen state (rows) x observed state (columns), each cell the
    content-change ratio (mean over runs; ± their std with several runs), and the final exact
    accuracy of each frozen setting beside the normal rollout's."""
    mean = matrix.groupby(["freeze", "observed"], sort=False)["ratio"].mean().unstack()
    spread = matrix.groupby(["freeze", "observed"], sort=False)["ratio"].std().unstack()
    exact = matrix.groupby("freeze", sort=False)[["exact", "exact_normal"]].mean()
    fig, ax = plt.subplots(figsize=(1.6 * len(mean.columns) + 3.2, 1.0 * len(mean) + 1.6), layout="constrained")
    image = ax.imshow(mean.to_numpy(dtype=float), cmap="RdBu", vmin=0, vmax=2, aspect="auto")
    for i, setting in enumerate(mean.index):
        for j, observed in enumerate(mean.columns):
            value, std = mean.loc[setting, observed], spread.loc[setting, observed]
            text = "frozen" if np.isnan(value) else f"{value:.2f}" + (f"\n± {std:.2f}" if std == std else "")
            ax.text(j, i, text, ha="center", va="center", fontsize=9)
    ax.set_xticks(range(len(mean.columns)), [f"{state} observed" for state in mean.columns])
    ax.set_yticks(range(len(mean)), [f"{setting} frozen\nexact {exact.loc[setting, 'exact']:.2f}"
                                     for setting in mean.index])
    fig.colorbar(image, ax=ax, label="content changes: frozen / normal rollout")
    normal = exact["exact_normal"].mean()
    fig.suptitle(f"{title}\nnormal rollout exact {normal:.2f}" if title else f"normal rollout exact {normal:.2f}")
    return save_figure(fig, path)


def series(updates: pd.DataFrame, count: str = "content_changes") -> pd.DataFrame:
    """Per freeze setting, observed state and global sub-step: mean, std, sem over puzzles."""
    grouped = updates.groupby(["freeze", "observed", "index"], sort=False)[count]
    return grouped.agg(["mean", "std", "sem"]).reset_index()


@styled
def plot_freeze(updates: pd.DataFrame, path: Path, title: str = "", count: str = "content_changes") -> list[Path]:
    """Figures 6-7: per-update content changes of each observed state (one panel each: z_L, z_H,
    ...), normal vs frozen others; mean over puzzles with a ±1 standard-error band."""
    curves = series(updates, count)
    observed_states = sorted(curves["observed"].unique(), key=lambda state: (state.startswith("z_H"), state))
    fig, axes = plt.subplots(1, len(observed_states), figsize=(4 * len(observed_states), 3.3), sharex=True,
                             squeeze=False, layout="constrained")
    for ax, observed in zip(axes[0], observed_states):
        for setting, group in curves[curves["observed"] == observed].groupby("freeze", sort=False):
            label = "normal rollout" if setting == "none" else f"{setting} frozen at reset"
            ax.plot(group["index"], group["mean"], marker=".", markersize=3, linewidth=1, label=label)
            ax.fill_between(group["index"], group["mean"] - group["sem"], group["mean"] + group["sem"], alpha=0.25)
        ax.set_title(f"{observed}: {count.replace('_', ' ')} per update")
        ax.set_xlabel("global sub-step (6 × ACT step + sub-step)")
        ax.set_ylabel("cells changed (of the grid)")
        ax.set_ylim(bottom=0)
        if ax.lines:
            ax.legend()
    fig.suptitle(f"{title}\nmean over puzzles; band: ±1 standard error" if title else
                 "mean over puzzles; band: ±1 standard error")
    return save_figure(fig, path)


def run_freeze(models: Sequence[HookedAIR], inputs: np.ndarray, labels: Optional[np.ndarray],
               states: Optional[Sequence[Union[str, Sequence[str]]]] = None, batch_size: int = 64,
               progress: bool = True, count_from: str = "published", puzzle_identifiers: Optional[np.ndarray] = None
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every freeze setting (default: none, then each state of the model alone) for every model
    (seed); tables carry ``run`` (the model's position)."""
    all_updates, all_puzzles = [], []
    for run, model in enumerate(models):
        for state in ("none", *model_states(model)) if states is None else states:
            updates, puzzles = freeze(model, inputs, labels, state, batch_size, progress, count_from,
                                      puzzle_identifiers)
            all_updates.append(updates.assign(run=run))
            all_puzzles.append(puzzles.assign(run=run))
    return pd.concat(all_updates, ignore_index=True), pd.concat(all_puzzles, ignore_index=True)
