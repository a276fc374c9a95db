"""The `meta.json` of a recording, checked before anything trusts it.

`check(meta, path)` raises ReplayError naming the file and the first field that is not what
bpfnb.store.recording writes (wrong type, unknown map type, a map with no table, an object
dtype...), so replay code can index the dict without KeyError/TypeError.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from bpfnb._sys import bpfsys
from bpfnb.backends.base import AttachPoint
from bpfnb.errors import ReplayError

_INFO_FIELDS = {"name": str, "type": str, "key_size": int, "value_size": int,
                "max_entries": int, "id": int, "flags": int}
_CODECS = {"numpy", "pandas", "ndarray", "strlist", "str", "bytes", "bool", "int", "uint",
           "bigint", "float", "json", "repr", "null"}
_KINDS = ("df", "percpu", "hist", "raw", "events", "stacks")
_HINT = "record it again with bpfnb.record(prog, path)"


def dtype(descr: Any) -> np.dtype:
    """The numpy dtype of a descr as JSON stored it (its tuples made lists)."""
    from numpy.lib import format as npformat

    def tuples(d: Any) -> Any:
        if not isinstance(d, list):
            return d
        return [(f[0], tuples(f[1]), tuple(f[2])) if len(f) > 2 else (f[0], tuples(f[1]))
                for f in d]

    return npformat.descr_to_dtype(tuples(descr))


class _Checker:
    def __init__(self, path: Any) -> None:
        self.path = path

    def fail(self, where: str, what: str) -> ReplayError:
        return ReplayError(f"recording {str(self.path)!r} is malformed: {where} {what}; "
                           f"{_HINT}")

    def typed(self, v: Any, kind: Any, where: str) -> Any:
        ok = isinstance(v, kind) and not (kind in (int, (int, float)) and isinstance(v, bool))
        if not ok:
            names = kind.__name__ if isinstance(kind, type) else "number"
            raise self.fail(where, f"is {type(v).__name__}, not {names}")
        return v

    def time(self, v: Any, where: str) -> int:
        """A time in ns since the epoch (what numpy's datetime64[ns] holds)."""
        self.typed(v, int, where)
        if not 0 <= v < 1 << 63:
            raise self.fail(where, f"{v} is not a time in ns")
        return v

    def list_of(self, v: Any, kind: Any, where: str) -> list[Any]:
        self.typed(v, list, where)
        for i, x in enumerate(v):
            self.typed(x, kind, f"{where}[{i}]")
        return v

    def dict_of(self, v: Any, where: str) -> dict[str, Any]:
        return self.typed(v, dict, where)

    def dtype(self, descr: Any, where: str) -> np.dtype:
        try:
            dt = dtype(descr)
        except (TypeError, ValueError, KeyError, IndexError, SyntaxError, AttributeError) as e:
            raise self.fail(where, f"is not a numpy dtype ({e})") from None
        if dt.hasobject:
            raise self.fail(where, "is an object dtype (a recording holds plain data only)")
        return dt


def _check_map(c: _Checker, name: str, m: Any) -> None:
    where = f"maps[{name!r}]"
    c.dict_of(m, where)
    info = c.dict_of(m.get("info"), f"{where}.info")
    if set(info) != set(_INFO_FIELDS):
        raise c.fail(f"{where}.info", f"has fields {sorted(info)}, not {sorted(_INFO_FIELDS)}")
    for field, kind in _INFO_FIELDS.items():
        c.typed(info[field], kind, f"{where}.info.{field}")
    if info["type"] not in bpfsys.MapType.__members__:
        raise c.fail(f"{where}.info.type", f"{info['type']!r} is not a known map type")
    c.typed(m.get("per_cpu"), bool, f"{where}.per_cpu")
    c.dtype(m.get("key_dtype"), f"{where}.key_dtype")
    c.dtype(m.get("value_dtype"), f"{where}.value_dtype")
    if "raw_value_dtype" in m:
        c.dtype(m["raw_value_dtype"], f"{where}.raw_value_dtype")
    shape = c.list_of(m.get("raw_value_shape", []), int, f"{where}.raw_value_shape")
    if any(n < 0 or n > 1 << 16 for n in shape):
        raise c.fail(f"{where}.raw_value_shape", f"{shape} is out of range")


def _check_table(c: _Checker, name: str, kind: str, t: Any, snaps: int) -> None:
    where = f"tables[{name!r}][{kind!r}]"
    c.dict_of(t, where)
    for i, part in enumerate(c.list_of(t.get("parts"), dict, f"{where}.parts")):
        pw = f"{where}.parts[{i}]"
        c.typed(part.get("file"), str, f"{pw}.file")
        for j, col in enumerate(c.list_of(part.get("columns"), dict, f"{pw}.columns")):
            cw = f"{pw}.columns[{j}]"
            c.typed(col.get("name"), str, f"{cw}.name")
            c.typed(col.get("dtype"), str, f"{cw}.dtype")
            if not isinstance(col.get("codec"), str) or col["codec"] not in _CODECS:
                raise c.fail(f"{cw}.codec", f"{col.get('codec')!r} is not a known codec")
            if col["codec"] == "numpy":
                c.dtype(col["dtype"], f"{cw}.dtype")
            if col["codec"] == "ndarray":
                c.dtype(col.get("elem", "u8"), f"{cw}.elem")
        for s in c.list_of(part.get("snapshots"), int, f"{pw}.snapshots"):
            if not 0 <= s < snaps:
                raise c.fail(f"{pw}.snapshots", f"names snapshot {s} of {snaps}")
    for k, a in c.dict_of(t.get("attrs", {}), f"{where}.attrs").items():
        aw = f"{where}.attrs[{k!r}]"
        c.dict_of(a, aw)
        for field in ("seconds", "rate"):  # events() adds these up
            if field in a:
                c.typed(a[field], (int, float), f"{aw}.{field}")
        if a.get("lost") is not None:
            c.typed(a["lost"], int, f"{aw}.lost")


def check(meta: Any, path: Any, format: str, version: int) -> dict[str, Any]:
    """`meta` if it is a recording's meta.json this bpfnb can read; ReplayError otherwise."""
    c = _Checker(path)
    if not isinstance(meta, dict) or meta.get("format") != format:
        raise ReplayError(f"{str(path)!r} is not a bpfnb recording; {_HINT}")
    v = meta.get("version", 0)
    c.typed(v, int, "version")
    if v > version:
        raise ReplayError(f"{str(path)!r} is a version {v} recording; this bpfnb reads up to "
                          f"version {version}: upgrade bpfnb")
    for key in ("name", "source", "host"):
        if key in meta:
            c.typed(meta[key], str, key)
    c.list_of(meta.get("cflags", []), str, "cflags")
    c.list_of(meta.get("cpus", []), int, "cpus")
    c.time(meta.get("started_ns", 0), "started_ns")
    c.dict_of(meta.get("kernel", {}), "kernel")
    times = c.list_of(meta.get("snapshots"), int, "snapshots")
    for i, t in enumerate(times):
        c.time(t, f"snapshots[{i}]")
    snaps = len(times)
    names = c.list_of(meta.get("map_names"), str, "map_names")
    if len(set(names)) != len(names):
        raise c.fail("map_names", "names a map twice")
    maps = c.dict_of(meta.get("maps"), "maps")
    for name in names:
        if name not in maps:
            raise c.fail("map_names", f"names {name!r} but maps has no entry for it")
        _check_map(c, name, maps[name])
    stacks = c.dict_of(meta.get("stacks", {}), "stacks")
    for name, pair in stacks.items():
        c.list_of(pair, str, f"stacks[{name!r}]")
    tables = c.dict_of(meta.get("tables", {}), "tables")
    for name, kinds in tables.items():
        for kind, t in c.dict_of(kinds, f"tables[{name!r}]").items():
            if kind not in _KINDS:
                raise c.fail(f"tables[{name!r}]", f"has an unknown kind {kind!r}")
            _check_table(c, name, kind, t, snaps)
    for name, errs in c.dict_of(meta.get("errors", {}), "errors").items():
        for k, e in c.dict_of(errs, f"errors[{name!r}]").items():
            c.typed(e, str, f"errors[{name!r}][{k!r}]")
    for k, i in c.dict_of(meta.get("cells", {}), "cells").items():
        c.typed(i, int, f"cells[{k!r}]")
    fields = {f.name for f in dataclasses.fields(AttachPoint)}
    for i, a in enumerate(c.list_of(meta.get("attach_points", []), dict, "attach_points")):
        if set(a) != fields or not all(isinstance(x, str) for x in a.values()):
            raise c.fail(f"attach_points[{i}]", f"is not {{{', '.join(sorted(fields))}}}")
    return meta


def merge(head: Any, deltas: list[Any], path: Any) -> Any:
    """A version-2 recording's meta.json with its index entries (one per save, in order)
    folded in: snapshots, tables, errors and cells as version 1 held them. ReplayError if an
    entry is malformed or one is missing."""
    if not isinstance(head, dict):
        return head  # check() says what is wrong
    c = _Checker(path)
    meta = {**head, "snapshots": [], "tables": {}, "errors": {}, "cells": {}}
    for i, d in enumerate(deltas):
        where = f"index entry {i}"
        c.dict_of(d, where)
        first = c.typed(d.get("first"), int, f"{where}.first")
        if first != len(meta["snapshots"]):
            raise c.fail(where, f"starts at snapshot {first}, not {len(meta['snapshots'])} "
                                "(an index entry is missing)")
        meta["snapshots"] += c.list_of(d.get("snapshots"), int, f"{where}.snapshots")
        for name, kinds in c.dict_of(d.get("tables", {}), f"{where}.tables").items():
            for kind, t in c.dict_of(kinds, f"{where}.tables[{name!r}]").items():
                tw = f"{where}.tables[{name!r}][{kind!r}]"
                c.dict_of(t, tw)
                into = meta["tables"].setdefault(name, {}).setdefault(kind, {"parts": [],
                                                                            "attrs": {}})
                into["parts"] += c.list_of(t.get("parts"), dict, f"{tw}.parts")
                into["attrs"].update(c.dict_of(t.get("attrs", {}), f"{tw}.attrs"))
        for name, errs in c.dict_of(d.get("errors", {}), f"{where}.errors").items():
            meta["errors"].setdefault(name, {}).update(c.dict_of(errs, f"{where}.errors"))
        meta["cells"].update(c.dict_of(d.get("cells", {}), f"{where}.cells"))
        meta.update({k: d[k] for k in ("maps", "interrupted", "saved_ns") if k in d})
    return meta
