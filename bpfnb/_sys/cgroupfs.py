"""cgroup v2 for map examples: make and remove a cgroup, run processes in it, name cgroup ids.

A cgroup's id (what bpf_get_current_cgroup_id() and cgroup storage keys hold) is the
inode number of its directory in the cgroup2 filesystem.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bpfnb.errors import BpfnbError, FeatureUnavailableError

CGROUP2_CANDIDATES = ("/sys/fs/cgroup/unified", "/sys/fs/cgroup")


def cgroup2_root() -> str | None:
    """Where the cgroup v2 hierarchy is mounted, or None."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        mounts = []
    points = {line.split()[1] for line in mounts if len(line.split()) > 2
              and line.split()[2] == "cgroup2"}
    return next((c for c in CGROUP2_CANDIDATES if c in points), next(iter(sorted(points)), None))


def require_root() -> str:
    root = cgroup2_root()
    if root is None:
        raise FeatureUnavailableError(
            "cgroup v2 is not mounted: `mount -t cgroup2 none /sys/fs/cgroup/unified`")
    return root


class Cgroup:
    """A cgroup directory this process made; `remove()` (or `with`) takes it away again."""

    def __init__(self, name: str, root: str | None = None) -> None:
        self.root = root or require_root()
        self.path = os.path.join(self.root, name)
        os.makedirs(self.path, exist_ok=True)
        self._fd: int | None = None

    @property
    def id(self) -> int:
        """The cgroup id (inode of the directory)."""
        return os.stat(self.path).st_ino

    @property
    def relpath(self) -> str:
        return "/" + os.path.relpath(self.path, self.root)

    def fd(self) -> int:
        """An O_RDONLY fd of the directory (kept until remove()), for attaching and maps."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        return self._fd

    def pids(self) -> list[int]:
        text = Path(self.path, "cgroup.procs").read_text()
        return [int(p) for p in text.split()]

    def add(self, pid: int) -> None:
        Path(self.path, "cgroup.procs").write_text(str(pid))

    def popen(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start a process inside this cgroup (it joins before exec)."""
        procs = os.path.join(self.path, "cgroup.procs")

        def join() -> None:
            with open(procs, "w") as f:
                f.write("0")

        return subprocess.Popen(list(args), preexec_fn=join, **kwargs)

    def run(self, args: Sequence[str], timeout: float = 60) -> int:
        """Run a process inside this cgroup to completion; its exit status."""
        proc = self.popen(args)
        return proc.wait(timeout=timeout)

    def remove(self, timeout: float = 5.0) -> None:
        """Move leftover processes to the root cgroup and remove the directory."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if not os.path.isdir(self.path):
            return
        deadline = time.monotonic() + timeout
        while True:
            for pid in self.pids():
                with contextlib.suppress(OSError):
                    Path(self.root, "cgroup.procs").write_text(str(pid))
            try:
                os.rmdir(self.path)
                return
            except OSError as e:
                if time.monotonic() > deadline:
                    raise BpfnbError(f"cannot remove cgroup {self.path}: {e}") from None
                time.sleep(0.05)

    def __enter__(self) -> Cgroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"<Cgroup {self.relpath} id {self.id}>"


def paths_by_id(root: str | None = None) -> dict[int, str]:
    """cgroup id -> path relative to the cgroup2 root ('/' for the root itself)."""
    base = root or cgroup2_root()
    if base is None:
        return {}
    out: dict[int, str] = {}
    for dirpath, _dirs, _files in os.walk(base):
        try:
            out[os.stat(dirpath).st_ino] = "/" + os.path.relpath(dirpath, base).lstrip(".")
        except OSError:
            continue
    return out


def remove_matching(prefix: str, root: str | None = None) -> list[str]:
    """Remove every top-level cgroup whose name starts with `prefix`; the paths removed."""
    base = root or cgroup2_root()
    if base is None:
        return []
    gone = []
    for name in os.listdir(base):
        path = os.path.join(base, name)
        if name.startswith(prefix) and os.path.isdir(path):
            Cgroup(name, base).remove()
            gone.append(path)
    return gone
