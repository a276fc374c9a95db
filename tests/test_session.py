"""Notebook recordings in a real IPython shell: a notebook recorded live (BPFNB_RECORD=1)
replays cell by cell where BPF cannot load, with the same answers."""

from __future__ import annotations

import pytest

import bpfnb
from bpfnb._sys import features
from conftest import COUNT_BY_PID, resources, run_workload

pytestmark = pytest.mark.usefixtures("kernel")

N = 321


def notebook(path) -> list[str]:
    """The cells of a small notebook (sources as a user would write them)."""
    return [
        f"%%bpf nb_counts --fallback {path}\n{COUNT_BY_PID}",
        "%%recorded\npid = run_workload(workload, 'getpid', N)\nprint('workload pid', pid)",
        "before = nb_counts['by_pid'].df()\nn = int(dict(zip(before.key, before.value))[pid])",
        "%%recorded\npid2 = run_workload(workload, 'getpid', 2 * N)\nf'{pid2} done'",
        "after = nb_counts['by_pid'].df()\nm = int(dict(zip(after.key, after.value))[pid2])",
        "%bpf stop nb_counts",
    ]


def run(ip, cells: list[str]) -> None:
    for cell in cells:
        result = ip.run_cell(cell)
        assert result.success, (cell, result.error_in_exec or result.error_before_exec)


@pytest.fixture()
def ns(ip, workload):
    ip.user_ns.update(run_workload=run_workload, workload=workload, N=N)
    yield ip.user_ns
    for name in ("pid", "pid2", "before", "after", "n", "m", "nb_counts"):
        ip.user_ns.pop(name, None)


@pytest.fixture(scope="module")
def ip(shell):
    return shell


def test_recorded_notebook_replays_cell_by_cell(ip, ns, tmp_path, monkeypatch, capsys):
    rec = tmp_path / "recordings" / "nb"
    start = resources()
    monkeypatch.setenv("BPFNB_RECORD", "1")
    run(ip, notebook(rec))
    live = {k: ns[k] for k in ("pid", "pid2", "n", "m")}
    assert live["n"] == N and live["m"] == 2 * N
    assert "recording to" in capsys.readouterr().out
    assert sorted(p.name for p in rec.iterdir()) == ["cells.zip", "nb_counts.zip"]
    assert resources()[1:] == start[1:]  # bpf fds and threads (the timed snapshots) back

    monkeypatch.delenv("BPFNB_RECORD")
    refused = features.Feature("bpf", False, "loading BPF programs needs CAP_BPF")
    monkeypatch.setattr(features, "can_load_bpf", lambda: refused)
    for name in live:
        ns.pop(name)
    run(ip, notebook(rec))
    out = capsys.readouterr().out
    assert "needs CAP_BPF" in out and "recorded output" in out
    assert f"workload pid {live['pid']}" in out      # the recorded cell's output, shown again
    assert {k: ns[k] for k in live} == live         # same pids, and each cell saw its snapshot
    assert isinstance(ns["nb_counts"], bpfnb.ReplayProgram) and ns["nb_counts"].closed


def test_comment_edits_still_replay(ip, ns, tmp_path, monkeypatch):
    """A student's comments and blank lines do not change what a cell replays: its recorded
    cell and its map snapshot are found by its code."""
    rec = tmp_path / "nb"
    monkeypatch.setenv("BPFNB_RECORD", "1")
    run(ip, notebook(rec))
    live = {k: ns[k] for k in ("pid", "pid2", "n", "m")}
    monkeypatch.delenv("BPFNB_RECORD")
    refused = features.Feature("bpf", False, "loading BPF programs needs CAP_BPF")
    monkeypatch.setattr(features, "can_load_bpf", lambda: refused)
    for name in live:
        ns.pop(name)
    cells = notebook(rec)
    cells[1] = cells[1].replace("\npid = ", "\n# my note: run it\n\npid = ") + "  # shown"
    cells[2] = "# read the map after the first run\n" + cells[2].replace("\n", "  # n\n\n")
    run(ip, cells)
    assert {k: ns[k] for k in live} == live
    result = ip.run_cell(cells[1].replace("'getpid', N", "'getpid', N + 1"))
    assert isinstance(result.error_in_exec, bpfnb.ReplayError)
    assert str(result.error_in_exec).startswith("This %%recorded cell's code is not in the")


def test_code_only_drops_comments_not_strings():
    from bpfnb.jupyter.session import cell_key, code_only

    assert code_only("x = '# not a comment'  # a comment\n\n  \ny = 2   ") == \
        "x = '# not a comment'\ny = 2"
    assert code_only('!ls -l  # shell\n# note\nx = """open') == '!ls -l  # shell\nx = """open'
    assert cell_key("a = 1\n# b\n") == cell_key("a = 1  # b") != cell_key("a = 2")


def test_unrecorded_cell_says_why(ip, ns, tmp_path, monkeypatch):
    rec = tmp_path / "nb"
    monkeypatch.setenv("BPFNB_RECORD", "1")
    run(ip, [*notebook(rec)[:2], "%bpf stop nb_counts"])
    monkeypatch.delenv("BPFNB_RECORD")
    refused = features.Feature("bpf", False, "loading BPF programs needs CAP_BPF")
    monkeypatch.setattr(features, "can_load_bpf", lambda: refused)
    result = ip.run_cell(f"%bpf fallback {rec}")
    assert result.success
    result = ip.run_cell("%%recorded\nprint('edited')")
    assert isinstance(result.error_in_exec, bpfnb.ReplayError)
    assert "not in the recording" in str(result.error_in_exec)
    assert "Undo the edit" in str(result.error_in_exec)


def test_replay_without_recordings_says_what_to_do(ip, tmp_path, monkeypatch):
    refused = features.Feature("bpf", False, "loading BPF programs needs CAP_BPF")
    monkeypatch.setattr(features, "can_load_bpf", lambda: refused)
    result = ip.run_cell(f"%%bpf gone --fallback {tmp_path / 'none'}\n{COUNT_BY_PID}")
    assert isinstance(result.error_in_exec, bpfnb.ReplayError)
    assert "make recordings" in str(result.error_in_exec)


def test_live_notebook_writes_nothing(ip, ns, tmp_path, monkeypatch):
    monkeypatch.delenv("BPFNB_RECORD", raising=False)
    rec = tmp_path / "nb"
    run(ip, notebook(rec))
    assert ns["n"] == N and not rec.exists()


def test_recorded_outputs_replay_as_shown(ip, tmp_path, monkeypatch, capsys):
    rec = tmp_path / "nb"
    cells = [f"%bpf fallback {rec}",
             "%%recorded\nfrom IPython.display import display\n"
             "h = display('first', display_id=True)\nh.update('second')\nprint('once')\n"
             "41 + 1;  # a trailing semicolon hides the value"]
    monkeypatch.setenv("BPFNB_RECORD", "1")
    run(ip, cells)
    live = capsys.readouterr().out
    assert live.count("once") == 1 and "42" not in live.replace(str(tmp_path), "")
    monkeypatch.delenv("BPFNB_RECORD")
    refused = features.Feature("bpf", False, "loading BPF programs needs CAP_BPF")
    monkeypatch.setattr(features, "can_load_bpf", lambda: refused)
    run(ip, cells)
    out = capsys.readouterr().out
    assert out.count("once") == 1 and "'second'" in out
    assert "'first'" not in out and "42" not in out.replace(str(tmp_path), "")
