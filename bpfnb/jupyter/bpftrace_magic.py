"""The %%bpftrace NAME cell magic: run the cell in bpftrace, bind NAME, show its printf
output as it arrives; record and replay it like a %%bpf cell (`--fallback DIR`)."""

from __future__ import annotations

import builtins
import html
import keyword
import math
import os
import re
import shlex
import threading
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display

from bpfnb.bpftrace import BpftraceProgram, bpftrace, recordfile
from bpfnb.bpftrace.health import available
from bpfnb.errors import ReplayError
from bpfnb.jupyter import session as nbsession
from bpfnb.program import core
from bpfnb.store.replay import ReplayProgram

SHOWN_LINES = 200   # the live output shows the last lines printed
UPDATE_EVERY = 0.25  # seconds between updates of the live output
_HISTORY = re.compile(r"_+\d*|_i+\d*|_[iod]h|_exit_code")
_PRINTS = re.compile(r"\b(printf|time|cat|join|system)\s*\(")  # what prints text


class _Text:
    """Plain text in the cell's output (never active content)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


class _Banner(_Text):
    """Where a --fallback/--replay cell's program comes from, and why."""

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, str]:
        colour = "#fff3cd" if self.text.startswith(nbsession.REPLAY_MARK) else "#d1e7dd"
        return {"text/plain": self.text,
                "text/html": f"<div style='background:{colour};padding:4px 8px;"
                             f"border-radius:4px'>{html.escape(self.text)}</div>"}


def _tail(text: str, lines: int = SHOWN_LINES) -> str:
    parts = text.split("\n")
    if len(parts) <= lines + 1:
        return text
    return f"[{len(parts) - lines - 1} earlier lines: NAME.output has them]\n" + \
        "\n".join(parts[-lines - 1:])


class LiveOutput:
    """A program's printf output in the cell that started it, updated as it arrives (at
    most every UPDATE_EVERY s) until the program ends or the cell runs again."""

    def __init__(self, prog: BpftraceProgram, every: float = UPDATE_EVERY) -> None:
        self.prog = prog
        self.text = ""
        self._lock = threading.Lock()
        self._dirty = False
        self._stopped = threading.Event()
        self.handle = display(_Text(""), display_id=True)
        self._unlisten = prog.on_output(self._add)
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True,
                                        name=f"bpfnb-bpftrace-output-{prog.name}")
        self._thread.start()

    def _add(self, text: str) -> None:
        with self._lock:
            self.text += text
            self._dirty = True

    def _run(self, every: float) -> None:
        while not self._stopped.wait(every):
            if not self.prog.running:
                self.prog.wait(5.0)  # its output read to the end
                break
            self._flush()
        self._unlisten()
        self._flush()

    def _flush(self) -> None:
        with self._lock:
            dirty, text, self._dirty = self._dirty, self.text, False
        if dirty and self.handle is not None:
            self.handle.update(_Text(_tail(text)))

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join(10.0)


def split_words(line: str) -> list[str]:
    """The magic line's words, as a shell splits them; UsageError if a quote is open."""
    try:
        return shlex.split(line)
    except ValueError as e:
        raise UsageError(f"%%bpftrace: cannot parse the arguments ({e}); close the quote or "
                         "escape it with a backslash") from None


def _notebook_session(shell: Any) -> nbsession.NotebookSession | None:
    """The notebook's recording session (the %%bpf magics' state holds it), if loaded."""
    for magics in shell.magics_manager.registry.values():
        for found in (getattr(getattr(magics, "state", None), "session", None),
                      getattr(magics, "session", None)):
            if isinstance(found, nbsession.NotebookSession):
                return found
    return None


@magics_class
class BpftraceMagics(Magics):
    """%%bpftrace cells; holds the bpftrace programs bound in the notebook."""

    shell: Any

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.programs: dict[str, BpftraceProgram] = {}
        self.outputs: dict[str, LiveOutput] = {}
        self.tapes: dict[str, tuple[BpftraceProgram, Path, tuple[int, bool]]] = {}
        self._session: nbsession.NotebookSession | None = None
        shell.events.register("post_run_cell", self.post_run_cell)

    @property
    def session(self) -> nbsession.NotebookSession:
        """The notebook's session (shared with %%bpf cells and %bpf fallback)."""
        found = _notebook_session(self.shell)
        if found is None:
            if self._session is None:
                self._session = nbsession.NotebookSession()
            found = self._session
        return found

    @cell_magic
    @magic_arguments()
    @argument("name", help="the Python name the program is bound to")
    @argument("--duration", type=float, metavar="SECONDS",
              help="stop the program after SECONDS (it runs in the background until then)")
    @argument("--fallback", metavar="PATH",
              help="run live where bpftrace runs, else replay the recording: a notebook's "
                   "recording directory (DIR/NAME.bpftrace.zip; BPFNB_RECORD=1 records into "
                   "it) or one NAME.bpftrace.zip")
    @argument("--replay", metavar="PATH", help="replay the recording at PATH (as --fallback)")
    def bpftrace(self, line: str, cell: str) -> None:
        """Run the cell's bpftrace script in the background; bind NAME to the program.

        %%bpftrace NAME [--duration SECONDS] [--fallback PATH | --replay PATH] [-- ARGS...]
            ARGS after -- are the script's $1, $2, ... (str($1) for text).

        NAME["@map"].df() is a DataFrame, .hist() a histogram frame, .live() a live view;
        NAME.output the text printf() printed (shown below the cell as it arrives),
        NAME.stacks("@stk") a kstack/ustack-keyed map as a flame graph. Re-running the cell
        stops the previous NAME; `%bpf stop NAME`, NAME.close() stop it. Errors give the
        line in the cell as the editor counts it (the %%bpftrace line is line 1).
        """
        words = split_words(line)
        at = words.index("--") if "--" in words else len(words)
        args = parse_argstring(self.bpftrace, shlex.join(words[:at]))
        script_args = words[at + 1:]
        name = args.name
        if not name.isidentifier() or keyword.iskeyword(name):
            raise UsageError(f"%%bpftrace needs a NAME that is a Python identifier (not a "
                             f"keyword), not {name!r}")
        if args.duration is not None and not (math.isfinite(args.duration)
                                              and args.duration > 0):
            raise UsageError(f"%%bpftrace --duration takes a number of seconds > 0, not "
                             f"{args.duration:g}")
        if args.fallback and args.replay:
            raise UsageError("%%bpftrace: --fallback or --replay, not both")
        self._check_free(name)
        self.close(name)
        path = args.replay or args.fallback
        source, why, where = self._source(name, path, replay=bool(args.replay))
        if source == "replay":
            prog = recordfile.load(where)
        else:
            prog = bpftrace("\n" + cell, name=name, duration=args.duration, args=script_args)
            if source == "record":
                self.tapes[name] = (prog, where, (-1, True))
                self._save(name)
        self.programs[name] = prog
        self.shell.user_ns[name] = prog
        if why is not None:
            display(_Banner(f"{nbsession.REPLAY_MARK} replaying {where} ({why})"))
        elif source == "record":
            display(_Banner(f"● live, recording to {where} ({nbsession.RECORD_ENV} is set)"))
        elif path is not None or source == "notebook":
            display(_Banner(nbsession.LIVE_BANNER))
        display(prog)
        if prog.running:
            if _PRINTS.search(cell):
                self.outputs[name] = LiveOutput(prog)
            return
        prog.wait(5.0)  # an ended program's output read to the end (a replayed one: at once)
        if prog.output:
            display(_Text(_tail(prog.output)))

    def _source(self, name: str, path: str | None, replay: bool
                ) -> tuple[str, str | None, Path]:
        """("live" | "notebook" | "record" | "replay", why it replays, recording path)."""
        session = self.session
        if path is not None and path.endswith(recordfile.SUFFIX) and not os.path.isdir(path):
            why = "--replay asked for the recording" if replay else _replay_reason()
            return ("replay" if why else "live"), why, Path(path)
        if path is not None:
            session.use(path, replay=replay)
        elif session.path is None:
            return "live", None, Path()
        assert session.path is not None
        where = recordfile.path_for(session.path, name)
        why = session.reason if session.mode is nbsession.Mode.REPLAY else _replay_reason()
        if why is not None:
            if not session.path.is_dir():
                raise ReplayError(
                    f"no recordings at {str(session.path)!r}: {why}, and there is nothing "
                    "to replay; record the notebook where bpftrace runs (make recordings)")
            return "replay", why, where
        return ("record" if session.mode is nbsession.Mode.RECORD else "notebook"), None, where

    def _check_free(self, name: str) -> None:
        """UsageError unless `name` is free or holds a program."""
        shell = self.shell
        why = None
        if _HISTORY.fullmatch(name) or name in nbsession.ipython_names(shell):
            why = "is reserved by IPython"
        elif hasattr(builtins, name):
            why = "is a Python builtin"
        elif name in shell.user_ns and not isinstance(
                shell.user_ns[name], (BpftraceProgram, core.Program, ReplayProgram)):
            why = f"is already bound to a {type(shell.user_ns[name]).__name__}"
        if why is not None:
            raise UsageError(f"%%bpftrace {name}: {name!r} {why}; choose another NAME "
                             "(binding it would hide it from the notebook)")

    def close(self, name: str) -> None:
        """Stop program `name` (this magic's, or any program bound to it) and its output."""
        shown = self.outputs.pop(name, None)
        old = self.programs.pop(name, None)
        bound = self.shell.user_ns.get(name)
        for prog in (old, bound):
            if isinstance(prog, (BpftraceProgram, core.Program, ReplayProgram)):
                prog.close()
        if shown is not None:
            shown.stop()
        if name in self.tapes:
            self._save(name)
            del self.tapes[name]

    def _save(self, name: str) -> None:
        """Write the recording of program `name` if it changed since the last write."""
        prog, path, last = self.tapes[name]
        state = (len(prog.process.snapshot()), prog.running)
        if state != last:
            recordfile.save(prog, path)
            self.tapes[name] = (prog, path, state)

    def post_run_cell(self, result: Any) -> None:
        """After each cell: recordings of live programs saved (their final dump once
        they end)."""
        for name in list(self.tapes):
            self._save(name)
            if not self.tapes[name][0].running:
                del self.tapes[name]

    def close_all(self) -> None:
        for name in list(self.programs):
            self.close(name)
        for name in list(self.tapes):
            self._save(name)
        self.tapes.clear()
        self.shell.events.unregister("post_run_cell", self.post_run_cell)
        if self._session is not None:
            self._session.close()


def _replay_reason() -> str | None:
    """Why a bpftrace cell cannot run live here (None: it can)."""
    why = nbsession.replay_reason()
    if why is None:
        feat = available()
        why = None if feat else f"bpftrace cannot run here: {feat.reason}"
    return why


def register(ipython: Any) -> None:
    """Register %%bpftrace (the extension loader calls this)."""
    ipython.register_magics(BpftraceMagics)


def unregister(ipython: Any) -> None:
    """Stop every %%bpftrace program and its output, finish recordings (unload)."""
    magics = ipython.magics_manager.registry.get("BpftraceMagics")
    if magics is not None:
        magics.close_all()
