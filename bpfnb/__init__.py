"""bpfnb: explore eBPF in Jupyter. `%load_ext bpfnb`, then `%%bpf NAME` cells.

>>> prog = bpfnb.load(source)          # compile, load, attach
>>> prog["counts"].df()                # a map as a typed DataFrame
"""

from __future__ import annotations

from typing import Any

from bpfnb import bpftrace  # bpfnb.bpftrace(script): %%bpftrace's engine
from bpfnb.backends.base import AttachPoint, Usdt
from bpfnb.doctor import DoctorReport, doctor, skip_reason
from bpfnb.errors import (
    AttachError,
    BpfnbError,
    CompileError,
    FeatureUnavailableError,
    KeyExistsError,
    KeyNotFoundError,
    KeyTypeError,
    MapError,
    MapFullError,
    PrivilegeError,
    ProgramClosedError,
    ReplayError,
    UnknownMapError,
    UnknownTargetError,
    UnsupportedMapError,
    VerifierError,
)
from bpfnb.machine.external import ExternalMap, open_map, pin, pinned, unpin
from bpfnb.machine.inventory import ProgramStats, links, maps, programs
from bpfnb.machine.probes import probes
from bpfnb.machine.syscalls import syscall_names, syscalls
from bpfnb.map.protocol import MapLike
from bpfnb.map.view import MapInfo, MapView
from bpfnb.profiler.offcpu import offcpu
from bpfnb.profiler.profiling import profile, profile_source, stacks
from bpfnb.profiler.stacks import Stacks
from bpfnb.program.core import Program, close_all, load, load_object, open_programs
from bpfnb.program.functions import Function
from bpfnb.store.recording import Recording, record
from bpfnb.store.replay import ReplayMapView, ReplayProgram, replay
from bpfnb.symbols.symbolizer import Symbolizer

__version__ = "0.1.0"

__all__ = [
    "AttachError",
    "AttachPoint",
    "BpfnbError",
    "CompileError",
    "DoctorReport",
    "ExternalMap",
    "FeatureUnavailableError",
    "Function",
    "KeyExistsError",
    "KeyNotFoundError",
    "KeyTypeError",
    "MapError",
    "MapFullError",
    "MapInfo",
    "MapLike",
    "MapView",
    "PrivilegeError",
    "Program",
    "ProgramClosedError",
    "ProgramStats",
    "Recording",
    "ReplayError",
    "ReplayMapView",
    "ReplayProgram",
    "Stacks",
    "Symbolizer",
    "UnknownMapError",
    "UnknownTargetError",
    "UnsupportedMapError",
    "Usdt",
    "VerifierError",
    "bpftrace",
    "close_all",
    "doctor",
    "links",
    "load",
    "load_object",
    "maps",
    "offcpu",
    "open_map",
    "open_programs",
    "pin",
    "pinned",
    "probes",
    "profile",
    "profile_source",
    "programs",
    "record",
    "replay",
    "skip_reason",
    "stacks",
    "syscall_names",
    "syscalls",
    "top",
    "unpin",
]


def __getattr__(name: str) -> Any:
    """`bpfnb.plot`: the plotting module, imported on first use (it loads matplotlib)."""
    if name == "plot":
        from bpfnb.render import plot

        return plot
    if name == "fleet":  # bpfnb.fleet(client): a callable package; imports ipyparallel now
        return __import__("bpfnb.fleet", fromlist=["Fleet"])
    raise AttributeError(f"module 'bpfnb' has no attribute {name!r}")


def top(every: float = 1.0, **kwargs: Any) -> Any:
    """A bpftop-like live view of every BPF program's run rate and CPU share."""
    from bpfnb.live.top import top as _top

    return _top(every=every, **kwargs)


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext bpfnb`: register the %%bpf magics."""
    from bpfnb.jupyter.extension import load_extension

    load_extension(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """`%unload_ext bpfnb`: detach and free every program the notebook holds."""
    from bpfnb.jupyter.extension import unload_extension

    unload_extension(ipython)
