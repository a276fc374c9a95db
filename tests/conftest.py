"""Shared fixtures: the workload binary, feature-based skips, resource counting."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import bpfnb
from bpfnb._sys import features, mapfeatures
from bpfnb._sys.cgroupfs import Cgroup

HERE = Path(__file__).parent
WORKLOAD_SRC = HERE / "workload" / "workload.c"
BIN_DIR = HERE / "workload" / "bin"


def build(src: Path, name: str, *flags: str) -> Path:
    """Compile a test C program once (rebuilt when the source changes)."""
    BIN_DIR.mkdir(exist_ok=True)
    out = BIN_DIR / name
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        subprocess.run(["gcc", "-O1", "-g", "-fno-omit-frame-pointer", *flags, "-o", str(out),
                        str(src)], check=True)
    return out


@pytest.fixture(scope="session")
def workload() -> Path:
    return build(WORKLOAD_SRC, "workload")


def run_workload(binary: Path, *args: object, cpu: int | None = None) -> int:
    """Run the workload to completion; return its pid."""
    cmd = [str(binary), *map(str, args)]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    proc = subprocess.Popen(cmd)
    assert proc.wait(timeout=60) == 0
    return proc.pid


@contextlib.contextmanager
def on_both_backends(source: str, name: str, binary: Path, symbol: str, fn: str,
                     *values: int) -> Iterator[dict[str, Any]]:
    """`source` loaded with backend auto (libbpf where it runs) and with bcc, `fn` a uprobe
    on `symbol` of the workload `binary` in both, then `binary record *values` run:
    {"auto": program, "bcc": program}."""
    with bpfnb.load(source, name=name) as auto, \
            bpfnb.load(source, name=name, backend="bcc") as bcc:
        for prog in (auto, bcc):
            prog.attach_uprobe(str(binary), symbol, fn)
        run_workload(binary, "record", *values)
        yield {"auto": auto, "bcc": bcc}


def require(feature: features.Feature) -> None:
    """Skip with the kit's own reason when a feature is missing."""
    if not feature:
        pytest.skip(str(feature))


@pytest.fixture(scope="session")
def kernel() -> None:
    """Tests that load BPF: `pytestmark = pytest.mark.usefixtures("kernel")`."""
    require(features.can_load_bpf())
    require(features.can_trace())


@pytest.fixture
def cgroup(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh cgroup v2 named for the test module and this process, removed after."""
    require(mapfeatures.cgroup2())
    module = request.module.__name__.removeprefix("test_").replace("_", "-")
    cg = Cgroup(f"bpfnb-{module}-{os.getpid()}")
    try:
        yield cg
    finally:
        cg.remove()


@pytest.fixture(scope="module")
def plain_shell() -> Any:
    """The process's IPython shell (the singleton start_ipython() uses) without a history
    thread, the extension not loaded: for tests that count threads."""
    from IPython.terminal.interactiveshell import TerminalInteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    return TerminalInteractiveShell.instance(config=config)


COUNT_BY_PID = """
BPF_HASH(by_pid, u32, u64);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    by_pid.increment(pid);
    return 0;
}
"""


@pytest.fixture(scope="module")
def shell():
    """An IPython shell with the extension loaded (one per process, shared)."""
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    ip = start_ipython() or get_ipython()
    ip.run_line_magic("load_ext", "bpfnb")
    return ip


def open_fds() -> list[str]:
    """This process's fds with what they point at."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            out.append(f"{fd}:{os.readlink(f'/proc/self/fd/{fd}')}")
    return sorted(out)


def bpf_fd_count() -> int:
    """BPF objects (programs, maps, links, BTF) and perf events this process holds; files
    that merely have "bpf" in their path (the kit's caches under /var/cache/bpfnb) are not."""
    return sum(target.startswith("anon_inode:") and ("bpf" in target or "perf_event" in target)
               for target in (f.split(":", 1)[1] for f in open_fds()))


def resources() -> tuple[int, int, int]:
    return len(open_fds()), bpf_fd_count(), threading.active_count()
