"""Published layouts as they are (SPEC 5.2): HRM's hub folder, run folders of many steps, TRM's
pydantic dump, TRM's variants written back under their own modules, ARC refused in one line, and
our own run folders read through air_interp.runs."""
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from air_interp import AirInterpError, export_official, load_model
from air_interp.checkpoints import checkpoint_file, checkpoint_inputs
from air_interp.runs import is_run, run_checkpoints, run_config, step_dir_name
from conftest import FIXTURES, random_batch, tiny_model

TRM_FIXTURES = Path(__file__).parent / "data" / "public_trm"
HRM_FIXTURE = FIXTURES / "hrm_act_v1"
NOT_IN_HUB_YAML = ("vocab_size", "seq_len", "num_puzzle_identifiers")


def logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(batch, return_type="all").logits


def hub_folder(step_file: Path, folder: Path, **document_changes) -> Path:
    """``step_file``'s run as HRM's hub publishes one: the state dict, compiled-prefixed, in a file
    named ``checkpoint`` beside an ``all_config.yaml`` without vocabulary, length or identifier count."""
    folder.mkdir(parents=True)
    state = torch.load(step_file, weights_only=True)
    torch.save({f"_orig_mod.{key}": tensor for key, tensor in state.items()}, folder / "checkpoint")
    document = yaml.safe_load((step_file.parent / "all_config.yaml").read_text())
    for key in NOT_IN_HUB_YAML:
        document["arch"].pop(key, None)
        document.pop(key, None)
    document.update(document_changes)
    (folder / "all_config.yaml").write_text(yaml.safe_dump(document))
    return folder


def one_line_error(path: Path, **kwargs) -> str:
    with pytest.raises(AirInterpError) as err:
        load_model(path, **kwargs)
    message = str(err.value)
    assert message and "\n" not in message, message
    return message


# ---- HRM's hub folder ---------------------------------------------------------------------------

def test_the_hrm_hub_folder_loads_from_its_tensors_and_task_bit_for_bit(tmp_path):
    original = load_model(HRM_FIXTURE / "step_1")
    hub = hub_folder(HRM_FIXTURE / "step_1", tmp_path / "HRM-checkpoint-sudoku-extreme")
    assert checkpoint_file(hub) == hub / "checkpoint"
    assert checkpoint_inputs(hub) == [hub / "checkpoint", hub / "all_config.yaml"]
    batch = random_batch(original, size=2)
    for path in (hub, hub / "checkpoint"):
        model = load_model(path)
        assert model.cfg == original.cfg
        assert (model.cfg.task, model.cfg.vocab_size, model.cfg.seq_len) == ("sudoku", 11, 81)
        assert torch.equal(logits(model, batch), logits(original, batch))


def test_an_hrm_hub_maze_takes_900_cells_from_its_vocabulary_of_6(tmp_path):
    model = tiny_model("hrm", task="maze", num_puzzle_identifiers=3)
    export_official(model, tmp_path / "run", step=4)
    hub = hub_folder(tmp_path / "run" / "step_4", tmp_path / "HRM-checkpoint-maze-30x30-hard")
    loaded = load_model(hub)
    assert (loaded.cfg.task, loaded.cfg.vocab_size, loaded.cfg.seq_len, loaded.cfg.num_puzzle_identifiers) == (
        "maze", 6, 900, 3)
    batch = random_batch(model, size=2)
    assert torch.equal(logits(loaded, batch), logits(model, batch))


# ---- run folders --------------------------------------------------------------------------------

def test_a_public_run_folder_takes_its_highest_step_by_number_not_by_name(tmp_path):
    models = {step: tiny_model("gx_linear", seed=step) for step in (9, 10, 100)}
    for step, model in models.items():
        export_official(model, tmp_path, step=step)
    assert checkpoint_file(tmp_path) == tmp_path / "step_100"  # by name, step_9 is the last
    batch = random_batch(models[100])
    assert torch.equal(logits(load_model(tmp_path), batch), logits(models[100], batch))


def test_our_run_folder_is_read_through_air_interp_runs(tmp_path):
    run = tmp_path / "run"
    for step in (2, 10):
        folder = run / "checkpoints" / step_dir_name(step)
        folder.mkdir(parents=True)
        tiny_model(seed=step).save(str(folder / "model.safetensors"))
    (run / "latest").symlink_to(Path("checkpoints") / step_dir_name(10))
    (run / "config.json").write_text(json.dumps({"train": {}}))
    assert is_run(run) and checkpoint_file(run) == (run / "checkpoints" / step_dir_name(10) / "model.safetensors")
    assert [step for step, _ in run_checkpoints(run)] == [2, 10]
    (run / "config.json").write_text("[1, 2]")
    assert run_config(run) == {} and not is_run(run)


# ---- TRM's dump and variants --------------------------------------------------------------------

def test_a_trm_pydantic_dump_loads_with_its_extra_entries_ignored(tmp_path):
    run = tmp_path / "trm"
    shutil.copytree(TRM_FIXTURES / "trm", run, ignore=shutil.ignore_patterns("expected"))
    document = yaml.safe_load((run / "all_config.yaml").read_text())
    assert document["arch"]["H_layers"] == 0 and {"data_paths", "evaluators", "ema"} <= set(document)
    document["arch"].update(a_later_field=[1, 2], loss={"name": "losses@ACTLossHead", "extra": True})
    document.update(wandb={"entity": "someone"}, freeze_weights=True)
    (run / "all_config.yaml").write_text(yaml.safe_dump(document))
    assert load_model(run).cfg == load_model(TRM_FIXTURES / "trm" / "step_1").cfg


@pytest.mark.parametrize("folder, module, mlp_t", [("trm_mlp_t", "trm", True), ("trm_singlez", "trm_singlez", False),
                                                   ("trm_hier6", "trm_hier6", False)])
def test_trm_variants_load_as_their_presets_and_export_as_their_modules(tmp_path, folder, module, mlp_t):
    model = load_model(TRM_FIXTURES / folder / "step_1")
    assert model.cfg.variant == folder and (model.cfg.mixer == "mlp_t") == mlp_t
    export_official(model, tmp_path, step=2)
    arch = yaml.safe_load((tmp_path / "all_config.yaml").read_text())["arch"]
    assert arch["name"] == f"recursive_reasoning.{module}@TinyRecursiveReasoningModel_ACTV1"
    assert arch["mlp_t"] is mlp_t and arch["pos_encodings"] == model.cfg.pos_encodings
    assert load_model(tmp_path / "step_2").cfg == model.cfg


def test_a_model_no_public_code_runs_is_not_exported(tmp_path):
    with pytest.raises(AirInterpError, match="trm_hier3 .*no public code base runs it"):
        export_official(tiny_model("trm", L_states=3), tmp_path)
    assert not list(tmp_path.iterdir())


# ---- what is not supported ----------------------------------------------------------------------

@pytest.mark.parametrize("changes", [dict(data_path="data/arc-aug-1000"), dict(data_path="data/ARC-2"),
                                     dict(data_paths=["data/arc1concept-aug-1000"]),
                                     dict(evaluators=[{"name": "arc@ARC"}])])
def test_an_arc_run_is_refused_in_one_line(tmp_path, changes):
    hub = hub_folder(HRM_FIXTURE / "step_1", tmp_path / "hub", **changes)
    assert "ARC is not a task here yet" in one_line_error(hub)


def test_arcs_shapes_are_refused_in_one_line_and_a_word_holding_arc_is_not_arc(tmp_path):
    hub = hub_folder(HRM_FIXTURE / "step_1", tmp_path / "hub", data_path="data/sudoku-march-search")
    assert load_model(hub).cfg.task == "sudoku"
    state = torch.load(hub / "checkpoint", weights_only=True)
    for key in ("embed_tokens.embedding_weight", "lm_head.weight"):
        state[f"_orig_mod.model.inner.{key}"] = torch.randn(12, 64)
    torch.save(state, hub / "checkpoint")
    assert "ARC is not a task here yet (vocabulary 12, 900 cells" in one_line_error(hub)
    assert "ARC is not a task here yet" in one_line_error(hub, seq_len=900)
