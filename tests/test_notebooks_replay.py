"""Every notebook runs top to bottom from its recordings as an unprivileged user with every
capability dropped and bcc hidden (what Binder or a laptop without root gives it): the
notebooks' own assert cells check their key results against the recorded data."""

from __future__ import annotations

import json
import shlex
import shutil
import site
import tempfile
from pathlib import Path

import nbformat
import notebook_checks
import pytest
from nbclient import NotebookClient

from bpfnb.jupyter import kernelspec

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
NOBODY = 65534
LAST_CELL = """\
import sys
assert "bcc" not in sys.modules, "replaying imported bcc"
print("bcc not imported")
"""


@pytest.fixture(scope="module")
def unprivileged_kernel():
    """A kernelspec whose kernel runs as nobody, no capabilities, no bcc."""
    root = Path(tempfile.mkdtemp(prefix="bpfnb-replay-", dir="/tmp"))  # nobody reaches it
    root.chmod(0o777)
    hide = root / "hide-bcc" / "bcc"
    hide.mkdir(parents=True)
    (hide / "__init__.py").write_text(
        'raise ImportError("bcc is not installed here (as on Binder)")\n')
    try:  # the venv's interpreter may sit where nobody cannot reach (/root/.pyenv)
        python = kernelspec.choose_python(NOBODY, NOBODY)
    except kernelspec.InstallError as e:
        pytest.skip(f"no interpreter the user nobody can run: {e}")
    path = ":".join([str(hide.parent), str(ROOT), *site.getsitepackages()])
    # the connection file is root's (0600): the kernel reads a copy in a directory of its own
    script = (
        'd=$(mktemp -d -p "$1") && cp "$0" "$d/connection.json" && chmod -R a+rwX "$d" && '
        f"exec setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups --inh-caps=-all "
        "--bounding-set=-all --no-new-privs "
        f'env HOME="$d" MPLCONFIGDIR="$d" IPYTHONDIR="$d/ipython" PYTHONPATH={path} '
        f'{shlex.quote(python)} -m ipykernel_launcher -f "$d/connection.json"')
    spec = root / "kernels" / "bpfnb-replay"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": ["sh", "-c", script, "{connection_file}", str(root)],
        "display_name": "bpfnb replay (nobody, no capabilities)", "language": "python"}))
    yield root  # a Jupyter data directory: JUPYTER_PATH finds kernels/bpfnb-replay
    shutil.rmtree(root, ignore_errors=True)


def outputs(nb: nbformat.NotebookNode) -> list[str]:
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text") or out.get("data", {}).get("text/plain", "")
                         or "\n".join(out.get("traceback", [])))
    return texts


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("[0-9]*.ipynb")))
def test_notebook_replays_unprivileged(name, unprivileged_kernel, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", str(unprivileged_kernel))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(LAST_CELL))
    NotebookClient(nb, timeout=180, kernel_name="bpfnb-replay",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    texts = "\n".join(outputs(nb))
    assert "BPF cannot load here" in texts          # the banner says why it replays
    assert "● live" not in texts
    assert "bcc not imported" in texts


# every exercise of every notebook can be attempted where nothing runs live (Binder): it works
# on data the notebook's recorded cells made (DataFrames, maps as the recording read them)
BINDER_EXERCISES = notebook_checks.ALL


def solved_as_student(nb: nbformat.NotebookNode) -> int:
    """Each exercise solved in its work cell, as a student on Binder would: the solution's
    code in a cell the recording has never seen, the collapsed solution cell emptied.
    Returns how many; fails if an exercise is not prompt, work cell, Solution, solution."""
    hidden = [c for c in nb.cells if c.metadata.get("jupyter", {}).get("source_hidden")]
    for cell in hidden:
        i = nb.cells.index(cell)
        work, heading = nb.cells[i - 2], nb.cells[i - 1]
        assert cell.source.startswith("# solution"), \
            f"a solution that needs the kernel (replayed, a student cannot attempt it):\n" \
            f"{cell.source[:200]}"
        assert heading.source.startswith("### Solution") and work.source == "# your code here"
        assert "Works on a recording" in nb.cells[i - 3].source, nb.cells[i - 3].source
        work.source = "# my attempt\n" + cell.source
        cell.source = ""
    return len(hidden)


@pytest.mark.parametrize("name", BINDER_EXERCISES)
def test_exercises_solved_on_binder(name, unprivileged_kernel, monkeypatch):
    """Solved in the work cells, replayed as nobody: the checks after them pass."""
    monkeypatch.setenv("JUPYTER_PATH", str(unprivileged_kernel))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert solved_as_student(nb) >= 1
    NotebookClient(nb, timeout=180, kernel_name="bpfnb-replay",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    attempts = [c for c in nb.cells if c.source.startswith("# my attempt")]
    assert all(c.outputs for c in attempts), "an attempt showed nothing"
