"""MapView: one BPF map as DataFrames, histograms, info and element operations."""

from __future__ import annotations

import html
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bpfnb._sys import bpfsys
from bpfnb._sys.btf import prefer_btf
from bpfnb.data import frames
from bpfnb.data.layout import dtype_of
from bpfnb.data.mapread import MapReader, Snapshot
from bpfnb.errors import BpfnbError, ProgramClosedError
from bpfnb.map import events, pins
from bpfnb.map.kinds import mapinmap, queues
from bpfnb.map.ops import MapOps

if TYPE_CHECKING:
    from bpfnb.map.events import EventReader

_COUNTLESS = (bpfsys.MapType.ARRAY, bpfsys.MapType.PERCPU_ARRAY)


@dataclass(frozen=True)
class MapInfo:
    """What the kernel says about a map."""

    name: str
    type: str
    key_size: int
    value_size: int
    max_entries: int
    id: int
    flags: int

    def _repr_html_(self) -> str:
        shown = {**self.__dict__, "max_entries": f"{self.max_entries:,}",
                 "flags": hex(self.flags)}
        rows = "".join(f"<tr><th style='text-align:left'>{k.replace('_', ' ')}</th>"
                       f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
                       for k, v in shown.items())
        return f"<table>{rows}</table>"

    @classmethod
    def from_fd(cls, fd: int, name: str | None = None) -> MapInfo:
        raw = bpfsys.map_info(fd)
        try:
            tname = bpfsys.MapType(raw.type).name
        except ValueError:
            tname = f"UNKNOWN({raw.type})"
        return cls(name or raw.name.decode(), tname, raw.key_size, raw.value_size,
                   raw.max_entries, raw.id, raw.map_flags)


def snapshot_attrs(name: str, info: MapInfo, snap: Snapshot, entries: int) -> dict[str, Any]:
    """The `df.attrs` of a map read: where it came from, when, and how full the map is."""
    return {"map": name, "type": info.type, "read_ns": snap.time_ns,
            "read_duration_ns": snap.duration_ns, "entries": entries,
            "max_entries": info.max_entries,
            "fill": entries / info.max_entries if info.max_entries else 0.0,
            "read_method": snap.method}


class MapView:
    """A live view of one map. Reading costs one batch syscall per chunk, no per-key work."""

    def __init__(self, name: str, fd: int, key_type: Any, value_type: Any,
                 owner: Callable[[], bool] | None = None, btf: bool = True,
                 event_type: Callable[[], Any] | None = None) -> None:
        self.name = name
        self._fd = fd
        #: why the map cannot be read (its types do not fit its sizes), raised on read
        self.layout_error: BpfnbError | None = None
        self.type_notes: list[str] = []
        if btf:  # the map's own BTF is the one type system; bcc's ctypes the fallback
            try:
                key_type, value_type, self.type_notes = prefer_btf(fd, key_type, value_type)
            except BpfnbError as e:
                self.layout_error = e
        self.key_type = key_type
        self.value_type = value_type
        self.info = MapInfo.from_fd(fd, name)
        self.key_dtype = dtype_of(key_type) if key_type is not None else np.dtype("V0")
        self.value_dtype = dtype_of(value_type)
        self._alive = owner or (lambda: True)
        self._event_type = event_type
        self._reader: MapReader | None = None
        self._ops: MapOps | None = None
        self._events: EventReader | None = None
        #: what Python stored in slots the kernel will not read back (cgroup/perf/xsk arrays)
        self.shadow: dict[Any, Any] = {}
        self._closers: list[Callable[[], None]] = []
        _BY_ID[self.info.id] = self

    # -- basics -----------------------------------------------------------------------
    @property
    def fd(self) -> int:
        self._check()
        return self._fd

    @property
    def type(self) -> bpfsys.MapType:
        return bpfsys.MapType[self.info.type]

    @property
    def per_cpu(self) -> bool:
        return self.type in bpfsys.PERCPU_TYPES

    def _check(self) -> None:
        if not self._alive():
            raise ProgramClosedError(
                f"map {self.name!r} belongs to a closed program; run its cell (or load) again")

    @property
    def reader(self) -> MapReader:
        self._check()
        if self.layout_error is not None:
            raise self.layout_error
        if self._reader is None:
            i = self.info
            self._reader = MapReader(self._fd, self.type, self.key_dtype, self.value_dtype,
                                     i.max_entries, i.flags)
        return self._reader

    @property
    def ops(self) -> MapOps:
        """Element operations (codecs built on first use)."""
        self._check()
        if self._ops is None:
            self._ops = MapOps(self)
        return self._ops

    def on_release(self, closer: Callable[[], None]) -> None:
        """Run `closer` when the view is released (fds this view opened, event readers)."""
        self._closers.append(closer)

    def release(self) -> None:
        """Free read buffers, mappings and event readers (called when the program closes)."""
        if self._reader is not None:
            self._reader.release()
            self._reader = None
        if self._events is not None:
            self._events.close()
            self._events = None
        while self._closers:
            self._closers.pop()()

    def __repr__(self) -> str:
        i = self.info
        return (f"<MapView {self.name}: {i.type} key {i.key_size}B value {i.value_size}B "
                f"max_entries {i.max_entries} id {i.id}>")

    def __len__(self) -> int:
        """Entries in the map. Arrays: max_entries; others: one batch read, no key walk."""
        if self.type in _COUNTLESS:
            return self.info.max_entries
        kind = self.ops.kind
        if kind.length is not None:
            return kind.length(self)
        return len(self.read().keys)

    # -- reading ----------------------------------------------------------------------
    def read(self) -> Snapshot:
        """Raw snapshot: numpy keys and values (arrays are reused by the next read)."""
        return self.reader.read()

    def values(self) -> np.ndarray:
        """An mmapable array's values as a zero-copy numpy view; otherwise a fresh copy."""
        reader = self.reader
        if reader.mmapable:
            return reader.mmap_values().reshape(self.info.max_entries)
        return np.array(reader.read().values)

    def attrs(self, snap: Snapshot, entries: int) -> dict[str, Any]:
        return snapshot_attrs(self.name, self.info, snap, entries)

    def df(self, per_cpu: bool = False) -> pd.DataFrame:
        """The map as a DataFrame (see DESIGN.md for shape rules). Per-CPU values are summed
        unless `per_cpu=True`, which gives one row per (key, cpu). Map types with more to
        say (LPM tries, program arrays, maps of maps, cgroup, device and socket maps,
        stack traces, queues) get columns of their own; see `bpfnb.maptypes`."""
        kind = self.ops.kind
        if kind.frame is not None:
            return kind.frame(self, per_cpu)
        return self.plain_df(per_cpu)

    def plain_df(self, per_cpu: bool = False) -> pd.DataFrame:
        """df() without the map type's extra columns: the raw keys and values."""
        snap = self.read()
        cpus = bpfsys.possible_cpus() if self.per_cpu else None
        df = frames.frame(snap.keys, snap.values, self.attrs(snap, len(snap.keys)),
                          per_cpu=per_cpu and self.per_cpu, cpus=cpus)
        return drop_hidden(df, self.ops.value.hidden)

    def hist(self, linear: int | None = None, value: str | None = None) -> pd.DataFrame:
        """Histogram buckets (`low`, `high`, `count`), as bcc's print_log2_hist prints them;
        `linear=STEP` for linear histograms. A struct key's non-slot fields become columns."""
        return frames.hist_frame(self.df(), linear=linear, value=value)

    def pin(self, path: str) -> str:
        """Pin this map on the bpf file system (bpfnb.unpin(path) removes it)."""
        return pins.pin(self, path)

    def live(self, every: float = 1.0, top: int = 20, **options: Any) -> Any:
        """A live-refreshing widget (table + plot) of this map; see bpfnb.live.widgets.live_view.
        Needs ipywidgets (`pip install 'bpfnb[lab]'`)."""
        from bpfnb.live.widgets import live_view

        return live_view(self, every=every, top=top, **options)

    # -- element operations -------------------------------------------------------------
    def lookup(self, key: Any = None, lock: bool = False, per_cpu: bool = False) -> Any:
        """The value of `key`: an int/float/str, or a dict named like df()'s columns.
        `lock=True` reads under the value's bpf_spin_lock (BPF_F_LOCK); `per_cpu=True`
        gives a per-CPU map's values as a list (else they are summed, as in df())."""
        return self.ops.lookup(key, lock=lock, per_cpu=per_cpu)

    def update(self, key: Any, value: Any, flags: str = "any", lock: bool = False) -> None:
        """Store `value` at `key`. flags: 'any' (insert or replace), 'noexist' (insert
        only: KeyExistsError), 'exist' (replace only: KeyNotFoundError). A full map raises
        MapFullError. `lock=True` writes under the value's bpf_spin_lock."""
        self.ops.update(key, value, flags=flags, lock=lock)

    def delete(self, key: Any) -> None:
        """Remove `key` (KeyNotFoundError if absent; arrays cannot delete)."""
        self.ops.delete(key)

    def keys(self) -> list[Any]:
        """Every key, walked with BPF_MAP_GET_NEXT_KEY."""
        return self.ops.keys()

    def pop(self, key: Any = None) -> Any:
        """Look up and delete in one step: a key's value, or a queue's/stack's next value."""
        return self.ops.pop(key)

    def push(self, value: Any, overwrite: bool = False) -> None:
        """Add to a QUEUE/STACK; when full, MapFullError unless overwrite drops the oldest."""
        self.ops.push(value, overwrite=overwrite)

    def peek(self) -> Any:
        """A QUEUE's/STACK's next value, left in place (KeyNotFoundError when empty)."""
        return self.ops.peek()

    def update_df(self, df: pd.DataFrame, flags: str = "any", lock: bool = False) -> int:
        """Write a df()-shaped DataFrame's rows in one BPF_MAP_UPDATE_BATCH call (per element
        where the kernel has no batch op); returns the elements written. Per-CPU maps: a `cpu`
        column sets each CPU, otherwise the value goes to CPU 0 (so df() sums back to it)."""
        ops = self.ops
        keys, values = ops.frame_arrays(df)
        return ops.update_many(keys, values, flags=flags, lock=lock)

    def delete_keys(self, keys: Iterable[Any] | pd.DataFrame, missing_ok: bool = False) -> int:
        """Delete many keys (a list, a DataFrame with the key columns, or a key array) with
        BPF_MAP_DELETE_BATCH; returns how many were deleted."""
        ops = self.ops
        return ops.delete_many(ops.keys_array(keys), missing_ok=missing_ok)

    def __getitem__(self, key: Any) -> Any:
        return self.lookup(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.update(key, value)

    def __delitem__(self, key: Any) -> None:
        self.delete(key)

    def __contains__(self, key: object) -> bool:
        return self.ops.contains(key)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    # -- map types with operations of their own -----------------------------------------
    def inner(self, key: Any) -> MapView:
        """ARRAY_OF_MAPS / HASH_OF_MAPS: the inner map stored at `key`, as a MapView: the
        program's own view of it when there is one, otherwise a view opened by id (types
        from the map's sizes), closed with this view."""
        map_id = int(self.lookup(key))
        known = view_by_id(map_id)
        if known is not None:
            return known
        inner = mapinmap.open_inner(map_id)
        child = MapView(inner.name, inner.fd, inner.key_type, inner.value_type,
                        owner=self._alive)
        self.on_release(inner.close)
        self.on_release(child.release)  # closers run last-in first: the view, then its fd
        return child

    def drain(self) -> pd.DataFrame:
        """QUEUE / STACK: pop every element (destructive), in pop order, as a DataFrame."""
        return queues.drain(self)

    def events(self, duration: float | None = 1.0, max_events: int | None = None,
               event_type: Any = None, lost_map: MapView | None = None) -> pd.DataFrame:
        """RINGBUF / PERF_EVENT_ARRAY: events submitted during `duration` seconds (or until
        `max_events`; both None: those waiting now), decoded in batches into one row per
        event. df.attrs['lost']: events the kernel dropped (perf buffers report them; for a
        ring buffer, the total of `lost_map`, a map where the program counts failed
        outputs). `event_type` overrides the C struct bcc found (a ctypes struct)."""
        return self.event_reader(event_type).read(duration=duration, max_events=max_events,
                                                  lost_map=lost_map)

    def event_reader(self, event_type: Any = None) -> EventReader:
        """The view's event reader (opened on first use, closed on release)."""
        self._check()
        if self._events is None:
            self._events = events.open_reader(self, event_type)
        return self._events

    def program_event_type(self) -> Any:
        """The ctypes struct the owning program sends to this event map (bcc derives it from
        its ringbuf_output/perf_submit calls); BpfnbError if no program says."""
        if self._event_type is None:
            raise BpfnbError(f"map {self.name!r} belongs to no open program; pass event_type=")
        self._check()
        return self._event_type()


def drop_hidden(df: pd.DataFrame, hidden: frozenset[str]) -> pd.DataFrame:
    """Leave out kernel-owned value fields (bpf_spin_lock): always 0 when read."""
    if not hidden:
        return df
    gone = [c for c in df.attrs.get("value_columns", []) if c.split(".")[0] in hidden]
    if not gone:
        return df
    out = df.drop(columns=gone)
    out.attrs = dict(df.attrs)
    out.attrs["value_columns"] = [c for c in df.attrs["value_columns"] if c not in gone]
    return out


_BY_ID: weakref.WeakValueDictionary[int, MapView] = weakref.WeakValueDictionary()


def view_by_id(map_id: int) -> MapView | None:
    """A live MapView of the map with this kernel id, if one exists in this process."""
    view = _BY_ID.get(map_id)
    if view is None or not view._alive():
        return None
    return view
