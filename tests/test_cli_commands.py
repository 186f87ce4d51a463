"""The probe commands' registry: every command declared once with its help, description and the
common options; ``air-interp figures`` regenerates the halting and commitment figures too; the
README shows only figures that exist."""
import argparse
import json
import re

import pytest

from air_interp.cli import build_parser, main
from air_interp.data import load_dataset
from air_interp.defaults import DEFAULT_DATASETS, REPO
from air_interp.probes.cli import COMMANDS
from air_interp.probes.figures import commitment_figures, halting_figures
from air_interp.probes.decode import decode
from conftest import tiny_model

MODEL_PROBES = ("decode", "freeze", "attention", "linear-probe", "patch", "halting", "commitment")
EVERY_COMMAND = ("--quiet", "--dtype", "--threads", "--out", "--overwrite")
READS_PUZZLES = ("--data", "--split", "--puzzles", "--batch-size", "--device")


def subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def test_every_command_is_declared_once_with_its_help_description_and_common_options():
    names = [command.name for command in COMMANDS]
    assert len(names) == len(set(names))
    assert set(MODEL_PROBES) | {"tables", "figures", "emergence"} == set(names)
    parsers = subparsers()
    for command in COMMANDS:
        assert command.help and command.description, command.name  # the docstring of the function it runs
        assert "\n\n" not in command.help, command.name
        assert set(EVERY_COMMAND) <= flags(parsers[command.name]), command.name
    for name in MODEL_PROBES:
        assert set(READS_PUZZLES) <= flags(parsers[name]), name


def test_each_probe_states_its_own_defaults():
    parsers = subparsers()
    attention = parsers["attention"]
    assert attention.parse_args([]).batch_size == 16 and "(default 16)" in attention.format_help()
    assert parsers["linear-probe"].parse_args([]).puzzles == 256
    assert parsers["decode"].parse_args([]).puzzles == 64


def test_the_halting_and_commitment_figures_of_a_model(tmp_path):
    split = load_dataset(DEFAULT_DATASETS["sudoku"]).split("test")
    inputs, labels = split.inputs[:3], split.labels[:3]
    model = tiny_model(halt_max_steps=2)
    files = halting_figures("tiny", model, inputs, labels, tmp_path, progress=False)
    files += commitment_figures("tiny", decode(model, inputs, labels, progress=False), tmp_path)
    names = {path.name for path in files}
    assert {"tiny_halting.png", "tiny_halting.pdf", "tiny_halting_summary.tex", "tiny_halting_reliability.csv",
            "tiny_commitment.png", "tiny_commitment.pdf", "tiny_commitment_summary.md"} <= names
    assert all(path.stat().st_size > 0 for path in files)


@pytest.mark.slow
def test_figures_command_regenerates_the_halting_and_commitment_figures(tmp_path):
    checkpoint = tmp_path / "tiny.safetensors"
    tiny_model(halt_max_steps=2).save(str(checkpoint))
    out = tmp_path / "figs"
    assert main(["figures", "--model", f"tiny={checkpoint}", "--puzzles", "2", "--out", str(out), "--quiet",
                 "--threads", "1"]) == 0
    listed = {entry["file"] for entry in json.loads((out / "manifest.json").read_text())["outputs"]}
    assert {"tiny_halting.png", "tiny_halting_summary.csv", "tiny_commitment.png", "tiny_commitment_summary.csv"} <= listed


def test_every_image_the_readme_shows_exists():
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (REPO / "README.md").read_text())
    assert any(path.startswith("docs/beyond/") for path in images)
    assert [path for path in images if not (REPO / path).is_file()] == []
