"""Notebook recordings: a notebook runs live where BPF loads and from recordings elsewhere.

    %%bpf helpers --fallback recordings/10-map-helpers   # live here, DIR/helpers.zip otherwise
    %%recorded                                           # a cell that drives the kernel

A notebook recording is a directory: `NAME.zip` per `%%bpf NAME` cell (bpfnb.record's
format, with a snapshot at the end of every cell, marked with the cell's key, and one every
`RECORD_EVERY` seconds for live views) and `cells.zip`, the outputs and variables of the
notebook's `%%recorded` cells (bpfnb.store.cellstore). A cell is known by a hash of its code
(not its comments), so it finds its snapshot whichever frontend runs it. With BPFNB_RECORD=1
in the kernel's environment (`make recordings`), a notebook running live (re)writes its
recordings.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import io
import os
import threading
import tokenize
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbformat.v4 import new_output

from bpfnb._sys import features
from bpfnb.errors import ReplayError
from bpfnb.program import events as program_events
from bpfnb.store import replay
from bpfnb.store.cellstore import CellStore, NotRecorded
from bpfnb.store.inert import inert_bundle, inert_output, plain_text
from bpfnb.store.recording import Recorder

if TYPE_CHECKING:
    from bpfnb.program.core import Program
    from bpfnb.store.cellstore import RecordedCell
    from bpfnb.store.replay import ReplayProgram

RECORD_EVERY = 1.0  # seconds between timed snapshots while recording
RECORD_ENV = "BPFNB_RECORD"
CELLS = "cells.zip"
LIVE_BANNER = "● live: BPF loads here (the recording is not used)"
REPLAY_MARK = "[replay]"  # plain text: the default fonts have no glyph for a play sign


class Mode(str, Enum):
    LIVE = "live"        # BPF loads; the recordings are not touched
    RECORD = "record"    # BPF loads and the recordings are (re)written
    REPLAY = "replay"    # BPF cannot load (or --replay): everything comes from recordings


def code_only(source: str) -> str:
    """A cell's source without comments, blank lines and trailing spaces (Python's tokenizer
    finds the comments; where it cannot read the cell, only whole-line comments go)."""
    lines = source.strip().splitlines()
    try:
        comments = [t.start for t in tokenize.generate_tokens(io.StringIO(source.strip()).readline)
                    if t.type == tokenize.COMMENT]
    except (tokenize.TokenError, SyntaxError):
        lines = [ln for ln in lines if not ln.lstrip().startswith("#")]
    else:
        for row, col in comments:
            lines[row - 1] = lines[row - 1][:col]
    return "\n".join(ln.rstrip() for ln in lines if ln.strip())


def cell_key(source: str) -> str:
    """The key of a cell: a hash of its code, the same in every frontend; editing only its
    comments or blank lines keeps it."""
    return hashlib.sha1(code_only(source).encode()).hexdigest()[:16]


def legacy_cell_key(source: str) -> str:
    """The key recordings made before comments were ignored use (the whole source)."""
    return hashlib.sha1(source.strip().encode()).hexdigest()[:16]


def recorded_cell(cells: CellStore, source: str) -> RecordedCell | None:
    """The recorded cell whose code is `source`'s (by either key), or None."""
    return cells.get(cell_key(source)) or cells.get(legacy_cell_key(source))


def is_notebook_recording(path: str | os.PathLike[str]) -> bool:
    """A directory of recordings (vs. one program's recording file, `*.zip`)."""
    return not str(path).endswith(".zip")


def replay_reason() -> str | None:
    """Why BPF programs cannot run here (None: they can), from the kit's feature probes."""
    for feat in (features.can_load_bpf(), features.can_trace()):
        if not feat:
            return f"BPF cannot load here: {feat.reason}"
    return None


@dataclass
class _Taping:
    """One live program being recorded: a snapshot at each cell's end and every few seconds."""

    prog: Program
    recorder: Recorder
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self, every: float) -> None:
        self.thread = threading.Thread(target=self._tick, args=(every,), daemon=True,
                                       name=f"bpfnb-record-{self.prog.name}")
        self.thread.start()

    def _tick(self, every: float) -> None:
        while not self.stop.wait(every):
            self.recorder.snapshot(keep=self.running)

    def running(self) -> bool:
        return not self.stop.is_set() and not self.prog.closed

    def mark(self, key: str) -> None:
        if self.running():
            self.recorder.snapshot(mark=key, keep=self.running)
        self.recorder.save()

    def finish(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        self.recorder.save()


class NotebookSession:
    """The notebook's recording directory, its mode, and the programs recorded or replayed."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.mode = Mode.LIVE
        self.reason: str | None = None
        self.reason_told = False          # a replayed %%recorded cell said why, once
        self.key: str | None = None       # the running cell's
        self.legacy_key: str | None = None  # the same, as older recordings know it
        self._taping: dict[str, _Taping] = {}
        self._replays: dict[str, ReplayProgram] = {}
        self._cells: CellStore | None = None
        _sessions.append(self)

    # -- which recording, which mode -------------------------------------------------------
    def use(self, path: str | os.PathLike[str], replay: bool = False) -> Mode:
        """Make `path` the notebook's recording; decide live, record or replay."""
        before = (self.path, self.mode)
        self.path = Path(path)
        self.reason = "--replay asked for the recording" if replay else replay_reason()
        if self.reason is not None:
            self.mode = Mode.REPLAY
            if not self.path.is_dir():
                raise ReplayError(f"no recordings at {str(self.path)!r}: BPF cannot run here "
                                  f"({self.reason}) and there is nothing to replay; record the "
                                  f"notebook where BPF loads (make recordings)")
        elif os.environ.get(RECORD_ENV, "") not in ("", "0"):
            self.mode = Mode.RECORD
        else:
            self.mode = Mode.LIVE
        if (self.path, self.mode) != before:
            self._cells = None  # recording afresh, or another notebook's cells
            self.reason_told = False
        return self.mode

    def program_path(self, name: str) -> Path:
        assert self.path is not None
        return self.path / f"{name}.zip"

    def banner(self, name: str | None = None) -> str:
        """One line saying where this notebook's data comes from, and why."""
        where = str(self.path) if name is None else str(self.program_path(name))
        if self.mode is Mode.REPLAY:
            prog = self._replays.get(name or "")
            told = prog.banner() if prog is not None else f"replaying {where}"
            return f"{REPLAY_MARK} {told} ({self.reason})"
        if self.mode is Mode.RECORD:
            return f"● live, recording to {where} ({RECORD_ENV} is set)"
        return LIVE_BANNER

    # -- programs ---------------------------------------------------------------------------
    def open_replay(self, name: str) -> ReplayProgram:
        """The recording of program `name`, at the running cell's snapshot."""
        path = self.program_path(name)
        if not path.exists():
            raise ReplayError(f"no recording of program {name!r} at {str(path)!r}: "
                              f"{self.reason}; record the notebook where BPF loads "
                              f"(make recordings)")
        prog = replay.replay(path)
        prog.follow_cells = True
        self._replays[name] = prog
        self._seek(prog)
        return prog

    def tape(self, prog: Program) -> None:
        """Record `prog` into the notebook's recording while it lives."""
        old = self._taping.pop(prog.name, None)
        if old is not None:
            old.finish()
        taping = _Taping(prog, Recorder(prog, self.program_path(prog.name), every=RECORD_EVERY,
                                        drain_events=False))
        taping.start(RECORD_EVERY)
        self._taping[prog.name] = taping

    def _seek(self, prog: ReplayProgram) -> None:
        marks = prog.meta.get("cells", {})
        snapshot = marks.get(self.key or "") or marks.get(self.legacy_key or "")
        if snapshot is not None:
            prog.seek(snapshot)

    # -- cells ------------------------------------------------------------------------------
    def pre_run_cell(self, info: Any) -> None:
        source = getattr(info, "raw_cell", "") or ""
        self.key, self.legacy_key = cell_key(source), legacy_cell_key(source)
        for prog in self._replays.values():
            if not prog.closed:
                self._seek(prog)

    def post_run_cell(self, result: Any) -> None:
        for name, taping in list(self._taping.items()):
            if self.key is not None:
                taping.mark(self.key)
            if taping.prog.closed:
                taping.finish()
                del self._taping[name]

    @property
    def cells(self) -> CellStore:
        if self._cells is None:
            assert self.path is not None
            self._cells = CellStore(self.path / CELLS)  # recording a cell updates it only
        return self._cells

    def close(self) -> None:
        """Finish every recording (after the programs closed) and forget the replays."""
        for taping in self._taping.values():
            taping.finish()
        self._taping.clear()
        for prog in self._replays.values():
            prog.close()
        self._replays.clear()
        if self in _sessions:
            _sessions.remove(self)


# -- running a %%recorded cell ---------------------------------------------------------------

def run_cell_code(shell: Any, cell: str) -> Any:
    """Run `cell` in the user's namespace like a cell: the value of a last expression is
    returned (None after a trailing `;`)."""
    code = shell.transform_cell(cell)
    filename = shell.compile.cache(code)
    tree = ast.parse(code, filename)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, filename, "exec"), shell.user_ns)
    if last is None:
        return None
    value = eval(compile(ast.Expression(last.value), filename, "eval"), shell.user_ns)
    return None if shell.displayhook.semicolon_at_end_of_expression(code) else value


class _Binds(ast.NodeVisitor):
    """The names a cell's top level binds (not inside functions, classes or lambdas)."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self._comprehension = 0  # inside one, only := binds outside it

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store) and not self._comprehension:
            self.names.add(node.id)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        if isinstance(node.target, ast.Name):
            self.names.add(node.target.id)
        self.visit(node.value)

    def _definition(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.names.add(node.name)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _definition

    def visit_Lambda(self, node: ast.Lambda) -> None:
        pass

    def _comprehend(self, node: ast.AST) -> None:
        self._comprehension += 1
        self.generic_visit(node)
        self._comprehension -= 1

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehend

    def _imports(self, node: ast.Import | ast.ImportFrom) -> None:
        self.names.update(a.asname or a.name.split(".")[0] for a in node.names if a.name != "*")

    visit_Import = visit_ImportFrom = _imports

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self.names.add(node.name)
        self.generic_visit(node)

    def _capture(self, node: ast.MatchAs | ast.MatchStar | ast.MatchMapping) -> None:
        name = node.rest if isinstance(node, ast.MatchMapping) else node.name
        if name:
            self.names.add(name)
        self.generic_visit(node)

    visit_MatchAs = visit_MatchStar = visit_MatchMapping = _capture


def ipython_names(shell: Any) -> set[str]:
    """Names IPython itself keeps in the user's namespace."""
    return {"In", "Out", "get_ipython", "exit", "quit", *getattr(shell, "user_ns_hidden", {})}


def bindable_names(shell: Any, cell: str) -> set[str]:
    """The names a recorded cell may bind: those its own source binds at top level (IPython
    syntax transformed first), less `_...`, builtins and IPython's own names."""
    visitor = _Binds()
    try:
        visitor.visit(ast.parse(shell.transform_cell(cell)))
    except (SyntaxError, ValueError):  # ValueError: a NUL byte in the source
        return set()
    return {n for n in visitor.names if not n.startswith("_") and not hasattr(builtins, n)
            } - ipython_names(shell)


def bound_names(before: dict[str, int], namespace: dict[str, Any],
                allowed: set[str]) -> dict[str, Any]:
    """Names among `allowed` that the cell bound or rebound."""
    return {k: v for k, v in namespace.items() if k in allowed and before.get(k) != id(v)}


def record_cell(shell: Any, store: CellStore, key: str, cell: str) -> Any:
    """Run the cell, showing and recording its outputs and the variables it binds."""
    from IPython.utils.capture import capture_output

    before = {k: id(v) for k, v in shell.user_ns.items()}
    try:
        with capture_output() as io:
            value = run_cell_code(shell, cell)
    finally:
        io.show()  # what ran is shown (after it ran), even if the cell raised
    outputs: list[dict[str, Any]] = []
    for name, text in (("stdout", io.stdout), ("stderr", io.stderr)):
        if text:
            outputs.append(new_output("stream", name=name, text=text))
    shown: dict[str, int] = {}  # display_id -> its output: an update replaces it
    for out in io.outputs:
        display_id = (out.transient or {}).get("display_id")
        if display_id in shown:
            outputs[shown[display_id]] = _display(out.data, out.metadata)
            continue
        if display_id:
            shown[display_id] = len(outputs)
        outputs.append(_display(out.data, out.metadata))
    if value is not None:   # shown after the cell by IPython; recorded as it formats now
        with capture_output() as shown_io:   # an _ipython_display_ displays: keep that
            data, metadata = shell.display_formatter.format(value)
        outputs.extend(_display(o.data, o.metadata) for o in shown_io.outputs)
        if data:
            outputs.append(_display(data, metadata))
    store.put(key, [o for o in outputs if o.get("data", True)],
              bound_names(before, shell.user_ns, bindable_names(shell, cell)))
    store.save()
    return value


def _display(data: dict[str, Any], metadata: dict[str, Any] | None) -> dict[str, Any]:
    """A display as it is recorded: what replay may show of it (bpfnb.store.inert)."""
    kept, meta = inert_bundle(data, metadata)
    return dict(new_output("display_data", data=kept, metadata=meta))


def replay_cell(shell: Any, recorded: RecordedCell, cell: str,
                session: NotebookSession) -> None:
    """Show a recorded cell's outputs again, made inert, and bind the variables it bound:
    only names the cell's own source binds (the notice names any others, not bound)."""
    import sys

    from IPython.display import display, publish_display_data

    allowed = bindable_names(shell, cell)
    names = [*recorded.variables, *recorded.skipped]
    display(RecordedNotice(session, dropped=[n for n in names if n not in allowed]))
    shell.user_ns.update({k: v for k, v in recorded.variables.items() if k in allowed})
    for name, type_name in recorded.skipped.items():
        if name in allowed:
            shell.user_ns[name] = NotRecorded(name, plain_text(str(type_name)))
    for out in filter(None, map(inert_output, recorded.outputs)):
        if out["output_type"] == "stream":
            stream = sys.stderr if out["name"] == "stderr" else sys.stdout
            stream.write(out["text"])
            stream.flush()
        else:
            publish_display_data(out["data"], out["metadata"])


class RecordedNotice:
    """The line above a replayed %%recorded cell's outputs (and one naming any variables of
    the recording the cell's source does not bind, left unbound)."""

    def __init__(self, session: NotebookSession, dropped: list[str] | tuple[str, ...] = ()
                 ) -> None:
        self.text = f"{REPLAY_MARK} recorded output"
        if not session.reason_told:   # the reason once per notebook, one short line per cell
            self.text += (": cells marked %%recorded drive the kernel; they show what they "
                          f"printed when the notebook was recorded ({session.reason})")
            session.reason_told = True
        if dropped:
            self.text += ("\n⚠ not bound (the cell's source does not bind them): "
                          + _names_line(dropped))

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, str]:
        import html

        lines = "".join(f"<div>{html.escape(line)}</div>" for line in self.text.splitlines())
        return {"text/plain": self.text,
                "text/html": f"<div style='color:#856404;font-size:90%'>{lines}</div>"}


def _names_line(names: list[str] | tuple[str, ...], most: int = 8) -> str:
    """Names on one short line: odd ones quoted and cut, at most `most` then a count."""
    shown = [n if n.isidentifier() and len(n) <= 40 else repr(n[:40]) for n in names[:most]]
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(shown) + more


def _on_program_close(prog: Program) -> None:
    """A recorded program closing: stop its timed snapshots (saved at the cell's end)."""
    for session in _sessions:
        taping = session._taping.get(prog.name)
        if taping is not None and taping.prog is prog:
            taping.stop.set()


_sessions: list[NotebookSession] = []
program_events.on_close(_on_program_close)
