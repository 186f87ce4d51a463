"""Training-run folders of ours: their layout is known here and nowhere else.

::

    <run>/config.json                          the resolved training and model config
    <run>/metrics.jsonl                        the training log (air_interp.train.observe)
    <run>/checkpoints/step_<N:08d>/            model.safetensors (our format) and the training state
    <run>/latest -> checkpoints/step_<N:08d>   the newest complete checkpoint
    <run>/emergence.csv                        the claim metrics of its checkpoints (air-interp emergence)

The trainer writes this layout (air_interp.train.checkpoint, .loop); the loader and the probes read it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional, Union

from .defaults import REPO
from .io import sha256

PathLike = Union[str, Path]
CONFIG_FILE = "config.json"
CHECKPOINTS = "checkpoints"
LATEST = "latest"
MODEL_FILE = "model.safetensors"
EMERGENCE_FILE = "emergence.csv"
_STEP = re.compile(r"step_(\d+)")


def step_dir_name(step: int) -> str:
    """A checkpoint's folder name, zero-padded so that names sort as steps do: ``step_00001000``."""
    return f"step_{step:08d}"


def step_of(name: str) -> Optional[int]:
    """The N of a ``step_<N>`` name (any padding; the public code's step files too), else None."""
    match = _STEP.fullmatch(name)
    return int(match.group(1)) if match else None


def model_file(folder: Path) -> Optional[Path]:
    """The model a folder of ours holds: a run's latest, or a checkpoint folder's own; None otherwise.
    Resolved: ``latest`` is the step behind it, which a running job may move on."""
    for candidate in (folder / LATEST / MODEL_FILE, folder / MODEL_FILE):
        if candidate.is_file():
            return candidate.resolve()
    return None


def run_checkpoints(run_dir: PathLike) -> list[tuple[int, Path]]:
    """(training step, model file) of every checkpoint of one of our training runs, oldest first."""
    folder = Path(run_dir) / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [(step, p / MODEL_FILE) for p in folder.iterdir() if (step := step_of(p.name)) is not None]
    return sorted((step, model) for step, model in found if model.is_file())


def run_config(run_dir: PathLike) -> dict[str, Any]:
    """The run's ``config.json``; empty when it has none, or one that is not a JSON object."""
    try:
        config = json.loads((Path(run_dir) / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def is_run(folder: PathLike) -> bool:
    """``folder`` holds a training run of ours: its ``config.json`` has the trainer's ``train`` entry."""
    return "train" in run_config(folder)


def init_checkpoint(run_dir: PathLike) -> Optional[Path]:
    """The model file a training run started from (``--init-from``), when it is at hand unchanged:
    the named file itself, or the checkpoint of the named run that holds those weights (found by
    the SHA-256 the run recorded, so a source run that trained on since still resolves). None for
    a run trained from scratch or whose source is gone."""
    config = run_config(run_dir)
    train = config.get("train")
    source = train.get("init_from") if isinstance(train, dict) else None
    digest = config.get("init_from_sha256")
    if not source or not digest:
        return None
    path = next((p for p in (Path(source), REPO / source) if p.exists()), None)
    if path is None:
        return None
    candidates = [model for _, model in run_checkpoints(path)] if path.is_dir() else [path]
    return next((model for model in candidates if sha256(model) == digest), None)
