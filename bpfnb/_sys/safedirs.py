"""Directories root can write into without being tricked: every component from / is opened
with O_NOFOLLOW and must be owned by root and writable by root only (a sticky directory such
as /tmp may sit above, since only root can then rename root's entries in it); everything
below is created through directory fds with O_NOFOLLOW/O_EXCL, never by path."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from pathlib import Path

from bpfnb.errors import UnsafePathError

ROOT = frozenset({0})
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class SafeDir:
    """An open directory owned by root (or one of `owners`) and writable by its owner only;
    `path` is where it was."""

    def __init__(self, fd: int, path: Path, owners: frozenset[int] = ROOT) -> None:
        self.fd = fd
        self.path = path
        self.owners = owners

    def __enter__(self) -> SafeDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def sub(self, name: str, create: bool = True, mode: int = 0o755) -> SafeDir:
        """The child directory `name` (made with `mode` if absent), checked like its parents."""
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, mode, dir_fd=self.fd)
        return _checked(_open_dir(name, self.fd, self.path / name), self.path / name, True,
                        self.owners)

    def exists(self, name: str) -> bool:
        try:
            os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def create(self, name: str, mode: int) -> int:
        """A new file (never an existing one, never through a link); its fd, opened rw."""
        return os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                       mode, dir_fd=self.fd)

    def write(self, name: str, data: bytes, mode: int = 0o644) -> None:
        fd = self.create(name, mode)
        try:
            os.write(fd, data)
            os.fchmod(fd, mode)  # not subject to the umask
        finally:
            os.close(fd)

    def rename(self, name: str, to: SafeDir, new: str) -> None:
        os.rename(name, new, src_dir_fd=self.fd, dst_dir_fd=to.fd)

    def remove_tree(self, name: str) -> None:
        """rmtree through the fd (it never follows links); absent is fine."""
        if self.exists(name):
            shutil.rmtree(name, dir_fd=self.fd)

    def still_at_path(self) -> bool:
        """Whether `path` still names this very directory (no component swapped meanwhile)."""
        try:
            a, b = os.stat(self.path), os.fstat(self.fd)
        except OSError:
            return False
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _open_dir(name: str, parent: int | None, path: Path) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        raise
    except OSError as e:
        why = "is a symbolic link" if _is_link(name, parent) else (e.strerror or str(e))
        raise UnsafePathError(f"{path}: {why}; give a prefix whose every directory is a real "
                              "directory owned by root and writable by root only") from None


def _is_link(name: str, parent: int | None) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _checked(fd: int, path: Path, last: bool, owners: frozenset[int]) -> SafeDir:
    st = os.fstat(fd)
    problem = None
    if st.st_uid not in owners:
        problem = f"is owned by uid {st.st_uid}, not root"
    elif st.st_mode & 0o022 and (last or not st.st_mode & stat.S_ISVTX):
        problem = f"is writable by others (mode {stat.S_IMODE(st.st_mode):o})"
    if problem:
        os.close(fd)
        raise UnsafePathError(f"{path} {problem}: root would write through a directory someone "
                              "else controls. Use a prefix owned by root and writable by root "
                              "only (e.g. /usr/local), or fix its owner/mode")
    return SafeDir(fd, path, owners)


def open_root_dir(path: str | Path, create: bool = False, mode: int = 0o755,
                  owners: frozenset[int] = ROOT, sticky_ok: bool = False) -> SafeDir:
    """Walk `path` from / one component at a time; each must be owned by one of `owners`
    (root by default) and writable by its owner only (`path` itself may be a sticky
    directory if `sticky_ok`: only their owners rename entries there)."""
    path = Path(os.path.abspath(path))
    n = len(path.parts) + (1 if sticky_ok else 0)
    cur = _checked(_open_dir("/", None, Path("/")), Path("/"), n == 1, owners)
    try:
        for i, part in enumerate(path.parts[1:], start=2):
            here = Path(*path.parts[:i])
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, mode, dir_fd=cur.fd)
            nxt = _checked(_open_dir(part, cur.fd, here), here, i == n, owners)
            cur.close()
            cur = nxt
    except BaseException:
        cur.close()
        raise
    return cur
