"""Sudoku solver, generator tiers, rating and the equivalence invariant, checked independently."""
import numpy as np
import pytest

from air_interp.data import sudoku as gen
from air_interp.data.generate import generate_sudoku
from air_interp.data.sudoku_solver import count_solutions, solve
from air_interp.tasks import get_task
from air_interp.errors import AirInterpError

SUDOKU = get_task("sudoku")
FAMOUS = {
    "easy (Wikipedia)": "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79",
    "AI Escargot": "1....7.9..3..2...8..96..5....53..9...1..8...26....4...3......1..4......7..7...3..",
    "Inkala 2012": "8..........36......7..9.2...5...7.......457.....1...3...1....68..85...1..9....4..",
    "Golden Nugget": ".......39" ".....1..5" "..3.5.8.." "..8.9...6" ".7...2..." "1..4....." "..9.8..5." ".2....6.."
    "4..7.....",
}


def digits_of(text: str) -> np.ndarray:
    return np.array([0 if ch in ".0" else int(ch) for ch in text], dtype=np.int8)


def brute_force_solutions(digits: np.ndarray, limit: int = 2) -> list[list[int]]:
    """Independent plain backtracking (no inference beyond the cell's own candidates)."""
    grid = [int(d) for d in digits]
    found: list[list[int]] = []

    def candidates(cell: int) -> set[int]:
        r, c = divmod(cell, 9)
        used = {grid[r * 9 + k] for k in range(9)} | {grid[k * 9 + c] for k in range(9)}
        br, bc = r - r % 3, c - c % 3
        used |= {grid[(br + i) * 9 + bc + j] for i in range(3) for j in range(3)}
        return set(range(1, 10)) - used

    def search() -> None:
        blanks = [cell for cell in range(81) if grid[cell] == 0]
        if not blanks:
            found.append(grid.copy())
            return
        cell = min(blanks, key=lambda k: len(candidates(k)))
        for digit in sorted(candidates(cell)):
            grid[cell] = digit
            search()
            grid[cell] = 0
            if len(found) >= limit:
                return

    search()
    return found


@pytest.fixture(scope="module")
def minimal_set():
    return generate_sudoku("minimal", 6, 4, seed=3, progress=False)


def test_counter_agrees_with_brute_force():
    rng = np.random.default_rng(0)
    puzzle = gen.minimize(gen.random_solution(rng), rng)
    cases = [puzzle]
    for cell in np.flatnonzero(puzzle)[:4]:  # minimal: dropping any clue gives several solutions
        weaker = puzzle.copy()
        weaker[cell] = 0
        cases.append(weaker)
    contradiction = puzzle.copy()
    blank = np.flatnonzero(puzzle == 0)[0]
    contradiction[blank] = next(d for d in range(1, 10) if not brute_force_solutions(_with(puzzle, blank, d), 1))
    cases.append(contradiction)
    for case in cases:
        assert count_solutions(case) == len(brute_force_solutions(case))


def _with(puzzle: np.ndarray, cell: int, digit: int) -> np.ndarray:
    out = puzzle.copy()
    out[cell] = digit
    return out


def test_every_generated_puzzle_has_one_solution_equal_to_its_label(minimal_set):
    for split in (minimal_set.train, minimal_set.test):
        for inp, lab in zip(split.inputs, split.labels):
            solutions = brute_force_solutions(gen.to_digits(inp))
            assert len(solutions) == 1
            assert np.array_equal(np.array(solutions[0]) + 1, lab)
            assert SUDOKU.check_solution(inp, lab) is None


def test_minimal_tier_is_minimal(minimal_set):
    puzzle = gen.to_digits(minimal_set.train.inputs[0])
    for cell in np.flatnonzero(puzzle):
        assert len(brute_force_solutions(_with(puzzle, cell, 0))) == 2


def test_easy_tier_has_the_requested_clues():
    data = generate_sudoku("easy", 3, 2, seed=1, clues=40, progress=False)
    for inp in data.train.inputs:
        assert (inp > 1).sum() == 40
        assert len(brute_force_solutions(gen.to_digits(inp))) == 1


def test_hard_tier_respects_the_rating_floor():
    data = generate_sudoku("hard", 3, 1, seed=2, min_rating=5.0, progress=False)
    assert np.all(data.train.ratings >= 5.0) and np.all(data.test.ratings >= 5.0)
    assert data.manifest["source"]["min_rating"] == 5.0
    for inp, lab in zip(data.train.inputs, data.train.labels):
        assert [list(np.array(s) + 1) for s in brute_force_solutions(gen.to_digits(inp))] == [list(lab)]


def test_ratings_are_monotone_on_famous_puzzles():
    ratings = {name: gen.rate(digits_of(text), np.random.default_rng(0), 16) for name, text in FAMOUS.items()}
    assert ratings["easy (Wikipedia)"] == 0.0
    assert ratings["AI Escargot"] > 20 and ratings["Inkala 2012"] > 20
    assert ratings["Golden Nugget"] > max(ratings["AI Escargot"], ratings["Inkala 2012"])


def test_famous_puzzles_are_solved_correctly():
    for text in FAMOUS.values():
        solution, _ = solve(digits_of(text))
        assert SUDOKU.check_solution(SUDOKU.encode(text), gen.to_tokens(solution)) is None
        assert count_solutions(digits_of(text)) == 1
    easy = digits_of(FAMOUS["easy (Wikipedia)"])
    assert [list(solve(easy)[0])] == [list(s) for s in brute_force_solutions(easy)]


def test_invariant_is_invariant_and_discriminates():
    rng = np.random.default_rng(5)
    tokens = SUDOKU.encode(FAMOUS["AI Escargot"])
    key = gen.invariant(tokens)
    assert all(gen.invariant(SUDOKU.random_symmetry(rng)(tokens)) == key for _ in range(50))
    others = {gen.invariant(SUDOKU.encode(text)) for text in FAMOUS.values()}
    assert len(others) == len(FAMOUS)


def test_no_test_puzzle_is_equivalent_to_a_training_puzzle(minimal_set):
    train = {gen.invariant(inp) for inp in minimal_set.train.inputs}
    assert all(gen.invariant(inp) not in train for inp in minimal_set.test.inputs)
    assert len(train) == len(minimal_set.train)


def test_same_seed_same_bytes_other_seed_other_bytes():
    a = generate_sudoku("hard", 2, 1, seed=11, min_rating=3.0, progress=False)
    b = generate_sudoku("hard", 2, 1, seed=11, min_rating=3.0, progress=False)
    c = generate_sudoku("hard", 2, 1, seed=12, min_rating=3.0, progress=False)
    for name in ("inputs", "labels", "ratings", "puzzle_ids"):
        assert getattr(a.train, name).tobytes() == getattr(b.train, name).tobytes()
    assert a.manifest == b.manifest
    assert a.train.inputs.tobytes() != c.train.inputs.tobytes()


def test_unknown_tier():
    with pytest.raises(AirInterpError, match="unknown tier"):
        next(gen.puzzle_stream("fiendish", np.random.default_rng(0)))
