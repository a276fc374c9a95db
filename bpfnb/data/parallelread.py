"""Large batch reads split across threads: the kernel's copy is the cost, so use the cores.

A batch lookup's position is a token: the previous key for arrays, a bucket index for
hashes. Arrays split exactly by index. Hash workers start at evenly spaced buckets and stop
once past the next worker's start; the few elements a worker reads beyond that boundary are
also the next worker's first ones, and are dropped by key.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bpfnb._sys import bpfsys

MIN_ENTRIES = 1 << 16  # below this one thread is as fast
MAX_WORKERS = 4
CHUNK = 1 << 16  # elements per hash-worker syscall
HASH_TYPES = frozenset({bpfsys.MapType.HASH, bpfsys.MapType.PERCPU_HASH,
                        bpfsys.MapType.LRU_HASH, bpfsys.MapType.LRU_PERCPU_HASH})
ARRAY_TYPES = frozenset({bpfsys.MapType.ARRAY, bpfsys.MapType.PERCPU_ARRAY})


def workers_for(map_type: int, max_entries: int) -> int:
    """How many threads a read of this map should use (1: read it the ordinary way)."""
    if max_entries < MIN_ENTRIES or map_type not in HASH_TYPES | ARRAY_TYPES:
        return 1
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


@dataclass
class _Part:
    keys: list[np.ndarray] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)
    error: BaseException | None = None


def _run(jobs: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=job, name="bpfnb-read", daemon=True) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def read_array(fd: int, max_entries: int, keys: np.ndarray, values: np.ndarray,
               workers: int) -> tuple[np.ndarray, np.ndarray]:
    """Read an array map into keys[:n]/values[:n] (buffers of max_entries), in slices."""
    bounds = [max_entries * i // workers for i in range(workers + 1)]
    got = [0] * workers
    errors: list[BaseException] = []

    def job(i: int) -> Callable[[], None]:
        lo, hi = bounds[i], bounds[i + 1]

        def read() -> None:
            token_in = None if lo == 0 else np.array([lo - 1], keys.dtype)  # previous key
            token_out = np.zeros(1, keys.dtype)
            try:
                while got[i] < hi - lo:
                    at = lo + got[i]
                    n, done = bpfsys.batch(bpfsys.Cmd.MAP_LOOKUP_BATCH, fd, token_in,
                                           token_out, keys[at:hi], values[at:hi], hi - at)
                    got[i] += n
                    token_in, token_out = token_out, np.zeros(1, keys.dtype)
                    if done:
                        break
            except BaseException as e:  # re-raised in the caller's thread
                errors.append(e)
        return read

    _run([job(i) for i in range(workers)])
    if errors:
        raise errors[0]
    if sum(got) == max_entries:
        return keys[:max_entries], values[:max_entries]
    take = np.concatenate([np.arange(bounds[i], bounds[i] + got[i]) for i in range(workers)])
    return keys[take], values[take]


def read_hash(fd: int, max_entries: int, key_dtype: np.dtype, value_shape: tuple[int, ...],
              value_dtype: np.dtype, workers: int,
              out: tuple[np.ndarray, np.ndarray] | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Read a hash map with workers starting at evenly spaced buckets. With `out` (reusable
    buffers of max_entries) each worker reads straight into its own region of them (no
    copy, no fresh pages), and the result is a view of `out`, compacted in place; what
    does not fit a region goes to chunks of the worker's own."""
    buckets = 1 << max(0, (max_entries - 1).bit_length())  # the kernel's n_buckets
    starts = [buckets * i // workers for i in range(workers)] + [buckets]
    parts = [_Part() for _ in range(workers)]
    cap = len(out[0]) // workers if out is not None else 0

    def job(i: int) -> Callable[[], None]:
        def read() -> None:
            part, stop, chunk = parts[i], starts[i + 1], CHUNK
            token_in = None if starts[i] == 0 else np.array([starts[i]], np.uint32)
            token_out = np.zeros(2, np.uint32)
            own: tuple[np.ndarray, np.ndarray] | None = None
            pos = 0
            try:
                while True:
                    direct = out is not None and cap - pos >= chunk
                    if direct:
                        assert out is not None
                        at = i * cap + pos
                        keys, values = out[0][at:at + chunk], out[1][at:at + chunk]
                    else:
                        if own is None or len(own[0]) < chunk:
                            own = (np.empty(chunk, key_dtype),
                                   np.empty((chunk, *value_shape), value_dtype))
                        keys, values = own
                    try:
                        n, done = bpfsys.batch(bpfsys.Cmd.MAP_LOOKUP_BATCH, fd, token_in,
                                               token_out, keys, values, chunk)
                    except OSError as e:
                        if e.errno != errno.ENOSPC:  # a bucket larger than the chunk
                            raise
                        chunk *= 2
                        continue
                    if direct:
                        part.keys.append(keys[:n])
                        part.values.append(values[:n])
                        pos += n
                    else:
                        part.keys.append(keys[:n].copy())
                        part.values.append(values[:n].copy())
                    if done or (i < workers - 1 and int(token_out[0]) >= stop):
                        break
                    token_in, token_out = token_out, np.zeros(2, np.uint32)
            except BaseException as e:
                part.error = e
        return read

    _run([job(i) for i in range(workers)])
    for part in parts:
        if part.error is not None:
            raise part.error
    for i in range(workers - 1):
        _drop_overlap(parts[i], parts[i + 1])
    chunks = [(k, v) for p in parts for k, v in zip(p.keys, p.values)]
    parts.clear()
    total = sum(len(k) for k, _ in chunks)
    if out is None:
        out = (np.empty(total, key_dtype), np.empty((total, *value_shape), value_dtype))
    # chunks inside `out` first, in address order (each moves down or stays), then the rest
    inside = [c for c in chunks if np.may_share_memory(c[0], out[0])]
    rest = [c for c in chunks if not np.may_share_memory(c[0], out[0])]
    at = 0
    for k, v in inside + rest:
        out[0][at:at + len(k)] = k
        out[1][at:at + len(k)] = v
        at += len(k)
    return out[0][:total], out[1][:total]


def _isin(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Which rows of `a` occur in `b`, comparing raw key bytes."""
    size = a.dtype.itemsize
    if size in (1, 2, 4, 8):
        as_int = np.dtype(f"u{size}")
        return np.isin(np.ascontiguousarray(a).view(as_int), np.ascontiguousarray(b).view(as_int))
    seen = {bytes(r) for r in np.ascontiguousarray(b).view(np.dtype((np.void, size))).tolist()}
    rows = np.ascontiguousarray(a).view(np.dtype((np.void, size))).tolist()
    return np.array([bytes(r) in seen for r in rows], dtype=bool)


def _drop_overlap(part: _Part, following: _Part) -> None:
    """Remove from `part`'s last chunk the keys `following` also read (past the boundary)."""
    if not part.keys or not following.keys:
        return
    last = part.keys[-1]
    window: list[np.ndarray] = []
    for k in following.keys:  # the overshoot is at most one chunk; compare a little more
        window.append(k)
        if sum(len(w) for w in window) > len(last) + CHUNK:
            break
    keep = ~_isin(last, np.concatenate(window))
    if not keep.all():
        part.keys[-1] = last[keep]
        part.values[-1] = part.values[-1][keep]
