"""The %%bpftrace NAME cell magic: run the cell in bpftrace, bind NAME, show its printf
output as it arrives; record and replay it like a %%bpf cell (`--fallback DIR`)."""

from __future__ import annotations

import keyword
import math
import os
import re
import threading
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display

from bpfnb.bpftrace import BpftraceProgram, bpftrace, recordfile
from bpfnb.bpftrace.health import available
from bpfnb.errors import ReplayError
from bpfnb.jupyter import args as margs
from bpfnb.jupyter import session as nbsession
from bpfnb.jupyter.displays import Banner, Text
from bpfnb.jupyter.state import NotebookState, check_free
from bpfnb.program import core
from bpfnb.store.replay import ReplayProgram

SHOWN_LINES = 200   # the live output shows the last lines printed
UPDATE_EVERY = 0.25  # seconds between updates of the live output
_PRINTS = re.compile(r"\b(printf|time|cat|join|system)\s*\(")  # what prints text


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
        self.handle = display(Text(""), display_id=True)
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
            self.handle.update(Text(_tail(text)))

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join(10.0)


@magics_class
class BpftraceMagics(Magics):
    """%%bpftrace cells; holds the bpftrace programs bound in the notebook."""

    shell: Any

    def __init__(self, shell: Any, state: NotebookState | None = None) -> None:
        super().__init__(shell)
        self.state = state  # the %%bpf magics' (None: %%bpftrace alone, with its own session)
        self.programs: dict[str, BpftraceProgram] = {}
        self.outputs: dict[str, LiveOutput] = {}
        self.tapes: dict[str, tuple[BpftraceProgram, Path, tuple[int, bool]]] = {}
        self._session: nbsession.NotebookSession | None = None
        shell.events.register("post_run_cell", self.post_run_cell)

    @property
    def session(self) -> nbsession.NotebookSession:
        """The notebook's session (shared with %%bpf cells and %bpf fallback)."""
        if self.state is not None:
            return self.state.session
        if self._session is None:
            self._session = nbsession.NotebookSession()
        return self._session

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
        words = margs.split_words(line, "%%bpftrace")
        at = words.index("--") if "--" in words else len(words)
        args = margs.parse(self.bpftrace, words[:at], "%%bpftrace")
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
        check_free(self.shell, name, "%%bpftrace", lambda bound: isinstance(
            bound, (BpftraceProgram, core.Program, ReplayProgram)))
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
            display(Banner(f"{nbsession.REPLAY_MARK} replaying {where} ({why})", True))
        elif source == "record":
            display(Banner(f"● live, recording to {where} ({nbsession.RECORD_ENV} is set)", False))
        elif path is not None or source == "notebook":
            display(Banner(nbsession.LIVE_BANNER, False))
        display(prog)
        if prog.running:
            if _PRINTS.search(cell):
                self.outputs[name] = LiveOutput(prog)
            return
        prog.wait(5.0)  # an ended program's output read to the end (a replayed one: at once)
        if prog.output:
            display(Text(_tail(prog.output)))

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
        """Stop every program, finish the recordings, unhook from the shell (again: no-op)."""
        for name in list(self.programs):
            self.close(name)
        for name in list(self.tapes):
            self._save(name)
        self.tapes.clear()
        if self.post_run_cell in self.shell.events.callbacks["post_run_cell"]:  # once
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


def register(ipython: Any, state: NotebookState | None = None) -> None:
    """Register %%bpftrace (the extension loader calls this with the %%bpf magics' state,
    whose session %%bpftrace cells share)."""
    ipython.register_magics(BpftraceMagics(ipython, state))


def unregister(ipython: Any) -> None:
    """Stop every %%bpftrace program and its output, finish recordings (unload)."""
    magics = ipython.magics_manager.registry.get("BpftraceMagics")
    if magics is not None:
        magics.close_all()
