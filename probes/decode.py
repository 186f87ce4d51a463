"""Decode (logit lens): what z_H and z_L "say" after every sub-step of every ACT step.

``decode(model, inputs, labels)`` returns a :class:`DecodeResult`: a tidy table with one row per
puzzle x sub-step x state (fraction undecided, accuracy against the label, exact match, tokens
changed since the previous sub-step) and the decoded grids themselves. ``plot_decode`` draws
Figures 2-5 of the paper (z_H / z_L grids over sub-steps) and ``write_viewer`` an interactive
HTML rollout viewer: the givens and the solution beside z_H and z_L, with a slider over sub-steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import pandas as pd
import matplotlib.pyplot as plt

from air_interp.io import atomic_path
from air_interp.model import HookedAIR
from air_interp.output import save_figure, styled
from air_interp.tasks import Task, get_task

from .lens import STATES, StateTrace, model_states, trace_states
from .render import (MAX_PRINTED_SIDE, TEXT_COLOUR, WRONG_COLOUR, draw_grid, printed_characters, token_colours,
                     token_legend, wrong_cells)

if TYPE_CHECKING:  # plotly is imported by the viewer only
    import plotly.graph_objects as go


@dataclass
class DecodeResult:
    """``grids[p, g, s]``: decoded state ``states[s]`` of puzzle ``p`` after global sub-step ``g``."""

    table: pd.DataFrame
    grids: np.ndarray  # (puzzles, total_sub_steps, states, seq_len) uint8
    task: Task
    schedule: tuple[str, ...]  # the kind ('L' / 'H') of each sub-step of an ACT step
    inputs: np.ndarray
    labels: Optional[np.ndarray]
    states: tuple[str, ...] = STATES
    writes: tuple[str, ...] = ()  # the state each sub-step writes (default: z_<kind>, as in AIR)

    def first_update(self, state: str) -> int:
        """The sub-step of an ACT step at which ``state`` is first written."""
        return (self.writes or tuple(f"z_{kind}" for kind in self.schedule)).index(state)


def per_sub_step(trace: StateTrace, total: int) -> np.ndarray:
    """Forward-fill a state's updates to every global sub-step: (puzzles, total, seq_len)."""
    latest = np.searchsorted(trace.sub_index, np.arange(total), side="right") - 1
    return trace.tokens[:, latest]


def decode(model: HookedAIR, inputs: np.ndarray, labels: Optional[np.ndarray] = None,
           batch_size: int = 64, progress: bool = True, puzzle_identifiers: Optional[np.ndarray] = None
           ) -> DecodeResult:
    """Every state (z_H and z_L; each of TRM's seven in hier6) decoded at every sub-step of a full
    rollout over ``inputs`` (puzzles, seq_len)."""
    cfg, states = model.cfg, model_states(model)
    total = cfg.halt_max_steps * cfg.sub_steps
    traces = trace_states(model, inputs, states, batch_size=batch_size, progress=progress,
                          puzzle_identifiers=puzzle_identifiers)
    grids = np.stack([per_sub_step(traces[s], total) for s in states], axis=2)
    initial = np.stack([traces[s].tokens[:, 0] for s in states], axis=1)
    task = get_task(cfg.task)
    table = decode_table(grids, initial, task, cfg.kinds, labels, states)
    return DecodeResult(table, grids, task, cfg.kinds, np.asarray(inputs), labels, states,
                        tuple(update.writes for update in cfg.schedule))


def decode_table(grids: np.ndarray, initial: np.ndarray, task: Task, schedule: Sequence[str],
                 labels: Optional[np.ndarray], states: Sequence[str] = STATES) -> pd.DataFrame:
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
        "puzzle": np.repeat(np.arange(puzzles), total * len(states)),
        "index": np.tile(np.repeat(index, len(states)), puzzles),
        "state": np.tile(np.asarray(states), puzzles * total),
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
    """Text: the input, the label and every decoded state, side by side, after each sub-step of ``steps``."""
    task, lines = result.task, []
    lines.append(f"input:\n{task.render(result.inputs[puzzle])}")
    if result.labels is not None:
        lines.append(f"label:\n{task.render(result.labels[puzzle])}")
    width = len(result.schedule)
    for step in steps:
        for sub, kind in enumerate(result.schedule):
            index = step * width + sub
            blocks = [task.render(result.grids[puzzle, index, s]).splitlines() for s in range(len(result.states))]
            text_width = max(len(line) for block in blocks for line in block)
            lines.append(f"step {step} sub {sub} ({kind}-update)")
            lines.append("    ".join(f"{state:<{text_width}}" for state in result.states).rstrip())
            lines.extend("    ".join(f"{row:<{text_width}}" for row in rows).rstrip() for rows in zip(*blocks))
    return "\n".join(lines)


@styled
def plot_decode(result: DecodeResult, puzzle: int, steps: Sequence[int], path: Path) -> list[Path]:
    """Figures 2-5: for each chosen ACT step, one row per state (z_H, z_L) over its sub-steps,
    with a colour legend."""
    width, n_states = len(result.schedule), len(result.states)
    labels = None if result.labels is None else result.labels[puzzle]
    fig, axes = plt.subplots(n_states * len(steps), width, squeeze=False, layout="constrained",
                             figsize=(1.25 * width + 0.5, 1.3 * n_states * len(steps) + 0.8))
    for r, step in enumerate(steps):
        for sub, kind in enumerate(result.schedule):
            for s, state in enumerate(result.states):
                ax = axes[n_states * r + s, sub]
                draw_grid(ax, result.task, result.grids[puzzle, step * width + sub, s], labels,
                          title=f"sub-step {sub} ({kind})" if r == 0 and s == 0 else "")
                if sub == 0:
                    ax.set_ylabel(f"{state}, ACT step {step}")
    fig.suptitle(f"Puzzle {puzzle}: {_listed(result.states)} decoded by lm_head (argmax) after each sub-step")
    handles = token_legend(result.task, marks_wrong=labels is not None)
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    return save_figure(fig, path)


def _listed(states: Sequence[str]) -> str:
    """``z_H and z_L``; ``z_H, z_L1, ... and z_L6``."""
    return " and ".join(states) if len(states) <= 2 else f"{', '.join(states[:-1])} and {states[-1]}"


def sub_step_label(step: int, sub: int, kind: str) -> str:
    """How every decode figure names the state after a sub-step (the PNG's row and column titles)."""
    return f"ACT step {step}, sub-step {sub} ({kind})"


VIEWER_PANEL = 260  # pixels per grid


def write_viewer(result: DecodeResult, puzzle: int, path: Path) -> Path:
    """An interactive HTML viewer (plotly, one self-contained file): the puzzle's givens and its
    solution beside z_H and z_L, with a slider over every sub-step, in the PNG's colours: digits
    that are not the solution's red, every such cell framed red (mazes have no digits), a legend."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    task, width = result.task, len(result.schedule)
    labels = None if result.labels is None else result.labels[puzzle]
    fixed = {"givens": result.inputs[puzzle], **({} if labels is None else {"solution": labels})}
    panels = [*fixed, *result.states]
    margin = {"l": 70, "r": 230, "t": 80, "b": 130}
    gap = 30
    spacing = gap / (len(panels) * VIEWER_PANEL + (len(panels) - 1) * gap)
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=panels, horizontal_spacing=spacing)
    for col, grid in enumerate(fixed.values(), start=1):
        fig.add_traces(grid_traces(task, grid, None), rows=1, cols=col)
    for col in range(1, len(panels) + 1):
        add_grid_lines(fig, task, col)
    first_state_trace = len(fig.data)
    for s in range(len(result.states)):
        fig.add_traces(grid_traces(task, result.grids[puzzle, 0, s], labels), rows=1, cols=len(fixed) + s + 1)
    state_traces = list(range(first_state_trace, len(fig.data)))
    fig.add_traces(legend_traces(task, labels is not None))
    total = result.grids.shape[1]
    fig.frames = [go.Frame(name=str(g), traces=state_traces,
                           data=[t for s in range(len(result.states)) for t in grid_traces(task, result.grids[puzzle, g, s],
                                                                                     labels)])
                  for g in range(total)]
    steps = [{"label": sub_step_label(g // width, g % width, result.schedule[g % width]), "method": "animate",
              "args": [[str(g)], {"mode": "immediate", "frame": {"duration": 0, "redraw": True},
                                  "transition": {"duration": 0}}]}
             for g in range(total)]
    fig.update_layout(
        sliders=[{"steps": steps, "active": 0, "pad": {"t": 20}, "font": {"size": 10},
                  "currentvalue": {"prefix": "after ", "font": {"size": 14}}}],
        title=f"Puzzle {puzzle}: {_listed(result.states)} decoded by lm_head (argmax) after each sub-step",
        width=margin["l"] + margin["r"] + len(panels) * VIEWER_PANEL + (len(panels) - 1) * gap,
        height=margin["t"] + margin["b"] + VIEWER_PANEL, margin=margin, plot_bgcolor="white",
        legend={"itemclick": False, "itemdoubleclick": False})
    fig.update_xaxes(range=[-0.5, task.side - 0.5], visible=False)
    fig.update_yaxes(range=[task.side - 0.5, -0.5], visible=False)
    target = Path(path).with_suffix(".html")
    with atomic_path(target) as tmp:
        fig.write_html(tmp, include_plotlyjs=True, auto_play=False)  # plotly's default plays every frame on load
    return target


def grid_traces(task: Task, tokens: np.ndarray, labels: Optional[np.ndarray]) -> list[go.Heatmap | go.Scatter]:
    """One grid of the viewer: its colours, its printed digits (red where wrong) and red frames on
    the cells that are not the solution's (none without ``labels``)."""
    import plotly.graph_objects as go

    side = task.side
    grid = np.asarray(tokens).reshape(side, side)
    wrong = np.zeros_like(grid, dtype=bool) if labels is None else wrong_cells(task, grid, labels.reshape(side, side))
    colours = token_colours(task)
    chars = printed_characters(task)[grid] if side <= MAX_PRINTED_SIDE else np.full(grid.shape, "")
    rows, cols = np.nonzero(chars != "")
    framed_rows, framed_cols = np.nonzero(wrong)
    return [
        go.Heatmap(z=grid, zmin=0, zmax=task.vocab_size - 1, showscale=False, hoverinfo="skip",
                   colorscale=[[t / (task.vocab_size - 1), c] for t, c in enumerate(colours)]),
        go.Scatter(x=cols, y=rows, mode="text", text=chars[rows, cols], hoverinfo="skip", showlegend=False,
                   textfont={"size": 14, "color": np.where(wrong[rows, cols], WRONG_COLOUR, TEXT_COLOUR)}),
        *(go.Scatter(x=framed_cols, y=framed_rows, mode="markers", hoverinfo="skip", showlegend=False,
                     marker={"symbol": "square-open", "size": 0.75 * VIEWER_PANEL / side, "color": colour,
                             "line": {"width": line}})
          for colour, line in (("#ffffff", 5), (WRONG_COLOUR, 2))),  # a white halo keeps it seen on any colour
    ]


def add_grid_lines(fig: go.Figure, task: Task, col: int) -> None:
    """The PNG's lines on the grid in subplot ``col``: its border and the task's blocks (Sudoku boxes)."""
    edges = range(0, task.side + 1, task.block) if task.block else (0, task.side)
    for edge in edges:
        for x, y in (((-0.5, task.side - 0.5), (edge - 0.5,) * 2), ((edge - 0.5,) * 2, (-0.5, task.side - 0.5))):
            fig.add_shape(type="line", x0=x[0], x1=x[1], y0=y[0], y1=y[1], line={"color": "#555555", "width": 1},
                          row=1, col=col)


def legend_traces(task: Task, marks_wrong: bool) -> list[go.Scatter]:
    """The PNG's colour legend as plotly legend entries (markers with no data), and the red frame."""
    import plotly.graph_objects as go
    from matplotlib.colors import to_hex

    entries = [(handle.get_label(), "square", to_hex(handle.get_facecolor()))
               for handle in token_legend(task, marks_wrong)]
    if marks_wrong:
        entries.append(("red frame: not the solution's", "square-open", WRONG_COLOUR))
    return [go.Scatter(x=[None], y=[None], mode="markers", name=name, hoverinfo="skip",
                       marker={"symbol": symbol, "size": 14, "color": colour, "line": {"color": "#555555", "width": 1}})
            for name, symbol, colour in entries]
