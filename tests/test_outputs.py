"""Nothing lost: what a command may replace, and what a killed command leaves behind."""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from air_interp.cli import main
from air_interp.data import load_dataset
from air_interp.defaults import DEFAULT_DATASETS
from air_interp.errors import AirInterpError
from air_interp.io import atomic_path, check_folder_target, check_replaceable_folder, unexpected_files
from air_interp.probes import figures
from air_interp.probes.emergence import emergence
from conftest import tiny_model


def killed_inside_atomic_path(target: Path, directory: bool) -> None:
    """A process that dies (SIGKILL) while it writes ``target`` through :func:`atomic_path`."""
    code = (f"import os, signal, pathlib\nfrom air_interp.io import atomic_path\n"
            f"with atomic_path({str(target)!r}, directory={directory}) as tmp:\n"
            f"    (tmp / 'half' if {directory} else tmp).write_text('half')\n"
            f"    os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert done.returncode == -signal.SIGKILL


@pytest.mark.parametrize("directory", [False, True])
def test_the_next_write_removes_what_a_killed_writer_left(tmp_path, directory):
    target = tmp_path / "result"
    killed_inside_atomic_path(target, directory)
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".result.tmp-")
    with atomic_path(target, directory=directory) as tmp:
        (tmp / "whole" if directory else tmp).write_text("whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result"]


def test_a_folder_moved_aside_by_a_killed_swap_is_put_back(tmp_path):
    """Between moving the old folder aside and moving the new one in, a kill would lose both: the
    next write to the same place puts the old one back first."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    old = tmp_path / f".figs.old-{int(dead.stdout)}"
    old.mkdir()
    (old / "kept.txt").write_text("old result")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "figs", directory=True):
            assert (tmp_path / "figs" / "kept.txt").read_text() == "old result"  # back before anything else
            raise RuntimeError("this write fails")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figs"]


def test_a_live_writers_temporaries_are_left_alone(tmp_path):
    live = tmp_path / f".result.tmp-{os.getppid()}-abc"
    live.write_text("someone is writing")
    with atomic_path(tmp_path / "result") as tmp:
        tmp.write_text("x")
    assert live.exists()


def test_folder_rules(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert check_folder_target(tmp_path / "new") == tmp_path / "new"
    assert check_folder_target(mine, overwrite=True) == mine
    with pytest.raises(AirInterpError, match="not empty"):
        check_folder_target(mine)
    with pytest.raises(AirInterpError, match="not a report of ours"):
        check_replaceable_folder(mine, "report", lambda folder: "no", overwrite=True)
    assert check_replaceable_folder(mine, "report", lambda folder: None, overwrite=True) == mine
    with pytest.raises(AirInterpError, match="is a report of ours; pass --overwrite"):
        check_replaceable_folder(mine, "report", lambda folder: None)
    (mine / "sub").mkdir()
    (mine / "sub" / "a.npy").write_text("")
    assert unexpected_files(mine, ("notes.txt", "sub/*.npy")) is None
    assert unexpected_files(mine, ("sub/*.npy",)) == "it holds notes.txt"
    assert unexpected_files(mine, ("notes.txt", "*.npy")) == "it holds sub"


def test_a_dataset_is_replaced_only_with_overwrite_and_other_folders_never(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    generate = ["data", "generate", "maze", "--size", "6", "--train", "3", "--test", "2", "--quiet", "--out", "d"]
    assert main(generate) == 0
    first = load_dataset("d").train.inputs
    assert main([*generate, "--seed", "1"]) == 2 and (load_dataset("d").train.inputs == first).all()
    assert main([*generate, "--seed", "1", "--overwrite"]) == 0
    assert not (load_dataset("d").train.inputs == first).all()
    (tmp_path / "d" / "notes.txt").write_text("the user's")
    assert main([*generate, "--overwrite"]) == 2
    assert (tmp_path / "d" / "notes.txt").read_text() == "the user's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


@pytest.mark.slow
def test_probe_overwrite_replaces_its_own_files_only(tmp_path, capsys):
    checkpoint = tmp_path / "tiny.safetensors"
    tiny_model(halt_max_steps=2).save(str(checkpoint))
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("the user's")
    decode = ["decode", str(checkpoint), "--puzzles", "2", "--quiet", "--out", str(out)]
    assert main(decode) == 2 and "pass --overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert main([*decode, "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "the user's" and (out / "decode_table.csv").is_file()


@pytest.mark.slow
def test_figures_folder_is_swapped_whole_and_its_manifest_lists_exactly_its_files(tmp_path, monkeypatch):
    checkpoint = tmp_path / "tiny.safetensors"
    tiny_model(halt_max_steps=2).save(str(checkpoint))
    log = tmp_path / "logs" / "tiny"  # as publish leaves a run's log: with its emergence table
    (log / "checkpoints" / "step_00000010").mkdir(parents=True)
    (log / "config.json").write_text(json.dumps({"train": {"data": str(DEFAULT_DATASETS["sudoku"])}}))
    tiny_model(halt_max_steps=2).save(str(log / "checkpoints" / "step_00000010" / "model.safetensors"))
    emergence([log], puzzles=2, progress=False)
    shutil.rmtree(log / "checkpoints")
    out = tmp_path / "figs"
    command = ["figures", "--model", f"tiny={checkpoint}", "--puzzles", "2", "--out", str(out), "--quiet"]
    assert main(command) == 0
    assert {"emergence_sudoku.csv", "emergence_sudoku.png"} <= {p.name for p in out.iterdir()}

    def listed() -> set[str]:
        return {entry["file"] for entry in json.loads((out / "manifest.json").read_text())["outputs"]}

    assert listed() | {"manifest.json"} == {p.name for p in out.iterdir()}
    first = (out / "manifest.json").read_text()
    assert main(command) == 2 and (out / "manifest.json").read_text() == first

    def dies_half_way(name, path, folder, puzzles, progress):
        (folder / f"{name}_decode.png").write_text("half")
        raise KeyboardInterrupt

    monkeypatch.setattr(figures, "model_figures", dies_half_way)
    assert main([*command, "--overwrite"]) == 130
    assert (out / "manifest.json").read_text() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figs", "logs", "tiny.safetensors"]
    monkeypatch.undo()
    (out / "notes.txt").write_text("the user's")
    assert main([*command, "--overwrite"]) == 2 and (out / "notes.txt").exists()
    (out / "notes.txt").unlink()
    assert main([*command, "--overwrite"]) == 0
    assert listed() | {"manifest.json"} == {p.name for p in out.iterdir()}
