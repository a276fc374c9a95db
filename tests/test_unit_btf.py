"""BTF decoding (`bpfnb._sys.btf.Btf`) of raw blobs written byte by byte (tests/btfblob.py):
every kind that has a layout, bit fields in both encodings, enums, anonymous members,
padding, and the errors a bad blob gives; then clang's BTF of a struct (a committed fixture)
read against the same struct as gcc lays it out."""

from __future__ import annotations

import ctypes as ct
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from btfblob import BtfBlob

from bpfnb._sys.btf import Bits, Btf, BtfError, BtfKind, Pointer, enum_names, is_raw
from bpfnb.data.codec import Codec
from bpfnb.data.layout import dtype_of


class Fixture:
    """One blob with the types a BPF map's key or value may use."""

    def __init__(self) -> None:
        b = self.b = BtfBlob()
        self.u8 = b.int("unsigned char", 1)
        self.s8 = b.int("signed char", 1, signed=True)
        self.char = b.int("char", 1, signed=True, char=True)
        self.boolean = b.int("_Bool", 1, boolean=True)
        self.u16 = b.int("unsigned short", 2)
        self.s32 = b.int("int", 4, signed=True)
        self.u32 = b.int("unsigned int", 4)
        self.s64 = b.int("long", 8, signed=True)
        self.u64 = b.int("unsigned long", 8)
        self.u128 = b.int("unsigned __int128", 16)
        self.s128 = b.int("__int128", 16, signed=True)
        self.odd = b.int("u24", 3)
        self.f32 = b.float("float", 4)
        self.f64 = b.float("double", 8)
        self.ptr = b.ptr(self.u64)
        self.typedef = b.alias(BtfKind.TYPEDEF, self.u32, "__u32")
        self.const = b.alias(BtfKind.CONST, self.typedef)
        self.comm = b.array(self.char, 16, self.u32)
        self.color = b.enum("color", 4, {"RED": 0, "GREEN": 1, "NONE": -1}, signed=True)
        self.big = b.enum("big", 8, {"SMALL": 1, "HUGE": 1 << 40})
        self.event = b.record("event", 40, [("pid", self.const, 0, 0),
                                            ("ts", self.u64, 64, 0),
                                            ("comm", self.comm, 128, 0),
                                            ("color", self.color, 256, 0)])
        self.flags = b.record("flags", 8, [("a", self.u32, 0, 3), ("b", self.u32, 3, 5),
                                           ("c", self.s32, 8, 4), ("d", self.color, 12, 2),
                                           ("tail", self.u32, 32, 0)])
        self.narrow = b.int("unsigned int", 4, bits=3)          # kind_flag 0 bit field type
        self.old_bits = b.record("old_bits", 4, [("x", self.u16, 0, 0),
                                                 ("y", self.narrow, 17, 0)])
        self.inner = b.record("", 8, [("lo", self.u32, 0, 0), ("hi", self.u32, 32, 0)])
        self.num = b.record("", 8, [("i", self.s64, 0, 0), ("d", self.f64, 0, 0)], union=True)
        self.nested = b.record("nested", 24, [("", self.inner, 0, 0), ("", self.num, 64, 0),
                                              ("last", self.u8, 128, 0)])
        self.wide = b.record("wide", 16, [("u", self.s64, 0, 0)], union=True)
        self.flex = b.array(self.u32, 0, self.u32)
        self.msg = b.record("msg", 4, [("len", self.u32, 0, 0), ("data", self.flex, 32, 0)])
        self.proto = b.func_proto(self.s32, [("ctx", self.ptr), ("n", self.u32)])
        self.func = b.add(BtfKind.FUNC, "handler", 0, self.proto)
        self.btf = Btf(b.blob(), 7, "fixture")


@pytest.fixture(scope="module")
def fx() -> Fixture:
    return Fixture()


def test_every_type_parsed_in_id_order(fx: Fixture) -> None:
    types = fx.btf.types()
    assert len(fx.btf) == len(types) == fx.func + 1
    assert [t.id for t in types] == list(range(fx.func + 1))
    assert types[0].kind == BtfKind.VOID
    assert (types[fx.event].kind, types[fx.event].name, types[fx.event].vlen) == (
        BtfKind.STRUCT, "event", 4)
    assert fx.btf.find("event") == fx.event
    assert fx.btf.find("unsigned int", BtfKind.INT) == fx.u32
    with pytest.raises(KeyError):
        fx.btf.find("nothing")


@pytest.mark.parametrize(("attr", "expected"), [
    ("u8", ct.c_uint8), ("s8", ct.c_int8), ("char", ct.c_char), ("boolean", ct.c_bool),
    ("u16", ct.c_uint16), ("s32", ct.c_int32), ("u32", ct.c_uint32), ("s64", ct.c_int64),
    ("u64", ct.c_uint64), ("f32", ct.c_float), ("f64", ct.c_double), ("ptr", Pointer),
    ("typedef", ct.c_uint32), ("const", ct.c_uint32),
])
def test_scalar_ctypes(fx: Fixture, attr: str, expected: Any) -> None:
    assert fx.btf.ctype(getattr(fx, attr)) is expected


@pytest.mark.parametrize(("attr", "signed"), [("u128", False), ("s128", True)])
def test_int128_is_16_bytes_marked_with_its_sign(fx: Fixture, attr: str, signed: bool) -> None:
    t = fx.btf.ctype(getattr(fx, attr))
    assert ct.sizeof(t) == 16 and t._bpfnb_int128_ is signed and not is_raw(t)


def test_odd_sized_int_is_raw_bytes(fx: Fixture) -> None:
    t = fx.btf.ctype(fx.odd)
    assert is_raw(t) and ct.sizeof(t) == 3


def test_char_array(fx: Fixture) -> None:
    t = fx.btf.ctype(fx.comm)
    assert t._type_ is ct.c_char and t._length_ == 16


@pytest.mark.parametrize(("attr", "values", "base"), [
    ("color", {0: "RED", 1: "GREEN", -1: "NONE"}, ct.c_int32),
    ("big", {1: "SMALL", 1 << 40: "HUGE"}, ct.c_uint64),
])
def test_enums(fx: Fixture, attr: str, values: dict[int, str], base: Any) -> None:
    type_id = getattr(fx, attr)
    assert fx.btf.enum_values(type_id) == values
    t = fx.btf.ctype(type_id)
    assert issubclass(t, base) and enum_names(t) == values


def test_struct_layout_with_padding(fx: Fixture) -> None:
    t = fx.btf.ctype(fx.event)
    assert ct.sizeof(t) == 40
    assert [(n, getattr(t, n).offset) for n, _ in t._fields_] == [
        ("pid", 0), ("__pad_4", 4), ("ts", 8), ("comm", 16), ("color", 32), ("__pad_36", 36)]
    assert t._bpfnb_bits_ == []


def test_bit_fields_kind_flag_encoding(fx: Fixture) -> None:
    t = fx.btf.ctype(fx.flags)
    colors = {0: "RED", 1: "GREEN", -1: "NONE"}
    assert t._bpfnb_bits_ == [Bits("a", 0, 3, False, 4), Bits("b", 3, 5, False, 4),
                              Bits("c", 8, 4, True, 4), Bits("d", 12, 2, True, 4, colors)]
    assert [(n, getattr(t, n).offset) for n, _ in t._fields_] == [("__pad_0", 0), ("tail", 4)]


def test_bit_fields_int_encoding(fx: Fixture) -> None:
    t = fx.btf.ctype(fx.old_bits)
    assert t._bpfnb_bits_ == [Bits("y", 17, 3, False, 4)]
    assert [n for n, _ in t._fields_] == ["x", "__pad_2"]


def test_anonymous_struct_inlined_and_anonymous_union_kept(fx: Fixture) -> None:
    t = fx.btf.ctype(fx.nested)
    assert [(n, getattr(t, n).offset) for n, _ in t._fields_] == [
        ("lo", 0), ("hi", 4), ("_anon0", 8), ("last", 16), ("__pad_17", 17)]
    assert t._anonymous_ == ["_anon0"]
    v = t(lo=1, hi=2)
    v.i = -5                                          # through the anonymous union
    assert (v.lo, v.hi, v._anon0.i) == (1, 2, -5)


def test_union_padded_to_its_size(fx: Fixture) -> None:
    t = fx.btf.ctype(fx.wide)
    assert issubclass(t, ct.Union) and ct.sizeof(t) == 16
    assert [n for n, _ in t._fields_] == ["u", "__pad_end"]


def test_flexible_array_member_left_out(fx: Fixture) -> None:
    t = fx.btf.ctype(fx.msg)
    assert [n for n, _ in t._fields_] == ["len"] and ct.sizeof(t) == 4


@pytest.mark.parametrize(("attr", "text"), [
    ("event", "struct event"), ("comm", "char[16]"), ("ptr", "unsigned long *"),
    ("color", "enum color"), ("big", "enum big"), ("typedef", "__u32"), ("inner", "struct (anon)"),
    ("num", "union (anon)"),
])
def test_describe(fx: Fixture, attr: str, text: str) -> None:
    assert fx.btf.describe(getattr(fx, attr)) == text


def test_resolve_size_members_params(fx: Fixture) -> None:
    assert fx.btf.resolve(fx.const).id == fx.u32
    assert [fx.btf.size(x) for x in (fx.const, fx.ptr, fx.comm, fx.event)] == [4, 8, 16, 40]
    assert [(m.name, m.bit_offset, m.bitfield_size) for m in fx.btf.members(fx.flags)][:2] == [
        ("a", 0, 3), ("b", 3, 5)]
    assert fx.btf.params(fx.proto) == [("ctx", fx.ptr), ("n", fx.u32)]


def test_from_file(fx: Fixture, tmp_path: Any) -> None:
    path = tmp_path / "fixture.btf"
    path.write_bytes(fx.b.blob())
    btf = Btf.from_file(str(path))
    assert btf.name == str(path) and btf.describe(fx.event) == "struct event"


def _loop() -> bytes:
    b = BtfBlob()
    b.alias(BtfKind.TYPEDEF, 1, "self")
    return b.blob()


def _unknown_kind() -> bytes:
    b = BtfBlob()
    b.add(BtfKind.INT, "x", raw_kind=25)
    return b.blob()


def _too_small() -> bytes:
    b = BtfBlob()
    u32 = b.int("u32", 4)
    b.record("short", 3, [("v", u32, 0, 0)])
    return b.blob()


@pytest.mark.parametrize(("blob", "type_id", "message"), [
    (b"\x9f\xeb", 0, "too short for a header"),
    (b"\xeb\x9f" + bytes(22), 0, "has magic 0x9feb, not 0xeb9f"),
    (_unknown_kind(), 0, "type 1 has unknown kind 25"),
    (_loop(), 1, "type 1 is a loop of typedefs"),
    (_too_small(), 2, "struct short is 3 bytes but its ctypes layout is 4"),
    (BtfBlob().blob(), 3, "has no type 3 (it has 0)"),
], ids=["short", "magic", "kind", "loop", "size", "missing"])
def test_bad_blobs(blob: bytes, type_id: int, message: str) -> None:
    with pytest.raises(BtfError, match=re.escape(message)):
        btf = Btf(blob, 5)
        if type_id == 1:
            btf.resolve(type_id)
        btf.ctype(type_id)


def test_function_has_no_layout(fx: Fixture) -> None:
    with pytest.raises(BtfError, match=re.escape("FUNC ('handler'), which has no data layout")):
        fx.btf.ctype(fx.func)


# -- BTF as clang writes it --------------------------------------------------------------

FIXTURES = Path(__file__).parent / "fixtures" / "btf"


@pytest.fixture(scope="module")
def gcc_event(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """struct event as gcc lays it out: sizeof, field offsets and one value's bytes."""
    if shutil.which("gcc") is None:
        pytest.skip("no gcc to lay out struct event for comparison")
    exe = tmp_path_factory.mktemp("event") / "event_bytes"
    subprocess.run(["gcc", "-I", str(FIXTURES), "-o", str(exe),
                    str(FIXTURES / "event_bytes.c")], check=True)
    lines = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    out: dict[str, Any] = {}
    for line in lines.splitlines():
        key, value = line.split()
        out[key] = bytes.fromhex(value) if key == "bytes" else int(value)
    return out


def test_clang_btf_layout_is_gccs(gcc_event: dict[str, Any]) -> None:
    btf = Btf.from_file(str(FIXTURES / "event.btf"))
    event = btf.ctype(btf.find("event", BtfKind.STRUCT))
    assert ct.sizeof(event) == gcc_event["size"]
    for name in ("pid", "ts", "comm", "f", "i", "ports", "big", "state"):
        assert getattr(event, name).offset == gcc_event[name], name


def test_clang_btf_decodes_gcc_bytes(gcc_event: dict[str, Any]) -> None:
    btf = Btf.from_file(str(FIXTURES / "event.btf"))
    event = btf.ctype(btf.find("event", BtfKind.STRUCT))
    c = Codec(dtype_of(event), "value", "events", event)
    raw = np.frombuffer(gcc_event["bytes"], dtype_of(event))
    decoded = c.decode(raw)
    assert struct.pack("<d", decoded.pop("d")) == struct.pack("<q", -7)  # the union's other view
    assert decoded == {
        "pid": 4242, "ts": 1 << 40, "comm": "bash", "f.on": 1, "f.level": -3,
        "f.st": "RUNNING", "f.rest": 0x1ABCDEF, "i": -7, "ports[0]": 80, "ports[1]": 443,
        "ports[2]": 8080, "big": -(1 << 100), "state": "BLOCKED"}
    assert c.encode(c.decode(raw)).tobytes() == gcc_event["bytes"]
