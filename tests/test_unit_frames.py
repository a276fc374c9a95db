"""Snapshot -> DataFrame builders (`bpfnb.data.frames`) and the column checks of update_df
(`bpfnb.data.colcheck`), on numpy arrays laid out like map reads: no kernel."""

from __future__ import annotations

import ctypes as ct

import numpy as np
import pandas as pd
import pytest

from bpfnb.data import colcheck, frames
from bpfnb.data.layout import dtype_of
from bpfnb.errors import KeyTypeError


class Key(ct.Structure):
    _fields_ = [("pid", ct.c_uint32), ("comm", ct.c_char * 8)]


class Value(ct.Structure):
    _fields_ = [("pid", ct.c_uint32), ("n", ct.c_uint64)]


def snapshot() -> tuple[np.ndarray, np.ndarray]:
    keys = np.zeros(2, dtype_of(Key))
    keys["pid"], keys["comm"] = [1, 2], [b"init", b"bash"]
    values = np.zeros(2, dtype_of(Value))
    values["pid"], values["n"] = [1, 2], [10, 20]
    return keys, values


def test_struct_frame_columns_and_attrs() -> None:
    df = frames.frame(*snapshot(), {"name": "m"})
    assert list(df.columns) == ["pid", "comm", "value.pid", "n"]   # a clash gets value.
    assert df["comm"].tolist() == ["init", "bash"] and df["n"].tolist() == [10, 20]
    assert df.attrs == {"name": "m", "key_columns": ["pid", "comm"],
                        "value_columns": ["value.pid", "n"], "enums": {}}


def test_per_cpu_values_summed_or_long() -> None:
    keys = np.array([7, 8], np.uint32)
    values = np.array([[1, 2, 3], [4, 5, 6]], np.uint64)
    assert frames.frame(keys, values, {})["value"].tolist() == [6, 15]
    long = frames.frame(keys, values, {}, per_cpu=True, cpus=[0, 2, 5])
    assert list(long.columns) == ["key", "cpu", "value"]
    assert long["cpu"].tolist() == [0, 2, 5, 0, 2, 5]
    assert long["key"].tolist() == [7, 7, 7, 8, 8, 8] and long["value"].tolist() == [1, 2, 3,
                                                                                    4, 5, 6]


def test_object_columns_stay_objects() -> None:
    keys = np.zeros(2, np.dtype("V4"))
    df = frames.frame(keys, np.array([1, 2], np.uint8), {})
    assert df["key"].dtype == object and df["key"].tolist() == [b"\0" * 4] * 2


@pytest.mark.parametrize(("slot", "low", "high"), [
    (0, 0, 0), (1, 0, 1), (2, 2, 3), (3, 4, 7), (10, 512, 1023),
    (64, 1 << 63, (1 << 64) - 1), (99, 1 << 63, (1 << 64) - 1),
])
def test_log2_bounds(slot: int, low: int, high: int) -> None:
    lo, hi = frames.log2_bounds(np.array([slot]))
    assert (int(lo[0]), int(hi[0])) == (low, high)


def test_log2_hist_frame_runs_from_slot_1_to_the_last_nonzero() -> None:
    df = pd.DataFrame({"key": [1, 2, 4, 9], "value": [3, 0, 5, 0]})
    out = frames.hist_frame(df)
    assert out[["low", "high", "count"]].values.tolist() == [[0, 1, 3], [2, 3, 0], [4, 7, 0],
                                                             [8, 15, 5]]
    assert out.attrs["kind"] == "log2"


def test_linear_hist_frame_with_sections() -> None:
    df = pd.DataFrame({"cpu": [0, 0, 1], "slot": [0, 2, 1], "value": [4, 1, 7]})
    df.attrs.update(key_columns=["cpu", "slot"], value_columns=["value"])
    out = frames.hist_frame(df, linear=10)
    assert out.values.tolist() == [[0, 0, 9, 4], [0, 10, 19, 0], [0, 20, 29, 1],
                                   [1, 0, 9, 0], [1, 10, 19, 7]]
    assert list(out.columns) == ["cpu", "low", "high", "count"]
    assert out.attrs["key_columns"] == ["cpu"] and out.attrs["step"] == 10


def test_hist_frame_needs_a_slot_column() -> None:
    df = pd.DataFrame({"pid": [1], "value": [1]})
    df.attrs.update(key_columns=["pid"], value_columns=["value"])
    with pytest.raises(ValueError, match="no slot column among the key fields"):
        frames.hist_frame(df)


# -- colcheck -----------------------------------------------------------------------------

def run_check(values: object, dtype: str) -> tuple[np.ndarray | None, colcheck.BadRows]:
    vals, na = colcheck.column_values(values)
    bad = colcheck.BadRows(len(vals))
    out = colcheck.check(vals, na, np.dtype(dtype), "c", bad,
                         lambda dt, v: np.asarray(v).astype(dt))
    return out, bad


@pytest.mark.parametrize(("values", "dtype", "rows"), [
    (np.array([1, 255, 256, -1]), "u1", [2, 3]),
    (np.array([1.0, 1.5, np.inf, np.nan]), "i4", [1, 2, 3]),
    (pd.Series([1, None, 3], dtype="Int64"), "u4", [1]),
    (np.array([b"ok", b"toolong"]), "S4", [1]),
    (np.array(["ok", "é" * 3]), "S4", [1]),                   # 6 bytes in UTF-8
    (np.array([1.0, 1e300]), "f4", [1]),
    (np.array([1, 2, 3]), "u2", []),
])
def test_bad_rows_found_without_a_loop(values: object, dtype: str, rows: list[int]) -> None:
    out, bad = run_check(values, dtype)
    assert np.flatnonzero(bad.mask).tolist() == rows
    assert (out is None) == bool(rows)


def test_bad_rows_error_names_rows_by_label() -> None:
    _, bad = run_check(np.array([300, 1, 400]), "u1")
    err = bad.error("counts", labels=["a", "b", "c"])
    assert isinstance(err, KeyTypeError)
    text = str(err)
    assert text.splitlines()[0] == ("2 of 3 rows do not fit map 'counts'; nothing was "
                                    "written. Fix or drop these rows and write again:")
    assert "row a, column 'c': 300" in text and "row c, column 'c': 400" in text
