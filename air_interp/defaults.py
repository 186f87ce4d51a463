"""Where the embedded default checkpoints and datasets live.

In a clone of the repository they are its ``checkpoints/`` and ``data/`` folders. A regular
install (``pip install .``) ships the default Sudoku model, its model card and its dataset as
package data (``air_interp/embedded``), so the main job runs from any folder; the other
defaults are only in a clone.
"""
from __future__ import annotations

from pathlib import Path

from .errors import AirInterpError

PACKAGE = Path(__file__).resolve().parent
REPO = PACKAGE.parent
IN_CLONE = (REPO / "pyproject.toml").is_file() and (REPO / "checkpoints").is_dir()
EMBEDDED = PACKAGE / "embedded"
CHECKPOINTS = REPO / "checkpoints" if IN_CLONE else EMBEDDED / "checkpoints"
DATA = REPO / "data" if IN_CLONE else EMBEDDED / "data"
DEFAULT_CHECKPOINT = CHECKPOINTS / "sudoku_Lx_H.safetensors"
# The data each task's default models were trained on (their model cards name it too).
DEFAULT_DATASETS = {
    "sudoku": DATA / "sudoku-easy34", "maze8": DATA / "maze-8-unique", "maze10": DATA / "maze-10", "maze15": DATA / "maze-15",
}
_ONLY_IN_A_CLONE = "" if IN_CLONE else " (a regular install ships the Sudoku default only; the others are in a clone)"


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
        raise AirInterpError(f"no shipped dataset for task {task!r}{_ONLY_IN_A_CLONE}; pass --data DIR")
    return path


def default_models(names: tuple[str, ...]) -> dict[str, Path]:
    """The embedded default checkpoints among ``names`` that this installation has."""
    found = {name: CHECKPOINTS / f"{name}.safetensors" for name in names}
    found = {name: path for name, path in found.items() if path.is_file()}
    if not found:
        raise AirInterpError(f"no default checkpoints in {CHECKPOINTS}; name some with --model NAME=PATH")
    return found
