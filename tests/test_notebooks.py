"""Execute the notebooks (all but the map-type ones, see test_maptypes_notebooks.py) top to
bottom against the real kernel with a CPU hog running beside them; their assert cells check
the key results, and after their cleanup cell nothing of theirs is left running."""

from __future__ import annotations

import notebook_checks
import pytest
from notebook_checks import ALL, MAP_NOTEBOOKS, check_clean, run_all

pytestmark = [pytest.mark.usefixtures("kernel"), pytest.mark.slow]

cpu_hog = notebook_checks.cpu_hog    # the fixture


@pytest.mark.parametrize("name", [n for n in ALL if n not in MAP_NOTEBOOKS])
def test_notebook_runs_top_to_bottom(name, cpu_hog):
    check_clean(run_all(name, timeout=180))
    assert cpu_hog.poll() is None, "the hog ran beside the whole notebook"
