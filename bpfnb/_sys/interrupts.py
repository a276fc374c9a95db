"""Holding Ctrl-C over a section that must not be cut in half (loading a program).

Python raises KeyboardInterrupt between any two bytecodes: right after bcc's compiler
returns with the maps created, say, before anything holds them. `HoldInterrupts` records
a SIGINT that arrives during its block and delivers it when the block has ended, after
`undo()` took back what the block built.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

__all__ = ["HoldInterrupts"]


class HoldInterrupts:
    """`with HoldInterrupts(undo):` -- SIGINT during the block waits for its end; then the
    handler it replaced runs, and if that raises (KeyboardInterrupt) `undo()` runs first
    (with SIGINT held again). A no-op off the main thread (only it receives SIGINT) and
    where SIGINT is ignored."""

    def __init__(self, undo: Callable[[], Any] | None = None) -> None:
        self.undo = undo
        self.interrupted = False
        self._previous: Any = None
        self._holding = False

    def _hold(self, signum: int, frame: FrameType | None) -> None:
        self.interrupted = True

    def __enter__(self) -> HoldInterrupts:
        if threading.current_thread() is not threading.main_thread():
            return self
        previous = signal.getsignal(signal.SIGINT)
        if previous in (signal.SIG_IGN, None):   # ignored, or set outside Python
            return self
        self._previous = signal.signal(signal.SIGINT, self._hold)
        self._holding = True
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if self._holding:
                self._holding = False
                signal.signal(signal.SIGINT, self._previous)
                if self.interrupted:
                    signal.raise_signal(signal.SIGINT)   # the replaced handler runs now
        except BaseException:
            if exc_type is None and self.undo is not None:
                with HoldInterrupts():
                    self.undo()
            raise
