"""The kernel's BPF objects by id (programs, maps, links, BTF): ids, fds that close
themselves, fdinfo, BTF and link info, BPF_TASK_FD_QUERY.

Functions raise OSError with the kernel's errno, like bpfsys; `bpfnb._sys.errnos.translate`
turns one into a bpfnb error that says what to do.
"""

from __future__ import annotations

import ctypes as ct
import enum
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bpfnb._sys import bpfsys
from bpfnb._sys.bpfattrs import BtfInfo, LinkInfo, TaskFdQueryAttr


class Kind(enum.Enum):
    """The four id spaces of loaded BPF objects, with their get-next-id / get-fd-by-id."""

    PROG = (bpfsys.Cmd.PROG_GET_NEXT_ID, bpfsys.Cmd.PROG_GET_FD_BY_ID)
    MAP = (bpfsys.Cmd.MAP_GET_NEXT_ID, bpfsys.Cmd.MAP_GET_FD_BY_ID)
    LINK = (bpfsys.Cmd.LINK_GET_NEXT_ID, bpfsys.Cmd.LINK_GET_FD_BY_ID)
    BTF = (bpfsys.Cmd.BTF_GET_NEXT_ID, bpfsys.Cmd.BTF_GET_FD_BY_ID)

    @property
    def label(self) -> str:
        return self.name.lower()


_NAME_MAX = 4096

# fds this process opens only for a moment (by id): a /proc scan must not count them as held
_transient: set[int] = set()
_transient_lock = threading.Lock()


def transient_fds() -> frozenset[int]:
    with _transient_lock:
        return frozenset(_transient)


@contextmanager
def opened(kind: Kind, obj_id: int) -> Iterator[int]:
    """An fd for the object `obj_id`, closed on exit."""
    fd = bpfsys.fd_by_id(kind.value[1], obj_id)
    with _transient_lock:
        _transient.add(fd)
    try:
        yield fd
    finally:
        with _transient_lock:
            _transient.discard(fd)
        os.close(fd)


def ids(kind: Kind) -> list[int]:
    """Every id of that kind, ascending."""
    out: list[int] = []
    nxt = bpfsys.next_id(kind.value[0], 0)
    while nxt is not None:
        out.append(nxt)
        nxt = bpfsys.next_id(kind.value[0], nxt)
    return out


def each(kind: Kind) -> Iterator[tuple[int, int]]:
    """(id, fd) for every object of that kind still there when opened; each fd is closed
    when the loop moves on. Objects that vanish between listing and opening are skipped."""
    for obj_id in ids(kind):
        try:
            with opened(kind, obj_id) as fd:
                yield obj_id, fd
        except FileNotFoundError:
            continue


def fdinfo(fd: int, pid: int | str = "self") -> dict[str, str]:
    """/proc/PID/fdinfo/FD as a dict (bpf objects list their ids and memlock there)."""
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            text = f.read()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def btf_data(fd: int) -> tuple[BtfInfo, bytes, str]:
    """The BTF object's info, raw bytes and name (kernel BTF objects have one)."""
    info = BtfInfo()
    bpfsys.obj_info(fd, info)
    size = info.btf_size
    data = ct.create_string_buffer(size)
    name = ct.create_string_buffer(_NAME_MAX)
    info = BtfInfo(btf=ct.addressof(data), btf_size=size, name=ct.addressof(name),
                   name_len=_NAME_MAX)
    bpfsys.obj_info(fd, info)
    return info, data.raw[: info.btf_size], name.value.decode(errors="replace")


# -- links --------------------------------------------------------------------------------

# where a link type takes a string buffer: (offset of pointer, offset of u32 length)
LINK_NAME_SLOTS: dict[int, tuple[int, int]] = {1: (16, 24), 4: (16, 24), 12: (16, 48)}
PERF_LINK = 7
PERF_NAME_SLOT = (24, 32)           # uprobe file_name / kprobe func_name / tracepoint tp_name
PERF_NAMED_TYPES = frozenset({1, 2, 3, 4, 5})


def link_info(fd: int) -> tuple[bytes, str]:
    """struct bpf_link_info as bytes, and the name string the link type reports (if any)."""
    info = LinkInfo()
    bpfsys.obj_info(fd, info)
    raw = bytes(info)
    link_type = int.from_bytes(raw[0:4], "little")
    slot = LINK_NAME_SLOTS.get(link_type)
    if link_type == PERF_LINK and int.from_bytes(raw[16:20], "little") in PERF_NAMED_TYPES:
        slot = PERF_NAME_SLOT
    if slot is None:
        return raw, ""
    name = ct.create_string_buffer(_NAME_MAX)
    info = LinkInfo()
    base = ct.addressof(info)
    ct.c_uint64.from_address(base + slot[0]).value = ct.addressof(name)
    ct.c_uint32.from_address(base + slot[1]).value = _NAME_MAX
    bpfsys.obj_info(fd, info)
    return bytes(info), name.value.decode(errors="replace")


# -- BPF_TASK_FD_QUERY ----------------------------------------------------------------------

@dataclass(frozen=True)
class FdQuery:
    """What a perf event fd of some process runs: the program and its probe."""

    prog_id: int
    fd_type: int          # enum bpf_task_fd_type
    name: str             # tracepoint name, kernel symbol or file name
    probe_offset: int
    probe_addr: int


def task_fd_query(pid: int, fd: int) -> FdQuery | None:
    """The program attached to perf event fd `fd` of process `pid`, or None if none is."""
    buf = ct.create_string_buffer(_NAME_MAX)
    attr = TaskFdQueryAttr(pid=pid, fd=fd, buf_len=_NAME_MAX, buf=ct.addressof(buf))
    try:
        bpfsys.bpf(bpfsys.Cmd.TASK_FD_QUERY, attr)
    except OSError:
        return None
    return FdQuery(attr.prog_id, attr.fd_type, buf.value.decode(errors="replace"),
                   attr.probe_offset, attr.probe_addr)
