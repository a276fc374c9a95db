"""Pins: BPF objects on the bpf file system, so they outlive this process.

`pin(view, path)` / `unpin(path)` (also `MapView.pin`, `bpfnb.pin`); machine.external opens pins.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from bpfnb._sys import bpfsys, errnos
from bpfnb.errors import BpfnbError, MapError

BPFFS_ROOT = "/sys/fs/bpf"
_PIN_ERRORS = {
    errno.EEXIST: "{path} already exists; unpin({path!r}) first or choose another path",
    errno.ENOENT: "the directory of {path} does not exist",
    errno.EPERM: "the kernel refused to pin at {path}: it must be on a bpf file system "
                 "(mounted at /sys/fs/bpf) and pinning needs root",
    errno.EACCES: "no permission to create {path}; run the notebook kernel as root",
}


def bpffs_mounts() -> list[str]:
    """Mount points of bpf file systems, longest first."""
    try:
        with open("/proc/self/mounts") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    points = [parts[1] for parts in (line.split() for line in lines)
              if len(parts) > 2 and parts[2] == "bpf"]
    return sorted(set(points), key=len, reverse=True)


def on_bpffs(path: str) -> bool:
    real = os.path.realpath(path)
    return any(real == m or real.startswith(m.rstrip("/") + "/") for m in bpffs_mounts())


def mounts_text() -> str:
    return ", ".join(bpffs_mounts()) or "none is mounted: mount -t bpf bpf /sys/fs/bpf"


def pin_path(path: Any, op: str) -> str:
    """A pin path normalised (`//`, `.` collapsed); MapError for NUL bytes, `..`, non-paths."""
    if not isinstance(path, (str, os.PathLike)):
        raise MapError(f"cannot {op} {path!r}: a pin path is a str such as "
                       f"{BPFFS_ROOT}/NAME")
    text = os.fspath(path)
    if isinstance(text, bytes) or "\0" in text:
        raise MapError(f"cannot {op} {text!r}: a pin path is a str without NUL bytes")
    if ".." in Path(text).parts:
        raise MapError(f"cannot {op} {text}: a pin path may not contain '..'; give the path "
                       f"under {BPFFS_ROOT} directly")
    return os.path.normpath(os.path.abspath(text))


def pin(obj: Any, path: str) -> str:
    """Pin a map (a MapView, or anything with an `fd`, or an fd) at `path` on the bpf file
    system so it outlives this process. Missing directories under the mount are created
    (and removed again if the pin fails)."""
    path = pin_path(path, "pin at")
    fd = obj if isinstance(obj, int) else getattr(obj, "fd", None)
    if not isinstance(fd, int) or isinstance(fd, bool):
        raise MapError(f"pin wants a map (a MapView such as prog['name']), something with "
                       f"an `fd`, or an fd, not {obj!r}")
    if not on_bpffs(path):
        raise BpfnbError(f"cannot pin at {path}: not on a bpf file system ({mounts_text()})")
    made = _make_dirs(os.path.dirname(path))
    try:
        bpfsys.obj_pin(fd, path)
    except OSError as e:
        for d in reversed(made):
            os.rmdir(d)
        template = _PIN_ERRORS.get(e.errno or 0)
        if template is None:
            raise errnos.translate(e, f"pin at {path}") from e
        raise BpfnbError(template.format(path=path)) from e
    return path


def _make_dirs(directory: str) -> list[str]:
    """Create `directory` and its missing parents; the ones created, outermost first."""
    missing = []
    while directory and not os.path.isdir(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    for d in reversed(missing):
        os.mkdir(d)
    return missing[::-1]


def unpin(path: str) -> None:
    """Remove a pin (the object lives on while something else holds it)."""
    path = pin_path(path, "unpin")
    if not on_bpffs(path):
        raise BpfnbError(f"{path} is not on a bpf file system; unpin removes pins only")
    try:
        os.unlink(path)
    except FileNotFoundError:
        raise BpfnbError(f"nothing is pinned at {path}; see bpfnb.pinned()") from None
    except IsADirectoryError:
        raise BpfnbError(f"{path} is a directory; unpin its entries (or os.rmdir it "
                         "when empty)") from None
