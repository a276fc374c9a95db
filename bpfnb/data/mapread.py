"""Read a whole map into numpy: batch syscalls into reusable buffers, mmap for mmapable arrays.

Per-key iteration (get_next_key + lookup) is the fallback for map types and kernels
without batch operations. Reads never raise because the map changes underneath them,
and never return a key twice.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import threading
from dataclasses import dataclass

import numpy as np

from bpfnb._sys import bpfsys
from bpfnb.data import parallelread
from bpfnb.data.layout import padded, unpad

BUFFER_BUDGET = 64 << 20  # bytes of reusable buffer per map before reading in chunks
_NO_BATCH = {errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, bpfsys.ENOTSUPP, errno.EPERM}


@dataclass
class Snapshot:
    """Keys and values read at one moment. Arrays are valid until the next read."""

    keys: np.ndarray
    values: np.ndarray  # shape (n,) or (n, cpus) for per-CPU maps
    time_ns: int
    duration_ns: int
    method: str  # "batch", "mmap" or "iterate"


class MapReader:
    """Reads one map; owns its buffers. Thread-safe."""

    def __init__(self, fd: int, map_type: int, key_dtype: np.dtype, value_dtype: np.dtype,
                 max_entries: int, flags: int = 0) -> None:
        self.fd = fd
        self.map_type = map_type
        self.key_dtype = key_dtype
        self.value_dtype = value_dtype
        self.max_entries = max_entries
        self.percpu = map_type in bpfsys.PERCPU_TYPES
        self.ncpus = len(bpfsys.possible_cpus()) if self.percpu else 1
        self.elem_dtype = padded(value_dtype) if self.percpu else value_dtype
        self.mmapable = bool(flags & bpfsys.BPF_F_MMAPABLE) and map_type == bpfsys.MapType.ARRAY
        self._lock = threading.Lock()
        self._batch: bool | None = None  # unknown until tried
        per_elem = key_dtype.itemsize + self.elem_dtype.itemsize * self.ncpus
        self._chunk = max(1, min(max(max_entries, 1), BUFFER_BUDGET // max(per_elem, 1)))
        self._keys: np.ndarray | None = None
        self._values: np.ndarray | None = None
        self._token = np.zeros(max(key_dtype.itemsize, 8), np.uint8)
        self._mmap: mmap.mmap | None = None

    # -- buffers -----------------------------------------------------------------------
    def _buffers(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        if self._keys is None or len(self._keys) < size:
            self._keys = np.empty(size, self.key_dtype)
            self._values = np.empty((size, self.ncpus), self.elem_dtype)
        assert self._values is not None
        return self._keys, self._values

    def release(self) -> None:
        """Drop buffers and mappings (the fd belongs to the program)."""
        with self._lock:
            self._keys = self._values = None
            if self._mmap is not None:
                with contextlib.suppress(BufferError):  # numpy views still use it;
                    self._mmap.close()  # then it is unmapped when they go
                self._mmap = None

    # -- reading -----------------------------------------------------------------------
    def read(self) -> Snapshot:
        """Every entry of the map, now."""
        import time

        with self._lock:
            start = time.time_ns()
            if self.mmapable:
                keys, values, method = self._read_mmap()
            elif self._batch is not False:
                try:
                    keys, values = self._read_batch()
                    self._batch, method = True, "batch"
                except OSError as e:
                    if e.errno not in _NO_BATCH:
                        raise
                    self._batch = False
                    keys, values = self._read_iterate()
                    method = "iterate"
            else:
                keys, values = self._read_iterate()
                method = "iterate"
            end = time.time_ns()
        if not self.percpu:
            values = values[:, 0]
        return Snapshot(keys, unpad(values, self.value_dtype), start, end - start, method)

    def _read_batch(self) -> tuple[np.ndarray, np.ndarray]:
        workers = parallelread.workers_for(self.map_type, self.max_entries)
        if workers > 1 and self.map_type in parallelread.ARRAY_TYPES:
            keys, values = self._buffers(self.max_entries)
            return parallelread.read_array(self.fd, self.max_entries, keys, values, workers)
        if workers > 1:
            return parallelread.read_hash(self.fd, self.max_entries, self.key_dtype,
                                          (self.ncpus,), self.elem_dtype, workers,
                                          out=self._buffers(self.max_entries))
        chunk = self._chunk
        while True:
            try:
                return self._batch_pass(chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:  # a hash bucket larger than the chunk
                    raise
                chunk *= 2
                self._chunk = chunk

    def _batch_pass(self, chunk: int) -> tuple[np.ndarray, np.ndarray]:
        keys, values = self._buffers(chunk)
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        token_in, token_out = None, self._token
        while True:
            n, done = bpfsys.batch(bpfsys.Cmd.MAP_LOOKUP_BATCH, self.fd, token_in, token_out,
                                   keys, values, chunk)
            if done and not parts:
                return keys[:n], values[:n]
            parts.append((keys[:n].copy(), values[:n].copy()))
            if done:
                break
            token_in, token_out = token_out, (
                np.zeros_like(self._token) if token_out is self._token else self._token)
        return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))

    def _read_iterate(self) -> tuple[np.ndarray, np.ndarray]:
        key = np.zeros(1, self.key_dtype)
        nxt = np.zeros(1, self.key_dtype)
        value = np.zeros((1, self.ncpus), self.elem_dtype)
        keys: list[np.ndarray] = []
        values: list[np.ndarray] = []
        prev = None
        limit = 2 * self.max_entries + 1 if self.max_entries else 1 << 24  # cgroup storage: 0
        for _ in range(limit):
            if not bpfsys.next_key(self.fd, prev, nxt):
                break
            key[:] = nxt
            prev = key
            try:
                bpfsys.lookup(self.fd, key, value)
            except OSError as e:
                if e.errno == errno.ENOENT:  # deleted between next_key and lookup
                    continue
                raise
            keys.append(key.copy())
            values.append(value.copy())
        if not keys:
            return np.zeros(0, self.key_dtype), np.zeros((0, self.ncpus), self.elem_dtype)
        k, v = np.concatenate(keys), np.concatenate(values)
        return _unique_keys(k, v)

    def _read_mmap(self) -> tuple[np.ndarray, np.ndarray, str]:
        return np.arange(self.max_entries, dtype=self.key_dtype), self.mmap_values(), "mmap"

    def mmap_values(self) -> np.ndarray:
        """Zero-copy view of an mmapable array's values (no syscall)."""
        if self._mmap is None:
            size = self.elem_dtype.itemsize * self.max_entries
            size = -(-size // mmap.PAGESIZE) * mmap.PAGESIZE
            self._mmap = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
        arr = np.frombuffer(self._mmap, self.elem_dtype, count=self.max_entries)
        return arr.reshape(self.max_entries, 1)


def _unique_keys(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop repeated keys (iteration restarts when a key is deleted under it)."""
    raw = np.ascontiguousarray(keys).view(np.dtype((np.void, keys.dtype.itemsize)))
    _, first = np.unique(raw, return_index=True)
    if len(first) == len(keys):
        return keys, values
    first.sort()
    return keys[first], values[first]
