"""CGROUP_ARRAY (slots -> cgroups) and CGROUP_STORAGE / PERCPU_CGROUP_STORAGE (one value per
attached cgroup and attach type), with cgroups shown by path.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from bpfnb._sys import bpflink, bpfsys, cgroupfs
from bpfnb.data import frames
from bpfnb.errors import KeyTypeError
from bpfnb.map.kinds import Closer, Kind, insert_columns, register
from bpfnb.map.view import drop_hidden

NOTE_ARRAY = ("the kernel does not let user space read a cgroup array back; the rows are "
              "the slots this view filled")


def cgroup_fd(view: Any, value: Any) -> tuple[int, Closer | None]:
    """A Cgroup, a directory path or an open fd -> an fd for the map update."""
    if hasattr(value, "fd") and callable(value.fd):
        return int(value.fd()), None
    if isinstance(value, int):
        return value, None
    if isinstance(value, (str, os.PathLike)):
        path = _abs_path(str(value))
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            raise KeyTypeError(f"cannot open cgroup {path}: {e.strerror}") from None
        return fd, (lambda: os.close(fd))
    raise KeyTypeError(f"map {view.name!r} stores cgroups: give a Cgroup, a cgroup path or "
                       f"an fd, not {type(value).__name__}")


def _abs_path(path: str) -> str:
    root = cgroupfs.cgroup2_root() or ""
    if os.path.isabs(path) and not path.startswith(root):
        joined = os.path.join(root, path.lstrip("/"))
        if os.path.isdir(joined):
            return joined
    return path


def _describe(value: Any) -> tuple[str, int | None]:
    if hasattr(value, "relpath"):
        return str(value.relpath), int(value.id)
    if isinstance(value, (str, os.PathLike)):
        path = _abs_path(str(value))
        root = cgroupfs.cgroup2_root() or "/"
        try:
            ino: int | None = os.stat(path).st_ino
        except OSError:
            ino = None
        return "/" + os.path.relpath(path, root).lstrip("."), ino
    return f"fd {value}", None


def _remember(view: Any, key: Any, value: Any) -> None:
    view.shadow[int(key)] = _describe(value)


def _forget(view: Any, key: Any) -> None:
    view.shadow.pop(int(key), None)


def _array_frame(view: Any, per_cpu: bool) -> pd.DataFrame:
    slots = sorted(view.shadow)
    df = pd.DataFrame({"slot": np.array(slots, np.uint32),
                       "cgroup": [view.shadow[s][0] for s in slots],
                       "cgroup_id": pd.array([view.shadow[s][1] for s in slots],
                                             dtype="UInt64")})
    df.attrs.update(map=view.name, type=view.info.type, entries=len(slots),
                    max_entries=view.info.max_entries, key_columns=["slot"],
                    value_columns=["cgroup", "cgroup_id"], note=NOTE_ARRAY)
    return df


register(Kind(frame=_array_frame, value_in=cgroup_fd, on_update=_remember, on_delete=_forget,
              length=lambda v: len(v.shadow), note=NOTE_ARRAY), bpfsys.MapType.CGROUP_ARRAY)


def _storage_frame(view: Any, per_cpu: bool) -> pd.DataFrame:
    keys, values = view.ops.items()  # max_entries is 0: MapReader's key walk stops early
    cpus = bpfsys.possible_cpus() if view.per_cpu else None
    attrs = {"map": view.name, "type": view.info.type, "entries": len(keys),
             "max_entries": view.info.max_entries, "read_method": "iterate"}
    df = frames.frame(keys, values, attrs, per_cpu=per_cpu and view.per_cpu, cpus=cpus)
    df = drop_hidden(df, view.ops.value.hidden)
    kcols = list(df.attrs.get("key_columns", []))
    id_col = "cgroup_inode_id" if "cgroup_inode_id" in df.columns else kcols[0]
    paths = cgroupfs.paths_by_id()
    ids = df[id_col].to_numpy()
    extra: dict[str, Any] = {"cgroup": [paths.get(int(i), f"(id {int(i)})") for i in ids]}
    if "attach_type" in df.columns:
        extra["attach"] = [bpflink.ATTACH_NAMES.get(int(t), str(int(t)))
                           for t in df["attach_type"].to_numpy()]
    out = insert_columns(df, extra, 0, key_columns=[*extra, *kcols])
    return out


def _storage_key(view: Any, key: Any) -> Any:
    """Accept (cgroup, 'ingress'|'egress') besides the raw key struct."""
    if isinstance(key, tuple) and len(key) == 2 and not isinstance(key[0], int):
        _, cg_id = _describe(key[0])
        kind = bpflink.attach_type(key[1]) if isinstance(key[1], str) else key[1]
        return {"cgroup_inode_id": cg_id, "attach_type": kind}
    return key


register(Kind(frame=_storage_frame, key_in=_storage_key), bpfsys.MapType.CGROUP_STORAGE,
         bpfsys.MapType.PERCPU_CGROUP_STORAGE)
