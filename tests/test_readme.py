"""Every Python block of the README runs, in order, in one namespace (as a reader would paste them)."""
import re

import pytest

from air_interp.defaults import REPO

PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


@pytest.mark.slow
def test_every_python_block_of_the_readme_runs(tmp_path, monkeypatch):
    blocks = PYTHON_BLOCK.findall((REPO / "README.md").read_text())
    assert len(blocks) >= 4
    for name in ("checkpoints", "data", "tests"):  # the README's paths are relative to a clone
        (tmp_path / name).symlink_to(REPO / name)
    monkeypatch.chdir(tmp_path)  # what the blocks write lands here, not in the repository
    namespace: dict = {}
    for number, block in enumerate(blocks, start=1):
        source = tmp_path / f"readme_block_{number}.py"  # a real file: nnsight reads its trace back
        source.write_text(block)
        exec(compile(block, str(source), "exec"), namespace)
    assert (tmp_path / "my.safetensors").is_file()
