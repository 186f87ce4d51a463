"""Probes along training: the paper's claim metrics on every saved checkpoint of training runs.

The paper looks at final checkpoints only; this probe asks *when* the two roles appear. Every
checkpoint ``<run>/checkpoints/step_<N>/model.safetensors`` is run on the same test puzzles
through the probes themselves (so each number equals what that probe reports for that
checkpoint), giving one tidy row per metric:

* ``exact`` (z_H, per ACT step): exact accuracy of the z_H decode at the end of the ACT step;
* ``undecided_cells`` (every state, per ACT step): cells the state decodes as undecided (Sudoku
  BLANK, maze PAD), the most at any sub-step of the ACT step, mean over puzzles;
  ``undecided_open`` the same as a fraction of the open cells (input differs from the label);
  ``early_undecided_cells``: the most at any sub-step of ACT steps 0-1, the paper's picture;
* ``content_changes`` / ``mask_flips`` (observed state, ``setting`` normal or another state
  frozen): the freeze probe's totals per puzzle, mean over puzzles; ``exact_final`` its accuracy;
* the attention contrasts (``d_nbr``, ``d_ent``, ``d_viol`` or the maze's) of the first L- against
  the first H-update, per layer and query class (``setting``), mean over query rows.

A run fine-tuned from other weights (``train --init-from``) starts its curve at step 0 with those
weights, measured on the run's own data, when they are at hand.

Measurements are cached per run in ``<run>/emergence.csv`` (keyed by the checkpoint's SHA-256, the
dataset's path and a digest of its content, the number of puzzles and the forward dtype), so a
rerun measures only new checkpoints, a run can be watched while it trains, new data at the same
path is measured again, and a run directory whose checkpoints are gone (a committed log) still
draws. The runs' combined table and figure (``air-interp emergence --out``) are
``emergence_runs.*``, a name no cache has: no output may resolve to a run's cache.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from air_interp.checkpoints import load_model
from air_interp.data import load_dataset
from air_interp.data.dataset import dataset_digest
from air_interp.errors import AirInterpError
from air_interp.io import atomic_path, sha256
from air_interp.model import HookedAIR
from air_interp.output import save_figure, styled
from air_interp.runs import CHECKPOINTS, CONFIG_FILE, EMERGENCE_FILE, init_checkpoint, run_checkpoints
from air_interp.tasks import get_task

from .attention import attention_contrasts, metric_columns
from .decode import decode
from .freeze import run_freeze
from .lens import model_states

if TYPE_CHECKING:
    from matplotlib.typing import ColorType

CACHE = EMERGENCE_FILE
EARLY_STEPS = 2  # ACT steps 0 and 1: where the paper shows z_L holding cells undecided
KEY = ["train_step", "sha256", "data", "data_sha256", "puzzles", "forward_dtype"]
COLUMNS = ["metric", "state", "setting", "act_step", "layer", "value"]
UNKNOWN_DIGEST = ""  # data_sha256 of rows cached before the digest was recorded
COMBINED = "emergence_runs"  # the combined table and figure of several runs (emergence --out DIR)
COMBINED_FILES = tuple(f"{COMBINED}.{suffix}" for suffix in ("csv", "png", "pdf"))


def is_cache(path: Path) -> bool:
    """Whether ``path`` (symlinks resolved) is a run's emergence cache: a file named ``emergence.csv``
    in a training run's folder (its ``config.json``), or one that holds our cache's columns."""
    real = Path(path).resolve()
    if real.name != CACHE:
        return False
    if (real.parent / CONFIG_FILE).is_file() or (real.parent / CHECKPOINTS).is_dir():
        return True
    try:
        with real.open() as handle:
            header = handle.readline().strip().split(",")
    except OSError:
        return False
    return set(KEY[:3]) <= set(header)


def check_outputs_not_caches(outputs: Sequence[Path]) -> None:
    """No output is (or resolves to) a run's emergence cache: writing one would lose its measurements."""
    for output in outputs:
        if is_cache(output):
            where = "is" if Path(output).resolve() == Path(output).absolute() else f"resolves to {Path(output).resolve()},"
            raise AirInterpError(f"{output} {where} a run's emergence cache ({CACHE}, its measurements); "
                                 "refusing to write over it, choose another --out")


def combined_outputs(out: Path) -> list[Path]:
    """The files ``air-interp emergence --out OUT`` writes (checked before any measurement)."""
    outputs = [Path(out) / name for name in COMBINED_FILES]
    check_outputs_not_caches(outputs)
    return outputs


def write_emergence(table: pd.DataFrame, out: Path, title: str = "") -> list[Path]:
    """The combined table (``emergence_runs.csv``) and figure (``.png``, ``.pdf``) in the folder ``out``."""
    combined_outputs(out)  # again: nothing may have moved in while we measured
    from air_interp.output import write_table

    return write_table(table, Path(out) / COMBINED, ["csv"]) + plot_emergence(table, Path(out) / COMBINED, title)


def _row(metric: str, value: float, state: str = "", setting: str = "", act_step: float = np.nan,
         layer: float = np.nan) -> dict:
    return {"metric": metric, "state": state, "setting": setting, "act_step": act_step, "layer": layer,
            "value": float(value)}


def decode_metrics(model: HookedAIR, inputs: np.ndarray, labels: np.ndarray, batch_size: int = 64,
                   progress: bool = True) -> list[dict]:
    """Exact accuracy after each ACT step and undecided cells per ACT step, from the decode probe."""
    cfg, task = model.cfg, get_task(model.cfg.task)
    result = decode(model, inputs, labels, batch_size, progress)
    grids, states = result.grids, result.states  # grids: (puzzles, sub-steps, state, cells)
    per_step = grids.reshape(len(grids), cfg.halt_max_steps, cfg.sub_steps, len(states), -1)
    undecided = task.undecided_mask(per_step)
    open_cells = np.asarray(inputs) != np.asarray(labels)
    cells = undecided.sum(-1).max(2)  # (puzzles, ACT steps, state): the most at any sub-step
    open_share = (undecided & open_cells[:, None, None, None]).sum(-1).max(2) / np.maximum(
        open_cells.sum(-1), 1)[:, None, None]
    rows = []
    output = states.index(cfg.output_state)
    for step in range(cfg.halt_max_steps):
        exact = (per_step[:, step, -1, output] == np.asarray(labels)).all(-1).mean()
        rows.append(_row("exact", exact, cfg.output_state, act_step=step))
        for s, state in enumerate(states):
            rows.append(_row("undecided_cells", cells[:, step, s].mean(), state, act_step=step))
            rows.append(_row("undecided_open", open_share[:, step, s].mean(), state, act_step=step))
    for s, state in enumerate(states):
        rows.append(_row("early_undecided_cells", cells[:, :EARLY_STEPS, s].max(1).mean(), state))
    return rows


def freeze_metrics(model: HookedAIR, inputs: np.ndarray, labels: np.ndarray, batch_size: int = 64,
                   progress: bool = True) -> list[dict]:
    """The freeze probe's totals (published counting start), normal and with each state frozen."""
    _, per_puzzle = run_freeze([model], inputs, labels, batch_size=batch_size, progress=progress)
    rows = []
    for freeze, group in per_puzzle.groupby("freeze", sort=False):
        setting = "normal" if freeze == "none" else f"{freeze} frozen"
        for state in model_states(model):
            if state == freeze:
                continue
            for count in ("content_changes", "mask_flips"):
                rows.append(_row(count, group[f"{state}_{count}"].mean(), state, setting))
        rows.append(_row("exact_final", group["exact"].mean(), model.cfg.output_state, setting))
    return rows


def attention_metrics(model: HookedAIR, inputs: np.ndarray, labels: np.ndarray, batch_size: int = 16,
                      progress: bool = True) -> list[dict]:
    """Mean attention contrasts per layer and query class (and over all queries)."""
    table = attention_contrasts(model, inputs, labels, batch_size=batch_size, progress=progress)
    rows = []
    for cls, part in [("all", table), *table.groupby("cls")]:
        means = part.groupby("layer")[metric_columns(table)].mean()
        for layer, values in means.iterrows():
            rows += [_row(metric, value, setting=cls, layer=layer) for metric, value in values.items()]
    return rows


def checkpoint_metrics(model: HookedAIR, inputs: np.ndarray, labels: np.ndarray, batch_size: int = 64,
                       progress: bool = True) -> pd.DataFrame:
    """Every emergence metric of one model on ``inputs`` (see the module docstring)."""
    rows = decode_metrics(model, inputs, labels, batch_size, progress)
    rows += freeze_metrics(model, inputs, labels, batch_size, progress)
    rows += attention_metrics(model, inputs, labels, min(batch_size, 16), progress)
    return pd.DataFrame(rows, columns=COLUMNS)


def run_dataset(run: Path) -> Path:
    """The dataset a training run was trained on (from its ``config.json``)."""
    config = run / CONFIG_FILE
    try:
        return Path(json.loads(config.read_text())["train"]["data"])
    except (OSError, KeyError, json.JSONDecodeError) as err:
        raise AirInterpError(f"{run}: not a training run of ours (cannot read its dataset from {config}: {err})") from None


def read_cache(run: Path) -> pd.DataFrame:
    """The run's cached measurements (none when there is no cache, or one of an older layout)."""
    path = run / CACHE
    table = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"data_sha256": str}) \
        if path.is_file() else None
    if table is not None and "data_sha256" not in table.columns:  # cached before the digest: unknown data
        table.insert(table.columns.get_loc("data") + 1 if "data" in table.columns else 0, "data_sha256",
                     UNKNOWN_DIGEST)
    if table is None or set(KEY + COLUMNS) - set(table.columns):
        return pd.DataFrame(columns=KEY + COLUMNS)
    # as measured: no state / setting is "", and an unknown digest ""
    return table.fillna({"state": "", "setting": "", "data_sha256": UNKNOWN_DIGEST})


def _write_cache(run: Path, table: pd.DataFrame) -> None:
    try:
        with atomic_path(run / CACHE) as tmp:
            table.to_csv(tmp, index=False)
    except OSError as err:
        warnings.warn(f"{run}: cannot cache the emergence table ({err}); it will be measured again")


def run_emergence(run: Path, puzzles: int = 64, data: Optional[Path] = None, batch_size: int = 64,
                  progress: bool = True, dtype: Optional[str] = None, every: int = 1,
                  measure: bool = True, checkpoints: Optional[Sequence[tuple[int, Path]]] = None) -> pd.DataFrame:
    """The emergence table of one run on ``data`` (default: the run's own) and its first ``puzzles``
    test puzzles: cached rows, plus every checkpoint not measured yet (in the forward ``dtype``:
    ``auto``, ``float32``, ``bfloat16``; None: each checkpoint's own). The cache keeps measurements
    on other data or puzzle counts beside these; a checkpoint measured again (a new dtype, or
    rewritten weights) replaces its earlier rows. With ``every`` > 1 only the checkpoints whose
    step is a multiple of it, and the latest, are measured (each costs several rollouts); with
    ``measure=False`` none is: the cached rows only. ``checkpoints`` ((step, model file) pairs)
    replaces the run's own, e.g. a published run's final model beside its log.

    Rows are keyed by the data's path and a digest of the measured puzzles (:func:`dataset_digest`):
    after the data at that path changed, every checkpoint at hand is measured again and rows of the
    old data are not returned. Rows cached before the digest was recorded count as unknown data:
    measured again where their checkpoint is at hand, returned as they are where it is not."""
    run = Path(run)
    if not run.is_dir():
        raise AirInterpError(f"{run}: no such training run directory")
    if checkpoints is None:
        start = init_checkpoint(run)  # a fine-tune's curve starts from the weights it started from
        checkpoints = ([(0, start)] if start is not None else []) + run_checkpoints(run)
    checkpoints = [(step, file) for step, file in checkpoints if step % every == 0 or (step, file) == checkpoints[-1]]
    checkpoints = checkpoints if measure else []
    table = read_cache(run)
    if not checkpoints and table.empty:
        raise AirInterpError(f"{run}: no checkpoints (checkpoints/step_*/model.safetensors) and no {CACHE}")
    dataset = data or run_dataset(run)
    inputs, labels = np.empty((0, 0)), np.empty((0, 0))
    digest: Optional[str] = None  # known when measuring: the content of the measured puzzles
    if checkpoints:
        split = load_dataset(dataset).split("test")
        inputs, labels = split.inputs[:puzzles], split.labels[:puzzles]
        puzzles = len(inputs)
        digest = dataset_digest(split, puzzles)
    for step, model_file in checkpoints:
        try:
            model = load_model(model_file, dtype=dtype)
        except AirInterpError as err:  # pruned by the trainer while we looked
            warnings.warn(f"skipping {model_file}: {err}")
            continue
        key = {"train_step": step, "sha256": sha256(model_file), "data": str(dataset), "data_sha256": digest,
               "puzzles": puzzles, "forward_dtype": model.cfg.forward_dtype}
        if (table[KEY] == pd.Series(key)).all(axis=1).any():
            continue
        measured = checkpoint_metrics(model, inputs, labels, batch_size, progress).assign(**key)[KEY + COLUMNS]
        same_measurement = (table[["train_step", "data", "puzzles"]] == pd.Series(key)[["train_step", "data", "puzzles"]]).all(axis=1)
        others = table[~same_measurement]
        table = measured if others.empty else pd.concat([others, measured], ignore_index=True)
        table = table.sort_values("train_step", kind="stable", ignore_index=True)
        _write_cache(run, table)
    on_data = table[table["data"] == str(dataset)]
    if digest is not None:  # rows measured on other content at this path are stale
        on_data = on_data[on_data["data_sha256"].isin([digest, UNKNOWN_DIGEST])]
    if on_data.empty:
        raise AirInterpError(f"{run}: no checkpoints to measure and no cached measurement on {dataset}; the cache "
                             f"holds measurements on {sorted(set(table['data']))}: pass --data")
    # a log without checkpoints draws what it has: these puzzles if measured, else the most measured
    counts = set(on_data["puzzles"])
    return on_data[on_data["puzzles"] == (puzzles if puzzles in counts else max(counts))].reset_index(drop=True)


def emergence(runs: Sequence[Path], puzzles: int = 64, data: Optional[Path] = None, batch_size: int = 64,
              progress: bool = True, dtype: Optional[str] = None, every: int = 1,
              measure: bool = True) -> pd.DataFrame:
    """The emergence tables of several runs (see :func:`run_emergence`), side by side (a ``run``
    column: the directory's name)."""
    names = [Path(run).resolve().name for run in runs]
    if len(set(names)) < len(names):
        raise AirInterpError(f"runs must have different directory names, got {names}")
    tables = [run_emergence(Path(run), puzzles, data, batch_size, progress, dtype, every, measure).assign(run=name)
              for run, name in zip(runs, names)]
    return pd.concat(tables, ignore_index=True)[["run", *KEY, *COLUMNS]]


def _select(table: pd.DataFrame, metric: str, **where) -> pd.DataFrame:
    rows = table[table["metric"] == metric]
    for column, value in where.items():
        rows = rows[rows[column] == value]
    return rows.sort_values("train_step")


def _panel(ax: plt.Axes, table: pd.DataFrame, colours: Mapping[str, ColorType], title: str, ylabel: str,
           lines: Sequence[tuple[str, str, dict]]) -> None:
    """Per run (colour) one line per ``(label, linestyle, selection)``."""
    for run, colour in colours.items():
        for label, style, where in lines:
            rows = _select(table[table["run"] == run], **where)
            if not rows.empty:
                ax.plot(rows["train_step"], rows["value"], style, color=colour, marker=".", markersize=4,
                        linewidth=1.2, label=f"{run}: {label}")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel, fontsize=8)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)


@styled
def plot_emergence(table: pd.DataFrame, path: Path, title: str = "") -> list[Path]:
    """Six panels against training step, one colour per run: accuracy, undecided cells, content
    changes of z_L and z_H (normal vs the other state frozen), and locality / entropy contrasts
    on control queries per layer."""
    runs = list(dict.fromkeys(table["run"]))
    colours = {run: plt.get_cmap("tab10")(i % 10) for i, run in enumerate(runs)}
    layers = sorted(table["layer"].dropna().unique().astype(int))
    locality = next(iter(dict.fromkeys(table.loc[table["layer"].notna(), "metric"])), "d_nbr")
    last_step = int(table["act_step"].max()) if table["act_step"].notna().any() else 0
    layer_styles = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    _panel(axes[0, 0], table, colours, "exact accuracy of z_H", "fraction of test puzzles",
           [(f"after ACT step {last_step + 1}", "-", dict(metric="exact", act_step=last_step)),
            ("after ACT step 1", "--", dict(metric="exact", act_step=0))])
    _panel(axes[0, 1], table, colours, "undecided cells in ACT steps 1-2 (most at any sub-step)",
           "cells (mean over puzzles)",
           [("z_L", "-", dict(metric="early_undecided_cells", state="z_L")),
            ("z_H", "--", dict(metric="early_undecided_cells", state="z_H"))])
    for ax, state, other in ((axes[0, 2], "z_L", "z_H"), (axes[1, 0], "z_H", "z_L")):
        _panel(ax, table, colours, f"content changes of {state} over the rollout", "changes per puzzle",
               [("normal", "-", dict(metric="content_changes", state=state, setting="normal")),
                (f"{other} frozen", "--", dict(metric="content_changes", state=state, setting=f"{other} frozen"))])
    for ax in (axes[0, 0], axes[0, 1], axes[0, 2], axes[1, 0]):  # counts and accuracies: never negative
        ax.set_ylim(bottom=0)
    # Control queries (no violated neighbour) are the paper's; early checkpoints may have none at all.
    queries = "control" if (table["setting"] == "control").any() else "all"
    titles = {locality: f"{locality.replace('d_', 'Δ')} = L minus H mass nearby, {queries} queries (> 0: L more local)",
              "d_ent": f"Δent = H minus L normalised entropy, {queries} queries"}
    for ax, (metric, panel_title) in zip(axes[1, 1:], titles.items()):
        lines = [(f"layer {layer}", layer_styles[i % len(layer_styles)], dict(metric=metric, setting=queries, layer=layer))
                 for i, layer in enumerate(layers)]
        _panel(ax, table, colours, panel_title, "mean over queries", lines)
        ax.axhline(0, color="#444444", linewidth=0.7)
    for ax in axes.flat:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="best")
    fig.suptitle(title or "Probes along training", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
