"""Nothing outlives what it belongs to: stopped live views, interrupted loads, font files.

Each test counts what the process really holds: ipywidgets' model registry, History rows
reachable from the garbage collector, /proc/self/fd links to BPF maps, programs and fonts.
"""

from __future__ import annotations

import gc
import math
import os
import random
import signal
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

import bpfnb
from bpfnb.live import poller as live
from bpfnb.live import widgets
from bpfnb.program import core

pytestmark = pytest.mark.usefixtures("kernel")

BIG = 60_000
SOURCE = f"""
BPF_HASH(big, u32, u64, {BIG});
BPF_HASH(calls, u32, u64, 1024);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    calls.increment(tgid);
    return 0;
}}
"""


def fd_links(*markers: str) -> int:
    """How many of this process's fds point at something whose name has a marker."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        count += any(m in target for m in markers)
    return count


def bpf_fds() -> int:
    return fd_links("anon_inode:bpf-map", "anon_inode:bpf-prog", "anon_inode:bpf_link")


def font_fds() -> int:
    return fd_links(".ttf", ".otf", ".afm", ".pfb")


def models() -> int:
    """Open ipywidgets models (layouts and styles are models too)."""
    from ipywidgets.widgets import widget

    return len(widget._instances)


def history_rows() -> int:
    """Rows of every History the garbage collector can still reach."""
    gc.collect()
    return sum(o.rows for o in gc.get_objects() if isinstance(o, live.History))


def fill(view: Any, n: int) -> None:
    view.update_df(pd.DataFrame({"key": np.arange(n, dtype=np.uint32),
                                 "value": np.arange(n, dtype=np.uint64)}))


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def nothing_left_running() -> Iterator[None]:
    yield
    live.stop_all()
    assert live.running() == []


@pytest.fixture
def prog() -> Iterator[bpfnb.Program]:
    p = bpfnb.load(SOURCE, name="leaks")
    yield p
    p.close()


# -- live views ----------------------------------------------------------------------------

def test_rerunning_a_cell_in_plain_ipython_replaces_its_views(plain_shell: Any) -> None:
    """No cell ids: the same source is the same cell. 8 re-runs of a cell showing a 60k-key
    map leave one view: its widgets, its two threads and its history rows, no more."""
    base_models, base_rows = models(), history_rows()
    plain_shell.run_line_magic("load_ext", "bpfnb")
    try:
        plain_shell.run_cell_magic("bpf", "leaky", SOURCE)
        fill(plain_shell.user_ns["leaky"]["big"], BIG)
        cell = 'leaky["big"].live(every=0.05, top=5)'
        views, one_view = [], 0
        for _ in range(8):
            assert plain_shell.run_cell(cell, store_history=True).success
            views.append(plain_shell.user_ns["_"])        # the output cache holds every view
            wait_for(lambda: views[-1].status.refreshes >= 3)
            one_view = one_view or models() - base_models
        newest = views[-1]
        assert all(v.status.stop_reason == "its cell ran again" for v in views[:-1])
        assert sorted(p.name for p in live.running()) == ["bpfnb-live-big", "bpfnb-plot-big"]
        assert all(len(v._history) == 0 for v in views[:-1])
        newest.pause()
        assert history_rows() == base_rows + newest._history.rows >= base_rows + 3 * BIG
        assert models() - base_models == one_view >= 14   # one view's models, not eight's
        plain_shell.run_line_magic("bpf", "stop leaky")   # closes the newest view too
        assert models() == base_models
    finally:
        plain_shell.run_line_magic("unload_ext", "bpfnb")
    assert live.running() == []


def test_closing_the_program_closes_its_views_and_frees_them(prog: bpfnb.Program) -> None:
    base_models, base_rows = models(), history_rows()
    fill(prog["big"], 5_000)
    views = [widgets.live_view(prog["big"], every=0.02),
             widgets.live_view(prog["calls"], every=0.02, plot="none"),
             widgets.live_view(prog["big"], every=0.02, rate=True)]
    wait_for(lambda: all(v.status.refreshes >= 3 for v in views))
    assert models() - base_models >= 60
    views[0].stop()                                # stopped by its button: still shown
    assert models() - base_models >= 60
    prog.close()
    assert models() == base_models and live.running() == []
    assert all(v.status.state == "stopped" for v in views)
    assert history_rows() - base_rows >= 2 * 3 * 5_000     # held here: history stays
    assert len(views[2].history) >= 3 * 5_000
    refs = [weakref.ref(v) for v in views]
    views.clear()
    gc.collect()
    assert [r() for r in refs] == [None, None, None]
    assert history_rows() == base_rows


def test_bpf_stop_and_unload_close_views(plain_shell: Any) -> None:
    base_models = models()
    plain_shell.run_line_magic("load_ext", "bpfnb")
    try:
        plain_shell.run_cell_magic("bpf", "a", SOURCE)
        plain_shell.run_cell_magic("bpf", "b", SOURCE)
        va = widgets.live_view(plain_shell.user_ns["a"]["calls"], every=0.02)
        vb = widgets.live_view(plain_shell.user_ns["b"]["calls"], every=0.02)
        after_two = models()
        plain_shell.run_line_magic("bpf", "stop a")
        assert va.status.state == "stopped" and vb.status.state == "running"
        assert models() == base_models + (after_two - base_models) // 2
    finally:
        plain_shell.run_line_magic("unload_ext", "bpfnb")
    assert vb.status.stop_reason == "program b closed"
    assert models() == base_models and live.running() == []


def test_a_view_that_fails_to_start_leaves_nothing(prog: bpfnb.Program) -> None:
    base_models = models()
    with pytest.raises(ValueError, match="sort_by"):
        widgets.live_view(prog["calls"], sort_by="nope")
    assert models() == base_models and live.running() == []


def test_views_keep_no_font_files_open(prog: bpfnb.Program) -> None:
    """matplotlib caches fonts per drawing thread: each view's plot thread opened its own."""
    widgets.live_view(prog["calls"], every=0.5).close()
    base_fonts, base_fds = font_fds(), len(os.listdir("/proc/self/fd"))
    for _ in range(2):
        views = [widgets.live_view(prog["calls"], every=0.5, start=False) for _ in range(10)]
        os.getpid()                        # new counts: every plot thread draws them
        for v in views:
            v.start()
        wait_for(lambda vs=views: all(v.plotter.status.refreshes >= 1 for v in vs), 60)
        assert font_fds() > base_fonts     # the plot threads drew
        for v in views:
            v.close()
    assert font_fds() == base_fonts
    assert len(os.listdir("/proc/self/fd")) == base_fds


# -- interrupted loads ---------------------------------------------------------------------

def _interrupter(delay: float) -> threading.Thread:
    """A thread (to start) that sends SIGINT to the main thread after `delay` seconds."""
    main = threading.main_thread().ident
    assert main is not None

    def send() -> None:
        time.sleep(delay)
        signal.pthread_kill(main, signal.SIGINT)

    return threading.Thread(target=send, daemon=True)


@pytest.mark.parametrize("backend", ["auto", "bcc"])
def test_ctrl_c_at_any_point_of_a_load_leaves_nothing_open(backend: str) -> None:
    assert threading.current_thread() is threading.main_thread()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    took = math.inf
    for i in range(3):
        start = time.monotonic()
        prog = bpfnb.load(_fresh(f"warm-up {i}"), backend=backend)
        took = min(took, time.monotonic() - start)
        prog.close()
    base, held = bpf_fds(), core.open_programs()
    rng = random.Random(11)
    # a libbpf load takes tens of ms: the sender must not wait out a 5 ms GIL switch interval
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        in_load = _interrupt_loads(backend, took, rng, base, held)
    finally:
        sys.setswitchinterval(switch)
    assert in_load >= 4              # most interrupts came while loading
    with bpfnb.load(SOURCE) as prog:          # and loading still works
        assert prog.map_names == ["big", "calls"]


def _fresh(label: str) -> str:
    """SOURCE compiled anew (libbpf caches objects by source: a warm load takes a few ms,
    too short to aim a signal at from another thread on a busy machine)."""
    return f"{SOURCE}// {label} {time.time_ns()}\n"


def _interrupt_loads(backend: str, took: float, rng: random.Random, base: Any,
                     held: Any) -> int:
    """24 loads, each with a SIGINT somewhere in it; how many the interrupt stopped."""
    in_load = 0
    for i in range(24):
        # spread over the whole load: before, during and right after bcc's compile
        sender, prog = _interrupter(rng.uniform(0, 1.1 * took)), None
        try:
            sender.start()
            prog = bpfnb.load(_fresh(f"load {i}"), name=f"interrupted{i}", backend=backend)
            sender.join()            # the interrupt lands here, after the load
        except KeyboardInterrupt:
            in_load += prog is None
        sender.join()
        if prog is not None:
            prog.close()
        assert bpf_fds() == base, f"load {i}"
        assert core.open_programs() == held
    return in_load


def test_a_load_failing_inside_bccs_constructor_leaves_nothing(workload: Any) -> None:
    """bcc's BPF() creates the maps, then attaches USDT probes: a handler that is not in
    the program fails there, and nothing but bcc's atexit hook held the maps."""
    base = bpf_fds()
    usdt = [bpfnb.Usdt("bpfnb:recorded", "no_such_function", path=str(workload))]
    for _ in range(3):
        with pytest.raises(bpfnb.BpfnbError):
            bpfnb.load("BPF_HASH(seen, u64, u64);\nint on_recorded(void *ctx) { return 0; }",
                       usdt=usdt)
    assert bpf_fds() == base


def test_closing_a_tree_closes_layouts_styles_and_what_outputs_show() -> None:
    import ipywidgets as W

    from bpfnb.live.widgettree import close_descendants

    base = models()
    shown = W.Button(description="inside an Output")
    out = W.Output()
    out.append_display_data(shown)
    root = W.VBox([W.HBox([W.IntSlider(), out]), W.HTML("x")])
    assert models() - base >= 12
    close_descendants(root)
    root.close()
    assert models() == base


def test_top_view_closes_its_widgets_and_fonts() -> None:
    base_models, base_fonts = models(), font_fds()
    view = bpfnb.top(every=0.2)
    view.widget()
    view.stop()
    view.start()                        # a new refresh thread, drawing with its own fonts
    wait_for(lambda: view._poller.status.refreshes >= 2)
    assert models() > base_models and font_fds() > base_fonts
    view.close()
    assert models() == base_models and font_fds() <= base_fonts
