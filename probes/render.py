"""Drawing token grids in the paper's visual vocabulary, for any task.

Colours come from the task's alphabet (the characters of its tokens), not from the task's name:
PAD is grey, a Sudoku blank ``.`` is shaded, digits are printed, maze walls ``#`` are black, open
cells white, start ``S`` green, goal ``G`` red, path ``o`` blue; :func:`token_legend` says so on the
figure. Saving and the house style are in :mod:`air_interp.output`.
"""
from __future__ import annotations

from typing import Optional

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from air_interp.tasks import PAD, Task

PAD_COLOUR = "#9e9e9e"
CHAR_COLOURS = {".": "#f6d98b", "#": "#1f1f1f", " ": "#ffffff", "S": "#2e9d4a", "G": "#d33c3c", "o": "#3f7fd9"}
DIGIT_COLOUR = "#ffffff"
WRONG_COLOUR = "#c62828"
TEXT_COLOUR = "#111111"
MAX_PRINTED_SIDE = 12  # larger grids are drawn in colours only
CHAR_NAMES = {".": "blank", "#": "wall", " ": "open", "S": "start", "G": "goal", "o": "path"}


def token_colours(task: Task) -> list[str]:
    """One colour per token: PAD grey, then the alphabet's characters."""
    return [PAD_COLOUR] + [CHAR_COLOURS.get(c, DIGIT_COLOUR) for c in task.alphabet]


def printed_characters(task: Task) -> np.ndarray:
    """The character printed on a cell, per token: digits only (the other tokens are colours)."""
    return np.array([""] + [c if c.isdigit() else "" for c in task.alphabet])


def wrong_cells(task: Task, tokens: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Where a grid shows an answer (neither PAD nor undecided) other than the solution's: drawn red."""
    tokens = np.asarray(tokens)
    return (tokens != np.asarray(labels)) & (tokens != PAD) & ~task.undecided_mask(tokens)


def token_legend(task: Task, marks_wrong: bool = True) -> list[Patch]:
    """Legend entries for the colours of :func:`draw_grid`: each character of the alphabet, PAD,
    and (for digit tasks) what a red digit means."""
    undecided = {task.undecided_token}
    handles = [Patch(facecolor=PAD_COLOUR, edgecolor="#555555",
                     label="PAD" + (" (undecided)" if 0 in undecided else ""))]
    digits = [c for c in task.alphabet if c.isdigit()]
    for token, char in enumerate(task.alphabet, start=1):
        if char.isdigit():
            continue
        name = CHAR_NAMES.get(char, repr(char)) + (" (undecided)" if token in undecided else "")
        handles.append(Patch(facecolor=CHAR_COLOURS.get(char, DIGIT_COLOUR), edgecolor="#555555", label=name))
    if digits:
        wrong = ", red: not the solution's" if marks_wrong else ""
        handles.append(Patch(facecolor=DIGIT_COLOUR, edgecolor="#555555",
                             label=f"digit {digits[0]}-{digits[-1]}{wrong}"))
    return handles


def draw_grid(ax: plt.Axes, task: Task, tokens: np.ndarray, labels: Optional[np.ndarray] = None,
              title: str = "", outline: Optional[np.ndarray] = None) -> None:
    """Draw one decoded grid. Digits that disagree with ``labels`` are printed in red;
    ``outline`` (bool, seq_len) draws a frame around those cells (e.g. a neighbourhood)."""
    side = task.side
    grid = np.asarray(tokens).reshape(side, side)
    ax.imshow(grid, cmap=ListedColormap(token_colours(task)), vmin=-0.5, vmax=task.vocab_size - 0.5,
              interpolation="nearest")
    if side <= MAX_PRINTED_SIDE:
        chars = printed_characters(task)
        wrong = np.zeros_like(grid, dtype=bool) if labels is None else wrong_cells(task, grid, labels.reshape(side, side))
        for (row, col), token in np.ndenumerate(grid):
            if chars[token]:
                ax.text(col, row, chars[token], ha="center", va="center", fontsize=7.5,
                        color=WRONG_COLOUR if wrong[row, col] else TEXT_COLOUR)
    if outline is not None:
        for cell in np.flatnonzero(outline):
            row, col = divmod(int(cell), side)
            ax.add_patch(plt.Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="#e65100", linewidth=1.2))
    draw_blocks(ax, task)
    ax.set_title(title)


def draw_blocks(ax: plt.Axes, task: Task) -> None:
    """The lines between the task's blocks (Sudoku's 3x3 boxes) on a grid drawn with ``imshow``, no ticks."""
    for k in range(0, task.side + 1, task.block) if task.block else ():
        ax.axhline(k - 0.5, color="#555555", linewidth=0.8)
        ax.axvline(k - 0.5, color="#555555", linewidth=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
