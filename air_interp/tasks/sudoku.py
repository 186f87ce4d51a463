"""9x9 Sudoku: tokens 0 PAD, 1 blank ('.'), 2..10 the digits 1..9."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from air_interp.tasks.base import AttentionSpec, Contrast, Task, Transform

BLANK = 1
DIGIT_OFFSET = 1  # token = digit + 1


def _units() -> np.ndarray:
    """The 27 units (9 rows, 9 columns, 9 boxes) as flat cell indices, shape (27, 9)."""
    cells = np.arange(81).reshape(9, 9)
    boxes = [cells[r:r + 3, c:c + 3].reshape(-1) for r in range(0, 9, 3) for c in range(0, 9, 3)]
    return np.concatenate([cells, cells.T, np.stack(boxes)])


UNITS = _units()
CELL_UNITS = np.stack([np.flatnonzero((UNITS == cell).any(axis=1)) for cell in range(81)])  # (81, 3)


@dataclass(frozen=True)
class SudokuTask(Task):
    """Rules: every row, column and 3x3 box holds each digit once; givens are kept."""

    @property
    def neighbourhood_kinds(self) -> tuple[str, ...]:
        return ("rcb", "row", "col", "box")

    @property
    def block(self) -> int:
        return 3

    @property
    def paper_augmentations(self) -> int:
        """1,000 puzzles x 1,000 augmentations."""
        return 1000

    @property
    def paper_freeze_directions(self) -> dict[str, int]:
        """Freezing z_H: fewer z_L changes (1,235 -> 323); freezing z_L: more z_H changes (275 -> 551)."""
        return {"z_H": -1, "z_L": 1}

    def _char_aliases(self) -> dict[str, int]:
        return {"0": BLANK}

    @property
    def attention_spec(self) -> AttentionSpec:
        """Δnbr on row ∪ column ∪ box with the query included (21 cells, as the AIR release);
        Δviol over every conflicting cell of the board, as published."""
        return AttentionSpec((Contrast("d_nbr", "rcb", include_self=True),), class_kind="rcb",
                             violation_scope="board", adjacent_label="violation-adjacent")

    def attention_queries(self, inputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The cells blank in the input."""
        return np.asarray(inputs) == BLANK

    def _neighbours(self, kind: str, row: int, col: int) -> list[tuple[int, int]]:
        same_row = [(row, c) for c in range(9)]
        same_col = [(r, col) for r in range(9)]
        r0, c0 = row - row % 3, col - col % 3
        same_box = [(r, c) for r in range(r0, r0 + 3) for c in range(c0, c0 + 3)]
        return {"row": same_row, "col": same_col, "box": same_box, "rcb": same_row + same_col + same_box}[kind]

    def render(self, grid: np.ndarray) -> str:
        """Nine lines, a space between 3-column stacks and a blank line between bands."""
        lines = super().render(grid).split("\n")
        spaced = [" ".join(line[i:i + 3] for i in range(0, 9, 3)) for line in lines]
        return "\n\n".join("\n".join(spaced[b:b + 3]) for b in range(0, 9, 3))

    def digits(self, grids: np.ndarray) -> np.ndarray:
        """Tokens -> digits 1..9, with 0 for anything that is not a digit (blank, PAD)."""
        tokens = np.asarray(grids).astype(np.int16)
        return np.where((tokens > BLANK) & (tokens <= BLANK + 9), tokens - DIGIT_OFFSET, 0)

    def violation_mask(self, grids: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """Cells whose digit also appears elsewhere in their row, column or box (labels unused)."""
        digits = self.digits(grids).reshape(-1, 81)
        onehot = digits[:, :, None] == np.arange(1, 10)  # (B, 81, 9)
        counts = onehot[:, UNITS, :].sum(axis=2)  # (B, 27, 9)
        duplicated = (counts >= 2)[:, CELL_UNITS, :].any(axis=2)  # (B, 81, 9)
        return (onehot & duplicated).any(axis=-1).reshape(np.shape(grids)[:-1] + (81,))

    def check_puzzle(self, puzzle: np.ndarray) -> str | None:
        """Well-formed (blanks and digits only) and no rule broken by the givens.

        Whether a solution exists, and is unique, needs a search:
        ``air_interp.data.sudoku.count_solutions``.
        """
        tokens = np.asarray(puzzle).reshape(-1)
        if tokens.size != 81 or not np.all((tokens >= BLANK) & (tokens <= BLANK + 9)):
            return "not 81 cells of blanks and digits"
        clash = np.flatnonzero(self.violation_mask(tokens[None])[0])
        if clash.size:
            return f"givens break a rule at cell {_cell_name(int(clash[0]))}"
        return None

    def check_solution(self, puzzle: np.ndarray, solution: np.ndarray) -> str | None:
        """A full grid that breaks no rule and keeps every given of ``puzzle``."""
        sol = self.digits(solution).reshape(-1)
        if sol.size != 81 or not np.all(sol > 0):
            return "solution is not 81 digits"
        clash = np.flatnonzero(self.violation_mask(sol[None] + DIGIT_OFFSET)[0])
        if clash.size:
            return f"solution breaks a rule at cell {_cell_name(int(clash[0]))}"
        givens = self.digits(puzzle).reshape(-1)
        differ = np.flatnonzero((givens > 0) & (givens != sol))
        if differ.size:
            return f"solution disagrees with the given at cell {_cell_name(int(differ[0]))}"
        return None

    def bad_examples(self, puzzles: np.ndarray, solutions: np.ndarray) -> np.ndarray:
        """:meth:`check_puzzle` and :meth:`check_solution` for a batch at once."""
        puzzles, solutions = np.asarray(puzzles), np.asarray(solutions)
        puzzle_ok = np.all((puzzles >= BLANK) & (puzzles <= BLANK + 9), axis=-1)
        puzzle_ok &= ~self.violation_mask(puzzles).any(-1)
        solution_ok = np.all((solutions > BLANK) & (solutions <= BLANK + 9), axis=-1)
        solution_ok &= ~self.violation_mask(solutions).any(-1)
        keeps_givens = np.all((puzzles == BLANK) | (puzzles == solutions), axis=-1)
        return ~(puzzle_ok & solution_ok & keeps_givens)

    def symmetry_invariant(self, grids: np.ndarray) -> np.ndarray:
        """Blanks, and the digits' counts in sorted order (a relabelling permutes the digits)."""
        counts = super().symmetry_invariant(grids)
        return np.concatenate([counts[..., :BLANK + 1], np.sort(counts[..., BLANK + 1:], axis=-1)], axis=-1)

    def random_symmetry(self, rng: np.random.Generator) -> Transform:
        """Upstream's augmentation: digit permutation, transpose (p=0.5), band/row and stack/column
        permutations. The draw order is fixed, so a seeded generator gives the same transforms."""
        digit_perm = rng.permutation(9)
        transpose = bool(rng.random() < 0.5)
        rows = np.concatenate([3 * band + rng.permutation(3) for band in rng.permutation(3)])
        cols = np.concatenate([3 * stack + rng.permutation(3) for stack in rng.permutation(3)])
        cells = np.arange(81).reshape(9, 9)
        if transpose:
            cells = cells.T
        source = cells[rows][:, cols].reshape(-1)
        token_map = np.arange(self.vocab_size, dtype=np.uint8)
        token_map[BLANK + 1:BLANK + 10] = digit_perm + BLANK + 1
        return lambda tokens: token_map[np.asarray(tokens)[..., source]]


def _cell_name(cell: int) -> str:
    return f"r{cell // 9 + 1}c{cell % 9 + 1}"


SUDOKU = SudokuTask("sudoku", vocab_size=11, seq_len=81, undecided_token=BLANK, side=9, alphabet=".123456789")
