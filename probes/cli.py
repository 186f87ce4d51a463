"""The probe commands (``decode``, ``freeze``, ``attention``, ...): thin wrappers over the probe functions.

Each command checks everything it was given (the output folder, the checkpoint, the data, every
index) before the first rollout. Tables are printed; figures and table files are written only
into an ``--out`` folder the user names.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from air_interp.arguments import DEVICE_HELP, add_compute_options, device, fraction, non_negative_int, positive_int
from air_interp.config import AIRConfig
from air_interp.errors import AirInterpError

# the --bootstrap help, as probes.attention states it (that module imports torch: the parser must not)
BOOTSTRAP_HELP = ("puzzle-bootstrap resamples of the 95%% CI (default 1000; at least 100: with fewer, fewer than 3 "
                  "resamples lie beyond each end of the interval, whose ends are then noise)")

if TYPE_CHECKING:  # the model module imports torch, which the parser must not
    from air_interp.model import HookedAIR


def _add_common(parser: argparse.ArgumentParser, puzzles: int = 64) -> None:
    parser.add_argument("--data", help="dataset directory (default: the shipped dataset of the model's task)")
    parser.add_argument("--split", default="test", choices=("train", "test"), help="split to read (default test)")
    parser.add_argument("--puzzles", type=positive_int, default=puzzles,
                        help=f"number of puzzles to analyse (default {puzzles})")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="puzzles per rollout batch (default 64)")
    parser.add_argument("--device", type=device, default="cpu", help=DEVICE_HELP)
    _add_out(parser, "folder for the table files and figures (default: print only, write nothing)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_compute_options(parser)


def _add_out(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--out", help=help_text)
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty --out folder (files of the same names are replaced)")


def _writes_out(command: Callable[[argparse.Namespace], None]) -> Callable[[argparse.Namespace], None]:
    """Run a command whose ``_out_folder(args)`` is a temporary folder: on success its files move
    into --out together (:func:`air_interp.io.probe_output`, which also holds --out's lock from
    ``_out_folder`` to the end), and are reported."""
    @functools.wraps(command)
    def run(args: argparse.Namespace) -> None:
        with contextlib.ExitStack() as stack:
            args.outputs, args.output = stack, None
            command(args)
        if args.output is not None and args.output.moved:
            _report(args.output.moved)
    return run


def _out_folder(args: argparse.Namespace, names: tuple[str, ...] = ()) -> Optional[Path]:
    """The temporary folder the command writes into, or None when nothing is to be written: --out
    is checked and locked here, before any compute, and receives the files when the command ends
    without an error (see _writes_out)."""
    from air_interp.io import probe_output

    args.output = args.outputs.enter_context(probe_output(args.out, args.overwrite, names))
    return None if args.output is None else args.output.folder


def _load(checkpoint: Optional[str], args: argparse.Namespace):
    """(path, model) of ``checkpoint`` (default: the embedded model) in the ``--dtype`` asked for;
    sets ``--threads`` and prints the dtype that runs and why."""
    from air_interp.checkpoints import load_model
    from air_interp.defaults import default_checkpoint
    from air_interp.hardware import apply_dtype, set_threads

    set_threads(args.threads)
    path = Path(checkpoint) if checkpoint else default_checkpoint()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a slow-dtype warning: the dtype is settled and reported below
        model = load_model(path, device=args.device)
    print(f"{path.name}: forward dtype {apply_dtype(model, args.dtype)}")
    return path, model


def _write_run_info(out: Path, args: argparse.Namespace, command: str, loaded: list[tuple[Path, "HookedAIR"]]) -> Path:
    """``<out>/<command>_run.json``: the checkpoints, forward dtype, threads, CPU and numerics behind the outputs."""
    from air_interp.hardware import machine_record
    from air_interp.io import atomic_path

    info = {"command": command, "dtype_requested": args.dtype, "device": args.device, **machine_record(),
            "checkpoints": [{"path": str(path), "forward_dtype": model.cfg.forward_dtype} for path, model in loaded]}
    target = out / f"{command}_run.json"
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(info, indent=1) + "\n")
    return target


def _puzzles(args: argparse.Namespace, task: str):
    """(inputs, labels) of the first ``--puzzles`` puzzles of the chosen split."""
    from air_interp.data import load_dataset
    from air_interp.defaults import default_dataset

    data = Path(args.data) if args.data else default_dataset(task)
    dataset = load_dataset(data)
    if dataset.task.name != task:
        raise AirInterpError(f"{data} holds {dataset.task.name} puzzles but the model is a {task} model")
    split = dataset.split(args.split)
    if len(split) == 0:
        raise AirInterpError(f"{data}: the {args.split} split holds no puzzles")
    count = min(args.puzzles, len(split))
    return split.inputs[:count], split.labels[:count]


def _steps(text: str, n_steps: int) -> list[int]:
    try:
        steps = [n_steps - 1 if s.strip() == "last" else int(s) for s in text.split(",")]
    except ValueError:
        raise AirInterpError(f"--steps takes comma-separated ACT step numbers or 'last', got {text!r}") from None
    bad = [s for s in steps if not 0 <= s < n_steps]
    if bad:
        raise AirInterpError(f"ACT steps must lie in [0, {n_steps}), got {bad}")
    return steps


def _report(written: list[Path]) -> None:
    print("wrote " + ", ".join(str(p) for p in written))


@_writes_out
def _decode(args: argparse.Namespace) -> None:
    from .decode import decode, plot_decode, render_rollout, summary, write_viewer
    from air_interp.output import write_table

    out = _out_folder(args)
    path, model = _load(args.checkpoint, args)
    inputs, labels = _puzzles(args, model.cfg.task)
    if not args.puzzle < len(inputs):
        raise AirInterpError(f"--puzzle {args.puzzle}: only {len(inputs)} puzzles are analysed "
                             f"(0 to {len(inputs) - 1})")
    steps = _steps(args.steps, model.cfg.halt_max_steps)
    result = decode(model, inputs, labels, batch_size=args.batch_size, progress=not args.quiet)
    print(f"{path.name}: {model.cfg.variant} on {model.cfg.task}, {len(inputs)} puzzles")
    print(render_rollout(result, args.puzzle, steps))
    table = summary(result.table)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if out is not None:
        written = write_table(result.table, out / "decode_table", ["csv"]) + write_table(table, out / "decode_summary")
        written += plot_decode(result, args.puzzle, steps, out / f"decode_puzzle{args.puzzle}")
        written.append(write_viewer(result, args.puzzle, out / f"decode_puzzle{args.puzzle}_viewer"))
        written.append(_write_run_info(out, args, "decode", [(path, model)]))


def _same_configuration(loaded: list[tuple[Path, HookedAIR]]) -> None:
    """Checkpoints averaged as seeds must differ in their weights only."""
    (first_path, first), *others = loaded
    for path, model in others:
        differences = _config_differences(first.cfg, model.cfg)
        if differences:
            raise AirInterpError(f"{first_path} and {path} are not seeds of one model: they differ in "
                                 f"{', '.join(differences)}")


def _config_differences(a: AIRConfig, b: AIRConfig) -> list[str]:
    """What differs between two configs, the variant named as such rather than as its fields."""
    variant_fields = ("arch", "n_L", "n_H", "operator", "level_token")
    first = {"variant": a.variant, **{k: v for k, v in a.to_dict().items() if k not in variant_fields}}
    second = {"variant": b.variant, **{k: v for k, v in b.to_dict().items() if k not in variant_fields}}
    return [f"{name} ({first[name]} vs {second[name]})" for name in first if first[name] != second[name]]


@_writes_out
def _freeze(args: argparse.Namespace) -> None:
    import pandas as pd

    from .freeze import freeze_table, plot_freeze, run_freeze
    from air_interp.output import write_table

    out = _out_folder(args)
    loaded = [_load(c, args) for c in (args.checkpoints or [None])]
    _same_configuration(loaded)
    inputs, labels = _puzzles(args, loaded[0][1].cfg.task)
    frozen = {"zH": "z_H", "zL": "z_L"}.get(args.state)  # the command line's spelling of the state
    states = ["none"] if frozen is None else ["none", frozen]
    updates, puzzles = run_freeze([m for _, m in loaded], inputs, labels, states, args.batch_size, not args.quiet,
                                  count_from=args.count_from)
    table = freeze_table(puzzles)
    shown = [c for c in table if c.endswith(("content_changes_mean", "content_changes_sem", "exact_mean"))]
    pd.set_option("display.width", 200)
    print(table[["freeze", *shown]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if out is not None:
        names = "+".join(p.stem for p, _ in loaded)
        written = write_table(table, out / "freeze_table") + write_table(updates, out / "freeze_updates", ["csv"])
        written += plot_freeze(updates, out / f"freeze_{args.state}", title=f"{names}, {len(inputs)} puzzles")
        written.append(_write_run_info(out, args, "freeze", loaded))


@_writes_out
def _attention(args: argparse.Namespace) -> None:
    from .attention import (AttentionOptions, attention_contrasts, check_bootstrap, plot_contrasts, plot_example,
                            summarize)
    from air_interp.output import write_table

    check_bootstrap(args.bootstrap)
    out = _out_folder(args)
    path, model = _load(args.checkpoint, args)
    cfg = model.cfg
    n_layers = min(cfg.layers_of("L"), cfg.layers_of("H"))
    if args.layer is not None and not -n_layers <= args.layer < n_layers:
        raise AirInterpError(f"--layer {args.layer}: this model has {n_layers} layers (0 to {n_layers - 1}, "
                             f"or -1 for the last); the paper's models have 4")
    if not 0 <= args.head < cfg.n_heads:
        raise AirInterpError(f"--head {args.head}: this model has {cfg.n_heads} heads (0 to {cfg.n_heads - 1})")
    layer = None if args.layer is None else args.layer % n_layers
    inputs, labels = _puzzles(args, cfg.task)
    options = AttentionOptions(
        steps=tuple(_steps(args.steps, cfg.halt_max_steps)) if args.steps else None,
        layers=None if layer is None else (layer,),
        violation_timing=args.violation_timing, violation_scope=args.violation_scope,
        include_self=None if args.self_in_neighbourhood == "published" else args.self_in_neighbourhood == "yes",
        skip_sink_heads=args.skip_sink_heads,
    )
    rows = attention_contrasts(model, inputs, labels, options, batch_size=args.batch_size, progress=not args.quiet)
    table = summarize(rows, n_boot=args.bootstrap)
    print(f"{path.name}: {cfg.variant} on {cfg.task}, {len(inputs)} puzzles, {len(rows)} query rows")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if out is not None:
        example_layer = n_layers - 1 if layer is None else layer
        written = write_table(table, out / "attention_table") + write_table(rows, out / "attention_rows", ["csv"])
        written += plot_contrasts(table, out / "attention_contrasts",
                                  title=f"{path.stem}: L-update vs H-update, {len(inputs)} puzzles")
        written += plot_example(model, inputs, labels, puzzle=0, layer=example_layer, head=args.head,
                                path=out / f"attention_example_layer{example_layer}")
        written.append(_write_run_info(out, args, "attention", [(path, model)]))


@_writes_out
def _linear_probe(args: argparse.Namespace) -> None:
    from .linear import TARGETS, collect, held_out_count, linear_probes, plot_linear_probes
    from air_interp.output import write_table

    targets = [t.strip() for t in args.targets.split(",")]
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        raise AirInterpError(f"--targets: unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    out = _out_folder(args)
    path, model = _load(args.checkpoint, args)
    inputs, labels = _puzzles(args, model.cfg.task)
    if not 0 < held_out_count(len(inputs), args.test_fraction) < len(inputs):
        raise AirInterpError(f"--test-fraction {args.test_fraction} of {len(inputs)} puzzles leaves no puzzle to fit "
                             "or none to test; use more --puzzles")
    steps = _steps(args.steps, model.cfg.halt_max_steps) if args.steps else None
    data = collect(model, inputs, labels, steps=steps, batch_size=args.batch_size, progress=not args.quiet)
    table = linear_probes(data, targets, args.test_fraction, args.seed)
    shown = ["target", "state", "step", "test_accuracy", "majority", "lens"]
    print(f"{path.name}: {model.cfg.variant} on {model.cfg.task}, {len(inputs)} puzzles, "
          f"{table['test_puzzles'].iloc[0]} held out")
    print(table[shown].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if out is not None:
        written = write_table(table, out / "linear_probes")
        written += plot_linear_probes(table, out / "linear_probes",
                                      title=f"{path.stem}: linear probes, held-out puzzles")
        written.append(_write_run_info(out, args, "linear-probe", [(path, model)]))


@_writes_out
def _patch(args: argparse.Namespace) -> None:
    from air_interp.output import write_table
    from .patching import patch, patch_summary, plot_patching

    out = _out_folder(args)
    path, model = _load(args.checkpoint, args)
    inputs, labels = _puzzles(args, model.cfg.task)
    if len(inputs) < 2:
        raise AirInterpError("patching needs at least 2 puzzles")
    steps = _steps(args.steps, model.cfg.halt_max_steps) if args.steps else None
    rows = patch(model, inputs, labels, steps=steps, batch_size=args.batch_size, progress=not args.quiet)
    summary = patch_summary(rows)
    print(f"{path.name}: {model.cfg.variant} on {model.cfg.task}, {len(inputs)} pairs (puzzle i <- puzzle i+1)")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if out is not None:
        written = write_table(summary, out / "patching_summary") + write_table(rows, out / "patching_rows", ["csv"])
        written += plot_patching(summary, out / "patching", title=f"{path.stem}: patching a state from another puzzle")
        written.append(_write_run_info(out, args, "patch", [(path, model)]))


@_writes_out
def _halting(args: argparse.Namespace) -> None:
    from air_interp.output import write_table
    from .halting import halting, halting_outcomes, halting_summary, plot_halting, reliability

    out = _out_folder(args)
    path, model = _load(args.checkpoint, args)
    inputs, labels = _puzzles(args, model.cfg.task)
    table = halting(model, inputs, labels, batch_size=args.batch_size, progress=not args.quiet)
    summary, curve = halting_summary(table, args.bins), reliability(table, args.bins)
    rule = "q_halt > 0" if model.cfg.no_act_continue else "q_halt > q_continue"
    print(f"{path.name}: {model.cfg.variant} on {model.cfg.task}, {len(inputs)} puzzles, halting rule {rule}")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(curve.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if out is not None:
        written = write_table(table, out / "halting_table", ["csv"]) + write_table(summary, out / "halting_summary")
        written += write_table(curve, out / "halting_reliability")
        written += write_table(halting_outcomes(table), out / "halting_puzzles", ["csv"])
        written += plot_halting(table, out / "halting", title=f"{path.stem}: the halting gate ({rule})", bins=args.bins)
        written.append(_write_run_info(out, args, "halting", [(path, model)]))


@_writes_out
def _commitment(args: argparse.Namespace) -> None:
    from air_interp.output import write_table
    from .commitment import commitment, commitment_summary, plot_commitment
    from .decode import decode

    out = _out_folder(args)
    path, model = _load(args.checkpoint, args)
    inputs, labels = _puzzles(args, model.cfg.task)
    result = decode(model, inputs, labels, batch_size=args.batch_size, progress=not args.quiet)
    table = commitment(result)
    summary = commitment_summary(table)
    print(f"{path.name}: {model.cfg.variant} on {model.cfg.task}, {len(inputs)} puzzles")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if out is not None:
        written = write_table(table, out / "commitment_table", ["csv"]) + write_table(summary, out / "commitment_summary")
        written += plot_commitment(result, table, out / "commitment", title=f"{path.stem}: when each cell commits")
        written.append(_write_run_info(out, args, "commitment", [(path, model)]))


def _parse_models(specs: list[str]) -> dict[str, Path]:
    models = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise AirInterpError(f"--model takes NAME=PATH, got {spec!r}")
        if not re.fullmatch(r"[\w.-]+", name):
            raise AirInterpError(f"--model {name}: NAME starts the names of its files; use letters, digits, _ . -")
        if not Path(path).exists():
            raise AirInterpError(f"--model {name}: {path}: no such file")
        if name in models:
            raise AirInterpError(f"--model {name} is given twice")
        models[name] = Path(path)
    return models


def _figures(args: argparse.Namespace) -> None:
    from air_interp.hardware import set_threads

    from .figures import check_figures_target, regenerate

    out = check_figures_target(Path(args.out), args.overwrite)
    set_threads(args.threads)
    models = _parse_models(args.model) or None
    sweep = Path(args.sweep) if args.sweep else None
    manifest = regenerate(out, models, sweep, args.puzzles, not args.quiet, args.overwrite,
                          args.dtype)
    print(f"wrote the figures and tables listed in {manifest}")


@_writes_out
def _tables(args: argparse.Namespace) -> None:
    from air_interp.output import write_table
    from .tables import (PUBLISHED, accuracy_rows, card_rows, find_checkpoints, injection_table, level_token_table,
                         published_cards)

    from air_interp.hardware import set_threads

    out = _out_folder(args)
    set_threads(args.threads)
    directory = Path(args.directory)
    if any(directory.rglob(f"{PUBLISHED}/*.json")):  # a trained sweep: its cards hold the accuracies
        rows = card_rows(published_cards(directory))
    else:
        rows = accuracy_rows(find_checkpoints(directory), Path(args.data) if args.data else None,
                             args.puzzles, not args.quiet, args.dtype)
    tables = {"injection_table": injection_table(rows), "level_token_table": level_token_table(rows)}
    for name, table in tables.items():
        print(f"{name}:\n{table.to_string(index=False)}\n")
    if out is not None:
        written = write_table(rows, out / "sweep_accuracy", ["csv"])
        for name, table in tables.items():
            written += write_table(table, out / name, ("csv", "md", "tex"))


@_writes_out
def _emergence(args: argparse.Namespace) -> None:
    from .emergence import COMBINED_FILES, combined_outputs, emergence, write_emergence

    from air_interp.hardware import set_threads

    out = _out_folder(args, names=COMBINED_FILES)
    if out is not None:
        combined_outputs(Path(args.out))  # no output resolves to a run's emergence.csv
    set_threads(args.threads)
    table = emergence([Path(run) for run in args.runs], args.puzzles, Path(args.data) if args.data else None,
                      args.batch_size, not args.quiet, args.dtype, args.every)
    shown = table[(table["metric"] == "early_undecided_cells") | (table["metric"] == "exact")
                  & (table["act_step"] == table["act_step"].max())]
    print(shown.pivot_table(index=["run", "train_step"], columns=["metric", "state"], values="value")
          .to_string(float_format=lambda v: f"{v:.3f}"))
    if out is not None:
        write_emergence(table, out, title=f"{' vs '.join(dict.fromkeys(table['run']))}: probes along training")


def add_probe_parsers(commands: argparse._SubParsersAction) -> None:
    """Register ``decode``, ``freeze``, ``attention``, ``linear-probe``, ``patch``, ``halting``, ``commitment``,
    ``tables``, ``figures`` and ``emergence``."""
    decode = commands.add_parser(
        "decode", help="logit-lens the z_H / z_L states of every sub-step (Figures 2-5)",
        description="Run full rollouts and decode z_H and z_L (lm_head argmax) after every sub-step of "
                    "every ACT step. Prints one puzzle's rollout and per-step statistics; writes the "
                    "tidy table (CSV, Markdown), the grid figure (PNG, PDF) and an HTML viewer.")
    decode.add_argument("checkpoint", nargs="?", help="checkpoint (default: the embedded Sudoku Lx_H model)")
    decode.add_argument("--puzzle", type=non_negative_int, default=0,
                        help="which analysed puzzle to print and draw (default 0)")
    decode.add_argument("--steps", default="0,1,last", help="ACT steps to print and draw (default 0,1,last)")
    _add_common(decode)
    decode.set_defaults(func=_decode)

    freeze = commands.add_parser(
        "freeze", help="hold z_H or z_L at its reset value and count the other state's changes (Figures 6-7)",
        description="Run normal rollouts and rollouts with one state frozen at its reset value; count, "
                    "per update of the other state, token changes, mask flips and content changes; report "
                    "final exact accuracy from z_H. Several checkpoints (seeds) give mean/std/sem over runs.")
    freeze.add_argument("checkpoints", nargs="*", help="checkpoints (default: the embedded Sudoku Lx_H model)")
    freeze.add_argument("--state", default="zH", choices=("zH", "zL", "none"), help="state to freeze (default zH)")
    freeze.add_argument("--count-from", default="published", choices=("published", "reset", "first_update"),
                        help="where each state's counted sequence starts: published (z_L from its first update, "
                             "z_H from reset, as the public scripts and the paper), reset (both from reset) or "
                             "first_update (both from their first update)")
    _add_common(freeze)
    freeze.set_defaults(func=_freeze)

    attention = commands.add_parser(
        "attention", help="L vs H attention contrasts per layer (Figures 8-13, attention table)",
        description="Compare the attention of the first L and first H sub-step of chosen ACT steps, per layer: "
                    "locality (Sudoku Δnbr, Maze Δρ), entropy Δent and mass on wrong cells Δviol, per query "
                    "class, with the paper's row-level 95% CI and a puzzle-level bootstrap 95% CI.")
    attention.add_argument("checkpoint", nargs="?", help="checkpoint (default: the embedded Sudoku Lx_H model)")
    attention.add_argument("--layer", type=int, help="one layer only, -1 = the last (default: every layer)")
    attention.add_argument("--steps", help="ACT steps (default: the paper's 2,4,...,14,15 of 16 steps; for a model "
                                           "with fewer steps those it has and its last, e.g. 2,4,6,7 of 8)")
    attention.add_argument("--violation-timing", default="after", choices=("after", "before"),
                           help="violation set from z_H after the measured H-update (published) or before it")
    attention.add_argument("--violation-scope", choices=("board", "neighbourhood"),
                           help="Δviol over the whole board or the class neighbourhood (default: as published "
                                "for the task: Sudoku board, Maze N4)")
    attention.add_argument("--self-in-neighbourhood", default="published", choices=("published", "yes", "no"),
                           help="count the query in its own neighbourhood (published: Sudoku yes, Maze no)")
    attention.add_argument("--skip-sink-heads", action="store_true",
                           help="leave out of the head average any head with < 1e-6 of its mass on content (parked "
                                "on the prefix); published: renormalise any positive content mass, uniform if 0")
    attention.add_argument("--head", type=non_negative_int, default=0, help="head of the example heatmap (default 0)")
    attention.add_argument("--bootstrap", type=positive_int, default=1000, help=BOOTSTRAP_HELP)
    _add_common(attention)
    attention.set_defaults(func=_attention, batch_size=16)

    probe = commands.add_parser(
        "linear-probe", help="linear probes on z_L / z_H with held-out accuracy (beyond the paper)",
        description="Fit a logistic-regression probe per state and ACT step from each open cell's state vector to "
                    "a per-cell target (answer: the solution token; correct: the state's lens decode is right; "
                    "will_change: the lens decode differs from the final answer). Held-out accuracy on other "
                    "puzzles, with the majority-class and logit-lens baselines.")
    probe.add_argument("checkpoint", nargs="?", help="checkpoint (default: the embedded Sudoku Lx_H model)")
    probe.add_argument("--targets", default="answer,correct,will_change", help="comma-separated probe targets")
    probe.add_argument("--steps", help="ACT steps to probe (default: all)")
    probe.add_argument("--test-fraction", type=fraction, default=0.25,
                       help="fraction of the puzzles held out (default 0.25)")
    probe.add_argument("--seed", type=non_negative_int, default=0, help="seed of the held-out split (default 0)")
    _add_common(probe, puzzles=256)
    probe.set_defaults(func=_linear_probe)

    patching = commands.add_parser(
        "patch", help="patch z_H or z_L from another puzzle and see whose answer comes out (beyond the paper)",
        description="For each puzzle i (target) and puzzle i+1 (source): rerun the target with z_H or z_L replaced "
                    "by the source's at the end of one ACT step, and report on the cells where the solutions differ "
                    "the fraction of the final z_H decode that follows the source vs the target.")
    patching.add_argument("checkpoint", nargs="?", help="checkpoint (default: the embedded Sudoku Lx_H model)")
    patching.add_argument("--steps", help="ACT steps to patch at (default: all)")
    _add_common(patching)
    patching.set_defaults(func=_patch)

    halt = commands.add_parser(
        "halting", help="the Q head's halting gate against whether the answer is already right (beyond the paper)",
        description="Per puzzle and ACT step: the q_halt logit (hook step.{s}.hook_q), sigmoid(q_halt) and whether "
                    "the prediction after the step (z_H through lm_head) is exactly right. Summaries: a reliability "
                    "curve (binned sigmoid(q_halt) against the fraction right), and per puzzle the first step from "
                    "which the answer is right and stays right against the step where the model's own halting rule "
                    "halts; how often halting stops on a right answer.")
    halt.add_argument("checkpoint", nargs="?", help="checkpoint (default: the embedded Sudoku Lx_H model)")
    halt.add_argument("--bins", type=positive_int, default=10, help="bins of the reliability curve (default 10)")
    _add_common(halt)
    halt.set_defaults(func=_halting)

    commit = commands.add_parser(
        "commitment", help="when each cell's decoded z_H / z_L value becomes final, and its flips (beyond the paper)",
        description="From the decode probe's grids: per puzzle, state and cell, the first sub-step from which the "
                    "decoded value stays final to the end of the rollout, and the number of flips (changes between "
                    "consecutive sub-steps), each state counted from its first update. Figures: the mean commit "
                    "sub-step of every cell on the board, and the distributions per state.")
    commit.add_argument("checkpoint", nargs="?", help="checkpoint (default: the embedded Sudoku Lx_H model)")
    _add_common(commit)
    commit.set_defaults(func=_commitment)

    tables = commands.add_parser(
        "tables", help="injection-ablation and level-token tables from a directory of checkpoints",
        description="Evaluate every checkpoint under DIRECTORY (the latest checkpoint of each training run and "
                    "loose .safetensors files) on its test split; group by variant and task, mean ± std over seeds, "
                    "the paper's number beside. A trained sweep (air-interp sweep) is read from its published "
                    "runs' cards instead, at once: air-interp tables checkpoints/sweeps")
    tables.add_argument("directory", help="directory holding checkpoints or training runs")
    tables.add_argument("--data", help="dataset directory (default: the shipped dataset of each model's task)")
    tables.add_argument("--puzzles", type=positive_int, help="evaluate on the first N test puzzles only (default all)")
    _add_out(tables, "folder for the table files (default: print only, write nothing)")
    tables.add_argument("--quiet", action="store_true", help="no progress bars")
    add_compute_options(tables)
    tables.set_defaults(func=_tables)

    figures = commands.add_parser(
        "figures", help="regenerate every figure and table into figures/ (with a manifest)",
        description="For each named model: decode grids, freeze curves and table, attention contrasts, table and "
                    "example heatmap; with --sweep the injection and level-token tables. PNG + PDF figures, "
                    "CSV + Markdown + LaTeX tables, manifest.json. Default: the embedded checkpoints.")
    figures.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                         help="a named checkpoint (repeatable; default: the embedded defaults)")
    figures.add_argument("--sweep", help="a trained sweep (air-interp sweep --out DIR), or a folder of them: the "
                                         "injection, level-token and specialisation tables of its published runs")
    figures.add_argument("--puzzles", type=positive_int, default=64, help="test puzzles per model (default 64)")
    figures.add_argument("--out", default="figures", help="output folder, written as a whole (default figures)")
    figures.add_argument("--overwrite", action="store_true",
                         help="replace an existing --out folder that holds figures of ours and nothing else")
    figures.add_argument("--quiet", action="store_true", help="no progress bars")
    add_compute_options(figures)
    figures.set_defaults(func=_figures)

    emergence = commands.add_parser(
        "emergence", help="the claim metrics on every checkpoint of training runs, against training step",
        description="Run decode, freeze and attention on every saved checkpoint of one or more training runs "
                    "(<run>/checkpoints/step_*/) and draw them against training step, runs side by side: exact "
                    "accuracy per ACT step, cells z_L / z_H decode as undecided, content changes normal vs the "
                    "other state frozen, attention contrasts per layer. Results are cached in <run>/emergence.csv, "
                    "so a rerun measures only new checkpoints (watch a run while it trains) and a run whose "
                    "checkpoints are gone still draws from its cache.")
    emergence.add_argument("runs", nargs="+", help="training run directories")
    emergence.add_argument("--data", help="dataset directory (default: each run's own)")
    emergence.add_argument("--puzzles", type=positive_int, default=64, help="test puzzles per checkpoint (default 64)")
    emergence.add_argument("--batch-size", type=positive_int, default=64, help="puzzles per rollout batch (default 64)")
    emergence.add_argument("--every", type=positive_int, default=1,
                           help="measure only checkpoints whose step is a multiple of this, and the latest "
                                "(default 1: all; a 4-layer checkpoint takes a minute or two on one CPU core)")
    _add_out(emergence, "folder for the runs' combined table and figure, emergence_runs.csv/.png/.pdf (default: "
                        "print only; each run's measurements are cached in <run>/emergence.csv either way)")
    emergence.add_argument("--quiet", action="store_true", help="no progress bars")
    add_compute_options(emergence)
    emergence.set_defaults(func=_emergence)
