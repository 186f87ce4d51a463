"""Shared pieces of the training tests: a tiny synthetic task and a tiny recipe."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from air_interp.train.config import TrainConfig

from air_interp.data.dataset import Dataset, Split, make_manifest, save_dataset
from air_interp.tasks import get_task

TINY_MODEL = dict(d_model=32, n_heads=2, n_layers=1, halt_max_steps=2)


def corridor(rng: np.random.Generator, side: int = 4) -> np.ndarray:
    """A random corridor maze: walls everywhere but a simple path from S to G (at least 3 cells) that
    never touches itself, so it is the one shortest path; as tokens."""
    from air_interp.tasks.maze import GOAL, OPEN, START, WALL

    def neighbours(cell: int) -> list[int]:
        row, col = divmod(cell, side)
        return [r * side + c for r, c in ((row - 1, col), (row, col + 1), (row + 1, col), (row, col - 1))
                if 0 <= r < side and 0 <= c < side]

    while True:
        path = [int(rng.integers(side * side))]
        length = int(rng.integers(3, 2 * side + 1))
        while len(path) < length:
            free = [n for n in neighbours(path[-1])
                    if n not in path and not any(m in path[:-1] for m in neighbours(n))]
            if not free:
                break
            path.append(int(rng.choice(free)))
        if len(path) >= 3:
            grid = np.full(side * side, WALL, dtype=np.uint8)
            grid[path] = OPEN
            grid[path[0]], grid[path[-1]] = START, GOAL
            return grid


def shift_task(path: Path, n_train: int = 64, n_test: int = 32, seed: int = 0) -> Path:
    """A 4x4 maze dataset of distinct corridors (:func:`corridor`), a valid maze task whose label
    (the corridor's open cells marked 'o') is a per-cell relabelling of the input: learnable in seconds."""
    from air_interp.tasks.maze import OPEN, PATH

    task = get_task("maze4")
    rng = np.random.default_rng(seed)
    seen: set[bytes] = set()
    mazes = []
    while len(mazes) < n_train + n_test:
        grid = corridor(rng)
        if grid.tobytes() not in seen:
            seen.add(grid.tobytes())
            mazes.append(grid)

    def split(part: list[np.ndarray], offset: int) -> Split:
        labels = [np.where(grid == OPEN, PATH, grid).astype(np.uint8) for grid in part]
        return Split.from_rows(part, labels, [0.0] * len(part), list(range(offset, offset + len(part))),
                               ["synthetic"] * len(part), task.seq_len)

    train, test = split(mazes[:n_train], 0), split(mazes[n_train:], n_train)
    return save_dataset(Dataset(task, train, test, make_manifest(task, train, test, {"kind": "synthetic"})), path)


def tiny_recipe(data: Path, **overrides) -> TrainConfig:
    """fp32 whatever the machine (``auto`` would pick bf16 on an AMX CPU): these tests check the
    training logic to fp32 rounding. Not compiled: compiling takes longer than these runs."""
    fields = dict(data=str(data), steps=6, global_batch_size=8, lr=3e-3, lr_warmup_steps=2, weight_decay=0.1,
                  puzzle_emb_lr=1e-2, augmentations=0, log_every=2, eval_every=1000, threads=1, dtype="float32",
                  compile=False, model=dict(TINY_MODEL))
    fields.update(overrides)
    return TrainConfig.for_scale("cpu", **fields)


def ddp_worker(rank: int, world_size: int, port: int, cfg: TrainConfig, run_dir: str) -> None:
    """One process of a gloo data-parallel run, as torchrun would start it."""
    import os

    from air_interp.train.loop import train

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    train(cfg, run_dir, progress=False)
