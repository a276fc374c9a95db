"""bpfnb.store.cellstore: values of recorded cells come back equal and of the same type (dtypes,
indexes, attrs, time zones), what cannot be stored is named, saves are atomic, corrupt files
say what to do, and NotRecorded placeholders explain themselves."""

from __future__ import annotations

import builtins
import collections
import datetime as dt
import io
import json
import os
import pathlib
import socket
import threading
import zipfile
import zoneinfo
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pytest

import bpfnb
from bpfnb import errors
from bpfnb.data.arrow import encode_frame
from bpfnb.data.arrow import pyarrow_module as _pa
from bpfnb.errors import ReplayError
from bpfnb.profiler import pprof
from bpfnb.profiler.stacks import Stacks
from bpfnb.store.cellstore import FORMAT, INDEX, CellStore, NotRecorded, RecordedCell, same

OUTPUTS = [{"output_type": "stream", "name": "stdout", "text": "hello\n"},
           {"output_type": "display_data", "data": {"text/plain": "x", "application/json":
                                                    {"a": [1, 2]}}, "metadata": {"k": 1}}]


def reopened(tmp_path: pathlib.Path, variables: dict[str, Any], key: str = "k"
             ) -> RecordedCell:
    """Put, save, open the file again and get the cell back."""
    store = CellStore(tmp_path / "cells.zip")
    store.put(key, OUTPUTS, variables)
    store.save()
    got = CellStore(tmp_path / "cells.zip").get(key)
    assert got is not None
    return got


def round_trip(tmp_path: pathlib.Path, value: Any) -> Any:
    got = reopened(tmp_path, {"v": value})
    assert got.skipped == {}, got.skipped
    back = got.variables["v"]
    assert type(back) is type(value)
    assert same(value, back)
    return back


# -- plain Python values ------------------------------------------------------------------------

PLAIN = {
    "none": None, "true": True, "false": False, "zero": 0, "small": -3, "big": 1 << 200,
    "huge": -(10 ** 5000), "float": 0.1, "nan": float("nan"), "inf": float("-inf"),
    "negzero": -0.0, "complex": 1 - 2j, "text": "é\n\udcff", "bytes": b"\x00\xff",
    "bytearray": bytearray(b"ab"), "list": [1, "a", None], "tuple": (1, (2, 3)),
    "empty_tuple": (), "set": {1, 2, "x"}, "frozenset": frozenset({(1, 2)}),
    "dict": {"k": [1, (2, 3), {4, 5}], 7: frozenset({1}), (1, "a"): None, None: b"x"},
    "nested": [{"a": ({"b": [1.5, float("nan")]},)}],
}


@pytest.mark.parametrize("name", PLAIN)
def test_plain_values_round_trip(tmp_path, name):
    back = round_trip(tmp_path, PLAIN[name])
    if name == "huge":
        assert back == -(10 ** 5000)
    if name == "negzero":
        assert str(back) == "-0.0"
    if name == "dict":
        assert list(back) == list(PLAIN["dict"])  # key order and key types kept
        assert type(back["k"][1]) is tuple and type(back["k"][2]) is set


def test_bool_and_int_keep_their_types(tmp_path):
    got = reopened(tmp_path, {"b": True, "i": 1, "l": [True, 1, 1.0]}).variables
    assert got["b"] is True and type(got["i"]) is int
    assert [type(x) for x in got["l"]] == [bool, int, float]


# -- numpy ------------------------------------------------------------------------------------

SCALARS = [np.uint8(7), np.int64(-1), np.uint64(2**64 - 1), np.float32(1.5), np.float64(2.5),
           np.float16(np.nan), np.complex64(1j), np.bool_(True), np.str_("x"), np.bytes_(b"y"),
           np.datetime64("2020-01-01T00:00:00.123", "ms"), np.timedelta64(5, "us"),
           np.zeros(1, dtype=[("a", "<u4"), ("b", "S4")])[0]]


@pytest.mark.parametrize("value", SCALARS, ids=lambda v: type(v).__name__)
def test_numpy_scalars_keep_their_dtype(tmp_path, value):
    back = round_trip(tmp_path, value)
    assert back.dtype == value.dtype
    assert np.asarray(back).tobytes() == np.asarray(value).tobytes()


ARRAYS = {
    "int16_2d": np.arange(6, dtype=np.int16).reshape(2, 3),
    "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    "big_endian": np.arange(3, dtype=">u4"),
    "structured": np.array([(1, b"ab", (1.5, 2.5))],
                           dtype=[("a", "<u4"), ("b", "S4"), ("c", "<f8", (2,))]),
    "unicode": np.array(["a", "bcd"]),
    "empty": np.zeros((0, 3), dtype=np.uint8),
    "datetime": np.array(["2020-01-01", "NaT"], dtype="datetime64[D]"),
}


@pytest.mark.parametrize("name", ARRAYS)
def test_numpy_arrays_round_trip(tmp_path, name):
    value = ARRAYS[name]
    back = round_trip(tmp_path, value)
    assert back.dtype == value.dtype and back.shape == value.shape
    np.testing.assert_array_equal(back, value)
    if name == "fortran":
        assert back.flags.f_contiguous


# -- pandas -----------------------------------------------------------------------------------

def map_frame() -> pd.DataFrame:
    """Like a map's df(): typed columns, an object column of arrays, attrs."""
    df = pd.DataFrame({"pid": np.array([1, 2], np.uint32), "comm": ["a", "b"],
                       "stack": pd.Series([np.arange(3, dtype=np.uint64), None], dtype=object),
                       "big": pd.Series([1 << 70, 2], dtype=object),
                       "value": np.array([1.5, np.nan])})
    df.attrs = {"map": "m", "entries": 2, "fill": 0.5, "lost": None,
                "key_columns": ["pid", "comm"], "pair": (1, 2), "n": np.int32(3)}
    return df


FRAMES = {
    "map": map_frame,
    "multiindex": lambda: pd.DataFrame(
        {"v": [1.5, 2.5]}, index=pd.MultiIndex.from_tuples([(1, "x"), (2, "y")],
                                                           names=["a", None])),
    "named_index": lambda: pd.DataFrame({"v": [1, 2]}, index=pd.Index([10, 20], name="k",
                                                                      dtype=np.uint16)),
    "object_index": lambda: pd.DataFrame({"v": [1, 2]}, index=pd.Index(["a", "b"],
                                                                       dtype=object)),
    "range_index": lambda: pd.DataFrame({"v": [1, 2, 3]},
                                        index=pd.RangeIndex(10, 16, 2, name="r")),
    "sliced": lambda: pd.DataFrame({"v": range(5)}).iloc[2:],
    "dates": lambda: pd.DataFrame({"v": [1, 2, 3]},
                                  index=pd.date_range("2026-01-01", periods=3, freq="D",
                                                      name="day")),
    "extension": lambda: pd.DataFrame({
        "i": pd.array([1, None], dtype="Int64"), "s": pd.array(["x", None], dtype="string"),
        "c": pd.Categorical(["a", "b"], categories=["b", "a", "z"], ordered=True),
        "tz": pd.to_datetime(["2026-01-01", "2026-01-02"]).tz_localize("Europe/Paris")}),
    "column_axis_name": lambda: pd.DataFrame({"x": [1]}).rename_axis(columns="field"),
    "empty": pd.DataFrame,
    "no_rows": lambda: pd.DataFrame({"a": pd.Series([], dtype="u2"), "b": []}),
    "strict_flags": lambda: pd.DataFrame({"x": [1]}).set_flags(allows_duplicate_labels=False),
}


@pytest.mark.parametrize("name", FRAMES)
def test_frames_round_trip(tmp_path, name):
    value = FRAMES[name]()
    back = round_trip(tmp_path, value)
    pd.testing.assert_frame_equal(back, value, check_exact=True, check_index_type=True,
                                  check_column_type=True, check_freq=True, check_flags=True)
    assert back.index.names == value.index.names
    assert back.attrs == value.attrs


def test_frame_details_are_exact(tmp_path):
    back = round_trip(tmp_path, map_frame())
    assert list(back.dtypes.astype(str)) == list(map_frame().dtypes.astype(str))
    assert back["stack"][0].dtype == np.uint64 and back["stack"][1] is None
    assert back["big"][0] == 1 << 70 and type(back["big"][1]) is int
    assert type(back.attrs["pair"]) is tuple and back.attrs["n"].dtype == np.int32
    back = round_trip(tmp_path, FRAMES["multiindex"]())
    assert isinstance(back.index, pd.MultiIndex) and back.index.names == ["a", None]
    back = round_trip(tmp_path, FRAMES["dates"]())
    assert back.index.freqstr == "D"


SERIES = {
    "named": lambda: pd.Series([1, 2], index=["x", "y"], name="s"),
    "unnamed_float32": lambda: pd.Series(np.array([1.5, 2.5], np.float32)),
    "tuple_name": lambda: pd.Series([1.0], name=("a", 1)),
    "objects": lambda: pd.Series(["a", 1, None], dtype=object, index=[3, 2, 1]),
    "attrs": lambda: pd.Series([1], name="n").pipe(lambda s: (s.attrs.update(a=1), s)[1]),
}


@pytest.mark.parametrize("name", SERIES)
def test_series_round_trip(tmp_path, name):
    value = SERIES[name]()
    back = round_trip(tmp_path, value)
    pd.testing.assert_series_equal(back, value, check_exact=True, check_index_type=True)
    assert back.name == value.name and back.attrs == value.attrs


TIMES = {
    "timestamp_utc": pd.Timestamp("2026-11-24 12:00", tz="UTC"),
    "timestamp_zone_ns": pd.Timestamp("2026-11-24 12:00:00.000000001", tz="Europe/Paris"),
    "timestamp_seconds": pd.Timestamp("2026-01-01").as_unit("s"),
    "timedelta": pd.Timedelta("1.5s"),
    "timedelta_ns": pd.Timedelta(1),
    "nat": pd.NaT,
    "datetime": dt.datetime(2026, 11, 24, 12, 0, 1, 5),
    "datetime_zone_fold": dt.datetime(2026, 10, 25, 2, 30, tzinfo=zoneinfo.ZoneInfo(
        "Europe/Paris"), fold=1),
    "datetime_offset": dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-3), "X")),
    "date": dt.date(2020, 1, 2),
    "time": dt.time(1, 2, 3, 4, tzinfo=dt.timezone.utc),
    "pytimedelta": dt.timedelta(days=-1, microseconds=3),
    "path": pathlib.Path("/tmp/x"),
    "pure_path": pathlib.PurePosixPath("a/b"),
}


@pytest.mark.parametrize("name", TIMES)
def test_times_and_paths_round_trip(tmp_path, name):
    value = TIMES[name]
    back = round_trip(tmp_path, value)
    if isinstance(value, (dt.datetime, dt.time)):
        assert repr(back.tzinfo) == repr(value.tzinfo) and back.fold == value.fold
    if isinstance(value, (pd.Timestamp, pd.Timedelta)):
        assert back.unit == value.unit
    assert str(back) == str(value)


def test_stacks_round_trip(tmp_path):
    value = Stacks(pd.DataFrame({"pid": [1, 2, 1], "comm": ["w", "v", "w"],
                                 "frames": [["main", "a"], ["x"], ["main", "b_[k]"]],
                                 "count": [3, 3, 1]}), name="profile")
    back = round_trip(tmp_path, value)
    assert back.name == "profile" and back.folded() == value.folded()
    pd.testing.assert_frame_equal(back.df(), value.df())
    pd.testing.assert_frame_equal(back.functions(), value.functions())
    assert repr(back) == repr(value)
    assert round_trip(tmp_path, Stacks(name="empty")).total == 0


def offcpu_like() -> Stacks:
    """Stacks as offcpu() makes them: weighted in microseconds, with what the collector knew
    and the modules the symbolizer read."""
    value = Stacks(pd.DataFrame({"pid": [7, 7], "comm": ["sleeper", "sleeper"],
                                 "frames": [["main", "nanosleep", "schedule"], ["main"]],
                                 "kernel_frames": [1, 0], "count": [300_123, 5]}),
                   name="offcpu sleeper", unit="us", hz=0)
    value.info.update(exit_status=0, cpu_time=0.0125, duration=0.31, interrupted=False,
                      command=["sleeper", "0.3"], pid=7)
    value.mappings = {"libc.so.6": ("/usr/lib/x86_64-linux-gnu/libc.so.6", "ab12"),
                      "sleeper": ("/tmp/sleeper", "")}
    return value


def test_stacks_keep_unit_rate_info_and_mappings(tmp_path):
    value = offcpu_like()
    value.hz = 99
    back = round_trip(tmp_path, value)
    assert (back.unit, back.hz, back.info, back.mappings) == (
        "us", 99, value.info, value.mappings)
    assert list(back.info) == list(value.info) and type(back.info["cpu_time"]) is float
    assert vars(back).keys() == vars(value).keys()
    assert repr(back) == repr(value) and "s off CPU" in repr(back)  # not "samples"
    profiles = [pprof.build(s) for s in (value, back)]
    for p in profiles:
        p.time_nanos = 0
    assert profiles[0] == profiles[1]   # unit, rate and build ids are in it


def test_stacks_with_an_attribute_the_store_does_not_know_are_not_stored(tmp_path):
    value = offcpu_like()
    value.note = "mine"  # type: ignore[attr-defined]
    assert CellStore(tmp_path / "c.zip").put("k", [], {"s": value}).skipped == {"s": "Stacks"}
    assert not same(value, offcpu_like()) and not same(offcpu_like(), value)
    other = offcpu_like()
    other.unit = "samples"
    assert not same(offcpu_like(), other)


# -- named tuples -------------------------------------------------------------------------------

Point = collections.namedtuple("Point", "x y")


class Sample(NamedTuple):
    pid: int
    comm: str
    when: pd.Timestamp
    at: Point = Point(0, 0)


def test_named_tuples_come_back_with_their_name_and_fields(tmp_path):
    values = {"p": Point(1, 2.5), "s": Sample(7, "w", pd.Timestamp(5, tz="UTC"), Point(3, 4)),
              "many": [Point(1, 2), Point(3, 4)], "keyed": {Point(1, 2): "a"},
              "set": {Point(1, 2), (3, 4)}, "row": next(pd.DataFrame(
                  {"a b": [1], "c": ["x"]}).itertuples())}  # fields renamed: _1
    got = reopened(tmp_path, values)
    assert got.skipped == {}
    for name, value in values.items():
        assert same(value, got.variables[name]), name
    p, s, many = got.variables["p"], got.variables["s"], got.variables["many"]
    assert type(p).__name__ == "Point" and p._fields == ("x", "y") and p == (1, 2.5)
    assert (p.x, p.y) == (1, 2.5) and p._asdict() == {"x": 1, "y": 2.5}
    assert type(s).__name__ == "Sample" and s._fields == Sample._fields
    assert s.when == values["s"].when and s.at.y == 4 and type(s.at) is type(p)
    assert type(many[0]) is type(many[1]) is type(p)  # one class per (name, fields)
    assert repr(s) == repr(values["s"]) and p._replace(x=9) == (9, 2.5)
    row = got.variables["row"]
    assert row._fields == ("Index", "_1", "c") and row == (0, 1, "x")
    assert {type(x).__name__ for x in got.variables["set"]} == {"Point", "tuple"}


def test_named_tuples_differ_from_plain_tuples_and_other_names():
    Other = collections.namedtuple("Other", "x y")
    Swapped = collections.namedtuple("Point", "y x")
    assert not same(Point(1, 2), (1, 2)) and not same((1, 2), Point(1, 2))
    assert not same(Point(1, 2), Other(1, 2)) and not same(Point(1, 2), Swapped(1, 2))
    assert not same(Point(1, 2), Point(1, 3)) and same(Point(1, [2]), Point(1, [2]))
    assert not same({Point(1, 2)}, {Other(1, 2)})


def test_a_named_tuple_with_attributes_or_live_objects_is_not_stored(tmp_path):
    class Tagged(Point):
        pass

    tagged = Tagged(1, 2)
    tagged.tag = "x"  # type: ignore[attr-defined]
    cell = CellStore(tmp_path / "c.zip").put("k", [], {"t": tagged, "live": Point(1, len),
                                                       "plain": Tagged(1, 2)})
    assert cell.skipped == {"t": "Tagged", "live": "Point"} and list(cell.variables) == ["plain"]


BAD_NAMES: dict[str, tuple[Any, Any]] = {
    "code": ("P", ["x", "y=__import__('os').system('id')"]), "keyword": ("class", ["x"]),
    "type_code": ("P(): pass\nimport os\n", ["x"]), "dunder": ("P", ["__class__"]),
    "underscore": ("P", ["_x"]), "twice": ("P", ["x", "x"]), "not_str": ("P", [1]),
    "not_list": ("P", "x y"), "empty": ("", ["x"]), "long": ("P" * 201, ["x"]),
    "too_many": ("P", [f"f{i}" for i in range(1001)]), "name_list": (["P"], ["x"]),
}


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_named_tuple_names_from_a_file_must_be_identifiers(tmp_path, bad):
    name, fields = BAD_NAMES[bad]
    items = [{"t": "int", "v": 1}] * (len(fields) if isinstance(fields, list) else 1)
    spec = {"t": "namedtuple", "name": name, "fields": fields, "items": items}
    write_zip(tmp_path / "cells.zip", {INDEX: index({"k": {
        "outputs": [], "variables": {"v": spec}, "skipped": {}}})})
    with pytest.raises(ReplayError, match=r"cannot read the recorded cells .*cell k: "):
        CellStore(tmp_path / "cells.zip").get("k")


def test_named_tuple_kinds_per_cell_are_limited(tmp_path):
    """Each kind costs a class: a crafted cell with thousands of kinds is refused."""
    from bpfnb.store.namedtuples import MAX_TYPES

    kinds = [{"t": "namedtuple", "name": f"P{i}", "fields": ["x"],
              "items": [{"t": "int", "v": i}]} for i in range(MAX_TYPES + 50)]
    write_zip(tmp_path / "cells.zip", {INDEX: index({
        "few": {"outputs": [], "skipped": {}, "variables": {
            "v": {"t": "list", "items": kinds[:MAX_TYPES] * 2}}},
        "many": {"outputs": [], "skipped": {}, "variables": {
            "v": {"t": "list", "items": kinds}}}})})
    store = CellStore(tmp_path / "cells.zip")
    few = store.get("few").variables["v"]  # type: ignore[union-attr]
    assert len(few) == 2 * MAX_TYPES and type(few[0]) is type(few[MAX_TYPES])
    with pytest.raises(ReplayError, match=f"more than {MAX_TYPES} kinds of named tuple"):
        store.get("many")


def test_old_stacks_specs_replay_as_samples(tmp_path):
    """Stores written before unit, hz, info and mappings were kept: those take defaults."""
    value = offcpu_like()
    store = CellStore(tmp_path / "cells.zip")
    store.put("k", [], {"s": value})
    store.save()
    with zipfile.ZipFile(tmp_path / "cells.zip") as zf:
        files = {n: zf.read(n) for n in zf.namelist()}
    cells = json.loads(files[INDEX])
    spec = cells["cells"]["k"]["variables"]["s"]
    for key in ("unit", "hz", "info", "mappings"):
        del spec[key]
    files[INDEX] = json.dumps(cells).encode()
    write_zip(tmp_path / "cells.zip", files)
    back = CellStore(tmp_path / "cells.zip").get("k").variables["s"]
    assert (back.unit, back.hz, back.info, back.mappings) == ("samples", 0, {}, {})
    assert back.folded() == value.folded()


# -- exceptions -------------------------------------------------------------------------------

EXCEPTIONS = {
    "map_full": bpfnb.MapFullError("map 'small' is full (max_entries=8)"),
    "details": errors.BpfnbError("failed\nmore", details="the log"),
    "verifier": errors.VerifierError("rejected", function="f", reason="r", log="L", line=3),
    "compile": errors.CompileError("bad C", details="out", diagnostics=[(1, 2, "x")]),
    "unknown_map": errors.UnknownMapError("no map 'x' (maps: a)"),
    "value": ValueError("bad"),
    "key": KeyError("k"),
    "no_args": RuntimeError(),
    "os": FileNotFoundError(2, "No such file", "/x"),
}
if "ExceptionGroup" in vars(builtins):  # Python 3.11+
    EXCEPTIONS["group"] = vars(builtins)["ExceptionGroup"]("g", [ValueError(1)])


@pytest.mark.parametrize("name", EXCEPTIONS)
def test_exceptions_keep_class_and_message(tmp_path, name):
    value = EXCEPTIONS[name]
    back = round_trip(tmp_path, value)
    assert type(back) is type(value) and str(back) == str(value)
    assert back.args == value.args or name == "group"
    if isinstance(value, errors.BpfnbError):
        assert back.details == value.details
    if name == "verifier":
        assert (back.function, back.reason, back.log, back.line) == ("f", "r", "L", 3)
    if name == "compile":
        assert back.diagnostics == [(1, 2, "x")]
    if name == "os":
        assert back.filename == "/x" and back.errno == 2


def test_exceptions_keep_every_attribute_or_are_not_stored(tmp_path):
    """An attribute or argument the store cannot hold would be lost: such an exception is
    named as not stored, not replayed without it."""
    noted = ValueError("bad")
    noted.add_note("while reading map 'm'")
    tagged = bpfnb.MapFullError("full")
    tagged.key = Point(1, 2)  # type: ignore[attr-defined]
    live = bpfnb.MapFullError("full")
    live.view = threading.Thread()  # type: ignore[attr-defined]
    sock = socket.socket()
    with sock:
        got = reopened(tmp_path, {"noted": noted, "tagged": tagged, "live": live,
                                  "arg": KeyError(sock)})
    assert got.skipped == {"live": "MapFullError", "arg": "KeyError"}
    assert got.variables["noted"].__notes__ == ["while reading map 'm'"]
    assert got.variables["tagged"].key == (1, 2) and type(got.variables["tagged"].key) \
        is not tuple


# -- what is not stored -----------------------------------------------------------------------

class MapView:  # a stand-in: a live object of the kit
    pass


class MyError(Exception):
    pass


def test_what_cannot_be_stored_is_named(tmp_path):
    import matplotlib.figure

    sock = socket.socket()
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with open(tmp_path / "f.txt", "w") as fh, sock:
        unstorable = {
            "sock": sock, "thread": threading.Thread(), "func": len, "lam": lambda: 1,
            "module": np, "cls": int, "gen": (i for i in ()), "file": fh,
            "fig": matplotlib.figure.Figure(), "view": MapView(), "mine": MyError("x"),
            "mixed": [1, 2, {"s": sock}], "objects": np.array([1, "a"], dtype=object),
            "int_columns": pd.DataFrame({1: [1]}), "dup": pd.DataFrame([[1, 2]],
                                                                        columns=["a", "a"]),
            "lossy": pd.DataFrame({"t": pd.Series([(1, 2)], dtype=object)}),
            "attrs": pd.DataFrame({"x": [1]}).pipe(lambda d: (d.attrs.update(s=sock), d)[1]),
            "ordered": collections.OrderedDict(a=1), "point": collections.namedtuple(
                "Point", "x")(sock), "cyclic": cyclic, "masked": np.ma.masked_array([1, 2]),
            "nan_set": {float("nan")}, "stacks_in_list": [Stacks(name=None)],
        }
        cell = CellStore(tmp_path / "cells.zip").put("k", [], {"n": 1, **unstorable})
    assert list(cell.variables) == ["n"]
    assert cell.skipped == {k: type(v).__name__ for k, v in unstorable.items()}
    assert cell.skipped["sock"] == "socket" and cell.skipped["mixed"] == "list"
    assert cell.skipped["func"] == "builtin_function_or_method"


def test_put_never_raises_for_a_value(tmp_path):
    class Hostile:
        def __eq__(self, other: object) -> bool:
            raise RuntimeError("no")

        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("no")

    class Frame(pd.DataFrame):
        pass

    store = CellStore(tmp_path / "cells.zip")
    cell = store.put("k", [], {"h": Hostile(), "hl": [Hostile()], "sub": Frame({"a": [1]}),
                               "ok": "yes"})
    assert cell.skipped == {"h": "Hostile", "hl": "list", "sub": "Frame"}
    store.save()
    assert CellStore(tmp_path / "cells.zip").get("k").variables == {"ok": "yes"}


def test_skipped_values_leave_no_files(tmp_path):
    sock = socket.socket()
    with sock:
        store = CellStore(tmp_path / "cells.zip")
        store.put("k", [], {"frames": [pd.DataFrame({"a": [1]}), np.arange(3), sock],
                            "kept": pd.DataFrame({"a": [1]})})
    store.save()
    with zipfile.ZipFile(tmp_path / "cells.zip") as zf:
        assert len([n for n in zf.namelist() if n != INDEX]) == 1


# -- the store --------------------------------------------------------------------------------

def test_missing_file_is_an_empty_store(tmp_path):
    store = CellStore(tmp_path / "sub" / "cells.zip")
    assert len(store) == 0 and store.keys() == [] and "k" not in store
    assert store.get("k") is None
    store.save()  # creates the directory
    assert len(CellStore(tmp_path / "sub" / "cells.zip")) == 0


def test_reopen_add_and_overwrite(tmp_path):
    path = tmp_path / "cells.zip"
    store = CellStore(path)
    store.put("a", OUTPUTS, {"df": map_frame(), "n": 1})
    store.save()
    store = CellStore(path)
    assert store.keys() == ["a"] and "a" in store and len(store) == 1
    store.put("b", [], {"arr": np.arange(4)})
    store.put("a", OUTPUTS, {"df": FRAMES["dates"](), "n": 2})  # re-recorded
    store.save()
    again = CellStore(path)
    assert again.keys() == ["a", "b"]
    a, b = again.get("a"), again.get("b")
    assert a is not None and b is not None
    assert a.outputs == OUTPUTS and a.variables["n"] == 2
    pd.testing.assert_frame_equal(a.variables["df"], FRAMES["dates"]())
    np.testing.assert_array_equal(b.variables["arr"], np.arange(4))
    with zipfile.ZipFile(path) as zf:  # the first frame of "a" is gone
        assert len([n for n in zf.namelist() if n.endswith(".parquet")]) == 1


def test_get_returns_fresh_copies(tmp_path):
    store = CellStore(tmp_path / "cells.zip")
    outputs = [dict(o) for o in OUTPUTS]
    store.put("k", outputs, {"l": [1]})
    outputs.clear()
    first = store.get("k")
    assert first is not None
    first.variables["l"].append(2)
    first.outputs.clear()
    second = store.get("k")
    assert second is not None and second.variables["l"] == [1] and second.outputs == OUTPUTS


def test_outputs_are_kept_as_json(tmp_path):
    outputs = [{"output_type": "display_data", "data": {"image/png": b"\x89PNG",
                                                        "text/plain": "<Figure>"},
                "metadata": {"image/png": {"width": np.int64(3)}}}]
    store = CellStore(tmp_path / "cells.zip")
    cell = store.put("fig", outputs, {})
    assert cell.outputs[0]["data"]["image/png"] == "iVBORw=="  # base64, as nbformat keeps it
    assert cell.outputs[0]["metadata"] == {"image/png": {"width": 3}}
    store.save()
    got = CellStore(tmp_path / "cells.zip").get("fig")
    assert got is not None and got.outputs == cell.outputs


def test_file_format(tmp_path):
    reopened(tmp_path, {"df": map_frame(), "arr": np.arange(3), "n": 5})
    with zipfile.ZipFile(tmp_path / "cells.zip") as zf:
        index = json.loads(zf.read(INDEX))
        names = zf.namelist()
        parquet = [n for n in names if n.endswith(".parquet")]
        table = _pa().parquet.read_table(io.BytesIO(zf.read(parquet[0])))
    assert index["format"] == FORMAT and index["version"] == 1
    assert index["cells"]["k"]["variables"]["n"] == {"t": "int", "v": 5}
    assert len(parquet) == 1 and any(n.endswith(".npy") for n in names)
    assert table.num_rows == 2
    assert table.schema.field("pid").type == _pa().uint32()


# -- atomic saves -----------------------------------------------------------------------------

def saved_store(path: pathlib.Path) -> tuple[CellStore, bytes]:
    store = CellStore(path)
    store.put("a", OUTPUTS, {"n": 1, "df": map_frame()})
    store.save()
    store.put("b", OUTPUTS, {"n": 2, "arr": np.arange(10)})
    return store, path.read_bytes()


def test_save_interrupted_at_the_rename_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "cells.zip"
    store, before = saved_store(path)

    def broken(*args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        store.save()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["cells.zip"]  # no temp file left


def test_save_interrupted_while_writing_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "cells.zip"
    store, before = saved_store(path)
    writestr = zipfile.ZipFile.writestr
    calls = []

    def broken(self: zipfile.ZipFile, name: Any, data: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        writestr(self, name, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", broken)
    with pytest.raises(KeyboardInterrupt):
        store.save()
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["cells.zip"]
    assert CellStore(path).keys() == ["a"]
    store.save()  # and the next save works
    assert CellStore(path).keys() == ["a", "b"]


# -- corrupt files ----------------------------------------------------------------------------

def write_zip(path: pathlib.Path, members: dict[str, str | bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def index(cells: Any, **extra: Any) -> str:
    return json.dumps({"format": FORMAT, "version": 1, "cells": cells, **extra})


CORRUPT: dict[str, Any] = {
    "not_a_zip": b"not a zip",
    "empty_file": b"",
    "no_index": {"other.json": "{}"},
    "bad_json": {INDEX: "{"},
    "other_format": {INDEX: json.dumps({"format": "bpfnb-recording", "version": 1})},
    "newer_version": {INDEX: index({}, version=99)},
    "malformed_cells": {INDEX: index({"k": {"outputs": "x"}})},
    "cells_not_a_dict": {INDEX: index([1, 2])},
}


@pytest.mark.parametrize("name", CORRUPT)
def test_corrupt_file_says_what_to_do(tmp_path, name):
    path = tmp_path / "cells.zip"
    content = CORRUPT[name]
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        write_zip(path, content)
    with pytest.raises(ReplayError, match=r"cannot read the recorded cells .*cells\.zip.*"
                                          r"record the notebook again .*\(make recordings\)"):
        CellStore(path)


def test_truncated_file(tmp_path):
    path = tmp_path / "cells.zip"
    reopened(tmp_path, {"df": map_frame()})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ReplayError, match="make recordings"):
        CellStore(path)


def test_damaged_compressed_index(tmp_path):
    path = tmp_path / "cells.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(INDEX, index({f"k{i}": {"outputs": [], "variables": {}, "skipped": {}}
                                  for i in range(200)}))
    data = bytearray(path.read_bytes())
    data[60:90] = b"\xff" * 30  # inside the deflated stream
    path.write_bytes(bytes(data))
    with pytest.raises(ReplayError, match="make recordings"):
        CellStore(path)


def test_damaged_cell_is_a_replay_error_on_get(tmp_path):
    path = tmp_path / "cells.zip"
    reopened(tmp_path, {"df": map_frame()})
    with zipfile.ZipFile(path) as zf:
        text = zf.read(INDEX)
        parquet = next(n for n in zf.namelist() if n.endswith(".parquet"))
    write_zip(path, {INDEX: text, parquet: b"garbage"})
    store = CellStore(path)
    assert "k" in store
    with pytest.raises(ReplayError, match=r"cell k: .*make recordings"):
        store.get("k")
    write_zip(path, {INDEX: index({"k": {"outputs": [], "skipped": {},
                                         "variables": {"v": {"t": "from-the-future"}}}})})
    with pytest.raises(ReplayError, match="newer bpfnb"):
        CellStore(path).get("k")


def test_a_directory_is_not_a_store(tmp_path):
    (tmp_path / "cells.zip").mkdir()
    with pytest.raises(ReplayError, match="make recordings"):
        CellStore(tmp_path / "cells.zip")


def test_reads_the_first_layout(tmp_path):
    """Stores written before exact round trips: plain JSON attrs, index as [levels, names],
    times as text, exceptions by message."""
    df = pd.DataFrame({"v": [1.5, 2.5]}, index=pd.Index([1, 2], name="k"))
    df.attrs = {"map": "m"}
    table, columns = encode_frame(df.reset_index())
    buf = io.BytesIO()
    _pa().parquet.write_table(table, buf)
    variables = {
        "n": {"t": "int", "v": "39"},
        "df": {"t": "frame", "file": "k/0.parquet", "columns": columns,
               "index": [["k"], ["k"]], "attrs": {"map": "m"}, "n": 2},
        "when": {"t": "timestamp", "v": "2026-11-24T12:00:00+00:00"},
        "span": {"t": "timedelta", "v": 1_500_000_000},
        "at": {"t": "datetime", "v": "2026-11-24T12:00:01"},
        "path": {"t": "path", "v": "/tmp/x"},
        "error": {"t": "exception", "module": "bpfnb.errors", "class": "MapFullError",
                  "message": "full", "details": "d"},
    }
    write_zip(tmp_path / "cells.zip", {
        INDEX: index({"k": {"outputs": OUTPUTS, "variables": variables, "skipped": {}}}),
        "k/0.parquet": buf.getvalue()})
    store = CellStore(tmp_path / "cells.zip")
    got = store.get("k")
    assert got is not None
    v = got.variables
    assert v["n"] == 39
    pd.testing.assert_frame_equal(v["df"], df)
    assert v["df"].attrs == {"map": "m"}
    assert v["when"] == pd.Timestamp("2026-11-24 12:00", tz="UTC")
    assert v["span"] == pd.Timedelta("1.5s") and v["at"] == dt.datetime(2026, 11, 24, 12, 0, 1)
    assert v["path"] == pathlib.Path("/tmp/x")
    assert type(v["error"]) is errors.MapFullError and str(v["error"]) == "full"
    assert v["error"].details == "d"
    store.put("k", OUTPUTS, v)  # re-recorded: the old file goes
    store.save()
    with zipfile.ZipFile(tmp_path / "cells.zip") as zf:
        assert "k/0.parquet" not in zf.namelist()


# -- placeholders -----------------------------------------------------------------------------

MESSAGE = (r"^`sink` \(a socket\) was made by a recorded cell when the notebook ran live and "
           r"cannot be replayed; run the notebook where BPF loads to use it$")

USES = {
    "attribute": lambda p: p.close, "method": lambda p: p.sendto(b"x", ("h", 1)),
    "private": lambda p: p._sock, "call": lambda p: p(), "iter": lambda p: list(p),
    "next_for": lambda p: [x for x in p], "item": lambda p: p[0],
    "set_item": lambda p: p.__setitem__(0, 1), "len": len, "bool": bool,
    "if": lambda p: 1 if p else 0, "in": lambda p: 1 in p, "with": lambda p: p.__enter__(),
    "set_attr": lambda p: setattr(p, "x", 1), "add": lambda p: p + 1, "radd": lambda p: 1 + p,
    "compare": lambda p: p < 1, "int": int, "float": float, "neg": lambda p: -p,
}


@pytest.mark.parametrize("use", USES)
def test_placeholder_refuses_every_use(use):
    with pytest.raises(ReplayError, match=MESSAGE):
        USES[use](NotRecorded("sink", "socket"))


def test_placeholder_with_statement():
    with pytest.raises(ReplayError, match="was made by a recorded cell"), \
            NotRecorded("sink", "socket"):
        pass  # pragma: no cover


def test_placeholder_repr_and_display_probes():
    p = NotRecorded("link", "Attachment")
    assert repr(p) == str(p) == f"{p}"
    assert "`link` (an Attachment)" in repr(p) and "not replayable" in repr(p)
    for probe in ("_repr_html_", "_ipython_display_", "_repr_mimebundle_", "__array__",
                  "_ipython_canary_method_should_not_exist_", "__wrapped__"):
        assert not hasattr(p, probe), probe
    assert p.__class__ is NotRecorded and isinstance(p, NotRecorded)
    assert p == p and p != NotRecorded("link", "Attachment") and hash(p) == hash(p)
    assert {p: 1}[p] == 1
    blank = NotRecorded.__new__(NotRecorded)  # as copy/pickle make one: no recursion
    assert not hasattr(blank, "_name")


def test_placeholder_in_ipython_display():
    formatters = pytest.importorskip("IPython.core.formatters")
    data, _ = formatters.DisplayFormatter().format(NotRecorded("sink", "socket"))
    assert data == {"text/plain": repr(NotRecorded("sink", "socket"))}


# -- recording one cell keeps the others -----------------------------------------------------------

def test_recording_one_cell_keeps_the_other_cells(tmp_path, monkeypatch):
    """BPFNB_RECORD=1 and one %%recorded cell run: the store had 7 cells, it has 7 after
    (the one run replaced), not just that one."""
    from bpfnb.jupyter.session import Mode, NotebookSession

    store = CellStore(tmp_path / "cells.zip")
    for i in range(7):
        store.put(f"k{i}", [], {"x": i, "df": pd.DataFrame({"a": [i]})})
    store.save()
    monkeypatch.setenv("BPFNB_RECORD", "1")
    monkeypatch.setattr("bpfnb.jupyter.session.replay_reason", lambda: None)  # BPF loads: record
    session = NotebookSession()
    try:
        assert session.use(tmp_path) is Mode.RECORD
        session.cells.put("k3", [], {"x": 33})
        session.cells.save()
    finally:
        session.close()
    got = CellStore(tmp_path / "cells.zip")
    assert got.keys() == [f"k{i}" for i in range(7)]
    assert got.get("k3").variables == {"x": 33}
    assert got.get("k5").variables["x"] == 5
    pd.testing.assert_frame_equal(got.get("k6").variables["df"], pd.DataFrame({"a": [6]}))
