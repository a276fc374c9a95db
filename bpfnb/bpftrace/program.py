"""BpftraceProgram: a bpftrace script running in the background, its maps as views."""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from bpfnb.bpftrace import errors, kernel, transcript
from bpfnb.bpftrace.output import ERROR_TYPES, TEXT_TYPES, Message
from bpfnb.bpftrace.process import BpftraceProcess
from bpfnb.bpftrace.script import MapDecl, declarations
from bpfnb.bpftrace.transcript import Transcript
from bpfnb.bpftrace.views import BpftraceMap
from bpfnb.errors import ProgramClosedError, UnknownMapError
from bpfnb.map.completion import MapNameHints


class BpftraceProgram(MapNameHints):
    """A running (or finished) bpftrace program. `prog["@name"]` is a map view; `output`
    the text it printed; `events()` that text line by line with times. Stop it with
    close() or a `with` block; the final map dump is kept after it ends."""

    _timer: threading.Timer | None

    def __init__(self, script: str, name: str | None = None, duration: float | None = None,
                 args: Sequence[Any] = (), binary: str | None = None,
                 attach_timeout: float = 60.0) -> None:
        process = BpftraceProcess(script, [str(a) for a in args], binary)
        self._setup(script, name, [str(a) for a in args], process, duration)
        process.start(attach_timeout)
        _LIVE.add(self)
        if duration is not None and process.running:
            timer = threading.Timer(duration, self.stop)
            timer.daemon = True
            timer.start()
            self._timer = timer

    def _setup(self, script: str, name: str | None, args: list[str],
               process: BpftraceProcess | Transcript, duration: float | None = None
               ) -> None:
        self.script = script
        self.name = name or "bpftrace"
        self.args = args
        self.duration = duration
        self.decls: dict[str, MapDecl] = declarations(script)
        self.process = process
        self._views: dict[str, BpftraceMap] = {}
        self._closed = False
        self._timer = None

    # -- recording ------------------------------------------------------------------------
    def record(self) -> dict[str, Any]:
        """This run as JSON-able data (recordings store it; `replay` serves it back).
        Record after the program ended to include its final dump."""
        return transcript.to_dict(self.script, self.name, self.args, self.process)

    @classmethod
    def replay(cls, record: Any) -> BpftraceProgram:
        """A finished program from `record()`'s data: maps, output and events as they were,
        with no bpftrace and no privileges. ReplayError if the data is not such a record."""
        script, name, args, tr = transcript.from_dict(record)
        prog = cls.__new__(cls)
        prog._setup(script, name, args, tr)
        return prog

    # -- state ----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.process.running

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    @property
    def attach_seconds(self) -> float:
        """From starting bpftrace to every probe attached."""
        return (self.process.attach_ns or 0) / 1e9

    @property
    def warnings(self) -> list[str]:
        return errors.warnings(self.process.stderr)

    @property
    def runtime_errors(self) -> list[dict[str, Any]]:
        """Errors bpftrace reported while running (newer releases: runtime_error,
        helper_error, print_error messages with filename, line and col)."""
        return [m.raw for m in self.process.snapshot() if m.type in ERROR_TYPES]

    @property
    def lost_events(self) -> int:
        """Events bpftrace reported lost (perf buffer overruns)."""
        return sum(m.number or 0 for m in self.process.snapshot() if m.type == "lost_events")

    def __repr__(self) -> str:
        state = "running" if self.running else f"ended ({self.returncode})"
        return f"<BpftraceProgram {self.name}: {state}, maps {list(self.map_names)}>"

    # -- maps -----------------------------------------------------------------------------
    @property
    def map_names(self) -> list[str]:
        """Maps the script declares, and any others bpftrace printed."""
        names = dict.fromkeys(self.decls)
        names.update(dict.fromkeys(self.process.map_names()))
        return list(names)

    @property
    def maps(self) -> dict[str, BpftraceMap]:
        return {n: self[n] for n in self.map_names}

    def __getitem__(self, name: str) -> BpftraceMap:
        if not name.startswith("@"):
            name = "@" + name
        if name not in self._views:
            if name not in self.map_names:
                raise UnknownMapError(f"{self.name} has no map {name!r}; its maps: "
                                      f"{', '.join(self.map_names) or 'none'}")
            decl = self.decls.get(name) or MapDecl(name, "", ())
            self._views[name] = BpftraceMap(self, decl)
        return self._views[name]

    def latest(self, name: str) -> Message | None:
        """The last map message naming `name` (after exit: the final dump)."""
        return self.process.latest_map(name)

    def kernel_map_ids(self) -> dict[str, int]:
        pid = self.process.pid
        if pid is None or not self.running:
            return {}
        try:
            return kernel.process_maps(pid)
        except OSError:
            return {}

    def stacks(self, name: str) -> Any:
        """A kstack/ustack-keyed map as a bpfnb Stacks."""
        return self[name].stacks()

    # -- printed text ---------------------------------------------------------------------
    @property
    def output(self) -> str:
        """Everything printf()/time()/cat()/join()/system() printed, as printed."""
        return "".join(m.text for m in self.process.snapshot() if m.type in TEXT_TYPES)

    def on_output(self, fn: Callable[[str], None]) -> Callable[[], None]:
        """Call `fn(text)` with everything printed so far, then with each new piece as it
        arrives (from a reader thread): how a cell shows output live. Returns a function
        that stops the calls. A replayed program has no new output: `fn` sees the past."""
        def on_message(m: Message) -> None:
            if m.type in TEXT_TYPES:
                fn(m.text)

        if isinstance(self.process, Transcript):
            for m in self.process.snapshot():
                on_message(m)
            return lambda: None
        process = self.process
        process.listen(on_message)
        return lambda: process.unlisten(on_message)

    def events(self) -> pd.DataFrame:
        """Printed output one line per row: `time` (when read), `type`, `line`."""
        rows: list[tuple[int, str, str]] = []
        pending = ""
        for m in self.process.snapshot():
            if m.type not in TEXT_TYPES:
                continue
            pending += m.text
            *done, pending = pending.split("\n")
            rows.extend((m.time_ns, m.type, ln) for ln in done)
        if pending:
            rows.append((m.time_ns, m.type, pending))
        df = pd.DataFrame(rows, columns=["time", "type", "line"])
        df["time"] = pd.to_datetime(df["time"], unit="ns")
        df.attrs.update(program=self.name)
        return df

    # -- lifetime -------------------------------------------------------------------------
    def stop(self) -> int | None:
        """Stop bpftrace (SIGINT, then SIGKILL); its final map dump is kept."""
        if self._timer is not None:
            self._timer.cancel()
        for v in self._views.values():
            v.release()
        return self.process.stop()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait until bpftrace ends by itself (exit(), or `duration`)."""
        rc = self.process.wait(timeout)
        if rc is not None:
            for v in self._views.values():
                v.release()
        return rc

    def close(self) -> None:
        """Stop bpftrace; no process or probe is left. Maps stay readable (final dump)."""
        self.stop()
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> BpftraceProgram:
        if self._closed:
            raise ProgramClosedError(f"{self.name} is closed; run it again")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_LIVE: weakref.WeakSet[BpftraceProgram] = weakref.WeakSet()


def programs() -> list[BpftraceProgram]:
    """bpftrace programs this process started that are still running."""
    return [p for p in list(_LIVE) if p.running]


def stop_all() -> int:
    """Stop every running bpftrace this process started (`%bpf stop --all`, unload, exit);
    returns how many were running."""
    live = programs()
    for p in live:
        p.close()
    return len(live)


atexit.register(stop_all)


def bpftrace(script: str, name: str | None = None, duration: float | None = None,
             args: Sequence[Any] = (), **options: Any) -> BpftraceProgram:
    """Run `script` in the system's bpftrace (`-f json`) in the background; return once
    every probe is attached. A running program of the same `name` is stopped first
    (re-running a cell replaces it). `duration` seconds stops it; `args` are its $1, $2...
    options: binary (the bpftrace path), attach_timeout (seconds, 60)."""
    if name is not None:
        for old in programs():
            if old.name == name:
                old.close()
    return BpftraceProgram(script, name=name, duration=duration, args=args, **options)
