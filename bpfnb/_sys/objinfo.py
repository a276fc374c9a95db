"""Kernel objects by id: a program's or map's name and type (for fd-valued map slots)."""

from __future__ import annotations

import os
from dataclasses import dataclass

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


def prog_by_id(prog_id: int) -> ObjSummary | None:
    """Name and type of the program with this id (None if it is gone)."""
    try:
        fd = bpfsys.fd_by_id(bpfsys.Cmd.PROG_GET_FD_BY_ID, prog_id)
    except OSError:
        return None
    try:
        info = bpfsys.prog_info(fd)
    finally:
        os.close(fd)
    return ObjSummary(prog_id, info.name.decode(errors="replace"),
                      _type_name(bpfsys.ProgType, info.type))


def map_by_id(map_id: int) -> ObjSummary | None:
    """Name and type of the map with this id (None if it is gone)."""
    try:
        fd = bpfsys.fd_by_id(bpfsys.Cmd.MAP_GET_FD_BY_ID, map_id)
    except OSError:
        return None
    try:
        info = bpfsys.map_info(fd)
    finally:
        os.close(fd)
    return ObjSummary(map_id, info.name.decode(errors="replace"),
                      _type_name(bpfsys.MapType, info.type))
