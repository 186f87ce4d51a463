"""The tables campaign's published runs (checkpoints/sweeps/<task>/published/): what their cards
hold, and the committed tables regenerated from them."""
from pathlib import Path

import pandas as pd
import pytest

from air_interp.defaults import REPO
from air_interp.probes.tables import PUBLISHED, card_rows, injection_table, level_token_table, published_cards

SWEEPS = REPO / "checkpoints" / "sweeps"
FIGURES = REPO / "figures"

pytestmark = pytest.mark.skipif(not any(SWEEPS.rglob(f"{PUBLISHED}/*.json")),
                                reason="no run of the tables campaign is published yet")


@pytest.fixture(scope="module")
def cards() -> list[tuple[Path, dict]]:
    return published_cards(SWEEPS)


def test_every_published_run_has_its_model_and_a_card_that_says_how_it_was_trained(cards):
    for model_file, card in cards:
        assert model_file.is_file() and model_file.stat().st_size < 5e6, model_file
        assert card["name"] == f"{card['variant']}_seed{card['seed']}" == model_file.stem
        training = card["training"]
        assert (training["steps"], training["data"]) == (card["step"], card["dataset"])
        assert training["n_layers"] > 0 and training["hours"] > 0
        assert 0 <= card["test"]["exact_accuracy"] <= 1 and card["test"]["count"] > 0
        assert (model_file.parent / "logs" / card["name"] / "metrics.jsonl").is_file()


@pytest.mark.parametrize("name, make", [("injection_table", injection_table), ("level_token_table", level_token_table)])
def test_committed_table_is_regenerated_from_the_published_runs(cards, name, make):
    committed = FIGURES / f"{name}.csv"
    if not committed.is_file():
        pytest.skip(f"figures/{name}.csv is not made yet (the campaign is still training)")
    ours = make(card_rows(cards)).fillna("")
    pd.testing.assert_frame_equal(ours, pd.read_csv(committed, dtype=str, keep_default_na=False))
