"""%%bpf cells in a real IPython shell: binding, re-running, ls, stop, unload, lifecycle."""

from __future__ import annotations

import gc

import pandas as pd
import pytest
from IPython.core.error import UsageError

import bpfnb
from conftest import COUNT_BY_PID as CELL
from conftest import resources, run_workload

pytestmark = pytest.mark.usefixtures("kernel")

@pytest.fixture(scope="module")
def ip(shell):
    yield shell
    shell.run_line_magic("unload_ext", "bpfnb")


def run(ip, line, cell=None):
    if cell is None:
        return ip.run_line_magic("bpf", line)
    return ip.run_cell_magic("bpf", line, cell)


def test_cell_binds_name_and_counts(ip, workload):
    run(ip, "counts", CELL)
    prog = ip.user_ns["counts"]
    assert isinstance(prog, bpfnb.Program) and prog.name == "counts"
    pid = run_workload(workload, "getpid", 321)
    df = ip.user_ns["counts"]["by_pid"].df()
    assert dict(zip(df.key, df.value))[pid] == 321
    run(ip, "stop counts")
    assert prog.closed


def test_rerun_replaces_previous_program(ip):
    run(ip, "again", CELL)
    first = ip.user_ns["again"]
    run(ip, "again", CELL)
    second = ip.user_ns["again"]
    assert first.closed and not second.closed
    names = [p.name for p in bpfnb.open_programs()]
    assert names.count("again") == 1
    run(ip, "stop again")


def test_ls_and_stop_all(ip, workload):
    run(ip, "one", CELL)
    run(ip, "two --no-attach", CELL)
    run_workload(workload, "getpid", 5)
    table = run(ip, "ls")
    assert isinstance(table, pd.DataFrame)
    rows = table.set_index("name")
    assert "tracepoint:syscalls:sys_enter_getpid" in rows.loc["one", "attached"]
    assert rows.loc["two", "attached"] == ""
    assert rows.loc["one", "maps"].startswith("by_pid (")
    run(ip, "stop --all")
    assert bpfnb.open_programs() == []
    assert ip.user_ns["one"].closed and ip.user_ns["two"].closed


@pytest.mark.parametrize("line, message", [
    ("", "needs a NAME"),
    ("1abc", "needs a NAME"),
    ("a b", "one NAME expected"),
    ("a --frobnicate", "unknown option --frobnicate"),
    ("a --usdt nonsense", "--usdt wants"),
])
def test_bad_cell_arguments_are_usage_errors(ip, line, message):
    with pytest.raises(UsageError, match=message):
        run(ip, line, CELL)


@pytest.mark.parametrize("line, message", [
    ("frob", "unknown command 'frob'"),
    ("stop", "stop NAME"),
    ("stop nosuch", "no program 'nosuch'"),
    ("ls extra", "no arguments"),
])
def test_bad_line_commands(ip, line, message):
    with pytest.raises(UsageError, match=message):
        run(ip, line)


def test_cflags_reach_the_compiler(ip, workload):
    cell = CELL.replace("by_pid.increment(pid);", "by_pid.increment(pid, STEP);")
    run(ip, "stepped -D STEP=3 --cflags='-DUNUSED=1'", cell)
    pid = run_workload(workload, "getpid", 10)
    df = ip.user_ns["stepped"]["by_pid"].df()
    assert dict(zip(df.key, df.value))[pid] == 30
    run(ip, "stop stepped")


def test_error_in_cell_shows_message_without_traceback(ip, capsys):
    result = ip.run_cell("%%bpf broken\nTRACEPOINT_PROBE(syscalls, sys_enter_getpid) { x }")
    assert isinstance(result.error_in_exec, bpfnb.CompileError)
    assert "broken" not in ip.user_ns or ip.user_ns["broken"].closed
    out = capsys.readouterr()
    text = out.out + out.err
    assert "CompileError" in text and "line 2" in text  # editor lines: %%bpf is line 1
    assert "Traceback" not in text


def test_lifecycle_returns_to_baseline(ip, workload):
    run(ip, "warm", CELL)  # first load opens libbcc's long-lived files
    run(ip, "stop warm")
    gc.collect()
    before = resources()
    for _ in range(3):
        run(ip, "cycle", CELL)
        ip.user_ns["cycle"]["by_pid"].df()
    src = "int on_sample(void *ctx) { return 0; }"
    run(ip, "sampler --no-attach", src)
    ip.user_ns["sampler"].attach_perf_event("on_sample", sample_freq=49)
    assert resources()[1] > before[1]
    run(ip, "stop --all")
    gc.collect()
    assert resources() == before


def test_unload_detaches_everything(ip):
    shell = ip
    shell.run_cell_magic("bpf", "tmp", CELL)
    prog = shell.user_ns["tmp"]
    other = bpfnb.load(CELL)
    shell.run_line_magic("unload_ext", "bpfnb")
    assert prog.closed and other.closed
    shell.run_line_magic("load_ext", "bpfnb")
