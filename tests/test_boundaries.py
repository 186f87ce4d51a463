"""Issue 25: nothing overwrites its own input, nothing runs on unchecked data.

Each refusal is one AirInterpError line naming the file, field or option, the value and what is
allowed; from the CLI it is ``air-interp: error: ...``, exit code 2, before any compute (under
10 s), with the inputs unchanged byte for byte and nothing written.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import save_file

from air_interp import AIRConfig
from air_interp.checkpoints import load_model
from air_interp.cli import main
from air_interp.data.dataset import Split, load_dataset
from air_interp.defaults import DEFAULT_DATASETS
from air_interp.errors import AirInterpError
from air_interp.evaluate import evaluate
from air_interp.io import check_not_input
from air_interp.train.config import LENGTH_FIELDS, RECIPE_FIELDS, RUN_OPTIONS, TrainConfig
from conftest import FIXTURES, sudoku_test_puzzles, tiny_config, tiny_model
from test_bad_inputs import rewrite_checkpoint, snapshot
from train_helpers import shift_task

PUBLIC = FIXTURES / "air_1net_Lx_H"
TINY_TRAIN = ("--preset", "Lx_H", "--scale", "cpu", "--augmentations", "0", "--global-batch-size", "8", "--d-model",
              "32", "--n-heads", "2", "--n-layers", "1", "--halt-max-steps", "2", "--dtype", "float32", "--lr", "0.001",
              "--threads", "1", "--no-compile", "--no-progress")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("boundaries")
    tiny_model().save(str(root / "tiny.safetensors"))
    (root / "link.safetensors").symlink_to("tiny.safetensors")
    (root / "sub").mkdir()
    shift_task(root / "shift")
    shift_task(root / "other", seed=1)
    shutil.copytree(PUBLIC, root / "public", ignore=shutil.ignore_patterns("expected"))
    assert main(["train", "--data", str(root / "shift"), "--out", str(root / "run"), "--steps", "2", *TINY_TRAIN]) == 0
    return root


def refused(workspace: Path, monkeypatch, capsys, argv: list[str], cause: str, inputs: tuple[str, ...] = ()) -> str:
    """``argv`` ends in one line naming ``cause``, exit 2, under 10 s; ``inputs`` survive byte for
    byte and nothing under the workspace is written."""
    monkeypatch.chdir(workspace)
    capsys.readouterr()
    before, contents = snapshot(workspace), {name: (workspace / name).read_bytes() for name in inputs}
    start = time.perf_counter()
    assert main(argv) == 2
    assert time.perf_counter() - start < 10
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("air-interp: error: "), err
    assert cause in err, err
    assert snapshot(workspace) == before
    assert {name: (workspace / name).read_bytes() for name in inputs} == contents
    return err


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and message, message
    return message


# ---- 1. inputs are sacred -----------------------------------------------------------------------

@pytest.mark.parametrize("argv, cause, inputs", [
    (["eval", "tiny.safetensors", "--data", "shift", "--json", "tiny.safetensors", "--overwrite"],
     "tiny.safetensors is this command's input", ("tiny.safetensors",)),
    (["eval", "tiny.safetensors", "--data", "shift", "--json", "tiny.safetensors"],  # not "pass --overwrite"
     "tiny.safetensors is this command's input", ("tiny.safetensors",)),
    (["eval", "link.safetensors", "--data", "shift", "--json", "sub/../tiny.safetensors", "--overwrite"],
     "is this command's input", ("tiny.safetensors",)),
    (["eval", "tiny.safetensors", "--data", "shift", "--json", "link.safetensors", "--overwrite"],
     "is this command's input", ("tiny.safetensors",)),
    (["eval", "run", "--data", "shift", "--json", "run/latest/model.safetensors", "--overwrite"],
     "is this command's input", ("run/latest/model.safetensors",)),
    (["eval", "tiny.safetensors", "--data", "shift", "--json", "shift/manifest.json", "--overwrite"],
     "lies inside this command's input shift", ("shift/manifest.json",)),
    (["convert", "public/step_1", "public/step_1", "--overwrite"], "is this command's input", ("public/step_1",)),
    (["convert", "public", "public/step_1", "--overwrite"], "is this command's input", ("public/step_1",)),
    (["convert", "public", "public/all_config.yaml", "--overwrite"], "is this command's input",
     ("public/all_config.yaml",)),
    (["data", "export", "shift", "--format", "csv", "--out", "shift/csv"], "lies inside this command's input", ()),
])
def test_no_command_writes_over_its_own_input(workspace, monkeypatch, capsys, argv, cause, inputs):
    refused(workspace, monkeypatch, capsys, argv, cause, inputs)


def test_outputs_beside_the_inputs_are_allowed(workspace):
    check_not_input(workspace / "run" / "eval.json", [workspace / "run" / "latest" / "model.safetensors"])
    check_not_input(workspace / "tiny.json", [workspace / "tiny.safetensors", workspace / "shift"])
    with pytest.raises(AirInterpError, match="lies inside"):
        check_not_input(workspace / "shift" / "train" / "new.npy", [workspace / "shift"])


# ---- 2. --resume continues the stored recipe ------------------------------------------------------

@pytest.mark.parametrize("extra, cause", [
    (["--lr", "0.5"], "--lr (stored 0.001, given 0.5)"),
    (["--data", "other"], "--data (stored '"),
    (["--seed", "3"], "--seed (stored 0, given 3)"),
    (["--dtype", "bfloat16"], "--dtype (stored 'float32', given 'bfloat16')"),
    (["--no-act-continue"], "--no-act-continue (stored None, given True)"),  # None: the variant's rule
    (["--expansion", "2"], "expansion (stored 4.0, given 2.0)"),  # not stored: the paper's default
    (["--d-model", "64"], "cannot change d_model (stored 32, given 64)"),
    (["--preset", "hrm"], "--preset (stored Lx_H, given hrm)"),
    (["--steps", "1"], "--steps (stored --steps 2, given --steps 1; a resumed run can only be made longer"),
    (["--epochs", "500"], "--epochs (stored --steps 2, given --epochs 500"),
])
def test_resume_refuses_a_changed_recipe(workspace, monkeypatch, capsys, extra, cause):
    err = refused(workspace, monkeypatch, capsys, ["train", "--out", "run", "--resume", *extra, "--no-progress"],
                  cause, ("run/config.json",))
    assert "--resume continues the stored run; it cannot change" in err


def test_resume_takes_repeated_values_run_options_and_a_longer_run(workspace, monkeypatch, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(workspace / "run", run, symlinks=True)
    monkeypatch.chdir(workspace)  # --data shift: the stored absolute path, spelled relative
    assert main(["train", "--out", str(run), "--resume", "--data", "shift", *TINY_TRAIN, "--seed", "0",
                 "--dtype", "auto", "--steps", "3", "--keep", "2", "--log-every", "5", "--eval-every", "100",
                 "--checkpoint-every", "3", "--threads", "1", "--no-progress"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["total_steps"] == 3 and config["train"]["keep"] == 2 and config["train"]["lr"] == 0.001
    assert config["train"]["data"] == str(workspace / "shift") and config["train"]["dtype"] == "float32"


def test_every_train_field_is_recipe_length_or_run_option():
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    parts = (set(RECIPE_FIELDS), set(LENGTH_FIELDS), set(RUN_OPTIONS))
    assert set().union(*parts) == names and sum(map(len, parts)) == len(names)
    assert {"variant", "data", "model", "lr", "seed", "dtype", "init_from", "no_act_continue"} <= set(RECIPE_FIELDS)


# ---- 3. config values of the wrong type or out of range -------------------------------------------

@pytest.mark.parametrize("change, message", [
    (dict(halt_max_steps=16.5), "halt_max_steps must be an integer >= 1, got 16.5"),
    (dict(d_model="128"), "d_model must be an integer >= 1, got '128'"),
    (dict(expansion=0), "expansion must be a number > 0, got 0"),
    (dict(rms_norm_eps=0.0), "rms_norm_eps must be a number > 0, got 0.0"),
    (dict(halt_exploration_prob=1.5), "halt_exploration_prob must be a number in [0, 1], got 1.5"),
    (dict(rope_theta=-1.0), "rope_theta must be a number > 0, got -1.0"),
    (dict(rope_theta=float("nan")), "rope_theta must be a number > 0, got nan"),
    (dict(no_act_continue=1), "no_act_continue must be true or false, got 1"),
    (dict(n_layers=True), "n_layers must be an integer >= 1, got True"),
    (dict(operator="times"), "operator must be one of 'add', 'minus', 'linear', 'nonlinear', 'hadamard', got 'times'"),
    (dict(forward_dtype=32), "forward_dtype must be one of 'float32', 'bfloat16', 'float16', got 32"),
    (dict(task=3), "task must be a string, got 3"),
    (dict(H_layers=0), "H_layers must be an integer >= 1 or None, got 0"),
])
def test_a_mistyped_or_out_of_range_field_is_one_line(change, message):
    with pytest.raises(AirInterpError) as err:
        AIRConfig.from_dict(dict(tiny_config().to_dict(), **change))
    assert one_line(err) == message


def test_integral_floats_are_integers_and_integers_numbers():
    cfg = AIRConfig.from_dict(dict(tiny_config().to_dict(), n_layers=4.0, halt_max_steps=np.int64(3), rope_theta=10))
    assert (cfg.n_layers, cfg.halt_max_steps, cfg.rope_theta) == (4, 3, 10.0)
    assert type(cfg.n_layers) is int and type(cfg.halt_max_steps) is int and type(cfg.rope_theta) is float


STRANGE_VALUES = [None, True, False, 0, 1, -1, 2, 3, 7, 64, 10**30, 0.0, 0.5, 1.0, 2.5, 4.0, -3.0, 1e-9, 1e300,
                  float("nan"), float("inf"), -float("inf"), "", "4", "128", "rope", "air", "hrm", "add", "minus",
                  "float32", "sudoku", "maze8", "none", [], [4], {}, {"d": 1}, (1,), b"4", object()]


def test_random_config_values_build_a_valid_config_or_raise_airinterperror():
    rng = random.Random(25)
    base = tiny_config().to_dict()
    names = [f.name for f in dataclasses.fields(AIRConfig)]
    built = 0
    for _ in range(400):
        data = dict(base)
        for name in rng.sample(names, rng.choice((1, 1, 2, 3))):
            data[name] = rng.choice(STRANGE_VALUES + [base[name]])
        try:
            cfg = AIRConfig.from_dict(data)
        except AirInterpError as err:
            assert str(err) and "\n" not in str(err)
            continue
        built += 1
        AIRConfig.from_json(cfg.to_json())  # what it holds is valid as stored, too
        for name in names:
            value = getattr(cfg, name)
            assert value is None or isinstance(value, (bool, str)) or math.isfinite(value), (name, value)
    assert 20 < built < 400


def test_checkpoint_metadata_configs_are_checked(workspace, tmp_path):
    rewrite_checkpoint(workspace / "tiny.safetensors", tmp_path / "float.safetensors",
                       config_change=lambda c: dict(c, n_layers=2.0))
    assert load_model(tmp_path / "float.safetensors").cfg.n_layers == 2
    rewrite_checkpoint(workspace / "tiny.safetensors", tmp_path / "text.safetensors",
                       config_change=lambda c: dict(c, d_model="32"))
    with pytest.raises(AirInterpError) as err:
        load_model(tmp_path / "text.safetensors")
    assert one_line(err).endswith("text.safetensors: bad config in its metadata: d_model must be an integer >= 1, "
                                  "got '32'")


def public_copy(tmp_path: Path, **arch_changes) -> Path:
    run = tmp_path / "public"
    shutil.copytree(PUBLIC, run, ignore=shutil.ignore_patterns("expected"))
    document = yaml.safe_load((run / "all_config.yaml").read_text())
    document["arch"].update(arch_changes)
    (run / "all_config.yaml").write_text(yaml.safe_dump(document))
    return run


def test_public_yaml_values_are_checked_naming_the_file_and_key(tmp_path):
    assert load_model(public_copy(tmp_path / "a", L_layers=2.0, hidden_size=64.0)).cfg.n_layers == 2
    for change, message in [(dict(halt_max_steps=16.5), "arch.halt_max_steps must be an integer >= 1, got 16.5"),
                            (dict(hidden_size="64"), "arch.hidden_size must be an integer >= 1, got '64'"),
                            (dict(L_layers=0), "arch.L_layers must be an integer >= 1, got 0"),
                            (dict(halt_exploration_prob=2), "arch.halt_exploration_prob must be a number in [0, 1]")]:
        run = public_copy(tmp_path / next(iter(change)), **change)
        with pytest.raises(AirInterpError) as err:
            load_model(run)
        assert one_line(err).startswith(f"{run / 'all_config.yaml'}: {message}")


def test_a_public_yaml_that_is_not_a_mapping_is_one_line(tmp_path):
    run = public_copy(tmp_path)
    (run / "all_config.yaml").write_text("- arch\n- name\n")
    with pytest.raises(AirInterpError, match="no arch.name entry") as err:
        load_model(run)
    one_line(err)


# ---- 4. state dicts -----------------------------------------------------------------------------

def rewrite_public_state(tmp_path: Path, change) -> Path:
    run = public_copy(tmp_path)
    state = torch.load(run / "step_1", weights_only=True)
    change(state)
    torch.save(state, run / "step_1")
    return run


def test_a_key_with_and_without_the_compiled_prefix_is_refused(tmp_path):
    def twice(state):
        key = next(k for k in state if k.endswith("lm_head.weight"))
        state[("" if key.startswith("_orig_mod.") else "_orig_mod.") + key.removeprefix("_orig_mod.")] = state[key]

    with pytest.raises(AirInterpError) as err:
        load_model(rewrite_public_state(tmp_path, twice))
    assert "key model.inner.lm_head.weight is there both with and without the _orig_mod. prefix" in one_line(err)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_integer_and_bool_tensors_are_refused_where_weights_belong(tmp_path, dtype):
    def integers(state):
        key = next(k for k in state if k.endswith("lm_head.weight"))
        state[key] = state[key].to(dtype)

    with pytest.raises(AirInterpError) as err:
        load_model(rewrite_public_state(tmp_path, integers))
    assert f"key model.inner.lm_head.weight holds {str(dtype).removeprefix('torch.')} values" in one_line(err)


def test_integer_weights_in_our_format_are_refused(workspace, tmp_path):
    with safe_open(str(workspace / "tiny.safetensors"), framework="pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    tensors["lm_head.weight"] = tensors["lm_head.weight"].to(torch.int32)
    save_file(tensors, str(tmp_path / "ints.safetensors"), metadata=metadata)
    with pytest.raises(AirInterpError) as err:
        load_model(tmp_path / "ints.safetensors")
    assert "key lm_head.weight holds int32 values; weights must be floating point" in one_line(err)


# ---- 5. a diverged model gives no table ---------------------------------------------------------

def sudoku_split(count: int) -> Split:
    inputs, labels = sudoku_test_puzzles(count)
    return Split(inputs, labels, np.zeros(count, np.float32), np.arange(count), np.arange(count),
                 np.array(["test"] * count))


def test_nan_weights_name_the_first_act_step():
    model = tiny_model()
    with torch.no_grad():
        model.lm_head.weight.fill_(float("nan"))
    with pytest.raises(AirInterpError) as err:
        evaluate(model, sudoku_split(4))
    assert "not finite (NaN or inf) from ACT step 1 of 2 on" in one_line(err)


def test_a_state_that_diverges_later_names_its_step(monkeypatch):
    model = tiny_model(halt_max_steps=4)
    act_step, calls = model.act_step, []

    def diverging(carry, batch):
        carry, out = act_step(carry, batch)
        calls.append(1)
        if len(calls) == 3:
            carry.z_L[0, 0, 0] = float("inf")
        return carry, out

    monkeypatch.setattr(model, "act_step", diverging)
    with pytest.raises(AirInterpError, match="from ACT step 3 of 4 on"):
        evaluate(model, sudoku_split(4))


def test_cli_eval_of_a_model_that_overflows_exits_2_and_writes_nothing(workspace, monkeypatch, capsys):
    model = tiny_model()
    with torch.no_grad():
        model.embed_tokens.weight.fill_(3e38)  # finite, so it loads; the scaled embedding is not
    model.save(str(workspace / "huge.safetensors"))
    refused(workspace, monkeypatch, capsys, ["eval", "huge.safetensors", "--data", str(DEFAULT_DATASETS["sudoku"]),
                                             "--batch-size", "4", "--json", "huge.json", "--threads", "1"],
            "not finite (NaN or inf) from ACT step 1 of 2 on", ("huge.safetensors",))


# ---- 6. datasets --------------------------------------------------------------------------------

@pytest.mark.parametrize("arguments, message", [
    (("test",), "load_dataset: augmentations must be an integer >= 0, got 'test'"),
    ((-1,), "load_dataset: augmentations must be an integer >= 0, got -1"),
    ((2, "0"), "load_dataset: seed must be an integer >= 0, got '0'"),
])
def test_load_dataset_arguments_are_checked(workspace, arguments, message):
    with pytest.raises(AirInterpError) as err:
        load_dataset(workspace / "shift", *arguments)
    assert one_line(err) == message


def broken_dataset(workspace: Path, tmp_path: Path, manifest) -> Path:
    data = tmp_path / "data"
    shutil.copytree(workspace / "shift", data)
    (data / "manifest.json").write_text(json.dumps(manifest(json.loads((data / "manifest.json").read_text()))))
    return data


@pytest.mark.parametrize("manifest, message", [
    (lambda m: dict(m, task=3), "task: a task is named by a string (sudoku, maze, maze<side>), got 3"),
    (lambda m: {k: v for k, v in m.items() if k != "task"}, "task: a task is named by a string"),
    (lambda m: [m], "not an air-interp-dataset manifest"),
    (lambda m: "dataset", "not an air-interp-dataset manifest"),
])
def test_manifests_of_the_wrong_shape_name_the_file(workspace, tmp_path, manifest, message):
    data = broken_dataset(workspace, tmp_path, manifest)
    with pytest.raises(AirInterpError) as err:
        load_dataset(data)
    assert one_line(err).startswith(f"{data / 'manifest.json'}: {message}")


def test_tokens_outside_the_vocabulary_are_refused(workspace, tmp_path):
    data = broken_dataset(workspace, tmp_path, lambda m: m)
    inputs = np.load(data / "test" / "inputs.npy").astype(np.int64)
    inputs[0, 0] = -1  # a cast to uint8 would make it 255
    np.save(data / "test" / "inputs.npy", inputs)
    with pytest.raises(AirInterpError, match=r"inputs\.npy: tokens must lie in \[0, 6\), got -1 to"):
        load_dataset(data)


# ---- 7. the rest of issue 25 ----------------------------------------------------------------------

def sudoku_copy(tmp_path: Path, name: str = "sudoku") -> Path:
    data = tmp_path / name
    shutil.copytree(DEFAULT_DATASETS["sudoku"], data)
    return data


def rewrite_array(data: Path, split: str, name: str, change) -> None:
    file = data / split / f"{name}.npy"
    np.save(file, change(np.load(file)))


# -- 7.1 the emergence table never lands on a run's cache

def test_the_combined_emergence_outputs_are_named_apart_and_never_resolve_to_a_cache(workspace, tmp_path):
    from air_interp.probes.emergence import CACHE, COMBINED_FILES, combined_outputs, is_cache

    run = tmp_path / "run"
    shutil.copytree(workspace / "run", run, symlinks=True)
    (run / CACHE).write_text("train_step,sha256,data,data_sha256,puzzles,forward_dtype,metric\n")
    assert CACHE not in COMBINED_FILES and is_cache(run / CACHE)
    assert combined_outputs(run) == [run / name for name in COMBINED_FILES]  # --out RUN: beside the cache
    other = tmp_path / "other"
    other.mkdir()
    (other / COMBINED_FILES[0]).symlink_to(run / CACHE)
    with pytest.raises(AirInterpError) as err:
        combined_outputs(other)
    assert one_line(err) == (f"{other / COMBINED_FILES[0]} resolves to {run / CACHE}, a run's emergence cache "
                             f"({CACHE}, its measurements); refusing to write over it, choose another --out")


def test_cli_emergence_out_run_keeps_the_runs_cache(workspace, monkeypatch, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(workspace / "run", run, symlinks=True)
    monkeypatch.chdir(tmp_path)
    quick = ["--puzzles", "2", "--batch-size", "2", "--quiet", "--threads", "1"]
    assert main(["emergence", "run", *quick]) == 0
    cache = (run / "emergence.csv").read_bytes()
    assert main(["emergence", "run", "--out", "run", "--overwrite", *quick]) == 0
    assert (run / "emergence.csv").read_bytes() == cache
    assert {"emergence_runs.csv", "emergence_runs.png", "emergence_runs.pdf"} <= {p.name for p in run.iterdir()}


def test_cli_emergence_refuses_an_output_that_resolves_to_a_cache(workspace, monkeypatch, capsys):
    if not (workspace / "em_run").exists():
        shutil.copytree(workspace / "run", workspace / "em_run", symlinks=True)
        (workspace / "em_run" / "emergence.csv").write_text("train_step,sha256,data\n")
        (workspace / "em_out").mkdir()
        (workspace / "em_out" / "emergence_runs.csv").symlink_to(workspace / "em_run" / "emergence.csv")
    refused(workspace, monkeypatch, capsys, ["emergence", "em_run", "--out", "em_out", "--overwrite", "--puzzles", "2"],
            "em_out/emergence_runs.csv", ("em_run/emergence.csv",))  # a link: refused (so a cache is never reached)


# -- 7.2 caches are keyed by content

def test_the_emergence_cache_is_keyed_by_the_datas_content(tmp_path, monkeypatch):
    from air_interp.data.dataset import Dataset, dataset_digest, save_dataset
    from air_interp.probes import emergence as em

    data = sudoku_copy(tmp_path)
    run = tmp_path / "run"
    (run / "checkpoints" / "step_00000010").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"train": {"data": str(data)}}))
    tiny_model().save(str(run / "checkpoints" / "step_00000010" / "model.safetensors"))
    measured = []
    real_metrics = em.checkpoint_metrics
    monkeypatch.setattr(em, "checkpoint_metrics", lambda *a, **k: measured.append(1) or real_metrics(*a, **k))
    first = em.run_emergence(run, puzzles=2, progress=False)
    old = dataset_digest(load_dataset(data).test, 2)
    assert set(first["data_sha256"]) == {old} and len(measured) == 1
    em.run_emergence(run, puzzles=2, progress=False)
    assert len(measured) == 1  # same content: served from the cache

    dataset = load_dataset(data)  # new data at the same path: the test puzzles in another order
    save_dataset(Dataset(dataset.task, dataset.train, dataset.test.take(np.arange(len(dataset.test))[::-1]),
                         dataset.manifest), data, overwrite=True)
    new = dataset_digest(load_dataset(data).test, 2)
    again = em.run_emergence(run, puzzles=2, progress=False)
    assert new != old and len(measured) == 2 and set(again["data_sha256"]) == {new}
    assert set(em.read_cache(run)["data_sha256"]) == {new}  # the stale rows were replaced

    cache = pd.read_csv(run / em.CACHE).drop(columns="data_sha256")  # a cache written before the digest
    cache.to_csv(run / em.CACHE, index=False)
    assert set(em.read_cache(run)["data_sha256"]) == {""}
    em.run_emergence(run, puzzles=2, progress=False)
    assert len(measured) == 3 and set(em.read_cache(run)["data_sha256"]) == {new}  # measured again


def test_the_dataset_digest_is_the_content(tmp_path):
    from air_interp.data.dataset import dataset_digest

    split = sudoku_split(4)
    assert dataset_digest(split) == dataset_digest(split.take(np.arange(4)))
    assert dataset_digest(split, 2) != dataset_digest(split) and len(dataset_digest(split)) == 64
    changed = dataclasses.replace(split, labels=split.labels.copy())
    changed.labels[3, 0] ^= 1
    assert dataset_digest(changed) != dataset_digest(split) and dataset_digest(changed, 3) == dataset_digest(split, 3)


# -- 7.3 our own dataset layout is checked on load

@pytest.mark.parametrize("split, name, change, message", [
    ("test", "inputs", lambda a: a.astype(np.float64), "inputs must be integer tokens, got dtype float64"),
    ("train", "groups", lambda a: a.astype(np.float32), "groups must be integers, got dtype float32"),
    ("test", "puzzle_ids", lambda a: a.astype(np.float64), "puzzle_ids must be integers, got dtype float64"),
    ("test", "sources", lambda a: np.zeros(len(a), np.int64), "sources must be strings, got dtype int64"),
    ("test", "groups", lambda a: a - 5, "groups must be >= 0, got -5"),
])
def test_arrays_of_the_wrong_kind_are_refused_not_cast(tmp_path, split, name, change, message):
    data = sudoku_copy(tmp_path)
    rewrite_array(data, split, name, change)
    with pytest.raises(AirInterpError) as err:
        load_dataset(data)
    assert one_line(err) == f"{data / split / name}.npy: {message}"


def _set(array: np.ndarray, row: int, cell: int, value: int) -> np.ndarray:
    array = array.copy()
    array[row, cell] = value
    return array


def _given_changed(labels: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    cell = int(np.flatnonzero(inputs[2] > 1)[0])
    return _set(labels, 2, cell, 2 + (labels[2, cell] - 1) % 9)


@pytest.mark.parametrize("name, change, message", [
    ("inputs", lambda a, other: _set(a, 1, 0, 0), "row 1 of inputs.npy / labels.npy breaks the sudoku rules: "
                                                  "question: not 81 cells of blanks and digits"),
    ("labels", lambda a, other: _set(a, 0, 5, 1), "row 0 of inputs.npy / labels.npy breaks the sudoku rules: "
                                                  "solution is not 81 digits"),
    ("labels", _given_changed, "row 2 of inputs.npy / labels.npy breaks the sudoku rules: solution breaks a rule"),
])
def test_sudoku_rows_that_break_the_rules_are_refused_on_load(tmp_path, name, change, message):
    data = sudoku_copy(tmp_path)
    other = np.load(data / "test" / ("labels.npy" if name == "inputs" else "inputs.npy"))
    rewrite_array(data, "test", name, lambda a: change(a, other))
    with pytest.raises(AirInterpError) as err:
        load_dataset(data)
    assert one_line(err).startswith(f"{data / 'test'}: {message}")


def test_maze_rows_that_break_the_rules_are_refused_on_load(workspace, tmp_path):
    from air_interp.tasks.maze import OPEN, PATH, WALL

    for name, change, message in [
        ("inputs", lambda a, other: _set(a, 3, int(np.flatnonzero(a[3] == WALL)[0]), 0),
         "row 3 of inputs.npy / labels.npy breaks the maze4 rules: question: puzzle cells must be '#', ' ', 'S' or 'G'"),
        ("labels", lambda a, other: _set(a, 4, int(np.flatnonzero(a[4] == PATH)[0]), OPEN),
         "row 4 of inputs.npy / labels.npy breaks the maze4 rules: the 'o' cells do not form a simple path"),
    ]:
        data = tmp_path / name
        shutil.copytree(workspace / "shift", data)
        other = np.load(data / "test" / ("labels.npy" if name == "inputs" else "inputs.npy"))
        rewrite_array(data, "test", name, lambda a: change(a, other))
        with pytest.raises(AirInterpError) as err:
            load_dataset(data)
        assert one_line(err).startswith(f"{data / 'test'}: {message}")


def test_a_group_holds_one_puzzle_and_lies_together(tmp_path):
    data = sudoku_copy(tmp_path)
    rewrite_array(data, "test", "groups", lambda a: np.where(np.arange(len(a)) < 20, 0, a))  # 20 puzzles into 1
    with pytest.raises(AirInterpError) as err:
        load_dataset(data)
    assert "is not a symmetry of that puzzle (a group holds one puzzle and its augmentations)" in one_line(err)
    rewrite_array(data, "test", "groups", lambda a: np.r_[0, 1, 0, np.arange(3, len(a))])
    with pytest.raises(AirInterpError) as err:
        load_dataset(data)
    assert one_line(err).endswith("the rows of a group must lie together (one puzzle and its augmentations), "
                                  "but group 0 comes back at row 2")
    augmented = load_dataset(DEFAULT_DATASETS["sudoku"], augmentations=2)  # our augmentations pass
    from air_interp.data.dataset import _check_groups
    _check_groups(augmented.train, augmented.task, Path("augmented"))


def test_bad_examples_agree_with_the_row_checks():
    from air_interp.tasks import get_task

    rng = np.random.default_rng(25)
    for data, task in [(DEFAULT_DATASETS["sudoku"], "sudoku"), (DEFAULT_DATASETS["maze8"], "maze8")]:
        split = load_dataset(data).test
        inputs, labels = split.inputs[:200].copy(), split.labels[:200].copy()
        for row in range(0, 200, 2):
            target = inputs if row % 4 else labels
            target[row, rng.integers(target.shape[1])] = rng.integers(get_task(task).vocab_size)
        vectorised = get_task(task).bad_examples(inputs, labels)
        by_row = [get_task(task).check_example(a, b) is not None for a, b in zip(inputs, labels)]
        assert list(vectorised) == by_row and 20 < vectorised.sum() <= 100


def write_sudoku_csv(path: Path, rows: list[list[str]], header: bool = True) -> Path:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(([["source", "question", "answer", "rating"]] if header else []) + rows)
    return path


def sudoku_rows(count: int, start: int = 0) -> list[list[str]]:
    from air_interp.tasks import get_task

    task, split = get_task("sudoku"), load_dataset(DEFAULT_DATASETS["sudoku"]).test
    return [[f"p{row}", task.decode(split.inputs[row]), task.decode(split.labels[row]), "1"]
            for row in range(start, start + count)]


def test_cli_import_refuses_a_csv_without_a_header_row(workspace, monkeypatch, capsys):
    write_sudoku_csv(workspace / "no_header" / "train.csv", sudoku_rows(3), header=False)
    write_sudoku_csv(workspace / "no_header" / "test.csv", sudoku_rows(2, 3))
    err = refused(workspace, monkeypatch, capsys, ["data", "import", "sudoku", "no_header", "--out", "nh", "--quiet"],
                  "train.csv:1: the first row must be the header naming the fields source,question,answer,rating")
    assert "it looks like a puzzle: add the header line rather than lose it" in err


def test_a_csv_header_is_matched_by_name(tmp_path):
    from air_interp.data.upstream import BadRows, read_csv
    from air_interp.tasks import get_task

    rows = sudoku_rows(2)
    path = tmp_path / "reordered.csv"
    with path.open("w") as handle:
        handle.write("answer,question\n" + "".join(f"{a},{q}\n" for _, q, a, _ in rows))
    split = read_csv(path, get_task("sudoku"), BadRows())
    assert len(split) == 2 and split.sources.tolist() == ["", ""] and np.isnan(split.ratings).all()
    assert get_task("sudoku").decode(split.inputs[1]) == rows[1][1]
    path.write_text("source,question,solution,rating\n")
    with pytest.raises(AirInterpError) as err:
        read_csv(path, get_task("sudoku"), BadRows())
    assert one_line(err).startswith(f"{path}:1: the first row must be the header")
    path.write_text("source,question,answer,rating,notes\n")
    with pytest.raises(AirInterpError) as err:
        read_csv(path, get_task("sudoku"), BadRows())
    assert one_line(err) == (f"{path}:1: header row: unknown field(s) 'notes'; the fields are source, question, "
                             "answer, rating")


def test_cli_import_reports_duplicates_and_train_test_overlap(tmp_path, capsys):
    rows = sudoku_rows(4)
    write_sudoku_csv(tmp_path / "src" / "train.csv", rows + rows[:1])  # a duplicate in train
    write_sudoku_csv(tmp_path / "src" / "test.csv", rows[1:2] + sudoku_rows(2, 10))  # one test puzzle is in train
    capsys.readouterr()
    assert main(["data", "import", "sudoku", str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("air-interp: warning: 1 train and 0 test puzzles repeat"), err
    assert "1 test puzzles are also train puzzles" in err
    assert load_dataset(tmp_path / "out").manifest["duplicates"] == {"train": 1, "test": 0, "test_in_train": 1}


def test_processed_index_arrays_must_fit_the_arrays_lengths(workspace, monkeypatch, capsys):
    from air_interp.data.upstream import write_processed

    if not (workspace / "proc").exists():
        write_processed(load_dataset(workspace / "shift"), workspace / "proc")
        np.save(workspace / "proc" / "train" / "all__group_indices.npy", np.array([0, 1], np.int32))  # 64 into 2
    refused(workspace, monkeypatch, capsys, ["data", "import", "maze4", "proc", "--out", "proc_in"],
            "all__group_indices.npy: must run from 0 to the number of puzzles (64), got 0 to 1")


# -- 7.4 a bootstrap interval needs resamples

def test_a_bootstrap_of_fewer_than_100_resamples_is_refused():
    from air_interp.probes.attention import MIN_BOOTSTRAP, summarize

    table = pd.DataFrame({"puzzle": [0, 1, 2], "layer": 0, "cls": "control", "d_nbr": [0.1, 0.2, 0.3]})
    for n_boot in (1, 0, MIN_BOOTSTRAP - 1, 2.5):
        with pytest.raises(AirInterpError) as err:
            summarize(table, n_boot=n_boot)
        assert one_line(err) == (f"--bootstrap (bootstrap resamples of the 95% CI) must be an integer >= 100, "
                                 f"got {n_boot}")
    row = summarize(table, n_boot=MIN_BOOTSTRAP).iloc[0]
    assert row["boot_ci_low"] < row["boot_ci_high"]


def test_cli_attention_bootstrap_1_is_refused(workspace, monkeypatch, capsys):
    refused(workspace, monkeypatch, capsys, ["attention", "tiny.safetensors", "--bootstrap", "1", "--puzzles", "2",
                                             "--steps", "1", "--out", "att_out", "--threads", "1", "--quiet"],
            "--bootstrap (bootstrap resamples of the 95% CI) must be an integer >= 100, got 1")


# -- 7.5 hook errors that help

@pytest.mark.parametrize("hook, message", [
    (lambda z, hook: z[:, 1:], "the hook on step.0.sub.2.hook_z_H returned shape (2, 81, 32), but the point carries "
                               "shape (2, 82, 32); a hook returns None or a tensor of the shape and dtype it received"),
    (lambda z, hook: z.double(), "the hook on step.0.sub.2.hook_z_H returned dtype float64, but the point carries "
                                 "float32; a hook returns None or a tensor of the shape and dtype it received"),
    (lambda z, hook: z.long(), "the hook on step.0.sub.2.hook_z_H returned dtype int64, but the point carries float32"),
    (lambda z, hook: z.tolist(), "the hook on step.0.sub.2.hook_z_H returned a value of type list; a hook returns "
                                 "None or a tensor of shape (2, 82, 32) and dtype float32"),
])
def test_a_hook_returning_another_shape_or_dtype_is_named(hook, message):
    model = tiny_model()
    inputs, _ = sudoku_test_puzzles(2)
    with pytest.raises(AirInterpError) as err:
        model.run_with_hooks(inputs, fwd_hooks=[("step.0.sub.2.hook_z_H", hook)])
    assert one_line(err).startswith(message)
    with pytest.raises(AirInterpError, match="the hook on step.0.sub.2.hook_z_H returned"):
        with model.hooks(fwd_hooks=[("step.0.sub.2.hook_z_H", hook)]):
            model(inputs)
    assert model(inputs).shape == (2, 81, 11)  # the hooks are gone again
    model.run_with_hooks(inputs, fwd_hooks=[("step.0.sub.2.hook_z_H", lambda z, hook: hook.previous)])  # a freeze


def test_unknown_hook_names_are_one_line_with_a_hint():
    model = tiny_model()
    inputs, _ = sudoku_test_puzzles(2)
    for call in (lambda: model.run_with_hooks(inputs, fwd_hooks=[("step.0.sub.2.hook_zH", lambda z, hook: None)]),
                 lambda: model.hooks(fwd_hooks=[("step.0.sub.2.hook_zH", lambda z, hook: None)]).__enter__(),
                 lambda: model.add_hook("step.0.sub.2.hook_zH", lambda z, hook: None)):
        with pytest.raises(AirInterpError) as err:
            call()
        assert one_line(err).startswith("unknown hook point 'step.0.sub.2.hook_zH'; did you mean "
                                        "'step.0.sub.2.hook_z_H'")
        assert one_line(err).endswith("(model.hook_names() lists this model's 245 hook points)")
    with pytest.raises(AirInterpError) as err:
        model.run_with_cache(inputs, names_filter=["step.0.sub.0.hook_z_L", "step.5.sub.0.hook_z_L"])
    assert one_line(err).startswith("names_filter names 1 hook point(s) this model does not have: "
                                    "'step.5.sub.0.hook_z_L'")
    _, cache = model.run_with_cache(inputs, names_filter=["step.0.sub.0.hook_z_L"])
    assert list(cache.keys()) == ["step.0.sub.0.hook_z_L"]
    assert all(not hp.fwd_hooks for hp in model.hook_dict.values())  # nothing left attached


# -- 7.6 symlinks are what they point to

def test_a_folder_written_as_a_whole_through_a_symlink_keeps_the_link(tmp_path):
    from air_interp.io import atomic_path

    target, link = tmp_path / "figs", tmp_path / "link"
    target.mkdir()
    (target / "old.txt").write_text("old")
    link.symlink_to(target)
    with atomic_path(link, directory=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert link.is_symlink() and link.resolve() == target
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figs", "link"]
    file_link = tmp_path / "result.json"
    file_link.symlink_to(target / "new.txt")
    with atomic_path(file_link) as tmp:
        tmp.write_text("through")
    assert file_link.is_symlink() and (target / "new.txt").read_text() == "through"


def test_cli_figures_overwrite_through_a_symlink_replaces_the_folder_and_keeps_the_link(workspace, monkeypatch):
    from air_interp.probes import figures

    real, link = workspace / "figs_real", workspace / "figs_link"
    real.mkdir()
    (real / "old.png").write_text("an old figure")
    (real / "manifest.json").write_text(json.dumps({"outputs": [{"file": "old.png"}]}))
    link.symlink_to(real)

    def model_figures(name, model, out, puzzles, progress):
        (out / f"{name}_decode.png").write_text("new")
        return [out / f"{name}_decode.png"], {}

    monkeypatch.setattr(figures, "model_figures", model_figures)
    monkeypatch.setattr(figures, "claims_tables", lambda *a: [])
    monkeypatch.setattr(figures, "emergence_figures", lambda *a: [])
    monkeypatch.chdir(workspace)
    assert main(["figures", "--model", "tiny=tiny.safetensors", "--out", "figs_link", "--overwrite", "--quiet"]) == 0
    assert link.is_symlink() and link.resolve() == real
    assert sorted(p.name for p in real.iterdir()) == ["manifest.json", "tiny_decode.png"]
    assert not [p for p in workspace.iterdir() if p.name.startswith(".figs")]


def test_cli_figures_refuses_a_link_to_nothing_before_any_compute(workspace, monkeypatch, capsys):
    if not (workspace / "dangling").is_symlink():
        (workspace / "dangling").symlink_to(workspace / "nowhere")
    refused(workspace, monkeypatch, capsys, ["figures", "--out", "dangling", "--overwrite"],
            "dangling is a symlink to")


def test_a_probes_out_through_a_symlink_keeps_the_link(tmp_path):
    from air_interp.io import probe_output

    (tmp_path / "real").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "real")
    with probe_output(tmp_path / "out") as output:
        (output.folder / "table.csv").write_text("x")
    assert (tmp_path / "out").is_symlink() and os.listdir(tmp_path / "real") == ["table.csv"]
    assert output.moved == [tmp_path / "out" / "table.csv"]
    (tmp_path / "real" / "table.csv").unlink()
    (tmp_path / "real" / "table.csv").symlink_to(tmp_path / "elsewhere.csv")  # never replaced nor written through
    with pytest.raises(AirInterpError) as err:
        with probe_output(tmp_path / "out", overwrite=True, names=("table.*",)):
            pass
    assert one_line(err) == (f"{tmp_path / 'out' / 'table.csv'} is a symlink; refusing to replace a link (or write "
                             "through it), remove it or choose another --out")


# -- 7.7 the sweep's logs, numba's cache

def test_cli_sweep_refuses_a_log_path_holding_someone_elses_file(workspace, monkeypatch, capsys):
    (workspace / "sw").mkdir(exist_ok=True)
    (workspace / "sw" / "Lx_H_seed0.log").write_text("my own notes\n")
    refused(workspace, monkeypatch, capsys, ["sweep", "--out", "sw", "--presets", "Lx_H", "--seeds", "0", "--",
                                             "--data", "shift", *TINY_TRAIN],
            "sw/Lx_H_seed0.log exists and is not a log of this sweep", ("sw/Lx_H_seed0.log",))


def test_a_sweep_appends_to_its_own_logs(workspace, tmp_path):
    from air_interp.train.sweep import LOG_HEADER, SweepRun

    run = SweepRun("Lx_H", 0, tmp_path / "Lx_H_seed0")
    with run.open_log() as log:
        log.write("first part\n")
    with run.open_log() as log:  # resumed
        log.write("second part\n")
    assert run.log.read_text() == f"{LOG_HEADER}Lx_H_seed0 (air-interp train --preset Lx_H --seed 0)\nfirst part\nsecond part\n"
    legacy = SweepRun("Lx_H", 0, tmp_path / "legacy")  # a log from before the header, beside its run
    shutil.copytree(workspace / "run", legacy.directory, symlinks=True)
    legacy.log.write_text("legacy output\n")
    legacy.check_log()
    (tmp_path / "folder.log").mkdir()
    with pytest.raises(AirInterpError, match="is a folder") as err:
        SweepRun("Lx_H", 0, tmp_path / "folder").check_log()
    one_line(err)


@pytest.mark.parametrize("writable", [True, False])
def test_numba_caches_in_a_user_folder_never_in_the_package(tmp_path, writable):
    import subprocess
    import sys

    import air_interp.data

    package_cache = Path(air_interp.data.__file__).parent / "__pycache__"
    before = sorted(p.name for p in package_cache.glob("*.nb*")) if package_cache.is_dir() else []
    (tmp_path / "a_file").write_text("")
    cache_home = tmp_path / ("cache" if writable else "a_file")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"} | {"XDG_CACHE_HOME": str(cache_home)}
    code = ("from air_interp.data import jit\nfrom air_interp.data.generate import generate_mazes\n"
            "print(jit.CACHE_DIR)\nprint(len(generate_mazes(6, 2, 1, seed=0, progress=False).train))\n")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    folder = cache_home / "air-interp" / "numba"
    assert done.stdout.split() == ([str(folder)] if writable else ["None"]) + ["2"]
    assert list(folder.rglob("*.nbi")) if writable else not (tmp_path / "cache").exists()
    after = sorted(p.name for p in package_cache.glob("*.nb*")) if package_cache.is_dir() else []
    assert after == before


# -- 7.8 a probe's files move into --out together, under a lock

def test_probe_output_moves_the_files_in_together_at_the_end(tmp_path):
    from air_interp.io import LOCK_NAME, probe_output

    out = tmp_path / "out"
    with probe_output(out) as output:
        (output.folder / "table.csv").write_text("a")
        (output.folder / "figure.png").write_text("b")
        assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == []  # nothing yet
        assert (out / LOCK_NAME).is_file()
    assert sorted(os.listdir(out)) == ["figure.png", "table.csv"]  # no lock, no temporaries
    assert output.moved == [out / "figure.png", out / "table.csv"]
    with probe_output(None) as nothing:  # no --out: nothing to write
        assert nothing is None


def test_probe_output_writes_nothing_on_an_error(tmp_path):
    from air_interp.io import probe_output

    with pytest.raises(RuntimeError):
        with probe_output(tmp_path / "new" / "out") as output:
            (output.folder / "table.csv").write_text("half")
            raise RuntimeError("the probe failed")
    assert os.listdir(tmp_path) == []  # the folders made on entry are gone again
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(AirInterpError) as err:
        with probe_output(tmp_path / "mine"):
            pass
    assert one_line(err).startswith(f"{tmp_path / 'mine'} is not empty; pass --overwrite")
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]
    with probe_output(tmp_path / "mine", overwrite=True) as output:
        (output.folder / "notes.txt").write_text("replaced")
        (output.folder / "table.csv").write_text("new")
    assert sorted(os.listdir(tmp_path / "mine")) == ["notes.txt", "table.csv"]


def test_a_second_command_on_a_locked_out_folder_is_refused(tmp_path):
    import subprocess
    import sys

    from air_interp.io import probe_output

    out = tmp_path / "out"
    second = (f"from air_interp.io import probe_output\nfrom air_interp.errors import AirInterpError\n"
              f"try:\n    probe_output({str(out)!r}, overwrite=True).__enter__()\n"
              f"except AirInterpError as err:\n    print(err)\n")
    with probe_output(out) as output:
        (output.folder / "mine.csv").write_text("first")
        with pytest.raises(AirInterpError) as err:
            with probe_output(out, overwrite=True):
                pass
        assert one_line(err).startswith(f"{out} is being written by another air-interp command (process ")
        assert one_line(err).endswith("; wait for it to finish or choose another --out")
        other = subprocess.run([sys.executable, "-c", second], capture_output=True, text=True, timeout=120)
        assert f"{out} is being written by another air-interp command" in other.stdout, other.stderr
    assert os.listdir(out) == ["mine.csv"]
    with probe_output(out, overwrite=True) as output:  # free again
        pass


def test_what_a_killed_probe_left_does_not_block_the_next(tmp_path):
    from air_interp.io import LOCK_NAME, STAGING_PREFIX, probe_output

    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text("12345")  # a lock file no one holds
    (out / f"{STAGING_PREFIX}12345-x").mkdir()
    (out / f"{STAGING_PREFIX}12345-x" / "half.csv").write_text("half")
    with probe_output(out) as output:
        (output.folder / "table.csv").write_text("whole")
    assert os.listdir(out) == ["table.csv"]


def test_cli_decode_into_a_folder_another_command_writes_is_refused(workspace, monkeypatch, capsys):
    from air_interp.io import probe_output

    with probe_output(workspace / "busy") as output:
        (output.folder / "theirs.csv").write_text("theirs")
        refused(workspace, monkeypatch, capsys, ["decode", "tiny.safetensors", "--puzzles", "2", "--out", "busy",
                                                 "--overwrite"], "busy is being written by another air-interp command")


# -- 7.9 no NaN is passed off as a probe's result

def test_probes_stop_at_the_first_non_finite_state_or_logits():
    from air_interp.probes.attention import attention_contrasts
    from air_interp.probes.decode import decode
    from air_interp.probes.freeze import run_freeze

    inputs, labels = sudoku_test_puzzles(4)
    model = tiny_model()
    with torch.no_grad():
        model.lm_head.weight.fill_(float("nan"))
    for probe in (lambda: decode(model, inputs, labels, progress=False),
                  lambda: run_freeze([model], inputs, labels, progress=False),
                  lambda: attention_contrasts(model, inputs, labels, progress=False),
                  lambda: model.trace(inputs)):
        with pytest.raises(AirInterpError) as err:
            probe()
        assert one_line(err).startswith("the model's states or logits are not finite (NaN or inf) from the reset z_H "
                                        "(hook_z_H_init) on; a diverged model gives no result")

    model = tiny_model(halt_max_steps=3)

    def diverge(z, hook):
        z = z.clone()
        z[0, 0, 0] = float("inf")
        return z

    for probe in (lambda: decode(model, inputs, labels, batch_size=2, progress=False), lambda: model.trace(inputs)):
        with model.hooks(fwd_hooks=[("step.1.sub.3.hook_z_L", diverge)]), pytest.raises(AirInterpError) as err:
            probe()
        assert "from ACT step 2 of 3, sub-step 4 of 6 (the L-update, step.1.sub.3.hook_z_L) on" in one_line(err)
    assert decode(model, inputs, labels, progress=False).grids.shape[0] == 4  # a finite model runs as before


def test_cli_decode_of_a_model_that_overflows_exits_2_and_writes_nothing(workspace, monkeypatch, capsys):
    if not (workspace / "huge.safetensors").exists():
        model = tiny_model()
        with torch.no_grad():
            model.embed_tokens.weight.fill_(3e38)
        model.save(str(workspace / "huge.safetensors"))
    refused(workspace, monkeypatch, capsys, ["decode", "huge.safetensors", "--puzzles", "2", "--out", "nan_out",
                                             "--threads", "1", "--quiet"],
            "not finite (NaN or inf) from ACT step 1 of 2, sub-step 1 of 6 (the L-update, step.0.sub.0.hook_z_L) on",
            ("huge.safetensors",))
