"""QUEUE (FIFO) and STACK (LIFO): values without keys. Reading one removes it (pop); the
kernel offers no way to list the elements without draining them, only `peek` at the next.

df() is therefore the non-destructive view the kernel allows: the next element (peek), at
most one row. `drain()` pops everything into a DataFrame (and empties the map).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bpfnb._sys import bpfsys
from bpfnb.data import frames
from bpfnb.errors import KeyNotFoundError, UnsupportedMapError
from bpfnb.map.kinds import Kind, register

NOTE = ("queues and stacks cannot be read without removing elements: df() shows only the "
        "next one (peek); drain() pops them all")


def _values(view: Any, limit: int, take: str) -> np.ndarray:
    """Up to `limit` values by peek (1) or pop (all), as a numpy array of the value type."""
    ops = view.ops
    out = []
    for _ in range(limit):
        buf = ops.value_buffer()
        try:
            ops.call(ops.ctx(take), _CALLS[take], None, buf)
        except KeyNotFoundError:
            break
        out.append(buf)
    return np.concatenate(out) if out else np.zeros(0, view.value_dtype)


_CALLS = {"peek": bpfsys.lookup, "pop": bpfsys.lookup_and_delete}


def _frame(view: Any, values: np.ndarray, note: str) -> pd.DataFrame:
    order = np.arange(len(values), dtype=np.uint32)
    cols, _, vcols = frames.columns(order, values)
    cols.pop("key", None)
    df = pd.DataFrame({"order": order, **cols})
    i = view.info
    df.attrs.update(map=view.name, type=i.type, entries=len(df), max_entries=i.max_entries,
                    key_columns=["order"], value_columns=vcols, note=note)
    return df


def frame(view: Any, per_cpu: bool) -> pd.DataFrame:
    return _frame(view, _values(view, 1, "peek"), NOTE)


def drain(view: Any) -> pd.DataFrame:
    """Pop every element, in the order the map gives them (FIFO or LIFO)."""
    if view.type not in _CALLS_TYPES:
        raise UnsupportedMapError(f"drain works on QUEUE and STACK maps; map {view.name!r} is "
                                  f"{view.type.name}")
    return _frame(view, _values(view, max(view.info.max_entries, 1), "pop"),
                  "drained: these elements were removed from the map")


_CALLS_TYPES = (bpfsys.MapType.QUEUE, bpfsys.MapType.STACK)


def _length(view: Any) -> int:
    raise UnsupportedMapError(f"len() of {view.type.name} map {view.name!r} is unknown without "
                              "draining it; use drain() (destructive) or peek()")


register(Kind(frame=frame, length=_length, note=NOTE), *_CALLS_TYPES)
