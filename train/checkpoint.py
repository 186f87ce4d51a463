"""Run directories and checkpoints you can trust.

Layout of ``--out`` (:mod:`air_interp.runs`, the one place it is known)::

    config.json                 the resolved training and model config
    metrics.jsonl               one JSON object per log line / evaluation
    checkpoints/step_00001000/  model.safetensors (our format: every probe loads it)
                                train_state.pt (optimisers, step, RNG states, ACT carries, ...)
    latest -> checkpoints/step_00001000

A checkpoint directory is written under a temporary name and renamed when complete, and only
then does the ``latest`` symlink move (itself replaced atomically). A run killed at any moment
therefore leaves ``latest`` on a complete checkpoint and loses only the steps after it.
"""
from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from air_interp.errors import AirInterpError
from air_interp.io import atomic_path
from air_interp.runs import CHECKPOINTS, LATEST, MODEL_FILE, step_dir_name, step_of

STATE_FILE = "train_state.pt"
STATE_FORMAT = "air-interp-train-state"


def write_checkpoint(run_dir: Path, step: int, write_model: Callable[[Path], None],
                     state: dict[str, Any], keep: int, keep_models_every: int | None = None) -> Path:
    """Write ``step``'s checkpoint atomically, point ``latest`` at it, keep the newest ``keep``
    (and the model of every ``keep_models_every``-th step, see :func:`prune`)."""
    target = run_dir / CHECKPOINTS / step_dir_name(step)
    with atomic_path(target, directory=True) as tmp:
        write_model(tmp / MODEL_FILE)
        torch.save(dict(state, format=STATE_FORMAT), tmp / STATE_FILE)
    _point_latest(run_dir, target)
    prune(run_dir, keep, keep_models_every)
    return target


def _point_latest(run_dir: Path, target: Path) -> None:
    link = run_dir / LATEST
    tmp = run_dir / f".{LATEST}.tmp-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target.relative_to(run_dir))
    os.replace(tmp, link)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint ``latest`` points to, or None when the run has none."""
    link = run_dir / LATEST
    if not link.is_symlink():
        return None
    target = link.resolve()
    if not (target / STATE_FILE).is_file():
        raise AirInterpError(f"{link} points to {target}, which is not a complete checkpoint")
    return target


def prune(run_dir: Path, keep: int, keep_models_every: int | None = None) -> None:
    """Remove all but the newest ``keep`` checkpoints (never the latest) and stale temporaries.

    With ``keep_models_every`` an older checkpoint whose step is a multiple of it keeps its model
    (a few MB at CPU scale) and loses only its training state (optimiser moments, carries), so a
    long run leaves a thinned series of models for probes along training without filling the disk.
    """
    folder = run_dir / CHECKPOINTS
    if not folder.is_dir():
        return
    latest = latest_checkpoint(run_dir)
    steps = sorted((step, p) for p in folder.iterdir() if (step := step_of(p.name)) is not None)
    for step, old in steps[:-keep]:
        if old == latest:
            continue
        if keep_models_every and step % keep_models_every == 0:
            (old / STATE_FILE).unlink(missing_ok=True)
        else:
            shutil.rmtree(old)
    for stale in folder.glob(".step_*.tmp-*"):  # left by a run killed while writing
        shutil.rmtree(stale, ignore_errors=True)


def read_state(checkpoint: Path) -> dict[str, Any]:
    """The training state of a checkpoint directory (loaded without unpickling code)."""
    path = checkpoint / STATE_FILE
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before failing cleanly
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as err:
        raise AirInterpError(f"{path}: cannot read the training state ({err.strerror})") from None
    except Exception:  # a truncated file, or a pickle holding anything but tensors and plain data
        raise AirInterpError(f"{path}: not a training state of ours (corrupt, or written by other code); "
                             "it was not loaded") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise AirInterpError(f"{path}: not a training state of ours")
    return state
