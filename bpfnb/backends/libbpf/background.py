"""Work off the compile's path: one worker thread per process, made again after a fork.

Starting a thread per job costs 5-8 ms on a loaded machine (Thread.start waits until the
new thread runs); handing a job to a waiting worker costs microseconds. The worker is
joined at interpreter exit, so queued work (an object being written) is finished.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor] | None = None  # owner pid, pool


def submit(fn: Callable[..., Any], *args: Any) -> Future[Any]:
    """Run fn(*args) on this process's worker thread, after the jobs queued before it."""
    global _pool
    with _lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="bpfnb-libbpf"))
        pool = _pool[1]
    try:
        return pool.submit(fn, *args)
    except RuntimeError:  # the interpreter is exiting: no new threads; run it here
        done: Future[Any] = Future()
        done.set_result(fn(*args))
        return done


def shutdown() -> None:
    """Finish the queued work and end this process's worker thread (a later job starts a
    new one)."""
    global _pool
    if threading.current_thread().name.startswith("bpfnb-libbpf"):
        return  # a job closing a program: the worker cannot join itself
    with _lock:
        pool, _pool = _pool, None
    if pool is not None and pool[0] == os.getpid():
        pool[1].shutdown(wait=True)
