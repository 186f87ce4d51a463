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
POS_ENCODINGS = ("rope", "learned", "none")
# What mixes information across positions inside a block: attention, or TRM's SwiGLU over the positions.
MIXERS = ("attention", "mlp_t")
OPERATORS = ("add", "minus", "linear", "nonlinear", "hadamard")
LEVEL_TOKENS = ("none", "addition", "prepend_strip", "prepend_persist")
DTYPES = ("float32", "bfloat16", "float16")
# Which updates of an ACT segment keep a gradient: the last L- and the last H-update (AIR, HRM), or
# every update of the last cycle (TRM).
GRADIENTS = ("last_L_and_H", "last_cycle")

# TRM ("Less is More"): AIR's (1, 0) wiring, 2 layers, 3 cycles of 6 L-updates and one H-update, a
# 16-position prefix, the gradient through the whole last cycle, and halting when q_halt > 0.
_TRM: dict[str, Any] = dict(n_L=1, n_H=0, n_layers=2, H_cycles=3, L_cycles=6, puzzle_emb_rows=16,
                            gradient="last_cycle", no_act_continue=True)
# Named variants of the paper (and of the public code's module names) -> config fields.
_NAMED_VARIANTS: dict[str, dict[str, Any]] = {
    "minus_x": dict(n_L=1, n_H=0, operator="minus"),
    "gx_linear": dict(n_L=1, n_H=0, operator="linear"),
    "gx_nonlinear": dict(n_L=1, n_H=0, operator="nonlinear"),
    "hadamard": dict(n_L=1, n_H=0, operator="hadamard"),
    "hrm": dict(arch="hrm", n_L=1, n_H=0),
    "trm": _TRM,
    # TRM's MLP-over-positions variant (its best Sudoku model): no attention, no position encoding.
    "trm_mlp_t": dict(_TRM, mixer="mlp_t", pos_encodings="none"),
    # TRM's one-state model: z_L alone, updated with x L_cycles times, then once without it.
    "trm_singlez": dict(_TRM, single_state=True),
    # TRM's seven-state model: z_H and six L-states; the i-th L-update of a cycle writes z_L<i>.
    "trm_hier6": dict(_TRM, L_states=6),
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
_LEVEL_TOKEN_MODES = {name: mode for mode, name in _LEVEL_TOKEN_NAMES.items()}
# The eight injection variants of the paper's ablation table.
INJECTION_PRESETS = ("L_Hx", "Lx_H", "L_H2x", "L2x_H", "Lx_H2x", "L2x_Hx", "Lx_Hx", "L2x_H2x")
# The level-token control table: its (2, 2) base and the three token modes on top of it.
LEVEL_TOKEN_PRESETS = ("L2x_H2x", "L2x_H2x_token_addition", "L2x_H2x_token_prepend", "L2x_H2x_token_prepend_persist")
# Beyond the paper, three states (z_L, z_M, z_H; docs/model.md): asymmetric injections (2, 1, 0), the
# symmetric control (1, 1, 1), and that control with one prepend-strip token per state.
THREE_STATE_PRESETS = ("L2x_Mx_H", "Lx_Mx_Hx", "Lx_Mx_Hx_token_prepend")
PRESETS = INJECTION_PRESETS + LEVEL_TOKEN_PRESETS[1:] + tuple(_NAMED_VARIANTS) + THREE_STATE_PRESETS

# A three-state model runs its middle level M_cycles times per H-cycle: z_L is updated 4 times per ACT
# step, z_M twice and z_H once, in 7 sub-steps (AIR's two-state models take 6).
_THREE_STATE_CYCLES = dict(H_cycles=1, M_cycles=2, L_cycles=2)
_COUNT_NAME = re.compile(r"L(\d*x)?(_M(\d*x)?)?_H(\d*x)?(?:_token_(addition|prepend_persist|prepend))?")


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
        raise AirInterpError(f"unknown variant {name!r}; use one of {', '.join(PRESETS)} or any "
                             "'L<n>x_H<m>x' or 'L<n>x_M<k>x_H<m>x' name (optionally '_token_<mode>')")
    middle, token = match.group(2), match.group(5)
    fields: dict[str, Any] = dict(n_L=_count(match.group(1)), n_H=_count(match.group(4)))
    if middle:
        fields.update(_THREE_STATE_CYCLES, n_M=_count(match.group(3)))
    if token:
        fields.update(level_token=_LEVEL_TOKEN_MODES[token])
    return fields


@dataclass(frozen=True)
class Update:
    """One call of the stack in an ACT segment, as data.

    It writes ``writes = f(hidden + injection)`` where ``hidden`` is the sum, left to right, of the
    ``hidden`` states plus ``x_hidden`` copies of the input embedding ``x`` (and the level token
    under ``level_token="addition"``), and ``injection`` the sum of the ``injection`` states plus
    ``x_injection`` copies of ``x``. ``kind`` ('L', 'M' or 'H') picks HRM's stack, the level token and,
    for 'L', the operator form (which replaces ``injection``; docs/model.md). The order of every
    sum is the public code's: fp32 addition is not associative and 16 ACT steps amplify a last bit.
    """

    kind: str
    writes: str
    hidden: tuple[str, ...]
    injection: tuple[str, ...] = ()
    x_hidden: int = 0
    x_injection: int = 0

    def __str__(self) -> str:
        """The update as a formula, e.g. ``z_L = f(z_L + (z_H + x))``."""
        def total(states: tuple[str, ...], copies: int) -> str:
            terms = [*states, *(["x"] if copies == 1 else [f"{copies}x"] if copies else [])]
            return " + ".join(terms) if len(terms) == 1 else f"({' + '.join(terms)})"
        hidden, injection = total(self.hidden, self.x_hidden), total(self.injection, self.x_injection)
        if not self.injection and not self.x_injection:
            return f"{self.writes} = f{hidden if hidden.startswith('(') else f'({hidden})'}"
        return f"{self.writes} = f({hidden} + {injection})"


def injection_split(kind: str, n_x: int) -> tuple[int, int]:
    """How many of an update's ``n_x`` copies of x join its own state and how many the other state.

    This follows the public modules exactly: one x joins the *other* state in an L-update,
    ``z_L + (z_H + x)``, but the state *itself* in an H-update, ``(z_H + x) + z_L``; two or more
    join both, ``(z_self + (n-1) x) + (z_other + x)``. A three-state model's M-update (no public
    code) follows the L-update.
    """
    if n_x == 0:
        return 0, 0
    if n_x == 1:
        return (1, 0) if kind == "H" else (0, 1)
    return n_x - 1, 1


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
    # A middle state z_M (three-state models, beyond the paper): 0 is none; k runs k M-updates per
    # H-cycle, each after L_cycles L-updates, with n_M copies of x.
    M_cycles: int = _field(0, _COUNT)
    n_M: int = _field(0, _COUNT)
    operator: Operator = _field("add", Allowed(str, choices=OPERATORS))
    level_token: LevelToken = _field("none", Allowed(str, choices=LEVEL_TOKENS))
    # States: z_H and ``L_states`` L-states (one: z_L; more: z_L1.. z_L<n>, TRM's hier6), or z_L
    # alone (``single_state``, TRM's singlez). The updates that read and write them: :attr:`schedule`.
    L_states: int = _field(1, _POSITIVE)
    single_state: bool = _field(False, Allowed(bool))
    mixer: str = _field("attention", Allowed(str, choices=MIXERS))
    # Sizes
    d_model: int = _field(512, _POSITIVE)
    n_heads: int = _field(8, _POSITIVE)
    n_layers: int = _field(4, _POSITIVE)
    H_layers: int | None = _field(None, Allowed(int, low=1, optional=True))  # HRM only: H depth (default n_layers)
    expansion: float = _field(4.0, Allowed(float, low=0, above=True))
    pos_encodings: Literal["rope", "learned", "none"] = _field("rope", Allowed(str, choices=POS_ENCODINGS))
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
        return self.H_cycles * self._cycle_length

    @property
    def _cycle_length(self) -> int:
        """Sub-steps of one H-cycle."""
        return (self.M_cycles or 1) * (self.L_cycles + 1) + int(self.M_cycles > 0)

    @property
    def states(self) -> tuple[str, ...]:
        """The model's states: ``('z_H', 'z_L')``; TRM's hier6 ``('z_H', 'z_L1', ..., 'z_L6')``; singlez
        ``('z_L',)``; a three-state model ``('z_H', 'z_M', 'z_L')``."""
        if self.single_state:
            return self._L_states
        return ("z_H", "z_M", "z_L") if self.M_cycles else ("z_H", *self._L_states)

    @property
    def _L_states(self) -> tuple[str, ...]:
        return ("z_L",) if self.L_states == 1 else tuple(f"z_L{i}" for i in range(1, self.L_states + 1))

    @property
    def output_state(self) -> str:
        """The state the output and Q heads read: z_H, or z_L in a one-state model."""
        return self.states[0]

    @property
    def schedule(self) -> tuple[Update, ...]:
        """The updates of one ACT segment, in order: ``H_cycles`` cycles of ``L_cycles`` L-updates
        and one H-update (three states: ``M_cycles`` times ``L_cycles`` L-updates and an M-update,
        then the H-update); ``str(update)`` is an update's formula, ``kinds`` lists their kinds."""
        L_states = self._L_states
        if self.single_state:
            cycle = [Update("L", "z_L", ("z_L",), x_hidden=1)] * self.L_cycles + [Update("H", "z_L", ("z_L",))]
        elif self.M_cycles:
            low = [Update("L", "z_L", ("z_L",), ("z_M", "z_H"), *injection_split("L", self.n_L))] * self.L_cycles
            middle = Update("M", "z_M", ("z_M",), ("z_L", "z_H"), *injection_split("M", self.n_M))
            cycle = (low + [middle]) * self.M_cycles
            cycle.append(Update("H", "z_H", ("z_H",), ("z_M", "z_L"), *injection_split("H", self.n_H)))
        else:
            l_split, h_split = injection_split("L", self.n_L), injection_split("H", self.n_H)
            cycle = [Update("L", L_states[i % len(L_states)], L_states, ("z_H",), *l_split) for i in range(self.L_cycles)]
            cycle.append(Update("H", "z_H", ("z_H",), L_states, *h_split))
        return tuple(cycle) * self.H_cycles

    @property
    def updated_states(self) -> tuple[str, ...]:
        """The states some update writes, in the order of their first update (``('z_L', 'z_H')``)."""
        return tuple(dict.fromkeys(update.writes for update in self.schedule))

    @property
    def kinds(self) -> tuple[str, ...]:
        """Kind of each sub-step of one ACT segment, e.g. ``('L', 'L', 'H', 'L', 'L', 'H')``."""
        return tuple(update.kind for update in self.schedule)

    @property
    def first_with_gradient(self) -> int:
        """The first sub-step of a segment that keeps a gradient (training, and ``forward``
        without ``full_grad``): the last update of each kind (AIR's last L- and H-update, and a
        three-state model's last M-update between them) or the whole last H-cycle (TRM)."""
        if self.gradient == "last_cycle":
            return self.sub_steps - self._cycle_length
        return self.sub_steps - len(set(self.kinds))

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
        if self.gradient == "last_cycle" and (self.n_L, self.n_H, self.level_token, self.M_cycles) == (1, 0, "none", 0):
            name = "trm"
        else:
            middle = f"_M{_count_token(self.n_M)}" if self.M_cycles else ""
            name = f"L{_count_token(self.n_L)}{middle}_H{_count_token(self.n_H)}"
            if self.level_token != "none":
                name += f"_token_{_LEVEL_TOKEN_NAMES[self.level_token]}"
        return name + "_mlp_t" * (self.mixer == "mlp_t") + "_singlez" * self.single_state + (
            f"_hier{self.L_states}" if self.L_states > 1 else "")

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
            (not (self.single_state and self.L_states > 1), "a one-state model (single_state) has no L_states"),
            ((self.L_states == 1 and not self.single_state) or (self.arch, self.operator, self.level_token) ==
             ("air", "add", "none"), "TRM's one- and many-state models have one stack, no operator and no level token"),
            (not self.M_cycles or (self.arch, self.operator, self.L_states, self.single_state) == ("air", "add", 1, False),
             "a three-state model (M_cycles > 0) has one shared stack, the add operator and the states z_L, z_M, z_H"),
            (self.M_cycles or not self.n_M, f"n_M ({self.n_M}) injects x into a middle state: set M_cycles too"),
            (self.mixer == "attention" or self.level_token != "prepend_strip",
             "mlp_t mixes a fixed number of positions: it does not combine with the prepend_strip level token"),
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
