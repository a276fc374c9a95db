"""bpftrace's `-f json` lines (0.17 and newer releases) -> messages and DataFrames.

One JSON object per line, `{"type": T, "data": D}`: `printf`, `time`, `cat`, `join`,
`syscall` and `value` carry text or a value; `map`, `hist`, `stats` and `tseries` carry
`{"@name": ...}`. `attached_probes` and `lost_events` put their number in `data`
(0.17: `{"probes": N}` / `{"events": N}`) or, in newer releases, in `count`. Newer
releases write integers a double cannot hold as strings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

TEXT_TYPES = frozenset({"printf", "time", "cat", "join", "syscall", "value"})
MAP_TYPES = frozenset({"map", "hist", "stats", "tseries"})
ERROR_TYPES = frozenset({"runtime_error", "helper_error", "print_error"})


@dataclass
class Message:
    """One line of output: its type, payload and the time it was read (ns, monotonic)."""

    type: str
    data: Any
    time_ns: int = 0
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def number(self) -> int | None:
        """attached_probes / lost_events: the count, in any release's shape."""
        if "count" in self.raw:
            return _int(self.raw["count"])
        if isinstance(self.data, dict):
            for k in ("probes", "events", "count"):
                if k in self.data:
                    return _int(self.data[k])
        return None

    @property
    def text(self) -> str:
        """The printed text of a text message (a value is shown as JSON)."""
        return self.data if isinstance(self.data, str) else json.dumps(self.data)


def parse_line(line: str, time_ns: int = 0) -> Message | None:
    """A message, or None for a blank or non-JSON line (0.17 prints blank lines at exit)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict) or "type" not in obj:
        return None
    return Message(str(obj["type"]), obj.get("data"), time_ns, obj)


def _int(v: Any) -> int:
    return int(v)


def _num(v: Any) -> Any:
    """A JSON number, or an integer newer releases wrote as a string."""
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            return v
    return v


# -- keys ------------------------------------------------------------------------------

def split_key(key: str, arity: int) -> list[str]:
    """The components of a joined map key ("comm,1234"). A string component holding commas
    absorbs the extra pieces (the first non-integer component does)."""
    if arity <= 1:
        return [key]
    parts = key.split(",")
    if len(parts) <= arity:
        return parts + [""] * (arity - len(parts))
    extra = len(parts) - arity
    at = next((i for i, p in enumerate(parts) if not _is_int(p)), 0)
    return [*parts[:at], ",".join(parts[at:at + extra + 1]), *parts[at + extra + 1:]]


def _is_int(s: str) -> bool:
    try:
        int(s)
    except ValueError:
        return False
    return True


def key_columns(keys: list[str], names: list[str]) -> dict[str, Any]:
    """Typed key columns: all-integer components become int64 (uint64 past int64), others
    stay str."""
    arity = len(names)
    rows = [split_key(k, arity) for k in keys]
    cols: dict[str, Any] = {}
    for i, name in enumerate(names):
        cols[name] = typed([r[i] for r in rows])
    return cols


def typed(values: list[Any]) -> np.ndarray:
    """str values as an int64/uint64 array when every one is an integer, else object str."""
    if values and all(isinstance(v, int) or (isinstance(v, str) and _is_int(v))
                      for v in values):
        ints = [int(v) for v in values]
        if min(ints) >= 0 and max(ints) > np.iinfo(np.int64).max:
            return np.asarray(ints, dtype=np.uint64)
        return np.asarray(ints, dtype=np.int64)
    return np.asarray([str(v) for v in values], dtype=object)


def key_names(arity: int) -> list[str]:
    """`key` for one component, `key0`, `key1`, ... for more."""
    return ["key"] if arity == 1 else [f"key{i}" for i in range(arity)]


# -- map payloads -> DataFrames --------------------------------------------------------

def map_frame(kind: str, payload: Any, arity: int) -> pd.DataFrame:
    """A `map`/`stats` payload as a DataFrame: key column(s) then value column(s)."""
    if not isinstance(payload, dict) or (kind == "stats" and _is_stats(payload)):
        return _rows([], [], [payload], kind)
    keys = list(payload)
    return _rows(keys, key_names(max(arity, 1)), [payload[k] for k in keys], kind)


def _is_stats(d: dict[str, Any]) -> bool:
    return set(d) == {"count", "average", "total"}


def _rows(keys: list[str], names: list[str], values: list[Any], kind: str) -> pd.DataFrame:
    cols = key_columns(keys, names) if names else {}
    if values and isinstance(values[0], dict):  # stats()
        for f in ("count", "average", "total"):
            cols[f] = typed([_num(v[f]) for v in values])
    else:
        cols["value"] = typed([_num(v) for v in values])
    df = pd.DataFrame(cols)
    df.attrs.update(key_columns=list(names), value_columns=[c for c in cols if c not in names])
    return df


def hist_frame(payload: Any, arity: int, log2: bool) -> pd.DataFrame:
    """A `hist` payload (bucket list, or key -> bucket list) as the kit's histogram frame:
    key column(s), `low`, `high`, `count`, `bucket` ("negative", "overflow" or "")."""
    if isinstance(payload, list):
        keys, lists, names = [""], [payload], []
    else:
        keys, lists, names = list(payload), list(payload.values()), key_names(max(arity, 1))
    parts = []
    for key, buckets in zip(keys, lists):
        part = buckets_frame(buckets, log2)
        if names:
            for name, col in key_columns([key] * len(part), names).items():
                part.insert(len(part.columns) - 4, name, col)
        parts.append(part)
    df = pd.concat(parts, ignore_index=True) if parts else buckets_frame([], log2)
    df.attrs.update(kind="log2" if log2 else "linear", key_columns=names,
                    value_columns=["count"])
    return df


NEG_INF = np.iinfo(np.int64).min
POS_INF = np.iinfo(np.int64).max


def buckets_frame(buckets: list[dict[str, Any]], log2: bool) -> pd.DataFrame:
    """One histogram's buckets. An open lower bucket ("negative": no `min`) gets low =
    int64 min; an open upper one ("overflow": no `max`) gets high = int64 max. Log2 bounds
    are recomputed from the bucket order (bpftrace 0.17 writes wrong bounds past 2**31).
    Bounds past int64 are clipped to it."""
    low, high, count, label = [], [], [], []
    for b in buckets:
        lo = _num(b["min"]) if "min" in b else NEG_INF
        hi = _num(b["max"]) if "max" in b else POS_INF
        low.append(min(max(int(lo), NEG_INF), POS_INF))
        high.append(min(max(int(hi), NEG_INF), POS_INF))
        count.append(int(_num(b["count"])))
        label.append("negative" if "min" not in b else "overflow" if "max" not in b else "")
    if log2:
        _fix_log2(low, high, label)
    return pd.DataFrame({"low": np.asarray(low, np.int64), "high": np.asarray(high, np.int64),
                         "count": np.asarray(count, np.uint64),
                         "bucket": np.asarray(label, dtype=object)})


def _fix_log2(low: list[int], high: list[int], label: list[str]) -> None:
    """Power-of-two buckets follow [0], [1], [2, 3], [4, 7], ...: each starts after the last."""
    prev_high: int | None = None
    for i, lab in enumerate(label):
        if lab:  # the open-ended buckets keep their one bound
            continue
        if prev_high is not None and prev_high >= 1 and low[i] != prev_high + 1:
            low[i] = prev_high + 1
            high[i] = 2 * low[i] - 1
        prev_high = high[i]
