"""Stack maps to Stacks, and one-line CPU profiles built on the kit's own profile.c."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from importlib import resources

import numpy as np

from bpfnb.errors import BpfnbError
from bpfnb.map.view import MapView
from bpfnb.profiler.stacks import Stacks
from bpfnb.program.core import load
from bpfnb.symbols.symbolizer import Symbolizer

_FIELDS = {
    "pid": ("pid", "tgid"),
    "comm": ("comm", "name", "task"),
    "user": ("user_stack_id", "user_stack", "ustack_id", "ustack", "user_stackid"),
    "kernel": ("kernel_stack_id", "kernel_stack", "kstack_id", "kstack", "kernel_stackid"),
}


def profile_source() -> str:
    """The C source of the profiler `profile()` loads (read it; it is short)."""
    return resources.files("bpfnb").joinpath("programs/profile.c").read_text()


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
    """CPU profile by perf-event sampling: of one process (`pid`), of a `command` the
    profiler starts (until it exits or `duration` passes), or of the whole machine."""
    proc = subprocess.Popen(list(command)) if command else None
    target = proc.pid if proc else (pid or 0)
    cflags = [f"-DFILTER_PID={target}", f"-DUSER_STACKS={int(user)}",
              f"-DKERNEL_STACKS={int(kernel)}"]
    sym = Symbolizer()
    try:
        with load(profile_source(), name="profile", cflags=cflags, attach=False) as prog:
            prog.attach_perf_event("on_sample", sample_freq=hz)
            deadline = time.monotonic() + duration
            while time.monotonic() < deadline and (proc is None or proc.poll() is None):
                _snapshot_seen(prog["counts"], sym)  # keep maps of processes that exit
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
            label = " ".join(command) if command else (f"pid {pid}" if pid else "all")
            return stacks(prog["counts"], prog["stack_traces"], symbolizer=sym,
                          name=f"profile {label}", user=user, kernel=kernel)
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


def _snapshot_seen(counts: MapView, sym: Symbolizer) -> None:
    for p in np.unique(counts.read().keys["pid"]):
        if int(p) not in sym.processes:
            sym.snapshot_process(int(p))
