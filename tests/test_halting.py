"""Halting probe: the hooked q logits and answers against the hook-free ACT wrapper and ``evaluate``,
batched against one puzzle at a time, the per-puzzle outcomes and the reliability curve against
hand-written loops, the figure and the command."""
import numpy as np
import pandas as pd
import pytest
import torch

from air_interp.cli import main
from air_interp.data import load_dataset
from air_interp.data.dataset import Split
from air_interp.defaults import DEFAULT_DATASETS
from air_interp.evaluate import evaluate
from air_interp.probes.halting import halting, halting_outcomes, halting_summary, plot_halting, reliability
from conftest import tiny_model

STEPS = 4


def shipped_puzzles(task: str, count: int = 6):
    """(inputs, labels) of ``count`` shipped test puzzles."""
    split = load_dataset(DEFAULT_DATASETS[task]).split("test")
    return split.inputs[:count], split.labels[:count]


def half_solved(model, inputs, labels):
    """Labels the tiny model gets right on the even puzzles (its own final answer) and not on the odd ones,
    so that "right" is seen as well as "wrong" (where its answer is PAD the cell is not scored)."""
    with torch.inference_mode():
        own = model(torch.as_tensor(inputs).long()).argmax(-1).numpy().astype(labels.dtype)
    return np.where((np.arange(len(inputs)) % 2 == 0)[:, None], own, labels)


def by_act_wrapper(model, inputs, labels):
    """q_halt, q_continue and "exactly right" (on the cells whose label is not PAD) per puzzle and ACT step
    from ``act_step``: no hook points."""
    batch = {"inputs": torch.as_tensor(inputs).long(), "puzzle_identifiers": torch.zeros(len(inputs), dtype=torch.long)}
    carry, rows = model.initial_carry(batch), []
    with torch.inference_mode():
        for _ in range(model.cfg.halt_max_steps):
            carry, out = model.act_step(carry, batch)
            rows.append((out["q_halt_logits"].numpy(), out["q_continue_logits"].numpy(),
                         ((out["logits"].argmax(-1).numpy() == labels) | (labels == 0)).all(-1)))
    return [np.stack(column, axis=1) for column in zip(*rows)]


@pytest.mark.parametrize("task,no_act_continue", [("sudoku", False), ("sudoku", True), ("maze8", False)])
def test_halting_matches_the_act_wrapper_and_evaluate(task, no_act_continue):
    model = tiny_model(task=task, halt_max_steps=STEPS, no_act_continue=no_act_continue)
    inputs, labels = shipped_puzzles(task)
    labels = half_solved(model, inputs, labels)
    table = halting(model, inputs, labels, batch_size=4, progress=False)
    assert list(table["step"][:STEPS]) == list(range(STEPS)) and len(table) == len(inputs) * STEPS
    q_halt, q_continue, correct = by_act_wrapper(model, inputs, labels)
    np.testing.assert_allclose(table["q_halt"].to_numpy().reshape(-1, STEPS), q_halt, atol=1e-5)
    np.testing.assert_allclose(table["q_continue"].to_numpy().reshape(-1, STEPS), q_continue, atol=1e-5)
    np.testing.assert_allclose(table["p_halt"], 1 / (1 + np.exp(-table["q_halt"])), rtol=1e-6)
    assert np.array_equal(table["correct"].to_numpy().reshape(-1, STEPS), correct)
    assert correct[::2, -1].all() and correct.any() and not correct.all()
    rule = q_halt > (0 if no_act_continue else q_continue)
    assert np.array_equal(table["says_halt"].to_numpy().reshape(-1, STEPS), rule)
    split = Split(inputs=inputs, labels=labels, ratings=np.zeros(len(inputs), np.float32),
                  puzzle_ids=np.arange(len(inputs)), groups=np.arange(len(inputs)), sources=np.full(len(inputs), "t"))
    reference = evaluate(model, split, batch_size=4)
    outcomes = halting_outcomes(table)
    assert outcomes["halt_step"].mean() + 1 == pytest.approx(reference["halt_step"])  # evaluate counts from 1
    assert outcomes["halted_correct"].mean() == pytest.approx(reference["halted_exact_accuracy"])
    assert table.groupby("step")["correct"].mean().tolist() == pytest.approx(reference["exact_by_step"])
    assert halting_summary(table)["final_correct"].iloc[0] == pytest.approx(reference["exact_accuracy"])


def test_halting_batched_equals_one_puzzle_at_a_time_and_reads_puzzle_identifiers():
    model = tiny_model(halt_max_steps=STEPS, num_puzzle_identifiers=3)
    inputs, labels = shipped_puzzles("sudoku", 5)
    batched = halting(model, inputs, labels, batch_size=5, progress=False)
    singles = [halting(model, inputs[i:i + 1], labels[i:i + 1], batch_size=1, progress=False).assign(puzzle=i)
               for i in range(5)]
    pd.testing.assert_frame_equal(batched, pd.concat(singles, ignore_index=True), atol=1e-5)
    zeros = halting(model, inputs, labels, progress=False, puzzle_identifiers=np.zeros(5, int))
    pd.testing.assert_frame_equal(batched, zeros)
    given = halting(model, inputs, labels, progress=False, puzzle_identifiers=np.array([2, 1, 0, 2, 1]))
    assert not np.allclose(given["q_halt"], batched["q_halt"])


def made_up_table(puzzles: int = 40, seed: int = 0) -> pd.DataFrame:
    """A halting table with random answers, gate values and halting decisions; stays_correct by a loop."""
    rng = np.random.default_rng(seed)
    correct = rng.random((puzzles, STEPS)) < 0.6
    stays = np.array([[correct[p, s:].all() for s in range(STEPS)] for p in range(puzzles)])
    p_halt = rng.random((puzzles, STEPS))
    p_halt[0, 0] = 1.0  # the top edge falls into the last bin
    return pd.DataFrame({
        "puzzle": np.repeat(np.arange(puzzles), STEPS), "step": np.tile(np.arange(STEPS), puzzles),
        "q_halt": np.log(p_halt / (1 - p_halt + 1e-12) + 1e-12).reshape(-1), "q_continue": 0.0,
        "p_halt": p_halt.reshape(-1), "says_halt": (rng.random((puzzles, STEPS)) < 0.3).reshape(-1),
        "correct": correct.reshape(-1), "stays_correct": stays.reshape(-1),
    })


def test_outcomes_reliability_and_summary_match_hand_written_loops():
    table = made_up_table()
    outcomes = halting_outcomes(table)
    for puzzle, rows in table.groupby("puzzle"):
        correct, halts = list(rows["correct"]), list(rows["says_halt"])
        settled = next((s for s in range(STEPS) if all(correct[s:])), None)
        halt = next((s for s in range(STEPS) if halts[s]), STEPS - 1)
        outcome = ("never right" if settled is None else "early" if halt < settled else
                   "on time" if halt == settled else "late")
        row = outcomes.iloc[puzzle]
        assert (row["puzzle"], row["halt_step"], row["halted_correct"], row["outcome"]) == (
            puzzle, halt, correct[halt], outcome)
        assert (pd.isna(row["settled_step"]) if settled is None else row["settled_step"] == settled)
    assert set(outcomes["outcome"]) == {"early", "on time", "late", "never right"}
    curve = reliability(table, bins=4)
    for _, row in curve.iterrows():
        upper = (lambda p: p <= row["bin_high"]) if row["bin_high"] == 1 else (lambda p: p < row["bin_high"])
        inside = table[(table["p_halt"] >= row["bin_low"]) & upper(table["p_halt"])]
        assert (row["rows"], row["p_halt_mean"], row["correct_fraction"]) == pytest.approx(
            (len(inside), inside["p_halt"].mean(), inside["correct"].mean()))
    assert curve["rows"].sum() == len(table)
    summary = halting_summary(table, bins=4).iloc[0]
    gap = sum(r * abs(p - c) for r, p, c in zip(curve["rows"], curve["p_halt_mean"], curve["correct_fraction"]))
    assert summary["calibration_error"] == pytest.approx(gap / len(table))
    assert summary["halted_correct"] == pytest.approx(outcomes["halted_correct"].mean())
    assert summary[["early", "on_time", "late", "never_right"]].sum() == pytest.approx(1)


def test_halting_figure_and_command(tmp_path, capsys):
    assert all(path.stat().st_size > 1000 for path in plot_halting(made_up_table(), tmp_path / "fig", title="made up"))
    checkpoint = tmp_path / "tiny_maze.safetensors"
    tiny_model(task="maze8", halt_max_steps=STEPS).save(checkpoint)
    assert main(["halting", str(checkpoint), "--puzzles", "5", "--bins", "5", "--out", str(tmp_path / "h"),
                 "--quiet", "--dtype", "float32", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "Lx_H on maze8, 5 puzzles, halting rule q_halt > q_continue" in printed and "calibration_error" in printed
    for name in ("halting_table.csv", "halting_summary.md", "halting_reliability.csv", "halting_puzzles.csv",
                 "halting.png", "halting.pdf", "halting_run.json"):
        assert (tmp_path / "h" / name).stat().st_size > 0
    assert len(pd.read_csv(tmp_path / "h" / "halting_table.csv")) == 5 * STEPS
    assert main(["halting", str(checkpoint), "--bins", "0"]) == 2
