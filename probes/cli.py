"""The probe commands (``decode``, ``freeze``, ``attention``, ...): thin wrappers over the probe functions.

Every command is declared once, in :data:`COMMANDS`: its name, the function it runs, whose
docstring is its help (the first paragraph) and description (the rest), and its own arguments;
the common ones are added by :func:`probe` and :meth:`Command.register`. A probe's function is a
*compute* function: it calls the library and returns a :class:`Report` (what to print, what to
write). The one template, :meth:`Probe.run`, does the rest in the same order for every probe:
check the arguments, lock ``--out``, load the checkpoints, read the puzzles, compute, print, write
and record the run (``<command>_run.json``).

Each command checks everything it was given (the output folder, the checkpoint, the data, every
index) before the first rollout, and reports a problem as an :class:`AirInterpError`, which
``air_interp.cli.main`` prints as one line (exit code 2). Tables are printed; figures and table
files are written only into an ``--out`` folder the user names.
"""
from __future__ import annotations

import argparse
import inspect
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, NamedTuple, Optional, Sequence, Union

from air_interp.arguments import DEVICE_HELP, add_compute_options, device, fraction, non_negative_int, positive_int
from air_interp.config import AIRConfig
from air_interp.errors import AirInterpError

if TYPE_CHECKING:  # they import torch (or pandas), which the parser must not
    import pandas as pd

    from air_interp.model import HookedAIR

    from .attention import AttentionOptions

# the --bootstrap help, as probes.attention states it (that module imports torch: the parser must not)
BOOTSTRAP_HELP = ("puzzle-bootstrap resamples of the 95%% CI (default 1000; at least 100: with fewer, fewer than 3 "
                  "resamples lie beyond each end of the interval, whose ends are then noise)")
OUT_HELP = "folder for the table files and figures (default: print only, write nothing)"
CSV, TABLE_FORMATS = ("csv",), ("csv", "md", "tex")

Loaded = tuple[Path, "HookedAIR"]  # a checkpoint's path and its model
Writer = Callable[[Path], object]  # writes its files into the folder it is given
Models = Literal["one", "many", "none"]  # what a probe loads: a checkpoint, seeds of one model, or nothing itself


class Option(NamedTuple):
    """One ``add_argument`` call: the flags (or the positional's name) and the settings."""
    flags: tuple[str, ...]
    settings: dict[str, Any]


def option(*flags: str, **settings: Any) -> Option:
    return Option(flags, settings)


QUIET = option("--quiet", action="store_true", help="no progress bars")
CHECKPOINT = option("checkpoint", nargs="?", help="checkpoint (default: the embedded Sudoku Lx_H model)")
CHECKPOINTS = option("checkpoints", nargs="*", help="checkpoints (default: the embedded Sudoku Lx_H model)")


@dataclass(frozen=True)
class Command:
    """One subcommand of :data:`COMMANDS` (made by :func:`command` or :func:`probe`). Every one runs a
    model (or may), so every one also takes ``--quiet``, ``--dtype`` and ``--threads``, after its
    own options."""
    name: str
    help: str
    description: str
    options: tuple[Option, ...]
    run: Callable[[argparse.Namespace], None]

    def register(self, commands: argparse._SubParsersAction) -> None:
        parser = commands.add_parser(self.name, help=self.help, description=self.description)
        for flags, settings in (*self.options, QUIET):
            parser.add_argument(*flags, **settings)
        add_compute_options(parser)
        parser.set_defaults(func=self.run)


@dataclass(frozen=True)
class Run:
    """What a probe's compute function is handed: the arguments, the checkpoints loaded and the first
    ``--puzzles`` puzzles of the split as (inputs, labels); no checkpoints and no puzzles for a probe
    whose library function finds its own."""
    args: argparse.Namespace
    loaded: list[Loaded] = field(default_factory=list)
    inputs: Any = None
    labels: Any = None

    @property
    def path(self) -> Path:
        return self.loaded[0][0]

    @property
    def model(self) -> HookedAIR:
        return self.loaded[0][1]

    @property
    def models(self) -> list[HookedAIR]:
        return [model for _, model in self.loaded]

    @property
    def rollout(self) -> dict[str, Any]:
        """The keyword arguments of every probe function's rollouts."""
        return {"batch_size": self.args.batch_size, "progress": not self.args.quiet}

    def steps(self) -> Optional[list[int]]:
        """``--steps`` as ACT step numbers, or None when it is not given."""
        return _steps(self.args.steps, self.model.cfg.halt_max_steps) if self.args.steps else None

    def header(self, counted: str = "puzzles", *details: str) -> str:
        """``<checkpoint>: <variant> on <task>, <N> puzzles[, details]``: what the numbers below come from."""
        cfg = self.model.cfg
        return ", ".join([f"{self.path.name}: {cfg.variant} on {cfg.task}", f"{len(self.inputs)} {counted}", *details])


@dataclass(frozen=True)
class Report:
    """What a probe computed: what it prints (text as it is, tables to 3 decimals) and, with
    ``--out``, the writers of its files."""
    printed: list[Union[str, pd.DataFrame]]
    writes: list[Writer]

    def show(self) -> None:
        for item in self.printed:
            print(item if isinstance(item, str) else item.to_string(index=False, float_format=lambda v: f"{v:.3f}"))

    def write(self, folder: Path) -> None:
        for write in self.writes:
            write(folder)


@dataclass(frozen=True)
class Probe:
    """The template of every probe command (made by :func:`probe`)."""
    name: str
    compute: Callable[[Run], Report]
    models: Models
    check: Optional[Callable[[argparse.Namespace], object]]
    replaces: Optional[Callable[[], Sequence[str]]]

    def run(self, args: argparse.Namespace) -> None:
        """Check, lock --out, load, read the puzzles, compute, print, write and record the run. The
        files move into --out together, and only when all of it succeeded (``air_interp.io.probe_output``)."""
        from air_interp.hardware import set_threads
        from air_interp.io import probe_output

        if self.check is not None:
            self.check(args)
        with probe_output(args.out, args.overwrite, self.replaces() if self.replaces else ()) as output:
            set_threads(args.threads)
            run = self._prepare(args)
            report = self.compute(run)
            report.show()
            if output is not None:
                report.write(output.folder)
                if run.loaded:
                    _write_run_info(output.folder, args, self.name, run.loaded)
        if output is not None and output.moved:
            print("wrote " + ", ".join(str(path) for path in output.moved))

    def _prepare(self, args: argparse.Namespace) -> Run:
        if self.models == "none":
            return Run(args)
        loaded = [_load(checkpoint, args)
                  for checkpoint in ((args.checkpoints or [None]) if self.models == "many" else [args.checkpoint])]
        _same_configuration(loaded)
        return Run(args, loaded, *_puzzles(args, loaded[0][1].cfg.task))


def command(name: str, run: Callable[[argparse.Namespace], None], *options: Option) -> Command:
    """A command that runs ``run``, its help and description ``run``'s docstring (see :func:`_texts`)."""
    return Command(name, *_texts(run), options, run)


def probe(name: str, compute: Callable[[Run], Report], *options: Option, models: Models = "one", puzzles: int = 64,
          batch_size: int = 64, out_help: str = OUT_HELP,
          check: Optional[Callable[[argparse.Namespace], object]] = None,
          replaces: Optional[Callable[[], Sequence[str]]] = None) -> Command:
    """A probe command run by the template, its help and description ``compute``'s docstring (see
    :func:`_texts`). Its arguments: the checkpoint(s) ``models`` asks for, its own ``options``, then
    the common ones: for a probe that loads models --data, --split, --puzzles (default ``puzzles``),
    --batch-size (default ``batch_size``) and --device; for every probe --out and --overwrite.
    ``check`` checks arguments that need the library before --out is touched; ``replaces`` gives the
    names (globs) of the entries of --out it will replace, checked on entry."""
    positional = {"one": (CHECKPOINT,), "many": (CHECKPOINTS,), "none": ()}[models]
    inputs = () if models == "none" else _input_options(puzzles, batch_size)
    template = Probe(name, compute, models, check, replaces)
    return Command(name, *_texts(compute), (*positional, *options, *inputs, *_out_options(out_help)), template.run)


def _texts(function: Callable[..., object]) -> tuple[str, str]:
    """(help, description) of a command: the first paragraph of its function's docstring and the rest.
    As in click, what a command does is written once, where it is done."""
    help_text, _, description = (inspect.getdoc(function) or "").partition("\n\n")
    return help_text, description


def _input_options(puzzles: int, batch_size: int) -> tuple[Option, ...]:
    return (option("--data", help="dataset directory (default: the shipped dataset of the model's task)"),
            option("--split", default="test", choices=("train", "test"), help="split to read (default test)"),
            option("--puzzles", type=positive_int, default=puzzles,
                   help=f"number of puzzles to analyse (default {puzzles})"),
            _batch_size(batch_size),
            option("--device", type=device, default="cpu", help=DEVICE_HELP))


def _batch_size(default: int) -> Option:
    return option("--batch-size", type=positive_int, default=default,
                  help=f"puzzles per rollout batch (default {default})")


def _out_options(help_text: str) -> tuple[Option, ...]:
    return (option("--out", help=help_text),
            option("--overwrite", action="store_true",
                   help="write into a non-empty --out folder (files of the same names are replaced)"))


def _load(checkpoint: Optional[str], args: argparse.Namespace) -> Loaded:
    """(path, model) of ``checkpoint`` (default: the embedded model) in the ``--dtype`` asked for;
    prints the dtype that runs and why."""
    from air_interp.checkpoints import load_model
    from air_interp.defaults import default_checkpoint
    from air_interp.hardware import apply_dtype

    path = Path(checkpoint) if checkpoint else default_checkpoint()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a slow-dtype warning: the dtype is settled and reported below
        model = load_model(path, device=args.device)
    print(f"{path.name}: forward dtype {apply_dtype(model, args.dtype)}")
    return path, model


def _same_configuration(loaded: list[Loaded]) -> None:
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


def _puzzles(args: argparse.Namespace, task: str) -> tuple[Any, Any]:
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


def _write_run_info(out: Path, args: argparse.Namespace, command: str, loaded: list[Loaded]) -> None:
    """``<out>/<command>_run.json``: the checkpoints, forward dtype, threads, CPU and numerics behind the outputs."""
    from air_interp.hardware import machine_record
    from air_interp.io import atomic_path

    info = {"command": command, "dtype_requested": args.dtype, "device": args.device, **machine_record(),
            "checkpoints": [{"path": str(path), "forward_dtype": model.cfg.forward_dtype} for path, model in loaded]}
    with atomic_path(out / f"{command}_run.json") as tmp:
        tmp.write_text(json.dumps(info, indent=1) + "\n")


def _table(table: pd.DataFrame, stem: str, formats: Sequence[str] = ("csv", "md")) -> Writer:
    """The writer of ``table`` as ``<out>/<stem>.<format>`` for each format."""
    from air_interp.output import write_table

    return lambda out: write_table(table, out / stem, formats)


def _path(text: Optional[str]) -> Optional[Path]:
    return Path(text) if text else None


def _decode(run: Run) -> Report:
    """logit-lens the z_H / z_L states of every sub-step (Figures 2-5)

    Run full rollouts and decode z_H and z_L (lm_head argmax) after every sub-step of every ACT step.
    Prints one puzzle's rollout and per-step statistics; writes the tidy table (CSV, Markdown), the
    grid figure (PNG, PDF) and an HTML viewer."""
    from .decode import decode, plot_decode, render_rollout, summary, write_viewer

    puzzle, count = run.args.puzzle, len(run.inputs)
    if not puzzle < count:
        raise AirInterpError(f"--puzzle {puzzle}: only {count} puzzles are analysed (0 to {count - 1})")
    steps = _steps(run.args.steps, run.model.cfg.halt_max_steps)
    result = decode(run.model, run.inputs, run.labels, **run.rollout)
    table = summary(result.table)
    figure = f"decode_puzzle{puzzle}"
    return Report([run.header(), render_rollout(result, puzzle, steps), table], [
        _table(result.table, "decode_table", CSV), _table(table, "decode_summary"),
        lambda out: plot_decode(result, puzzle, steps, out / figure),
        lambda out: write_viewer(result, puzzle, out / f"{figure}_viewer")])


def state_names(spellings: Optional[Sequence[str]]) -> Optional[list[str]]:
    """The command line's spelling of states (``zH``, ``zL3`` or ``z_L3``; repeated or comma-separated)
    as the model names them (``z_H``, ``z_L3``); None stays None (every state)."""
    if spellings is None:
        return None
    names = [name.strip() for spelling in spellings for name in spelling.split(",") if name.strip()]
    return [name if name.startswith("z_") or not name.startswith("z") else f"z_{name[1:]}" for name in names]


def _freeze(run: Run) -> Report:
    """hold z_H, z_L or any states at reset and count the others' changes (Figures 6-7)

    Run normal rollouts and rollouts with the --state states frozen at their reset values; count, per
    update of every other state, token changes, mask flips and content changes; report final exact
    accuracy from the output state (z_H). Several checkpoints (seeds) give mean/std/sem over runs.
    --state each freezes every state in turn and adds the freeze matrix (frozen x observed state:
    content changes over the normal rollout's, and the accuracy left)."""
    from .freeze import freeze_matrix, freeze_table, plot_freeze, plot_freeze_matrix, run_freeze

    spelled = run.args.state or [run.model.cfg.output_state.replace("_", "")]
    each = spelled == ["each"]
    frozen = [] if spelled == ["none"] or each else state_names(spelled)
    state = "+".join(spelled)
    settings = None if each else ["none"] if not frozen else ["none", frozen]
    updates, puzzles = run_freeze(run.models, run.inputs, run.labels, settings, count_from=run.args.count_from,
                                  **run.rollout)
    table = freeze_table(puzzles)
    shown = [c for c in table if c.endswith(("content_changes_mean", "content_changes_sem", "exact_mean"))]
    title = f"{'+'.join(path.stem for path, _ in run.loaded)}, {len(run.inputs)} puzzles"
    outputs = [_table(table, "freeze_table"), _table(updates, "freeze_updates", CSV),
               lambda out: plot_freeze(updates, out / f"freeze_{state}", title=title)]
    if not each:
        return Report([table[["freeze", *shown]]], outputs)
    matrix = freeze_matrix(puzzles)
    return Report([table[["freeze", *shown]], matrix], outputs + [
        _table(matrix, "freeze_matrix"), lambda out: plot_freeze_matrix(matrix, out / "freeze_matrix", title=title)])


def _check_bootstrap(args: argparse.Namespace) -> None:
    from .attention import check_bootstrap

    check_bootstrap(args.bootstrap)


def _attention(run: Run) -> Report:
    """L vs H attention contrasts per layer (Figures 8-13, attention table)

    Compare the attention of the first L and first H sub-step of chosen ACT steps, per layer: locality
    (Sudoku Δnbr, Maze Δρ), entropy Δent and mass on wrong cells Δviol, per query class, with the
    paper's row-level 95% CI and a puzzle-level bootstrap 95% CI."""
    from .attention import attention_contrasts, plot_contrasts, plot_example, summarize

    layers, example = _attention_layers(run)
    options = _attention_options(run, layers)
    rows = attention_contrasts(run.model, run.inputs, run.labels, options, **run.rollout)
    table = summarize(rows, n_boot=run.args.bootstrap)
    first, second = options.kinds
    title = f"{run.path.stem}: {first}-update vs {second}-update, {len(run.inputs)} puzzles"
    return Report([run.header("puzzles", f"{len(rows)} query rows"), table], [
        _table(table, "attention_table"), _table(rows, "attention_rows", CSV),
        lambda out: plot_contrasts(table, out / "attention_contrasts", title=title),
        lambda out: plot_example(run.model, run.inputs, run.labels, puzzle=0, layer=example, head=run.args.head,
                                 path=out / f"attention_example_layer{example}")])


def _attention_layers(run: Run) -> tuple[Optional[tuple[int]], int]:
    """The layers to measure (None: every layer) and the layer of the example heatmap (the one
    chosen, else the last), with --layer and --head checked against this model."""
    cfg, layer, head = run.model.cfg, run.args.layer, run.args.head
    n_layers = min(cfg.layers_of("L"), cfg.layers_of("H"))
    if layer is not None and not -n_layers <= layer < n_layers:
        raise AirInterpError(f"--layer {layer}: this model has {n_layers} layers (0 to {n_layers - 1}, "
                             f"or -1 for the last); the paper's models have 4")
    if not 0 <= head < cfg.n_heads:
        raise AirInterpError(f"--head {head}: this model has {cfg.n_heads} heads (0 to {cfg.n_heads - 1})")
    return (None, n_layers - 1) if layer is None else ((layer % n_layers,), layer % n_layers)


def _attention_options(run: Run, layers: Optional[tuple[int]]) -> AttentionOptions:
    from .attention import AttentionOptions

    args, steps = run.args, run.steps()
    return AttentionOptions(
        steps=tuple(steps) if steps else None, layers=layers,
        violation_timing=args.violation_timing, violation_scope=args.violation_scope,
        include_self=None if args.self_in_neighbourhood == "published" else args.self_in_neighbourhood == "yes",
        skip_sink_heads=args.skip_sink_heads, kinds=_kinds(args.kinds),
    )


def _kinds(text: str) -> tuple[str, str]:
    """``--kinds L,H`` as the pair of update kinds the attention contrasts compare."""
    kinds = tuple(kind.strip() for kind in text.split(","))
    if len(kinds) != 2:
        raise AirInterpError(f"--kinds {text!r}: name two update kinds, e.g. L,H")
    return kinds[0], kinds[1]


def _targets(args: argparse.Namespace) -> list[str]:
    """``--targets`` as a list of the linear probe's targets."""
    from .linear import TARGETS

    targets = [t.strip() for t in args.targets.split(",")]
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        raise AirInterpError(f"--targets: unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    return targets


def _linear_probe(run: Run) -> Report:
    """linear probes on z_L / z_H with held-out accuracy (beyond the paper)

    Fit a logistic-regression probe per state and ACT step from each open cell's state vector to a
    per-cell target (answer: the solution token; correct: the state's lens decode is right;
    will_change: the lens decode differs from the final answer). Held-out accuracy on other puzzles,
    with the majority-class and logit-lens baselines."""
    from .linear import collect, held_out_count, linear_probes, plot_linear_probes

    fraction_held, count = run.args.test_fraction, len(run.inputs)
    if not 0 < held_out_count(count, fraction_held) < count:
        raise AirInterpError(f"--test-fraction {fraction_held} of {count} puzzles leaves no puzzle to fit "
                             "or none to test; use more --puzzles")
    data = collect(run.model, run.inputs, run.labels, state_names(run.args.state), steps=run.steps(), **run.rollout)
    table = linear_probes(data, _targets(run.args), fraction_held, run.args.seed)
    shown = ["target", "state", "step", "test_accuracy", "majority", "lens"]
    title = f"{run.path.stem}: linear probes, held-out puzzles"
    return Report([run.header("puzzles", f"{table['test_puzzles'].iloc[0]} held out"), table[shown]], [
        _table(table, "linear_probes"), lambda out: plot_linear_probes(table, out / "linear_probes", title=title)])


def _patch(run: Run) -> Report:
    """patch z_H or z_L from another puzzle and see whose answer comes out (beyond the paper)

    For each puzzle i (target) and puzzle i+1 (source): rerun the target with z_H or z_L replaced by
    the source's at the end of one ACT step, and report on the cells where the solutions differ the
    fraction of the final z_H decode that follows the source vs the target."""
    from .patching import patch, patch_summary, plot_patching

    if len(run.inputs) < 2:
        raise AirInterpError("patching needs at least 2 puzzles")
    rows = patch(run.model, run.inputs, run.labels, states=state_names(run.args.state), steps=run.steps(),
                 **run.rollout)
    summary = patch_summary(rows)
    title = f"{run.path.stem}: patching a state from another puzzle"
    return Report([run.header("pairs (puzzle i <- puzzle i+1)"), summary], [
        _table(summary, "patching_summary"), _table(rows, "patching_rows", CSV),
        lambda out: plot_patching(summary, out / "patching", title=title)])


def _halting(run: Run) -> Report:
    """the Q head's halting gate against whether the answer is already right (beyond the paper)

    Per puzzle and ACT step: the q_halt logit (hook step.{s}.hook_q), sigmoid(q_halt) and whether the
    prediction after the step (z_H through lm_head) is exactly right. Summaries: a reliability curve
    (binned sigmoid(q_halt) against the fraction right), and per puzzle the first step from which the
    answer is right and stays right against the step where the model's own halting rule halts; how
    often halting stops on a right answer."""
    from .halting import halting, halting_outcomes, halting_rule, halting_summary, plot_halting, reliability

    bins, rule = run.args.bins, halting_rule(run.model)
    table = halting(run.model, run.inputs, run.labels, **run.rollout)
    summary, curve = halting_summary(table, bins), reliability(table, bins)
    title = f"{run.path.stem}: the halting gate ({rule})"
    return Report([run.header("puzzles", f"halting rule {rule}"), summary, curve], [
        _table(table, "halting_table", CSV), _table(summary, "halting_summary"), _table(curve, "halting_reliability"),
        _table(halting_outcomes(table), "halting_puzzles", CSV),
        lambda out: plot_halting(table, out / "halting", title=title, bins=bins)])


def _commitment(run: Run) -> Report:
    """when each cell's decoded z_H / z_L value becomes final, and its flips (beyond the paper)

    From the decode probe's grids: per puzzle, state and cell, the first sub-step from which the
    decoded value stays final to the end of the rollout, and the number of flips (changes between
    consecutive sub-steps), each state counted from its first update. Figures: the mean commit
    sub-step of every cell on the board, and the distributions per state."""
    from .commitment import commitment, commitment_summary, plot_commitment
    from .decode import decode

    result = decode(run.model, run.inputs, run.labels, **run.rollout)
    table = commitment(result)
    summary = commitment_summary(table)
    title = f"{run.path.stem}: when each cell commits"
    return Report([run.header(), summary], [
        _table(table, "commitment_table", CSV), _table(summary, "commitment_summary"),
        lambda out: plot_commitment(result, table, out / "commitment", title=title)])


def _tables(run: Run) -> Report:
    """injection-ablation and level-token tables from a directory of checkpoints

    Evaluate every checkpoint under DIRECTORY (the latest checkpoint of each training run and loose
    .safetensors files) on its test split; group by variant and task, mean ± std over seeds, the
    paper's number beside. A trained sweep (air-interp sweep) is read from its published runs' cards
    instead, at once: air-interp tables checkpoints/sweeps"""
    from .tables import (PUBLISHED, accuracy_rows, card_rows, find_checkpoints, injection_table, level_token_table,
                         published_cards)

    args, directory = run.args, Path(run.args.directory)
    if any(directory.rglob(f"{PUBLISHED}/*.json")):  # a trained sweep: its cards hold the accuracies
        rows = card_rows(published_cards(directory))
    else:
        rows = accuracy_rows(find_checkpoints(directory), _path(args.data), args.puzzles, not args.quiet, args.dtype)
    tables = {"injection_table": injection_table(rows), "level_token_table": level_token_table(rows)}
    return Report([f"{name}:\n{table.to_string(index=False)}\n" for name, table in tables.items()],
                  [_table(rows, "sweep_accuracy", CSV),
                   *(_table(table, name, TABLE_FORMATS) for name, table in tables.items())])


def _figures(args: argparse.Namespace) -> None:
    """regenerate every figure and table into figures/ (with a manifest)

    For each named model: decode grids, freeze curves and table, attention contrasts, table and
    example heatmap, linear probes, patching, the halting gate and commitment; with --sweep the
    injection, level-token and specialisation tables, and the three-roles reading of its runs of
    models with more than two states (roles_table: undecided cells per state, locality between
    every pair of update kinds, the freeze matrix). PNG + PDF figures, CSV + Markdown + LaTeX
    tables, manifest.json. Default: the embedded checkpoints."""
    from air_interp.hardware import set_threads

    from .figures import check_figures_target, regenerate

    out = check_figures_target(Path(args.out), args.overwrite)  # not a probe: the folder is written as a whole
    set_threads(args.threads)
    manifest = regenerate(out, _parse_models(args.model) or None, _path(args.sweep), args.puzzles, not args.quiet,
                          args.overwrite, args.dtype)
    print(f"wrote the figures and tables listed in {manifest}")


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


def _emergence(run: Run) -> Report:
    """the claim metrics on every checkpoint of training runs, against training step

    Run decode, freeze and attention on every saved checkpoint of one or more training runs
    (<run>/checkpoints/step_*/) and draw them against training step, runs side by side: exact
    accuracy per ACT step, cells z_L / z_H decode as undecided, content changes normal vs the other
    state frozen, attention contrasts per layer. Results are cached in <run>/emergence.csv, so a rerun
    measures only new checkpoints (watch a run while it trains) and a run whose checkpoints are gone
    still draws from its cache."""
    from .emergence import combined_outputs, emergence, write_emergence

    args = run.args
    if args.out is not None:
        combined_outputs(Path(args.out))  # no output resolves to a run's emergence.csv
    table = emergence([Path(r) for r in args.runs], args.puzzles, _path(args.data), args.batch_size, not args.quiet,
                      args.dtype, args.every)
    last = table["act_step"] == table["act_step"].max()
    shown = table[(table["metric"] == "early_undecided_cells") | (table["metric"] == "exact") & last]
    pivot = shown.pivot_table(index=["run", "train_step"], columns=["metric", "state"], values="value")
    title = f"{' vs '.join(dict.fromkeys(table['run']))}: probes along training"
    return Report([pivot.to_string(float_format=lambda v: f"{v:.3f}")],
                  [lambda out: write_emergence(table, out, title=title)])


def _emergence_files() -> Sequence[str]:
    from .emergence import COMBINED_FILES

    return COMBINED_FILES


def _state_option(verb: str) -> Option:
    return option("--state", action="append", metavar="STATE",
                  help=f"state to {verb} (zH, zL, zL3, ...; repeatable or comma-separated; default: every state)")


COMMANDS: tuple[Command, ...] = (
    probe("decode", _decode,
          option("--puzzle", type=non_negative_int, default=0,
                 help="which analysed puzzle to print and draw (default 0)"),
          option("--steps", default="0,1,last", help="ACT steps to print and draw (default 0,1,last)")),
    probe("freeze", _freeze,
          option("--state", action="append", metavar="STATE",
                  help="state to freeze: zH, zL, none, or any state of the model (zL3 in trm_hier6); repeat it or "
                      "separate by commas to freeze several at once (default zH: the output state); 'each' "
                      "freezes every state in turn and writes the freeze matrix"),
          option("--count-from", default="published", choices=("published", "reset", "first_update"),
                 help="where each state's counted sequence starts: published (z_L from its first update, z_H from "
                      "reset, as the public scripts and the paper), reset (both from reset) or first_update (both "
                      "from their first update)"),
          models="many"),
    probe("attention", _attention,
          option("--layer", type=int, help="one layer only, -1 = the last (default: every layer)"),
          option("--steps", help="ACT steps (default: the paper's 2,4,...,14,15 of 16 steps; for a model with fewer "
                                 "steps those it has and its last, e.g. 2,4,6,7 of 8)"),
          option("--violation-timing", default="after", choices=("after", "before"),
                 help="violation set from z_H after the measured H-update (published) or before it"),
          option("--violation-scope", choices=("board", "neighbourhood"),
                 help="Δviol over the whole board or the class neighbourhood (default: as published for the task: "
                      "Sudoku board, Maze N4)"),
          option("--self-in-neighbourhood", default="published", choices=("published", "yes", "no"),
                 help="count the query in its own neighbourhood (published: Sudoku yes, Maze no)"),
          option("--skip-sink-heads", action="store_true",
                 help="leave out of the head average any head with < 1e-6 of its mass on content (parked on the "
                      "prefix); published: renormalise any positive content mass, uniform if 0"),
          option("--head", type=non_negative_int, default=0, help="head of the example heatmap (default 0)"),
          option("--bootstrap", type=positive_int, default=1000, help=BOOTSTRAP_HELP),
          option("--kinds", default="L,H", help="the two update kinds compared, first minus second (default L,H)"),
          batch_size=16, check=_check_bootstrap),
    probe("linear-probe", _linear_probe,
          option("--targets", default="answer,correct,will_change", help="comma-separated probe targets"),
          option("--steps", help="ACT steps to probe (default: all)"),
          option("--test-fraction", type=fraction, default=0.25,
                 help="fraction of the puzzles held out (default 0.25)"),
          option("--seed", type=non_negative_int, default=0, help="seed of the held-out split (default 0)"),
          _state_option("probe"), puzzles=256, check=_targets),
    probe("patch", _patch, option("--steps", help="ACT steps to patch at (default: all)"), _state_option("patch")),
    probe("halting", _halting,
          option("--bins", type=positive_int, default=10, help="bins of the reliability curve (default 10)")),
    probe("commitment", _commitment),
    probe("tables", _tables,
          option("directory", help="directory holding checkpoints or training runs"),
          option("--data", help="dataset directory (default: the shipped dataset of each model's task)"),
          option("--puzzles", type=positive_int, help="evaluate on the first N test puzzles only (default all)"),
          models="none", out_help="folder for the table files (default: print only, write nothing)"),
    command("figures", _figures,
            option("--model", action="append", default=[], metavar="NAME=PATH",
                   help="a named checkpoint (repeatable; default: the embedded defaults)"),
            option("--sweep", help="a trained sweep (air-interp sweep --out DIR), or a folder of them: the "
                                   "injection, level-token and specialisation tables of its published runs (and the "
                                   "three-roles reading of its three-state runs)"),
            option("--puzzles", type=positive_int, default=64, help="test puzzles per model (default 64)"),
            option("--out", default="figures", help="output folder, written as a whole (default figures)"),
            option("--overwrite", action="store_true",
                   help="replace an existing --out folder that holds figures of ours and nothing else")),
    probe("emergence", _emergence,
          option("runs", nargs="+", help="training run directories"),
          option("--data", help="dataset directory (default: each run's own)"),
          option("--puzzles", type=positive_int, default=64, help="test puzzles per checkpoint (default 64)"),
          _batch_size(64),
          option("--every", type=positive_int, default=1,
                 help="measure only checkpoints whose step is a multiple of this, and the latest (default 1: all; a "
                      "4-layer checkpoint takes a minute or two on one CPU core)"),
          models="none", replaces=_emergence_files,
          out_help="folder for the runs' combined table and figure, emergence_runs.csv/.png/.pdf (default: print "
                   "only; each run's measurements are cached in <run>/emergence.csv either way)"),
)


def add_probe_parsers(commands: argparse._SubParsersAction) -> None:
    """Register every command of :data:`COMMANDS`."""
    for entry in COMMANDS:
        entry.register(commands)
