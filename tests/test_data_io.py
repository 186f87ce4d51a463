"""Upstream CSV and processed layouts, our dataset directories, bad rows, and the data CLI."""
import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from air_interp.data.cli import add_data_parser
from air_interp.data.dataset import augment, load_dataset, save_dataset
from air_interp.data.generate import generate_mazes, generate_sudoku
from air_interp.data.upstream import BadRows, read_csv, read_processed, subsample, write_csv, write_processed
from air_interp.errors import AirInterpError
from air_interp.tasks import get_task

REPO = Path(__file__).resolve().parents[1]
SUDOKU = get_task("sudoku")
MAZE5 = get_task("maze5")
Q = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"
A = "534678912672195348198342567859761423426853791713924856961537284287419635345286179"
MAZE_Q, MAZE_A = "S #  " " ##  " "   # " " #G  " "     ", "S #  " "o##  " "ooo# " " #G  " "     "


def run_cli(*argv: str) -> None:
    parser = argparse.ArgumentParser(prog="air-interp")
    add_data_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", *argv])
    args.func(args)


def write_rows(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([["source", "question", "answer", "rating"], *rows])
    return path


@pytest.fixture(scope="module")
def sudoku_data():
    return generate_sudoku("minimal", 8, 4, seed=0, progress=False)


@pytest.fixture(scope="module")
def maze_data():
    return generate_mazes(10, 6, 4, seed=0, progress=False)


def test_handwritten_upstream_csv_is_read(tmp_path):
    path = write_rows(tmp_path / "train.csv", [["puzzles0_kaggle", Q, A, "0"], ["x", Q.replace(".", "0"), A, "3"]])
    split = read_csv(path, SUDOKU, BadRows())
    assert len(split) == 2 and split.inputs.dtype == np.uint8
    assert np.array_equal(split.inputs[0], SUDOKU.encode(Q)) and np.array_equal(split.inputs[0], split.inputs[1])
    assert list(split.ratings) == [0.0, 3.0] and list(split.sources) == ["puzzles0_kaggle", "x"]
    assert list(split.puzzle_ids) == [2, 3]  # CSV line numbers
    assert len(read_csv(path, SUDOKU, BadRows(), min_rating=1)) == 1


@pytest.mark.parametrize("which", ["sudoku", "maze"])
def test_csv_round_trip(tmp_path, which, sudoku_data, maze_data):
    data = sudoku_data if which == "sudoku" else maze_data
    write_csv(data.train, data.task, tmp_path / "train.csv")
    with (tmp_path / "train.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["source", "question", "answer", "rating"] and len(rows) == len(data.train) + 1
    back = read_csv(tmp_path / "train.csv", data.task, BadRows())
    for name in ("inputs", "labels", "ratings", "sources"):
        assert np.array_equal(getattr(back, name), getattr(data.train, name))
    if which == "sudoku":
        assert "." in rows[1][1] and rows[1][2].isdigit()


BAD_SUDOKU_ROWS = {
    "expected 4 fields": ["s", Q, A],
    "expected 81 characters, got 80": ["s", Q[:-1], A, "0"],
    "bad character 'x'": ["s", "x" + Q[1:], A, "0"],
    "rating 'hard' is not a number": ["s", Q, A, "hard"],
    "solution breaks a rule": ["s", Q, A[1] + A[0] + A[2:], "0"],
    "disagrees with the given": ["s", Q, A.replace("1", "#").replace("2", "1").replace("#", "2"), "0"],
    "givens break a rule": ["s", "55" + Q[2:], A, "0"],
}


@pytest.mark.parametrize("problem", list(BAD_SUDOKU_ROWS))
def test_each_bad_sudoku_row_is_reported_with_its_line(tmp_path, problem):
    path = write_rows(tmp_path / "t.csv", [["ok", Q, A, "1"], BAD_SUDOKU_ROWS[problem], ["ok", Q, A, "2"]])
    bad = BadRows()
    assert len(read_csv(path, SUDOKU, bad)) == 2
    with pytest.raises(AirInterpError, match=rf"t\.csv:3: .*{problem}"):
        bad.raise_or_report(skip_invalid=False)
    assert bad.raise_or_report(skip_invalid=True).startswith("skipped 1 invalid rows")


BAD_MAZE_ROWS = {
    "do not form a simple path": MAZE_A.replace("ooo", "oo "),
    "path has 7 steps, the shortest has 5": "S #  " "o##  " "o  # " "o#G  " "ooo  ",
    "changes cell": MAZE_A.replace("S", " ", 1),
}


@pytest.mark.parametrize("problem", list(BAD_MAZE_ROWS))
def test_each_bad_maze_row_is_reported_with_its_line(tmp_path, problem):
    path = write_rows(tmp_path / "m.csv", [["ok", MAZE_Q, MAZE_A, "5"], ["bad", MAZE_Q, BAD_MAZE_ROWS[problem], "5"]])
    bad = BadRows()
    assert len(read_csv(path, MAZE5, bad)) == 1
    with pytest.raises(AirInterpError, match=rf"m\.csv:3: .*{problem}"):
        bad.raise_or_report(skip_invalid=False)


def test_maze_question_without_goal_is_reported(tmp_path):
    path = write_rows(tmp_path / "m.csv", [["bad", MAZE_Q.replace("G", " "), MAZE_A, "5"]])
    bad = BadRows()
    read_csv(path, MAZE5, bad)
    assert bad.rows == [f"{path}:2: question: puzzle needs one S and one G, has 1 and 0"]


def test_subsample_is_seeded_and_in_file_order(sudoku_data):
    a, b = subsample(sudoku_data.train, 5, seed=1), subsample(sudoku_data.train, 5, seed=1)
    assert np.array_equal(a.inputs, b.inputs) and np.all(np.diff(a.puzzle_ids) > 0)
    assert len(subsample(sudoku_data.train, 100, seed=1)) == len(sudoku_data.train)


def test_dataset_directory_round_trip(tmp_path, sudoku_data):
    save_dataset(sudoku_data, tmp_path / "d")
    back = load_dataset(tmp_path / "d")
    assert back.task is SUDOKU and back.manifest == sudoku_data.manifest
    for name in ("inputs", "labels", "ratings", "puzzle_ids", "groups", "sources"):
        assert np.array_equal(getattr(back.test, name), getattr(sudoku_data.test, name))
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 8, "test": 4} and manifest["source"]["seed"] == 0
    assert sum(manifest["rating_histogram"]["train"]["counts"]) == 8


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(AirInterpError, match="no manifest.json"):
        load_dataset(tmp_path)


def test_augmentation_original_first_valid_and_seeded(sudoku_data):
    a = augment(sudoku_data.train, SUDOKU, 3, seed=7)
    b = augment(sudoku_data.train, SUDOKU, 3, seed=7)
    assert len(a) == 4 * len(sudoku_data.train) and np.array_equal(a.inputs, b.inputs)
    assert np.array_equal(a.inputs[::4], sudoku_data.train.inputs)
    assert list(a.groups[:8]) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert SUDOKU.is_solution(a.inputs, a.labels).all()
    assert len({row.tobytes() for row in a.inputs}) == len(a)


def test_processed_layout_round_trip(tmp_path, sudoku_data):
    write_processed(sudoku_data, tmp_path / "p", augmentations=2, seed=0)
    train_dir = tmp_path / "p" / "train"
    meta = json.loads((train_dir / "dataset.json").read_text())
    assert meta == {
        "pad_id": 0, "ignore_label_id": 0, "blank_identifier_id": 0, "vocab_size": 11, "seq_len": 81,
        "num_puzzle_identifiers": 1, "total_groups": 8, "mean_puzzle_examples": 1, "sets": ["all"],
    }
    assert json.loads((tmp_path / "p" / "identifiers.json").read_text()) == ["<blank>"]
    groups = np.load(train_dir / "all__group_indices.npy")
    assert groups.dtype == np.int32 and list(groups) == list(range(0, 25, 3))
    assert np.load(train_dir / "all__inputs.npy").dtype == np.uint8
    assert list(np.load(train_dir / "all__puzzle_indices.npy")) == list(range(25))
    bad = BadRows()
    task, train, test = read_processed(tmp_path / "p", bad)
    assert task is SUDOKU and not bad.rows and len(train) == 24 and len(test) == 4
    assert list(train.groups[:6]) == [0, 0, 0, 1, 1, 1] and np.array_equal(test.inputs, sudoku_data.test.inputs)


def test_cli_generate_show_export_import(tmp_path, capsys):
    run_cli("generate", "maze", "--size", "8", "--min-path", "8", "--train", "4", "--test", "2",
            "--out", str(tmp_path / "m"), "--quiet")
    run_cli("show", str(tmp_path / "m"), "-n", "1")
    shown = capsys.readouterr().out
    assert "puzzle" in shown and '"task": "maze8"' in shown
    run_cli("export", str(tmp_path / "m"), "--out", str(tmp_path / "csv"), "--format", "csv")
    run_cli("import", "maze8", str(tmp_path / "csv"), "--out", str(tmp_path / "back"))
    back, orig = load_dataset(tmp_path / "back"), load_dataset(tmp_path / "m")
    assert np.array_equal(back.train.labels, orig.train.labels)
    run_cli("export", str(tmp_path / "m"), "--out", str(tmp_path / "proc"), "--augmentations", "7")
    run_cli("import", "maze8", str(tmp_path / "proc"), "--out", str(tmp_path / "proc-back"))
    assert load_dataset(tmp_path / "proc-back").manifest["counts"] == {"train": 32, "test": 2}


def test_cli_import_with_bad_rows_writes_nothing_unless_skipping(tmp_path, capsys):
    write_rows(tmp_path / "train.csv", [["a", Q, A, "1"], ["b", Q[:-1], A, "1"]])
    write_rows(tmp_path / "test.csv", [["c", Q, A, "1"]])
    with pytest.raises(AirInterpError, match=r"train\.csv:3: question: expected 81 characters"):
        run_cli("import", "sudoku", str(tmp_path), "--out", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    run_cli("import", "sudoku", "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"),
            "--out", str(tmp_path / "out"), "--skip-invalid")
    assert "skipped 1 invalid rows" in capsys.readouterr().err
    manifest = load_dataset(tmp_path / "out").manifest
    assert manifest["counts"] == {"train": 1, "test": 1} and manifest["source"]["invalid_rows_skipped"] == 1


@pytest.mark.parametrize(
    "name,task,train,test", [("sudoku-hard", "sudoku", 1000, 1000), ("maze-15", "maze15", 1000, 1000),
                             ("sudoku-easy50", "sudoku", 1000, 1000), ("maze-10", "maze10", 4000, 1000),
                             ("maze-8-unique", "maze8", 4000, 1000), ("sudoku-easy34", "sudoku", 1000, 1000)]
)
def test_shipped_datasets(name, task, train, test):
    data = load_dataset(REPO / "data" / name)
    assert data.task.name == task and (len(data.train), len(data.test)) == (train, test)
    rows = np.random.default_rng(0).choice(train, 50, replace=False)
    assert data.task.is_solution(data.train.inputs[rows], data.train.labels[rows]).all()
    assert data.manifest["source"]["kind"] == "generated"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sudoku-easy50", "sudoku-easy34", "maze-8-unique"])
def test_default_models_data_is_regenerated_bit_exactly_by_the_committed_command(tmp_path, name):
    line = next(l for l in (REPO / "data" / "regenerate.sh").read_text().splitlines()
                if l.startswith("air-interp") and f"data/{name}" in l)
    argv = line.split()[2:]  # drop "air-interp data"
    argv[argv.index("--out") + 1] = str(tmp_path / "again")
    run_cli(*argv, "--quiet")
    shipped, again = load_dataset(REPO / "data" / name), load_dataset(tmp_path / "again")
    for split in ("train", "test"):
        assert np.array_equal(shipped.split(split).inputs, again.split(split).inputs)
        assert np.array_equal(shipped.split(split).labels, again.split(split).labels)
