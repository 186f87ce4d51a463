"""Where metrics go: a JSONL file always, TensorBoard and Weights & Biases when asked for.

Neither TensorBoard nor W&B is a dependency; asking for one that is not installed is an error
at start-up rather than a surprise hours later.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from air_interp.errors import AirInterpError

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Append-only metrics of rank 0. Each record has ``kind`` ("train" or "eval") and ``step``."""

    def __init__(self, run_dir: Path, resume_step: int, tensorboard: bool = False,
                 wandb_project: str | None = None, config: dict[str, Any] | None = None) -> None:
        self.path = run_dir / METRICS_FILE
        _truncate_after(self.path, resume_step)
        self._file = self.path.open("a")
        self._tb = _tensorboard_writer(run_dir / "tensorboard") if tensorboard else None
        self._wandb = _wandb_run(wandb_project, run_dir, config) if wandb_project else None

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        scalars = {f"{record['kind']}/{k}": v for k, v in record.items()
                   if isinstance(v, (int, float)) and k != "step"}
        if self._tb is not None:
            for name, value in scalars.items():
                self._tb.add_scalar(name, value, record["step"])
        if self._wandb is not None:
            self._wandb.log(scalars, step=record["step"])

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def _truncate_after(path: Path, step: int) -> None:
    """Drop records past ``step``: a resumed run rewrites them."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in kept))


def _tensorboard_writer(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise AirInterpError("--tensorboard needs the 'tensorboard' package (pip install tensorboard)") from None
    return SummaryWriter(str(log_dir))


def _wandb_run(project: str, run_dir: Path, config: dict[str, Any] | None):
    try:
        import wandb
    except ImportError:
        raise AirInterpError("--wandb-project needs the 'wandb' package (pip install wandb)") from None
    return wandb.init(project=project, name=run_dir.name, dir=str(run_dir), config=config, resume="allow")
