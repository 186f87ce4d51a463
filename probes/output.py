"""Writing result tables: CSV always, Markdown and LaTeX for the small tables of the paper."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from air_interp.io import atomic_path

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
