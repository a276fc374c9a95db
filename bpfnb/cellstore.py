"""The recorded cells of a notebook recording (`DIR/cells.zip`): outputs and variables.

>>> store = CellStore("recordings/10-map-helpers/cells.zip")
>>> store.put(key, outputs, {"pid": 1234, "fill": df}); store.save()

`cells.json` holds each cell's outputs (nbformat-like dicts) and a JSON spec per variable;
frames, arrays and stacks are files beside it (Parquet, .npy). Values of other types
(sockets, threads, programs, plots) are not stored: their names are listed as skipped, and
bound in replay to `NotRecorded` placeholders that say why they cannot be used.
"""

from __future__ import annotations

import base64
import builtins
import datetime as dt
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import pandas as pd

from . import errors
from .atomicfile import atomic_write
from .errors import BpfnbError, ReplayError

FORMAT = "bpfnb-cells"
VERSION = 1
INDEX = "cells.json"


@dataclass
class RecordedCell:
    """One %%recorded cell as it ran live."""

    key: str
    outputs: list[dict[str, Any]]
    variables: dict[str, Any]
    skipped: dict[str, str] = field(default_factory=dict)  # name -> type name


class _Unstorable(Exception):
    pass


class _Codec:
    """Values to JSON specs plus side files, and back."""

    def __init__(self, files: dict[str, bytes], prefix: str = "") -> None:
        self.files = files
        self.prefix = prefix

    def _file(self, suffix: str, data: bytes) -> str:
        name = f"{self.prefix}{len(self.files)}{suffix}"
        self.files[name] = data
        return name

    # -- encode -------------------------------------------------------------------------
    def encode(self, v: Any) -> dict[str, Any]:
        if v is None or isinstance(v, (bool, str)):
            return {"t": "plain", "v": v}
        if isinstance(v, int) and not isinstance(v, np.integer):
            return {"t": "int", "v": str(v)}
        if isinstance(v, float):
            return {"t": "float", "v": repr(v)}
        if isinstance(v, bytes):
            return {"t": "bytes", "v": base64.b64encode(v).decode()}
        if isinstance(v, (list, tuple, set, frozenset)):
            return {"t": type(v).__name__, "items": [self.encode(x) for x in v]}
        if isinstance(v, dict) and type(v) is dict:
            return {"t": "dict", "items": [[self.encode(k), self.encode(x)]
                                            for k, x in v.items()]}
        if isinstance(v, np.generic):
            return {"t": "npscalar", "file": self._npy(np.asarray(v))}
        if isinstance(v, np.ndarray):
            return {"t": "ndarray", "file": self._npy(v)}
        if isinstance(v, pd.DataFrame):
            return {"t": "frame", **self._frame(v)}
        if isinstance(v, pd.Series):
            name = v.name if v.name is not None else "__series"
            return {"t": "series", "name": self.encode(v.name),
                    **self._frame(v.to_frame(str(name)))}
        if isinstance(v, pd.Timestamp):
            return {"t": "timestamp", "v": v.isoformat()}
        if isinstance(v, pd.Timedelta):
            return {"t": "timedelta", "v": int(v.value)}
        if isinstance(v, dt.datetime):
            return {"t": "datetime", "v": v.isoformat()}
        if isinstance(v, PurePath):
            return {"t": "path", "v": str(v)}
        if isinstance(v, BaseException):
            return self._exception(v)
        from .stacks import Stacks

        if isinstance(v, Stacks):
            return {"t": "stacks", "name": v.name, **self._frame(v.df())}
        raise _Unstorable(type(v).__name__)

    def _npy(self, arr: np.ndarray) -> str:
        if arr.dtype.hasobject:
            raise _Unstorable("ndarray of objects")
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        return self._file(".npy", buf.getvalue())

    def _frame(self, df: pd.DataFrame) -> dict[str, Any]:
        from .recording import _pa, encode_frame

        if not all(isinstance(c, str) for c in df.columns):
            raise _Unstorable("DataFrame with non-string column names")
        names = [n if n is not None else f"__index{i}" for i, n in enumerate(df.index.names)]
        flat = df.copy()
        flat.index = flat.index.set_names(names)
        flat = flat.reset_index() if not isinstance(df.index, pd.RangeIndex) else \
            flat.reset_index(drop=True)
        try:
            table, specs = encode_frame(flat)
            attrs = json.loads(json.dumps(df.attrs))
        except (BpfnbError, TypeError, ValueError) as e:
            raise _Unstorable(f"DataFrame ({e})") from None
        buf = io.BytesIO()
        _pa().parquet.write_table(table, buf, compression="zstd")
        index = None if isinstance(df.index, pd.RangeIndex) else \
            [names, list(df.index.names)]
        return {"file": self._file(".parquet", buf.getvalue()), "columns": specs,
                "index": index, "attrs": attrs, "n": len(df)}

    def _exception(self, e: BaseException) -> dict[str, Any]:
        cls = type(e)
        if cls.__module__ not in ("builtins", errors.__name__) and \
                not isinstance(e, BpfnbError):
            raise _Unstorable(cls.__name__)
        mod = errors.__name__ if isinstance(e, BpfnbError) else "builtins"
        holder = errors if mod == errors.__name__ else builtins
        name = cls.__name__ if getattr(holder, cls.__name__, None) is cls else \
            next(c.__name__ for c in cls.__mro__ if getattr(holder, c.__name__, None) is c)
        return {"t": "exception", "module": mod, "class": name, "message": str(e),
                "details": getattr(e, "details", "") or ""}

    # -- decode -------------------------------------------------------------------------
    def decode(self, s: dict[str, Any]) -> Any:
        t = s["t"]
        if t == "plain":
            return s["v"]
        if t == "int":
            return int(s["v"])
        if t == "float":
            return float(s["v"])
        if t == "bytes":
            return base64.b64decode(s["v"])
        if t in ("list", "tuple", "set", "frozenset"):
            return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[t](
                self.decode(x) for x in s["items"])
        if t == "dict":
            return {self.decode(k): self.decode(x) for k, x in s["items"]}
        if t in ("npscalar", "ndarray"):
            arr = np.load(io.BytesIO(self.files[s["file"]]), allow_pickle=False)
            return arr[()] if t == "npscalar" else arr
        if t == "frame":
            return self._read_frame(s)
        if t == "series":
            df = self._read_frame(s)
            out = df.iloc[:, 0]
            out.name = self.decode(s["name"])
            return out
        if t == "timestamp":
            return pd.Timestamp(s["v"])
        if t == "timedelta":
            return pd.Timedelta(s["v"])
        if t == "datetime":
            return dt.datetime.fromisoformat(s["v"])
        if t == "path":
            return Path(s["v"])
        if t == "exception":
            return _rebuild_exception(s)
        if t == "stacks":
            from .stacks import Stacks

            return Stacks(self._read_frame(s), name=s["name"])
        raise ReplayError(f"unknown value kind {t!r} in a cell recording (made by a newer "
                          f"bpfnb?)")

    def _read_frame(self, s: dict[str, Any]) -> pd.DataFrame:
        from .recording import _pa, decode_table

        table = _pa().parquet.read_table(io.BytesIO(self.files[s["file"]]))
        df = decode_table(table, s["columns"])
        if s.get("index"):
            stored, names = s["index"]
            df = df.set_index(stored)
            df.index = df.index.set_names(names)
        df.attrs = dict(s.get("attrs") or {})
        return df


def _rebuild_exception(s: dict[str, Any]) -> BaseException:
    holder = errors if s["module"] == errors.__name__ else builtins
    cls = getattr(holder, s["class"], Exception)
    try:
        e = cls.__new__(cls)
        BaseException.__init__(e, s["message"])
    except TypeError:
        e = Exception(s["message"])
    if isinstance(e, BpfnbError):
        e.details = s.get("details", "")
    return e


class CellStore:
    """The recorded cells of one notebook recording: DIR/cells.zip."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._files: dict[str, bytes] = {}
        self._cells: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            self._read()

    def _read(self) -> None:
        try:
            with zipfile.ZipFile(self.path) as zf:
                index = json.loads(zf.read(INDEX))
                if index.get("format") != FORMAT:
                    raise ReplayError(f"{str(self.path)!r} is not a recording of cells")
                self._files = {n: zf.read(n) for n in zf.namelist() if n != INDEX}
        except (zipfile.BadZipFile, KeyError, ValueError, OSError) as e:
            raise ReplayError(f"cannot read the recorded cells {str(self.path)!r} ({e}); "
                              "record the notebook again (make recordings)") from None
        self._cells = index["cells"]

    def put(self, key: str, outputs: list[dict[str, Any]],
            variables: dict[str, Any]) -> RecordedCell:
        """Store a cell's outputs and the variables it bound (those that can be stored)."""
        self._drop_files(key)
        codec = _Codec(self._files, prefix=f"{key}/")
        specs, skipped = {}, {}
        for name, value in variables.items():
            before = dict(self._files)
            try:
                specs[name] = codec.encode(value)
            except (_Unstorable, RecursionError):
                skipped[name] = type(value).__name__
                self._files.clear()
                self._files.update(before)  # nothing half-stored
        self._cells[key] = {"outputs": outputs, "variables": specs, "skipped": skipped}
        return RecordedCell(key, outputs, {k: variables[k] for k in specs}, skipped)

    def _drop_files(self, key: str) -> None:
        for name in [n for n in self._files if n.startswith(f"{key}/")]:
            del self._files[name]

    def get(self, key: str) -> RecordedCell | None:
        cell = self._cells.get(key)
        if cell is None:
            return None
        codec = _Codec(self._files)
        variables = {k: codec.decode(s) for k, s in cell["variables"].items()}
        return RecordedCell(key, cell["outputs"], variables, dict(cell["skipped"]))

    def __contains__(self, key: object) -> bool:
        return key in self._cells

    def __len__(self) -> int:
        return len(self._cells)

    def keys(self) -> list[str]:
        return list(self._cells)

    def save(self) -> None:
        """Write the store atomically: a temporary file renamed over `path`."""
        index = {"format": FORMAT, "version": VERSION, "cells": self._cells}
        with atomic_write(self.path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(INDEX, json.dumps(index, allow_nan=True))
            for name, data in self._files.items():
                zf.writestr(name, data)


class NotRecorded:
    """Stands, in replay, for a value a recorded cell made live that could not be stored."""

    def __init__(self, name: str, type_name: str) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_type", type_name)

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise ReplayError(f"`{self._name}` (a {self._type}) was made by a recorded cell when "
                          "the notebook ran live and cannot be replayed; run the notebook "
                          "where BPF loads to use it")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") and name.endswith("_"):
            raise AttributeError(name)  # display machinery probing: show the repr
        return self._refuse()

    __call__ = __iter__ = __len__ = __bool__ = __getitem__ = __setitem__ = _refuse
    __setattr__ = __enter__ = _refuse

    def __repr__(self) -> str:
        return f"<{self._name}: a {self._type} from the live run, not replayable>"
