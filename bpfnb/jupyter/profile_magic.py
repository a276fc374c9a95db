"""`%bpf_profile`: a CPU profile by perf-event sampling, shown as a flame graph."""

from __future__ import annotations

import os
import shutil
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from bpfnb.jupyter import args as margs
from bpfnb.profiler.profiling import profile


def target_options(func: Any) -> Any:
    """The options every profiler magic has: -p PID and -d SECONDS (before its own)."""
    return argument("-p", dest="pid", metavar="PID", help="one process (default: all)")(
        argument("-d", dest="duration", default="5", metavar="SECONDS",
                 help="how long (5; with a COMMAND, until it exits or this passes)")(func))


def target(line: str, magic: str, func: Any) -> tuple[Any, int | None, float, list[str]]:
    """(options, pid, duration, command) of a profiler magic's line
    `[-p PID] [-d SECONDS] ... [-- COMMAND]`: the PID a running process, the COMMAND one on
    PATH (or a path)."""
    words, command = margs.split_command(margs.split_words(line, magic), magic)
    if command and shutil.which(command[0]) is None:
        raise UsageError(f"{magic}: no command {command[0]!r} (not found or not "
                         "executable); give a path or a program on PATH after --")
    ns = margs.parse(func, words, magic)
    usage = margs.usage_of(func)
    pid = None
    if ns.pid is not None:
        pid = int(margs.number(ns.pid, f"{magic} -p", usage, whole=True))
        if not os.path.exists(f"/proc/{pid}"):
            raise UsageError(f"{magic} -p {pid}: no such process; give the PID of "
                             "a running process (or omit -p to trace the machine)")
    return ns, pid, margs.number(ns.duration, f"{magic} -d", usage), command


@magics_class
class ProfileMagics(Magics):
    """%bpf_profile."""

    @line_magic
    @magic_arguments("bpf_profile")
    @target_options
    @argument("-F", dest="hz", default="99", metavar="HZ",
              help="samples per second per CPU (99)")
    @argument("--no-kernel", dest="kernel", action="store_false", help="no kernel stacks")
    @argument("--no-user", dest="user", action="store_false", help="no user stacks")
    def bpf_profile(self, line: str) -> Any:
        """CPU profile by perf-event sampling; returns a Stacks (a flame graph in the notebook).
        After `--`, a COMMAND [ARGS] to start and profile.

        Example: %bpf_profile -F 199 -d 3 -- python3 -c "sum(range(10**8))"
        """
        magic, func = "%bpf_profile", ProfileMagics.bpf_profile
        ns, pid, duration, command = target(line, magic, func)
        hz = int(margs.number(ns.hz, f"{magic} -F", margs.usage_of(func), whole=True))
        return profile(pid=pid, command=command or None, duration=duration, hz=hz,
                       kernel=ns.kernel, user=ns.user)
