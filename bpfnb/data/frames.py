"""Map snapshots (numpy) -> pandas DataFrames: typed columns, per-CPU reshapes, histograms."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from bpfnb.data.layout import flatten, sum_cpus


def columns(keys: np.ndarray, values: np.ndarray, enums: dict[str, dict[str, int]] | None = None
            ) -> tuple[dict[str, Any], list[str], list[str]]:
    """Key and value columns of a snapshot: (columns, key names, value names). Enum
    columns' {name: number} go into `enums`."""
    kenums: dict[str, dict[str, int]] = {}
    venums: dict[str, dict[str, int]] = {}
    kcols = flatten(keys, _base(keys, "key"), kenums)
    vcols = flatten(values, _base(values, "value"), venums)
    clash = set(kcols) & set(vcols)
    if clash:  # a struct key and struct value sharing a field name
        vcols = {f"value.{k}" if k in clash else k: v for k, v in vcols.items()}
        venums = {f"value.{k}" if k in clash else k: v for k, v in venums.items()}
    if enums is not None:
        enums.update(kenums, **venums)
    return {**kcols, **vcols}, list(kcols), list(vcols)


def _as_is(cols: dict[str, Any]) -> dict[str, Any]:
    """Object columns (bytes, pointers, 128-bit ints) kept as objects: pandas would scan
    every row to guess a dtype."""
    return {k: pd.Series(v, dtype=object, copy=False)
            if isinstance(v, np.ndarray) and v.dtype == object else v for k, v in cols.items()}


def _base(arr: np.ndarray, name: str) -> str:
    """Struct fields become top-level columns; scalars and arrays are named key/value."""
    return "" if arr.dtype.names is not None else name


def frame(keys: np.ndarray, values: np.ndarray, attrs: dict[str, Any],
          per_cpu: bool = False, cpus: list[int] | None = None) -> pd.DataFrame:
    """A DataFrame of a snapshot. Per-CPU values (n, cpus) are summed unless `per_cpu`."""
    if values.ndim == 2:
        if per_cpu:
            return _long_frame(keys, values, attrs, cpus or list(range(values.shape[1])))
        values = sum_cpus(values)
    enums: dict[str, dict[str, int]] = {}
    cols, kcols, vcols = columns(keys, values, enums)
    df = pd.DataFrame(_as_is(cols), copy=False)
    df.attrs.update(attrs, key_columns=kcols, value_columns=vcols, enums=enums)
    return df


def _long_frame(keys: np.ndarray, values: np.ndarray, attrs: dict[str, Any],
                cpus: list[int]) -> pd.DataFrame:
    n, ncpu = values.shape
    enums: dict[str, dict[str, int]] = {}
    cols, kcols, vcols = columns(np.repeat(keys, ncpu), values.reshape(n * ncpu), enums)
    cpu = np.tile(np.asarray(cpus, dtype=np.int32), n)
    data = {k: cols[k] for k in kcols} | {"cpu": cpu} | {v: cols[v] for v in vcols}
    df = pd.DataFrame(_as_is(data), copy=False)
    df.attrs.update(attrs, key_columns=kcols, value_columns=vcols, enums=enums)
    return df


# -- histograms -----------------------------------------------------------------------------

SLOT_NAMES = ("slot", "bucket")
HIST_TYPES = frozenset({"ARRAY", "HASH", "PERCPU_ARRAY", "PERCPU_HASH", "LRU_HASH"})
HIST_NAME = re.compile(r"hist|dist|lat|slot|bucket|log2", re.IGNORECASE)
HIST_MAX_SLOTS = 4096


def looks_like_hist(view: Any) -> bool:
    """A histogram map: an array or hash of integer counts indexed by a slot number.

    The key is an integer whose map name suggests a histogram ("hist", "dist", "lat", ...,
    as bcc's BPF_HISTOGRAM maps are usually named), or a struct with a `slot`/`bucket`
    field (bcc's BPF_HISTOGRAM(name, struct key)).
    """
    info = view.info
    if info.type not in HIST_TYPES or info.max_entries > HIST_MAX_SLOTS:
        return False
    kd, vd = view.key_dtype, view.value_dtype
    if vd.names is not None or vd.kind not in "iu":
        return False
    if kd.names is not None:
        return any(n in SLOT_NAMES for n in kd.names)
    return kd.kind in "iu" and bool(HIST_NAME.search(view.name))


def log2_bounds(slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bucket bounds of bcc's bpf_log2l slots: slot i holds [2**(i-1), 2**i - 1], slot 1 is
    0-1, slot 64 is [2**63, 2**64 - 1] (as bcc's print_log2_hist prints them)."""
    slots = np.clip(np.asarray(slots, dtype=np.int64), 0, 64).astype(np.uint64)
    one = np.uint64(1)
    low = np.where(slots > 1, one << np.maximum(slots, one) - one, np.uint64(0))
    high = np.where(slots >= 64, np.uint64(np.iinfo(np.uint64).max),
                    (one << np.minimum(slots, np.uint64(63))) - one)
    return low.astype(np.uint64), high.astype(np.uint64)


def hist_frame(df: pd.DataFrame, linear: int | None = None, value: str | None = None
               ) -> pd.DataFrame:
    """Buckets of a histogram map's DataFrame, the ones bcc's print_log2_hist prints.

    The slot is the `key` column, or a key field named `slot`/`bucket` (other key fields
    become section columns). Log2: slots 1..last non-empty. Linear: slots 0..last non-empty,
    bucket i covering [i*step, (i+1)*step - 1].
    """
    kcols: list[str] = df.attrs.get("key_columns", ["key"])
    vcols: list[str] = df.attrs.get("value_columns", ["value"])
    slot = next((c for c in kcols if c in ("key", *SLOT_NAMES)), None)
    if slot is None:
        raise ValueError(f"no slot column among the key fields {kcols}; name one 'slot'")
    count = value or vcols[0]
    sections = [c for c in kcols if c != slot]
    if not sections:
        out = _buckets(df[slot].to_numpy(), df[count].to_numpy(), linear)
    else:
        parts = []
        for sec, group in df.groupby(sections, sort=True):
            part = _buckets(group[slot].to_numpy(), group[count].to_numpy(), linear)
            for name, val in zip(sections, sec if isinstance(sec, tuple) else (sec,)):
                part.insert(len(part.columns) - 3, name, [val] * len(part))
            parts.append(part)
        out = pd.concat(parts, ignore_index=True) if parts else _buckets(
            np.zeros(0, np.uint64), np.zeros(0, np.uint64), linear)
    out.attrs.update({k: v for k, v in df.attrs.items() if k not in ("key_columns",
                                                                    "value_columns")})
    out.attrs.update(kind="linear" if linear else "log2", step=linear, key_columns=sections,
                     value_columns=["count"])
    return out


def _buckets(slots: np.ndarray, counts: np.ndarray, linear: int | None) -> pd.DataFrame:
    slots = slots.astype(np.int64)
    counts = counts.astype(np.uint64)
    first = 0 if linear else 1
    nonzero = slots[(counts > 0) & (slots >= first)]
    last = int(nonzero.max()) if len(nonzero) else first - 1
    idx = np.arange(first, last + 1, dtype=np.int64)
    total = np.zeros(len(idx), np.uint64)
    inside = (slots >= first) & (slots <= last)
    np.add.at(total, slots[inside] - first, counts[inside])
    if linear:
        low = (idx * linear).astype(np.uint64)
        high = low + np.uint64(linear - 1)
    else:
        low, high = log2_bounds(idx)
    return pd.DataFrame({"low": low, "high": high, "count": total})
