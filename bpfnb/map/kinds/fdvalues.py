"""Values that are file descriptors going in (programs, maps, sockets, cgroups) and kernel
ids coming out: the shared part of PROG_ARRAY, maps of maps, socket and XSK maps."""

from __future__ import annotations

from typing import Any

from bpfnb.errors import KeyTypeError
from bpfnb.map.kinds import Closer


def fd_of(view: Any, value: Any, wants: str) -> tuple[int, Closer | None]:
    """An int fd, or anything with an int `fd` attribute or a `fileno()` method."""
    if isinstance(value, bool):
        raise KeyTypeError(f"map {view.name!r} stores {wants}, not a bool")
    if isinstance(value, int):
        return value, None
    fd = getattr(value, "fd", None)
    if isinstance(fd, int):
        return fd, None
    fileno = getattr(value, "fileno", None)
    if callable(fileno):
        return int(fileno()), None
    raise KeyTypeError(f"map {view.name!r} stores {wants}: give one (or its fd), not "
                       f"{type(value).__name__}")


def label_of(value: Any) -> str:
    """How a stored object is named in df() (function or map name, socket address)."""
    name = getattr(value, "name", None)
    if isinstance(name, str):
        return name
    return repr(value) if not isinstance(value, int) else f"fd {value}"
