"""Off-CPU time per stack from sched_switch (the offcputime method), as Stacks in µs."""

from __future__ import annotations

from collections.abc import Sequence

from bpfnb.profiler.profiling import collect, label_of
from bpfnb.profiler.programs import source
from bpfnb.profiler.spawn import HeldCommand
from bpfnb.profiler.stacks import Stacks
from bpfnb.program.core import load


def offcpu(pid: int | None = None, command: Sequence[str] | None = None,
           duration: float = 5.0, min_us: int = 1, kernel: bool = True,
           user: bool = True) -> Stacks:
    """Time blocked (sleeping, waiting on I/O, locks, pipes, or runnable but not running)
    per stack, in microseconds: of one process (`pid`), of a `command` (held before exec
    until the tracer is attached, run until it exits or `duration` passes), or of every
    process. Blocks shorter than `min_us` are left out; a block still going on at the
    end is not counted. Flame graph, folded text and `diff` work as for `profile()`."""
    held = HeldCommand(command) if command else None
    try:
        consts = {"filter_pid": held.pid if held else (pid or 0), "user_stacks": int(user),
                  "kernel_stacks": int(kernel), "min_us": int(min_us)}
        with load(source("offcpu"), name="offcpu", consts=consts) as prog:
            out = collect(prog, held, duration, label_of("offcpu", pid, command),
                          user=user, kernel=kernel, unit="us")
    finally:
        if held is not None:
            held.stop()
    if held is not None:
        out.info.update(exit_status=held.status, cpu_time=held.cpu_time)
    return out
