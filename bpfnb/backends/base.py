"""What every backend shares: attach point and USDT records, and the Backend Protocol.

A backend compiles and loads one C program (bcc: backends/bcc, libbpf: backends/libbpf) and
answers what Program asks of it; replays, recordings and the libbpf backend use the records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class AttachPoint:
    kind: str  # tracepoint, raw_tracepoint, kprobe, kretprobe, kfunc, kretfunc, lsm, uprobe, ...
    target: str
    function: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}"


@dataclass(frozen=True)
class Usdt:
    """A USDT probe to enable at load time (so the program can read its arguments)."""

    probe: str
    function: str
    path: str | None = None
    pid: int | None = None


class Table(Protocol):
    """What Program needs of a map: its fd and ctypes key/value types (`Key` None for
    keyless maps), and `event(buf)` for event maps (its type is the events' struct)."""

    map_fd: int
    Key: Any
    Leaf: Any


class Backend(Protocol):
    """One loaded program as an engine sees it (BccModule, LibbpfModule)."""

    attached: list[AttachPoint]

    def functions(self) -> list[str]: ...
    def table_names(self) -> list[str]: ...
    def table(self, name: str) -> Any: ...
    def loaded_fds(self) -> dict[str, int]: ...
    def program_fd(self, function: str, prog_type: int) -> int: ...
    def autoattach(self) -> None: ...
    def attach_btf(self, kind: str, function: str, target: str) -> None: ...
    def attach_tracepoint(self, tracepoint: str, function: str) -> None: ...
    def attach_raw_tracepoint(self, tracepoint: str, function: str) -> None: ...
    def attach_kprobe(self, event: str, function: str, ret: bool = False) -> None: ...
    def attach_uprobe(self, binary: str, symbol: str | None, function: str, *, ret: bool,
                      pid: int, addr: int | None, sym_off: int) -> None: ...
    def attach_usdt(self, probe: str, function: str, path: str | None,
                    pid: int | None) -> None: ...
    def attach_perf_event(self, function: str, ev_type: int, ev_config: int, *,
                          sample_period: int, sample_freq: int, pid: int, cpu: int) -> None: ...
    def close(self) -> None: ...
