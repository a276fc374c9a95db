"""bpftrace as an engine: scripts run in the system's bpftrace, maps become DataFrames.

>>> prog = bpfnb.bpftrace(script, name="counts")   # this package is callable
>>> prog["@by_comm"].df(); bpfnb.bpftrace.programs(); bpfnb.bpftrace.stop_all()
"""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence
from typing import Any

from bpfnb.bpftrace import health  # noqa: F401 - adds the doctor's bpftrace row
from bpfnb.bpftrace.process import find_bpftrace, version
from bpfnb.bpftrace.program import BpftraceProgram, bpftrace, programs, stop_all
from bpfnb.bpftrace.views import BpftraceMap

__all__ = ["BpftraceMap", "BpftraceProgram", "bpftrace", "find_bpftrace", "programs",
           "stop_all", "version"]


class _CallableModule(types.ModuleType):
    """`bpfnb.bpftrace(script, ...)` works although `bpfnb.bpftrace` is this package."""

    def __call__(self, script: str, name: str | None = None, duration: float | None = None,
                 args: Sequence[Any] = (), **options: Any) -> BpftraceProgram:
        return bpftrace(script, name=name, duration=duration, args=args, **options)


sys.modules[__name__].__class__ = _CallableModule
