"""Training runs end to end: learning, exact resume, data parallelism, safe checkpoints, the CLI."""
import argparse
import json
import shutil
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
from air_interp.train import compiled as compiled_module
from air_interp.train import checkpoint as checkpoint_module
from air_interp.train.compiled import compiler_problem
from air_interp.train.checkpoint import latest_checkpoint, read_state
from air_interp.train.cli import add_train_parser, main
from air_interp.train.loop import Trainer, load_run_config, train
from safetensors.torch import load_file
from train_helpers import TINY_MODEL, ddp_worker, shift_task, tiny_recipe

from air_interp import hardware
from air_interp.hardware import machine_record
from air_interp.checkpoints import checkpoint_file, load_model
from air_interp.config import PRESETS
from air_interp.errors import AirInterpError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shift_data(tmp_path_factory) -> Path:
    return shift_task(tmp_path_factory.mktemp("data") / "shift")


def records(run: Path, kind: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(latest_checkpoint(run) / "model.safetensors"))


def assert_bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_loss_falls_and_exact_accuracy_rises(shift_data, tmp_path):
    cfg = tiny_recipe(shift_data, steps=60, global_batch_size=32, log_every=10, eval_every=30)
    final = train(cfg, tmp_path / "run", progress=False)
    logged = records(tmp_path / "run", "train")
    assert logged[-1]["lm_loss"] < 0.5 * logged[0]["lm_loss"]
    assert logged[0]["exact_accuracy"] < 0.5 and final["exact_accuracy"] > 0.9
    assert {"lr", "tokens_per_s", "steps_per_s", "q_halt_loss", "q_continue_loss"} <= logged[0].keys()
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["d_model"] == 32 and config["train"]["steps"] == 60 and config["total_steps"] == 60
    model = load_model(str(tmp_path / "run" / "latest" / "model.safetensors"))
    assert model.cfg.task == "maze4"


RESUME = dict(steps=8, checkpoint_every=3, ema=0.9, model=dict(d_model=32, n_heads=2, n_layers=1, halt_max_steps=3,
                                                                halt_exploration_prob=0.5))


@pytest.mark.parametrize("variant", ["Lx_H", "trm_hier6", "L2x_Mx_H"])  # TRM's recipe, seven and three states
def test_interrupted_and_resumed_run_is_bit_identical(shift_data, tmp_path, monkeypatch, variant):
    cfg = tiny_recipe(shift_data, variant=variant, **RESUME)
    train(cfg, tmp_path / "straight", progress=False)

    original = Trainer.train_step

    def dies_at_step_5(self):
        if self.step == 4:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", dies_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "killed", progress=False)
    assert latest_checkpoint(tmp_path / "killed").name == "step_00000003"
    monkeypatch.setattr(Trainer, "train_step", original)
    train(cfg, tmp_path / "killed", resume=True, progress=False)

    assert_bit_identical(weights(tmp_path / "straight"), weights(tmp_path / "killed"))
    straight, resumed = (read_state(latest_checkpoint(tmp_path / r)) for r in ("straight", "killed"))
    assert_bit_identical(straight["model"], resumed["model"])
    for key in (*load_model(tmp_path / "killed").cfg.states, "steps", "halted"):
        assert torch.equal(straight["ranks"][0]["carry"][key], resumed["ranks"][0]["carry"][key])
    assert [r["step"] for r in records(tmp_path / "killed", "train")] == [2, 4, 6, 8]


@pytest.mark.slow
def test_sigkilled_cli_run_resumes_bit_identical(shift_data, tmp_path):
    """A real SIGKILL at an arbitrary moment, through the command line."""
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def command(out: str, *extra: str) -> list[str]:
        return [sys.executable, "-m", "air_interp.train.cli", "train", "--scale", "cpu", "--data", str(shift_data),
                "--out", str(tmp_path / out), "--steps", "40", "--checkpoint-every", "5", "--global-batch-size", "8",
                "--augmentations", "0", "--d-model", "32", "--n-heads", "2", "--n-layers", "1",
                "--halt-max-steps", "3", "--threads", "1", "--no-compile", "--no-progress", *extra]

    subprocess.run(command("straight"), check=True, env=env, capture_output=True)
    victim = subprocess.Popen(command("killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while latest_checkpoint(tmp_path / "killed") is None and victim.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    subprocess.run(command("killed", "--resume"), check=True, env=env, capture_output=True)
    assert_bit_identical(weights(tmp_path / "straight"), weights(tmp_path / "killed"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_gloo_equals_one_process_on_the_whole_batch(shift_data, tmp_path):
    model = dict(d_model=32, n_heads=2, n_layers=1, halt_max_steps=3, halt_exploration_prob=0.0)
    cfg = tiny_recipe(shift_data, steps=3, global_batch_size=16, model=model, eval_batch_size=16)
    single = train(cfg, tmp_path / "single", progress=False)
    mp.spawn(ddp_worker, args=(2, free_port(), cfg, str(tmp_path / "ddp")), nprocs=2, join=True)
    one, two = weights(tmp_path / "single"), weights(tmp_path / "ddp")
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5, msg=key)
    assert not torch.equal(one["lm_head.weight"], load_model_init(cfg)["lm_head.weight"])
    state = read_state(latest_checkpoint(tmp_path / "ddp"))
    assert state["world_size"] == 2 and len(state["ranks"]) == 2 and state["ranks"][1]["carry"]["z_H"].shape[0] == 8
    assert records(tmp_path / "ddp", "eval")[-1]["count"] == 32 == single["count"]


def load_model_init(cfg) -> dict[str, torch.Tensor]:
    from air_interp.model import HookedAIR

    torch.manual_seed(cfg.seed)
    return HookedAIR(cfg.model_config("maze4")).state_dict()


def test_killed_save_leaves_latest_intact(shift_data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(tiny_recipe(shift_data, steps=3), run, progress=False)
    before = latest_checkpoint(run)
    trainer = Trainer(tiny_recipe(shift_data, steps=4), run, resume=True, progress=False)
    trainer.train_step()

    def dies_mid_write(obj, path):
        Path(path).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", dies_mid_write)
    with pytest.raises(OSError):
        trainer.save()
    trainer.close()
    assert latest_checkpoint(run) == before and read_state(before)["step"] == 3
    assert load_model(str(run / "latest" / "model.safetensors")).cfg.d_model == 32
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step_00000003"]


def test_keep_prunes_old_checkpoints(shift_data, tmp_path):
    train(tiny_recipe(shift_data, steps=5, checkpoint_every=1, keep=2), tmp_path / "run", progress=False)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step_00000004", "step_00000005"]


def test_keep_models_every_thins_old_checkpoints_to_their_models(shift_data, tmp_path):
    run = tmp_path / "run"
    train(tiny_recipe(shift_data, steps=7, checkpoint_every=1, keep=2, keep_models_every=3), run, progress=False)
    folders = {p.name: sorted(f.name for f in p.iterdir()) for p in (run / "checkpoints").iterdir()}
    full, model_only = ["model.safetensors", "train_state.pt"], ["model.safetensors"]
    assert folders == {"step_00000003": model_only, "step_00000006": full, "step_00000007": full}
    from air_interp.checkpoints import run_checkpoints

    assert [step for step, _ in run_checkpoints(run)] == [3, 6, 7]


def test_init_from_starts_from_the_given_weights_with_a_fresh_run(shift_data, tmp_path):
    train(tiny_recipe(shift_data, steps=4), tmp_path / "source", progress=False)
    source = checkpoint_file(tmp_path / "source")
    trainer = Trainer(tiny_recipe(shift_data, steps=2, init_from=str(tmp_path / "source")), tmp_path / "tuned",
                      progress=False)
    try:
        assert trainer.step == 0
        assert_bit_identical(trainer.model.state_dict(), load_model(source).state_dict())
    finally:
        trainer.close()
    config = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert config["train"]["init_from"] == str(tmp_path / "source")
    from air_interp.io import sha256

    assert config["init_from_sha256"] == sha256(source)
    fresh = Trainer(tiny_recipe(shift_data, steps=2), tmp_path / "fresh", progress=False)
    fresh.close()
    assert not torch.equal(fresh.model.embed_tokens.weight, trainer.model.embed_tokens.weight)


def test_init_from_refuses_another_architecture(shift_data, tmp_path):
    train(tiny_recipe(shift_data, steps=1), tmp_path / "source", progress=False)
    wider = tiny_recipe(shift_data, steps=1, init_from=str(tmp_path / "source"),
                        model=dict(tiny_recipe(shift_data).model, n_layers=2))
    with pytest.raises(AirInterpError, match=r"--init-from .*its n_layers is 1, this run's is 2"):
        train(wider, tmp_path / "tuned", progress=False)


def test_trm_trains_with_its_own_recipe(shift_data, tmp_path):
    """``--preset trm``: TRM's halting (q_halt > 0) and gradient window (the last cycle) in the
    model, and its EMA, unless the run says otherwise."""
    train(tiny_recipe(shift_data, steps=1, variant="trm"), tmp_path / "trm", progress=False)
    config = json.loads((tmp_path / "trm" / "config.json").read_text())
    cfg = load_model(tmp_path / "trm").cfg
    assert (cfg.variant, cfg.no_act_continue, cfg.gradient, config["train"]["ema"]) == ("trm", True, "last_cycle", 0.999)
    train(tiny_recipe(shift_data, steps=1, variant="trm", no_act_continue=False, ema=0.0), tmp_path / "paper_rule",
          progress=False)
    assert load_model(tmp_path / "paper_rule").cfg.no_act_continue is False
    assert json.loads((tmp_path / "paper_rule" / "config.json").read_text())["train"]["ema"] == 0.0


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_trains_one_step(shift_data, tmp_path, preset):
    final = train(tiny_recipe(shift_data, steps=1, variant=preset), tmp_path / preset, progress=False)
    assert final["count"] == 32
    assert load_model(str(tmp_path / preset / "latest" / "model.safetensors")).cfg.variant == preset


@pytest.mark.slow
def test_trains_on_shipped_sudoku_with_augmentation(tmp_path):
    cfg = tiny_recipe(REPO / "data" / "sudoku-hard", steps=2, augmentations=2, no_act_continue=True,
                      eval_batch_size=500)
    final = train(cfg, tmp_path / "run", progress=False)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train_examples"] == 3000 and config["train_puzzles"] == 1000 and final["count"] == 1000


# ---- the command line ----------------------------------------------------------------------------

def run_cli(*argv: str):
    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


TINY_CLI = ("--scale", "cpu", "--augmentations", "0", "--global-batch-size", "8", "--d-model", "32", "--n-heads", "2",
            "--n-layers", "1", "--halt-max-steps", "2", "--threads", "1", "--no-compile", "--no-progress")


def test_cli_train_resume_and_eval(shift_data, tmp_path, capsys):
    out = str(tmp_path / "run")
    run_cli("train", "--preset", "L2x_Hx", "--data", str(shift_data), "--out", out, "--steps", "2", *TINY_CLI)
    run_cli("train", "--out", out, "--resume", "--steps", "4", "--no-progress")
    assert read_state(latest_checkpoint(Path(out)))["step"] == 4
    run_cli("eval", out, "--data", str(shift_data), "--json", str(tmp_path / "eval.json"), "--dtype", "bfloat16",
            "--threads", "1")
    printed = capsys.readouterr().out
    assert "exact_accuracy" in printed and "exact accuracy by segment" in printed
    assert "forward dtype bfloat16 (as requested" in printed
    results = json.loads((tmp_path / "eval.json").read_text())
    assert results["count"] == 32 and results["forward_dtype"] == "bfloat16"


@pytest.mark.parametrize("argv, message", [
    (("--preset", "L9_Q"), "unknown variant"),
    (("--d-model", "33"), "multiple of n_heads"),
    (("--lr", "-1"), "lr must be > 0"),
    (("--lr-schedule", "linear"), "lr_schedule must be one of"),
    (("--data", "/nonexistent"), "not a dataset directory"),
    (("--resume",), "no run to resume"),
])
def test_cli_train_errors(shift_data, tmp_path, argv, message):
    base = ["train", "--data", str(shift_data), "--out", str(tmp_path / "run"), "--steps", "1", *TINY_CLI]
    with pytest.raises(AirInterpError, match=message):
        run_cli(*base, *argv)


def test_cli_refuses_to_overwrite_a_run_and_eval_mismatch(shift_data, tmp_path, capsys):
    out = str(tmp_path / "run")
    args = ("train", "--data", str(shift_data), "--out", out, "--steps", "1", *TINY_CLI)
    run_cli(*args)
    assert main(list(args)) == 2 and "already holds a run" in capsys.readouterr().err
    with pytest.raises(AirInterpError, match="holds"):
        run_cli("eval", out, "--data", str(REPO / "data" / "maze-15"))
    with pytest.raises(AirInterpError, match="no such file or directory"):
        run_cli("eval", str(tmp_path / "nothing"), "--data", str(shift_data))
    with pytest.raises(SystemExit):
        run_cli("train", "--out", out, "--steps", "1", "--epochs", "1")


AVX2_ONLY, AMX = frozenset({"avx2", "fma"}), frozenset({"avx2", "fma", "avx512f", "amx_bf16"})


@pytest.mark.parametrize("first_cpu, chosen, second_cpu", [(AVX2_ONLY, "float32", AMX), (AMX, "bfloat16", AVX2_ONLY)])
def test_auto_dtype_is_recorded_and_a_resumed_run_keeps_it(shift_data, tmp_path, monkeypatch, first_cpu, chosen,
                                                           second_cpu):
    out = tmp_path / "run"
    monkeypatch.setattr(hardware, "cpu_flags", lambda: first_cpu)
    run_cli("train", "--data", str(shift_data), "--out", str(out), "--steps", "1", *TINY_CLI)
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["dtype"] == chosen == config["model"]["forward_dtype"]
    monkeypatch.setattr(hardware, "cpu_flags", lambda: second_cpu)  # resumed on the other kind of machine
    run_cli("train", "--out", str(out), "--resume", "--steps", "2", "--no-progress")
    assert json.loads((out / "config.json").read_text())["train"]["dtype"] == chosen
    assert read_state(latest_checkpoint(out))["config"]["dtype"] == chosen


def test_runs_that_stored_auto_resume_in_the_dtype_they_ran_in(shift_data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    train(tiny_recipe(shift_data, steps=1), out, progress=False)
    config = json.loads((out / "config.json").read_text())
    config["train"]["dtype"] = "auto"  # as written before the config recorded the chosen dtype
    (out / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    assert load_run_config(out).dtype == config["model"]["forward_dtype"] == "float32"


def compiled_and_eager_weights(shift_data, tmp_path) -> tuple[dict, dict]:
    model = dict(TINY_MODEL, halt_max_steps=3, halt_exploration_prob=0.5)  # both draw the same random stream
    for name, compiled in (("eager", False), ("compiled", True)):
        train(tiny_recipe(shift_data, steps=3, compile=compiled, model=model), tmp_path / name, progress=False)
    return weights(tmp_path / "eager"), weights(tmp_path / "compiled")


@pytest.mark.slow
def test_compiled_training_matches_eager_training(shift_data, tmp_path):
    problem = compiler_problem(torch.device("cpu"))
    if problem is not None:
        pytest.skip(f"torch.compile does not work here: {problem}")
    eager, compiled = compiled_and_eager_weights(shift_data, tmp_path)
    for key in eager:
        torch.testing.assert_close(compiled[key], eager[key], rtol=1e-4, atol=1e-5, msg=key)
    assert not torch.equal(eager["lm_head.weight"], load_model_init(tiny_recipe(shift_data))["lm_head.weight"])


def test_compile_without_a_compiler_warns_and_trains_eagerly(shift_data, tmp_path, monkeypatch):
    monkeypatch.setattr(compiled_module, "compiler_problem", lambda device: "no C++ compiler")
    with pytest.warns(UserWarning, match="no C\\+\\+ compiler.*runs eagerly"):
        eager, fallback = compiled_and_eager_weights(shift_data, tmp_path)
    assert_bit_identical(eager, fallback)


def test_cli_resume_cannot_change_the_model(shift_data, tmp_path):
    out = str(tmp_path / "run")
    run_cli("train", "--data", str(shift_data), "--out", out, "--steps", "1", *TINY_CLI)
    with pytest.raises(AirInterpError, match="cannot change d_model"):
        run_cli("train", "--out", out, "--resume", "--steps", "2", "--d-model", "64")
    with pytest.raises(AirInterpError, match="cannot change --preset"):
        run_cli("train", "--out", out, "--resume", "--steps", "2", "--preset", "hrm")


def test_publish_writes_model_card_log_and_a_loadable_model(shift_data, tmp_path):
    from air_interp.data import load_dataset
    from air_interp.evaluate import evaluate
    from air_interp.train.curves import plot_curves, read_metrics
    from air_interp.train.publish import publish

    train(tiny_recipe(shift_data, steps=20, global_batch_size=32, eval_every=10), tmp_path / "run", progress=False)
    (tmp_path / "run" / "emergence.csv").write_text("run,train_step\nx,10\n")  # as air-interp emergence leaves it
    card = publish(tmp_path / "run", "shift_Lx_H", sample=7, out=tmp_path / "ckpts")
    assert (tmp_path / "ckpts" / "logs" / "shift_Lx_H" / "emergence.csv").read_text() == "run,train_step\nx,10\n"
    assert card["step"] == 20 and card["test"]["exact_accuracy"] == records(tmp_path / "run", "eval")[-1]["exact_accuracy"]
    model = load_model(str(tmp_path / "ckpts" / "shift_Lx_H.safetensors"))
    assert model.cfg.forward_dtype == "float32"  # whatever the run trained in
    sample = evaluate(model, load_dataset(shift_data).split("test").take(torch.arange(7).numpy()))
    assert card["sample"] == {"puzzles": 7, "forward_dtype": "float32", "machine": machine_record(), **{
        key: sample[key] for key in ("exact_accuracy", "accuracy", "halt_step", "halted_exact_accuracy")}}
    # every probe takes the run directory itself: its latest model
    assert checkpoint_file(tmp_path / "run") == latest_checkpoint(tmp_path / "run") / "model.safetensors"
    assert_bit_identical(load_model(tmp_path / "run").state_dict(), model.state_dict())
    assert json.loads((tmp_path / "ckpts" / "shift_Lx_H.json").read_text()) == card
    published_log = (tmp_path / "ckpts" / "logs" / "shift_Lx_H" / "metrics.jsonl").read_text().splitlines()
    assert list(map(json.loads, published_log)) == list(map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()))
    train_records, eval_records = read_metrics(tmp_path / "run")
    assert list(eval_records["step"]) == [10, 20] and train_records["step"].max() == 20
    for figure in plot_curves({"a": tmp_path / "run", "b": tmp_path / "ckpts" / "logs" / "shift_Lx_H"}, tmp_path / "c"):
        assert figure.stat().st_size > 1000
    log = tmp_path / "run" / "metrics.jsonl"  # an interrupted run: no evaluation at its latest step
    log.write_text("".join(line + "\n" for line in log.read_text().splitlines() if '"step": 20' not in line
                           or '"eval"' not in line))
    with pytest.raises(AirInterpError, match=r"no evaluation at its latest checkpoint \(step 20\)"):
        publish(tmp_path / "run", "x", out=tmp_path / "ckpts")



def test_model_card_tells_depth_data_steps_and_time_through_a_fine_tune(shift_data, tmp_path):
    from air_interp.train.publish import publish, training_seconds

    train(tiny_recipe(shift_data, steps=6, eval_every=3), tmp_path / "base", progress=False)
    tuned = tiny_recipe(shift_data, steps=4, eval_every=2, init_from=str(tmp_path / "base"))
    train(tuned, tmp_path / "tuned", progress=False)
    training = publish(tmp_path / "tuned", "tuned", out=tmp_path / "ckpts", sample=3)["training"]
    base_log = [json.loads(line) for line in (tmp_path / "base" / "metrics.jsonl").read_text().splitlines()]
    assert training["n_layers"] == TINY_MODEL["n_layers"] and training["data"] == str(shift_data)
    assert (training["steps"], training["init_from"]["steps"], training["total_steps"]) == (4, 6, 10)
    assert training["init_from"]["hours"] == round(training_seconds(base_log) / 3600, 2)
    assert training["total_hours"] == round(training["hours"] + training["init_from"]["hours"], 2)
    # fine-tuned again from the published model: its card tells the history
    train(tiny_recipe(shift_data, steps=2, eval_every=2, init_from=str(tmp_path / "ckpts" / "tuned.safetensors")),
          tmp_path / "again", progress=False)
    again = publish(tmp_path / "again", "again", out=tmp_path / "ckpts", sample=3)["training"]
    assert again["init_from"]["total_steps"] == 10 and again["total_steps"] == 12
    # the log's rates cover every step once, also where a resumed run logged a step twice
    log = [{"kind": "train", "step": 2, "steps_per_s": 1.0}, {"kind": "eval", "step": 2},
           {"kind": "train", "step": 4, "steps_per_s": 0.5}, {"kind": "train", "step": 4, "steps_per_s": 2.0}]
    assert training_seconds(log) == 2 / 1.0 + 2 / 2.0

@pytest.mark.slow
def test_sweep_trains_every_preset_and_seed_resumes_and_feeds_the_tables(shift_data, tmp_path, capsys):
    from air_interp.probes.tables import card_rows, injection_table, published_cards, specialisation_rows

    out, data = tmp_path / "sweep", str(shift_data)
    # a run of the sweep that an interruption left at step 1 of 2
    run_cli("train", "--preset", "Lx_Hx", "--seed", "1", "--data", data, "--out", str(out / "Lx_Hx_seed1"),
            "--steps", "1", *TINY_CLI)
    sweep = ("sweep", "--out", str(out), "--presets", "Lx_H", "Lx_Hx", "--seeds", "0", "1", "--jobs", "2",
             "--", "--data", data, "--steps", "2", *TINY_CLI)
    run_cli(*sweep)
    assert "4 runs finished" in capsys.readouterr().out
    runs = sorted(p.name for p in out.iterdir() if p.is_dir() and p.name != "published")
    assert runs == ["Lx_H_seed0", "Lx_H_seed1", "Lx_Hx_seed0", "Lx_Hx_seed1"]
    assert all(read_state(latest_checkpoint(out / run))["step"] == 2 for run in runs)
    assert records(out / "Lx_Hx_seed1", "train")[0]["step"] == 1  # resumed, not restarted
    uninterrupted = tmp_path / "uninterrupted"
    run_cli("train", "--preset", "Lx_Hx", "--seed", "1", "--data", data, "--out", str(uninterrupted),
            "--steps", "2", *TINY_CLI)
    assert_bit_identical(weights(out / "Lx_Hx_seed1"), weights(uninterrupted))
    assert not torch.equal(weights(out / "Lx_H_seed0")["embed_tokens.weight"], weights(out / "Lx_H_seed1")["embed_tokens.weight"])

    logs = {run: (out / run / "metrics.jsonl").read_text() for run in runs}
    run_cli(*sweep)  # everything finished: nothing changes
    assert logs == {run: (out / run / "metrics.jsonl").read_text() for run in runs}
    capsys.readouterr()
    run_cli("sweep", "--out", str(out), "--presets", "Lx_H", "Lx_Hx", "--list")
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["published"] * 4

    # every finished run is published with its card; the cards alone make the tables
    cards = published_cards(out)
    assert [(card["variant"], card["seed"], card["step"]) for _, card in cards] == [
        ("Lx_H", 0, 2), ("Lx_H", 1, 2), ("Lx_Hx", 0, 2), ("Lx_Hx", 1, 2)]
    for model_file, card in cards:
        assert torch.equal(load_model(model_file).state_dict()["embed_tokens.weight"],
                           weights(out / card["name"])["embed_tokens.weight"])
        assert card["test"]["exact_accuracy"] == records(out / card["name"], "eval")[-1]["exact_accuracy"]
    rows = card_rows(cards)
    table = injection_table(rows)
    assert list(table["variant"]) == ["Lx_H", "Lx_Hx"] and table["maze4"].str.endswith("(n=2)").all()
    assert list(table["paper maze"]) == ["71.0", "69.4"]
    mean = 100 * rows[rows["variant"] == "Lx_H"]["exact_accuracy"].mean()
    assert table["maze4"][0].startswith(f"{mean:.1f} ± ")
    # a published run whose directory is gone (a clean clone) stays finished: the sweep trains nothing
    shutil.rmtree(out / "Lx_H_seed0")
    run_cli(*sweep)
    assert not (out / "Lx_H_seed0").exists()
    # the claim metrics of every final model, cached beside its log: measured once
    specialisation = specialisation_rows(cards[:1], puzzles=2, progress=False)
    cache = out / "published" / "logs" / "Lx_H_seed0" / "emergence.csv"
    stamp = cache.stat().st_mtime_ns
    pd.testing.assert_frame_equal(specialisation_rows(cards[:1], puzzles=2, progress=False), specialisation)
    assert cache.stat().st_mtime_ns == stamp and specialisation["z_H undecided"].notna().all()


@pytest.mark.parametrize("argv, message", [
    (("--presets", "L9_Q"), "unknown variant"),
    ((), "new runs need a dataset"),
])
def test_sweep_errors(tmp_path, argv, message):
    with pytest.raises(AirInterpError, match=message):
        run_cli("sweep", "--out", str(tmp_path / "sweep"), *argv)
