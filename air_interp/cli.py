"""The ``air-interp`` command: a thin layer over library functions.

Heavy imports (torch, TransformerLens) happen inside the commands, so ``--help`` is quick.
Every error a user can cause is an :class:`AirInterpError` or a usage error, printed as one line
(exit code 2) before any compute.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from .arguments import Parser
from .errors import AirInterpError


def _convert(args: argparse.Namespace) -> None:
    from .checkpoints import checkpoint_inputs, convert
    from .io import check_file_target, check_not_input

    check_not_input(args.out, checkpoint_inputs(args.official))
    check_file_target(args.out, args.overwrite)
    cfg = convert(args.official, args.out)
    print(f"wrote {args.out}: variant {cfg.variant}, task {cfg.task}, d_model {cfg.d_model}, "
          f"{cfg.n_layers} layers, forward_dtype {cfg.forward_dtype}")


def _info(args: argparse.Namespace) -> None:
    import warnings

    from .checkpoints import load_model

    with warnings.catch_warnings():  # info runs nothing, so a slow-dtype warning does not apply
        warnings.simplefilter("ignore")
        model = load_model(args.checkpoint)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.checkpoint}: {model.cfg.variant} on {model.cfg.task}, {n_params:,} parameters, "
          f"{len(model.hook_dict)} hook points")
    for key, value in model.cfg.to_dict().items():
        print(f"  {key:24s} {value}")


def build_parser() -> argparse.ArgumentParser:
    from .data.cli import add_data_parser
    from .probes.cli import add_probe_parsers
    from .train.cli import add_train_parser

    parser = Parser(
        prog="air-interp",
        description="Read, intervene on and train shared-weight recurrent Transformers (AIR, HRM) "
                    "on Sudoku and mazes.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    convert = commands.add_parser(
        "convert", help="convert a public AIR/HRM checkpoint into one self-describing .safetensors file",
        description="Convert <run>/step_<N> (beside all_config.yaml), or a run directory (its highest "
                    "step), written by the public AIR/HRM training code into our format.")
    convert.add_argument("official", help="step_<N> file or run directory of the public training code")
    convert.add_argument("out", help="output .safetensors path")
    convert.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    convert.set_defaults(func=_convert)

    info = commands.add_parser("info", help="print a checkpoint's variant, sizes and config")
    info.add_argument("checkpoint", help=".safetensors file, or a public step_<N> file / run directory")
    info.set_defaults(func=_info)

    add_probe_parsers(commands)
    add_train_parser(commands)
    add_data_parser(commands)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help, or a usage error already reported in one line
        return int(stop.code or 0)
    try:
        args.func(args)
    except AirInterpError as err:
        print(f"air-interp: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("air-interp: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
