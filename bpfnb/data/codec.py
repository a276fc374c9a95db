"""Python keys and values <-> the bytes of a map's key or value type.

Accepted shapes: ints and floats for scalars, str/bytes for char[], sequences for arrays,
tuples (positional, padding skipped), dicts (nested or flattened `a.b` names, as in df())
and ctypes objects or raw bytes of the right size for structs. Decoding gives a Python
int/float/str, a list for arrays, or a dict of the flattened columns df() shows.
"""

from __future__ import annotations

import ctypes as ct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from bpfnb._sys.btf import Bits
from bpfnb.data.colcheck import BadRows, check, column_values
from bpfnb.data.layout import (
    SPLIT_ARRAY_MAX,
    enum_numbers,
    field_names,
    flatten,
    members,
    set_bitfield,
)
from bpfnb.errors import KeyTypeError

LOCK_TYPE_NAMES = ("bpf_spin_lock", "bpf_timer")  # kernel-owned fields, hidden from users


class Codec:
    """Encodes and decodes one map side ('key' or 'value') of a given numpy dtype."""

    def __init__(self, dtype: np.dtype, role: str, map_name: str, ctype: Any = None) -> None:
        self.dtype = dtype
        self.role = role
        self.map_name = map_name
        self.ctype = ctype
        self.hidden = frozenset(hidden_fields(ctype))
        base = "" if dtype.names is not None else role
        self.columns = [c for c in field_names(dtype, base) if c.split(".")[0] not in self.hidden]

    # -- encoding -------------------------------------------------------------------------
    def encode(self, obj: Any) -> np.ndarray:
        """A one-element array holding `obj` in the map's layout."""
        out = np.zeros(1, self.dtype)
        raw = _raw_bytes(obj, self.dtype)
        if raw is not None:
            out.view(np.uint8)[:] = np.frombuffer(raw, np.uint8)
            return out
        try:
            _assign(out, (), self.dtype, obj, self.hidden)
        except _Shape as e:
            raise KeyTypeError(
                f"{self.role} {obj!r} does not fit map {self.map_name!r}: {e}. "
                f"Expected {self.expected()}") from None
        return out

    def encode_many(self, objs: Iterable[Any]) -> np.ndarray:
        parts = [self.encode(o) for o in objs]
        return np.concatenate(parts) if parts else np.zeros(0, self.dtype)

    def expected(self) -> str:
        """The shape this side wants, for error messages."""
        if self.dtype.names is None:
            return _describe_scalar(self.dtype)
        inner = ", ".join(f"{c}: {_describe_scalar(_leaf_dtype(self.dtype, c))}"
                          for c in self.columns)
        return f"a dict or tuple with fields {{{inner}}} (or a ctypes {self._ctype_name()})"

    def _ctype_name(self) -> str:
        return getattr(self.ctype, "__name__", "struct") or "struct"

    # -- decoding -------------------------------------------------------------------------
    def decode(self, arr: np.ndarray) -> Any:
        """A one-element array (or a row of one) -> int/float/str/list/dict."""
        arr = np.asarray(arr).reshape(1) if arr.ndim == 0 else arr[:1]
        if self.dtype.names is None and self.dtype.shape:
            return arr[0].tolist()
        cols = flatten(arr, "" if self.dtype.names is not None else self.role)
        if self.dtype.names is None:
            return _py(next(iter(cols.values()))[0])
        return {name: _py(col[0]) for name, col in cols.items()
                if name.split(".")[0] not in self.hidden}

    def decode_many(self, arr: np.ndarray) -> list[Any]:
        return [self.decode(arr[i:i + 1]) for i in range(len(arr))]

    # -- columns (DataFrames) -------------------------------------------------------------
    def from_columns(self, cols: Mapping[str, Any], names: Sequence[str], n: int,
                     labels: Any = None) -> np.ndarray:
        """An array of n elements from flattened columns (df() names, in `names` order).
        Every row is checked first (update()'s rules); KeyTypeError names the bad rows."""
        out, bad = self.columns_array(cols, names, n)
        if bad:
            raise bad.error(self.map_name, labels)
        return out

    def columns_array(self, cols: Mapping[str, Any], names: Sequence[str], n: int
                      ) -> tuple[np.ndarray, BadRows]:
        """from_columns without raising: the array and the rows that do not fit."""
        out = np.zeros(n, self.dtype)
        paths = column_paths(self.dtype, "" if self.dtype.names is not None else self.role)
        wanted = [p for p in paths if p[0].split(".")[0] not in self.hidden]
        if len(names) != len(wanted):
            raise KeyTypeError(
                f"{self.role} columns {list(names)} do not match map {self.map_name!r}: "
                f"expected {[p[0] for p in wanted]}")
        bad = BadRows(n)
        for (_, path, index), name in zip(wanted, names):
            _set_column(out, path, index, cols[name], name, self.map_name, bad)
        return out, bad


class _Shape(Exception):
    """Internal: where an object's shape differs from the type's."""


def hidden_fields(ctype: Any) -> list[str]:
    """Top-level struct fields the kernel owns (bpf_spin_lock, bpf_timer): not user data."""
    out = []
    for name, ftype, *_ in getattr(ctype, "_fields_", []):
        if getattr(ftype, "__name__", "") in LOCK_TYPE_NAMES:
            out.append(name)
    return out


def _raw_bytes(obj: Any, dtype: np.dtype) -> bytes | None:
    """Bytes of a ctypes object, numpy record or bytes-like of exactly the type's size."""
    size = dtype.itemsize
    if isinstance(obj, (bytes, bytearray)) and len(obj) == size and dtype.kind != "S":
        return bytes(obj)
    if isinstance(obj, (ct.Structure, ct.Union, ct.Array)) or (
            isinstance(obj, ct._SimpleCData) and ct.sizeof(obj) == size):
        if ct.sizeof(obj) != size:
            raise KeyTypeError(f"ctypes {type(obj).__name__} is {ct.sizeof(obj)} bytes; "
                               f"the map wants {size}")
        return bytes(memoryview(obj))
    if isinstance(obj, np.void) and obj.dtype.itemsize == size:
        return obj.tobytes()
    if isinstance(obj, np.ndarray) and obj.dtype.names is not None and obj.size == 1 \
            and obj.dtype.itemsize == size:
        return obj.tobytes()
    return None


def _assign(out: np.ndarray, path: tuple[str, ...], dtype: np.dtype, obj: Any,
            hidden: frozenset[str] = frozenset()) -> None:
    """Write obj into field `path` of the one-element array `out`."""
    if dtype.names is not None:
        _assign_struct(out, path, dtype, obj, hidden)
    elif dtype.shape:
        _assign_array(out, path, dtype, obj)
    else:
        _target(out, path)[0] = _scalar(dtype, _enum_number(obj, dtype.metadata), ".".join(path))


def _target(out: np.ndarray, path: tuple[Any, ...]) -> np.ndarray:
    """The column at `path`: field names, and index tuples for array elements (`m[1][2]`)."""
    t = out
    for p in path:
        t = t[(slice(None), *p)] if isinstance(p, tuple) else t[p]
    return t


def _assign_struct(out: np.ndarray, path: tuple[str, ...], dtype: np.dtype, obj: Any,
                   hidden: frozenset[str]) -> None:
    assert dtype.names is not None
    order = [(n, b) for n, b in members(dtype) if n not in hidden]
    fields = [n for n, _ in order]  # fields and bit fields, in df()'s order
    if isinstance(obj, (ct.Structure, ct.Union)):
        obj = {f: getattr(obj, f) for f, b in order if b is None}
        fields = list(obj)
    if isinstance(obj, Mapping):
        parts = _nest(obj, fields, ".".join(path))
    elif isinstance(obj, Sequence) and not isinstance(obj, (str, bytes)):
        if len(obj) != len(fields):
            raise _Shape(f"{len(obj)} items for {len(fields)} fields")
        parts = dict(zip(fields, obj))
    else:
        raise _Shape(f"a {type(obj).__name__} where a struct is wanted")
    for f, bits in order:
        if bits is None:
            _assign(out, (*path, f), _sub(dtype, f), parts[f])
        elif f in parts:
            where = ".".join((*path, f))
            number = _enum_number(parts[f], {"enum": bits.enum})
            value = _bit_value(bits, _scalar(_bits_dtype(bits), number, where), where)
            _write_bits(out, path, bits, np.array([value]))


def _bits_dtype(bits: Bits) -> np.dtype:
    return np.dtype(f"{'i' if bits.signed else 'u'}{max(1, min(8, bits.size))}")


def _enum_number(obj: Any, metadata: Any) -> Any:
    """An enumerator name as its number (enum types carry {value: name} in metadata)."""
    names = dict(metadata or {}).get("enum")
    if names and isinstance(obj, str):
        return enum_numbers(np.array([obj], dtype=object), names)[0]
    return obj


def _bit_value(bits: Bits, value: Any, where: str) -> Any:
    """`value` if it fits the bit field, else _Shape."""
    lo, hi = (-(1 << (bits.nbits - 1)), (1 << (bits.nbits - 1)) - 1) if bits.signed \
        else (0, (1 << bits.nbits) - 1)
    if not lo <= int(value) <= hi:
        raise _Shape(f"{value} for {where} is outside its {bits.nbits}-bit field [{lo}, {hi}]")
    return value


def _write_bits(out: np.ndarray, path: tuple[Any, ...], bits: Bits, values: np.ndarray) -> None:
    """Write a bit field of the struct at `path` in every element of `out` (contiguous)."""
    offset, dt = 0, out.dtype
    for p in path:
        if isinstance(p, tuple):
            offset += int(np.ravel_multi_index(p, dt.shape)) * dt.base.itemsize
            dt = dt.base
        else:
            offset += (dt.fields or {})[p][1]
            dt = _sub(dt, p)
    raw = out.view(np.uint8).reshape(len(out), out.dtype.itemsize)
    set_bitfield(raw, offset * 8 + bits.bit_offset, bits.nbits, values)


def _sub(dtype: np.dtype, field: str) -> np.dtype:
    fields = dtype.fields
    assert fields is not None
    return fields[field][0]


def _nest(obj: Mapping[str, Any], fields: list[str], where: str) -> dict[str, Any]:
    """Group a dict's entries by top-level field: nested dicts, `a.b` names, `a[i]` names."""
    parts: dict[str, Any] = {}
    unknown = []
    for name, val in obj.items():
        head, dot, rest = str(name).partition(".")
        base, bracket, idx = head.partition("[")
        if head in fields and not dot:
            parts[head] = val
        elif head in fields and dot:
            parts.setdefault(head, {})
            if not isinstance(parts[head], dict):
                raise _Shape(f"field {head!r} given twice")
            parts[head][rest] = val
        elif bracket and base in fields and _indexes(idx) is not None:
            items = parts.setdefault(base, {})
            if not isinstance(items, dict):
                raise _Shape(f"field {base!r} given twice")
            index = _indexes(idx)
            items[index] = items.get(index, {}) if dot else val
            if dot:
                items[index][rest] = val  # `a[i].b`: element i of an array of structs
        else:
            unknown.append(name)
    missing = [f for f in fields if f not in parts]
    if unknown or missing:
        prefix = f"{where}." if where else ""
        detail = []
        if missing:
            detail.append("missing " + ", ".join(prefix + m for m in missing))
        if unknown:
            detail.append("unknown " + ", ".join(map(str, unknown)))
        raise _Shape("; ".join(detail))
    for f, v in parts.items():  # {index: value} from `a[i]` columns -> a list (row major)
        if isinstance(v, dict) and v and all(isinstance(k, tuple) for k in v):
            parts[f] = [v[i] for i in sorted(v)]
    return parts


def _indexes(text: str) -> tuple[int, ...] | None:
    """'1]' or '1][2]' (what follows the first '[' of `m[1][2]`) as (1,) or (1, 2)."""
    if not text.endswith("]"):
        return None
    items = text[:-1].split("][")
    return tuple(int(i) for i in items) if all(i.isdigit() for i in items) else None


def _assign_array(out: np.ndarray, path: tuple[str, ...], dtype: np.dtype, obj: Any) -> None:
    base, shape = dtype.base, dtype.shape
    if base.kind == "S" or isinstance(obj, (str, bytes)) or not isinstance(obj, Iterable):
        raise _Shape(f"a {type(obj).__name__} where an array of {shape[0]} is wanted")
    values = list(np.asarray(obj).ravel()) if isinstance(obj, np.ndarray) \
        else _row_major(obj, len(shape))
    if len(values) > int(np.prod(shape)):
        raise _Shape(f"{len(values)} items for an array of {int(np.prod(shape))}")
    target = _target(out, path)
    flat = target.reshape(-1)
    for i, v in enumerate(values):
        if base.names is not None:
            sub = np.zeros(1, base)
            _assign(sub, (), base, v)
            flat[i] = sub[0]
        else:
            flat[i] = _scalar(base, v, f"{'.'.join(path)}[{i}]")
    target[...] = flat.reshape(target.shape)


def _row_major(obj: Any, dims: int) -> list[Any]:
    """Nested sequences (lists of lists for `m[2][3]`) as one flat list, row major; a flat
    list stays as it is."""
    items = list(obj)
    if dims > 1 and items and all(isinstance(i, Sequence) and not isinstance(i, (str, bytes))
                                  for i in items):
        return [x for i in items for x in _row_major(i, dims - 1)]
    return items


def _scalar(dtype: np.dtype, obj: Any, where: str) -> Any:
    """Check and convert one scalar (range-checked ints, floats, char[] strings)."""
    if isinstance(obj, ct._SimpleCData):
        obj = obj.value
    if isinstance(obj, np.generic):
        obj = obj.item()
    kind = dtype.kind
    label = f" for {where}" if where else ""
    if kind == "b":
        if obj not in (0, 1) or not isinstance(obj, int):
            raise _Shape(f"{obj!r}{label} is not a bool")
        return bool(obj)
    if kind == "u" and isinstance(obj, str) and dict(dtype.metadata or {}).get("ptr"):
        obj = _pointer(obj, label)  # df() shows pointers as hex strings
    if kind in "iu":
        if isinstance(obj, bool) or not isinstance(obj, int):
            raise _Shape(f"{obj!r}{label} is not an int ({dtype})")
        info = np.iinfo(dtype)
        if not info.min <= obj <= info.max:
            raise _Shape(f"{obj}{label} is outside {dtype} [{info.min}, {info.max}]")
        return obj
    if kind == "f":
        if not isinstance(obj, (int, float)) or isinstance(obj, bool):
            raise _Shape(f"{obj!r}{label} is not a number")
        try:
            value = float(obj)
            with np.errstate(over="ignore"):
                if np.isfinite(value) and not np.isfinite(dtype.type(value)):
                    raise OverflowError
        except OverflowError:
            raise _Shape(f"{obj}{label} is outside {dtype}'s range") from None
        return value
    if kind == "S":
        data = obj.encode() if isinstance(obj, str) else obj
        if not isinstance(data, bytes):
            raise _Shape(f"{obj!r}{label} is not a str")
        if len(data) > dtype.itemsize:
            raise _Shape(f"{obj!r}{label} is longer than char[{dtype.itemsize}]")
        return data
    if kind == "V" and "int128" in (dtype.metadata or {}):
        return _int128_bytes(obj, bool(dtype.metadata["int128"]), label)  # type: ignore[index]
    if kind == "V":
        if not isinstance(obj, (bytes, bytearray)) or len(obj) != dtype.itemsize:
            raise _Shape(f"{where or 'value'} wants {dtype.itemsize} raw bytes")
        return bytes(obj)
    raise _Shape(f"cannot encode {dtype}")


def _pointer(text: str, label: str) -> int:
    try:
        return int(text, 16)
    except ValueError:
        raise _Shape(f"{text!r}{label} is not a pointer (an int or a hex string)") from None


def _int128_bytes(obj: Any, signed: bool, label: str) -> bytes:
    """A 128-bit int (as df() shows it) or its 16 raw bytes, as 16 little-endian bytes."""
    if isinstance(obj, (bytes, bytearray)) and len(obj) == 16:
        return bytes(obj)
    if isinstance(obj, bool) or not isinstance(obj, int):
        raise _Shape(f"{obj!r}{label} is not an int ({'' if signed else 'u'}int128)")
    try:
        return obj.to_bytes(16, "little", signed=signed)
    except OverflowError:
        raise _Shape(f"{obj}{label} is outside {'' if signed else 'u'}int128") from None


def _describe_scalar(dtype: np.dtype) -> str:
    if dtype.names is not None:
        return "struct"
    if dtype.shape:
        return _describe_scalar(dtype.base) + "".join(f"[{n}]" for n in dtype.shape)
    if dtype.kind == "S":
        return f"char[{dtype.itemsize}] (str)"
    if dtype.kind in "iu":
        return f"int ({dtype})"
    if dtype.kind == "f":
        return f"float ({dtype})"
    if "int128" in (dtype.metadata or {}):
        return f"int ({'' if dtype.metadata['int128'] else 'u'}int128)"  # type: ignore[index]
    return f"{dtype.itemsize} raw bytes"


def _leaf_dtype(dtype: np.dtype, column: str) -> np.dtype:
    for flat, path, index in column_paths(dtype, ""):
        if flat == column:
            t = dtype
            for p in path:
                if isinstance(p, Bits):
                    return _bits_dtype(p)
                t = t.base if isinstance(p, tuple) else _sub(t, p)
            return t.base if index is not None else t
    return dtype


def _py(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def column_paths(dtype: np.dtype, base: str
                 ) -> list[tuple[str, tuple[Any, ...], int | None]]:
    """(flat column name, path, None) in layout.flatten's order; a path holds field names
    and, for the elements of small arrays (`m[1][2]`, `p[0].a`), index tuples."""
    out: list[tuple[str, tuple[Any, ...], int | None]] = []

    def walk(dt: np.dtype, name: str, path: tuple[Any, ...]) -> None:
        if dt.shape and int(np.prod(dt.shape)) <= SPLIT_ARRAY_MAX:
            for index in np.ndindex(*dt.shape):
                walk(dt.base, name + "".join(f"[{i}]" for i in index), (*path, index))
        elif dt.names is not None:
            for f, bits in members(dt):
                col = f"{name}.{f}" if name else f
                if bits is None:
                    walk(_sub(dt, f), col, (*path, f))
                else:
                    out.append((col, (*path, bits), None))
        else:
            out.append((name, path, None))

    walk(dtype, base, ())
    return out


def _set_column(out: np.ndarray, path: tuple[str, ...], index: int | None, col: Any,
                name: str, map_name: str, bad: BadRows) -> None:
    """Check one column (bad rows go to `bad`) and, if it fits, write it into `out`."""
    if path and isinstance(path[-1], Bits):
        _set_bits_column(out, path, col, name, map_name, bad)
        return
    target = _target(out, path) if path else out
    if index is not None:
        target = target[:, index]
    values, na = column_values(col)
    leaf = target.dtype.base if target.ndim > 1 else target.dtype
    enum = dict(leaf.metadata or {}).get("enum")
    if enum is not None and values.dtype.kind not in "iu":  # df()'s enumerator names
        values = enum_numbers(values, enum)
    if dict(leaf.metadata or {}).get("ptr") and values.dtype.kind in "US":  # df()'s hex
        values = values.astype(object)
    if target.ndim > 1 and values.dtype == object:
        try:
            values = np.stack(list(values))
        except ValueError as e:
            raise KeyTypeError(f"column {name!r} does not fit map {map_name!r}: {e}") from None
        if values.shape != target.shape:
            raise KeyTypeError(f"column {name!r} has {values.shape[1:]} items per row; "
                               f"map {map_name!r} wants {target.shape[1:]}")
    checked = check(values, na, leaf, name, bad, _checked_scalar)
    if checked is None:
        return
    try:
        target[...] = checked
    except (ValueError, TypeError, OverflowError) as e:
        raise KeyTypeError(f"column {name!r} does not fit map {map_name!r}: {e}") from None


def _checked_scalar(dtype: np.dtype, obj: Any) -> Any:
    """update()'s check of one element, its complaint as a ValueError."""
    try:
        return _scalar(dtype, obj, "")
    except _Shape as e:
        raise ValueError(str(e)) from None


def _set_bits_column(out: np.ndarray, path: tuple[Any, ...], col: Any, name: str,
                     map_name: str, bad: BadRows) -> None:
    """A bit-field column: checked against its width, written into each element's bytes."""
    bits = path[-1]
    values, na = column_values(col)
    if bits.enum and values.dtype.kind not in "iu":
        values = enum_numbers(values, bits.enum)
    checked = check(values, na, _bits_dtype(bits), name, bad, _checked_scalar)
    if checked is None:
        return
    try:
        for v in np.unique(checked).tolist():
            _bit_value(bits, v, name)
    except _Shape as e:
        raise KeyTypeError(f"column {name!r} does not fit map {map_name!r}: {e}") from None
    _write_bits(out, path[:-1], bits, checked)
