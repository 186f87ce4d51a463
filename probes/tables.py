"""Tables from many checkpoints: the injection ablation and the level-token control (docs/analyses.md).

Every checkpoint is evaluated as the paper does (exact accuracy on the test split after
halt_max_steps segments); rows are grouped by task and variant, mean ± std over seeds.
"""
from __future__ import annotations

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


def find_checkpoints(directory: Path) -> list[Path]:
    """Every model under ``directory``: the ``latest`` checkpoint of each training run, plus loose
    ``.safetensors`` files that are not inside a run's ``checkpoints/`` history."""
    directory = Path(directory)
    runs = [p.parent for p in directory.rglob("latest")]
    found = [run / "latest" / "model.safetensors" for run in runs]
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


def grouped_table(rows: pd.DataFrame, variants: Sequence[str]) -> pd.DataFrame:
    """Variants x tasks: exact accuracy in percent, mean ± std over checkpoints (seeds), and n."""
    rows = rows[rows["variant"].isin(variants)]
    stats = rows.groupby(["variant", "task"])["exact_accuracy"].agg(["mean", "std", "count"]).reset_index()
    stats["cell"] = [f"{100 * m:.1f} ± {100 * (s if s == s else 0):.1f} (n={n})"
                     for m, s, n in zip(stats["mean"], stats["std"], stats["count"])]
    table = stats.pivot(index="variant", columns="task", values="cell").reindex(
        [v for v in variants if v in set(stats["variant"])])
    return table.reset_index()


def injection_table(rows: pd.DataFrame) -> pd.DataFrame:
    return grouped_table(rows, (*INJECTION_PRESETS, "hrm"))


def level_token_table(rows: pd.DataFrame) -> pd.DataFrame:
    return grouped_table(rows, LEVEL_TOKEN_PRESETS)
