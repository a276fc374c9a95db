"""`bpf_trace_printk` output of one program, without taking other programs' lines.

The global `trace_pipe` is consumed by whoever reads it, and every program's lines land
there. bpfnb reads its own copy instead: a tracefs instance (`instances/bpfnb-PID-N`) with
the `bpf_trace/bpf_trace_printk` event enabled receives every printk line too, and reading
its pipe takes nothing from anyone else. Which program printed a line is not recorded by the
kernel (the event holds just the text and the current task, i.e. the workload), so each
program's source is tagged when it loads: string-literal formats of `bpf_trace_printk` /
`bpf_printk` get a short per-program prefix (`bpfnb<PID>.<N>: `), which `trace()` uses to
pick its program's lines and strips. The instance is created when a program that prints
loads (so lines printed before the first `trace()` call are kept, up to the instance's
buffer) and removed when the program closes (or is collected, or the process exits).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import re
import select
import threading
import time
import weakref
from typing import Any

import pandas as pd

from bpfnb._sys import features, procfs
from bpfnb.errors import BpfnbError, FeatureUnavailableError, ProgramClosedError
from bpfnb.program import events

COLUMNS = ["time", "cpu", "pid", "comm", "message"]
_PRINTK = re.compile(r'\b(bpf_trace_printk|bpf_printk)(\s*\(\s*)"')
# comm-pid [cpu] flags timestamp: bpf_trace_printk: message
_LINE = re.compile(r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[(?P<cpu>\d+)\]\s+"
                   r"(?:\S+\s+)?(?P<ts>\d+\.\d+):\s+bpf_trace_printk:\s(?P<msg>.*)$")
_counter = itertools.count(1)
_instances: dict[str, Instance | BpfnbError] = {}
_lock = threading.Lock()
_taken: set[int] = set()  # tag numbers of programs not yet closed


def prints(source: str) -> bool:
    """Whether `source` calls bpf_trace_printk/bpf_printk with a literal format."""
    return bool(_PRINTK.search(source))


def new_tag() -> str:
    """A prefix no open program (of this process or another) uses: the smallest free number,
    so a cell run again gets its old tag and the libbpf backend's compiled object back."""
    with _lock:
        n = next(i for i in itertools.count(1) if i not in _taken)
        _taken.add(n)
    return f"bpfnb{os.getpid()}.{n}: "


def tagged(source: str, tag: str) -> str:
    """`source` with `tag` put in front of every literal printk format (same lines)."""
    return _PRINTK.sub(lambda m: f'{m.group(1)}{m.group(2)}"{tag}', source)


class Instance:
    """A tracefs instance receiving bpf_trace_printk events; its pipe is ours alone."""

    def __init__(self) -> None:
        root = features.tracefs()
        if root is None:
            raise FeatureUnavailableError("prog.trace() reads bpf_trace_printk lines through "
                                          "tracefs, which is not mounted: mount it on "
                                          "/sys/kernel/tracing.")
        self.path = f"{root}/instances/bpfnb-{os.getpid()}-{next(_counter)}"
        try:
            os.mkdir(self.path)
            with open(f"{self.path}/trace_clock", "w") as f:
                f.write("mono")  # times comparable with time.monotonic()
            with open(f"{self.path}/events/bpf_trace/bpf_trace_printk/enable", "w") as f:
                f.write("1")
            self._fd = os.open(f"{self.path}/trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
        except OSError as e:
            self.close()
            raise FeatureUnavailableError(
                f"cannot open a tracefs instance for bpf_trace_printk lines at {self.path}: "
                f"{e.strerror}. It needs write access to tracefs (root).") from e
        self._rest = b""
        self.pending: list[dict[str, Any]] = []  # rows read beyond a call's max_lines

    def read(self, timeout: float) -> list[str]:
        """Complete lines available within `timeout` seconds (none when it passes)."""
        if not select.select([self._fd], [], [], max(timeout, 0))[0]:
            return []
        try:
            data = self._rest + os.read(self._fd, 1 << 16)
        except BlockingIOError:
            return []
        *lines, self._rest = data.split(b"\n")
        return [ln.decode(errors="replace") for ln in lines]

    def close(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.close(self._fd)
        with contextlib.suppress(OSError), \
                open(f"{self.path}/events/bpf_trace/bpf_trace_printk/enable", "w") as f:
            f.write("0")
        with contextlib.suppress(OSError):
            os.rmdir(self.path)


def open_for(owner: object, tag: str) -> None:
    """Start collecting `owner`'s printk lines now (one instance per program, removed when
    `owner` is collected). Never raises: trace() reports a failure."""
    try:
        inst: Instance | BpfnbError = Instance()
    except BpfnbError as e:
        inst = e
    with _lock:
        _instances[tag] = inst
    weakref.finalize(owner, _drop, tag)


def _drop(tag: str) -> None:
    with _lock:
        inst = _instances.pop(tag, None)
        _taken.discard(int(tag.rstrip(": ").rsplit(".", 1)[1]))
    if isinstance(inst, Instance):
        inst.close()


def parse(line: str, tag: str) -> dict[str, Any] | None:
    """One trace_pipe line as a row, if it is a printk line carrying `tag`."""
    m = _LINE.match(line)
    if m is None or not m.group("msg").startswith(tag):
        return None
    pid, comm = int(m.group("pid")), m.group("comm").strip()
    if comm == "<...>":  # tracefs forgot the name (its saved_cmdlines cache is small)
        comm = procfs.comm(pid, "<...>")
    return {"time": float(m.group("ts")), "cpu": int(m.group("cpu")), "pid": pid,
            "comm": comm, "message": m.group("msg")[len(tag):]}


def trace(tag: str | None, duration: float = 1.0, max_lines: int | None = None) -> pd.DataFrame:
    """The lines the program tagged `tag` printed since the last call, waiting up to
    `duration` seconds (less once `max_lines` are in). `time` is CLOCK_MONOTONIC seconds."""
    if tag is None:
        raise BpfnbError("this program calls no bpf_trace_printk/bpf_printk with a literal "
                         "format, so it prints nothing to trace; add e.g. "
                         '`bpf_trace_printk("pid %d\\n", pid);` and load it again.')
    inst = _instances.get(tag)
    if inst is None:
        raise ProgramClosedError("the program is closed, and its bpf_trace_printk lines went "
                                 "with it; run its cell again")
    if isinstance(inst, BpfnbError):
        raise inst
    rows, inst.pending = inst.pending, []
    end = time.monotonic() + duration
    while max_lines is None or len(rows) < max_lines:
        left = end - time.monotonic()
        got = inst.read(max(left, 0))
        rows += [r for r in (parse(ln, tag) for ln in got) if r is not None]
        if left <= 0 and not got:
            break
    if max_lines is not None:
        rows, inst.pending = rows[:max_lines], rows[max_lines:]
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.astype({"time": "float64", "cpu": "int32", "pid": "int32"})


@events.on_close
def _closing(prog: Any) -> None:
    tag = getattr(prog, "_trace_tag", None)
    if tag is not None:
        _drop(tag)


@atexit.register
def _close_all() -> None:
    for tag in list(_instances):
        _drop(tag)
