"""Halting: does the Q head know when the answer is right?

After every ACT step the model's prediction is z_H through ``lm_head`` (argmax at the content
positions: what ``act_step`` returns), and its halting head gives (q_halt, q_continue), read at the
hook ``step.{s}.hook_q``. Training pulls sigmoid(q_halt) towards "the prediction is exactly right",
so it can be read as a confidence and checked against the truth: a reliability curve (binned
sigmoid(q_halt) against the fraction right), and per puzzle the first ACT step from which the answer
is right and stays right against the step where the model's own halting rule (``HookedAIR.halts``,
the first "halt", else the last step, as ``air_interp.evaluate``) would stop it.

"Exactly right" is right on every supervised cell (label not PAD), as in ``air_interp.evaluate``.
ACT steps are counted from 0 here, as in every probe table (``evaluate`` reports ``halt_step`` as a
count of segments, from 1).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from air_interp.evaluate import IGNORE_LABEL
from air_interp.hooks import FwdHooks, Site
from air_interp.model import HookedAIR
from air_interp.output import save_figure, styled

from .lens import decode_state, step_end_sites, stream

OUTCOMES = ("early", "on time", "late", "never right")  # halting against the step the answer settles at


def halting_rule(model: HookedAIR) -> str:
    """The model's halting rule (``HookedAIR.halts``) as it is printed and drawn."""
    return "q_halt > 0" if model.cfg.no_act_continue else "q_halt > q_continue"


def halting(model: HookedAIR, inputs: np.ndarray, labels: np.ndarray, batch_size: int = 64, progress: bool = True,
            puzzle_identifiers: Optional[np.ndarray] = None) -> pd.DataFrame:
    """One row per puzzle x ACT step: the ``q_halt`` and ``q_continue`` logits, ``p_halt`` =
    sigmoid(q_halt), ``says_halt`` (the model's rule), ``correct`` (the prediction after this step
    is exactly right) and ``stays_correct`` (right after this step and every later one)."""
    inputs, labels = np.asarray(inputs), np.asarray(labels)
    n_steps = model.cfg.halt_max_steps
    q = np.zeros((len(inputs), n_steps, 2), np.float32)
    answers = np.zeros((len(inputs), n_steps, model.cfg.seq_len), np.uint8)
    current: dict[str, slice] = {}
    hooks: FwdHooks = [(Site(step).name("hook_q"), _keeper(q, step, current)) for step in range(n_steps)]
    hooks += [(name, _keeper(answers, step, current, lambda z: decode_state(model, z)))
              for step, name in step_end_sites(model, model.cfg.output_state)]
    with torch.inference_mode(), model.hooks(fwd_hooks=hooks):
        for rows, batch in stream(model, inputs, batch_size, "halting", progress, puzzle_identifiers):
            current["rows"] = rows
            model(batch)
    correct = ((answers == labels[:, None]) | (labels[:, None] == IGNORE_LABEL)).all(-1)
    stays_correct = np.flip(np.logical_and.accumulate(np.flip(correct, 1), axis=1), 1)
    says_halt = model.halts(torch.from_numpy(q[..., 0]), torch.from_numpy(q[..., 1])).numpy()
    return pd.DataFrame({
        "puzzle": np.repeat(np.arange(len(inputs)), n_steps), "step": np.tile(np.arange(n_steps), len(inputs)),
        "q_halt": q[..., 0].reshape(-1), "q_continue": q[..., 1].reshape(-1),
        "p_halt": torch.sigmoid(torch.from_numpy(q[..., 0])).numpy().reshape(-1),
        "says_halt": says_halt.reshape(-1), "correct": correct.reshape(-1), "stays_correct": stays_correct.reshape(-1),
    })


def _keeper(out: np.ndarray, step: int, current: dict[str, slice],
            convert: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> Callable[..., None]:
    """A hook that stores its value (converted) as ``out[rows of the batch, step]``."""
    def keep(value: torch.Tensor, hook) -> None:
        out[current["rows"], step] = (value if convert is None else convert(value)).cpu().numpy()

    return keep


def halting_outcomes(table: pd.DataFrame) -> pd.DataFrame:
    """Per puzzle: ``settled_step`` (the first ACT step from which the answer is right and stays
    right; missing if it never is), ``halt_step`` (the first step the model's rule says "halt", else
    the last), ``halted_correct`` (the answer there is right) and ``outcome``: halted ``early``
    (before the answer settled), ``on time``, ``late`` (after), or ``never right``."""
    def per_puzzle(column: str) -> np.ndarray:  # (puzzles, steps)
        return table.pivot(index="puzzle", columns="step", values=column).to_numpy(bool, copy=True)

    stays, correct = per_puzzle("stays_correct"), per_puzzle("correct")
    halts = per_puzzle("says_halt")
    halts[:, -1] = True  # the rollout stops at its last step whatever the Q head says
    halt_step = halts.argmax(1)
    never = ~stays.any(1)
    settled = stays.argmax(1)
    outcome = np.select([never, halt_step < settled, halt_step == settled], ["never right", "early", "on time"],
                        "late")
    return pd.DataFrame({
        "puzzle": np.sort(table["puzzle"].unique()),
        "settled_step": pd.Series(settled, dtype="Int64").mask(never),
        "halt_step": halt_step, "halted_correct": correct[np.arange(len(correct)), halt_step], "outcome": outcome,
    })


def reliability(table: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """The reliability curve over every puzzle x ACT step: per equal-width bin of sigmoid(q_halt),
    the rows in it, their mean sigmoid(q_halt) and the fraction exactly right (empty bins left out)."""
    which = np.clip((table["p_halt"].to_numpy() * bins).astype(int), 0, bins - 1)
    grouped = table.assign(bin=which).groupby("bin")
    out = pd.DataFrame({"rows": grouped.size(), "p_halt_mean": grouped["p_halt"].mean(),
                        "correct_fraction": grouped["correct"].mean()}).reset_index()
    out.insert(1, "bin_low", out["bin"] / bins)
    out.insert(2, "bin_high", (out["bin"] + 1) / bins)
    return out.drop(columns="bin")


def halting_summary(table: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """One row: how often halting by the model's rule stops on a right answer (``halted_correct``)
    against the answer after the last step (``final_correct``), the mean halt and settle steps, the
    share of each outcome, and the expected calibration error of sigmoid(q_halt) over ``bins``."""
    outcomes = halting_outcomes(table)
    curve = reliability(table, bins)
    last = table[table["step"] == table["step"].max()]
    return pd.DataFrame([{
        "puzzles": len(outcomes), "halted_correct": outcomes["halted_correct"].mean(),
        "final_correct": last["correct"].mean(), "halt_step_mean": outcomes["halt_step"].mean(),
        "settled_step_mean": outcomes["settled_step"].astype(float).mean(),
        **{outcome.replace(" ", "_"): (outcomes["outcome"] == outcome).mean() for outcome in OUTCOMES},
        "calibration_error": (curve["rows"] * (curve["p_halt_mean"] - curve["correct_fraction"]).abs()).sum()
                             / curve["rows"].sum(),
    }])


@styled
def plot_halting(table: pd.DataFrame, path: Path, title: str = "", bins: int = 10) -> list[Path]:
    """Three panels: sigmoid(q_halt) per ACT step for right and wrong answers beside the fraction
    right; the reliability curve; and per puzzle the step the answer settles at against the step
    the model's rule halts at (counts; the diagonal halts on time)."""
    fig, axes = plt.subplots(1, 3, figsize=(12.5, 3.9), layout="constrained")
    _plot_over_steps(axes[0], table)
    _plot_reliability(axes[1], reliability(table, bins))
    _plot_halt_against_settle(axes[2], halting_outcomes(table), table["step"].max() + 1)
    caption = f"{table['puzzle'].nunique()} puzzles; right = the prediction after the step is exactly the solution"
    fig.suptitle(f"{title}\n{caption}" if title else caption)
    return save_figure(fig, path)


def _plot_over_steps(ax: plt.Axes, table: pd.DataFrame) -> None:
    by_step = table.groupby("step")
    ax.plot(by_step["correct"].mean(), color="#111111", marker="o", markersize=3, label="fraction right")
    ax.plot(by_step["says_halt"].mean(), color="#9e9e9e", linestyle=":", label="fraction the rule halts")
    for correct, colour in ((True, "#2e7d32"), (False, "#c62828")):
        rows = table[table["correct"] == correct].groupby("step")["p_halt"]
        ax.errorbar(rows.mean().index, rows.mean(), yerr=rows.sem().fillna(0), color=colour, marker="o", markersize=3,
                    capsize=2, label=f"sigmoid(q_halt), answer {'right' if correct else 'wrong'}")
    ax.set_xlabel("ACT step")
    ax.set_ylabel("mean over puzzles (bars: ±1 s.e.)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("the halting gate over ACT steps")
    ax.legend(fontsize=7)


def _plot_reliability(ax: plt.Axes, curve: pd.DataFrame) -> None:
    ax.plot([0, 1], [0, 1], color="#9e9e9e", linewidth=0.8, linestyle="--", label="calibrated")
    ax.plot(curve["p_halt_mean"], curve["correct_fraction"], color="#1565c0", marker="o", markersize=4,
            label="puzzle x ACT step rows, binned")
    for _, row in curve.iterrows():
        ax.annotate(f"{int(row['rows'])}", (row["p_halt_mean"], row["correct_fraction"]), textcoords="offset points",
                    xytext=(4, -9), fontsize=7)
    ax.set_xlabel("sigmoid(q_halt), mean in the bin")
    ax.set_ylabel("fraction exactly right")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("reliability (numbers: rows per bin)")
    ax.legend(fontsize=7, loc="upper left")


def _plot_halt_against_settle(ax: plt.Axes, outcomes: pd.DataFrame, steps: int) -> None:
    settled = outcomes["settled_step"].fillna(steps).to_numpy(int)  # the last row: never right
    counts = np.zeros((steps + 1, steps), int)
    np.add.at(counts, (settled, outcomes["halt_step"].to_numpy()), 1)
    ax.imshow(counts, cmap="Blues", aspect="auto", origin="lower")
    for (row, col), count in np.ndenumerate(counts):
        if count:
            ax.text(col, row, str(count), ha="center", va="center", fontsize=7,
                    color="white" if count > counts.max() / 2 else "#111111")
    ax.plot([-0.5, steps - 0.5], [-0.5, steps - 0.5], color="#c62828", linewidth=0.8)
    ax.set_xticks(range(steps))
    ax.set_yticks(range(steps + 1), [*map(str, range(steps)), "never"])
    ax.set_xlabel("ACT step the model's rule halts at")
    ax.set_ylabel("ACT step the answer is right from")
    ax.set_title(f"halted on a right answer: {outcomes['halted_correct'].mean():.0%} of puzzles\n"
                 "(left of the red line: early, on it: on time, right: late)")
