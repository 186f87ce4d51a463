"""The on-disk dataset format and load-time augmentation.

A dataset directory holds ``manifest.json`` and one folder per split (``train``, ``test``) with:

- ``inputs.npy``, ``labels.npy``: uint8 ``(N, seq_len)`` token arrays (the task's tokens),
- ``ratings.npy``: float32 ``(N,)`` difficulty (Sudoku: guesses; Maze: path length; NaN unknown),
- ``puzzle_ids.npy``: int64 ``(N,)`` where the puzzle came from (stream index or CSV line),
- ``groups.npy``: int64 ``(N,)``; rows sharing a group are one puzzle and its augmentations,
- ``sources.npy``: unicode ``(N,)``, the upstream ``source`` column or the generator's name.

The manifest records the task, where the data came from (seed, generator and version, or the
imported files), the counts, repeated puzzles (``duplicates``: rows whose input repeats an
earlier row of the split, and test rows whose input is also a train row) and a rating histogram
per split.

Loading checks a dataset as strictly as ``data import`` checks its input: every array has its
kind (integer tokens and indices, float ratings, string sources; nothing is cast silently) and
shape, every row obeys the task's rules (:meth:`Task.check_example`: e.g. no PAD in a puzzle,
the label solves it), and the rows of a group lie together and share the task's symmetry
invariant (so no group folds several puzzles into one).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from air_interp.allowed import Allowed
from air_interp.errors import AirInterpError
from air_interp.io import atomic_path, check_replaceable_folder, unexpected_files
from air_interp.tasks import Task, get_task

FORMAT = "air-interp-dataset"
FORMAT_VERSION = 1
SPLITS = ("train", "test")
ARRAYS = {"inputs": np.uint8, "labels": np.uint8, "ratings": np.float32, "puzzle_ids": np.int64, "groups": np.int64}
HISTOGRAM_BINS = 10
DATASET_FILES = ("manifest.json", "train/*.npy", "test/*.npy")
_COUNT = Allowed(int, low=0)


@dataclass(frozen=True)
class Split:
    """One split: row k is ``inputs[k] -> labels[k]`` with its rating, id, group and source."""

    inputs: np.ndarray
    labels: np.ndarray
    ratings: np.ndarray
    puzzle_ids: np.ndarray
    groups: np.ndarray
    sources: np.ndarray

    def __len__(self) -> int:
        return len(self.inputs)

    @classmethod
    def from_rows(
        cls, inputs: list[np.ndarray], labels: list[np.ndarray], ratings: list[float],
        puzzle_ids: list[int], sources: list[str], seq_len: int,
    ) -> Split:
        """Build a split of original puzzles (each its own group) from per-row lists."""
        n = len(inputs)
        return cls(
            inputs=np.asarray(inputs, dtype=np.uint8).reshape(n, seq_len),
            labels=np.asarray(labels, dtype=np.uint8).reshape(n, seq_len),
            ratings=np.asarray(ratings, dtype=np.float32).reshape(n),
            puzzle_ids=np.asarray(puzzle_ids, dtype=np.int64).reshape(n),
            groups=np.arange(n, dtype=np.int64),
            sources=np.asarray(sources, dtype=str).reshape(n),
        )

    def take(self, rows: np.ndarray) -> Split:
        """The rows ``rows`` (an index array), in that order."""
        return Split(**{name: getattr(self, name)[rows] for name in (*ARRAYS, "sources")})


@dataclass(frozen=True)
class Dataset:
    task: Task
    train: Split
    test: Split
    manifest: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise AirInterpError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")
        return getattr(self, name)


def rating_histogram(ratings: np.ndarray) -> dict[str, Any]:
    """Counts in ``HISTOGRAM_BINS`` equal bins between the smallest and largest known rating."""
    known = ratings[np.isfinite(ratings)]
    if known.size == 0:
        return {"edges": [], "counts": [], "unrated": int(ratings.size)}
    counts, edges = np.histogram(known, bins=HISTOGRAM_BINS)
    return {
        "edges": [round(float(e), 3) for e in edges],
        "counts": [int(c) for c in counts],
        "unrated": int(ratings.size - known.size),
        "mean": round(float(known.mean()), 3),
    }


def dataset_digest(split: Split, rows: int | None = None) -> str:
    """SHA-256 of a split's content (its first ``rows`` rows): the inputs' and labels' dtype, shape
    and bytes. What a cache of measurements on a dataset is keyed by, beside its path, so new
    data at the same path is measured again."""
    digest = hashlib.sha256()
    for array in (split.inputs[:rows], split.labels[:rows]):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _row_keys(split: Split) -> np.ndarray:
    inputs = np.ascontiguousarray(split.inputs)
    return inputs.view(np.dtype((np.void, inputs.shape[1] * inputs.itemsize))).reshape(len(inputs))


def repeated_puzzles(train: Split, test: Split) -> dict[str, int]:
    """Rows whose input repeats an earlier row of the same split (``train``, ``test``), and test
    rows whose input is also a train row (``test_in_train``)."""
    if not (len(train) and len(test)) or train.inputs.shape[1:] != test.inputs.shape[1:]:
        return {"train": 0, "test": 0, "test_in_train": 0}
    keys = np.concatenate([_row_keys(train), _row_keys(test)])
    _, ids = np.unique(keys, return_inverse=True)
    ids = ids.reshape(-1)
    train_ids, test_ids = ids[:len(train)], ids[len(train):]
    return {"train": int(len(train_ids) - np.unique(train_ids).size),
            "test": int(len(test_ids) - np.unique(test_ids).size),
            "test_in_train": int(np.isin(test_ids, train_ids).sum())}


def make_manifest(task: Task, train: Split, test: Split, source: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a dataset: format, task, provenance, counts, repeated puzzles and rating histograms."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "task": task.name,
        "seq_len": task.seq_len,
        "vocab_size": task.vocab_size,
        "source": source,
        "counts": {name: len(split) for name, split in zip(SPLITS, (train, test))},
        "groups": {name: int(np.unique(split.groups).size) for name, split in zip(SPLITS, (train, test))},
        "duplicates": repeated_puzzles(train, test),
        "rating_histogram": {name: rating_histogram(split.ratings) for name, split in zip(SPLITS, (train, test))},
    }


def not_a_dataset(folder: Path) -> str | None:
    """Why ``folder`` is not a dataset of ours that may be replaced (None when it is)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return "no readable manifest.json"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return f"its manifest.json is not an {FORMAT} manifest"
    return unexpected_files(folder, DATASET_FILES)


def check_dataset_target(path: str | Path, overwrite: bool = False) -> Path:
    """``path`` may receive a dataset: it is new or empty, or a dataset of ours and ``overwrite``."""
    return check_replaceable_folder(path, "dataset", not_a_dataset, overwrite)


def check_not_empty(train: Split, test: Split) -> None:
    """A dataset needs puzzles in both splits (training reads one, evaluation the other)."""
    for name, split in zip(SPLITS, (train, test)):
        if len(split) == 0:
            raise AirInterpError(f"the {name} split holds no puzzles; a dataset needs puzzles in both splits")


def save_dataset(dataset: Dataset, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``dataset`` to the folder ``path`` atomically. An existing folder is replaced only
    with ``overwrite`` and only when it is a dataset of ours (:func:`check_dataset_target`)."""
    check_not_empty(dataset.train, dataset.test)
    check_dataset_target(path, overwrite)
    with atomic_path(path, directory=True) as tmp:
        for name in SPLITS:
            split_dir = tmp / name
            split_dir.mkdir()
            split = dataset.split(name)
            for array in (*ARRAYS, "sources"):
                np.save(split_dir / f"{array}.npy", getattr(split, array), allow_pickle=False)
        (tmp / "manifest.json").write_text(json.dumps(dataset.manifest, indent=2) + "\n")
    return Path(path)


def load_dataset(path: str | Path, augmentations: int = 0, seed: int = 0) -> Dataset:
    """Read a dataset directory; with ``augmentations`` > 0 the train split is expanded on load
    (see :func:`augment`). Any problem raises ``AirInterpError`` naming the file or argument."""
    augmentations = _COUNT.check(augmentations, "load_dataset: augmentations")
    seed = _COUNT.check(seed, "load_dataset: seed")
    root = Path(path)
    manifest, task = _read_manifest(root / "manifest.json")
    train, test = (_load_split(root / name, task) for name in SPLITS)
    if augmentations:
        train = augment(train, task, augmentations, seed)
    return Dataset(task, train, test, manifest)


def _read_manifest(path: Path) -> tuple[dict[str, Any], Task]:
    """The manifest of a dataset and its task; an AirInterpError naming ``path`` for a bad one."""
    if not path.is_file():
        raise AirInterpError(f"{path.parent}: not a dataset directory (no manifest.json)")
    try:
        manifest = json.loads(path.read_bytes())
    except ValueError as err:  # not JSON, or not UTF-8
        raise AirInterpError(f"{path}: invalid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise AirInterpError(f"{path}: not an {FORMAT} manifest (a JSON object with \"format\": \"{FORMAT}\")")
    try:
        return manifest, get_task(manifest.get("task"))
    except AirInterpError as err:
        raise AirInterpError(f"{path}: task: {err}") from None


def _load_split(split_dir: Path, task: Task) -> Split:
    arrays = {}
    for name in (*ARRAYS, "sources"):
        file = split_dir / f"{name}.npy"
        try:
            arrays[name] = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise AirInterpError(f"{file}: cannot read ({err})") from None
    n = len(arrays["inputs"]) if arrays["inputs"].ndim else 0
    for name, array in arrays.items():
        want = (n, task.seq_len) if name in ("inputs", "labels") else (n,)
        if array.shape != want:
            raise AirInterpError(f"{split_dir / name}.npy: shape {array.shape}, expected {want}")
    for name, array in arrays.items():
        kinds, what = _KINDS[name]
        if array.dtype.kind not in kinds:
            raise AirInterpError(f"{split_dir / name}.npy: {name} must be {what}, got dtype {array.dtype}")
    for name in ("inputs", "labels"):
        _check_tokens(arrays[name], split_dir / f"{name}.npy", task.vocab_size)
    for name in ("puzzle_ids", "groups"):
        if n and int(arrays[name].min()) < 0:
            raise AirInterpError(f"{split_dir / name}.npy: {name} must be >= 0, got {int(arrays[name].min())}")
    split = Split(**{name: arrays[name].astype(ARRAYS.get(name, arrays[name].dtype)) for name in arrays})
    bad = task.first_bad_example(split.inputs, split.labels)
    if bad is not None:
        row, problem = bad
        raise AirInterpError(f"{split_dir}: row {row} of inputs.npy / labels.npy breaks the {task.name} rules: {problem}")
    _check_groups(split, task, split_dir / "groups.npy")
    return split


# What each array of a split may hold: numpy dtype kinds, and how an error says it.
_KINDS = {"inputs": ("iu", "integer tokens"), "labels": ("iu", "integer tokens"),
          "ratings": ("fiu", "numbers (float32; NaN: unknown)"), "puzzle_ids": ("iu", "integers"),
          "groups": ("iu", "integers"), "sources": ("U", "strings")}


def _check_groups(split: Split, task: Task, file: Path) -> None:
    """The rows of a group (a puzzle and its augmentations) lie together, as every writer of ours
    stores them, and share the task's symmetry invariant: a group holds one puzzle."""
    groups = split.groups
    if not len(groups):
        return
    runs = int(np.count_nonzero(groups[1:] != groups[:-1])) + 1
    if runs != np.unique(groups).size:
        row = _first_repeat_of_a_run(groups)
        raise AirInterpError(f"{file}: the rows of a group must lie together (one puzzle and its augmentations), "
                             f"but group {int(groups[row])} comes back at row {row}")
    invariant = task.symmetry_invariant(split.inputs)
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    first_of_group = np.repeat(starts, np.diff(np.r_[starts, len(groups)]))
    differs = np.flatnonzero((invariant != invariant[first_of_group]).any(-1))
    if differs.size:
        row = int(differs[0])
        raise AirInterpError(f"{file}: row {row} is in group {int(groups[row])} with row {int(first_of_group[row])}, "
                             "but it is not a symmetry of that puzzle (a group holds one puzzle and its augmentations)")


def _first_repeat_of_a_run(groups: np.ndarray) -> int:
    seen: set[int] = set()
    previous = None
    for row, group in enumerate(groups.tolist()):
        if group != previous and group in seen:
            return row
        seen.add(group)
        previous = group
    return 0


def _check_tokens(tokens: np.ndarray, file: Path, vocab_size: int) -> None:
    """Tokens are integers in [0, vocab_size) (a cast to uint8 would wrap any other)."""
    if tokens.dtype.kind not in "iu":
        raise AirInterpError(f"{file}: tokens must be integers, got dtype {tokens.dtype}")
    if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
        raise AirInterpError(f"{file}: tokens must lie in [0, {vocab_size}), "
                             f"got {int(tokens.min())} to {int(tokens.max())}")


def augment(split: Split, task: Task, augmentations: int, seed: int) -> Split:
    """Each row followed by ``augmentations`` random symmetries of it (input and label transformed
    alike), all in the row's group. Seeded: the same arguments give the same arrays."""
    rng = np.random.default_rng(seed)
    inputs, labels = [], []
    for inp, lab in zip(split.inputs, split.labels):
        inputs.append(inp)
        labels.append(lab)
        for _ in range(augmentations):
            transform = task.random_symmetry(rng)
            inputs.append(transform(inp))
            labels.append(transform(lab))
    repeat = np.repeat(np.arange(len(split)), augmentations + 1)
    expanded = split.take(repeat)
    return replace(expanded, inputs=np.stack(inputs).astype(np.uint8), labels=np.stack(labels).astype(np.uint8))
