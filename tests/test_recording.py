"""Recordings against the real kernel: replay equals live, atomic saves, corrupt files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bpfnb
from bpfnb.data import frames
from bpfnb.data.arrow import decode_table, encode_frame
from bpfnb.errors import ReplayError, UnknownMapError
from bpfnb.store.recording import Recorder, record
from bpfnb.store.replay import replay
from bpfnb.testing import events
from conftest import run_workload

ROOT = Path(__file__).parent.parent

SOURCE = r"""
struct key_t { u32 pid; char comm[16]; };
struct skey_t { u32 pid; char comm[16]; int user_stack_id; };
BPF_HASH(by_comm, struct key_t, u64);
BPF_ARRAY(arr, u64, 8);
BPF_PERCPU_HASH(percpu, u32, u64);
BPF_TABLE("lru_hash", u32, u64, lru, 128);
BPF_HISTOGRAM(dist);
BPF_STACK_TRACE(stack_traces, 128);
BPF_HASH(counts, struct skey_t, u64);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    char comm[16];
    bpf_get_current_comm(&comm, sizeof(comm));
    if (comm[0] != 'b' || comm[1] != 'p' || comm[2] != 'f' || comm[6] != 'w') return 0;
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    struct key_t k = {};
    k.pid = pid;
    bpf_get_current_comm(&k.comm, sizeof(k.comm));
    by_comm.increment(k);
    int i = pid % 8;
    arr.increment(i);
    u64 zero = 0, *v = percpu.lookup_or_try_init(&pid, &zero);
    if (v) *v += 1;
    v = lru.lookup_or_try_init(&pid, &zero);
    if (v) *v += 1;
    dist.increment(bpf_log2l(pid));
    struct skey_t s = {};
    s.pid = pid;
    bpf_get_current_comm(&s.comm, sizeof(s.comm));
    s.user_stack_id = stack_traces.get_stackid(args, BPF_F_USER_STACK);
    counts.increment(s);
    return 0;
}
"""
MAPS = ["by_comm", "arr", "percpu", "lru", "dist", "stack_traces", "counts"]


def live_frames(prog: bpfnb.Program) -> dict[str, pd.DataFrame]:
    out = {}
    for name in prog.map_names:
        view = prog[name]
        out[name] = view.df().copy()
        if view.per_cpu:
            out[f"{name}/cpu"] = view.df(per_cpu=True).copy()
    out["dist/hist"] = prog["dist"].hist()
    out["stacks"] = bpfnb.stacks(prog["counts"], prog["stack_traces"], name="counts").df()
    return out


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, workload):
    """A 3-snapshot recording; live frames read right after snapshots 0 and 2."""
    from conftest import features, require

    require(features.can_load_bpf())
    require(features.can_trace())
    path = tmp_path_factory.mktemp("rec") / "run.bpfrec"
    seen: dict[int, dict[str, pd.DataFrame]] = {}
    with bpfnb.load(SOURCE, name="rec") as prog:
        run_workload(workload, "getpid", 20, cpu=0)

        def progress(p):
            if p.snapshots == 1:
                seen[0] = live_frames(prog)
                run_workload(workload, "getpid", 30, cpu=1)
                run_workload(workload, "getpid", 5)

        started = time.monotonic()
        rec = record(prog, path, every=0.2, count=3, progress=progress)
        took = time.monotonic() - started
        seen[2] = live_frames(prog)
        points = prog.attach_points
    return path, rec, seen, points, took


def test_record_returns_recording(recorded):
    path, rec, _, _, took = recorded
    assert rec.path == path and rec.snapshots == 3 and not rec.interrupted
    assert sorted(rec.maps) == sorted(MAPS)
    assert took < 10
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("at", [0, 2])
def test_replay_equals_live_for_every_map(recorded, at):
    path, _, seen, _, _ = recorded
    live = seen[at]
    with replay(path) as prog:
        assert sorted(prog.map_names) == sorted(MAPS)
        for name in MAPS:
            got = prog[name].df(at=at)
            pd.testing.assert_frame_equal(got, live[name], check_exact=True)
            assert got.attrs["key_columns"] == live[name].attrs["key_columns"]
            assert got.attrs["value_columns"] == live[name].attrs["value_columns"]
            assert got.attrs["map"] == name and got.attrs["type"] == prog[name].info.type
        pd.testing.assert_frame_equal(prog["percpu"].df(per_cpu=True, at=at),
                                      live["percpu/cpu"])
        pd.testing.assert_frame_equal(prog["dist"].hist(at=at), live["dist/hist"])
        pd.testing.assert_frame_equal(prog.stacks("counts", at=at).df(), live["stacks"])


def test_replay_keeps_element_types(recorded):
    path, _, seen, _, _ = recorded
    live = seen[2]["stack_traces"]
    got = replay(path)["stack_traces"].df()
    assert len(got) >= 1
    for a, b in zip(got["addresses"], live["addresses"]):
        assert isinstance(a, np.ndarray) and a.dtype == np.uint64 and np.array_equal(a, b)
    assert [type(f) for f in got["frames"]] == [type(f) for f in live["frames"]]
    assert str(replay(path)["by_comm"].df()["comm"].dtype) == str(
        seen[2]["by_comm"]["comm"].dtype)


def test_snapshots_differ_and_cursor_moves(recorded):
    path, _, seen, points, _ = recorded
    prog = replay(path)
    assert list(prog.snapshots.index) == [0, 1, 2]
    assert prog.snapshots["time_ns"].is_monotonic_increasing
    assert prog.attach_points == points
    assert prog.name == "rec" and prog.source == SOURCE and not prog.closed
    lru = prog["lru"]
    assert lru.cursor == 2                      # the last snapshot, like a final read
    assert prog.seek(0) is prog and lru.cursor == 0
    pd.testing.assert_frame_equal(lru.df(), seen[0]["lru"])
    assert prog.step() and prog.step() and not prog.step()
    pd.testing.assert_frame_equal(lru.df(), seen[2]["lru"])
    assert sum(seen[2]["lru"]["value"]) == sum(seen[0]["lru"]["value"]) + 35
    assert [len(f) for f in lru.frames()] == [len(seen[0]["lru"]), len(seen[0]["lru"]) + 2,
                                              len(seen[2]["lru"])]


def test_read_gives_raw_snapshot_like_live(recorded):
    path, _, seen, _, _ = recorded
    view = replay(path)["percpu"]
    snap = view.read()
    assert snap.keys.dtype == view.key_dtype and snap.values.ndim == 2
    df = frames.frame(snap.keys, snap.values, view.attrs(snap, len(snap.keys)))
    pd.testing.assert_frame_equal(df, seen[2]["percpu"])


def test_unknown_map_and_closed(recorded):
    path = recorded[0]
    prog = replay(path)
    with pytest.raises(UnknownMapError, match=r"no map 'nope' in program 'rec'; its maps are: "):
        prog["nope"]
    with pytest.raises(KeyError):
        prog["nope"]
    view = prog["arr"]
    prog.close()
    prog.close()
    assert prog.closed
    with pytest.raises(bpfnb.ProgramClosedError):
        view.df()


def test_live_view_steps_through_snapshots(recorded):
    pytest.importorskip("ipywidgets")
    from bpfnb.live import poller as live

    path, _, seen, _, _ = recorded
    prog = replay(path)
    lv = prog["lru"].live(every=0.1, start=False)   # refreshed once on creation
    try:
        pd.testing.assert_frame_equal(lv.frame(), seen[0]["lru"], check_exact=True)
        assert lv.refresh() and lv.refresh()
        pd.testing.assert_frame_equal(lv.frame(), seen[2]["lru"])
        assert lv.refresh()                        # past the end: stays on the last
        pd.testing.assert_frame_equal(lv.frame(), seen[2]["lru"])
        assert len(lv.times) == 4 and lv.times[0].value == prog["lru"].df(at=0).attrs["read_ns"]
        hist = prog["dist"].live(start=False)
        assert hist.hist_mode
        pd.testing.assert_frame_equal(hist.frame(), seen[0]["dist/hist"])
        hist.close()
        started = prog["arr"].live(every=0.05, loop=True)
        time.sleep(0.3)
        assert started.status.state == "running" and len(started.times) >= 3
    finally:
        lv.close()
        prog.close()
    assert not [p for p in live.running() if p.name.startswith("bpfnb-live-arr")]


# -- atomic saves -------------------------------------------------------------------------------

def test_exception_mid_recording_leaves_valid_shorter_file(tmp_path, workload):
    path = tmp_path / "x.bpfrec"

    def boom(p):
        if p.snapshots == 3:
            raise RuntimeError("stop here")
        run_workload(workload, "getpid", 3)

    with bpfnb.load(SOURCE, name="rec") as prog:
        with pytest.raises(RuntimeError, match="stop here"):
            record(prog, path, every=0.01, count=10, progress=boom, checkpoint=60)
        got = replay(path)
        assert len(got.snapshots) == 3 and got.meta["interrupted"]
        pd.testing.assert_frame_equal(got["lru"].df(), prog["lru"].df())

        def interrupt(p):
            if p.snapshots == 2:
                raise KeyboardInterrupt

        rec = record(prog, path, every=0.01, count=10, progress=interrupt)
        assert rec.interrupted and rec.snapshots == 2 and len(replay(path).snapshots) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["x.bpfrec"]


def _interrupt_write(n: int, monkeypatch) -> None:
    """Ctrl-C (KeyboardInterrupt) as the n-th member is written into a zip."""
    real = zipfile.ZipFile.writestr
    calls = []

    def flaky(self, name, data, *a, **k):
        calls.append(name)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(self, name, data, *a, **k)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", flaky)


def test_interrupted_save_keeps_previous_file(tmp_path, monkeypatch, workload):
    path = tmp_path / "x.bpfrec"
    with bpfnb.load(SOURCE, name="rec") as prog:
        run_workload(workload, "getpid", 4)
        record(prog, path, every=0.01, count=2)
        before = path.read_bytes()
        rec = Recorder(prog, path)
        for _ in range(4):
            rec.snapshot()
        _interrupt_write(5, monkeypatch)          # Ctrl-C in the middle of writing
        with pytest.raises(KeyboardInterrupt):
            rec.save()
        monkeypatch.undo()
    assert path.read_bytes() == before
    assert len(replay(path).snapshots) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["x.bpfrec"]


CHILD = """
import sys, bpfnb
from bpfnb.store.recording import record
src = open(sys.argv[1]).read()
with bpfnb.load(src, name="child") as prog:
    record(prog, sys.argv[2], every=0.01, duration=60, checkpoint=0,
           progress=lambda p: print(p.saved, flush=True))
"""


@pytest.mark.parametrize("after", [3, 12])
def test_sigkill_while_recording_leaves_valid_file(tmp_path, workload, after):
    src = tmp_path / "prog.c"
    src.write_text(SOURCE)
    path = tmp_path / "killed.bpfrec"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CHILD), str(src), str(path)],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            run_workload(workload, "getpid", 2)
            if int(line) >= after:
                break
        proc.send_signal(signal.SIGKILL)           # likely in the middle of a save
    finally:
        proc.kill()
        proc.wait(timeout=30)
    got = replay(path)
    n = len(got.snapshots)
    assert n >= after
    for name in MAPS:
        got[name].df(at=0), got[name].df(at=n - 1)
    assert got["lru"].df()["value"].sum() > 0


# -- bad files and codecs ------------------------------------------------------------------------

def test_missing_and_corrupt_files(tmp_path, recorded):
    with pytest.raises(ReplayError, match=r"no recording at .*bpfnb\.record"):
        replay(tmp_path / "absent.bpfrec")
    junk = tmp_path / "junk.bpfrec"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(ReplayError, match="not a bpfnb recording or is corrupt"):
        replay(junk)
    data = recorded[0].read_bytes()
    cut = tmp_path / "cut.bpfrec"
    cut.write_bytes(data[:40])
    with pytest.raises(ReplayError, match="corrupt"):
        replay(cut)
    cut.write_bytes(data[: len(data) // 2])  # as a crash in the middle of a save leaves it
    got = replay(cut)
    assert got.meta["interrupted"] and 1 <= len(got.snapshots) < 3
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("meta.json", '{"format": "something else"}')
    with pytest.raises(ReplayError, match="not a bpfnb recording"):
        replay(other)


def test_codec_round_trips_awkward_columns():
    df = pd.DataFrame({
        "u64": np.array([0, 2**64 - 1, 5], dtype=np.uint64),
        "i8": np.array([-1, 0, 1], dtype=np.int8),
        "s": pd.Series(["a", "b", "c"], dtype="str"),
        "obj_str": pd.Series(["x", "y", "z"], dtype=object),
        "arrays": pd.Series([np.array([1, 2], np.uint64), np.zeros(0, np.uint64),
                             np.array([2**64 - 1], np.uint64)], dtype=object),
        "lists": pd.Series([["a", "b"], [], ["c"]], dtype=object),
        "tuples": pd.Series([("a",), ("b", "c"), ()], dtype=object),
        "bytes": pd.Series([b"\x00\x01", b"", None], dtype=object),
        "big": pd.Series([2**70, -(2**70), 3], dtype=object),
        "ints": pd.Series([1, None, 3], dtype=object),
        "nested": pd.Series([{"a": [1, 2]}, [1, "x"], None], dtype=object),
        "empty": pd.Series([None, None, None], dtype=object),
        "f": np.array([0.5, np.nan, 1.0]),
    })
    table, specs = encode_frame(df)
    back = decode_table(table, specs)
    pd.testing.assert_frame_equal(back, df, check_exact=True)
    assert [type(v) for v in back["tuples"]] == [tuple] * 3
    assert all(isinstance(v, np.ndarray) and v.dtype == np.uint64 for v in back["arrays"])
    assert back["big"].tolist() == [2**70, -(2**70), 3]


# -- events ---------------------------------------------------------------------------------

EVENT_MAPS = ("rb", "perf")


@pytest.fixture(scope="module")
def recorded_events(tmp_path_factory, workload):
    """Snapshots of 0, 100 and 50 events; live events() and an empty live frame after."""
    from conftest import features, require

    require(features.can_load_bpf())
    require(features.can_trace())
    path = tmp_path_factory.mktemp("events") / "events.bpfrec"
    pids: dict[int, int] = {}
    with events.load(name="ev") as prog:

        def progress(p):
            if p.snapshots in (1, 2):
                pids[p.snapshots] = run_workload(workload, "getpid", 100 // p.snapshots)

        rec = record(prog, path, every=0.2, count=3, progress=progress)
        pids[3] = run_workload(workload, "getpid", 7)
        live = {n: prog[n].events(duration=0.2) for n in EVENT_MAPS}
        empty = {n: prog[n].events(duration=0) for n in EVENT_MAPS}
    return path, rec, pids, live, empty


def test_events_recorded_per_snapshot(recorded_events):
    path, rec, pids, live, _ = recorded_events
    assert rec.snapshots == 3
    assert {n: len(live[n]) for n in EVENT_MAPS} == {"rb": 7, "perf": 7}
    with replay(path) as prog:
        for name in EVENT_MAPS:
            view = prog[name]
            sizes = [len(view.events(at=i)) for i in range(3)]
            assert sizes == [0, 100, 50], name
            for i, start in ((1, 0), (2, 100)):
                got = view.events(at=i)
                assert sorted(got["seq"].tolist()) == list(range(start, start + sizes[i]))
                assert (got["pid"] == pids[i]).all() and (got["comm"] == "bpfnb-wl").all()
                assert got.attrs["map"] == name and got.attrs["events"] == sizes[i]
                assert got.attrs["seconds"] > 0
                assert got.attrs["lost"] == (0 if name == "perf" else None)
            every = view.events(all=True)  # the cursor is on the last snapshot
            assert len(every) == 150 and every.attrs["events"] == 150
            assert sorted(every["seq"].tolist()) == list(range(150))
            first = view.events(max_events=10, at=1)
            assert len(first) == 10
            pd.testing.assert_frame_equal(first, view.events(at=1).iloc[:10])
            prog.seek(1)
            assert len(view.events()) == 100 and len(view.events(all=True)) == 100
            df = view.df()
            pd.testing.assert_frame_equal(df, view.events())
            assert "consumes" in df.attrs["note"]
            prog.seek(-1)
        assert prog["rb"].events(at=1)["ts"].is_monotonic_increasing
        assert (prog["perf"].events(at=1)["cpu"] >= 0).all()


def test_replayed_events_have_the_live_schema(recorded_events):
    path, _, _, live, empty = recorded_events
    with replay(path) as prog:
        for name in EVENT_MAPS:
            view = prog[name]
            for got in (view.events(at=1), view.events(at=2), view.events(all=True)):
                assert list(got.columns) == list(live[name].columns)
                pd.testing.assert_series_equal(got.dtypes, live[name].dtypes)
            none = view.events(at=0)
            assert list(none.columns) == list(empty[name].columns) and len(empty[name]) == 0
            pd.testing.assert_series_equal(none.dtypes, empty[name].dtypes)
            assert set(got.attrs) >= set(live[name].attrs) - {"note"}
    assert list(live["perf"].columns) == ["cpu", "pid", "seq", "ts", "comm"]
    assert list(live["rb"].columns) == ["pid", "seq", "ts", "comm"]


def test_replayed_events_errors(recorded_events):
    from bpfnb.errors import UnsupportedMapError

    with replay(recorded_events[0]) as prog:
        with pytest.raises(UnsupportedMapError, match="RINGBUF and PERF_EVENT_ARRAY"):
            prog["seq"].events()
        with pytest.raises(ReplayError, match="decoded when recorded"):
            prog["rb"].events(event_type=object)
        with pytest.raises(ReplayError, match="out of range"):
            prog["rb"].events(at=3)


def test_record_events_with_explicit_type(tmp_path, workload):
    import ctypes as ct

    from bpfnb.errors import BpfnbError

    class Small(ct.Structure):
        _fields_ = [("pid", ct.c_uint32), ("seq", ct.c_uint32)]

    with events.load(name="ev") as prog:
        with pytest.raises(BpfnbError, match="not an event map"):
            record(prog, tmp_path / "bad.bpfrec", count=1, events={"seq": Small})
        pid = run_workload(workload, "getpid", 5)  # waits in the ring buffer
        record(prog, tmp_path / "small.bpfrec", count=1, events={"rb": Small})
    with replay(tmp_path / "small.bpfrec") as r:
        got = r["rb"].events()
        assert list(got.columns) == ["pid", "seq"] and got["seq"].tolist() == list(range(5))
        assert (got["pid"] == pid).all() and got["seq"].dtype == np.uint32
        assert len(r["perf"].events()) == 0  # perf buffers exist only once the reader opens


# -- Stacks files ---------------------------------------------------------------------------

FOLDED = """\
bash;main [bash];read [libc.so.6];entry_SYSCALL_64;do_syscall_64;ksys_read 5
callchain;main [callchain];a [callchain];b [callchain] 30
callchain;main [callchain];x [callchain];y [callchain] 30
swapper/0;secondary_startup_64;cpu_startup_entry;do_idle;default_idle 20
"""


def test_stacks_save_load_round_trip(tmp_path, recorded):
    from bpfnb.profiler.stacks import Stacks

    with replay(recorded[0]) as prog:
        real = prog.stacks("counts")
    for s in (Stacks.from_folded(FOLDED, name="folded"), real, Stacks(name="empty")):
        path = s.save(tmp_path / "sub" / f"{s.name}.stacks")
        back = Stacks.load(path)
        assert back.name == s.name and back.total == s.total and len(back) == len(s)
        pd.testing.assert_frame_equal(back.df(), s.df(), check_exact=True)
        assert back.df().attrs == s.df().attrs
        assert back.folded() == s.folded()
        pd.testing.assert_frame_equal(back.functions(), s.functions())
    assert len(real) and not [p for p in (tmp_path / "sub").iterdir() if p.suffix == ".tmp"]
    with pytest.raises(ReplayError, match="no stacks file"):
        Stacks.load(tmp_path / "absent.stacks")
    (tmp_path / "junk.stacks").write_bytes(b"junk")
    with pytest.raises(ReplayError, match=r"not a file of Stacks\.save"):
        Stacks.load(tmp_path / "junk.stacks")
    with pytest.raises(ReplayError, match=r"not a file of Stacks\.save"):
        Stacks.load(recorded[0])


# -- record() arguments ---------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, word", [
    ({"every": float("nan")}, "every"), ({"every": float("inf")}, "every"),
    ({"every": 0}, "every"), ({"every": -1}, "every"), ({"every": "1"}, "every"),
    ({"count": -1}, "count"), ({"count": 0}, "count"), ({"count": 1.5}, "count"),
    ({"duration": float("nan")}, "duration"), ({"duration": -1}, "duration"),
    ({"path": "/proc/x.zip"}, "path"), ({"path": "/nonexistent-dir/x.zip"}, "path"),
    ({"path": "/tmp"}, "path"),
])
def test_record_arguments_are_checked(tmp_path, kwargs, word):
    from bpfnb.errors import BpfnbError
    from conftest import features, require

    require(features.can_load_bpf())
    args = {"path": tmp_path / "x.bpfrec", "every": 0.01, "count": 1, **kwargs}
    with bpfnb.load("BPF_ARRAY(a, u64, 1);", name="args", attach=False) as prog, \
            pytest.raises(BpfnbError, match=rf"record\({word}="):
        record(prog, **args)
    assert list(tmp_path.iterdir()) == []


# -- saves append ---------------------------------------------------------------------------------

def _saved_prefix(rec: Recorder) -> int:
    return rec._appender._at  # where the last save's central directory starts


def test_saves_append_and_keep_nothing_saved_in_memory(tmp_path, workload):
    """Each save adds the new snapshots after what is in the file (the bytes before the
    previous save's central directory never change) and keeps no saved table in memory."""
    path = tmp_path / "a.bpfrec"
    with bpfnb.load(SOURCE, name="rec") as prog:
        rec = Recorder(prog, path)
        seen, files = [], []
        for i in range(3):
            run_workload(workload, "getpid", 3 + i)
            rec.snapshot()
            rec.snapshot()
            seen.append(prog["lru"].df())
            rec.save()
            assert all(not t.parts and not t.attrs for t in rec._tables.values())
            files.append((path.read_bytes(), _saved_prefix(rec)))
        for (before, at), (after, _) in zip(files, files[1:]):
            assert after[:at] == before[:at] and len(after) > len(before)
        with zipfile.ZipFile(path) as zf:
            assert [n for n in zf.namelist() if n.startswith("index/")] == [
                "index/00000000.json", "index/00000001.json", "index/00000002.json"]
        got = replay(path)
        assert len(got.snapshots) == 6 and not got.meta["interrupted"]
        for i, live in enumerate(seen):
            pd.testing.assert_frame_equal(got["lru"].df(at=2 * i + 1), live)


def test_interrupted_append_restores_the_previous_file(tmp_path, monkeypatch, workload):
    path = tmp_path / "x.bpfrec"
    with bpfnb.load(SOURCE, name="rec") as prog:
        run_workload(workload, "getpid", 4)
        rec = Recorder(prog, path)
        rec.snapshot()
        rec.save()
        before = path.read_bytes()
        for _ in range(3):
            rec.snapshot()
        _interrupt_write(3, monkeypatch)          # Ctrl-C in the middle of an append
        with pytest.raises(KeyboardInterrupt):
            rec.save()
        monkeypatch.undo()
        assert path.read_bytes() == before
        assert len(replay(path).snapshots) == 1
        rec.save()                                # nothing was lost: the next save has all
        got = replay(path)
        assert len(got.snapshots) == 4
        pd.testing.assert_frame_equal(got["lru"].df(), prog["lru"].df())
    assert [p.name for p in tmp_path.iterdir()] == ["x.bpfrec"]


def test_crash_in_the_middle_of_an_append_leaves_the_previous_save(tmp_path, workload):
    """A file cut anywhere in the last append (what SIGKILL or a power loss leaves) replays
    as the previous save left it, marked interrupted."""
    path = tmp_path / "c.bpfrec"
    with bpfnb.load(SOURCE, name="rec") as prog:
        run_workload(workload, "getpid", 4)
        rec = Recorder(prog, path)
        rec.snapshot()
        rec.save()
        first = _saved_prefix(rec)
        live = prog["lru"].df()
        run_workload(workload, "getpid", 4)
        rec.snapshot()
        rec.save()
    data = path.read_bytes()
    for cut in np.linspace(first + 1, _saved_prefix(rec) - 1, 7).astype(int):
        path.write_bytes(data[:cut])
        got = replay(path)
        assert len(got.snapshots) == 1 and got.meta["interrupted"], cut
        pd.testing.assert_frame_equal(got["lru"].df(), live)
