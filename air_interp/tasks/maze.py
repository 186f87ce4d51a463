"""Square mazes: tokens 0 PAD, 1 '#' wall, 2 ' ' open, 3 'S' start, 4 'G' goal, 5 'o' path.

The solution of a maze is the puzzle with the cells of a shortest S->G path (S and G excluded)
marked 'o'. Where several shortest paths exist, the label is the one found by walking from S and
always stepping to the first neighbour, in the order up, right, down, left, that is one step
closer to G (:func:`shortest_path`). Labels are thus a deterministic function of the maze.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from air_interp.tasks.base import AttentionSpec, Contrast, Task, Transform

WALL, OPEN, START, GOAL, PATH = 1, 2, 3, 4, 5
STEPS = ((-1, 0), (0, 1), (1, 0), (0, -1))  # up, right, down, left: the tie-break order


@dataclass(frozen=True)
class MazeTask(Task):
    """4-connected grid mazes of any side; ``maze`` is the upstream 30x30."""

    @property
    def neighbourhood_kinds(self) -> tuple[str, ...]:
        return ("n4", "n8", "5x5")

    @property
    def paper_freeze_directions(self) -> dict[str, int]:
        """Both more: z_L 1,290 -> 2,305 with z_H frozen, z_H 825 -> 2,880 with z_L frozen."""
        return {"z_H": 1, "z_L": 1}

    def _neighbours(self, kind: str, row: int, col: int) -> list[tuple[int, int]]:
        reach = {"n4": 1, "n8": 1, "5x5": 2}[kind]
        return [
            (row + dr, col + dc)
            for dr in range(-reach, reach + 1)
            for dc in range(-reach, reach + 1)
            if kind != "n4" or abs(dr) + abs(dc) == 1
        ]

    @property
    def attention_spec(self) -> AttentionSpec:
        """Density contrasts Δρ at 4, 8 and 5x5 (mass difference / 4, 8, 24); Δviol on N4 ∩ V, as published."""
        contrasts = tuple(Contrast(f"d_rho_{kind}", kind, density=True) for kind in ("n4", "n8", "5x5"))
        return AttentionSpec(contrasts, class_kind="n4", violation_scope="neighbourhood",
                             adjacent_label="error-adjacent")

    def attention_queries(self, inputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The cells on the solution path."""
        return np.asarray(labels) == PATH

    def violation_mask(self, grids: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """Cells where the decoded grid differs from the label (the maze "error" set)."""
        if labels is None:
            raise ValueError("the maze error mask compares against labels: pass labels=")
        return np.asarray(grids) != np.asarray(labels)

    def check_puzzle(self, puzzle: np.ndarray) -> str | None:
        """Walls and open cells, exactly one S and one G, and G reachable from S."""
        grid = np.asarray(puzzle).reshape(self.side, self.side)
        if not np.all((grid >= WALL) & (grid <= GOAL)):
            return "puzzle cells must be '#', ' ', 'S' or 'G'"
        counts = [int((grid == token).sum()) for token in (START, GOAL)]
        if counts != [1, 1]:
            return f"puzzle needs one S and one G, has {counts[0]} and {counts[1]}"
        if path_length(grid) < 0:
            return "G is not reachable from S"
        return None

    def check_solution(self, puzzle: np.ndarray, solution: np.ndarray) -> str | None:
        """The puzzle with the open cells of one shortest S->G path turned into 'o'.

        The 'o' cells plus S and G must form a simple 4-connected path: S and G with one path
        neighbour each, every 'o' with two. Any shortest path is accepted, whatever its tie-break.
        """
        problem = self.check_puzzle(puzzle)
        if problem is not None:
            return problem
        grid = np.asarray(puzzle).reshape(self.side, self.side)
        sol = np.asarray(solution).reshape(self.side, self.side)
        wrong = (grid != sol) & ~((grid == OPEN) & (sol == PATH))
        if wrong.any():
            r, c = np.argwhere(wrong)[0]
            return f"solution changes cell ({r}, {c}) other than marking an open cell 'o'"
        problem = _simple_path_problem(sol)
        if problem is not None:
            return problem
        length, shortest = int((sol == PATH).sum()) + 1, path_length(grid)
        return None if length == shortest else f"path has {length} steps, the shortest has {shortest}"

    def bad_examples(self, puzzles: np.ndarray, solutions: np.ndarray) -> np.ndarray:
        """:meth:`check_puzzle` and :meth:`check_solution` for a batch at once."""
        shape = (-1, self.side, self.side)
        grid, sol = np.asarray(puzzles).reshape(shape), np.asarray(solutions).reshape(shape)
        ok = np.all((grid >= WALL) & (grid <= GOAL), axis=(1, 2))
        ok &= ((grid == START).sum((1, 2)) == 1) & ((grid == GOAL).sum((1, 2)) == 1)
        to_goal = bfs_distances(grid != WALL, grid == GOAL)
        shortest = np.where(grid == START, to_goal, 0).sum((1, 2))
        ok &= np.where(grid == START, to_goal >= 0, True).all((1, 2))
        ok &= ~np.any((grid != sol) & ~((grid == OPEN) & (sol == PATH)), axis=(1, 2))
        on_path = (sol == PATH) | (sol == START) | (sol == GOAL)
        padded = np.pad(on_path, ((0, 0), (1, 1), (1, 1)))
        degree = (padded[:, :-2, 1:-1].astype(int) + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2]
                  + padded[:, 1:-1, 2:])
        ends, inner = (sol == START) | (sol == GOAL), sol == PATH
        ok &= np.where(ends, degree == 1, True).all((1, 2)) & np.where(inner, degree == 2, True).all((1, 2))
        ok &= ((bfs_distances(on_path, sol == START) >= 0) == on_path).all((1, 2))
        ok &= inner.sum((1, 2)) + 1 == shortest
        return ~ok

    def random_symmetry(self, rng: np.random.Generator) -> Transform:
        """One of the 8 dihedral transforms, uniformly. Distances are preserved, so a shortest path
        stays a shortest path, but the up-right-down-left tie-break is not: the transformed label may
        differ from :func:`shortest_path` of the transformed maze when shortest paths tie."""
        source = dihedral(np.arange(self.seq_len).reshape(self.side, self.side), int(rng.integers(8)))
        flat = source.reshape(-1)
        return lambda tokens: np.asarray(tokens)[..., flat]


def dihedral(grid: np.ndarray, which: int) -> np.ndarray:
    """The ``which``-th (0..7) symmetry of the square on the last two axes: rotations by
    ``which % 4`` quarter turns, then a transpose when ``which >= 4``."""
    out = np.rot90(grid, k=which % 4, axes=(-2, -1))
    return np.swapaxes(out, -1, -2) if which >= 4 else out


def bfs_distances(open_cells: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """4-connected BFS distances over a batch ``(B, n, n)``; -1 where unreachable.

    ``open_cells`` marks passable cells, ``sources`` the cells at distance 0 (passable ones).
    """
    open_cells = np.asarray(open_cells, dtype=bool)
    frontier = np.asarray(sources, dtype=bool) & open_cells
    reached = frontier.copy()
    dist = np.where(frontier, 0, -1).astype(np.int32)
    step = 0
    while frontier.any():
        step += 1
        grown = np.zeros_like(frontier)
        grown[..., 1:, :] |= frontier[..., :-1, :]
        grown[..., :-1, :] |= frontier[..., 1:, :]
        grown[..., :, 1:] |= frontier[..., :, :-1]
        grown[..., :, :-1] |= frontier[..., :, 1:]
        frontier = grown & open_cells & ~reached
        reached |= frontier
        dist[frontier] = step
    return dist


def path_length(grid: np.ndarray) -> int:
    """Steps of a shortest S->G path in one token grid ``(n, n)``; -1 if G is unreachable."""
    dist = bfs_distances((grid != WALL)[None], (grid == GOAL)[None])[0]
    return int(dist[grid == START][0])


def shortest_path(grid: np.ndarray, dist_to_goal: np.ndarray | None = None) -> np.ndarray:
    """The labelled solution of a puzzle grid ``(n, n)`` (see the module docstring's tie-break)."""
    if dist_to_goal is None:
        dist_to_goal = bfs_distances((grid != WALL)[None], (grid == GOAL)[None])[0]
    n = grid.shape[0]
    row, col = (int(v) for v in np.argwhere(grid == START)[0])
    if dist_to_goal[row, col] < 0:
        raise ValueError("G is not reachable from S")
    label = grid.copy()
    while dist_to_goal[row, col] > 0:
        for dr, dc in STEPS:
            r, c = row + dr, col + dc
            if 0 <= r < n and 0 <= c < n and dist_to_goal[r, c] == dist_to_goal[row, col] - 1:
                row, col = r, c
                break
        if label[row, col] == OPEN:
            label[row, col] = PATH
    return label


def _simple_path_problem(sol: np.ndarray) -> str | None:
    """None if S, G and the 'o' cells form one simple 4-connected path from S to G."""
    on_path = (sol == PATH) | (sol == START) | (sol == GOAL)
    padded = np.pad(on_path, 1)
    degree = padded[:-2, 1:-1].astype(int) + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]
    ends_ok = all(degree[sol == end][0] == 1 for end in (START, GOAL))
    inner = degree[sol == PATH]
    if not ends_ok or np.any(inner != 2):
        return "the 'o' cells do not form a simple path from S to G"
    reached = bfs_distances(on_path[None], (sol == START)[None])[0] >= 0
    if not np.array_equal(reached, on_path):
        return "the 'o' cells do not form a simple path from S to G"
    return None


def maze_task(side: int) -> MazeTask:
    """The maze task on a ``side x side`` grid (named ``maze`` for 30, ``maze<side>`` otherwise)."""
    name = "maze" if side == 30 else f"maze{side}"
    return MazeTask(name, vocab_size=6, seq_len=side * side, undecided_token=0, side=side, alphabet="# SGo")
