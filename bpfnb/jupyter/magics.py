"""IPython magics: %%bpf NAME cells and %bpf commands. Thin: parse, call the core, bind."""

from __future__ import annotations

import builtins
import html
import keyword
import math
import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_cell_magic, line_magic, magics_class
from IPython.display import display

from bpfnb.backends.bcc import Usdt
from bpfnb.errors import BpfnbError, ReplayError, VerifierError
from bpfnb.jupyter import session as nbsession
from bpfnb.program import core
from bpfnb.store.recording import record
from bpfnb.store.replay import ReplayProgram, replay

USAGE = """\
%%bpf NAME [--cflags=STR] [-D MACRO[=VAL] ...] [--no-attach] [--usdt PATH:PROBE:FN ...]
      [--replay PATH | --fallback PATH]
    Compile, load and attach the BCC C program in the cell; bind it to NAME.
    Re-running the cell closes the previous NAME first. --replay binds a recording instead;
    --fallback loads live where BPF can load and replays the recording otherwise. PATH is
    one program's recording (*.zip) or a notebook's recording directory (DIR/NAME.zip;
    with BPFNB_RECORD=1 a live notebook records into it).
%bpf fallback DIR       this notebook runs live where BPF loads, from the recordings in DIR
                        otherwise (what --fallback DIR says, before any %%bpf cell)
%%recorded              a cell that drives the kernel (workloads, map writes): run live,
                        recorded with BPFNB_RECORD=1, its recorded outputs shown in replay
%bpf record NAME PATH [--every S] [--duration S] [--count N]
                        save timed snapshots of NAME's maps to PATH (bpfnb.record)
%bpf ls                 programs this notebook holds: name, attach points, maps, entries
%bpf stop NAME          detach and free program NAME
%bpf stop --all         detach and free every program
%bpf log [NAME]         the full verifier/compiler log of the last error (or of NAME's load)
"""


# IPython's output and input history (_, __, _5, _i, _ii5, _ih, _oh, _dh) and its own names
_IPYTHON_NAMES = re.compile(r"_{1,3}|_i{1,3}\d*|_\d+|_[iod]h|_exit_code|In|Out|get_ipython"
                            r"|exit|quit")

PROFILE_USAGE = "%bpf_profile [-p PID] [-F HZ] [-d SECONDS] [--no-kernel] [--no-user] [-- CMD]"


def _split_usdt(spec: str) -> Usdt:
    parts = spec.split(":")
    if len(parts) != 3 or not all(parts):
        raise UsageError(f"--usdt wants PATH_OR_PID:PROBE:FUNCTION, got {spec!r}")
    where, probe, fn = parts
    return Usdt(probe, fn, pid=int(where)) if where.isdigit() else Usdt(probe, fn, path=where)


@dataclass
class CellArgs:
    name: str
    cflags: list[str] = field(default_factory=list)
    attach: bool = True
    usdt: list[Usdt] = field(default_factory=list)
    mode: str | None = None  # None (live), "replay" or "fallback"
    path: str = ""


def split_words(line: str, magic: str) -> list[str]:
    """The words of a magic's line, as a shell splits them; UsageError if unbalanced."""
    try:
        return shlex.split(line)
    except ValueError as e:
        raise UsageError(f"{magic}: cannot parse the arguments ({e}); close the quote or "
                         "escape it with a backslash") from None


def _value(it: Any, option: str, usage: str) -> str:
    """The word after `option`; UsageError when the line ends first."""
    word = next(it, None)
    if word is None:
        raise UsageError(f"{option} needs a value\n\n{usage}")
    return str(word)


def parse_cell_args(line: str) -> CellArgs:
    """The %%bpf line's arguments; UsageError on anything odd."""
    words = split_words(line, "%%bpf")
    name, cflags, attach, usdt = None, [], True, []
    mode, path = None, ""
    it = iter(words)
    for word in it:
        if word.startswith("--cflags="):
            cflags += split_words(word.split("=", 1)[1], "%%bpf --cflags")
        elif word == "--cflags":
            cflags += split_words(_value(it, "%%bpf --cflags", USAGE), "%%bpf --cflags")
        elif word == "-D":
            cflags.append("-D" + _value(it, "%%bpf -D", USAGE))
        elif word.startswith("-D") and len(word) > 2:
            cflags.append(word)
        elif word == "--no-attach":
            attach = False
        elif word == "--usdt":
            usdt.append(_split_usdt(_value(it, "%%bpf --usdt", USAGE)))
        elif word in ("--replay", "--fallback"):
            mode, path = word[2:], next(it, "")
            if not path:
                raise UsageError(f"%%bpf: {word} needs a PATH\n\n{USAGE}")
        elif word.startswith("-"):
            raise UsageError(f"%%bpf: unknown option {word}\n\n{USAGE}")
        elif name is None:
            name = word
        else:
            raise UsageError(f"%%bpf: one NAME expected, got {name!r} and {word!r}\n\n{USAGE}")
    if name is None or not name.isidentifier() or keyword.iskeyword(name):
        raise UsageError(f"%%bpf needs a NAME that is a Python identifier (not a keyword)"
                         f"\n\n{USAGE}")
    return CellArgs(name, cflags, attach, usdt, mode, path)


def is_notebook_recording(path: str) -> bool:
    """A notebook's recording directory, vs. one program's recording file (any name)."""
    return os.path.isdir(path) or (not os.path.isfile(path) and not path.endswith(".zip"))


@magics_class
class BpfMagics(Magics):
    """The %%bpf / %bpf magics; holds the programs bound in the notebook."""

    shell: Any

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.programs: dict[str, core.Program] = {}
        self.last_error: BpfnbError | None = None
        self.session = nbsession.NotebookSession()
        shell.events.register("pre_run_cell", self.session.pre_run_cell)
        shell.events.register("post_run_cell", self.session.post_run_cell)

    @line_cell_magic
    def bpf(self, line: str, cell: str | None = None) -> Any:
        """Compile, load and attach BCC C programs; list and stop them.

        %%bpf NAME [--cflags=STR] [-D MACRO[=VAL] ...] [--no-attach] [--usdt PATH:PROBE:FN]
            The cell holds BCC C code. bpfnb compiles it, loads it, attaches every function
            whose name says where (TRACEPOINT_PROBE, RAW_TRACEPOINT_PROBE, kprobe__/kretprobe__
            names, KFUNC_PROBE, LSM_PROBE) and binds NAME to a Program: NAME["map"].df() is a
            DataFrame, NAME.attach_uprobe(...) etc. attach more. Re-running the cell closes the
            previous NAME first. --no-attach loads nothing until you attach by hand.
        %bpf ls              programs held: name, attach points, maps (entries)
        %bpf stop NAME       close NAME (detach, free maps)
        %bpf stop --all      close every program
        %bpf log [NAME]      full verifier or compiler log of the last error
        """
        if cell is not None:
            return self._cell(line, cell)
        words = split_words(line, "%bpf")
        if not words:
            raise UsageError(USAGE)
        command = self._commands.get(words[0])
        if command is None:
            raise UsageError(f"%bpf: unknown command {words[0]!r}\n\n{USAGE}")
        return command(self, words[1:])

    def _cell(self, line: str, cell: str) -> None:
        args = parse_cell_args(line)
        self._check_free(args.name)
        self._close(args.name)
        notebook = args.mode is not None and is_notebook_recording(args.path)
        try:
            if notebook:
                prog: Any = self._notebook_program(args, cell)
                why = self.session.reason if self.session.mode is nbsession.Mode.REPLAY \
                    else None
            else:
                why = _replay_reason(args)
                prog = (replay(args.path) if why is not None else
                        core.load(cell, name=args.name, cflags=args.cflags,
                                  attach=args.attach, usdt=args.usdt))
        except BpfnbError as e:
            self.last_error = e
            raise
        self.programs[args.name] = prog
        self.shell.user_ns[args.name] = prog
        if notebook:
            display(_Banner(self.session.banner(args.name), why is not None))
        elif args.mode is not None:
            display(_Banner(f"⏵ {prog.banner()} ({why})" if why is not None else
                            nbsession.LIVE_BANNER, why is not None))
        display(prog)

    def _check_free(self, name: str) -> None:
        """UsageError unless `name` is free or holds a program this magic bound."""
        shell = self.shell
        why = None
        if _IPYTHON_NAMES.fullmatch(name) or name in getattr(shell, "user_ns_hidden", {}):
            why = "is reserved by IPython"
        elif hasattr(builtins, name):
            why = "is a Python builtin"
        elif name in shell.user_ns:
            bound = shell.user_ns[name]
            if not (isinstance(bound, (core.Program, ReplayProgram))
                    or self.programs.get(name) is bound):
                why = f"is already bound to a {type(bound).__name__}"
        if why is not None:
            raise UsageError(f"%%bpf {name}: {name!r} {why}; choose another NAME (binding it "
                             "would hide it from the notebook)")

    def _notebook_program(self, args: CellArgs, cell: str) -> Any:
        """A %%bpf --fallback/--replay DIR cell: live (and recorded) or replayed."""
        mode = self.session.use(args.path, replay=args.mode == "replay")
        if mode is nbsession.Mode.REPLAY:
            return self.session.open_replay(args.name)
        prog = core.load(cell, name=args.name, cflags=args.cflags, attach=args.attach,
                         usdt=args.usdt)
        if mode is nbsession.Mode.RECORD:
            self.session.tape(prog)
        return prog

    @cell_magic
    def recorded(self, line: str, cell: str) -> Any:
        """A cell that drives the kernel (starts workloads, writes maps, attaches by hand).

        %%recorded
            Live, the cell runs as usual; with BPFNB_RECORD=1 its outputs and the variables
            it binds are saved in the notebook's recording (%bpf fallback DIR / %%bpf ...
            --fallback DIR). Replaying, the cell is not run: its recorded outputs are shown
            and its variables bound again.
        """
        if line.strip():
            raise UsageError("%%recorded takes no arguments")
        session = self.session
        key = nbsession.cell_key(cell)
        if session.mode is nbsession.Mode.REPLAY:
            got = session.cells.get(key)
            if got is None:
                raise ReplayError(
                    "this %%recorded cell is not in the recording "
                    f"{str(session.cells.path)!r} (was it edited?); it needs "
                    f"the kernel, and {session.reason}")
            nbsession.replay_cell(self.shell, got, cell, session)
            return None
        if session.mode is nbsession.Mode.RECORD:
            return nbsession.record_cell(self.shell, session.cells, key, cell)
        return nbsession.run_cell_code(self.shell, cell)

    def _close(self, name: str) -> None:
        old = self.programs.pop(name, None)
        if old is not None:
            old.close()
        bound = self.shell.user_ns.get(name)
        if isinstance(bound, (core.Program, ReplayProgram)):
            bound.close()

    def _ls(self, args: list[str]) -> pd.DataFrame:
        if args:
            raise UsageError("%bpf ls takes no arguments")
        rows = [p.summary() for p in core.open_programs()]
        return pd.DataFrame(rows, columns=["name", "state", "attached", "maps"])

    def _stop(self, args: list[str]) -> None:
        if args == ["--all"]:
            for name in list(self.programs):
                self._close(name)
            core.close_all()
            return
        if len(args) != 1:
            raise UsageError("%bpf stop NAME | %bpf stop --all")
        if args[0] not in self.programs:
            held = ", ".join(self.programs) or "none"
            raise UsageError(f"%bpf stop: no program {args[0]!r}; held: {held}")
        self._close(args[0])

    def _log(self, args: list[str]) -> None:
        err = self.last_error
        if err is None or not err.details:
            raise UsageError("%bpf log: no error with a log yet")
        display(_LogView(err, full=True))

    def _record(self, args: list[str]) -> Any:
        usage = "%bpf record NAME PATH [--every S] [--duration S] [--count N]"
        if len(args) < 2 or len(args) % 2:
            raise UsageError(usage)
        name, path, opts = args[0], args[1], dict(zip(args[2::2], args[3::2]))
        if name not in self.programs or not isinstance(self.programs[name], core.Program):
            raise UsageError(f"%bpf record: no live program {name!r}")
        if set(opts) - {"--every", "--duration", "--count"}:
            raise UsageError(usage)
        every = _number(opts.get("--every", "1"), "%bpf record --every", usage, low=0.0)
        duration = (_number(opts["--duration"], "%bpf record --duration", usage, low=0.0,
                            zero=True) if "--duration" in opts else None)
        count = (int(_number(opts["--count"], "%bpf record --count", usage, low=0.0,
                             whole=True)) if "--count" in opts else None)
        if duration is None and count is None:
            count = 10
        handle = display(_Text("recording..."), display_id=True)
        return record(self.programs[name], path, every=every, duration=duration, count=count,
                      progress=lambda p: handle.update(_Text(p.text)) if handle else None)

    def _fallback(self, args: list[str]) -> Any:
        if len(args) != 1 or not is_notebook_recording(args[0]):
            raise UsageError("%bpf fallback DIR: one directory of recordings")
        self.session.use(args[0])
        return _Banner(self.session.banner(), self.session.mode is nbsession.Mode.REPLAY)

    _commands = {"ls": _ls, "stop": _stop, "log": _log, "record": _record,
                 "fallback": _fallback}

    @line_magic
    def bpf_doctor(self, line: str) -> Any:
        """What loads and attaches here, why not and how to fix it (a table).

        %bpf_doctor [--refresh] [--cleanup]
            --refresh   run the attach probes again (they are cached per boot)
            --cleanup   first remove tracefs probes left behind by dead processes
        """
        from bpfnb.doctor import cleanup_stale_probes, doctor

        words = set(line.split())
        if words - {"--refresh", "--cleanup"}:
            raise UsageError(f"%bpf_doctor: unknown argument(s) {sorted(words)}\n"
                             "%bpf_doctor [--refresh] [--cleanup]")
        if "--cleanup" in words:
            cleanup_stale_probes()
        return doctor(refresh="--refresh" in words)

    @line_magic
    def bpf_profile(self, line: str) -> Any:
        """CPU profile by perf-event sampling; returns a Stacks (flame graph in the notebook).

        %bpf_profile [-p PID] [-F HZ] [-d SECONDS] [--no-kernel] [--no-user] [-- COMMAND ARGS]
            -p PID       profile one process (default: the whole machine)
            -F HZ        samples per second per CPU (default 99)
            -d SECONDS   how long (default 5; with a COMMAND, until it exits or this passes)
            -- COMMAND   start COMMAND and profile it
        """
        from bpfnb.profiler.profiling import profile

        words = split_words(line, "%bpf_profile")
        command: list[str] = []
        if "--" in words:
            at = words.index("--")
            words, command = words[:at], words[at + 1:]
            if not command:
                raise UsageError("%bpf_profile: nothing after --")
            if shutil.which(command[0]) is None:
                raise UsageError(f"%bpf_profile: no command {command[0]!r} (not found or not "
                                 "executable); give a path or a program on PATH after --")
        opts: dict[str, str | None] = {"-p": None, "-F": "99", "-d": "5"}
        flags = {"--no-kernel": False, "--no-user": False}
        it = iter(words)
        for word in it:
            if word in opts:
                opts[word] = _value(it, f"%bpf_profile {word}", PROFILE_USAGE)
            elif word in flags:
                flags[word] = True
            else:
                raise UsageError(f"%bpf_profile: unknown argument {word!r}\n{PROFILE_USAGE}")
        hz = int(_number(opts["-F"] or "", "%bpf_profile -F", PROFILE_USAGE, low=0.0,
                         whole=True))
        duration = _number(opts["-d"] or "", "%bpf_profile -d", PROFILE_USAGE, low=0.0)
        pid = None
        if opts["-p"] is not None:
            pid = int(_number(opts["-p"], "%bpf_profile -p", PROFILE_USAGE, low=0.0,
                              whole=True))
            if not os.path.exists(f"/proc/{pid}"):
                raise UsageError(f"%bpf_profile -p {pid}: no such process; give the PID of "
                                 "a running process (or omit -p to profile the machine)")
        return profile(pid=pid, command=command or None, duration=duration, hz=hz,
                       kernel=not flags["--no-kernel"], user=not flags["--no-user"])

    def close_all(self) -> None:
        for name in list(self.programs):
            self._close(name)
        self.session.close()
        self.shell.events.unregister("pre_run_cell", self.session.pre_run_cell)
        self.shell.events.unregister("post_run_cell", self.session.post_run_cell)


def _number(text: str, option: str, usage: str, low: float, zero: bool = False,
            whole: bool = False) -> float:
    """`text` as a finite number above `low` (or equal with zero=True); UsageError if not."""
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < low or (value == low and not zero):
        kind = "a whole number" if whole else "a number"
        bound = f">= {low:g}" if zero else f"> {low:g}"
        raise UsageError(f"{option} takes {kind} {bound}, not {text!r}\n{usage}")
    return value


def _replay_reason(args: CellArgs) -> str | None:
    """Why this cell replays (None: it loads live)."""
    if args.mode == "replay":
        return "--replay asked for the recording"
    return nbsession.replay_reason() if args.mode == "fallback" else None


class _Text:
    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


class _Banner:
    """Says whether a --replay/--fallback cell runs live or from its recording, and why."""

    def __init__(self, text: str, replaying: bool) -> None:
        self.text = text
        self.replaying = replaying

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, str]:
        colour = "#fff3cd" if self.replaying else "#d1e7dd"
        return {"text/plain": self.text,
                "text/html": f"<div style='background:{colour};padding:4px 8px;"
                             f"border-radius:4px'>{html.escape(self.text)}</div>"}


class _LogView:
    """A long log: collapsed in HTML, whole in text/plain."""

    def __init__(self, err: BpfnbError, full: bool = False) -> None:
        self.err = err
        self.full = full

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, str]:
        title = "verifier log" if isinstance(self.err, VerifierError) else "compiler output"
        body = html.escape(self.err.details)
        lines = len(self.err.details.splitlines())
        return {
            "text/plain": self.err.details if self.full else
            f"({title}: {lines} lines; `%bpf log` shows it)",
            "text/html": f"<details><summary>{title} ({len(self.err.details.splitlines())} "
                         f"lines)</summary><pre>{body}</pre></details>",
        }


def _show_error(shell: Any, etype: type, value: BaseException, tb: Any,
                tb_offset: int | None = None) -> list[str]:
    """Show a bpfnb error as its message (no traceback), the long log folded away."""
    if isinstance(value, BpfnbError):
        magics = shell.magics_manager.registry.get("BpfMagics")
        if magics is not None:
            magics.last_error = value
        if value.details:
            display(_LogView(value))
    stb = [f"\x1b[0;31m{etype.__name__}\x1b[0m: {value}"]
    shell._showtraceback(etype, value, stb)  # IPython ignores the handler's return value
    return stb


def load_extension(ipython: Any) -> None:
    ipython.register_magics(BpfMagics)
    ipython.set_custom_exc((BpfnbError,), _show_error)


def unload_extension(ipython: Any) -> None:
    magics = ipython.magics_manager.registry.get("BpfMagics")
    if magics is not None:
        magics.close_all()
    core.close_all()
    from bpfnb.live import poller as live

    live.stop_all(reason="extension unloaded")
    ipython.set_custom_exc((), None)
