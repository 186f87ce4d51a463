"""Linear probes on z_L / z_H: what a state encodes beyond what the logit lens reads out of it.

A probe is a logistic regression from one cell's state vector (``d_model`` numbers) to a per-cell
target. It is fit on the cells of some puzzles and scored on the cells of *other* puzzles (the
split is by puzzle, so no puzzle has cells on both sides), at the last update of each state in each
ACT step. Targets (``TARGETS``):

- ``answer``: the cell's solution token. Compared with the logit lens at the same site, this asks
  whether a state already carries the answer before ``lm_head`` reads it out (z_L decodes to the
  undecided token at many sub-steps; does it know the digit anyway?).
- ``correct``: "is this cell already correct": the lens decode of this state equals the label.
- ``will_change``: the lens decode of this state differs from the final z_H decode (the answer).

Only the cells a puzzle leaves open are used (cells whose input token is one that labels ever
replace: Sudoku blanks, open maze cells); given cells would make every target trivial.

Probes are fit with full-batch L-BFGS in torch on standardised features (a few lines; scikit-learn
would add scipy for one estimator).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from air_interp.errors import AirInterpError
from air_interp.model import HookedAIR
from air_interp.trace import trace_batches

from .lens import check_states, model_states, step_end_sites
from air_interp.output import save_figure, styled

Target = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
TARGETS: dict[str, Target] = {
    "answer": lambda lens, final, labels: labels,
    "correct": lambda lens, final, labels: lens == labels,
    "will_change": lambda lens, final, labels: lens != final,
}


@dataclass
class ProbeSite:
    """States of the open cells at one hook point: ``features[i]`` is cell ``cells[i]``."""

    state: str
    step: int
    name: str
    features: np.ndarray  # (open cells, d_model) float32
    lens: np.ndarray  # (open cells,) decoded token at this site


@dataclass
class ProbeData:
    sites: list[ProbeSite]
    puzzle: np.ndarray  # (open cells,) the puzzle each open cell belongs to
    labels: np.ndarray  # (open cells,) solution token
    final: np.ndarray  # (open cells,) final z_H decode


def open_cells(inputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cells whose input token is one the labels ever replace (Sudoku blanks, open maze cells)."""
    replaced = np.unique(inputs[inputs != labels])
    return np.isin(inputs, replaced)


def collect(model: HookedAIR, inputs: np.ndarray, labels: np.ndarray, states: Optional[Sequence[str]] = None,
            steps: Optional[Sequence[int]] = None, batch_size: int = 64, progress: bool = True,
            puzzle_identifiers: Optional[np.ndarray] = None) -> ProbeData:
    """Run rollouts and keep, for each state (default: every state) and ACT step, the open cells'
    state vectors."""
    states = model_states(model) if states is None else check_states(model, states)
    inputs, labels = np.asarray(inputs), np.asarray(labels)
    mask = open_cells(inputs, labels)
    offsets = np.concatenate([[0], np.cumsum(mask.sum(-1))])
    d_model, prefix = model.cfg.d_model, model.cfg.prefix_len
    sites = [ProbeSite(state, step, name, np.zeros((offsets[-1], d_model), np.float32),
                       np.zeros(offsets[-1], np.uint8))
             for state in states for step, name in step_end_sites(model, state, steps)]
    final = np.zeros(offsets[-1], np.uint8)
    output, last_step = model.cfg.output_state, model.cfg.halt_max_steps - 1
    kept = {site.name for site in sites} | {name for _, name in step_end_sites(model, output, [last_step])}
    batch = {"inputs": inputs} if puzzle_identifiers is None else {"inputs": inputs,
                                                                    "puzzle_identifiers": puzzle_identifiers}
    for rows, part in trace_batches(model, batch, [*dict.fromkeys([*states, output])], batch_size=batch_size,
                                    progress=progress, at=lambda name, site: site.name(f"hook_{site.state}") in kept,
                                    desc="probe states"):
        open_here = torch.as_tensor(mask[rows])
        cells = slice(offsets[rows.start], offsets[rows.stop])
        for site in sites:
            site.features[cells] = part.states(site.state, step=site.step)[-1][:, prefix:][open_here].float().numpy()
            site.lens[cells] = part.decode(site.state, step=site.step)[-1][open_here].numpy()
        final[cells] = part.decode(output, step=last_step)[-1][open_here].numpy()
    puzzle = np.repeat(np.arange(len(inputs)), mask.sum(-1))
    return ProbeData(sites, puzzle, labels[mask], final)


def fit_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
              weight_decay: float = 1e-3, max_iter: int = 200) -> tuple[float, float]:
    """Multinomial logistic regression (L2 ``weight_decay``); returns (train, held-out) accuracy."""
    classes, y_train_idx = np.unique(y_train, return_inverse=True)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_fit = torch.as_tensor((x_train - mean) / std, dtype=torch.float32)
    y_fit = torch.as_tensor(y_train_idx)
    linear = torch.nn.Linear(x_fit.shape[1], len(classes))
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    optimiser = torch.optim.LBFGS(linear.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(x_fit), y_fit) + weight_decay * linear.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad(), torch.inference_mode(False):
        optimiser.step(closure)

    def accuracy(x: np.ndarray, y: np.ndarray) -> float:
        with torch.no_grad():
            scores = linear(torch.as_tensor((x - mean) / std, dtype=torch.float32))
        return float((classes[scores.argmax(-1).numpy()] == y).mean())

    return accuracy(x_train, y_train), accuracy(x_test, y_test)


def held_out_count(n_puzzles: int, test_fraction: float) -> int:
    """How many of ``n_puzzles`` puzzles the probes hold out (at least one)."""
    return max(1, round(test_fraction * n_puzzles))


def linear_probes(data: ProbeData, targets: Sequence[str] = tuple(TARGETS), test_fraction: float = 0.25,
                  seed: int = 0, weight_decay: float = 1e-3) -> pd.DataFrame:
    """Fit one probe per target x site; one row each with train / held-out accuracy and baselines.

    ``majority`` is the held-out accuracy of always answering the train set's commonest class;
    ``lens`` (``answer`` only) is the logit lens's accuracy on the same held-out cells."""
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        raise AirInterpError(f"unknown probe target(s) {unknown}; choose from {', '.join(TARGETS)}")
    puzzles = np.unique(data.puzzle)
    held_out = np.random.default_rng(seed).permutation(puzzles)[:held_out_count(len(puzzles), test_fraction)]
    test = np.isin(data.puzzle, held_out)
    if test.all() or not test.any():
        raise AirInterpError("linear probes need at least two puzzles with open cells")
    rows = []
    for target in targets:
        for site in data.sites:
            y = np.asarray(TARGETS[target](site.lens, data.final, data.labels)).astype(np.int64)
            train_acc, test_acc = fit_probe(site.features[~test], y[~test], site.features[test], y[test],
                                            weight_decay)
            values, counts = np.unique(y[~test], return_counts=True)
            rows.append({
                "target": target, "state": site.state, "step": site.step, "hook": site.name,
                "train_accuracy": train_acc, "test_accuracy": test_acc,
                "majority": float((y[test] == values[counts.argmax()]).mean()),
                "lens": float((site.lens[test] == data.labels[test]).mean()) if target == "answer" else np.nan,
                "train_cells": int((~test).sum()), "test_cells": int(test.sum()),
                "test_puzzles": len(held_out),
            })
    return pd.DataFrame(rows)


@styled
def plot_linear_probes(table: pd.DataFrame, path: Path, title: str = "") -> list[Path]:
    """Held-out probe accuracy per ACT step, one panel per target, z_L and z_H, with baselines."""
    targets = list(dict.fromkeys(table["target"]))
    fig, axes = plt.subplots(1, len(targets), figsize=(2.9 * len(targets) + 0.4, 3.4), squeeze=False,
                             layout="constrained")
    colours = {"z_H": "#c62828", "z_L": "#1565c0"}
    for ax, target in zip(axes[0], targets):
        for state, group in table[table["target"] == target].groupby("state", sort=False):
            colour = colours.get(state)
            ax.plot(group["step"], group["test_accuracy"], marker="o", markersize=3, color=colour,
                    label=f"{state} probe")
            ax.plot(group["step"], group["majority"], linestyle=":", color=colour, label=f"{state} majority class")
            if group["lens"].notna().any():
                ax.plot(group["step"], group["lens"], linestyle="--", color=colour, label=f"{state} logit lens")
        ax.set_title(f"target: {target.replace('_', ' ')}")
        ax.set_xlabel("ACT step (last update of the state)")
        ax.set_ylabel("held-out accuracy (open cells)")
        ax.set_ylim(0, 1.02)
    handles = {label: handle for ax in axes[0] for handle, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=3, frameon=False)
    held_out = int(table["test_puzzles"].iloc[0]) if len(table) else 0
    caption = f"logistic-regression probes, accuracy on {held_out} held-out puzzles"
    fig.suptitle(f"{title}\n{caption}" if title else caption)
    return save_figure(fig, path)
