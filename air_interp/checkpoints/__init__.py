"""Checkpoints: our file format, the public code bases' formats, and :func:`load_model` for all of them.

- :mod:`.ours`: our self-describing safetensors file (:func:`save_model`).
- :mod:`.public`: what the public formats share (state dicts, ``all_config.yaml``, key names, ARC refusal);
  :mod:`.air`, :mod:`.hrm`, :mod:`.trm`: one adapter per public code base;
  :mod:`.official`: loading and exporting through them (:func:`load_official`, :func:`export_official`).
- :mod:`.state`: checking tensors against a model and putting them in.
- :mod:`.loading`: which file a path means, and :func:`load_model` (with the forward-dtype policy).

Training-run folders (``config.json``, ``checkpoints/step_<N>``, ``latest``) are :mod:`air_interp.runs`.
"""
from ..runs import init_checkpoint, run_checkpoints
from .loading import checkpoint_file, checkpoint_inputs, convert, load_model
from .official import export_official, load_official
from .ours import FORMAT, FORMAT_VERSION, save_model
from .public import official_key

__all__ = ["FORMAT", "FORMAT_VERSION",
           "checkpoint_file", "checkpoint_inputs", "convert", "export_official", "init_checkpoint", "load_model",
           "load_official", "official_key", "run_checkpoints", "save_model"]
