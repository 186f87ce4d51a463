"""Generation speed per Sudoku tier and maze size, and the rating distribution of a hard set.

    python benchmarks/data_generation.py [--hard-set data/sudoku-hard] [--figure docs/sudoku_ratings.png]

Prints a Markdown table (puzzles per second, one process) and writes a histogram of the ratings
of the hard set beside those of unselected minimal puzzles.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from air_interp.data.dataset import Dataset, load_dataset  # noqa: E402
from air_interp.data.generate import generate_mazes, generate_sudoku  # noqa: E402
from air_interp.hardware import machine_summary  # noqa: E402

SUDOKU_RUNS = (("easy", 200, {"clues": 36}), ("minimal", 200, {}), ("hard", 20, {"min_rating": 8.0}))
MAZE_RUNS = ((10, 500), (15, 300), (20, 200), (30, 50))


def time_run(make: Callable[..., Dataset], *args: Any, **kwargs: Any) -> tuple[float, Dataset]:
    start = time.perf_counter()
    result = make(*args, **kwargs)
    return time.perf_counter() - start, result


def benchmark_sudoku() -> list[str]:
    generate_sudoku("minimal", 1, 0, seed=0, progress=False)  # load the compiled solver first
    rows = []
    for tier, count, params in SUDOKU_RUNS:
        seconds, data = time_run(generate_sudoku, tier, count, 0, seed=1, progress=False, **params)
        drawn = data.manifest["source"]["candidates_drawn"]
        rows.append(f"| Sudoku {tier} | {count / seconds:.1f} | {drawn / seconds:.0f} | "
                    f"{data.train.ratings.mean():.2f} |")
    return rows


def benchmark_mazes() -> list[str]:
    generate_mazes(10, 1, 0, seed=0, progress=False)
    rows = []
    for side, count in MAZE_RUNS:
        seconds, data = time_run(generate_mazes, side, count, 0, seed=1, progress=False)
        drawn = data.manifest["source"]["candidates_drawn"]
        rows.append(f"| Maze {side}x{side} (path > {data.manifest['source']['min_path']}) | "
                    f"{count / seconds:.1f} | {drawn / seconds:.0f} | {data.train.ratings.mean():.1f} |")
    return rows


def rating_figure(hard_set: Path, figure: Path) -> str:
    hard = load_dataset(hard_set)
    ratings = np.concatenate([hard.train.ratings, hard.test.ratings])
    minimal = generate_sudoku("minimal", 2000, 0, seed=5, progress=False).train.ratings
    bins = np.arange(0, max(ratings.max(), minimal.max()) + 2, 1.0)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(minimal, bins=bins, alpha=0.6, label=f"random minimal puzzles (n={len(minimal)})")
    ax.hist(ratings, bins=bins, alpha=0.6, label=f"{hard_set.name} (n={len(ratings)})")
    ax.set_xlabel("rating: mean guesses over 8 random relabelings")
    ax.set_ylabel("puzzles")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=120)
    quantiles = np.percentile(ratings, [0, 25, 50, 75, 100])
    share = (minimal >= hard.manifest["source"].get("min_rating", 0)).mean()
    return (f"{hard_set.name}: rating min/25%/median/75%/max = {' / '.join(f'{q:.1f}' for q in quantiles)}, "
            f"mean {ratings.mean():.2f}; {share:.1%} of random minimal puzzles pass its floor "
            f"(minimal median {np.median(minimal):.1f}, mean {minimal.mean():.2f}). Figure: {figure}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hard-set", type=Path, default=Path("data/sudoku-hard"))
    parser.add_argument("--figure", type=Path, default=Path("docs/sudoku_ratings.png"))
    args = parser.parse_args()
    print(machine_summary())
    print("dtype: none (numba generators, one process; no model runs)\n")
    print("| generator | kept puzzles/s | candidates/s | mean rating (Sudoku) or path length (Maze) |")
    print("|---|---|---|---|")
    for row in benchmark_sudoku() + benchmark_mazes():
        print(row, flush=True)
    print()
    print(rating_figure(args.hard_set, args.figure))


if __name__ == "__main__":
    main()
