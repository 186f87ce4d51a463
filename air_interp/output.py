"""Writing results: tables (CSV always, Markdown and LaTeX for the small tables of the paper) and
figures (PNG and PDF) atomically, and the house style every figure is drawn in: fonts sized to stay
legible when the PNG is shown at the README's width (about 900 pixels). Probes and training both
write through here.
"""
from __future__ import annotations

from functools import wraps
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import matplotlib.pyplot as plt
import pandas as pd

from .io import atomic_path

FORMATS = ("png", "pdf")
STYLE = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "xtick.labelsize": 8.5, "ytick.labelsize": 8.5,
         "legend.fontsize": 8, "figure.titlesize": 10, "axes.unicode_minus": True}
PlotFunction = TypeVar("PlotFunction", bound=Callable)


def styled(plot: PlotFunction) -> PlotFunction:
    """Run a figure function with the house style (without touching the caller's matplotlib settings)."""
    @wraps(plot)
    def run(*args, **kwargs):
        with plt.rc_context(STYLE):
            return plot(*args, **kwargs)
    return run  # type: ignore[return-value]


WRITERS = {
    "csv": lambda table, path: table.to_csv(path, index=False),
    "md": lambda table, path: Path(path).write_text(table.to_markdown(index=False, floatfmt=".3f") + "\n"),
    "tex": lambda table, path: Path(path).write_text(table.to_latex(index=False, float_format="%.3f")),
}


def write_table(table: pd.DataFrame, path: Path, formats: Sequence[str] = ("csv", "md")) -> list[Path]:
    """Write ``table`` as ``path.<fmt>`` for each format, atomically; returns the files."""
    written = []
    for fmt in formats:
        target = Path(path).with_suffix(f".{fmt}")
        with atomic_path(target) as tmp:
            WRITERS[fmt](table, tmp)
        written.append(target)
    return written


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
