"""The logit lens over a rollout: every state decoded after every update, streamed in batches.

The shared machinery of the decode and freeze probes, on :meth:`HookedAIR.trace` with
``keep="decode"``: each state is decoded as it is produced (``model.unembed(z).argmax``) and only
the decoded tokens are kept, so memory is ``puzzles x updates x cells`` bytes whatever the model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from air_interp.errors import AirInterpError

from air_interp.model import HookedAIR
from air_interp.trace import finite_hooks, state_sites

STATES = ("z_H", "z_L")  # the states of the two-state models (AIR, HRM, TRM)


def model_states(model: HookedAIR) -> tuple[str, ...]:
    """The states a probe reads by default: every state some update writes, z_H first
    (``('z_H', 'z_L')``; TRM's hier6 ``('z_H', 'z_L1', ..., 'z_L6')``; singlez ``('z_L',)``)."""
    return tuple(state for state in model.cfg.states if state in model.cfg.updated_states)


def check_states(model: HookedAIR, states: Sequence[str], what: str = "state") -> tuple[str, ...]:
    """``states`` if each is a state of ``model``, else a one-line AirInterpError listing its states."""
    known = model_states(model)
    unknown = [state for state in states if state not in known]
    if unknown:
        raise AirInterpError(f"unknown {what} {unknown[0]!r}; this model ({model.cfg.variant}) has "
                             f"{', '.join(known)}")
    return tuple(states)


@dataclass
class StateTrace:
    """Decoded tokens of one state: ``tokens[p, u]`` after its ``u``-th update (``u = 0``: reset).

    ``sub_index[u]`` is the global sub-step index ``6 * step + sub`` of update ``u`` (-1 at reset).
    """

    tokens: np.ndarray  # (puzzles, updates + 1, seq_len) uint8
    sub_index: np.ndarray  # (updates + 1,)


def update_sites(model: HookedAIR, state: str) -> list[tuple[int, str]]:
    """(global sub-step index, hook name) of every update of ``state`` in a rollout, in order."""
    return [(site.global_sub_step(model.cfg.sub_steps), site.name(f"hook_{state}"))
            for site in state_sites(model, state)]


def step_end_sites(model: HookedAIR, state: str, steps: Optional[Sequence[int]] = None) -> list[tuple[int, str]]:
    """(ACT step, hook name) of the last update of ``state`` in each of ``steps`` (default: all)."""
    last = {index // model.cfg.sub_steps: name for index, name in update_sites(model, state)}
    chosen = range(model.cfg.halt_max_steps) if steps is None else steps
    return [(step, last[step]) for step in chosen]


def puzzle_batch(model: HookedAIR, inputs: np.ndarray, puzzle_identifiers: Optional[np.ndarray],
                 rows: Union[slice, np.ndarray]) -> dict[str, torch.Tensor]:
    """The model's batch for ``rows``: tokens and puzzle identifiers (0 when none are given)."""
    tokens = torch.as_tensor(np.asarray(inputs)[rows], device=model.device).long()
    ids = (torch.zeros(len(tokens), dtype=torch.long, device=model.device) if puzzle_identifiers is None
           else torch.as_tensor(np.asarray(puzzle_identifiers)[rows], device=model.device).long())
    return {"inputs": tokens, "puzzle_identifiers": ids}


def stream(model: HookedAIR, inputs: np.ndarray, batch_size: int, desc: str, progress: bool = True,
           puzzle_identifiers: Optional[np.ndarray] = None) -> Iterator[tuple[slice, dict[str, torch.Tensor]]]:
    """(rows, batch) over ``inputs`` in batches of ``batch_size``, with a progress bar counting
    puzzles: the one loop every probe runs, so every batch carries everything the model reads.

    While it streams, every rollout of the model is checked for non-finite states and logits
    (:func:`air_interp.trace.finite_hooks`): a diverged model stops the probe with one line naming
    the first ACT step and sub-step that went non-finite, before any table is made."""
    n = len(inputs)
    if batch_size < 1:
        raise AirInterpError(f"batch_size must be at least 1, got {batch_size}")
    if puzzle_identifiers is not None and np.shape(puzzle_identifiers) != (n,):
        raise AirInterpError(f"puzzle_identifiers must have shape ({n},), got {np.shape(puzzle_identifiers)}")
    with model.hooks(fwd_hooks=finite_hooks(model)), \
            tqdm(total=n, desc=desc, unit="puzzle", disable=not progress, leave=False) as bar:
        for start in range(0, n, batch_size):
            rows = slice(start, min(start + batch_size, n))
            yield rows, puzzle_batch(model, inputs, puzzle_identifiers, rows)
            bar.update(rows.stop - rows.start)


def decode_state(model: HookedAIR, z: torch.Tensor) -> torch.Tensor:
    """The logit lens: argmax of ``lm_head`` at the content positions, as uint8 (batch, seq_len)."""
    return model.unembed(z).argmax(-1).to(torch.uint8)


def trace_states(model: HookedAIR, inputs: np.ndarray, states: Optional[Sequence[str]] = None,
                 freeze: Sequence[str] = (), batch_size: int = 64, progress: bool = True,
                 puzzle_identifiers: Optional[np.ndarray] = None) -> dict[str, StateTrace]:
    """Run full rollouts over ``inputs`` (puzzles, seq_len) and decode ``states`` (default: every
    state) after every update.

    The states in ``freeze`` are held at their reset values for the whole rollout (each of their
    hook points returns the previous value); the others update normally.
    """
    states = model_states(model) if states is None else check_states(model, states)
    hold = [(name, _hold_previous) for frozen in check_states(model, freeze) for _, name in update_sites(model, frozen)]
    batch: dict[str, np.ndarray] = {"inputs": np.asarray(inputs)}
    if puzzle_identifiers is not None:
        if np.shape(puzzle_identifiers) != (len(inputs),):
            raise AirInterpError(f"puzzle_identifiers must have shape ({len(inputs)},), got "
                                 f"{np.shape(puzzle_identifiers)}")
        batch["puzzle_identifiers"] = np.asarray(puzzle_identifiers)
    cache = model.trace(batch, states, keep="decode", batch_size=batch_size, progress=progress, fwd_hooks=hold)
    traces = {}
    for state in states:
        index = cache.updates(state)
        tokens = torch.cat((cache.decode_reset(state)[None], cache.decode(state)), dim=0).transpose(0, 1)
        traces[state] = StateTrace(tokens.numpy(), np.array([-1, *(index["step"] * model.cfg.sub_steps + index["sub"])]))
    return traces


def _hold_previous(z: torch.Tensor, hook) -> torch.Tensor:
    return hook.previous
