"""Run All of a workshop notebook as a student would, with a CPU hog beside it, then check
that nothing of the notebook is left running (shared by the live notebook tests).

After the notebook's last cell (its cleanup cell) the same kernel checks: no BPF program it
held during the run still exists (bpfnb's inventory), `bpfnb.open_programs()` is empty, no
live poller thread runs, no child process is alive (but the kit's spare clang, waiting for
the next compile), and the kernel is idle (its CPU time, and its spare clang's, grow less
than IDLE_CPU_S over 2 s).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
# the map-type notebooks (test_maptypes_notebooks.py: cgroups, namespaces and veths cleaned up)
MAP_NOTEBOOKS = ["02-map-helpers.ipynb", "03-events.ipynb", "07-lpm-trie.ipynb",
                 "08-prog-array.ipynb", "09-maps-of-maps.ipynb", "10-queue-stack.ipynb",
                 "11-stack-trace-raw.ipynb", "15-cgroup-maps.ipynb", "16-xdp-maps.ipynb",
                 "17-socket-maps.ipynb"]
ALL = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
HOG = [sys.executable, "-c", "while True: pass"]
IDLE_CPU_S = 0.05      # of 2 s: a live view left refreshing costs far more
DONE = "nothing left running"

# first: after every cell, note the BPF programs this kernel holds (its fds' prog_id)
WATCH_CELL = """\
import os as _os
_bpfnb_seen = set()
def _bpfnb_note_programs(*_):
    for fd in _os.listdir("/proc/self/fdinfo"):
        try:
            with open(f"/proc/self/fdinfo/{fd}") as f:
                _bpfnb_seen.update(int(l.split()[1]) for l in f if l.startswith("prog_id:"))
        except OSError:
            pass
get_ipython().events.register("post_run_cell", _bpfnb_note_programs)
"""

CHECK_CELL = f"""\
import os, threading, time
import bpfnb
from bpfnb.backends.libbpf import spare
from bpfnb.live import poller
_bpfnb_note_programs()
deadline = time.monotonic() + 3     # the kernel frees some programs after an RCU grace period
while True:
    progs = bpfnb.programs()
    left = progs[progs["id"].isin(_bpfnb_seen)]
    if left.empty or time.monotonic() > deadline:
        break
    time.sleep(0.1)
assert left.empty, f"programs of the notebook still loaded: {{left[['id', 'name', 'pids']]}}"
assert not bpfnb.open_programs(), bpfnb.open_programs()
assert not poller.running(), [p.name for p in poller.running()]
threads = [t.name for t in threading.enumerate() if t.name.startswith("bpfnb")]
assert not threads, threads
def children():
    # live child processes: pid -> command line (the kit's spare clang, waiting for the
    # next compile on its stdin, is no work left running)
    pids = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{{task}}/children") as f:
            pids += f.read().split()
    out = {{}}
    for pid in pids:
        try:
            with open(f"/proc/{{pid}}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            with open(f"/proc/{{pid}}/cmdline", "rb") as f:
                out[int(pid)] = f.read().replace(b"\\0", b" ").decode()[:200]
        except OSError:
            pass
    out.pop(spare.waiting(), None)
    return out
def cpu_s(pids):
    # CPU time of this kernel and of `pids`
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{{pid}}/stat") as f:
                ticks += sum(int(x) for x in f.read().rsplit(")", 1)[1].split()[11:13])
        except OSError:
            pass
    return time.process_time() + ticks / os.sysconf("SC_CLK_TCK")
left_running = children()
assert not left_running, f"child processes still running: {{left_running}}"
pids = [p for p in (spare.waiting(),) if p]
t0 = cpu_s(pids)
time.sleep(2)
used = cpu_s(pids) - t0
assert used < {IDLE_CPU_S}, f"the kernel used {{used:.3f}} s of CPU in 2 s after the notebook"
print("{DONE}", len(_bpfnb_seen), "programs seen")
"""


@pytest.fixture(scope="module")
def cpu_hog() -> Iterator[subprocess.Popen[bytes]]:
    """A busy loop at nice 0 beside the notebooks (as on a shared 2-core workshop VM)."""
    proc = subprocess.Popen(HOG)
    yield proc
    proc.kill()
    proc.wait()


def run_all(name: str, timeout: int) -> nbformat.NotebookNode:
    """Execute notebooks/NAME live, between the watch cell and the check cell."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(WATCH_CELL))
    nb.cells.append(nbformat.v4.new_code_cell(CHECK_CELL))
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


def check_clean(nb: nbformat.NotebookNode) -> None:
    """The notebook ran without errors and its cleanup left nothing running."""
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, "\n".join("\n".join(o.get("traceback", [])) for o in errors)
    last = nb.cells[-2]
    assert last.cell_type == "code" and ("cleanup" in last.metadata.get("tags", [])
                                         or "%bpf stop --all" in last.source), \
        "the notebook does not end with its cleanup cell (%bpf stop --all, tag cleanup)"
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert DONE in printed, printed
