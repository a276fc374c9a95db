"""Checks a DataFrame's columns against a map field's type before anything is written.

The rules are update()'s: integers whole, finite and in the field's range, no missing values,
numbers for numbers, a char[N] string at most N bytes. Numeric columns are checked with numpy
(no loop over rows); only object columns go element by element, through update()'s own check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bpfnb.errors import KeyTypeError

SHOWN = 5  # bad rows named in the error


@dataclass
class BadRows:
    """Rows that do not fit the map: a mask over the frame and the first few reasons."""

    n: int
    mask: np.ndarray = field(init=False)
    examples: list[tuple[int, str, str]] = field(default_factory=list)  # (row, column, why)

    def __post_init__(self) -> None:
        self.mask = np.zeros(self.n, bool)

    def __bool__(self) -> bool:
        return bool(self.mask.any())

    def add(self, column: str, bad: np.ndarray, why: Callable[[int], str]) -> None:
        """Rows where `bad` is set are refused; why(row) says why."""
        rows = np.asarray(bad, bool).reshape(self.n, -1).any(axis=1)
        self.mask |= rows
        self.examples += [(int(i), column, why(int(i))) for i in np.flatnonzero(rows)[:SHOWN]]

    def merge(self, other: BadRows) -> BadRows:
        self.mask |= other.mask
        self.examples += other.examples
        return self

    def error(self, map_name: str, labels: Any = None) -> KeyTypeError:
        """The error naming the first bad rows (by the frame's index labels if given)."""
        shown = sorted(self.examples)[:SHOWN]
        lines = [f"  row {_label(labels, i)}, column {col!r}: {why}" for i, col, why in shown]
        count = int(self.mask.sum())
        return KeyTypeError(
            f"{count} of {self.n} rows do not fit map {map_name!r}; nothing was written. "
            f"Fix or drop these rows and write again:\n" + "\n".join(lines))


def _label(labels: Any, i: int) -> Any:
    return labels[i] if labels is not None else i


def column_values(col: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """A column's values as numpy, and where pandas' nullable dtypes hold NA (None: no NA)."""
    if isinstance(col, pd.Series):
        np_dtype = getattr(col.dtype, "numpy_dtype", None)
        if isinstance(col.dtype, pd.api.extensions.ExtensionDtype) and np_dtype is not None \
                and np_dtype.kind in "iufb":
            na = col.isna().to_numpy()
            return col.to_numpy(dtype=np_dtype, na_value=np_dtype.type(0)), na
        return col.to_numpy(), None
    return np.asarray(col), None


def check(values: np.ndarray, na: np.ndarray | None, dtype: np.dtype, column: str,
          bad: BadRows, scalar: Callable[[np.dtype, Any], Any]) -> np.ndarray | None:
    """`values` converted to `dtype` (None when some row is bad; those are added to `bad`).

    `scalar(dtype, obj)` is update()'s check of one element (used for object columns).
    """
    before = int(bad.mask.sum()), len(bad.examples)
    if na is not None and na.any():
        bad.add(column, na, lambda i: "missing value (NA)")
    given = values  # shown in messages as the user wrote it
    if values.dtype.kind == "O" and dtype.kind == "S":
        values = _text(values)
    kind = values.dtype.kind
    if kind == "O":
        out = _objects(values, dtype, column, bad, scalar)
    elif dtype.kind in "iu":
        out = _integers(values, dtype, column, bad)
    elif dtype.kind == "f":
        out = _floats(values, dtype, column, bad)
    elif dtype.kind == "S":
        out = _strings(values, given, dtype, column, bad)
    else:
        out = values
    if (int(bad.mask.sum()), len(bad.examples)) != before:
        return None
    return out


def shown(values: np.ndarray, i: int) -> str:
    """Row i of values as update() would show it (a Python value's repr)."""
    v = values[i]
    return repr(v.item() if isinstance(v, np.generic) else v)


def _integers(values: np.ndarray, dtype: np.dtype, column: str, bad: BadRows
              ) -> np.ndarray | None:
    info = np.iinfo(dtype)
    rng = f"outside {dtype} [{info.min}, {info.max}]"
    kind = values.dtype.kind
    if kind in "iu":
        have = np.iinfo(values.dtype)
        out_of = np.zeros(values.shape, bool)
        if info.min > have.min:
            out_of |= values < info.min
        if info.max < have.max:
            out_of |= values > info.max
        bad.add(column, out_of, lambda i: f"{shown(values, i)} is {rng}")
    elif kind == "f":
        with np.errstate(invalid="ignore"):
            finite = np.isfinite(values)
            bad.add(column, ~finite, lambda i: f"{shown(values, i)} is not an int ({dtype})")
            whole = finite & (values == np.floor(values))
            bad.add(column, finite & ~whole,
                    lambda i: f"{shown(values, i)} is not a whole number ({dtype})")
            out_of = whole & ((values < float(info.min)) | (values >= float(info.max) + 1))
            bad.add(column, out_of, lambda i: f"{shown(values, i)} is {rng}")
    else:
        bad.add(column, np.ones(values.shape, bool),
                lambda i: f"{shown(values, i)} is not an int ({dtype})")
        return None
    return values.astype(dtype) if not bad else None


def _floats(values: np.ndarray, dtype: np.dtype, column: str, bad: BadRows
            ) -> np.ndarray | None:
    if values.dtype.kind not in "iuf":
        bad.add(column, np.ones(values.shape, bool),
                lambda i: f"{shown(values, i)} is not a number")
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        out = values.astype(dtype)
        overflow = np.isinf(out) & np.isfinite(values)
    bad.add(column, overflow, lambda i: f"{shown(values, i)} is outside {dtype}'s range")
    return out if not overflow.any() else None


def _strings(values: np.ndarray, given: np.ndarray, dtype: np.dtype, column: str,
             bad: BadRows) -> np.ndarray | None:
    if values.dtype.kind == "U":
        values = _utf8(values)
    if values.dtype.kind != "S":
        bad.add(column, np.ones(values.shape, bool),
                lambda i: f"{shown(given, i)} is not a str")
        return None
    long = np.strings.str_len(values) > dtype.itemsize
    bad.add(column, long,
            lambda i: f"{shown(given, i)} is longer than char[{dtype.itemsize}]")
    return values.astype(dtype) if not long.any() else None


def _text(values: np.ndarray) -> np.ndarray:
    """An object column of only str (or only bytes) as a numpy string array (fast checks)."""
    inferred = pd.api.types.infer_dtype(values, skipna=False)
    if inferred == "string":
        return _utf8(values)
    if inferred == "bytes":
        return values.astype(np.bytes_)
    return values


def _utf8(values: np.ndarray) -> np.ndarray:
    """str values (object or numpy `U`) as UTF-8 bytes: numpy's fast cast where all ASCII."""
    try:
        return values.astype(np.bytes_)
    except UnicodeEncodeError:
        return np.array([str(v).encode() for v in values.ravel()], np.bytes_).reshape(
            values.shape)


def _objects(values: np.ndarray, dtype: np.dtype, column: str, bad: BadRows,
             scalar: Callable[[np.dtype, Any], Any]) -> np.ndarray | None:
    """Element by element with update()'s rules (object columns: str, Python ints, mixed)."""
    if values.ndim != 1:
        return values
    out = []
    why: dict[int, str] = {}
    for i, v in enumerate(values):
        try:
            out.append(scalar(dtype, v))
        except ValueError as e:
            why[i] = str(e)
            out.append(0)
    if why:
        mask = np.zeros(len(values), bool)
        mask[list(why)] = True
        bad.add(column, mask, why.__getitem__)
        return None
    return np.array(out, dtype=dtype) if len(out) else np.zeros(0, dtype)
