"""A program loaded on every host of a fleet, and its maps merged across hosts.

>>> fp = fleet.load(source, name="counts")
>>> fp.status                    # host, ok, backend, error
>>> fp["by_pid"].df()            # host first; df(by_host=False) sums per key across hosts
>>> fp.close()
"""

from __future__ import annotations

import atexit
import html
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd
from numpy.lib import format as npformat

from bpfnb._sys import bpfsys
from bpfnb.data import frames
from bpfnb.data.mapread import Snapshot
from bpfnb.errors import BpfnbError, ProgramClosedError, UnknownMapError
from bpfnb.fleet import engine, keys, wire
from bpfnb.fleet.calls import DEFAULT_TIMEOUT, Engines, Outcome, raise_failed, status_frame
from bpfnb.live import poller as live
from bpfnb.map.view import MapInfo, snapshot_attrs
from bpfnb.render import plot

if TYPE_CHECKING:
    from bpfnb.fleet.liveview import FleetLiveView

_open: weakref.WeakSet[FleetProgram] = weakref.WeakSet()


@dataclass
class _Host:
    """What the notebook knows of one host's copy of the program."""

    loaded: bool
    backend: str = ""
    error: str = ""
    seconds: float = 0.0
    maps: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Part:
    """One host's answer to a read."""

    host: str
    keys: np.ndarray
    values: np.ndarray
    time_ns: int
    duration_ns: int


def _snapshot(parts: list[_Part], keys_: np.ndarray, values: np.ndarray) -> Snapshot:
    """A Snapshot of merged arrays, timed by the latest host and the slowest read."""
    t = max((p.time_ns for p in parts), default=time.time_ns())
    took = max((p.duration_ns for p in parts), default=0)
    return Snapshot(keys_, values, t, took, "fleet")


class FleetProgram:
    """One BPF program on many hosts. Hosts that failed to load are left out of reads;
    a host that stops answering later shows as failed in `status`, the others go on.
    `timeout`: seconds each host has to answer a read or a close (`load_timeout`: to
    compile and load; the fleet's default is 60 s, compiles can be slow)."""

    def __init__(self, engines: Engines, source: str, name: str | None = None,
                 cflags: tuple[str, ...] = (), backend: str = "auto",
                 strict: bool = False, timeout: float = DEFAULT_TIMEOUT,
                 load_timeout: float | None = None) -> None:
        self.name = name or "bpf"
        self.source = source
        self.cflags = tuple(cflags)
        self.backend = backend
        self.timeout = timeout
        self.token = f"{self.name}-{uuid.uuid4().hex[:12]}"
        self.attach_points: list[Any] = []   # per host; the recorder records none
        self._engines = engines
        self._lock = threading.RLock()
        self._closed = False
        self._views: dict[str, FleetMap] = {}
        got = engines.call(engine.load, self.token, source, name, list(self.cflags), backend,
                           timeout=load_timeout or timeout)
        self._hosts = {h: _Host(o.ok, o.value["backend"] if o.ok else "", o.error, o.seconds,
                                o.value["maps"] if o.ok else {}) for h, o in got.items()}
        _open.add(self)
        if strict:
            try:
                raise_failed(got, f"loading {self.name!r}")
            except BpfnbError:
                self.close()
                raise
        if not self.live_hosts:
            errors = "; ".join(f"{h}: {s.error}" for h, s in self._hosts.items())
            self.close()
            raise BpfnbError(f"{self.name!r} loaded on no host ({errors})")

    # -- hosts ------------------------------------------------------------------------
    @property
    def status(self) -> pd.DataFrame:
        """host, ok, backend, error, seconds: each host's state (the latest failure wins)."""
        rows = [{"host": h, "ok": s.loaded and not s.error, "backend": s.backend,
                 "error": s.error, "seconds": round(s.seconds, 4)}
                for h, s in self._hosts.items()]
        return pd.DataFrame(rows, columns=["host", "ok", "backend", "error", "seconds"])

    @property
    def live_hosts(self) -> list[str]:
        """Hosts holding the program (loaded, not failed since)."""
        return [h for h, s in self._hosts.items() if s.loaded and not s.error]

    @property
    def loaded_hosts(self) -> list[str]:
        return [h for h, s in self._hosts.items() if s.loaded]

    @property
    def closed(self) -> bool:
        return self._closed

    def call(self, fn: Any, *args: Any, timeout: float | None = None) -> dict[str, Outcome]:
        """fn(token, *args) on every host holding the program; failures go into `status`
        (a host that answers again is marked ok again)."""
        self._check()
        got = self._engines.call(fn, self.token, *args, timeout=timeout or self.timeout,
                                 hosts=self.loaded_hosts)
        with self._lock:
            for h, o in got.items():
                self._hosts[h].error = "" if o.ok else o.error
                self._hosts[h].seconds = o.seconds
        return got

    def _check(self) -> None:
        if self._closed:
            raise ProgramClosedError(f"fleet program {self.name!r} is closed; load it again")

    # -- maps -------------------------------------------------------------------------
    @property
    def map_names(self) -> list[str]:
        for h in self.loaded_hosts:
            return list(self._hosts[h].maps)
        return []

    @property
    def maps(self) -> dict[str, FleetMap]:
        return {n: self[n] for n in self.map_names}

    def __getitem__(self, name: str) -> FleetMap:
        self._check()
        if name not in self.map_names:
            raise UnknownMapError(f"no map {name!r} in fleet program {self.name!r}; maps: "
                                  f"{', '.join(self.map_names) or 'none'}")
        if name not in self._views:
            self._views[name] = FleetMap(self, name)
        return self._views[name]

    def __contains__(self, name: object) -> bool:
        return name in self.map_names

    def __iter__(self) -> Iterator[str]:
        return iter(self.map_names)

    def meta(self, name: str) -> dict[str, Any]:
        for h in self.loaded_hosts:
            return dict(self._hosts[h].maps[name])
        raise UnknownMapError(f"no host holds map {name!r}")

    def events(self, name: str | None = None, duration: float | None = 1.0,
               max_events: int | None = None) -> pd.DataFrame:
        """Events from every host's RINGBUF / PERF_EVENT_ARRAY map `name` (the program's only
        one when None) during `duration` seconds, merged with `host` first, by time."""
        if name is None:
            found = [n for n in self.map_names
                     if self.meta(n)["info"]["type"] in ("RINGBUF", "PERF_EVENT_ARRAY")]
            if len(found) != 1:
                raise BpfnbError(f"events(): name the event map; {self.name!r} has "
                                 f"{', '.join(found) or 'none'}")
            name = found[0]
        return self[name].events(duration=duration, max_events=max_events)

    # -- lifetime ---------------------------------------------------------------------
    def close(self, timeout: float | None = None) -> pd.DataFrame:
        """Detach and free the program on every host (live views of it stop first); returns
        each host's answer (a host that does not answer keeps its copy until it exits)."""
        with self._lock:
            if self._closed:
                return status_frame({})
            views: list[Any] = list(self._views.values())
            views += [f for v in self._views.values() for f in v.feeds]
            live.close_views(owners=views, reason="program closed")
            live.stop_all(owners=views, reason="program closed")
            self._closed = True
        got = self._engines.call(engine.close, self.token, timeout=timeout or self.timeout,
                                 hosts=self.loaded_hosts)
        _open.discard(self)
        return status_frame(got)

    def __enter__(self) -> FleetProgram:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else \
            f"on {len(self.live_hosts)} of {len(self._hosts)} hosts"
        return f"<FleetProgram {self.name}: {state}; maps {', '.join(self.map_names)}>"

    def _repr_html_(self) -> str:
        return (f"<b>{html.escape(repr(self))}</b>"
                f"{self.status.to_html(index=False, escape=True)}")


def open_fleet_programs() -> list[FleetProgram]:
    """Fleet programs not closed yet (what `%bpf stop` and unloading the extension close)."""
    return [p for p in list(_open) if not p.closed]


def close_all(timeout: float = 5.0) -> None:
    """Close every open fleet program (each host gets `timeout` seconds to answer)."""
    for p in open_fleet_programs():
        p.close(timeout=timeout)


atexit.register(close_all)   # the notebook's kernel exiting detaches on the hosts too


class _Kind:
    frame = None


class _Value:
    hidden: frozenset[str] = frozenset()


class _Ops:
    """What a recorder asks of a map's operations: plain frames, no hidden fields."""

    kind = _Kind()
    value = _Value()


class FleetMap:
    """One map on every host, merged: MapLike (read/attrs/info), so live views and
    recordings take it; df() has `host` first."""

    per_cpu = False          # per-CPU values are summed on each host before they travel
    cpus = None
    ops = _Ops()

    def __init__(self, prog: FleetProgram, name: str) -> None:
        meta = prog.meta(name)
        self.name = name
        self._prog = prog
        self.base_key_dtype = _dtype(meta["key_dtype"])
        self.key_dtype = keys.with_host(self.base_key_dtype)
        self.value_dtype = _dtype(meta["value_dtype"])
        self.host_column = keys.host_field(self.base_key_dtype)
        self.is_hist = bool(meta.get("hist"))
        i = meta["info"]
        hosts = max(1, len(prog.loaded_hosts))
        self.info = MapInfo(name, i["type"], self.key_dtype.itemsize, i["value_size"],
                            i["max_entries"] * hosts, 0, i["flags"])
        self.status = status_frame({})
        self.feeds: weakref.WeakSet[Any] = weakref.WeakSet()   # live views' reduced reads

    @property
    def fd(self) -> int:
        """-1: a fleet map has no file descriptor here (ProgramClosedError once closed)."""
        self._prog._check()
        return -1

    @property
    def type(self) -> bpfsys.MapType:
        return bpfsys.MapType[self.info.type]

    def __repr__(self) -> str:
        return (f"<FleetMap {self.name}: {self.info.type} on "
                f"{len(self._prog.live_hosts)} hosts>")

    def __len__(self) -> int:
        return len(self.read().keys)

    def _gather(self, fn: Any, *args: Any) -> dict[str, Outcome]:
        got = self._prog.call(fn, self.name, *args)
        self.status = status_frame(got)
        return got

    # -- reading ----------------------------------------------------------------------
    def _parts(self, top: int | None, sort: str | None) -> list[_Part]:
        """Each answering host's (keys, values) as it sent them; `status` updated."""
        got = self._gather(engine.read, top, sort)
        parts, entries = [], {}
        for h, o in got.items():
            if not o.ok:
                continue
            k, v, time_ns, duration_ns, _method, n = o.value
            if k.ndim != 2 or v.ndim != 2 or k.shape[1] != self.base_key_dtype.itemsize or \
                    v.shape[1] != self.value_dtype.itemsize or len(k) != len(v):
                self._mark(h, "its map layout differs from the first host's (another "
                              "kernel or bpfnb version?)")
                continue
            k = np.ascontiguousarray(k, np.uint8).view(self.base_key_dtype).reshape(len(k))
            v = np.ascontiguousarray(v, np.uint8).view(self.value_dtype).reshape(len(v))
            parts.append(_Part(h, k, v, time_ns, duration_ns))
            entries[h] = n
        self.status = status_frame(got, entries=entries)
        return parts

    def read(self, top: int | None = None, sort: str | None = None) -> Snapshot:
        """Every host's map now as one snapshot: keys carry a `host` field. `top`: each host
        sends only its `top` largest rows by `sort` (a value field)."""
        parts = self._parts(top, sort)
        merged = keys.merge([(p.host, p.keys) for p in parts], self.base_key_dtype)
        vals = (np.concatenate([p.values for p in parts]) if parts
                else np.zeros(0, self.value_dtype))
        return _snapshot(parts, merged, vals)

    def _mark(self, host: str, error: str) -> None:
        self._prog._hosts[host].error = error

    def attrs(self, snap: Snapshot, entries: int) -> dict[str, Any]:
        out = snapshot_attrs(self.name, self.info, snap, entries)
        out["hosts"] = [h for h, ok in zip(self.status["host"], self.status["ok"]) if ok]
        out["failed_hosts"] = [h for h, ok in zip(self.status["host"], self.status["ok"])
                               if not ok]
        return out

    def df(self, by_host: bool = True, top: int | None = None,
           sort: str | None = None) -> pd.DataFrame:
        """The map on every host: `host` first (a categorical), then the key and value
        columns. `top`: the `top` largest rows of each host (ranked on the host).
        by_host=False sums each key's values across hosts (from full maps: exact sums)."""
        parts = self._parts(top if by_host else None, sort)
        snap = _snapshot(parts, np.zeros(0, self.base_key_dtype),
                         np.zeros(0, self.value_dtype))
        each = [frames.frame(p.keys, p.values, {}) for p in parts]
        if not each:
            each = [frames.frame(snap.keys, snap.values, {})]
        df = pd.concat(each, ignore_index=True) if len(each) > 1 else each[0]
        hosts = [p.host for p in parts]
        codes = np.repeat(np.arange(len(parts), dtype=np.int32), [len(p.keys) for p in parts])
        host: Any = pd.Categorical.from_codes(codes, categories=cast(Any, hosts))
        df.insert(0, self.host_column, host)
        kcols, vcols = list(each[0].attrs["key_columns"]), list(each[0].attrs["value_columns"])
        attrs: dict[Any, Any] = self.attrs(snap, int(self.status["entries"].sum()))
        attrs.update(enums=each[0].attrs.get("enums", {}),
                     key_columns=[self.host_column, *kcols], value_columns=vcols)
        df.attrs = attrs
        if by_host:
            return df
        return _sum_hosts(df, kcols, top, sort)

    def hist(self, by_host: bool = False, linear: int | None = None,
             value: str | None = None) -> pd.DataFrame:
        """Histogram buckets computed on each host and merged by summing the counts of each
        bucket (`df.bpf.percentiles()`, bpfnb.plot's accessor, then works on the fleet's
        histogram); by_host=True
        keeps one histogram per host (a `host` section column)."""
        got = self._gather(engine.hist, linear, value)
        parts = wire.host_frames(got)
        if not parts:
            raise BpfnbError(f"no host answered hist() of {self.name!r}; see .status")
        attrs: dict[str, Any] = {str(k): v for k, v in parts[0].attrs.items()}
        merged = pd.concat(parts, ignore_index=True)
        sections = [c for c in attrs.get("key_columns", []) if c in merged.columns]
        if by_host:
            out = merged
            attrs["key_columns"] = ["host", *sections]
        else:
            group = [*sections, "low", "high"]
            out = merged.groupby(group, sort=True, as_index=False)[["count"]].sum()
            out["count"] = out["count"].astype(np.uint64)
        out = out[[*(c for c in out.columns if c not in plot.HIST_COLUMNS), *plot.HIST_COLUMNS]]
        out.attrs.update(attrs, hosts=[str(h) for h in merged["host"].unique()])
        return out

    def events(self, duration: float | None = 1.0, max_events: int | None = None,
               event_type: Any = None) -> pd.DataFrame:
        """Events every host's reader decodes during `duration` s, `host` first."""
        if event_type is not None:
            raise BpfnbError("event_type cannot travel to the hosts; declare the event struct "
                             "in the program's C source instead")
        got = self._gather(engine.events, duration, max_events)
        parts = wire.host_frames(got)
        if not parts:
            return pd.DataFrame({"host": pd.Series(dtype=str)})
        attrs = {str(k): v for k, v in parts[0].attrs.items()}
        out = pd.concat(parts, ignore_index=True)
        out.attrs.update(attrs, hosts=[p["host"].iloc[0] for p in parts if len(p)])
        return out

    def event_reader(self, event_type: Any = None) -> Any:
        raise BpfnbError("a fleet map has no reader here; call events() (each host drains "
                         "its own)")

    def live(self, every: float = 1.0, top: int = 20, **options: Any) -> FleetLiveView:
        """A live top-`top` table across hosts (each host ranks and sends its top rows) with
        a per-host status line; see bpfnb.live.widgets.live_view for `options`."""
        from bpfnb.fleet.liveview import fleet_live_view

        return fleet_live_view(self, every=every, top=top, **options)


def _sum_hosts(df: pd.DataFrame, kcols: list[str], top: int | None,
               sort: str | None) -> pd.DataFrame:
    """Values summed per key over hosts (non-numeric values: the first host's)."""
    vcols = list(df.attrs["value_columns"])
    how = {c: "sum" if pd.api.types.is_numeric_dtype(df[c]) and
           not pd.api.types.is_bool_dtype(df[c]) else "first" for c in vcols}
    if kcols:
        out = df.groupby(kcols, sort=True, as_index=False, observed=True).agg(how)
    else:
        out = df[vcols].agg(how).to_frame().T
    for c in vcols:
        if how[c] == "sum":
            out[c] = out[c].astype(df[c].dtype)
    if top is not None:
        rank = sort or next((c for c in vcols if how[c] == "sum"), None)
        if rank is not None:
            out = out.nlargest(top, rank, keep="first").reset_index(drop=True)
    out.attrs.update({str(k): v for k, v in df.attrs.items()}, key_columns=kcols,
                     value_columns=vcols)
    return out


def _dtype(d: Any) -> np.dtype:
    """A dtype an engine sent (older engines: a descr)."""
    if isinstance(d, np.dtype):
        return d
    return npformat.descr_to_dtype(
        [tuple(f) if isinstance(f, list) else f for f in d] if isinstance(d, list) else d)
