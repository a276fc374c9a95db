"""The bpftrace child process: start it with `-f json`, read its lines, stop it cleanly."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence

from bpfnb.bpftrace import errors
from bpfnb.bpftrace.output import MAP_TYPES, Message, parse_line
from bpfnb.bpftrace.script import MARKER, with_marker
from bpfnb.errors import BpfnbError

STOP_TIMEOUT = 10.0
RESEND = 0.5
ATTACH_TIMEOUT = 60.0


def find_bpftrace(path: str | None = None) -> str:
    """The bpftrace binary: `path`, else $BPFNB_BPFTRACE, else `bpftrace` on PATH."""
    wanted = path or os.environ.get("BPFNB_BPFTRACE") or "bpftrace"
    found = shutil.which(wanted)
    if found is None:
        raise errors.missing_binary(wanted)
    return found


def version(binary: str | None = None) -> tuple[int, ...]:
    """bpftrace's version, e.g. (0, 17, 0) (for the doctor: missing binary raises)."""
    path = find_bpftrace(binary)
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    m = re.search(r"v?(\d+)\.(\d+)(?:\.(\d+))?", out.stdout + out.stderr)
    if m is None:
        raise BpfnbError(f"{path} --version printed no version: {out.stdout!r}")
    return tuple(int(x) for x in m.groups(default="0"))


class BpftraceProcess:
    """One running bpftrace. Lines are parsed as they arrive (a reader thread per stream);
    `messages` grows until the process ends. Start with `start()`, which returns once the
    injected BEGIN probe has printed, i.e. every probe is attached."""

    def __init__(self, script: str, args: Sequence[str] = (), binary: str | None = None
                 ) -> None:
        self.script = script
        self.args = [str(a) for a in args]
        self.binary = find_bpftrace(binary)
        self.marked = with_marker(script)
        self.messages: list[Message] = []
        #: map name -> the last map message naming it (after exit: the final dump)
        self.latest: dict[str, Message] = {}
        self.stderr = ""
        self.attach_ns: int | None = None  # start -> attached, in ns
        self.killed = False  # SIGINT went unanswered: no final dump
        self._lines = 0  # stdout lines read (stop() watches for activity)
        self._listeners: list[Callable[[Message], None]] = []
        #: exceptions listeners raised (kept so a bad listener never stops the reading)
        self.listener_errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._attached = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._threads: list[threading.Thread] = []

    @property
    def argv(self) -> list[str]:
        return [self.binary, "-f", "json", "-e", self.marked.script, *self.args]

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def start(self, timeout: float = ATTACH_TIMEOUT) -> None:
        """Run bpftrace; return once its probes are attached (or raise what it said)."""
        t0 = time.monotonic_ns()
        self._proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, bufsize=1, errors="replace")
        for target, stream in ((self._read_out, self._proc.stdout),
                               (self._read_err, self._proc.stderr)):
            t = threading.Thread(target=target, args=(stream,), daemon=True,
                                 name=f"bpftrace-{self._proc.pid}")
            t.start()
            self._threads.append(t)
        deadline = time.monotonic() + timeout
        while not self._attached.wait(0.02):
            if self._proc.poll() is not None:
                self._join()
                if self._attached.is_set() or self._proc.returncode == 0:
                    break  # finished already (exit() in BEGIN)
                raise errors.translate(self.stderr, self._proc.returncode, self.marked)
            if time.monotonic() > deadline:
                self.stop()
                raise BpfnbError(f"bpftrace did not attach its probes within {timeout:.0f} s "
                                 "and was stopped; attaching many probes (wildcards) takes "
                                 "long: pass a larger timeout.", details=self.stderr)
        self.attach_ns = time.monotonic_ns() - t0

    def _read_out(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self._lines += 1  # blank ones too: 0.17 starts its exit dump with them
            msg = parse_line(line, time.time_ns())
            if msg is None:
                continue
            if msg.type == "printf" and msg.data == MARKER + "\n":
                self._attached.set()
                continue
            with self._lock:
                self.messages.append(msg)
                if msg.type in MAP_TYPES and isinstance(msg.data, dict):
                    for name in msg.data:
                        self.latest[name] = msg
                listeners = list(self._listeners)
            for fn in listeners:
                try:
                    fn(msg)
                except Exception as e:  # a display hook must not stop the reading
                    self.listener_errors.append(e)

    def _read_err(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._lock:
                self.stderr += line

    def snapshot(self) -> list[Message]:
        """The messages so far (a copy)."""
        with self._lock:
            return list(self.messages)

    def listen(self, fn: Callable[[Message], None], replay: bool = True) -> None:
        """Call `fn(message)` for each message from now on (from the reader thread); with
        `replay`, first for those already read, so nothing is missed or shown twice."""
        with self._lock:
            if replay:
                for m in self.messages:
                    fn(m)
            self._listeners.append(fn)

    def unlisten(self, fn: Callable[[Message], None]) -> None:
        with self._lock:
            if fn in self._listeners:
                self._listeners.remove(fn)

    def latest_map(self, name: str) -> Message | None:
        with self._lock:
            return self.latest.get(name)

    def map_names(self) -> list[str]:
        with self._lock:
            return list(self.latest)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGINT (bpftrace prints its maps and detaches), repeated until it exits, SIGKILL
        after `timeout` (then `killed` is set and there is no final dump); returns the exit
        status. Idempotent."""
        proc = self._proc
        if proc is None:
            return None
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            # bpftrace 0.17 sometimes misses a SIGINT sent just after attaching: send it
            # again while it prints nothing; a second one while it prints its final dump
            # would cut the dump short
            seen = self._lines
            proc.send_signal(signal.SIGINT)
            while proc.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(RESEND)
                if self._lines == seen:
                    break
                seen = self._lines
        if proc.poll() is None:
            self.killed = True
            proc.kill()
            proc.wait()
        self._join()
        return proc.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for bpftrace to end by itself (exit() or a duration); None on timeout."""
        if self._proc is None:
            return None
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._join()
        return self._proc.returncode

    def _join(self) -> None:
        for t in self._threads:
            t.join(5.0)
