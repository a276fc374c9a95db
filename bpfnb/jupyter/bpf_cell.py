"""`%%bpf NAME [options]`: compile, load and attach the cell's BPF C program; bind NAME."""

from __future__ import annotations

import keyword
import os
from dataclasses import dataclass, field
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display

from bpfnb.backends.base import Usdt
from bpfnb.errors import BpfnbError
from bpfnb.fleet import Fleet
from bpfnb.jupyter import args as margs
from bpfnb.jupyter import session as nbsession
from bpfnb.jupyter.displays import Banner
from bpfnb.jupyter.state import NotebookState
from bpfnb.program import core
from bpfnb.store.replay import replay

BACKENDS = ("auto", "libbpf", "bcc")


@magic_arguments("%bpf")
@argument("name", nargs="*", metavar="NAME", help="the Python name the program is bound to")
@argument("--cflags", action="append", default=[], metavar="STR",
          help="compiler flags, split as a shell does ('-DX=1 -I/path')")
@argument("-D", dest="defines", action="append", default=[], metavar="MACRO[=VAL]",
          help="define a macro (repeatable)")
@argument("--no-attach", dest="attach", action="store_false",
          help="load only; attach by hand (NAME.attach_uprobe(...), ...)")
@argument("--usdt", action="append", default=[], metavar="PATH_OR_PID:PROBE:FN",
          help="enable a USDT probe and call FN at it (repeatable)")
@argument("--backend", choices=BACKENDS, default="auto",
          help="the engine: libbpf (CO-RE, clang) or bcc; auto picks libbpf where it works")
@argument("--fleet", metavar="FLEET_VAR",
          help="load on every host of the bpfnb.fleet.Fleet bound to FLEET_VAR")
@argument("--replay", metavar="PATH", help="bind the recording at PATH instead of loading")
@argument("--fallback", metavar="PATH",
          help="load live where BPF loads, replay the recording at PATH otherwise")
def bpf_cell(line: str, cell: str) -> None:
    """Compile, load and attach the BPF C program in the cell; bind it to NAME.

    bpfnb attaches every function whose name says where (TRACEPOINT_PROBE,
    RAW_TRACEPOINT_PROBE, kprobe__/kretprobe__ names, KFUNC_PROBE, LSM_PROBE) and
    binds NAME to a Program: NAME["map"].df() is a DataFrame. Re-running the cell
    closes the previous NAME first. PATH (--replay, --fallback) is one program's
    recording (*.zip) or a notebook's recording directory (DIR/NAME.zip; with
    BPFNB_RECORD=1 a live notebook records into it).

    Example:
        %%bpf counts --backend=libbpf -D STEP=1
        BPF_HASH(by_pid, u32, u64);
        TRACEPOINT_PROBE(syscalls, sys_enter_getpid) { ... }
    """


@dataclass
class CellArgs:
    """The %%bpf line, checked."""

    name: str
    cflags: list[str] = field(default_factory=list)
    attach: bool = True
    usdt: list[Usdt] = field(default_factory=list)
    mode: str | None = None  # None (live), "replay" or "fallback"
    path: str = ""
    backend: str = "auto"
    fleet: str | None = None


def parse_cell_args(line: str) -> CellArgs:
    """The %%bpf line's arguments; UsageError on anything odd."""
    ns = margs.parse(bpf_cell, margs.split_words(line, "%%bpf"), "%%bpf")
    usage = margs.usage_of(bpf_cell)
    if len(ns.name) > 1:
        raise UsageError(f"%%bpf: one NAME expected, got {ns.name[0]!r} and {ns.name[1]!r}"
                         f"\n\n{usage}")
    name = ns.name[0] if ns.name else ""
    if not name.isidentifier() or keyword.iskeyword(name):
        raise UsageError(f"%%bpf needs a NAME that is a Python identifier (not a keyword)"
                         f"\n\n{usage}")
    if ns.replay is not None and ns.fallback is not None:
        raise UsageError(f"%%bpf: --replay or --fallback, not both\n\n{usage}")
    mode = "replay" if ns.replay is not None else "fallback" if ns.fallback is not None \
        else None
    if ns.fleet is not None and (mode is not None or not ns.attach or ns.usdt):
        extra = f"--{mode}" if mode is not None else "--no-attach" if not ns.attach \
            else "--usdt"
        raise UsageError(f"%%bpf: --fleet runs on the fleet's hosts; it has no {extra}")
    cflags = [f for text in ns.cflags for f in margs.split_words(text, "%%bpf --cflags")]
    return CellArgs(name, cflags + [f"-D{d}" for d in ns.defines], ns.attach,
                    [_split_usdt(s) for s in ns.usdt], mode, ns.replay or ns.fallback or "",
                    ns.backend, ns.fleet)


def _split_usdt(spec: str) -> Usdt:
    parts = spec.split(":")
    if len(parts) != 3 or not all(parts):
        raise UsageError(f"--usdt wants PATH_OR_PID:PROBE:FUNCTION, got {spec!r}")
    where, probe, fn = parts
    return Usdt(probe, fn, pid=int(where)) if where.isdigit() else Usdt(probe, fn, path=where)


def is_notebook_recording(path: str) -> bool:
    """A notebook's recording directory, vs. one program's recording file (any name)."""
    return os.path.isdir(path) or (not os.path.isfile(path) and not path.endswith(".zip"))


def run_cell(state: NotebookState, line: str, cell: str) -> None:
    """Run a %%bpf cell: close the NAME's old program, load (or replay), bind, show."""
    args = parse_cell_args(line)
    state.check_free(args.name)
    fleet = _fleet(state, args.fleet) if args.fleet is not None else None
    state.close(args.name)
    notebook = args.mode is not None and is_notebook_recording(args.path)
    session = state.session
    try:
        if fleet is not None:
            prog: Any = fleet.load(cell, name=args.name, cflags=args.cflags,
                                   backend=args.backend)
            why = None
        elif notebook:
            prog = _notebook_program(state, args, cell)
            why = session.reason if session.mode is nbsession.Mode.REPLAY else None
        else:
            why = _replay_reason(args)
            prog = replay(args.path) if why is not None else _load(args, cell)
    except BpfnbError as e:
        state.last_error = e
        raise
    state.bind(args.name, prog)
    if notebook:
        display(Banner(session.banner(args.name), why is not None))
    elif args.mode is not None:
        display(Banner(f"{nbsession.REPLAY_MARK} {prog.banner()} ({why})" if why is not None else
                       nbsession.LIVE_BANNER, why is not None))
    display(prog)


def _load(args: CellArgs, cell: str) -> core.Program:
    return core.load(cell, name=args.name, cflags=args.cflags, attach=args.attach,
                     usdt=args.usdt, backend=args.backend, line_offset=1)


def _fleet(state: NotebookState, var: str) -> Any:
    """The Fleet bound to `var` in the notebook; UsageError if there is none."""
    fleet = state.shell.user_ns.get(var)
    if not isinstance(fleet, Fleet):
        got = "nothing" if fleet is None else f"a {type(fleet).__name__}"
        raise UsageError(f"%%bpf --fleet {var}: {var!r} holds {got}, not a bpfnb.fleet.Fleet; "
                         f"make one first ({var} = bpfnb.fleet(ipyparallel.Client()))")
    return fleet


def _notebook_program(state: NotebookState, args: CellArgs, cell: str) -> Any:
    """A %%bpf --fallback/--replay DIR cell: live (and recorded) or replayed."""
    session = state.session
    mode = session.use(args.path, replay=args.mode == "replay")
    if mode is nbsession.Mode.REPLAY:
        return session.open_replay(args.name)
    prog = _load(args, cell)
    if mode is nbsession.Mode.RECORD:
        session.tape(prog)
    return prog


def _replay_reason(args: CellArgs) -> str | None:
    """Why this cell replays (None: it loads live)."""
    if args.mode == "replay":
        return "--replay asked for the recording"
    return nbsession.replay_reason() if args.mode == "fallback" else None
