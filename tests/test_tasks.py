"""The Task interface: tokens, text, neighbourhoods, masks, checks and symmetries."""
import numpy as np
import pytest

from air_interp.errors import AirInterpError
from air_interp.tasks import MazeTask, SudokuTask, get_task
from air_interp.tasks.maze import OPEN, PATH, dihedral, shortest_path

SUDOKU_PUZZLE = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"
SUDOKU_SOLUTION = "534678912672195348198342567859761423426853791713924856961537284287419635345286179"
MAZE_5 = "S #  " " ##  " "   # " " #G  " "     "


@pytest.fixture
def sudoku():
    return get_task("sudoku")


@pytest.fixture
def maze5():
    return get_task("maze5")


def test_registry_keeps_the_skeleton_shapes():
    for name, shape in (("sudoku", (11, 81, 1)), ("maze", (6, 900, 0))):
        task = get_task(name)
        assert (task.vocab_size, task.seq_len, task.undecided_token) == shape
    assert get_task("maze15").seq_len == 225 and get_task("maze15").name == "maze15"
    assert get_task("maze30") is get_task("maze")
    assert isinstance(get_task("sudoku"), SudokuTask) and isinstance(get_task("maze20"), MazeTask)
    with pytest.raises(AirInterpError, match="unknown task"):
        get_task("chess")


def test_tokens_follow_the_upstream_maps(sudoku):
    tokens = sudoku.encode(SUDOKU_PUZZLE)
    assert tokens.dtype == np.uint8 and tokens[0] == 6 and tokens[2] == 1  # '5' -> 6, '.' -> 1
    assert np.array_equal(sudoku.encode(SUDOKU_PUZZLE.replace(".", "0")), tokens)
    assert sudoku.decode(tokens) == SUDOKU_PUZZLE
    maze = get_task("maze")
    assert list(maze.encode("# SGo" * 180)[:5]) == [1, 2, 3, 4, 5]


def test_encode_reports_bad_characters_and_lengths(sudoku):
    with pytest.raises(AirInterpError, match="bad character 'x' at position 3"):
        sudoku.encode("123x" + "." * 77)
    with pytest.raises(AirInterpError, match="expected 81 characters, got 80"):
        sudoku.encode("." * 80)


def test_render(sudoku, maze5):
    text = sudoku.render(sudoku.encode(SUDOKU_PUZZLE))
    assert text.split("\n")[0] == "53. .7. ..." and text.count("\n") == 10
    grid = maze5.encode(MAZE_5)
    assert maze5.render(grid).split("\n") == [MAZE_5[i:i + 5] for i in range(0, 25, 5)]
    assert maze5.render(np.zeros(25, dtype=np.uint8)) == "\n".join(["?????"] * 5)  # PAD shows as '?'


def test_sudoku_neighbourhoods(sudoku):
    nbr = sudoku.neighbourhood(0)
    assert nbr.size == 20 and 0 not in nbr
    assert set(nbr) == set(range(1, 9)) | {9, 18, 27, 36, 45, 54, 63, 72} | {10, 11, 19, 20}
    assert sudoku.neighbourhood(40, include_self=True).size == 21
    assert list(sudoku.neighbourhood(40, "box")) == [30, 31, 32, 39, 41, 48, 49, 50]
    mask = sudoku.neighbourhood_mask()
    assert mask.shape == (81, 81) and np.array_equal(mask, mask.T) and not mask.diagonal().any()
    with pytest.raises(AirInterpError, match="unknown neighbourhood"):
        sudoku.neighbourhood(0, "n4")


def test_maze_neighbourhoods(maze5):
    assert list(maze5.neighbourhood(12, "n4")) == [7, 11, 13, 17]
    assert maze5.neighbourhood(12, "n8").size == 8 and maze5.neighbourhood(12, "5x5").size == 24
    assert list(maze5.neighbourhood(0, "n4")) == [1, 5]  # corners lose the neighbours off the grid
    assert [maze5.nominal_size(kind) for kind in ("n4", "n8", "5x5")] == [4, 8, 24]
    assert maze5.neighbourhood_kinds[0] == "n4"


def _conflicts_by_loops(grid: np.ndarray) -> np.ndarray:
    """Independent conflict mask: a digit cell clashes when a peer holds the same digit."""
    digits = grid.reshape(9, 9).astype(int) - 1
    out = np.zeros((9, 9), dtype=bool)
    for r in range(9):
        for c in range(9):
            if not 1 <= digits[r, c] <= 9:
                continue
            for rr in range(9):
                for cc in range(9):
                    peer = rr == r or cc == c or (rr // 3 == r // 3 and cc // 3 == c // 3)
                    if peer and (rr, cc) != (r, c) and digits[rr, cc] == digits[r, c]:
                        out[r, c] = True
    return out.reshape(81)


def test_sudoku_violation_mask_matches_loops(sudoku):
    rng = np.random.default_rng(0)
    grids = rng.integers(0, 11, size=(20, 81)).astype(np.uint8)
    grids[0] = sudoku.encode(SUDOKU_SOLUTION)
    masks = sudoku.violation_mask(grids)
    assert masks.shape == (20, 81) and not masks[0].any()
    for grid, mask in zip(grids, masks):
        assert np.array_equal(mask, _conflicts_by_loops(grid))
    assert sudoku.violation_mask(grids.reshape(4, 5, 81)).shape == (4, 5, 81)


def test_maze_violation_mask_is_the_error_set(maze5):
    label = shortest_path(maze5.encode(MAZE_5).reshape(5, 5)).reshape(-1)
    decoded = label.copy()
    decoded[[3, 7]] = [0, PATH]
    assert list(np.flatnonzero(maze5.violation_mask(decoded[None], label[None])[0])) == [3, 7]
    with pytest.raises(ValueError, match="labels"):
        maze5.violation_mask(decoded[None])


def test_undecided_mask(sudoku):
    grid = sudoku.encode(SUDOKU_PUZZLE)
    assert np.array_equal(sudoku.undecided_mask(grid), np.array([ch == "." for ch in SUDOKU_PUZZLE]))


def test_sudoku_checks(sudoku):
    puzzle, solution = sudoku.encode(SUDOKU_PUZZLE), sudoku.encode(SUDOKU_SOLUTION)
    assert sudoku.check_puzzle(puzzle) is None and sudoku.check_solution(puzzle, solution) is None
    swapped = solution.copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    assert "breaks a rule" in sudoku.check_solution(puzzle, swapped)
    relabeled = solution.copy()
    relabeled[solution == 2], relabeled[solution == 3] = 3, 2  # digits 1 and 2 exchanged: valid grid
    assert "disagrees with the given" in sudoku.check_solution(puzzle, relabeled)
    clash = puzzle.copy()
    clash[2] = clash[0]
    assert "break a rule at cell r1c" in sudoku.check_puzzle(clash)
    assert list(sudoku.is_solution(np.stack([puzzle, puzzle]), np.stack([solution, swapped]))) == [True, False]


def test_maze_checks(maze5):
    puzzle = maze5.encode(MAZE_5)
    label = shortest_path(puzzle.reshape(5, 5)).reshape(-1)
    assert maze5.check_puzzle(puzzle) is None and maze5.check_solution(puzzle, label) is None
    assert (label == PATH).sum() == 4  # S(0,0) -> (1,0) (2,0) (2,1) (2,2) -> G(3,2): 5 steps
    broken = label.copy()
    broken[np.flatnonzero(label == PATH)[1]] = OPEN
    assert "simple path" in maze5.check_solution(puzzle, broken)
    detour = maze5.encode("S #  " "o##  " "o  # " "o#G  " "ooo  ")
    assert "path has 7 steps, the shortest has 5" in maze5.check_solution(puzzle, detour)
    no_goal = puzzle.copy()
    no_goal[no_goal == 4] = OPEN
    assert "one S and one G" in maze5.check_puzzle(no_goal)
    walled = maze5.encode("S#   " "##   " "     " "  G  " "     ")
    assert "not reachable" in maze5.check_puzzle(walled)


def test_maze_non_shortest_path_is_rejected(maze5):
    puzzle = maze5.encode("S    " "     " "  G  " "     " "     ")
    longer = maze5.encode("Sooo " "   o " "  Go " "     " "     ")
    assert "shortest has 4" in maze5.check_solution(puzzle, longer)


def test_shortest_path_tie_break_prefers_up_right_down_left(maze5):
    puzzle = maze5.encode("     " " S   " "     " "   G " "     ").reshape(5, 5)
    label = shortest_path(puzzle)
    # From S at (1,1): up is farther, right is closer -> right first; then right again, then down.
    assert np.argwhere(label == PATH).tolist() == [[1, 2], [1, 3], [2, 3]]


def test_symmetries_preserve_validity(sudoku, maze5):
    rng = np.random.default_rng(1)
    puzzle, solution = sudoku.encode(SUDOKU_PUZZLE), sudoku.encode(SUDOKU_SOLUTION)
    seen = set()
    for _ in range(30):
        transform = sudoku.random_symmetry(rng)
        p, s = transform(puzzle), transform(solution)
        assert sudoku.check_solution(p, s) is None and (p == 1).sum() == (puzzle == 1).sum()
        seen.add(p.tobytes())
    assert len(seen) == 30
    maze_puzzle = maze5.encode(MAZE_5)
    maze_label = shortest_path(maze_puzzle.reshape(5, 5)).reshape(-1)
    for _ in range(16):
        transform = maze5.random_symmetry(rng)
        assert maze5.check_solution(transform(maze_puzzle), transform(maze_label)) is None


def test_dihedral_group():
    grid = np.arange(9).reshape(3, 3)
    images = {dihedral(grid, k).tobytes() for k in range(8)}
    assert len(images) == 8
    assert np.array_equal(dihedral(grid, 4), grid.T)


def test_a_task_is_told_from_its_tokens_in_one_place():
    from air_interp.tasks import task_for_tokens

    assert task_for_tokens(11) is get_task("sudoku") and task_for_tokens(11, 81) is get_task("sudoku")
    assert task_for_tokens(6) is get_task("maze") and task_for_tokens(6, 100).name == "maze10"
    assert task_for_tokens(6, 81).name == "maze9" and task_for_tokens(11, 100) is None
    assert task_for_tokens(7) is None and task_for_tokens(6, 99) is None


def test_task_facts_live_on_the_task():
    sudoku, maze = get_task("sudoku"), get_task("maze9")
    assert (sudoku.block, maze.block) == (3, 0)  # a 9x9 maze gets no box lines
    assert (sudoku.paper_augmentations, maze.paper_augmentations) == (1000, 0)
    assert sudoku.paper_freeze_directions == {"z_H": -1, "z_L": 1} and maze.paper_freeze_directions == {"z_H": 1, "z_L": 1}
