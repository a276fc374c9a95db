"""A clang started ahead of time: the next compile skips clang's process start.

Half of a warm compile's CPU time (~20 ms of ~40 ms) is clang starting: the dynamic linking
of libLLVM and its static constructors, before it reads a byte of source. So after each
compile one more clang is started with the same arguments; it blocks reading its source
from stdin (it reads the PCH only after that), and the next compile with the same
arguments and working directory hands its source to it. The spare is started on a background
thread (Popen waits until the child has exec'd: 5-12 ms on a loaded machine). One spare per
process, killed at exit; should the process die first, the spare reads end-of-file,
compiles an empty file and exits.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import threading
from collections.abc import Sequence
from concurrent.futures import Future

from bpfnb.backends.libbpf import background

_lock = threading.Lock()
_spare: tuple[tuple[str, ...], subprocess.Popen[bytes], int] | None = None  # key, proc, pid
_starting: tuple[Future[None], int] | None = None  # a spare being started, by pid
_served = 0  # compiles a spare ran (this process)


def run(args: Sequence[str], source: bytes) -> subprocess.CompletedProcess[bytes]:
    """Run clang `args` on `source` (stdin) as subprocess.run would, through the spare
    when it was started for these arguments, then start the next spare."""
    key = (os.getcwd(), *args)
    proc = _take(key)
    if proc is not None:
        out, err = proc.communicate(source)
        if proc.returncode >= 0:  # < 0: killed before or while it ran; run afresh
            global _served
            _served += 1
            _keep(key)
            return subprocess.CompletedProcess(list(args), proc.returncode, out, err)
    result = subprocess.run(list(args), input=source, capture_output=True)
    _keep(key)
    return result


def _take(key: tuple[str, ...]) -> subprocess.Popen[bytes] | None:
    """The waiting spare if it was started by this process for `key`, else None."""
    global _spare
    _started()
    with _lock:
        spare, _spare = _spare, None
    if spare is None:
        return None
    spare_key, proc, pid = spare
    if spare_key == key and pid == os.getpid() and proc.poll() is None:
        return proc
    if pid == os.getpid():
        _stop(proc)
    return None


def _keep(key: tuple[str, ...]) -> None:
    """Start the spare for the next compile with `key` (replacing any other), in a thread."""
    global _starting
    _started()
    _starting = (background.submit(_start, key), os.getpid())


def _started() -> None:
    """Wait for a spare being started (so that there is never more than one)."""
    job = _starting
    if job is not None and job[1] == os.getpid():  # a forked child has no such thread
        job[0].result()


def _start(key: tuple[str, ...]) -> None:
    global _spare
    try:
        proc = subprocess.Popen(list(key[1:]), cwd=key[0], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError:  # clang or the directory went away: the next compile says why
        return
    with _lock:
        old, _spare = _spare, (key, proc, os.getpid())
    if old is not None and old[2] == os.getpid():
        _stop(old[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.communicate()


def served() -> int:
    """How many compiles of this process ran in a spare."""
    return _served


def waiting() -> int | None:
    """The pid of this process's spare clang, if one is waiting."""
    _started()
    spare = _spare
    return spare[1].pid if spare is not None and spare[2] == os.getpid() else None


def stop() -> None:
    """Kill the waiting spare, if any (at exit; tests)."""
    global _spare
    _started()
    with _lock:
        spare, _spare = _spare, None
    if spare is not None and spare[2] == os.getpid():
        _stop(spare[1])


atexit.register(stop)
