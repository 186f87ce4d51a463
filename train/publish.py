"""Publish a training run as an embedded default checkpoint, with its model card.

``python -m air_interp.train.publish RUN NAME --out checkpoints`` writes, into the folder ``--out``:

- ``NAME.safetensors``: the model of the run's latest checkpoint (the EMA weights when the run kept an EMA);
- ``NAME.json``: the model card: the dataset, the run's resolved config, exact and cell accuracy on
  the whole test split and on its first ``--sample`` puzzles (what the tests re-check), the run's
  evaluation history, and ``training``: depth, width, data, steps and training time, with the
  same for the run it was fine-tuned from (``--init-from``) when that run is at hand;
- ``logs/NAME/config.json`` and ``logs/NAME/metrics.jsonl``: the run's config and training log up to
  that checkpoint (a run may be published while it goes on), and ``logs/NAME/emergence.csv`` when the
  run has one (``air-interp emergence``), so ``air-interp figures`` draws the default's emergence curves.

Files of an earlier publication under the same name are replaced only with ``--overwrite``.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from air_interp.checkpoints import load_model, save_model
from air_interp.data import load_dataset
from air_interp.arguments import Parser, positive_int
from air_interp.defaults import REPO
from air_interp.errors import AirInterpError
from air_interp.evaluate import evaluate
from air_interp.hardware import machine_record
from air_interp.io import atomic_path, check_file_target
from air_interp.runs import CHECKPOINTS, CONFIG_FILE, EMERGENCE_FILE, init_checkpoint

from .checkpoint import latest_checkpoint

SAMPLE = 200


def latest_step(run: Path) -> int:
    checkpoint = latest_checkpoint(run)
    if checkpoint is None:
        raise AirInterpError(f"{run}: the run has no checkpoint yet")
    return int(checkpoint.name.removeprefix("step_"))


def history(run: Path, step: int) -> list[dict[str, Any]]:
    """The run's log up to ``step`` (a run still going has logged past its latest checkpoint)."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, filter(str.strip, lines)) if record["step"] <= step]


def training_seconds(records: Sequence[dict[str, Any]]) -> float:
    """Wall-clock seconds of training (evaluations and checkpoints included) from the log's step
    rates: each train record covers the steps since the previous one at its ``steps_per_s``. A
    resumed run re-logs the steps after its checkpoint; the later record of a step counts."""
    by_step = {record["step"]: record for record in records if record["kind"] == "train"}
    seconds, previous = 0.0, 0
    for step in sorted(by_step):
        seconds += (step - previous) / by_step[step]["steps_per_s"]
        previous = step
    return seconds


def training_summary(run: Path, step: int) -> dict[str, Any]:
    """What a reader of a model card asks first: how deep, trained on what, how long."""
    config = json.loads((run / CONFIG_FILE).read_text())
    summary: dict[str, Any] = {
        "n_layers": config["model"]["n_layers"], "d_model": config["model"]["d_model"],
        "data": config["train"]["data"], "steps": step, "dtype": config["model"]["forward_dtype"],
        "threads": config["train"]["threads"], "hours": round(training_seconds(history(run, step)) / 3600, 2),
    }
    source = config["train"].get("init_from")
    parent: dict[str, Any] = {}
    start = init_checkpoint(run)
    if start is not None and start.parent.parent.name == CHECKPOINTS:  # a checkpoint of one of our runs
        parent = training_summary(start.parent.parent.parent, int(start.parent.name.removeprefix("step_")))
    elif start is not None and start.with_suffix(".json").is_file():  # a published model with its card
        parent = json.loads(start.with_suffix(".json").read_text()).get("training", {})
    if source:
        summary["init_from"] = {"path": source, "sha256": config.get("init_from_sha256"), **parent}
    summary["total_steps"] = step + parent.get("total_steps", 0)
    summary["total_hours"] = round(summary["hours"] + parent.get("total_hours", 0), 2)
    return summary


def model_card(run: Path, name: str, sample: int = SAMPLE, dtype: str = "float32") -> dict[str, Any]:
    """The card of the run's latest checkpoint: the run's own evaluation of it on the whole test
    split and a fresh one, in forward dtype ``dtype``, on the first ``sample`` test puzzles."""
    config = json.loads((run / CONFIG_FILE).read_text())
    step = latest_step(run)
    evaluations = [h for h in history(run, step) if h["kind"] == "eval"]
    if not evaluations or evaluations[-1]["step"] != step:
        raise AirInterpError(f"{run}: the run has no evaluation at its latest checkpoint (step {step}); "
                             "resume it to a step that evaluates (--eval-every)")
    data = Path(config["train"]["data"])
    model = load_model(run, dtype=dtype)
    split = load_dataset(data if data.is_absolute() else REPO / data).split("test")
    head = evaluate(model, split.take(np.arange(min(sample, len(split)))))
    return {
        "name": name, "variant": model.cfg.variant, "task": model.cfg.task, "dataset": config["train"]["data"],
        "seed": config["train"]["seed"], "step": step, "training": training_summary(run, step), "test": {k: v for k, v in evaluations[-1].items() if k not in ("kind", "step")},
        "sample": {"puzzles": head["count"], "forward_dtype": dtype, "machine": machine_record(),
                   **{k: head[k] for k in ("exact_accuracy", "accuracy", "halt_step", "halted_exact_accuracy")}},
        "evaluations": [{k: h[k] for k in ("step", "exact_accuracy", "accuracy", "exact_by_step")}
                        for h in evaluations],
        "run_config": config,
    }


def published_files(out: Path, name: str) -> dict[str, Path]:
    """The files a publication of ``name`` into ``out`` writes."""
    return {"model": out / f"{name}.safetensors", "card": out / f"{name}.json",
            "config": out / "logs" / name / CONFIG_FILE, "log": out / "logs" / name / "metrics.jsonl",
            "emergence": out / "logs" / name / EMERGENCE_FILE}


def publish(run: Path, name: str, out: Path, sample: int = SAMPLE, overwrite: bool = False,
            dtype: str = "float32") -> dict[str, Any]:
    """Copy the run's latest model (with forward dtype ``dtype``), card, config and log into the
    folder ``out``; returns the card."""
    run = Path(run)
    files = {kind: check_file_target(path, overwrite) for kind, path in published_files(Path(out), name).items()}
    if not (run / CONFIG_FILE).is_file():
        raise AirInterpError(f"{run}: not a training run directory (no {CONFIG_FILE})")
    card = model_card(run, name, sample, dtype)
    save_model(load_model(run, dtype=dtype), files["model"])
    with atomic_path(files["config"]) as tmp:
        shutil.copyfile(run / CONFIG_FILE, tmp)
    with atomic_path(files["log"]) as tmp:
        tmp.write_text("".join(json.dumps(record) + "\n" for record in history(run, card["step"])))
    with atomic_path(files["card"]) as tmp:
        tmp.write_text(json.dumps(card, indent=1) + "\n")
    if (run / EMERGENCE_FILE).is_file():
        with atomic_path(files["emergence"]) as tmp:
            shutil.copyfile(run / EMERGENCE_FILE, tmp)
    return card


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = Parser(prog="python -m air_interp.train.publish", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="training run directory")
    parser.add_argument("name", help="name of the default, e.g. sudoku_Lx_H")
    parser.add_argument("--out", type=Path, required=True, help="folder to publish into, e.g. checkpoints")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier publication of NAME there")
    parser.add_argument("--sample", type=positive_int, default=SAMPLE,
                        help=f"test puzzles the tests re-check (default {SAMPLE})")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="forward dtype the published model carries (default float32, whatever the run "
                             "trained in: an fp32 model evaluates alike on every CPU, and `--dtype auto` "
                             "still runs it in bf16 where that is fast)")
    args = parser.parse_args(argv)
    try:
        card = publish(args.run, args.name, args.out, args.sample, args.overwrite, args.dtype)
    except AirInterpError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    test = card["test"]
    training = card["training"]
    print(f"{args.name}: {training['n_layers']} layers, {training['total_steps']} steps, {training['total_hours']} h; "
          f"exact {test['exact_accuracy']:.3f}, cell {test['accuracy']:.3f} on {test['count']} test puzzles; "
          f"by ACT step {' '.join(f'{v:.2f}' for v in test['exact_by_step'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
