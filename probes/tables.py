"""Tables from many checkpoints: the injection ablation and the level-token control (docs/analyses.md).

Every checkpoint is evaluated as the paper does (exact accuracy on the test split after
halt_max_steps segments); rows are grouped by task and variant, mean ± std over seeds, with the
number of seeds in every cell and the paper's number beside ours. A trained sweep's published runs
(``air-interp sweep``) carry that evaluation in their cards, so their tables need no rollout; the
specialisation table adds the claim metrics of ``air-interp emergence`` on each final model.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from air_interp.checkpoints import load_model
from air_interp.config import INJECTION_PRESETS, LEVEL_TOKEN_PRESETS
from air_interp.data import load_dataset
from air_interp.defaults import default_dataset
from air_interp.errors import AirInterpError
from air_interp.evaluate import evaluate
from air_interp.runs import LATEST, MODEL_FILE

from .emergence import run_emergence

# The paper's exact accuracy (%): Sudoku-Extreme and Maze-Hard (30x30), its injection table and its
# level-token table (Sudoku only).
PAPER_EXACT = {
    "sudoku": {"L_Hx": 58.7, "Lx_H": 60.0, "L_H2x": 58.6, "L2x_H": 59.1, "Lx_H2x": 59.6, "L2x_Hx": 58.6,
               "Lx_Hx": 52.1, "L2x_H2x": 50.9, "hrm": 55.0, "L2x_H2x_token_addition": 50.0,
               "L2x_H2x_token_prepend": 57.5, "L2x_H2x_token_prepend_persist": 47.8},
    "maze": {"L_Hx": 75.3, "Lx_H": 71.0, "L_H2x": 75.6, "L2x_H": 71.1, "Lx_H2x": 70.9, "L2x_Hx": 74.5,
             "Lx_Hx": 69.4, "L2x_H2x": 70.3, "hrm": 74.5},
}
PUBLISHED = "published"  # a sweep's finished runs: <sweep>/published/<run>.{safetensors,json}, logs/<run>/


def find_checkpoints(directory: Path) -> list[Path]:
    """Every model under ``directory``: the ``latest`` checkpoint of each training run, plus loose
    ``.safetensors`` files that are not inside a run's ``checkpoints/`` history."""
    directory = Path(directory)
    runs = [p.parent for p in directory.rglob(LATEST)]
    found = [run / LATEST / MODEL_FILE for run in runs]
    found += [p for p in directory.rglob("*.safetensors")
              if not any(run in p.parents for run in runs)]
    if not found:
        raise AirInterpError(f"{directory}: no checkpoints found (.safetensors files or training runs)")
    return sorted(found)


def accuracy_rows(checkpoints: Sequence[Path], data: Optional[Path] = None, max_puzzles: Optional[int] = None,
                  progress: bool = True, dtype: Optional[str] = None) -> pd.DataFrame:
    """One row per checkpoint: variant, task, exact and cell accuracy on the test split, and the
    forward dtype it was evaluated in (``dtype``: ``auto``, ``float32``, ``bfloat16``; None: its own)."""
    rows = []
    for path in tqdm(checkpoints, desc="evaluate", unit="ckpt", disable=not progress, leave=False):
        model = load_model(path, dtype=dtype)
        split = load_dataset(data or default_dataset(model.cfg.task)).split("test")
        if max_puzzles:
            split = split.take(np.arange(min(max_puzzles, len(split))))
        metrics = evaluate(model, split)
        rows.append({"checkpoint": str(path), "task": model.cfg.task, "variant": model.cfg.variant,
                     "exact_accuracy": metrics["exact_accuracy"], "accuracy": metrics["accuracy"],
                     "puzzles": metrics["count"], "forward_dtype": model.cfg.forward_dtype})
    return pd.DataFrame(rows)


def published_cards(sweep: Path) -> list[tuple[Path, dict]]:
    """(model file, card) of every published run under ``sweep`` (one sweep, or a folder of sweeps)."""
    cards = sorted(Path(sweep).rglob(f"{PUBLISHED}/*.json"))
    if not cards:
        raise AirInterpError(f"{sweep}: no published runs ({PUBLISHED}/<run>.json); air-interp sweep publishes "
                             "each run when it finishes")
    return [(card.with_suffix(".safetensors"), json.loads(card.read_text())) for card in cards]


def card_rows(cards: Sequence[tuple[Path, dict]]) -> pd.DataFrame:
    """One row per published run, from its card: the training run's own evaluation of its final
    model on the whole test split (no rollout here)."""
    return pd.DataFrame([{
        "run": card["name"], "task": card["task"], "variant": card["variant"], "seed": card["seed"],
        "steps": card["step"], "n_layers": card["training"]["n_layers"], "data": card["dataset"],
        "hours": card["training"]["hours"], "exact_accuracy": card["test"]["exact_accuracy"],
        "accuracy": card["test"]["accuracy"], "puzzles": card["test"]["count"]} for _, card in cards])


def spread(values: pd.Series, scale: float = 1.0, digits: int = 1) -> str:
    """``mean ± std (n=k)``: the standard deviation over seeds (0 for one seed, which the n shows)."""
    std = values.std() if len(values) > 1 else 0.0
    return f"{scale * values.mean():.{digits}f} ± {scale * std:.{digits}f} (n={len(values)})"


def paper_family(task: str) -> str:
    return "maze" if task.startswith("maze") else task


def grouped_table(rows: pd.DataFrame, variants: Sequence[str]) -> pd.DataFrame:
    """Variants x tasks: exact accuracy in percent, mean ± std over checkpoints (seeds) with n, and
    beside each task the paper's number (Maze-Hard's for any maze size)."""
    rows = rows[rows["variant"].isin(variants)]
    order = [v for v in variants if v in set(rows["variant"])]
    table = pd.DataFrame({"variant": order})
    for task, part in rows.groupby("task", sort=True):
        cells = part.groupby("variant")["exact_accuracy"].apply(lambda v: spread(v, 100))
        table[task] = table["variant"].map(cells).fillna("")
        paper = PAPER_EXACT.get(paper_family(str(task)), {})
        table[f"paper {paper_family(str(task))}"] = table["variant"].map(lambda v: f"{paper[v]:.1f}" if v in paper else "")
    return table


def injection_table(rows: pd.DataFrame) -> pd.DataFrame:
    return grouped_table(rows, (*INJECTION_PRESETS, "hrm"))


def level_token_table(rows: pd.DataFrame) -> pd.DataFrame:
    return grouped_table(rows, LEVEL_TOKEN_PRESETS)


def final_metrics(model_file: Path, card: dict, puzzles: int = 64, progress: bool = True) -> pd.DataFrame:
    """The emergence metrics of a published run's final model (fp32, the first ``puzzles`` test
    puzzles of its data), cached beside its log (``logs/<run>/emergence.csv``)."""
    log = model_file.parent / "logs" / card["name"]
    table = run_emergence(log, puzzles, progress=progress, dtype="float32", checkpoints=[(card["step"], model_file)])
    return table[table["train_step"] == card["step"]]


def specialisation_values(metrics: pd.DataFrame, n_layers: int) -> dict[str, float]:
    """The paper's claims as numbers: z_L / z_H undecided cells in ACT steps 1-2, how much more
    locally L attends than H at the last layer (control queries), and z_L's content changes with
    z_H frozen over normal (< 1: freezing z_H calms z_L, as in the paper)."""
    def value(metric: str, **where: object) -> float:
        rows = metrics[metrics["metric"] == metric]
        for column, wanted in where.items():
            rows = rows[rows[column] == wanted]
        return float(rows["value"].iloc[0]) if len(rows) else float("nan")

    locality = next(iter(dict.fromkeys(metrics.loc[metrics["layer"].notna(), "metric"])), "d_nbr")
    normal = value("content_changes", state="z_L", setting="normal")
    return {
        "z_L undecided": value("early_undecided_cells", state="z_L"),
        "z_H undecided": value("early_undecided_cells", state="z_H"),
        f"{locality} last layer": value(locality, setting="control", layer=n_layers - 1),
        "z_L changes, z_H frozen / normal": value("content_changes", state="z_L", setting="z_H frozen") / normal
        if normal else float("nan"),
    }


def specialisation_rows(cards: Sequence[tuple[Path, dict]], puzzles: int = 64, progress: bool = True) -> pd.DataFrame:
    """One row per published run: its card's accuracy and :func:`specialisation_values`."""
    rows = []
    for model_file, card in tqdm(cards, desc="specialisation", unit="run", disable=not progress, leave=False):
        values = specialisation_values(final_metrics(model_file, card, puzzles, progress=False),
                                       card["training"]["n_layers"])
        rows.append({"run": card["name"], "task": card["task"], "variant": card["variant"], "seed": card["seed"],
                     "exact_accuracy": card["test"]["exact_accuracy"], **values})
    return pd.DataFrame(rows)


def specialisation_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per task and variant (the injection and level-token presets, in the paper's order): every
    specialisation value as mean ± std over seeds, with n."""
    order = list(dict.fromkeys((*INJECTION_PRESETS, "hrm", *LEVEL_TOKEN_PRESETS)))
    rows = rows[rows["variant"].isin(order)].assign(rank=lambda t: t["variant"].map(order.index))
    values = [c for c in rows.columns if c not in ("run", "task", "variant", "seed", "rank")]
    out = []
    for (task, _, variant), part in rows.groupby(["task", "rank", "variant"], sort=True):
        out.append({"task": task, "variant": variant,
                    **{c: spread(part[c], 100) if c == "exact_accuracy" else spread(part[c].dropna(), digits=3)
                       for c in values}})
    return pd.DataFrame(out).rename(columns={"exact_accuracy": "exact %"})
