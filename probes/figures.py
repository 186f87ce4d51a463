"""Regenerate every figure and table of the paper from named checkpoints, with a manifest.

For each named model: the decoded z_H / z_L grids (Figures 2-5), the freeze curves and table
(Figures 6-7), the attention contrasts, their table and an example heatmap (Figures 8-13), and
beyond the paper the linear probes and activation patching; then the paper's qualitative claims
checked on these models (``claims.md``). With a sweep directory: the injection-ablation and level-token tables. ``manifest.json`` records, for
every file, the checkpoint it came from (path and SHA-256) and the settings.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Optional

import torch

from air_interp.checkpoints import checkpoint_file, load_model
from air_interp.data import load_dataset
from air_interp.defaults import CHECKPOINTS, default_dataset, repo_relative
from air_interp.errors import AirInterpError
from air_interp.hardware import cpu_model
from air_interp.io import atomic_path
from air_interp.model import HookedAIR

from .attention import attention_contrasts, plot_contrasts, plot_example, summarize
from .claims import check_claims
from .decode import decode, plot_decode, summary
from .freeze import freeze_table, plot_freeze, run_freeze
from .linear import collect, linear_probes, plot_linear_probes
from .output import write_table
from .patching import patch, patch_summary, plot_patching
from .tables import accuracy_rows, find_checkpoints, injection_table, level_token_table

DEFAULT_MODELS = ("sudoku_Lx_H", "sudoku_Lx_Hx", "maze_Lx_H", "maze_Lx_Hx")
TABLE_FORMATS = ("csv", "md", "tex")


def default_models() -> dict[str, Path]:
    """The embedded default checkpoints that exist in ``checkpoints/``."""
    found = {name: CHECKPOINTS / f"{name}.safetensors" for name in DEFAULT_MODELS}
    found = {name: path for name, path in found.items() if path.is_file()}
    if not found:
        raise AirInterpError(f"no default checkpoints in {CHECKPOINTS}; name some with --model NAME=PATH")
    return found


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_figures(name: str, model: HookedAIR, out: Path, puzzles: int, progress: bool) -> list[Path]:
    """Decode, freeze and attention outputs of one model, named ``<name>_*``."""
    split = load_dataset(default_dataset(model.cfg.task)).split("test")
    inputs, labels = split.inputs[:puzzles], split.labels[:puzzles]
    last = model.cfg.halt_max_steps - 1
    files = []
    decoded = decode(model, inputs, labels, progress=progress)
    files += plot_decode(decoded, 0, sorted({0, 1, last}), out / f"{name}_decode")
    files += write_table(summary(decoded.table), out / f"{name}_decode_summary")
    updates, per_puzzle = run_freeze([model], inputs, labels, progress=progress)
    files += plot_freeze(updates, out / f"{name}_freeze", title=f"{name}, {len(inputs)} test puzzles")
    files += write_table(freeze_table(per_puzzle), out / f"{name}_freeze_table", TABLE_FORMATS)
    rows = attention_contrasts(model, inputs, labels, progress=progress)
    table = summarize(rows)
    files += write_table(table, out / f"{name}_attention_table", TABLE_FORMATS)
    files += plot_contrasts(table, out / f"{name}_attention", title=f"{name}: L minus H, {len(inputs)} test puzzles")
    files += plot_example(model, inputs, labels, puzzle=0, layer=model.cfg.n_layers - 1,
                          path=out / f"{name}_attention_example")
    return files + beyond_figures(name, model, inputs, labels, out, progress)


def beyond_figures(name: str, model, inputs, labels, out: Path, progress: bool) -> list[Path]:
    """Linear probes and activation patching (not in the paper), named ``<name>_*``."""
    probes = linear_probes(collect(model, inputs, labels, progress=progress))
    files = write_table(probes, out / f"{name}_linear_probes", TABLE_FORMATS)
    files += plot_linear_probes(probes, out / f"{name}_linear_probes", title=f"{name}: linear probes, held-out puzzles")
    patched = patch_summary(patch(model, inputs, labels, progress=progress))
    files += write_table(patched, out / f"{name}_patching", TABLE_FORMATS)
    files += plot_patching(patched, out / f"{name}_patching", title=f"{name}: patching a state from another puzzle")
    return files


def claims_tables(out: Path, models: dict[str, Path]) -> list[Path]:
    """The paper's qualitative claims on these models (see ``probes.claims``). A model ``X_Lx_Hx``
    beside ``X_Lx_H`` is checked as its symmetric control; a model card ``<checkpoint>.json``
    adds the recurrence claim."""
    tasks = {name: load_model(path, dtype="auto").cfg.task for name, path in models.items()}
    pairs = [(name, name + "x") for name in models if name.endswith("Lx_H") and name + "x" in models]
    cards = {name: Path(path).with_suffix(".json") for name, path in models.items()
             if Path(path).with_suffix(".json").is_file()}
    return write_table(check_claims(out, tasks, pairs, cards), out / "claims", ("csv", "md"))


def regenerate(out: Path, models: Optional[dict[str, Path]] = None, sweep: Optional[Path] = None,
               puzzles: int = 64, progress: bool = True, sweep_puzzles: Optional[int] = None,
               dtype: Optional[str] = None) -> Path:
    """Write every figure and table into ``out`` and ``out/manifest.json``; returns the manifest.

    ``puzzles`` test puzzles feed each model's probes; the sweep is evaluated on the whole test
    split unless ``sweep_puzzles`` limits it. ``dtype`` is the forward dtype (``auto``, ``float32``,
    ``bfloat16``; None: each checkpoint's own); the manifest records the one each file came from."""
    models = models or default_models()
    out = Path(out)
    outputs = []
    for name, path in models.items():
        weights = checkpoint_file(path)
        model = load_model(path, dtype=dtype)
        source = {"model": name, "checkpoint": repo_relative(weights), "sha256": sha256(weights),
                  "forward_dtype": model.cfg.forward_dtype}
        for file in model_figures(name, model, out, puzzles, progress):
            outputs.append({"file": file.name, **source})
    for file in claims_tables(out, models):
        outputs.append({"file": file.name, "models": list(models)})
    if sweep is not None:
        checkpoints = find_checkpoints(sweep)
        rows = accuracy_rows(checkpoints, max_puzzles=sweep_puzzles, progress=progress, dtype=dtype)
        files = write_table(rows, out / "sweep_accuracy", ["csv"])
        files += write_table(injection_table(rows), out / "injection_table", TABLE_FORMATS)
        files += write_table(level_token_table(rows), out / "level_token_table", TABLE_FORMATS)
        outputs += [{"file": f.name, "sweep": str(sweep), "checkpoints": len(checkpoints)} for f in files]
    manifest = {
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "air_interp": version("air-interp"),
        "test_puzzles_per_model": puzzles,
        "sweep_test_puzzles": sweep_puzzles or "all",
        "dtype_requested": dtype or "checkpoint",
        "machine": {"cpu": cpu_model(), "threads": torch.get_num_threads()},
        "outputs": outputs,
    }
    target = out / "manifest.json"
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    return target
