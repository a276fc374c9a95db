"""The store of %%recorded cells: values come back equal and of the same type, what cannot
be stored is named, saves are atomic, and placeholders explain themselves."""

from __future__ import annotations

import collections
import datetime as dt
import socket
import threading
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bpfnb
from bpfnb.profiler.stacks import Stacks
from bpfnb.store.cellstore import CellStore, NotRecorded

OUTPUTS = [{"output_type": "stream", "name": "stdout", "text": "hello\n"},
           {"output_type": "display_data", "data": {"text/plain": "x"}, "metadata": {}}]


Point = collections.namedtuple("Point", "x y")


def values() -> dict[str, object]:
    offcpu = Stacks(pd.DataFrame({"pid": [1], "comm": ["w"], "frames": [["main", "read"]],
                                  "count": [250_000]}), name="off", unit="us", hz=0)
    offcpu.info.update(exit_status=0, cpu_time=0.25)
    offcpu.mappings = {"w": ("/tmp/w", "ab")}
    df = pd.DataFrame({"pid": np.array([1, 2], np.uint32), "comm": ["a", "b"],
                       "frames": pd.Series([np.arange(3, dtype=np.uint64), None], dtype=object)})
    df.attrs = {"map": "m", "entries": 2}
    indexed = pd.DataFrame({"v": [1.5, 2.5]},
                           index=pd.MultiIndex.from_tuples([(1, "x"), (2, "y")],
                                                           names=["a", "b"]))
    return {
        "none": None, "flag": True, "big": 1 << 70, "neg": -3, "nan": float("nan"),
        "text": "é", "raw": b"\x00\xff", "nested": {"k": [1, (2, 3), {4, 5}], 7: frozenset({1})},
        "u8": np.uint8(7), "arr": np.arange(6, dtype=np.int16).reshape(2, 3),
        "rec": np.zeros(2, dtype=[("a", "<u4"), ("b", "S4")]), "df": df, "indexed": indexed,
        "series": pd.Series([1, 2], index=["x", "y"], name="s"),
        "when": pd.Timestamp("2026-11-24 12:00", tz="UTC"), "span": pd.Timedelta("1.5s"),
        "at": dt.datetime(2026, 11, 24, 12, 0, 1), "path": Path("/tmp/x"),
        "error": bpfnb.MapFullError("map 'small' is full (max_entries=8)"),
        "builtin": ValueError("bad"),
        "stacks": Stacks(pd.DataFrame({"pid": [1], "comm": ["w"], "frames": [["main", "a"]],
                                       "count": [3]}), name="p"),
        "offcpu": offcpu,
        "point": Point(1, (2, "x")),
    }


def same(a: object, b: object) -> bool:
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b)
        return a.attrs == b.attrs
    if isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b)
        return True
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, BaseException):
        return type(a) is type(b) and str(a) == str(b)
    if isinstance(a, Stacks):
        return (a.name, a.unit, a.hz, a.info, a.mappings, a.folded()) == \
            (b.name, b.unit, b.hz, b.info, b.mappings, b.folded())
    if hasattr(type(a), "_fields"):
        return (type(a).__name__, a._fields, a) == (type(b).__name__, b._fields, b)
    if isinstance(a, float) and a != a:
        return b != b
    return type(a) is type(b) and a == b


def test_values_round_trip_exactly(tmp_path):
    store = CellStore(tmp_path / "cells.zip")
    store.put("k1", OUTPUTS, values())
    store.save()
    got = CellStore(tmp_path / "cells.zip").get("k1")
    assert got is not None and got.outputs == OUTPUTS and not got.skipped
    for name, value in values().items():
        assert same(value, got.variables[name]), name
    assert got.variables["u8"].dtype == np.uint8


def test_what_cannot_be_stored_is_named(tmp_path):
    sock = socket.socket()
    try:
        store = CellStore(tmp_path / "cells.zip")
        cell = store.put("k", [], {"sock": sock, "thread": threading.Thread(), "n": 1,
                                   "mixed": [1, sock], "f": len})
        assert cell.skipped == {"sock": "socket", "thread": "Thread", "mixed": "list",
                                "f": "builtin_function_or_method"}
        assert list(cell.variables) == ["n"]
    finally:
        sock.close()


def test_placeholder_says_why():
    p = NotRecorded("sink", "socket")
    assert "sink" in repr(p)
    for use in (lambda: p.close(), lambda: p(), lambda: len(p), lambda: p[0], lambda: bool(p)):
        with pytest.raises(bpfnb.ReplayError, match="`sink` \\(a socket\\) was made by a "
                                                    "recorded cell"):
            use()
    assert not hasattr(p, "_repr_html_")  # display falls back to the repr


def test_corrupt_file_says_what_to_do(tmp_path):
    path = tmp_path / "cells.zip"
    path.write_bytes(b"not a zip")
    with pytest.raises(bpfnb.ReplayError, match="make recordings"):
        CellStore(path)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("other.json", "{}")
    with pytest.raises(bpfnb.ReplayError, match="cannot read the recorded cells"):
        CellStore(path)
