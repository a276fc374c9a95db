"""Events from RINGBUF and PERF_EVENT_ARRAY maps as DataFrames, decoded in batches.

Records are cut out of the mmapped buffers as one (n, size) byte array and viewed through
the event struct's numpy dtype: no Python object per event. The struct comes from the
program (bcc knows the type passed to ringbuf_output/perf_submit) or from `event_type=`.

Lost events: perf buffers report them (PERF_RECORD_LOST). A ring buffer never tells the
reader; the program sees the failed ringbuf_output/reserve, so count drops there in a map
and pass it as `lost_map=` (df.attrs['lost'] then holds its total).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bpfnb._sys import bpfsys
from bpfnb._sys.perfbuf import PerfBuffers
from bpfnb._sys.ringbuf import RingBuffer
from bpfnb.data import progress
from bpfnb.data.layout import dtype_of, flatten
from bpfnb.errors import BpfnbError, UnsupportedMapError

if TYPE_CHECKING:
    from bpfnb.map.view import MapView

POLL_SLICE = 0.05  # seconds between checks when waiting for events


def event_dtype(view: MapView, event_type: Any = None) -> np.dtype:
    """numpy dtype of the events: `event_type` (ctypes type or dtype) or the program's."""
    if event_type is None:
        event_type = view.program_event_type()
    if isinstance(event_type, np.dtype):
        return event_type
    dtype = dtype_of(event_type)
    if dtype.itemsize == 0:
        raise BpfnbError(f"the events of {view.name!r} have no fields bcc could find; pass "
                         "event_type=<ctypes struct> matching the C struct")
    return dtype


class EventReader:
    """Reads one event map in batches; owns the buffers (closed with the view)."""

    def __init__(self, view: MapView, dtype: np.dtype) -> None:
        self.view = view
        self.dtype = dtype
        self.lost_total = 0
        self.discarded = 0
        self._pending: list[pd.DataFrame] = []

    # subclasses: poll/take/close
    def wait(self, timeout: float) -> bool:
        raise NotImplementedError

    def take(self) -> tuple[pd.DataFrame, int]:
        """Every record available now as a DataFrame, and events lost since last time."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def frame(self, raw: np.ndarray, extra: dict[str, np.ndarray] | None = None
              ) -> pd.DataFrame:
        """(n, size) payload bytes -> DataFrame through the event dtype (vectorized)."""
        values = np.ascontiguousarray(raw).view(self.dtype).reshape(len(raw))
        cols = flatten(values, "" if self.dtype.names is not None else "value")
        return pd.DataFrame({**(extra or {}), **cols}, copy=False)

    def read(self, duration: float | None = 1.0, max_events: int | None = None,
             lost_map: MapView | None = None,
             on_batch: Callable[[pd.DataFrame], None] | None = None) -> pd.DataFrame:
        """Events for `duration` seconds or until `max_events` (both None: what is there)."""
        start = time.monotonic()
        deadline = None if duration is None else start + duration
        if duration is None and max_events is None:
            deadline = start
        frames = list(self._pending)
        self._pending = []
        count = sum(len(f) for f in frames)
        lost = 0
        # a long read shows progress; Ctrl-C ends it with the events read so far
        shown = progress.reporter(f"events {self.view.name}", duration, "events") \
            if duration is not None and duration > 1.0 else None
        interrupted = False
        try:
            while max_events is None or count < max_events:
                now = time.monotonic()
                if shown is not None:
                    shown.update(now - start, count)
                if deadline is not None and now >= deadline and count:
                    break
                wait = POLL_SLICE if deadline is None else min(POLL_SLICE,
                                                               max(deadline - now, 0))
                self.wait(wait)
                df, n_lost = self.take()
                lost += n_lost
                if len(df):
                    frames.append(df)
                    count += len(df)
                    if on_batch is not None:
                        on_batch(df)
                if deadline is not None and time.monotonic() >= deadline:
                    break
            if shown is not None:
                shown.update(time.monotonic() - start, count)
        except KeyboardInterrupt:
            if shown is None:
                raise
            interrupted = True
        finally:
            if shown is not None:
                shown.close(interrupted)
        out = pd.concat(frames, ignore_index=True) if frames else self.frame(
            np.zeros((0, self.dtype.itemsize), np.uint8))
        if max_events is not None and len(out) > max_events:
            self._pending = [out.iloc[max_events:].reset_index(drop=True)]
            out = out.iloc[:max_events].reset_index(drop=True)
        self.lost_total += lost
        elapsed = time.monotonic() - start
        out.attrs.update(map=self.view.name, type=self.view.info.type, events=len(out),
                         seconds=elapsed, rate=len(out) / elapsed if elapsed else 0.0,
                         lost=self._lost(lost, lost_map), discarded=self.discarded)
        return out

    def _lost(self, lost: int, lost_map: MapView | None) -> int | None:
        if lost_map is not None:
            total = lost_map.plain_df()
            cols = total.attrs.get("value_columns", ["value"])
            return int(total[cols[0]].sum()) if len(total) else 0
        return lost if self.view.type == bpfsys.MapType.PERF_EVENT_ARRAY else None


class RingReader(EventReader):
    def __init__(self, view: MapView, dtype: np.dtype) -> None:
        super().__init__(view, dtype)
        self.ring = RingBuffer(view.fd, view.info.max_entries)

    def wait(self, timeout: float) -> bool:
        return self.ring.wait(timeout)

    def take(self) -> tuple[pd.DataFrame, int]:
        raw, discarded = self.ring.consume(self.dtype.itemsize)
        self.discarded += discarded
        return self.frame(raw), 0

    def close(self) -> None:
        self.ring.close()


class PerfReader(EventReader):
    def __init__(self, view: MapView, dtype: np.dtype, pages: int = 64) -> None:
        super().__init__(view, dtype)
        cpus = [c for c in bpfsys.possible_cpus() if c < view.info.max_entries]
        self.buffers = PerfBuffers(cpus, pages)
        try:
            for b in self.buffers.buffers:  # slot = CPU: bpf_perf_event_output(BPF_F_CURRENT_CPU)
                view.update(b.cpu, b.fd)
        except BaseException:
            self.buffers.close()
            raise

    def wait(self, timeout: float) -> bool:
        return self.buffers.wait(timeout)

    def take(self) -> tuple[pd.DataFrame, int]:
        parts, lost = self.buffers.consume(self.dtype.itemsize)
        if not parts:
            return self.frame(np.zeros((0, self.dtype.itemsize), np.uint8)), lost
        raw = np.concatenate([p for _, p in parts]) if len(parts) > 1 else parts[0][1]
        cpu = np.concatenate([np.full(len(p), c, np.int32) for c, p in parts])
        return self.frame(raw, {"cpu": cpu}), lost

    def close(self) -> None:
        for b in self.buffers.buffers:
            with contextlib.suppress(Exception):  # the map may be gone with its program
                self.view.ops.call(self.view.ops.ctx("delete", b.cpu), bpfsys.delete,
                                   np.array([b.cpu], np.uint32))
        self.buffers.close()


_READERS: dict[bpfsys.MapType, Callable[[MapView, np.dtype], EventReader]] = {
    bpfsys.MapType.RINGBUF: RingReader,
    bpfsys.MapType.PERF_EVENT_ARRAY: PerfReader,
}


def open_reader(view: MapView, event_type: Any = None) -> EventReader:
    make = _READERS.get(view.type)
    if make is None:
        raise UnsupportedMapError(f"events() reads RINGBUF and PERF_EVENT_ARRAY maps; "
                                  f"{view.name!r} is {view.type.name}")
    return make(view, event_dtype(view, event_type))
