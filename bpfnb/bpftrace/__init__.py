"""bpftrace as an engine: scripts run in the system's bpftrace, maps become DataFrames."""

from bpfnb.bpftrace.process import find_bpftrace, version
from bpfnb.bpftrace.program import BpftraceProgram, bpftrace, programs, stop_all
from bpfnb.bpftrace.views import BpftraceMap

__all__ = ["BpftraceMap", "BpftraceProgram", "bpftrace", "find_bpftrace", "programs",
           "stop_all", "version"]
