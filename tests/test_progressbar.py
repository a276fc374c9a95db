"""The notebook progress bar ends as static output: a saved notebook, reopened, shows the
finished bar, not "Error displaying widget: model not found" (its widgets are closed)."""

from __future__ import annotations

import pytest
from IPython.utils.capture import capture_output

WIDGET = "application/vnd.jupyter.widget-view+json"


def test_finished_bar_replaces_its_widget_with_static_output(shell) -> None:
    pytest.importorskip("ipywidgets")
    from bpfnb.live import progressbar

    with capture_output() as cap:
        bar = progressbar.NotebookBar("profile ls", 2.0, "samples")
        bar.update(1.0, 40)
        bar.close(interrupted=False)
    shown, final = cap.outputs
    assert WIDGET in shown.data and not shown.update
    assert final.update and final.transient == shown.transient      # the same display
    assert WIDGET not in final.data
    assert final.data["text/plain"] == "profile ls: 1.0 s of 2.0 s, 1.0 s left, 40 samples"
    assert "<progress value='2.0' max='2.0'" in final.data["text/html"]
    assert [w.comm for w in (bar.box, bar.bar, bar.text)] == [None, None, None]


def test_interrupted_unbounded_bar_says_so(shell) -> None:
    pytest.importorskip("ipywidgets")
    from bpfnb.live import progressbar

    with capture_output() as cap:
        bar = progressbar.NotebookBar("events e", float("inf"), "events")
        bar.update(0.5, 3)
        bar.close(interrupted=True)
    final = cap.outputs[-1].data
    assert final["text/plain"] == "events e: 0.5 s, 3 events (interrupted)"
    assert "<progress" not in final["text/html"]
