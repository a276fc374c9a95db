"""perf_event_open(2): the attr struct, the raw call, and sampling events for programs (one
per CPU, fds the caller owns). Perf buffers (`perfbuf`) open their output events here too.
"""

from __future__ import annotations

import ctypes as ct
import os
import platform

from bpfnb._sys.libc import libc
from bpfnb.errors import AttachError

NR_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241, "ppc64le": 319, "s390x": 331,
                      "riscv64": 241}
PERF_FLAG_FD_CLOEXEC = 1 << 3
FREQ = 1 << 10  # perf_event_attr flag: sample_period holds a frequency


class PerfEventAttr(ct.Structure):
    """struct perf_event_attr (the fields the package sets; the rest zero)."""

    _fields_ = [("type", ct.c_uint32), ("size", ct.c_uint32), ("config", ct.c_uint64),
                ("sample_period", ct.c_uint64), ("sample_type", ct.c_uint64),
                ("read_format", ct.c_uint64), ("flags", ct.c_uint64),
                ("wakeup", ct.c_uint32), ("bp_type", ct.c_uint32), ("rest", ct.c_uint64 * 12)]


def open_event(attr: PerfEventAttr, pid: int, cpu: int) -> int:
    """perf_event_open(&attr, pid, cpu, -1, CLOEXEC): the fd, or OSError(errno)."""
    nr = NR_PERF_EVENT_OPEN.get(platform.machine())
    if nr is None:
        raise OSError(f"perf_event_open syscall number unknown for {platform.machine()}")
    attr.size = ct.sizeof(PerfEventAttr)
    fd = libc.syscall(nr, ct.byref(attr), pid, cpu, -1, PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        err = ct.get_errno()
        raise OSError(err, os.strerror(err))
    return int(fd)


def online_cpus() -> list[int]:
    """The CPUs online now (where a system-wide sampling event is opened)."""
    with open("/sys/devices/system/cpu/online") as f:
        spec = f.read().strip()
    cpus: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def perf_event_open(ev_type: int, config: int, period: int, freq: int, pid: int,
                    cpu: int) -> int:
    """A sampling event (every `period` events, or `freq` times a second); its fd."""
    attr = PerfEventAttr(type=ev_type, config=config, sample_period=freq or period,
                         flags=FREQ if freq else 0)
    try:
        return open_event(attr, pid, cpu)
    except OSError as e:
        raise AttachError(f"perf_event_open(type={ev_type}, config={config}) on CPU {cpu} "
                          f"failed: {e.strerror}") from None
