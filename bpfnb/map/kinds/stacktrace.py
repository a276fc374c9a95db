"""STACK_TRACE: the raw view, one row per stack id with its depth and return addresses
(innermost first), and `frames` root first: kernel symbols resolved, user addresses left as
`[unknown] 0x...` (they need the process: bpfnb.stacks() resolves them)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bpfnb._sys import bpfsys
from bpfnb.map.kinds import Kind, register
from bpfnb.symbols.symbolizer import Symbolizer, unknown


def addresses(values: np.ndarray) -> np.ndarray:
    """The (n, depth) u64 address block of stack trace values (a struct of one u64 array)."""
    if values.dtype.names is not None and len(values.dtype.names) == 1:
        values = values[values.dtype.names[0]]
    arr = np.asarray(values, dtype=np.uint64)
    return arr if arr.ndim == 2 else arr.reshape(len(arr), -1 if len(arr) else 0)


KERNEL_SPACE = np.uint64(0xFFFF800000000000)
_symbolizer: Any = None


def symbol_frames(ips: np.ndarray, depth: np.ndarray) -> list[list[str]]:
    """Root-first frame names: kernel addresses from kallsyms; user addresses need a pid,
    so they stay `[unknown] 0x...` here (bpfnb.stacks() resolves them per process)."""
    global _symbolizer
    if _symbolizer is None:
        _symbolizer = Symbolizer()
    flat = ips[np.arange(ips.shape[1])[None, :] < depth[:, None]]
    names = np.empty(len(flat), dtype=object)
    kernel = flat >= KERNEL_SPACE
    names[kernel] = _symbolizer.resolve_kernel(flat[kernel])
    names[~kernel] = [unknown(int(a)) for a in flat[~kernel].tolist()]
    out, at = [], 0
    for d in depth.tolist():
        out.append(names[at:at + d][::-1].tolist())
        at += d
    return out


def frame(view: Any, per_cpu: bool) -> pd.DataFrame:
    snap = view.read()
    ips = addresses(snap.values)
    zero = ips == 0
    depth = np.where(zero.any(axis=1), zero.argmax(axis=1), ips.shape[1]).astype(np.int32)
    column = np.empty(len(ips), dtype=object)
    column[:] = [ips[i, :depth[i]].copy() for i in range(len(ips))]
    df = pd.DataFrame({"stack_id": snap.keys.astype(np.int32), "depth": depth,
                       "top": ips[:, 0] if ips.shape[1] else np.zeros(len(ips), np.uint64),
                       "addresses": column, "frames": symbol_frames(ips, depth)})
    df = df.sort_values("stack_id", ignore_index=True)
    df.attrs.update(view.attrs(snap, len(df)), key_columns=["stack_id"],
                    value_columns=["depth", "top", "addresses", "frames"])
    return df


register(Kind(frame=frame), bpfsys.MapType.STACK_TRACE)
