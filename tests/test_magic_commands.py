"""The magics' options and commands beyond %%bpf NAME (issue 12 front end): `%bpf?` names
everything, --backend, --fleet, %bpf trace/probes, %bpf_offcpu, %%bpftrace in ls/stop."""

from __future__ import annotations

import re

import pytest
from IPython.core.error import UsageError
from test_trace import PRINTS as TRACE_PRINTS

import bpfnb
from bpfnb.bpftrace.health import available
from conftest import COUNT_BY_PID as CELL
from conftest import run_workload

PRINTS = TRACE_PRINTS.replace("WHO", "seen")  # "seen pid=PID" from the workload


@pytest.fixture(scope="module")
def ip(shell):
    """The shell with the extension loaded afresh (no session mode left by other tests)."""
    shell.run_line_magic("unload_ext", "bpfnb")
    shell.run_line_magic("load_ext", "bpfnb")
    return shell


@pytest.fixture()
def kernel_ip(ip, kernel):
    yield ip
    ip.run_line_magic("bpf", "stop --all")


def test_help_names_every_magic_option_and_command(ip) -> None:
    doc = ip.magics_manager.magics["line"]["bpf"].__doc__
    cell = doc[doc.index("::\n\n  %%bpf "):doc.index("::\n\n  %bpf ls")]  # %%bpf section
    for option in ("--cflags", "-D", "--no-attach", "--usdt", "--backend", "--fleet",
                   "--replay", "--fallback"):
        assert re.search(rf"^  {option}\b", cell, re.M), option
    for command in ("ls", "stop", "log", "record", "fallback", "trace", "probes"):
        assert f"%bpf {command}" in doc and f"Example: %bpf {command}" in doc, command
    for magic in ("%%recorded", "%bpf_profile", "%bpf_offcpu", "%bpf_doctor", "%%bpftrace"):
        assert f"  {magic}" in doc, magic
    assert "--duration SECONDS" in doc  # %%bpftrace's own section
    for example in ("%%bpf counts --backend=libbpf", "%%recorded\n", "Example: %bpf_profile",
                    "Example: %bpf_offcpu", "Example: %bpf_doctor", "%%bpftrace calls"):
        assert example in doc, example
    assert doc.count("Example") >= 12


@pytest.mark.parametrize("magic, line, message", [
    ("bpf", "trace", "name the program"),
    ("bpf", "trace nosuch", "no live program 'nosuch'"),
    ("bpf", "probes", r"%bpf probes PATTERN needs|required: PATTERN"),
    ("bpf_offcpu", "-p abc", r"-p takes a whole number > 0, not 'abc'"),
    ("bpf_offcpu", "--min-us 0", r"--min-us takes a whole number > 0"),
    ("bpf_offcpu", "-- /nonexistent/cmd", r"no command '/nonexistent/cmd'"),
    ("bpf_offcpu", "-d", r"%bpf_offcpu -d needs a value"),
    ("bpf_offcpu", "--frob", r"%bpf_offcpu: unknown option --frob"),
    ("bpf_doctor", "--frob", r"%bpf_doctor: unknown option --frob"),
])
def test_bad_lines(ip, magic, line, message) -> None:
    with pytest.raises(UsageError, match=message):
        ip.run_line_magic(magic, line)


@pytest.mark.parametrize("line, message", [
    ("x --backend=nope", r"invalid choice: 'nope'"),
    ("x --fleet", r"%%bpf --fleet needs a value"),
    ("x --fleet nothere", r"'nothere' holds nothing, not a bpfnb.fleet.Fleet"),
    ("x --fleet pytest", r"'pytest' holds a module, not a bpfnb.fleet.Fleet"),
    ("x --fleet f --fallback d", r"--fleet .* has no --fallback"),
    ("x --fleet f --no-attach", r"--fleet .* has no --no-attach"),
    ("x --fleet f --usdt /bin/sh:p:f", r"--fleet .* has no --usdt"),
    ("x --replay a --fallback b", r"--replay or --fallback, not both"),
])
def test_bad_cell_lines(ip, line, message) -> None:
    ip.user_ns["pytest"] = pytest
    with pytest.raises(UsageError, match=message):
        ip.run_cell_magic("bpf", line, CELL)
    assert "x" not in ip.user_ns


@pytest.mark.parametrize("backend", ["bcc", "libbpf"])
def test_backend_option_picks_the_engine_and_ls_shows_it(kernel_ip, workload, backend) -> None:
    try:
        kernel_ip.run_cell_magic("bpf", f"by_engine --backend={backend}", CELL)
    except bpfnb.FeatureUnavailableError as e:
        pytest.skip(str(e))
    prog = kernel_ip.user_ns["by_engine"]
    assert prog.backend == backend
    pid = run_workload(workload, "getpid", 17)
    df = prog["by_pid"].df()
    assert dict(zip(df.key, df.value))[pid] == 17
    row = kernel_ip.run_line_magic("bpf", "ls").set_index("name").loc["by_engine"]
    assert row["backend"] == backend and row["backend_reason"] == prog.backend_reason != ""


def test_trace_command_shows_the_programs_lines(kernel_ip, workload) -> None:
    kernel_ip.run_cell_magic("bpf", "printer --backend=bcc", PRINTS)
    pid = run_workload(workload, "getpid", 6)
    df = kernel_ip.run_line_magic("bpf", "trace --duration 0.5")  # the only program
    assert df[df.pid == pid].message.tolist() == [f"seen pid={pid}"] * 6
    pid = run_workload(workload, "getpid", 5)
    df = kernel_ip.run_line_magic("bpf", "trace printer --duration 5 --max-lines 3")
    assert df.message.tolist()[:3] == [f"seen pid={pid}"] * 3 and len(df) == 3


def test_probes_command(kernel_ip) -> None:
    df = kernel_ip.run_line_magic("bpf", "probes tracepoint:syscalls:sys_enter_getpid")
    assert df.equals(bpfnb.probes("tracepoint:syscalls:sys_enter_getpid"))
    assert len(df) == 1


def test_offcpu_magic_times_a_sleeping_command(kernel_ip) -> None:
    st = kernel_ip.run_line_magic("bpf_offcpu", "-d 10 --min-us 1000 -- sleep 0.4")
    assert isinstance(st, bpfnb.Stacks)
    df = st.df()
    slept = df[df["comm"] == "sleep"]["count"].sum()
    assert 350_000 <= slept <= 1_000_000  # microseconds blocked: ~0.4 s


def test_bpftrace_programs_in_ls_stop_and_unload(kernel_ip) -> None:
    feat = available()
    if not feat:
        pytest.skip(str(feat))
    script = "tracepoint:syscalls:sys_enter_getpid { @calls[pid] = count(); }"
    kernel_ip.run_cell_magic("bpftrace", "bt_magic", script)
    prog = kernel_ip.user_ns["bt_magic"]
    table = kernel_ip.run_line_magic("bpf", "ls").set_index("name")
    assert table.loc["bt_magic", "backend"] == "bpftrace"
    kernel_ip.run_line_magic("bpf", "stop bt_magic")
    assert not prog.running and "bt_magic" not in kernel_ip.run_line_magic("bpf", "ls").name.values
    kernel_ip.run_cell_magic("bpftrace", "bt_magic2", script)
    prog = kernel_ip.user_ns["bt_magic2"]
    kernel_ip.run_line_magic("bpf", "stop --all")
    assert not prog.running and bpfnb.bpftrace.programs() == []


def test_fleet_option_loads_on_every_host_and_stop_closes(kernel_ip, workload) -> None:
    pytest.importorskip("ipyparallel", reason="pip install 'bpfnb[test]' (ipyparallel)")
    from bpfnb.testing import hosts

    with hosts.local_cluster(2, prefix="magic-host-") as rc:
        kernel_ip.user_ns["magic_fleet"] = bpfnb.fleet(rc, timeout=30)
        kernel_ip.run_cell_magic("bpf", "on_fleet --fleet magic_fleet --backend=bcc", CELL)
        fp = kernel_ip.user_ns["on_fleet"]
        assert fp.name == "on_fleet" and sorted(fp.live_hosts) == ["magic-host-0",
                                                                   "magic-host-1"]
        pid = run_workload(workload, "getpid", 9)
        df = fp["by_pid"].df()
        assert df[df.key == pid]["value"].tolist() == [9, 9]  # one kernel, two hosts
        row = kernel_ip.run_line_magic("bpf", "ls").set_index("name").loc["on_fleet"]
        assert row["backend"].startswith("fleet/")
        kernel_ip.run_line_magic("bpf", "stop on_fleet")
        assert fp.closed
        kernel_ip.run_cell_magic("bpf", "on_fleet2 --fleet magic_fleet", CELL)
        fp = kernel_ip.user_ns["on_fleet2"]
        kernel_ip.run_line_magic("unload_ext", "bpfnb")
        kernel_ip.run_line_magic("load_ext", "bpfnb")
        assert fp.closed
