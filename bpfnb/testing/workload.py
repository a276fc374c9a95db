"""Workloads with known answers for notebooks: a process that makes exactly N getpid()
calls under a name programs can filter on (no compiler needed)."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from typing import Any

from bpfnb._sys.libc import libc
from bpfnb.errors import BpfnbError

COMM = "bpfnb-nb"
_CODE = """
import ctypes, os, sys
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)   # PR_SET_NAME
for _ in range(int(sys.argv[2])):
    os.getpid()
"""


def getpid(n: int, comm: str = COMM, cgroup: Any = None, cpu: int | None = None) -> int:
    """Run a process named `comm` that calls getpid() exactly n times (after naming itself);
    in `cgroup` (a bpfnb Cgroup) or pinned to `cpu` if given. Returns its pid."""
    args = [sys.executable, "-c", _CODE, comm, str(n)]
    if cpu is not None:
        args = ["taskset", "-c", str(cpu), *args]
    proc = cgroup.popen(args) if cgroup is not None else subprocess.Popen(args)
    if proc.wait(timeout=120) != 0:
        raise BpfnbError(f"the workload exited with status {proc.returncode}")
    return proc.pid


PR_SET_NAME = 15


def name_thread(name: str) -> None:
    """Name the calling thread (its comm, what BPF programs and `ps` see): at most 15 bytes.
    Python's threading names are Python's own; the kernel keeps calling the thread `python`."""
    if libc.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise BpfnbError(f"prctl(PR_SET_NAME, {name!r}) failed: {os.strerror(err)}")


def unique(name: str) -> str:
    """`name` made unique to this kernel (its pid appended): two students sharing a machine
    get different cgroups, interfaces and pins. Interface names: keep `name` <= 8 bytes."""
    return f"{name}{os.getpid()}"


# C for a program that should see only one command name: compile with comm_cflags(name)
COMM_FILTER = ("u64 comm_[2] = {}; bpf_get_current_comm(comm_, sizeof(comm_)); "
               "if (comm_[0] != COMM_LO || comm_[1] != COMM_HI) return 0;")


def comm_cflags(comm: str) -> list[str]:
    """-D flags defining COMM_LO/COMM_HI, the 16 bytes of `comm` as two u64 (COMM_FILTER)."""
    raw = comm.encode()[:15].ljust(16, b"\0")
    lo, hi = int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")
    return [f"-DCOMM_LO={lo:#x}ULL", f"-DCOMM_HI={hi:#x}ULL"]


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out


# This kernel's workload name: "bpfnb-nb-" and the pid in base 36 (at most 14 bytes), so two
# notebooks on one machine count only their own workload. `%%bpf NAME {WORKLOAD_CFLAGS}` defines
# COMM_LO/COMM_HI (the name as two u64) for the program to compare the current comm with.
WORKLOAD_COMM = f"{COMM}-{_base36(os.getpid())}"
WORKLOAD_CFLAGS = " ".join(comm_cflags(WORKLOAD_COMM))


def workload(n: int, cgroup: Any = None, cpu: int | None = None) -> int:
    """getpid() under this kernel's WORKLOAD_COMM (what WORKLOAD_CFLAGS filters): a process
    making exactly n getpid() calls. Returns its pid."""
    return getpid(n, comm=WORKLOAD_COMM, cgroup=cgroup, cpu=cpu)
