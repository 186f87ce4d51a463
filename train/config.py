"""TrainConfig: every hyperparameter of a training run, and the named scales (``paper``, ``cpu``).

The model variant is a preset name of :mod:`air_interp.config` (``Lx_H``, ``hrm``, ...); a *scale*
sets the sizes and the optimisation recipe. ``paper`` reproduces the AIR release's runs
(docs/model.md); ``cpu`` is a small model that learns something useful on a 2-core CPU in hours.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from air_interp.config import AIRConfig
from air_interp.errors import AirInterpError
from air_interp.hardware import resolve_dtype
from air_interp.tasks import Task

LR_SCHEDULES = ("constant", "cosine")
DEVICES = ("auto", "cpu", "cuda")
TRAIN_DTYPES = ("auto", "float32", "bfloat16")

# Model sizes of each scale (AIRConfig fields). ``paper`` is the AIRConfig default.
SCALE_MODELS: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu": dict(d_model=128, n_heads=4, n_layers=2, puzzle_emb_ndim=128, halt_max_steps=8),
}
# Recipe of each scale (TrainConfig fields).
SCALE_RECIPES: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu": dict(global_batch_size=64, epochs=250, lr=1e-3, lr_warmup_steps=200, weight_decay=0.1,
                puzzle_emb_lr=1e-3, puzzle_emb_weight_decay=0.1, eval_interval=50, augmentations=8),
}
SCALES = tuple(SCALE_MODELS)
# Where a variant's own code trains it differently from the AIR paper (TrainConfig fields): TRM's
# Sudoku recipe (its README and pydantic config) runs 50,000 epochs, evaluates every 5,000, and
# evaluates and saves the EMA weights. A scale's recipe and the user's options still win.
VARIANT_RECIPES: dict[str, dict[str, Any]] = {
    "trm": dict(epochs=50000, eval_interval=5000, ema=0.999),
}


@dataclass
class TrainConfig:
    """One training run. Defaults are the paper's recipe (scale ``paper``)."""

    variant: str = "Lx_H"
    data: str = ""
    scale: str = "paper"
    model: dict[str, Any] = field(default_factory=dict)  # AIRConfig overrides on top of the scale
    # Length: ``steps`` wins over ``epochs``; an epoch is one example of every training puzzle
    # (a random augmentation of it), as in the public code.
    epochs: int = 20000
    steps: int | None = None
    augmentations: int | None = None  # None: the paper's (1000 for Sudoku, 0 for mazes)
    global_batch_size: int = 768
    # Optimisation
    lr: float = 1e-4
    lr_warmup_steps: int = 2000
    lr_schedule: str = "constant"
    lr_min_ratio: float = 1.0  # cosine decays to lr * lr_min_ratio
    beta1: float = 0.9
    beta2: float = 0.95
    weight_decay: float = 1.0
    puzzle_emb_lr: float = 1e-4
    puzzle_emb_weight_decay: float = 1.0
    no_act_continue: bool | None = None  # None: the variant's rule (TRM: halt on q_halt > 0, no Q-continue target)
    ema: float = 0.0  # EMA decay of the weights used for evaluation and checkpoints; 0 = off
    # Evaluation, checkpoints, logging
    eval_interval: int = 2000  # in epochs, as the paper counts
    eval_every: int | None = None  # in steps; overrides eval_interval
    eval_batch_size: int | None = None  # default: the local training batch
    checkpoint_every: int | None = None  # in steps; default: every evaluation
    keep: int = 3
    keep_models_every: int | None = None  # also keep the weights (only) of every checkpoint at a multiple of this
    log_every: int = 10
    seed: int = 0
    init_from: str | None = None  # start from these weights (fresh optimiser); the architecture must match
    # Devices
    device: str = "auto"
    dtype: str = "auto"  # forward dtype; auto: air_interp.hardware decides (bf16 on CUDA and AMX CPUs)
    compile: bool | None = None  # torch.compile the ACT step; None: on a CPU only (see compile_on)
    threads: int | None = None  # CPU threads (torch.set_num_threads); default: torch's choice
    tensorboard: bool = False
    wandb_project: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def for_scale(cls, scale: str, **overrides: Any) -> TrainConfig:
        """The variant's recipe (:data:`VARIANT_RECIPES`), then ``scale``'s, then ``overrides`` on top
        (model overrides are merged)."""
        if scale not in SCALES:
            raise AirInterpError(f"unknown scale {scale!r}; use one of {', '.join(SCALES)}")
        family = str(overrides.get("variant", "")).split("_")[0]
        fields = dict(VARIANT_RECIPES.get(family, {}), **SCALE_RECIPES[scale], scale=scale)
        model = dict(overrides.pop("model", None) or {})
        fields.update(overrides)
        return cls.from_dict(dict(fields, model=model))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise AirInterpError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        """Raise a one-line AirInterpError for any inconsistent setting."""
        positive = ("epochs", "global_batch_size", "eval_interval", "keep", "log_every")
        checks = [(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}") for name in positive]
        checks += [(getattr(self, name) is None or getattr(self, name) > 0, f"{name} must be > 0")
                   for name in ("steps", "eval_every", "eval_batch_size", "checkpoint_every", "keep_models_every",
                                "threads")]
        checks += [
            (self.scale in SCALES, f"unknown scale {self.scale!r}; use one of {', '.join(SCALES)}"),
            (self.augmentations is None or self.augmentations >= 0, "augmentations must be >= 0"),
            (self.lr > 0 and self.puzzle_emb_lr >= 0, "lr must be > 0 and puzzle_emb_lr >= 0"),
            (self.lr_warmup_steps >= 0, "lr_warmup_steps must be >= 0"),
            (self.lr_schedule in LR_SCHEDULES, f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}"),
            (0 <= self.lr_min_ratio <= 1, "lr_min_ratio must lie in [0, 1]"),
            (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "beta1 and beta2 must lie in [0, 1)"),
            (self.weight_decay >= 0 and self.puzzle_emb_weight_decay >= 0, "weight decays must be >= 0"),
            (0 <= self.ema < 1, f"ema (a decay) must lie in [0, 1), got {self.ema}"),
            (self.device in DEVICES, f"device must be one of {DEVICES}, got {self.device!r}"),
            (self.dtype in TRAIN_DTYPES, f"dtype must be one of {TRAIN_DTYPES}, got {self.dtype!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise AirInterpError(message)

    # ---- derived -------------------------------------------------------------------------
    def augmentations_for(self, task: Task) -> int:
        """``augmentations``, or the paper's for ``task`` (1,000 for Sudoku, none for mazes)."""
        return task.paper_augmentations if self.augmentations is None else self.augmentations

    def total_steps(self, n_puzzles: int) -> int:
        """``steps``, or ``epochs`` x puzzles / batch (at least 1)."""
        if self.steps is not None:
            return self.steps
        return max(1, self.epochs * n_puzzles // self.global_batch_size)

    def eval_period(self, n_puzzles: int) -> int:
        """Steps between evaluations."""
        if self.eval_every is not None:
            return self.eval_every
        return max(1, self.eval_interval * n_puzzles // self.global_batch_size)

    def forward_dtype(self, device_type: str) -> str:
        """``dtype`` on a device of ``device_type``; ``auto`` is bf16 on CUDA (the paper) and on a CPU
        with native bf16 matmuls, fp32 on other CPUs (:mod:`air_interp.hardware`)."""
        return resolve_dtype(self.dtype, device_type, "bfloat16")

    def compile_on(self, device_type: str) -> bool:
        """``compile``; unset, it is on for a CPU, where benchmarks/train_step.py measured steps 1.4-1.6x
        (fp32) and 1.7x (bf16) as fast compiled, and off on CUDA (not measured yet)."""
        return device_type == "cpu" if self.compile is None else self.compile

    def model_sizes(self) -> dict[str, Any]:
        """The AIRConfig fields this run sets: the scale's sizes, then the ``model`` overrides."""
        fields = dict(SCALE_MODELS[self.scale])
        fields.update(self.model)
        if "d_model" in self.model and "puzzle_emb_ndim" not in self.model:
            fields["puzzle_emb_ndim"] = self.model["d_model"]
        return fields

    def model_config(self, task: str, device_type: str = "cpu") -> AIRConfig:
        """The AIRConfig of this run: the variant, the scale's sizes, then ``model`` overrides.

        A model override of ``d_model`` without ``puzzle_emb_ndim`` keeps the paper's convention
        puzzle_emb_ndim = d_model (one puzzle-embedding position). The halting rule
        (``no_act_continue``, unset: the variant's) becomes part of the model, so evaluation uses
        the rule it was trained with. Every dataset here has one puzzle identifier, as in the public Sudoku and
        maze data.
        """
        fields = self.model_sizes()
        fields.setdefault("forward_dtype", self.forward_dtype(device_type))
        if self.no_act_continue is not None:
            fields["no_act_continue"] = self.no_act_continue
        fields.setdefault("num_puzzle_identifiers", 1)
        return AIRConfig.preset(self.variant, task=task, **fields)


# What ``--resume`` may change. The recipe (every other field: variant, data, scale, model sizes,
# optimisation, seed, halting rule, dtype, init_from) decides what the weights become, so a resumed
# run repeats it; the length may grow (a longer run, as a sweep extends its runs); run options say
# where the run computes and how it is watched, checkpointed and logged.
LENGTH_FIELDS = ("steps", "epochs")
RUN_OPTIONS = ("eval_interval", "eval_every", "eval_batch_size", "checkpoint_every", "keep", "keep_models_every",
               "log_every", "device", "compile", "threads", "tensorboard", "wandb_project")
RECIPE_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in LENGTH_FIELDS + RUN_OPTIONS)
