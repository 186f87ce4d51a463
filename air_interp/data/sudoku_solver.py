"""A compiled Sudoku solver: constraint propagation plus depth-first search.

Candidates are 9-bit masks per cell (bit d-1 for digit d). Propagation applies naked singles,
hidden singles and locked candidates (pointing and claiming) to a fixed point; the search then
branches on the first cell with the fewest candidates, trying digits in a given priority order.
The number of values tried at branch points ("guesses") is the basis of the difficulty rating.

Puzzles here are digit arrays: int8 ``(81,)`` with 0 for a blank.
"""
from __future__ import annotations

from air_interp.data.jit import njit
import numpy as np

from air_interp.tasks.sudoku import UNITS

ALL = 0x1FF
POPCOUNT = np.array([bin(m).count("1") for m in range(512)], dtype=np.int8)
PEERS = np.array([sorted(set(UNITS[(UNITS == c).any(axis=1)].reshape(-1)) - {c}) for c in range(81)], dtype=np.int64)
LINES = UNITS[:18].astype(np.int64)
BOXES = UNITS[18:].astype(np.int64)
BOX_OF = np.array([(c // 27) * 3 + (c % 9) // 3 for c in range(81)], dtype=np.int64)
NATURAL_ORDER = np.tile(np.arange(9, dtype=np.int64), (81, 1))


@njit
def _singles(cand: np.ndarray) -> int:
    """One pass of naked and hidden singles: 1 if something changed, 0 if not, -1 on contradiction."""
    changed = 0
    for cell in range(81):
        mask = cand[cell]
        if mask == 0:
            return -1
        if POPCOUNT[mask] == 1:
            for k in range(20):
                peer = PEERS[cell, k]
                if cand[peer] & mask:
                    cand[peer] &= ~mask
                    if cand[peer] == 0:
                        return -1
                    changed = 1
    for unit in range(27):
        for digit in range(9):
            bit = np.uint16(1 << digit)
            count = 0
            where = 0
            for k in range(9):
                cell = UNITS[unit, k]
                if cand[cell] & bit:
                    count += 1
                    where = cell
            if count == 0:
                return -1
            if count == 1 and cand[where] != bit:
                cand[where] = bit
                changed = 1
    return changed


@njit
def _eliminate(cand: np.ndarray, cells: np.ndarray, bit: np.uint16, keep_box: int, keep_line: int) -> int:
    """Remove ``bit`` from ``cells`` outside box ``keep_box`` (or, if -1, outside line ``keep_line``)."""
    changed = 0
    for k in range(9):
        cell = cells[k]
        if keep_box >= 0 and BOX_OF[cell] == keep_box:
            continue
        if keep_line >= 0 and (cell // 9 == keep_line or 9 + cell % 9 == keep_line):
            continue
        if cand[cell] & bit:
            cand[cell] &= ~bit
            if cand[cell] == 0:
                return -1
            changed = 1
    return changed


@njit
def _locked_candidates(cand: np.ndarray) -> int:
    """Pointing (box -> line) and claiming (line -> box) eliminations, same return code as _singles."""
    changed = 0
    for digit in range(9):
        bit = np.uint16(1 << digit)
        for box in range(9):
            rows = 0
            cols = 0
            for k in range(9):
                cell = BOXES[box, k]
                if cand[cell] & bit:
                    rows |= 1 << (cell // 9)
                    cols |= 1 << (cell % 9)
            for line_mask, offset in ((rows, 0), (cols, 9)):
                if line_mask != 0 and line_mask & (line_mask - 1) == 0:
                    line = offset + int(np.log2(line_mask))
                    result = _eliminate(cand, LINES[line], bit, box, -1)
                    if result < 0:
                        return -1
                    changed |= result
        for line in range(18):
            boxes = 0
            for k in range(9):
                cell = LINES[line, k]
                if cand[cell] & bit:
                    boxes |= 1 << BOX_OF[cell]
            if boxes != 0 and boxes & (boxes - 1) == 0:
                result = _eliminate(cand, BOXES[int(np.log2(boxes))], bit, -1, line)
                if result < 0:
                    return -1
                changed |= result
    return changed


@njit
def _propagate(cand: np.ndarray) -> bool:
    """Apply singles, then locked candidates, until nothing changes; False on a contradiction."""
    while True:
        result = _singles(cand)
        if result < 0:
            return False
        if result > 0:
            continue
        result = _locked_candidates(cand)
        if result < 0:
            return False
        if result == 0:
            return True


@njit
def _branch_cell(cand: np.ndarray) -> int:
    """The first cell with the fewest (>1) candidates, or -1 if every cell is decided."""
    best = -1
    fewest = 10
    for cell in range(81):
        n = POPCOUNT[cand[cell]]
        if 1 < n < fewest:
            best = cell
            fewest = n
            if n == 2:
                break
    return best


@njit
def _next_bit(remaining: np.uint16, order: np.ndarray) -> np.uint16:
    for k in range(9):
        bit = np.uint16(1 << order[k])
        if remaining & bit:
            return bit
    return np.uint16(0)


@njit
def _search(cand0: np.ndarray, limit: int, order: np.ndarray, solution: np.ndarray) -> tuple[int, int]:
    """Count solutions up to ``limit``; the first one goes into ``solution`` (candidate masks).

    Returns (solutions found, guesses made). ``order[cell]`` is the digit priority (0-based).
    """
    stack = np.empty((82, 81), dtype=np.uint16)
    branch = np.empty(82, dtype=np.int64)
    remaining = np.empty(82, dtype=np.uint16)
    stack[0, :] = cand0
    if not _propagate(stack[0]):
        return 0, 0
    count = 0
    guesses = 0
    depth = 0
    while True:
        cell = _branch_cell(stack[depth])
        if cell < 0:
            if count == 0:
                solution[:] = stack[depth]
            count += 1
            if count >= limit:
                return count, guesses
            depth -= 1
        else:
            branch[depth] = cell
            remaining[depth] = stack[depth, cell]
        while depth >= 0:
            if remaining[depth] == 0:
                depth -= 1
                continue
            bit = _next_bit(remaining[depth], order[branch[depth]])
            remaining[depth] &= ~bit
            stack[depth + 1, :] = stack[depth, :]
            stack[depth + 1, branch[depth]] = bit
            guesses += 1
            if _propagate(stack[depth + 1]):
                depth += 1
                break
        if depth < 0:
            return count, guesses


@njit
def _to_candidates(digits: np.ndarray) -> np.ndarray:
    cand = np.empty(81, dtype=np.uint16)
    for cell in range(81):
        cand[cell] = ALL if digits[cell] == 0 else 1 << (digits[cell] - 1)
    return cand


@njit
def _to_digits(cand: np.ndarray) -> np.ndarray:
    digits = np.zeros(81, dtype=np.int8)
    for cell in range(81):
        if POPCOUNT[cand[cell]] == 1:
            digits[cell] = int(np.log2(cand[cell])) + 1
    return digits


@njit
def _minimize(solution: np.ndarray, removal_order: np.ndarray, target_clues: int) -> np.ndarray:
    """Blank cells in ``removal_order`` while the puzzle keeps a unique solution, stopping at
    ``target_clues`` clues. One pass suffices for minimality: a clue that could not be removed
    earlier cannot be removed later, since fewer clues only allow more solutions."""
    puzzle = solution.copy()
    scratch = np.empty(81, dtype=np.uint16)
    clues = 81
    for cell in removal_order:
        if clues <= target_clues:
            break
        kept = puzzle[cell]
        puzzle[cell] = 0
        count, _ = _search(_to_candidates(puzzle), 2, NATURAL_ORDER, scratch)
        if count == 1:
            clues -= 1
        else:
            puzzle[cell] = kept
    return puzzle


def count_solutions(digits: np.ndarray, limit: int = 2) -> int:
    """Number of solutions of a digit puzzle, counting stops at ``limit``."""
    scratch = np.empty(81, dtype=np.uint16)
    count, _ = _search(_to_candidates(np.asarray(digits, dtype=np.int8)), limit, NATURAL_ORDER, scratch)
    return int(count)


def solve(digits: np.ndarray, order: np.ndarray | None = None) -> tuple[np.ndarray | None, int]:
    """(first solution found or None, guesses made), trying digits in ``order`` (81x9, 0-based)."""
    out = np.empty(81, dtype=np.uint16)
    order = NATURAL_ORDER if order is None else np.asarray(order, dtype=np.int64)
    count, guesses = _search(_to_candidates(np.asarray(digits, dtype=np.int8)), 1, order, out)
    return (_to_digits(out) if count else None), int(guesses)


def random_solution(rng: np.random.Generator) -> np.ndarray:
    """A random complete grid: solve the empty grid trying digits in a random order per cell."""
    order = np.argsort(rng.random((81, 9)), axis=1)
    solution, _ = solve(np.zeros(81, dtype=np.int8), order)
    assert solution is not None
    return solution


def minimize(solution: np.ndarray, rng: np.random.Generator, target_clues: int = 0) -> np.ndarray:
    """A unique-solution puzzle of ``solution``: minimal if ``target_clues`` is 0, else with that
    many clues when reachable (more if the removal order gets stuck first)."""
    return _minimize(np.asarray(solution, dtype=np.int8), rng.permutation(81).astype(np.int64), target_clues)
