"""A known-answer event program: one `struct event` (pid, seq, ts, comm; 32 bytes) per
getpid() of the process named `comm`, sent to a ring buffer `rb` and/or a perf buffer
`perf`; `seq` counts the events from 0 and `dropped` the ring buffer's refusals."""

from __future__ import annotations

from typing import Any

from bpfnb.program import core
from bpfnb.testing.workload import COMM_FILTER, comm_cflags

WORKLOAD_BINARY_COMM = "bpfnb-wl"  # what tests/workload/workload.c names itself

_SOURCE = r"""
struct event { u32 pid; u32 seq; u64 ts; char comm[16]; };
MAPS
BPF_ARRAY(seq, u64, 1);
BPF_ARRAY(dropped, u64, 1);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    COMM_FILTER
    int zero = 0;
    u64 *s = seq.lookup(&zero);
    if (!s) return 0;
    struct event e = {};
    e.pid = bpf_get_current_pid_tgid() >> 32;
    e.seq = __sync_fetch_and_add(s, 1);
    e.ts = bpf_ktime_get_ns();
    __builtin_memcpy(&e.comm, comm_, sizeof(e.comm));
    SENDS
    return 0;
}
"""


def source(ring: bool = True, perf: bool = True, rb_pages: int = 64) -> str:
    """The program's C source (COMM_LO/COMM_HI from `comm_cflags` choose the process)."""
    maps, sends = [], []
    if ring:
        maps.append(f"BPF_RINGBUF_OUTPUT(rb, {rb_pages});")
        sends.append("if (rb.ringbuf_output(&e, sizeof(e), 0) < 0) dropped.increment(zero);")
    if perf:
        maps.append("BPF_PERF_OUTPUT(perf);")
        sends.append("perf.perf_submit(args, &e, sizeof(e));")
    return (_SOURCE.replace("COMM_FILTER", COMM_FILTER).replace("MAPS", "\n".join(maps))
            .replace("SENDS", "\n    ".join(sends)))


def load(comm: str = WORKLOAD_BINARY_COMM, ring: bool = True, perf: bool = True, rb_pages: int = 64,
         **kwargs: Any) -> core.Program:
    """The program loaded for the process named `comm` (bpfnb.load's `kwargs`)."""
    return core.load(source(ring, perf, rb_pages), cflags=comm_cflags(comm), **kwargs)
