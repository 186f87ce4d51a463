"""Where the embedded default checkpoints and datasets live (the repository's checkpoints/ and data/)."""
from __future__ import annotations

from pathlib import Path

from .errors import AirInterpError

REPO = Path(__file__).resolve().parent.parent
CHECKPOINTS = REPO / "checkpoints"
DATA = REPO / "data"
DEFAULT_CHECKPOINT = CHECKPOINTS / "sudoku_Lx_H.safetensors"
# The data each task's default models were trained on (their model cards name it too).
DEFAULT_DATASETS = {
    "sudoku": DATA / "sudoku-easy50", "maze8": DATA / "maze-8-unique", "maze10": DATA / "maze-10", "maze15": DATA / "maze-15",
}


def repo_relative(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (for manifests that travel)."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def default_checkpoint() -> Path:
    if not DEFAULT_CHECKPOINT.is_file():
        raise AirInterpError(f"no default checkpoint at {DEFAULT_CHECKPOINT}; pass a checkpoint path")
    return DEFAULT_CHECKPOINT


def default_dataset(task: str) -> Path:
    """The shipped dataset a default model of ``task`` was trained on."""
    path = DEFAULT_DATASETS.get(task)
    if path is None or not path.is_dir():
        raise AirInterpError(f"no shipped dataset for task {task!r}; pass --data DIR")
    return path
