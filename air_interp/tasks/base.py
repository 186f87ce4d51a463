"""The interface every task implements; probes, training and data code use only this.

A task is a square grid of ``side x side`` cells, flattened row-major into ``seq_len`` tokens.
Token 0 is always PAD; tokens ``1..len(alphabet)`` are the characters of ``alphabet`` in order,
which is also the text form used by the upstream CSV files.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from collections.abc import Callable

import numpy as np

from air_interp.errors import AirInterpError

PAD = 0
UNKNOWN_CHAR = "?"

Transform = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Contrast:
    """One attention-locality contrast: the mass difference L - H on a neighbourhood.

    With ``density`` the difference is divided by the neighbourhood's nominal size (Maze Δρ).
    """

    column: str
    kind: str
    include_self: bool = False
    density: bool = False


@dataclass(frozen=True)
class AttentionSpec:
    """How the attention probe reads this task (docs/analyses.md): contrasts, query classes, violation scope.

    A query is ``adjacent_label`` when a cell of its ``class_kind`` neighbourhood (query excluded) is
    in the violation set; Δviol sums over the whole board (``violation_scope="board"``) or over that
    neighbourhood only (``"neighbourhood"``).
    """

    contrasts: tuple[Contrast, ...]
    class_kind: str
    violation_scope: str
    adjacent_label: str


@dataclass(frozen=True)
class Task:
    """Token shapes plus the task logic (text form, neighbourhoods, checks, symmetries)."""

    name: str
    vocab_size: int
    seq_len: int
    undecided_token: int
    side: int = 0
    alphabet: str = ""

    # ---- text <-> tokens -------------------------------------------------------------------
    def encode(self, text: str) -> np.ndarray:
        """One puzzle in its text form (``seq_len`` characters) -> uint8 tokens.

        Raises ``AirInterpError`` naming the first bad character or the wrong length.
        """
        if len(text) != self.seq_len:
            raise AirInterpError(f"expected {self.seq_len} characters, got {len(text)}")
        table = self._char_table()
        codes = np.frombuffer(text.encode("latin-1", errors="replace"), dtype=np.uint8)
        tokens = table[codes]
        bad = np.flatnonzero(tokens == 255)
        if bad.size:
            i = int(bad[0])
            raise AirInterpError(f"bad character {text[i]!r} at position {i} (allowed: {self.alphabet!r})")
        return tokens

    def decode(self, tokens: np.ndarray) -> str:
        """Tokens -> the one-line text form; tokens outside the alphabet (PAD) become '?'."""
        chars = np.array(list(UNKNOWN_CHAR + self.alphabet + UNKNOWN_CHAR * self.vocab_size))
        flat = np.asarray(tokens).reshape(-1)
        return "".join(chars[np.clip(flat, 0, len(chars) - 1)])

    def render(self, grid: np.ndarray) -> str:
        """A token grid (flat or ``side x side``) as ``side`` lines of text."""
        text = self.decode(grid)
        return "\n".join(text[r * self.side:(r + 1) * self.side] for r in range(self.side))

    def _char_aliases(self) -> dict[str, int]:
        """Extra accepted characters (token by character); none by default."""
        return {}

    def _char_table(self) -> np.ndarray:
        table = np.full(256, 255, dtype=np.uint8)
        for token, char in enumerate(self.alphabet, start=1):
            table[ord(char)] = token
        for char, token in self._char_aliases().items():
            table[ord(char)] = token
        return table

    # ---- masks over a batch of decoded grids --------------------------------------------------
    def undecided_mask(self, grids: np.ndarray) -> np.ndarray:
        """True where a decoded grid holds the "undecided" token (BLANK for Sudoku, PAD for Maze)."""
        return np.asarray(grids) == self.undecided_token

    def violation_mask(self, grids: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """Bool ``(batch, seq_len)``: the cells a probe counts as wrong in each decoded grid."""
        raise NotImplementedError

    # ---- facts of the paper and of drawing ----------------------------------------------------
    @property
    def block(self) -> int:
        """Side of the blocks a grid is drawn in (Sudoku's 3x3 boxes); 0 for none."""
        return 0

    @property
    def paper_augmentations(self) -> int:
        """Random symmetries per training puzzle in the paper's recipe."""
        return 0

    @property
    def paper_freeze_directions(self) -> dict[str, int]:
        """How the paper's freeze table moves the other state's content changes when ``"z_H"`` or
        ``"z_L"`` is frozen: +1 more changes, -1 fewer."""
        raise NotImplementedError

    # ---- attention analysis ------------------------------------------------------------------
    @property
    def attention_spec(self) -> AttentionSpec:
        """The contrasts and classes the paper reports for this task."""
        raise NotImplementedError

    def attention_queries(self, inputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Bool ``(batch, seq_len)``: the query cells of the attention analysis."""
        raise NotImplementedError

    # ---- neighbourhoods --------------------------------------------------------------------
    @property
    def neighbourhood_kinds(self) -> tuple[str, ...]:
        """The names accepted by :meth:`neighbourhood`; the first is the default."""
        raise NotImplementedError

    def _neighbours(self, kind: str, row: int, col: int) -> list[tuple[int, int]]:
        """Cells (row, col) in the ``kind`` neighbourhood of (row, col), itself excluded."""
        raise NotImplementedError

    def nominal_size(self, kind: str | None = None) -> int:
        """Neighbourhood size away from borders (the divisor of a density), query excluded."""
        return int(self.neighbourhood_mask(kind).sum(axis=1).max())

    def neighbourhood_mask(self, kind: str | None = None, include_self: bool = False) -> np.ndarray:
        """Bool ``(seq_len, seq_len)``: row q marks the neighbours of cell q."""
        mask = self._neighbourhood_mask(kind or self.neighbourhood_kinds[0]).copy()
        if include_self:
            np.fill_diagonal(mask, True)
        return mask

    def neighbourhood(self, cell: int, kind: str | None = None, include_self: bool = False) -> np.ndarray:
        """Flat indices of the neighbours of flat cell index ``cell`` (sorted).

        The AIR release counts the Sudoku query in its own neighbourhood (21 cells): pass
        ``include_self=True`` to follow it.
        """
        row = self._neighbourhood_mask(kind or self.neighbourhood_kinds[0])[cell].copy()
        row[cell] = row[cell] or include_self
        return np.flatnonzero(row)

    def _neighbourhood_mask(self, kind: str) -> np.ndarray:
        return _cached_mask(self, kind)

    def _build_neighbourhood_mask(self, kind: str) -> np.ndarray:
        if kind not in self.neighbourhood_kinds:
            raise AirInterpError(
                f"unknown neighbourhood {kind!r} for task {self.name}; known: {', '.join(self.neighbourhood_kinds)}"
            )
        mask = np.zeros((self.seq_len, self.seq_len), dtype=bool)
        for cell in range(self.seq_len):
            row, col = divmod(cell, self.side)
            for r, c in self._neighbours(kind, row, col):
                if 0 <= r < self.side and 0 <= c < self.side and (r, c) != (row, col):
                    mask[cell, r * self.side + c] = True
        mask.flags.writeable = False
        return mask

    # ---- validity ---------------------------------------------------------------------------
    def check_puzzle(self, puzzle: np.ndarray) -> str | None:
        """None if ``puzzle`` (tokens) is a well-formed, solvable puzzle, else what is wrong."""
        raise NotImplementedError

    def check_solution(self, puzzle: np.ndarray, solution: np.ndarray) -> str | None:
        """None if ``solution`` (tokens) solves ``puzzle``, else what is wrong."""
        raise NotImplementedError

    def check_example(self, puzzle: np.ndarray, solution: np.ndarray) -> str | None:
        """What is wrong with one (puzzle, solution) pair by the task's rules, or None: the check
        every row of a dataset passes (on import, and when a dataset is loaded)."""
        problem = self.check_puzzle(puzzle)
        if problem is not None:
            return f"question: {problem}"
        return self.check_solution(puzzle, solution)

    def bad_examples(self, puzzles: np.ndarray, solutions: np.ndarray) -> np.ndarray:
        """Bool ``(N,)`` over a batch ``(N, seq_len)``: the rows :meth:`check_example` refuses,
        computed for the whole batch at once (a task implements it; the reason for a row is
        :meth:`check_example`'s)."""
        raise NotImplementedError

    def first_bad_example(self, puzzles: np.ndarray, solutions: np.ndarray,
                          chunk: int = 4096) -> tuple[int, str] | None:
        """The first row of a batch that breaks the task's rules and what is wrong, or None."""
        puzzles, solutions = np.asarray(puzzles), np.asarray(solutions)
        for start in range(0, len(puzzles), chunk):
            bad = np.flatnonzero(self.bad_examples(puzzles[start:start + chunk], solutions[start:start + chunk]))
            if bad.size:
                row = start + int(bad[0])
                return row, self.check_example(puzzles[row], solutions[row]) or "breaks the task's rules"
        return None

    def symmetry_invariant(self, grids: np.ndarray) -> np.ndarray:
        """``(N, k)`` integers that every symmetry of :meth:`random_symmetry` leaves unchanged, so
        the rows of one group (a puzzle and its augmentations) share them: by default the count of
        each token (a permutation of cells keeps it)."""
        grids = np.asarray(grids)
        return np.stack([(grids == token).sum(-1) for token in range(self.vocab_size)], axis=-1)

    def is_solution(self, puzzles: np.ndarray, solutions: np.ndarray) -> np.ndarray:
        """Bool per pair of a batch ``(..., seq_len)``: does each solution solve its puzzle by the rules."""
        return self._per_puzzle(lambda p, s: self.check_solution(p, s) is None, puzzles, solutions)

    def _per_puzzle(self, fn: Callable[[np.ndarray, np.ndarray], bool], a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = np.asarray(a), np.asarray(b)
        flat_a, flat_b = a.reshape(-1, self.seq_len), b.reshape(-1, self.seq_len)
        return np.array([fn(x, y) for x, y in zip(flat_a, flat_b)], dtype=bool).reshape(a.shape[:-1])

    # ---- symmetries (augmentation) ------------------------------------------------------------
    def random_symmetry(self, rng: np.random.Generator) -> Transform:
        """A random solution-preserving transform of token arrays ``(..., seq_len)``."""
        raise NotImplementedError


@cache
def _cached_mask(task: Task, kind: str) -> np.ndarray:
    """Masks are built once per (task, kind); tasks are immutable values, so this is safe to share."""
    return task._build_neighbourhood_mask(kind)
