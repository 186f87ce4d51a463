"""The installed package type-checks: mypy with the ``[tool.mypy]`` configuration of pyproject.toml.

The folders probes/ and train/ become ``air_interp.probes`` and ``air_interp.train`` only when
installed, so mypy runs on a regular install in a temporary folder (built from a copy of the
source, as in test_install.py), not on the source tree."""
import importlib.util
import subprocess
import sys

import pytest

from air_interp.defaults import REPO
from test_install import source_copy


@pytest.mark.slow
def test_installed_package_type_checks(tmp_path):
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (it comes with the test extra: pip install -e '.[test]')")
    site = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
                                "--target", str(site), str(source_copy(tmp_path / "source"))],
                               capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    checked = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml")],
                             cwd=site, capture_output=True, text=True, timeout=1200)
    assert checked.returncode == 0, f"mypy found type errors:\n{checked.stdout}{checked.stderr}"
    assert "no issues found" in checked.stdout, checked.stdout  # and it checked something
