"""The tutorial notebook runs top to bottom (so its recipes cannot rot) and is committed with its outputs."""
import shutil

import pytest

from air_interp.defaults import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = REPO / "docs" / "tutorial.ipynb"


def texts(notebook) -> list[str]:
    return [output.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]


def test_the_committed_notebook_carries_the_outputs_of_every_code_cell():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code)
    assert not [output for cell in code for output in cell.outputs if output.output_type == "error"]
    figures = [output for cell in code for output in cell.outputs if "image/png" in output.get("data", {})]
    assert len(figures) >= 2


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom(tmp_path):
    copy = tmp_path / "docs" / NOTEBOOK.name
    copy.parent.mkdir()
    shutil.copyfile(NOTEBOOK, copy)
    notebook = nbformat.read(copy, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(copy.parent)}}).execute()  # raises on any error
    assert "nnsight and run_with_hooks agree: True\n" in texts(notebook)
    assert any(text.startswith("solved: normal") for text in texts(notebook))


def test_importing_the_probes_and_training_keeps_the_users_matplotlib_backend():
    """A notebook's inline backend survives ``import air_interp.probes...`` (figures still show)."""
    import os
    import subprocess
    import sys

    code = ("import matplotlib; import air_interp.probes.attention, air_interp.train.curves; "
            "print(matplotlib.get_backend())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env=dict(os.environ, MPLBACKEND="svg"))
    assert result.stdout.strip() == "svg"
