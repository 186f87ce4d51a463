"""Decode (logit lens): what z_H and z_L "say" after every sub-step of every ACT step.

``decode(model, inputs, labels)`` returns a :class:`DecodeResult`: a tidy table with one row per
puzzle x sub-step x state (fraction undecided, accuracy against the label, exact match, tokens
changed since the previous sub-step) and the decoded grids themselves. ``plot_decode`` draws
Figures 2-5 of the paper (z_H / z_L grids over sub-steps) and ``write_viewer`` an interactive
HTML rollout viewer with a slider over sub-steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import matplotlib.pyplot as plt

from air_interp.io import atomic_path
from air_interp.model import HookedAIR
from air_interp.output import save_figure, styled
from air_interp.tasks import Task, get_task

from .lens import STATES, StateTrace, trace_states
from .render import draw_grid, token_legend


@dataclass
class DecodeResult:
    """``grids[p, g, s]``: decoded state ``STATES[s]`` of puzzle ``p`` after global sub-step ``g``."""

    table: pd.DataFrame
    grids: np.ndarray  # (puzzles, total_sub_steps, 2, seq_len) uint8
    task: Task
    schedule: tuple[str, ...]
    inputs: np.ndarray
    labels: Optional[np.ndarray]


def per_sub_step(trace: StateTrace, total: int) -> np.ndarray:
    """Forward-fill a state's updates to every global sub-step: (puzzles, total, seq_len)."""
    latest = np.searchsorted(trace.sub_index, np.arange(total), side="right") - 1
    return trace.tokens[:, latest]


def decode(model: HookedAIR, inputs: np.ndarray, labels: Optional[np.ndarray] = None,
           batch_size: int = 64, progress: bool = True, puzzle_identifiers: Optional[np.ndarray] = None
           ) -> DecodeResult:
    """Decoded z_H and z_L at every sub-step of a full rollout over ``inputs`` (puzzles, seq_len)."""
    cfg = model.cfg
    total = cfg.halt_max_steps * cfg.sub_steps
    traces = trace_states(model, inputs, STATES, batch_size=batch_size, progress=progress,
                          puzzle_identifiers=puzzle_identifiers)
    grids = np.stack([per_sub_step(traces[s], total) for s in STATES], axis=2)
    initial = np.stack([traces[s].tokens[:, 0] for s in STATES], axis=1)
    task = get_task(cfg.task)
    table = decode_table(grids, initial, task, cfg.schedule, labels)
    return DecodeResult(table, grids, task, cfg.schedule, np.asarray(inputs), labels)


def decode_table(grids: np.ndarray, initial: np.ndarray, task: Task, schedule: Sequence[str],
                 labels: Optional[np.ndarray]) -> pd.DataFrame:
    """One row per puzzle x global sub-step x state, from decoded grids (vectorised)."""
    puzzles, total = grids.shape[:2]
    previous = np.concatenate([initial[:, None], grids[:, :-1]], axis=1)
    columns = {
        "undecided": task.undecided_mask(grids).mean(-1),
        "changes": (grids != previous).sum(-1),
    }
    if labels is not None:
        correct = grids == np.asarray(labels)[:, None, None, :]
        columns["accuracy"] = correct.mean(-1)
        columns["exact"] = correct.all(-1)
    index = np.arange(total)
    frame = pd.DataFrame({
        "puzzle": np.repeat(np.arange(puzzles), total * len(STATES)),
        "index": np.tile(np.repeat(index, len(STATES)), puzzles),
        "state": np.tile(STATES, puzzles * total),
    })
    frame["step"] = frame["index"] // len(schedule)
    frame["sub"] = frame["index"] % len(schedule)
    frame["kind"] = np.asarray(schedule)[frame["sub"]]
    for name, values in columns.items():
        frame[name] = values.reshape(-1)
    return frame[["puzzle", "step", "sub", "index", "kind", "state", *columns]]


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per state and ACT step: mean undecided fraction, accuracy, exact rate, total token changes."""
    metrics = [c for c in ("undecided", "accuracy", "exact") if c in table]
    grouped = table.groupby(["state", "step"])
    out = grouped[metrics].mean()
    out["changes"] = grouped["changes"].sum() / table["puzzle"].nunique()
    return out.reset_index()


def render_rollout(result: DecodeResult, puzzle: int, steps: Sequence[int]) -> str:
    """Text: the input, the label and the decoded z_H / z_L after each sub-step of ``steps``."""
    task, lines = result.task, []
    lines.append(f"input:\n{task.render(result.inputs[puzzle])}")
    if result.labels is not None:
        lines.append(f"label:\n{task.render(result.labels[puzzle])}")
    width = len(result.schedule)
    for step in steps:
        for sub, kind in enumerate(result.schedule):
            index = step * width + sub
            blocks = [task.render(result.grids[puzzle, index, s]).splitlines() for s in range(len(STATES))]
            text_width = max(len(line) for line in blocks[0])
            lines.append(f"step {step} sub {sub} ({kind}-update)")
            lines.append(f"{STATES[0]:<{text_width}}    {STATES[1]}")
            lines.extend(f"{a:<{text_width}}    {b}" for a, b in zip(*blocks))
    return "\n".join(lines)


@styled
def plot_decode(result: DecodeResult, puzzle: int, steps: Sequence[int], path: Path) -> list[Path]:
    """Figures 2-5: for each chosen ACT step, a row of z_H and a row of z_L over its sub-steps,
    with a colour legend."""
    width = len(result.schedule)
    labels = None if result.labels is None else result.labels[puzzle]
    fig, axes = plt.subplots(2 * len(steps), width, figsize=(1.25 * width + 0.5, 2.6 * len(steps) + 0.8),
                             squeeze=False, layout="constrained")
    for r, step in enumerate(steps):
        for sub, kind in enumerate(result.schedule):
            for s, state in enumerate(STATES):
                ax = axes[2 * r + s, sub]
                draw_grid(ax, result.task, result.grids[puzzle, step * width + sub, s], labels,
                          title=f"sub-step {sub} ({kind})" if r == 0 and s == 0 else "")
                if sub == 0:
                    ax.set_ylabel(f"{state}, ACT step {step}")
    fig.suptitle(f"Puzzle {puzzle}: z_H and z_L decoded by lm_head (argmax) after each sub-step")
    handles = token_legend(result.task, marks_wrong=labels is not None)
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    return save_figure(fig, path)


def write_viewer(result: DecodeResult, puzzle: int, path: Path) -> Path:
    """An interactive HTML viewer (plotly): z_H and z_L heatmaps with a slider over every sub-step."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from .render import token_colours

    task, side, width = result.task, result.task.side, len(result.schedule)
    colours = token_colours(task)
    scale = [[t / (task.vocab_size - 1), c] for t, c in enumerate(colours)] if task.vocab_size > 1 else colours
    chars = np.array(["·"] + list(task.alphabet))

    def heatmap(grid: np.ndarray) -> go.Heatmap:
        grid = grid.reshape(side, side)
        return go.Heatmap(z=grid, text=chars[grid], texttemplate="%{text}" if side <= 12 else None,
                          colorscale=scale, zmin=0, zmax=task.vocab_size - 1, showscale=False)

    total = result.grids.shape[1]
    fig = make_subplots(rows=1, cols=2, subplot_titles=STATES)
    for s in range(len(STATES)):
        fig.add_trace(heatmap(result.grids[puzzle, 0, s]), row=1, col=s + 1)
    fig.frames = [go.Frame(data=[heatmap(result.grids[puzzle, g, s]) for s in range(len(STATES))], name=str(g))
                  for g in range(total)]
    steps = [{"label": f"{g // width}.{g % width}{result.schedule[g % width]}", "method": "animate",
              "args": [[str(g)], {"mode": "immediate", "frame": {"duration": 0, "redraw": True}}]}
             for g in range(total)]
    fig.update_layout(sliders=[{"steps": steps, "currentvalue": {"prefix": "step.sub: "}}],
                      title=f"Rollout of puzzle {puzzle}", height=520, width=900)
    fig.update_yaxes(autorange="reversed")
    target = Path(path).with_suffix(".html")
    with atomic_path(target) as tmp:
        fig.write_html(tmp, include_plotlyjs=True)
    return target
