"""Load any checkpoint: which file a path means, which format it is in, and the forward dtype."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional, Union

import torch

from ..config import AIRConfig
from ..errors import AirInterpError
from ..hardware import apply_dtype, slow_bf16_warning
from ..model import HookedAIR
from ..runs import model_file
from .official import load_official, public_file
from .ours import is_ours, read_ours, save_model
from .public import CONFIG_YAML
from .state import assign, check_state

PathLike = Union[str, Path]


def checkpoint_file(path: PathLike) -> Path:
    """The file :func:`load_model` reads for ``path``: a file as is; for a folder, the latest model
    of one of our training runs or the model of one of its checkpoint folders
    (:func:`air_interp.runs.model_file`), else the state dict of a public folder
    (:func:`~.official.public_file`: its highest ``step_<N>``, or HRM's hub ``checkpoint``)."""
    path = Path(path)
    if not path.exists():
        raise AirInterpError(f"{path}: no such file or directory")
    if path.is_dir():
        return model_file(path) or public_file(path)
    return path


def checkpoint_inputs(path: PathLike) -> list[Path]:
    """The files :func:`load_model` reads for ``path``: the checkpoint file, and beside a public
    state dict its ``all_config.yaml`` (what a command that loads ``path`` must not write over)."""
    file = checkpoint_file(path)
    return [file] if is_ours(file) else [file, file.parent / CONFIG_YAML]


def load_model(path: PathLike, device: Union[str, torch.device, None] = None, seq_len: Optional[int] = None,
               dtype: Optional[str] = None) -> HookedAIR:
    """Load any checkpoint: our ``.safetensors`` file or training run, or a public code base's
    state dict or folder (see :func:`checkpoint_file`).

    The model comes back in eval mode. ``dtype`` overrides the checkpoint's ``forward_dtype``:
    ``"float32"``, ``"bfloat16"`` or ``"auto"`` (what this machine runs best, see
    :mod:`air_interp.hardware`); ``None`` keeps the checkpoint's. ``seq_len`` is only needed for a
    public checkpoint whose tensors and vocabulary do not tell the length.
    """
    path = checkpoint_file(path)
    model = _load_ours(path) if is_ours(path) else load_official(path, seq_len=seq_len)
    model = model.to(device or "cpu").eval()
    if dtype is not None:
        apply_dtype(model, dtype)
    elif warning := slow_bf16_warning(model):
        warnings.warn(f"{path}: {warning}", stacklevel=2)
    return model


def convert(official: PathLike, out: PathLike) -> AIRConfig:
    """Convert a public-format checkpoint into our single-file format; returns its config."""
    model = load_official(official)
    save_model(model, out)
    return model.cfg


def _load_ours(path: Path) -> HookedAIR:
    cfg, tensors = read_ours(path)
    model = HookedAIR(cfg)
    assign(model, check_state(model, tensors, path), path)
    return model
