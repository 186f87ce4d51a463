"""What the public code bases' checkpoints share (SPEC 4, 5): state dicts, ``all_config.yaml``, key names.

A public run folder holds ``step_<N>`` files (a ``torch.save`` of the loss head's state dict, keys
``model.inner.*``, prefixed ``_orig_mod.`` when compiled) beside ``all_config.yaml``, whose ``arch``
entry names the model's module (``arch.name``) and its sizes. Each code base that wrote such
folders is a :class:`PublicFormat` (:mod:`.air`, :mod:`.hrm`, :mod:`.trm`): its modules, its names
for our stacks and the ``arch`` entries only it has.
"""
from __future__ import annotations

import pickle
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

import torch
import yaml

from ..config import AIRConfig, check_field
from ..errors import AirInterpError, first_line

COMPILED_PREFIX = "_orig_mod."
INNER = "model.inner."
CONFIG_YAML = "all_config.yaml"
# arch entries of every code base (a code base without one does not write it) -> AIRConfig fields
ARCH_FIELDS = {
    "hidden_size": "d_model", "num_heads": "n_heads", "expansion": "expansion", "L_layers": "n_layers",
    "pos_encodings": "pos_encodings", "puzzle_emb_ndim": "puzzle_emb_ndim", "H_cycles": "H_cycles",
    "L_cycles": "L_cycles", "halt_max_steps": "halt_max_steps",
    "halt_exploration_prob": "halt_exploration_prob", "forward_dtype": "forward_dtype",
    "rope_theta": "rope_theta", "rms_norm_eps": "rms_norm_eps", "no_ACT_continue": "no_act_continue",
}
STACKS = {"stack": "f_level", "L_stack": "L_level", "H_stack": "H_level"}  # ours -> AIR's and HRM's
_LAYER_NAMES = {"attn": "self_attn", "qkv": "qkv_proj", "out": "o_proj", "gate_up": "gate_up_proj",
                "down": "down_proj"}
_TOP_NAMES = {
    "embed_tokens.weight": "embed_tokens.embedding_weight", "embed_pos.weight": "embed_pos.embedding_weight",
    "puzzle_emb.weight": "puzzle_emb.weights", "level_token_L": "input_token_L", "level_token_H": "input_token_H",
}
# The public code's ARC data: PAD, EOS and ten colours on a 30x30 grid. No task here has these shapes.
ARC_VOCAB, ARC_SEQ_LEN = 12, 900
_ARC_WORD = re.compile(r"(?<![a-z])arc(?![a-z])", re.IGNORECASE)  # arc-aug-1000, arc1concept, arc@ARC; not "search"
_DATA_ENTRIES = ("arch", "data_path", "data_paths", "data_paths_test", "evaluators")


def official_key(key: str, stacks: Mapping[str, str] = STACKS) -> str:
    """The public code's state-dict key of one of our keys: ``stack.0.attn.qkv.weight`` ->
    ``model.inner.f_level.layers.0.self_attn.qkv_proj.weight`` (``stacks``: its names for our stacks)."""
    head, _, rest = key.partition(".")
    if head not in stacks:
        return INNER + _TOP_NAMES.get(key, key)
    index, _, rest = rest.partition(".")
    rest = ".".join(_LAYER_NAMES.get(part, part) for part in rest.split("."))
    return f"{INNER}{stacks[head]}.layers.{index}.{rest}"


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """A public state dict, loaded without unpickling code, its keys without the compiled prefix."""
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before failing cleanly
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise AirInterpError(f"{path}: not a state dict that loads with weights_only=True "
                             "(corrupt, or it holds objects other than tensors)") from None
    except Exception as err:  # torch raises many types for a truncated or foreign file
        raise AirInterpError(f"{path}: not a readable PyTorch state dict ({first_line(err)})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise AirInterpError(f"{path}: expected a state dict of tensors")
    twice = next((k for k in state if k.startswith(COMPILED_PREFIX) and k.removeprefix(COMPILED_PREFIX) in state),
                 None)
    if twice is not None:
        raise AirInterpError(f"{path}: key {twice.removeprefix(COMPILED_PREFIX)} is there both with and without "
                             f"the {COMPILED_PREFIX} prefix; a state dict holds each weight once")
    return {k.removeprefix(COMPILED_PREFIX): v for k, v in state.items()}


@dataclass(frozen=True)
class PublicConfig:
    """A run's ``all_config.yaml``: the whole document, and its ``arch`` entry with ``arch.name`` split."""

    file: Path
    document: dict[str, Any]
    arch: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.arch["name"])

    @property
    def package(self) -> str:
        """``hrm`` of ``hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1``."""
        return self.name.split("@")[0].rpartition(".")[0]

    @property
    def module(self) -> str:
        """``hrm_act_v1`` of ``hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1``."""
        return self.name.split("@")[0].rpartition(".")[2]

    def values(self, keys: Mapping[str, str]) -> dict[str, Any]:
        """The fields that ``arch`` entries set (their key -> our field), each checked (one line naming the key)."""
        return {ours: check_field(ours, self.arch[theirs], f"{self.file}: arch.{theirs}")
                for theirs, ours in keys.items() if theirs in self.arch}


def read_config(step_file: Path) -> PublicConfig:
    """The ``all_config.yaml`` beside a public state-dict file."""
    file = step_file.parent / CONFIG_YAML
    if not file.is_file():
        raise AirInterpError(f"{step_file}: no {CONFIG_YAML} beside it (the public code writes one per run)")
    try:
        document = yaml.safe_load(file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise AirInterpError(f"{file}: not valid YAML ({first_line(err)})") from None
    arch = document.get("arch") if isinstance(document, dict) else None
    if not isinstance(arch, dict) or "name" not in arch:
        raise AirInterpError(f"{file}: no arch.name entry")
    return PublicConfig(file, document, arch)


def refuse_arc(config: PublicConfig) -> None:
    """A run whose data (or arch) names ARC is refused in one line: ARC is not a task here."""
    named = next((text for entry in _DATA_ENTRIES for text in _strings(config.document.get(entry))
                  if _ARC_WORD.search(text)), None)
    if named is not None:
        raise AirInterpError(f"{config.file}: ARC is not a task here yet (the run names {named!r}); "
                             "its tasks are Sudoku and mazes")


def refuse_arc_shapes(source: Path, vocab_size: int, seq_len: Optional[int]) -> None:
    """ARC's vocabulary at ARC's length (or at an unknown one: no task here has 12 tokens) is refused in one line."""
    if vocab_size == ARC_VOCAB and seq_len in (None, ARC_SEQ_LEN):
        raise AirInterpError(f"{source}: ARC is not a task here yet (vocabulary {ARC_VOCAB}, "
                             f"{ARC_SEQ_LEN} cells: ARC's shapes); its tasks are Sudoku and mazes")


def _strings(value: Any) -> Iterator[str]:
    """Every string in a YAML value (nested lists and mappings included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


class PublicFormat(ABC):
    """One public code base's checkpoints: the modules ``arch.name`` may name, its names for our
    stacks, the files it publishes besides ``step_<N>``, and the ``arch`` entries only it has."""

    label: ClassVar[str]  # the code base, in messages
    stacks: ClassVar[Mapping[str, str]]
    published_files: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def fields(self, config: PublicConfig) -> Optional[dict[str, Any]]:
        """The variant's config fields for a run of this code base (with the ``arch`` entries only
        it writes), or None when ``arch.name`` is not one of its modules."""

    @abstractmethod
    def arch(self, cfg: AIRConfig) -> Optional[dict[str, Any]]:
        """``arch.name`` and the entries only this code base reads, for a model of ``cfg``; None
        when it has no module that runs ``cfg``."""
