"""Probes along training: the emergence table is the probes' own numbers, cached per run."""
import json

import numpy as np
import pandas as pd
import pytest

from air_interp.cli import main
from air_interp.defaults import DEFAULT_DATASETS, REPO
from air_interp.errors import AirInterpError
from air_interp.probes import emergence as emergence_module
from air_interp.probes.attention import attention_contrasts, summarize
from air_interp.probes.decode import decode
from air_interp.probes.emergence import CACHE, emergence, plot_emergence
from air_interp.probes.freeze import run_freeze
from conftest import sudoku_test_puzzles, tiny_model

PUZZLES = 5


def fake_run(path, seeds, variant="Lx_H"):
    """A run directory as the trainer writes it: config.json naming the data, one model per checkpoint."""
    (path / "checkpoints").mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"train": {"data": str(DEFAULT_DATASETS["sudoku"])}}))
    for step, seed in seeds.items():
        folder = path / "checkpoints" / f"step_{step:08d}"
        if not folder.exists():  # a checkpoint, once written, is never rewritten
            folder.mkdir()
            tiny_model(variant, seed=seed).save(folder / "model.safetensors")
    return path


def value(table, metric, **where):
    rows = table[table["metric"] == metric]
    for column, wanted in where.items():
        rows = rows[rows[column] == wanted]
    assert len(rows) == 1, (metric, where)
    return rows["value"].iloc[0]


def test_last_checkpoint_metrics_equal_the_probes_run_directly(tmp_path):
    run = fake_run(tmp_path / "run", {10: 1, 20: 2})
    table = emergence([run], puzzles=PUZZLES, progress=False)
    last = table[table["train_step"] == 20]
    model = tiny_model(seed=2)
    inputs, labels = sudoku_test_puzzles(PUZZLES)
    grids = decode(model, inputs, labels, progress=False).grids
    for step in range(model.cfg.halt_max_steps):
        end = (step + 1) * model.cfg.sub_steps - 1
        assert value(last, "exact", act_step=step) == (grids[:, end, 0] == labels).all(-1).mean()
    _, per_puzzle = run_freeze([model], inputs, labels, progress=False)
    normal = per_puzzle[per_puzzle["freeze"] == "none"]
    frozen_H = per_puzzle[per_puzzle["freeze"] == "z_H"]
    assert value(last, "content_changes", state="z_L", setting="normal") == normal["z_L_content_changes"].mean()
    assert value(last, "content_changes", state="z_L", setting="z_H frozen") == frozen_H["z_L_content_changes"].mean()
    summary = summarize(attention_contrasts(model, inputs, labels, progress=False), n_boot=100)
    for _, row in summary.iterrows():
        assert value(last, row["metric"], setting=row["cls"], layer=row["layer"]) == pytest.approx(row["mean"], abs=1e-12)
    assert set(table["train_step"]) == {10, 20}


def test_a_three_state_run_is_followed_state_by_state_from_the_cli(tmp_path):
    run = fake_run(tmp_path / "run", {10: 3}, variant="L2x_Mx_H")
    assert main(["emergence", str(run), "--puzzles", str(PUZZLES), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    table = pd.read_csv(tmp_path / "out" / "emergence_runs.csv", keep_default_na=False,
                        dtype={"state": str, "setting": str})
    table["value"] = table["value"].astype(float)
    model = tiny_model("L2x_Mx_H", seed=3)
    inputs, labels = sudoku_test_puzzles(PUZZLES)
    _, per_puzzle = run_freeze([model], inputs, labels, progress=False)
    frozen_M = per_puzzle[per_puzzle["freeze"] == "z_M"]
    for state in ("z_L", "z_H"):
        assert value(table, "content_changes", state=state, setting="z_M frozen") == frozen_M[f"{state}_content_changes"].mean()
    assert set(table.loc[table["metric"] == "early_undecided_cells", "state"]) == {"z_H", "z_M", "z_L"}


def test_measured_checkpoints_are_not_measured_again(tmp_path, monkeypatch):
    run = fake_run(tmp_path / "run", {10: 1})
    first = emergence([run], puzzles=PUZZLES, progress=False)
    measured = []
    original = emergence_module.checkpoint_metrics
    monkeypatch.setattr(emergence_module, "checkpoint_metrics",
                        lambda model, *args: measured.append(model) or original(model, *args))
    fake_run(run, {10: 1, 30: 3})
    again = emergence([run], puzzles=PUZZLES, progress=False)
    assert len(measured) == 1 and set(again["train_step"]) == {10, 30}
    kept = again[again["train_step"] == 10].reset_index(drop=True)
    assert np.allclose(kept["value"], first["value"], equal_nan=True)
    other_data = REPO / "data" / "sudoku-easy50"  # measured on other puzzles too, the first measurement stays
    on_other = emergence([run], puzzles=PUZZLES, data=other_data, progress=False)
    assert len(measured) == 3 and set(on_other["data"]) == {str(other_data)}
    pd.testing.assert_frame_equal(emergence([run], puzzles=PUZZLES, progress=False), again, check_dtype=False)
    assert len(measured) == 3
    for checkpoint in (run / "checkpoints").iterdir():  # a committed log: the cache alone still draws
        (checkpoint / "model.safetensors").unlink()
    cached = emergence([run], puzzles=PUZZLES, progress=False)
    assert len(measured) == 3 and len(cached) == len(again)
    assert len(emergence([run], puzzles=7, progress=False)) == len(again)  # what the log has
    with pytest.raises(AirInterpError, match="no cached measurement on .*nowhere"):
        emergence([run], data=tmp_path / "nowhere", progress=False)
    files = plot_emergence(cached, tmp_path / "emergence")
    assert all(path.stat().st_size > 1000 for path in files)


def test_cli_draws_runs_side_by_side_and_refuses_bad_runs(tmp_path, capsys):
    a, b = fake_run(tmp_path / "air", {10: 1}), fake_run(tmp_path / "sym", {10: 4})
    assert main(["emergence", str(a), str(b), "--puzzles", "3", "--out", str(tmp_path / "out"), "--quiet"]) == 0
    table = pd.read_csv(tmp_path / "out" / "emergence_runs.csv")
    assert set(table["run"]) == {"air", "sym"} and (tmp_path / "out" / "emergence_runs.png").is_file()
    assert (a / CACHE).is_file()
    capsys.readouterr()
    assert main(["emergence", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2
    assert "no such training run directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(AirInterpError, match="no checkpoints"):
        emergence([tmp_path / "empty"], progress=False)


def test_every_measures_multiples_of_it_and_the_latest(tmp_path):
    run = fake_run(tmp_path / "run", {10: 1, 20: 2, 25: 3})
    table = emergence([run], puzzles=3, progress=False, every=20)
    assert set(table["train_step"]) == {20, 25}
    assert main(["emergence", str(run), "--puzzles", "3", "--every", "0"]) == 2


def test_a_fine_tune_starts_its_curve_from_the_weights_it_started_from(tmp_path):
    from air_interp.io import sha256

    source = fake_run(tmp_path / "source", {10: 1, 20: 2})
    tuned = fake_run(tmp_path / "tuned", {5: 3})
    start = source / "checkpoints" / "step_00000010" / "model.safetensors"
    config = {"train": {"data": str(DEFAULT_DATASETS["sudoku"]), "init_from": str(source)},
              "init_from_sha256": sha256(start)}
    (tuned / "config.json").write_text(json.dumps(config))
    table = emergence([tuned], puzzles=3, progress=False)
    assert set(table["train_step"]) == {0, 5} and set(table.loc[table["train_step"] == 0, "sha256"]) == {sha256(start)}
    from_source = emergence([source], puzzles=3, progress=False)
    pd.testing.assert_frame_equal(table[table["train_step"] == 0].drop(columns=["run", "train_step"]).reset_index(drop=True),
                                  from_source[from_source["train_step"] == 10].drop(columns=["run", "train_step"]).reset_index(drop=True),
                                  check_dtype=False)


def test_drawing_without_measuring_leaves_new_checkpoints_and_the_cache_alone(tmp_path):
    run = fake_run(tmp_path / "run", {10: 1})
    emergence([run], puzzles=PUZZLES, progress=False)
    cached = (run / "emergence.csv").read_text()
    fake_run(run, {10: 1, 20: 2})  # a new checkpoint since: `air-interp figures` must not measure it
    table = emergence([run], puzzles=PUZZLES, progress=False, dtype="bfloat16", measure=False)
    assert set(table["train_step"]) == {10} and (run / "emergence.csv").read_text() == cached
