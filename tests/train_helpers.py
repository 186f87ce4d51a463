"""Shared pieces of the training tests: a tiny synthetic task and a tiny recipe."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from air_interp.train.config import TrainConfig

from air_interp.data.dataset import Dataset, Split, make_manifest, save_dataset
from air_interp.tasks import get_task

TINY_MODEL = dict(d_model=32, n_heads=2, n_layers=1, halt_max_steps=2)


def shift_task(path: Path, n_train: int = 64, n_test: int = 32, seed: int = 0) -> Path:
    """A 4x4 'maze' dataset whose label is a fixed relabelling of the input: learnable in seconds."""
    task = get_task("maze4")
    rng = np.random.default_rng(seed)

    def split(n: int, offset: int) -> Split:
        inputs = rng.integers(1, task.vocab_size, size=(n, task.seq_len))
        labels = inputs % (task.vocab_size - 1) + 1
        return Split.from_rows(list(inputs), list(labels), [0.0] * n, list(range(offset, offset + n)),
                               ["synthetic"] * n, task.seq_len)

    train, test = split(n_train, 0), split(n_test, n_train)
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
