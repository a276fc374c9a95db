"""Per-CPU perf buffers for a PERF_EVENT_ARRAY map: one BPF-output perf event per CPU, its
ring mmapped and parsed with numpy (sample runs cut out in one step), lost records counted.
"""

from __future__ import annotations

import ctypes as ct
import mmap
import os
import platform
import select

import numpy as np

_NR_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241, "ppc64le": 319, "s390x": 331,
                       "riscv64": 241}
PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_BPF_OUTPUT = 10
PERF_SAMPLE_RAW = 1 << 10
PERF_FLAG_FD_CLOEXEC = 1 << 3
ATTR_WATERMARK = 1 << 14
PERF_RECORD_LOST, PERF_RECORD_SAMPLE = 2, 9
DATA_HEAD, DATA_TAIL = 1024, 1032  # offsets in struct perf_event_mmap_page

_libc = ct.CDLL(None, use_errno=True)
_libc.syscall.restype = ct.c_long


class _PerfAttr(ct.Structure):
    _fields_ = [("type", ct.c_uint32), ("size", ct.c_uint32), ("config", ct.c_uint64),
                ("sample_period", ct.c_uint64), ("sample_type", ct.c_uint64),
                ("read_format", ct.c_uint64), ("flags", ct.c_uint64),
                ("wakeup", ct.c_uint32), ("bp_type", ct.c_uint32), ("rest", ct.c_uint64 * 12)]


def _round8(n: int) -> int:
    return (n + 7) & ~7


def open_output_event(cpu: int, wakeup_bytes: int) -> int:
    """perf_event_open(PERF_COUNT_SW_BPF_OUTPUT) on one CPU; its fd."""
    nr = _NR_PERF_EVENT_OPEN.get(platform.machine())
    if nr is None:
        raise OSError(f"perf_event_open syscall number unknown for {platform.machine()}")
    attr = _PerfAttr(type=PERF_TYPE_SOFTWARE, size=ct.sizeof(_PerfAttr),
                     config=PERF_COUNT_SW_BPF_OUTPUT, sample_period=1,
                     sample_type=PERF_SAMPLE_RAW, flags=ATTR_WATERMARK, wakeup=wakeup_bytes)
    fd = _libc.syscall(nr, ct.byref(attr), -1, cpu, -1, PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        err = ct.get_errno()
        raise OSError(err, f"perf_event_open on CPU {cpu}: {os.strerror(err)}")
    return int(fd)


class CpuBuffer:
    """One CPU's perf ring."""

    def __init__(self, cpu: int, pages: int) -> None:
        self.cpu = cpu
        self.size = pages * mmap.PAGESIZE
        self.fd = open_output_event(cpu, self.size // 4)
        try:
            self._map = mmap.mmap(self.fd, mmap.PAGESIZE + self.size, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError:
            os.close(self.fd)
            raise
        self._meta = np.frombuffer(self._map, np.uint64, count=DATA_TAIL // 8 + 1)
        self._ring = np.frombuffer(self._map, np.uint8, offset=mmap.PAGESIZE, count=self.size)

    def pending(self) -> int:
        return int(self._meta[DATA_HEAD // 8]) - int(self._meta[DATA_TAIL // 8])

    def consume(self, size: int) -> tuple[np.ndarray, int]:
        """Raw payloads (n, size) of the samples in the ring and the lost-event count."""
        head = int(self._meta[DATA_HEAD // 8])
        tail = int(self._meta[DATA_TAIL // 8])
        if head == tail:
            return np.zeros((0, size), np.uint8), 0
        start, length = tail % self.size, head - tail
        if start + length <= self.size:
            data = self._ring[start:start + length].copy()
        else:
            first = self.size - start
            data = np.concatenate([self._ring[start:], self._ring[:length - first]])
        self._meta[DATA_TAIL // 8] = head
        return parse(data, size)

    def close(self) -> None:
        del self._meta, self._ring
        self._map.close()
        os.close(self.fd)


def parse(data: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    """Samples and lost counts out of a contiguous run of perf records."""
    stride = 8 + _round8(size + 4)
    parts: list[np.ndarray] = []
    lost = 0
    pos, end = 0, len(data)
    while pos + 8 <= end:
        n = (end - pos) // stride
        if n:
            block = data[pos:pos + n * stride].reshape(n, stride)
            kind = block[:, :4].copy().view(np.uint32).ravel()
            rsize = block[:, 6:8].copy().view(np.uint16).ravel()
            bad = np.flatnonzero((kind != PERF_RECORD_SAMPLE) | (rsize != stride))
            k = int(bad[0]) if len(bad) else n
            if k:
                parts.append(block[:k, 12:12 + size])
                pos += k * stride
                continue
        kind1 = int(data[pos:pos + 4].view(np.uint32)[0])
        rec = int(data[pos + 6:pos + 8].view(np.uint16)[0])
        if rec < 8:
            break
        if kind1 == PERF_RECORD_LOST:
            lost += int(data[pos + 16:pos + 24].view(np.uint64)[0])
        elif kind1 == PERF_RECORD_SAMPLE:
            raw = int(data[pos + 8:pos + 12].view(np.uint32)[0])
            row = np.zeros((1, size), np.uint8)
            take = min(raw, size)
            row[0, :take] = data[pos + 12:pos + 12 + take]
            parts.append(row)
        pos += rec
    if not parts:
        return np.zeros((0, size), np.uint8), lost
    return (parts[0] if len(parts) == 1 else np.concatenate(parts)), lost


class PerfBuffers:
    """Perf buffers on every CPU, installed in a PERF_EVENT_ARRAY map (slot = CPU)."""

    def __init__(self, cpus: list[int], pages: int = 64) -> None:
        self.buffers: list[CpuBuffer] = []
        try:
            for cpu in cpus:
                self.buffers.append(CpuBuffer(cpu, pages))
        except OSError:
            self.close()
            raise
        self._poll = select.epoll()
        for b in self.buffers:
            self._poll.register(b.fd, select.EPOLLIN)

    def wait(self, timeout: float) -> bool:
        if any(b.pending() for b in self.buffers):
            return True
        return bool(self._poll.poll(max(timeout, 0.0)))

    def consume(self, size: int) -> tuple[list[tuple[int, np.ndarray]], int]:
        """[(cpu, payloads)], lost."""
        out, lost = [], 0
        for b in self.buffers:
            rows, n_lost = b.consume(size)
            lost += n_lost
            if len(rows):
                out.append((b.cpu, rows))
        return out, lost

    def close(self) -> None:
        if hasattr(self, "_poll"):
            self._poll.close()
        for b in self.buffers:
            b.close()
        self.buffers = []
