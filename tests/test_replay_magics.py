"""%bpf record, %%bpf --replay and --fallback in a real IPython shell."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

import bpfnb
from bpfnb._sys import features
from conftest import COUNT_BY_PID as CELL
from conftest import run_workload

pytestmark = pytest.mark.usefixtures("kernel")

@pytest.fixture(scope="module")
def ip(shell):
    return shell


@pytest.fixture(scope="module")
def recording(ip, workload, tmp_path_factory):
    path = tmp_path_factory.mktemp("rec") / "counts.zip"
    ip.run_cell_magic("bpf", "rec_live", CELL)
    pid = run_workload(workload, "getpid", 77)
    rec = ip.run_line_magic("bpf", f"record rec_live {path} --count 3 --every 0.05")
    final = ip.user_ns["rec_live"]["by_pid"].df()
    ip.run_line_magic("bpf", "stop rec_live")
    assert rec.snapshots == 3
    return path, pid, final


def test_replay_cell_binds_the_recording(ip, recording):
    path, pid, final = recording
    ip.run_cell_magic("bpf", f"again --replay {path}", CELL)
    prog = ip.user_ns["again"]
    assert isinstance(prog, bpfnb.ReplayProgram)
    df = prog["by_pid"].df()
    assert dict(zip(df.key, df.value))[pid] == 77
    assert sorted(df.columns) == sorted(final.columns)
    ip.run_line_magic("bpf", "stop again")
    assert prog.closed


def test_fallback_loads_live_where_bpf_can(ip, recording, capsys):
    path, _, _ = recording
    ip.run_cell_magic("bpf", f"fb --fallback {path}", CELL)
    assert isinstance(ip.user_ns["fb"], bpfnb.Program)
    assert "live: BPF loads here" in capsys.readouterr().out
    ip.run_line_magic("bpf", "stop fb")


def test_fallback_replays_with_the_kits_reason(ip, recording, monkeypatch, capsys):
    path, pid, _ = recording
    refused = features.Feature("bpf", False, "loading BPF programs needs CAP_BPF")
    monkeypatch.setattr(features, "can_load_bpf", lambda: refused)
    ip.run_cell_magic("bpf", f"fb2 --fallback {path}", CELL)
    prog = ip.user_ns["fb2"]
    assert isinstance(prog, bpfnb.ReplayProgram)
    out = capsys.readouterr().out
    assert "replaying counts.zip" in out and "needs CAP_BPF" in out
    assert dict(zip(prog["by_pid"].df().key, prog["by_pid"].df().value))[pid] == 77


@pytest.mark.parametrize("line, message", [
    ("x --replay", "--replay needs a PATH"),
    ("x --fallback", "--fallback needs a PATH"),
])
def test_bad_replay_arguments(ip, line, message):
    with pytest.raises(UsageError, match=message):
        ip.run_cell_magic("bpf", line, CELL)


def test_record_usage_errors(ip):
    with pytest.raises(UsageError, match="no live program"):
        ip.run_line_magic("bpf", "record nosuch /tmp/x.zip")
    with pytest.raises(UsageError, match="record NAME PATH"):
        ip.run_line_magic("bpf", "record onlyname")
