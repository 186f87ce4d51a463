"""Commitment probe: against a brute-force loop over the decoded grids and the decode table's own
change counts, on a hand-made rollout, for Sudoku and maze models; the figure and the command."""
import numpy as np
import pandas as pd
import pytest

from air_interp.cli import main
from air_interp.data import load_dataset
from air_interp.defaults import DEFAULT_DATASETS
from air_interp.probes.commitment import commitment, commitment_summary, plot_commitment
from air_interp.probes.decode import DecodeResult, decode
from air_interp.tasks import get_task
from conftest import tiny_model

SCHEDULE = ("L", "L", "H", "L", "L", "H")


def decoded(task: str, count: int = 4) -> DecodeResult:
    split = load_dataset(DEFAULT_DATASETS[task]).split("test")
    return decode(tiny_model(task=task, halt_max_steps=3), split.inputs[:count], split.labels[:count], progress=False)


def brute_force(sequence: list[int], first: int) -> tuple[int, int]:
    """(commit, flips) of one cell's decoded values over global sub-steps, read from sub-step ``first`` on."""
    values = sequence[first:]
    flips = sum(a != b for a, b in zip(values, values[1:]))
    commit = first + min(j for j in range(len(values)) if all(v == values[-1] for v in values[j:]))
    return commit, flips


@pytest.mark.parametrize("task", ["sudoku", "maze8"])
def test_commitment_matches_a_brute_force_loop_and_the_decode_table(task):
    result = decoded(task)
    table = commitment(result)
    puzzles, total, _, cells = result.grids.shape
    assert len(table) == puzzles * 2 * cells and total == 18
    rows = table.set_index(["puzzle", "state", "cell"])
    for p in range(puzzles):
        for s, state in enumerate(("z_H", "z_L")):
            first = 2 if state == "z_H" else 0  # the first H and the first L sub-step
            for cell in range(cells):
                row = rows.loc[(p, state, cell)]
                assert (row["commit"], row["flips"]) == brute_force(result.grids[p, :, s, cell].tolist(), first)
                assert row["final"] == result.grids[p, -1, s, cell]
                assert (row["commit_step"], row["commit_sub"]) == divmod(row["commit"], 6)
    assert table["flips"].sum() > 0 and (table["commit"] > 2).any()  # the tiny model does change its mind
    # the flips are the decode table's changes after each state's first update, counted another way
    changes = result.table[result.table["index"] > np.where(result.table["state"] == "z_H", 2, 0)]
    per_state = changes.groupby(["puzzle", "state"])["changes"].sum()
    pd.testing.assert_series_equal(table.groupby(["puzzle", "state"])["flips"].sum(), per_state, check_names=False)
    assert np.array_equal(table["correct"], table["final"] == np.repeat(result.labels, 2, axis=0).reshape(-1))
    open_token = {"sudoku": 1, "maze8": 2}[task]  # Sudoku blanks, open maze cells
    assert np.array_equal(table["open"], np.repeat(result.inputs == open_token, 2, axis=0).reshape(-1))


def test_commitment_of_a_hand_made_rollout():
    """Two ACT steps (12 sub-steps) of one 9x9 puzzle; cell 0 of z_L goes 5 5 3 3 5 ..., z_H holds PAD
    (its reset decode) until its first update at sub-step 2 and then 7 for good; cell 1 of z_L changes
    at the very last sub-step."""
    grids = np.full((1, 12, 2, 81), 4, np.uint8)
    grids[0, :, 1, 0] = [5, 5, 3, 3, 5, 5, 5, 5, 5, 5, 5, 5]
    grids[0, :, 0, 0] = [0, 0, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7]
    grids[0, 11, 1, 1] = 6
    result = DecodeResult(pd.DataFrame(), grids, get_task("sudoku"), SCHEDULE, np.ones((1, 81), np.uint8), None)
    table = commitment(result).set_index(["state", "cell"])
    assert tuple(table.loc[("z_L", 0), ["commit", "flips", "final"]]) == (4, 2, 5)
    assert tuple(table.loc[("z_H", 0), ["commit", "flips", "final"]]) == (2, 0, 7)
    assert tuple(table.loc[("z_L", 1), ["commit", "commit_step", "commit_sub", "flips"]]) == (11, 1, 5, 1)
    assert tuple(table.loc[("z_L", 2), ["commit", "flips"]]) == (0, 0)
    assert tuple(table.loc[("z_H", 2), ["commit", "flips"]]) == (2, 0)
    assert "open" not in table and "correct" not in table  # no labels
    summary = commitment_summary(table.reset_index()).set_index("state")
    assert summary.loc["z_L", "flips_mean"] == pytest.approx(3 / 81)
    assert summary.loc["z_L", "never_flipped"] == pytest.approx(79 / 81)


def test_commitment_figures_and_command(tmp_path, capsys):
    for task in ("sudoku", "maze8"):
        result = decoded(task, 3)
        table = commitment(result)
        summary = commitment_summary(table)
        assert set(summary[["state", "open"]].itertuples(index=False, name=None)) == {
            ("z_H", False), ("z_H", True), ("z_L", False), ("z_L", True)}
        assert summary["cells"].sum() == len(table)
        for path in plot_commitment(result, table, tmp_path / f"commitment_{task}", title=task):
            assert path.stat().st_size > 1000
    checkpoint = tmp_path / "tiny_maze.safetensors"
    tiny_model(task="maze8", halt_max_steps=3).save(checkpoint)
    assert main(["commitment", str(checkpoint), "--puzzles", "3", "--out", str(tmp_path / "c"), "--quiet",
                 "--dtype", "float32", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "Lx_H on maze8, 3 puzzles" in printed and "commit_mean" in printed
    for name in ("commitment_table.csv", "commitment_summary.md", "commitment.png", "commitment.pdf",
                 "commitment_run.json"):
        assert (tmp_path / "c" / name).stat().st_size > 0
    assert len(pd.read_csv(tmp_path / "c" / "commitment_table.csv")) == 3 * 2 * 64
