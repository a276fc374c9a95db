"""RINGBUF and PERF_EVENT_ARRAY: event streams, not tables. df() takes the events waiting
right now (it consumes them); view.events(duration=...) collects for a while. See
bpfnb.map.events for the decoding."""

from __future__ import annotations

from typing import Any

import pandas as pd

from bpfnb._sys import bpfsys
from bpfnb.errors import UnsupportedMapError
from bpfnb.map.kinds import Kind, register

NOTE = "event maps are streams: df() consumes the events waiting now; use events(duration=)"


def frame(view: Any, per_cpu: bool) -> pd.DataFrame:
    df: pd.DataFrame = view.events(duration=None)
    df.attrs["note"] = NOTE
    return df


def _length(view: Any) -> int:
    raise UnsupportedMapError(f"{view.type.name} map {view.name!r} is a stream with no "
                              "entries to count; read it with events(duration=...)")


def _remember(view: Any, key: Any, value: Any) -> None:
    view.shadow[int(key)] = value


register(Kind(frame=frame, length=_length, on_update=_remember, note=NOTE),
         bpfsys.MapType.RINGBUF, bpfsys.MapType.PERF_EVENT_ARRAY)
