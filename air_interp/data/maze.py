"""Maze generation, Searchformer-style, as used for the upstream maze-30x30-hard data.

Each candidate layout draws a wall fraction uniformly in [0.3, 0.5], makes every cell a wall with
that probability and puts S on a random open cell. G goes on a random open cell whose shortest
path from S is longer than ``min_path`` steps (110 for 30x30, the upstream rule); a layout with no
such cell is dropped. Choosing G among the far cells, rather than drawing it among all open cells
and dropping the maze when the path is too short, gives every kept maze the same properties but
is about 100 times faster at 30x30 (where fewer than 1 in 50,000 random S/G pairs qualify); the
only difference is that layouts are not weighted by how many far cells they have.

The label marks the shortest path chosen by the tie-break of
:func:`air_interp.tasks.maze.shortest_path`. The rating stored for a maze is its path length.

At small sides most such mazes have several shortest paths (90% of 10x10 ones, median 6), and the
tie-break does not survive a rotation: trained with dihedral augmentation, a model sees the same
maze with contradicting labels. ``unique_path`` keeps only goals reached by a single shortest path,
so the label is the one answer whatever the symmetry.
"""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Iterator

from air_interp.data.jit import njit
import numpy as np

from air_interp.errors import AirInterpError
from air_interp.tasks import MAX_MAZE_SIDE
from air_interp.tasks.maze import GOAL, OPEN, PATH, START, WALL, dihedral, shortest_path

WALL_FRACTION = (0.3, 0.5)
UPSTREAM_SIDE, UPSTREAM_MIN_PATH = 30, 110
BATCH = 256
MIN_SIDE = 4
# Layouts in a row without a kept maze before the stream gives up: far beyond any setting that can
# be met (the upstream 30x30 rule keeps about 1 layout in 2,200).
MAX_FRUITLESS_LAYOUTS = 1_000_000


@dataclass(frozen=True)
class Maze:
    """One generated maze: puzzle and label token grids ``(n, n)``, path length, stream index."""

    puzzle: np.ndarray
    label: np.ndarray
    path_length: int
    index: int


def default_min_path(side: int) -> int:
    """The path-length threshold for a side, scaled from the upstream 110 at 30x30 by area."""
    return round(UPSTREAM_MIN_PATH * (side / UPSTREAM_SIDE) ** 2)


def candidate_layouts(side: int, rng: np.random.Generator, size: int = BATCH) -> np.ndarray:
    """``size`` random flat token grids ``(size, n*n)`` with walls and one S (no G yet)."""
    fraction = rng.uniform(*WALL_FRACTION, size=size)
    walls = rng.random((size, side * side)) < fraction[:, None]
    grids = np.where(walls, WALL, OPEN).astype(np.uint8)
    keys = rng.random(grids.shape)
    keys[walls] = -1.0
    grids[np.arange(size), keys.argmax(axis=1)] = START
    return grids


@njit
def _distances_from_start(grid: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """BFS step counts from S over non-wall cells of a flat grid (-1 where unreachable), and the
    number of shortest S->cell paths, capped at 2 (all that "unique or not" needs)."""
    dist = np.full(grid.size, -1, dtype=np.int32)
    paths = np.zeros(grid.size, dtype=np.int32)
    queue = np.empty(grid.size, dtype=np.int64)
    start = np.argmax(grid == START)
    dist[start] = 0
    paths[start] = 1
    queue[0] = start
    head, tail = 0, 1
    while head < tail:
        cell = queue[head]
        head += 1
        row, col = cell // side, cell % side
        for dr, dc in ((-1, 0), (0, 1), (1, 0), (0, -1)):
            r, c = row + dr, col + dc
            if 0 <= r < side and 0 <= c < side:
                nxt = r * side + c
                if grid[nxt] == WALL:
                    continue
                if dist[nxt] < 0:
                    dist[nxt] = dist[cell] + 1
                    queue[tail] = nxt
                    tail += 1
                if dist[nxt] == dist[cell] + 1:
                    paths[nxt] = min(paths[nxt] + paths[cell], 2)
    return dist, paths


@njit
def _place_goals(grids: np.ndarray, side: int, threshold: int, draws: np.ndarray, unique: bool) -> np.ndarray:
    """Put G on the far cell picked by ``draws[k]`` (uniform in [0, 1)); -1 when none is far enough.
    With ``unique``, only cells reached by a single shortest path count."""
    goals = np.full(grids.shape[0], -1, dtype=np.int64)
    for k in range(grids.shape[0]):
        dist, paths = _distances_from_start(grids[k], side)
        far = np.flatnonzero((dist > threshold) & ((paths == 1) | (not unique)))
        if far.size:
            goals[k] = far[int(draws[k] * far.size)]
            grids[k, goals[k]] = GOAL
    return goals


def maze_stream(
    side: int, rng: np.random.Generator, min_path: int | None = None, unique_path: bool = False,
) -> Iterator[Maze]:
    """Endless stream of mazes whose shortest path is longer than ``min_path`` steps (and, with
    ``unique_path``, the only shortest path)."""
    threshold = default_min_path(side) if min_path is None else min_path
    check_settings(side, threshold)
    drawn = fruitless = 0
    while True:
        grids = candidate_layouts(side, rng)
        goals = _place_goals(grids, side, threshold, rng.random(len(grids)), unique_path)
        kept = np.flatnonzero(goals >= 0)
        for k in kept:
            puzzle = grids[k].reshape(side, side)
            label = shortest_path(puzzle)
            yield Maze(puzzle, label, int((label == PATH).sum()) + 1, drawn + int(k))
        drawn += len(grids)
        fruitless = 0 if len(kept) else fruitless + len(grids)
        if fruitless >= MAX_FRUITLESS_LAYOUTS:
            unique = ", unique" if unique_path else ""
            raise AirInterpError(f"no {side}x{side} maze with a shortest path longer than {threshold} steps{unique} "
                                 f"among {MAX_FRUITLESS_LAYOUTS:,} layouts in a row; ask for a shorter --min-path")


def check_settings(side: int, min_path: int) -> None:
    """Raise a one-line AirInterpError for settings no maze can meet."""
    if not MIN_SIDE <= side <= MAX_MAZE_SIDE:
        raise AirInterpError(f"--size {side}: mazes have a side of {MIN_SIDE} to {MAX_MAZE_SIDE}")
    longest = side * side - 1
    if not 0 <= min_path < longest:
        raise AirInterpError(f"--min-path {min_path}: a shortest path in a {side}x{side} maze has at most "
                             f"{longest} steps, so the threshold must lie in [0, {longest})")


def canonical_bytes(grid: np.ndarray) -> bytes:
    """The same bytes for a maze and its 8 rotations/reflections (used to keep splits apart)."""
    return min(np.ascontiguousarray(dihedral(grid, which)).tobytes() for which in range(8))
