"""Kernel objects by id: a program's or map's name and type (for fd-valued map slots)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bpfnb._sys import bpfsys


@dataclass(frozen=True)
class ObjSummary:
    id: int
    name: str
    type: str


def _type_name(enum: type[bpfsys.ProgType] | type[bpfsys.MapType], value: int) -> str:
    try:
        return enum(value).name.lower()
    except ValueError:
        return f"unknown({value})"


def _by_id(obj_id: int, cmd: bpfsys.Cmd, info_of: Callable[[int], Any],
           enum: type[bpfsys.ProgType] | type[bpfsys.MapType]) -> ObjSummary | None:
    try:
        fd = bpfsys.fd_by_id(cmd, obj_id)
    except OSError:
        return None
    try:
        info = info_of(fd)
    finally:
        os.close(fd)
    return ObjSummary(obj_id, info.name.decode(errors="replace"), _type_name(enum, info.type))


def prog_by_id(prog_id: int) -> ObjSummary | None:
    """Name and type of the program with this id (None if it is gone)."""
    return _by_id(prog_id, bpfsys.Cmd.PROG_GET_FD_BY_ID, bpfsys.prog_info, bpfsys.ProgType)


def map_by_id(map_id: int) -> ObjSummary | None:
    """Name and type of the map with this id (None if it is gone)."""
    return _by_id(map_id, bpfsys.Cmd.MAP_GET_FD_BY_ID, bpfsys.map_info, bpfsys.MapType)
