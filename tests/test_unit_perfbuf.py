"""Perf buffer parsing (`perfbuf.drain`, `perfbuf.parse`) over synthetic rings laid out like
the kernel's: a header page whose data_head/data_tail (offsets 1024/1032) delimit records
in the data pages, PERF_RECORD_SAMPLE records holding a u32-sized raw payload padded to 8,
PERF_RECORD_LOST records counting dropped samples, wrapping around the end of the pages."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from bpfnb._sys.perfbuf import DATA_HEAD, DATA_TAIL, PERF_RECORD_LOST, PERF_RECORD_SAMPLE, drain

PAGE, PAGES = 4096, 2
SIZE = PAGE * PAGES


class PerfRing:
    """The kernel side of one CPU's perf ring."""

    def __init__(self, start: int = 0) -> None:
        self.meta = np.zeros(PAGE // 8, np.uint64)
        self.ring = np.zeros(SIZE, np.uint8)
        self.meta[DATA_HEAD // 8] = self.meta[DATA_TAIL // 8] = start

    def _write(self, rec: bytes) -> None:
        head = int(self.meta[DATA_HEAD // 8])
        self.ring[(head + np.arange(len(rec))) % SIZE] = np.frombuffer(rec, np.uint8)
        self.meta[DATA_HEAD // 8] = head + len(rec)

    def sample(self, raw: bytes) -> None:
        padded = (len(raw) + 4 + 7) & ~7          # u32 size + raw data, 8-byte aligned
        body = struct.pack("<I", padded - 4) + raw.ljust(padded - 4, b"\0")
        self._write(struct.pack("<IHH", PERF_RECORD_SAMPLE, 0, 8 + len(body)) + body)

    def lost(self, n: int) -> None:
        self._write(struct.pack("<IHHQQ", PERF_RECORD_LOST, 0, 24, 1, n))

    def drain(self, size: int) -> tuple[list[bytes], int]:
        rows, lost = drain(self.meta, self.ring, size)
        return [bytes(r) for r in rows], lost


def raw(i: int, n: int = 12) -> bytes:
    return bytes((3 * i + k) % 256 for k in range(n))


@pytest.mark.parametrize("start", [0, SIZE - 24, 3 * SIZE + 8], ids=str)
def test_samples_read_in_order_and_tail_moves_to_head(start: int) -> None:
    ring = PerfRing(start)
    for i in range(50):
        ring.sample(raw(i))
    assert ring.drain(12) == ([raw(i) for i in range(50)], 0)
    assert ring.meta[DATA_TAIL // 8] == ring.meta[DATA_HEAD // 8] == start + 50 * 24


def test_lost_records_are_summed_between_samples() -> None:
    ring = PerfRing()
    ring.sample(raw(0))
    ring.lost(5)
    ring.sample(raw(1))
    ring.lost(7)
    assert ring.drain(12) == ([raw(0), raw(1)], 12)


@pytest.mark.parametrize(("n", "expected"), [
    (4, raw(2, 4) + bytes(8)),          # a shorter sample: zero padded
    (40, raw(2, 12)),                   # a longer one: cut to the event size
], ids=["short", "long"])
def test_samples_of_another_size(n: int, expected: bytes) -> None:
    ring = PerfRing()
    ring.sample(raw(0))
    ring.sample(raw(2, n))
    ring.sample(raw(1))
    assert ring.drain(12) == ([raw(0), expected, raw(1)], 0)


def test_record_split_by_the_end_of_the_pages() -> None:
    ring = PerfRing(SIZE - 12)           # header and size before the end, payload after it
    ring.sample(raw(4, 20))
    assert ring.drain(20) == ([raw(4, 20)], 0)


def test_empty_ring_and_drained_twice() -> None:
    ring = PerfRing(128)
    assert ring.drain(8) == ([], 0)
    ring.sample(raw(1, 8))
    assert ring.drain(8) == ([raw(1, 8)], 0)
    assert ring.drain(8) == ([], 0)
