"""Crash safety: a process killed with SIGKILL while its programs are attached leaves nothing.

A child Python process loads a bpfnb program with a tracepoint, a uprobe on the workload's
record() and a perf event, says "ready" and is killed. The kernel must then hold none of its
programs, and tracefs none of its probes. bcc on this kernel makes uprobes with
perf_event_open (the uprobe PMU), so nothing lands in tracefs at all; on kernels without the
PMU bcc falls back to tracefs events named `..._bcc_<pid>`, which a SIGKILL leaves behind.
The second test makes such an event the way that fallback does and checks that the doctor
reports it and `cleanup_stale_probes()` removes it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bpfnb._sys import bpfobjs, features
from bpfnb.doctor import cleanup_stale_probes, doctor, stale_probes
from bpfnb.machine.inventory import programs

pytestmark = pytest.mark.usefixtures("kernel")
ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import os, sys, time
import bpfnb

SOURCE = '''
#include <uapi/linux/ptrace.h>
#include <linux/bpf_perf_event.h>
BPF_HASH(seen, u32, u64);
TRACEPOINT_PROBE(sched, sched_process_exec) { u32 k = 0; seen.increment(k); return 0; }
int on_record(struct pt_regs *ctx) { u32 k = 1; seen.increment(k); return 0; }
int on_tick(struct bpf_perf_event_data *ctx) { u32 k = 2; seen.increment(k); return 0; }
'''
prog = bpfnb.load(SOURCE, name="crashme")
prog.attach_uprobe(sys.argv[1], "record", "on_record")
prog.attach_perf_event("on_tick", sample_freq=99)
if len(sys.argv) > 3:  # make a tracefs uprobe as bcc's fallback does: named for this pid
    fd = os.open(sys.argv[2] + "/uprobe_events", os.O_WRONLY | os.O_APPEND)
    os.write(fd, (sys.argv[3].replace("PID", str(os.getpid())) + "\n").encode())
    os.close(fd)
print("ready", flush=True)
time.sleep(600)
"""


def prog_ids() -> set[int]:
    return set(bpfobjs.ids(bpfobjs.Kind.PROG))


def tracefs_lines(pid: int) -> list[str]:
    """Lines of uprobe_events/kprobe_events naming a probe bcc made for `pid`."""
    root = features.tracefs()
    assert root is not None
    out = []
    for name in ("uprobe_events", "kprobe_events"):
        path = Path(root, name)
        if path.exists():
            out += [ln for ln in path.read_text().splitlines()
                    if re.search(rf"_bcc_{pid}\s", ln)]
    return out


def child_programs(pid: int) -> list[int]:
    df = programs()
    return [int(i) for i, pids in zip(df["id"], df["pids"]) if pid in pids]


def symbol_offset(binary: Path, symbol: str) -> int:
    out = subprocess.run(["nm", str(binary)], capture_output=True, text=True, check=True).stdout
    return next(int(ln.split()[0], 16) for ln in out.splitlines() if ln.endswith(f" {symbol}"))


@pytest.fixture
def spawn(workload: Path) -> Iterator[object]:
    """Start the child (with extra args); yields a starter; kills leftovers at the end."""
    procs: list[subprocess.Popen[str]] = []

    def start(*extra: str) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(workload), *extra],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", proc.stderr.read() if proc.stderr else line
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def kill_and_wait(proc: subprocess.Popen[str], ids: list[int]) -> float:
    """SIGKILL, reap, then wait (briefly) for the kernel to free the programs."""
    start = time.monotonic()
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    deadline = time.monotonic() + 5
    while set(ids) & prog_ids() and time.monotonic() < deadline:
        time.sleep(0.02)
    return time.monotonic() - start


def test_sigkill_leaves_nothing_loaded_or_attached(spawn, workload):
    before = prog_ids()
    proc = spawn()
    ids = child_programs(proc.pid)
    assert len(ids) >= 3, ids  # tracepoint, uprobe and perf-event programs
    kill_and_wait(proc, ids)
    left = prog_ids()
    assert not set(ids) & left, f"programs of the killed process still loaded: {set(ids) & left}"
    assert not (left - before) & set(ids)
    assert tracefs_lines(proc.pid) == [], "this kernel's bcc left tracefs probes behind"
    assert not [p for p in stale_probes() if p.endswith(f"_bcc_{proc.pid}")]


def test_stale_tracefs_probe_reported_and_cleaned(spawn, workload):
    root = features.tracefs()
    if root is None or not os.path.exists(f"{root}/uprobe_events"):
        pytest.skip(str(features.uprobes()))
    offset = symbol_offset(workload, "record")
    # bcc's fallback names events p_<path with non-alnum as _>_0x<offset>_bcc_<pid>
    mangled = re.sub(r"[^A-Za-z0-9_]", "_", str(workload))
    spec = f"p:uprobes/p_{mangled}_0x{offset:x}_bcc_PID {workload}:0x{offset:x}"
    proc = spawn(root, spec)
    pid = proc.pid
    assert tracefs_lines(pid), "the simulated fallback probe was not created"
    assert f"uprobes/p_{mangled}_0x{offset:x}_bcc_{pid}" not in stale_probes()  # alive
    kill_and_wait(proc, child_programs(pid))
    stale = stale_probes()
    ours = [p for p in stale if p.endswith(f"_bcc_{pid}")]
    assert ours == [f"uprobes/p_{mangled}_0x{offset:x}_bcc_{pid}"]
    row = doctor().row("tracefs", "stale probes")
    assert row.status == "warn" and "cleanup_stale_probes" in row.fix
    assert cleanup_stale_probes() >= 1
    assert tracefs_lines(pid) == []
    assert stale_probes() == []
    assert doctor().row("tracefs", "stale probes").status == "ok"
