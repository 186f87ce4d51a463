"""The paper's qualitative claims, checked one by one on the tables ``air-interp figures`` writes.

Each check reads the tidy tables of a model (``<name>_decode_summary.csv``, ``_freeze_table.csv``,
``_attention_table.csv``; and the model card's ``exact_by_step`` when there is one) and returns
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


def freeze_claims(name: str, table: pd.DataFrame) -> list[dict[str, str]]:
    """The undecided set moves; freezing one state changes the other's content changes as in the
    paper (freeze z_H: fewer z_L content changes; freeze z_L: more z_H content changes); frozen
    rollouts solve nothing."""
    rows = table.set_index("freeze")
    normal = rows.loc["none"]
    flips, flips_sem = normal["z_L_mask_flips_mean"], normal["z_L_mask_flips_sem"]
    claims = [_row("the undecided set moves (z_L mask flips per rollout)", name,
                   f"{flips:.1f} ± {flips_sem:.1f}", HOLDS if flips > 2 * flips_sem else
                   (FAILS if flips == 0 else UNCLEAR))]
    for frozen, observed, sign, direction in (("zH", "z_L", -1, "fewer"), ("zL", "z_H", 1, "more")):
        if frozen not in rows.index:
            continue
        column = f"{observed}_content_changes"
        before, after = normal[f"{column}_mean"], rows.loc[frozen, f"{column}_mean"]
        sem = (normal[f"{column}_sem"] ** 2 + rows.loc[frozen, f"{column}_sem"] ** 2) ** 0.5
        claims.append(_row(f"freezing z_{frozen[1]} gives {direction} {observed} content changes", name,
                           f"{before:.1f} -> {after:.1f}", _compare(after - before, sem, sign)))
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


def attention_claims(name: str, table: pd.DataFrame, task: str) -> list[dict[str, str]]:
    """L attends more locally than H at every layer (bootstrap CI above 0 at every layer)."""
    rows = locality(table, task)
    queries = "control" if (rows["cls"] == "control").any() else "all"
    claim = f"L attends more locally than H at every layer ({locality_metric(task)} > 0, {queries} queries)"
    if rows.empty:
        return [_row(claim, name, "no queries", UNCLEAR)]
    number = ", ".join(f"layer {r.layer} {r.mean:+.3f} [{r.boot_ci_low:+.3f}, {r.boot_ci_high:+.3f}]"
                       for r in rows.itertuples())
    verdict = HOLDS if (rows["boot_ci_low"] > 0).all() else FAILS if (rows["boot_ci_high"] < 0).any() else UNCLEAR
    return [_row(claim, name, number, verdict)]


def recurrence_claims(name: str, card: dict) -> list[dict[str, str]]:
    """The model gets better over ACT steps rather than solving everything in the first."""
    by_step = card["test"]["exact_by_step"]
    number = f"exact after ACT step 1: {by_step[0]:.1%}, after step {len(by_step)}: {by_step[-1]:.1%}"
    verdict = UNCLEAR if by_step[-1] == 0 else HOLDS if by_step[-1] > by_step[0] else FAILS
    return [_row("exact accuracy rises over ACT steps (the recurrence matters)", name, number, verdict)]


def split_claims(asymmetric: str, symmetric: str, tables: dict[str, dict[str, pd.DataFrame]], task: str
                 ) -> list[dict[str, str]]:
    """The symmetric model loses the split: a smaller z_L-vs-z_H undecided gap and a smaller L-vs-H
    locality contrast than the asymmetric model."""
    def gap(name: str) -> float:
        undecided = tables[name]["decode"].groupby("state")["undecided"].mean()
        return undecided["z_L"] - undecided["z_H"]

    def contrast(name: str) -> float:
        return locality(tables[name]["attention"], task)["mean"].mean()

    gaps, contrasts = (gap(asymmetric), gap(symmetric)), (contrast(asymmetric), contrast(symmetric))
    smaller = [abs(b) < 0.5 * abs(a) for a, b in (gaps, contrasts)]
    number = (f"undecided gap z_L - z_H {gaps[0]:.3f} vs {gaps[1]:.3f}; mean locality contrast "
              f"{contrasts[0]:+.3f} vs {contrasts[1]:+.3f} (asymmetric vs symmetric)")
    verdict = HOLDS if all(smaller) else FAILS if not any(smaller) else UNCLEAR
    if any(pd.isna(value) for value in contrasts):
        verdict = UNCLEAR
    return [_row("the symmetric model loses the split", f"{asymmetric} vs {symmetric}", number, verdict)]


def read_tables(directory: Path, name: str) -> dict[str, pd.DataFrame]:
    return {kind: pd.read_csv(Path(directory) / f"{name}_{file}.csv") for kind, file in
            (("decode", "decode_summary"), ("freeze", "freeze_table"), ("attention", "attention_table"))}


def check_claims(directory: Path, models: dict[str, str], pairs: list[tuple[str, str]],
                 cards: Optional[dict[str, Path]] = None) -> pd.DataFrame:
    """Every claim for every model (``models``: name -> task) and every (asymmetric, symmetric) pair,
    from the tables in ``directory``; ``cards`` adds the recurrence claim from model cards."""
    tables = {name: read_tables(directory, name) for name in models}
    rows = []
    for name, task in models.items():
        rows += decode_claims(name, tables[name]["decode"])
        rows += freeze_claims(name, tables[name]["freeze"])
        rows += attention_claims(name, tables[name]["attention"], task)
        if cards and name in cards:
            rows += recurrence_claims(name, json.loads(Path(cards[name]).read_text()))
    for asymmetric, symmetric in pairs:
        rows += split_claims(asymmetric, symmetric, tables, models[asymmetric])
    return pd.DataFrame(rows)
