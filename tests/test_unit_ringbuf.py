"""BPF ring buffer parsing (`ringbuf.drain`) over synthetic rings laid out like the kernel's:
a data area of 2**n bytes mapped twice in a row, records of [u32 len | busy/discard bits,
u32 page offset, payload padded to 8], consumer and producer positions that only grow."""

from __future__ import annotations

import numpy as np
import pytest

from bpfnb._sys.ringbuf import BUSY, DISCARD, HDR, drain

SIZE = 4096


class Ring:
    """A producer writing records the way bpf_ringbuf_reserve/commit/discard leave them."""

    def __init__(self, start: int = 0) -> None:
        self.area = np.zeros(SIZE, np.uint8)
        self.cons = np.array([start], np.uint64)
        self.prod = np.array([start], np.uint64)

    def put(self, payload: bytes, flags: int = 0) -> None:
        pos = int(self.prod[0])
        rec = np.zeros((len(payload) + HDR + 7) & ~7, np.uint8)
        rec[:4] = np.frombuffer((len(payload) | flags).to_bytes(4, "little"), np.uint8)
        rec[HDR:HDR + len(payload)] = np.frombuffer(payload, np.uint8)
        idx = (pos + np.arange(len(rec))) % SIZE        # wraps around the end of the area
        self.area[idx] = rec
        self.prod[0] = pos + len(rec)

    def data(self) -> np.ndarray:
        return np.concatenate([self.area, self.area])   # the double mapping

    def drain(self, size: int, limit: int | None = None) -> tuple[list[bytes], int]:
        rows, discarded = drain(self.cons, self.prod, self.data(), size, limit)
        return [bytes(r) for r in rows], discarded


def payload(i: int, n: int = 12) -> bytes:
    return bytes((i + k) % 256 for k in range(n))


@pytest.mark.parametrize("start", [0, 8, SIZE - 40, 5 * SIZE - 16], ids=str)
def test_run_of_records_read_in_order_and_consumed(start: int) -> None:
    ring = Ring(start)
    for i in range(20):
        ring.put(payload(i))
    rows, discarded = ring.drain(12)
    assert rows == [payload(i) for i in range(20)]
    assert discarded == 0
    assert int(ring.cons[0]) == int(ring.prod[0]) == start + 20 * 24


def test_discarded_records_are_skipped_and_counted() -> None:
    ring = Ring()
    ring.put(payload(0))
    ring.put(payload(1), DISCARD)
    ring.put(payload(2))
    ring.put(payload(3), DISCARD)
    assert ring.drain(12) == ([payload(0), payload(2)], 2)
    assert int(ring.cons[0]) == 4 * 24


def test_busy_record_stops_the_consumer_before_it() -> None:
    ring = Ring()
    ring.put(payload(0))
    ring.put(payload(1), BUSY)
    ring.put(payload(2))
    assert ring.drain(12) == ([payload(0)], 0)
    assert int(ring.cons[0]) == 24                       # the busy record stays for later


@pytest.mark.parametrize(("length", "expected"), [
    (4, payload(7, 4) + bytes(8)),        # shorter than the event: zero padded
    (20, payload(7, 12)),                 # longer: cut to the event size
], ids=["short", "long"])
def test_records_of_another_size(length: int, expected: bytes) -> None:
    ring = Ring()
    ring.put(payload(1))
    ring.put(payload(7, length))
    ring.put(payload(2))
    assert ring.drain(12) == ([payload(1), expected, payload(2)], 0)
    assert int(ring.cons[0]) == int(ring.prod[0])


def test_limit_leaves_the_rest_in_the_ring() -> None:
    ring = Ring()
    for i in range(10):
        ring.put(payload(i))
    assert ring.drain(12, limit=4) == ([payload(i) for i in range(4)], 0)
    assert ring.drain(12) == ([payload(i) for i in range(4, 10)], 0)


def test_record_split_by_the_end_of_the_area_reads_whole() -> None:
    ring = Ring(SIZE - 8)                 # header at the last 8 bytes, payload at the start
    ring.put(payload(9, 16))
    assert ring.area[:16].tobytes() == payload(9, 16)
    assert ring.drain(16) == ([payload(9, 16)], 0)


def test_empty_ring() -> None:
    ring = Ring(64)
    rows, discarded = drain(ring.cons, ring.prod, ring.data(), 12)
    assert rows.shape == (0, 12) and discarded == 0 and int(ring.cons[0]) == 64
