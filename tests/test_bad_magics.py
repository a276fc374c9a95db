"""Bad %%bpf / %bpf / %bpf_profile lines are UsageErrors that say what to do (issue 11):
unbalanced quotes, options without values, bad numbers, names that would shadow the
notebook's own, and recordings named anything."""

from __future__ import annotations

import pandas as pd
import pytest
from IPython.core.error import UsageError

import bpfnb
from conftest import COUNT_BY_PID as CELL
from conftest import run_workload

pytestmark = pytest.mark.usefixtures("kernel")


@pytest.fixture(scope="module")
def ip(shell):
    return shell


@pytest.fixture(scope="module")
def live(ip):
    ip.run_cell_magic("bpf", "badmag_live", CELL)
    yield ip.user_ns["badmag_live"]
    ip.run_line_magic("bpf", "stop badmag_live")


@pytest.mark.parametrize("magic, line, message", [
    ("bpf", '"', r"%bpf: cannot parse the arguments \(No closing quotation\); close the"),
    ("bpf_profile", '"', r"%bpf_profile: cannot parse the arguments \(No closing quotation"),
    ("bpf", "record badmag_live /tmp/x.zip --every 0", r"--every takes a number > 0, not '0'"),
    ("bpf", "record badmag_live /tmp/x.zip --every nan", r"--every takes a number > 0"),
    ("bpf", "record badmag_live /tmp/x.zip --every inf", r"--every takes a number > 0"),
    ("bpf", "record badmag_live /tmp/x.zip --count -1", r"--count takes a whole number > 0"),
    ("bpf", "record badmag_live /tmp/x.zip --count 1.5", r"--count takes a whole number"),
    ("bpf", "record badmag_live /tmp/x.zip --duration -2", r"--duration takes a number >= 0"),
    ("bpf_profile", "-- /nonexistent/cmd", r"no command '/nonexistent/cmd'"),
    ("bpf_profile", "-p", r"%bpf_profile -p needs a value"),
    ("bpf_profile", "-F", r"%bpf_profile -F needs a value"),
    ("bpf_profile", "-p 999999999", r"-p 999999999: no such process"),
    ("bpf_profile", "-p abc", r"-p takes a whole number > 0, not 'abc'"),
    ("bpf_profile", "-F 0", r"-F takes a whole number > 0"),
    ("bpf_profile", "-d -1", r"-d takes a number > 0"),
])
def test_bad_lines_are_usage_errors(ip, live, magic, line, message):
    with pytest.raises(UsageError, match=message):
        ip.run_line_magic(magic, line)
    assert [p.name for p in bpfnb.open_programs()] == ["badmag_live"]


def test_record_to_an_unwritable_place_is_a_bpfnb_error(ip, live):
    with pytest.raises(bpfnb.BpfnbError, match="cannot write in '/proc'"):
        ip.run_line_magic("bpf", "record badmag_live /proc/x.zip --count 1")


@pytest.mark.parametrize("line, message", [
    ("x --cflags", r"%%bpf --cflags needs a value"),
    ("x -D", r"%%bpf -D needs a value"),
    ("x --usdt", r"%%bpf --usdt needs a value"),
    ("x --cflags '-DA=\"'", r"%%bpf --cflags: cannot parse"),
    ("x '", r"%%bpf: cannot parse"),
    ("class", r"a Python identifier \(not a keyword\)"),
])
def test_bad_cell_lines_are_usage_errors(ip, line, message):
    with pytest.raises(UsageError, match=message):
        ip.run_cell_magic("bpf", line, CELL)
    assert "x" not in ip.user_ns


@pytest.mark.parametrize("name, why", [
    ("get_ipython", "is reserved by IPython"),
    ("In", "is reserved by IPython"),
    ("exit", "is reserved by IPython"),
    ("_", "is reserved by IPython"),
    ("_i3", "is reserved by IPython"),
    ("_12", "is reserved by IPython"),
    ("_oh", "is reserved by IPython"),
    ("print", "is a Python builtin"),
    ("len", "is a Python builtin"),
    ("pytest", "is already bound to a module"),
])
def test_names_that_would_shadow_are_refused(ip, name, why):
    ip.user_ns["pytest"] = pytest
    before, progs = ip.user_ns.get(name), bpfnb.open_programs()
    with pytest.raises(UsageError, match=f"'{name}' {why}; choose another NAME"):
        ip.run_cell_magic("bpf", name, CELL)
    assert ip.user_ns.get(name) is before
    assert bpfnb.open_programs() == progs
    assert isinstance(ip.run_line_magic("bpf", "ls"), pd.DataFrame)  # the magics still work


def test_name_of_a_program_can_be_reused(ip):
    ip.run_cell_magic("bpf", "_badmag_private", CELL)  # a leading _ alone is fine
    ip.run_line_magic("bpf", "stop _badmag_private")
    ip.run_cell_magic("bpf", "badmag_again", CELL)
    first = ip.user_ns["badmag_again"]
    ip.run_cell_magic("bpf", "badmag_again", CELL)
    assert first.closed and not ip.user_ns["badmag_again"].closed
    ip.run_line_magic("bpf", "stop badmag_again")


def test_replay_accepts_any_recording_file_name(ip, workload, tmp_path):
    path = tmp_path / "counts.bpfrec"
    ip.run_cell_magic("bpf", "badmag_rec", CELL)
    pid = run_workload(workload, "getpid", 31)
    ip.run_line_magic("bpf", f"record badmag_rec {path} --count 1 --every 0.05")
    ip.run_line_magic("bpf", "stop badmag_rec")
    ip.run_cell_magic("bpf", f"badmag_rep --replay {path}", CELL)
    df = ip.user_ns["badmag_rep"]["by_pid"].df()
    assert dict(zip(df.key, df.value))[pid] == 31
    ip.run_cell_magic("bpf", f"badmag_rep --fallback {path}", CELL)  # BPF loads here: live
    assert isinstance(ip.user_ns["badmag_rep"], bpfnb.Program)
    ip.run_line_magic("bpf", "stop badmag_rep")
    with pytest.raises(UsageError, match="one directory of recordings"):
        ip.run_line_magic("bpf", f"fallback {path}")
