"""atomic_write: the file appears whole or not at all, with the mode a plain new file gets,
and without touching the process umask that other threads rely on."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from bpfnb.data.atomicfile import atomic_write


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_mode_follows_umask(tmp_path, umask_022):
    with atomic_write(tmp_path / "a.bin") as f:
        f.write(b"x")
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o644
    assert (tmp_path / "a.bin").read_bytes() == b"x"


def test_umask_never_changes_while_other_threads_create_files(tmp_path, umask_022):
    """A thread creating files during many atomic writes must always get 0644 (0666 less
    the umask): os.umask(0) in atomic_write gave some of them 0666."""
    stop = threading.Event()
    modes: list[int] = []

    def create() -> None:
        i = 0
        while not stop.is_set():
            p = tmp_path / f"t{i % 50}"
            fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o666)
            os.close(fd)
            modes.append(stat.S_IMODE(os.stat(p).st_mode))
            os.unlink(p)
            i += 1

    t = threading.Thread(target=create)
    t.start()
    try:
        for i in range(2000):
            with atomic_write(tmp_path / "w.bin") as f:
                f.write(b"%d" % i)
    finally:
        stop.set()
        t.join()
    assert modes and set(modes) == {0o644}
    assert os.umask(0o022) == 0o022


def test_atomic_write_never_sets_the_umask(tmp_path, umask_022, monkeypatch):
    """The window in which os.umask(0) is in force is too short for a Python thread to hit
    reliably (the GIL), but a C thread hits it: atomic_write must not set the umask at all."""
    calls: list[int] = []
    real = os.umask

    def spy(mask: int) -> int:
        calls.append(mask)
        return real(mask)

    monkeypatch.setattr(os, "umask", spy)
    with atomic_write(tmp_path / "a.bin") as f:
        f.write(b"x")
    assert calls == []
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o644
