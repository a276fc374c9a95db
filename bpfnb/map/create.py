"""Maps made from Python with BPF_MAP_CREATE, for types a bcc program cannot declare
(DEVMAP_HASH with bcc 0.26) or to hand a program's map-of-maps a fresh inner map."""

from __future__ import annotations

import ctypes as ct
import os
from typing import Any

from bpfnb._sys import bpfsys
from bpfnb._sys.bpfattrs import MapCreateAttr
from bpfnb.errors import BpfnbError
from bpfnb.map.view import MapView


def create(map_type: bpfsys.MapType | str, key_type: Any, value_type: Any, max_entries: int,
           name: str = "", flags: int = 0) -> MapView:
    """A new map as a MapView; `view.release()` closes its fd (the map goes when unused)."""
    mtype = bpfsys.MapType[map_type.upper()] if isinstance(map_type, str) else map_type
    key_size = ct.sizeof(key_type) if key_type is not None else 0
    attr = MapCreateAttr(map_type=int(mtype), key_size=key_size,
                       value_size=ct.sizeof(value_type), max_entries=max_entries,
                       map_flags=flags, map_name=name.encode()[:bpfsys.OBJ_NAME_LEN - 1])
    try:
        fd = bpfsys.bpf(bpfsys.Cmd.MAP_CREATE, attr)
    except OSError as e:
        raise BpfnbError(f"cannot create a {mtype.name} map ({key_size}-byte key, "
                         f"{ct.sizeof(value_type)}-byte value, {max_entries} entries): "
                         f"{os.strerror(e.errno or 0)}") from None
    view = MapView(name or mtype.name.lower(), fd, key_type, value_type)
    view.on_release(lambda: os.close(fd))
    return view
