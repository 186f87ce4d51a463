"""A sweep: one training run per (preset, seed), each in its own directory, resumable as a whole.

    air-interp sweep --out runs/injection --presets injection --seeds 0 1 \\
        -- --scale cpu --data data/sudoku-easy50 --steps 1000 --no-act-continue --ema 0.999

Everything after ``--`` is passed to ``air-interp train`` for every run. Run ``OUT/<preset>_seed<s>/``
logs to ``OUT/<preset>_seed<s>.log``, which starts with a line naming it a log of the sweep; a
resumed sweep appends to its logs, and a file at that path that is not one (nor beside a run of
ours) is refused before anything starts. Run the same command again after an interruption: runs that
were started resume from their latest checkpoint (and stop at once when finished), the others
start. A finished run is published into ``OUT/published/`` as a default is (train/publish.py): its
model ``<preset>_seed<s>.safetensors``, its card ``<preset>_seed<s>.json`` (preset, seed, depth,
data, steps, hours, test accuracy: what the tables read) and its log under ``logs/``. A published
run counts as finished even where its run directory is gone, so a sweep is kept (and committed)
as its published runs plus the directories of the unfinished ones. ``air-interp figures --sweep
OUT`` makes the tables of it.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from air_interp.arguments import non_negative_int, positive_int
from air_interp.config import INJECTION_PRESETS, LEVEL_TOKEN_PRESETS, variant_fields
from air_interp.errors import AirInterpError
from air_interp.runs import CONFIG_FILE


PRESET_GROUPS = {"injection": INJECTION_PRESETS, "level-token": LEVEL_TOKEN_PRESETS}
PUBLISHED = "published"
LOG_HEADER = "# air-interp sweep: the log of "  # the first line of every run's log


@dataclass(frozen=True)
class SweepRun:
    preset: str
    seed: int
    directory: Path

    @property
    def log(self) -> Path:
        return self.directory.with_suffix(".log")

    def check_log(self) -> None:
        """The run's log may be appended to: it is new or empty, or a log of ours (it starts with
        ``LOG_HEADER``, or, written before logs had that line, it lies beside its training run or
        published card). Anything else at that path is a one-line AirInterpError."""
        log = self.log
        if log.is_symlink():
            raise AirInterpError(f"{log} is a symlink; a sweep appends its runs' logs to files of its own, "
                                 "remove the link or choose another --out")
        if not log.exists():
            return
        if not log.is_file():
            raise AirInterpError(f"{log} is a folder; a sweep writes its run's log there, choose another --out")
        with log.open("rb") as handle:
            first = handle.readline()
        legacy = (self.directory / CONFIG_FILE).is_file() or self.card.is_file()
        if first and not first.startswith(LOG_HEADER.encode()) and not legacy:
            raise AirInterpError(f"{log} exists and is not a log of this sweep (its first line is not "
                                 f"'{LOG_HEADER}...' and {self.directory} holds no training run of ours); refusing "
                                 "to append to it, move it away or choose another --out")

    def open_log(self):
        """The run's log, opened for appending (its header line written first when it is new)."""
        self.check_log()
        log = open(self.log, "a")
        if log.tell() == 0:
            log.write(f"{LOG_HEADER}{self.directory.name} (air-interp train --preset {self.preset} "
                      f"--seed {self.seed})\n")
            log.flush()
        return log

    def status(self) -> str:
        """``new`` (no checkpoint yet), ``started``, ``finished`` (at its configured step count) or
        ``published`` (finished, and its model and card are in ``OUT/published/``)."""
        from .checkpoint import latest_checkpoint  # imports torch: not at parser-building time

        if self.card.is_file():
            return "published"
        checkpoint = latest_checkpoint(self.directory) if self.directory.is_dir() else None
        if checkpoint is None:
            return "new"
        total = json.loads((self.directory / CONFIG_FILE).read_text())["total_steps"]
        return "finished" if int(checkpoint.name.removeprefix("step_")) >= total else "started"

    @property
    def card(self) -> Path:
        return self.directory.parent / PUBLISHED / f"{self.directory.name}.json"

    def publish(self) -> None:
        """Publish the finished run into ``OUT/published/`` (model, card, log), once."""
        from .publish import publish

        if not self.card.is_file():
            publish(self.directory, self.directory.name, self.card.parent)

    def command(self, train_args: Sequence[str]) -> list[str]:
        resume = ["--resume"] if self.status() != "new" else []
        return [sys.executable, "-m", "air_interp.train.cli", "train", "--preset", self.preset,
                "--seed", str(self.seed), "--out", str(self.directory), *resume, *train_args, "--no-progress"]


def expand_presets(names: Sequence[str]) -> list[str]:
    """Preset names, with the groups ``injection`` (the paper's eight) and ``level-token`` expanded."""
    presets = [p for name in names for p in PRESET_GROUPS.get(name, (name,))]
    for preset in presets:
        variant_fields(preset)  # an unknown name fails here, with the list of presets
    return list(dict.fromkeys(presets))


def plan(out: Path, presets: Sequence[str], seeds: Sequence[int]) -> list[SweepRun]:
    return [SweepRun(preset, seed, Path(out) / f"{preset}_seed{seed}") for preset in expand_presets(presets)
            for seed in seeds]


def run_sweep(runs: Sequence[SweepRun], train_args: Sequence[str], jobs: int = 1, poll_s: float = 1.0
              ) -> dict[SweepRun, int]:
    """Train every run, ``jobs`` at a time, each in its own ``air-interp train`` process; returns
    each run's exit code (0 = finished)."""
    if jobs < 1:
        raise AirInterpError("--jobs must be >= 1")
    waiting = list(runs)
    running: dict[SweepRun, subprocess.Popen[bytes]] = {}
    codes: dict[SweepRun, int] = {}
    for run in [run for run in waiting if run.status() == "published"]:
        waiting.remove(run)
        codes[run] = 0
    for run in waiting:  # before any run starts
        run.check_log()
    while waiting or running:
        while waiting and len(running) < jobs:
            run = waiting.pop(0)
            run.directory.parent.mkdir(parents=True, exist_ok=True)
            with run.open_log() as log:
                running[run] = subprocess.Popen(run.command(train_args), stdout=log, stderr=subprocess.STDOUT)
            print(f"started  {run.directory.name}", flush=True)
        for run, process in list(running.items()):
            if process.poll() is not None:
                codes[run] = running.pop(run).returncode
                outcome = "finished" if codes[run] == 0 else f"FAILED (exit {codes[run]}; see {run.log})"
                try:
                    if codes[run] == 0:
                        run.publish()
                except AirInterpError as err:
                    codes[run], outcome = 2, f"FAILED to publish ({err})"
                print(f"{outcome:8s} {run.directory.name}", flush=True)
        time.sleep(poll_s if running else 0)
    return codes


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="sweep directory (one run directory per preset and seed)")
    parser.add_argument("--presets", nargs="+", default=["injection"],
                        help=f"preset names or groups ({', '.join(PRESET_GROUPS)}); default injection")
    parser.add_argument("--seeds", nargs="+", type=non_negative_int, default=[0, 1], help="seeds (default 0 1)")
    parser.add_argument("--jobs", type=positive_int, default=1, help="runs trained at a time (default 1)")
    parser.add_argument("--list", action="store_true", help="print every run and its status, train nothing")
    parser.add_argument("train_args", nargs=argparse.REMAINDER,
                        help="after --: options of air-interp train for every run (--data is required for new runs)")


def sweep_command(args: argparse.Namespace) -> None:
    """``air-interp sweep``: the runs' status with ``--list``, else train them."""
    runs = plan(Path(args.out), args.presets, args.seeds)
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    if args.list:
        for run in runs:
            print(f"{run.status():9s} {run.directory}")
        return
    if any(run.status() == "new" for run in runs) and "--data" not in train_args:
        raise AirInterpError("new runs need a dataset: pass the train options after --, e.g. -- --data DIR")
    codes = run_sweep(runs, train_args, args.jobs)
    failed = [run.directory.name for run, code in codes.items() if code != 0]
    if failed:
        raise AirInterpError(f"{len(failed)} of {len(runs)} runs failed ({', '.join(failed)}); "
                             "see their .log files, then run the same command again to resume")
    print(f"{len(runs)} runs finished in {args.out}; tables: air-interp figures --sweep {args.out}")
