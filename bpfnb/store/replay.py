"""Replay a recording (see bpfnb.store.recording) with the Program API, no kernel needed.

>>> prog = bpfnb.replay("counts.bpfrec")
>>> prog["by_pid"].df()               # the last snapshot, same schema as live df()
>>> prog.seek(0); prog["by_pid"].df() # the first one; prog.step() moves on
>>> prog["by_pid"].live()             # steps through the snapshots on each refresh

Every view of a ReplayProgram shares the program's cursor (a snapshot number, the last
one at first). `view.df(at=i)` reads another snapshot without moving it.

Event maps (RINGBUF, PERF_EVENT_ARRAY): `view.events()` gives the events recorded in the
cursor's snapshot step (those that arrived since the previous snapshot), `events(all=True)`
every event recorded up to and including it; same columns and dtypes as live `events()`.

The read-only element helpers of a live MapView (`lookup`, `view[key]`, `key in view`,
`keys()`, iteration, `peek()`) answer from the cursor's snapshot with the live codecs, key
forms and errors; the write helpers raise ReplayError (a recording has no kernel map).
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Iterator
from html import escape
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd

from bpfnb._sys import bpfsys
from bpfnb._sys.errnos import OpContext, translate
from bpfnb.backends.base import AttachPoint
from bpfnb.data import frames, safezip
from bpfnb.data.arrow import decode_table, pyarrow_module
from bpfnb.data.codec import LOCK_TYPE_NAMES, Codec
from bpfnb.data.layout import is_padding
from bpfnb.data.mapread import Snapshot
from bpfnb.errors import (
    KeyNotFoundError,
    ProgramClosedError,
    ReplayError,
    UnknownMapError,
    UnsupportedMapError,
)
from bpfnb.map import kinds as maptypes
from bpfnb.map.completion import MapNameHints
from bpfnb.map.kinds.eventmaps import NOTE
from bpfnb.map.kinds.lpm import PREFIX_BYTES
from bpfnb.map.ops import MapOps
from bpfnb.map.view import MapInfo, snapshot_attrs
from bpfnb.profiler.stacks import Stacks
from bpfnb.program import events as program_events
from bpfnb.store import recmeta
from bpfnb.store.format import EVENT_MAPS, FORMAT, INDEX, META, SNAPSHOT, VERSION
from bpfnb.store.recmeta import dtype as _dtype

PathLike = Union[str, "os.PathLike[str]"]
_HINT = "record it again with bpfnb.record(prog, path)"


class _Store:
    """The file's tables, decoded on first use; one DataFrame per snapshot. Only meta.json
    is read at first, every entry through bpfnb.data.safezip (size limits) and checked."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.zip = safezip.open_zip(path, recover=True)
        except FileNotFoundError:
            raise ReplayError(f"no recording at {str(path)!r}; {_HINT}") from None
        except ReplayError as e:
            raise ReplayError(f"{str(path)!r} is not a bpfnb recording or is corrupt "
                              f"({e}); {_HINT}") from None
        try:
            head = safezip.read_json(self.zip, META, path)
            if isinstance(head, dict) and type(head.get("version")) is int and \
                    head["version"] >= 2:  # a save's additions are in index/NNNNNNNN.json
                names = sorted({n for n in self.zip.namelist()
                                if n.startswith(INDEX) and n.endswith(".json")})
                head = recmeta.merge(head, [safezip.read_json(self.zip, n, path)
                                            for n in names], path)
            self.meta: dict[str, Any] = recmeta.check(head, path, FORMAT, VERSION)
            if safezip.is_recovered(self.zip):  # cut in the middle of a save
                self.meta["interrupted"] = True
        except BaseException:
            self.zip.close()
            raise
        self._cache: dict[tuple[str, str], dict[int, pd.DataFrame]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.zip.close()

    def has(self, name: str, kind: str) -> bool:
        return kind in self.meta.get("tables", {}).get(name, {})

    def frames(self, name: str, kind: str) -> dict[int, pd.DataFrame]:
        """snapshot number -> DataFrame (with its recorded attrs) of one table."""
        with self._lock:
            if (name, kind) not in self._cache:
                self._cache[(name, kind)] = self._load(name, kind)
            return self._cache[(name, kind)]

    def _load(self, name: str, kind: str) -> dict[int, pd.DataFrame]:
        spec = self.meta["tables"][name][kind]
        out: dict[int, pd.DataFrame] = {}
        for part in spec["parts"]:
            table = safezip.read_parquet(self.zip, part["file"], self.path)
            try:
                snaps = table.column(SNAPSHOT).to_numpy()
                df = decode_table(table, part["columns"])
            except (KeyError, TypeError, ValueError, IndexError, AttributeError,
                    OverflowError, pyarrow_module().ArrowException) as e:
                raise ReplayError(f"recording {str(self.path)!r}: table {part['file']!r} does "
                                  f"not hold what meta.json says ({type(e).__name__}: {e}); "
                                  f"{_HINT}") from None
            order = np.argsort(snaps, kind="stable")
            bounds = np.searchsorted(snaps[order], part["snapshots"], side="left")
            ends = np.searchsorted(snaps[order], part["snapshots"], side="right")
            for s, lo, hi in zip(part["snapshots"], bounds, ends):
                piece = df.iloc[order[lo:hi]].reset_index(drop=True)
                piece.attrs = dict(spec.get("attrs", {}).get(str(s), {}))
                out[int(s)] = piece
        return out


class ReplayMapView:
    """One recorded map: df(), hist(), read() and live() at the program's cursor."""

    def __init__(self, prog: ReplayProgram, name: str, auto_step: bool = False,
                 loop: bool = False) -> None:
        meta = prog._store.meta["maps"][name]
        self.name = name
        self._prog = prog
        self._store = prog._store
        self.info = MapInfo(**meta["info"])
        self.per_cpu = bool(meta["per_cpu"])
        self.key_dtype = _dtype(meta["key_dtype"])
        self.value_dtype = _dtype(meta["value_dtype"])
        self.cpus: list[int] = list(prog._store.meta.get("cpus", []))
        self._meta = meta
        self._auto_step = auto_step
        self._loop = loop
        self._cursor: int | None = None  # players keep their own cursor
        self._ops: MapOps | None = None
        self._players: list[ReplayMapView] = []

    # -- basics -----------------------------------------------------------------------
    @property
    def type(self) -> bpfsys.MapType:
        return bpfsys.MapType[self.info.type]

    @property
    def fd(self) -> int:
        """-1: a recording has no kernel map (raises ProgramClosedError once closed)."""
        self._check()
        return -1

    @property
    def snapshots(self) -> pd.DataFrame:
        return self._prog.snapshots

    @property
    def cursor(self) -> int:
        return self._prog.cursor if self._cursor is None else self._cursor

    def _check(self) -> None:
        if self._prog.closed:
            raise ProgramClosedError(f"replayed map {self.name!r} belongs to a closed "
                                     "replay; call bpfnb.replay(path) again")

    def _at(self, at: int | None) -> int:
        self._check()
        n = len(self._prog._times)
        i = self.cursor if at is None else int(at)
        if not -n <= i < n:
            raise ReplayError(f"snapshot {at} is out of range: the recording has {n} "
                              f"(0..{n - 1})")
        i %= n
        error = self._store.meta.get("errors", {}).get(self.name, {}).get(str(i))
        if error:
            raise ReplayError(f"map {self.name!r} could not be read at snapshot {i} when "
                              f"recorded: {error}")
        return i

    def _frame(self, kind: str, i: int) -> pd.DataFrame:
        if not self._store.has(self.name, kind):
            raise ReplayError(f"the recording holds no {kind} frames of map {self.name!r}")
        got = self._store.frames(self.name, kind).get(i)
        if got is None:
            raise ReplayError(f"the recording holds no {kind} frame of map {self.name!r} at "
                              f"snapshot {i}")
        out = got.copy()
        out.attrs = dict(got.attrs)
        return out

    def __repr__(self) -> str:
        i = self.info
        return (f"<ReplayMapView {self.name}: {i.type} key {i.key_size}B value "
                f"{i.value_size}B max_entries {i.max_entries}; snapshot {self.cursor} of "
                f"{len(self._prog._times)}>")

    def __len__(self) -> int:
        return len(self.df())

    # -- reading ----------------------------------------------------------------------
    def df(self, per_cpu: bool = False, at: int | None = None) -> pd.DataFrame:
        """The map as live df() returned it at the cursor's snapshot (or snapshot `at`).
        Event maps: the events of that snapshot step (live df() consumes those waiting)."""
        i = self._at(at)
        if self.info.type in EVENT_MAPS and self._store.has(self.name, "events"):
            df = self.events(at=i)
            df.attrs["note"] = NOTE
            return df
        return self._frame("percpu" if per_cpu and self.per_cpu else "df", i)

    def hist(self, linear: int | None = None, value: str | None = None,
             at: int | None = None) -> pd.DataFrame:
        """Histogram buckets, as MapView.hist() gives them."""
        i = self._at(at)
        if linear is None and value is None and self._store.has(self.name, "hist"):
            return self._frame("hist", i)
        return frames.hist_frame(self.df(at=i), linear=linear, value=value)

    def read(self, at: int | None = None) -> Snapshot:
        """The raw snapshot (numpy keys and values) at the cursor. A player (see
        `player()`) moves on to the next snapshot after each read."""
        snap = self._raw(self._at(at))
        if self._auto_step and at is None:
            self.step()
        return snap

    def _raw(self, i: int) -> Snapshot:
        """Snapshot `i` as read() gives it, without stepping a player."""
        row = self._frame("raw", i)
        try:
            n = int(row["n"].iloc[0])
            keys = np.frombuffer(row["keys"].iloc[0], dtype=self.key_dtype, count=n).copy()
            vdtype = _dtype(self._meta["raw_value_dtype"])
            shape = (n, *self._meta.get("raw_value_shape", []))
            values = np.frombuffer(row["values"].iloc[0], dtype=vdtype,
                                   count=int(np.prod(shape))).reshape(shape).copy()
            return Snapshot(keys, values, int(row["time_ns"].iloc[0]),
                            int(row["duration_ns"].iloc[0]), str(row["method"].iloc[0]))
        except (KeyError, IndexError, TypeError, ValueError, OverflowError) as e:
            raise ReplayError(f"recording {str(self._prog.path)!r}: the raw snapshot {i} of "
                              f"map {self.name!r} is malformed ({type(e).__name__}: {e}); "
                              f"{_HINT}") from None

    def attrs(self, snap: Snapshot, entries: int) -> dict[str, Any]:
        """Frame attrs of a snapshot, as MapView.attrs gives them."""
        return snapshot_attrs(self.name, self.info, snap, entries)

    def frames(self, per_cpu: bool = False) -> Iterator[pd.DataFrame]:
        """df() of every snapshot, first to last (the cursor does not move)."""
        for i in range(len(self._prog._times)):
            yield self.df(per_cpu=per_cpu, at=i)

    # -- stepping ---------------------------------------------------------------------
    def seek(self, i: int) -> ReplayMapView:
        """Move the cursor to snapshot `i` (negative: from the end); the program's cursor
        for an ordinary view, this view's own for a player."""
        if self._cursor is None:
            self._prog.seek(i)
        else:
            n = len(self._prog._times)
            self._cursor = self._prog._index(i) if n else 0
        return self

    def step(self, n: int = 1) -> bool:
        """Move `n` snapshots on; False (and no move) past the end unless looping."""
        if self._cursor is None:
            return self._prog.step(n)
        total = len(self._prog._times)
        nxt = self._cursor + n
        if 0 <= nxt < total:
            self._cursor = nxt
            return True
        if self._loop and total:
            self._cursor = nxt % total
            return True
        return False

    def player(self, loop: bool = False, start: int = 0) -> ReplayMapView:
        """A view with its own cursor from snapshot `start` that steps on every read()
        (what a live view refreshes from); at the end it stays on the last snapshot, or
        starts over with `loop`."""
        self._check()
        p = ReplayMapView(self._prog, self.name, auto_step=True, loop=loop)
        p._cursor = self._prog._index(start)
        self._players.append(p)
        return p

    def live(self, every: float = 1.0, top: int = 20, loop: bool = False,
             **options: Any) -> Any:
        """A live widget that steps through the recorded snapshots, one per refresh, from the
        first (in a notebook's recording: from the running cell's); see
        bpfnb.live.widgets.live_view. Needs ipywidgets (`pip install 'bpfnb[lab]'`)."""
        from bpfnb.live.widgets import live_view  # optional front end (ipywidgets)

        start = self._prog.cursor if self._prog.follow_cells else 0
        return live_view(self.player(loop=loop, start=start), every=every, top=top, **options)

    def events(self, duration: float | None = None, max_events: int | None = None,
               event_type: Any = None, lost_map: Any = None, *, all: bool = False,
               at: int | None = None) -> pd.DataFrame:
        """Recorded events of a RINGBUF / PERF_EVENT_ARRAY map, as live events() gave them.

        Default: the events recorded in the cursor's snapshot step (snapshot `at`), i.e.
        those that arrived since the previous snapshot; `all=True`: every event recorded up
        to and including that snapshot, in order. `max_events` keeps the first ones;
        `duration` is ignored (the time is in the recording: attrs 'seconds' and 'rate');
        `lost_map` too (attrs 'lost' is what the recording saw). The events were decoded
        when recorded, so `event_type` must stay None: record again with
        `record(..., events={name: struct})` to decode them otherwise."""
        del duration, lost_map
        if self.info.type not in EVENT_MAPS:
            raise UnsupportedMapError(f"events() reads RINGBUF and PERF_EVENT_ARRAY maps; "
                                      f"{self.name!r} is {self.info.type}")
        if event_type is not None:
            raise ReplayError(f"the events of {self.name!r} were decoded when recorded; "
                              "record again with bpfnb.record(prog, path, events="
                              f"{{{self.name!r}: struct}}) to decode them as another type")
        if not self._store.has(self.name, "events"):
            raise ReplayError(f"the recording holds no events of map {self.name!r}; "
                              f"{_HINT}")
        i = self._at(at)
        if all:
            got = self._store.frames(self.name, "events")
            parts = [got[s] for s in range(i + 1) if s in got]
            full = [p for p in parts if len(p)]  # empty frames may hold other dtypes
            out = pd.concat(full, ignore_index=True) if len(full) > 1 else \
                (full or parts)[-1].copy()
            attrs = dict(parts[-1].attrs)
            lost = [p.attrs.get("lost") for p in parts]
            seconds = float(sum(p.attrs.get("seconds", 0.0) for p in parts))
            attrs.update(seconds=seconds, rate=len(out) / seconds if seconds > 0 else 0.0,
                         lost=None if lost[-1] is None else
                         int(sum(v for v in lost if v is not None)))
            out.attrs = attrs
        else:
            out = self._frame("events", i)
        if max_events is not None and len(out) > max_events:
            attrs = dict(out.attrs)
            out = out.iloc[:max_events].reset_index(drop=True)
            out.attrs = attrs
        out.attrs["events"] = len(out)
        return out

    def release(self) -> None:
        self._players.clear()

    # -- element helpers (read-only, from the cursor's snapshot) --------------------------
    @property
    def ops(self) -> MapOps:
        """The live MapOps codecs over the recorded key/value types (no kernel calls)."""
        self._check()
        if self._ops is None:
            self._ops = _RecordedOps(self)
        return self._ops

    def lookup(self, key: Any = None, lock: bool = False, per_cpu: bool = False) -> Any:
        """The value of `key` at the cursor's snapshot, as live lookup() gave it. `lock=True`
        changes nothing (a snapshot is consistent) but, as live, needs a bpf_spin_lock in the
        value; an LPM trie finds the longest matching prefix, as the kernel does."""
        ops = self.ops
        k = ops.encode_key(key)
        if lock and not ops.value.hidden:  # what the kernel says without a bpf_spin_lock
            raise translate(OSError(errno.EINVAL, "lookup"), ops.ctx("lookup", key, "lock"))
        snap = self._raw(self._at(None))
        row = _find(snap.keys, k, self.type == bpfsys.MapType.LPM_TRIE)
        if row is None:
            raise translate(OSError(errno.ENOENT, "lookup"), ops.ctx("lookup", key))
        return ops.decode_value(snap.values[row:row + 1], per_cpu)

    def keys(self) -> list[Any]:
        """Every key of the cursor's snapshot, as live keys() gives them."""
        ops = self.ops
        if not ops.has_key:
            raise UnsupportedMapError(f"map {self.name!r} ({self.type.name}) has no keys to "
                                      "list")
        raw = self._raw(self._at(None)).keys
        return [ops.decode_key(raw[i:i + 1]) for i in range(len(raw))]

    def peek(self) -> Any:
        """A QUEUE's/STACK's next value at the cursor's snapshot: the row of its recorded
        df() (live df() peeks); ReplayError when the recording holds none."""
        ops = self.ops
        ops._queue_only("peek")
        try:
            df = self._frame("df", self._at(None))
        except ReplayError as e:
            raise ReplayError(f"cannot peek {self.type.name} map {self.name!r} in this "
                              f"recording: {e}; peek the live program instead") from None
        if not len(df):
            raise translate(OSError(errno.ENOENT, "peek"), ops.ctx("peek"))
        names = [c for c in _str_list(df.attrs.get("value_columns")) if c in df.columns]
        value = ops.value.from_columns({c: df[c].to_numpy()[:1] for c in names}, names, 1)
        return ops.decode_value(value)

    def __getitem__(self, key: Any) -> Any:
        return self.lookup(key)

    def __contains__(self, key: object) -> bool:
        try:
            self.lookup(key)
        except KeyNotFoundError:
            return False
        return True

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    # -- write helpers: a recording cannot change -----------------------------------------
    def _read_only(self, verb: str) -> ReplayError:
        p = self._prog
        return ReplayError(f"cannot {verb} map {self.name!r}: this is a recording of program "
                           f"{p.name!r} (replaying {p.path}); writes need the live program "
                           "— run where BPF loads")

    def update(self, key: Any, value: Any, flags: str = "any", lock: bool = False) -> None:
        raise self._read_only("update")

    def __setitem__(self, key: Any, value: Any) -> None:
        raise self._read_only("update")

    def delete(self, key: Any) -> None:
        raise self._read_only("delete from")

    def __delitem__(self, key: Any) -> None:
        raise self._read_only("delete from")

    def pop(self, key: Any = None) -> Any:
        raise self._read_only("pop from")

    def push(self, value: Any, overwrite: bool = False) -> None:
        raise self._read_only("push to")

    def update_df(self, df: pd.DataFrame, flags: str = "any", lock: bool = False) -> int:
        raise self._read_only("update")

    def delete_keys(self, keys: Any, missing_ok: bool = False) -> int:
        raise self._read_only("delete from")

    def drain(self) -> pd.DataFrame:
        raise self._read_only("drain")


class _RecordedOps(MapOps):
    """MapOps over a recording: the live codecs and map-type hooks, built from the recorded
    dtypes; kernel calls raise ReplayError."""

    def __init__(self, view: ReplayMapView) -> None:
        meta = view._meta
        self.view = self.replayed = view
        self.kind = maptypes.kind_of(view.type)
        self.has_key = view.info.key_size > 0
        self.key = Codec(view.key_dtype, "key", view.name)
        self.value = Codec(view.value_dtype, "value", view.name, _hidden_type(view))
        shape = meta.get("raw_value_shape") or [0]
        self.ncpus = int(shape[0]) if view.per_cpu else 0
        self.cell = _dtype(meta["raw_value_dtype"]) if "raw_value_dtype" in meta \
            else view.value_dtype

    def call(self, ctx: OpContext, fn: Callable[..., Any], *args: Any) -> Any:
        raise self.replayed._read_only(ctx.op)


def _hidden_type(view: ReplayMapView) -> Any:
    """A stand-in for the value's ctypes type that names its kernel-owned fields (the ones
    live df() left out of the recorded frames) as Codec finds them: by their C type name."""
    tables = view._store.meta.get("tables", {}).get(view.name, {})
    attrs = list(tables.get("df", {}).get("attrs", {}).values())
    shown = {c.split(".")[0].split("[")[0] for a in attrs
             for c in _str_list(a.get("value_columns"))}
    hidden = [f for f in view.value_dtype.names or () if not is_padding(f) and f not in shown]
    if not attrs or not hidden:
        return None
    lock = type(LOCK_TYPE_NAMES[0], (), {})
    return type("struct", (), {"_fields_": [(f, lock) for f in hidden]})


def _str_list(v: Any) -> list[str]:
    """The strings of a list read from a recording's attrs (anything else: none)."""
    return [x for x in v if isinstance(x, str)] if isinstance(v, list) else []


def _find(keys: np.ndarray, key: np.ndarray, lpm: bool) -> int | None:
    """The row of `keys` the kernel's lookup of `key` finds: equal bytes, or for an LPM
    trie the longest stored prefix that covers the key (within the key's prefixlen)."""
    size = keys.dtype.itemsize
    raw = np.ascontiguousarray(keys).view(np.uint8).reshape(len(keys), size)
    want = key.view(np.uint8).reshape(size)
    if not lpm:
        rows = np.flatnonzero((raw == want).all(axis=1))
        return int(rows[0]) if len(rows) else None
    plen = raw[:, :PREFIX_BYTES].copy().view("<u4").reshape(len(keys))
    limit = int(want[:PREFIX_BYTES].copy().view("<u4")[0])
    bits = np.unpackbits(raw[:, PREFIX_BYTES:], axis=1)
    same = (bits == np.unpackbits(want[PREFIX_BYTES:])) | \
        (np.arange(bits.shape[1]) >= plen[:, None])
    ok = same.all(axis=1) & (plen <= limit) & (limit <= bits.shape[1])
    rows = np.flatnonzero(ok)
    return int(rows[plen[rows].argmax()]) if len(rows) else None


class ReplayProgram(MapNameHints):
    """A recorded program with the Program API: maps, df(), hist(), live(), stacks()."""

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        self._store = _Store(self.path)
        meta = self._store.meta
        self.meta = meta
        self.name: str = meta.get("name", "bpf")
        self.source: str = meta.get("source", "")
        self.cflags = tuple(meta.get("cflags", ()))
        self._times = np.asarray(meta.get("snapshots", []), dtype=np.int64)
        if not len(self._times):
            raise ReplayError(f"recording {str(self.path)!r} holds no snapshots; {_HINT}")
        self._map_names: list[str] = list(meta.get("map_names", []))
        self._cursor = len(self._times) - 1
        self.follow_cells = False  # a notebook's: live views start at the running cell's
        self._closed = False
        self._views: dict[str, ReplayMapView] = {}

    # -- state ------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def attach_points(self) -> list[AttachPoint]:
        """Where the program was attached when it was recorded."""
        return [AttachPoint(**a) for a in self.meta.get("attach_points", [])]

    @property
    def stack_names(self) -> list[str]:
        return list(self.meta.get("stacks", {}))

    @property
    def snapshots(self) -> pd.DataFrame:
        """One row per snapshot: time (UTC), time_ns, seconds since the first."""
        t = self._times
        return pd.DataFrame({"time": pd.to_datetime(t, unit="ns"), "time_ns": t,
                             "elapsed": (t - t[0]) / 1e9},
                            index=pd.RangeIndex(len(t), name="snapshot"))

    # -- cursor -----------------------------------------------------------------------
    @property
    def cursor(self) -> int:
        return self._cursor

    def _index(self, i: int) -> int:
        n = len(self._times)
        if not -n <= int(i) < n:
            raise ReplayError(f"snapshot {i} is out of range: the recording has {n} "
                              f"(0..{n - 1})")
        return int(i) % n

    def seek(self, i: int) -> ReplayProgram:
        """Every view now reads snapshot `i` (negative: from the end)."""
        self._cursor = self._index(i)
        return self

    def step(self, n: int = 1) -> bool:
        """Move `n` snapshots on; False (no move) past either end."""
        nxt = self._cursor + n
        if 0 <= nxt < len(self._times):
            self._cursor = nxt
            return True
        return False

    # -- maps -------------------------------------------------------------------------
    @property
    def map_names(self) -> list[str]:
        return list(self._map_names)

    @property
    def maps(self) -> dict[str, ReplayMapView]:
        return {n: self[n] for n in self._map_names}

    def __getitem__(self, name: str) -> ReplayMapView:
        if name not in self._views:
            if name not in self._map_names:
                names = ", ".join(self._map_names) or "none"
                raise UnknownMapError(f"no map {name!r} in program {self.name!r}; "
                                      f"its maps are: {names}")
            self._views[name] = ReplayMapView(self, name)
        return self._views[name]

    def __contains__(self, name: object) -> bool:
        return name in self._map_names

    def __iter__(self) -> Iterator[str]:
        return iter(self._map_names)

    def stacks(self, name: str | None = None, at: int | None = None) -> Stacks:
        """Recorded symbolized stacks (`name`: one of stack_names; default the only one)."""
        names = self.stack_names
        if name is None:
            if len(names) != 1:
                raise ReplayError(f"name one of the recorded stacks: {names or 'none'}")
            name = names[0]
        if name not in names:
            raise ReplayError(f"no stacks {name!r} in the recording; it has: "
                              f"{', '.join(names) or 'none'}")
        if self.closed:
            raise ProgramClosedError("this replay is closed; call bpfnb.replay(path) again")
        i = self._cursor if at is None else self._index(at)
        error = self.meta.get("errors", {}).get(f"stacks:{name}", {}).get(str(i))
        got = self._store.frames(f"stacks:{name}", "stacks").get(i) if not error else None
        if got is None:
            raise ReplayError(f"stacks {name!r} were not recorded at snapshot {i}"
                              + (f": {error}" if error else ""))
        return Stacks(got, name=name)

    # -- lifecycle --------------------------------------------------------------------
    def owned(self) -> list[object]:
        """What live views of this replay are tied to: itself, its map views, their players."""
        views = list(self._views.values())
        return [self, *views, *(p for v in views for p in v._players)]

    def close(self) -> None:
        """Stop the live views of this replay; reading afterwards raises. Safe twice."""
        if self._closed:
            return
        self._closed = True
        self._store.close()
        program_events.closing(self)
        for v in self._views.values():
            v.release()

    def __enter__(self) -> ReplayProgram:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def banner(self) -> str:
        """One line saying what this is: which recording, from which machine and when."""
        m = self.meta
        when = pd.Timestamp(int(m.get("started_ns", 0)), unit="ns").strftime("%Y-%m-%d %H:%M")
        return (f"replaying {self.path.name}: {len(self._times)} snapshots recorded on "
                f"{m.get('host', '?')} (Linux {m.get('kernel', {}).get('release', '?')}) "
                f"at {when} UTC")

    def _repr_html_(self) -> str:
        maps = ", ".join(f"<code>{escape(n)}</code>" for n in self._map_names) or "none"
        return (f"<p><b>{escape(self.name)}</b> (replay): {escape(self.banner())}; "
                f"maps: {maps}</p>")

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"snapshot {self._cursor}"
        return (f"<ReplayProgram {self.name}: {state} of {len(self._times)} from "
                f"{self.path}; maps: {', '.join(self._map_names) or 'none'}>")


def replay(path: PathLike) -> ReplayProgram:
    """Open a recording made by bpfnb.record(); ReplayError if missing or corrupt."""
    return ReplayProgram(path)
