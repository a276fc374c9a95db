"""Attach programs where bcc's auto-attach does not reach: cgroups, XDP, sockmaps (the
syscalls are in `bpfnb._sys.bpflink`; this module owns the attachments' lifetimes).

Cgroup and XDP attachments are BPF links (the kernel detaches them when the link fd
closes, even if this process dies); sockmap programs use BPF_PROG_ATTACH/DETACH.
Every attachment is detached when its program closes.
"""

from __future__ import annotations

import os
import socket
import threading
import weakref
from collections.abc import Callable
from typing import Any

from bpfnb._sys.bpflink import (
    ATTACH_NAMES,
    ATTACH_TYPES,
    XDP_FLAGS,
    attach_type,
    link_create,
    prog_attach,
    prog_detach,
)
from bpfnb.errors import AttachError


class Attachment:
    """One program attached somewhere; `close()` detaches (idempotent)."""

    def __init__(self, what: str, detach: Callable[[], None], owner: Any = None) -> None:
        self.what = what
        self._detach: Callable[[], None] | None = detach
        if owner is not None:
            _by_owner.setdefault(id(owner), []).append(self)
            weakref.finalize(owner, _forget, id(owner))

    @property
    def attached(self) -> bool:
        return self._detach is not None

    def close(self) -> None:
        detach, self._detach = self._detach, None
        if detach is not None:
            detach()

    def __enter__(self) -> Attachment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Attachment {self.what}{'' if self.attached else ' (detached)'}>"


_by_owner: dict[int, list[Attachment]] = {}


def _forget(key: int) -> None:
    for att in _by_owner.pop(key, []):
        att.close()


def close_owned(owner: Any) -> None:
    """Detach everything attached on behalf of `owner` (a Program closing)."""
    _forget(id(owner))


def _fail(what: str, e: OSError) -> AttachError:
    return AttachError(f"cannot attach {what}: {os.strerror(e.errno or 0)} (errno {e.errno})")


def _link(what: str, prog_fd: int, target: int, kind: int, flags: int, owner: Any,
          create: Callable[[Callable[[], int]], int] | None = None) -> Attachment:
    def make() -> int:
        return link_create(prog_fd, target, kind, flags)

    try:
        fd = create(make) if create is not None else make()
    except OSError as e:
        raise _fail(what, e) from None
    return Attachment(what, lambda: os.close(fd), owner)


def attach_cgroup(prog_fd: int, cgroup_fd: int, direction: str = "ingress", *,
                  label: str = "", owner: Any = None) -> Attachment:
    """Attach a cgroup_skb (or other cgroup) program to a cgroup directory fd."""
    kind = attach_type(direction)
    return _link(f"cgroup {label or cgroup_fd} {ATTACH_NAMES.get(kind, kind)}", prog_fd,
                 cgroup_fd, kind, 0, owner)


def attach_xdp(prog_fd: int, ifindex: int, *, mode: str = "generic", label: str = "",
               owner: Any = None,
               run: Callable[[Callable[[], int]], int] | None = None) -> Attachment:
    """Attach an XDP program to an interface (run=... creates the link in a netns)."""
    if mode not in XDP_FLAGS:
        raise AttachError(f"XDP mode must be one of {', '.join(XDP_FLAGS)}")
    return _link(f"xdp {label or ifindex} ({mode})", prog_fd, ifindex, ATTACH_TYPES["xdp"],
                 XDP_FLAGS[mode], owner, create=run)


def attach_to_map(prog_fd: int, map_fd: int, kind: str | int, *, label: str = "",
                  owner: Any = None) -> Attachment:
    """BPF_PROG_ATTACH to a map (sockmap/sockhash verdict and parser programs)."""
    k = attach_type(kind)
    what = f"map {label or map_fd} {ATTACH_NAMES.get(k, k)}"
    map_dup = os.dup(map_fd)  # the detach must still find the map if the view is gone
    try:
        prog_attach(prog_fd, map_dup, k)
    except OSError as e:
        os.close(map_dup)
        raise _fail(what, e) from None
    prog_dup = os.dup(prog_fd)
    lock = threading.Lock()

    def detach() -> None:
        with lock:
            try:
                prog_detach(prog_dup, map_dup, k)
            except OSError:
                pass  # already gone with its map
            finally:
                os.close(map_dup)
                os.close(prog_dup)

    return Attachment(what, detach, owner)


def ifindex(name: str | int) -> int:
    """An interface's index in this process's network namespace."""
    if isinstance(name, int):
        return name
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise AttachError(f"no network interface {name!r} here (`ip link` lists them)") from None
