"""perf_event_open(2) for sampling programs: one event per CPU, fds the caller owns."""

from __future__ import annotations

import ctypes as ct
import os
import platform

from bpfnb._sys.perfbuf import _NR_PERF_EVENT_OPEN, PERF_FLAG_FD_CLOEXEC, _PerfAttr
from bpfnb.errors import AttachError

FREQ = 1 << 10  # perf_event_attr flag: sample_period holds a frequency
_libc = ct.CDLL(None, use_errno=True)
_libc.syscall.restype = ct.c_long


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
    attr = _PerfAttr(type=ev_type, size=ct.sizeof(_PerfAttr), config=config,
                     sample_period=freq or period, flags=FREQ if freq else 0)
    fd = _libc.syscall(_NR_PERF_EVENT_OPEN[platform.machine()], ct.byref(attr), pid, cpu, -1,
                       PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        err = ct.get_errno()
        raise AttachError(f"perf_event_open(type={ev_type}, config={config}) on CPU {cpu} "
                          f"failed: {os.strerror(err)}")
    return int(fd)
