"""Map key/value layouts: ctypes types -> numpy structured dtypes -> DataFrame columns.

bcc describes each map's key and value as ctypes types. numpy reads the kernel's bytes
through a dtype with the same offsets, and columns come out of it without a Python loop
over elements.
"""

from __future__ import annotations

import ctypes as ct
from typing import Any

import numpy as np

PAD_PREFIXES = ("__pad", "_pad")
SPLIT_ARRAY_MAX = 8  # numeric arrays up to this length become one column per element

_CODE_DTYPE = {"P": np.dtype(np.uint64), "z": np.dtype(np.uint64), "Z": np.dtype(np.uint64),
               "O": np.dtype(np.uint64)}


def is_padding(name: str) -> bool:
    return name.startswith(PAD_PREFIXES)


def dtype_of(ctype: Any) -> np.dtype:
    """The numpy dtype that reads a ctypes type's bytes in place."""
    if isinstance(ctype, type) and issubclass(ctype, (ct.Structure, ct.Union)):
        return _record_dtype(ctype)
    if isinstance(ctype, type) and issubclass(ctype, ct.Array):
        elem = ctype._type_
        if elem is ct.c_char:
            return np.dtype(f"S{ctype._length_}")
        return np.dtype((dtype_of(elem), (ctype._length_,)))
    code = getattr(ctype, "_type_", None)
    if isinstance(code, str):
        return _CODE_DTYPE.get(code) or np.dtype(code)
    raise TypeError(f"cannot read ctypes type {ctype!r} as numpy")


def _record_dtype(ctype: Any) -> np.dtype:
    names, formats, offsets = [], [], []
    for field in ctype._fields_:
        name, ftype = field[0], field[1]
        if len(field) > 2:  # bit field: not addressable as bytes
            continue
        names.append(name)
        formats.append(dtype_of(ftype))
        offsets.append(getattr(ctype, name).offset)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                     "itemsize": ct.sizeof(ctype)})


def padded(dtype: np.dtype, align: int = 8) -> np.dtype:
    """The dtype with its itemsize rounded up (per-CPU values are 8-byte aligned)."""
    size = -(-dtype.itemsize // align) * align
    if size == dtype.itemsize:
        return dtype
    fields = dict(dtype.fields or {})
    names = list(dtype.names or ())
    spec: dict[str, Any] = (
        {"names": ["v"], "formats": [dtype], "offsets": [0], "itemsize": size}
        if not names else
        {"names": names, "formats": [fields[n][0] for n in names],
         "offsets": [fields[n][1] for n in names], "itemsize": size})
    return np.dtype(spec)  # type: ignore[call-overload]


def unpad(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """View an array of `padded(dtype)` elements back as `dtype` values."""
    if arr.dtype == dtype:
        return arr
    if dtype.names is None:
        return arr["v"]
    return arr.view(dtype) if arr.dtype.itemsize == dtype.itemsize else arr


def field_names(dtype: np.dtype, prefix: str = "") -> list[str]:
    """Flat column names a dtype yields: nested fields as `a.b`, padding skipped."""
    return list(flatten(np.zeros(0, dtype), prefix or "").keys())


def flatten(arr: np.ndarray, name: str) -> dict[str, Any]:
    """Columns of a (possibly structured) array; scalars come out under `name`."""
    dtype = arr.dtype
    if dtype.names is not None:
        out: dict[str, Any] = {}
        for field in dtype.names:
            if is_padding(field):
                continue
            out.update(flatten(arr[field], f"{name}.{field}" if name else field))
        return out
    if dtype.kind == "S":
        return {name: decode_strings(arr)}
    if arr.ndim > 1:
        return _array_columns(arr, name)
    return {name: np.array(arr, copy=True, order="C")}  # never alias the reader's buffers


def _array_columns(arr: np.ndarray, name: str) -> dict[str, Any]:
    width = arr.shape[1]
    if width <= SPLIT_ARRAY_MAX:
        return {f"{name}[{i}]": np.array(arr[:, i], copy=True) for i in range(width)}
    column = np.empty(len(arr), dtype=object)
    column[:] = list(np.array(arr, copy=True))
    return {name: column}


def decode_strings(arr: np.ndarray) -> np.ndarray:
    """char[] columns -> str, cut at the first NUL (bytes after it are garbage)."""
    width = arr.dtype.itemsize
    if len(arr) == 0 or width == 0:
        return np.array([""] * len(arr), dtype=object)
    raw = np.ascontiguousarray(arr).view(np.uint8).reshape(len(arr), width).copy()
    nul = raw == 0
    first = np.where(nul.any(axis=1), nul.argmax(axis=1), width)
    raw[np.arange(width)[None, :] >= first[:, None]] = 0
    clean = raw.view(f"S{width}").ravel()
    try:
        return clean.astype("U").astype(object)
    except UnicodeDecodeError:
        return np.array([b.decode("utf-8", "replace") for b in clean], dtype=object)


def sum_cpus(values: np.ndarray) -> np.ndarray:
    """Sum per-CPU values (shape (n, cpus)) over CPUs, keeping integer widths."""
    dtype = values.dtype
    if dtype.names is None:
        return values.sum(axis=1, dtype=dtype) if dtype.kind in "iuf" else values[:, 0]
    out = np.zeros(values.shape[0], dtype=dtype)
    fields = dict(dtype.fields or {})
    for field in dtype.names:
        col = values[field]
        fdtype = fields[field][0]
        if fdtype.base.kind in "iuf" and fdtype.names is None:
            out[field] = col.sum(axis=1, dtype=fdtype.base)
        else:
            out[field] = col[:, 0]
    return out
