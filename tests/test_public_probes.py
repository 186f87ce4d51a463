"""With default options the probes reproduce the public analysis scripts' own numbers.

``tests/data/public_probes`` holds those scripts' outputs on the public ``air_1net_Lx_H`` fixture
and 8 Sudoku puzzles, each run at batch 1 as they do (see its README in ../shared/fixtures).
"""
import json
from pathlib import Path

import numpy as np
import pytest

from air_interp import load_model
from air_interp.probes.attention import attention_contrasts, summarize
from air_interp.probes.freeze import freeze
from conftest import FIXTURES

PUBLIC_PROBES = Path(__file__).parent / "data" / "public_probes"
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
    for layer in range(public_model.cfg.n_layers):
        published = json.loads((PUBLIC_PROBES / "attention" / f"quant_summary_layer{layer}.json").read_text())
        assert published["cycles"] == [2, 4, 6, 8, 10, 12, 14, 15]
        for cls, block in published["classes"].items():
            ours = summary[(summary["layer"] == layer) & (summary["cls"] == cls)].set_index("metric")
            for metric, theirs in METRIC_NAMES.items():
                assert ours.loc[metric, "n_puzzles"] == block["n_puzzles"], (layer, cls, metric)
                assert ours.loc[metric, "mean"] == pytest.approx(block["metrics"][theirs]["mean"], abs=1e-6, rel=0)
                half_width = (ours.loc[metric, "row_ci_high"] - ours.loc[metric, "row_ci_low"]) / 2
                assert half_width == pytest.approx(block["metrics"][theirs]["ci95"], abs=1e-6, rel=0)


@pytest.mark.parametrize("state, script", [("z_H", "freeze_zH"), ("z_L", "freeze_zL")])
def test_freeze_totals_equal_the_public_script(public_model, public_puzzles, state, script):
    published = json.loads((PUBLIC_PROBES / "freeze.json").read_text())
    observed = "z_L" if state == "z_H" else "z_H"
    for setting, frozen in (("normal", "none"), ("frozen", state)):
        _, per_puzzle = freeze(public_model, *public_puzzles, frozen, batch_size=3, progress=False)
        for count in ("content_changes", "mask_flips"):
            theirs = [puzzle[f"{script}/{setting}/{count}"] for puzzle in published]
            assert per_puzzle[f"{observed}_{count}"].tolist() == theirs, (setting, count)


def test_other_counting_starts_differ_by_the_first_transition(public_model, public_puzzles):
    """"reset" adds z_L's reset-to-first-update transition; "first_update" drops z_H's."""
    totals = {start: freeze(public_model, *public_puzzles, "none", progress=False, count_from=start)[1]
              for start in ("published", "reset", "first_update")}
    assert (totals["reset"]["z_L_changes"] >= totals["published"]["z_L_changes"]).all()
    assert (totals["reset"]["z_H_changes"] == totals["published"]["z_H_changes"]).all()
    assert (totals["first_update"]["z_L_changes"] == totals["published"]["z_L_changes"]).all()
    assert (totals["first_update"]["z_H_changes"] <= totals["published"]["z_H_changes"]).all()
    assert (totals["reset"]["z_L_changes"] > totals["published"]["z_L_changes"]).any()
