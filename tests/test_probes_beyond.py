"""Linear probes and activation patching: against run_with_cache, hand-made data and hand-run patches."""
import numpy as np
import pandas as pd
import pytest
import torch

from air_interp.cli import main
from air_interp.errors import AirInterpError
from air_interp.probes.linear import ProbeData, ProbeSite, collect, fit_probe, linear_probes, open_cells, plot_linear_probes
from air_interp.probes.patching import next_puzzle, patch, patch_summary, plot_patching


N_PUZZLES = 6
MODEL_OVERRIDES = dict(halt_max_steps=3)  # the conftest fixtures: 3 ACT steps


def final_decode(model, inputs, hooks=()):
    with torch.no_grad(), model.hooks(fwd_hooks=list(hooks)):
        return model(torch.as_tensor(inputs).long()).argmax(-1).numpy()


def test_collected_features_are_the_cached_states_of_the_open_cells(model, puzzles):
    inputs, labels = puzzles
    data = collect(model, inputs, labels, steps=[1, 2], batch_size=4, progress=False)
    assert [(s.state, s.step, s.name) for s in data.sites] == [
        ("z_H", 1, "step.1.sub.5.hook_z_H"), ("z_H", 2, "step.2.sub.5.hook_z_H"),
        ("z_L", 1, "step.1.sub.4.hook_z_L"), ("z_L", 2, "step.2.sub.4.hook_z_L")]
    _, cache = model.run_with_cache(torch.as_tensor(inputs).long(), names_filter=[s.name for s in data.sites])
    mask = inputs == 1  # Sudoku blanks are the open cells
    assert np.array_equal(open_cells(inputs, labels), mask)
    prefix = model.cfg.prefix_len
    for site in data.sites:
        states = cache[site.name][:, prefix:].numpy()
        np.testing.assert_allclose(site.features, states[mask], atol=1e-6)
        lens = (cache[site.name][:, prefix:] @ model.lm_head.weight.T).argmax(-1).numpy()
        assert np.array_equal(site.lens, lens[mask])
    assert np.array_equal(data.final, final_decode(model, inputs)[mask])
    assert np.array_equal(data.labels, labels[mask])
    assert np.array_equal(np.bincount(data.puzzle), mask.sum(-1))


def test_collect_batched_equals_one_puzzle_at_a_time(model, puzzles):
    inputs, labels = puzzles
    batched = collect(model, inputs, labels, steps=[2], batch_size=6, progress=False)
    singles = [collect(model, inputs[i:i + 1], labels[i:i + 1], steps=[2], batch_size=1, progress=False)
               for i in range(len(inputs))]
    for k, site in enumerate(batched.sites):
        np.testing.assert_allclose(site.features, np.concatenate([s.sites[k].features for s in singles]), atol=1e-5)
        assert np.array_equal(site.lens, np.concatenate([s.sites[k].lens for s in singles]))


def test_probe_recovers_a_linear_rule_and_not_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 16)).astype(np.float32)
    separable = (x @ rng.normal(size=16) > 0.3).astype(int)
    _, held_out = fit_probe(x[:1500], separable[:1500], x[1500:], separable[1500:])
    assert held_out > 0.97
    noise = rng.integers(0, 2, 2000)
    _, held_out = fit_probe(x[:1500], noise[:1500], x[1500:], noise[1500:])
    assert abs(held_out - 0.5) < 0.06


def test_probe_table_splits_by_puzzle_and_reports_baselines():
    rng = np.random.default_rng(1)
    puzzle = np.repeat(np.arange(20), 30)
    labels = rng.integers(2, 11, puzzle.size)
    features = np.eye(11, dtype=np.float32)[labels] + rng.normal(0, 0.05, (puzzle.size, 11)).astype(np.float32)
    lens = np.where(rng.random(puzzle.size) < 0.5, labels, 1)  # the lens reads out half the answers
    site = ProbeSite("z_L", 0, "step.0.sub.4.hook_z_L", features, lens)
    table = linear_probes(ProbeData([site], puzzle, labels, labels), ["answer", "correct"], test_fraction=0.25)
    answer, correct = table.iloc[0], table.iloc[1]
    assert answer["test_accuracy"] == 1.0  # the state carries every answer ...
    assert 0.4 < answer["lens"] < 0.6  # ... though the lens reads only half of them
    assert answer["test_cells"] == 5 * 30 and answer["train_cells"] == 15 * 30
    assert answer["majority"] < 0.2 and not np.isnan(answer["lens"]) and np.isnan(correct["lens"])
    with pytest.raises(AirInterpError, match="unknown probe target"):
        linear_probes(ProbeData([site], puzzle, labels, labels), ["colour"])


def test_patching_the_last_z_H_hands_over_the_source_answer(model, puzzles):
    inputs, labels = puzzles
    rows = patch(model, inputs, labels, states=["z_H"], steps=[2], batch_size=4, progress=False)
    source_final = final_decode(model, inputs[next_puzzle(len(inputs))])
    clean = final_decode(model, inputs)
    patched = rows[rows["state"] == "z_H"]
    expected_changed = (source_final != clean).sum(-1)
    assert expected_changed.sum() > 0
    assert np.array_equal(patched["changed"].to_numpy(), expected_changed)
    differ = labels != labels[next_puzzle(len(inputs))]
    follows = ((source_final == labels[next_puzzle(len(inputs))]) & differ).sum(-1) / differ.sum(-1)
    np.testing.assert_allclose(patched["follows_source"].to_numpy(), follows)


def test_patching_matches_a_hand_run_patch_and_self_patching_changes_nothing(model, puzzles):
    inputs, labels = puzzles
    sources = np.array([3, 0, 5, 1, 2, 4])
    rows = patch(model, inputs, labels, sources=sources, states=["z_L"], steps=[0], batch_size=4, progress=False)
    name = "step.0.sub.4.hook_z_L"
    for i in (0, 4):
        _, cache = model.run_with_cache(torch.as_tensor(inputs[sources[i]:sources[i] + 1]).long(), names_filter=[name])
        by_hand = final_decode(model, inputs[i:i + 1], [(name, lambda z, hook: cache[name])])
        row = rows[(rows["state"] == "z_L") & (rows["puzzle"] == i)].iloc[0]
        assert row["changed"] == (by_hand != final_decode(model, inputs[i:i + 1])).sum()
        assert row["target_exact"] == (by_hand == labels[i]).all()
    itself = patch(model, inputs, labels, sources=np.arange(len(inputs)), steps=[1], progress=False)
    assert (itself["changed"] == 0).all()


def test_patch_batched_equals_one_pair_at_a_time(model, puzzles):
    inputs, labels = puzzles
    batched = patch(model, inputs, labels, steps=[1], batch_size=6, progress=False)
    singles = patch(model, inputs, labels, steps=[1], batch_size=1, progress=False)
    order = ["state", "step", "puzzle"]
    pd.testing.assert_frame_equal(batched.sort_values(order).reset_index(drop=True),
                                  singles.sort_values(order).reset_index(drop=True))


def test_beyond_figures_are_written(model, puzzles, tmp_path):
    inputs, labels = puzzles
    table = linear_probes(collect(model, inputs, labels, steps=[0, 2], progress=False), ["answer"])
    summary = patch_summary(patch(model, inputs, labels, steps=[0, 2], progress=False))
    for path in plot_linear_probes(table, tmp_path / "probes") + plot_patching(summary, tmp_path / "patching"):
        assert path.stat().st_size > 1000


def test_linear_probe_and_patch_cli_end_to_end(model, tmp_path, capsys):
    checkpoint = tmp_path / "tiny.safetensors"
    model.save(str(checkpoint))
    assert main(["linear-probe", str(checkpoint), "--puzzles", "8", "--steps", "0,last", "--targets", "answer",
                 "--out", str(tmp_path / "p"), "--quiet"]) == 0
    assert (tmp_path / "p" / "linear_probes.csv").exists()
    assert main(["patch", str(checkpoint), "--puzzles", "4", "--steps", "last", "--out", str(tmp_path / "q"),
                 "--quiet"]) == 0
    assert len(pd.read_csv(tmp_path / "q" / "patching_rows.csv")) == 4 * 3
    assert main(["linear-probe", str(checkpoint), "--targets", "colour", "--puzzles", "4", "--quiet",
                 "--out", str(tmp_path / "p")]) == 2
    assert "unknown target(s) colour" in capsys.readouterr().err
    assert main(["patch", str(checkpoint), "--puzzles", "1", "--quiet"]) == 2


def test_every_probe_feeds_the_puzzle_identifiers_to_the_model():
    """A model with a learned embedding per puzzle identifier: every probe must run it on the
    identifiers it is given (0 when none are), through the one streaming loop."""
    import torch

    from air_interp.probes.attention import attention_contrasts
    from air_interp.probes.decode import decode
    from air_interp.probes.freeze import freeze
    from air_interp.probes.lens import decode_state
    from air_interp.probes.linear import collect
    from air_interp.probes.patching import patch
    from conftest import sudoku_test_puzzles, tiny_model

    model = tiny_model(num_puzzle_identifiers=3)
    inputs, labels = sudoku_test_puzzles(4)
    ids = np.array([2, 1, 0, 2])
    name = "step.1.sub.5.hook_z_H"
    with torch.inference_mode():
        _, cache = model.run_with_cache({"inputs": torch.as_tensor(inputs).long(),
                                         "puzzle_identifiers": torch.as_tensor(ids)}, names_filter=name)
    grids = decode(model, inputs, labels, batch_size=3, progress=False, puzzle_identifiers=ids).grids
    assert np.array_equal(grids[:, -1, 0], decode_state(model, cache[name]).numpy())
    probes = {
        "decode": lambda **kw: decode(model, inputs, labels, progress=False, **kw).table,
        "freeze": lambda **kw: freeze(model, inputs, labels, "none", progress=False, **kw)[1],
        "attention": lambda **kw: attention_contrasts(model, inputs, labels, progress=False, **kw),
        "linear": lambda **kw: pd.DataFrame(collect(model, inputs, labels, progress=False, **kw).sites[-1].features),
        "patch": lambda **kw: patch(model, inputs, labels, progress=False, **kw),
    }
    for probe, run in probes.items():
        default, zeros, given = run(), run(puzzle_identifiers=np.zeros(4, int)), run(puzzle_identifiers=ids)
        pd.testing.assert_frame_equal(default, zeros, obj=probe)
        assert not default.equals(given), probe
