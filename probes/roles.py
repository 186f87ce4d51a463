"""More than two roles? What each state of a model with three or more states does, over seeds.

The AIR paper leaves open whether k > 2 latent states, each with its own invocation signal, layer
into roles or collide. For every published run of such a model (the three-state presets
``L2x_Mx_H``, ``Lx_Mx_Hx``, ``Lx_Mx_Hx_token_prepend``; TRM's hier6 too, if trained) this reads,
on the first test puzzles of the run's own data:

* **undecided**: per state, the most cells it decodes as undecided at any sub-step of ACT steps
  0-1 (the paper's picture of z_L), and the ACT step at which it holds the most;
* **locality**: the task's locality contrast (Sudoku Δnbr) between every pair of update kinds,
  first minus second (``L-M`` > 0: the L-update attends more to the query's neighbourhood than the
  M-update), per layer, on the control queries;
* **the freeze matrix**: each state held at reset in turn, the content changes of every other
  state over the normal rollout's (1: unaffected, 0: it stops too), and the exact and cell
  accuracy left: a state whose freeze leaves the accuracy intact is redundant.

One tidy row per run and quantity (:func:`role_rows`); the table (:func:`roles_table`) gives each
quantity per variant as mean ± std over seeds with n, like the paper's tables.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from air_interp.checkpoints import load_model
from air_interp.data import load_dataset
from air_interp.model import HookedAIR

from .attention import AttentionOptions, attention_contrasts, metric_columns
from .decode import DecodeResult, decode
from .emergence import EARLY_STEPS, run_dataset
from .freeze import freeze_matrix, run_freeze
from .lens import model_states
from .tables import spread

PUZZLES = 64


@dataclass
class RoleReading:
    """One model read: ``values`` (quantity, value) and the freeze matrix and decode it came from."""

    values: pd.DataFrame
    matrix: pd.DataFrame
    decoded: DecodeResult


def kind_pairs(model: HookedAIR) -> list[tuple[str, str]]:
    """Every pair of update kinds, in schedule order: ``[("L", "M"), ("L", "H"), ("M", "H")]``."""
    return list(combinations(dict.fromkeys(model.cfg.kinds), 2))


def read_roles(model: HookedAIR, inputs: np.ndarray, labels: np.ndarray, batch_size: int = 64,
               progress: bool = True) -> RoleReading:
    """Every quantity of the module docstring for one model."""
    decoded = decode(model, inputs, labels, batch_size, progress)
    values = undecided_values(model, decoded)
    values += locality_values(model, inputs, labels, progress)
    _, per_puzzle = run_freeze([model], inputs, labels, batch_size=batch_size, progress=progress)
    matrix = freeze_matrix(per_puzzle)
    for row in matrix.itertuples():
        values.append((f"{row.observed} changes, {row.freeze} frozen / normal", row.ratio))
    for accuracy in ("exact", "cell_accuracy"):
        values.append((f"{accuracy}, normal", float(matrix[f"{accuracy}_normal"].iloc[0])))
        settings = matrix.groupby("freeze", sort=False)[accuracy].first()
        values += [(f"{accuracy}, {setting} frozen", value) for setting, value in settings.items()]
    return RoleReading(pd.DataFrame(values, columns=["quantity", "value"]), matrix, decoded)


def undecided_values(model: HookedAIR, decoded: DecodeResult) -> list[tuple[str, float]]:
    """Per state: most undecided cells in ACT steps 0-1 (mean over puzzles) and the ACT step of its peak."""
    cfg = model.cfg
    grids = decoded.grids.reshape(len(decoded.grids), cfg.halt_max_steps, cfg.sub_steps, len(decoded.states), -1)
    cells = decoded.task.undecided_mask(grids).sum(-1).max(2)  # (puzzles, ACT steps, states)
    values = []
    for s, state in enumerate(decoded.states):
        values.append((f"{state} undecided cells, ACT steps 0-{EARLY_STEPS - 1}", cells[:, :EARLY_STEPS, s].max(1).mean()))
        values.append((f"{state} most undecided at ACT step", float(cells[:, :, s].mean(0).argmax())))
    return values


def locality_values(model: HookedAIR, inputs: np.ndarray, labels: np.ndarray, progress: bool = True
                    ) -> list[tuple[str, float]]:
    """The task's locality contrast between every pair of update kinds, per layer (control queries)."""
    values = []
    for pair in kind_pairs(model):
        table = attention_contrasts(model, inputs, labels, AttentionOptions(kinds=pair), progress=progress)
        metric = metric_columns(table)[0]
        queries = table[table["cls"] == "control"] if (table["cls"] == "control").any() else table
        for layer, mean in queries.groupby("layer")[metric].mean().items():
            values.append((f"{metric} {'-'.join(pair)}, layer {layer}", mean))
    return values


def multi_state_runs(cards: Sequence[tuple[Path, dict]]) -> list[tuple[Path, dict, HookedAIR]]:
    """The published runs (model file, card) whose model has more than two states, with the model (fp32)."""
    runs = []
    for model_file, card in cards:
        model = load_model(model_file, dtype="float32")
        if len(model_states(model)) > 2:
            runs.append((model_file, card, model))
    return runs


def role_rows(runs: Sequence[tuple[Path, dict, HookedAIR]], puzzles: int = PUZZLES, progress: bool = True
              ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, DecodeResult]]:
    """Per run: every quantity (tidy: run, variant, seed, exact_accuracy, quantity, value), the freeze
    matrices (``run`` is the run's name) and the first seed's decode of each variant."""
    values, matrices = [], []
    decoded: dict[str, DecodeResult] = {}
    for model_file, card, model in tqdm(runs, desc="three roles", unit="run", disable=not progress, leave=False):
        test = load_dataset(run_dataset(model_file.parent / "logs" / card["name"])).split("test")
        reading = read_roles(model, test.inputs[:puzzles], test.labels[:puzzles], progress=False)
        meta = {"run": card["name"], "task": card["task"], "variant": card["variant"], "seed": card["seed"],
                "exact_accuracy": card["test"]["exact_accuracy"]}
        values.append(reading.values.assign(**meta))
        matrices.append(reading.matrix.assign(run=card["name"], variant=card["variant"]))
        decoded.setdefault(card["variant"], reading.decoded)
    columns = ["run", "task", "variant", "seed", "exact_accuracy", "quantity", "value"]
    return pd.concat(values, ignore_index=True)[columns], pd.concat(matrices, ignore_index=True), decoded


def roles_table(rows: pd.DataFrame, variants: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """Quantity x variant: mean ± std over seeds with n (test exact accuracy, from the cards, first)."""
    variants = list(dict.fromkeys(rows["variant"])) if variants is None else list(variants)
    accuracy = rows.drop_duplicates("run").assign(quantity="exact % (test split, card)",
                                                  value=lambda t: 100 * t["exact_accuracy"])
    rows = pd.concat([accuracy, rows], ignore_index=True)
    order = list(dict.fromkeys(rows["quantity"]))
    table = rows.groupby(["quantity", "variant"], sort=False)["value"].apply(
        lambda v: spread(v.dropna(), digits=1 if v.name[0].startswith("exact %") else 3)).unstack()
    table = table.reindex(index=order, columns=[v for v in variants if v in table.columns])
    return table.fillna("").reset_index().rename_axis(columns=None)
