"""A rollout's states and hook sites stacked by update: ``model.trace(batch)``.

``run_with_cache`` returns a flat dict of one tensor per hook point (about 3,700 names at 16 ACT
steps). A researcher asks "z_L over every update", "the logit lens of z_H across steps",
"layer 3's residual at every H-update". :func:`trace` answers that directly: it runs the rollout
in batches, keeps each state (and each requested site) at every update it occurs, and returns a
:class:`Trace` whose ``states("z_L")`` is one tensor ``(updates, puzzles, positions, d)``, with
``updates("z_L")`` saying which ACT step and sub-step each row is.

Memory is the puzzles times what is kept. ``keep="states"`` keeps full tensors (on the CPU, in
the forward dtype); ``keep="decode"`` keeps only each state's logit-lens decode, one byte per
cell, so a 1,000-puzzle rollout at the paper's size (96 state updates, 81 cells) takes 7.9 MB
instead of about 16 GB.

No NaN is passed off as a result: every streamed rollout (this trace, and the probes' stream in
``probes/lens.py``) runs :func:`finite_hooks`, which stop it with a one-line AirInterpError at
the first ACT step and sub-step whose state or its logits are not finite.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .errors import AirInterpError
from .hooks import Site

if TYPE_CHECKING:
    from .model import Batch, HookedAIR

KEEP = ("states", "decode")


@dataclass(frozen=True)
class Trace:
    """What a traced rollout kept. ``values[name]`` is ``(updates, puzzles, ...)``: a state name
    (``z_H``, ``z_L``) or a site relative to a sub-step (``hook_f_in``, ``layer.1.hook_resid_post``,
    ``layer.0.attn.hook_pattern``); ``index[name]`` lists the (ACT step, sub-step, kind, state written) of each row."""

    values: Mapping[str, torch.Tensor]
    index: Mapping[str, pd.DataFrame]
    kept: str
    prefix_len: int

    def updates(self, name: str) -> pd.DataFrame:
        """Row ``u`` of ``name``'s tensors: columns ``update``, ``step``, ``sub``, ``kind``, ``state``."""
        return self.index[self._known(name)]

    def states(self, state: str, step: Optional[int] = None, sub: Optional[int] = None) -> torch.Tensor:
        """``state`` after each of its updates, ``(updates, puzzles, positions, d)``; ``step`` / ``sub``
        keep the updates of one ACT step / sub-step."""
        if self.kept != "states":
            raise AirInterpError(f"this trace kept only the decoded states (keep={self.kept!r}); "
                                 "trace with keep='states' for the vectors")
        return self._select(state, step, sub)

    def site(self, name: str, step: Optional[int] = None, sub: Optional[int] = None) -> torch.Tensor:
        """A traced site (e.g. ``layer.1.hook_resid_post``) at each sub-step it occurs in."""
        return self._select(name, step, sub)

    def decode_reset(self, state: str) -> torch.Tensor:
        """The logit lens of ``state`` at reset, before its first update: tokens ``(puzzles, seq_len)``."""
        if f"reset:{state}" not in self.values:
            raise AirInterpError(f"{state!r} was not traced as a state; traced: {', '.join(self._states())}")
        return self.values[f"reset:{state}"][0]

    def decode(self, state: str, step: Optional[int] = None, sub: Optional[int] = None) -> torch.Tensor:
        """The logit lens of ``state`` after each update: tokens ``(updates, puzzles, seq_len)``."""
        key = f"decode:{state}"
        if key not in self.values:
            raise AirInterpError(f"{state!r} was not traced as a state; traced: {', '.join(self._states())}")
        rows = self._rows(state, step, sub)
        return self.values[key][rows]

    def _states(self) -> list[str]:
        return [name.removeprefix("decode:") for name in self.values if name.startswith("decode:")]

    def _known(self, name: str) -> str:
        if name not in self.index:
            raise AirInterpError(f"{name!r} was not traced; traced: {', '.join(self.index)}")
        return name

    def _rows(self, name: str, step: Optional[int], sub: Optional[int]) -> np.ndarray:
        index = self.updates(name)
        keep = np.ones(len(index), dtype=bool)
        if step is not None:
            keep &= (index["step"] == step).to_numpy()
        if sub is not None:
            keep &= (index["sub"] == sub).to_numpy()
        if not keep.any():
            raise AirInterpError(f"{name!r} has no update at step={step}, sub={sub}")
        return np.flatnonzero(keep)

    def _select(self, name: str, step: Optional[int], sub: Optional[int]) -> torch.Tensor:
        return self.values[self._known(name)][self._rows(name, step, sub)]


def finite_hooks(model: "HookedAIR") -> list[tuple[str, Callable[..., None]]]:
    """Hooks that stop a rollout at the first state (reset, or after an update) or halting logits
    that are not finite, naming the ACT step and sub-step: every state's values and its logit-lens
    logits (``model.unembed``) are checked as they are produced, and the Q head's logits at the
    end of each ACT step. Read-only: the rollout is unchanged."""
    cfg = model.cfg
    hooks: list[tuple[str, Callable[..., None]]] = []
    for state in cfg.states:
        hooks.append((Site().name(f"hook_{state}_init"), _finite_check(model, f"the reset {state} (hook_{state}_init)")))
    for step in range(cfg.halt_max_steps):
        for sub, update in enumerate(cfg.schedule):
            name = Site(step, sub).name(f"hook_{update.writes}")
            where = (f"ACT step {step + 1} of {cfg.halt_max_steps}, sub-step {sub + 1} of {cfg.sub_steps} "
                     f"(the {update.kind}-update, {name})")
            hooks.append((name, _finite_check(model, where)))
        name = Site(step).name("hook_q")
        hooks.append((name, _finite_check(model, f"ACT step {step + 1} of {cfg.halt_max_steps} (the halting "
                                                 f"logits, {name})", unembed=False)))
    return hooks


def _finite_check(model: "HookedAIR", where: str, unembed: bool = True) -> Callable[..., None]:
    def check(value: torch.Tensor, hook: Any) -> None:
        if not bool(torch.isfinite(value).all()) or (unembed and not bool(torch.isfinite(model.unembed(value)).all())):
            raise AirInterpError(f"the model's states or logits are not finite (NaN or inf) from {where} on; "
                                 "a diverged model gives no result (no table is written)")

    return check


def state_sites(model: "HookedAIR", state: str) -> list[Site]:
    """The sub-steps whose update writes ``state`` (``z_L``: the L-updates), in rollout order."""
    cfg = model.cfg
    if state not in cfg.updated_states:
        raise AirInterpError(f"unknown state {state!r}; this model's states: {', '.join(cfg.updated_states)}")
    return [Site(step, sub, update.kind, state=state) for step in range(cfg.halt_max_steps)
            for sub, update in enumerate(cfg.schedule) if update.writes == state]


def site_sites(model: "HookedAIR", site: str) -> list[Site]:
    """The sub-steps at which the relative hook name ``site`` exists, in rollout order."""
    found = [Site(step, sub, update.kind, state=update.writes) for step in range(model.cfg.halt_max_steps)
             for sub, update in enumerate(model.cfg.schedule) if Site(step, sub).name(site) in model.hook_dict]
    if not found:
        raise AirInterpError(f"no hook point matches the site {site!r} at any sub-step "
                             "(sites are relative to a sub-step, e.g. 'hook_f_in', 'layer.0.hook_resid_post')")
    return found


def _index(sites: Sequence[Site]) -> pd.DataFrame:
    return pd.DataFrame({"update": range(len(sites)), "step": [s.step for s in sites],
                         "sub": [s.sub for s in sites], "kind": [s.kind for s in sites],
                         "state": [s.state for s in sites]})


# Which sub-steps of a traced name (a state, or a relative site) to keep: (name, site) -> bool.
SiteFilter = Callable[[str, Site], bool]
# What to keep of a traced site's value (a state is kept whole, or decoded): (name, value) -> tensor.
Reduction = Callable[[str, torch.Tensor], torch.Tensor]


def trace(model: "HookedAIR", batch: "Batch", states: Optional[Sequence[str]] = None, sites: Sequence[str] = (),
          keep: str = "states", batch_size: int = 64, progress: bool = False,
          fwd_hooks: Sequence[tuple[Any, Callable[..., Any]]] = (), at: Optional[SiteFilter] = None) -> Trace:
    """Roll ``batch`` (tokens or a dict with ``inputs`` and ``puzzle_identifiers``) out in chunks
    of ``batch_size`` puzzles and keep ``states`` (default: every state) and ``sites`` at every
    update (or at the sub-steps ``at(name, site)`` accepts); ``fwd_hooks`` (TransformerLens pairs)
    run too, e.g. a freeze. See the module docstring; :func:`trace_batches` gives the chunks one by one."""
    parts = [part for _, part in trace_batches(model, batch, states, sites, keep, batch_size, progress, fwd_hooks, at)]
    values = {name: torch.cat([part.values[name] for part in parts], dim=1) for name in parts[0].values}
    return Trace(values, parts[0].index, keep, model.cfg.prefix_len)


def trace_batches(model: "HookedAIR", batch: "Batch", states: Optional[Sequence[str]] = None,
                  sites: Sequence[str] = (), keep: str = "states", batch_size: int = 64, progress: bool = False,
                  fwd_hooks: Sequence[tuple[Any, Callable[..., Any]]] = (), at: Optional[SiteFilter] = None,
                  reduce: Optional[Reduction] = None, desc: str = "trace") -> Iterator[tuple[slice, Trace]]:
    """:func:`trace`, one chunk of ``batch_size`` puzzles at a time: ``(rows, trace of those rows)``.
    A probe that reduces each chunk (attention, linear probes, patching) keeps only its reduction,
    so its memory does not grow with the number of puzzles; ``reduce`` shrinks each site's value as
    it is produced (the attention probe keeps head-averaged content patterns, not every head's)."""
    if keep not in KEEP:
        raise AirInterpError(f"keep must be one of {', '.join(KEEP)}, got {keep!r}")
    if batch_size < 1:
        raise AirInterpError(f"batch_size must be at least 1, got {batch_size}")
    inputs, ids = model.prepare_batch(batch)
    states = list(model.cfg.updated_states) if states is None else list(states)
    where = {state: state_sites(model, state) for state in states}
    where.update({site: site_sites(model, site) for site in sites})
    if at is not None:
        where = {name: [site for site in located if at(name, site)] for name, located in where.items()}
    chunks: dict[str, list[torch.Tensor]] = {
        name: [] for name in [*where, *(f"{part}:{s}" for s in states for part in ("decode", "reset"))]}
    hooks = list(fwd_hooks) + finite_hooks(model)
    hooks += [(Site().name(f"hook_{state}_init"), _reset_recorder(model, state, chunks)) for state in states]
    for name, located in where.items():
        point = f"hook_{name}" if name in states else name
        for update, site in enumerate(located):
            hooks.append((site.name(point), _recorder(model, name, update, name in states, keep, chunks, reduce)))
    index = {name: _index(located) for name, located in where.items()}
    if not len(inputs):
        raise AirInterpError("there are no puzzles to trace")
    for start in tqdm(range(0, len(inputs), batch_size), desc=desc, unit="batch", disable=not progress, leave=False):
        for kept in chunks.values():
            kept.clear()
        rows = slice(start, min(start + batch_size, len(inputs)))
        with torch.inference_mode(), model.hooks(fwd_hooks=hooks):  # not while the caller holds the chunk
            model({"inputs": inputs[rows], "puzzle_identifiers": ids[rows]})
        values = {name: torch.stack(kept) for name, kept in chunks.items() if kept}
        yield rows, Trace(values, index, keep, model.cfg.prefix_len)


def _recorder(model: "HookedAIR", name: str, update: int, is_state: bool, keep: str,
              chunks: dict[str, list[torch.Tensor]], reduce: Optional[Reduction]) -> Callable[..., None]:
    def record(value: torch.Tensor, hook: Any) -> None:
        if is_state:
            chunks[f"decode:{name}"].append(model.unembed(value).argmax(-1).to(torch.uint8).cpu())
        if keep == "states" and is_state:
            chunks[name].append(value.detach().cpu())
        elif not is_state:
            chunks[name].append((value if reduce is None else reduce(name, value)).detach().cpu())
        assert len(chunks[f"decode:{name}" if is_state else name]) == update + 1  # hooks fire in order

    return record


def _reset_recorder(model: "HookedAIR", state: str, chunks: dict[str, list[torch.Tensor]]
                    ) -> Callable[..., None]:
    def record(value: torch.Tensor, hook: Any) -> None:
        chunks[f"reset:{state}"].append(model.unembed(value).argmax(-1).to(torch.uint8).cpu())

    return record


def trace_memory_bytes(model: "HookedAIR", puzzles: int, keep: str = "decode",
                       states: Optional[Sequence[str]] = None) -> int:
    """What :func:`trace` keeps for ``puzzles`` puzzles (states only): the memory bound it promises."""
    states = list(model.cfg.updated_states) if states is None else list(states)
    updates = sum(len(state_sites(model, state)) for state in states)
    cfg = model.cfg
    per_update = cfg.seq_len if keep == "decode" else cfg.seq_len + cfg.carry_len * cfg.d_model * model.dtype.itemsize
    return (updates * per_update + len(states) * cfg.seq_len) * puzzles  # ... and each state's decode at reset
