"""``air-interp train`` and ``air-interp eval``.

Every field of :class:`TrainConfig` is an option (``--lr``, ``--global-batch-size``, ...), and so
is every size of the model (``--d-model``, ``--halt-max-steps``, ...); options left out keep the
scale's value. Heavy imports happen inside the commands so ``--help`` stays quick.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from air_interp.arguments import Parser, add_compute_options, non_negative_int, positive_int, run_device
from air_interp.config import PRESETS, AIRConfig, variant_fields
from air_interp.errors import AirInterpError

from .config import LENGTH_FIELDS, RECIPE_FIELDS, SCALES, TrainConfig

# TrainConfig fields with their own option (or none); the rest are generated.
_HANDLED = ("variant", "data", "scale", "model", "steps", "epochs", "seed")
# AIRConfig fields a user may override (the variant and the task fix the others).
MODEL_OPTIONS = ("d_model", "n_heads", "n_layers", "H_layers", "expansion", "pos_encodings", "rope_theta",
                 "rms_norm_eps", "puzzle_emb_ndim", "H_cycles", "L_cycles", "halt_max_steps", "halt_exploration_prob")
_MODEL_DEFAULTS = {f.name: f.default for f in dataclasses.fields(AIRConfig)}
_ALIASES = {"global_batch_size": ("--batch-size",)}
_HELP = {
    "augmentations": "random symmetries added per training puzzle (default: 1000 for Sudoku, 0 for mazes)",
    "global_batch_size": "examples per optimiser step over all processes",
    "lr_schedule": "after warm-up: constant (the paper) or cosine down to lr * lr_min_ratio",
    "no_act_continue": "TRM's halting: q_halt > 0, no Q-continue target (saves one segment per step); "
                       "--act-continue: the paper's; default: the variant's (TRM's for trm*); "
                       "stored in the model, so evaluation uses it too",
    "ema": "EMA decay of the weights used for evaluation and checkpoints (e.g. 0.999; 0 = off)",
    "eval_interval": "epochs between evaluations (the paper: 2000)",
    "eval_every": "steps between evaluations (overrides --eval-interval)",
    "checkpoint_every": "steps between checkpoints (default: at every evaluation)",
    "keep": "checkpoints kept (the newest)",
    "keep_models_every": "also keep the model (weights only, no optimiser state) of every checkpoint whose step is "
                         "a multiple of this, for probes along training (air-interp emergence)",
    "init_from": "start from the weights of this checkpoint or run (fine-tuning: fresh optimiser, EMA and step "
                 "count); its variant and sizes must match this run's",
    "dtype": "forward dtype: auto = bfloat16 on CUDA and on a CPU with AMX or AVX512-BF16, float32 on other CPUs; "
             "the run config records the dtype it chose, and --resume keeps it",
    "compile": "torch.compile the ACT step (default: on a CPU, where steps were 1.4-1.7x as fast; it needs a "
               "C++ compiler, else it warns and runs eagerly; off on CUDA)",
    "threads": "CPU threads (default: OMP_NUM_THREADS if set, else half the cores: the machine is shared)",
    "tensorboard": "also log to TensorBoard (needs the tensorboard package)",
    "wandb_project": "also log to Weights & Biases (needs the wandb package)",
}


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_field(group: argparse._ArgumentGroup, name: str, hint: Any, default: Any) -> None:
    """An option for a dataclass field, typed from its annotation; absent unless given."""
    kind = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
    help_text = _HELP.get(name, f"(default: {default})")
    flags = [_option(name), *_ALIASES.get(name, ())]
    if kind is bool and type(None) in typing.get_args(hint) and name.startswith("no_"):  # --no-x / --x
        group.add_argument(*flags, dest=name, action="store_true", default=argparse.SUPPRESS, help=help_text)
        group.add_argument(_option(name[3:]), dest=name, action="store_false", default=argparse.SUPPRESS,
                           help=f"the opposite of {flags[0]}")
    elif kind is bool and type(None) in typing.get_args(hint):  # unset means "decide": --x / --no-x
        group.add_argument(*flags, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
    elif kind is bool:
        group.add_argument(*flags, action="store_true", default=argparse.SUPPRESS, help=help_text)
    elif typing.get_origin(hint) is typing.Literal:
        group.add_argument(*flags, choices=typing.get_args(hint), default=argparse.SUPPRESS, help=help_text)
    else:
        group.add_argument(*flags, type=kind, default=argparse.SUPPRESS, metavar=name.upper(), help=help_text)


def _add_train(commands: Any) -> None:
    parser = commands.add_parser(
        "train", help="train a model of the AIR family (or HRM) on a dataset directory",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a model with the AIR paper's recipe (docs/model.md, docs/training.md) on CPU or GPUs.\n\n"
                    f"presets (--preset): {', '.join(PRESETS)}, or any L<n>x_H<m>x name\n"
                    f"scales (--scale): paper (d=512, 4 layers, batch 768, lr 1e-4, 20k epochs), "
                    "cpu (d=128, 2 layers, batch 64, lr 1e-3, 250 epochs: a 2-core CPU)\n\n"
                    "Multi-GPU: torchrun --nproc_per_node=N -m air_interp.train.cli train ... "
                    "(gloo on CPU, NCCL on GPU).")
    parser.add_argument("--preset", metavar="NAME", help="model variant (default Lx_H, 'AIR')")
    parser.add_argument("--data", help="dataset directory (air-interp data ...); on --resume the run's own "
                                       "(it may be repeated, not changed)")
    parser.add_argument("--out", required=True, help="run directory (config, metrics, checkpoints)")
    parser.add_argument("--scale", choices=SCALES, help="sizes and recipe (default paper)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=argparse.SUPPRESS, help="optimiser steps")
    length.add_argument("--epochs", type=int, default=argparse.SUPPRESS,
                        help="epochs (one example of each training puzzle per epoch)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    parser.add_argument("--seed", type=non_negative_int, default=argparse.SUPPRESS,
                        help="seed of everything (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    hints = typing.get_type_hints(TrainConfig)
    recipe = parser.add_argument_group("recipe and run options")
    for field in dataclasses.fields(TrainConfig):
        if field.name not in _HANDLED:
            _add_field(recipe, field.name, hints[field.name], field.default)
    model = parser.add_argument_group("model sizes (defaults: the scale's)")
    model_hints = typing.get_type_hints(AIRConfig)
    paper = AIRConfig()
    for name in MODEL_OPTIONS:
        _add_field(model, name, model_hints[name], f"{getattr(paper, name)} at the paper scale")
    parser.set_defaults(func=_run_train)


def _config_from_args(args: argparse.Namespace) -> TrainConfig:
    from .loop import load_run_config

    given = vars(args)
    recipe = {f.name: given[f.name] for f in dataclasses.fields(TrainConfig)
              if f.name not in ("variant", "data", "scale", "model") and f.name in given}
    model = {name: given[name] for name in MODEL_OPTIONS if name in given}
    if args.resume:
        return _resumed_config(load_run_config(args.out), args, recipe, model)
    if "epochs" in given:
        recipe["steps"] = None
    if args.data is None:
        raise AirInterpError("--data is required (a dataset directory)")
    variant = args.preset or "Lx_H"
    variant_fields(variant)  # an unknown name fails here, with the list of presets
    return TrainConfig.for_scale(args.scale or "paper", variant=variant, data=args.data, model=model, **recipe)


def _resumed_config(stored: TrainConfig, args: argparse.Namespace, recipe: dict[str, Any],
                    model: dict[str, Any]) -> TrainConfig:
    """The stored config with the run options given (:data:`~.config.RUN_OPTIONS`) and maybe a
    longer length; the variant, scale, model sizes and recipe may be repeated but not changed."""
    if args.data is not None:
        recipe = dict(recipe, data=args.data)
    changed = _model_changes(stored, args, model) + _recipe_changes(stored, recipe) + _length_changes(stored, recipe)
    if changed:
        raise AirInterpError(f"--resume continues the stored run; it cannot change {'; '.join(changed)}")
    return stored.replace(**{name: value for name, value in recipe.items() if name not in RECIPE_FIELDS})


def _model_changes(stored: TrainConfig, args: argparse.Namespace, model: dict[str, Any]) -> list[str]:
    sizes = dict(_MODEL_DEFAULTS, **stored.model_sizes())
    changed = [f"{name} (stored {sizes[name]}, given {value})" for name, value in model.items() if sizes[name] != value]
    named = (("preset", args.preset, stored.variant), ("scale", args.scale, stored.scale))
    return changed + [f"--{name} (stored {kept}, given {value})" for name, value, kept in named
                      if value is not None and value != kept]


def _recipe_changes(stored: TrainConfig, recipe: dict[str, Any]) -> list[str]:
    return [f"{_option(name)} (stored {getattr(stored, name)!r}, given {value!r})" for name, value in recipe.items()
            if name in RECIPE_FIELDS and not _repeats(name, getattr(stored, name), value)]


def _repeats(name: str, stored: Any, given: Any) -> bool:
    """``given`` on --resume names the stored value: the same value, the same dataset folder however
    it is spelled, or the dtype ``auto`` (the run recorded what auto chose)."""
    if name == "data":
        return given == stored or Path(given).resolve() == Path(stored).resolve()
    return given == stored or (name == "dtype" and given == "auto")


def _length_changes(stored: TrainConfig, recipe: dict[str, Any]) -> list[str]:
    """A resumed run may be made longer in the unit it counts its length in (steps or epochs), not shorter."""
    unit = "steps" if stored.steps is not None else "epochs"
    return [f"{_option(name)} (stored {_option(unit)} {getattr(stored, unit)}, given {_option(name)} {value}; "
            f"a resumed run can only be made longer, in {_option(unit)})"
            for name, value in recipe.items()
            if name in LENGTH_FIELDS and (name != unit or value < getattr(stored, unit))]


def _run_train(args: argparse.Namespace) -> None:
    from .loop import train

    cfg = _config_from_args(args)
    results = train(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    if results:
        print(f"{args.out}: exact accuracy {results['exact_accuracy']:.4f}, cell accuracy "
              f"{results['accuracy']:.4f} on {results['count']} test puzzles")


def _add_eval(commands: Any) -> None:
    parser = commands.add_parser(
        "eval", help="exact and cell accuracy of a checkpoint on a test split (halt_max_steps segments)",
        description="Evaluate a checkpoint as the paper does: every puzzle runs halt_max_steps ACT segments; "
                    "reports exact accuracy, cell accuracy, accuracy after each segment and Q-halting statistics "
                    "under the halting rule the model was trained with (stored in the checkpoint).")
    parser.add_argument("checkpoint", help="run directory (its latest checkpoint), checkpoint directory, "
                                           ".safetensors file or a public step_<N> file")
    parser.add_argument("--data", required=True, help="dataset directory")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--batch-size", type=positive_int, default=256, help="puzzles per batch (default 256)")
    parser.add_argument("--device", type=run_device, default="auto",
                        help="auto (CUDA when available, else CPU), cpu, cuda, cuda:N or mps (default auto)")
    add_compute_options(parser)
    parser.add_argument("--json", type=Path, help="also write the metrics to this JSON file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    parser.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> None:
    import torch

    from air_interp.checkpoints import checkpoint_inputs, load_model
    from air_interp.data import load_dataset
    from air_interp.hardware import apply_dtype, machine_record, set_threads
    from air_interp.io import atomic_path, check_file_target, check_not_input

    from air_interp.evaluate import evaluate

    if args.json:
        check_not_input(args.json, [*checkpoint_inputs(args.checkpoint), args.data])
        check_file_target(args.json, args.overwrite)
    set_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a slow-dtype warning: the dtype is settled and reported below
        model = load_model(args.checkpoint, device=device)
    data = load_dataset(args.data)
    if (data.task.seq_len, data.task.vocab_size) != (model.cfg.seq_len, model.cfg.vocab_size):
        raise AirInterpError(f"the checkpoint is a {model.cfg.task} model, {args.data} holds {data.task.name} puzzles")
    split = data.split(args.split)
    if len(split) == 0:
        raise AirInterpError(f"{args.data}: the {args.split} split holds no puzzles")
    print(f"forward dtype {apply_dtype(model, args.dtype)}")
    results = evaluate(model, split, args.batch_size)
    results["forward_dtype"] = model.cfg.forward_dtype
    results["machine"] = machine_record()
    _print_eval(args.checkpoint, args.split, results)
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(results, indent=2) + "\n")


def _print_eval(checkpoint: str, split: str, results: dict[str, Any]) -> None:
    print(f"{checkpoint} on {results['count']} {split} puzzles")
    for name in ("exact_accuracy", "accuracy", "q_halt_accuracy", "halt_step", "halted_exact_accuracy"):
        print(f"  {name:24s} {results[name]:.4f}")
    print("  exact accuracy by segment " + " ".join(f"{v:.3f}" for v in results["exact_by_step"]))


def _add_sweep(commands: Any) -> None:
    from .sweep import PRESET_GROUPS, add_sweep_arguments, sweep_command

    parser = commands.add_parser(
        "sweep", help="train one run per preset and seed (the injection or level-token sweep), resumable",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train one run per (preset, seed) in OUT/<preset>_seed<s>/, JOBS at a time, each an "
                    "air-interp train process with the options after --. Run the same command again to "
                    "resume an interrupted sweep.\n\n"
                    f"preset groups: {', '.join(f'{k} ({len(v)} presets)' for k, v in PRESET_GROUPS.items())}\n\n"
                    "example:\n  air-interp sweep --out runs/injection --presets injection --seeds 0 1 --jobs 2 "
                    "-- --scale cpu --data data/sudoku-easy50 --steps 1000 --threads 1\n"
                    "  air-interp figures --sweep runs/injection     # the injection table")
    add_sweep_arguments(parser)
    parser.set_defaults(func=sweep_command)


def add_train_parser(subparsers: Any) -> None:
    """Register ``train``, ``eval`` and ``sweep`` on an argparse sub-parser collection."""
    _add_train(subparsers)
    _add_eval(subparsers)
    _add_sweep(subparsers)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m air_interp.train.cli train|eval ...``: the two commands on their own (also
    usable under ``torchrun`` before they are wired into ``air-interp``)."""
    parser = Parser(prog="air-interp")
    add_train_parser(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except AirInterpError as err:
        print(f"air-interp: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
