"""Live views on a real kernel: pollers, backoff, errors, exact history and rates, cleanup.

The workload is a child Python process that calls syscall(SYS_getpid) exactly as often as
it is told, so map values, history deltas and rates can be asserted exactly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

import bpfnb
from bpfnb._sys import bpfsys
from bpfnb.live import poller as live
from bpfnb.live import widgets
from bpfnb.live.poller import History, Poller, Rates, StopPolling
from bpfnb.map.view import MapView

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "05-live.ipynb"

GETPID = r"""
BPF_HASH(calls, u32, u64, 1024);
BPF_PERCPU_HASH(calls_cpu, u32, u64, 1024);
BPF_HISTOGRAM(pid_dist);

TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    u64 zero = 0, *per_cpu = calls_cpu.lookup_or_try_init(&tgid, &zero);
    calls.increment(tgid);
    if (per_cpu)            /* bcc's increment() never inserts into a per-CPU hash */
        (*per_cpu)++;
    if (tgid == TARGET)
        pid_dist.increment(bpf_log2l(100));
    return 0;
}
"""

CHILD = textwrap.dedent("""
    import ctypes, os, sys
    syscall = ctypes.CDLL(None, use_errno=True).syscall
    print("ready", flush=True)
    for line in sys.stdin:
        n, cpu = (int(x) for x in line.split())
        if cpu >= 0:
            os.sched_setaffinity(0, {cpu})
        for _ in range(n):
            syscall(39)      # SYS_getpid on x86_64
        print("done", flush=True)
""")


class Workload:
    """A child process that calls getpid(2) N times on request."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"
        self.pid = self.proc.pid

    def calls(self, n: int, cpu: int = -1) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{n} {cpu}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "done"

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def child() -> Iterator[Workload]:
    if os.uname().machine != "x86_64":
        pytest.skip("the workload calls syscall 39 (getpid on x86_64)")
    w = Workload()
    yield w
    w.close()


@pytest.fixture
def prog(child: Workload) -> Iterator[bpfnb.Program]:
    p = bpfnb.load(GETPID, name="getpid", cflags=[f"-DTARGET={child.pid}"])
    yield p
    p.close()


@pytest.fixture(autouse=True)
def no_leftover_threads() -> Iterator[None]:
    """Every test ends with no poller running and the thread count it started with."""
    before = threading.active_count()
    yield
    live.stop_all()
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert live.running() == []
    assert threading.active_count() <= before, [t.name for t in threading.enumerate()]


def value_of(df: pd.DataFrame, pid: int, column: str = "value") -> int:
    rows = df[df["key"] == pid]
    return int(rows[column].sum()) if len(rows) else 0


# -- Poller ----------------------------------------------------------------------------------

def test_poller_refreshes_at_its_interval() -> None:
    calls: list[float] = []
    p = Poller(lambda: calls.append(time.monotonic()), every=0.05).start()
    time.sleep(0.53)
    p.stop()
    n = len(calls)
    assert 6 <= n <= 12, n                      # at once, then every 50 ms
    assert p.status.refreshes == n and p.status.errors == 0
    assert np.median(np.diff(calls)) == pytest.approx(0.05, abs=0.015)
    time.sleep(0.15)
    assert len(calls) == n                      # stopped means stopped
    assert p.state == "stopped" and not p.alive


def test_start_stop_pause_resume_are_idempotent() -> None:
    calls: list[int] = []
    p = Poller(lambda: calls.append(1), every=0.02)
    p.stop()                                    # stop before start: nothing happens
    p.start()
    p.start()
    assert sum(t.name == p.name for t in threading.enumerate()) == 1
    time.sleep(0.1)
    p.pause()
    p.pause()
    time.sleep(0.05)                            # a refresh under way may still finish
    paused_at = len(calls)
    time.sleep(0.15)
    assert len(calls) == paused_at and p.state == "paused"
    p.resume()
    p.resume()
    time.sleep(0.1)
    assert len(calls) > paused_at and p.state == "running"
    p.stop()
    p.stop()
    assert p.state == "stopped" and not p.alive
    p.start()                                   # a stopped poller starts again
    time.sleep(0.05)
    assert p.alive
    p.stop()


def test_late_wakeups_do_not_lower_the_rate() -> None:
    """Ticks are `every` apart whenever a refresh started: at every=0.05 a thread woken late
    (a plot holding the GIL, a busy machine) still makes 20 Hz."""
    p = Poller(lambda: None, every=0.05)
    assert p._schedule(1.0, start=1.01, end=1.012) == pytest.approx((1.05, 1.05))
    assert p._schedule(1.05, start=1.09, end=1.095) == pytest.approx((1.10, 1.10))
    assert not p.status.backing_off
    # a stall (a period and CATCH_UP late): the rate restarts from now, no burst
    assert p._schedule(1.0, start=1.3, end=1.301) == pytest.approx((1.35, 1.35))
    # a slow refresh: max_duty 0.5 rests as long as it ran; the ticks go on
    assert p._schedule(1.0, start=1.0, end=1.08) == pytest.approx((1.05, 1.16))
    assert p.status.backing_off
    # 30 ms spent waiting for a busy machine's CPUs, 3 ms computing: the rate holds;
    # 30 ms of CPU: rest 30 ms, and the next tick comes sooner to make up for it
    assert p._schedule(1.0, start=1.0, end=1.03, cpu=0.003) == pytest.approx((1.05, 1.05))
    assert not p.status.backing_off
    assert p._schedule(1.0, start=1.0, end=1.03, cpu=0.03) == pytest.approx((1.05, 1.06))
    assert p.status.backing_off


def test_slow_refresh_backs_off_instead_of_queueing() -> None:
    starts: list[float] = []

    def slow() -> None:
        starts.append(time.monotonic())
        time.sleep(0.1)

    p = Poller(slow, every=0.01).start()        # asks for 100 Hz, each refresh takes 100 ms
    time.sleep(1.05)
    p.stop()
    gaps = np.diff(starts)
    # max_duty 0.5: a 100 ms refresh is followed by >= 100 ms of rest, nothing queued
    assert len(starts) <= 6, len(starts)
    assert gaps.min() >= 0.195, gaps
    assert p.status.backing_off
    assert 0.19 <= p.status.interval <= 0.35, p.status.interval


def test_error_in_refresh_shows_in_status_and_polling_goes_on() -> None:
    n = {"calls": 0}

    def flaky() -> None:
        n["calls"] += 1
        if n["calls"] in (2, 3):
            raise RuntimeError(f"boom {n['calls']}")

    seen: list[live.PollStatus] = []
    p = Poller(flaky, every=0.02, on_status=seen.append).start()
    deadline = time.monotonic() + 3
    while p.status.refreshes < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    p.stop()
    assert p.status.errors == 2
    assert p.status.refreshes >= 5
    assert p.status.consecutive_errors == 0
    assert p.status.last_error == "RuntimeError: boom 3"
    assert any(s.consecutive_errors == 2 for s in seen)   # the status said so meanwhile


def test_stop_polling_and_closed_program_end_the_poller(prog: bpfnb.Program) -> None:
    p = Poller(lambda: (_ for _ in ()).throw(StopPolling("done here")), every=0.01).start()
    p.join(2)
    assert p.state == "stopped" and p.status.stop_reason == "done here"
    view = prog["calls"]
    q = Poller(lambda: view.read(), every=0.01, owner=None).start()
    time.sleep(0.05)
    prog.close()            # not through a hook: the poller's read raises ProgramClosedError
    q.join(2)
    assert q.state == "stopped" and "ProgramClosedError" in (q.status.stop_reason or "")


# -- History and Rates -----------------------------------------------------------------------

def frame(keys: list[int], values: list[int]) -> pd.DataFrame:
    df = pd.DataFrame({"key": np.array(keys, np.uint32), "value": np.array(values, np.uint64)})
    df.attrs.update(map="m", key_columns=["key"], value_columns=["value"])
    return df


def test_history_is_tidy_and_bounded() -> None:
    h = History(max_snapshots=3, max_rows=100)
    for i in range(5):
        h.append(1_000_000_000 * (i + 1), frame([1, 2], [i, 10 * i]))
    df = h.df()
    assert len(h) == 3 and list(df.columns) == ["time", "key", "value"]
    assert df["time"].dtype == "datetime64[ns]"
    assert df["value"].tolist() == [2, 20, 3, 30, 4, 40]
    assert df.attrs["key_columns"] == ["key"] and df.attrs["snapshots"] == 3
    h2 = History(max_snapshots=100, max_rows=5)
    for i in range(4):
        h2.append(i, frame([1, 2], [i, i]))
    assert len(h2) == 2 and h2.rows == 4        # rows bound: oldest snapshots dropped
    h3 = History(max_snapshots=10, max_rows=1)
    h3.append(0, frame([1, 2, 3], [1, 2, 3]))
    assert len(h3) == 1                         # the newest is always kept


def test_rates_handle_keys_appearing_disappearing_and_resets() -> None:
    r = Rates(["key"], ["value"])
    first = r.update(frame([1, 2], [100, 50]), 0)
    assert first["value/s"].isna().all()
    assert first.attrs["value_columns"] == ["value", "value/s"]
    second = r.update(frame([1, 3], [300, 7]), 2_000_000_000)   # 2 s later
    got = dict(zip(second["key"], second["value/s"]))
    assert got == {1: 100.0, 3: 3.5}            # key 3 appeared: counted from zero
    assert (r.appeared, r.disappeared) == (1, 1)   # key 2 disappeared: no rate
    third = r.update(frame([1, 3], [40, 9]), 3_000_000_000)
    assert dict(zip(third["key"], third["value/s"])) == {1: 40.0, 3: 2.0}   # 1 was reset


def test_rates_with_struct_keys() -> None:
    df = pd.DataFrame({"pid": [1, 1, 2], "comm": ["a", "b", "a"], "value": [1, 2, 3]})
    r = Rates(["pid", "comm"], ["value"])
    r.update(df, 0)
    out = r.update(df.assign(value=[3, 2, 13]), 500_000_000)
    assert out["value/s"].tolist() == [4.0, 0.0, 20.0]


# -- LiveView on a real kernel ---------------------------------------------------------------

def test_history_and_rates_are_exact(prog: bpfnb.Program, child: Workload) -> None:
    view = widgets.live_view(prog["calls"], every=3600, rate=True, start=False)
    child.calls(1000)           # the view read the (empty) map once when it was made
    view.refresh()
    child.calls(2500)
    view.refresh()
    view.close()
    hist = view.history
    times = view.times.to_numpy()      # empty snapshots too
    assert len(times) == 3 and hist.attrs["value_columns"] == ["value", "value/s"]
    mine = hist[hist["key"] == child.pid].sort_values("time")
    assert mine["value"].tolist() == [1000, 3500]
    seconds = np.diff(times) / np.timedelta64(1, "s")
    rates = mine["value/s"].to_numpy()
    assert rates[0] * seconds[0] == pytest.approx(1000, rel=1e-9)   # appeared: from zero
    assert rates[1] * seconds[1] == pytest.approx(2500, rel=1e-9)


def test_running_view_history_sums_to_the_workload(prog: bpfnb.Program,
                                                   child: Workload) -> None:
    live_method = getattr(MapView, "live", None)     # MapView.live calls widgets.live_view
    assert live_method is not None, "MapView.live is missing"
    view = live_method(prog["calls"], every=0.05, rate=True)
    assert isinstance(view, widgets.LiveView)
    for _ in range(5):
        child.calls(777)
        time.sleep(0.06)
    deadline = time.monotonic() + 3
    while value_of(view.frame(), child.pid) < 5 * 777 and time.monotonic() < deadline:
        time.sleep(0.02)
    view.stop()
    hist = view.history
    times = pd.Series(view.times)      # empty snapshots too
    assert len(times) >= 5                      # it refreshed while the workload ran
    mine = hist[hist["key"] == child.pid].set_index("time")["value/s"].reindex(times)
    ns = times.to_numpy().astype("datetime64[ns]").astype(np.int64)
    seconds = np.diff(ns, prepend=ns[0]) / 1e9
    assert value_of(view.frame(), child.pid) == 5 * 777
    assert np.nansum(mine.to_numpy() * seconds) == pytest.approx(5 * 777, rel=1e-9)


def test_histogram_view_counts_buckets_exactly(prog: bpfnb.Program, child: Workload) -> None:
    view = widgets.live_view(prog["pid_dist"], start=False)
    assert view.hist_mode and widgets.looks_like_hist(prog["pid_dist"])
    child.calls(321)
    view.refresh()
    last = view.frame()
    assert list(last.columns) == ["low", "high", "count"]
    bucket = last[(last["low"] == 64) & (last["high"] == 127)]
    assert int(bucket["count"].iloc[0]) == 321
    hist = view.history
    assert {"time", "low", "high", "count"} <= set(hist.columns)
    assert "64-127" in view._table_html
    view.close()


def test_per_cpu_view_is_exact_per_cpu(prog: bpfnb.Program, child: Workload) -> None:
    cpus = bpfsys.possible_cpus()
    online = sorted(os.sched_getaffinity(0))
    view = widgets.live_view(prog["calls_cpu"], per_cpu=True, start=False)
    before = view.frame()
    child.calls(400, cpu=online[0])
    child.calls(600, cpu=online[-1])
    view.refresh()
    df = view.frame()
    assert set(df["cpu"]) <= set(cpus) and "cpu" in df.columns

    def on(frame: pd.DataFrame, cpu: int) -> int:
        rows = frame[(frame["key"] == child.pid) & (frame["cpu"] == cpu)]
        return int(rows["value"].sum())

    if online[0] == online[-1]:
        assert on(df, online[0]) - on(before, online[0]) == 1000
    else:
        assert on(df, online[0]) - on(before, online[0]) == 400
        assert on(df, online[-1]) - on(before, online[-1]) == 600
    assert "cpu " in view._table_html and "total" in view._table_html
    view._cpu_box.value = False                 # the per-CPU toggle: totals per key
    assert "cpu " not in view._table_html.split("<tbody>")[0]
    view.close()


def test_close_program_stops_views_and_threads_return(child: Workload) -> None:
    base = threading.active_count()
    p = bpfnb.load(GETPID, name="getpid2", cflags=[f"-DTARGET={child.pid}"])
    child.calls(50)
    views = [widgets.live_view(p["calls"], every=0.02),
             widgets.live_view(p["pid_dist"], every=0.02),
             widgets.live_view(p["calls_cpu"], every=0.02, per_cpu=True)]
    time.sleep(0.1)
    assert threading.active_count() == base + 6 and len(live.running()) == 6  # data + plot
    p.close()
    assert all(v.status.state == "stopped" for v in views)
    assert "program getpid2 closed" in (views[0].status.stop_reason or "")
    assert threading.active_count() == base and live.running() == []
    assert "stopped" in views[0]._status.value
    start = time.monotonic()
    assert views[0].refresh() is False          # the map is gone: no read, no hang
    assert time.monotonic() - start < 1
    assert value_of(views[0].history, child.pid) >= 50      # what was kept stays


def test_magics_stop_and_unload_stop_views(child: Workload, plain_shell: Any) -> None:
    base = threading.active_count()
    plain_shell.run_line_magic("load_ext", "bpfnb")
    try:
        cell = GETPID.replace("TARGET", str(child.pid))
        plain_shell.run_cell_magic("bpf", "counts", cell)
        v1 = widgets.live_view(plain_shell.user_ns["counts"]["calls"], every=0.02)
        time.sleep(0.05)
        plain_shell.run_line_magic("bpf", "stop counts")
        assert v1.status.state == "stopped" and threading.active_count() == base
        plain_shell.run_cell_magic("bpf", "counts", cell)
        v2 = widgets.live_view(plain_shell.user_ns["counts"]["calls"], every=0.02)
        plain_shell.run_cell_magic("bpf", "counts", cell)     # re-running the %%bpf cell
        assert v2.status.state == "stopped"
        v3 = widgets.live_view(plain_shell.user_ns["counts"]["calls"], every=0.02)
        assert v3.status.state == "running"
    finally:
        plain_shell.run_line_magic("unload_ext", "bpfnb")
    assert v3.status.state == "stopped"
    assert threading.active_count() == base and live.running() == []


def test_interpreter_exit_stops_views_quietly(child: Workload) -> None:
    script = textwrap.dedent(f"""
        import time, bpfnb
        from bpfnb.live import widgets
        prog = bpfnb.load({GETPID!r}, cflags=["-DTARGET=1"])
        views = [widgets.live_view(prog["calls"], every=0.01, rate=True),
                 widgets.live_view(prog["pid_dist"], every=0.01)]
        time.sleep(0.3)
        assert all(v.status.refreshes > 3 for v in views)
    """)                                      # ...and exits with both views running
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Exception" not in done.stderr, done.stderr
    assert time.monotonic() - start < 30


def test_rerunning_the_cell_stops_its_old_view(prog: bpfnb.Program) -> None:
    old = widgets.LiveView(prog["calls"], every=0.02, tag="cell-1")
    other = widgets.LiveView(prog["calls"], every=0.02, tag="cell-2")
    widgets._on_pre_run_cell(SimpleNamespace(cell_id="cell-1"))
    assert old.status.state == "stopped" and old.status.stop_reason == "its cell ran again"
    assert other.status.state == "running"
    other.stop()


def test_status_warns_when_full_and_notes_lru() -> None:
    src = "BPF_HASH(small, u32, u64, 10);\nBPF_TABLE(\"lru_hash\", u32, u64, lru, 10);\n"
    with bpfnb.load(src, name="full", attach=False) as p:
        for name in ("small", "lru"):
            fd = p[name].fd
            for k in range(9):
                bpfsys.update(fd, np.array([k], np.uint32), np.array([k], np.uint64))
        v = widgets.live_view(p["small"], start=False)
        assert "90% full" in v._status.value and "E2BIG" in v._status.value
        w = widgets.live_view(p["lru"], start=False)
        assert "evicted silently" in w._status.value and "90% full" in w._status.value
        bpfsys.delete(p["small"].fd, np.array([0], np.uint32))
        v.refresh()
        assert "80% of 10" in v._status.value and "⚠ map" not in v._status.value


def test_error_in_a_view_refresh_is_shown_and_it_keeps_going(prog: bpfnb.Program) -> None:
    view = widgets.live_view(prog["calls"], every=0.02)
    real = view.mapview.read
    failures = {"left": 2}

    def failing_read() -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise OSError(5, "Input/output error")
        return real()

    view.mapview.read = failing_read  # type: ignore[method-assign]
    try:
        deadline = time.monotonic() + 3
        while view.status.errors < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "Input/output error" in view._status.value
        before = view.status.refreshes
        while view.status.refreshes < before + 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert view.status.state == "running" and view.status.refreshes >= before + 3
        assert "refresh failed" not in view._status.value     # cleared once it works again
    finally:
        del view.mapview.read
        view.stop()


def test_rich_output_has_static_fallbacks(prog: bpfnb.Program, child: Workload) -> None:
    child.calls(10)
    view = widgets.live_view(prog["calls"], start=False, top=5)
    bundle = view._repr_mimebundle_()
    assert {"text/plain", "text/html", "image/png",
            "application/vnd.jupyter.widget-view+json"} <= set(bundle)
    assert "bpfnb-live-table" in bundle["text/html"] and "data:image/png;base64," in \
        bundle["text/html"]
    assert bundle["text/plain"].startswith("LiveView calls")
    assert str(child.pid) in bundle["text/plain"].replace(",", "")
    snap = view.snapshot()._repr_mimebundle_()
    assert set(snap) == {"text/plain", "text/html", "image/png"}
    view.close()


def test_plot_argument() -> None:
    with bpfnb.load("BPF_HASH(h, u32, u64);\nBPF_HISTOGRAM(lat_us);\nBPF_ARRAY(a, u64, 4);",
                    name="kinds", attach=False) as p:
        assert widgets.parse_plot("auto", p["lat_us"], False).kind == "hist"
        assert widgets.parse_plot("auto", p["h"], False).kind == "bars"
        assert widgets.parse_plot("auto", p["h"], True).kind == "rates"
        assert widgets.parse_plot("auto", p["a"], False).kind == "bars"
        assert widgets.parse_plot("hist:linear=10", p["a"], False) == widgets.PlotSpec("hist", 10)
        with pytest.raises(ValueError, match="hist:linear=STEP"):
            widgets.parse_plot("pie", p["h"], False)
        with pytest.raises(ValueError, match="only 'hist:linear=STEP'"):
            widgets.parse_plot("bars:linear=3", p["h"], False)
        with pytest.raises(ValueError, match="sort_by='nope'"):
            widgets.live_view(p["h"], sort_by="nope", start=False)


# -- the notebook without a frontend ---------------------------------------------------------

@pytest.mark.slow
def test_notebook_runs_headless_quickly(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    start = time.monotonic()
    nbclient.NotebookClient(nb, timeout=60, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    took = time.monotonic() - start
    assert took < 60, took
    views = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
             if "bpfnb-live-static" in o.get("data", {}).get("text/html", "")]
    assert len(views) == 3
    for out in views:   # the cleanup cell stopped them: static output, no widget view
        assert {"text/plain", "text/html", "image/png"} <= set(out["data"])
        assert "application/vnd.jupyter.widget-view+json" not in out["data"]
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
