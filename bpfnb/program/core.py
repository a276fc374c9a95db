"""Program: one loaded BPF program, its attachments and maps; closes cleanly, once."""

from __future__ import annotations

import atexit
import contextlib
import ctypes as ct
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from bpfnb._sys.interrupts import HoldInterrupts
from bpfnb.backends import select
from bpfnb.backends.base import AttachPoint, Usdt
from bpfnb.backends.bcc import BccModule
from bpfnb.backends.libbpf import LibbpfModule
from bpfnb.backends.libbpf import load_object as _load_object
from bpfnb.errors import BpfnbError, ProgramClosedError, UnknownMapError
from bpfnb.map.completion import MapNameHints
from bpfnb.map.view import MapView
from bpfnb.program import events, functions
from bpfnb.program import trace as printk

if TYPE_CHECKING:
    from bpfnb.program.functions import Function

PERF_TYPES = {"hardware": 0, "software": 1}
PERF_CONFIGS = {
    "software": {"cpu-clock": 0, "task-clock": 1, "page-faults": 2, "context-switches": 3,
                 "cpu-migrations": 4, "minor-faults": 5, "major-faults": 6},
    "hardware": {"cpu-cycles": 0, "instructions": 1, "cache-references": 2, "cache-misses": 3,
                 "branch-instructions": 4, "branch-misses": 5},
}

_open_programs: weakref.WeakSet[Program] = weakref.WeakSet()


Module = BccModule | LibbpfModule


class Program(MapNameHints):
    """A compiled, loaded and (by default) attached BCC C program.

    `prog["map"]` is a MapView; `prog.close()` detaches and frees everything. Also a
    context manager. `backend` ("auto", "libbpf" or "bcc") picks the engine;
    `prog.backend` and `prog.backend_reason` say which one ran and why.
    """

    def __init__(self, source: str, name: str | None = None, cflags: Sequence[str] = (),
                 attach: bool = True, usdt: Iterable[Usdt] = (), backend: str = "auto",
                 consts: Mapping[str, int] | None = None,
                 _module: Callable[[], tuple[Module, select.Choice]] | None = None,
                 line_offset: int = 0) -> None:
        self.name = name or "bpf"
        self.source = source
        self.cflags = tuple(cflags)
        self._lock = threading.RLock()
        self._views: dict[str, MapView] = {}
        self._module: Module | None = None
        self.backend, self.backend_reason = backend, "not loaded"
        # printk formats get this program's tag (prog.trace); line_offset blank lines make
        # errors count lines as the editor does (1 for a %%bpf cell: its magic line)
        self._trace_tag = printk.new_tag() if printk.prints(source) else None
        text = "\n" * line_offset + printk.tagged(source, self._trace_tag or "")
        # Ctrl-C waits for the load to end, then closes what it built: the maps and
        # programs are fds that nothing would hold after an interrupt mid-way
        with HoldInterrupts(undo=self.close):
            if _module is None:
                module, choice = select.make_module(text, self.cflags, tuple(usdt),
                                                    backend, self.name, consts)
            else:
                module, choice = _module()
            self.backend, self.backend_reason = choice.backend, choice.reason
            if self._trace_tag:
                printk.open_for(self, self._trace_tag)
            try:
                if attach:
                    module.autoattach()
                self._map_names = module.table_names()
            except BaseException:
                module.close()
                raise
            self._module = module
            _open_programs.add(self)

    # -- state ------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._module is None

    @property
    def module(self) -> Module:
        if self._module is None:
            raise ProgramClosedError(f"program {self.name!r} is closed; run its cell again")
        return self._module

    @property
    def attach_points(self) -> list[AttachPoint]:
        return [] if self._module is None else list(self._module.attached)

    @property
    def functions(self) -> list[str]:
        return self.module.functions()

    # -- maps -------------------------------------------------------------------------
    @property
    def map_names(self) -> list[str]:
        return list(self._map_names)

    @property
    def maps(self) -> dict[str, MapView]:
        return {n: self[n] for n in self._map_names}

    def __getitem__(self, name: str) -> MapView:
        with self._lock:
            if name in self._views:
                return self._views[name]
            if name not in self._map_names:
                names = ", ".join(self._map_names) or "none"
                raise UnknownMapError(f"no map {name!r} in program {self.name!r}; "
                                      f"its maps are: {names}")
            table = self.module.table(name)
            leaf = getattr(table, "sLeaf", table.Leaf)
            key = getattr(table, "Key", None)
            view = MapView(name, table.map_fd, key, leaf, owner=lambda: not self.closed,
                           event_type=lambda: event_type(table, name))
            self._views[name] = view
            return view

    def owned(self) -> list[object]:
        """What live views of this program are tied to: itself and its open map views."""
        return [self, *self._views.values()]

    def __contains__(self, name: object) -> bool:
        return name in self._map_names

    def __iter__(self) -> Any:
        return iter(self._map_names)

    def trace(self, duration: float = 1.0, max_lines: int | None = None) -> Any:
        """This program's bpf_trace_printk lines (time, cpu, pid, comm, message), waiting up
        to `duration` s; other programs' lines are left alone (see program/trace.py)."""
        return printk.trace(self._trace_tag, duration, max_lines)

    # -- attaching --------------------------------------------------------------------
    def attach_tracepoint(self, tracepoint: str, fn_name: str) -> Program:
        """Attach `fn_name` to 'category:event'."""
        self.module.attach_tracepoint(tracepoint, fn_name)
        return self

    def attach_raw_tracepoint(self, tracepoint: str, fn_name: str) -> Program:
        self.module.attach_raw_tracepoint(tracepoint, fn_name)
        return self

    def attach_kprobe(self, event: str, fn_name: str) -> Program:
        self.module.attach_kprobe(event, fn_name)
        return self

    def attach_kretprobe(self, event: str, fn_name: str) -> Program:
        self.module.attach_kprobe(event, fn_name, ret=True)
        return self

    def attach_kfunc(self, fn_name: str, ret: bool = False) -> Program:
        """Attach a KFUNC_PROBE/KRETFUNC_PROBE function (fentry/fexit; target from its name)."""
        kind = "kretfunc" if ret else "kfunc"
        self.module.attach_btf(kind, fn_name, fn_name.removeprefix(f"{kind}__"))
        return self

    def attach_lsm(self, fn_name: str) -> Program:
        """Attach an LSM_PROBE function (hook from its name)."""
        self.module.attach_btf("lsm", fn_name, fn_name.removeprefix("lsm__"))
        return self

    def attach_uprobe(self, name: str, sym: str | None = None, fn_name: str = "",
                      pid: int = -1, addr: int | None = None, sym_off: int = 0) -> Program:
        """Run `fn_name` when `sym` in binary/library `name` (path, or 'c' for libc) runs."""
        self.module.attach_uprobe(name, sym, fn_name, ret=False, pid=pid, addr=addr,
                                  sym_off=sym_off)
        return self

    def attach_uretprobe(self, name: str, sym: str | None = None, fn_name: str = "",
                         pid: int = -1, addr: int | None = None) -> Program:
        self.module.attach_uprobe(name, sym, fn_name, ret=True, pid=pid, addr=addr, sym_off=0)
        return self

    def attach_usdt(self, probe: str, fn_name: str, path: str | None = None,
                    pid: int | None = None) -> Program:
        """Attach to a USDT probe. Handlers that read probe arguments need the probe at
        load time instead: `bpfnb.load(src, usdt=[Usdt(probe, fn, path)])`."""
        self.module.attach_usdt(probe, fn_name, path, pid)
        return self

    def attach_perf_event(self, fn_name: str, type: str | int = "software",
                          config: str | int = "cpu-clock", sample_freq: int | None = None,
                          sample_period: int | None = None, pid: int = -1,
                          cpu: int = -1) -> Program:
        """Sample with a perf event on every CPU (default: software cpu-clock at 99 Hz)."""
        ev_type = PERF_TYPES[type] if isinstance(type, str) else type
        if isinstance(config, str):
            kind = type if isinstance(type, str) else "software"
            if config not in PERF_CONFIGS.get(kind, {}):
                raise BpfnbError(f"unknown {kind} perf event {config!r}; known: "
                                 f"{', '.join(PERF_CONFIGS.get(kind, {}))}")
            ev_config = PERF_CONFIGS[kind][config]
        else:
            ev_config = config
        if sample_freq is None and sample_period is None:
            sample_freq = 99
        self.module.attach_perf_event(fn_name, ev_type, ev_config,
                                      sample_period=sample_period or 0,
                                      sample_freq=sample_freq or 0, pid=pid, cpu=cpu)
        return self

    def function(self, name: str, prog_type: int | str | None = None) -> Function:
        """Load C function `name` as a BPF program (tail-call slots, cgroup/XDP/sockmap
        attach); the type is inferred when not given."""
        return functions.function(self, name, prog_type)

    def program_fd(self, fn_name: str, prog_type: int) -> int:
        """Load function `fn_name` as a program of `prog_type`; return its fd."""
        return self.module.program_fd(fn_name, prog_type)

    # -- lifecycle --------------------------------------------------------------------
    def close(self) -> None:
        """Detach every probe, free every map. Safe to call twice; Ctrl-C waits for it."""
        with HoldInterrupts(), self._lock:
            if self._module is None:
                return
            events.closing(self)
            for view in self._views.values():
                view.release()
            self._views.clear()
            module, self._module = self._module, None
            module.close()
            _open_programs.discard(self)
        if not open_programs():  # the last one: keep nothing warm for a next cell
            select.release()

    def __enter__(self) -> Program:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def summary(self) -> dict[str, Any]:
        """Name, attach points, maps and their entry counts (for `%bpf ls`)."""
        if self.closed:
            return {"name": self.name, "state": "closed", "backend": self.backend,
                    "attached": "", "maps": ""}
        maps = []
        for n in self._map_names:
            try:
                maps.append(f"{n} ({len(self[n])})")
            except Exception:
                maps.append(n)
        return {"name": self.name, "state": "loaded", "backend": self.backend,
                "attached": ", ".join(str(a) for a in self.attach_points),
                "maps": ", ".join(maps)}

    def _repr_html_(self) -> str:
        """A small card: attach points, and each map's type and size (text/plain: repr)."""
        if self.closed:
            return f"<p><b>{escape(self.name)}</b>: closed</p>"
        points = ", ".join(f"<code>{escape(str(a))}</code>" for a in self.attach_points)
        rows = "".join(self._map_row(n) for n in self._map_names)
        table = ("<table><tr><th>map</th><th>type</th><th>key</th><th>value</th>"
                 f"<th>max entries</th></tr>{rows}</table>") if rows else ""
        return (f"<p><b>{escape(self.name)}</b> attached to {points or 'nothing yet'}; "
                f"<code>{escape(self.name)}[\"map\"].df()</code> reads a map.<br>"
                f"<small>backend: {escape(self.backend)} ({escape(self.backend_reason)})"
                f"</small></p>{table}")

    def _map_row(self, name: str) -> str:
        try:
            i = self[name].info
        except BpfnbError as e:
            return (f"<tr><td><code>{escape(name)}</code></td>"
                    f"<td colspan=4>{escape(str(e))}</td></tr>")
        cells = (i.type, f"{i.key_size} B", f"{i.value_size} B", f"{i.max_entries:,}")
        return (f"<tr><td><code>{escape(name)}</code></td>"
                + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")

    def __repr__(self) -> str:
        if self.closed:
            return f"<Program {self.name}: closed>"
        points = ", ".join(str(a) for a in self.attach_points) or "nothing attached"
        return f"<Program {self.name}: {points}; maps: {', '.join(self._map_names) or 'none'}>"


def load(source: str, name: str | None = None, cflags: Sequence[str] = (), attach: bool = True,
         backend: str = "auto", usdt: Iterable[Usdt] = (),
         consts: Mapping[str, int] | None = None, line_offset: int = 0) -> Program:
    """Compile, load and (unless attach=False) auto-attach a BCC C program with the
    `backend` asked for ("auto": libbpf where the kernel has BTF and clang is here).
    `consts` set `const volatile` globals (see backends.select.make_module);
    `line_offset` lines come before the source in the editor (1 in a %%bpf cell)."""
    return Program(source, name=name, cflags=cflags, attach=attach, usdt=usdt,
                   backend=backend, consts=consts, line_offset=line_offset)


def load_object(path_or_bytes: str | os.PathLike[str] | bytes, name: str | None = None,
                attach: bool = True, consts: Mapping[str, Any] | None = None) -> Program:
    """A libbpf CO-RE object built elsewhere (`.bpf.o`): `const volatile` globals set from
    `consts`, loaded, programs auto-attached from their SEC() names unless attach=False."""
    def build() -> tuple[Module, select.Choice]:
        module = _load_object(path_or_bytes, label, attach=False, consts=consts)
        return module, select.Choice("libbpf", "load_object: a libbpf object")

    label = name or ("object" if isinstance(path_or_bytes, bytes)
                     else os.path.basename(os.fspath(path_or_bytes)).split(".")[0])
    return Program("", name=label, attach=attach, _module=build)


def event_type(table: Any, name: str) -> Any:
    """The ctypes struct a program sends to event map `name` (its backend's table says)."""
    buf = ct.create_string_buffer(1 << 16)
    try:
        return type(table.event(buf))
    except BaseException as e:  # bcc exits on types it cannot map
        raise BpfnbError(f"the backend could not derive the event struct of {name!r} "
                         f"({e!s}); pass event_type=<ctypes struct>") from None


def open_programs() -> list[Program]:
    return [p for p in list(_open_programs) if not p.closed]


def close_all() -> None:
    """Close every program this process holds (extension unload, `%bpf stop --all`,
    interpreter exit) and release what the backends keep warm for the next cell."""
    for prog in open_programs():
        prog.close()
    select.release()


atexit.register(close_all)
