"""Many "hosts" on one machine, for fleet tests and notebooks: a local ipyparallel cluster
whose engines each live in a UTS namespace of their own with their own hostname.

Engines on one machine share one kernel: a program on any of them sees every event on the
machine (each engine's workload is counted by every engine's program). The functions below
run on the engines (ipyparallel sends them by reference, so they live in the package).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import socket
import time
from typing import Any

from bpfnb._sys.libc import libc
from bpfnb.errors import BpfnbError
from bpfnb.machine.inventory import programs
from bpfnb.testing import workload

CLONE_NEWUTS = 0x04000000


def own_hostname(name: str) -> str:
    """On an engine: move into a new UTS namespace named `name` (needs CAP_SYS_ADMIN)."""
    if libc.unshare(CLONE_NEWUTS) != 0:
        err = ctypes.get_errno()
        raise BpfnbError(f"unshare(CLONE_NEWUTS) failed: {os.strerror(err)}; run the "
                         "engines as root")
    socket.sethostname(name)
    return socket.gethostname()


def getpid_workload(counts: dict[str, int], comm: str = workload.COMM) -> int:
    """On an engine: a child making counts[this hostname] getpid() calls; its pid."""
    return workload.getpid(counts[socket.gethostname()], comm=comm)


def engine_processes() -> tuple[int, ...]:
    """On an engine: its pid, its parent's and its children's (the nanny watching it)."""
    return (os.getpid(), os.getppid(), *_children(os.getpid()))


def holding() -> int:
    """On an engine: BPF programs held by this process (fds, links or perf events)."""
    me = os.getpid()
    return sum(me in list(p) for p in programs()["pids"])


class LocalCluster:
    """`n` local engines named prefix0..prefix{n-1}: start() gives the Client, stop() (or
    leaving a `with` block) stops the cluster and waits until every engine process is gone.

    >>> with LocalCluster(3, prefix="host-") as rc: fleet = bpfnb.fleet(rc)
    """

    def __init__(self, n: int = 3, prefix: str = "host-", timeout: float = 120.0) -> None:
        self.n, self.prefix, self.timeout = n, prefix, timeout
        self.cluster: Any = None
        self.pids: list[int] = []

    def start(self) -> Any:
        import ipyparallel as ipp

        self.cluster = ipp.Cluster(n=self.n, log_level=40)
        atexit.register(self.stop)     # a notebook that ends without stop() leaves nothing
        try:
            self.cluster.start_cluster_sync(n=self.n)
            rc = self.cluster.connect_client_sync()
            rc.wait_for_engines(self.n, timeout=self.timeout, interactive=False)
            found = rc[:].apply_sync(engine_processes)
            controller = getattr(self.cluster.controller, "pid", None)
            ours = {controller, *_children(controller)} if isinstance(controller, int) else set()
            self.pids = sorted({p for pair in found for p in pair} - {os.getpid()} | ours)
            for eid in rc.ids:
                rc[eid].apply_sync(own_hostname, f"{self.prefix}{eid}")
        except BaseException:
            self.stop()
            raise
        return rc

    def stop(self) -> None:
        """Stop the controller and engines; SIGKILL any engine still there after 20 s."""
        atexit.unregister(self.stop)
        # the nannies (children of the engines) may have started after start() looked
        self.pids = sorted({*self.pids, *(c for p in self.pids for c in _children(p))})
        if self.cluster is not None:
            with contextlib.suppress(OSError, RuntimeError, TimeoutError):
                self.cluster.stop_cluster_sync()
            self.cluster = None
        _reap(self.pids, time.monotonic() + 20)

    @property
    def alive(self) -> list[int]:
        """Engine, nanny and controller processes still running."""
        return [p for p in self.pids if _alive(p)]

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def local_cluster(n: int = 3, prefix: str = "host-", timeout: float = 120.0) -> LocalCluster:
    """A LocalCluster; use it as `with local_cluster(3) as rc:`."""
    return LocalCluster(n, prefix, timeout)


def _children(pid: int) -> list[int]:
    """Child processes of `pid` (the controller's schedulers)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except (FileNotFoundError, ValueError):
        return []


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
