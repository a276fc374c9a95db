"""Compiled objects kept by source text and flags, so a re-run cell needs no clang.

One file per object in the kernel build's cache folder (`objects/KEY.o`), at most
MAX_OBJECTS (the oldest dropped first). A new object is written, flushed to disk and
pruned on the background thread: that costs 20-40 ms on a busy disk, off the compile's
path; until it is written `get` answers from memory. The interpreter waits for it at exit.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from bpfnb.backends.libbpf import background
from bpfnb.data.atomicfile import atomic_write

MAX_OBJECTS = 512  # compiled objects kept per kernel build

_lock = threading.Lock()
_writing: dict[Path, bytes] = {}  # objects being written
_jobs: list[tuple[Future[Any], int]] = []  # writes queued, by pid


def path(objects: Path, text: str, cflags: tuple[str, ...]) -> Path:
    """Where the object of `text` compiled with `cflags` is kept."""
    key = hashlib.sha256("\0".join([text, *cflags]).encode()).hexdigest()[:32]
    return objects / f"{key}.o"


def get(file: Path) -> bytes | None:
    """The kept object, or None."""
    with _lock:
        pending = _writing.get(file)
    if pending is not None:
        return pending
    try:
        return file.read_bytes()
    except OSError:
        return None


def put(file: Path, obj: bytes) -> None:
    """Keep `obj` as `file` (its folder exists), written in a thread."""
    with _lock:
        _writing[file] = obj
    job = background.submit(_write, file, obj)  # unlocked: at exit it runs right here
    with _lock:
        _jobs[:] = [(j, pid) for j, pid in _jobs if not j.done() and pid == os.getpid()]
        _jobs.append((job, os.getpid()))


def wait() -> None:
    """Wait until every object handed to `put` is written."""
    with _lock:
        jobs = [j for j, pid in _jobs if pid == os.getpid()]  # a forked child has none
    for job in jobs:
        job.result()


def _write(file: Path, obj: bytes) -> None:
    try:
        with contextlib.suppress(OSError):  # a cache: a failed write only costs a compile
            with atomic_write(file) as f:
                f.write(obj)
            _prune(file.parent)  # another process may be pruning too
    finally:
        with _lock:
            _writing.pop(file, None)


def _prune(objects: Path) -> None:
    """Drop the oldest objects past MAX_OBJECTS (a directory listing when under it)."""
    names = [n for n in os.listdir(objects) if n.endswith(".o")]
    if len(names) <= MAX_OBJECTS:
        return
    files = sorted((objects / n for n in names), key=lambda p: p.stat().st_mtime)
    for old in files[:-MAX_OBJECTS]:
        old.unlink(missing_ok=True)
