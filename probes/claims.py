"""The paper's qualitative claims, checked one by one on the tables ``air-interp figures`` makes.

Each check reads the tidy tables of a model (the decode summary, the freeze table, the attention
table; and the model card's ``exact_by_step`` when there is one) and returns
a row: the claim, the model, the number it rests on, and a verdict, ``holds`` / ``does not hold``
/ ``unclear``. "Unclear" means the number cannot decide it: a difference inside two standard errors
or a bootstrap interval that straddles 0, or a model too weak for the claim to be testable.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import pandas as pd

from air_interp.tasks import get_task

HOLDS, FAILS, UNCLEAR = "holds", "does not hold", "unclear"


def _row(claim: str, model: str, number: str, verdict: str) -> dict[str, str]:
    return {"claim": claim, "model": model, "number": number, "verdict": verdict}


def _compare(difference: float, sem: float, expected_sign: int) -> str:
    """``holds`` when ``difference`` has the expected sign beyond two standard errors."""
    if abs(difference) <= 2 * sem:
        return UNCLEAR
    return HOLDS if difference * expected_sign > 0 else FAILS


def decode_claims(name: str, summary: pd.DataFrame) -> list[dict[str, str]]:
    """z_H never decodes to the undecided token; z_L does at some sub-steps."""
    undecided = summary.groupby("state")["undecided"].max()
    return [
        _row("z_H never decodes to the undecided token", name,
             f"max fraction undecided in z_H {undecided['z_H']:.4f}", HOLDS if undecided["z_H"] == 0 else FAILS),
        _row("z_L decodes to the undecided token at some sub-steps", name,
             f"max fraction undecided in z_L {undecided['z_L']:.3f}", HOLDS if undecided["z_L"] > 0 else FAILS),
    ]


def freeze_claims(name: str, table: pd.DataFrame, task: str = "sudoku") -> list[dict[str, str]]:
    """The undecided set moves; freezing one state moves the other's content changes the way the
    paper's table does for this task (``Task.paper_freeze_directions``); frozen rollouts solve nothing."""
    rows = table.set_index("freeze")
    normal = rows.loc["none"]
    flips, flips_sem = normal["z_L_mask_flips_mean"], normal["z_L_mask_flips_sem"]
    claims = [_row("the undecided set moves (z_L mask flips per rollout)", name,
                   f"{flips:.1f} ± {flips_sem:.1f}", HOLDS if flips > 2 * flips_sem else
                   (FAILS if flips == 0 else UNCLEAR))]
    directions = get_task(task).paper_freeze_directions
    for frozen, observed in (("z_H", "z_L"), ("z_L", "z_H")):
        if frozen not in rows.index:
            continue
        sign = directions[frozen]
        column = f"{observed}_content_changes"
        before, after = normal[f"{column}_mean"], rows.loc[frozen, f"{column}_mean"]
        sem = (normal[f"{column}_sem"] ** 2 + rows.loc[frozen, f"{column}_sem"] ** 2) ** 0.5
        claims.append(_row(f"freezing {frozen} gives {'more' if sign > 0 else 'fewer'} {observed} content changes",
                           name, f"{before:.1f} -> {after:.1f}", _compare(after - before, sem, sign)))
    frozen_exact = rows.drop(index="none")["exact_mean"]
    claims.append(_row("a frozen state leaves nothing solved (0% exact)", name,
                       f"normal {normal['exact_mean']:.1%}, frozen " +
                       ", ".join(f"{k} {v:.1%}" for k, v in frozen_exact.items()),
                       UNCLEAR if normal["exact_mean"] == 0 else (HOLDS if (frozen_exact == 0).all() else FAILS)))
    return claims


def locality_metric(task: str) -> str:
    """The locality contrast of a task: Sudoku Δnbr, Maze Δρ at N4."""
    return get_task(task).attention_spec.contrasts[0].column


def locality(table: pd.DataFrame, task: str) -> pd.DataFrame:
    """The locality contrast per layer, of control queries (as the paper reports it), or of all
    queries when no query is a control (a weak model leaves conflicts next to every blank)."""
    rows = table[table["metric"] == locality_metric(task)]
    control = rows[rows["cls"] == "control"]
    return (control if len(control) else rows[rows["cls"] == "all"]).sort_values("layer")


# A third of the smallest locality contrast the paper reports (Sudoku Δnbr 0.015 at layer 1): a layer
# whose bootstrap CI lies inside ±NEGLIGIBLE_CONTRAST shows no L-vs-H difference, whatever its sign.
NEGLIGIBLE_CONTRAST = 0.005


def attention_claims(name: str, table: pd.DataFrame, task: str) -> list[dict[str, str]]:
    """L attends more locally than H at every layer: it holds when the bootstrap CI is above 0 at
    every layer, and does not when some layer's CI is below 0 or inside ±``NEGLIGIBLE_CONTRAST``
    (a symmetric model's L and H maps differ only by rounding, which a tight CI can call signed)."""
    rows = locality(table, task)
    queries = "control" if (rows["cls"] == "control").any() else "all"
    claim = f"L attends more locally than H at every layer ({locality_metric(task)} > 0, {queries} queries)"
    if rows.empty:
        return [_row(claim, name, "no queries", UNCLEAR)]
    number = ", ".join(f"layer {r.layer} {r.mean:+.3f} [{r.boot_ci_low:+.3f}, {r.boot_ci_high:+.3f}]"
                       for r in rows.itertuples())
    negligible = (rows["boot_ci_low"] > -NEGLIGIBLE_CONTRAST) & (rows["boot_ci_high"] < NEGLIGIBLE_CONTRAST)
    if (rows["boot_ci_high"] < 0).any() or negligible.any():
        verdict = FAILS
    else:
        verdict = HOLDS if (rows["boot_ci_low"] > 0).all() else UNCLEAR
    return [_row(claim, name, number, verdict)]


def recurrence_claims(name: str, card: dict) -> list[dict[str, str]]:
    """The model gets better over ACT steps rather than solving everything in the first."""
    by_step = card["test"]["exact_by_step"]
    number = f"exact after ACT step 1: {by_step[0]:.1%}, after step {len(by_step)}: {by_step[-1]:.1%}"
    verdict = UNCLEAR if by_step[-1] == 0 else HOLDS if by_step[-1] > by_step[0] else FAILS
    return [_row("exact accuracy rises over ACT steps (the recurrence matters)", name, number, verdict)]


MIN_UNDECIDED_GAP = 0.01  # 1% of cells: below it a model shows no z_L-vs-z_H undecided split


def _undecided_gap(decode: pd.DataFrame) -> float:
    """How much more of z_L than of z_H decodes to undecided, at its peak over sub-steps."""
    peak = decode.groupby("state")["undecided"].max()
    return float(peak["z_L"] - peak["z_H"])


def _locality_split(attention: pd.DataFrame, task: str) -> tuple[float, bool]:
    """Mean |locality contrast| over layers, and whether some layer's bootstrap CI excludes 0."""
    rows = locality(attention, task)
    excludes_zero = bool(((rows["boot_ci_low"] > 0) | (rows["boot_ci_high"] < 0)).any())
    return float(rows["mean"].abs().mean()), excludes_zero


def split_claims(asymmetric: str, symmetric: str, tables: dict[str, dict[str, pd.DataFrame]], task: str
                 ) -> list[dict[str, str]]:
    """The symmetric model loses the split: where the asymmetric model separates z_L from z_H (an
    undecided gap of at least ``MIN_UNDECIDED_GAP``, a locality contrast whose CI excludes 0), the
    symmetric model's separation is less than half as large.

    Only the signs of a split the asymmetric model shows can be lost, so a measure on which it shows
    none is not used, and both models must solve something: an untrained control "loses" every
    split trivially. No usable measure, or a weak model, is ``unclear``.
    """
    gaps = [_undecided_gap(tables[name]["decode"]) for name in (asymmetric, symmetric)]
    (contrast_a, shown), (contrast_s, _) = (_locality_split(tables[name]["attention"], task)
                                            for name in (asymmetric, symmetric))
    number = (f"undecided gap z_L - z_H {gaps[0]:.3f} vs {gaps[1]:.3f}; mean absolute locality contrast "
              f"{contrast_a:.3f} vs {contrast_s:.3f} (asymmetric vs symmetric)")
    measures = []
    if gaps[0] >= MIN_UNDECIDED_GAP:
        measures.append(abs(gaps[1]) < 0.5 * gaps[0])
    if shown:
        measures.append(contrast_s < 0.5 * contrast_a)
    exact = [tables[name]["freeze"].set_index("freeze").loc["none", "exact_mean"] for name in (asymmetric, symmetric)]
    if min(exact) == 0:
        number += f"; exact {exact[0]:.1%} vs {exact[1]:.1%}: a model that solves nothing cannot decide it"
    if min(exact) == 0 or not measures or pd.isna(contrast_s):
        verdict = UNCLEAR
    else:
        verdict = HOLDS if all(measures) else FAILS if not any(measures) else UNCLEAR
    return [_row("the symmetric model loses the split", f"{asymmetric} vs {symmetric}", number, verdict)]


def check_claims(tables: dict[str, dict[str, pd.DataFrame]], models: dict[str, str], pairs: list[tuple[str, str]],
                 cards: Optional[dict[str, Path]] = None) -> pd.DataFrame:
    """Every claim for every model (``models``: name -> task) and every (asymmetric, symmetric) pair,
    from each model's ``decode`` summary, ``freeze`` table and ``attention`` table (``tables``);
    ``cards`` adds the recurrence claim from model cards."""
    rows = []
    for name, task in models.items():
        rows += decode_claims(name, tables[name]["decode"])
        rows += freeze_claims(name, tables[name]["freeze"], task)
        rows += attention_claims(name, tables[name]["attention"], task)
        if cards and name in cards:
            rows += recurrence_claims(name, json.loads(Path(cards[name]).read_text()))
    for asymmetric, symmetric in pairs:
        rows += split_claims(asymmetric, symmetric, tables, models[asymmetric])
    return pd.DataFrame(rows)
