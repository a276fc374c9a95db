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
from bpfnb import frames
from bpfnb.errors import ReplayError, UnknownMapError
from bpfnb.recording import Recorder, decode_table, encode_frame, record
from bpfnb.replay import replay
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
    from bpfnb import live

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


def test_interrupted_save_keeps_previous_file(tmp_path, monkeypatch, workload):
    path = tmp_path / "x.bpfrec"
    with bpfnb.load(SOURCE, name="rec") as prog:
        run_workload(workload, "getpid", 4)
        record(prog, path, every=0.01, count=2)
        before = path.read_bytes()
        rec = Recorder(prog, path)
        for _ in range(4):
            rec.snapshot()
        real = zipfile.ZipFile.writestr
        calls = []

        def flaky(self, name, data, *a, **k):
            calls.append(name)
            if len(calls) == 5:
                raise KeyboardInterrupt           # Ctrl-C in the middle of writing
            return real(self, name, data, *a, **k)

        monkeypatch.setattr(zipfile.ZipFile, "writestr", flaky)
        with pytest.raises(KeyboardInterrupt):
            rec.save()
        monkeypatch.undo()
    assert path.read_bytes() == before
    assert len(replay(path).snapshots) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["x.bpfrec"]


CHILD = """
import sys, bpfnb
from bpfnb.recording import record
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
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ReplayError, match="corrupt"):
        replay(cut)
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
