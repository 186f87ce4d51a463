"""Drawing token grids in the paper's visual vocabulary, for any task.

Colours come from the task's alphabet (the characters of its tokens), not from the task's name:
PAD is grey, a Sudoku blank ``.`` is shaded, digits are printed, maze walls ``#`` are black, open
cells white, start ``S`` green, goal ``G`` red, path ``o`` blue.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from air_interp.io import atomic_path  # noqa: E402
from air_interp.tasks import Task  # noqa: E402

PAD_COLOUR = "#9e9e9e"
CHAR_COLOURS = {".": "#f6d98b", "#": "#1f1f1f", " ": "#ffffff", "S": "#2e9d4a", "G": "#d33c3c", "o": "#3f7fd9"}
DIGIT_COLOUR = "#ffffff"
FORMATS = ("png", "pdf")


def token_colours(task: Task) -> list[str]:
    """One colour per token: PAD grey, then the alphabet's characters."""
    return [PAD_COLOUR] + [CHAR_COLOURS.get(c, DIGIT_COLOUR) for c in task.alphabet]


def draw_grid(ax: plt.Axes, task: Task, tokens: np.ndarray, labels: Optional[np.ndarray] = None,
              title: str = "", outline: Optional[np.ndarray] = None) -> None:
    """Draw one decoded grid. Digits that disagree with ``labels`` are printed in red;
    ``outline`` (bool, seq_len) draws a frame around those cells (e.g. a neighbourhood)."""
    side = task.side
    grid = np.asarray(tokens).reshape(side, side)
    ax.imshow(grid, cmap=ListedColormap(token_colours(task)), vmin=-0.5, vmax=task.vocab_size - 0.5,
              interpolation="nearest")
    if side <= 12:
        for (row, col), token in np.ndenumerate(grid):
            char = task.alphabet[token - 1] if 1 <= token <= len(task.alphabet) else ""
            if char.isdigit():
                wrong = labels is not None and labels.reshape(side, side)[row, col] != token
                ax.text(col, row, char, ha="center", va="center", fontsize=7, color="#c62828" if wrong else "#111111")
    if outline is not None:
        for cell in np.flatnonzero(outline):
            row, col = divmod(int(cell), side)
            ax.add_patch(plt.Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="#e65100", linewidth=1.2))
    if side % 3 == 0 and side <= 12:
        for k in range(0, side + 1, side // 3):
            ax.axhline(k - 0.5, color="#555555", linewidth=0.8)
            ax.axvline(k - 0.5, color="#555555", linewidth=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=7)


def save_figure(fig: plt.Figure, path: Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Save ``fig`` as ``path.<fmt>`` for every format (atomically) and close it."""
    written = []
    for fmt in formats:
        target = Path(path).with_suffix(f".{fmt}")
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
        written.append(target)
    plt.close(fig)
    return written
