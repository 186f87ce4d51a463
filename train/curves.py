"""Training curves of one or more runs from their ``metrics.jsonl``, side by side.

``python -m air_interp.train.curves RUN [RUN ...] --out curves`` draws, per run,
the training cell accuracy, the evaluated cell accuracy and the evaluated exact accuracy after the
first and the last ACT step (the gap between the two is what the recurrence buys).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional, Sequence

import matplotlib.pyplot as plt
import pandas as pd

from air_interp.arguments import Parser
from air_interp.errors import AirInterpError
from air_interp.io import check_file_target
from air_interp.output import FORMATS, save_figure, styled


def read_metrics(run: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train records, eval records) of a run directory, or of a bare ``metrics.jsonl``."""
    path = run / "metrics.jsonl" if run.is_dir() else run
    if not path.is_file():
        raise AirInterpError(f"{run}: no metrics.jsonl")
    records = pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line.strip()])
    return records[records["kind"] == "train"], records[records["kind"] == "eval"]


@styled
def plot_curves(runs: dict[str, Path], path: Path) -> list[Path]:
    """One row of three panels; one line per run."""
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.4), layout="constrained")
    for name, run in runs.items():
        train, evals = read_metrics(Path(run))
        line = axes[0].plot(train["step"], train["accuracy"], linewidth=1, label=name)[0]
        if len(evals):
            axes[1].plot(evals["step"], evals["accuracy"], marker="o", markersize=3, color=line.get_color(), label=name)
            first = evals["exact_by_step"].map(lambda v: v[0])
            axes[2].plot(evals["step"], evals["exact_accuracy"], marker="o", markersize=3, color=line.get_color(),
                         label=f"{name}: last ACT step")
            axes[2].plot(evals["step"], first, linestyle=":", color=line.get_color(), label=f"{name}: first ACT step")
    titles = ("training cell accuracy (batch)", "test cell accuracy", "test exact accuracy")
    for ax, title in zip(axes, titles):
        ax.set_title(title)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel("accuracy (fraction)")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = Parser(prog="python -m air_interp.train.curves", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories or metrics.jsonl files (NAME=PATH to name them)")
    parser.add_argument("--out", type=Path, required=True,
                        help="figure path without suffix (.png and .pdf are written)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing figure files")
    args = parser.parse_args(argv)
    runs = {}
    for spec in args.runs:
        name, _, path = spec.rpartition("=")
        runs[name or Path(path).name] = Path(path)
    try:
        for suffix in FORMATS:
            check_file_target(args.out.with_suffix(f".{suffix}"), args.overwrite)
        written = plot_curves(runs, args.out)
    except AirInterpError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print("wrote " + ", ".join(map(str, written)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
