"""A regular install: the wheel ships the Sudoku default and its data, and the main job runs from any folder.
The command-line help is quick: it imports neither torch nor TransformerLens and shows no stray ``%%``."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from air_interp.defaults import REPO

EMBEDDED = {
    "air_interp/embedded/checkpoints/sudoku_Lx_H.safetensors": REPO / "checkpoints" / "sudoku_Lx_H.safetensors",
    "air_interp/embedded/checkpoints/sudoku_Lx_H.json": REPO / "checkpoints" / "sudoku_Lx_H.json",
    "air_interp/embedded/data/sudoku-easy34/manifest.json": REPO / "data" / "sudoku-easy34" / "manifest.json",
    "air_interp/embedded/data/sudoku-easy34/test/inputs.npy": REPO / "data" / "sudoku-easy34" / "test" / "inputs.npy",
}


def python(code: str, cwd: Path, path: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter in ``cwd`` (caches go to a home folder beside it)."""
    home = cwd.parent / "home"
    home.mkdir(exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HOME": str(home)}
    if path is not None:
        env["PYTHONPATH"] = str(path)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def source_copy(target: Path) -> Path:
    """The files git would ship (tracked or new, not ignored) copied to ``target``: builds stay out of the tree."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\n")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = source_copy(tmp_path_factory.mktemp("source"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out)], check=True, capture_output=True, timeout=300)
    return next(out.glob("air_interp-*.whl"))


def test_wheel_ships_the_sudoku_default_and_its_data_and_nothing_big_besides(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for inside, original in EMBEDDED.items():
            assert archive.read(inside) == original.read_bytes(), inside
    assert not any(name.endswith(".safetensors") and "sudoku_Lx_H." not in name for name in names)
    assert not any("maze" in name for name in names if "/embedded/" in name)
    assert wheel.stat().st_size < 5e6


@pytest.mark.slow
def test_installed_decode_runs_from_another_folder_and_writes_nothing(wheel, tmp_path):
    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    before = sorted(p.relative_to(site) for p in site.rglob("*") if "__pycache__" not in p.parts)
    done = python("import sys, air_interp.cli as cli; print(cli.__file__); "
                  "sys.exit(cli.main(['decode', '--puzzles', '2', '--batch-size', '2', '--quiet']))",
                  cwd=elsewhere, path=site)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(str(site))  # the installed copy ran, not the source tree
    assert "sudoku_Lx_H.safetensors: Lx_H on sudoku, 2 puzzles" in done.stdout
    assert sorted(p.relative_to(site) for p in site.rglob("*") if "__pycache__" not in p.parts) == before
    assert not any(elsewhere.iterdir())


def test_help_imports_neither_torch_nor_transformer_lens_and_shows_no_double_percent(tmp_path):
    code = """
import argparse, sys
from air_interp.cli import build_parser

def helps(parser):
    yield parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from helps(sub)

texts = list(helps(build_parser()))
assert len(texts) > 15, len(texts)
assert not [t for t in texts if "%%" in t], [t.splitlines()[0] for t in texts if "%%" in t]
heavy = [name for name in ("torch", "transformer_lens", "nnsight") if name in sys.modules]
assert not heavy, heavy
"""
    done = python(code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
