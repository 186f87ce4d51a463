"""Command-line arguments checked at the boundary: argparse types and a parser whose errors are one line.

Every value a user types is checked here, before a model is loaded or a rollout runs; a bad
one ends the command with one line naming it and exit code 2, like every other user error.
Nothing here imports torch unless a ``--device`` is given, so ``--help`` stays quick.
"""
from __future__ import annotations

import argparse
from typing import NoReturn

from .hardware import DTYPE_CHOICES

DEVICE_HELP = "torch device: cpu, cuda, cuda:N or mps (default cpu)"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that reports a usage error in one line (``prog: error: ...``), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    """An integer >= 1 (a count of puzzles, a batch size, resamples, ...)."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (an index, a number of augmentations, ...)."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def fraction(text: str) -> float:
    """A number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def device(text: str) -> str:
    """A torch device this machine has: ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    import torch

    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device (use cpu, cuda, cuda:N or mps)") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(f"{text}: no CUDA device is available on this machine")
        if parsed.index is not None and parsed.index >= count:
            raise argparse.ArgumentTypeError(f"{text}: this machine has {count} CUDA device(s)")
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError(f"{text}: MPS is not available on this machine")
    elif parsed.type != "cpu":
        raise argparse.ArgumentTypeError(f"{text}: only cpu, cuda and mps devices are supported")
    return text


def run_device(text: str) -> str:
    """``auto`` (CUDA when available, else CPU) or a :func:`device`."""
    return text if text == "auto" else device(text)


def add_compute_options(parser: argparse.ArgumentParser) -> None:
    """``--dtype`` and ``--threads``, shared by every command that runs a model."""
    parser.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES,
                        help="forward dtype (default auto: bfloat16 on a CPU with AMX or AVX512-BF16, float32 on "
                             "other CPUs, the checkpoint's own on CUDA)")
    parser.add_argument("--threads", type=positive_int,
                        help="CPU threads (default: OMP_NUM_THREADS if set, else half the cores: the machine is shared)")
