"""The same BPF program on many hosts, through IPython Parallel (ipyparallel).

>>> fleet = bpfnb.fleet(ipyparallel.Client())     # this package is callable: bpfnb.fleet(c)
>>> fp = fleet.load(source, name="counts"); fp["by_pid"].df()

Engines on one machine (a local test cluster) share one kernel, so each sees every event on
the machine; on real hosts each engine sees its own.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from bpfnb.fleet.calls import HostError
from bpfnb.fleet.fleet import Fleet, fleet
from bpfnb.fleet.program import FleetMap, FleetProgram, close_all, open_fleet_programs
from bpfnb.fleet.stacks import FleetStacks

__all__ = ["Fleet", "FleetMap", "FleetProgram", "FleetStacks", "HostError", "close_all",
           "fleet", "open_fleet_programs"]


class _CallableModule(types.ModuleType):
    """`bpfnb.fleet(client)` works although `bpfnb.fleet` is this package."""

    def __call__(self, client_or_view: Any, **kwargs: Any) -> Fleet:
        return fleet(client_or_view, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
