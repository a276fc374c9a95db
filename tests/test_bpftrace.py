"""bpftrace programs as bpfnb engines: real bpftrace, real kernel, exact answers."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bpfnb._sys import bpfobjs, features
from bpfnb.bpftrace import BpftraceProgram, bpftrace
from bpfnb.bpftrace.health import available
from bpfnb.bpftrace.output import hist_frame, parse_line
from bpfnb.bpftrace.process import find_bpftrace
from bpfnb.errors import (
    CompileError,
    FeatureUnavailableError,
    PrivilegeError,
    ReplayError,
    UnknownTargetError,
)
from bpfnb.testing import workload
from conftest import WORKLOAD_SRC, build, run_workload


@pytest.fixture(scope="module", autouse=True)
def kernel() -> None:
    for f in (features.can_load_bpf(), available()):
        if not f:
            pytest.skip(str(f))


@pytest.fixture(scope="module")
def wl() -> Path:
    return build(WORKLOAD_SRC, "workload")


COMM = "bpfnb-bt"
COUNTS = f"""tracepoint:syscalls:sys_enter_getpid /comm == "{COMM}"/ {{
  @c[comm] = count();
  @m[comm, pid] = count();
  @s = sum(pid);
  @n = count();
  @[comm] = count();
  @hk[comm] = hist(pid);
  @k[kstack] = count();
}}"""
VALUES = [0, 1, 5, 7, 12, 150, 3_000_000_000]


def test_counts_by_key_and_multikey_live_then_final() -> None:
    with bpftrace(COUNTS, name="counts") as prog:
        pid = workload.getpid(1234, comm=COMM)
        live = {n: prog[n].df() for n in ("@c", "@m", "@s", "@n", "@", "@hk")}
        assert {d.attrs["source"] for d in live.values()} == {"kernel"}
    assert not prog.running
    final = {n: prog[n].df() for n in ("@c", "@m", "@s", "@n", "@", "@hk")}
    assert {d.attrs["source"] for d in final.values()} == {"final dump"}
    for name in live:  # reads while running agree with bpftrace's own final dump
        assert live[name].to_dict("list") == final[name].to_dict("list")
    c, m, s = final["@c"], final["@m"], final["@s"]
    assert c.to_dict("list") == {"key": [COMM], "value": [1234]}
    assert list(m.columns) == ["comm", "pid", "value"]
    assert m.to_dict("list") == {"comm": [COMM], "pid": [pid], "value": [1234]}
    assert str(m["pid"].dtype) == "int64"
    assert s["value"].tolist() == [1234 * pid]
    assert final["@n"].to_dict("list") == {"value": [1234]}
    assert final["@"].to_dict("list") == {"key": [COMM], "value": [1234]}
    hk = final["@hk"]
    low = 1 << (pid.bit_length() - 1)
    assert hk.to_dict("list") == {"key": [COMM], "low": [low], "high": [2 * low - 1],
                                  "count": [1234], "bucket": [""]}


def test_stack_keyed_map_to_stacks() -> None:
    with bpftrace(COUNTS) as prog:
        workload.getpid(300, comm=COMM)
    stacks = prog.stacks("@k")
    assert stacks.total == 300
    lines = stacks.folded().splitlines()
    assert sum(int(ln.rsplit(" ", 1)[1]) for ln in lines) == 300
    for ln in lines:  # root first: the syscall entry, then down to the tracepoint
        frames = ln.rsplit(" ", 1)[0].split(";")
        assert frames[1].startswith("entry_SYSCALL_64"), ln
        assert frames[-1].startswith("perf_syscall_enter"), ln


def _text_hist(text: str, name: str) -> list[tuple[str, int]]:
    """bpftrace's text histogram of `name`: (label, count) per bucket."""
    block = text.split(f"{name}: \n", 1)[1].split("\n\n", 1)[0]
    return [(m.group(1), int(m.group(2))) for m in
            re.finditer(r"^(\S.*?\S)\s+(\d+) \|", block, re.M)]


_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _label(low: int, high: int, bucket: str, linear: bool) -> str:
    """The text label bpftrace prints for a bucket."""
    def h(v: int) -> str:
        for suf in ("T", "G", "M", "K"):
            if v and v % _SUFFIX[suf] == 0:
                return f"{v // _SUFFIX[suf]}{suf}"
        return str(v)
    if bucket == "negative":
        return f"(..., {high + 1})"
    if bucket == "overflow":
        return f"[{low}, ...)"
    if not linear and low == high:
        return f"[{low}]"
    return f"[{h(low)}, {h(high + 1)})" if not linear else f"[{low}, {high + 1})"


def test_hist_lhist_stats_equal_bpftrace_text_output(wl: Path, tmp_path: Path) -> None:
    wl = Path(shutil.copy(wl, tmp_path / "workload"))  # a binary only this test runs
    script = (f"uprobe:{wl}:record {{ @h = hist(arg0); "
              "@l = lhist((int64)arg0 - 10, 0, 100, 10); @st = stats(arg0); @a = avg(arg0); }")
    # the same script in text mode beside it; its BEGIN line says its probes are attached
    text = subprocess.Popen([find_bpftrace(), "-e", script + '\nBEGIN { printf("ready\\n"); }'],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert text.stdout is not None
        while "ready" not in text.stdout.readline():
            assert text.poll() is None
        with bpftrace(script) as prog:
            run_workload(wl, "record", *VALUES)
            live_h, live_l = prog["@h"].hist(), prog["@l"].hist()
            text.send_signal(2)
            printed = text.communicate(timeout=30)[0]
    finally:
        if text.poll() is None:  # leave no bpftrace behind, whatever failed
            text.kill()
            text.wait()
    h, lh = prog["@h"].hist(), prog["@l"].hist()
    assert h.to_dict("list") == live_h.to_dict("list")
    assert lh.to_dict("list") == live_l.to_dict("list")
    assert [(_label(r.low, r.high, r.bucket, False), r.count) for r in h.itertuples()] == \
        _text_hist(printed, "@h")
    assert [(_label(r.low, r.high, r.bucket, True), r.count) for r in lh.itertuples()] == \
        _text_hist(printed, "@l")
    # >= 2**31 lands in [2G, 4G) (bpftrace 0.17's JSON says [-2**31, 0])
    assert h.iloc[-1].tolist()[:3] == [2**31, 2**32 - 1, 1]
    assert lh[lh.bucket == "overflow"]["count"].tolist() == [2]   # 150, 3e9
    assert lh[lh.bucket == "negative"]["count"].tolist() == [4]   # 0, 1, 5, 7
    st = prog["@st"].df()
    total = sum(VALUES)
    assert st.to_dict("list") == {"count": [7], "average": [total // 7], "total": [total]}
    assert prog["@a"].df()["value"].tolist() == [total // 7]


def test_printf_output_and_events() -> None:
    script = ('BEGIN { printf("start\\n"); }\n'
              f'tracepoint:syscalls:sys_enter_getpid /comm == "{COMM}"/ '
              '{ printf("pid %d ", pid); printf("n=%d\\n", 1); }')
    with bpftrace(script) as prog:
        shown: list[str] = []
        prog.on_output(shown.append)          # "start" came before: it is replayed
        pid = workload.getpid(3, comm=COMM)
        time.sleep(0.3)
    assert prog.output == "start\n" + f"pid {pid} n=1\n" * 3
    assert "".join(shown) == prog.output
    ev = prog.events()
    assert ev["line"].tolist() == ["start"] + [f"pid {pid} n=1"] * 3
    assert str(ev["time"].dtype).startswith("datetime64")


def test_duration_and_args() -> None:
    prog = bpftrace('BEGIN { @x = $1 + 1; printf("%s\\n", str($2)); }', duration=0.5,
                    args=(41, "hello"))
    rc = prog.wait(10)
    assert rc == 0, (rc, prog.process.stderr)
    assert prog["@x"].df()["value"].tolist() == [42], prog.process.snapshot()
    assert prog.output == "hello\n", prog.process.snapshot()


def test_syntax_error_line_and_column() -> None:
    with pytest.raises(CompileError) as ei:
        bpftrace("BEGIN {\n  @x = count();\n  @y = count(;\n}")
    assert ei.value.diagnostics[0][:2] == (3, 8)
    assert "line 3, column 8" in str(ei.value)
    assert "@y = count(;" in str(ei.value)


def test_semantic_error_in_begin_line_maps_to_cell_column() -> None:
    with pytest.raises(CompileError) as ei:
        bpftrace("BEGIN { @y = foo(1); }")
    assert ei.value.diagnostics[0][:2] == (1, 14)
    assert "Unknown function: foo" in str(ei.value)
    assert "BEGIN { @y = foo(1); }\n             ~~~" in str(ei.value)


def test_unknown_tracepoint_suggests_close_names() -> None:
    with pytest.raises(UnknownTargetError) as ei:
        bpftrace("BEGIN { }\ntracepoint:syscalls:sys_enter_opnat { @ = count(); }")
    assert "syscalls:sys_enter_openat" in ei.value.matches
    assert "line 2" in str(ei.value)


def test_missing_bpftrace_is_named() -> None:
    with pytest.raises(FeatureUnavailableError, match="bpftrace is not installed"):
        bpftrace("BEGIN {}", binary="/nonexistent/bpftrace")


def _prog_ids_of(pid: int) -> set[int]:
    """BPF program ids process `pid` holds open (from /proc/PID/fdinfo)."""
    ids = set()
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            ids.update(int(ln.split()[1]) for ln in f if ln.startswith("prog_id:"))
    return ids


def test_stop_leaves_no_process_or_probe() -> None:
    prog = bpftrace(COUNTS)
    pid = prog.pid
    assert pid is not None
    mine = _prog_ids_of(pid)
    assert mine and mine <= set(bpfobjs.ids(bpfobjs.Kind.PROG))
    assert prog.attach_seconds > 0
    prog.close()
    assert not os.path.exists(f"/proc/{pid}")
    assert not mine & set(bpfobjs.ids(bpfobjs.Kind.PROG))   # other helpers' programs may come
    assert prog["@c"].df().attrs["source"] == "final dump"


def test_newer_release_json_shapes() -> None:
    """Shapes of bpftrace 0.18+ (from its src/output/json.cpp): counts in `count`,
    integers past 2**53 as strings, keyed hists, joined multi-keys."""
    assert parse_line('{"type":"attached_probes", "count":3}').number == 3
    assert parse_line('{"type": "attached_probes", "data": {"probes": 3}}').number == 3
    assert parse_line('{"type":"lost_events", "count":7}').number == 7
    hist = parse_line('{"type": "hist", "data": {"@": {"curl,3": [{"min": 256, "max": 511, '
                      '"count": 1},{"min": "18446744073709551615", "count": 2}]}}}')
    assert hist is not None
    df = hist_frame(hist.data["@"], 2, log2=True)
    assert df.to_dict("list") == {"key0": ["curl", "curl"], "key1": [3, 3],
                                  "low": [256, 2**63 - 1], "high": [511, 2**63 - 1],
                                  "count": [1, 2], "bucket": ["", "overflow"]}


def test_live_view_shows_current_kernel_counts() -> None:
    widgets = pytest.importorskip("bpfnb.live.widgets", reason="the live view needs ipywidgets")
    with bpftrace(COUNTS) as prog:
        view = prog["@m"].live(every=0.05)
        assert isinstance(view, widgets.LiveView)
        pid = workload.getpid(500, comm=COMM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            frame = view.frame()
            if len(frame) and frame["value"].tolist() == [500]:
                break
            time.sleep(0.05)
        view.stop()
    assert frame[["comm", "pid", "value"]].to_dict("list") == {
        "comm": [COMM], "pid": [pid], "value": [500]}


def test_same_name_replaces_and_stop_all() -> None:
    from bpfnb.bpftrace import programs, stop_all

    first = bpftrace("BEGIN { }", name="same")
    second = bpftrace("BEGIN { }", name="same")
    assert not first.running and second.running
    assert second in programs()
    assert stop_all() >= 1 and not second.running


def test_missing_uprobe_target_is_unknown_target() -> None:
    with pytest.raises(UnknownTargetError, match="line 2"):
        bpftrace("BEGIN { }\nuprobe:/nonexistent/bin:main { @ = count(); }")


def test_kprobe_where_the_kernel_has_none() -> None:
    if features.kprobes():
        pytest.skip("this kernel has kprobes: the refusal cannot be seen here")
    with pytest.raises(FeatureUnavailableError, match="kprobe:vfs_read") as ei:
        bpftrace("kprobe:vfs_read { @ = count(); }")
    assert features.kprobes().reason in str(ei.value)


def test_unprivileged_bpftrace_is_a_privilege_error(tmp_path: Path) -> None:
    """bpftrace run as user nobody (through a wrapper passed as the binary)."""
    wrapper = tmp_path / "bpftrace-as-nobody"
    wrapper.write_text("#!/bin/sh\nexec setpriv --reuid=65534 --regid=65534 --clear-groups "
                       f'{find_bpftrace()} "$@"\n')
    wrapper.chmod(0o755)
    with pytest.raises(PrivilegeError, match="bpftrace needs root"):
        bpftrace("BEGIN { }", binary=str(wrapper))


def test_stop_right_after_start_keeps_the_final_dump() -> None:
    """bpftrace 0.17 can miss a SIGINT sent just after attaching; stop() sends it again."""
    for _ in range(5):
        prog = bpftrace("BEGIN { @x = 7; }")
        assert prog.stop() == 0 and not prog.process.killed
        assert prog["@x"].df()["value"].tolist() == [7]


def test_record_then_replay_without_privileges() -> None:
    """The recorded run, replayed in a process running as user nobody (no bpftrace run)."""
    with bpftrace(COUNTS, name="rec") as prog:
        pid = workload.getpid(77, comm=COMM)
    record = json.dumps(prog.record())
    code = ("import json, sys; from bpfnb.bpftrace import BpftraceProgram; "
            "p = BpftraceProgram.replay(json.load(sys.stdin)); "
            "print(json.dumps([p['@m'].df().to_dict('list'), p['@m'].df().attrs['source'], "
            "p.stacks('@k').total, p.running]))")
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          sys.executable, "-c", code], input=record, capture_output=True,
                         text=True, cwd=Path(__file__).parent.parent, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"comm": [COMM], "pid": [pid], "value": [77]},
                                      "final dump", 77, False]


def test_replay_refuses_damaged_records() -> None:
    for bad in ({}, {"engine": "bpftrace", "format": 1, "script": 1}, [1],
                {"engine": "bpftrace", "format": 1, "script": "", "name": "x",
                 "messages": [{"type": 3}]}):
        with pytest.raises(ReplayError):
            BpftraceProgram.replay(bad)


# -- the %%bpftrace magic, notebook recordings, live views ---------------------------------

@pytest.fixture(scope="module")
def ip(shell):
    from bpfnb.jupyter import bpftrace_magic

    if "BpftraceMagics" not in shell.magics_manager.registry:
        bpftrace_magic.register(shell)
    yield shell
    bpftrace_magic.unregister(shell)


GETPIDS = (f'BEGIN {{ printf("arg %d\\n", $1); }}\n'
           f'tracepoint:syscalls:sys_enter_getpid /comm == "{COMM}"/ {{\n'
           '  @c[comm, pid] = count(); printf("getpid %d\\n", pid);\n}')


def test_magic_binds_name_shows_output_live_and_replaces(ip, capsys) -> None:
    result = ip.run_cell(f"%%bpftrace bt_magic -- 7\n{GETPIDS}")
    assert result.success, result.error_in_exec
    first = ip.user_ns["bt_magic"]
    assert isinstance(first, BpftraceProgram) and first.running and first.name == "bt_magic"
    pid = workload.getpid(3, comm=COMM)
    deadline = time.monotonic() + 5  # the output area is updated as lines arrive
    while capsys.readouterr().out.count(f"getpid {pid}") < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert first.output == "arg 7\n" + f"getpid {pid}\n" * 3
    assert ip.run_cell(f"%%bpftrace bt_magic --duration 0.5 -- 1\n{GETPIDS}").success
    second = ip.user_ns["bt_magic"]
    assert second is not first and not first.running  # re-running the cell replaces it
    assert second.wait(10) == 0 and second.output == "arg 1\n"
    assert first["@c"].df().to_dict("list") == {"comm": [COMM], "pid": [pid], "value": [3]}
    del ip.user_ns["bt_magic"]


def test_magic_errors_count_lines_from_the_magic_line(ip) -> None:
    result = ip.run_cell("%%bpftrace bt_bad\nBEGIN {\n  @x = count(;\n}")
    err = result.error_in_exec
    assert isinstance(err, CompileError) and err.diagnostics[0][:2] == (3, 8), err
    assert "line 3, column 8" in str(err) and "@x = count(;" in str(err)
    result = ip.run_cell("%%bpftrace bt_bad\nBEGIN { }\n\ntracepoint:syscalls:sys_enter_opnat {}")
    assert isinstance(result.error_in_exec, UnknownTargetError)
    assert "(line 4)" in str(result.error_in_exec)
    assert "sys_enter_openat" in str(result.error_in_exec)
    assert "bt_bad" not in ip.user_ns


def test_magic_refuses_names_of_other_values_and_bad_options(ip) -> None:
    from IPython.core.error import UsageError

    ip.user_ns["bt_taken"] = 5
    for line in ("bt_taken", "len", "_", "class", "bt_x --duration -1", "bt_x --duration nan",
                 "bt_x --fallback a --replay b"):
        with pytest.raises(UsageError):
            ip.run_cell_magic("bpftrace", line, "BEGIN { }")
    assert ip.user_ns["bt_taken"] == 5 and "bt_x" not in ip.user_ns
    del ip.user_ns["bt_taken"]


def _notebook(rec: Path) -> list[str]:
    return [f"%%bpftrace bt_nb --fallback {rec} -- 5\n{GETPIDS}\n"
            "tracepoint:syscalls:sys_enter_getpid /comm == \"" + COMM + "\"/ "
            "{ @h = hist(pid); }",
            f"%%recorded\npid = getpid(41, comm={COMM!r})\nbt_nb.stop()",
            "c = bt_nb['@c'].df()\nh = bt_nb['@h'].hist()\nout = bt_nb.output"]


def test_notebook_records_then_replays_without_bpf(ip, tmp_path, monkeypatch,
                                                   capsys) -> None:
    ip.user_ns["getpid"] = workload.getpid
    rec = tmp_path / "recordings" / "bt"
    monkeypatch.setenv("BPFNB_RECORD", "1")
    for cell in _notebook(rec):
        result = ip.run_cell(cell)
        assert result.success, (cell, result.error_in_exec)
    live = {k: ip.user_ns.pop(k) for k in ("pid", "c", "h", "out")}
    assert "recording to" in capsys.readouterr().out
    assert sorted(p.name for p in rec.iterdir()) == ["bt_nb.bpftrace.zip", "cells.zip"]
    assert live["c"]["value"].tolist() == [41] and live["h"]["count"].sum() == 41
    monkeypatch.delenv("BPFNB_RECORD")
    refused = features.Feature("bpf", False, "loading BPF programs needs CAP_BPF")
    monkeypatch.setattr(features, "can_load_bpf", lambda: refused)
    for cell in _notebook(rec):
        result = ip.run_cell(cell)
        assert result.success, (cell, result.error_in_exec)
    out = capsys.readouterr().out
    assert "needs CAP_BPF" in out and f"getpid {live['pid']}" in out  # its output, shown
    replayed = ip.user_ns["bt_nb"]
    assert isinstance(replayed, BpftraceProgram) and not replayed.running
    assert ip.user_ns["pid"] == live["pid"] and ip.user_ns["out"] == live["out"]
    for k in ("c", "h"):
        assert ip.user_ns[k].to_dict("list") == live[k].to_dict("list")
    for k in ("pid", "c", "h", "out", "bt_nb", "getpid"):
        ip.user_ns.pop(k)
    from bpfnb.jupyter.session import Mode

    session = ip.magics_manager.registry["BpftraceMagics"].session  # the notebook is done
    session.path, session.mode, session.reason = None, Mode.LIVE, None


def test_recording_file_refuses_damaged_and_oversized(tmp_path, monkeypatch) -> None:
    import zipfile

    from bpfnb.bpftrace import recordfile
    from bpfnb.data import safezip

    with bpftrace("BEGIN { @x = 7; @h = hist(5); exit(); }") as prog:
        prog.wait(10)
    path = recordfile.save(prog, tmp_path / "ok.bpftrace.zip")
    assert recordfile.load(path)["@x"].df()["value"].tolist() == [7]
    record = prog.record()
    bad_maps = [{"type": "map", "data": {"@x": [1, 2]}}, {"type": "hist", "data": {"@h": 3}},
                {"type": "hist", "data": {"@h": [{"min": "x"}]}}]
    for i, msg in enumerate(bad_maps):
        damaged = tmp_path / f"bad{i}.bpftrace.zip"
        with zipfile.ZipFile(damaged, "w") as zf:
            zf.writestr(recordfile.ENTRY, json.dumps({**record, "messages": [msg]}))
        with pytest.raises(ReplayError, match="record"):
            recordfile.load(damaged)
    (tmp_path / "junk.bpftrace.zip").write_bytes(b"not a zip")
    for name in ("junk.bpftrace.zip", "missing.bpftrace.zip"):
        with pytest.raises(ReplayError):
            recordfile.load(tmp_path / name)
    monkeypatch.setattr(safezip.LIMITS, "max_entry", 100)
    with pytest.raises(safezip.ZipLimitError):
        recordfile.load(path)


def test_live_view_of_a_hist_map_draws_the_histogram() -> None:
    pytest.importorskip("bpfnb.live.widgets", reason="the live view needs ipywidgets")
    script = (f'tracepoint:syscalls:sys_enter_getpid /comm == "{COMM}"/ '
              "{ @h = hist(pid); @c = count(); }")
    with bpftrace(script) as prog:
        pid = workload.getpid(200, comm=COMM)
        view = prog["@h"].live(every=0.05)
        bars = prog["@c"].live(every=0.05)
        try:
            assert (view.spec.kind, bars.spec.kind) == ("hist", "bars")
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                frame = view.frame()
                if len(frame) and frame["count"].tolist() == [200]:
                    break
                time.sleep(0.05)
        finally:
            view.stop()
            bars.stop()
    low = 1 << (pid.bit_length() - 1)
    assert frame[["low", "high", "count"]].to_dict("list") == {
        "low": [low], "high": [2 * low - 1], "count": [200]}


def test_bpf_ls_and_stop_cover_bpftrace_cells(ip) -> None:
    import bpfnb

    assert ip.run_cell("%%bpftrace bt_one\nBEGIN { @x = 1; }").success
    other = bpfnb.bpftrace("BEGIN { @y = 2; }", name="bt_by_hand")  # the package is callable
    listed = ip.run_line_magic("bpf", "ls")
    assert {"bt_one", "bt_by_hand"} <= set(listed["name"])
    one = ip.user_ns["bt_one"]
    ip.run_line_magic("bpf", "stop bt_one")
    assert not one.running and other.running and one["@x"].df()["value"].tolist() == [1]
    ip.run_line_magic("bpf", "stop --all")
    assert not other.running and other["@y"].df()["value"].tolist() == [2]
    del ip.user_ns["bt_one"]


def test_doctor_has_a_bpftrace_row() -> None:
    import bpfnb

    row = bpfnb.doctor().row("engines", "bpftrace")
    assert row.status == "ok" and row.detail == available().reason
    assert re.fullmatch(r"/\S+/bpftrace v0\.\d+\.\d+", row.detail)
