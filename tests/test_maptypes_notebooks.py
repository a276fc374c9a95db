"""The map-type workshop notebooks (MAP_NOTEBOOKS) run top to bottom against the real kernel
within a minute each; their assert cells check the key results. Cgroups, namespaces and veths they
make are removed afterwards even when a cell fails."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from bpfnb._sys import cgroupfs, mapfeatures
from bpfnb.testing import netns
from conftest import require

pytestmark = pytest.mark.usefixtures("kernel")

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"
MAP_NOTEBOOKS = ["02-map-helpers.ipynb", "03-events.ipynb", "07-lpm-trie.ipynb",
                 "08-prog-array.ipynb", "09-maps-of-maps.ipynb", "10-queue-stack.ipynb",
                 "11-stack-trace-raw.ipynb", "15-cgroup-maps.ipynb", "16-xdp-maps.ipynb",
                 "17-socket-maps.ipynb"]
NEEDS = {"02": [mapfeatures.cgroup2], "07": [mapfeatures.cgroup2],
         "15": [mapfeatures.cgroup2], "16": [mapfeatures.veth, mapfeatures.af_xdp]}
LIMIT_S = 60


@pytest.fixture
def leftovers():
    """Remove what a notebook that stopped half-way may have left behind."""
    yield
    netns.remove_matching("bpfnb-nb-")
    netns.remove_matching("bnb1")  # veths of the XDP notebook
    cgroupfs.remove_matching("bpfnb-nb-")


@pytest.mark.slow
@pytest.mark.parametrize("name", MAP_NOTEBOOKS)
def test_map_notebook(name, leftovers):
    for feature in NEEDS.get(name[:2], []):
        require(feature())
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "notebooks are stored with outputs cleared"
    start = time.monotonic()
    NotebookClient(nb, timeout=LIMIT_S, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    took = time.monotonic() - start
    assert took < LIMIT_S, f"{name} took {took:.0f} s"
    asserts = [c for c in nb.cells if c.cell_type == "code" and "assert " in c.source]
    assert asserts, f"{name} asserts nothing"
    exercise = [c for c in nb.cells if c.cell_type == "code" and "# solution" in c.source]
    assert exercise, f"{name} has no exercise solution cell"
    assert not cgroupfs.remove_matching("bpfnb-nb-"), "the notebook left cgroups behind"
    assert not netns.remove_matching("bpfnb-nb-"), "the notebook left namespaces behind"
