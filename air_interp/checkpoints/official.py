"""Load and write checkpoints in the public code bases' formats (SPEC 4, 5): AIR, HRM and TRM.

Reading takes the file (a folder's highest ``step_<N>``, or HRM's hub file ``checkpoint``), its
state dict and the ``all_config.yaml`` beside it, in the format whose module ``arch.name`` names.
The YAML holds no vocabulary, sequence length or identifier count: they come from the tensors
(``embed_tokens``, ``puzzle_emb``, learned positions, the mlp_t mixer's width) and else from the task
the vocabulary names (Sudoku: 81 cells; vocabulary 6: the 30x30 maze). Entries not read here (a TRM
dump's data_paths, evaluators, ema, ...; arch entries such as ``loss``) are ignored; ARC runs are
refused in one line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import torch
import yaml

from ..config import AIRConfig
from ..errors import AirInterpError, first_line
from ..io import atomic_path
from ..model import HookedAIR
from ..runs import step_of
from ..tasks import task_for_tokens
from .air import AIR
from .hrm import HRM
from .public import (ARCH_FIELDS, COMPILED_PREFIX, CONFIG_YAML, INNER, PublicConfig, PublicFormat, official_key,
                     read_config, read_state, refuse_arc, refuse_arc_shapes)
from .state import assign, check_dtype
from .trm import TRM

FORMATS: tuple[PublicFormat, ...] = (AIR, HRM, TRM)
_LOSS = {"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"}
_MODULES = "air.air_1net_*, hrm.hrm_act_v1, recursive_reasoning.trm/trm_singlez/trm_hier6/hrm"


def public_file(folder: Path) -> Path:
    """The state dict a public folder holds: its highest ``step_<N>`` (by N, not by name), else a file
    a code base publishes under another name (HRM's hub ``checkpoint``)."""
    steps = [(step, p) for p in folder.iterdir() if (step := step_of(p.name)) is not None and p.is_file()]
    if steps:
        return max(steps)[1]
    published = [folder / name for fmt in FORMATS for name in fmt.published_files]
    found = next((path for path in published if path.is_file()), None)
    if found is None:
        raise AirInterpError(f"{folder}: directory holds no step_<N> checkpoint "
                             f"(nor {', '.join(path.name for path in published)})")
    return found


def load_official(path: Union[str, Path], seq_len: Optional[int] = None) -> HookedAIR:
    """Load a public state-dict file, or a public folder's (see :func:`public_file`)."""
    path = Path(path)
    if path.is_dir():
        path = public_file(path)
    elif not path.is_file():
        raise AirInterpError(f"{path}: no such file")
    state = read_state(path)
    fmt, cfg = _config(path, state, seq_len)
    model = HookedAIR(cfg)
    assign(model, _ours(model, fmt, state, path), path)
    return model


def _config(path: Path, state: dict[str, torch.Tensor], seq_len: Optional[int]) -> tuple[PublicFormat, AIRConfig]:
    config = read_config(path)
    refuse_arc(config)
    fmt, fields = _variant(config)
    fields.update(config.values(ARCH_FIELDS))  # the YAML's values over the preset's
    fields.update(_shapes(state, fields, path, seq_len))
    try:
        return fmt, AIRConfig.from_dict(fields)
    except AirInterpError as err:
        raise AirInterpError(f"{config.file}: {first_line(err)}") from None


def _variant(config: PublicConfig) -> tuple[PublicFormat, dict[str, Any]]:
    for fmt in FORMATS:
        fields = fmt.fields(config)
        if fields is not None:
            return fmt, fields
    raise AirInterpError(f"{config.file}: unknown variant {config.name!r} in arch.name (expected {_MODULES})")


def _shapes(state: dict[str, torch.Tensor], fields: dict[str, Any], source: Path,
            seq_len: Optional[int]) -> dict[str, Any]:
    """Vocabulary, puzzle-identifier count, sequence length and task: the YAML has none of them."""
    embed = state.get(INNER + "embed_tokens.embedding_weight")
    if embed is None or embed.ndim != 2:
        raise AirInterpError(f"{source}: state dict has no 2-D {INNER}embed_tokens.embedding_weight")
    vocab = embed.shape[0]
    shapes: dict[str, Any] = {"vocab_size": vocab}
    puzzle = state.get(INNER + "puzzle_emb.weights")
    if puzzle is not None:
        shapes["num_puzzle_identifiers"] = puzzle.shape[0]
    if seq_len is None:
        seq_len = _length_from_tensors(state, fields, embed.shape[1])
    refuse_arc_shapes(source, vocab, seq_len)
    task = task_for_tokens(vocab, seq_len)
    if task is not None:
        shapes["task"] = task.name
    if seq_len is None:
        if task is None:
            raise AirInterpError(f"{source}: cannot tell the sequence length for vocab {vocab}; pass seq_len")
        seq_len = task.seq_len
    return dict(shapes, seq_len=seq_len)


def _length_from_tensors(state: dict[str, torch.Tensor], fields: dict[str, Any], width: int) -> Optional[int]:
    """The sequence length that learned positions or the mlp_t mixer fix (they span the prefix too);
    None under RoPE or no positions with attention."""
    positions = state.get(INNER + "embed_pos.embedding_weight")
    mixer = next((t for k, t in state.items() if k.endswith(".mlp_t.gate_up_proj.weight")), None)
    span = positions.shape[0] if positions is not None else mixer.shape[1] if mixer is not None else None
    if span is None:
        return None
    d_model = fields.get("d_model", width)
    return span - (fields.get("puzzle_emb_rows") or -(fields.get("puzzle_emb_ndim", 0) // -d_model))


def _ours(model: HookedAIR, fmt: PublicFormat, state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """The public state dict under our keys, each checked against the model's tensor."""
    ours, variant = {}, model.cfg.variant
    for key, expected in model.state_dict().items():
        theirs = official_key(key, fmt.stacks)
        if theirs not in state:
            raise AirInterpError(f"{path}: missing key {theirs} (needed by variant {variant})")
        tensor = state.pop(theirs)
        if tensor.numel() != expected.numel() or tensor.squeeze().shape != expected.squeeze().shape:
            raise AirInterpError(
                f"{path}: key {theirs} has shape {tuple(tensor.shape)}, expected {tuple(expected.shape)}")
        check_dtype(path, theirs, tensor, expected)
        ours[key] = tensor.reshape(expected.shape)
    if state:
        raise AirInterpError(f"{path}: unexpected key {sorted(state)[0]} for variant {variant} "
                             f"({len(state)} unexpected in all)")
    return ours


def export_official(model: HookedAIR, run_dir: Union[str, Path], step: int = 0, compiled_prefix: bool = False) -> Path:
    """Write ``model`` as the public code would, ``run_dir/step_<step>`` and ``run_dir/all_config.yaml``,
    so models trained here run in the public scripts."""
    cfg = model.cfg
    fmt, entries = _exporter(cfg)
    arch = {theirs: getattr(cfg, ours) for theirs, ours in ARCH_FIELDS.items()}
    arch.update(H_layers=cfg.layers_of("H"), loss=_LOSS, **entries)
    prefix = COMPILED_PREFIX if compiled_prefix else ""
    state = {}
    for key, tensor in model.state_dict().items():
        if key.startswith("level_token_") and cfg.level_token.startswith("prepend"):
            tensor = tensor.view(1, 1, -1)  # AIR's prepended level tokens are (1, 1, d) there
        state[prefix + official_key(key, fmt.stacks)] = tensor.detach().cpu().clone()
    run_dir = Path(run_dir)
    with atomic_path(run_dir / CONFIG_YAML) as tmp:
        tmp.write_text(yaml.safe_dump({"arch": arch}, sort_keys=True))
    step_file = run_dir / f"step_{step}"
    with atomic_path(step_file) as tmp:
        torch.save(state, tmp)
    return step_file


def _exporter(cfg: AIRConfig) -> tuple[PublicFormat, dict[str, Any]]:
    for fmt in FORMATS:
        entries = fmt.arch(cfg)
        if entries is not None:
            return fmt, entries
    raise AirInterpError(f"variant {cfg.variant} (mixer {cfg.mixer}, {len(cfg.states)} states, "
                         f"puzzle_emb_rows {cfg.puzzle_emb_rows}): no public code base runs it "
                         f"({', '.join(fmt.label for fmt in FORMATS)})")
