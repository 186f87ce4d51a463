"""HookedAIR: the one implementation of the AIR family (and its HRM baseline), with hook points.

Reading guide (what each piece computes: docs/model.md):

* ``embed`` turns tokens (and the puzzle embedding) into the scaled input ``x``.
* ``_update`` is one call of the stack ``f(hidden + injection)``: one entry of ``cfg.schedule``,
  the description of the model as data (which state it writes, from which states, how many x).
* ``_segment`` is one ACT segment: ``H_cycles x (L_cycles L-updates + 1 H-update)`` sub-steps,
  gradient only from ``cfg.first_with_gradient`` on (the last L- and H-update, or TRM's last cycle).
* ``forward`` is the evaluation rollout: ``halt_max_steps`` segments with every hook point live.
* ``initial_carry`` / ``act_step`` are the ACT wrapper used in training (no hook points).
"""
from __future__ import annotations

import difflib
import math
import re
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union, cast

import numpy as np
import torch
from torch import nn
from transformer_lens import HookedRootModule

from .config import AIRConfig, Update
from .errors import AirInterpError
from .hooks import Site, SiteHookPoint, StepHooks, SubStepHooks
from .layers import Block, CastedEmbedding, CastedLinear, Rotary, trunc_normal_

if TYPE_CHECKING:
    from .trace import Trace

Batch = Union[torch.Tensor, np.ndarray, Mapping[str, Any]]


States = dict[str, torch.Tensor]  # state name (cfg.states) -> (batch, carry_len, d_model)


class _StateAttributes:
    """``obj.z_H`` is ``obj.states["z_H"]`` (for any state of the model)."""

    states: States

    def __getattr__(self, name: str) -> torch.Tensor:
        states = self.__dict__.get("states", {})
        if name in states:
            return states[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r} (states: {', '.join(states)})")


@dataclass
class RolloutOutput(_StateAttributes):
    """Everything an evaluation rollout ends with (``forward(..., return_type="all")``)."""

    logits: torch.Tensor  # (batch, seq_len, vocab), fp32
    q_halt_logits: torch.Tensor  # (batch,) of the last ACT step
    q_continue_logits: torch.Tensor  # (batch,)
    states: States  # every position incl. the prefix; also ``out.z_H``, ``out.z_L``, ...


@dataclass
class ACTCarry(_StateAttributes):
    """State carried across training batches: rows that halted are refilled from the next batch."""

    states: States
    steps: torch.Tensor  # (batch,) int32
    halted: torch.Tensor  # (batch,) bool
    data: dict[str, torch.Tensor]  # the rows currently being worked on (inputs, labels, ...)


class HookedAIR(HookedRootModule):
    """A shared-weight recurrent Transformer (AIR, TRM) or the two-network HRM baseline, fully hooked."""

    def __init__(self, cfg: AIRConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        d = cfg.d_model
        self.embed_tokens = CastedEmbedding(cfg.vocab_size, d, init_std=1 / math.sqrt(d))
        if cfg.pos_encodings == "learned":
            self.embed_pos = CastedEmbedding(cfg.puzzle_emb_len + cfg.seq_len, d, init_std=1 / math.sqrt(d))
        if cfg.puzzle_emb_ndim > 0:
            self.puzzle_emb = CastedEmbedding(cfg.num_puzzle_identifiers, cfg.puzzle_emb_ndim, init_std=0)
        self.lm_head = CastedLinear(d, cfg.vocab_size)
        self.q_head = CastedLinear(d, 2, bias=True)
        with torch.no_grad():
            self.q_head.weight.zero_()
            assert self.q_head.bias is not None
            self.q_head.bias.fill_(-5)
        for state in cfg.states:  # H_init, L_init (TRM's hier6: L1_init .. L6_init)
            self.register_buffer(_init_name(state), trunc_normal_(torch.empty(d), 1.0))
        if cfg.arch == "air":
            self.stack = self._make_stack(cfg.n_layers)
        else:
            self.L_stack = self._make_stack(cfg.layers_of("L"))
            self.H_stack = self._make_stack(cfg.layers_of("H"))
        if cfg.operator in ("linear", "nonlinear"):
            self.g_input = CastedLinear(d, d)
        if cfg.level_token != "none":
            self.level_token_L = nn.Parameter(torch.zeros(d))
            self.level_token_H = nn.Parameter(torch.zeros(d))
            if "M" in cfg.kinds:
                self.level_token_M = nn.Parameter(torch.zeros(d))
        self._rotary = Rotary(cfg.head_dim, cfg.rope_theta) if cfg.pos_encodings == "rope" else None

        self.hook_embed = SiteHookPoint(Site())
        for state in cfg.states:
            setattr(self, f"hook_{state}_init", SiteHookPoint(Site(state=state)))
        self.step = nn.ModuleList(StepHooks(s, cfg) for s in range(cfg.halt_max_steps))
        self.setup()

    def _make_stack(self, n_layers: int) -> nn.ModuleList:
        cfg = self.cfg
        return nn.ModuleList(Block(cfg.d_model, cfg.n_heads, cfg.expansion, cfg.rms_norm_eps, cfg.mixer, cfg.carry_len)
                             for _ in range(n_layers))

    # ---- basic properties -------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        """The forward dtype (parameters are stored in fp32)."""
        return getattr(torch, self.cfg.forward_dtype)

    def set_forward_dtype(self, dtype: str) -> None:
        """Run the forward in ``dtype`` (``float32`` or ``bfloat16``); the fp32 weights are unchanged."""
        self.cfg = self.cfg.replace(forward_dtype=dtype)

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    def stack_of(self, kind: str) -> nn.ModuleList:
        """The blocks an update of ``kind`` runs: the shared stack for AIR, L_stack/H_stack for HRM."""
        if self.cfg.arch == "air":
            return self.stack
        return self.L_stack if kind == "L" else self.H_stack

    # ---- input ------------------------------------------------------------------------------
    def prepare_batch(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate a batch (token tensor/array, or dict with ``inputs`` and optional
        ``puzzle_identifiers``) and return (inputs, puzzle_identifiers) on the model's device."""
        if isinstance(batch, Mapping):
            if "inputs" not in batch:
                raise AirInterpError("batch dict has no 'inputs' entry")
            inputs, ids = batch["inputs"], batch.get("puzzle_identifiers")
        else:
            inputs, ids = batch, None
        inputs = torch.as_tensor(inputs, device=self.device)
        cfg = self.cfg
        if inputs.ndim != 2 or inputs.shape[1] != cfg.seq_len:
            raise AirInterpError(f"inputs must have shape (batch, {cfg.seq_len}), got {tuple(inputs.shape)}")
        if inputs.is_floating_point() or inputs.dtype == torch.bool:
            raise AirInterpError(f"inputs must be integer tokens, got dtype {inputs.dtype}")
        if inputs.numel() and (inputs.min() < 0 or inputs.max() >= cfg.vocab_size):
            raise AirInterpError(
                f"input tokens must lie in [0, {cfg.vocab_size}), found {int(inputs.min())}..{int(inputs.max())}"
            )
        if ids is None:
            ids = torch.zeros(inputs.shape[0], dtype=torch.long, device=self.device)
        ids = torch.as_tensor(ids, device=self.device).long()
        if ids.shape != (inputs.shape[0],):
            raise AirInterpError(f"puzzle_identifiers must have shape ({inputs.shape[0]},), got {tuple(ids.shape)}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= cfg.num_puzzle_identifiers):
            raise AirInterpError(f"puzzle_identifiers must lie in [0, {cfg.num_puzzle_identifiers})")
        return inputs.long(), ids

    def embed(self, inputs: torch.Tensor, puzzle_identifiers: torch.Tensor) -> torch.Tensor:
        """The scaled input embedding ``x`` over every position, puzzle-embedding positions included."""
        cfg, dtype = self.cfg, self.dtype
        emb = self.embed_tokens(inputs, dtype)
        if cfg.puzzle_emb_ndim > 0:
            puzzle = self.puzzle_emb(puzzle_identifiers, dtype)
            pad = cfg.puzzle_emb_len * cfg.d_model - cfg.puzzle_emb_ndim
            puzzle = nn.functional.pad(puzzle, (0, pad)).view(-1, cfg.puzzle_emb_len, cfg.d_model)
            emb = torch.cat((puzzle, emb), dim=-2)
        if cfg.pos_encodings == "learned":
            emb = 0.707106781 * (emb + self.embed_pos.weight.to(dtype))
        return math.sqrt(cfg.d_model) * emb

    def initial_state(self, batch_size: int) -> States:
        """Every state at reset: its init vector (``H_init``, ``L_init``, ...) at every position, and
        the level token of its kind at position 0 when the token is persistent."""
        shape = (batch_size, self.cfg.carry_len, self.cfg.d_model)
        states = {state: getattr(self, _init_name(state)).to(self.dtype).expand(shape) for state in self.cfg.states}
        if self.cfg.level_positions:
            for state, z in states.items():
                token = getattr(self, f"level_token_{state[2]}").to(self.dtype).expand(batch_size, 1, -1)
                states[state] = torch.cat((token, z[:, 1:]), dim=1)
        return states

    def _rope(self, length: int) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        return None if self._rotary is None else self._rotary(length, self.device)

    # ---- the recurrence ---------------------------------------------------------------------
    def _update_inputs(self, update: Update, states: States, x: torch.Tensor,
                       gx: Optional[torch.Tensor]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(hidden, injection) of one update; the stack's input is their sum (docs/model.md)."""
        cfg = self.cfg
        hidden = _total(states, update.hidden)
        injection = _total(states, update.injection) if update.injection else None
        if update.kind == "L" and cfg.operator != "add":
            assert injection is not None  # the operator forms are defined on the (1, 0) wiring (cfg.validate)
            if cfg.operator == "minus":
                return hidden, injection - x
            if cfg.operator == "hadamard":
                return hidden, (injection + hidden) * x
            assert gx is not None  # computed by _segment for the linear and nonlinear operators
            return hidden, injection + gx
        if update.x_hidden:
            hidden = hidden + update.x_hidden * x
        if cfg.level_token == "addition":
            hidden = hidden + getattr(self, f"level_token_{update.kind}").to(hidden.dtype)
        if update.x_injection:
            injection = x if injection is None else injection + x
        return hidden, injection

    def _update(self, update: Update, states: States, x: torch.Tensor, gx: Optional[torch.Tensor],
                rope: Optional[tuple[torch.Tensor, torch.Tensor]], hooks: Optional[SubStepHooks]) -> torch.Tensor:
        """One call of the stack: ``f(hidden + injection)``, the new value of ``update.writes``."""
        hidden, injection = self._update_inputs(update, states, x, gx)
        h = hidden if injection is None else hidden + injection
        if hooks is not None:
            h = hooks.hook_f_in(h)
        strip = self.cfg.level_token == "prepend_strip"
        if strip:
            token = getattr(self, f"level_token_{update.kind}").to(h.dtype)
            h = torch.cat((token.expand(h.shape[0], 1, -1), h), dim=1)
        for layer, block in enumerate(self.stack_of(update.kind)):
            h = block(h, rope, None if hooks is None else hooks.layer[layer])
        if strip:
            h = h[:, 1:]
        if hooks is not None:
            h = hooks.hook_state.call_with_previous(h, states[update.writes])
        return h

    def _segment(self, states: States, x: torch.Tensor, hooks: Optional[StepHooks],
                 full_grad: bool = False) -> States:
        """One ACT segment: every update of ``cfg.schedule``; without ``full_grad`` only those from
        ``cfg.first_with_gradient`` on keep a gradient."""
        cfg = self.cfg
        gx = None
        if cfg.operator in ("linear", "nonlinear"):
            gx = self.g_input(x)
            gx = torch.tanh(gx) if cfg.operator == "nonlinear" else gx
        if cfg.level_positions:
            x = nn.functional.pad(x, (0, 0, 1, 0))  # the persistent level token gets no input
        rope = self._rope(cfg.carry_len + int(cfg.level_token == "prepend_strip"))
        first_with_grad = 0 if full_grad else cfg.first_with_gradient
        states = dict(states)
        for sub, update in enumerate(cfg.schedule):
            sub_hooks = None if hooks is None else cast(SubStepHooks, hooks.sub[sub])
            with nullcontext() if sub >= first_with_grad else torch.no_grad():
                states[update.writes] = self._update(update, states, x, gx, rope, sub_hooks)
        return states

    def unembed(self, z: torch.Tensor) -> torch.Tensor:
        """The output head on any state: token logits at the content positions ``(batch, seq_len,
        vocab)``, the prefix (level token, puzzle embedding) skipped. The logit lens is its argmax."""
        return self.lm_head(z[:, self.cfg.prefix_len:])

    def _q_logits(self, states: States) -> torch.Tensor:
        """(q_halt, q_continue) logits, read from position 0 of the output state, in fp32: shape (batch, 2)."""
        return self.q_head(states[self.cfg.output_state][:, 0]).float()

    # ---- evaluation rollout -----------------------------------------------------------------
    def forward(self, batch: Batch, return_type: str = "logits", full_grad: bool = False
                ) -> Union[torch.Tensor, RolloutOutput]:
        """The evaluation rollout: ``halt_max_steps`` ACT segments from reset, every hook point live.

        Returns the final token logits (batch, seq_len, vocab) in fp32, or a :class:`RolloutOutput`
        with ``return_type="all"``. The carry is detached between segments and only the last L-
        and H-update of a segment keep a gradient, as in training; ``full_grad=True`` keeps the
        whole rollout differentiable (memory grows with the number of sub-steps).
        """
        if return_type not in ("logits", "all"):
            raise AirInterpError(f"return_type must be 'logits' or 'all', got {return_type!r}")
        inputs, ids = self.prepare_batch(batch)
        x = self.hook_embed(self.embed(inputs, ids))
        states = {state: getattr(self, f"hook_{state}_init")(z) for state, z in self.initial_state(len(inputs)).items()}
        q = None
        for step_hooks in cast(Iterable[StepHooks], self.step):
            if not full_grad:  # the carry between segments holds no gradient, as in training
                states = {state: z.detach() for state, z in states.items()}
            states = self._segment(states, x, step_hooks, full_grad)
            q = step_hooks.hook_q(self._q_logits(states))
        logits = self.unembed(states[self.cfg.output_state]).float()
        if return_type == "logits":
            return logits
        assert q is not None  # halt_max_steps >= 1 (cfg.validate)
        return RolloutOutput(logits, q[:, 0], q[:, 1], states)

    # ---- ACT wrapper (training) -------------------------------------------------------------
    def act_batch(self, batch: Batch) -> dict[str, torch.Tensor]:
        """A batch as the ACT wrapper keeps it: what :meth:`forward` accepts (a token tensor or
        array, or a dict with ``inputs`` and optional ``puzzle_identifiers``), as a dict of tensors
        on the model's device; integer entries (``inputs``, ``labels``, ...) become int64."""
        inputs, ids = self.prepare_batch(batch)
        data = {"inputs": inputs, "puzzle_identifiers": ids}
        for name, value in (batch.items() if isinstance(batch, Mapping) else ()):
            if name in data:
                continue
            tensor = torch.as_tensor(value, device=self.device)
            data[name] = tensor if tensor.is_floating_point() or tensor.dtype == torch.bool else tensor.long()
        return data

    def initial_carry(self, batch: Batch) -> ACTCarry:
        """A carry whose rows are all halted, so the first ``act_step`` fills them from its batch."""
        batch = self.act_batch(batch)
        size = batch["inputs"].shape[0]
        return ACTCarry(
            states={state: z.clone() for state, z in self.initial_state(size).items()},
            steps=torch.zeros(size, dtype=torch.int32, device=self.device),
            halted=torch.ones(size, dtype=torch.bool, device=self.device),
            data={k: torch.empty_like(v) for k, v in batch.items()},
        )

    def halts(self, q_halt: torch.Tensor, q_continue: torch.Tensor) -> torch.Tensor:
        """Where the Q head says "halt" under this model's rule (``cfg.no_act_continue``):
        q_halt > q_continue (the paper), or q_halt > 0 (TRM)."""
        return q_halt > (0 if self.cfg.no_act_continue else q_continue)

    def act_step(self, carry: ACTCarry, batch: Batch) -> tuple[ACTCarry, dict[str, torch.Tensor]]:
        """One ACT call (docs/model.md, "The ACT wrapper"): refill halted rows, run one segment, decide halting.

        ``batch`` is anything :meth:`forward` accepts. In training mode (and halt_max_steps > 1)
        rows may also halt when the Q head says so (:meth:`halts`), exploration imposes a random
        minimum number of steps, and under the paper's rule ``target_q_continue`` comes from one
        more segment without gradient (TRM's rule, ``cfg.no_act_continue``, has no extra segment
        and no target). Hook points do not fire here.
        """
        batch = self.act_batch(batch)
        reset = carry.halted
        initial = self.initial_state(reset.shape[0])
        states = {state: torch.where(reset.view(-1, 1, 1), initial[state], z) for state, z in carry.states.items()}
        steps = torch.where(reset, 0, carry.steps)
        data = {k: torch.where(reset.view((-1,) + (1,) * (v.ndim - 1)), batch[k], v) for k, v in carry.data.items()}
        x = self.embed(data["inputs"], data["puzzle_identifiers"])
        states = self._segment(states, x, hooks=None)
        logits, q = self.unembed(states[self.cfg.output_state]), self._q_logits(states)
        outputs = {"logits": logits, "q_halt_logits": q[:, 0], "q_continue_logits": q[:, 1]}
        states = {state: z.detach() for state, z in states.items()}
        with torch.no_grad():
            steps = steps + 1
            is_last = steps >= self.cfg.halt_max_steps
            halted = is_last
            if self.training and self.cfg.halt_max_steps > 1:
                halted = halted | self.halts(q[:, 0], q[:, 1])
                explore = torch.rand_like(q[:, 0]) < self.cfg.halt_exploration_prob
                min_steps = explore * torch.randint_like(steps, low=2, high=self.cfg.halt_max_steps + 1)
                halted = halted & (steps >= min_steps)
                if not self.cfg.no_act_continue:
                    next_q = self._q_logits(self._segment(states, x, hooks=None))
                    target = torch.where(is_last, next_q[:, 0], torch.maximum(next_q[:, 0], next_q[:, 1]))
                    outputs["target_q_continue"] = torch.sigmoid(target)
        return ACTCarry(states, steps, halted, data), outputs

    # ---- hooks conveniences -----------------------------------------------------------------
    def trace(self, batch: Batch, states: Optional[Sequence[str]] = None, sites: Sequence[str] = (),
              keep: str = "states", batch_size: int = 64, progress: bool = False,
              fwd_hooks: Sequence[tuple[Any, Any]] = (), at: Optional[Callable[[str, Site], bool]] = None) -> "Trace":
        """Every state (and each relative ``site``) at every update, stacked: :func:`air_interp.trace.trace`.

        ``cache = model.trace(batch)``; ``cache.states("z_L")`` is ``(updates, batch, positions, d)``,
        ``cache.decode("z_H", step=3)`` the logit lens of ACT step 3's H-updates, ``cache.updates("z_L")``
        which step and sub-step each row is. ``keep="decode"`` keeps only the decodes (1 byte a cell);
        ``at(name, site)`` keeps only the sub-steps it accepts (``site``: a :class:`Site`)."""
        from .trace import trace

        return trace(self, batch, states, sites, keep, batch_size, progress, fwd_hooks, at)

    def hook_names(self, pattern: str = ".*") -> list[str]:
        """Names of the hook points that fully match the regular expression ``pattern``."""
        return [name for name in self.hook_dict if _compile(pattern).fullmatch(name)]

    def expose_patterns(self, pattern: str = ".*", exposed: bool = True) -> int:
        """Compute explicit attention probabilities at the ``hook_pattern`` points matching ``pattern``.

        Patterns are computed automatically where a hook is attached; tools that intercept module
        outputs without registering hooks (nnsight) need them exposed first. Returns the count.
        """
        names = [n for n in self.hook_names(pattern) if n.endswith("hook_pattern")]
        for name in names:
            cast(SiteHookPoint, self.hook_dict[name]).exposed = exposed
        return len(names)

    def run_with_cache(self, *model_args: Any, names_filter: Any = None, **kwargs: Any):
        """TransformerLens ``run_with_cache``; a string ``names_filter`` is a regular expression, a
        list of names must name hook points that exist."""
        return super().run_with_cache(*model_args, names_filter=self._names_filter(names_filter), **kwargs)

    def _names_filter(self, names_filter: Any) -> Any:
        if isinstance(names_filter, (list, tuple, set, frozenset)):
            unknown = [name for name in names_filter if not isinstance(name, str) or name not in self.hook_dict]
            if unknown:
                raise AirInterpError(f"names_filter names {len(unknown)} hook point(s) this model does not have: "
                                     f"{_listed(unknown)}{self._hint(unknown[0])}")
            return list(names_filter)
        if not isinstance(names_filter, str):
            return names_filter
        matched = set(self.hook_names(names_filter))
        if not matched:
            raise AirInterpError(f"names_filter {names_filter!r} matches no hook point (see model.hook_names())")
        return matched.__contains__

    @contextmanager
    def hooks(self, fwd_hooks: Sequence[tuple[Any, Any]] = (), bwd_hooks: Sequence[tuple[Any, Any]] = (),
              reset_hooks_end: bool = True, clear_contexts: bool = False) -> Iterator["HookedAIR"]:
        """TransformerLens ``hooks`` (and so ``run_with_hooks``); a hook named by a string must name a
        hook point of this model (a one-line AirInterpError with a hint otherwise)."""
        self._check_hook_names([name for name, _ in (*fwd_hooks, *bwd_hooks)])
        with super().hooks(list(fwd_hooks), list(bwd_hooks), reset_hooks_end, clear_contexts) as model:
            yield model

    def add_hook(self, name: Any, hook: Any, dir: Any = "fwd", is_permanent: bool = False,
                 level: Optional[int] = None, prepend: bool = False) -> None:
        """TransformerLens ``add_hook``; a string ``name`` must name a hook point of this model."""
        self._check_hook_names([name])
        super().add_hook(name, hook, dir=dir, is_permanent=is_permanent, level=level, prepend=prepend)

    def _check_hook_names(self, names: Sequence[Any]) -> None:
        for name in names:
            if isinstance(name, str) and name not in self.hook_dict:
                raise AirInterpError(f"unknown hook point {name!r}{self._hint(name)}")
            if not isinstance(name, str) and not callable(name):
                raise AirInterpError(f"a hook is named by a hook point name or a filter function on names, "
                                     f"got {type(name).__name__}")

    def _hint(self, name: Any) -> str:
        close = difflib.get_close_matches(str(name), list(self.hook_dict), n=2, cutoff=0.6)
        similar = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        return f"{similar} (model.hook_names() lists this model's {len(self.hook_dict)} hook points)"

    # ---- persistence ------------------------------------------------------------------------
    def save(self, path: str) -> None:
        """Write weights and config to one safetensors file (atomic)."""
        from .checkpoints.ours import save_model

        save_model(self, path)


def _init_name(state: str) -> str:
    """The buffer holding a state's reset vector: ``z_H`` -> ``H_init``, ``z_L3`` -> ``L3_init``."""
    return f"{state.removeprefix('z_')}_init"


def _total(states: States, names: tuple[str, ...]) -> torch.Tensor:
    """The sum of the named states, left to right (the public code's order)."""
    total = states[names[0]]
    for name in names[1:]:
        total = total + states[name]
    return total


def _listed(names: Sequence[Any], most: int = 3) -> str:
    shown = ", ".join(map(repr, names[:most]))
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _compile(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as err:
        raise AirInterpError(f"invalid regular expression {pattern!r}: {err}") from None

