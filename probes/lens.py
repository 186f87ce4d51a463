"""The logit lens over a rollout: decoded z_L / z_H after every update, streamed in batches.

This is the shared machinery of the decode and freeze probes. It attaches hooks to the
state hook points (``hook_z_{L,H}_init`` and ``step.{s}.sub.{k}.hook_z_{L,H}``), decodes each
state as it is produced (``lm_head(z).argmax`` at the content positions), and keeps only the
decoded tokens, so memory is bounded by ``puzzles x updates x cells`` bytes whatever the model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from air_interp.errors import AirInterpError
from air_interp.hooks import FwdHooks, Site
from air_interp.model import HookedAIR
from air_interp.trace import finite_hooks

STATES = ("z_H", "z_L")


@dataclass
class StateTrace:
    """Decoded tokens of one state: ``tokens[p, u]`` after its ``u``-th update (``u = 0``: reset).

    ``sub_index[u]`` is the global sub-step index ``6 * step + sub`` of update ``u`` (-1 at reset).
    """

    tokens: np.ndarray  # (puzzles, updates + 1, seq_len) uint8
    sub_index: np.ndarray  # (updates + 1,)


def update_sites(model: HookedAIR, state: str) -> list[tuple[int, str]]:
    """(global sub-step index, hook name) of every update of ``state`` in a rollout, in order."""
    kind = state[-1]
    cfg = model.cfg
    return [
        (step * cfg.sub_steps + sub, Site(step, sub).name(f"hook_{state}"))
        for step in range(cfg.halt_max_steps)
        for sub, sub_kind in enumerate(cfg.schedule)
        if sub_kind == kind
    ]


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


def trace_states(model: HookedAIR, inputs: np.ndarray, states: Sequence[str] = STATES,
                 freeze: Optional[str] = None, batch_size: int = 64, progress: bool = True,
                 puzzle_identifiers: Optional[np.ndarray] = None) -> dict[str, StateTrace]:
    """Run full rollouts over ``inputs`` (puzzles, seq_len) and decode ``states`` after every update.

    ``freeze="z_H"`` (or ``"z_L"``) holds that state at its reset value for the whole rollout by
    returning the previous value at each of its hook points; the other state updates normally.
    """
    inputs = np.asarray(inputs)
    sites = {state: update_sites(model, state) for state in states}
    traces = {
        state: StateTrace(
            tokens=np.zeros((len(inputs), len(sites[state]) + 1, model.cfg.seq_len), dtype=np.uint8),
            sub_index=np.array([-1] + [index for index, _ in sites[state]]),
        )
        for state in states
    }
    hooks: FwdHooks = []
    if freeze is not None:
        hooks += [(name, _hold_previous) for _, name in update_sites(model, freeze)]
    current: dict[str, slice] = {}
    for state in states:
        names = [Site().name(f"hook_{state}_init")] + [name for _, name in sites[state]]
        for update, name in enumerate(names):
            hooks.append((name, _recorder(model, traces[state].tokens, update, current)))
    desc = f"decode{'' if freeze is None else f' (freeze {freeze})'}"
    with torch.inference_mode(), model.hooks(fwd_hooks=hooks):
        for rows, batch in stream(model, inputs, batch_size, desc, progress, puzzle_identifiers):
            current["rows"] = rows
            model(batch)
    return traces


def _hold_previous(z: torch.Tensor, hook) -> torch.Tensor:
    return hook.previous


def _recorder(model: HookedAIR, out: np.ndarray, update: int, current: dict[str, slice]):
    def record(z: torch.Tensor, hook) -> None:
        out[current["rows"], update] = decode_state(model, z).cpu().numpy()

    return record
