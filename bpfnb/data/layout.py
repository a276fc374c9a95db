"""Map key/value layouts: ctypes types -> numpy structured dtypes -> DataFrame columns.

bcc describes each map's key and value as ctypes types. numpy reads the kernel's bytes
through a dtype with the same offsets, and columns come out of it without a Python loop
over elements.
"""

from __future__ import annotations

import ctypes as ct
from typing import Any

import numpy as np
import pandas as pd

PAD_PREFIXES = ("__pad", "_pad")
SPLIT_ARRAY_MAX = 8  # arrays of up to this many elements become one column per element

_CODE_DTYPE = {"P": np.dtype(np.uint64), "z": np.dtype(np.uint64), "Z": np.dtype(np.uint64),
               "O": np.dtype(np.uint64)}


def is_padding(name: str) -> bool:
    return name.startswith(PAD_PREFIXES)


def dtype_of(ctype: Any) -> np.dtype:
    """The numpy dtype that reads a ctypes type's bytes in place. What numpy cannot say
    rides in dtype metadata: `enum` {value: name}, `ptr`, `int128` (signed), and a
    struct's bit fields `bits` (bpfnb._sys.btf.Bits)."""
    if isinstance(ctype, type) and issubclass(ctype, (ct.Structure, ct.Union)):
        return _record_dtype(ctype)
    if isinstance(ctype, type) and issubclass(ctype, ct.Array):
        if hasattr(ctype, "_bpfnb_int128_"):
            return np.dtype("V16", metadata={"int128": ctype._bpfnb_int128_})
        elem = ctype._type_
        if elem is ct.c_char:
            return np.dtype(f"S{ctype._length_}")
        sub = dtype_of(elem)  # arrays of arrays: one dtype of shape (n, m, ...)
        return np.dtype((sub.base, (ctype._length_, *sub.shape)))
    code = getattr(ctype, "_type_", None)
    if isinstance(code, str):
        base = _CODE_DTYPE.get(code) or np.dtype(code)
        names = getattr(ctype, "_bpfnb_enum_", None)
        if names is not None:
            return np.dtype(base, metadata={"enum": names})
        if getattr(ctype, "_bpfnb_ptr_", False):
            return np.dtype(base, metadata={"ptr": True})
        return base
    raise TypeError(f"cannot read ctypes type {ctype!r} as numpy")


def _record_dtype(ctype: Any) -> np.dtype:
    names, formats, offsets = [], [], []
    bits = list(getattr(ctype, "_bpfnb_bits_", ()))
    anonymous = set(getattr(ctype, "_anonymous_", ()))
    for field in ctype._fields_:
        name, ftype = field[0], field[1]
        if len(field) > 2:  # a ctypes bit field (bcc's description): not addressable
            continue
        offset = getattr(ctype, name).offset
        dtype = dtype_of(ftype)
        if name in anonymous and dtype.names is not None:  # members inline, as in C
            sub = dict(dtype.fields or {})
            for inner in dtype.names:
                if not is_padding(inner):
                    names.append(inner)
                    formats.append(sub[inner][0])
                    offsets.append(offset + sub[inner][1])
            bits.extend(b.shifted(offset * 8) for b in _bits(dtype))
            continue
        names.append(name)
        formats.append(dtype)
        offsets.append(offset)
    spec = {"names": names, "formats": formats, "offsets": offsets,
            "itemsize": ct.sizeof(ctype)}
    if bits:
        return np.dtype(spec, metadata={"bits": tuple(bits)})  # type: ignore[call-overload]
    return np.dtype(spec)  # type: ignore[call-overload]


def _meta(dtype: np.dtype) -> dict[str, Any]:
    return dict(dtype.metadata or {})


def _bits(dtype: np.dtype) -> tuple[Any, ...]:
    return tuple(_meta(dtype).get("bits", ()))


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


def flatten(arr: np.ndarray, name: str, enums: dict[str, dict[str, int]] | None = None
            ) -> dict[str, Any]:
    """Columns of a (possibly structured) array, named as in C: `a.b`, `m[1][2]`,
    `p[0].a`; scalars come out under `name`. Enum columns are categoricals of enumerator
    names; their {name: number} go into `enums` (when given) under the column's name."""
    if arr.ndim > 1:
        return _array_columns(arr, name, enums)
    if arr.dtype.names is not None:
        return _record_columns(arr, name, enums)
    return {name: _leaf(arr, name, enums)}


def _join(name: str, field: str) -> str:
    return f"{name}.{field}" if name else field


def members(dtype: np.dtype) -> list[tuple[str, Any]]:
    """A record's columns in order: (field name, None) for fields (padding left out) and
    (name, Bits) for bit fields, by offset (a union's members in declaration order)."""
    fields = dict(dtype.fields or {})
    found: list[tuple[int, str, Any]] = [
        (fields[f][1] * 8, f, None) for f in dtype.names or () if not is_padding(f)]
    found += [(b.bit_offset, b.name, b) for b in _bits(dtype)]
    found.sort(key=lambda m: m[0])
    return [(name, bits) for _, name, bits in found]


def _record_columns(arr: np.ndarray, name: str, enums: dict[str, dict[str, int]] | None
                    ) -> dict[str, Any]:
    dtype = arr.dtype
    raw = None
    out: dict[str, Any] = {}
    for field, bits in members(dtype):
        col = _join(name, field)
        if bits is None:
            out.update(flatten(arr[field], col, enums))
            continue
        if raw is None:
            raw = np.ascontiguousarray(arr).view(np.uint8).reshape(len(arr), dtype.itemsize)
        values = bitfield(raw, bits.bit_offset, bits.nbits, bits.signed, bits.size)
        out[col] = _enum(values, bits.enum, col, enums) if bits.enum else values
    return out


def bitfield(raw: np.ndarray, bit_offset: int, nbits: int, signed: bool, size: int
             ) -> np.ndarray:
    """A little-endian bit field out of rows of bytes (n, itemsize), as a `size`-byte int."""
    first, shift = divmod(bit_offset, 8)
    nbytes = (shift + nbits + 7) // 8
    acc = np.zeros(len(raw), np.uint64)
    for i in range(min(nbytes, 8)):
        acc |= raw[:, first + i].astype(np.uint64) << np.uint64(8 * i)
    acc >>= np.uint64(shift)
    if nbytes > 8:
        acc |= raw[:, first + 8].astype(np.uint64) << np.uint64(64 - shift)
    if nbits < 64:
        acc &= np.uint64((1 << nbits) - 1)
    width = max(1, min(8, size))
    width = 1 << (width - 1).bit_length()
    if not signed:
        return acc.astype(f"<u{width}")
    out = acc.view(np.int64)
    if nbits < 64:
        sign = np.int64(1 << (nbits - 1))
        out = (out ^ sign) - sign
    return out.astype(f"<i{width}")


def set_bitfield(raw: np.ndarray, bit_offset: int, nbits: int, values: np.ndarray) -> None:
    """Write `values` (ints, two's complement kept to nbits) into a bit field of rows of
    bytes (n, itemsize), leaving the other bits of those bytes as they are."""
    first, shift = divmod(bit_offset, 8)
    mask = (1 << nbits) - 1
    field = np.asarray(values).astype(np.int64).view(np.uint64) & np.uint64(mask)
    for i in range((shift + nbits + 7) // 8):
        lo = 8 * i - shift  # bit of the field that lands on bit 0 of this byte
        part_mask = ((mask << shift) >> (8 * i)) & 0xFF
        part = (field >> np.uint64(lo)) if lo >= 0 else (field << np.uint64(-lo))
        col = raw[:, first + i]
        col &= np.uint8(~part_mask & 0xFF)
        col |= (part & np.uint64(part_mask)).astype(np.uint8)


def _array_columns(arr: np.ndarray, name: str, enums: dict[str, dict[str, int]] | None
                   ) -> dict[str, Any]:
    shape = arr.shape[1:]
    if int(np.prod(shape)) <= SPLIT_ARRAY_MAX:
        out: dict[str, Any] = {}
        for index in np.ndindex(*shape):
            sub = arr[(slice(None), *index)]
            out.update(flatten(sub, name + "".join(f"[{i}]" for i in index), enums))
        return out
    column = np.empty(len(arr), dtype=object)
    column[:] = list(np.array(arr, copy=True))
    return {name: column}


def _leaf(arr: np.ndarray, name: str, enums: dict[str, dict[str, int]] | None) -> Any:
    """One column of scalars: strings, enums, pointers, 128-bit ints, raw bytes, numbers."""
    dtype = arr.dtype
    meta = _meta(dtype)
    if dtype.kind == "S":
        return decode_strings(arr)
    if "enum" in meta:
        return _enum(arr, meta["enum"], name, enums)
    if meta.get("ptr"):
        return np.array([hex(v) for v in arr.tolist()], dtype=object)
    if "int128" in meta:
        return _int128(arr, bool(meta["int128"]))
    if dtype.kind == "V":
        out = np.empty(len(arr), dtype=object)
        out[:] = np.ascontiguousarray(arr).tolist()
        return out
    return np.array(arr, copy=True, order="C")  # never alias the reader's buffers


def _int128(arr: np.ndarray, signed: bool) -> np.ndarray:
    halves = np.ascontiguousarray(arr).view("<u8").reshape(len(arr), 2).tolist()
    top = 1 << 127
    out = np.empty(len(arr), dtype=object)
    out[:] = [(lo | hi << 64) - ((hi << 64 & top) << 1 if signed else 0) for lo, hi in halves]
    return out


def _enum(values: np.ndarray, names: dict[int, str], col: str,
          enums: dict[str, dict[str, int]] | None) -> Any:
    """Enumerator names as a categorical (categories in number order); a number no
    enumerator has is a category of its own (its decimal string), so nothing is lost."""
    values = np.asarray(values)
    numbers = sorted(set(names) | set(np.unique(values).tolist()))
    labels = [names.get(v, str(v)) for v in numbers]
    codes = np.searchsorted(np.array(numbers, dtype=values.dtype), values)
    if enums is not None:
        enums[col] = dict(zip(labels, numbers))
    return pd.Categorical.from_codes(codes, categories=pd.Index(labels))


def enum_numbers(values: np.ndarray, names: dict[int, str]) -> np.ndarray:
    """Enumerator names (and the decimal strings df() shows for other numbers) back to
    numbers; anything else is left for the caller's checks to reject."""
    by_name = {name: number for number, name in names.items()}

    def number(v: Any) -> Any:
        if v in by_name:
            return by_name[v]
        if isinstance(v, str) and v.lstrip("-").isdigit():
            return int(v)
        return v

    out = np.empty(len(values), dtype=object)
    out[:] = [number(v) for v in np.asarray(values, dtype=object).tolist()]
    return out


def decode_strings(arr: np.ndarray) -> Any:
    """char[] columns -> str, cut at the first NUL (bytes after it are garbage); a value
    that is not UTF-8 stays `bytes` (cut at the first NUL too), so nothing is lost.

    Equal values are decoded once: rows are hashed 8 bytes at a time (in place, no copy of
    the strings), grouped with pandas' hash table, the grouping checked byte for byte, and
    each distinct value decoded once. All str: an Arrow-backed pandas str array (pandas'
    own string dtype, no Python object per row); any bytes: an object array."""
    n, width = len(arr), arr.dtype.itemsize
    if n == 0 or width == 0:
        return np.array([""] * n, dtype=object)
    codes, firsts = _group_rows(_words(arr))
    if codes is None:  # a hash collision: decode every row
        return np.array([_decode(b) for b in arr.tolist()], dtype=object)
    distinct = [_decode(b) for b in arr[firsts].tolist()]
    if all(isinstance(d, str) for d in distinct):
        column = _arrow_strings(codes, distinct)
        if column is not None:
            return column
    out = np.empty(len(distinct), dtype=object)
    out[:] = distinct
    return out[codes]


def _words(arr: np.ndarray) -> np.ndarray:
    """Rows of fixed-width bytes as (n, words) u64, a view where the width allows."""
    n, width = len(arr), arr.dtype.itemsize
    words = -(-width // 8)
    if words * 8 == width:
        return arr.view(np.dtype(("<u8", (words,))))  # strided is fine: same itemsize
    rows = np.zeros((n, words * 8), np.uint8)
    rows[:, :width] = np.ascontiguousarray(arr).view(np.uint8).reshape(n, width)
    return rows.view("<u8")


def _group_rows(rows: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """(group of each row, first row of each group) of equal rows of u64 words."""
    h = rows[:, 0] * np.uint64(0x9E3779B97F4A7C15)
    for j in range(1, rows.shape[1]):
        h ^= rows[:, j]
        h *= np.uint64(0xC2B2AE3D27D4EB4F)
    codes, uniques = pd.factorize(h, sort=False)
    del h
    firsts = np.empty(len(uniques), np.int64)
    firsts[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
    first_of = firsts[codes]
    for j in range(rows.shape[1]):
        if not np.array_equal(rows[:, j], rows[first_of, j]):
            return None, firsts
    return codes, firsts


def _arrow_strings(codes: np.ndarray, distinct: list[Any]) -> Any:
    """pandas' default str array (Arrow-backed) of distinct[codes]; None where this pandas
    has no such dtype."""
    import pyarrow as pa

    try:
        dtype = pd.StringDtype("pyarrow", na_value=np.nan)
    except (TypeError, ImportError):
        return None
    taken = pa.array(distinct, pa.large_string()).take(pa.array(codes))
    return pd.array(taken, dtype=dtype)


def _decode(raw: bytes) -> str | bytes:
    cut = raw.split(b"\0", 1)[0]
    try:
        return cut.decode()
    except UnicodeDecodeError:
        return cut


def sum_cpus(values: np.ndarray) -> np.ndarray:
    """Sum per-CPU values (shape (n, cpus)) over CPUs, keeping integer widths. Counters are
    summed (nested struct fields and bit fields too, a bit field wrapping at its width);
    what names rather than counts (enums, pointers, bool, char[]) is CPU 0's."""
    dtype = values.dtype
    if dtype.names is None:
        return values.sum(axis=1, dtype=dtype) if _summable(dtype) else values[:, 0]
    out = np.zeros(values.shape[0], dtype=dtype)
    fields = dict(dtype.fields or {})
    for field in dtype.names:
        col = values[field]
        fdtype = fields[field][0]
        if fdtype.names is not None and not fdtype.shape:
            out[field] = sum_cpus(col)
        elif _summable(fdtype.base) and not is_padding(field):
            out[field] = col.sum(axis=1, dtype=fdtype.base)
        else:
            out[field] = col[:, 0]
    bits = [b for b in _bits(dtype) if not b.enum]
    if bits:
        n, ncpu = values.shape
        raw_in = np.ascontiguousarray(values).view(np.uint8).reshape(n, ncpu, dtype.itemsize)
        raw_out = out.view(np.uint8).reshape(n, dtype.itemsize)
        for b in bits:
            total = sum(bitfield(raw_in[:, c], b.bit_offset, b.nbits, b.signed, 8)
                        for c in range(ncpu))
            set_bitfield(raw_out, b.bit_offset, b.nbits, np.asarray(total))
    return out


def _summable(dtype: np.dtype) -> bool:
    return dtype.kind in "iuf" and not _meta(dtype)
