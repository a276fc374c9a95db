"""The caches' directories: `$BPFNB_CACHE/<name>` (default /var/cache/bpfnb/<name>), every
component owned by root and writable by root only (bpfnb._sys.safedirs), the leaf 0700; a
cache that other users may keep too (`users=True`) is, for them, under
$XDG_CACHE_HOME/bpfnb (default ~/.cache/bpfnb), each component theirs or root's. Files go
in under a temporary name and are renamed into place (atomic)."""

from __future__ import annotations

import contextlib
import os

from bpfnb._sys.safedirs import SafeDir, open_root_dir
from bpfnb.errors import BpfnbError


def open_cache(name: str, users: bool = False) -> SafeDir | None:
    """The cache directory `name`, or None (no safe place for it, or not root and not
    `users`)."""
    uid = os.geteuid()
    if uid != 0 and not users:
        return None
    home = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    base = os.environ.get("BPFNB_CACHE") or (
        "/var/cache/bpfnb" if uid == 0 else os.path.join(home, "bpfnb"))
    try:
        with open_root_dir(base, create=True, owners=frozenset({0, uid})) as where:
            return where.sub(name, mode=0o700)
    except (OSError, BpfnbError):
        return None


def read(where: SafeDir, name: str) -> bytes | None:
    """The file `name` in `where` (never through a link), or None."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=where.fd)
        with os.fdopen(fd, "rb") as f:
            return f.read()
    except OSError:
        return None


def write(where: SafeDir, name: str, data: bytes) -> None:
    """Write `name` atomically (a temporary file renamed over it); errors are ignored."""
    tmp = f".{name}.{os.getpid()}.tmp"
    with contextlib.suppress(OSError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=where.fd)
        where.write(tmp, data, 0o600)
        where.rename(tmp, where, name)
