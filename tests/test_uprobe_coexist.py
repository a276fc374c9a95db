"""bpfnb and bpftrace probe the same user function at once, in either order (bcc issue 5236:
a uprobe perf event opened with a garbage ref_ctr_offset conflicts with every other one)."""

from __future__ import annotations

import re
import select
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import bpfnb
from bpfnb.doctor import skip_reason
from conftest import run_workload

pytestmark = pytest.mark.usefixtures("kernel")

COUNT = r"""
BPF_ARRAY(calls, u64, 1);
int on_doubled(void *ctx) { int z = 0; calls.increment(z); return 0; }
"""
VALUES = [3, 5, 7, 11]


@pytest.fixture(autouse=True)
def _uprobes() -> None:
    reason = skip_reason("uprobe")
    if reason:
        pytest.skip(reason)
    if shutil.which("bpftrace") is None:
        pytest.skip("bpftrace is not installed (apt-get install bpftrace)")


@contextmanager
def bpftrace_on(binary: Path) -> Iterator[dict[str, int]]:
    """bpftrace counting calls of binary:doubled; yields a dict filled with @n on exit."""
    script = (f'uprobe:{binary}:doubled {{ @n = count(); }} '
              'BEGIN { printf("ready\\n"); }')
    proc = subprocess.Popen(["bpftrace", "-e", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    result: dict[str, int] = {}
    try:
        assert proc.stdout is not None
        lines = []
        while True:
            ready, _, _ = select.select([proc.stdout], [], [], 20)
            line = proc.stdout.readline() if ready else ""
            lines.append(line)
            if line.strip() == "ready" or not line:
                break
        if lines[-1].strip() != "ready":
            proc.kill()
            err = proc.communicate()[1]
            pytest.fail(f"bpftrace could not attach: {''.join(lines)!r} {err[-800:]}")
        yield result
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
        found = re.search(r"@n: (\d+)", out)
        result["n"] = int(found.group(1)) if found else 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _bpfnb_on(binary: Path) -> bpfnb.Program:
    prog = bpfnb.load(COUNT, name="coexist", attach=False)
    prog.attach_uprobe(str(binary), "doubled", "on_doubled")
    return prog


def test_bpfnb_attaches_where_bpftrace_probes(workload):
    with bpftrace_on(workload) as theirs, _bpfnb_on(workload) as prog:
        run_workload(workload, "record", *VALUES)
        ours = int(prog["calls"].df()["value"][0])
    assert ours == len(VALUES)
    assert theirs["n"] == len(VALUES)


def test_bpftrace_attaches_where_bpfnb_probes(workload):
    with _bpfnb_on(workload) as prog, bpftrace_on(workload) as theirs:
        run_workload(workload, "record", *VALUES)
        ours = int(prog["calls"].df()["value"][0])
    assert ours == len(VALUES)
    assert theirs["n"] == len(VALUES)
