"""Bad inputs a new user gives: each ends in one line naming the right cause, exit code 2, before any
compute, and nothing is written or removed (the whole workspace is compared before and after)."""
import csv
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from air_interp.cli import main
from air_interp.defaults import REPO
from air_interp.train.config import TrainConfig
from conftest import tiny_model
from train_helpers import TINY_MODEL, shift_task

SUDOKU_Q = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"
SUDOKU_A = "534678912672195348198342567859761423426853791713924856961537284287419635345286179"
MARKER = "payload_ran"


class Payload:
    """Unpickling this runs a shell command that creates MARKER: what a malicious state file does."""

    def __reduce__(self):
        return os.system, (f"touch {MARKER}",)


def rewrite_checkpoint(source: Path, target: Path, tensor_change=None, config_change=None) -> None:
    with safe_open(str(source), framework="pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    if tensor_change:
        tensor_change(tensors)
    if config_change:
        metadata["config"] = json.dumps(config_change(json.loads(metadata["config"])))
    save_file(tensors, str(target), metadata=metadata)


def write_csv(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([["source", "question", "answer", "rating"], *rows])


def malicious_run(root: Path, data: Path) -> Path:
    """A run folder whose latest checkpoint holds a pickle that would run code if unpickled."""
    run = root / "run"
    step = run / "checkpoints" / "step_00000001"
    step.mkdir(parents=True)
    cfg = TrainConfig.for_scale("cpu", data=str(data), steps=2, global_batch_size=8, augmentations=0,
                                model=dict(TINY_MODEL))
    (run / "config.json").write_text(json.dumps({"train": cfg.to_dict()}))
    tiny_model(**TINY_MODEL).save(str(step / "model.safetensors"))
    (step / "train_state.pt").write_bytes(pickle.dumps({"format": "air-interp-train-state", "step": Payload()}))
    (run / "latest").symlink_to("checkpoints/step_00000001")
    return run


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("workspace")
    tiny = root / "tiny.safetensors"
    tiny_model().save(str(tiny))
    tiny_model("Lx_Hx").save(str(root / "tiny_Lx_Hx.safetensors"))
    tiny_model(d_model=64, puzzle_emb_ndim=64).save(str(root / "tiny_wide.safetensors"))
    tiny_model(task="maze4").save(str(root / "maze4.safetensors"))
    rewrite_checkpoint(tiny, root / "nan.safetensors", tensor_change=lambda t: t["lm_head.weight"].fill_(float("nan")))
    rewrite_checkpoint(tiny, root / "chess.safetensors", config_change=lambda c: dict(c, task="chess"))
    (root / "mine").mkdir()
    (root / "mine" / "notes.txt").write_text("the user's own file")
    (root / "afile").write_text("a regular file")
    write_csv(root / "header_only" / "train.csv", [])
    write_csv(root / "header_only" / "test.csv", [])
    write_csv(root / "all_bad" / "train.csv", [["a", SUDOKU_Q[:-1], SUDOKU_A, "1"]])
    write_csv(root / "all_bad" / "test.csv", [["b", SUDOKU_Q, SUDOKU_A[:-1], "1"]])
    data = shift_task(root / "shift")
    empty_test = root / "shift_empty_test"
    empty_test.mkdir()
    (empty_test / "manifest.json").write_bytes((data / "manifest.json").read_bytes())
    for split in ("train", "test"):
        (empty_test / split).mkdir()
        for array in (data / split).iterdir():
            values = np.load(array)
            np.save(empty_test / split / array.name, values[:0] if split == "test" else values)
    malicious_run(root, data)
    return root


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root``; files and links with their size and modification time."""
    return {str(p.relative_to(root)): (0, 0) if p.is_dir() and not p.is_symlink() else
            (p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")}


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
CASES = [
    # non-positive counts
    (["decode", "tiny.safetensors", "--batch-size", "0"], "--batch-size: must be a positive integer"),
    (["freeze", "tiny.safetensors", "--puzzles", "0"], "--puzzles: must be a positive integer"),
    (["attention", "tiny.safetensors", "--bootstrap", "-5"], "--bootstrap: must be a positive integer"),
    (["figures", "--puzzles", "0", "--out", "figs"], "--puzzles: must be a positive integer"),
    (["eval", "tiny.safetensors", "--data", "shift", "--batch-size", "0"], "--batch-size: must be a positive integer"),
    (["sweep", "--out", "sweep", "--jobs", "0", "--", "--data", "shift"], "--jobs: must be a positive integer"),
    (["linear-probe", "tiny.safetensors", "--test-fraction", "0"], "--test-fraction: must lie strictly between 0 and 1"),
    (["linear-probe", "tiny.safetensors", "--targets", "answer,colour"], "unknown target(s) colour"),
    (["linear-probe", "tiny.safetensors", "--seed", "-1"], "--seed: must be an integer >= 0"),
    (["figures", "--model", "a/b=tiny.safetensors", "--out", "figs"], "--model a/b: NAME starts the names"),
    # indices out of range
    (["attention", "tiny.safetensors", "--head", "4"], "--head 4: this model has 4 heads"),
    (["attention", "tiny.safetensors", "--layer", "2"], "--layer 2: this model has 2 layers"),
    (["decode", "tiny.safetensors", "--puzzles", "3", "--puzzle", "3"], "--puzzle 3: only 3 puzzles are analysed"),
    (["decode", "tiny.safetensors", "--steps", "0,9"], "ACT steps must lie in [0, 2)"),
    # devices
    pytest.param(["decode", "tiny.safetensors", "--device", "cuda"], "no CUDA device", marks=NO_CUDA),
    pytest.param(["eval", "tiny.safetensors", "--data", "shift", "--device", "cuda:1"], "no CUDA device", marks=NO_CUDA),
    (["decode", "tiny.safetensors", "--device", "gpu0"], "'gpu0' is not a torch device"),
    (["freeze", "tiny.safetensors", "--device", "meta"], "only cpu, cuda and mps devices"),
    # outputs that are a file, unwritable, the current folder, or someone else's folder
    (["decode", "tiny.safetensors", "--out", "afile"], "afile is a file"),
    (["decode", "tiny.safetensors", "--out", "mine"], "mine is not empty; pass --overwrite"),
    (["decode", "tiny.safetensors", "--out", "afile/sub"], "afile is a file, not a folder"),
    (["tables", ".", "--out", "/proc/air-interp-test"], "cannot create files in /proc"),
    (["data", "generate", "maze", "--size", "8", "--out", "."], ". holds the current folder"),
    (["data", "generate", "maze", "--size", "8", "--out", "mine", "--overwrite"], "not a dataset of ours"),
    (["data", "generate", "maze", "--size", "8", "--out", "shift"], "shift is a dataset of ours; pass --overwrite"),
    (["data", "generate", "maze", "--size", "8", "--out", "afile"], "afile is a file"),
    (["data", "import", "sudoku", "header_only", "--out", "tiny.safetensors"], "is a file"),
    (["data", "export", "shift", "--out", "mine", "--overwrite"], "not a processed dataset of ours"),
    (["data", "export", "shift", "--format", "csv", "--out", "mine"], "mine is not empty"),
    (["figures", "--out", "mine", "--overwrite"], "not a figures folder of ours"),
    (["figures", "--out", "afile"], "afile is a file"),
    (["convert", "tests-public-run", "afile"], "afile exists; pass --overwrite"),
    (["eval", "tiny.safetensors", "--data", "shift", "--json", "afile"], "afile exists; pass --overwrite"),
    (["train", "--preset", "Lx_H", "--data", "shift", "--out", "mine", "--steps", "1"], "holds no training run of ours"),
    # generator settings no puzzle can meet
    (["data", "generate", "sudoku", "--tier", "easy", "--clues", "5", "--out", "new"], "--clues 5: a Sudoku with a unique"),
    (["data", "generate", "sudoku", "--tier", "easy", "--clues", "90", "--out", "new"], "has 17 to 81 clues"),
    (["data", "generate", "maze", "--size", "8", "--min-path", "70", "--out", "new"], "at most 63 steps"),
    (["data", "generate", "maze", "--size", "3", "--out", "new"], "--size 3: mazes have a side of 4 to 64"),
    # empty datasets
    (["data", "generate", "sudoku", "--train", "0", "--test", "0", "--out", "new"], "--train: must be a positive"),
    (["data", "import", "sudoku", "header_only", "--out", "new", "--quiet"], "nothing to import: 0 train and 0 test"),
    (["data", "import", "sudoku", "all_bad", "--out", "new", "--skip-invalid", "--quiet"], "after skipping 2 invalid"),
    (["train", "--preset", "Lx_H", "--data", "shift_empty_test", "--out", "new", "--steps", "1", "--scale", "cpu"],
     "the test split holds no puzzles"),
    (["eval", "maze4.safetensors", "--data", "shift_empty_test"], "the test split holds no puzzles"),
    (["eval", "tiny.safetensors", "--data", "shift"], "the checkpoint is a sudoku model"),
    # checkpoints that load but are wrong
    (["decode", "nan.safetensors"], "key lm_head.weight holds NaN or infinite values"),
    (["info", "chess.safetensors"], "unknown task 'chess'"),
    (["train", "--out", "run", "--resume"], "not a training state of ours"),
    # different models passed as seeds
    (["freeze", "tiny.safetensors", "tiny_Lx_Hx.safetensors"], "differ in variant (Lx_H vs Lx_Hx)"),
    (["freeze", "tiny.safetensors", "tiny_wide.safetensors"], "differ in d_model (32 vs 64)"),
]


@pytest.mark.parametrize("argv, cause", CASES)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(workspace, monkeypatch, capsys, argv, cause):
    monkeypatch.chdir(workspace)
    (workspace / "tests-public-run").unlink(missing_ok=True)
    (workspace / "tests-public-run").symlink_to(REPO / "tests" / "data" / "public_checkpoints" / "air_1net_Lx_H")
    before = snapshot(workspace)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("air-interp"), err
    assert cause in err, err
    assert snapshot(workspace) == before
    assert not (workspace / MARKER).exists()
