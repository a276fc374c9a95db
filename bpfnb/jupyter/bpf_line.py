"""`%bpf COMMAND ...`: list, stop, trace and record programs; show logs and probes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display

from bpfnb import bpftrace, fleet
from bpfnb.jupyter import args as margs
from bpfnb.jupyter import session as nbsession
from bpfnb.jupyter.bpf_cell import is_notebook_recording
from bpfnb.jupyter.displays import Banner, LogView, Text
from bpfnb.jupyter.state import NotebookState
from bpfnb.machine.probes import probes
from bpfnb.program import core
from bpfnb.store.recording import record

LS_COLUMNS = ["name", "state", "backend", "backend_reason", "attached", "maps"]


@magic_arguments("bpf ls")
def bpf_ls() -> None:
    """Programs this notebook holds: name, state, backend (and why), attach points, maps.

    Example: %bpf ls
    """


@magic_arguments("bpf stop")
@argument("name", nargs="?", metavar="NAME", help="the program to close")
@argument("--all", action="store_true", help="close every program")
def bpf_stop() -> None:
    """Detach and free program NAME (a %%bpf, fleet or %%bpftrace program), or all of them.

    Example: %bpf stop counts
    """


@magic_arguments("bpf log")
@argument("name", nargs="?", metavar="NAME", help="(ignored) the program whose load failed")
def bpf_log() -> None:
    """The full verifier or compiler log of the last error.

    Example: %bpf log
    """


@magic_arguments("bpf record")
@argument("name", metavar="NAME", help="a live program")
@argument("path", metavar="PATH", help="the recording to write (*.zip)")
@argument("--every", default="1", metavar="S", help="seconds between snapshots (1)")
@argument("--duration", metavar="S", help="stop after S seconds")
@argument("--count", metavar="N", help="stop after N snapshots (10 if no --duration)")
def bpf_record() -> None:
    """Save timed snapshots of NAME's maps to PATH (bpfnb.record); replay with --replay PATH.

    Example: %bpf record counts counts.zip --every 0.5 --count 20
    """


@magic_arguments("bpf fallback")
@argument("dir", metavar="DIR", help="the notebook's recording directory")
def bpf_fallback() -> None:
    """This notebook runs live where BPF loads, from the recordings in DIR otherwise (what
    %%bpf ... --fallback DIR says, before any %%bpf cell).

    Example: %bpf fallback recordings/
    """


@magic_arguments("bpf trace")
@argument("name", nargs="?", metavar="NAME", help="the program (default: the only one)")
@argument("--duration", default="1", metavar="S", help="wait up to S seconds (1)")
@argument("--max-lines", metavar="N", help="stop after N lines")
def bpf_trace() -> None:
    """The bpf_trace_printk() lines program NAME printed since the last call, waiting up to
    --duration for more: a DataFrame (time, cpu, pid, comm, message; Program.trace).

    Example: %bpf trace counts --duration 2 --max-lines 20
    """


@magic_arguments("bpf probes")
@argument("pattern", metavar="PATTERN", help="glob over category:name (syscalls:sys_enter_*)")
def bpf_probes() -> None:
    """The probes matching PATTERN: tracepoints, kprobe-able functions... (bpfnb.probes).

    Example: %bpf probes syscalls:sys_enter_open*
    """


def run_line(state: NotebookState, line: str) -> Any:
    """Run a `%bpf COMMAND ...` line."""
    words = margs.split_words(line, "%bpf")
    if not words:
        raise UsageError(usage())
    command = COMMANDS.get(words[0])
    if command is None:
        raise UsageError(f"%bpf: unknown command {words[0]!r}\n\n{usage()}")
    parser, run = command
    return run(state, margs.parse(parser, words[1:], f"%bpf {words[0]}"))


def usage() -> str:
    """One usage line per %bpf command."""
    return "\n".join(margs.usage_of(parser) for parser, _ in COMMANDS.values())


def _rows(state: NotebookState) -> list[dict[str, Any]]:
    """One row per program: %%bpf and bpfnb.load() ones, fleet ones, bpftrace ones."""
    rows = [{**p.summary(), "backend_reason": p.backend_reason} for p in core.open_programs()]
    for prog in fleet.open_fleet_programs():
        hosts = prog.live_hosts
        rows.append({"name": prog.name, "state": "loaded", "backend": f"fleet/{prog.backend}",
                     "backend_reason": f"{len(hosts)} hosts: {', '.join(hosts)}",
                     "attached": "", "maps": ", ".join(prog.map_names)})
    for script in bpftrace.programs():
        rows.append({"name": script.name, "state": "running", "backend": "bpftrace",
                     "backend_reason": "%%bpftrace", "attached": "",
                     "maps": ", ".join(script.map_names)})
    return rows


def _ls(state: NotebookState, ns: Any) -> pd.DataFrame:
    return pd.DataFrame(_rows(state), columns=LS_COLUMNS).fillna("")


def _stop(state: NotebookState, ns: Any) -> None:
    if ns.all and ns.name is None:
        state.close_programs()
        return
    if ns.all or ns.name is None:
        raise UsageError("%bpf stop NAME | %bpf stop --all")
    if ns.name not in state.names():
        held = ", ".join(state.names()) or "none"
        raise UsageError(f"%bpf stop: no program {ns.name!r}; held: {held}")
    state.close(ns.name)


def _log(state: NotebookState, ns: Any) -> None:
    err = state.last_error
    if err is None or not err.details:
        raise UsageError("%bpf log: no error with a log yet")
    display(LogView(err, full=True))


def _record(state: NotebookState, ns: Any) -> Any:
    usage = margs.usage_of(bpf_record)
    prog = state.programs.get(ns.name)
    if not isinstance(prog, core.Program):
        raise UsageError(f"%bpf record: no live program {ns.name!r}\n{usage}")
    every = margs.number(ns.every, "%bpf record --every", usage)
    duration = (margs.number(ns.duration, "%bpf record --duration", usage, zero=True)
                if ns.duration is not None else None)
    count = (int(margs.number(ns.count, "%bpf record --count", usage, whole=True))
             if ns.count is not None else None)
    if duration is None and count is None:
        count = 10
    handle = display(Text("recording..."), display_id=True)
    return record(prog, ns.path, every=every, duration=duration, count=count,
                  progress=lambda p: handle.update(Text(p.text)) if handle else None)


def _fallback(state: NotebookState, ns: Any) -> Any:
    if not is_notebook_recording(ns.dir):
        raise UsageError("%bpf fallback DIR: one directory of recordings")
    state.session.use(ns.dir)
    return Banner(state.session.banner(), state.session.mode is nbsession.Mode.REPLAY)


def _trace(state: NotebookState, ns: Any) -> Any:
    usage = margs.usage_of(bpf_trace)
    live = {n: p for n, p in state.programs.items() if isinstance(p, core.Program)}
    if ns.name is None and len(live) != 1:
        raise UsageError(f"%bpf trace: name the program (held: {', '.join(live) or 'none'})"
                         f"\n{usage}")
    name = ns.name if ns.name is not None else next(iter(live))
    if name not in live:
        raise UsageError(f"%bpf trace: no live program {name!r}; held: "
                         f"{', '.join(live) or 'none'}")
    duration = margs.number(ns.duration, "%bpf trace --duration", usage)
    lines = (int(margs.number(ns.max_lines, "%bpf trace --max-lines", usage, whole=True))
             if ns.max_lines is not None else None)
    return live[name].trace(duration=duration, max_lines=lines)


def _probes(state: NotebookState, ns: Any) -> Any:
    return probes(ns.pattern)


COMMANDS: dict[str, tuple[Callable[..., Any], Callable[[NotebookState, Any], Any]]] = {
    "ls": (bpf_ls, _ls), "stop": (bpf_stop, _stop), "log": (bpf_log, _log),
    "record": (bpf_record, _record), "fallback": (bpf_fallback, _fallback),
    "trace": (bpf_trace, _trace), "probes": (bpf_probes, _probes),
}
