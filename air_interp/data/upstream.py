"""The upstream formats: the CSV files of the public datasets and the processed directory layout.

CSV (``sapientinc/sudoku-extreme``, ``sapientinc/maze-30x30-hard-1k``): a header row naming the
fields ``source, question, answer, rating`` (any order; ``source`` and ``rating`` may be left
out), then one row per puzzle, read by those names. A file whose first row is not such a header
is refused (read as data it would lose its first puzzle). Sudoku questions use '.' (or '0') for
a blank; maze grids use the characters ``# SGo``.

Processed layout (the public HRM builders): ``<dir>/identifiers.json`` and per split
``<dir>/<split>/dataset.json`` plus ``all__inputs.npy``, ``all__labels.npy`` (uint8 tokens),
``all__puzzle_identifiers.npy``, ``all__puzzle_indices.npy`` and ``all__group_indices.npy``
(int32). Example ``e`` belongs to puzzle ``p`` when ``puzzle_indices[p] <= e < puzzle_indices[p+1]``
and puzzle ``p`` to group ``g`` when ``group_indices[g] <= p < group_indices[g+1]``; a group is an
original puzzle and its augmentations, each of which is one puzzle with one example. Both index
arrays must start at 0, increase, and end at the number of examples / puzzles.
"""
from __future__ import annotations

import csv
import json
import math
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import numpy as np
from tqdm import tqdm

from air_interp.data.dataset import SPLITS, Dataset, Split, augment
from air_interp.errors import AirInterpError
from air_interp.io import atomic_path, check_replaceable_folder, unexpected_files
from air_interp.tasks import Task, get_task, task_for_tokens

CSV_HEADER = ["source", "question", "answer", "rating"]
PROCESSED_ARRAYS = ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices")
HF_REPOS = {"sudoku": "sapientinc/sudoku-extreme", "maze": "sapientinc/maze-30x30-hard-1k"}
PROCESSED_FILES = ("identifiers.json",
                   *(f"{split}/{name}" for split in SPLITS for name in ("dataset.json", "all__*.npy")))


@dataclass
class BadRows:
    """Rows that failed a check, as ``file:line: what is wrong`` strings."""

    rows: list[str] = field(default_factory=list)

    def add(self, where: str, problem: str) -> None:
        self.rows.append(f"{where}: {problem}")

    def raise_or_report(self, skip_invalid: bool) -> str | None:
        """Raise on bad rows unless skipping; when skipping, return a one-line summary (or None)."""
        if not self.rows:
            return None
        more = f" (and {len(self.rows) - 1} more bad rows)" if len(self.rows) > 1 else ""
        if not skip_invalid:
            raise AirInterpError(f"{self.rows[0]}{more}; --skip-invalid drops bad rows")
        return f"skipped {len(self.rows)} invalid rows; first: {self.rows[0]}"


def check_row(task: Task, question: np.ndarray, answer: np.ndarray) -> str | None:
    """What is wrong with one puzzle/answer pair, or None (:meth:`Task.check_example`)."""
    return task.check_example(question, answer)


# ---- CSV ----------------------------------------------------------------------------------------
def read_csv(
    path: str | Path, task: Task, bad: BadRows, min_rating: float | None = None,
    max_rating: float | None = None, progress: bool = False,
) -> Split:
    """Read an upstream CSV into a split of the rows that pass every check and the rating filter.

    The header row names the fields (:func:`_csv_rows`). Bad rows (wrong field count or length,
    bad characters, unparsable rating, a puzzle or answer that breaks the rules) are recorded in
    ``bad`` with their line number and left out.
    """
    rows: dict[str, list[Any]] = {"inputs": [], "labels": [], "ratings": [], "puzzle_ids": [], "sources": []}
    names, lines = _csv_rows(Path(path), task)
    for line, fields in tqdm(lines, desc=Path(path).name, unit=" rows", disable=not progress):
        where = f"{path}:{line}"
        try:
            row = _parse_row(task, names, fields)
        except AirInterpError as err:
            bad.add(where, str(err))
            continue
        problem = check_row(task, row[1], row[2])
        if problem is not None:
            bad.add(where, problem)
            continue
        rating = row[3]
        if (min_rating is not None and rating < min_rating) or (max_rating is not None and rating > max_rating):
            continue
        for key, value in zip(("sources", "inputs", "labels", "ratings"), row):
            rows[key].append(value)
        rows["puzzle_ids"].append(line)
    return Split.from_rows(seq_len=task.seq_len, **rows)


REQUIRED_FIELDS = ("question", "answer")


def _csv_rows(path: Path, task: Task) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The field names of the header row (checked before any row is read) and (line number,
    fields) of every data row."""
    try:
        handle = path.open(newline="")
    except OSError as err:
        raise AirInterpError(f"{path}: cannot open ({err.strerror})") from None
    reader = csv.reader(handle)
    try:
        header = next(reader, None)
        if header is None:
            raise AirInterpError(f"{path}: empty file (expected a header row: {','.join(CSV_HEADER)})")
        names = _header_names(path, header, task)
    except BaseException:
        handle.close()
        raise

    def lines() -> Iterator[tuple[int, list[str]]]:
        with handle:
            for fields in reader:
                yield reader.line_num, fields

    return names, lines()


def _header_names(path: Path, header: list[str], task: Task) -> list[str]:
    """The field names of a header row; a one-line AirInterpError when the row is not one."""
    names = [name.strip().lstrip("\ufeff") for name in header]
    if not set(REQUIRED_FIELDS) <= set(names):
        looks_like_data = any(len(field.strip()) == task.seq_len for field in header)
        raise AirInterpError(
            f"{path}:1: the first row must be the header naming the fields {','.join(CSV_HEADER)} "
            f"(question and answer required, any order), got {reprlib.repr(','.join(header))}"
            + ("; it looks like a puzzle: add the header line rather than lose it" if looks_like_data else ""))
    unknown = [name for name in names if name not in CSV_HEADER]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if unknown or repeated:
        problem = f"unknown field(s) {', '.join(map(repr, unknown))}" if unknown else \
            f"field(s) named twice: {', '.join(repeated)}"
        raise AirInterpError(f"{path}:1: header row: {problem}; the fields are {', '.join(CSV_HEADER)}")
    return names


def _parse_row(task: Task, names: list[str], fields: list[str]) -> tuple[str, np.ndarray, np.ndarray, float]:
    if len(fields) != len(names):
        raise AirInterpError(f"expected {len(names)} fields ({', '.join(names)}), got {len(fields)}")
    named = dict(zip(names, fields))
    source, question, answer = named.get("source", ""), named["question"], named["answer"]
    rating_text = named.get("rating", "")
    try:
        rating = float(rating_text) if rating_text.strip() else math.nan
    except ValueError:
        raise AirInterpError(f"rating {rating_text!r} is not a number") from None
    parsed = []
    for name, text in (("question", question), ("answer", answer)):
        try:
            parsed.append(task.encode(text))
        except AirInterpError as err:
            raise AirInterpError(f"{name}: {err}") from None
    return source, parsed[0], parsed[1], rating


def write_csv(split: Split, task: Task, path: str | Path) -> None:
    """Write a split as an upstream CSV (integral ratings written without a decimal point)."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_HEADER)
        for source, inp, lab, rating in zip(split.sources, split.inputs, split.labels, split.ratings):
            writer.writerow([source, task.decode(inp), task.decode(lab), _format_rating(float(rating))])


def _format_rating(rating: float) -> str:
    if math.isnan(rating):
        return ""
    return str(int(rating)) if rating.is_integer() else f"{rating:g}"


def download_csv(repo: str, split: str) -> Path:
    """Fetch ``<split>.csv`` of a Hugging Face dataset repository (needs network access)."""
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo, f"{split}.csv", repo_type="dataset"))
    except Exception as err:  # any failure of the hub (network, auth, missing file) is the user's to fix
        raise AirInterpError(
            f"cannot download {split}.csv from {repo} ({type(err).__name__}); pass local CSV paths instead"
        ) from None


def subsample(split: Split, size: int | None, seed: int) -> Split:
    """``size`` rows drawn without replacement (kept in file order); all rows if ``size`` is None."""
    if size is None or size >= len(split):
        return split
    rows = np.sort(np.random.default_rng(seed).choice(len(split), size=size, replace=False))
    return split.take(rows)


# ---- processed layout ---------------------------------------------------------------------------
def check_processed_target(path: str | Path, overwrite: bool = False) -> Path:
    """``path`` may receive the processed layout: it is new or empty, or holds that layout only
    and ``overwrite`` is given."""
    def problem(folder: Path) -> str | None:
        return "no train/dataset.json" if not is_processed_dir(folder) else unexpected_files(folder, PROCESSED_FILES)

    return check_replaceable_folder(path, "processed dataset", problem, overwrite)


def write_processed(dataset: Dataset, path: str | Path, augmentations: int = 0, seed: int = 0,
                    overwrite: bool = False) -> Path:
    """Write the upstream processed layout, the train split with ``augmentations`` per puzzle.
    An existing folder is replaced only as :func:`check_processed_target` allows."""
    check_processed_target(path, overwrite)
    with atomic_path(path, directory=True) as tmp:
        for name in SPLITS:
            split = dataset.split(name)
            if name == "train" and augmentations:
                split = augment(split, dataset.task, augmentations, seed)
            _write_processed_split(split, dataset.task, tmp / name)
        (tmp / "identifiers.json").write_text(json.dumps(["<blank>"]))
    return Path(path)


def _write_processed_split(split: Split, task: Task, split_dir: Path) -> None:
    split_dir.mkdir()
    n = len(split)
    _, group_starts = np.unique(split.groups, return_index=True)
    arrays: dict[str, np.ndarray] = {
        "inputs": split.inputs.astype(np.uint8),
        "labels": split.labels.astype(np.uint8),
        "puzzle_identifiers": np.zeros(n, dtype=np.int32),
        "puzzle_indices": np.arange(n + 1, dtype=np.int32),
        "group_indices": np.append(np.sort(group_starts), n).astype(np.int32),
    }
    for name, array in arrays.items():
        np.save(split_dir / f"all__{name}.npy", array)
    metadata = {
        "pad_id": 0,
        "ignore_label_id": 0,
        "blank_identifier_id": 0,
        "vocab_size": task.vocab_size,
        "seq_len": task.seq_len,
        "num_puzzle_identifiers": 1,
        "total_groups": len(arrays["group_indices"]) - 1,
        "mean_puzzle_examples": 1,
        "sets": ["all"],
    }
    (split_dir / "dataset.json").write_text(json.dumps(metadata))


def is_processed_dir(path: Path) -> bool:
    return (path / "train" / "dataset.json").is_file()


def read_processed(path: str | Path, bad: BadRows, task_name: str | None = None) -> tuple[Task, Split, Split]:
    """Read the upstream processed layout as is (augmented rows included, groups kept)."""
    root = Path(path)
    splits = {}
    task = get_task(task_name) if task_name else None
    for name in SPLITS:
        metadata, arrays = _read_processed_split(root / name)
        task = task or _task_from_metadata(metadata, root / name / "dataset.json")
        splits[name] = _processed_to_split(task, arrays, root / name, bad)
    assert task is not None
    return task, splits["train"], splits["test"]


def _read_processed_split(split_dir: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        metadata = json.loads((split_dir / "dataset.json").read_text())
        arrays = {name: np.load(split_dir / f"all__{name}.npy", allow_pickle=False) for name in PROCESSED_ARRAYS}
    except (OSError, ValueError) as err:
        raise AirInterpError(f"{split_dir}: not an upstream processed split ({err})") from None
    return metadata, arrays


def _task_from_metadata(metadata: dict[str, Any], where: Path) -> Task:
    seq_len, vocab = metadata.get("seq_len"), metadata.get("vocab_size")
    task = task_for_tokens(vocab, seq_len) if isinstance(seq_len, int) and isinstance(vocab, int) else None
    if task is None:
        raise AirInterpError(f"{where}: seq_len {seq_len} / vocab_size {vocab} match no known task; pass --task")
    return task


def _check_index(index: np.ndarray, total: int, what: str, file: Path) -> None:
    """An index array of the processed layout: integers from 0, increasing, ending at ``total``
    (the number of ``what`` it divides), so no row is dropped or folded into another's puzzle."""
    if index.ndim != 1 or index.dtype.kind not in "iu" or len(index) < 1:
        raise AirInterpError(f"{file}: must be a 1-d integer array, got dtype {index.dtype} and shape {index.shape}")
    if int(index[0]) != 0 or int(index[-1]) != total:
        raise AirInterpError(f"{file}: must run from 0 to the number of {what} ({total}), got {int(index[0])} to "
                             f"{int(index[-1])}")
    steps = np.diff(index.astype(np.int64))
    if (steps <= 0).any():
        at = int(np.flatnonzero(steps <= 0)[0])
        raise AirInterpError(f"{file}: must increase, but entry {at + 1} ({int(index[at + 1])}) follows {int(index[at])}")


def _processed_to_split(task: Task, arrays: dict[str, np.ndarray], split_dir: Path, bad: BadRows) -> Split:
    inputs, labels = arrays["inputs"], arrays["labels"]
    if inputs.ndim != 2 or inputs.shape[1] != task.seq_len or labels.shape != inputs.shape:
        raise AirInterpError(f"{split_dir}: inputs/labels shape {inputs.shape}/{labels.shape}, seq_len {task.seq_len}")
    _check_index(arrays["puzzle_indices"], len(inputs), "examples", split_dir / "all__puzzle_indices.npy")
    n_puzzles = len(arrays["puzzle_indices"]) - 1
    _check_index(arrays["group_indices"], n_puzzles, "puzzles", split_dir / "all__group_indices.npy")
    if np.shape(arrays["puzzle_identifiers"]) != (n_puzzles,):
        raise AirInterpError(f"{split_dir}/all__puzzle_identifiers.npy: shape {np.shape(arrays['puzzle_identifiers'])}, "
                             f"expected ({n_puzzles},): one identifier per puzzle of all__puzzle_indices.npy")
    examples = np.arange(len(inputs))
    puzzles = np.searchsorted(arrays["puzzle_indices"], examples, side="right") - 1
    groups = np.searchsorted(arrays["group_indices"], puzzles, side="right") - 1
    good = []
    for row in examples:
        problem = check_row(task, inputs[row], labels[row])
        if problem is None:
            good.append(row)
        else:
            bad.add(f"{split_dir}/all__inputs.npy:row {row}", problem)
    keep = np.asarray(good, dtype=np.int64)
    return Split(
        inputs=inputs[keep].astype(np.uint8),
        labels=labels[keep].astype(np.uint8),
        ratings=np.full(len(keep), np.nan, dtype=np.float32),
        puzzle_ids=puzzles[keep].astype(np.int64),
        groups=groups[keep].astype(np.int64),
        sources=np.full(len(keep), "processed"),
    )
