"""Stack maps to Stacks, and one-line CPU profiles built on the kit's own profile.c."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from bpfnb.data import progress
from bpfnb.errors import BpfnbError
from bpfnb.map.view import MapView
from bpfnb.profiler.programs import profiler_program, source
from bpfnb.profiler.spawn import HeldCommand
from bpfnb.profiler.stacks import Stacks
from bpfnb.program.core import Program
from bpfnb.symbols.symbolizer import Symbolizer

_FIELDS = {
    "pid": ("pid", "tgid"),
    "comm": ("comm", "name", "task"),
    "user": ("user_stack_id", "user_stack", "ustack_id", "ustack", "user_stackid"),
    "kernel": ("kernel_stack_id", "kernel_stack", "kstack_id", "kstack", "kernel_stackid"),
}


def profile_source() -> str:
    """The C source of the profiler `profile()` loads (read it; it is short)."""
    return source("profile")


def _field(columns: list[str], role: str, given: str | None) -> str | None:
    if given is not None:
        if given not in columns:
            raise BpfnbError(f"no field {given!r} in the counts key; fields: {columns}")
        return given
    return next((c for c in _FIELDS[role] if c in columns), None)


def stack_table(view: MapView) -> tuple[np.ndarray, np.ndarray]:
    """(stack ids, addresses (n, depth), leaf first) of a STACK_TRACE map."""
    snap = view.read()
    values = snap.values
    if values.dtype.names:
        values = values[values.dtype.names[0]]
    return np.array(snap.keys, dtype=np.int64), np.array(values, dtype=np.uint64)


def stacks(counts: MapView, stack_map: MapView, *, pid: str | None = None,
           comm: str | None = None, user_stack: str | None = None,
           kernel_stack: str | None = None, value: str | None = None,
           symbolizer: Symbolizer | None = None, name: str = "", user: bool = True,
           kernel: bool = True) -> Stacks:
    """Stacks from bcc's usual pair: a counts hash keyed by {pid, comm, user/kernel stack id}
    and a STACK_TRACE map. Field names are found from the key struct; arguments override.
    `user=False` / `kernel=False` leave that kind of stack out."""
    df = counts.df()
    keys = df.attrs.get("key_columns", [])
    fields = {role: _field(keys, role, given) for role, given in
              (("pid", pid), ("comm", comm), ("user", user_stack), ("kernel", kernel_stack))}
    fields["user"] = fields["user"] if user else None
    fields["kernel"] = fields["kernel"] if kernel else None
    if fields["user"] is None and fields["kernel"] is None:
        raise BpfnbError(f"no stack id field in {counts.name}'s key {keys}; name it with "
                         "user_stack=... or kernel_stack=...")
    count = value or df.attrs.get("value_columns", ["value"])[0]
    sym = symbolizer or Symbolizer()
    pids = df[fields["pid"]].to_numpy() if fields["pid"] else np.zeros(len(df), np.int64)
    for p in np.unique(pids):
        sym.snapshot_process(int(p))
    comms = df[fields["comm"]].to_numpy() if fields["comm"] else np.array([""] * len(df))
    return Stacks.from_arrays(
        pids, comms,
        df[fields["user"]].to_numpy() if fields["user"] else None,
        df[fields["kernel"]].to_numpy() if fields["kernel"] else None,
        df[count].to_numpy(), stack_table(stack_map), sym, name=name)


def profile(pid: int | None = None, command: Sequence[str] | None = None,
            duration: float = 5.0, hz: int = 99, kernel: bool = True,
            user: bool = True) -> Stacks:
    """CPU profile by perf-event sampling: of one process (`pid`), of a `command` (until it
    exits or `duration` passes), or of the whole machine.

    A command is held before `exec` until the sampler is attached to it, as `perf record --
    CMD` does, so it is profiled from its first instruction. Progress shows while it runs;
    Ctrl-C ends it early with what was collected. `info` on the result holds the
    command's exit status and CPU time.
    """
    held = HeldCommand(command) if command else None
    try:
        with profiler_program(held.pid if held else (pid or 0), user=user,
                              kernel=kernel) as prog:
            prog.attach_perf_event("on_sample", sample_freq=hz)
            out = collect(prog, held, duration, label_of("profile", pid, command),
                          user=user, kernel=kernel)
    finally:
        if held is not None:
            held.stop()
    out.hz = hz
    if held is not None:
        out.info.update(exit_status=held.status, cpu_time=held.cpu_time)
    return out


def label_of(kind: str, pid: int | None, command: Sequence[str] | None) -> str:
    return f"{kind} " + (" ".join(map(str, command)) if command else
                         (f"pid {pid}" if pid else "all"))


def collect(prog: Program, held: HeldCommand | None, duration: float, label: str, *,
            user: bool = True, kernel: bool = True, unit: str = "samples") -> Stacks:
    """Run an attached stack collector (maps `counts` + `stack_traces`) for `duration` s
    or until the held command exits, showing progress; Ctrl-C ends it early. Releases
    the held command once attached; the caller detaches."""
    sym = Symbolizer()
    counts = prog["counts"]
    watched = [held.pid] if held is not None else []

    def tick() -> int:
        keys, values = _read_counts(counts)
        for p in watched:  # the command's maps, re-read as it execs and loads libraries
            if sym.snapshot_process(p) is None:
                watched.clear()
        for p in np.unique(keys["pid"]).tolist():
            if int(p) not in sym.processes:  # keep maps of processes that exit
                sym.snapshot_process(int(p))
        return int(values.sum())

    if held is not None:
        held.release()
    started = time.monotonic()
    interrupted = progress.wait(label, duration, tick, done=held.poll if held else _never,
                                unit="µs off CPU" if unit == "us" else unit,
                                step=0.1 if held else 0.25)
    out = stacks(counts, prog["stack_traces"], symbolizer=sym, name=label, user=user,
                 kernel=kernel)
    out.unit = unit
    out.info.update(duration=time.monotonic() - started, interrupted=interrupted)
    if held is not None:
        out.info.update(command=list(held.argv), pid=held.pid)
    return out


def _never() -> bool:
    return False


def _read_counts(counts: MapView) -> tuple[np.ndarray, np.ndarray]:
    snap = counts.read()
    return snap.keys, np.asarray(snap.values, dtype=np.int64)
