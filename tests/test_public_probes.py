"""With default options the probes reproduce the public analysis scripts' own numbers.

``tests/data/public_probes/<numerics signature>/`` holds those scripts' outputs on the public
``air_1net_Lx_H`` fixture and 8 Sudoku puzzles, each run at batch 1 as they do, per machine kind
(see its README in ../shared/fixtures). On a recorded kind the numbers must be the same: means and
interval half-widths to 1e-6, integer totals equal. On any other kind they must lie within what the
recorded kinds justify: the two recorded kinds differ by up to 1.2e-5 in an attention mean (and a
Zen 3 from both by at most 1.1e-5), so means and half-widths within ATTENTION_TOLERANCE = 5e-5 of
each; their freeze totals are the same integers, so totals within FREEZE_TOLERANCE (0.5%) of each.
The convention errors these tests exist to catch moved an attention mean by 9e-3 and a freeze total
by a whole transition of the rollout (test_other_counting_starts_differ_by_the_first_transition).
"""
import json
from pathlib import Path

import numpy as np
import pytest

from air_interp import load_model
from air_interp.probes.attention import attention_contrasts, summarize
from air_interp.probes.freeze import freeze
from conftest import FIXTURES, NUMERICS

PUBLIC_PROBES = Path(__file__).parent / "data" / "public_probes"

pytestmark = pytest.mark.numerics
ATTENTION_TOLERANCE = 5e-5
FREEZE_TOLERANCE = 0.005


def references() -> list[tuple[Path, bool]]:
    """(folder, exact) of the public numbers to compare with: this machine kind's, exactly, where
    recorded; else every recorded kind's, within the tolerances."""
    mine = PUBLIC_PROBES / NUMERICS
    if mine.is_dir():
        return [(mine, True)]
    return [(folder, False) for folder in sorted(PUBLIC_PROBES.iterdir()) if folder.is_dir()]
METRIC_NAMES = {"d_nbr": "delta_neighborhood", "d_ent": "delta_entropy", "d_viol": "delta_violation"}


@pytest.fixture(scope="module")
def public_model():
    return load_model(FIXTURES / "air_1net_Lx_H" / "step_1")


@pytest.fixture(scope="module")
def public_puzzles():
    puzzles = np.load(PUBLIC_PROBES / "puzzles.npz")
    return puzzles["inputs"], puzzles["labels"]


def test_attention_summary_equals_the_public_script(public_model, public_puzzles):
    summary = summarize(attention_contrasts(public_model, *public_puzzles, batch_size=4, progress=False))
    for folder, exact in references():
        tolerance = 1e-6 if exact else ATTENTION_TOLERANCE
        for layer in range(public_model.cfg.n_layers):
            published = json.loads((folder / "attention" / f"quant_summary_layer{layer}.json").read_text())
            assert published["cycles"] == [2, 4, 6, 8, 10, 12, 14, 15]
            for cls, block in published["classes"].items():
                ours = summary[(summary["layer"] == layer) & (summary["cls"] == cls)].set_index("metric")
                for metric, theirs in METRIC_NAMES.items():
                    where = (folder.name, layer, cls, metric)
                    assert ours.loc[metric, "n_puzzles"] == block["n_puzzles"], where
                    assert ours.loc[metric, "mean"] == pytest.approx(
                        block["metrics"][theirs]["mean"], abs=tolerance, rel=0), where
                    half_width = (ours.loc[metric, "row_ci_high"] - ours.loc[metric, "row_ci_low"]) / 2
                    assert half_width == pytest.approx(block["metrics"][theirs]["ci95"], abs=tolerance, rel=0), where


@pytest.mark.parametrize("state, script", [("z_H", "freeze_zH"), ("z_L", "freeze_zL")])
def test_freeze_totals_equal_the_public_script(public_model, public_puzzles, state, script):
    observed = "z_L" if state == "z_H" else "z_H"
    for setting, frozen in (("normal", "none"), ("frozen", state)):
        _, per_puzzle = freeze(public_model, *public_puzzles, frozen, batch_size=3, progress=False)
        for folder, exact in references():
            published = json.loads((folder / "freeze.json").read_text())
            for count in ("content_changes", "mask_flips"):
                theirs = [puzzle[f"{script}/{setting}/{count}"] for puzzle in published]
                ours = per_puzzle[f"{observed}_{count}"].tolist()
                if exact:
                    assert ours == theirs, (folder.name, setting, count)
                else:
                    assert sum(ours) == pytest.approx(sum(theirs), rel=FREEZE_TOLERANCE), (folder.name, setting, count)


def test_other_counting_starts_differ_by_the_first_transition(public_model, public_puzzles):
    """"reset" adds z_L's reset-to-first-update transition; "first_update" drops z_H's."""
    totals = {start: freeze(public_model, *public_puzzles, "none", progress=False, count_from=start)[1]
              for start in ("published", "reset", "first_update")}
    assert (totals["reset"]["z_L_changes"] >= totals["published"]["z_L_changes"]).all()
    assert (totals["reset"]["z_H_changes"] == totals["published"]["z_H_changes"]).all()
    assert (totals["first_update"]["z_L_changes"] == totals["published"]["z_L_changes"]).all()
    assert (totals["first_update"]["z_H_changes"] <= totals["published"]["z_H_changes"]).all()
    assert (totals["reset"]["z_L_changes"] > totals["published"]["z_L_changes"]).any()
