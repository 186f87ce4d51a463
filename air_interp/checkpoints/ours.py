"""Our checkpoint file: one ``.safetensors`` holding the weights and, in its metadata, the full
:class:`~air_interp.config.AIRConfig` as JSON, so a checkpoint needs nothing beside it.

This module needs no model class: :meth:`HookedAIR.save <air_interp.model.HookedAIR.save>` calls
:func:`save_model` without an import cycle.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Union

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..config import AIRConfig
from ..errors import AirInterpError, first_line
from ..io import atomic_path

if TYPE_CHECKING:
    from ..model import HookedAIR

FORMAT = "air-interp"
FORMAT_VERSION = "1"


def save_model(model: "HookedAIR", path: Union[str, Path]) -> None:
    """Write ``model`` to one safetensors file with its config in the metadata (atomically)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": model.cfg.to_json()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def is_ours(path: Path) -> bool:
    """A safetensors file: by its suffix, or by its start (an 8-byte header length, then a JSON object)."""
    with open(path, "rb") as f:
        head = f.read(9)
    return path.suffix == ".safetensors" or (len(head) == 9 and head[8:9] == b"{")


def read_ours(path: Path) -> tuple[AIRConfig, dict[str, torch.Tensor]]:
    """The config and the tensors of one of our files (not yet checked against a model)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise AirInterpError(f"{path}: not a readable safetensors file ({first_line(err)})") from None
    if metadata.get("format") != FORMAT or "config" not in metadata:
        raise AirInterpError(f"{path}: safetensors file has no air-interp config in its metadata")
    try:
        return AIRConfig.from_json(metadata["config"]), tensors
    except AirInterpError as err:
        raise AirInterpError(f"{path}: bad config in its metadata: {first_line(err)}") from None
