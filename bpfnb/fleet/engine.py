"""What runs on each engine (host): load, read and reduce, close. The notebook sends these
functions by reference (`bpfnb.fleet.engine.read`), so every engine imports this module from
its own bpfnb; programs stay in `HELD`, keyed by the fleet program's token.

Engines reduce before they send: `read(top=N)` sorts on the host and ships N rows, `hist`
ships buckets, and full maps ship as numpy arrays (ipyparallel sends them as raw buffers).
"""

from __future__ import annotations

import inspect
import os
import socket
import time
from typing import Any

import numpy as np

import bpfnb
from bpfnb.backends import select
from bpfnb.data import frames
from bpfnb.data.layout import is_padding, sum_cpus
from bpfnb.doctor import doctor as _doctor
from bpfnb.errors import BpfnbError, UnknownMapError
from bpfnb.fleet import wire
from bpfnb.map.view import MapView
from bpfnb.profiler.profiling import profile as _profile
from bpfnb.program import core

HELD: dict[str, core.Program] = {}   # token -> the program this engine loaded for the fleet


def host_info() -> dict[str, Any]:
    """Who this engine is: hostname, kernel, bpfnb version, the backend auto picks, pid."""
    try:
        backend = select.choose("").backend
    except BpfnbError as e:
        backend = f"none ({e})"
    return {"hostname": socket.gethostname(), "kernel": os.uname().release,
            "bpfnb": bpfnb.__version__, "backend": backend, "pid": os.getpid()}


def _value_dtype(view: MapView) -> np.dtype:
    """The dtype of values as sent: per-CPU values are summed on the host."""
    if view.per_cpu:
        return sum_cpus(np.zeros((0, 1), view.value_dtype)).dtype
    return view.value_dtype


def map_meta(view: MapView) -> dict[str, Any]:
    """The map's info and dtypes (as objects: pickled with their enum/bit-field metadata;
    the arrays read() sends carry plain dtypes and are viewed through these)."""
    i = view.info
    return {"info": {"name": i.name, "type": i.type, "key_size": i.key_size,
                     "value_size": i.value_size, "max_entries": i.max_entries, "id": i.id,
                     "flags": i.flags},
            "key_dtype": view.key_dtype, "value_dtype": _value_dtype(view),
            "hist": frames.looks_like_hist(view)}


def load(token: str, source: str, name: str | None, cflags: list[str],
         backend: str) -> dict[str, Any]:
    """Load (and attach) on this host; the maps' metadata and the backend that ran."""
    close(token)
    kwargs: dict[str, Any] = {}
    if "backend" in inspect.signature(core.load).parameters:
        kwargs["backend"] = backend
    elif backend not in ("auto", "bcc"):
        raise BpfnbError(f"backend={backend!r}: this host's bpfnb {bpfnb.__version__} has only "
                         "bcc; upgrade bpfnb there or use backend='auto'")
    prog = core.load(source, name=name, cflags=list(cflags), **kwargs)
    HELD[token] = prog
    return {"backend": getattr(prog, "backend", "bcc"),
            "maps": {n: map_meta(prog[n]) for n in prog.map_names}}


def _view(token: str, name: str) -> MapView:
    prog = HELD.get(token)
    if prog is None or prog.closed:
        raise BpfnbError("this host holds no such fleet program (closed, or the engine "
                         "restarted); load it again")
    if name not in prog.map_names:
        raise UnknownMapError(f"no map {name!r}; maps: {', '.join(prog.map_names)}")
    return prog[name]


def sort_field(values: np.ndarray, sort: str | None) -> np.ndarray:
    """The column top-N sorts on: `sort` (a value field), else the first numeric field."""
    if values.dtype.names is None:
        return values
    names = [n for n in values.dtype.names if not is_padding(n)]
    if sort is not None:
        if sort not in names:
            raise BpfnbError(f"sort={sort!r}: the value fields are {names}")
        return values[sort]
    for n in names:
        if values.dtype[n].kind in "iuf" and values.dtype[n].shape == ():
            return values[n]
    raise BpfnbError(f"no numeric value field to rank on among {names}; pass sort=FIELD")


def read(token: str, name: str, top: int | None = None, sort: str | None = None
         ) -> tuple[np.ndarray, np.ndarray, int, int, str, int]:
    """(keys, values, time_ns, duration_ns, method, entries): the map now as raw bytes
    (see `_raw`), per-CPU values summed; with `top`, only the `top` largest rows by `sort`
    (ranked here, on the host)."""
    view = _view(token, name)
    snap = view.read()
    keys, values = snap.keys, snap.values
    if values.ndim == 2:
        values = sum_cpus(values)
    entries = len(keys)
    if top is not None and entries > top:
        rank = sort_field(values, sort)
        idx = np.argpartition(rank, entries - top)[entries - top:]
        idx = idx[np.argsort(rank[idx], kind="stable")[::-1]]
        keys, values = keys[idx], values[idx]
    return (_raw(keys), _raw(values), snap.time_ns, snap.duration_ns, snap.method, entries)


def _raw(arr: np.ndarray) -> np.ndarray:
    """A copy of the array's bytes as (n, itemsize) uint8: ipyparallel sends it as one
    buffer whatever the dtype (the notebook views it through the map's dtype)."""
    return np.ascontiguousarray(arr).view(np.uint8).reshape(len(arr), arr.dtype.itemsize).copy()


def hist(token: str, name: str, linear: int | None = None, value: str | None = None) -> bytes:
    """The map's histogram buckets, computed here (Arrow IPC)."""
    return wire.pack(_view(token, name).hist(linear=linear, value=value))


def events(token: str, name: str, duration: float | None, max_events: int | None) -> bytes:
    """The events that arrive within `duration` seconds (Arrow IPC)."""
    return wire.pack(_view(token, name).events(duration=duration, max_events=max_events))


def close(token: str) -> bool:
    """Detach and free the fleet program here; True if there was one."""
    prog = HELD.pop(token, None)
    if prog is None:
        return False
    prog.close()
    return True


def held() -> list[str]:
    """Names of the fleet programs this engine holds open."""
    return [p.name for p in HELD.values() if not p.closed]


def profile(duration: float, hz: int, pid: int | None) -> bytes:
    """A CPU profile of this host (or one pid on it) as the Stacks table (Arrow IPC)."""
    return wire.pack(_profile(pid=pid, duration=duration, hz=hz).df())


def doctor() -> bytes:
    """This host's doctor table (Arrow IPC)."""
    return wire.pack(_doctor().df())


def now_ns() -> int:
    """This host's clock (a cheap round trip, for latency and liveness)."""
    return time.time_ns()
