"""MapView: one BPF map as DataFrames, histograms and info."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from . import bpfsys, frames
from .errors import ProgramClosedError
from .layout import dtype_of
from .mapread import MapReader, Snapshot

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

    @classmethod
    def from_fd(cls, fd: int, name: str | None = None) -> MapInfo:
        raw = bpfsys.map_info(fd)
        try:
            tname = bpfsys.MapType(raw.type).name
        except ValueError:
            tname = f"UNKNOWN({raw.type})"
        return cls(name or raw.name.decode(), tname, raw.key_size, raw.value_size,
                   raw.max_entries, raw.id, raw.map_flags)


class MapView:
    """A live view of one map. Reading costs one batch syscall per chunk, no per-key work."""

    def __init__(self, name: str, fd: int, key_type: Any, value_type: Any,
                 owner: Callable[[], bool] | None = None) -> None:
        self.name = name
        self._fd = fd
        self.key_type = key_type
        self.value_type = value_type
        self.info = MapInfo.from_fd(fd, name)
        self.key_dtype = dtype_of(key_type) if key_type is not None else np.dtype("V0")
        self.value_dtype = dtype_of(value_type)
        self._alive = owner or (lambda: True)
        self._reader: MapReader | None = None

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
        if self._reader is None:
            i = self.info
            self._reader = MapReader(self._fd, self.type, self.key_dtype, self.value_dtype,
                                     i.max_entries, i.flags)
        return self._reader

    def release(self) -> None:
        """Free read buffers and mappings (called when the program closes)."""
        if self._reader is not None:
            self._reader.release()
            self._reader = None

    def __repr__(self) -> str:
        i = self.info
        return (f"<MapView {self.name}: {i.type} key {i.key_size}B value {i.value_size}B "
                f"max_entries {i.max_entries} id {i.id}>")

    def __len__(self) -> int:
        """Entries in the map. Arrays: max_entries; others: one batch read, no key walk."""
        if self.type in _COUNTLESS:
            return self.info.max_entries
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
        i = self.info
        return {"map": self.name, "type": i.type, "read_ns": snap.time_ns,
                "read_duration_ns": snap.duration_ns, "entries": entries,
                "max_entries": i.max_entries,
                "fill": entries / i.max_entries if i.max_entries else 0.0,
                "read_method": snap.method}

    def df(self, per_cpu: bool = False) -> pd.DataFrame:
        """The map as a DataFrame (see DESIGN.md for shape rules). Per-CPU values are summed
        unless `per_cpu=True`, which gives one row per (key, cpu)."""
        snap = self.read()
        cpus = bpfsys.possible_cpus() if self.per_cpu else None
        return frames.frame(snap.keys, snap.values, self.attrs(snap, len(snap.keys)),
                            per_cpu=per_cpu and self.per_cpu, cpus=cpus)

    def hist(self, linear: int | None = None, value: str | None = None) -> pd.DataFrame:
        """Histogram buckets (`low`, `high`, `count`), as bcc's print_log2_hist prints them;
        `linear=STEP` for linear histograms. A struct key's non-slot fields become columns."""
        return frames.hist_frame(self.df(), linear=linear, value=value)

    def wait_for(self, predicate: Callable[[pd.DataFrame], bool], timeout: float = 5.0,
                 every: float = 0.05) -> pd.DataFrame:
        """Poll df() until predicate(df) holds or timeout passes; return the last df."""
        deadline = time.monotonic() + timeout
        df = self.df()
        while not predicate(df) and time.monotonic() < deadline:
            time.sleep(every)
            df = self.df()
        return df
