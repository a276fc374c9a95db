"""Recordings: timed snapshots of a program's maps (and stacks) saved to one file.

>>> rec = bpfnb.record(prog, "counts.bpfrec", every=0.5, duration=10)
>>> replayed = bpfnb.replay("counts.bpfrec")      # the Program API, no kernel needed

The file is a zip that grows by appending (bpfnb.zipappend): `meta.json` (program source,
kernel, host, map names, attach points) written once, then at each save the snapshots taken
since the previous one: Parquet tables per map and shape (`maps/NAME/df.S.P.parquet`,
`percpu`, `hist`, `raw`; each row tagged with a `__snapshot` column) and one
`index/SSSSSSSS.json` (snapshot times, table schemas and frame attrs, map infos and dtypes,
errors, cells) written last. Replay folds the index entries together (bpfnb.recmeta). Event
maps (RINGBUF, PERF_EVENT_ARRAY) are drained at each snapshot instead: `events` tables hold,
per snapshot, the events that arrived since the previous one (the first: since the recorder
opened the map's reader), decoded exactly as live `events()` decodes them. Columns Parquet
cannot hold as they are (lists, numpy arrays, bytes, big Python ints) are encoded losslessly
and restored to the same dtypes on replay.

A save costs the new snapshots only and the recorder keeps nothing it saved in memory. The
first save writes a new file atomically; an interrupted later save (an exception, Ctrl-C)
leaves the file byte for byte as the previous save left it, and a crash in the middle of one
(SIGKILL, power loss) leaves the previous saves readable: replay marks it `interrupted`.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import platform
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import pandas as pd

from bpfnb._sys import bpfsys
from bpfnb.data import frames
from bpfnb.data import progress as progress_display
from bpfnb.data.arrow import encode_frame, merge_specs, pyarrow_module
from bpfnb.errors import BpfnbError, RecordArgumentError
from bpfnb.map.view import drop_hidden
from bpfnb.profiler import profiling
from bpfnb.store import replay, zipappend
from bpfnb.store.format import (
    EVENT_MAPS,
    FORMAT,
    INDEX,
    KEYLESS,
    META,
    SNAPSHOT,
    STACK_FIELDS,
    VERSION,
)

if TYPE_CHECKING:

    from bpfnb.map.view import MapView
    from bpfnb.program.core import Program
    from bpfnb.store.replay import ReplayProgram

_Row = tuple[str, str, pd.DataFrame, "dict[str, Any] | None"]  # table, kind, frame, attrs
StackPairs = Mapping[str, tuple[str, str]]
EventTypes = Mapping[str, Any]
PathLike = Union[str, "os.PathLike[str]"]


# -- JSON ---------------------------------------------------------------------------------------

def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (set, frozenset, tuple)):
        return list(v)
    if isinstance(v, Path):
        return str(v)
    return repr(v)


def to_json(obj: Any) -> str:
    return json.dumps(obj, default=_jsonable, allow_nan=True)


# -- what to record -----------------------------------------------------------------------------

def stack_pairs(prog: Program) -> dict[str, tuple[str, str]]:
    """Counts maps keyed by a stack id, paired with the program's one STACK_TRACE map."""
    views = {n: prog[n] for n in prog.map_names}
    traces = [n for n, v in views.items() if v.info.type == "STACK_TRACE"]
    if len(traces) != 1:
        return {}
    out = {}
    for n, v in views.items():
        names = v.key_dtype.names or ()
        if v.info.type != "STACK_TRACE" and any(f in STACK_FIELDS for f in names):
            out[n] = (n, traces[0])
    return out


@dataclass
class _Part:
    """Snapshots of one table that share a schema, not saved yet."""

    specs: list[dict[str, Any]]
    chunks: list[Any] = field(default_factory=list)
    snapshots: list[int] = field(default_factory=list)


@dataclass
class _Table:
    """One map shape (df, percpu, hist, raw) or stack: the snapshots taken since the last
    save (what was saved is on disk only)."""

    parts: list[_Part] = field(default_factory=list)
    attrs: dict[int, dict[str, Any]] = field(default_factory=dict)

    def add(self, snapshot: int, df: pd.DataFrame, attrs: dict[str, Any] | None = None) -> None:
        pa = pyarrow_module()
        table, specs = encode_frame(df)
        if self.parts:
            merged = merge_specs(self.parts[-1].specs, specs)
            if merged is not None:
                table, _ = encode_frame(df, merged)
                self.parts[-1].specs = merged
                specs = merged
            else:
                self.parts.append(_Part(specs))
        else:
            self.parts.append(_Part(specs))
        snap = pa.array(np.full(len(df), snapshot, dtype=np.int32))
        self.parts[-1].chunks.append(table.append_column(SNAPSHOT, snap))
        self.parts[-1].snapshots.append(snapshot)
        given = df.attrs if attrs is None else attrs
        self.attrs[snapshot] = {str(k): v for k, v in given.items()}

    def pending(self, prefix: str, save: int) -> tuple[dict[str, bytes], dict[str, Any]]:
        """(Parquet files, index entry) of the snapshots not saved yet."""
        pa = pyarrow_module()
        files: dict[str, bytes] = {}
        parts = []
        for i, part in enumerate(self.parts):
            name = f"{prefix}.{save}.{i}.parquet"
            table = pa.concat_tables(part.chunks, promote_options="default")
            buf = io.BytesIO()
            pa.parquet.write_table(table, buf, compression="zstd")
            files[name] = buf.getvalue()
            parts.append({"file": name, "columns": part.specs, "snapshots": part.snapshots})
        return files, {"parts": parts, "attrs": {str(k): v for k, v in self.attrs.items()}}

    def saved(self) -> None:
        """Forget what was just written."""
        self.parts, self.attrs = [], {}


# -- recorder -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Progress:
    """Where a recording is: passed to record()'s `progress` callable after each snapshot."""

    snapshots: int
    elapsed: float
    saved: int            # snapshots in the file on disk
    duration: float | None
    count: int | None
    path: str

    @property
    def text(self) -> str:
        total = f"/{self.count}" if self.count else ""
        span = f" of {self.duration:g}" if self.duration else ""
        return (f"recording {self.path}: snapshot {self.snapshots}{total}, "
                f"{self.elapsed:.1f} s{span}, {self.saved} saved")


@dataclass(frozen=True)
class Recording:
    """A saved recording: where it is and what it holds. `.replay()` opens it."""

    path: Path
    snapshots: int
    maps: list[str]
    interrupted: bool = False

    def replay(self) -> ReplayProgram:
        return replay.replay(self.path)


class Recorder:
    """Takes snapshots of a program on demand and saves them atomically.

    >>> rec = Recorder(prog, "run.bpfrec")
    >>> rec.snapshot(); ...; rec.save()
    """

    def __init__(self, prog: Program, path: PathLike, stacks: StackPairs | None = None,
                 every: float | None = None, events: EventTypes | None = None,
                 drain_events: bool = True) -> None:
        pyarrow_module()
        self.prog = prog
        self.path = Path(path)
        if prog.closed:
            raise BpfnbError(f"program {prog.name!r} is closed; load it again to record it")
        self.stack_pairs = dict(stack_pairs(prog) if stacks is None else stacks)
        for name, (counts, trace) in self.stack_pairs.items():
            missing = [m for m in (counts, trace) if m not in prog.map_names]
            if missing or not str(name).isidentifier():
                raise BpfnbError(f"stacks={{{name!r}: ({counts!r}, {trace!r})}}: a stack name "
                                 f"is an identifier and names two maps of {prog.name!r} "
                                 f"({', '.join(prog.map_names)})")
        self.every = every
        self.started_ns = time.time_ns()
        self.times: list[int] = []
        self.marks: dict[str, int] = {}  # cell key -> the snapshot taken when it ended
        self.lock = threading.RLock()    # snapshot() and save() from several threads
        self.errors: dict[str, dict[int, str]] = {}
        self._tables: dict[tuple[str, str], _Table] = {}
        self._cpus = bpfsys.possible_cpus()
        self._maps = {n: self._map_meta(prog[n]) for n in prog.map_names}
        self.event_types = self._event_types(events or {}) if drain_events else {}
        self._drained: dict[str, float] = {}
        self.saved = 0                   # snapshots in the file
        self._saves = 0                  # saves done (each adds one index entry)
        self._marked: set[str] = set()   # cells marked since the last save
        self._appender: zipappend.Appender | None = None
        for name in self.event_types:
            self._open_events(name)

    def _map_meta(self, view: MapView) -> dict[str, Any]:
        from numpy.lib import format as npformat

        return {"info": asdict(view.info), "per_cpu": view.per_cpu,
                "key_dtype": npformat.dtype_to_descr(view.key_dtype),
                "value_dtype": npformat.dtype_to_descr(view.value_dtype),
                "hist": frames.looks_like_hist(view), "kind_frame": view.ops.kind.frame is not None}

    def _event_types(self, given: EventTypes) -> dict[str, Any]:
        """Event map name -> the event_type passed to events() (None: the program's)."""
        event_maps = [n for n in self.prog.map_names
                      if self._maps[n]["info"]["type"] in EVENT_MAPS]
        wrong = [n for n in given if n not in event_maps]
        if wrong:
            raise BpfnbError(f"events={{{wrong[0]!r}: ...}}: not an event map of "
                             f"{self.prog.name!r}; its RINGBUF / PERF_EVENT_ARRAY maps are: "
                             f"{', '.join(event_maps) or 'none'}")
        return {n: given.get(n) for n in event_maps}

    def _open_events(self, name: str) -> None:
        """Open the map's event reader now (perf buffers catch events only once installed);
        a failure is reported at each snapshot of the map."""
        view = self.prog[name]
        self._drained[name] = time.monotonic()
        try:
            reader = view.event_reader(self.event_types[name])
            self._maps[name]["event_dtype"] = _descr(reader.dtype)
        except (BpfnbError, OSError, ValueError):
            pass  # events() raises the same at the first snapshot, recorded as its error

    def _table(self, name: str, kind: str) -> _Table:
        return self._tables.setdefault((name, kind), _Table())

    # -- snapshots --------------------------------------------------------------------
    def snapshot(self, mark: str | None = None,
                 keep: Callable[[], bool] | None = None) -> int | None:
        """Read every map (and stack pair) now; returns the snapshot's number. `mark` names
        it (a notebook cell); with `keep`, the snapshot is dropped (None) unless keep() is
        still true once everything is read (e.g. the program was not closed meanwhile)."""
        with self.lock:
            i = len(self.times)
            now = time.time_ns()
            rows: list[_Row] = []
            errors: dict[str, str] = {}
            for name in self.prog.map_names:
                if self._maps[name]["info"]["type"] in EVENT_MAPS and \
                        name not in self.event_types:
                    continue  # not drained: left to the notebook's own events() calls
                try:
                    rows += (self._snapshot_events(name) if name in self.event_types else
                             self._snapshot_map(name))
                except (BpfnbError, OSError, ValueError) as e:
                    errors[name] = f"{type(e).__name__}: {e}"
            for name, (counts, trace) in self.stack_pairs.items():
                try:
                    rows += self._snapshot_stacks(name, counts, trace)
                except (BpfnbError, OSError, ValueError) as e:
                    errors[f"stacks:{name}"] = f"{type(e).__name__}: {e}"
            if keep is not None and not keep():
                return None
            self.times.append(now)
            for table, kind, df, attrs in rows:
                self._table(table, kind).add(i, df, attrs)
            for name, error in errors.items():
                self.errors.setdefault(name, {})[i] = error
            if mark is not None:
                self.marks[mark] = i
                self._marked.add(mark)
            return i

    def _snapshot_map(self, name: str) -> list[_Row]:
        view = self.prog[name]
        meta = self._maps[name]
        if meta["info"]["type"] in KEYLESS:  # no keys to read: df() is what peek() sees
            return [(name, "df", view.df(), None)]
        snap = view.read()
        keys, values = np.array(snap.keys), np.array(snap.values)
        attrs = view.attrs(snap, len(keys))
        rows: list[_Row] = [(name, "raw", pd.DataFrame({
            "time_ns": [snap.time_ns], "duration_ns": [snap.duration_ns],
            "method": [snap.method], "n": [len(keys)],
            "keys": pd.Series([keys.tobytes()], dtype=object),
            "values": pd.Series([np.ascontiguousarray(values).tobytes()], dtype=object)}),
            attrs)]
        meta.setdefault("raw_value_dtype", _descr(values.dtype))
        meta.setdefault("raw_value_shape", list(values.shape[1:]))
        if meta["kind_frame"]:
            df = view.df()
            long = view.df(per_cpu=True) if view.per_cpu else None
        else:  # MapView.plain_df, from the same read as the raw table
            hidden = view.ops.value.hidden
            cpus = self._cpus if view.per_cpu else None
            df = drop_hidden(frames.frame(keys, values, attrs, cpus=cpus), hidden)
            long = drop_hidden(frames.frame(keys, values, attrs, per_cpu=True, cpus=cpus),
                               hidden) if view.per_cpu else None
        rows.append((name, "df", df, None))
        if long is not None:
            rows.append((name, "percpu", long, None))
        if meta["hist"]:
            with contextlib.suppress(ValueError, KeyError):
                rows.append((name, "hist", frames.hist_frame(df), None))
        return rows

    def _snapshot_events(self, name: str) -> list[_Row]:
        """The events waiting now (never blocks): those since the previous snapshot."""
        view = self.prog[name]
        df = view.events(duration=None, max_events=None, event_type=self.event_types[name])
        now = time.monotonic()
        seconds = now - self._drained.get(name, now)
        self._drained[name] = now
        df.attrs.update(seconds=seconds, rate=len(df) / seconds if seconds > 0 else 0.0)
        return [(name, "events", df, None)]

    def _snapshot_stacks(self, name: str, counts: str, trace: str) -> list[_Row]:
        s = profiling.stacks(self.prog[counts], self.prog[trace], name=name)
        return [(f"stacks:{name}", "stacks", s.df(), None)]

    # -- saving -----------------------------------------------------------------------
    def meta(self, interrupted: bool = False) -> dict[str, Any]:
        """The static part of meta.json (the first entry of the file)."""
        import bpfnb

        u = platform.uname()
        return {
            "format": FORMAT, "version": VERSION, "name": self.prog.name,
            "source": self.prog.source, "cflags": list(getattr(self.prog, "cflags", ())),
            "backend": {"name": getattr(self.prog, "backend", "bcc"),
                        "reason": getattr(self.prog, "backend_reason", "")},
            "kernel": {"release": u.release, "version": u.version, "machine": u.machine},
            "host": socket.gethostname(), "bpfnb_version": bpfnb.__version__,
            "pandas_version": pd.__version__, "pyarrow_version": pyarrow_module().__version__,
            "started_ns": self.started_ns, "saved_ns": time.time_ns(),
            "every": self.every, "interrupted": interrupted, "cpus": self._cpus,
            "attach_points": [asdict(a) if hasattr(a, "__dataclass_fields__") else
                              {"kind": "", "target": str(a), "function": ""}
                              for a in self.prog.attach_points],
            "map_names": list(self.prog.map_names),
            "stacks": {k: list(v) for k, v in self.stack_pairs.items()},
            "events": list(self.event_types),
        }  # "maps" (their infos and dtypes) are in each save's index entry

    def save(self, interrupted: bool = False) -> Recording:
        """Add the snapshots taken since the last save to `path`. The first save writes a
        new file (temp file + rename); later ones append to it (see bpfnb.zipappend), so a
        save costs the same however long the recording is, and an interrupted save leaves
        the file as the previous save left it."""
        with self.lock:
            return self._save(interrupted)

    def _save(self, interrupted: bool) -> Recording:
        first = self._saves == 0
        files: dict[str, bytes] = {}
        if first:
            files[META] = to_json(self.meta(interrupted)).encode()
        tables: dict[str, Any] = {}
        for (name, kind), table in self._tables.items():
            if not table.parts:
                continue
            prefix = (f"stacks/{name.split(':', 1)[1]}" if name.startswith("stacks:")
                      else f"maps/{name}/{kind}")
            got, tables.setdefault(name, {})[kind] = table.pending(prefix, self._saves)
            files.update(got)
        done = self.saved
        files[f"{INDEX}{self._saves:08d}.json"] = to_json({
            "first": done, "snapshots": self.times[done:], "tables": tables,
            "errors": {k: {str(i): e for i, e in v.items() if i >= done}
                       for k, v in self.errors.items()},
            "cells": {k: i for k, i in self.marks.items() if k in self._marked},
            "maps": self._maps, "interrupted": interrupted, "saved_ns": time.time_ns(),
        }).encode()
        if self._appender is None:
            self._appender = zipappend.create(self.path, files)
        else:
            self._appender.append(files)
        for table in self._tables.values():
            table.saved()
        self._marked.clear()
        self._saves += 1
        self.saved = len(self.times)
        return Recording(self.path, len(self.times), list(self.prog.map_names), interrupted)


def _descr(dtype: np.dtype) -> Any:
    from numpy.lib import format as npformat

    return npformat.dtype_to_descr(dtype)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _check_args(path: PathLike, every: Any, duration: Any, count: Any) -> None:
    """RecordArgumentError naming the first bad argument of record()."""
    if not _number(every) or not math.isfinite(every) or every <= 0:
        raise RecordArgumentError(f"record(every={every!r}): every is the time between "
                                  "snapshots, a finite number of seconds > 0 (e.g. every=0.5)")
    if duration is not None and (not _number(duration) or math.isnan(duration)
                                 or duration < 0):
        raise RecordArgumentError(f"record(duration={duration!r}): duration is a number of "
                                  "seconds >= 0, or None to stop only after `count`")
    if count is not None and (not isinstance(count, (int, np.integer)) or
                              isinstance(count, bool) or count < 1):
        raise RecordArgumentError(f"record(count={count!r}): count is a whole number of "
                                  "snapshots >= 1, or None")
    parent = Path(path).parent
    if Path(path).is_dir():
        raise RecordArgumentError(f"record(path={str(path)!r}): that is a directory; name a "
                                  "file in it, e.g. path='counts.bpfrec'")
    if not parent.is_dir():
        raise RecordArgumentError(f"record(path={str(path)!r}): directory {str(parent)!r} does "
                                  "not exist; create it or record elsewhere")
    try:  # the real test: create a file there (access() says yes to root on /proc)
        fd, probe = tempfile.mkstemp(prefix=".bpfnb-probe.", dir=parent)
    except OSError as e:
        raise RecordArgumentError(f"record(path={str(path)!r}): cannot write in "
                                  f"{str(parent)!r} ({e.strerror}); record elsewhere") from None
    os.close(fd)
    os.unlink(probe)


def record(prog: Program, path: PathLike, every: float = 1.0, duration: float | None = None,
           count: int | None = None, stacks: StackPairs | None = None,
           progress: Callable[[Progress], object] | None = None,
           checkpoint: float = 10.0, events: EventTypes | None = None) -> Recording:
    """Snapshot every map of `prog` each `every` seconds into the file `path`; blocks.

    Stops after `count` snapshots or once `duration` seconds have passed (snapshots at
    0, every, 2*every, ... up to duration), or on Ctrl-C (KeyboardInterrupt), which ends
    the recording early and still returns it. `stacks`: {name: (counts map, STACK_TRACE
    map)} recorded as symbolized Stacks (default: found from the key fields). Event maps
    (RINGBUF, PERF_EVENT_ARRAY) are drained at each snapshot: the events since the previous
    one, decoded with the struct live `events()` uses, or `events={map: ctypes struct}`.
    The file is saved after the first snapshot, every `checkpoint` seconds and at the end;
    another exception saves what was taken, then propagates. `progress(Progress)` runs after each
    snapshot (`Progress.text` is a one-line summary).
    """
    _check_args(path, every, duration, count)
    rec = Recorder(prog, path, stacks=stacks, every=every, events=events)
    start = time.monotonic()
    last_save = start
    # without a progress callback: the kit's display (notebook bar or terminal line)
    shown = progress_display.reporter(f"record {path}", math.inf if duration is None
                                      else duration, "snapshots") if progress is None else None
    interrupted = False
    try:
        while True:
            rec.snapshot()
            now = time.monotonic()
            n = len(rec.times)
            if rec.saved == 0 or now - last_save >= checkpoint:
                rec.save()
                last_save = time.monotonic()
            if progress is not None:
                progress(Progress(n, now - start, rec.saved, duration, count, str(path)))
            elif shown is not None:
                shown.update(now - start, n)
            if count is not None and n >= count:
                break
            due = start + n * every
            if duration is not None and due - start > duration + 1e-9:
                break
            time.sleep(max(0.0, due - time.monotonic()))
    except KeyboardInterrupt:
        interrupted = True
        if rec.times:
            return rec.save(interrupted=True)
        raise
    except BaseException:
        if rec.times and rec.saved < len(rec.times):
            rec.save(interrupted=True)
        raise
    finally:
        if shown is not None:
            shown.close(interrupted)
    return rec.save() if rec.saved < len(rec.times) else Recording(
        rec.path, len(rec.times), list(prog.map_names))
