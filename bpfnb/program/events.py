"""Program lifecycle events: callbacks that run with a program just before it closes.

Layers above program/ (live pollers, notebook sessions, hand-made attachments) register with
`on_close(callback)` once, at import time; `Program.close()` and `ReplayProgram.close()` call
`closing(prog)`. A callback gets the closing program (a Program or a ReplayProgram), whose
`owned()` lists the objects (itself, its map views, ...) that live views may be tied to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CloseCallback = Callable[[Any], None]

_callbacks: list[CloseCallback] = []


def on_close(callback: CloseCallback) -> CloseCallback:
    """Run `callback(prog)` before every program closes (registering twice is a no-op).
    Returns `callback`, so it also works as a decorator."""
    if callback not in _callbacks:
        _callbacks.append(callback)
    return callback


def closing(prog: Any) -> None:
    """Tell every registered callback that `prog` is about to close."""
    for callback in list(_callbacks):
        callback(prog)
