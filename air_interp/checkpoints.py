"""Checkpoints: our self-describing safetensors file, and the public AIR/HRM training code's format.

Our format is one ``.safetensors`` file: the weights plus the full :class:`AIRConfig` as JSON in
the metadata, so a checkpoint needs nothing beside it.

The public format (docs/model.md) is ``<run>/step_<N>`` (a ``torch.save`` of the loss head's state dict,
keys ``model.inner.*``, maybe prefixed ``_orig_mod.``) beside ``<run>/all_config.yaml``. It is read
with ``torch.load(weights_only=True)`` only, and can also be written (:func:`export_official`) so
models trained here run in the public scripts.
"""
from __future__ import annotations

import json
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import torch
import yaml
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .config import AIRConfig, check_field, variant_fields
from .defaults import REPO
from .errors import AirInterpError
from .hardware import apply_dtype, slow_bf16_warning
from .io import atomic_path, sha256
from .model import HookedAIR
from .tasks import task_for_tokens

PathLike = Union[str, Path]
FORMAT = "air-interp"
FORMAT_VERSION = "1"
_COMPILED_PREFIX = "_orig_mod."
_STEP_FILE = re.compile(r"step_(\d+)")
RUN_LATEST, RUN_MODEL_FILE = "latest", "model.safetensors"  # a training run: <run>/latest/model.safetensors
RUN_CHECKPOINTS = "checkpoints"  # ... and <run>/checkpoints/step_<N>/model.safetensors
RUN_EMERGENCE = "emergence.csv"  # the claim metrics of the run's checkpoints (air-interp emergence)

# ---- our format ------------------------------------------------------------------------------


def save_model(model: HookedAIR, path: PathLike) -> None:
    """Write ``model`` to one safetensors file with its config in the metadata (atomically)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": model.cfg.to_json()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def _load_ours(path: Path) -> tuple[AIRConfig, dict[str, torch.Tensor]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise AirInterpError(f"{path}: not a readable safetensors file ({_first_line(err)})") from None
    if metadata.get("format") != FORMAT or "config" not in metadata:
        raise AirInterpError(f"{path}: safetensors file has no air-interp config in its metadata")
    try:
        return AIRConfig.from_json(metadata["config"]), tensors
    except AirInterpError as err:
        raise AirInterpError(f"{path}: bad config in its metadata: {_first_line(err)}") from None


# ---- the public training code's format ---------------------------------------------------------

_ARCH_FIELDS = {  # all_config.yaml arch key -> AIRConfig field
    "hidden_size": "d_model", "num_heads": "n_heads", "expansion": "expansion",
    "pos_encodings": "pos_encodings", "puzzle_emb_ndim": "puzzle_emb_ndim", "H_cycles": "H_cycles",
    "L_cycles": "L_cycles", "halt_max_steps": "halt_max_steps",
    "halt_exploration_prob": "halt_exploration_prob", "forward_dtype": "forward_dtype",
    "rope_theta": "rope_theta", "rms_norm_eps": "rms_norm_eps", "no_ACT_continue": "no_act_continue",
}
_LAYER_RENAMES = (("attn.qkv.", "self_attn.qkv_proj."), ("attn.out.", "self_attn.o_proj."),
                  ("mlp.gate_up.", "mlp.gate_up_proj."), ("mlp.down.", "mlp.down_proj."))
_STACK_RENAMES = {"stack": "f_level", "L_stack": "L_level", "H_stack": "H_level"}
_TOP_RENAMES = {
    "embed_tokens.weight": "embed_tokens.embedding_weight", "embed_pos.weight": "embed_pos.embedding_weight",
    "puzzle_emb.weight": "puzzle_emb.weights", "level_token_L": "input_token_L", "level_token_H": "input_token_H",
}


def official_key(key: str, trm: bool = False) -> str:
    """The public code's state-dict key of one of our keys (``stack.0.attn.qkv.weight`` ->
    ``model.inner.f_level.layers.0.self_attn.qkv_proj.weight``; TRM's code names the shared stack
    ``L_level``)."""
    head, _, rest = key.partition(".")
    if head in _STACK_RENAMES:
        index, _, rest = rest.partition(".")
        for ours, theirs in _LAYER_RENAMES:
            rest = rest.replace(ours, theirs)
        key = f"{'L_level' if trm and head == 'stack' else _STACK_RENAMES[head]}.layers.{index}.{rest}"
    else:
        key = _TOP_RENAMES.get(key, key)
    return f"model.inner.{key}"


# TRM's repository: its models that are not (yet) a configuration here, and why.
_TRM_UNSUPPORTED = {"trm_singlez": "one state", "trm_hier6": "seven states"}


def _variant_from_arch_name(arch_name: str, source: Path) -> dict[str, Any]:
    """``air.air_1net_Lx_H@AIR`` -> the Lx_H fields; ``hrm.hrm_act_v1@...`` (and the TRM
    repository's ``recursive_reasoning.hrm@...``) -> HRM; ``recursive_reasoning.trm@...`` -> TRM."""
    package, _, module = arch_name.split("@")[0].rpartition(".")
    if module == "hrm_act_v1" or (package == "recursive_reasoning" and module == "hrm"):
        return variant_fields("hrm")
    if package == "recursive_reasoning" and module == "trm":
        return variant_fields("trm")
    if module in _TRM_UNSUPPORTED:
        raise AirInterpError(f"{source}: TRM's {module} ({_TRM_UNSUPPORTED[module]}) is not supported yet; "
                             "supported: air_1net_*, hrm_act_v1, recursive_reasoning.trm and .hrm")
    if not module.startswith("air_1net_"):
        raise AirInterpError(f"{source}: unknown variant {arch_name!r} in arch.name (expected air_1net_*, hrm_act_v1 "
                             "or recursive_reasoning.trm)")
    try:
        return variant_fields(module[len("air_1net_"):])
    except AirInterpError:
        raise AirInterpError(f"{source}: unknown variant {arch_name!r} in arch.name") from None


def _read_official_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before failing cleanly
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise AirInterpError(f"{path}: not a state dict that loads with weights_only=True "
                             "(corrupt, or it holds objects other than tensors)") from None
    except Exception as err:  # torch raises many types for a truncated or foreign file
        raise AirInterpError(f"{path}: not a readable PyTorch state dict ({_first_line(err)})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise AirInterpError(f"{path}: expected a state dict of tensors")
    twice = next((k for k in state if k.startswith(_COMPILED_PREFIX) and k.removeprefix(_COMPILED_PREFIX) in state),
                 None)
    if twice is not None:
        raise AirInterpError(f"{path}: key {twice.removeprefix(_COMPILED_PREFIX)} is there both with and without "
                             f"the {_COMPILED_PREFIX} prefix; a state dict holds each weight once")
    return {k.removeprefix(_COMPILED_PREFIX): v for k, v in state.items()}


def _official_config(path: Path, state: dict[str, torch.Tensor], seq_len: Optional[int]) -> AIRConfig:
    config_file = path.parent / "all_config.yaml"
    if not config_file.is_file():
        raise AirInterpError(f"{path}: no all_config.yaml beside it (the public code writes one per run)")
    try:
        document = yaml.safe_load(config_file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise AirInterpError(f"{config_file}: not valid YAML ({_first_line(err)})") from None
    arch = document.get("arch") if isinstance(document, dict) else None
    if not isinstance(arch, dict) or "name" not in arch:
        raise AirInterpError(f"{config_file}: no arch.name entry")
    fields = _arch_fields(arch, config_file)
    fields.update(_shapes_from_state(state, fields, config_file, seq_len))
    try:
        return AIRConfig.from_dict(fields)
    except AirInterpError as err:
        raise AirInterpError(f"{config_file}: {_first_line(err)}") from None


def _arch_fields(arch: dict[str, Any], config_file: Path) -> dict[str, Any]:
    """The AIRConfig fields the YAML's ``arch`` entry sets, each checked (one line naming the key)."""
    fields = _variant_from_arch_name(str(arch["name"]), config_file)
    keys = dict(_ARCH_FIELDS, L_layers="n_layers")
    hrm = fields.get("arch") == "hrm"
    if hrm:
        keys["H_layers"] = "H_layers"  # AIR has one stack; the public code writes H_layers there too
    if fields.get("gradient") == "last_cycle":  # TRM's config: its prefix length and its MLP-mixer flag
        keys["puzzle_emb_len"] = "puzzle_emb_rows"
        if arch.get("mlp_t"):
            raise AirInterpError(f"{config_file}: arch.mlp_t: TRM's MLP-over-tokens variant is not supported yet")
    fields.update({ours: check_field(ours, arch[theirs], f"{config_file}: arch.{theirs}")
                   for theirs, ours in keys.items() if theirs in arch})
    fields.setdefault("forward_dtype", "bfloat16")
    fields.setdefault("n_layers", 4)
    if hrm:
        fields.setdefault("H_layers", fields["n_layers"])
    return fields


def _shapes_from_state(state: dict[str, torch.Tensor], fields: dict[str, Any], source: Path,
                       seq_len: Optional[int]) -> dict[str, Any]:
    """Vocab size, puzzle-identifier count and sequence length: the YAML has none of them."""
    embed = state.get("model.inner.embed_tokens.embedding_weight")
    if embed is None or embed.ndim != 2:
        raise AirInterpError(f"{source}: state dict has no 2-D model.inner.embed_tokens.embedding_weight")
    shapes: dict[str, Any] = {"vocab_size": embed.shape[0]}
    puzzle = state.get("model.inner.puzzle_emb.weights")
    if puzzle is not None:
        shapes["num_puzzle_identifiers"] = puzzle.shape[0]
    task = task_for_tokens(embed.shape[0], seq_len)
    if task is not None:
        shapes["task"] = task.name
    pos = state.get("model.inner.embed_pos.embedding_weight")
    d_model = fields.get("d_model", embed.shape[1])
    if seq_len is not None:
        shapes["seq_len"] = seq_len
    elif pos is not None:
        prefix = fields.get("puzzle_emb_rows") or -(fields.get("puzzle_emb_ndim", 0) // -d_model)
        shapes["seq_len"] = pos.shape[0] - prefix
    elif task is not None:
        shapes["seq_len"] = task.seq_len
    else:
        raise AirInterpError(f"{source}: cannot tell the sequence length for vocab {embed.shape[0]}; pass seq_len")
    return shapes


def load_official(path: PathLike, seq_len: Optional[int] = None) -> HookedAIR:
    """Load ``<run>/step_<N>`` (or a run directory: its highest step) written by the public code."""
    path = _official_step_file(Path(path))
    state = _read_official_state(path)
    cfg = _official_config(path, state, seq_len)
    model = HookedAIR(cfg)
    ours = {}
    for key, expected in model.state_dict().items():
        theirs = official_key(key, trm=cfg.variant == "trm")
        if theirs not in state:
            raise AirInterpError(f"{path}: missing key {theirs} (needed by variant {cfg.variant})")
        tensor = state.pop(theirs)
        if tensor.numel() != expected.numel() or tensor.squeeze().shape != expected.squeeze().shape:
            raise AirInterpError(
                f"{path}: key {theirs} has shape {tuple(tensor.shape)}, expected {tuple(expected.shape)}")
        _check_dtype(path, theirs, tensor, expected)
        ours[key] = tensor.reshape(expected.shape)
    if state:
        raise AirInterpError(f"{path}: unexpected key {sorted(state)[0]} for variant {cfg.variant} "
                             f"({len(state)} unexpected in all)")
    _assign(model, ours, path)
    return model


def _official_step_file(path: Path) -> Path:
    if path.is_dir():
        steps = sorted((int(m.group(1)), p) for p in path.iterdir() if (m := _STEP_FILE.fullmatch(p.name)))
        if not steps:
            raise AirInterpError(f"{path}: directory holds no step_<N> checkpoint")
        return steps[-1][1]
    if not path.is_file():
        raise AirInterpError(f"{path}: no such file")
    return path


def export_official(model: HookedAIR, run_dir: PathLike, step: int = 0, compiled_prefix: bool = False) -> Path:
    """Write ``model`` as the public code would: ``run_dir/step_<step>`` and ``run_dir/all_config.yaml``."""
    cfg = model.cfg
    trm = cfg.variant == "trm"
    if cfg.arch == "hrm":
        name = "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1"
    elif trm:
        name = "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1"
    else:
        name = f"air.air_1net_{_public_variant_name(cfg)}@AIR"
    arch = {theirs: getattr(cfg, ours) for theirs, ours in _ARCH_FIELDS.items()}
    arch.update(name=name, L_layers=cfg.n_layers, H_layers=cfg.layers_of("H"),
                loss={"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"})
    if trm:
        arch.update(puzzle_emb_len=cfg.puzzle_emb_rows, mlp_t=False)
    prefix = _COMPILED_PREFIX if compiled_prefix else ""
    state = {}
    for key, tensor in model.state_dict().items():
        if key.startswith("level_token_") and cfg.level_token.startswith("prepend"):
            tensor = tensor.view(1, 1, -1)
        state[prefix + official_key(key, trm)] = tensor.detach().cpu().clone()
    run_dir = Path(run_dir)
    with atomic_path(run_dir / "all_config.yaml") as tmp:
        tmp.write_text(yaml.safe_dump({"arch": arch}, sort_keys=True))
    step_file = run_dir / f"step_{step}"
    with atomic_path(step_file) as tmp:
        torch.save(state, tmp)
    return step_file


def _public_variant_name(cfg: AIRConfig) -> str:
    """The public release's module suffix for our variant (e.g. ``gx_non_linear``)."""
    names = {"gx_nonlinear": "gx_non_linear", "hadamard": "had_prod",
             "L2x_H2x_token_addition": "L2x_H2x_input_token_addition",
             "L2x_H2x_token_prepend": "L2x_H2x_input_token_prepend",
             "L2x_H2x_token_prepend_persist": "L2x_H2x_input_token_prepend_no_strip"}
    return names.get(cfg.variant, cfg.variant)


# ---- entry points ------------------------------------------------------------------------------


def checkpoint_file(path: PathLike) -> Path:
    """The file :func:`load_model` reads for ``path``: a file as is; for a directory, the latest
    model of one of our training runs (``<run>/latest/model.safetensors``), the model of one of its
    checkpoint directories, or the highest ``step_<N>`` of a public run."""
    path = Path(path)
    if not path.exists():
        raise AirInterpError(f"{path}: no such file or directory")
    if path.is_dir():
        for candidate in (path / RUN_LATEST / RUN_MODEL_FILE, path / RUN_MODEL_FILE):
            if candidate.is_file():
                return candidate.resolve()  # the step behind "latest", which a running job may move
        return _official_step_file(path)
    return path


def checkpoint_inputs(path: PathLike) -> list[Path]:
    """The files :func:`load_model` reads for ``path``: the checkpoint file, and beside a public
    ``step_<N>`` its ``all_config.yaml`` (what a command that loads ``path`` must not write over)."""
    file = checkpoint_file(path)
    return [file] if _is_safetensors(file) else [file, file.parent / "all_config.yaml"]


def run_checkpoints(run_dir: PathLike) -> list[tuple[int, Path]]:
    """(training step, model file) of every checkpoint of one of our training runs, oldest first."""
    folder = Path(run_dir) / RUN_CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p / RUN_MODEL_FILE) for p in folder.iterdir() if (m := _STEP_FILE.fullmatch(p.name))]
    return sorted((step, model) for step, model in found if model.is_file())


def init_checkpoint(run_dir: PathLike) -> Optional[Path]:
    """The model file a training run started from (``--init-from``), when it is at hand unchanged:
    the named file itself, or the checkpoint of the named run that holds those weights (found by
    the SHA-256 the run recorded, so a source run that trained on since still resolves). None for
    a run trained from scratch or whose source is gone."""
    try:
        config = json.loads((Path(run_dir) / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    source, digest = config.get("train", {}).get("init_from"), config.get("init_from_sha256")
    if not source or not digest:
        return None
    path = next((p for p in (Path(source), REPO / source) if p.exists()), None)
    if path is None:
        return None
    candidates = [model for _, model in run_checkpoints(path)] if path.is_dir() else [path]
    return next((model for model in candidates if sha256(model) == digest), None)


def load_model(path: PathLike, device: Union[str, torch.device, None] = None, seq_len: Optional[int] = None,
               dtype: Optional[str] = None) -> HookedAIR:
    """Load any checkpoint: our ``.safetensors`` file or training run, or the public code's
    ``step_<N>`` / run dir (see :func:`checkpoint_file`).

    The model comes back in eval mode. ``dtype`` overrides the checkpoint's ``forward_dtype``:
    ``"float32"``, ``"bfloat16"`` or ``"auto"`` (what this machine runs best, see
    :mod:`air_interp.hardware`); ``None`` keeps the checkpoint's. ``seq_len`` is only needed for a
    public RoPE checkpoint whose vocabulary does not tell the task.
    """
    path = checkpoint_file(path)
    if _is_safetensors(path):
        cfg, tensors = _load_ours(path)
        model = HookedAIR(cfg)
        _assign(model, _checked(model, tensors, path), path)
    else:
        model = load_official(path, seq_len=seq_len)
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


def _is_safetensors(path: Path) -> bool:
    """Safetensors files start with an 8-byte header length followed by a JSON object."""
    with open(path, "rb") as f:
        head = f.read(9)
    return path.suffix == ".safetensors" or (len(head) == 9 and head[8:9] == b"{")


def _checked(model: HookedAIR, tensors: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in tensors:
            raise AirInterpError(f"{path}: missing key {key}")
        if tensors[key].shape != tensor.shape:
            raise AirInterpError(f"{path}: key {key} has shape {tuple(tensors[key].shape)}, expected {tuple(tensor.shape)}")
        _check_dtype(path, key, tensors[key], tensor)
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise AirInterpError(f"{path}: unexpected key {extra[0]} ({len(extra)} unexpected in all)")
    return tensors


def _check_dtype(path: Path, key: str, tensor: torch.Tensor, expected: torch.Tensor) -> None:
    """A floating weight is stored as floats (an integer or bool tensor would be cast without a word)."""
    if expected.is_floating_point() and not tensor.is_floating_point():
        raise AirInterpError(f"{path}: key {key} holds {str(tensor.dtype).removeprefix('torch.')} values; "
                             "weights must be floating point (float32, bfloat16, float16 or float64)")


def _assign(model: HookedAIR, tensors: dict[str, torch.Tensor], path: Path) -> None:
    bad = next((k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise AirInterpError(f"{path}: key {bad} holds NaN or infinite values; the checkpoint is broken")
    state = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in tensors.items()}
    model.load_state_dict(state, strict=True)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
