"""Checkpoints: our safetensors format, the public code's format, conversion and bad input."""
import json

import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import save_file

from air_interp import AirInterpError, export_official, load_model
from air_interp.cli import main
from conftest import FIXTURES, NUMERICS, RECORDED, STEP1_TOLERANCE, random_batch, tiny_model

pytestmark = pytest.mark.numerics

PUBLIC_VARIANTS = ["Lx_H", "L2x_Hx", "minus_x", "gx_linear", "gx_nonlinear", "hadamard", "L2x_H2x_token_addition",
                   "L2x_H2x_token_prepend", "L2x_H2x_token_prepend_persist", "hrm"]


def same_outputs(a, b, batch):
    with torch.no_grad():
        return torch.equal(a(batch), b(batch))


@pytest.mark.parametrize("variant", ["Lx_H", "hrm", "L2x_H2x_token_prepend_persist"])
def test_save_load_round_trip_is_bit_exact(tmp_path, variant):
    model = tiny_model(variant)
    path = tmp_path / "model.safetensors"
    model.save(path)
    loaded = load_model(path)
    assert loaded.cfg == model.cfg
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key
    assert same_outputs(model, loaded, random_batch(model))


def test_the_halting_rule_travels_with_the_checkpoint_and_old_files_get_the_papers(tmp_path):
    model = tiny_model(no_act_continue=True)
    model.save(tmp_path / "trm.safetensors")
    assert load_model(tmp_path / "trm.safetensors").cfg.no_act_continue is True
    export_official(model, tmp_path / "run", step=1)
    assert load_model(tmp_path / "run").cfg.no_act_continue is True
    with safe_open(str(tmp_path / "trm.safetensors"), framework="pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads(metadata["config"])
    del config["no_act_continue"]  # written before the field existed
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata=dict(metadata, config=json.dumps(config)))
    assert load_model(tmp_path / "old.safetensors").cfg.no_act_continue is False


@pytest.mark.parametrize("variant", PUBLIC_VARIANTS)
def test_official_export_loads_back_with_the_same_outputs(tmp_path, variant):
    model = tiny_model(variant)
    export_official(model, tmp_path / "run", step=7)
    loaded = load_model(tmp_path / "run" / "step_7")
    assert loaded.cfg.variant == variant
    assert same_outputs(model, loaded, random_batch(model))


def test_compiled_prefix_and_run_directory_pick_the_highest_step(tmp_path):
    older, newer = tiny_model("gx_linear", seed=1), tiny_model("gx_linear", seed=2)
    export_official(older, tmp_path, step=5, compiled_prefix=True)
    export_official(newer, tmp_path, step=12, compiled_prefix=True)
    state = torch.load(tmp_path / "step_12", weights_only=True)
    assert all(key.startswith("_orig_mod.model.inner.") for key in state)
    assert same_outputs(newer, load_model(tmp_path), random_batch(newer))


PUBLIC_FOLDERS = sorted(folder.name for folder in FIXTURES.iterdir() if folder.is_dir())
PUBLIC_VARIANT_OF = {
    "air_1net_L2x_H2x_input_token_addition": "L2x_H2x_token_addition",
    "air_1net_L2x_H2x_input_token_prepend": "L2x_H2x_token_prepend",
    "air_1net_L2x_H2x_input_token_prepend_no_strip": "L2x_H2x_token_prepend_persist",
    "air_1net_gx_non_linear": "gx_nonlinear", "air_1net_had_prod": "hadamard", "hrm_act_v1": "hrm",
}
OUTPUTS = ("z_H", "z_L", "logits", "q_halt_logits")


def test_every_public_variant_has_a_fixture():
    assert len(PUBLIC_FOLDERS) == 16
    for folder in PUBLIC_FOLDERS:
        assert {path.stem for path in (FIXTURES / folder / "expected").glob("*.npz")} == set(RECORDED), folder


def public_model(folder: str):
    model = load_model(FIXTURES / folder / "step_1")
    variant = PUBLIC_VARIANT_OF.get(folder, folder.removeprefix("air_1net_"))
    assert (model.cfg.variant, model.cfg.d_model, model.cfg.n_layers, model.cfg.forward_dtype) == (
        variant, 64, 2, "float32")
    return model.eval()


def rollout(model, inputs: np.ndarray, steps: int) -> dict[str, torch.Tensor]:
    """The public outputs after ACT step ``steps``: the hooked rollout for the full 16, the ACT
    wrapper (the same operations, without hook points) for step 1."""
    batch = torch.from_numpy(inputs)
    with torch.no_grad():
        if steps == model.cfg.halt_max_steps:
            out = model(batch, return_type="all")
            return {key: getattr(out, key) for key in OUTPUTS}
        assert steps == 1
        carry, outputs = model.act_step(model.initial_carry(batch), batch)
        return {"z_H": carry.z_H, "z_L": carry.z_L, **{k: outputs[k] for k in ("logits", "q_halt_logits")}}


def recorded_steps(expected) -> list[int]:
    return sorted({int(key.rsplit("_step", 1)[1]) for key in expected.files if "_step" in key})


@pytest.mark.parametrize("folder", PUBLIC_FOLDERS)
def test_public_rollout_is_reproduced_bit_for_bit_on_the_recorded_machine_kind(folder):
    """The public code's own fp32 CPU rollout (1 thread), equal to the last bit at every recorded
    ACT step, where it was recorded on this machine's kind of kernels."""
    path = FIXTURES / folder / "expected" / f"{NUMERICS}.npz"
    if not path.is_file():
        pytest.skip(f"no public rollout recorded for numerics {NUMERICS} (recorded: {', '.join(RECORDED)}); "
                    "the first-step comparison and the summation-order test cover this machine")
    model, expected = public_model(folder), np.load(path)
    for steps in recorded_steps(expected):
        ours = rollout(model, expected["inputs"], steps)
        for key in OUTPUTS:
            assert torch.equal(ours[key], torch.from_numpy(expected[f"{key}_step{steps}"])), (key, steps)


@pytest.mark.parametrize("folder", PUBLIC_FOLDERS)
def test_first_act_step_matches_every_recorded_machine_kind(folder):
    """On any CPU, after one ACT step the rollout is within STEP1_TOLERANCE of the public code's on
    every kind that recorded step 1 (16 steps amplify kernel rounding to O(1), one does not)."""
    model = public_model(folder)
    compared = 0
    for signature in RECORDED:
        expected = np.load(FIXTURES / folder / "expected" / f"{signature}.npz")
        if 1 not in recorded_steps(expected):
            continue
        ours = rollout(model, expected["inputs"], 1)
        for key in OUTPUTS:
            torch.testing.assert_close(ours[key], torch.from_numpy(expected[f"{key}_step1"]), rtol=0,
                                       atol=STEP1_TOLERANCE, msg=lambda m: f"{signature} {key}: {m}")
        compared += 1
    assert compared >= 1


@pytest.mark.parametrize("folder", PUBLIC_FOLDERS)
def test_public_checkpoint_round_trips_through_export_bit_for_bit(tmp_path, folder):
    original = torch.load(FIXTURES / folder / "step_1", weights_only=True)
    original = {key.removeprefix("_orig_mod."): tensor for key, tensor in original.items()}
    exported = torch.load(export_official(load_model(FIXTURES / folder / "step_1"), tmp_path, step=3),
                          weights_only=True)
    assert exported.keys() == original.keys()
    for key, tensor in original.items():
        assert exported[key].dtype == tensor.dtype and torch.equal(exported[key], tensor), key
    reloaded = load_model(tmp_path / "step_3")
    assert reloaded.cfg == load_model(FIXTURES / folder / "step_1").cfg


# ---- bad input -----------------------------------------------------------------------------------

@pytest.fixture
def official_run(tmp_path):
    export_official(tiny_model("Lx_H"), tmp_path / "run", step=1)
    return tmp_path / "run"


def test_shape_mismatch_names_key_and_shapes(official_run):
    path = official_run / "step_1"
    state = torch.load(path, weights_only=True)
    state["model.inner.lm_head.weight"] = torch.zeros(11, 16)
    torch.save(state, path)
    with pytest.raises(AirInterpError, match=r"model\.inner\.lm_head\.weight has shape \(11, 16\), expected \(11, 32\)"):
        load_model(path)


def test_missing_and_unexpected_keys(official_run):
    path = official_run / "step_1"
    state = torch.load(path, weights_only=True)
    torch.save({**state, "model.inner.extra": torch.zeros(1)}, path)
    with pytest.raises(AirInterpError, match="unexpected key model.inner.extra"):
        load_model(path)
    del state["model.inner.q_head.bias"]
    torch.save(state, path)
    with pytest.raises(AirInterpError, match="missing key model.inner.q_head.bias"):
        load_model(path)


def test_unknown_variant_and_missing_config(official_run):
    config = official_run / "all_config.yaml"
    data = yaml.safe_load(config.read_text())
    data["arch"]["name"] = "air.air_1net_L3q_H@AIR"
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(AirInterpError, match="unknown variant 'air.air_1net_L3q_H@AIR'"):
        load_model(official_run / "step_1")
    config.unlink()
    with pytest.raises(AirInterpError, match="no all_config.yaml beside it"):
        load_model(official_run / "step_1")


def test_corrupt_files(tmp_path, official_run):
    garbage = official_run / "step_2"
    garbage.write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(AirInterpError, match="step_2: not a"):
        load_model(garbage)
    model = tiny_model()
    model.save(tmp_path / "good.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes((tmp_path / "good.safetensors").read_bytes()[:200])
    with pytest.raises(AirInterpError, match="not a readable safetensors file"):
        load_model(truncated)
    bare = tmp_path / "bare.safetensors"
    save_file({"x": torch.zeros(2)}, str(bare))
    with pytest.raises(AirInterpError, match="no air-interp config"):
        load_model(bare)
    with pytest.raises(AirInterpError, match="no such file"):
        load_model(tmp_path / "missing.safetensors")


def test_cli_convert_and_one_line_errors(tmp_path, official_run, capsys):
    out = tmp_path / "converted.safetensors"
    assert main(["convert", str(official_run / "step_1"), str(out)]) == 0
    assert "variant Lx_H" in capsys.readouterr().out
    assert load_model(out).cfg.variant == "Lx_H"
    (official_run / "all_config.yaml").unlink()
    assert main(["convert", str(official_run / "step_1"), str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no all_config.yaml" in err
    assert not (tmp_path / "x.safetensors").exists()
