"""The claim checks on hand-made tables whose verdicts are known."""
import pandas as pd

from air_interp.probes.claims import (FAILS, HOLDS, UNCLEAR, attention_claims, decode_claims, freeze_claims,
                                      recurrence_claims, split_claims)


def decode_summary(z_H: float, z_L: float) -> pd.DataFrame:
    return pd.DataFrame({"state": ["z_H", "z_L", "z_H", "z_L"], "step": [0, 0, 1, 1],
                         "undecided": [0.0, 0.0, z_H, z_L]})


def freeze_table(normal_L: float, frozen_H_L: float, sem: float, exact: float = 0.5) -> pd.DataFrame:
    return pd.DataFrame({
        "freeze": ["none", "z_H", "z_L"],
        "z_L_mask_flips_mean": [10.0, 3.0, None], "z_L_mask_flips_sem": [1.0, 1.0, None],
        "z_L_content_changes_mean": [normal_L, frozen_H_L, None], "z_L_content_changes_sem": [sem, sem, None],
        "z_H_content_changes_mean": [100.0, None, 300.0], "z_H_content_changes_sem": [5.0, None, 5.0],
        "exact_mean": [exact, 0.0, 0.0],
    })


def attention_table(lows: list[float], highs: list[float], cls: str = "control") -> pd.DataFrame:
    return pd.DataFrame({"layer": range(len(lows)), "cls": cls, "metric": "d_nbr",
                         "mean": [(a + b) / 2 for a, b in zip(lows, highs)], "boot_ci_low": lows, "boot_ci_high": highs})


def verdicts(rows):
    return [row["verdict"] for row in rows]


def test_decode_claims():
    assert verdicts(decode_claims("m", decode_summary(0.0, 0.3))) == [HOLDS, HOLDS]
    assert verdicts(decode_claims("m", decode_summary(0.01, 0.0))) == [FAILS, FAILS]


def test_freeze_claims_follow_the_paper_direction_beyond_two_sem():
    rows = freeze_claims("m", freeze_table(normal_L=1235, frozen_H_L=323, sem=20))
    assert verdicts(rows) == [HOLDS, HOLDS, HOLDS, HOLDS]  # flips; fewer z_L; more z_H; frozen 0%
    assert rows[1]["number"] == "1235.0 -> 323.0"
    assert verdicts(freeze_claims("m", freeze_table(100, 130, sem=20)))[1] == UNCLEAR  # 30 < 2 * 28
    assert verdicts(freeze_claims("m", freeze_table(100, 300, sem=20)))[1] == FAILS
    assert verdicts(freeze_claims("m", freeze_table(100, 30, sem=20, exact=0.0)))[3] == UNCLEAR


def test_freeze_claims_take_the_paper_direction_of_the_task():
    """The paper's maze table has more z_L changes with z_H frozen (1,290 -> 2,305), Sudoku fewer."""
    sudoku = freeze_claims("m", freeze_table(1290, 2305, sem=20), "sudoku")[1]
    maze = freeze_claims("m", freeze_table(1290, 2305, sem=20), "maze8")[1]
    assert (sudoku["claim"], sudoku["verdict"]) == ("freezing z_H gives fewer z_L content changes", FAILS)
    assert (maze["claim"], maze["verdict"]) == ("freezing z_H gives more z_L content changes", HOLDS)


def test_attention_claim_needs_every_layer_above_zero():
    assert verdicts(attention_claims("m", attention_table([0.01, 0.2], [0.05, 0.3]), "sudoku")) == [HOLDS]
    assert verdicts(attention_claims("m", attention_table([-0.01, 0.2], [0.05, 0.3]), "sudoku")) == [UNCLEAR]
    assert verdicts(attention_claims("m", attention_table([-0.1, 0.2], [-0.05, 0.3]), "sudoku")) == [FAILS]
    # no difference at a layer, of either sign, fails "at every layer"; a wide CI stays unclear
    assert verdicts(attention_claims("m", attention_table([-0.003, 0.2], [0.001, 0.3]), "sudoku")) == [FAILS]
    assert verdicts(attention_claims("m", attention_table([0.0001, 0.2], [0.0002, 0.3]), "sudoku")) == [FAILS]
    assert verdicts(attention_claims("m", attention_table([-0.006, 0.2], [0.001, 0.3]), "sudoku")) == [UNCLEAR]
    only_all = attention_claims("m", attention_table([0.01], [0.05], cls="all"), "sudoku")[0]
    assert "all queries" in only_all["claim"] and only_all["verdict"] == HOLDS


def test_recurrence_and_split_claims():
    assert verdicts(recurrence_claims("m", {"test": {"exact_by_step": [0.1, 0.4, 0.6]}})) == [HOLDS]
    assert verdicts(recurrence_claims("m", {"test": {"exact_by_step": [0.6, 0.6, 0.6]}})) == [FAILS]
    assert verdicts(recurrence_claims("m", {"test": {"exact_by_step": [0.0, 0.0]}})) == [UNCLEAR]



def split_tables(gap_a: float, gap_s: float, exact_s: float = 0.5) -> dict:
    return {
        "a": {"decode": decode_summary(0.0, gap_a), "attention": attention_table([-0.3, 0.2], [-0.2, 0.3]),
              "freeze": freeze_table(100, 30, sem=1)},
        "s": {"decode": decode_summary(0.0, gap_s), "attention": attention_table([-0.01, 0.0], [0.01, 0.02]),
              "freeze": freeze_table(100, 30, sem=1, exact=exact_s)},
    }


def test_split_claim_uses_only_the_splits_the_asymmetric_model_shows():
    assert verdicts(split_claims("a", "s", split_tables(0.4, 0.05), "sudoku")) == [HOLDS]
    assert verdicts(split_claims("s", "a", split_tables(0.4, 0.05), "sudoku")) == [FAILS]
    # no undecided gap in the asymmetric model: the locality contrast alone decides (a negative one counts)
    assert verdicts(split_claims("a", "s", split_tables(0.0, 0.3), "sudoku")) == [HOLDS]
    # the gap survives in the symmetric model while the locality contrast goes: mixed
    assert verdicts(split_claims("a", "s", split_tables(0.4, 0.4), "sudoku")) == [UNCLEAR]
    # an untrained symmetric control loses every split trivially
    weak = split_claims("a", "s", split_tables(0.4, 0.0, exact_s=0.0), "sudoku")[0]
    assert weak["verdict"] == UNCLEAR and "solves nothing" in weak["number"]
