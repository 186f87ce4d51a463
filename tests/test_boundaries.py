"""Issue 25: nothing overwrites its own input, nothing runs on unchecked data.

Each refusal is one AirInterpError line naming the file, field or option, the value and what is
allowed; from the CLI it is ``air-interp: error: ...``, exit code 2, before any compute (under
10 s), with the inputs unchanged byte for byte and nothing written.
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
import time
from pathlib import Path

import numpy as np
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
    (["--no-act-continue"], "--no-act-continue (stored False, given True)"),
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
