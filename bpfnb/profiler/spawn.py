"""A command started but held before `exec`, as `perf record -- CMD` does.

The child is a shell blocked reading a pipe; its pid (which `exec` keeps) is known at
once, so a profiler can be attached to it before the command runs its first
instruction. `release()` lets it exec the command; `wait`/`poll` reap it with its
resource usage (the CPU time the command really got).
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import time
from collections.abc import Sequence

from bpfnb.errors import BpfnbError

# fd 3 is the hold pipe; EOF (the parent went away) means: do not run the command
_HOLD = 'read -r go <&3 || exit 125; exec 3<&-; exec "$@"'


class HeldCommand:
    """`argv` spawned and held; nothing of it runs before `release()`."""

    def __init__(self, argv: Sequence[str]) -> None:
        argv = [str(a) for a in argv]
        if not argv:
            raise BpfnbError("no command to run: give command=[program, args...]")
        if shutil.which(argv[0]) is None:
            raise BpfnbError(f"command not found: {argv[0]!r}; give a path or a program on PATH")
        self.argv = argv
        r, w = os.pipe()
        try:
            self.pid = os.posix_spawn(
                "/bin/sh", ["/bin/sh", "-c", _HOLD, "bpfnb-held", *argv], dict(os.environ),
                file_actions=[(os.POSIX_SPAWN_DUP2, r, 3)])
        finally:
            os.close(r)
        self._hold: int | None = w
        self.status: int | None = None  # exit code, or -signal
        self.cpu_time = 0.0  # user + system seconds, once reaped
        self.started = 0.0

    def release(self) -> None:
        """Let the command exec and run."""
        if self._hold is not None:
            self.started = time.monotonic()
            try:
                os.write(self._hold, b"go\n")
            finally:
                os.close(self._hold)
                self._hold = None

    def poll(self) -> bool:
        """True once the command has exited (it is then reaped)."""
        if self.status is None:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self._reaped(status, usage)
        return self.status is not None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until it exits or `timeout` seconds pass; True if it exited."""
        end = None if timeout is None else time.monotonic() + timeout
        while not self.poll():
            if end is not None and time.monotonic() >= end:
                return False
            time.sleep(0.02)
        return True

    def stop(self) -> None:
        """End it (SIGTERM, then SIGKILL after 5 s) and reap it; a held one never runs."""
        if self._hold is not None:
            os.close(self._hold)  # EOF: the shell exits without running the command
            self._hold = None
            self.wait(2.0)
        if self.poll():
            return
        os.kill(self.pid, signal.SIGTERM)
        if not self.wait(5.0):
            os.kill(self.pid, signal.SIGKILL)
            self.wait()

    def _reaped(self, status: int, usage: resource.struct_rusage) -> None:
        self.status = os.waitstatus_to_exitcode(status)
        self.cpu_time = usage.ru_utime + usage.ru_stime
