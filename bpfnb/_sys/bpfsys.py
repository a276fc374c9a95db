"""The bpf(2) system call through ctypes: every command number, the map and program types,
map element and batch ops, object info, ids, pins.

Functions raise OSError with the kernel's errno; `bpfnb._sys.errnos.translate` turns one
into a bpfnb error. The attr structs are in `bpfattrs`, object walks in `bpfobjs`, links
and attachments in `bpflink`.
"""

from __future__ import annotations

import ctypes as ct
import enum
import os
import platform
from typing import Any

from bpfnb._sys.bpfattrs import (
    OBJ_NAME_LEN,  # noqa: F401  (callers size names with bpfsys.OBJ_NAME_LEN)
    BatchAttr,
    ElemAttr,
    IdAttr,
    InfoAttr,
    MapInfo,
    ObjAttr,
    ProgInfo,
    StatsAttr,
)
from bpfnb._sys.libc import libc

ENOTSUPP = 524  # kernel-internal "operation not supported", leaks to user space

_NR_BPF = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351, "riscv64": 280}


class Cmd(enum.IntEnum):
    """enum bpf_cmd: every command the package issues."""

    MAP_CREATE = 0
    MAP_LOOKUP_ELEM = 1
    MAP_UPDATE_ELEM = 2
    MAP_DELETE_ELEM = 3
    MAP_GET_NEXT_KEY = 4
    PROG_LOAD = 5
    OBJ_PIN = 6
    OBJ_GET = 7
    PROG_ATTACH = 8
    PROG_DETACH = 9
    PROG_GET_NEXT_ID = 11
    MAP_GET_NEXT_ID = 12
    PROG_GET_FD_BY_ID = 13
    MAP_GET_FD_BY_ID = 14
    OBJ_GET_INFO_BY_FD = 15
    BTF_GET_FD_BY_ID = 19
    TASK_FD_QUERY = 20
    MAP_LOOKUP_AND_DELETE_ELEM = 21
    MAP_FREEZE = 22
    BTF_GET_NEXT_ID = 23
    MAP_LOOKUP_BATCH = 24
    MAP_LOOKUP_AND_DELETE_BATCH = 25
    MAP_UPDATE_BATCH = 26
    MAP_DELETE_BATCH = 27
    LINK_CREATE = 28
    LINK_GET_FD_BY_ID = 30
    LINK_GET_NEXT_ID = 31
    ENABLE_STATS = 32


class MapType(enum.IntEnum):
    UNSPEC = 0
    HASH = 1
    ARRAY = 2
    PROG_ARRAY = 3
    PERF_EVENT_ARRAY = 4
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    STACK_TRACE = 7
    CGROUP_ARRAY = 8
    LRU_HASH = 9
    LRU_PERCPU_HASH = 10
    LPM_TRIE = 11
    ARRAY_OF_MAPS = 12
    HASH_OF_MAPS = 13
    DEVMAP = 14
    SOCKMAP = 15
    CPUMAP = 16
    XSKMAP = 17
    SOCKHASH = 18
    CGROUP_STORAGE = 19
    REUSEPORT_SOCKARRAY = 20
    PERCPU_CGROUP_STORAGE = 21
    QUEUE = 22
    STACK = 23
    SK_STORAGE = 24
    DEVMAP_HASH = 25
    STRUCT_OPS = 26
    RINGBUF = 27
    INODE_STORAGE = 28
    TASK_STORAGE = 29
    BLOOM_FILTER = 30
    USER_RINGBUF = 31
    CGRP_STORAGE = 32
    ARENA = 33


class ProgType(enum.IntEnum):
    UNSPEC = 0
    SOCKET_FILTER = 1
    KPROBE = 2
    SCHED_CLS = 3
    SCHED_ACT = 4
    TRACEPOINT = 5
    XDP = 6
    PERF_EVENT = 7
    CGROUP_SKB = 8
    CGROUP_SOCK = 9
    LWT_IN = 10
    LWT_OUT = 11
    LWT_XMIT = 12
    SOCK_OPS = 13
    SK_SKB = 14
    CGROUP_DEVICE = 15
    SK_MSG = 16
    RAW_TRACEPOINT = 17
    CGROUP_SOCK_ADDR = 18
    LWT_SEG6LOCAL = 19
    LIRC_MODE2 = 20
    SK_REUSEPORT = 21
    FLOW_DISSECTOR = 22
    CGROUP_SYSCTL = 23
    RAW_TRACEPOINT_WRITABLE = 24
    CGROUP_SOCKOPT = 25
    TRACING = 26
    STRUCT_OPS = 27
    EXT = 28
    LSM = 29
    SK_LOOKUP = 30
    SYSCALL = 31
    NETFILTER = 32


PERCPU_TYPES = frozenset(
    {MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH,
     MapType.PERCPU_CGROUP_STORAGE}
)

# map update flags
BPF_ANY, BPF_NOEXIST, BPF_EXIST, BPF_F_LOCK = 0, 1, 2, 4
BPF_F_MMAPABLE = 1 << 10

# types whose keys are indexes 0..max_entries-1 that always exist
ARRAYS = frozenset({MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.PROG_ARRAY,
                    MapType.PERF_EVENT_ARRAY, MapType.CGROUP_ARRAY, MapType.ARRAY_OF_MAPS,
                    MapType.DEVMAP, MapType.CPUMAP, MapType.XSKMAP, MapType.SOCKMAP})
QUEUES = frozenset({MapType.QUEUE, MapType.STACK})


class BatchError(OSError):
    """A MAP_*_BATCH call failed after `done` elements (the kernel's count)."""

    done: int = 0


def _syscall_number() -> int:
    machine = platform.machine()
    if machine not in _NR_BPF:
        raise OSError(f"bpf(2) syscall number unknown for {machine}")
    return _NR_BPF[machine]


_NR = _syscall_number()


def bpf(cmd: int, attr: ct.Structure) -> int:
    """Call bpf(cmd, &attr, sizeof attr); return its result or raise OSError(errno)."""
    ret = libc.syscall(_NR, ct.c_int(cmd), ct.byref(attr), ct.c_uint(ct.sizeof(attr)))
    if ret < 0:
        err = ct.get_errno()
        raise OSError(err, os.strerror(err) if err != ENOTSUPP else "Operation not supported")
    return int(ret)


def addr(buf: Any) -> int:
    """Address of a ctypes object, a numpy array or None (0)."""
    if buf is None:
        return 0
    if hasattr(buf, "ctypes"):
        return int(buf.ctypes.data)
    return ct.addressof(buf)


def lookup(fd: int, key: Any, value: Any, flags: int = 0) -> None:
    bpf(Cmd.MAP_LOOKUP_ELEM, ElemAttr(map_fd=fd, key=addr(key), value=addr(value), flags=flags))


def update(fd: int, key: Any, value: Any, flags: int = BPF_ANY) -> None:
    bpf(Cmd.MAP_UPDATE_ELEM, ElemAttr(map_fd=fd, key=addr(key), value=addr(value), flags=flags))


def delete(fd: int, key: Any) -> None:
    bpf(Cmd.MAP_DELETE_ELEM, ElemAttr(map_fd=fd, key=addr(key)))


def lookup_and_delete(fd: int, key: Any, value: Any, flags: int = 0) -> None:
    bpf(Cmd.MAP_LOOKUP_AND_DELETE_ELEM,
        ElemAttr(map_fd=fd, key=addr(key), value=addr(value), flags=flags))


def next_key(fd: int, key: Any, next_key_buf: Any) -> bool:
    """Store the key after `key` (the first key if `key` is None); False at the end."""
    try:
        bpf(Cmd.MAP_GET_NEXT_KEY,
            ElemAttr(map_fd=fd, key=addr(key), value=addr(next_key_buf)))
    except OSError as e:
        if e.errno == 2:  # ENOENT
            return False
        raise
    return True


def batch(cmd: int, fd: int, in_batch: Any, out_batch: Any, keys: Any, values: Any,
          count: int, elem_flags: int = 0) -> tuple[int, bool]:
    """One MAP_*_BATCH call. Returns (elements done, reached the end); other errors raise
    BatchError, whose `done` says how many elements went through before it."""
    attr = BatchAttr(in_batch=addr(in_batch), out_batch=addr(out_batch), keys=addr(keys),
                      values=addr(values), count=count, map_fd=fd, elem_flags=elem_flags)
    try:
        bpf(cmd, attr)
    except OSError as e:
        if e.errno == 2:  # ENOENT: no more elements; attr.count holds the last chunk
            return int(attr.count), True
        err = BatchError(e.errno, e.strerror)
        err.done = int(attr.count)
        raise err from None
    return int(attr.count), False


def obj_info(fd: int, info: ct.Structure) -> ct.Structure:
    """Fill a MapInfo or ProgInfo for the object behind fd."""
    bpf(Cmd.OBJ_GET_INFO_BY_FD,
        InfoAttr(bpf_fd=fd, info_len=ct.sizeof(info), info=ct.addressof(info)))
    return info


def map_info(fd: int) -> MapInfo:
    info = MapInfo()
    obj_info(fd, info)
    return info


def prog_info(fd: int, map_ids: Any = None) -> ProgInfo:
    info = ProgInfo()
    if map_ids is not None:
        info.nr_map_ids = len(map_ids)
        info.map_ids = addr(map_ids)
    obj_info(fd, info)
    return info


def next_id(cmd: int, start: int) -> int | None:
    """The next prog/map id after `start`, or None."""
    attr = IdAttr(id=start)
    try:
        bpf(cmd, attr)
    except OSError as e:
        if e.errno == 2:
            return None
        raise
    return int(attr.next_id)


def fd_by_id(cmd: int, obj_id: int) -> int:
    return bpf(cmd, IdAttr(id=obj_id))


def obj_pin(fd: int, path: str) -> None:
    p = ct.create_string_buffer(os.fsencode(path))
    bpf(Cmd.OBJ_PIN, ObjAttr(pathname=ct.addressof(p), bpf_fd=fd))


def obj_get(path: str) -> int:
    p = ct.create_string_buffer(os.fsencode(path))
    return bpf(Cmd.OBJ_GET, ObjAttr(pathname=ct.addressof(p)))


def enable_stats() -> int:
    """BPF_ENABLE_STATS(BPF_STATS_RUN_TIME): stats stay on while the returned fd is open."""
    return bpf(Cmd.ENABLE_STATS, StatsAttr(type=0))


def possible_cpus() -> list[int]:
    """The kernel's possible CPUs, the index space of per-CPU map values."""
    with open("/sys/devices/system/cpu/possible") as f:
        text = f.read().strip()
    cpus: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus
