"""SOCKMAP / SOCKHASH: sockets as values. A socket (or its fd) goes in; the kernel reads back
its cookie (only when the value is 8 bytes: declare `BPF_TABLE("sockmap", u32, u64, ...)`).
df() names each cookie: protocol, state, local and remote address, owning pids.
"""

from __future__ import annotations

import errno
from typing import Any

import numpy as np
import pandas as pd

from bpfnb._sys import bpfsys, procfs, sockdiag
from bpfnb.data.layout import flatten
from bpfnb.map.kinds import Closer, Kind, insert_columns, register
from bpfnb.map.kinds.fdvalues import fd_of

NOTE_SHORT = ("values are 4 bytes, so the kernel does not return socket cookies; declare the "
              "map with a u64 value to see them")


def _value_in(view: Any, value: Any) -> tuple[int, Closer | None]:
    return fd_of(view, value, "sockets (a socket object or fd)")


def _cookies(view: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(raw keys, cookies or None when the kernel will not give them)."""
    try:
        snap = view.read()
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        return view.ops.raw_keys(), None
    return snap.keys, np.asarray(snap.values).astype(np.uint64).reshape(len(snap.keys))


def describe(cookies: np.ndarray) -> dict[str, Any]:
    """Columns naming each cookie: protocol, state, local, remote, pid, comm."""
    known = sockdiag.sockets()
    infos = [known.get(int(c)) for c in cookies]
    pids = sockdiag.owners({i.inode for i in infos if i is not None and i.inode})
    owner = [_first(pids.get(i.inode)) if i is not None else None for i in infos]
    return {
        "protocol": [i.protocol if i else "" for i in infos],
        "state": [i.state if i else "" for i in infos],
        "local": [i.local if i else "" for i in infos],
        "remote": [i.remote if i else "" for i in infos],
        "pid": pd.array(owner, dtype="Int64"),
        "comm": [procfs.comm(p) if p else "" for p in owner],
    }


def _first(pids: list[int] | None) -> int | None:
    return pids[0] if pids else None


def frame(view: Any, per_cpu: bool) -> pd.DataFrame:
    keys, cookies = _cookies(view)
    base = view.plain_df() if cookies is not None else _keys_frame(view, keys)
    if cookies is None:
        base.attrs["note"] = NOTE_SHORT
        return base
    base = base.rename(columns={"value": "cookie"})
    base.attrs["value_columns"] = ["cookie"]
    return insert_columns(base, describe(cookies), len(base.columns))


def _keys_frame(view: Any, keys: np.ndarray) -> pd.DataFrame:
    cols = flatten(keys, "" if keys.dtype.names is not None else "key")
    df = pd.DataFrame(cols)
    df.attrs.update(map=view.name, type=view.info.type, key_columns=list(cols),
                    value_columns=[], entries=len(df), max_entries=view.info.max_entries)
    return df


register(Kind(frame=frame, value_in=_value_in), bpfsys.MapType.SOCKMAP,
         bpfsys.MapType.SOCKHASH)
