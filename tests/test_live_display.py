"""A live view shown in a notebook ends as static output of its last refresh: once stopped
(or closed with its program) its output has the table and plot of the last refresh and no
widget view, so a saved notebook shows the final state and reopens without "model not
found". Runs a real notebook kernel (nbclient) and a real BPF program."""

from __future__ import annotations

import re

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.usefixtures("kernel")

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
N = 1234
CELLS = ['''\
import bpfnb, ctypes
syscall = ctypes.CDLL(None, use_errno=True).syscall
prog = bpfnb.load("""
BPF_HASH(calls, u32, u64);
TRACEPOINT_PROBE(syscalls, sys_enter_close) {
    if (args->fd == 77777)       /* nobody else closes this fd */
        calls.increment(args->fd);
    return 0;
}""", name="display")''',
    'stopped = prog["calls"].live(every=0.2)\nstopped',
    'closed = prog["calls"].live(every=0.2)\nclosed',
    f'''\
for _ in range({N}):
    syscall(3, 77777)
stopped.refresh(); closed.refresh()
stopped.stop()''',
    'prog.close()',
]


@pytest.fixture(scope="module")
def outputs() -> list[list[dict]]:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    return [c.outputs for c in nb.cells]


@pytest.mark.parametrize("cell", [1, 2], ids=["stopped", "closed-with-program"])
def test_view_output_ends_static_with_last_refresh(outputs, cell):
    (out,) = outputs[cell]
    assert WIDGET_VIEW not in out["data"]
    assert {"text/plain", "text/html", "image/png"} <= set(out["data"])
    text = out["data"]["text/plain"]
    assert "stopped" in text.splitlines()[0]
    assert re.search(rf"^\s*77777\s+{N}$", text, re.M), text     # the last refresh's count
