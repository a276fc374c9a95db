"""The recorded cells of a notebook recording (`DIR/cells.zip`): outputs and variables.

>>> store = CellStore("recordings/10-map-helpers/cells.zip")
>>> store.put(key, outputs, {"pid": 1234, "fill": df}); store.save()

`cells.json` holds each cell's outputs (nbformat-like dicts) and a JSON spec per variable;
frames, series, stacks and arrays are files beside it (Parquet, .npy); a named tuple comes
back as a class of the same name and fields (bpfnb.store.namedtuples). A value is stored only
if it comes back equal and of the same type (checked when it is put); anything else (sockets,
threads, programs, plots, functions, a list holding one of those) is skipped whole: its name
and type are listed, and replay binds it to a `NotRecorded` placeholder that says why.
"""

from __future__ import annotations

import base64
import builtins
import collections
import collections.abc
import copy
import datetime as dt
import hashlib
import io
import json
import os
import pathlib
import shutil
import zipfile
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd

from bpfnb import errors
from bpfnb.data import safezip
from bpfnb.data.arrow import decode_table, encode_frame, pyarrow_module
from bpfnb.data.atomicfile import atomic_write
from bpfnb.errors import BpfnbError, ReplayError
from bpfnb.profiler.stacks import Stacks, restore_attributes
from bpfnb.store import namedtuples

FORMAT = "bpfnb-cells"
VERSION = 1
INDEX = "cells.json"
Spec = dict[str, Any]

_PATHS = {c.__name__: c for c in (pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePosixPath,
                                  pathlib.PureWindowsPath)}
_EXCEPTION_MODULES = {"builtins": builtins, errors.__name__: errors}
_SAFE_INT = 1 << 53  # ints beyond this are stored as text (JSON readers lose precision)


@dataclass
class RecordedCell:
    """One %%recorded cell as it ran live."""

    key: str
    outputs: list[dict[str, Any]]
    variables: dict[str, Any]
    skipped: dict[str, str] = field(default_factory=dict)  # name -> type name


class _Unstorable(Exception):
    """A value (or a part of it) the codec cannot store exactly."""


# -- time zones ---------------------------------------------------------------------------------

def _tz_spec(tz: dt.tzinfo | None) -> Spec | None:
    """A time zone as JSON: UTC, a fixed offset (with its name) or an IANA zone."""
    if tz is None:
        return None
    if tz is dt.timezone.utc:
        return {"utc": True}
    if type(tz) is dt.timezone:
        offset = tz.utcoffset(None) or dt.timedelta(0)
        name = tz.tzname(None)
        default = dt.timezone(offset).tzname(None)
        return {"offset_us": offset // dt.timedelta(microseconds=1),
                "name": None if name == default else name}
    if type(tz) is zoneinfo.ZoneInfo and tz.key:
        return {"zone": tz.key}
    raise _Unstorable(f"time zone {type(tz).__name__}")


def _tz(spec: Spec | None) -> dt.tzinfo | None:
    if spec is None:
        return None
    if spec.get("utc"):
        return dt.timezone.utc
    if "zone" in spec:
        return zoneinfo.ZoneInfo(spec["zone"])
    offset = dt.timedelta(microseconds=spec["offset_us"])
    return dt.timezone(offset, spec["name"]) if spec.get("name") else dt.timezone(offset)


# -- encoding -----------------------------------------------------------------------------------

class _Encoder:
    """Values to JSON specs; frames and arrays go to `files` (names not in `taken`)."""

    def __init__(self, prefix: str, taken: collections.abc.Mapping[str, bytes]) -> None:
        self.prefix = prefix
        self.taken = taken
        self.files: dict[str, bytes] = {}
        self.by_type: dict[type, Callable[[Any], Spec]] = {
            type(None): self._plain, bool: self._plain, str: self._plain, int: self._int,
            float: lambda v: {"t": "float", "v": repr(v)},
            complex: lambda v: {"t": "complex", "v": [repr(v.real), repr(v.imag)]},
            bytes: lambda v: {"t": "bytes", "v": _b64(v)},
            bytearray: lambda v: {"t": "bytearray", "v": _b64(v)},
            list: self._items, tuple: self._items, set: self._items, frozenset: self._items,
            dict: lambda v: {"t": "dict", "items": [[self.encode(k), self.encode(x)]
                                                     for k, x in v.items()]},
            np.ndarray: lambda v: {"t": "ndarray", "file": self._file(".npy", _npy(v))},
            pd.DataFrame: lambda v: {"t": "frame", **self._frame(v)},
            pd.Series: self._series, Stacks: self._stacks,
            pd.Timestamp: self._timestamp,
            pd.Timedelta: lambda v: {"t": "timedelta", "v": int(v.to_timedelta64().view("i8")),
                                     "unit": v.unit},
            type(pd.NaT): lambda v: {"t": "nat"},
            dt.datetime: lambda v: {"t": "datetime", **self._clock(v)},
            dt.time: lambda v: {"t": "time", **self._clock(v)},
            dt.date: lambda v: {"t": "date", "v": v.isoformat()},
            dt.timedelta: lambda v: {"t": "pytimedelta", "v": [v.days, v.seconds,
                                                               v.microseconds]},
            **{c: lambda v: {"t": "path", "class": type(v).__name__, "v": str(v)}
               for c in _PATHS.values()},
        }

    def encode(self, v: Any) -> Spec:
        """The spec of `v`; _Unstorable if it (or anything in it) cannot be stored exactly."""
        if isinstance(v, np.generic):
            return {"t": "npscalar", "npy": _b64(_npy(np.asarray(v)))}
        if isinstance(v, BaseException):
            return self._exception(v)
        if namedtuples.signature(v) is not None:
            return self._namedtuple(v)
        encode = self.by_type.get(type(v))
        if encode is None:
            raise _Unstorable(type(v).__name__)
        return encode(v)

    def _file(self, suffix: str, data: bytes) -> str:
        i = len(self.files)
        while f"{self.prefix}{i}{suffix}" in self.taken or f"{self.prefix}{i}{suffix}" in \
                self.files:
            i += 1
        name = f"{self.prefix}{i}{suffix}"
        self.files[name] = data
        return name

    @staticmethod
    def _plain(v: Any) -> Spec:
        return {"t": "plain", "v": v}

    @staticmethod
    def _int(v: int) -> Spec:
        return {"t": "int", "v": v if -_SAFE_INT < v < _SAFE_INT else hex(v)}

    def _items(self, v: Any) -> Spec:
        return {"t": type(v).__name__, "items": [self.encode(x) for x in v]}

    def _namedtuple(self, v: tuple[Any, ...]) -> Spec:
        if getattr(v, "__dict__", None):
            raise _Unstorable(f"{type(v).__name__} with attributes besides its fields")
        name, fields = cast(tuple[str, tuple[str, ...]], namedtuples.signature(v))
        return {"t": "namedtuple", "name": name, "fields": list(fields),
                "items": [self.encode(x) for x in v]}

    def _clock(self, v: dt.datetime | dt.time) -> Spec:
        return {"v": v.replace(tzinfo=None, fold=0).isoformat(), "fold": v.fold,
                "tz": _tz_spec(v.tzinfo)}

    def _timestamp(self, v: pd.Timestamp) -> Spec:
        return {"t": "timestamp", "v": int(v.to_datetime64().view("i8")), "unit": v.unit,
                "tz": _tz_spec(v.tzinfo)}

    def _series(self, v: pd.Series) -> Spec:
        frame = v.to_frame("__series__")
        frame.attrs = v.attrs
        return {"t": "series", "name": self.encode(v.name), **self._frame(frame)}

    def _stacks(self, v: Stacks) -> Spec:
        if not (isinstance(v.name, str) and isinstance(v.unit, str) and type(v.hz) is int):
            raise _Unstorable("Stacks with a name or unit that is not a str, or hz not an int")
        return {"t": "stacks", "name": v.name, "unit": v.unit, "hz": v.hz,
                "info": self.encode(v.info), "mappings": self.encode(v.mappings),
                **self._frame(v.rows())}

    def _exception(self, e: BaseException) -> Spec:
        cls = type(e)
        holder = _EXCEPTION_MODULES.get(cls.__module__)
        if holder is None or getattr(holder, cls.__name__, None) is not cls:
            raise _Unstorable(cls.__name__)
        return {"t": "exception", "module": cls.__module__, "class": cls.__name__,
                "message": str(e), "args": self._optional(_constructor_args(e)),
                "attrs": {k: s for k, v in vars(e).items()
                          if (s := self._optional(v)) is not None}}

    def _optional(self, v: Any) -> Spec | None:
        """The spec of `v`, or None (and no files) if it cannot be stored."""
        before = dict(self.files)
        try:
            return self.encode(v)
        except _Unstorable:
            self.files = before
            return None

    # -- frames -------------------------------------------------------------------------
    def _frame(self, df: pd.DataFrame) -> Spec:
        """A frame as one Parquet file (index levels as columns) and its spec."""
        if not all(isinstance(c, str) for c in df.columns):
            raise _Unstorable("DataFrame with column names that are not str")
        flat, index = self._flatten(df)
        try:
            table, columns = encode_frame(flat)
        except BpfnbError as e:
            raise _Unstorable(f"DataFrame ({e})") from None
        if any(c.get("codec") == "repr" for c in columns):
            raise _Unstorable("DataFrame with objects Parquet cannot hold")
        buf = io.BytesIO()
        pyarrow_module().parquet.write_table(table, buf, compression="zstd")
        return {"file": self._file(".parquet", buf.getvalue()), "columns": columns,
                "index": index, "n": len(df), "attrs_spec": self.encode(dict(df.attrs)),
                "columns_index": {"dtype": str(df.columns.dtype),
                                  "name": self.encode(df.columns.name),
                                  "range": type(df.columns) is pd.RangeIndex},
                "allows_duplicate_labels": df.flags.allows_duplicate_labels}

    def _flatten(self, df: pd.DataFrame) -> tuple[pd.DataFrame, Spec]:
        """The frame with its index as leading columns, and how to rebuild the index."""
        idx = df.index
        if type(idx) is pd.RangeIndex:
            return df.reset_index(drop=True), {"range": [idx.start, idx.stop, idx.step],
                                               "name": self.encode(idx.name)}
        levels = [f"__index_level_{i}__" for i in range(idx.nlevels)]
        if set(levels) & set(df.columns):
            raise _Unstorable("DataFrame with a column named like a stored index level")
        flat = df.reset_index(drop=True)
        for i, name in enumerate(levels):  # not reset_index(): it infers str from objects
            values = idx.get_level_values(i)
            flat.insert(i, name, pd.Series(values, index=flat.index, dtype=values.dtype))
        return flat, {"levels": levels, "names": self.encode(list(idx.names)),
                      "multi": isinstance(idx, pd.MultiIndex),
                      "freq": getattr(idx, "freqstr", None)}


def _b64(data: bytes | bytearray) -> str:
    return base64.b64encode(data).decode("ascii")


def _npy(arr: np.ndarray) -> bytes:
    if arr.dtype.hasobject:
        raise _Unstorable("ndarray of Python objects")
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _checked(v: Any, kind: type, what: str) -> Any:
    """`v` if it is exactly of type `kind` (no bool for int), else ReplayError naming it."""
    if type(v) is not kind:
        raise ReplayError(f"Stacks {what} is a {type(v).__name__}, not a {kind.__name__}")
    return v


def _constructor_args(e: BaseException) -> tuple[Any, ...]:
    """Arguments that make `e` again: its args, and an OSError's file names."""
    if isinstance(e, OSError) and e.filename is not None and len(e.args) == 2:
        extra = (e.filename, None, e.filename2) if e.filename2 is not None else (e.filename,)
        return (*e.args, *extra)
    return e.args


# -- decoding -----------------------------------------------------------------------------------

class _Decoder:
    """Specs (and the files they name) back to values."""

    def __init__(self, files: collections.abc.Mapping[str, bytes]) -> None:
        self.files = files
        self.named: set[type] = set()  # named tuple classes made so far
        self.by_tag: dict[str, Callable[[Spec], Any]] = {
            "plain": lambda s: s["v"],
            "int": lambda s: s["v"] if isinstance(s["v"], int) else int(s["v"], 0),
            "float": lambda s: float(s["v"]),
            "complex": lambda s: complex(float(s["v"][0]), float(s["v"][1])),
            "bytes": lambda s: base64.b64decode(s["v"]),
            "bytearray": lambda s: bytearray(base64.b64decode(s["v"])),
            "list": lambda s: [self.decode(x) for x in s["items"]],
            "tuple": lambda s: tuple(self.decode(x) for x in s["items"]),
            "set": lambda s: {self.decode(x) for x in s["items"]},
            "frozenset": lambda s: frozenset(self.decode(x) for x in s["items"]),
            "dict": lambda s: {self.decode(k): self.decode(x) for k, x in s["items"]},
            "namedtuple": self._namedtuple,
            "npscalar": lambda s: self._npy(s)[()], "ndarray": self._npy,
            "frame": self._frame, "series": self._series, "stacks": self._stacks,
            "timestamp": self._timestamp, "timedelta": self._timedelta,
            "nat": lambda s: pd.NaT, "datetime": self._datetime, "time": self._time,
            "date": lambda s: dt.date.fromisoformat(s["v"]),
            "pytimedelta": lambda s: dt.timedelta(*s["v"]),
            "path": lambda s: _PATHS.get(s.get("class", "PosixPath"), pathlib.Path)(s["v"]),
            "exception": self._exception,
        }

    def decode(self, s: Spec) -> Any:
        """The value `s` describes."""
        decode = self.by_tag.get(s["t"])
        if decode is None:
            raise ReplayError(f"unknown kind of value {s['t']!r} in the recorded cells "
                              "(recorded by a newer bpfnb?)")
        return decode(s)

    def _npy(self, s: Spec) -> Any:
        data = base64.b64decode(s["npy"]) if "npy" in s else self.files[s["file"]]
        return np.load(io.BytesIO(data), allow_pickle=False)

    def _timestamp(self, s: Spec) -> pd.Timestamp:
        if isinstance(s["v"], str):  # as the first cell stores wrote it
            return pd.Timestamp(s["v"])
        ts = pd.Timestamp(np.datetime64(s["v"], s["unit"]))
        tz = _tz(s.get("tz"))
        return ts if tz is None else ts.tz_localize("UTC").tz_convert(tz)

    @staticmethod
    def _timedelta(s: Spec) -> pd.Timedelta:
        return pd.Timedelta(np.timedelta64(s["v"], s.get("unit", "ns")))

    @staticmethod
    def _datetime(s: Spec) -> dt.datetime:
        v = dt.datetime.fromisoformat(s["v"])
        return v.replace(tzinfo=_tz(s["tz"]), fold=s["fold"]) if "tz" in s else v

    @staticmethod
    def _time(s: Spec) -> dt.time:
        return dt.time.fromisoformat(s["v"]).replace(tzinfo=_tz(s["tz"]), fold=s["fold"])

    def _series(self, s: Spec) -> pd.Series:
        df = self._frame(s)
        out = df.iloc[:, 0]
        out.name = self.decode(s["name"])
        out.attrs = df.attrs
        return out

    def _namedtuple(self, s: Spec) -> tuple[Any, ...]:
        cls = namedtuples.rebuild(s["name"], s["fields"])
        self.named.add(cls)
        if len(self.named) > namedtuples.MAX_TYPES:
            raise ReplayError(f"more than {namedtuples.MAX_TYPES} kinds of named tuple")
        items = s["items"]
        if not (isinstance(items, list) and len(items) == len(s["fields"])):
            raise ReplayError(f"named tuple {s['name']} has not one value per field")
        return cast(Any, cls)._make(self.decode(x) for x in items)

    def _stacks(self, s: Spec) -> Stacks:
        """Stacks with their name, unit, rate, info and mappings (the first stores kept
        the name only: the others default)."""
        out = Stacks(self._frame(s), name=_checked(s["name"], str, "name"))
        restore_attributes(out, s.get("unit", "samples"), s.get("hz", 0),
                           self.decode(s["info"]) if "info" in s else {},
                           self.decode(s["mappings"]) if "mappings" in s else {})
        return out

    def _exception(self, s: Spec) -> BaseException:
        holder = _EXCEPTION_MODULES.get(s["module"], errors)
        cls = getattr(holder, s["class"], None)
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise ReplayError(f"unknown exception class {s['module']}.{s['class']} in the "
                              "recorded cells")
        args = self.decode(s["args"]) if s.get("args") else (s["message"],)
        try:
            e = cls(*args)
        except Exception:  # a constructor with other parameters: the same args, no __init__
            e = cls.__new__(cls, *args)
        attrs = s.get("attrs")
        e.__dict__.update({k: self.decode(v) for k, v in attrs.items()} if attrs is not None
                          else {"details": s.get("details", "")} if isinstance(e, BpfnbError)
                          else {})
        return e

    # -- frames -------------------------------------------------------------------------
    def _frame(self, s: Spec) -> pd.DataFrame:
        df = decode_table(pyarrow_module().parquet.read_table(io.BytesIO(self.files[s["file"]])),
                          s["columns"])
        df = self._index(df, s.get("index"))
        if "columns_index" in s:
            spec = s["columns_index"]
            name = self.decode(spec["name"])
            df.columns = pd.RangeIndex(0, name=name) if spec.get("range") else \
                pd.Index(list(df.columns), dtype=spec["dtype"], name=name)
        df = df.set_flags(allows_duplicate_labels=s.get("allows_duplicate_labels", True))
        df.attrs = self.decode(s["attrs_spec"]) if "attrs_spec" in s else \
            dict(s.get("attrs") or {})
        return df

    def _index(self, df: pd.DataFrame, spec: Any) -> pd.DataFrame:
        if spec is None:
            return df
        if isinstance(spec, list):  # as the first cell stores wrote it: [levels, names]
            df = df.set_index(spec[0])
            df.index = df.index.set_names(spec[1])
            return df
        if "range" in spec:
            start, stop, step = spec["range"]
            return df.set_axis(pd.RangeIndex(start, stop, step, name=self.decode(spec["name"])),
                               axis=0)
        names = self.decode(spec["names"])
        arrays = [df.pop(c) for c in spec["levels"]]
        levels = [pd.Index(a, dtype=a.dtype) for a in arrays]  # objects stay objects
        idx = pd.MultiIndex.from_arrays(levels) if spec["multi"] else levels[0]
        idx = idx.set_names(names)
        if spec.get("freq"):
            idx = cast(Any, type(idx))(idx, freq=spec["freq"])  # Datetime/TimedeltaIndex
        return df.set_axis(idx, axis=0)


# -- sameness -----------------------------------------------------------------------------------

def same(a: Any, b: Any) -> bool:
    """Equal and of the same type, all the way down: dtypes, indexes, attrs, time zones
    (nan equals nan; exceptions: the same class, message, args and attributes)."""
    if a is b:  # singletons (NaT)
        return True
    sig = namedtuples.signature(a)
    if sig is not None or namedtuples.signature(b) is not None:  # rebuilt: another class
        return sig == namedtuples.signature(b) and all(map(same, a, b))
    if type(a) is not type(b):
        return False
    for kind, check in _SAME:
        if isinstance(a, kind):
            return check(a, b)
    try:
        return bool(a == b) and _traits(a) == _traits(b)
    except Exception:
        return False


def _same_array(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _same_set(a: Any, b: Any) -> bool:
    return a == b and collections.Counter(map(namedtuples.kind, a)) == \
        collections.Counter(map(namedtuples.kind, b))


def _same_objects(a: Any, b: Any) -> bool:
    """Object arrays (columns, index levels) element by element; others by pandas."""
    if a.dtype != object:
        return True
    return all(same(x, y) for x, y in zip(list(a), list(b)))


def _same_index(a: pd.Index, b: pd.Index) -> bool:
    return all(_same_objects(a.get_level_values(i), b.get_level_values(i))
               for i in range(a.nlevels))


def _same_frame(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    try:
        pd.testing.assert_frame_equal(a, b, check_exact=True, check_index_type=True,
                                      check_column_type=True, check_freq=True, check_flags=True)
    except (AssertionError, TypeError, ValueError):
        return False
    return (same(a.attrs, b.attrs) and same(a.columns.name, b.columns.name)
            and _same_index(a.index, b.index)
            and all(_same_objects(a.iloc[:, i], b.iloc[:, i]) for i in range(a.shape[1])))


def _same_series(a: pd.Series, b: pd.Series) -> bool:
    try:
        pd.testing.assert_series_equal(a, b, check_exact=True, check_index_type=True,
                                       check_freq=True, check_flags=True)
    except (AssertionError, TypeError, ValueError):
        return False
    return (same(a.name, b.name) and same(a.attrs, b.attrs) and _same_index(a.index, b.index)
            and _same_objects(a, b))


def _same_vars(a: Any, b: Any) -> bool:
    """The same instance attributes (in any order), each the same: for Stacks their rows,
    name, unit, hz, info and mappings, and any other one has (an attribute the codec does
    not know leaves such Stacks unstored)."""
    va, vb = vars(a), vars(b)
    return va.keys() == vb.keys() and all(same(va[k], vb[k]) for k in va)


def _traits(v: Any) -> Any:
    """What == leaves out: time zone, fold and unit of times."""
    if isinstance(v, (dt.datetime, dt.time)):
        return repr(v.tzinfo), v.fold, getattr(v, "unit", None)
    return getattr(v, "unit", None) if isinstance(v, pd.Timedelta) else None


_SAME: list[tuple[Any, Callable[[Any, Any], bool]]] = [
    ((np.ndarray, np.generic), _same_array),
    ((list, tuple), lambda a, b: len(a) == len(b) and all(map(same, a, b))),
    (dict, lambda a, b: same(list(a.items()), list(b.items()))),
    ((set, frozenset), _same_set),
    ((float, complex), lambda a, b: repr(a) == repr(b)),
    (pd.DataFrame, _same_frame),
    (pd.Series, _same_series),
    (BaseException, lambda a, b: str(a) == str(b) and same(a.args, b.args)
     and _same_vars(a, b)),
    (Stacks, _same_vars),
]


# -- the store ----------------------------------------------------------------------------------

def _corrupt(path: pathlib.Path, why: str) -> ReplayError:
    return ReplayError(f"cannot read the recorded cells {str(path)!r} ({why}); record the "
                       "notebook again where BPF loads (make recordings)")


def _json_default(v: Any) -> Any:
    """Outputs as JSON: binary data base64 (as nbformat keeps it), numpy scalars plain."""
    if isinstance(v, (bytes, bytearray)):
        return _b64(v)
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


def _spec_files(spec: Any) -> Iterator[str]:
    """The side files a spec names (for cells that do not list them)."""
    if isinstance(spec, dict):
        if isinstance(spec.get("file"), str):
            yield spec["file"]
        for k, v in spec.items():
            if k not in ("attrs", "v", "columns"):
                yield from _spec_files(v)
    elif isinstance(spec, list):
        for v in spec:
            yield from _spec_files(v)


class _Files(collections.abc.Mapping[str, bytes]):
    """The side files of a store: those put since the last save (in memory) over those in
    the file on disk, read one at a time when needed, through bpfnb.data.safezip's limits."""

    def __init__(self) -> None:
        self.new: dict[str, bytes] = {}
        self.zip: zipfile.ZipFile | None = None
        self.path: pathlib.Path | None = None
        self.old: set[str] = set()

    def __getitem__(self, name: str) -> bytes:
        if name in self.new:
            return self.new[name]
        if name in self.old and self.zip is not None:
            return safezip.read_entry(self.zip, name, self.path)
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return name in self.new or name in self.old

    def __iter__(self) -> Iterator[str]:
        return iter(set(self.new) | self.old)

    def __len__(self) -> int:
        return len(set(self.new) | self.old)

    def drop(self, name: str) -> None:
        self.new.pop(name, None)
        self.old.discard(name)

    def open(self, path: pathlib.Path) -> Any:
        """Read from the zip at `path` from now on; its index (cells.json) parsed."""
        self.close()
        zf = safezip.open_zip(path)
        try:
            index = safezip.read_json(zf, INDEX, path)
        except BaseException:
            zf.close()
            raise
        self.zip, self.path, self.new = zf, path, {}
        self.old = {n for n in zf.namelist() if n != INDEX}
        return index

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()
        self.zip, self.old = None, set()


class CellStore:
    """The recorded cells of one notebook recording: DIR/cells.zip."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open `path`; a missing file is an empty store, a corrupt one a ReplayError. Only
        the index is read here; a cell's frames and arrays when it is asked for."""
        self.path = pathlib.Path(path)
        self._files = _Files()
        self._cells: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            self._read()

    def _read(self) -> None:
        try:
            index = self._files.open(self.path)
        except ReplayError as e:
            raise _corrupt(self.path, str(e)) from None
        except OSError as e:
            raise _corrupt(self.path, str(e)) from None
        if not isinstance(index, dict) or index.get("format") != FORMAT:
            raise _corrupt(self.path, f"not a file of {FORMAT}")
        version = index.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version > VERSION:
            raise _corrupt(self.path, f"version {version!r} of {FORMAT}: made by a newer "
                                      "bpfnb?")
        cells = index.get("cells")
        if not (isinstance(cells, dict) and all(map(_well_formed, cells.values()))):
            raise _corrupt(self.path, "its index of cells is malformed")
        self._cells = cells

    def put(self, key: str, outputs: list[dict[str, Any]],
            variables: dict[str, Any]) -> RecordedCell:
        """Store a cell's outputs and the variables it bound; those that cannot be stored
        exactly are named in `skipped` (this never raises for a value)."""
        outputs = json.loads(json.dumps(list(outputs), default=_json_default, allow_nan=True))
        self._drop_files(key)
        prefix = f"{hashlib.sha1(key.encode()).hexdigest()[:16]}/"
        specs: dict[str, Spec] = {}
        skipped: dict[str, str] = {}
        files: list[str] = []
        for name, value in variables.items():
            stored = self._encode(prefix, value)
            if stored is None:
                skipped[name] = type(value).__name__
                continue
            specs[name], new = stored
            self._files.new.update(new)
            files += new
        self._cells[key] = {"outputs": outputs, "variables": specs, "skipped": skipped,
                            "files": files}
        return RecordedCell(key, copy.deepcopy(outputs), {k: variables[k] for k in specs},
                            dict(skipped))

    def _encode(self, prefix: str, value: Any) -> tuple[Spec, dict[str, bytes]] | None:
        """(spec, new files) of a value that comes back the same, else None."""
        try:
            encoder = _Encoder(prefix, self._files)
            spec = encoder.encode(value)
            json.dumps(spec, allow_nan=True)
            if same(value, _Decoder(collections.ChainMap(encoder.files, cast(Any, self._files)))
                    .decode(spec)):
                return spec, encoder.files
        except Exception:  # whatever fails, the value is skipped: put never raises
            pass
        return None

    def _drop_files(self, key: str) -> None:
        """Forget the files of a cell (about to be recorded again)."""
        cell = self._cells.get(key)
        if cell is None:
            return
        names = cell.get("files")
        for name in names if isinstance(names, list) else _spec_files(cell["variables"]):
            if isinstance(name, str):
                self._files.drop(name)

    def get(self, key: str) -> RecordedCell | None:
        """The cell recorded under `key` with fresh copies of its values (None if none)."""
        cell = self._cells.get(key)
        if cell is None:
            return None
        decoder = _Decoder(self._files)
        try:
            variables = {k: decoder.decode(s) for k, s in cell["variables"].items()}
            outputs = copy.deepcopy(cell["outputs"])
        except ReplayError as e:
            if str(self.path) in str(e):  # it names the file already (size limits)
                raise
            raise _corrupt(self.path, f"cell {key}: {e}") from None
        except Exception as e:  # a damaged part of the file
            raise _corrupt(self.path, f"cell {key}: {type(e).__name__}: {e}") from None
        return RecordedCell(key, outputs, variables, dict(cell["skipped"]))

    def __contains__(self, key: object) -> bool:
        return key in self._cells

    def __len__(self) -> int:
        return len(self._cells)

    def keys(self) -> list[str]:
        """The keys of the recorded cells, in the order they were first put."""
        return list(self._cells)

    def close(self) -> None:
        """Let go of the file (the store stays usable for what was put since)."""
        self._files.close()

    def save(self) -> None:
        """Write the store atomically: a temporary file beside `path`, flushed to disk and
        renamed over it, so an interrupted save leaves the previous file as it was. The
        files of cells not put again are copied from the previous file, not held in memory."""
        text = json.dumps({"format": FORMAT, "version": VERSION, "cells": self._cells},
                          allow_nan=True)
        files = self._files
        with atomic_write(self.path) as f, zipfile.ZipFile(f, "w") as zf:
            zf.writestr(INDEX, text, compress_type=zipfile.ZIP_DEFLATED)
            for name in sorted(files.old - set(files.new)):
                assert files.zip is not None
                info = safezip.check_entry(files.zip, name, self.path)
                with files.zip.open(info) as src, zf.open(_entry(name), "w") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            for name, data in files.new.items():
                zf.writestr(_entry(name), data)
        self._files.open(self.path)


def _entry(name: str) -> zipfile.ZipInfo:
    """A new entry: stored if it is Parquet (zstd already), else deflated."""
    info = zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED if name.endswith(".parquet") \
        else zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def _well_formed(cell: Any) -> bool:
    return (isinstance(cell, dict) and isinstance(cell.get("outputs"), list)
            and isinstance(cell.get("variables"), dict) and isinstance(cell.get("skipped"), dict))


# -- placeholders -------------------------------------------------------------------------------

class NotRecorded:
    """Stands, in replay, for a value a recorded cell made live that could not be stored:
    using it raises ReplayError saying so; display shows its repr."""

    def __init__(self, name: str, type_name: str) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_type", type_name)

    @property
    def _what(self) -> str:
        article = "an" if self._type[:1].lower() in "aeiou" else "a"
        return f"`{self._name}` ({article} {self._type})"

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise ReplayError(f"{self._what} was made by a recorded cell when the notebook ran "
                          "live and cannot be replayed; run the notebook where BPF loads to "
                          "use it")

    def __getattr__(self, name: str) -> Any:
        if (name.startswith("_") and name.endswith("_")) or name in ("_name", "_type"):
            raise AttributeError(name)  # display probing (it shows the repr); or no __init__
        return self._refuse()

    def __exit__(self, *args: Any) -> None:
        self._refuse()

    def __repr__(self) -> str:
        return f"<not recorded: {self._what} from the live run, not replayable>"


_REFUSED = (
    "__call__", "__iter__", "__len__", "__bool__", "__getitem__", "__setitem__", "__delitem__",
    "__contains__", "__setattr__", "__delattr__", "__enter__", "__int__", "__float__",
    "__index__", "__lt__", "__le__", "__gt__", "__ge__", "__neg__", "__pos__", "__abs__",
    "__invert__", "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
    "__truediv__", "__rtruediv__", "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__",
    "__pow__", "__rpow__", "__and__", "__rand__", "__or__", "__ror__", "__xor__", "__rxor__",
    "__lshift__", "__rshift__", "__matmul__",
)
for _dunder in _REFUSED:
    setattr(NotRecorded, _dunder, NotRecorded._refuse)
