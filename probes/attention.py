"""Attention contrasts: does the L-update attend more locally than the H-update? (docs/analyses.md)

At chosen ACT steps (the paper's 2, 4, ..., 14, 15 of 16; see :func:`paper_steps`) the first L sub-step and the first H sub-step
of the segment are compared, layer by layer (any two update kinds: ``AttentionOptions.kinds``;
the contrasts are then "first kind minus second" wherever L - H is written below). Attention probabilities are taken among content
positions (prefix positions dropped, rows renormalised) and, per query cell, contrasts are
averaged over heads:

* locality: mass_L(N) - mass_H(N) on the task's neighbourhoods (Sudoku Δnbr on row ∪ column ∪
  box; Maze Δρ at N4 / N8 / 5x5, divided by the neighbourhood size),
* Δent = Hn(p_H) - Hn(p_L), the entropy normalised by log(#keys),
* Δviol = mass_L(V) - mass_H(V), V the cells wrong in the decoded z_H (the state the later of
  the two updates writes; Sudoku: rule conflicts,
  over the whole board; Maze: differs from the label, restricted to N4 ∩ V).

Choices where the public scripts are questionable are options, defaults as published:
``violation_timing="after"`` takes V from z_H after the H-update being measured (the L map saw
the z_H from before it; ``"before"`` uses that one), ``violation_scope`` switches between board
and neighbourhood, ``include_self`` the query in its own neighbourhood. Every row is one
(puzzle, step, layer, query); :func:`summarize` reports, per layer and query class, the mean, the
row-level 95% CI the paper uses, a puzzle-level bootstrap 95% CI (rows within a puzzle are
correlated, so the puzzle is the right unit) and the fraction positive. One batched rollout
yields every layer at once (the public scripts re-run the rollout per layer and per puzzle).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from air_interp.allowed import Allowed
from air_interp.hooks import Site
from air_interp.errors import AirInterpError
from air_interp.model import HookedAIR
from air_interp.output import save_figure, styled
from air_interp.tasks import AttentionSpec, Task, get_task
from air_interp.trace import Trace, trace_batches

from .lens import puzzle_batch
from .render import draw_grid, token_legend

PAPER_STEPS = (2, 4, 6, 8, 10, 12, 14, 15)
# A 95% percentile interval from B resamples has its ends at the 2.5% and 97.5% order statistics:
# below 100 resamples fewer than 3 resamples lie beyond each end, so the ends are noise (one
# resample gives lo = hi). 1000, the default, puts 25 beyond each end.
MIN_BOOTSTRAP = 100
BOOTSTRAP_HELP = (f"puzzle-bootstrap resamples of the 95%% CI (default 1000; at least {MIN_BOOTSTRAP}: with fewer, "
                  "fewer than 3 resamples lie beyond each end of the interval, whose ends are then noise)")
_BOOTSTRAP = Allowed(int, low=MIN_BOOTSTRAP)


def check_bootstrap(n_boot: object, label: str = "--bootstrap") -> int:
    """The number of bootstrap resamples, at least ``MIN_BOOTSTRAP`` (a one-line AirInterpError otherwise)."""
    return _BOOTSTRAP.check(n_boot, f"{label} (bootstrap resamples of the 95% CI)")


def paper_steps(n_steps: int) -> tuple[int, ...]:
    """The paper's ACT steps that a model of ``n_steps`` ACT steps has, and its last step (the
    paper's 15): for 16 steps exactly the paper's, for 8 steps 2, 4, 6, 7."""
    return tuple(sorted({s for s in PAPER_STEPS if s < n_steps} | {n_steps - 1}))


@dataclass(frozen=True)
class AttentionOptions:
    steps: Optional[tuple[int, ...]] = None  # None: paper_steps(halt_max_steps)
    layers: Optional[tuple[int, ...]] = None  # None: every layer
    violation_timing: str = "after"  # "after" (as published) or "before" the H-update
    violation_scope: Optional[str] = None  # None: the task's published choice; "board" / "neighbourhood"
    include_self: Optional[bool] = None  # None: the task's published choice
    skip_sink_heads: bool = False  # True: leave heads parked on the prefix out (see content_pattern)
    kinds: tuple[str, str] = ("L", "H")  # the two update kinds compared: contrasts are first minus second

    def spec(self, task: Task) -> AttentionSpec:
        spec = task.attention_spec
        if self.violation_scope is not None:
            spec = replace(spec, violation_scope=self.violation_scope)
        if self.include_self is not None:
            spec = replace(spec, contrasts=tuple(replace(c, include_self=self.include_self) for c in spec.contrasts))
        return spec


def first_sub_steps(model: HookedAIR, kinds: Sequence[str] = ("L", "H")) -> tuple[int, ...]:
    """Index of the first sub-step of each of ``kinds`` in a segment (default: the first L and the first H)."""
    schedule = model.cfg.kinds
    missing = [kind for kind in kinds if kind not in schedule]
    if missing or len(set(kinds)) != len(kinds):
        raise AirInterpError(f"attention compares two different update kinds of the model ({', '.join(dict.fromkeys(schedule))}), "
                             f"got {', '.join(kinds)}")
    return tuple(schedule.index(kind) for kind in kinds)


MIN_CONTENT_MASS = 1e-6


def content_pattern(pattern: torch.Tensor, seq_len: int, skip_sink_heads: bool = False) -> torch.Tensor:
    """Attention among content positions (the last ``seq_len``), rows renormalised, fp32.

    As published, any positive content mass is renormalised, however tiny, and a row with no
    content mass at all becomes uniform. With ``skip_sink_heads`` a row with less than
    ``MIN_CONTENT_MASS`` on content is NaN instead, and head averages leave it out: such a head is
    parked on the prefix (an attention sink; trained models do this at layer 0), and
    renormalising turns rounding noise into a distribution that then weighs as much as a real one.
    """
    p = pattern[..., -seq_len:, -seq_len:].double()
    mass = p.sum(-1, keepdim=True)
    if skip_sink_heads:
        return torch.where(mass >= MIN_CONTENT_MASS, p / mass.clamp_min(MIN_CONTENT_MASS), torch.nan)
    return torch.where(mass > 0, p / torch.where(mass > 0, mass, 1.0), 1.0 / seq_len)


def normalised_entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy of each row divided by log(#keys)."""
    return -(p * p.clamp_min(1e-30).log()).sum(-1) / math.log(p.shape[-1])


class _Collector:
    """Reduces each traced chunk's attention patterns to one row per query."""

    def __init__(self, model: HookedAIR, options: AttentionOptions, layers: Sequence[int]) -> None:
        self.model, self.options, self.layers = model, options, layers
        self.task = get_task(model.cfg.task)
        self.spec = options.spec(self.task)
        self.masks = {c.column: torch.as_tensor(self.task.neighbourhood_mask(c.kind, c.include_self)).float()
                      for c in self.spec.contrasts}
        self.divisors = {c.column: float(self.task.nominal_size(c.kind)) if c.density else 1.0 for c in self.spec.contrasts}
        self.class_mask = torch.as_tensor(self.task.neighbourhood_mask(self.spec.class_kind))
        self.subs = first_sub_steps(model, options.kinds)
        last = max(self.subs)  # the patterns of both are in when the later update writes its state
        self.last, self.written = last, model.cfg.schedule[last].writes
        self.sites = [f"layer.{layer}.attn.hook_pattern" for layer in layers]

    def keeps(self, name: str, site: Site) -> bool:
        """What the trace keeps: the state the later update writes, and the patterns of the two updates."""
        assert self.options.steps is not None  # attention_contrasts resolves them
        return name == self.written or (site.step in self.options.steps and site.sub in self.subs)

    def reduce(self, name: str, pattern: torch.Tensor) -> torch.Tensor:
        """A pattern as the contrasts need it: the head-averaged content pattern, with each query's
        head-averaged normalised entropy as one more key column."""
        p = content_pattern(pattern, self.model.cfg.seq_len, self.options.skip_sink_heads)
        return torch.cat((p.nanmean(1), normalised_entropy(p).nanmean(1)[..., None]), dim=-1)

    def rows(self, part: Trace, rows: slice, inputs: np.ndarray, labels: np.ndarray) -> list[pd.DataFrame]:
        decoded, index = part.decode(self.written), part.updates(self.written)
        tables = []
        assert self.options.steps is not None
        for step in self.options.steps:
            update = int(np.flatnonzero((index["step"] == step).to_numpy() & (index["sub"] == self.last).to_numpy())[0])
            if self.options.violation_timing == "after":
                state = decoded[update]
            else:  # the state's value before this update: its previous update's, or its reset value
                state = decoded[update - 1] if update else part.decode_reset(self.written)
            violated = torch.as_tensor(self.task.violation_mask(state.numpy(), labels))
            for layer, site in zip(self.layers, self.sites):
                kept = [part.site(site, step=step, sub=sub)[0] for sub in self.subs]
                tables.append(self._rows(step, layer, [(k[..., :-1], k[..., -1]) for k in kept], violated,
                                         inputs, labels, rows.start))
        return tables

    def _rows(self, step: int, layer: int, kept: list[tuple[torch.Tensor, torch.Tensor]], violated: torch.Tensor,
              inputs: np.ndarray, labels: np.ndarray, offset: int) -> pd.DataFrame:
        (p_L, ent_L), (p_H, ent_H) = kept
        columns = {}
        for column, mask in self.masks.items():
            mass = lambda p: (p * mask).sum(-1) / self.divisors[column]  # noqa: E731
            columns[column] = mass(p_L) - mass(p_H)
        columns["d_ent"] = ent_H - ent_L
        scope = violated[:, None, :].float()
        if self.spec.violation_scope == "neighbourhood":
            scope = scope * self.class_mask[None].float()
        columns["d_viol"] = (p_L * scope).sum(-1) - (p_H * scope).sum(-1)
        adjacent = (self.class_mask[None] & violated[:, None, :]).any(-1)
        queries = torch.as_tensor(self.task.attention_queries(inputs, labels))
        puzzle, query = torch.nonzero(queries, as_tuple=True)
        return pd.DataFrame({
            "puzzle": (puzzle + offset).numpy(), "pair": "-".join(self.options.kinds), "step": step,
            "layer": layer, "query": query.numpy(),
            "cls": np.where(adjacent[puzzle, query].numpy(), self.spec.adjacent_label, "control"),
            **{name: values[puzzle, query].numpy() for name, values in columns.items()},
        })


def attention_contrasts(model: HookedAIR, inputs: np.ndarray, labels: np.ndarray,
                        options: AttentionOptions = AttentionOptions(), batch_size: int = 16,
                        progress: bool = True, puzzle_identifiers: Optional[np.ndarray] = None) -> pd.DataFrame:
    """One row per puzzle x step x layer x query cell with every contrast (see module docstring)."""
    cfg = model.cfg
    if cfg.mixer != "attention":
        raise AirInterpError(f"{cfg.variant} mixes positions with an MLP (mixer={cfg.mixer!r}): it has no attention "
                             "pattern to measure")
    first_sub_steps(model, options.kinds)
    requested = paper_steps(cfg.halt_max_steps) if options.steps is None else options.steps
    steps = tuple(s for s in requested if s < cfg.halt_max_steps)
    depth = min(cfg.layers_of(kind) for kind in options.kinds)
    layers = tuple(options.layers) if options.layers is not None else tuple(range(depth))
    bad = [layer for layer in layers if not 0 <= layer < depth]
    if bad or not steps:
        raise AirInterpError(f"no such layer {bad} or no ACT step below {cfg.halt_max_steps} among {requested}")
    collector = _Collector(model, replace(options, steps=steps), layers)
    inputs, labels = np.asarray(inputs), np.asarray(labels)
    batch = {"inputs": inputs} if puzzle_identifiers is None else {"inputs": inputs,
                                                                    "puzzle_identifiers": puzzle_identifiers}
    tables = []
    for rows, part in trace_batches(model, batch, [collector.written], collector.sites, keep="decode",
                                    batch_size=batch_size, progress=progress, at=collector.keeps,
                                    reduce=collector.reduce, desc="attention"):
        tables += collector.rows(part, rows, inputs[rows], labels[rows])
    return pd.concat(tables, ignore_index=True)


def metric_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table if c.startswith("d_")]


def summarize(table: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per layer x query class (and "all") x metric: n rows, n puzzles, mean, row-level 95% CI,
    puzzle-level bootstrap 95% CI and the fraction of rows above zero. NaN rows (every head of the
    L or H map on the prefix, see :func:`content_pattern`) are left out and not counted.
    ``n_boot`` is at least ``MIN_BOOTSTRAP`` (:func:`check_bootstrap`)."""
    n_boot = check_bootstrap(n_boot)
    rng = np.random.default_rng(seed)
    out = []
    for cls, part in [("all", table), *table.groupby("cls")]:
        for layer, layer_rows in part.groupby("layer"):
            for metric in metric_columns(table):
                rows = layer_rows[layer_rows[metric].notna()]
                if rows.empty:
                    continue
                puzzles, codes = np.unique(rows["puzzle"].to_numpy(), return_inverse=True)
                resample = rng.integers(0, len(puzzles), size=(n_boot, len(puzzles)))
                counts = np.bincount(codes, minlength=len(puzzles))
                values = rows[metric].to_numpy(dtype=np.float64)
                sums = np.bincount(codes, weights=values, minlength=len(puzzles))
                boot = sums[resample].sum(1) / np.maximum(counts[resample].sum(1), 1)
                half = 1.96 * values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
                out.append({
                    "layer": layer, "cls": cls, "metric": metric, "n_rows": len(values), "n_puzzles": len(puzzles),
                    "mean": values.mean(), "row_ci_low": values.mean() - half, "row_ci_high": values.mean() + half,
                    "boot_ci_low": np.quantile(boot, 0.025), "boot_ci_high": np.quantile(boot, 0.975),
                    "frac_positive": (values > 0).mean(),
                })
    return pd.DataFrame(out)


# What each contrast measures, as a figure says it: (panel title, y-axis label).
METRIC_LABELS = {
    "d_nbr": ("Δnbr = mass_L(N) − mass_H(N)\nN: row, column and box", "attention mass, L − H"),
    "d_rho_n4": ("Δρ N4 = (mass_L − mass_H) / 4\n4 neighbours", "mass per cell, L − H"),
    "d_rho_n8": ("Δρ N8 = (mass_L − mass_H) / 8\n8 neighbours", "mass per cell, L − H"),
    "d_rho_5x5": ("Δρ 5x5 = (mass_L − mass_H) / 24\n5x5 window", "mass per cell, L − H"),
    "d_ent": ("Δent = Hn(H) − Hn(L)\n> 0: L attends more narrowly", "normalised entropy, H − L"),
    "d_viol": ("Δviol = mass_L(V) − mass_H(V)\nV: wrong cells of the decoded z_H", "attention mass, L − H"),
}


@styled
def plot_contrasts(summary: pd.DataFrame, path: Path, title: str = "") -> list[Path]:
    """Figures 8-9: per-layer bars of every contrast for each query class, with puzzle-level
    bootstrap 95% confidence intervals as error bars."""
    metrics = list(dict.fromkeys(summary["metric"]))
    classes = [c for c in dict.fromkeys(summary["cls"]) if c != "all"]
    columns = min(len(metrics), 3)
    rows = -(-len(metrics) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.9 * columns + 0.4, 2.9 * rows + 0.9), squeeze=False,
                             layout="constrained")
    width = 0.8 / max(len(classes), 1)
    for ax, metric in zip(axes.flat, metrics):
        for i, cls in enumerate(classes):
            part = summary[(summary["metric"] == metric) & (summary["cls"] == cls)]
            x = part["layer"].to_numpy() + (i - (len(classes) - 1) / 2) * width
            # A percentile interval over few puzzles (or one rounding away from a constant) need not
            # contain the row mean; its bar then ends at the mean instead of crossing it.
            err = np.clip(np.stack([part["mean"] - part["boot_ci_low"], part["boot_ci_high"] - part["mean"]]), 0, None)
            ax.bar(x, part["mean"], width, yerr=err, capsize=2, label=cls, color=f"C{i}")
        ax.axhline(0, color="#444444", linewidth=0.7)
        panel_title, unit = METRIC_LABELS.get(metric, (metric, "L − H"))
        ax.set_title(panel_title)
        ax.set_ylabel(unit)
        ax.set_xlabel("layer")
        ax.set_xticks(sorted(summary["layer"].unique()))
        ax.yaxis.set_major_locator(plt.MaxNLocator(5))
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3), useMathText=True)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside lower center", ncol=len(classes),
               title="queries", frameon=False)
    n_puzzles = int(summary["n_puzzles"].max()) if len(summary) else 0
    caption = f"bars: mean over queries; error bars: puzzle-level bootstrap 95% CI ({n_puzzles} puzzles)"
    fig.suptitle(f"{title}\n{caption}" if title else caption)
    return save_figure(fig, path)


@styled
def plot_example(model: HookedAIR, inputs: np.ndarray, labels: np.ndarray, puzzle: int, layer: int,
                 head: int = 0, query: Optional[int] = None, steps: Optional[Sequence[int]] = None,
                 path: Path = Path("attention_example"), puzzle_identifiers: Optional[np.ndarray] = None) -> list[Path]:
    """Figures 10-13: one query, one head, the L map beside the H map, at several ACT steps (temporal
    persistence; default the paper's 2, 8, 15 of 16 steps, scaled: 2, 4, 7 of 8), with the query's
    neighbourhood outlined; one colour scale per row, with its colour bar."""
    task = get_task(model.cfg.task)
    queries = np.flatnonzero(task.attention_queries(inputs[puzzle], labels[puzzle]))
    query = int(queries[0]) if query is None else query
    n_steps = model.cfg.halt_max_steps
    steps = sorted({2, n_steps // 2, n_steps - 1}) if steps is None else steps
    steps = [s for s in steps if 0 <= s < n_steps]
    l_sub, h_sub = first_sub_steps(model)
    pattern_name = {(step, sub): Site(step, sub, layer=layer).name("attn.hook_pattern")
                    for step in steps for sub in (l_sub, h_sub)}
    with torch.inference_mode():
        _, cache = model.run_with_cache(puzzle_batch(model, inputs, puzzle_identifiers, slice(puzzle, puzzle + 1)),
                                        names_filter=list(pattern_name.values()))
    outline = task.neighbourhood_mask(task.attention_spec.class_kind)[query]
    fig, axes = plt.subplots(len(steps), 3, figsize=(7.6, 2.4 * len(steps) + 1.1), squeeze=False, layout="constrained")
    for row, step in enumerate(steps):
        draw_grid(axes[row, 0], task, inputs[puzzle], title="input" if row == 0 else "")
        _outline(axes[row, 0], np.arange(task.seq_len) == query, task.side, "#00e676", 1.5)
        axes[row, 0].set_ylabel(f"ACT step {step}")
        heats = [content_pattern(cache[pattern_name[(step, sub)]], model.cfg.seq_len)
                 [0, head, query].reshape(task.side, task.side).numpy() for sub in (l_sub, h_sub)]
        top = max(float(np.nanmax(h)) for h in heats)
        for col, (kind, heat) in enumerate(zip("LH", heats), start=1):
            ax = axes[row, col]
            image = ax.imshow(heat, cmap="magma", vmin=0, vmax=top)
            _outline(ax, outline, task.side, "#4fc3f7", 0.8)
            _outline(ax, np.arange(task.seq_len) == query, task.side, "#00e676", 1.5)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{kind}-update" if row == 0 else "")
        fig.colorbar(image, ax=axes[row, 1:], shrink=0.9, label="attention probability")
    fig.suptitle(f"Where query cell {query} attends: layer {layer}, head {head}, first L and first H sub-step\n"
                 "green: the query; blue: its neighbourhood")
    fig.legend(handles=token_legend(task, marks_wrong=False), loc="outside lower center",
               ncol=len(token_legend(task)), frameon=False, title="input")
    return save_figure(fig, path)


def _outline(ax: plt.Axes, cells: np.ndarray, side: int, colour: str, width: float) -> None:
    for cell in np.flatnonzero(cells):
        r, c = divmod(int(cell), side)
        ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor=colour, linewidth=width))
