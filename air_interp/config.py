"""AIRConfig: one dataclass describes every model of the family; variants are presets of it.

The AIR paper names its variants ``L{n_L}x_H{n_H}x`` (``x`` means 1, nothing means 0): the
number of times the input embedding ``x`` is injected into the L-update and the H-update of
the one shared Transformer stack. The operator forms change how ``x`` enters the L-update,
the level-token modes give the stack a learned "which level am I" signal, and ``arch="hrm"``
is the HRM baseline with two separate stacks.
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from .errors import AirInterpError
from .tasks import get_task

Arch = Literal["air", "hrm"]
Operator = Literal["add", "minus", "linear", "nonlinear", "hadamard"]
LevelToken = Literal["none", "addition", "prepend_strip", "prepend_persist"]

OPERATORS = ("add", "minus", "linear", "nonlinear", "hadamard")
LEVEL_TOKENS = ("none", "addition", "prepend_strip", "prepend_persist")
DTYPES = ("float32", "bfloat16", "float16")

# Named variants of the paper (and of the public code's module names) -> config fields.
_NAMED_VARIANTS: dict[str, dict[str, Any]] = {
    "minus_x": dict(n_L=1, n_H=0, operator="minus"),
    "gx_linear": dict(n_L=1, n_H=0, operator="linear"),
    "gx_nonlinear": dict(n_L=1, n_H=0, operator="nonlinear"),
    "hadamard": dict(n_L=1, n_H=0, operator="hadamard"),
    "L2x_H2x_token_addition": dict(n_L=2, n_H=2, level_token="addition"),
    "L2x_H2x_token_prepend": dict(n_L=2, n_H=2, level_token="prepend_strip"),
    "L2x_H2x_token_prepend_persist": dict(n_L=2, n_H=2, level_token="prepend_persist"),
    "hrm": dict(arch="hrm", n_L=1, n_H=0),
}
# Spellings used by the public AIR release (module names ``air_1net_<name>``).
_ALIASES = {
    "gx_non_linear": "gx_nonlinear",
    "had_prod": "hadamard",
    "L2x_H2x_input_token_addition": "L2x_H2x_token_addition",
    "L2x_H2x_input_token_prepend": "L2x_H2x_token_prepend",
    "L2x_H2x_input_token_prepend_no_strip": "L2x_H2x_token_prepend_persist",
    "hrm_act_v1": "hrm",
}
_OPERATOR_NAMES = {"minus": "minus_x", "linear": "gx_linear", "nonlinear": "gx_nonlinear", "hadamard": "hadamard"}
_LEVEL_TOKEN_NAMES = {"addition": "addition", "prepend_strip": "prepend", "prepend_persist": "prepend_persist"}
# The eight injection variants of the paper's ablation table.
INJECTION_PRESETS = ("L_Hx", "Lx_H", "L_H2x", "L2x_H", "Lx_H2x", "L2x_Hx", "Lx_Hx", "L2x_H2x")
# The level-token control table: its (2, 2) base and the three token modes on top of it.
LEVEL_TOKEN_PRESETS = ("L2x_H2x", "L2x_H2x_token_addition", "L2x_H2x_token_prepend", "L2x_H2x_token_prepend_persist")
PRESETS = INJECTION_PRESETS + tuple(_NAMED_VARIANTS)

_COUNT_NAME = re.compile(r"L(\d*x)?_H(\d*x)?")


def _count(token: str | None) -> int:
    """``None`` -> 0, ``'x'`` -> 1, ``'2x'`` -> 2."""
    if token is None:
        return 0
    return int(token[:-1] or 1)


def _count_token(n: int) -> str:
    return "" if n == 0 else "x" if n == 1 else f"{n}x"


def variant_fields(name: str) -> dict[str, Any]:
    """The config fields of a variant name: a paper preset, a public module name or any ``L{n}x_H{m}x``."""
    name = _ALIASES.get(name, name)
    if name in _NAMED_VARIANTS:
        return dict(_NAMED_VARIANTS[name])
    match = _COUNT_NAME.fullmatch(name)
    if match is None:
        raise AirInterpError(
            f"unknown variant {name!r}; use one of {', '.join(PRESETS)} or any 'L<n>x_H<m>x' name"
        )
    return dict(n_L=_count(match.group(1)), n_H=_count(match.group(2)))


@dataclass
class AIRConfig:
    """Everything needed to build a model. Defaults are the paper's sizes for Sudoku."""

    task: str = "sudoku"
    vocab_size: int = 11
    seq_len: int = 81
    # Variant
    arch: Arch = "air"
    n_L: int = 1
    n_H: int = 0
    operator: Operator = "add"
    level_token: LevelToken = "none"
    # Sizes
    d_model: int = 512
    n_heads: int = 8
    n_layers: int = 4
    H_layers: int | None = None  # HRM only: depth of the H network (default n_layers)
    expansion: float = 4.0
    pos_encodings: Literal["rope", "learned"] = "rope"
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    puzzle_emb_ndim: int = 512
    num_puzzle_identifiers: int = 1
    # Recurrence and halting
    H_cycles: int = 2
    L_cycles: int = 2
    halt_max_steps: int = 16
    halt_exploration_prob: float = 0.1
    # The halting rule the Q head was trained with: False is the paper's (halt when
    # q_halt > q_continue, Q-continue target from one more segment), True is TRM's (halt when q_halt > 0).
    no_act_continue: bool = False
    forward_dtype: str = "bfloat16"

    def __post_init__(self) -> None:
        self.validate()

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def preset(cls, name: str, task: str = "sudoku", **overrides: Any) -> "AIRConfig":
        """A paper variant by name (``Lx_H``, ``L2x_Hx``, ``gx_linear``, ``hrm``, ...) for a task.

        Sizes default to the paper's (d=512, 4 layers, 8 heads); pass overrides such as
        ``d_model=128, n_layers=2`` for a small model.
        """
        spec = get_task(task)
        fields = dict(task=task, vocab_size=spec.vocab_size, seq_len=spec.seq_len)
        fields.update(variant_fields(name))
        fields.update(overrides)
        return cls.from_dict(fields)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AIRConfig":
        if not isinstance(data, dict):
            raise AirInterpError(f"a config is a JSON object of fields, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise AirInterpError(f"unknown config field(s): {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "AIRConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise AirInterpError(f"config is not valid JSON: {err}") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def replace(self, **changes: Any) -> "AIRConfig":
        return dataclasses.replace(self, **changes)

    # ---- derived quantities -------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def puzzle_emb_len(self) -> int:
        """Positions taken by the puzzle embedding: ceil(puzzle_emb_ndim / d_model)."""
        return -(self.puzzle_emb_ndim // -self.d_model)

    @property
    def level_positions(self) -> int:
        """1 when a persistent level token occupies position 0 of the carry, else 0."""
        return int(self.level_token == "prepend_persist")

    @property
    def prefix_len(self) -> int:
        """Carry positions before the content positions (level token, puzzle embedding)."""
        return self.level_positions + self.puzzle_emb_len

    @property
    def carry_len(self) -> int:
        return self.prefix_len + self.seq_len

    @property
    def sub_steps(self) -> int:
        return self.H_cycles * (self.L_cycles + 1)

    @property
    def schedule(self) -> tuple[str, ...]:
        """Kind of each sub-step of one ACT segment, e.g. ``('L', 'L', 'H', 'L', 'L', 'H')``."""
        return (("L",) * self.L_cycles + ("H",)) * self.H_cycles

    def layers_of(self, kind: str) -> int:
        """Depth of the stack used by an update of ``kind`` ('L' or 'H')."""
        if self.arch == "hrm" and kind == "H":
            return self.H_layers or self.n_layers
        return self.n_layers

    @property
    def variant(self) -> str:
        """The paper's name of this configuration (``Lx_H``, ``gx_linear``, ``hrm``, ...)."""
        if self.arch == "hrm":
            return "hrm"
        if self.operator != "add":
            return _OPERATOR_NAMES[self.operator]
        counts = f"L{_count_token(self.n_L)}_H{_count_token(self.n_H)}"
        if self.level_token == "none":
            return counts
        return f"{counts}_token_{_LEVEL_TOKEN_NAMES[self.level_token]}"

    def validate(self) -> None:
        """Raise a one-line AirInterpError for any inconsistent setting."""
        checks = [
            (_known_task(self.task), f"unknown task {self.task!r}; known: sudoku, maze, maze<side> (side 4..64)"),
            (self.arch in ("air", "hrm"), f"arch must be 'air' or 'hrm', got {self.arch!r}"),
            (self.operator in OPERATORS, f"operator must be one of {OPERATORS}, got {self.operator!r}"),
            (self.level_token in LEVEL_TOKENS, f"level_token must be one of {LEVEL_TOKENS}, got {self.level_token!r}"),
            (self.forward_dtype in DTYPES, f"forward_dtype must be one of {DTYPES}, got {self.forward_dtype!r}"),
            (self.pos_encodings in ("rope", "learned"), f"pos_encodings must be 'rope' or 'learned', got {self.pos_encodings!r}"),
            (self.n_L >= 0 and self.n_H >= 0, "injection counts n_L, n_H must be >= 0"),
            (self.d_model > 0 and self.n_heads > 0 and self.d_model % self.n_heads == 0,
             f"d_model ({self.d_model}) must be a positive multiple of n_heads ({self.n_heads})"),
            (self.pos_encodings == "learned" or self.head_dim % 2 == 0, "RoPE needs an even head_dim"),
            (self.n_layers > 0 and (self.H_layers is None or self.H_layers > 0), "layer counts must be > 0"),
            (self.H_cycles > 0 and self.L_cycles > 0, "H_cycles and L_cycles must be > 0"),
            (self.halt_max_steps > 0, "halt_max_steps must be > 0"),
            (self.vocab_size > 0 and self.seq_len > 0, "vocab_size and seq_len must be > 0"),
            (self.puzzle_emb_ndim >= 0 and self.num_puzzle_identifiers > 0,
             "puzzle_emb_ndim must be >= 0 and num_puzzle_identifiers > 0"),
            (self.operator == "add" or (self.n_L, self.n_H) == (1, 0),
             f"operator {self.operator!r} is defined on the (1, 0) wiring only, got ({self.n_L}, {self.n_H})"),
            (self.operator == "add" or self.level_token == "none", "operator forms and level tokens do not combine"),
            (self.arch == "air" or (self.operator, self.level_token, self.n_L, self.n_H) == ("add", "none", 1, 0),
             "the HRM baseline has the fixed (1, 0) wiring with no operator or level token"),
        ]
        for ok, message in checks:
            if not ok:
                raise AirInterpError(message)


def _known_task(name: Any) -> bool:
    try:
        get_task(name)
    except (AirInterpError, TypeError):
        return False
    return True
