"""Maze generator: labels are tie-broken shortest paths (checked by an independent BFS)."""
from collections import deque

import numpy as np
import pytest

from air_interp.data import maze as gen
from air_interp.data.dataset import augment
from air_interp.data.generate import generate_mazes
from air_interp.tasks import get_task
from air_interp.tasks.maze import GOAL, PATH, START, WALL

UP_RIGHT_DOWN_LEFT = ((-1, 0), (0, 1), (1, 0), (0, -1))


def bfs(grid: np.ndarray, source: tuple[int, int]) -> dict[tuple[int, int], int]:
    """Plain queue BFS over non-wall cells: distance by cell."""
    n = grid.shape[0]
    dist = {source: 0}
    queue = deque([source])
    while queue:
        r, c = queue.popleft()
        for dr, dc in UP_RIGHT_DOWN_LEFT:
            nxt = (r + dr, c + dc)
            if 0 <= nxt[0] < n and 0 <= nxt[1] < n and grid[nxt] != WALL and nxt not in dist:
                dist[nxt] = dist[(r, c)] + 1
                queue.append(nxt)
    return dist


def expected_label(grid: np.ndarray) -> np.ndarray:
    """The documented tie-break, recomputed: from S step to the first neighbour (up, right, down,
    left) that is one step closer to G."""
    start = tuple(np.argwhere(grid == START)[0])
    to_goal = bfs(grid, tuple(np.argwhere(grid == GOAL)[0]))
    label, cell = grid.copy(), start
    while to_goal[cell] > 0:
        cell = next(
            (cell[0] + dr, cell[1] + dc) for dr, dc in UP_RIGHT_DOWN_LEFT
            if to_goal.get((cell[0] + dr, cell[1] + dc), -1) == to_goal[cell] - 1
        )
        if label[cell] != GOAL:
            label[cell] = PATH
    return label


@pytest.fixture(scope="module")
def mazes():
    return generate_mazes(12, 30, 20, seed=4, progress=False)


def test_every_label_is_a_shortest_path_with_the_documented_tie_break(mazes):
    task, threshold = mazes.task, mazes.manifest["source"]["min_path"]
    for split in (mazes.train, mazes.test):
        for inp, lab, rating in zip(split.inputs, split.labels, split.ratings):
            grid = inp.reshape(12, 12)
            distance = bfs(grid, tuple(np.argwhere(grid == START)[0]))[tuple(np.argwhere(grid == GOAL)[0])]
            assert (lab == PATH).sum() + 1 == distance == rating > threshold
            assert task.check_solution(inp, lab) is None
            assert np.array_equal(lab.reshape(12, 12), expected_label(grid))


def test_wall_fraction_and_single_endpoints(mazes):
    walls = (mazes.train.inputs == WALL).mean(axis=1)
    assert walls.min() > 0.15 and walls.max() < 0.6
    assert np.all((mazes.train.inputs == START).sum(axis=1) == 1)
    assert np.all((mazes.train.inputs == GOAL).sum(axis=1) == 1)
    assert not np.any(mazes.train.inputs == PATH)


def test_default_thresholds():
    assert gen.default_min_path(30) == 110
    assert [gen.default_min_path(side) for side in (10, 15, 20)] == [12, 28, 49]


def test_no_test_maze_repeats_a_training_maze_under_symmetry(mazes):
    train = {gen.canonical_bytes(inp.reshape(12, 12)) for inp in mazes.train.inputs}
    assert len(train) == len(mazes.train)
    assert all(gen.canonical_bytes(inp.reshape(12, 12)) not in train for inp in mazes.test.inputs)


def test_same_seed_same_bytes():
    a, b = (generate_mazes(10, 5, 3, seed=9, progress=False) for _ in range(2))
    c = generate_mazes(10, 5, 3, seed=10, progress=False)
    assert a.train.inputs.tobytes() == b.train.inputs.tobytes() and a.test.labels.tobytes() == b.test.labels.tobytes()
    assert a.manifest == b.manifest
    assert a.train.inputs.tobytes() != c.train.inputs.tobytes()


def test_dihedral_augmentation_keeps_shortest_paths(mazes):
    task = mazes.task
    augmented = augment(mazes.train.take(np.arange(5)), task, 7, seed=0)
    assert len(augmented) == 40 and list(augmented.groups[:9]) == [0] * 8 + [1]
    assert np.array_equal(augmented.inputs[0], mazes.train.inputs[0])  # the original comes first
    assert task.is_solution(augmented.inputs, augmented.labels).all()


def test_thirty_by_thirty_uses_the_upstream_rule():
    maze = next(gen.maze_stream(30, np.random.default_rng(0)))
    assert maze.path_length > 110
    assert get_task("maze").check_solution(maze.puzzle.reshape(-1), maze.label.reshape(-1)) is None


def shortest_path_cells(grid: np.ndarray) -> tuple[int, int]:
    """(length L, number of cells on some shortest S->G path); the path is unique iff cells == L + 1."""
    from_start = bfs(grid, tuple(np.argwhere(grid == START)[0]))
    to_goal = bfs(grid, tuple(np.argwhere(grid == GOAL)[0]))
    length = from_start[tuple(np.argwhere(grid == GOAL)[0])]
    return length, sum(from_start[cell] + to_goal.get(cell, length + 1) == length for cell in from_start)


def test_unique_path_mazes_have_one_shortest_path_that_survives_symmetry():
    unique = generate_mazes(12, 30, 10, seed=4, progress=False, unique_path=True)
    assert unique.manifest["source"]["unique_path"] is True
    for inp in np.concatenate([unique.train.inputs, unique.test.inputs]):
        length, cells = shortest_path_cells(inp.reshape(12, 12))
        assert cells == length + 1
    augmented = augment(unique.train, unique.task, 7, seed=0)
    for inp, lab in zip(augmented.inputs, augmented.labels):
        assert np.array_equal(lab.reshape(12, 12), expected_label(inp.reshape(12, 12)))


def test_without_the_filter_ties_are_common(mazes):
    tied = [cells > length + 1 for length, cells in (shortest_path_cells(i.reshape(12, 12)) for i in mazes.train.inputs)]
    assert sum(tied) > len(tied) // 2
