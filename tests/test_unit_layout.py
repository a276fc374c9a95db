"""Map layouts without a kernel (`bpfnb.data.layout`): ctypes -> numpy dtypes with the C
offsets, DataFrame columns out of them, bit fields, per-CPU sums and char[] decoding."""

from __future__ import annotations

import ctypes as ct
from typing import Any

import numpy as np
import pandas as pd
import pytest
from btfblob import BtfBlob

from bpfnb._sys.btf import Btf, Pointer, int128_type
from bpfnb.data import layout


class Inner(ct.Structure):
    _fields_ = [("a", ct.c_uint8), ("b", ct.c_uint32)]


class Outer(ct.Structure):
    _fields_ = [("id", ct.c_uint16), ("inner", Inner), ("vals", ct.c_int32 * 3),
                ("name", ct.c_char * 5), ("big", ct.c_uint64 * 9)]


class Num(ct.Union):
    _fields_ = [("i", ct.c_int64), ("d", ct.c_double)]


class WithAnon(ct.Structure):
    _anonymous_ = ["u"]
    _fields_ = [("tag", ct.c_uint32), ("u", Num)]


@pytest.mark.parametrize(("ctype", "expected"), [
    (ct.c_uint8, np.dtype("u1")), (ct.c_int16, np.dtype("<i2")),
    (ct.c_uint64, np.dtype("<u8")), (ct.c_float, np.dtype("<f4")),
    (ct.c_char * 7, np.dtype("S7")), (ct.c_uint32 * 4, np.dtype(("<u4", (4,)))),
    ((ct.c_uint16 * 3) * 2, np.dtype(("<u2", (2, 3)))),
])
def test_scalar_and_array_dtypes(ctype: Any, expected: np.dtype) -> None:
    dt = layout.dtype_of(ctype)
    assert dt == expected and dt.itemsize == ct.sizeof(ctype)


@pytest.mark.parametrize(("ctype", "meta"), [
    (Pointer, {"ptr": True}), (int128_type(True), {"int128": True}),
    (int128_type(False), {"int128": False}),
])
def test_metadata_dtypes(ctype: Any, meta: dict[str, Any]) -> None:
    assert dict(layout.dtype_of(ctype).metadata or {}) == meta


def test_struct_dtype_keeps_c_offsets() -> None:
    dt = layout.dtype_of(Outer)
    assert dt.itemsize == ct.sizeof(Outer)
    fields = dict(dt.fields or {})
    assert {n: fields[n][1] for n in dt.names or ()} == {
        n: getattr(Outer, n).offset for n, *_ in Outer._fields_}
    assert fields["inner"][0].fields["b"][1] == Inner.b.offset  # type: ignore[index]


def test_anonymous_union_members_inline() -> None:
    dt = layout.dtype_of(WithAnon)
    assert dt.names == ("tag", "i", "d")
    assert dict(dt.fields or {})["d"][1] == WithAnon.d.offset


def test_unknown_ctype_refused() -> None:
    with pytest.raises(TypeError, match="cannot read ctypes type"):
        layout.dtype_of(object)


def test_columns_named_as_in_c() -> None:
    assert layout.field_names(layout.dtype_of(Outer)) == [
        "id", "inner.a", "inner.b", "vals[0]", "vals[1]", "vals[2]", "name", "big"]
    assert layout.field_names(layout.dtype_of(ct.c_uint32 * 2), "value") == [
        "value[0]", "value[1]"]


def test_flatten_values() -> None:
    arr = np.zeros(2, layout.dtype_of(Outer))
    arr["id"] = [1, 2]
    arr["inner"]["b"] = [10, 20]
    arr["vals"] = [[1, -2, 3], [4, 5, -6]]
    arr["name"] = [b"ab", b"cdefg"]
    arr["big"][1] = np.arange(9)
    cols = layout.flatten(arr, "")
    assert cols["id"].tolist() == [1, 2] and cols["inner.b"].tolist() == [10, 20]
    assert cols["vals[2]"].tolist() == [3, -6]
    assert list(cols["name"]) == ["ab", "cdefg"]
    assert cols["big"][1].tolist() == list(range(9))   # long arrays: one column of arrays


def test_flatten_does_not_alias_the_buffer() -> None:
    arr = np.arange(3, dtype=np.uint32)
    col = layout.flatten(arr, "key")["key"]
    arr[:] = 0
    assert col.tolist() == [0, 1, 2]


def test_pointer_int128_and_enum_columns() -> None:
    b = BtfBlob()
    color = b.enum("color", 4, {"RED": 0, "BLUE": 2})
    btf = Btf(b.blob())
    ptrs = np.array([0xFFFF0000, 0], layout.dtype_of(Pointer))
    assert layout.flatten(ptrs, "p")["p"].tolist() == ["0xffff0000", "0x0"]
    big = np.zeros(2, layout.dtype_of(int128_type(True)))
    big.view(np.uint8)[:16] = np.frombuffer((-(1 << 100)).to_bytes(16, "little", signed=True),
                                            np.uint8)
    assert layout.flatten(big, "v")["v"].tolist() == [-(1 << 100), 0]
    enums: dict[str, dict[str, int]] = {}
    col = layout.flatten(np.array([2, 0, 5], layout.dtype_of(btf.ctype(color))), "c", enums)
    assert isinstance(col["c"], pd.Categorical)
    assert list(col["c"]) == ["BLUE", "RED", "5"]            # unnamed numbers kept
    assert enums == {"c": {"RED": 0, "BLUE": 2, "5": 5}}


@pytest.mark.parametrize(("offset", "nbits", "signed", "value"), [
    (0, 1, False, 1), (3, 5, False, 31), (7, 2, True, -2), (12, 13, True, -4096),
    (30, 34, False, (1 << 34) - 1), (5, 64, False, (1 << 64) - 1), (1, 63, True, -(1 << 62)),
])
def test_bitfield_write_then_read(offset: int, nbits: int, signed: bool, value: int) -> None:
    raw = np.full((2, 16), 0xA5, np.uint8)
    before = raw.copy()
    layout.set_bitfield(raw, offset, nbits, np.array([value, 0], np.int64 if signed else np.uint64))
    assert layout.bitfield(raw, offset, nbits, signed, 8).tolist() == [value, 0]
    bits = np.unpackbits(raw ^ before, axis=1, bitorder="little")
    outside = np.ones(128, bool)
    outside[offset:offset + nbits] = False
    assert not bits[:, outside].any()                       # other bits untouched


def test_bitfield_result_width_follows_declared_size() -> None:
    raw = np.zeros((1, 8), np.uint8)
    assert layout.bitfield(raw, 0, 3, False, 1).dtype == np.dtype("<u1")
    assert layout.bitfield(raw, 0, 3, True, 4).dtype == np.dtype("<i4")


def test_sum_cpus_counts_and_keeps_names() -> None:
    b = BtfBlob()
    u32 = b.int("unsigned int", 4)
    color = b.enum("color", 4, {"RED": 0, "BLUE": 2})
    rec = b.record("stat", 16, [("n", u32, 0, 0), ("bits", u32, 32, 4),
                                ("c", color, 64, 0), ("name", b.array(
                                    b.int("char", 1, char=True), 4, u32), 96, 0)])
    dt = layout.dtype_of(Btf(b.blob()).ctype(rec))
    vals = np.zeros((1, 3), dt)
    vals["n"] = [[1, 2, 3]]
    vals["c"] = [[2, 0, 0]]
    vals["name"] = [[b"cpu0", b"cpu1", b"cpu2"]]
    raw = vals.view(np.uint8).reshape(1, 3, 16)
    for cpu, v in enumerate((7, 8, 9)):                    # 24 wraps at 4 bits: 8
        layout.set_bitfield(raw[:, cpu], 32, 4, np.array([v]))
    total = layout.sum_cpus(vals)
    cols = layout.flatten(total, "")
    assert cols["n"].tolist() == [6] and cols["bits"].tolist() == [24 % 16]
    assert list(cols["c"]) == ["BLUE"] and list(cols["name"]) == ["cpu0"]
    scalars = np.array([[1, 2], [3, 4]], np.uint32)
    assert layout.sum_cpus(scalars).tolist() == [3, 7]
    assert layout.sum_cpus(scalars).dtype == np.uint32


def test_decode_strings() -> None:
    arr = np.array([b"ab\0zz", b"ab\0yy", b"\xff\0a", b"", b"hello"], dtype="S5")
    out = layout.decode_strings(arr)
    assert list(out) == ["ab", "ab", b"\xff", "", "hello"]   # cut at NUL, non-UTF-8 kept
    texts = layout.decode_strings(np.array([b"x", b"y", b"x"], dtype="S3"))
    assert list(texts) == ["x", "y", "x"] and isinstance(texts.dtype, pd.StringDtype)
    assert list(layout.decode_strings(np.zeros(0, "S4"))) == []


def test_padded_and_unpad() -> None:
    dt = layout.padded(np.dtype("<u4"))
    assert dt.itemsize == 8 and dt.names == ("v",)
    arr = np.zeros(2, dt)
    arr["v"] = [5, 6]
    assert layout.unpad(arr, np.dtype("<u4")).tolist() == [5, 6]
    assert layout.padded(np.dtype("<u8")) == np.dtype("<u8")
    rec = layout.dtype_of(Inner)
    assert layout.padded(rec) == rec and layout.padded(rec, 16).itemsize == 16
