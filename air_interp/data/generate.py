"""Seeded dataset generation: a stream of candidates split into train and test.

Every generated dataset comes from one stream drawn from ``numpy.random.default_rng(seed)``: the
first ``n_train`` kept puzzles form the train split, the next ``n_test`` the test split. A puzzle
is skipped when it is equivalent to one already kept (Sudoku: same relabeling/symmetry invariant;
Maze: same grid up to rotation/reflection), so no test puzzle repeats a training puzzle.
The same arguments give the same bytes; ``GENERATOR_VERSION`` changes whenever they would not.
"""
from __future__ import annotations

from typing import Any, TypeVar
from collections.abc import Callable, Iterator

import numpy as np
from tqdm import tqdm

from air_interp.data import maze as maze_gen
from air_interp.data import sudoku as sudoku_gen
from air_interp.data.dataset import Dataset, Split, make_manifest
from air_interp.errors import AirInterpError
from air_interp.tasks import Task, get_task

GENERATOR_VERSION = 1
Item = TypeVar("Item")


def _collect(
    stream: Iterator[Item], n_train: int, n_test: int, key: Callable[[Item], bytes], desc: str, progress: bool,
) -> tuple[list[Item], int]:
    """The first ``n_train + n_test`` items with distinct keys, and how many duplicates were skipped."""
    kept: list[Item] = []
    seen: set[bytes] = set()
    duplicates = 0
    with tqdm(total=n_train + n_test, desc=desc, unit=" puzzles", disable=not progress) as bar:
        while len(kept) < n_train + n_test:
            item = next(stream)
            k = key(item)
            if k in seen:
                duplicates += 1
                continue
            seen.add(k)
            kept.append(item)
            bar.update()
    return kept, duplicates


Row = tuple[np.ndarray, np.ndarray, float, int]  # input, label, rating, stream index


def check_counts(n_train: int, n_test: int) -> None:
    if n_train < 1 or n_test < 1:
        raise AirInterpError(f"{n_train} train and {n_test} test puzzles: a dataset needs at least one of each")


def _splits(task: Task, rows: list[Row], n_train: int, source: str) -> tuple[Split, Split]:
    def build(part: list[Row]) -> Split:
        inputs, labels, ratings, ids = (list(column) for column in zip(*part)) if part else ([], [], [], [])
        return Split.from_rows(inputs, labels, ratings, ids, [source] * len(part), task.seq_len)

    return build(rows[:n_train]), build(rows[n_train:])


def generate_sudoku(
    tier: str, n_train: int, n_test: int, seed: int, clues: int = 36, min_rating: float = 8.0,
    relabelings: int = sudoku_gen.DEFAULT_RELABELINGS, progress: bool = True,
) -> Dataset:
    """Unique-solution Sudoku of a tier (see :mod:`air_interp.data.sudoku`), rated."""
    check_counts(n_train, n_test)
    sudoku_gen.check_settings(tier, clues, min_rating, relabelings)
    task = get_task("sudoku")
    stream = sudoku_gen.puzzle_stream(tier, np.random.default_rng(seed), clues, min_rating, relabelings)
    kept, duplicates = _collect(
        stream, n_train, n_test, lambda p: sudoku_gen.invariant(sudoku_gen.to_tokens(p.puzzle)),
        f"sudoku {tier}", progress,
    )
    rows = [(sudoku_gen.to_tokens(p.puzzle), sudoku_gen.to_tokens(p.solution), p.rating, p.index) for p in kept]
    params: dict[str, Any] = {"tier": tier, "relabelings": relabelings}
    if tier == "easy":
        params["clues"] = clues
    if tier == "hard":
        params["min_rating"] = min_rating
    return _dataset(task, rows, n_train, f"generated-sudoku-{tier}", seed, params, kept, duplicates)


def generate_mazes(
    side: int, n_train: int, n_test: int, seed: int, min_path: int | None = None, progress: bool = True,
    unique_path: bool = False,
) -> Dataset:
    """Mazes of ``side x side`` with a shortest path longer than ``min_path``, optionally the only
    shortest path (see :mod:`air_interp.data.maze`)."""
    check_counts(n_train, n_test)
    threshold = maze_gen.default_min_path(side) if min_path is None else min_path
    maze_gen.check_settings(side, threshold)
    task = get_task(f"maze{side}")
    stream = maze_gen.maze_stream(side, np.random.default_rng(seed), threshold, unique_path)
    kept, duplicates = _collect(
        stream, n_train, n_test, lambda m: maze_gen.canonical_bytes(m.puzzle), f"maze {side}x{side}", progress,
    )
    rows = [(m.puzzle.reshape(-1), m.label.reshape(-1), float(m.path_length), m.index) for m in kept]
    params = {"side": side, "min_path": threshold, "wall_fraction": list(maze_gen.WALL_FRACTION)}
    if unique_path:
        params["unique_path"] = True
    return _dataset(task, rows, n_train, f"generated-maze{side}", seed, params, kept, duplicates)


def _dataset(
    task: Task, rows: list[Row], n_train: int, name: str, seed: int, params: dict[str, Any],
    kept: list[Any], duplicates: int,
) -> Dataset:
    train, test = _splits(task, rows, n_train, name)
    candidates = kept[-1].index + 1 if kept else 0
    source = {
        "kind": "generated",
        "generator": name,
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        **params,
        "candidates_drawn": candidates,
        "equivalent_duplicates_skipped": duplicates,
    }
    return Dataset(task, train, test, make_manifest(task, train, test, source))
