"""Attention probe: contrasts on hand-made patterns, batched vs one at a time, statistics, CLI."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from air_interp.cli import main
from air_interp.probes.attention import (MIN_BOOTSTRAP, PAPER_STEPS, AttentionOptions, attention_contrasts, content_pattern, paper_steps,
                                         plot_contrasts, summarize)
from air_interp.probes.lens import decode_state
from air_interp.tasks import get_task

SUDOKU = get_task("sudoku")


N_PUZZLES = 3
MODEL_OVERRIDES = dict(halt_max_steps=3)  # the conftest fixtures: 3 ACT steps


def hand_pattern(model, local: bool) -> torch.Tensor:
    """Each query puts all its mass uniformly on its row ∪ column ∪ box (itself included) when
    ``local``, else uniformly on every other content cell; nothing on the prefix positions."""
    cfg = model.cfg
    neighbourhood = SUDOKU.neighbourhood_mask("rcb", include_self=True)
    weights = neighbourhood if local else ~neighbourhood
    content = torch.as_tensor(weights / weights.sum(1, keepdims=True), dtype=torch.float32)
    pattern = torch.zeros(cfg.carry_len, cfg.carry_len)
    pattern[cfg.prefix_len:, cfg.prefix_len:] = content
    return pattern


def test_contrasts_on_hand_made_patterns_have_known_values(model, puzzles):
    inputs, labels = puzzles
    local, spread = hand_pattern(model, True), hand_pattern(model, False)

    def replace(kind):
        return lambda p, hook: local.expand_as(p).clone() if kind == "L" else spread.expand_as(p).clone()

    forced = [(f"step.2.sub.{sub}.layer.{layer}.attn.hook_pattern", replace(kind))
              for sub, kind in ((0, "L"), (2, "H")) for layer in range(2)]
    with model.hooks(fwd_hooks=forced):
        rows = attention_contrasts(model, inputs, labels, AttentionOptions(steps=(2,)), progress=False)
        _, cache = model.run_with_cache(torch.as_tensor(inputs).long(), names_filter="step.2.sub.2.hook_z_H")
    violated = SUDOKU.violation_mask(decode_state(model, cache["step.2.sub.2.hook_z_H"]).numpy())
    neighbourhood = SUDOKU.neighbourhood_mask("rcb", include_self=True)
    adjacent_mask = SUDOKU.neighbourhood_mask("rcb")

    assert np.allclose(rows["d_nbr"], 1.0, atol=1e-6)
    assert np.allclose(rows["d_ent"], (math.log(60) - math.log(21)) / math.log(81), atol=1e-6)
    for row in rows.sample(20, random_state=0).itertuples():
        v, n = violated[row.puzzle], neighbourhood[row.query]
        expected = (v & n).sum() / 21 - (v & ~n).sum() / 60
        assert row.d_viol == pytest.approx(expected, abs=1e-6)
        adjacent = (v & adjacent_mask[row.query]).any()
        assert row.cls == ("violation-adjacent" if adjacent else "control")
    blank = inputs == 1
    assert len(rows) == blank.sum() * 2  # every blank cell, two layers


def sink_pattern(model, heads: int) -> torch.Tensor:
    """The local pattern, except that the first ``heads`` heads put every query's mass on the
    first prefix position (an attention sink)."""
    cfg = model.cfg
    pattern = hand_pattern(model, True).expand(cfg.n_heads, -1, -1).clone()
    pattern[:heads, cfg.prefix_len:] = 0.0
    pattern[:heads, cfg.prefix_len:, 0] = 1.0
    return pattern


def sink_rows(model, puzzles, sink_heads: int, skip_sink_heads: bool):
    inputs, labels = puzzles
    assert model.cfg.prefix_len > 0
    sink, spread = sink_pattern(model, sink_heads), hand_pattern(model, False)
    forced = [(f"step.2.sub.{sub}.layer.{layer}.attn.hook_pattern",
               lambda p, hook, m=(sink if kind == "L" else spread): m.expand_as(p).clone())
              for sub, kind in ((0, "L"), (2, "H")) for layer in range(2)]
    options = AttentionOptions(steps=(2,), skip_sink_heads=skip_sink_heads)
    with model.hooks(fwd_hooks=forced):
        return attention_contrasts(model, inputs, labels, options, progress=False)


@pytest.mark.parametrize("sink_heads", [1, 4])
def test_sink_heads_attend_uniformly_as_published(model, puzzles, sink_heads):
    """The public rule: a head with no content mass at all counts as a uniform row over the 81 cells."""
    rows = sink_rows(model, puzzles, sink_heads, skip_sink_heads=False)
    local_heads = model.cfg.n_heads - sink_heads
    assert np.allclose(rows["d_nbr"], (local_heads + sink_heads * 21 / 81) / model.cfg.n_heads, atol=1e-6)
    uniform_ent, local_ent, spread_ent = 1.0, math.log(21) / math.log(81), math.log(60) / math.log(81)
    expected_ent = spread_ent - (local_heads * local_ent + sink_heads * uniform_ent) / model.cfg.n_heads
    assert np.allclose(rows["d_ent"], expected_ent, atol=1e-6)


@pytest.mark.parametrize("sink_heads", [1, 4])
def test_skip_sink_heads_leaves_them_out_of_the_head_average(model, puzzles, sink_heads):
    rows = sink_rows(model, puzzles, sink_heads, skip_sink_heads=True)
    if sink_heads == model.cfg.n_heads:
        assert rows["d_nbr"].isna().all() and summarize(rows).empty
    else:
        assert np.allclose(rows["d_nbr"], 1.0, atol=1e-6)
        assert np.allclose(rows["d_ent"], (math.log(60) - math.log(21)) / math.log(81), atol=1e-6)


def test_tiny_content_mass_is_renormalised_as_published():
    pattern = torch.zeros(1, 1, 3, 4, dtype=torch.float32)
    pattern[0, 0, :, 0] = 1.0
    pattern[0, 0, 0, 1:] = torch.tensor([1e-9, 3e-9, 0.0])
    pattern[0, 0, 1, 1:] = torch.tensor([0.0, 0.0, 1e-30])
    public = content_pattern(pattern, seq_len=3)
    assert torch.allclose(public[0, 0, 0], torch.tensor([0.25, 0.75, 0.0], dtype=public.dtype))
    assert torch.allclose(public[0, 0, 1], torch.tensor([0.0, 0.0, 1.0], dtype=public.dtype))
    assert torch.allclose(public[0, 0, 2], torch.full((3,), 1 / 3, dtype=public.dtype))
    assert content_pattern(pattern, seq_len=3, skip_sink_heads=True).isnan().all()


def test_batched_equals_one_puzzle_at_a_time(model, puzzles):
    inputs, labels = puzzles
    batched = attention_contrasts(model, inputs, labels, batch_size=3, progress=False)
    singles = pd.concat([attention_contrasts(model, inputs[i:i + 1], labels[i:i + 1], batch_size=1, progress=False)
                         .assign(puzzle=i) for i in range(3)])
    key = ["puzzle", "step", "layer", "query"]
    a = batched.sort_values(key).reset_index(drop=True)
    b = singles.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, atol=1e-5, rtol=0)


def test_violation_timing_and_scope_options_change_what_they_should(model, puzzles):
    inputs, labels = puzzles
    after = attention_contrasts(model, inputs, labels, AttentionOptions(steps=(1,)), progress=False)
    before = attention_contrasts(model, inputs, labels, AttentionOptions(steps=(1,), violation_timing="before"),
                                 progress=False)
    local = attention_contrasts(model, inputs, labels, AttentionOptions(steps=(1,), violation_scope="neighbourhood"),
                                progress=False)
    assert np.allclose(after["d_nbr"], before["d_nbr"]) and np.allclose(after["d_nbr"], local["d_nbr"])
    assert not np.allclose(after["d_viol"], local["d_viol"])
    excluded = attention_contrasts(model, inputs, labels, AttentionOptions(steps=(1,), include_self=False),
                                   progress=False)
    assert not np.allclose(after["d_nbr"], excluded["d_nbr"])


def test_summary_statistics_against_numpy():
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"puzzle": np.repeat(np.arange(10), 30), "layer": 0, "cls": "control",
                          "d_nbr": rng.normal(0.1, 1.0, 300) + np.repeat(rng.normal(0, 2, 10), 30)})
    row = summarize(table, n_boot=2000).query("cls == 'all' and metric == 'd_nbr'").iloc[0]
    values = table["d_nbr"].to_numpy()
    half = 1.96 * values.std(ddof=1) / math.sqrt(300)
    assert row["mean"] == pytest.approx(values.mean())
    assert row["row_ci_high"] - row["row_ci_low"] == pytest.approx(2 * half)
    assert row["frac_positive"] == pytest.approx((values > 0).mean())
    with_nan = table.assign(d_nbr=np.where(np.arange(300) % 3 == 0, np.nan, table["d_nbr"]))
    kept = summarize(with_nan).query("cls == 'all'").iloc[0]
    assert kept["n_rows"] == 200 and kept["mean"] == pytest.approx(np.nanmean(with_nan["d_nbr"]))
    # puzzle effects make the puzzle-level interval much wider than the row-level one
    assert row["boot_ci_high"] - row["boot_ci_low"] > 2 * (row["row_ci_high"] - row["row_ci_low"])
    assert row["boot_ci_low"] < row["mean"] < row["boot_ci_high"]


def test_contrast_bars_are_drawn_when_the_bootstrap_interval_misses_the_mean(tmp_path):
    """A percentile interval over few puzzles with very unequal row counts need not contain the row
    mean (seen on the default with 4 puzzles): the bars are drawn either way. (summarize needs at
    least MIN_BOOTSTRAP resamples, so the interval is moved off the mean here by hand.)"""
    table = pd.DataFrame({"puzzle": np.repeat([0, 1], [1, 99]), "layer": 0, "cls": "control",
                          "d_nbr": np.repeat([10.0, 0.0], [1, 99])})
    base = summarize(table, n_boot=MIN_BOOTSTRAP)
    for shift, side in [(1.0, "boot_ci_low"), (-20.0, "boot_ci_high")]:  # the interval above, then below the mean
        summary = base.assign(boot_ci_low=base["mean"] + shift, boot_ci_high=base["mean"] + shift + 0.5)
        row = summary.query("cls == 'all'").iloc[0]
        assert (row[side] > row["mean"]) == (side == "boot_ci_low") and row[side] != row["mean"]
        assert not row["boot_ci_low"] <= row["mean"] <= row["boot_ci_high"]
        written = plot_contrasts(summary, tmp_path / f"contrasts_{side}")
        assert {p.suffix for p in written} == {".png", ".pdf"} and all(p.stat().st_size > 0 for p in written)


@pytest.mark.slow
def test_attention_cli_end_to_end(model, tmp_path, capsys):
    checkpoint = tmp_path / "tiny.safetensors"
    model.save(checkpoint)
    assert main(["attention", str(checkpoint), "--layer", "1", "--puzzles", "3", "--steps", "1,2",
                 "--bootstrap", "100", "--out", str(tmp_path / "first"), "--quiet"]) == 0
    assert "violation-adjacent" in capsys.readouterr().out
    for name in ("attention_table.csv", "attention_contrasts.png", "attention_example_layer1.png"):
        assert (tmp_path / "first" / name).stat().st_size > 100
    assert main(["attention", str(checkpoint), "--layer", "-1", "--puzzles", "2", "--bootstrap", "100",
                 "--out", str(tmp_path / "last"), "--quiet"]) == 0  # default steps: those of the paper's it has
    assert set(pd.read_csv(tmp_path / "last" / "attention_rows.csv")["step"]) == set(paper_steps(model.cfg.halt_max_steps))
    assert set(pd.read_csv(tmp_path / "last" / "attention_table.csv")["layer"]) == {1}
    assert main(["attention", str(checkpoint), "--layer", "3", "--puzzles", "2", "--quiet"]) == 2
    assert "this model has 2 layers" in capsys.readouterr().err


def test_paper_steps_scale_to_shorter_rollouts():
    assert paper_steps(16) == PAPER_STEPS
    assert paper_steps(8) == (2, 4, 6, 7)
    assert paper_steps(2) == (1,)
