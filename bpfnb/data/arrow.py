"""The Arrow codec: a DataFrame as an Arrow table plus column specs, and back, exactly.

A column is stored as Arrow data plus a spec {name, dtype, codec[, elem, container]} that
says how to rebuild the pandas column. Used by recordings, the cell store and Stacks files.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from bpfnb.errors import BpfnbError


def pyarrow_module() -> Any:
    """The pyarrow module (with parquet), or an ImportError that says how to install it."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("recordings need pyarrow: pip install pyarrow") from e
    return pyarrow


# -- column codecs ----------------------------------------------------------------------------
# A column is stored as Arrow data plus a spec {name, dtype, codec[, elem, container]} that
# says how to rebuild the pandas column exactly. Codecs of object columns depend on their
# values; "null" (no non-null value) fits any other codec.

def _all(values: list[Any], kind: type | tuple[type, ...]) -> bool:
    return all(isinstance(v, kind) for v in values)


def _object_codec(values: list[Any]) -> dict[str, Any]:
    """How to store an object column, from its non-null values."""
    if not values:
        return {"codec": "null"}
    if _all(values, np.ndarray) and all(v.ndim == 1 for v in values):
        dts = {v.dtype for v in values}
        if len(dts) == 1 and next(iter(dts)).kind in "iufb":
            return {"codec": "ndarray", "elem": next(iter(dts)).str}
    if _all(values, (list, tuple)) and all(_all(list(v), str) for v in values):
        kinds = {type(v).__name__ for v in values}
        if len(kinds) == 1:
            return {"codec": "strlist", "container": kinds.pop()}
    if _all(values, str):
        return {"codec": "str"}
    if _all(values, bytes):
        return {"codec": "bytes"}
    if _all(values, bool):
        return {"codec": "bool"}
    if _all(values, int):
        if all(-(1 << 63) <= v < (1 << 63) for v in values):
            return {"codec": "int"}
        if all(0 <= v < (1 << 64) for v in values):
            return {"codec": "uint"}
        return {"codec": "bigint"}
    if _all(values, float):
        return {"codec": "float"}
    try:
        text = [json.dumps(v, allow_nan=True) for v in values]
        if all(json.loads(t) == v for t, v in zip(text, values)):
            return {"codec": "json"}
    except (TypeError, ValueError):
        pass
    return {"codec": "repr"}  # lossy: values come back as their repr() strings


def _arrow_type(spec: dict[str, Any]) -> Any:
    pa = pyarrow_module()
    return {
        "ndarray": lambda: pa.list_(pa.from_numpy_dtype(np.dtype(spec.get("elem", "u8")))),
        "strlist": lambda: pa.list_(pa.string()), "str": pa.string, "bytes": pa.binary,
        "bool": pa.bool_, "int": pa.int64, "uint": pa.uint64, "bigint": pa.string,
        "float": pa.float64, "json": pa.string, "repr": pa.string, "null": pa.null,
    }[spec["codec"]]()


def _encode_object(col: pd.Series, spec: dict[str, Any]) -> Any:
    pa = pyarrow_module()
    raw = col.tolist()
    mask = np.array([v is None for v in raw], dtype=bool)
    codec = spec["codec"]
    if codec == "null":
        return pa.nulls(len(raw))
    if codec == "ndarray":
        elem = np.dtype(spec["elem"])
        parts = [np.asarray(v, dtype=elem) if v is not None else np.zeros(0, elem) for v in raw]
        lengths = np.array([len(p) for p in parts], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        flat = np.concatenate(parts) if parts else np.zeros(0, elem)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat),
                                        mask=pa.array(mask) if mask.any() else None)
    if codec == "strlist":
        return pa.array([list(v) if v is not None else None for v in raw],
                        type=pa.list_(pa.string()))
    if codec == "bigint":
        return pa.array([str(v) if v is not None else None for v in raw], type=pa.string())
    if codec == "json":
        return pa.array([json.dumps(v) if v is not None else None for v in raw],
                        type=pa.string())
    if codec == "repr":
        return pa.array([repr(v) if v is not None else None for v in raw], type=pa.string())
    return pa.array(raw, type=_arrow_type(spec))


def _column_spec(name: str, col: pd.Series) -> dict[str, Any]:
    dtype = col.dtype
    spec: dict[str, Any] = {"name": name, "dtype": str(dtype)}
    if isinstance(dtype, np.dtype) and dtype.kind != "O":
        spec["codec"] = "numpy"
        spec["dtype"] = dtype.str
    elif isinstance(dtype, np.dtype):
        spec.update(_object_codec([v for v in col.tolist() if v is not None]))
    else:
        spec["codec"] = "pandas"  # extension dtypes (str, category, nullable ints)
    return spec


def _encode_column(col: pd.Series, spec: dict[str, Any]) -> Any:
    pa = pyarrow_module()
    if spec["codec"] == "numpy":
        return pa.array(np.ascontiguousarray(col.to_numpy()))
    if spec["codec"] == "pandas":
        return pa.Array.from_pandas(col)
    return _encode_object(col, spec)


def merge_specs(old: list[dict[str, Any]], new: list[dict[str, Any]]
                 ) -> list[dict[str, Any]] | None:
    """One schema for both, where "null" columns take the other's codec; None if none."""
    if [s["name"] for s in old] != [s["name"] for s in new]:
        return None
    out = []
    for a, b in zip(old, new):
        if a["dtype"] != b["dtype"]:
            return None
        if a == b or b.get("codec") == "null":
            out.append(a)
        elif a.get("codec") == "null":
            out.append(b)
        else:
            return None
    return out


def encode_frame(df: pd.DataFrame, specs: list[dict[str, Any]] | None = None
                 ) -> tuple[Any, list[dict[str, Any]]]:
    """(Arrow table, column specs) of a DataFrame; with `specs`, encode to that schema."""
    pa = pyarrow_module()
    names = [str(c) for c in df.columns]
    if len(set(names)) != len(names):
        raise BpfnbError(f"cannot store a frame with duplicate columns {names}")
    if specs is None:
        specs = [_column_spec(n, df.iloc[:, i]) for i, n in enumerate(names)]
    arrays = []
    for i, spec in enumerate(specs):
        col = df.iloc[:, i]
        if spec["codec"] not in ("numpy", "pandas") and not any(v is not None for v in
                                                                col.tolist()):
            arrays.append(pa.nulls(len(col), type=_arrow_type(spec)))
        else:
            arrays.append(_encode_column(col, spec))
    return pa.Table.from_arrays(arrays, names=names), specs


def _decode_object(arr: Any, spec: dict[str, Any]) -> np.ndarray:
    codec = spec["codec"]
    n = len(arr)
    out = np.empty(n, dtype=object)
    if codec == "ndarray":
        arr = arr.combine_chunks() if hasattr(arr, "combine_chunks") else arr
        elem = np.dtype(spec["elem"])
        if n and arr.type != pyarrow_module().null():
            offsets = arr.offsets.to_numpy()
            flat = arr.flatten().to_numpy(zero_copy_only=False).astype(elem, copy=False)
            valid = arr.is_valid().to_numpy(zero_copy_only=False)
            base = offsets[0]
            for i in range(n):
                out[i] = flat[offsets[i] - base:offsets[i + 1] - base].copy() if valid[i] \
                    else None
        return out
    values = arr.to_pylist()
    if codec == "strlist" and spec.get("container") == "tuple":
        values = [tuple(v) if v is not None else None for v in values]
    elif codec == "bigint":
        values = [int(v) if v is not None else None for v in values]
    elif codec == "json":
        values = [json.loads(v) if v is not None else None for v in values]
    for i, v in enumerate(values):
        out[i] = v
    return out


def decode_table(table: Any, specs: list[dict[str, Any]]) -> pd.DataFrame:
    """The DataFrame `encode_frame` stored: same columns, dtypes and values."""
    cols: dict[str, Any] = {}
    for spec in specs:
        arr = table.column(spec["name"])
        codec = spec["codec"]
        if codec == "numpy":
            dtype = np.dtype(spec["dtype"])
            data = arr.to_numpy() if len(arr) else np.zeros(0, dtype)
            cols[spec["name"]] = np.asarray(data).astype(dtype, copy=False)
        elif codec == "pandas":
            cols[spec["name"]] = arr.to_pandas().astype(pd.api.types.pandas_dtype(spec["dtype"]))
        else:  # object arrays stay object (pandas 3 would infer str from strings)
            cols[spec["name"]] = pd.Series(_decode_object(arr, spec), dtype=object)
    index = pd.RangeIndex(table.num_rows)
    return pd.DataFrame({k: (v.set_axis(index) if isinstance(v, pd.Series) else v)
                         for k, v in cols.items()}, index=index)
