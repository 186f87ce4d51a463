"""The trainer: the paper's recipe (docs/model.md) on one device or data-parallel, resumable exactly.

One training step is one ACT segment of every row of the carry; rows that halted are refilled
from the step's batch. Data parallelism follows the public code: each of the ``world_size``
processes (launched by ``torchrun``, gloo on CPU, NCCL on GPU) keeps its own carry over its
slice of the global batch, losses are summed and divided by the global batch size, and the
gradients are summed over processes with one all-reduce, so every process applies the same
update. A checkpoint holds everything that determines the rest of the run (weights, optimiser
moments, EMA, step, every process's ACT carry and RNG state); the data order is a function of the
step, so a resumed run ends bit-identical to an uninterrupted one on the same hardware.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from air_interp.checkpoints import checkpoint_file, load_model, save_model
from air_interp.data.dataset import augment, load_dataset
from air_interp.errors import AirInterpError
from air_interp.evaluate import evaluate, make_batch
from air_interp.hardware import set_threads
from air_interp.io import atomic_path, check_writable_location, sha256
from air_interp.model import ACTCarry, HookedAIR
from air_interp.runs import CONFIG_FILE, is_run, run_config

from .compiled import compiled_act_step
from .checkpoint import latest_checkpoint, read_state, write_checkpoint
from .config import TrainConfig
from .data import GroupSampler
from .loss import PER_EXAMPLE_METRICS, act_loss
from .observe import MetricsLog
from .optim import EMA, build_optimizers, lr_at

# What the weights mean: an --init-from checkpoint must agree on these (dtype, halting and
# exploration may differ).
ARCHITECTURE_FIELDS = ("task", "vocab_size", "seq_len", "arch", "n_L", "n_H", "operator", "level_token", "d_model",
                       "n_heads", "n_layers", "H_layers", "expansion", "pos_encodings", "rope_theta", "rms_norm_eps",
                       "puzzle_emb_ndim", "num_puzzle_identifiers", "H_cycles", "L_cycles")


@dataclass(frozen=True)
class Distributed:
    """This process's place in a (possibly single-process) data-parallel run."""

    rank: int
    world_size: int
    device: torch.device
    owns_group: bool  # this trainer initialised the process group (and destroys it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> Distributed:
    """Read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) and join the process group."""
    if device == "cuda" and not torch.cuda.is_available():
        raise AirInterpError("--device cuda: no CUDA device is available")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch_device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(torch_device)
    owns = world_size > 1 and not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Distributed(rank, world_size, torch_device, owns)


def _carry_state(carry: ACTCarry | None) -> dict[str, Any] | None:
    """The carry as a training state file holds it: each state by name (z_H, z_L, ...), steps, halted, data."""
    if carry is None:
        return None
    tensors = {name: value.cpu() for name, value in (*carry.states.items(), ("steps", carry.steps),
                                                     ("halted", carry.halted))}
    return dict(tensors, data={k: v.cpu() for k, v in carry.data.items()})


def _carry_from_state(state: dict[str, Any] | None, states: tuple[str, ...], device: torch.device) -> ACTCarry | None:
    if state is None:
        return None
    return ACTCarry({name: state[name].to(device) for name in states}, state["steps"].to(device),
                    state["halted"].to(device), {k: v.to(device) for k, v in state["data"].items()})


class Trainer:
    """Builds everything a run needs from a :class:`TrainConfig`; :meth:`run` trains to the end."""

    def __init__(self, cfg: TrainConfig, run_dir: str | Path, resume: bool = False, progress: bool = True) -> None:
        self.run_dir, self.progress = Path(run_dir), progress
        set_threads(cfg.threads)
        checkpoint = self._check_run_dir(resume)
        self.dist = setup_distributed(cfg.device)
        # The run config records what ``auto`` chose here (dtype, compilation), so a resumed run keeps it.
        device_type = self.dist.device.type
        self.cfg = cfg = cfg.replace(dtype=cfg.forward_dtype(device_type), compile=cfg.compile_on(device_type))
        if cfg.global_batch_size % self.dist.world_size:
            raise AirInterpError(f"global_batch_size {cfg.global_batch_size} is not a multiple of the "
                                 f"{self.dist.world_size} processes")
        self.local_batch_size = cfg.global_batch_size // self.dist.world_size
        self._load_data()
        self.model_cfg = cfg.model_config(self.task.name, self.dist.device.type)
        torch.manual_seed(cfg.seed)
        self.model = HookedAIR(self.model_cfg).to(self.dist.device).train()
        self.init_sha256 = self._recorded_init() if checkpoint is not None else None
        if cfg.init_from and checkpoint is None:
            self._initialise_from(Path(cfg.init_from))
        self._broadcast_parameters()
        torch.manual_seed(cfg.seed + self.dist.rank)  # the ACT exploration stream of this process
        self.sign_sgd, self.adam = build_optimizers(self.model, cfg)
        self.ema = EMA(self.model, cfg.ema) if cfg.ema else None
        self.sampler = GroupSampler(self.train_split.groups, cfg.global_batch_size, cfg.seed)
        self.total_steps = cfg.total_steps(self.sampler.n_groups)
        self.eval_every = cfg.eval_period(self.sampler.n_groups)
        self.checkpoint_every = cfg.checkpoint_every or self.eval_every
        self.step, self.lr = 0, 0.0
        self.carry: ACTCarry | None = None
        self._act_step = compiled_act_step(self.model) if cfg.compile else self.model.act_step
        if checkpoint is not None:
            self._restore(checkpoint)
        self.log: MetricsLog | None = None
        if self.dist.is_main:
            self._write_config()
            self.log = MetricsLog(self.run_dir, self.step, cfg.tensorboard, cfg.wandb_project, self.resolved_config())

    # ---- set-up ---------------------------------------------------------------------------
    def _check_run_dir(self, resume: bool) -> Path | None:
        """The checkpoint to resume from; a folder that is neither new, empty nor a run of ours is refused."""
        check_writable_location(self.run_dir / CONFIG_FILE)
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise AirInterpError(f"{self.run_dir} is a file; --out takes a run folder")
        if self.run_dir.is_dir() and any(self.run_dir.iterdir()) and not is_run(self.run_dir):
            raise AirInterpError(f"{self.run_dir} is not empty and holds no training run of ours; choose another --out")
        latest = latest_checkpoint(self.run_dir)
        if resume and latest is None:
            raise AirInterpError(f"--resume: {self.run_dir} has no checkpoint to resume from")
        if not resume and latest is not None:
            raise AirInterpError(f"{self.run_dir} already holds a run; pass --resume to continue it "
                                 "or choose another --out")
        return latest

    def _load_data(self) -> None:
        data = load_dataset(self.cfg.data)
        for name in ("train", "test"):
            if len(data.split(name)) == 0:
                raise AirInterpError(f"{self.cfg.data}: the {name} split holds no puzzles; training needs both splits")
        self.task = data.task
        n_aug = self.cfg.augmentations_for(data.task)
        self.train_split = augment(data.train, data.task, n_aug, self.cfg.seed) if n_aug else data.train
        self.test_split = data.test

    def _recorded_init(self) -> str | None:
        """The SHA-256 of the --init-from weights that a resumed run recorded when it started."""
        return run_config(self.run_dir).get("init_from_sha256")

    def _initialise_from(self, path: Path) -> None:
        """Copy the weights of another checkpoint (or run) into this run's fresh model."""
        source_file = checkpoint_file(path)
        source = load_model(source_file)
        differ = [name for name in ARCHITECTURE_FIELDS
                  if getattr(source.cfg, name) != getattr(self.model_cfg, name)]
        if differ:
            raise AirInterpError(f"--init-from {path}: " + "; ".join(
                f"its {name} is {getattr(source.cfg, name)}, this run's is {getattr(self.model_cfg, name)}"
                for name in differ) + " (pass the same --preset and sizes)")
        self.model.load_state_dict(source.state_dict())
        self.init_sha256 = sha256(source_file)

    def _broadcast_parameters(self) -> None:
        """Every process starts from rank 0's weights (they are seeded alike; this makes sure)."""
        if self.dist.world_size > 1:
            with torch.no_grad():
                for tensor in [*self.model.parameters(), *self.model.buffers()]:
                    dist.broadcast(tensor, src=0)

    def resolved_config(self) -> dict[str, Any]:
        return {
            "train": self.cfg.to_dict(), "model": self.model_cfg.to_dict(), "task": self.task.name,
            "world_size": self.dist.world_size, "device": str(self.dist.device),
            "train_examples": len(self.train_split), "train_puzzles": self.sampler.n_groups,
            "test_examples": len(self.test_split), "total_steps": self.total_steps,
            "eval_every": self.eval_every, "checkpoint_every": self.checkpoint_every,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "init_from_sha256": self.init_sha256,
        }

    def _write_config(self) -> None:
        with atomic_path(self.run_dir / CONFIG_FILE) as tmp:
            tmp.write_text(json.dumps(self.resolved_config(), indent=2) + "\n")

    # ---- one step -------------------------------------------------------------------------
    def train_step(self) -> dict[str, torch.Tensor]:
        """One optimiser step; returns the step's summed metrics (local to this process)."""
        cfg, rank = self.cfg, self.dist.rank
        rows = self.sampler.batch_rows(self.step)[rank * self.local_batch_size:(rank + 1) * self.local_batch_size]
        batch = make_batch(self.train_split, rows, self.dist.device)
        if self.carry is None:
            self.carry = self.model.initial_carry(batch)
        self.carry, outputs = self._act_step(self.carry, batch)
        carry = self.carry
        loss, metrics = act_loss(outputs, carry.data["labels"], carry.halted, carry.steps)
        (loss / cfg.global_batch_size).backward()
        used_rows = self._sum_gradients(carry.data["puzzle_identifiers"])
        self.step += 1
        self._apply_optimizers(used_rows)
        if self.ema is not None:
            self.ema.update(self.model, self.step)
        return metrics

    def _sum_gradients(self, puzzle_ids: torch.Tensor) -> torch.Tensor:
        """Sum the gradients over processes (one flat all-reduce); return the puzzle-embedding
        rows used by any process."""
        used = torch.bincount(puzzle_ids, minlength=self.model_cfg.num_puzzle_identifiers).float()
        if self.dist.world_size > 1:
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            flat = torch.cat([g.reshape(-1) for g in grads] + [used])
            dist.all_reduce(flat)
            for grad, part in zip(grads, flat[:-used.numel()].split([g.numel() for g in grads])):
                grad.copy_(part.view_as(grad))
            used = flat[-used.numel():]
        return used.nonzero().squeeze(-1)

    def _apply_optimizers(self, used_rows: torch.Tensor) -> None:
        self.lr = lr_at(self.step, self.cfg.lr, self.cfg, self.total_steps)
        for group in self.adam.param_groups:
            group["lr"] = self.lr
        self.adam.step()
        if self.sign_sgd is not None:
            for group in self.sign_sgd.param_groups:
                group["lr"] = lr_at(self.step, self.cfg.puzzle_emb_lr, self.cfg, self.total_steps)
            self.sign_sgd.step(rows=used_rows)
        self.model.zero_grad(set_to_none=True)

    # ---- the loop -------------------------------------------------------------------------
    def run(self, stop_at: int | None = None) -> dict[str, Any]:
        """Train to the end (or to step ``stop_at``); evaluate and checkpoint on schedule and at the
        end. Returns the last evaluation's metrics."""
        last = min(self.total_steps, stop_at or self.total_steps)
        bar = tqdm(total=self.total_steps, initial=self.step, unit="step", dynamic_ncols=True,
                   disable=not (self.progress and self.dist.is_main))
        sums: dict[str, torch.Tensor] = {}
        interval = (self.step, time.perf_counter())
        results: dict[str, Any] = {}
        while self.step < last:
            for name, value in self.train_step().items():
                sums[name] = sums.get(name, 0) + value
            bar.update(1)
            end = self.step == last
            if self.step % self.cfg.log_every == 0 or end:
                record = self._log_train(sums, *interval)
                bar.set_postfix(loss=f"{record['loss']:.3f}", exact=f"{record['exact_accuracy']:.3f}")
                sums, interval = {}, (self.step, time.perf_counter())
            if self.step % self.eval_every == 0 or self.step == self.total_steps:
                results = self.evaluate()
                self._write({"kind": "eval", "step": self.step, **results})
            if self.step % self.checkpoint_every == 0 or end:
                self.save()
        bar.close()
        return results

    def _log_train(self, sums: dict[str, torch.Tensor], start_step: int, start_time: float) -> dict[str, Any]:
        names = sorted(sums)
        values = torch.stack([sums[k].float() for k in names])
        if self.dist.world_size > 1:
            dist.all_reduce(values)
        totals = dict(zip(names, values.tolist()))
        steps, seconds = self.step - start_step, time.perf_counter() - start_time
        examples = steps * self.cfg.global_batch_size
        count = max(totals.pop("count"), 1.0)
        record: dict[str, Any] = {"kind": "train", "step": self.step,
                                  "epoch": self.step * self.cfg.global_batch_size / self.sampler.n_groups}
        record.update({k: v / (examples if k in PER_EXAMPLE_METRICS else count) for k, v in totals.items()})
        record.update(halted=count / max(steps, 1), lr=self.lr, steps_per_s=steps / seconds,
                      tokens_per_s=examples * self.model_cfg.seq_len / seconds)
        self._write(record)
        return record

    def _write(self, record: dict[str, Any]) -> None:
        if self.log is not None:
            self.log.write(record)

    def evaluate(self) -> dict[str, Any]:
        """Test-split metrics of the evaluation weights (the EMA when enabled)."""
        batch_size = self.cfg.eval_batch_size or self.local_batch_size
        with self._evaluation_weights():
            return evaluate(self.model, self.test_split, batch_size, self.dist.rank, self.dist.world_size)

    def _evaluation_weights(self):
        return self.ema.applied(self.model) if self.ema is not None else nullcontext()

    # ---- checkpoints ----------------------------------------------------------------------
    def save(self) -> None:
        """Checkpoint this step (rank 0 writes; every process contributes its carry and RNG)."""
        mine = {"carry": _carry_state(self.carry), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(self.dist.device) if self.dist.device.type == "cuda" else None}
        ranks: list[Any] | None = [mine]
        if self.dist.world_size > 1:
            ranks = [None] * self.dist.world_size if self.dist.is_main else None
            dist.gather_object(mine, ranks, dst=0)
        if self.dist.is_main:
            state = {
                "step": self.step, "world_size": self.dist.world_size, "config": self.cfg.to_dict(),
                "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "adam": self.adam.state_dict(),
                "sign_sgd": None if self.sign_sgd is None else self.sign_sgd.state_dict(),
                "ema": None if self.ema is None else self.ema.state_dict(),
                "sampler": {"seed": self.sampler.seed, "batch_size": self.sampler.batch_size, "step": self.step},
                "ranks": ranks,
            }
            write_checkpoint(self.run_dir, self.step, self._write_model, state, self.cfg.keep,
                             self.cfg.keep_models_every)
        if self.dist.world_size > 1:
            dist.barrier()

    def _write_model(self, path: Path) -> None:
        with self._evaluation_weights():
            save_model(self.model, path)

    def _restore(self, checkpoint: Path) -> None:
        state = read_state(checkpoint)
        self.model.load_state_dict(state["model"])
        self.adam.load_state_dict(state["adam"])
        if self.sign_sgd is not None and state["sign_sgd"] is not None:
            self.sign_sgd.load_state_dict(state["sign_sgd"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        elif self.ema is not None:
            self.ema = EMA(self.model, self.cfg.ema)
        self.step = state["step"]
        if state["world_size"] != self.dist.world_size:
            warnings.warn(f"resuming a {state['world_size']}-process run on {self.dist.world_size} processes: "
                          "the ACT carries restart, so the run continues but not bit-exactly")
            torch.manual_seed(self.cfg.seed + self.dist.rank + self.step)
            return
        mine = state["ranks"][self.dist.rank]
        self.carry = _carry_from_state(mine["carry"], self.model.cfg.states, self.dist.device)
        torch.set_rng_state(mine["torch_rng"])
        if mine["cuda_rng"] is not None and self.dist.device.type == "cuda":
            torch.cuda.set_rng_state(mine["cuda_rng"], self.dist.device)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
        if self.dist.owns_group:
            dist.destroy_process_group()


def train(cfg: TrainConfig, run_dir: str | Path, resume: bool = False, progress: bool = True,
          stop_at: int | None = None) -> dict[str, Any]:
    """Run (or resume) a training run in ``run_dir``; returns the final evaluation metrics."""
    trainer = Trainer(cfg, run_dir, resume=resume, progress=progress)
    try:
        return trainer.run(stop_at=stop_at)
    finally:
        trainer.close()


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The TrainConfig a run directory was started with."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise AirInterpError(f"{run_dir}: no run to resume (no {CONFIG_FILE})")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise AirInterpError(f"{path}: cannot read the run's config ({err})") from None
    stored, model = data.get("train"), data.get("model")
    if not isinstance(stored, dict):
        raise AirInterpError(f"{path}: not the config of a training run of ours")
    if stored.get("dtype") == "auto" and isinstance(model, dict) and "forward_dtype" in model:
        stored = dict(stored, dtype=model["forward_dtype"])  # runs started before the chosen dtype was recorded
    return TrainConfig.from_dict(stored)
