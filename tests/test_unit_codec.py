"""The key/value codec (`bpfnb.data.codec.Codec`) without a kernel: every type a map side
can have encodes to the kernel's bytes, decodes back to what df() shows, and that decoded
form (as an object or as DataFrame columns) encodes to the same bytes again."""

from __future__ import annotations

import ctypes as ct
from typing import Any

import numpy as np
import pytest
from btfblob import BtfBlob

from bpfnb._sys.btf import Btf, Pointer
from bpfnb.data.codec import Codec
from bpfnb.data.layout import dtype_of
from bpfnb.errors import KeyTypeError


def _btf_types() -> dict[str, Any]:
    b = BtfBlob()
    u32, s32 = b.int("unsigned int", 4), b.int("int", 4, signed=True)
    u64 = b.int("unsigned long", 8)
    u128, s128 = b.int("unsigned __int128", 16), b.int("__int128", 16, signed=True)
    color = b.enum("color", 4, {"RED": 0, "GREEN": 1, "NONE": -1}, signed=True)
    flags = b.record("flags", 8, [("on", u32, 0, 1), ("level", s32, 1, 4),
                                  ("tint", color, 5, 2), ("count", u32, 32, 0)])
    wide = b.record("wide", 48, [("id", u64, 0, 0), ("u", u128, 128, 0),
                                 ("s", s128, 256, 0)])
    btf = Btf(b.blob())
    return {"color": btf.ctype(color), "flags": btf.ctype(flags), "wide": btf.ctype(wide)}


BTF = _btf_types()


class Pair(ct.Structure):
    _fields_ = [("x", ct.c_uint16), ("y", ct.c_int16)]


class Event(ct.Structure):
    _fields_ = [("pid", ct.c_uint32), ("comm", ct.c_char * 8), ("ts", ct.c_uint64),
                ("at", Pair), ("pairs", Pair * 2), ("grid", (ct.c_uint8 * 2) * 2),
                ("ratio", ct.c_double), ("ok", ct.c_bool)]


EVENT_SHOWN = {"pid": 42, "comm": "bash", "ts": 1 << 40, "at.x": 1, "at.y": -2,
               "pairs[0].x": 3, "pairs[0].y": -4, "pairs[1].x": 5, "pairs[1].y": -6,
               "grid[0][0]": 1, "grid[0][1]": 2, "grid[1][0]": 3, "grid[1][1]": 4,
               "ratio": 0.5, "ok": True}

CASES: list[tuple[str, Any, Any, Any]] = [  # id, ctype, object given, decoded form
    ("u8", ct.c_uint8, 255, 255),
    ("s8", ct.c_int8, -128, -128),
    ("u16", ct.c_uint16, 65535, 65535),
    ("s32", ct.c_int32, -(1 << 31), -(1 << 31)),
    ("u64", ct.c_uint64, (1 << 64) - 1, (1 << 64) - 1),
    ("s64", ct.c_int64, -(1 << 63), -(1 << 63)),
    ("float", ct.c_float, 1.5, 1.5),
    ("double", ct.c_double, -2.25, -2.25),
    ("bool", ct.c_bool, True, True),
    ("pointer", Pointer, 0xFFFF888012345678, "0xffff888012345678"),
    ("pointer-hex", Pointer, "0xffff8880", "0xffff8880"),
    ("char[]", ct.c_char * 8, "bash", "bash"),
    ("char[]-full", ct.c_char * 4, "abcd", "abcd"),
    ("char[]-bytes", ct.c_char * 6, b"\xff\xfe", b"\xff\xfe"),
    ("array", ct.c_uint32 * 3, [1, 2, 3], [1, 2, 3]),
    ("array-long", ct.c_uint16 * 12, list(range(12)), list(range(12))),
    ("array-2d", (ct.c_uint8 * 2) * 3, [[1, 2], [3, 4], [5, 6]], [[1, 2], [3, 4], [5, 6]]),
    ("enum", BTF["color"], "NONE", "NONE"),
    ("enum-number", BTF["color"], 1, "GREEN"),
    ("enum-unnamed", BTF["color"], 7, "7"),
    ("bits", BTF["flags"], {"on": 1, "level": -8, "tint": "NONE", "count": 9},
     {"on": 1, "level": -8, "tint": "NONE", "count": 9}),
    ("bits-tuple", BTF["flags"], (0, 7, "GREEN", 1), {"on": 0, "level": 7, "tint": "GREEN",
                                                      "count": 1}),
    ("int128", BTF["wide"], {"id": 1, "u": (1 << 128) - 1, "s": -(1 << 127)},
     {"id": 1, "u": (1 << 128) - 1, "s": -(1 << 127)}),
    ("struct-nested", Event, {"pid": 42, "comm": "bash", "ts": 1 << 40,
                              "at": {"x": 1, "y": -2}, "pairs": [(3, -4), {"x": 5, "y": -6}],
                              "grid": [[1, 2], [3, 4]], "ratio": 0.5, "ok": True},
     EVENT_SHOWN),
    ("struct-flat", Event, EVENT_SHOWN, EVENT_SHOWN),
]


def codec(ctype: Any) -> Codec:
    return Codec(dtype_of(ctype), "value", "m", ctype)


@pytest.mark.parametrize(("ctype", "given", "shown"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_round_trip(ctype: Any, given: Any, shown: Any) -> None:
    c = codec(ctype)
    raw = c.encode(given)
    assert raw.nbytes == ct.sizeof(ctype)
    assert c.decode(raw) == shown
    assert c.encode(shown).tobytes() == raw.tobytes()
    if isinstance(shown, dict):
        cols = {name: [v] for name, v in shown.items()}
    elif len(c.columns) == 1:             # a scalar, or an array too long to split
        cols = {c.columns[0]: [shown]}
    else:                                 # a small array: a column per element
        cols = {name: [v] for name, v in zip(c.columns, _flat(shown))}
    assert c.from_columns(cols, c.columns, 1).tobytes() == raw.tobytes()


def _flat(value: Any) -> list[Any]:
    if not isinstance(value, list):
        return [value]
    return [x for v in value for x in _flat(v)]


def test_bytes_match_ctypes() -> None:
    given = Event(pid=42, comm=b"bash", ts=1 << 40, at=Pair(1, -2), ratio=0.5, ok=True)
    given.pairs[1] = Pair(5, -6)
    c = codec(Event)
    assert c.encode(given).tobytes() == bytes(given)
    assert c.encode(bytes(given)).tobytes() == bytes(given)
    assert c.decode(c.encode(given))["pairs[1].y"] == -6


def test_bit_fields_land_on_their_bits() -> None:
    raw = codec(BTF["flags"]).encode({"on": 1, "level": -1, "tint": "GREEN", "count": 3})
    word = int.from_bytes(raw.tobytes()[:4], "little")
    assert (word & 1, word >> 1 & 0xF, word >> 5 & 3) == (1, 0xF, 1)
    assert raw.tobytes()[4:] == (3).to_bytes(4, "little")


def test_int128_bytes_are_little_endian_twos_complement() -> None:
    raw = codec(BTF["wide"]).encode({"id": 0, "u": 1 << 64, "s": -2}).tobytes()
    assert raw[16:32] == (1 << 64).to_bytes(16, "little")
    assert raw[32:48] == b"\xfe" + b"\xff" * 15


@pytest.mark.parametrize(("ctype", "given", "message"), [
    (ct.c_uint8, 256, "256 is outside uint8 [0, 255]"),
    (ct.c_int16, "3", "'3' is not an int (int16)"),
    (ct.c_uint32, True, "True is not an int (uint32)"),
    (ct.c_bool, 2, "2 is not a bool"),
    (ct.c_double, "x", "'x' is not a number"),
    (ct.c_float, 1e300, "1e+300 is outside float32's range"),
    (ct.c_double, 10**400, "is outside float64's range"),
    (ct.c_char * 4, "toolong", "'toolong' is longer than char[4]"),
    (ct.c_uint32 * 2, [1, 2, 3], "3 items for an array of 2"),
    (Pointer, "nothex", "'nothex' is not a pointer"),
    (BTF["flags"], {"on": 2, "level": 0, "tint": 0, "count": 0},
     "2 for on is outside its 1-bit field [0, 1]"),
    (BTF["flags"], {"on": 0, "level": -9, "tint": 0, "count": 0},
     "-9 for level is outside its 4-bit field [-8, 7]"),
    (BTF["wide"], {"id": 0, "u": -1, "s": 0}, "-1 for u is outside uint128"),
    (BTF["wide"], {"id": 0, "u": 0, "s": 1 << 127}, "for s is outside int128"),
    (Pair, {"x": 1}, "missing y"),
    (Pair, {"x": 1, "y": 2, "z": 3}, "unknown z"),
    (Pair, (1, 2, 3), "3 items for 2 fields"),
    (Pair, 5, "a int where a struct is wanted"),
])
def test_what_does_not_fit(ctype: Any, given: Any, message: str) -> None:
    with pytest.raises(KeyTypeError, match="does not fit map 'm'") as e:
        codec(ctype).encode(given)
    assert message in str(e.value)


@pytest.mark.parametrize(("ctype", "expected"), [
    (ct.c_uint32, "int (uint32)"),
    (ct.c_char * 16, "char[16] (str)"),
    ((ct.c_uint8 * 2) * 3, "int (uint8)[3][2]"),
    (Pair, "a dict or tuple with fields {x: int (uint16), y: int (int16)} (or a ctypes Pair)"),
])
def test_expected_shape_in_messages(ctype: Any, expected: str) -> None:
    assert codec(ctype).expected() == expected


def test_from_columns_names_every_bad_row() -> None:
    c = codec(Pair)
    with pytest.raises(KeyTypeError) as e:
        c.from_columns({"x": np.array([1, 70000, 3]), "y": np.array([0, 0, 40000])},
                       ["x", "y"], 3)
    text = str(e.value)
    assert text.startswith("2 of 3 rows do not fit map 'm'; nothing was written.")
    assert "row 1, column 'x'" in text and "row 2, column 'y'" in text


def test_hidden_lock_fields_are_neither_shown_nor_required() -> None:
    class bpf_spin_lock(ct.Structure):  # the kernel's type name is what hides the field
        _fields_ = [("val", ct.c_uint32)]

    class Locked(ct.Structure):
        _fields_ = [("lock", bpf_spin_lock), ("n", ct.c_uint32)]

    c = codec(Locked)
    assert c.columns == ["n"]
    raw = c.encode({"n": 5})
    assert c.decode(raw) == {"n": 5} and raw.tobytes() == bytes(4) + (5).to_bytes(4, "little")


@pytest.mark.parametrize(("ctype", "key", "columns", "shown"), [
    (ct.c_uint32, 7, ["key"], 7),
    (ct.c_char * 16, "bash", ["key"], "bash"),
    (ct.c_uint8 * 4, [10, 0, 0, 1], ["key[0]", "key[1]", "key[2]", "key[3]"], [10, 0, 0, 1]),
    (Pair, (1, -1), ["x", "y"], {"x": 1, "y": -1}),
], ids=["u32", "comm", "ipv4", "struct"])
def test_key_codec(ctype: Any, key: Any, columns: list[str], shown: Any) -> None:
    c = Codec(dtype_of(ctype), "key", "by_pid", ctype)
    assert c.columns == columns
    keys = c.encode_many([key, key])
    assert len(keys) == 2 and c.decode_many(keys) == [shown, shown]
    with pytest.raises(KeyTypeError, match=r"^key .* does not fit map 'by_pid'"):
        c.encode(object())
