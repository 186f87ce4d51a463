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

from .allowed import Allowed
from .errors import AirInterpError
from .tasks import get_task

Arch = Literal["air", "hrm"]
Operator = Literal["add", "minus", "linear", "nonlinear", "hadamard"]
LevelToken = Literal["none", "addition", "prepend_strip", "prepend_persist"]

ARCHS = ("air", "hrm")
POS_ENCODINGS = ("rope", "learned")
OPERATORS = ("add", "minus", "linear", "nonlinear", "hadamard")
LEVEL_TOKENS = ("none", "addition", "prepend_strip", "prepend_persist")
DTYPES = ("float32", "bfloat16", "float16")
# Which updates of an ACT segment keep a gradient: the last L- and the last H-update (AIR, HRM), or
# every update of the last cycle (TRM).
GRADIENTS = ("last_L_and_H", "last_cycle")

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
    # TRM ("Less is More"): AIR's (1, 0) wiring, 3 cycles of 6 L-updates and one H-update, a
    # 16-position prefix, the gradient through the whole last cycle, and halting when q_halt > 0.
    "trm": dict(n_L=1, n_H=0, H_cycles=3, L_cycles=6, puzzle_emb_rows=16, gradient="last_cycle", no_act_continue=True),
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


_COUNT, _POSITIVE = Allowed(int, low=0), Allowed(int, low=1)
_ALLOWED = "allowed"  # the field metadata key of what a field may hold


def _field(default: Any, allowed: Allowed) -> Any:
    """A config field with its default and what it may hold (checked by :meth:`AIRConfig.validate`)."""
    return dataclasses.field(default=default, metadata={_ALLOWED: allowed})


@dataclass
class AIRConfig:
    """Everything needed to build a model. Defaults are the paper's sizes for Sudoku."""

    task: str = _field("sudoku", Allowed(str))
    vocab_size: int = _field(11, _POSITIVE)
    seq_len: int = _field(81, _POSITIVE)
    # Variant
    arch: Arch = _field("air", Allowed(str, choices=ARCHS))
    n_L: int = _field(1, _COUNT)
    n_H: int = _field(0, _COUNT)
    operator: Operator = _field("add", Allowed(str, choices=OPERATORS))
    level_token: LevelToken = _field("none", Allowed(str, choices=LEVEL_TOKENS))
    # Sizes
    d_model: int = _field(512, _POSITIVE)
    n_heads: int = _field(8, _POSITIVE)
    n_layers: int = _field(4, _POSITIVE)
    H_layers: int | None = _field(None, Allowed(int, low=1, optional=True))  # HRM only: H depth (default n_layers)
    expansion: float = _field(4.0, Allowed(float, low=0, above=True))
    pos_encodings: Literal["rope", "learned"] = _field("rope", Allowed(str, choices=POS_ENCODINGS))
    rope_theta: float = _field(10000.0, Allowed(float, low=0, above=True))
    rms_norm_eps: float = _field(1e-5, Allowed(float, low=0, above=True))
    puzzle_emb_ndim: int = _field(512, _COUNT)
    # Prefix positions of the puzzle embedding: 0 is ceil(puzzle_emb_ndim / d_model) (AIR, HRM); TRM uses 16.
    puzzle_emb_rows: int = _field(0, _COUNT)
    num_puzzle_identifiers: int = _field(1, _POSITIVE)
    # Recurrence and halting
    H_cycles: int = _field(2, _POSITIVE)
    L_cycles: int = _field(2, _POSITIVE)
    halt_max_steps: int = _field(16, _POSITIVE)
    gradient: str = _field("last_L_and_H", Allowed(str, choices=GRADIENTS))
    halt_exploration_prob: float = _field(0.1, Allowed(float, low=0, high=1))
    # The halting rule the Q head was trained with: False is the paper's (halt when
    # q_halt > q_continue, Q-continue target from one more segment), True is TRM's (halt when q_halt > 0).
    no_act_continue: bool = _field(False, Allowed(bool))
    forward_dtype: str = _field("bfloat16", Allowed(str, choices=DTYPES))

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
        unknown = sorted(map(str, set(data) - known))
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
        """Positions taken by the puzzle embedding: ``puzzle_emb_rows``, or ceil(puzzle_emb_ndim / d_model)."""
        return self.puzzle_emb_rows or -(self.puzzle_emb_ndim // -self.d_model)

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
        if self.gradient == "last_cycle" and (self.n_L, self.n_H, self.level_token) == (1, 0, "none"):
            return "trm"
        counts = f"L{_count_token(self.n_L)}_H{_count_token(self.n_H)}"
        if self.level_token == "none":
            return counts
        return f"{counts}_token_{_LEVEL_TOKEN_NAMES[self.level_token]}"

    def validate(self) -> None:
        """Each field as its declared :class:`Allowed` holds it (an integral float becomes an int),
        then the settings together; a one-line AirInterpError for the first value that does not fit."""
        for field in dataclasses.fields(self):
            setattr(self, field.name, check_field(field.name, getattr(self, field.name)))
        checks = [
            (_known_task(self.task), f"unknown task {self.task!r}; known: sudoku, maze, maze<side> (side 4..64)"),
            (self.d_model % self.n_heads == 0, f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})"),
            (self.pos_encodings == "learned" or self.head_dim % 2 == 0, "RoPE needs an even head_dim"),
            (self.puzzle_emb_rows * self.d_model >= self.puzzle_emb_ndim or not self.puzzle_emb_rows,
             f"puzzle_emb_rows ({self.puzzle_emb_rows}) x d_model must hold puzzle_emb_ndim ({self.puzzle_emb_ndim})"),
            (self.operator == "add" or (self.n_L, self.n_H) == (1, 0),
             f"operator {self.operator!r} is defined on the (1, 0) wiring only, got ({self.n_L}, {self.n_H})"),
            (self.operator == "add" or self.level_token == "none", "operator forms and level tokens do not combine"),
            (self.arch == "air" or (self.operator, self.level_token, self.n_L, self.n_H) == ("add", "none", 1, 0),
             "the HRM baseline has the fixed (1, 0) wiring with no operator or level token"),
        ]
        for ok, message in checks:
            if not ok:
                raise AirInterpError(message)


def check_field(name: str, value: Any, label: str | None = None) -> Any:
    """``value`` as the config field ``name`` holds it, or a one-line AirInterpError naming
    ``label`` (default: the field), the value and what the field allows."""
    return _FIELD_ALLOWED[name].check(value, label or name)


_FIELD_ALLOWED: dict[str, Allowed] = {field.name: field.metadata[_ALLOWED]
                                      for field in dataclasses.fields(AIRConfig)}


def _known_task(name: str) -> bool:
    try:
        get_task(name)
    except AirInterpError:
        return False
    return True
