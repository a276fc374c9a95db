"""Merged snapshots: each host's keys with the host's label as one more key field, so the
kit's frame builder (bpfnb.data.frames), live views and recordings take fleet maps as they
are. The label goes after the key's own bytes, so field offsets and bit fields stay put."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

HOST = "host"
HOST_BYTES = 64


def host_field(key_dtype: np.dtype) -> str:
    names = key_dtype.names or ()
    return HOST if HOST not in names else "fleet_host"


def with_host(key_dtype: np.dtype) -> np.dtype:
    """The key dtype plus a `host` char[64] field after the key's bytes."""
    size = key_dtype.itemsize
    field = host_field(key_dtype)
    if key_dtype.names is None:
        return np.dtype({"names": ["key", field], "formats": [key_dtype, f"S{HOST_BYTES}"],
                         "offsets": [0, size], "itemsize": size + HOST_BYTES})
    fields = dict(key_dtype.fields or {})
    names = list(key_dtype.names)
    spec: Any = {"names": [*names, field],
            "formats": [*(fields[n][0] for n in names), f"S{HOST_BYTES}"],
            "offsets": [*(fields[n][1] for n in names), size],
            "itemsize": size + HOST_BYTES}
    return np.dtype(spec, metadata=dict(key_dtype.metadata or {}))


def merge(parts: Sequence[tuple[str, np.ndarray]], key_dtype: np.dtype) -> np.ndarray:
    """One key array of every host's keys, each row tagged with its host."""
    merged = with_host(key_dtype)
    size = key_dtype.itemsize
    total = sum(len(k) for _, k in parts)
    raw = np.zeros((total, merged.itemsize), np.uint8)
    row = 0
    for host, keys in parts:
        n = len(keys)
        if n:
            raw[row:row + n, :size] = np.ascontiguousarray(keys).view(np.uint8).reshape(n, size)
            label = np.frombuffer(host.encode()[:HOST_BYTES].ljust(HOST_BYTES, b"\0"), np.uint8)
            raw[row:row + n, size:] = label
        row += n
    return raw.view(merged).reshape(total)
