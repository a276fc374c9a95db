"""bpftrace as an engine: scripts run in the system's bpftrace, maps become DataFrames."""

from .program import BpftraceProgram, bpftrace
from .views import BpftraceMap

__all__ = ["BpftraceMap", "BpftraceProgram", "bpftrace"]
