"""``air-interp data``: import, generate, export and show datasets.

A dataset folder is written as a whole: ``--out`` must be new or empty, or a dataset of ours
replaced with ``--overwrite``; a folder holding anything else is never replaced.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from air_interp.arguments import non_negative_int, positive_int
from air_interp.data import generate, upstream
from air_interp.data.dataset import (
    SPLITS, Dataset, Split, check_dataset_target, load_dataset, make_manifest, repeated_puzzles, save_dataset,
)
from air_interp.data.sudoku import DEFAULT_RELABELINGS, TIERS
from air_interp.errors import AirInterpError
from air_interp.io import check_folder_target, check_not_input
from air_interp.tasks import Task, get_task

OVERWRITE_HELP = "replace an existing dataset of ours at --out (a folder holding anything else is never replaced)"


def add_data_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``data`` and its subcommands; each parser's ``func`` runs it."""
    data = subparsers.add_parser(
        "data", help="import, generate, export and show Sudoku/maze datasets",
        description="Datasets: import the upstream CSV or processed files, generate them offline "
        "(seeded, reproducible), export the upstream layout, show a few puzzles.",
    )
    commands = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    _add_import(commands)
    _add_generate(commands)
    _add_export(commands)
    _add_show(commands)


def _add_import(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "import", help="import upstream CSV files or an upstream processed directory",
        description="Import upstream data into a dataset directory. SOURCE is a directory holding "
        "train.csv and test.csv, an upstream processed directory (train/dataset.json ...), or "
        "'hf' / 'hf:OWNER/NAME' to download the CSV files from the Hugging Face hub (needs network). "
        "--train/--test give CSV files directly. Bad rows stop the import with file:line unless "
        "--skip-invalid is given.",
    )
    p.add_argument("task", help="sudoku, maze (30x30) or maze<side>")
    p.add_argument("source", nargs="?", help="dir with train.csv/test.csv, processed dir, or hf[:REPO]")
    p.add_argument("--train", type=Path, help="train CSV file (overrides SOURCE)")
    p.add_argument("--test", type=Path, help="test CSV file (overrides SOURCE)")
    p.add_argument("--out", type=Path, required=True, help="dataset directory to write")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--subsample", type=positive_int, help="keep this many train puzzles, drawn with --seed")
    p.add_argument("--subsample-test", type=positive_int, help="keep this many test puzzles, drawn with --seed")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the subsample (default 0)")
    p.add_argument("--min-rating", type=float, help="keep CSV rows rated at least this")
    p.add_argument("--max-rating", type=float, help="keep CSV rows rated at most this")
    p.add_argument("--skip-invalid", action="store_true", help="drop bad rows (and say how many) instead of stopping")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_import)


def _add_generate(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "generate", help="generate Sudoku or mazes offline (seeded, reproducible)",
        description="Generate a dataset from a seed; the same command gives the same bytes.",
    )
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    sudoku = kinds.add_parser(
        "sudoku", help="unique-solution Sudoku in a difficulty tier",
        description="easy: --clues clues; minimal: no clue removable; hard: minimal puzzles rated "
        "(mean guesses of a singles+locked-candidates solver over --relabelings random symmetries) "
        "at least --min-rating.",
    )
    sudoku.add_argument("--tier", choices=TIERS, default="hard", help="difficulty tier (default hard)")
    sudoku.add_argument("--clues", type=int, default=36, help="clues of an easy puzzle, 17 to 81 (default 36)")
    sudoku.add_argument("--min-rating", type=float, default=8.0, help="lowest rating of a hard puzzle (default 8)")
    sudoku.add_argument(
        "--relabelings", type=positive_int, default=DEFAULT_RELABELINGS,
        help="symmetries averaged by the rating (default 8)"
    )
    maze = kinds.add_parser(
        "maze", help="Searchformer-style mazes with a long shortest path",
        description="30-50% random walls, S on a random open cell, G on a random open cell whose shortest "
        "path from S is longer than --min-path steps (default: 110 at 30x30, the upstream rule, scaled by "
        "area for other sizes). The label is the shortest path with the up-right-down-left tie-break; "
        "--unique-path keeps only mazes where that path is the only shortest one, so the label survives "
        "the rotations and reflections of training augmentation.",
    )
    maze.add_argument("--size", type=int, default=30, help="side of the square maze (default 30)")
    maze.add_argument("--min-path", type=int, help="path-length threshold in steps")
    maze.add_argument("--unique-path", action="store_true", help="only mazes with a single shortest path")
    for kind in (sudoku, maze):
        kind.add_argument("--train", type=positive_int, default=1000, help="train puzzles (default 1000)")
        kind.add_argument("--test", type=positive_int, default=1000, help="test puzzles (default 1000)")
        kind.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
        kind.add_argument("--out", type=Path, required=True, help="dataset directory to write")
        kind.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
        kind.add_argument("--quiet", action="store_true", help="no progress bar")
        kind.set_defaults(func=run_generate)


def _add_export(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "export", help="write a dataset in the upstream processed layout or as upstream CSV files",
        description="processed: <out>/{train,test}/dataset.json + all__*.npy, trainable by the public "
        "code (train puzzles augmented --augmentations times). csv: <out>/train.csv and test.csv.",
    )
    p.add_argument("dataset", type=Path, help="dataset directory")
    p.add_argument("--out", type=Path, required=True, help="directory to write")
    p.add_argument("--overwrite", action="store_true",
                   help="processed: replace a folder holding that layout only; csv: replace train.csv and test.csv")
    p.add_argument("--format", choices=("processed", "csv"), default="processed", help="default processed")
    p.add_argument("--augmentations", type=non_negative_int, default=0,
                   help="augmentations per train puzzle (processed only)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the augmentations")
    p.set_defaults(func=run_export)


def _add_show(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("show", help="print a few puzzles and the manifest of a dataset")
    p.add_argument("dataset", type=Path, help="dataset directory")
    p.add_argument("--split", choices=SPLITS, default="train", help="split to show (default train)")
    p.add_argument("-n", "--count", type=non_negative_int, default=2, help="puzzles to show (default 2)")
    p.set_defaults(func=run_show)


# ---- commands -----------------------------------------------------------------------------------
def run_import(args: argparse.Namespace) -> None:
    task = get_task(args.task)
    check_dataset_target(args.out, args.overwrite)
    bad = upstream.BadRows()
    source_path = Path(args.source) if args.source and not args.source.startswith("hf") else None
    if source_path is not None and upstream.is_processed_dir(source_path):
        _, train, test = upstream.read_processed(source_path, bad, task.name)
        provenance: dict[str, Any] = {"kind": "processed", "path": str(source_path)}
    else:
        files = _csv_files(args, task)
        train, test = (
            upstream.read_csv(files[name], task, bad, args.min_rating, args.max_rating, progress=not args.quiet)
            for name in SPLITS
        )
        provenance = {"kind": "csv", "files": {k: str(v) for k, v in files.items()},
                      "min_rating": args.min_rating, "max_rating": args.max_rating}
    summary = bad.raise_or_report(args.skip_invalid)
    if not (len(train) and len(test)):
        rating_filter = args.min_rating is not None or args.max_rating is not None
        raise AirInterpError(f"nothing to import: {len(train)} train and {len(test)} test puzzles are left after "
                             f"skipping {len(bad.rows)} invalid rows"
                             + (" and the rating filter" if rating_filter else ""))
    if summary:
        print(summary, file=sys.stderr)
    train = upstream.subsample(train, args.subsample, args.seed)
    test = upstream.subsample(test, args.subsample_test, args.seed)
    provenance |= {"subsample": args.subsample, "subsample_test": args.subsample_test, "seed": args.seed,
                   "invalid_rows_skipped": len(bad.rows)}
    repeats = repeated_puzzles(train, test)
    if any(repeats.values()):
        print(f"air-interp: warning: {repeats['train']} train and {repeats['test']} test puzzles repeat an earlier "
              f"one of their split, and {repeats['test_in_train']} test puzzles are also train puzzles; imported "
              "as they are (counted under \"duplicates\" in the manifest)", file=sys.stderr)
    _save(Dataset(task, train, test, make_manifest(task, train, test, provenance)), args.out, args.overwrite)


def _csv_files(args: argparse.Namespace, task: Task) -> dict[str, Path]:
    files: dict[str, Path | None] = {"train": args.train, "test": args.test}
    for name in SPLITS:
        if files[name] is not None:
            continue
        if args.source is None:
            raise AirInterpError(f"no {name} data: give SOURCE or --{name}")
        if args.source.startswith("hf"):
            files[name] = upstream.download_csv(_hf_repo(args.source, task), name)
        else:
            files[name] = Path(args.source) / f"{name}.csv"
    return {name: path for name, path in files.items() if path is not None}


def _hf_repo(source: str, task: Task) -> str:
    if ":" in source:
        return source.split(":", 1)[1]
    repo = upstream.HF_REPOS.get(task.name)
    if repo is None:
        raise AirInterpError(f"no upstream repository for task {task.name}; use hf:OWNER/NAME")
    return repo


def run_generate(args: argparse.Namespace) -> None:
    check_dataset_target(args.out, args.overwrite)
    if args.kind == "sudoku":
        dataset = generate.generate_sudoku(
            args.tier, args.train, args.test, args.seed, args.clues, args.min_rating, args.relabelings,
            progress=not args.quiet,
        )
    else:
        dataset = generate.generate_mazes(
            args.size, args.train, args.test, args.seed, args.min_path, not args.quiet, args.unique_path,
        )
    _save(dataset, args.out, args.overwrite)


def run_export(args: argparse.Namespace) -> None:
    check_not_input(args.out, [args.dataset])
    if args.format == "processed":
        upstream.check_processed_target(args.out, args.overwrite)
    else:
        check_folder_target(args.out, args.overwrite)
    dataset = load_dataset(args.dataset)
    if args.format == "processed":
        upstream.write_processed(dataset, args.out, args.augmentations, args.seed, args.overwrite)
    else:
        for name in SPLITS:
            upstream.write_csv(dataset.split(name), dataset.task, args.out / f"{name}.csv")
    print(f"wrote {args.out} ({args.format})")


def run_show(args: argparse.Namespace) -> None:
    dataset = load_dataset(args.dataset)
    split = dataset.split(args.split)
    for row in range(min(args.count, len(split))):
        print(_describe(dataset.task, split, row))
        print()
    print(json.dumps(dataset.manifest, indent=2))


def _describe(task: Task, split: Split, row: int) -> str:
    header = (f"#{row} id {split.puzzle_ids[row]} group {split.groups[row]} "
              f"rating {split.ratings[row]:g} source {split.sources[row]}")
    puzzle, label = task.render(split.inputs[row]).split("\n"), task.render(split.labels[row]).split("\n")
    width = max(len(line) for line in puzzle)
    body = [f"{a.ljust(width)}   {b}" for a, b in zip(puzzle, label)]
    return "\n".join([header, "puzzle".ljust(width) + "   solution", *body])


def _save(dataset: Dataset, out: Path, overwrite: bool) -> None:
    save_dataset(dataset, out, overwrite)
    counts = dataset.manifest["counts"]
    print(f"wrote {out}: task {dataset.task.name}, {counts['train']} train, {counts['test']} test")
