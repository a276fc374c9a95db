"""The caches' directories: `$BPFNB_CACHE/<name>` (default /var/cache/bpfnb/<name>), every
component owned by root and writable by root only (bpfnb._sys.safedirs), the leaf 0700; a
cache that other users may keep too (`users=True`) is, for them, under
$XDG_CACHE_HOME/bpfnb (default ~/.cache/bpfnb), each component theirs or root's. Files go
in under a temporary name and are renamed into place (atomic)."""

from __future__ import annotations

import contextlib
import os

from bpfnb._sys.safedirs import SafeDir, open_root_dir
from bpfnb.errors import BpfnbError, UnsafePathError


def open_cache(name: str, users: bool = False) -> SafeDir | None:
    """The cache directory `name`, or None (no safe place for it, or not root and not
    `users`)."""
    if os.geteuid() != 0 and not users:
        return None
    try:
        return require_cache(name)
    except (OSError, BpfnbError):
        return None


def base_path() -> str:
    """Where the caches are: $BPFNB_CACHE, else /var/cache/bpfnb for root, else
    $XDG_CACHE_HOME/bpfnb (default ~/.cache/bpfnb)."""
    uid = os.geteuid()
    home = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.environ.get("BPFNB_CACHE") or (
        "/var/cache/bpfnb" if uid == 0 else os.path.join(home, "bpfnb"))


def require_cache(name: str) -> SafeDir:
    """The cache directory `name` for any user (root's or theirs, see the module), or the
    UnsafePathError (or OSError) saying why there is no safe place for it."""
    base = base_path()
    if base.startswith("~"):
        raise UnsafePathError(f"No cache directory: {base} has no home to expand to; set "
                              "BPFNB_CACHE to a directory of your own.")
    with open_root_dir(base, create=True,
                       owners=frozenset({0, os.geteuid()})) as where:
        return where.sub(name, mode=0o700)


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
