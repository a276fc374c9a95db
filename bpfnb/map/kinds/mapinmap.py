"""ARRAY_OF_MAPS / HASH_OF_MAPS: outer keys -> inner maps. Store a MapView (or a map fd) at a
key; the kernel reads back the inner map's id. Swapping the map at a key redirects a running
program to another map at once: the reason these exist (double buffering, per-tenant maps).
"""

from __future__ import annotations

import ctypes as ct
import os
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bpfnb._sys import bpfsys, objinfo
from bpfnb.map.kinds import Closer, Kind, register
from bpfnb.map.kinds.fdvalues import fd_of

_SCALARS = {1: ct.c_uint8, 2: ct.c_uint16, 4: ct.c_uint32, 8: ct.c_uint64}


def _value_in(view: Any, value: Any) -> tuple[int, Closer | None]:
    return fd_of(view, value, "maps (a MapView such as prog['inner'])")


def frame(view: Any, per_cpu: bool) -> pd.DataFrame:
    df = view.plain_df()
    kcols = list(df.attrs.get("key_columns", ["key"]))
    ids = df["value"].to_numpy().astype("uint32")
    infos = [objinfo.map_by_id(int(i)) for i in ids]
    out = df[kcols].copy()
    out["map_id"] = ids
    out["map_name"] = [i.name if i else "" for i in infos]
    out["map_type"] = [i.type if i else "" for i in infos]
    out.attrs = dict(df.attrs)
    out.attrs["value_columns"] = ["map_id", "map_name", "map_type"]
    return out


def _raw_type(size: int) -> Any:
    return _SCALARS.get(size, ct.c_uint8 * size)


@dataclass(frozen=True)
class InnerMap:
    """An inner map opened by id: its fd (close it), name and raw key/value types."""

    fd: int
    name: str
    key_type: Any
    value_type: Any

    def close(self) -> None:
        os.close(self.fd)


def open_inner(map_id: int) -> InnerMap:
    """Open the map with kernel id `map_id`; its key/value types are raw scalars/bytes."""
    fd = bpfsys.fd_by_id(bpfsys.Cmd.MAP_GET_FD_BY_ID, map_id)
    info = bpfsys.map_info(fd)
    name = info.name.decode(errors="replace") or f"map{map_id}"
    key_type = _raw_type(info.key_size) if info.key_size else None
    return InnerMap(fd, name, key_type, _raw_type(info.value_size))


register(Kind(frame=frame, value_in=_value_in), bpfsys.MapType.ARRAY_OF_MAPS,
         bpfsys.MapType.HASH_OF_MAPS)
