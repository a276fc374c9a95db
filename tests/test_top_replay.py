"""top(): its first picture has a readable time axis, and stop/close leave the last picture
in the output (no widget view that a saved notebook cannot show)."""

from __future__ import annotations

import os

import pytest

import bpfnb
from bpfnb.live.top import top

PROGRAM = """
BPF_ARRAY(n, u64, 1);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) { int z = 0; n.increment(z); return 0; }
"""


class Handle:
    """Stands in for IPython's DisplayHandle (what the notebook frontend would update)."""

    def __init__(self) -> None:
        self.updates: list[dict] = []

    def update(self, bundle: dict, raw: bool = False) -> None:
        self.updates.append(bundle)


@pytest.fixture
def prog():
    reason = bpfnb.skip_reason("tracepoint")
    if reason:
        pytest.skip(reason)
    with bpfnb.load(PROGRAM) as p:
        yield p


def test_first_chart_spans_the_window_and_close_keeps_the_picture(prog):
    view = top(every=0.2)
    try:
        for _ in range(1000):
            os.getpid()
        view.df()                               # one sample: one point per program
        view.chart_png()
        left, right = view._figure.axes[0].get_xlim()
        assert right == 0 and left <= -2.0      # 10 refreshes wide, not a 15 ms sliver
        handle = view._handle = Handle()
    finally:
        view.close()
    assert len(handle.updates) == 1
    shown = handle.updates[0]
    assert "<table" in shown["text/html"] and "data:image/png;base64," in shown["text/html"]
    assert "application/vnd.jupyter.widget-view+json" not in shown
