"""The symbol caches' file layout: a numpy header record (its first field the magic), then
arrays back to back, the last one usually the names' bytes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def pack(head: np.ndarray, *parts: np.ndarray | bytes) -> bytes:
    """One file: the header record, then each part's bytes."""
    return b"".join(p if isinstance(p, bytes) else p.tobytes() for p in (head, *parts))


def unpack(data: bytes, head: np.dtype, magic: bytes,
           layout: Callable[[np.void], list[tuple[str, int]]]
           ) -> tuple[np.void, list[np.ndarray]] | None:
    """What `pack` wrote: the header and the arrays `layout(header)` lists as (dtype, count),
    views of `data`; None if the magic is not `magic` or the length is not theirs."""
    if len(data) < head.itemsize:
        return None
    record = np.frombuffer(data, head, 1)[0]
    at = head.itemsize
    counts = [(np.dtype(dtype), int(count)) for dtype, count in layout(record)]
    if record[0] != magic or len(data) != at + sum(d.itemsize * n
                                                               for d, n in counts):
        return None
    arrays = []
    for dtype, count in counts:
        arrays.append(np.frombuffer(data, dtype, count, at))
        at += dtype.itemsize * count
    return record, arrays
