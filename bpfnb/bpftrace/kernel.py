"""Reading a running bpftrace's maps from the kernel (exact for count, sum, avg, stats,
hist and lhist maps whose keys are builtins of known layout: comm, pid, cpu, ...).

bpftrace 0.17 keeps these maps per-CPU with no BTF: keys are the key components packed
(comm char[16], integers 8 bytes), histograms add a u64 bucket index to the key,
avg/stats add an index (0: count, 1: total). Frames come out in output.py's shapes.
"""

from __future__ import annotations

import contextlib
import ctypes as ct
import os
from typing import Any

import numpy as np
import pandas as pd

from bpfnb._sys import bpfsys
from bpfnb.bpftrace import output
from bpfnb.bpftrace.script import MapDecl
from bpfnb.machine.external import ExternalMap, open_map

READABLE = frozenset({"count", "sum", "avg", "stats", "hist", "lhist"})
_CTYPES = {"str": ct.c_char * 16, "int": ct.c_int64}


def process_maps(pid: int) -> dict[str, int]:
    """The kernel names (AT_x) and ids of the maps process `pid` holds open."""
    out: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:bpf-map":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                info = dict(ln.split(":", 1) for ln in f if ":" in ln)
            map_id = int(info["map_id"])
            mfd = bpfsys.fd_by_id(bpfsys.Cmd.MAP_GET_FD_BY_ID, map_id)
            try:
                out[bpfsys.map_info(mfd).name.decode(errors="replace")] = map_id
            finally:
                os.close(mfd)
    return out


def kernel_name(name: str) -> str:
    """bpftrace's kernel map name for `@name` (truncated like the kernel does)."""
    return ("AT_" + name[1:])[: bpfsys.OBJ_NAME_LEN - 1]


def readable(decl: MapDecl) -> bool:
    """A map the kernel read gives exactly: a known aggregation, builtin key components,
    and (lhist) literal bounds."""
    if decl.function not in READABLE or decl.key_layout() is None:
        return False
    if decl.function == "hist":
        return len(decl.params) == 1  # hist(x, k) (0.20+) has finer buckets
    return decl.function != "lhist" or _lhist_bounds(decl) is not None


def _lhist_bounds(decl: MapDecl) -> tuple[int, int, int] | None:
    try:
        lo, hi, step = (int(p, 0) for p in decl.params[1:4])
    except ValueError:
        return None
    return lo, hi, step


def open_kernel_map(decl: MapDecl, map_id: int) -> ExternalMap | None:
    """The map as a typed view (key fields named like the key columns, plus `slot`), or
    None when the kernel's key/value sizes are not the ones this layout assumes."""
    layout = decl.key_layout() or []
    names = decl.columns()
    fields = [(n, _CTYPES[kind]) for n, (_, _, kind) in zip(names, layout)]
    if decl.function in ("hist", "lhist", "avg", "stats"):
        fields.append(("slot", ct.c_uint64))
    fd = bpfsys.fd_by_id(bpfsys.Cmd.MAP_GET_FD_BY_ID, map_id)
    try:
        info = bpfsys.map_info(fd)
    finally:
        os.close(fd)
    # an unkeyed count() is a one-slot per-CPU array (u32 index); others are hashes
    key: Any = type("Key", (ct.Structure,), {"_fields_": fields}) if fields else \
        {4: ct.c_uint32, 8: ct.c_uint64}.get(info.key_size)
    value = ct.c_uint64 if decl.function in ("count", "hist", "lhist") else ct.c_int64
    if key is None or info.key_size != ct.sizeof(key) or info.value_size != ct.sizeof(value):
        return None  # not the layout assumed: the printed output is the only truth
    return open_map(id=map_id, key=key, value=value, decode_enums=False)


def frame(decl: MapDecl, view: ExternalMap) -> pd.DataFrame:
    """The kernel's current contents in the shape the final dump will have."""
    raw = view.df()
    names = [n for n in decl.columns()]
    for n in names:
        if raw[n].dtype == object:
            raw[n] = raw[n].astype(str)
    fn = decl.function
    if fn in ("count", "sum"):
        df = raw[[*names, "value"]].reset_index(drop=True)
        df["value"] = df["value"].astype(np.uint64 if fn == "count" else np.int64)
        df.attrs.update(key_columns=names, value_columns=["value"])
    elif fn in ("avg", "stats"):
        df = _stats(raw, names, fn)
    else:
        df = _hist(raw, names, decl)
    return df


def _stats(raw: pd.DataFrame, names: list[str], fn: str) -> pd.DataFrame:
    wide = raw.pivot_table(index=names or None, columns="slot", values="value",
                           aggfunc="sum", fill_value=0) if names else None
    if wide is None:
        by = dict(zip(raw["slot"].tolist(), raw["value"].tolist()))
        rows = pd.DataFrame({"count": [by.get(0, 0)], "total": [by.get(1, 0)]})
    else:
        rows = wide.reset_index().rename(columns={0: "count", 1: "total"})
        rows.columns.name = None
    count = rows["count"].to_numpy(np.int64)
    total = rows["total"].to_numpy(np.int64)
    avg = np.sign(total) * (np.abs(total) // np.maximum(count, 1))  # C division
    out = rows[names].copy() if names else pd.DataFrame(index=range(len(rows)))
    if fn == "avg":
        out["value"] = avg
        values = ["value"]
    else:
        out["count"], out["average"], out["total"] = count, avg, total
        values = ["count", "average", "total"]
    out.attrs.update(key_columns=names, value_columns=values)
    return out


def _hist(raw: pd.DataFrame, names: list[str], decl: MapDecl) -> pd.DataFrame:
    log2 = decl.function == "hist"
    lin = None if log2 else _lhist_bounds(decl)
    groups = raw.groupby(names, sort=True) if names else [((), raw)]
    parts = []
    for key, g in groups:
        buckets = _buckets(g["slot"].to_numpy(np.int64), g["value"].to_numpy(np.uint64), lin)
        part = output.buckets_frame(buckets, log2)
        for i, n in enumerate(names):
            val = key[i] if isinstance(key, tuple) else key
            part.insert(i, n, [val] * len(part))
        parts.append(part)
    df = pd.concat(parts, ignore_index=True) if parts else output.buckets_frame([], log2)
    df.attrs.update(kind="log2" if log2 else "linear", key_columns=names,
                    value_columns=["count"])
    return df


def _buckets(slots: np.ndarray, counts: np.ndarray, lin: tuple[int, int, int] | None
             ) -> list[dict[str, Any]]:
    """JSON-shaped buckets from first to last non-empty slot, as bpftrace prints them."""
    by = {int(s): int(c) for s, c in zip(slots, counts) if c}
    if not by:
        return []
    out = []
    for s in range(min(by), max(by) + 1):
        b: dict[str, Any] = {"count": by.get(s, 0)}
        if lin is None:
            if s == 0:
                b["max"] = -1
            else:
                lo = 0 if s == 1 else 1 << (s - 2)
                b["min"], b["max"] = lo, (0 if s == 1 else 2 * lo - 1)
        else:
            lo_all, hi_all, step = lin
            n = (hi_all - lo_all) // step
            if s == 0:
                b["max"] = lo_all - 1
            elif s > n:
                b["min"] = hi_all
            else:
                b["min"] = lo_all + (s - 1) * step
                b["max"] = b["min"] + step - 1
        out.append(b)
    return out
