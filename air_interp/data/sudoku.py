"""Sudoku generation in difficulty tiers, the difficulty rating, and the equivalence invariant.

Tiers (every puzzle has exactly one solution):

- ``easy``: clues removed from a random full grid in random order, keeping the solution unique,
  down to ``clues`` clues.
- ``minimal``: the same, down to a minimal puzzle (no clue can be removed).
- ``hard``: minimal puzzles whose rating is at least ``min_rating``.

The rating (tdoku-style) is the mean, over ``relabelings`` random symmetries of the puzzle
(digit permutation, transpose, band/row and stack/column permutations), of the number of guesses
the solver of :mod:`air_interp.data.sudoku_solver` makes before it finds the solution. The
symmetries change which cell and digit the search tries first, so the mean is a smooth measure
that does not depend on how the puzzle happens to be written. 0 means singles and locked
candidates solve it without search.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from collections.abc import Iterator

import numpy as np

from air_interp.data.sudoku_solver import minimize, random_solution, solve
from air_interp.errors import AirInterpError
from air_interp.tasks.sudoku import SUDOKU

TIERS = ("easy", "minimal", "hard")
DEFAULT_RELABELINGS = 8
MIN_CLUES = 17  # no Sudoku with fewer clues has a unique solution (McGuire et al., 2012)
# Candidates in a row that miss the tier's condition before the stream gives up: far beyond any
# setting that can be met (the hard tier at rating 8 keeps 1 candidate in 30).
MAX_REJECTED = 10_000


@dataclass(frozen=True)
class SudokuPuzzle:
    """One generated puzzle: digits 0..9 (0 blank), its solution, rating and stream index."""

    puzzle: np.ndarray
    solution: np.ndarray
    rating: float
    index: int


def to_tokens(digits: np.ndarray) -> np.ndarray:
    return (np.asarray(digits) + 1).astype(np.uint8)


def to_digits(tokens: np.ndarray) -> np.ndarray:
    return SUDOKU.digits(tokens).astype(np.int8)


def rate(digits: np.ndarray, rng: np.random.Generator, relabelings: int = DEFAULT_RELABELINGS) -> float:
    """Mean number of guesses over ``relabelings`` random symmetries of the puzzle (see module doc)."""
    tokens = to_tokens(digits)
    guesses = [solve(to_digits(SUDOKU.random_symmetry(rng)(tokens)))[1] for _ in range(relabelings)]
    return float(np.mean(guesses))


def invariant(tokens: np.ndarray) -> bytes:
    """A digest equal for all puzzles related by a relabeling or a symmetry (necessary condition).

    Built from, for each clue: its row's and column's clue counts (as an unordered pair, since a
    transpose swaps them), its box's clue count, how often its digit is given, and how often its
    digit is given in its row-band and column-stack (again unordered). Two puzzles with different
    digests are never equivalent; equal digests are treated as possibly equivalent.
    """
    digits = to_digits(tokens).reshape(9, 9)
    given = digits > 0
    row_n, col_n = given.sum(axis=1), given.sum(axis=0)
    box_n = given.reshape(3, 3, 3, 3).sum(axis=(1, 3))
    digit_n = np.bincount(digits[given], minlength=10)
    band_digit = np.stack(
        [np.bincount(digits[3 * b:3 * b + 3][given[3 * b:3 * b + 3]], minlength=10) for b in range(3)]
    )
    stack_digit = np.stack(
        [np.bincount(digits[:, 3 * s:3 * s + 3][given[:, 3 * s:3 * s + 3]], minlength=10) for s in range(3)]
    )
    features = sorted(
        (
            min(row_n[r], col_n[c]),
            max(row_n[r], col_n[c]),
            box_n[r // 3, c // 3],
            digit_n[digits[r, c]],
            min(band_digit[r // 3, digits[r, c]], stack_digit[c // 3, digits[r, c]]),
            max(band_digit[r // 3, digits[r, c]], stack_digit[c // 3, digits[r, c]]),
        )
        for r, c in zip(*np.nonzero(given))
    )
    return hashlib.sha1(np.array(features, dtype=np.int16).tobytes()).digest()


def puzzle_stream(
    tier: str, rng: np.random.Generator, clues: int = 36, min_rating: float = 0.0,
    relabelings: int = DEFAULT_RELABELINGS,
) -> Iterator[SudokuPuzzle]:
    """Endless stream of puzzles of a tier; ``index`` counts the candidates drawn so far.

    Gives up with an AirInterpError after ``MAX_REJECTED`` candidates in a row that miss the
    tier's condition (fewer clues than random removal reaches, a rating no puzzle has)."""
    check_settings(tier, clues, min_rating, relabelings)
    target = clues if tier == "easy" else 0
    index = rejected = 0
    while True:
        solution = random_solution(rng)
        puzzle = minimize(solution, rng, target)
        index += 1
        missed_clues = tier == "easy" and int((puzzle > 0).sum()) != clues
        rating = None if missed_clues else rate(puzzle, rng, relabelings)
        if rating is None or (tier == "hard" and rating < min_rating):
            rejected += 1
            if rejected >= MAX_REJECTED:
                wanted = f"{clues} clues" if tier == "easy" else f"a rating of at least {min_rating:g}"
                raise AirInterpError(f"no Sudoku with {wanted} among {MAX_REJECTED:,} candidates in a row; "
                                     "ask for an easier setting (random removal rarely gets below 22 clues)")
            continue
        rejected = 0
        yield SudokuPuzzle(puzzle, solution, rating, index - 1)


def check_settings(tier: str, clues: int, min_rating: float, relabelings: int) -> None:
    """Raise a one-line AirInterpError for settings no puzzle can meet."""
    if tier not in TIERS:
        raise AirInterpError(f"unknown tier {tier!r}; known: {', '.join(TIERS)}")
    if tier == "easy" and not MIN_CLUES <= clues <= SUDOKU.seq_len:
        raise AirInterpError(f"--clues {clues}: a Sudoku with a unique solution has {MIN_CLUES} to "
                             f"{SUDOKU.seq_len} clues")
    if relabelings < 1:
        raise AirInterpError(f"--relabelings {relabelings}: the rating averages at least one symmetry")
    if tier == "hard" and not np.isfinite(min_rating):
        raise AirInterpError(f"--min-rating {min_rating}: must be a finite number")
