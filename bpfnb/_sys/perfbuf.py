"""Per-CPU perf buffers for a PERF_EVENT_ARRAY map: one BPF-output perf event per CPU, its
ring mmapped and parsed with numpy (sample runs cut out in one step), lost records counted.
"""

from __future__ import annotations

import mmap
import os
import select

import numpy as np

from bpfnb._sys.perfevent import PerfEventAttr, open_event
from bpfnb._sys.records import one_row, round8, stacked

PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_BPF_OUTPUT = 10
PERF_SAMPLE_RAW = 1 << 10
ATTR_WATERMARK = 1 << 14
PERF_RECORD_LOST, PERF_RECORD_SAMPLE = 2, 9
DATA_HEAD, DATA_TAIL = 1024, 1032  # offsets in struct perf_event_mmap_page


def open_output_event(cpu: int, wakeup_bytes: int) -> int:
    """perf_event_open(PERF_COUNT_SW_BPF_OUTPUT) on one CPU; its fd."""
    attr = PerfEventAttr(type=PERF_TYPE_SOFTWARE, config=PERF_COUNT_SW_BPF_OUTPUT,
                         sample_period=1, sample_type=PERF_SAMPLE_RAW, flags=ATTR_WATERMARK,
                         wakeup=wakeup_bytes)
    try:
        return open_event(attr, -1, cpu)
    except OSError as e:
        raise OSError(e.errno, f"perf_event_open on CPU {cpu}: {e.strerror}") from None


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
        return drain(self._meta, self._ring, size)

    def close(self) -> None:
        del self._meta, self._ring
        self._map.close()
        os.close(self.fd)


def drain(meta: np.ndarray, ring: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    """Samples (n, size) and lost count between data_tail and data_head of a perf ring, then
    data_tail moved to data_head. `meta` is the header page as uint64s, `ring` the data
    pages as uint8s (a power-of-two size; records wrap around its end)."""
    head = int(meta[DATA_HEAD // 8])
    tail = int(meta[DATA_TAIL // 8])
    if head == tail:
        return np.zeros((0, size), np.uint8), 0
    start, length = tail % len(ring), head - tail
    if start + length <= len(ring):
        data = ring[start:start + length].copy()
    else:
        first = len(ring) - start
        data = np.concatenate([ring[start:], ring[:length - first]])
    meta[DATA_TAIL // 8] = head
    return parse(data, size)


def parse(data: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    """Samples and lost counts out of a contiguous run of perf records."""
    stride = 8 + round8(size + 4)
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
            parts.append(one_row(data[pos + 12:pos + 12 + min(raw, size)], size))
        pos += rec
    return stacked(parts, size), lost


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
