"""The map-type workshop notebooks (MAP_NOTEBOOKS) run top to bottom against the real kernel
within a minute each, with a CPU hog running beside them; their assert cells check the key
results, and after their cleanup cell nothing of theirs is left running. Cgroups, namespaces
and veths they make are removed afterwards even when a cell fails."""

from __future__ import annotations

import time

import notebook_checks
import pytest
from notebook_checks import MAP_NOTEBOOKS, check_clean, run_all

from bpfnb._sys import cgroupfs, mapfeatures
from bpfnb.testing import netns
from conftest import require

pytestmark = pytest.mark.usefixtures("kernel")

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

cpu_hog = notebook_checks.cpu_hog    # the fixture


@pytest.mark.slow
@pytest.mark.parametrize("name", MAP_NOTEBOOKS)
def test_map_notebook(name, leftovers, cpu_hog):
    for feature in NEEDS.get(name[:2], []):
        require(feature())
    start = time.monotonic()
    nb = run_all(name, timeout=LIMIT_S)
    took = time.monotonic() - start
    assert took < LIMIT_S + 5, f"{name} took {took:.0f} s"   # + the 2 s idle check
    check_clean(nb)
    asserts = [c for c in nb.cells if c.cell_type == "code" and "assert " in c.source]
    assert len(asserts) > 1, f"{name} asserts nothing"     # the check cell asserts too
    exercise = [c for c in nb.cells if c.cell_type == "code" and "# solution" in c.source]
    assert exercise, f"{name} has no exercise solution cell"
    assert not cgroupfs.remove_matching("bpfnb-nb-"), "the notebook left cgroups behind"
    assert not netns.remove_matching("bpfnb-nb-"), "the notebook left namespaces behind"
    assert cpu_hog.poll() is None, "the hog ran beside the whole notebook"
