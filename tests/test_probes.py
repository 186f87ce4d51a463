"""Probes: decode and freeze against hand computations, batched vs one at a time, figures and CLI."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from air_interp.cli import main
from air_interp.probes.decode import decode, plot_decode, write_viewer
from air_interp.probes.freeze import freeze, freeze_table, plot_freeze
from air_interp.probes.tables import find_checkpoints, injection_table
from air_interp.tasks import get_task
from conftest import tiny_model


N_PUZZLES = 5
MODEL_OVERRIDES = dict(halt_max_steps=3)  # the conftest fixtures: 3 ACT steps


def test_decoded_states_equal_lm_head_argmax_by_hand(model, puzzles):
    inputs, labels = puzzles
    result = decode(model, inputs, labels, batch_size=2, progress=False)
    names = ["step.1.sub.2.hook_z_H", "step.2.sub.4.hook_z_L", "step.0.sub.0.hook_z_L", "hook_z_H_init"]
    _, cache = model.run_with_cache(torch.as_tensor(inputs).long(), names_filter=names)
    prefix = model.cfg.prefix_len

    def by_hand(name):
        with torch.no_grad():
            return (cache[name][:, prefix:] @ model.lm_head.weight.T).argmax(-1).numpy()

    assert np.array_equal(result.grids[:, 8, 0], by_hand("step.1.sub.2.hook_z_H"))  # z_H after step 1 sub 2
    assert np.array_equal(result.grids[:, 9, 0], by_hand("step.1.sub.2.hook_z_H"))  # unchanged at the next L
    assert np.array_equal(result.grids[:, 16, 1], by_hand("step.2.sub.4.hook_z_L"))
    assert np.array_equal(result.grids[:, 0, 0], by_hand("hook_z_H_init"))  # sub 0 is an L-update
    assert np.array_equal(result.grids[:, 0, 1], by_hand("step.0.sub.0.hook_z_L"))
    row = result.table.query("puzzle == 1 and index == 16 and state == 'z_L'").iloc[0]
    assert row["accuracy"] == pytest.approx((by_hand("step.2.sub.4.hook_z_L")[1] == labels[1]).mean())
    assert row["undecided"] == pytest.approx((by_hand("step.2.sub.4.hook_z_L")[1] == 1).mean())


def test_decode_batched_equals_one_puzzle_at_a_time(model, puzzles):
    inputs, labels = puzzles
    batched = decode(model, inputs, labels, batch_size=5, progress=False)
    singles = [decode(model, inputs[i:i + 1], labels[i:i + 1], batch_size=1, progress=False) for i in range(5)]
    assert np.array_equal(batched.grids, np.concatenate([s.grids for s in singles]))
    merged = pd.concat([s.table.assign(puzzle=i) for i, s in enumerate(singles)], ignore_index=True)
    pd.testing.assert_frame_equal(batched.table, merged)


def hand_counts(tokens, undecided):
    """Straightforward loops: the reference for the vectorised counts."""
    totals = {"changes": 0, "mask_flips": 0, "content_changes": 0}
    for before, after in zip(tokens[:-1], tokens[1:]):
        for a, b in zip(before, after):
            flip = (a == undecided) != (b == undecided)
            totals["changes"] += int(a != b)
            totals["mask_flips"] += int(flip)
            totals["content_changes"] += int(a != b and not flip)
    return totals


@pytest.mark.parametrize("count_from", ["published", "reset"])
def test_freeze_counts_match_a_hand_written_loop(model, puzzles, count_from):
    """Published: z_L counted from its first update (sub-step 0); reset: from its reset value."""
    inputs, labels = puzzles
    updates, per_puzzle = freeze(model, inputs, labels, "z_H", batch_size=2, progress=False, count_from=count_from)
    assert set(updates["observed"]) == {"z_L"}
    names = [f"step.{s}.sub.{k}.hook_z_L" for s in range(3) for k in (0, 1, 3, 4)]
    names = ["hook_z_L_init", *names] if count_from == "reset" else names
    hold = [(name, lambda z, hook: hook.previous) for name in model.hook_names(r".*\.hook_z_H")]
    with model.hooks(fwd_hooks=hold):
        _, cache = model.run_with_cache(torch.as_tensor(inputs).long(), names_filter=names)
    prefix = model.cfg.prefix_len
    with torch.no_grad():
        tokens = np.stack([model.lm_head(cache[n][:, prefix:]).argmax(-1).numpy() for n in names], axis=1)
    for p in range(len(inputs)):
        expected = hand_counts(tokens[p], get_task("sudoku").undecided_token)
        for name, value in expected.items():
            assert per_puzzle.loc[p, f"z_L_{name}"] == value


def test_frozen_state_is_never_observed_and_normal_run_sees_both(model, puzzles):
    inputs, labels = puzzles
    updates, per_puzzle = freeze(model, inputs, labels, "none", progress=False)
    assert set(updates["observed"]) == {"z_H", "z_L"}
    assert len(updates.query("observed == 'z_H'")) == 5 * 3 * 2
    table = freeze_table(per_puzzle.assign(run=0))
    assert table.loc[0, "z_L_changes_mean"] == pytest.approx(per_puzzle["z_L_changes"].mean())


def test_figures_are_written(model, puzzles, tmp_path):
    inputs, labels = puzzles
    result = decode(model, inputs, labels, progress=False)
    files = plot_decode(result, 0, [0, 2], tmp_path / "decode") + [write_viewer(result, 0, tmp_path / "viewer")]
    updates, _ = freeze(model, inputs, labels, "z_L", progress=False)
    files += plot_freeze(updates, tmp_path / "freeze")
    for path in files:
        assert path.exists() and path.stat().st_size > 1000


def test_decode_and_freeze_cli_end_to_end(model, tmp_path, capsys):
    checkpoint = tmp_path / "tiny.safetensors"
    model.save(checkpoint)
    assert main(["decode", str(checkpoint), "--puzzles", "4", "--steps", "0,last", "--out", str(tmp_path / "d"),
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "step 2 sub 5 (H-update)" in printed and "decode_puzzle0.png" in printed
    assert main(["freeze", str(checkpoint), "--puzzles", "4", "--state", "zL", "--out", str(tmp_path / "f"),
                 "--quiet"]) == 0
    assert (tmp_path / "f" / "freeze_table.csv").exists()
    assert main(["decode", str(checkpoint), "--steps", "7"]) == 2
    assert "ACT steps must lie in [0, 3)" in capsys.readouterr().err


def test_find_checkpoints_takes_each_runs_latest_and_loose_files(tmp_path):
    run = tmp_path / "runs" / "a"
    for step in ("step_1", "step_2"):
        (run / "checkpoints" / step).mkdir(parents=True)
        (run / "checkpoints" / step / "model.safetensors").write_bytes(b"x")
    (run / "latest").symlink_to(run / "checkpoints" / "step_2")
    (tmp_path / "loose.safetensors").write_bytes(b"x")
    found = find_checkpoints(tmp_path)
    assert found == sorted([run / "latest" / "model.safetensors", tmp_path / "loose.safetensors"])


def test_injection_table_is_mean_and_std_over_seeds():
    rows = pd.DataFrame({"variant": ["Lx_H", "Lx_H", "Lx_Hx", "Lx_H"], "task": ["sudoku", "sudoku", "sudoku", "maze"],
                         "exact_accuracy": [0.5, 0.7, 0.4, 0.9]})
    table = injection_table(rows).set_index("variant")
    assert table.loc["Lx_H", "sudoku"] == f"{60:.1f} ± {100 * np.std([0.5, 0.7], ddof=1):.1f} (n=2)"
    assert table.loc["Lx_Hx", "sudoku"] == "40.0 ± 0.0 (n=1)"
    assert list(table.index) == ["Lx_H", "Lx_Hx"]


@pytest.mark.slow
def test_figures_command_writes_every_output_and_a_manifest(model, tmp_path):
    from air_interp.defaults import DEFAULT_DATASETS

    published = tmp_path / "sweep" / "published"  # as air-interp sweep publishes finished runs
    for seed, (variant, exact) in enumerate([("Lx_H", 0.5), ("Lx_H", 0.7), ("Lx_Hx", 0.4), ("L2x_Mx_H", 0.2)]):
        name = f"{variant}_seed{seed}"
        (published / "logs" / name).mkdir(parents=True)
        tiny_model(variant, seed=seed, halt_max_steps=2).save(published / f"{name}.safetensors")
        (published / "logs" / name / "config.json").write_text(json.dumps({"train": {"data": str(DEFAULT_DATASETS["sudoku"])}}))
        (published / f"{name}.json").write_text(json.dumps({
            "name": name, "task": "sudoku", "variant": variant, "seed": seed, "step": 3, "dataset": "d",
            "training": {"n_layers": 2, "hours": 0.1}, "test": {"exact_accuracy": exact, "accuracy": 0.9, "count": 10,
                     "exact_by_step": [exact / 2, exact]}}))
    assert main(["figures", "--model", f"tiny={published / 'Lx_H_seed0.safetensors'}", "--sweep", str(tmp_path / "sweep"),
                 "--puzzles", "2", "--out", str(tmp_path / "figs"), "--quiet", "--dtype", "bfloat16",
                 "--threads", "1"]) == 0
    manifest = json.loads((tmp_path / "figs" / "manifest.json").read_text())
    files = {entry["file"] for entry in manifest["outputs"]}
    for name in ("tiny_decode.png", "tiny_freeze.pdf", "tiny_attention.png", "tiny_attention_table.tex",
                 "tiny_freeze_table.md", "injection_table.tex", "level_token_table.csv", "tiny_linear_probes.png",
                 "tiny_patching.csv", "specialisation_table.md", "sweep_runs.csv", "roles_table.md", "roles_runs.csv",
                 "roles_freeze_matrix_L2x_Mx_H.png", "roles_decode_L2x_Mx_H.png"):
        assert name in files and (tmp_path / "figs" / name).stat().st_size > 0
    assert {entry["forward_dtype"] for entry in manifest["outputs"] if "sha256" in entry} == {"bfloat16"}
    assert manifest["dtype_requested"] == "bfloat16" and manifest["machine"]["threads"] == 1
    injection = pd.read_csv(tmp_path / "figs" / "injection_table.csv").set_index("variant")
    assert injection.loc["Lx_H", "sudoku"].endswith("(n=2)") and injection.loc["Lx_H", "paper sudoku"] == 60.0
    specialisation = pd.read_csv(tmp_path / "figs" / "specialisation_table.csv")
    assert list(specialisation["variant"]) == ["Lx_H", "Lx_Hx"] and specialisation["exact %"][0] == "60.0 ± 14.1 (n=2)"
    roles = pd.read_csv(tmp_path / "figs" / "roles_table.csv").set_index("quantity")
    assert list(roles.columns) == ["L2x_Mx_H"] and roles.loc["exact % (test split, card)", "L2x_Mx_H"] == "20.0 ± 0.0 (n=1)"
