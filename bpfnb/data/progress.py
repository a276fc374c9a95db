"""Progress of long collections (profile, offcpu, events, record) and Ctrl-C to end them.

`wait(label, duration, count)` waits up to `duration` seconds, showing elapsed and
remaining time and `count()` so far, and returns early (True) on Ctrl-C. How it shows
is a small factory: the notebook bar registered by `bpfnb.live` when the extension
loads (`set_factory`), else one updating line on stderr when stderr is a terminal,
else nothing. Core layers never import a widget library.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Protocol


class Reporter(Protocol):
    """One running collection's display."""

    def update(self, elapsed: float, count: int) -> None: ...

    def close(self, interrupted: bool) -> None: ...


Factory = Callable[[str, float, str], Reporter]  # (label, total seconds or inf, unit)
_factory: Factory | None = None


def set_factory(factory: Factory | None) -> Factory | None:
    """Use `factory` for every progress display from now on (None: the default); returns
    the one it replaces."""
    global _factory
    old, _factory = _factory, factory
    return old


def describe(label: str, elapsed: float, total: float, count: int, unit: str,
             done: bool = False) -> str:
    """`profile ls: 1.2 s of 5.0 s, 3.8 s left, 120 samples`; once `done` (the command
    ended, or Ctrl-C): `profile ls: 1.2 s, 120 samples`."""
    if done:
        return f"{label}: {elapsed:.1f} s, {count:,} {unit}"
    left = f", {max(total - elapsed, 0.0):.1f} s left" if math.isfinite(total) else ""
    of = f" of {total:.1f} s" if math.isfinite(total) else ""
    return f"{label}: {elapsed:.1f} s{of}{left}, {count:,} {unit}"


class TerminalLine:
    """One line on stderr rewritten in place (at most 10 times a second)."""

    def __init__(self, label: str, total: float, unit: str) -> None:
        self.label, self.total, self.unit = label, total, unit
        self._last = 0.0
        self._width = 0
        self._seen = (0.0, 0)

    def update(self, elapsed: float, count: int) -> None:
        self._seen = (elapsed, count)
        now = time.monotonic()
        if now - self._last < 0.1:
            return
        self._last = now
        self._write(describe(self.label, elapsed, self.total, count, self.unit))

    def _write(self, text: str) -> None:
        sys.stderr.write("\r" + text.ljust(self._width))
        sys.stderr.flush()
        self._width = len(text)

    def close(self, interrupted: bool) -> None:
        if self._width:
            elapsed, count = self._seen
            self._write(describe(self.label, elapsed, self.total, count, self.unit, done=True)
                        + (" (interrupted)" if interrupted else ""))
            sys.stderr.write("\n")
            sys.stderr.flush()


class _Silent:
    def update(self, elapsed: float, count: int) -> None:
        pass

    def close(self, interrupted: bool) -> None:
        pass


def reporter(label: str, total: float, unit: str) -> Reporter:
    """The display for one collection: registered factory, else `default_reporter`."""
    if _factory is not None:
        return _factory(label, total, unit)
    return default_reporter(label, total, unit)


def default_reporter(label: str, total: float, unit: str) -> Reporter:
    """A terminal line when stderr is a terminal, else nothing."""
    isatty = getattr(sys.stderr, "isatty", None)
    return TerminalLine(label, total, unit) if isatty and isatty() else _Silent()


def wait(label: str, duration: float | None, count: Callable[[], int], *,
         done: Callable[[], bool] = lambda: False, unit: str = "samples",
         step: float = 0.25) -> bool:
    """Wait until `duration` seconds pass (None: no limit) or `done()`, showing progress.

    Ctrl-C (KeyboardInterrupt) ends the wait early: returns True, so the caller keeps and
    returns what it collected (and detaches in its `finally`).
    """
    total = math.inf if duration is None else float(duration)
    start = time.monotonic()
    shown = reporter(label, total, unit)
    interrupted = False
    try:
        while True:
            elapsed = time.monotonic() - start
            shown.update(elapsed, count())
            if elapsed >= total or done():
                break
            time.sleep(min(step, max(total - elapsed, 0.0)))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        shown.close(interrupted)
    return interrupted
