"""Many "hosts" on one machine, for fleet tests and notebooks: a local ipyparallel cluster
whose engines each live in a UTS namespace of their own with their own hostname.

Engines on one machine share one kernel: a program on any of them sees every event on the
machine (each engine's workload is counted by every engine's program). The functions below
run on the engines (ipyparallel sends them by reference, so they live in the package).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

from bpfnb.errors import BpfnbError
from bpfnb.machine.inventory import programs
from bpfnb.testing import workload

CLONE_NEWUTS = 0x04000000


def own_hostname(name: str) -> str:
    """On an engine: move into a new UTS namespace named `name` (needs CAP_SYS_ADMIN)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWUTS) != 0:
        err = ctypes.get_errno()
        raise BpfnbError(f"unshare(CLONE_NEWUTS) failed: {os.strerror(err)}; run the "
                         "engines as root")
    socket.sethostname(name)
    return socket.gethostname()


def getpid_workload(counts: dict[str, int], comm: str = workload.COMM) -> int:
    """On an engine: a child making counts[this hostname] getpid() calls; its pid."""
    return workload.getpid(counts[socket.gethostname()], comm=comm)


def holding() -> int:
    """On an engine: BPF programs held by this process (fds, links or perf events)."""
    me = os.getpid()
    return sum(me in list(p) for p in programs()["pids"])


@contextlib.contextmanager
def local_cluster(n: int = 3, prefix: str = "host-", timeout: float = 120.0
                  ) -> Iterator[Any]:
    """A Client of `n` local engines named prefix0..prefix{n-1}; stopped (every engine
    process gone) on exit."""
    import ipyparallel as ipp

    cluster = ipp.Cluster(n=n, log_level=40)
    pids: list[int] = []
    try:
        rc = cluster.start_and_connect_sync()
        rc.wait_for_engines(n, timeout=timeout)
        for eid in rc.ids:
            rc[eid].apply_sync(own_hostname, f"{prefix}{eid}")
        pids = list(rc[:].apply_sync(os.getpid))
        yield rc
    finally:
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            cluster.stop_cluster_sync()
        _reap(pids, time.monotonic() + 20)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _reap(pids: list[int], deadline: float) -> None:
    """Wait for the engines to exit; SIGKILL those that outlive the deadline."""
    for pid in pids:
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
