"""Putting checked tensors into a model: what loading our format and the public ones share."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import AirInterpError


def check_dtype(path: Path, key: str, tensor: torch.Tensor, expected: torch.Tensor) -> None:
    """A floating weight is stored as floats (an integer or bool tensor would be cast without a word)."""
    if expected.is_floating_point() and not tensor.is_floating_point():
        raise AirInterpError(f"{path}: key {key} holds {str(tensor.dtype).removeprefix('torch.')} values; "
                             "weights must be floating point (float32, bfloat16, float16 or float64)")


def check_state(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """``tensors`` has exactly the model's keys, each of its shape and kind."""
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in tensors:
            raise AirInterpError(f"{path}: missing key {key}")
        if tensors[key].shape != tensor.shape:
            raise AirInterpError(f"{path}: key {key} has shape {tuple(tensors[key].shape)}, "
                                 f"expected {tuple(tensor.shape)}")
        check_dtype(path, key, tensors[key], tensor)
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise AirInterpError(f"{path}: unexpected key {extra[0]} ({len(extra)} unexpected in all)")
    return tensors


def assign(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Load finite ``tensors`` into ``model`` as float32 (the forward dtype is applied afterwards)."""
    bad = next((k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise AirInterpError(f"{path}: key {bad} holds NaN or infinite values; the checkpoint is broken")
    state = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in tensors.items()}
    model.load_state_dict(state, strict=True)
