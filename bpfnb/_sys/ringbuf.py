"""BPF ring buffer consumer over mmap: records are cut out of the buffer with numpy, not one
Python call per event.

Layout (kernel ABI): page 0 holds the consumer position (we write it); page 1 the producer
position; the data area follows and is mapped twice in a row, so a record that wraps is
still contiguous. Each record: u32 length (bit 31 busy, bit 30 discarded), u32 page offset,
then the payload, padded to 8 bytes.
"""

from __future__ import annotations

import mmap
import select

import numpy as np

from bpfnb._sys.records import one_row, round8, stacked

BUSY = 1 << 31
DISCARD = 1 << 30
HDR = 8


class RingBuffer:
    """Consumer side of one BPF_MAP_TYPE_RINGBUF map."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self.mask = size - 1
        page = mmap.PAGESIZE
        self._cons_map = mmap.mmap(fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._data_map = mmap.mmap(fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ,
                                   offset=page)
        self._cons = np.frombuffer(self._cons_map, np.uint64, count=1)
        self._prod = np.frombuffer(self._data_map, np.uint64, count=1)
        self._data = np.frombuffer(self._data_map, np.uint8, offset=page, count=2 * size)
        self._poll = select.epoll()
        self._poll.register(fd, select.EPOLLIN)

    def wait(self, timeout: float) -> bool:
        """Block until the producer is ahead of us (or timeout seconds pass)."""
        if self.pending():
            return True
        return bool(self._poll.poll(max(timeout, 0.0)))

    def pending(self) -> int:
        return int(self._prod[0]) - int(self._cons[0])

    def consume(self, size: int, limit: int | None = None) -> tuple[np.ndarray, int]:
        """Committed records as an (n, size) uint8 array of payloads (shorter ones zero
        padded, longer cut), and how many discarded records were skipped."""
        return drain(self._cons, self._prod, self._data, size, limit)

    def close(self) -> None:
        self._poll.close()
        del self._cons, self._prod, self._data
        self._cons_map.close()
        self._data_map.close()


def drain(cons: np.ndarray, prod: np.ndarray, data: np.ndarray, size: int,
          limit: int | None = None) -> tuple[np.ndarray, int]:
    """RingBuffer.consume over plain arrays: `cons`/`prod` hold the positions (one uint64
    each; cons is advanced), `data` the data area mapped twice in a row (2 * ring size)."""
    parts: list[np.ndarray] = []
    discarded = got = 0
    stride = round8(size + HDR)
    mask = len(data) // 2 - 1
    pos, end = int(cons[0]), int(prod[0])
    while pos < end and (limit is None or got < limit):
        off = pos & mask
        region = data[off:off + (end - pos)]
        n = len(region) // stride
        if limit is not None:
            n = min(n, limit - got)
        if n:  # the common case: a run of records of the event's size
            block = region[:n * stride].reshape(n, stride)
            lens = block[:, :4].copy().view(np.uint32).ravel()
            bad = np.flatnonzero(lens != size)
            k = int(bad[0]) if len(bad) else n
            if k:
                parts.append(block[:k, HDR:HDR + size].copy())
                got += k
                pos += k * stride
                continue
        # one record that is busy, discarded or of another size
        length = int(region[:4].view(np.uint32)[0])
        if length & BUSY:
            break
        real = length & ~(BUSY | DISCARD)
        if length & DISCARD:
            discarded += 1
        else:
            parts.append(one_row(region[HDR:HDR + min(real, size)], size))
            got += 1
        pos += round8(real + HDR)
    cons[0] = pos  # hand the space back to the producer
    return stacked(parts, size), discarded
