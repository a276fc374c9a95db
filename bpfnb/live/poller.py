"""Periodic refresh without ipywidgets: a Poller thread, a bounded History, per-second Rates.

A Poller calls a function every `every` seconds on a daemon thread. It never queues: a
refresh slower than the interval pushes the next one out (the refresh's share of the time,
its duty, stays under `max_duty`), errors go into `status` and the thread keeps going.
Every running poller is in a registry, so closing a program, unloading the extension or
leaving the interpreter stops it (see `stop_all`). Views built on pollers (live widgets)
register too (`track`): stopping them that way also closes them, so nothing but the
user's own references keeps their widgets and history alive.

A daemon thread rather than a timer on the kernel's event loop: in ipykernel the loop runs
on the main thread, so a timer would stall whenever a cell computes or sleeps. Widget trait
changes from a thread are plain comm messages on IOPub (thread-safe); pollers never print
or `display()`, which ipykernel 7 routes by thread.
"""

from __future__ import annotations

import atexit
import itertools
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import pandas as pd

from bpfnb.errors import ProgramClosedError
from bpfnb.program import events as program_events

__all__ = [
    "Closable", "History", "PollStatus", "Poller", "Rates", "StopPolling", "close_views",
    "running", "stop_all", "track",
]

ERROR_BACKOFF_MAX = 10.0   # seconds: the longest wait between failing refreshes
CATCH_UP = 0.2    # s: how late a refresh may start and the next still keep the rate
JOIN_TIMEOUT = 5.0         # seconds stop() waits for a refresh in progress
RATE_SUFFIX = "/s"


class StopPolling(Exception):
    """Raised by a refresh function to end its poller (e.g. its map's program closed)."""


@dataclass(frozen=True)
class PollStatus:
    """What a poller did last. Times are wall-clock seconds (time.time())."""

    state: str = "new"             # new | running | paused | stopped
    refreshes: int = 0             # refreshes that returned normally
    errors: int = 0                # refreshes that raised
    consecutive_errors: int = 0
    last_time: float | None = None        # start of the last refresh
    last_duration: float | None = None    # seconds the last refresh took
    last_error: str | None = None         # "ErrorType: message" of the last failure
    interval: float = 0.0                 # seconds between the last two refresh starts
    backing_off: bool = False             # the refresh is slower than `every` allows
    stop_reason: str | None = None

    @property
    def rate(self) -> float:
        """Refreshes per second at the current pace (0 before two refreshes)."""
        return 1.0 / self.interval if self.interval > 0 else 0.0


_ids = itertools.count(1)


class Poller:
    """Calls `refresh()` every `every` seconds on a daemon thread until stopped.

    Refreshes keep a fixed rate (a late one does not delay the next). `max_duty` caps the
    share of time spent refreshing: after a refresh costing `d` seconds (its CPU time, or its
    wall time when it overran two intervals) the next starts no sooner than
    `d * (1 - max_duty) / max_duty` after it ends.
    `owner` (e.g. a MapView) and `tag` (e.g. a notebook cell id) let `stop_all` find it;
    `on_status` runs after every refresh, successful or not, on the poller's thread.
    """

    def __init__(self, refresh: Callable[[], object], every: float = 1.0, *,
                 name: str | None = None, owner: object | None = None, tag: str | None = None,
                 max_duty: float = 0.5,
                 on_status: Callable[[PollStatus], None] | None = None,
                 stop_on: tuple[type[BaseException], ...] = (ProgramClosedError,)) -> None:
        if not 0 < max_duty <= 1:
            raise ValueError(f"max_duty must be in (0, 1], not {max_duty}")
        self.id = next(_ids)
        self.name = name or f"bpfnb-poller-{self.id}"
        self.owner = owner
        self.tag = tag
        self.max_duty = max_duty
        self.on_status = on_status
        self.stop_on = stop_on
        self._refresh = refresh
        self._every = _positive(every)
        self._status = PollStatus()
        self._status_lock = threading.Lock()
        self._lock = threading.Lock()          # guards state and the thread handle
        self._run_lock = threading.Lock()      # one refresh at a time (thread or refresh_now)
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._paused = False
        self._first = 0.0

    # -- settings ---------------------------------------------------------------------
    @property
    def every(self) -> float:
        return self._every

    @every.setter
    def every(self, seconds: float) -> None:
        with self._lock:
            self._every = _positive(seconds)
            self._wake.notify_all()

    @property
    def status(self) -> PollStatus:
        return self._status

    @property
    def state(self) -> str:
        return self._status.state

    @property
    def alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    # -- control (all idempotent) -----------------------------------------------------
    def start(self, wait_first: bool = False) -> Poller:
        """Start refreshing: the first refresh runs at once, or after `every` seconds with
        `wait_first`. A stopped poller starts again."""
        with self._lock:
            if self.alive and not self._stopping:
                return self
            old = self._thread
        if old is not None:
            old.join(JOIN_TIMEOUT)
        with self._lock:
            self._stopping = False
            self._paused = False
            self._set(state="running", stop_reason=None)
            self._first = time.monotonic() + (self._every if wait_first else 0.0)
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            _register(self)
            self._thread.start()
        self._notify()
        return self

    def stop(self, reason: str = "stopped", timeout: float = JOIN_TIMEOUT) -> None:
        """Stop and wait (up to `timeout`) for a refresh in progress to finish."""
        with self._lock:
            thread = self._thread
            if self._status.state != "stopped":
                self._set(state="stopped", stop_reason=reason)
            self._stopping = True
            self._wake.notify_all()
        _unregister(self)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._notify()

    def pause(self) -> None:
        with self._lock:
            if self._status.state == "running":
                self._paused = True
                self._set(state="paused")
                self._wake.notify_all()
            else:
                return
        self._notify()

    def resume(self) -> None:
        """Continue after pause(); the next refresh runs at once."""
        with self._lock:
            if self._status.state == "paused":
                self._paused = False
                self._set(state="running")
                self._wake.notify_all()
            else:
                return
        self._notify()

    def refresh_now(self) -> bool:
        """Run one refresh in the calling thread (serialized with the poller's). True if ok."""
        return self._run_once()

    def join(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def __repr__(self) -> str:
        s = self._status
        return (f"<Poller {self.name}: {s.state}, every {self._every:g} s, "
                f"{s.refreshes} refreshes, {s.errors} errors>")

    # -- the thread -------------------------------------------------------------------
    def _loop(self) -> None:
        tick = at = self._first     # the rate's tick, and when the next refresh may run
        try:
            while True:
                with self._lock:
                    if not self._wait_until(at):
                        return
                start, cpu = time.monotonic(), time.thread_time()
                self._run_once()
                end = time.monotonic()
                tick, at = self._schedule(tick, start, end, time.thread_time() - cpu)
        finally:
            if self._thread is threading.current_thread():   # not a newer start()'s
                _unregister(self)

    def _wait_until(self, due: float) -> bool:
        """With the lock held: wait for `due` (or resume); False when stopping."""
        while not self._stopping:
            if self._paused:
                self._wake.wait()
                continue
            left = due - time.monotonic()
            if left <= 0:
                return True
            every = self._every
            self._wake.wait(left)
            if self._every != every:     # a new interval applies to the wait under way
                due += self._every - every
        return False

    def _schedule(self, tick: float, start: float, end: float, cpu: float | None = None
                  ) -> tuple[float, float]:
        """(next tick, when the next refresh may run). Ticks keep a fixed rate: a refresh
        that starts late (a plot holding the GIL, a busy machine) does not move them, unless
        it started more than a period and CATCH_UP late (a stall: the rate restarts from
        now, no long burst to catch up). The refresh runs at its tick, or later when
        `max_duty` says rest: a refresh costs its CPU time (`cpu`; waiting for the cores or
        the GIL is not its cost), or its wall time when it overran two periods."""
        s = self._status
        base = self._every
        if s.consecutive_errors:
            base = min(base * 2 ** (s.consecutive_errors - 1), max(base, ERROR_BACKOFF_MAX))
        tick = (tick if start - tick < base + CATCH_UP else start) + base
        cost = end - start if cpu is None or end - start > 2 * base else cpu
        rest = end + cost * (1 - self.max_duty) / self.max_duty
        self._set(backing_off=rest > max(tick, start + base) and not s.consecutive_errors)
        return tick, max(tick, rest)

    def _run_once(self) -> bool:
        with self._run_lock:
            wall, start = time.time(), time.monotonic()
            error: BaseException | None = None
            try:
                self._refresh()
            except StopPolling as e:   # no join here: the thread may wait for this lock
                self.stop(str(e) or "stopped by its refresh", timeout=0)
                return False
            except self.stop_on as e:
                self.stop(f"{type(e).__name__}: {e}", timeout=0)
                return False
            except Exception as e:
                error = e
            duration = time.monotonic() - start
            s = self._status
            interval = wall - s.last_time if s.last_time is not None else 0.0
            if error is None:
                self._set(refreshes=s.refreshes + 1, consecutive_errors=0, last_time=wall,
                          last_duration=duration, interval=interval)
            else:
                self._set(errors=s.errors + 1, consecutive_errors=s.consecutive_errors + 1,
                          last_time=wall, last_duration=duration, interval=interval,
                          last_error=f"{type(error).__name__}: {error}")
            self._notify()
            return error is None

    def _notify(self) -> None:
        if self.on_status is None:
            return
        try:
            self.on_status(self._status)
        except Exception as e:  # a broken status display must not stop the refreshes
            s = self._status
            self._set(errors=s.errors + 1, last_error=f"status: {type(e).__name__}: {e}")

    def _set(self, **changes: Any) -> None:
        with self._status_lock:
            self._status = replace(self._status, **changes)


def _positive(seconds: float) -> float:
    seconds = float(seconds)
    if not seconds > 0:
        raise ValueError(f"the refresh interval must be > 0 seconds, not {seconds}")
    return seconds


# -- registry -------------------------------------------------------------------------------

_registry: dict[int, Poller] = {}
_registry_lock = threading.RLock()   # re-entrant: a __del__ (GC) may close views


def _register(poller: Poller) -> None:
    with _registry_lock:
        _registry[poller.id] = poller


def _unregister(poller: Poller) -> None:
    with _registry_lock:
        _registry.pop(poller.id, None)


def running() -> list[Poller]:
    """Pollers started and not yet stopped (running or paused)."""
    with _registry_lock:
        return list(_registry.values())


def stop_all(owners: Iterable[object] | None = None, tag: str | None = None,
             reason: str = "stopped", close: bool = True) -> int:
    """Stop every running poller, or those owned by one of `owners` / tagged `tag`; with
    `close`, first close the tracked views that match (running or not, see `track`).
    Returns how many pollers were stopped; their threads have ended (or timed out)."""
    if close:
        close_views(owners, tag, reason)
    wanted = None if owners is None else {id(o) for o in owners}
    chosen = [p for p in running()
              if (wanted is None or id(p.owner) in wanted) and (tag is None or p.tag == tag)]
    for p in chosen:
        p.stop(reason, timeout=0)
    for p in chosen:
        p.join(JOIN_TIMEOUT)
    return len(chosen)


# -- views ----------------------------------------------------------------------------------

class Closable(Protocol):
    """A view built on pollers: `owner` and `tag` as its pollers', `close(reason)` stops
    them and frees what the view shows (widgets)."""

    owner: object
    tag: str | None

    def close(self, reason: str = "closed") -> None: ...


_views: dict[int, weakref.ref[Any]] = {}


def track(view: Closable) -> None:
    """Close `view` when its owner's program closes, its cell runs again or the extension
    unloads. Held weakly: tracking never keeps a view alive."""
    key = id(view)

    def forget(ref: weakref.ref[Any]) -> None:
        if _views.get(key) is ref:   # not a newer view that reused the id
            _views.pop(key, None)

    with _registry_lock:
        _views[key] = weakref.ref(view, forget)


def untrack(view: object) -> None:
    with _registry_lock:
        ref = _views.get(id(view))
        if ref is not None and ref() is view:
            del _views[id(view)]


def close_views(owners: Iterable[object] | None = None, tag: str | None = None,
                reason: str = "closed") -> list[Any]:
    """Close the tracked views owned by one of `owners` / tagged `tag` (all without
    filters); returns them."""
    wanted = None if owners is None else {id(o) for o in owners}
    with _registry_lock:
        views = [v for v in (r() for r in list(_views.values())) if v is not None]
    chosen = [v for v in views
              if (wanted is None or id(v.owner) in wanted) and (tag is None or v.tag == tag)]
    for view in chosen:
        untrack(view)
        view.close(reason)
    return chosen


def _on_program_close(prog: Any) -> None:
    """program close callback: stop the pollers of a program (or replay) and its maps."""
    stop_all(prog.owned(), reason=f"program {getattr(prog, 'name', '?')} closed")


def _on_exit() -> None:
    stop_all(reason="interpreter exit", close=False)


program_events.on_close(_on_program_close)
atexit.register(_on_exit)


# -- history --------------------------------------------------------------------------------

class History:
    """The last snapshots of a map, bounded by count and total rows; `df()` is tidy.

    Each snapshot is a DataFrame (key and value columns, or `low`/`high`/`count`
    buckets); `df()` stacks them under a `time` column (datetime64[ns], read time).
    """

    def __init__(self, max_snapshots: int = 600, max_rows: int = 1_000_000) -> None:
        if max_snapshots < 1 or max_rows < 1:
            raise ValueError("a history keeps at least one snapshot and one row")
        self.max_snapshots = max_snapshots
        self.max_rows = max_rows
        self._items: deque[tuple[int, pd.DataFrame]] = deque()
        self._rows = 0
        self._attrs: dict[str, Any] = {}
        self._lock = threading.Lock()

    def append(self, time_ns: int, frame: pd.DataFrame, copy: bool = True) -> None:
        """Keep `frame` as the snapshot read at `time_ns` (epoch ns), dropping the oldest
        snapshots beyond the bounds (the newest is always kept)."""
        kept = frame.copy(deep=True) if copy else frame
        with self._lock:
            self._items.append((int(time_ns), kept))
            self._rows += len(kept)
            self._attrs = {str(k): v for k, v in frame.attrs.items()}
            while len(self._items) > 1 and (len(self._items) > self.max_snapshots
                                            or self._rows > self.max_rows):
                _, old = self._items.popleft()
                self._rows -= len(old)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._rows = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def times(self) -> pd.DatetimeIndex:
        """Read times of the snapshots kept, empty ones included (the tidy frame has no
        rows for those)."""
        with self._lock:
            ns = np.array([t for t, _ in self._items], dtype=np.int64)
        return pd.DatetimeIndex(ns.astype("datetime64[ns]"), name="time")

    def last(self) -> pd.DataFrame | None:
        with self._lock:
            return self._items[-1][1] if self._items else None

    def df(self, last: int | None = None) -> pd.DataFrame:
        """time, key columns, value columns: one row per key (or bucket) per snapshot;
        the `last` snapshots only if given."""
        with self._lock:
            items = list(self._items)[-last:] if last else list(self._items)
            attrs = dict(self._attrs)
        if not items:
            return pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns]")})
        times = np.concatenate([np.full(len(f), t, dtype="datetime64[ns]") for t, f in items])
        out = pd.concat([f for _, f in items], ignore_index=True)
        out.insert(0, "time", times)
        for key in ("read_ns", "read_duration_ns", "entries", "fill", "read_method"):
            attrs.pop(key, None)
        out.attrs.update(attrs, snapshots=len(items))
        return out


# -- rates ----------------------------------------------------------------------------------

class Rates:
    """Per-second change of counter columns between consecutive snapshots.

    For a key in both snapshots the rate is (now - before) / seconds between the reads. A
    key that appeared counts from zero (it was created since the last read), as does a
    value that went down (a reset, or an LRU entry evicted and created again). A key that
    disappeared has no rate. The first snapshot has no rates (NaN).
    """

    def __init__(self, key_columns: list[str], value_columns: list[str]) -> None:
        self.key_columns = list(key_columns)
        self.value_columns = list(value_columns)
        self._prev: pd.DataFrame | None = None
        self._prev_ns = 0
        self.appeared = 0
        self.disappeared = 0

    @staticmethod
    def column(name: str) -> str:
        return f"{name}{RATE_SUFFIX}"

    def reset(self) -> None:
        self._prev = None
        self.appeared = self.disappeared = 0

    def update(self, frame: pd.DataFrame, time_ns: int) -> pd.DataFrame:
        """`frame` with a `<col>/s` column after each counter column. Keeps a copy."""
        counters = [c for c in self.value_columns
                    if c in frame.columns and _is_number(frame[c])]
        prev, prev_ns = self._prev, self._prev_ns
        self._prev, self._prev_ns = frame[self.key_columns + counters].copy(), int(time_ns)
        rates: dict[str, np.ndarray] = {}
        if prev is None or time_ns <= prev_ns:
            rates = {c: np.full(len(frame), np.nan) for c in counters}
            self.appeared = self.disappeared = 0
        else:
            seconds = (time_ns - prev_ns) / 1e9
            where = _match(_index(prev, self.key_columns), _index(frame, self.key_columns))
            found = where >= 0
            self.appeared = int((~found).sum())
            self.disappeared = len(prev) - int(found.sum())
            for c in counters:
                now = frame[c].to_numpy()
                before = np.zeros_like(now)
                before[found] = prev[c].to_numpy()[where[found]]
                grew = now >= before
                delta = np.where(grew, now - np.where(grew, before, 0), now)
                rates[c] = delta.astype(np.float64) / seconds
        return _with_rates(frame, self.value_columns, rates)


def _is_number(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def _index(frame: pd.DataFrame, keys: list[str]) -> pd.Index:
    if not keys:
        return pd.RangeIndex(len(frame))
    if len(keys) == 1:
        return pd.Index(frame[keys[0]])
    return pd.MultiIndex.from_frame(frame[keys])


def _match(before: pd.Index, now: pd.Index) -> np.ndarray:
    """For each key in `now`, its row in `before` or -1."""
    if not before.is_unique:   # a map never repeats a key; keep the first if a read did
        first = ~before.duplicated()
        rows = pd.Series(np.flatnonzero(first), index=before[first])
        return rows.reindex(now).fillna(-1).to_numpy(np.int64)
    return np.asarray(before.get_indexer(now))


def _with_rates(frame: pd.DataFrame, values: list[str], rates: dict[str, np.ndarray]
                ) -> pd.DataFrame:
    """A new frame: each rate column right after its counter (one DataFrame built from the
    columns, no per-column inserts); attrs list the rate columns as value columns."""
    cols: dict[str, Any] = {}
    for c in frame.columns:
        if c.endswith(RATE_SUFFIX) and c[: -len(RATE_SUFFIX)] in rates:
            continue
        cols[c] = frame[c].array        # keeps extension dtypes (categories, nullable)
        if c in rates:
            cols[Rates.column(c)] = rates[c]
    out = pd.DataFrame(cols, index=frame.index, copy=True)
    vals = [v for v in values if v in frame.columns]
    with_rates = [x for v in vals for x in ((v, Rates.column(v)) if v in rates else (v,))]
    out.attrs = {**{str(k): v for k, v in frame.attrs.items()}, "value_columns": with_rates}
    return out
