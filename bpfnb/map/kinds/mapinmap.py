"""ARRAY_OF_MAPS / HASH_OF_MAPS: outer keys -> inner maps. Store a MapView (or a map fd) at a
key; the kernel reads back the inner map's id. Swapping the map at a key redirects a running
program to another map at once: the reason these exist (double buffering, per-tenant maps).
"""

from __future__ import annotations

import ctypes as ct
import os
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


def inner(view: Any, key: Any) -> Any:
    """The inner map at `key` as a MapView: the program's own view of it when there is one,
    otherwise a view opened by id (types from the map's sizes), closed with `view`."""
    from bpfnb.map.view import MapView, view_by_id

    map_id = int(view.lookup(key))
    known = view_by_id(map_id)
    if known is not None:
        return known
    fd = bpfsys.fd_by_id(bpfsys.Cmd.MAP_GET_FD_BY_ID, map_id)
    info = bpfsys.map_info(fd)
    name = info.name.decode(errors="replace") or f"map{map_id}"
    key_type = _raw_type(info.key_size) if info.key_size else None
    child = MapView(name, fd, key_type, _raw_type(info.value_size), owner=view._alive)

    def close() -> None:
        child.release()
        os.close(fd)

    view.on_release(close)
    return child


register(Kind(frame=frame, value_in=_value_in), bpfsys.MapType.ARRAY_OF_MAPS,
         bpfsys.MapType.HASH_OF_MAPS)
