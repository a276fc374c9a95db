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
    assert final.data["text/plain"] == "profile ls: 1.0 s, 40 samples"   # what it took
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


def test_terminal_line_ends_with_what_it_took(capsys) -> None:
    from bpfnb.data import progress

    line = progress.TerminalLine("offcpu sleep", 10.0, "stacks")
    line.update(4.1, 7)
    line.close(interrupted=False)
    err = capsys.readouterr().err
    running = "offcpu sleep: 4.1 s of 10.0 s, 5.9 s left, 7 stacks"
    done = "offcpu sleep: 4.1 s, 7 stacks"
    assert err == f"\r{running}\r{done.ljust(len(running))}\n"   # the last line: no time left
