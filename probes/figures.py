"""Regenerate every figure and table of the paper from named checkpoints, with a manifest.

For each named model: the decoded z_H / z_L grids (Figures 2-5), the freeze curves and table
(Figures 6-7), the attention contrasts, their table and an example heatmap (Figures 8-13), and
beyond the paper the linear probes, activation patching, the halting gate and commitment; then
the paper's qualitative claims checked on these models (``claims.md``). With a trained sweep
(``air-interp sweep``): the injection-ablation, level-token and specialisation tables of its
published runs, and for its runs of models with more than two states the three-roles reading
(``probes.roles``). ``manifest.json`` records, for every file, the checkpoint it came from (path and
SHA-256) and the settings.

The folder is written as a whole: everything goes into a fresh folder beside it, which replaces
the old one only when complete, so the manifest always describes exactly the files beside it.
An existing folder is replaced only with ``overwrite`` and only when it holds nothing but a
manifest of ours and the files it lists.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from air_interp.checkpoints import checkpoint_file, load_model
from air_interp.data import load_dataset
from air_interp.defaults import default_dataset, default_models, repo_relative
from air_interp.hardware import machine_record
from air_interp.io import atomic_path, check_replaceable_folder, sha256
from air_interp.model import HookedAIR
from air_interp.output import write_table

from .attention import attention_contrasts, plot_contrasts, plot_example, summarize
from .claims import check_claims
from .commitment import commitment, commitment_summary, plot_commitment
from .decode import DecodeResult, decode, plot_decode, summary
from .emergence import CACHE as EMERGENCE_CACHE
from .emergence import emergence, plot_emergence
from .freeze import freeze_table, plot_freeze, plot_freeze_matrix, run_freeze
from .halting import halting, halting_rule, halting_summary, plot_halting, reliability
from .linear import collect, linear_probes, plot_linear_probes
from .patching import patch, patch_summary, plot_patching
from .roles import multi_state_runs, role_rows, roles_table
from .tables import (card_rows, injection_table, level_token_table, published_cards, specialisation_rows,
                     specialisation_table)

DEFAULT_MODELS = ("sudoku_Lx_H", "sudoku_Lx_Hx", "maze_Lx_H", "maze_Lx_Hx")
TABLE_FORMATS = ("csv", "md", "tex")
MANIFEST = "manifest.json"


def not_our_figures(folder: Path) -> Optional[str]:
    """Why ``folder`` is not a figures folder of ours that may be replaced (None when it is)."""
    try:
        listed = {entry["file"] for entry in json.loads((folder / MANIFEST).read_text())["outputs"]}
    except (OSError, ValueError, KeyError, TypeError):
        return f"no readable {MANIFEST} of ours"
    extra = sorted(p.name for p in folder.iterdir() if p.name != MANIFEST and p.name not in listed)
    return f"it holds {extra[0]}, which its {MANIFEST} does not list" if extra else None


def check_figures_target(out: Path, overwrite: bool = False) -> Path:
    """``out`` may receive the figures: it is new or empty, or our figures folder and ``overwrite``."""
    return check_replaceable_folder(out, "figures folder", not_our_figures, overwrite)


def model_figures(name: str, model: HookedAIR, out: Path, puzzles: int, progress: bool
                  ) -> tuple[list[Path], dict[str, pd.DataFrame]]:
    """Decode, freeze and attention outputs of one model, then those beyond the paper (on the same
    puzzles), named ``<name>_*``, and the tables the claims are judged from."""
    split = load_dataset(default_dataset(model.cfg.task)).split("test")
    inputs, labels = split.inputs[:puzzles], split.labels[:puzzles]
    last = model.cfg.halt_max_steps - 1
    decoded = decode(model, inputs, labels, progress=progress)
    tables = {"decode": summary(decoded.table)}
    files = plot_decode(decoded, 0, sorted({0, 1, last}), out / f"{name}_decode")
    files += write_table(tables["decode"], out / f"{name}_decode_summary")
    updates, per_puzzle = run_freeze([model], inputs, labels, progress=progress)
    tables["freeze"] = freeze_table(per_puzzle)
    files += plot_freeze(updates, out / f"{name}_freeze", title=f"{name}, {len(inputs)} test puzzles")
    files += write_table(tables["freeze"], out / f"{name}_freeze_table", TABLE_FORMATS)
    tables["attention"] = summarize(attention_contrasts(model, inputs, labels, progress=progress))
    files += write_table(tables["attention"], out / f"{name}_attention_table", TABLE_FORMATS)
    files += plot_contrasts(tables["attention"], out / f"{name}_attention",
                            title=f"{name}: L-update vs H-update, {len(inputs)} test puzzles")
    files += plot_example(model, inputs, labels, puzzle=0, layer=model.cfg.n_layers - 1,
                          path=out / f"{name}_attention_example")
    files += beyond_figures(name, model, inputs, labels, out, progress)
    files += halting_figures(name, model, inputs, labels, out, progress)
    return files + commitment_figures(name, decoded, out), tables


def beyond_figures(name: str, model: HookedAIR, inputs: np.ndarray, labels: np.ndarray, out: Path,
                   progress: bool) -> list[Path]:
    """Linear probes and activation patching (not in the paper), named ``<name>_*``."""
    probes = linear_probes(collect(model, inputs, labels, progress=progress))
    files = write_table(probes, out / f"{name}_linear_probes", TABLE_FORMATS)
    files += plot_linear_probes(probes, out / f"{name}_linear_probes", title=f"{name}: linear probes, held-out puzzles")
    patched = patch_summary(patch(model, inputs, labels, progress=progress))
    files += write_table(patched, out / f"{name}_patching", TABLE_FORMATS)
    files += plot_patching(patched, out / f"{name}_patching", title=f"{name}: patching a state from another puzzle")
    return files


def halting_figures(name: str, model: HookedAIR, inputs: np.ndarray, labels: np.ndarray, out: Path,
                    progress: bool) -> list[Path]:
    """The halting gate (not in the paper): ``<name>_halting`` (figure), its summary and reliability curve."""
    table = halting(model, inputs, labels, progress=progress)
    files = write_table(halting_summary(table), out / f"{name}_halting_summary", TABLE_FORMATS)
    files += write_table(reliability(table), out / f"{name}_halting_reliability", TABLE_FORMATS)
    title = f"{name}: the halting gate ({halting_rule(model)})"
    return files + plot_halting(table, out / f"{name}_halting", title=title)


def commitment_figures(name: str, decoded: DecodeResult, out: Path) -> list[Path]:
    """When each cell commits (not in the paper), from the decode grids already computed (no rollout
    of its own): ``<name>_commitment`` (figure) and its summary."""
    table = commitment(decoded)
    files = write_table(commitment_summary(table), out / f"{name}_commitment_summary", TABLE_FORMATS)
    return files + plot_commitment(decoded, table, out / f"{name}_commitment", title=f"{name}: when each cell commits")


def claims_tables(out: Path, tables: dict[str, dict[str, pd.DataFrame]], tasks: dict[str, str],
                  models: dict[str, Path]) -> list[Path]:
    """The paper's qualitative claims on these models (see ``probes.claims``). A model ``X_Lx_Hx``
    beside ``X_Lx_H`` is checked as its symmetric control; a model card ``<checkpoint>.json``
    adds the recurrence claim."""
    pairs = [(name, name + "x") for name in models if name.endswith("Lx_H") and name + "x" in models]
    cards = {name: Path(path).with_suffix(".json") for name, path in models.items()
             if Path(path).with_suffix(".json").is_file()}
    return write_table(check_claims(tables, tasks, pairs, cards), out / "claims", ("csv", "md"))


def emergence_figures(models: dict[str, Path], tasks: dict[str, str], out: Path) -> list[dict]:
    """The emergence curves of the models whose training log (``checkpoints/logs/<name>/``) keeps an
    emergence table, one figure per task (``emergence_<task>``, the task's models side by side);
    their manifest entries."""
    logs = {name: Path(path).parent / "logs" / name for name, path in models.items()}
    outputs = []
    for task in dict.fromkeys(tasks.values()):
        runs = [log for name, log in logs.items() if tasks[name] == task and (log / EMERGENCE_CACHE).is_file()]
        if not runs:
            continue
        table = emergence(runs, progress=False, measure=False)  # draw what the logs hold, measure nothing
        files = write_table(table, out / f"emergence_{task}", ["csv"])
        files += plot_emergence(table, out / f"emergence_{task}", title=f"The {task} defaults along training")
        outputs += [{"file": f.name, "runs": [repo_relative(run) for run in runs]} for f in files]
    return outputs


def regenerate(out: Path, models: Optional[dict[str, Path]] = None, sweep: Optional[Path] = None,
               puzzles: int = 64, progress: bool = True, overwrite: bool = False, dtype: Optional[str] = None) -> Path:
    """Write every figure and table into the folder ``out`` with its ``manifest.json``; returns the
    manifest. ``puzzles`` test puzzles feed each model's probes (and the sweep's claim metrics; its
    accuracies are its cards', on the whole test split). ``dtype`` is the forward dtype (``auto``,
    ``float32``, ``bfloat16``; None: each checkpoint's own); the manifest records the one each file
    came from. See the module docstring for ``overwrite``."""
    out = check_figures_target(Path(out), overwrite)
    models = models or default_models(DEFAULT_MODELS)
    with atomic_path(out, directory=True) as folder:
        outputs: list[dict[str, Any]] = []
        tables, tasks = {}, {}
        for name, path in models.items():
            weights = checkpoint_file(path)
            model = load_model(weights, dtype=dtype)
            tasks[name] = model.cfg.task
            source = {"model": name, "checkpoint": repo_relative(weights), "sha256": sha256(weights),
                      "forward_dtype": model.cfg.forward_dtype}
            files, tables[name] = model_figures(name, model, folder, puzzles, progress)
            outputs += [{"file": file.name, **source} for file in files]
        outputs += [{"file": file.name, "models": list(models)} for file in claims_tables(folder, tables, tasks, models)]
        outputs += emergence_figures(models, tasks, folder)
        if sweep is not None:
            outputs += sweep_tables(sweep, folder, puzzles, progress)
        manifest = {
            "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "air_interp": version("air-interp"),
            "test_puzzles_per_model": puzzles,
            "dtype_requested": dtype or "checkpoint",
            "machine": machine_record(),
            "outputs": outputs,
        }
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        check_figures_target(out, overwrite)  # again: nothing may have moved in while we computed
    return out / MANIFEST


def sweep_tables(sweep: Path, out: Path, puzzles: int, progress: bool) -> list[dict]:
    """The injection-ablation, level-token and specialisation tables of a trained sweep's published
    runs (accuracy from their cards; claim metrics on ``puzzles`` test puzzles, cached beside each
    run's log); their manifest entries."""
    cards = published_cards(sweep)
    rows = card_rows(cards)
    specialisation = specialisation_rows(cards, puzzles, progress)
    files = write_table(rows, out / "sweep_runs", ["csv"])
    files += write_table(injection_table(rows), out / "injection_table", TABLE_FORMATS)
    files += write_table(level_token_table(rows), out / "level_token_table", TABLE_FORMATS)
    files += write_table(specialisation, out / "specialisation_runs", ["csv"])
    files += write_table(specialisation_table(specialisation), out / "specialisation_table", TABLE_FORMATS)
    manifest = [{"file": f.name, "sweep": repo_relative(Path(sweep)), "runs": len(cards)} for f in files]
    runs = multi_state_runs(cards)
    if runs:
        manifest += [{"file": f.name, "sweep": repo_relative(Path(sweep)), "runs": len(runs)}
                     for f in roles_figures(runs, out, puzzles, progress)]
    return manifest


def roles_figures(runs: list[tuple[Path, dict, HookedAIR]], out: Path, puzzles: int, progress: bool) -> list[Path]:
    """Beyond the paper, three roles? (``probes.roles``): the per-run quantities, their table over
    seeds, and per variant the freeze matrix and the first seed's decoded states."""
    rows, matrices, decoded = role_rows(runs, puzzles, progress)
    files = write_table(rows, out / "roles_runs", ["csv"])
    files += write_table(roles_table(rows), out / "roles_table", TABLE_FORMATS)
    for variant, matrix in matrices.groupby("variant", sort=False):
        seeds = matrix["run"].nunique()
        files += plot_freeze_matrix(matrix, out / f"roles_freeze_matrix_{variant}",
                                    title=f"{variant}: each state frozen in turn ({seeds} seed{'s' * (seeds > 1)}, "
                                          f"{puzzles} test puzzles)")
    for variant, result in decoded.items():
        last = len(result.grids[0]) // len(result.schedule) - 1
        files += plot_decode(result, 0, sorted({0, 1, last}), out / f"roles_decode_{variant}")
    return files
