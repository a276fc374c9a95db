"""Which processes hold which BPF programs, maps and links, from /proc/*/fd and fdinfo,
and what their perf event fds run (BPF_TASK_FD_QUERY).

A program or map with no holder lives on because something else references it: a pin, a
link, another map (prog arrays, map-in-map) or an attachment the kernel keeps (tc, XDP,
cgroup programs attached without a link).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field

from bpfnb._sys import bpfobjs, procfs
from bpfnb.machine.attachments import describe_fd_query

_ANON = {"anon_inode:bpf-prog": "prog", "anon_inode:bpf-map": "map",
         "anon_inode:bpf_link": "link", "anon_inode:bpf-link": "link",
         "anon_inode:[perf_event]": "perf"}
_ID_KEYS = {"prog": "prog_id", "map": "map_id", "link": "link_id"}


@dataclass
class Holders:
    """Object id -> holding pids, per kind; program id -> perf event attachments."""

    progs: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))
    maps: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))
    links: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))
    perf: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    comms: dict[int, str] = field(default_factory=dict)

    def pids(self, kind: str, obj_id: int) -> list[int]:
        return sorted(getattr(self, kind + "s").get(obj_id, ()))

    def comm_list(self, pids: list[int]) -> list[str]:
        return [self.comms.get(p, "") for p in pids]


def _fds(pid: int) -> list[tuple[int, str]]:
    """(fd, kind) of a process's BPF and perf event fds."""
    out: list[tuple[int, str]] = []
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:  # gone, or not ours to read
        return out
    for name in names:
        try:
            kind = _ANON.get(os.readlink(f"/proc/{pid}/fd/{name}"))
        except OSError:
            continue
        if kind is not None:
            out.append((int(name), kind))
    return out


def scan(perf: bool = True) -> Holders:
    """Walk every process's fds. `perf=False` skips the perf event queries."""
    holders = Holders()
    me = os.getpid()
    transient = bpfobjs.transient_fds()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        held = False
        for fd, kind in _fds(pid):
            if pid == me and fd in transient:
                continue
            if kind == "perf":
                held |= perf and _perf(holders, pid, fd)
                continue
            info = bpfobjs.fdinfo(fd, pid)
            obj_id = info.get(_ID_KEYS[kind])
            if obj_id is None:
                continue
            getattr(holders, kind + "s")[int(obj_id)].add(pid)
            if kind == "link" and "prog_id" in info:
                holders.progs[int(info["prog_id"])].add(pid)
            held = True
        if held:
            holders.comms[pid] = procfs.comm(pid)
    return holders


def _perf(holders: Holders, pid: int, fd: int) -> bool:
    q = bpfobjs.task_fd_query(pid, fd)
    if q is None or not q.prog_id:
        return False
    holders.perf[q.prog_id].add(describe_fd_query(q))
    holders.progs[q.prog_id].add(pid)
    return True
