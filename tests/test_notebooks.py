"""Execute the notebooks top to bottom against the real kernel (their assert cells check
the key results)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.usefixtures("kernel")

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"


def execute(path: Path, timeout: int = 180) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


# the map-type notebooks run in test_maptypes_notebooks.py, with resource cleanup
@pytest.mark.parametrize("name", ["00-tour.ipynb", "05-live.ipynb", "12-stacks.ipynb",
                                  "18-machine.ipynb"])
def test_notebook_runs_top_to_bottom(name):
    nb = execute(NOTEBOOKS / name)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
