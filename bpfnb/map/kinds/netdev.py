"""DEVMAP / DEVMAP_HASH (XDP redirect targets: interfaces), CPUMAP (redirect to a CPU's
queue) and XSKMAP (redirect to AF_XDP sockets). Interfaces go in by name or ifindex and come
out with their names; the kernel reads XSKMAP slots back to nobody, so df() shows what this
view stored.
"""

from __future__ import annotations

import socket
from typing import Any

import numpy as np
import pandas as pd

from bpfnb._sys import bpfsys, objinfo
from bpfnb.errors import KeyTypeError
from bpfnb.map.kinds import Closer, Kind, register
from bpfnb.map.kinds.fdvalues import fd_of, label_of


def ifname(index: int) -> str:
    """An interface's name in this network namespace ('' when there is none)."""
    try:
        return socket.if_indextoname(index)
    except OSError:
        return ""


def _ifindex(view: Any, value: Any) -> Any:
    if isinstance(value, str):
        try:
            return socket.if_nametoindex(value)
        except OSError:
            raise KeyTypeError(f"no interface {value!r} in this network namespace (map "
                               f"{view.name!r} wants ifindexes; pass a netns's "
                               "ns.ifindex(name) for one elsewhere)") from None
    return value


def _dev_value_in(view: Any, value: Any) -> tuple[Any, Closer | None]:
    if isinstance(value, dict):
        return {k: (_ifindex(view, v) if k == "ifindex" else v) for k, v in value.items()}, None
    return _ifindex(view, value), None


def _value_fields(values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(first u32 field, second u32 field or None) of devmap/cpumap values."""
    raw = np.ascontiguousarray(values).view(np.uint8).reshape(len(values),
                                                              values.dtype.itemsize)
    first = raw[:, :4].copy().view(np.uint32).ravel()
    second = raw[:, 4:8].copy().view(np.uint32).ravel() if raw.shape[1] >= 8 else None
    return first, second


def _prog_names(ids: np.ndarray | None) -> dict[str, Any]:
    if ids is None:
        return {}
    names = [(objinfo.prog_by_id(int(i)) or objinfo.ObjSummary(0, "", "")).name if i else ""
             for i in ids]
    return {"prog_id": ids, "prog_name": names}


def dev_frame(view: Any, per_cpu: bool) -> pd.DataFrame:
    snap = view.read()
    ifindex, prog = _value_fields(snap.values)
    df = pd.DataFrame({"key": snap.keys.copy(), "ifindex": ifindex,
                       "interface": [ifname(int(i)) for i in ifindex], **_prog_names(prog)})
    df.attrs.update(view.attrs(snap, len(df)), key_columns=["key"],
                    value_columns=[c for c in df.columns if c != "key"])
    return df


def cpu_frame(view: Any, per_cpu: bool) -> pd.DataFrame:
    snap = view.read()
    qsize, prog = _value_fields(snap.values)
    df = pd.DataFrame({"cpu": snap.keys.astype(np.uint32), "qsize": qsize,
                       **_prog_names(prog)})
    df.attrs.update(view.attrs(snap, len(df)), key_columns=["cpu"],
                    value_columns=[c for c in df.columns if c != "cpu"])
    return df


def _xsk_value_in(view: Any, value: Any) -> tuple[int, Closer | None]:
    return fd_of(view, value, "AF_XDP sockets (bound to an interface queue)")


def _remember(view: Any, key: Any, value: Any) -> None:
    view.shadow[int(key)] = label_of(value)


def _forget(view: Any, key: Any) -> None:
    view.shadow.pop(int(key), None)


XSK_NOTE = ("the kernel does not let user space read XSKMAP slots back; the rows are the "
            "sockets this view stored")


def xsk_frame(view: Any, per_cpu: bool) -> pd.DataFrame:
    slots = sorted(view.shadow)
    df = pd.DataFrame({"slot": np.array(slots, np.uint32),
                       "socket": [view.shadow[s] for s in slots]})
    df.attrs.update(map=view.name, type=view.info.type, entries=len(slots),
                    max_entries=view.info.max_entries, key_columns=["slot"],
                    value_columns=["socket"], note=XSK_NOTE)
    return df


register(Kind(frame=dev_frame, value_in=_dev_value_in), bpfsys.MapType.DEVMAP,
         bpfsys.MapType.DEVMAP_HASH)
register(Kind(frame=cpu_frame), bpfsys.MapType.CPUMAP)
register(Kind(frame=xsk_frame, value_in=_xsk_value_in, on_update=_remember,
              on_delete=_forget, length=lambda v: len(v.shadow), note=XSK_NOTE),
         bpfsys.MapType.XSKMAP)
