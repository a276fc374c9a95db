"""BTF (BPF Type Format) -> ctypes types, to decode maps bpfnb did not create.

A map created with BTF names the types of its key and value (`btf_key_type_id`,
`btf_value_type_id`) inside a BTF object (`btf_id`). `Btf.from_id` fetches that object
through bpf(2); `Btf.ctype` turns a type id into a ctypes type with the same size and field
offsets, which bpfnb.data.layout reads as numpy:

- integers keep their size and signedness; `char` becomes c_char so `char[]` reads as str;
  `_Bool` -> c_bool; 128-bit integers -> 16 bytes marked `_bpfnb_int128_` (signedness);
  `long double` -> raw bytes
- structs and unions keep every field offset (explicit padding, `_pack_ = 1`); anonymous
  struct members are inlined, anonymous unions become a field named in `_anonymous_`
  (bpfnb.data.layout inlines their members, as C and bpftool name them)
- bit fields are not ctypes fields (their bytes become padding); the struct lists them in
  `_bpfnb_bits_` as `Bits` and bpfnb.data.layout reads each as a column
- arrays -> ctypes arrays; enums -> integers whose type carries `_bpfnb_enum_` {value: name}
- typedef / const / volatile / restrict / type tags resolve to their target
- pointers -> `Pointer` (a c_uint64 marked as an address, shown as hex)

Maps without BTF read as raw bytes (`raw_type(size)`).
"""

from __future__ import annotations

import ctypes as ct
import dataclasses
import enum
import struct
from dataclasses import dataclass, field
from typing import Any

from bpfnb._sys import bpfobjs, bpfsys, errnos
from bpfnb.errors import BpfnbError, BtfError, MapLayoutError

BTF_MAGIC = 0xEB9F
_HEADER = struct.Struct("<HBBIIIII")  # magic version flags hdr_len type_off type_len str_off len
_TYPE = struct.Struct("<III")  # name_off info size_or_type


class BtfKind(enum.IntEnum):
    VOID = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


# bytes after struct btf_type: (fixed, per vlen item)
_TRAILER: dict[int, tuple[int, int]] = {
    BtfKind.INT: (4, 0), BtfKind.ARRAY: (12, 0), BtfKind.STRUCT: (0, 12),
    BtfKind.UNION: (0, 12), BtfKind.ENUM: (0, 8), BtfKind.FUNC_PROTO: (0, 8),
    BtfKind.VAR: (4, 0), BtfKind.DATASEC: (0, 12), BtfKind.DECL_TAG: (4, 0),
    BtfKind.ENUM64: (0, 12),
}
_ALIASES = frozenset({BtfKind.TYPEDEF, BtfKind.VOLATILE, BtfKind.CONST, BtfKind.RESTRICT,
                      BtfKind.TYPE_TAG})
_SIZED = frozenset({BtfKind.INT, BtfKind.STRUCT, BtfKind.UNION, BtfKind.ENUM, BtfKind.FLOAT,
                    BtfKind.DATASEC, BtfKind.ENUM64})

INT_SIGNED, INT_CHAR, INT_BOOL = 1, 2, 4
_INTS: dict[tuple[int, bool], Any] = {
    (1, False): ct.c_uint8, (1, True): ct.c_int8, (2, False): ct.c_uint16,
    (2, True): ct.c_int16, (4, False): ct.c_uint32, (4, True): ct.c_int32,
    (8, False): ct.c_uint64, (8, True): ct.c_int64,
}
_FLOATS: dict[int, Any] = {4: ct.c_float, 8: ct.c_double}


@dataclass(frozen=True)
class BtfType:
    """One entry of the type section."""

    id: int
    kind: BtfKind
    name: str
    vlen: int
    kind_flag: bool
    size_or_type: int
    extra: int  # offset of the trailing data in the type section


@dataclass(frozen=True)
class Member:
    name: str
    type: int
    bit_offset: int
    bitfield_size: int


class Pointer(ct.c_uint64):
    """A pointer member: an address in another address space, read as a u64."""

    _bpfnb_ptr_ = True


@dataclass(frozen=True)
class Bits:
    """A bit field: `nbits` bits at `bit_offset` from the start of its struct."""

    name: str
    bit_offset: int
    nbits: int
    signed: bool
    size: int  # bytes of the declared type: the column's width
    enum: dict[int, str] | None = None

    def shifted(self, bits: int) -> Bits:
        return dataclasses.replace(self, bit_offset=self.bit_offset + bits)


def int128_type(signed: bool) -> Any:
    """16 bytes read as one Python int (numpy has no 128-bit integers)."""
    return _INT128[signed]


def raw_type(size: int) -> Any:
    """The ctypes type of `size` undecoded bytes."""
    return ct.c_ubyte * size


def is_raw(ctype: Any) -> bool:
    return (isinstance(ctype, type) and issubclass(ctype, ct.Array)
            and ctype._type_ is ct.c_ubyte and not hasattr(ctype, "_bpfnb_int128_"))


def enum_names(ctype: Any) -> dict[int, str] | None:
    """{value: name} of an enum type made by `Btf.ctype`, else None."""
    return getattr(ctype, "_bpfnb_enum_", None)


@dataclass
class Btf:
    """A parsed BTF object. `ctype(type_id)` builds (and caches) ctypes types."""

    data: bytes
    id: int = 0
    name: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.data) < _HEADER.size:
            raise BtfError(f"BTF object {self.id} is {len(self.data)} bytes, too short for a "
                           "header; it cannot be decoded (read the map as raw bytes)")
        magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = \
            _HEADER.unpack_from(self.data)
        if magic != BTF_MAGIC:
            raise BtfError(f"BTF object {self.id} has magic {magic:#x}, not {BTF_MAGIC:#x} "
                           "(big-endian BTF is not supported); read the map as raw bytes")
        self._types = self.data[hdr_len + type_off: hdr_len + type_off + type_len]
        self._strings = self.data[hdr_len + str_off: hdr_len + str_off + str_len]
        self._index: list[BtfType] = [BtfType(0, BtfKind.VOID, "void", 0, False, 0, 0)]
        self._ctypes: dict[int, Any] = {}
        self._parse()

    # -- loading ------------------------------------------------------------------------
    @classmethod
    def from_id(cls, btf_id: int) -> Btf:
        """Fetch BTF object `btf_id` from the kernel (BPF_BTF_GET_FD_BY_ID + info); the
        last few are cached (ids are not reused while the kernel has ids to spare)."""
        cached = _CACHE.get(btf_id)
        if cached is None:
            cached = _CACHE[btf_id] = cls._fetch(btf_id)
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.pop(next(iter(_CACHE)))
        return cached

    @classmethod
    def _fetch(cls, btf_id: int) -> Btf:
        try:
            with bpfobjs.opened(bpfobjs.Kind.BTF, btf_id) as fd:
                info, data, name = bpfobjs.btf_data(fd)
        except OSError as e:
            raise errnos.translate(e, f"read BTF object {btf_id}") from e
        if info.kernel_btf and name != "vmlinux":
            raise BtfError(f"BTF object {btf_id} is kernel module BTF ({name}), which builds "
                           "on vmlinux BTF; bpfnb decodes standalone map BTF only")
        return cls(data, btf_id, name)

    @classmethod
    def from_file(cls, path: str) -> Btf:
        """Parse a raw BTF file such as /sys/kernel/btf/vmlinux."""
        with open(path, "rb") as f:
            return cls(f.read(), 0, path)

    def _parse(self) -> None:
        buf, pos, n = self._types, 0, 1
        while pos < len(buf):
            name_off, info, size_or_type = _TYPE.unpack_from(buf, pos)
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            try:
                bkind = BtfKind(kind)
            except ValueError:
                raise BtfError(f"BTF object {self.id}: type {n} has unknown kind {kind}; "
                               "this kernel's BTF is newer than bpfnb") from None
            fixed, per = _TRAILER.get(bkind, (0, 0))
            self._index.append(BtfType(n, bkind, self.string(name_off), vlen,
                                       bool(info >> 31), size_or_type, pos + _TYPE.size))
            pos += _TYPE.size + fixed + per * vlen
            n += 1

    # -- lookups ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._index)

    def types(self) -> list[BtfType]:
        """Every type, in id order (id 0 is void)."""
        return list(self._index)

    def string(self, offset: int) -> str:
        end = self._strings.find(b"\0", offset)
        return self._strings[offset: end if end >= 0 else None].decode(errors="replace")

    def type(self, type_id: int) -> BtfType:
        if not 0 <= type_id < len(self._index):
            raise BtfError(f"BTF object {self.id} has no type {type_id} (it has "
                           f"{len(self._index) - 1}); the map's BTF may be split BTF")
        return self._index[type_id]

    def find(self, name: str, kind: BtfKind | None = None) -> int:
        """The id of the first type called `name` (of `kind`, if given)."""
        for t in self._index:
            if t.name == name and (kind is None or t.kind == kind):
                return t.id
        raise KeyError(name)

    def resolve(self, type_id: int) -> BtfType:
        """The type behind typedefs and qualifiers."""
        t = self.type(type_id)
        for _ in range(64):
            if t.kind not in _ALIASES:
                return t
            t = self.type(t.size_or_type)
        raise BtfError(f"BTF object {self.id}: type {type_id} is a loop of typedefs")

    def _u32s(self, t: BtfType, count: int, at: int = 0) -> tuple[int, ...]:
        return struct.unpack_from(f"<{count}I", self._types, t.extra + at)

    def size(self, type_id: int) -> int:
        t = self.resolve(type_id)
        if t.kind in _SIZED:
            return t.size_or_type
        if t.kind == BtfKind.PTR:
            return 8
        if t.kind == BtfKind.ARRAY:
            elem, _index, nelems = self._u32s(t, 3)
            return self.size(elem) * nelems
        raise BtfError(f"BTF type {type_id} ({t.kind.name} {t.name!r}) has no size")

    def members(self, type_id: int) -> list[Member]:
        t = self.resolve(type_id)
        out = []
        for i in range(t.vlen):
            name_off, mtype, offset = self._u32s(t, 3, 12 * i)
            bits, bit_offset = (offset >> 24, offset & 0xFFFFFF) if t.kind_flag else (0, offset)
            if not t.kind_flag:
                bits = self._int_bitfield(mtype)
            out.append(Member(self.string(name_off), mtype, bit_offset, bits))
        return out

    def _int_bitfield(self, type_id: int) -> int:
        """Bit width of an int member declared narrower than its type (kind_flag 0 BTF)."""
        t = self.resolve(type_id)
        if t.kind != BtfKind.INT:
            return 0
        (enc,) = self._u32s(t, 1)
        nbits = enc & 0xFF
        return nbits if nbits != t.size_or_type * 8 or (enc >> 16) & 0xFF else 0

    def enum_values(self, type_id: int) -> dict[int, str]:
        t = self.resolve(type_id)
        signed = t.kind_flag
        out: dict[int, str] = {}
        for i in range(t.vlen):
            if t.kind == BtfKind.ENUM64:
                name_off, lo, hi = self._u32s(t, 3, 12 * i)
                value = lo | hi << 32
                bits = 64
            else:
                name_off, value = self._u32s(t, 2, 8 * i)
                bits = 32
            if signed and value >> (bits - 1):
                value -= 1 << bits
            out[value] = self.string(name_off)
        return out

    def params(self, proto_id: int) -> list[tuple[str, int]]:
        """(name, type id) of each parameter of FUNC_PROTO `proto_id`."""
        t = self.type(proto_id)
        words = self._u32s(t, 2 * t.vlen) if t.kind == BtfKind.FUNC_PROTO else ()
        return [(self.string(words[i]), words[i + 1]) for i in range(0, len(words), 2)]

    def describe(self, type_id: int) -> str:
        """A short C spelling of a type: 'struct key_t', 'u64', 'char[16]'."""
        t = self.type(type_id)
        if t.kind == BtfKind.VOID:
            return "void"
        if t.kind == BtfKind.ARRAY:
            elem, _index, nelems = self._u32s(t, 3)
            return f"{self.describe(elem)}[{nelems}]"
        if t.kind == BtfKind.PTR:
            return f"{self.describe(t.size_or_type)} *"
        prefix = {BtfKind.STRUCT: "struct ", BtfKind.UNION: "union ", BtfKind.ENUM: "enum ",
                  BtfKind.ENUM64: "enum "}.get(t.kind, "")
        return f"{prefix}{t.name or '(anon)'}"

    # -- ctypes -------------------------------------------------------------------------
    def ctype(self, type_id: int) -> Any:
        """A ctypes type laid out like BTF type `type_id` (cached)."""
        if type_id not in self._ctypes:
            t = self.type(type_id)
            build = _BUILDERS.get(t.kind)
            if build is None:
                raise BtfError(f"BTF type {type_id} is a {t.kind.name} ({t.name!r}), which "
                               "has no data layout; bpfnb reads it as raw bytes")
            self._ctypes[type_id] = build(self, t)
        return self._ctypes[type_id]

    def _int(self, t: BtfType) -> Any:
        (enc,) = self._u32s(t, 1)
        flags, size = enc >> 24 & 0xF, t.size_or_type
        if flags & INT_BOOL and size == 1:
            return ct.c_bool
        if size == 1 and (flags & INT_CHAR or t.name == "char"):
            return ct.c_char
        if size == 16:
            return int128_type(bool(flags & INT_SIGNED))
        return _INTS.get((size, bool(flags & INT_SIGNED))) or raw_type(size)

    def _float(self, t: BtfType) -> Any:
        return _FLOATS.get(t.size_or_type) or raw_type(t.size_or_type)

    def _ptr(self, t: BtfType) -> Any:
        return Pointer

    def _alias(self, t: BtfType) -> Any:
        return self.ctype(t.size_or_type)

    def _array(self, t: BtfType) -> Any:
        elem, _index, nelems = self._u32s(t, 3)
        return self.ctype(elem) * nelems

    def _enum(self, t: BtfType) -> Any:
        base = _INTS.get((t.size_or_type, t.kind_flag)) or raw_type(t.size_or_type)
        if base is None or is_raw(base):
            return base
        name = t.name or f"anon_enum_{t.id}"
        return type(name, (base,), {"_bpfnb_enum_": self.enum_values(t.id)})

    def _record(self, t: BtfType) -> Any:
        size = t.size_or_type
        union = t.kind == BtfKind.UNION
        bits: list[Bits] = []
        fields = self._union_fields(t, bits) if union else self._struct_fields(t, 0, bits)
        fields = _padded_fields(fields, size, union)
        base = ct.Union if union else ct.Structure
        kind = "union" if union else "struct"
        name = t.name or f"anon_{kind}_{t.id}"
        anonymous = [n for n, c, _ in fields if n.startswith("_anon") and n[5:].isdigit()]
        cls = type(name, (base,), {"_pack_": 1, "_layout_": "ms",
                                   "_fields_": [(n, c) for n, c, _ in fields],
                                   "_anonymous_": anonymous, "_bpfnb_bits_": bits})
        if ct.sizeof(cls) != size:
            raise BtfError(f"BTF {kind} {name} is {size} bytes but its ctypes layout is "
                           f"{ct.sizeof(cls)}; report this with the map's `bpftool btf dump`")
        return cls

    def _bits(self, m: Member, base_bits: int) -> Bits:
        target = self.resolve(m.type)
        signed = False
        if target.kind == BtfKind.INT:
            (enc,) = self._u32s(target, 1)
            signed = bool(enc >> 24 & INT_SIGNED)
        elif target.kind in (BtfKind.ENUM, BtfKind.ENUM64):
            signed = target.kind_flag
        enum = self.enum_values(target.id) if target.kind in (BtfKind.ENUM,
                                                              BtfKind.ENUM64) else None
        nbits = m.bitfield_size or self.size(m.type) * 8
        return Bits(m.name, base_bits + m.bit_offset, nbits, signed, self.size(m.type), enum)

    def _struct_fields(self, t: BtfType, base: int, bits: list[Bits]
                       ) -> list[tuple[str, Any, int]]:
        """(name, ctype, byte offset) of a struct's addressable members, anonymous structs
        inlined, flexible arrays left out; bit fields go to `bits`."""
        out: list[tuple[str, Any, int]] = []
        anon = 0
        for m in self.members(t.id):
            if m.bitfield_size or m.bit_offset % 8:
                bits.append(self._bits(m, base * 8))
                continue
            offset = base + m.bit_offset // 8
            target = self.resolve(m.type)
            if not m.name and target.kind == BtfKind.STRUCT:
                out.extend(self._struct_fields(target, offset, bits))
                continue
            ctype = self.ctype(m.type)
            if ct.sizeof(ctype) == 0:
                continue  # flexible array member
            name = m.name
            if not name:
                name, anon = f"_anon{anon}", anon + 1
            out.append((name, ctype, offset))
        return out

    def _union_fields(self, t: BtfType, bits: list[Bits]) -> list[tuple[str, Any, int]]:
        out: list[tuple[str, Any, int]] = []
        for i, m in enumerate(self.members(t.id)):
            if m.bitfield_size or m.bit_offset:
                bits.append(self._bits(m, 0))
                continue
            ctype = self.ctype(m.type)
            if ct.sizeof(ctype):
                out.append((m.name or f"_anon{i}", ctype, 0))
        return out


def _padded_fields(fields: list[tuple[str, Any, int]], size: int,
                   union: bool) -> list[tuple[str, Any, int]]:
    """Fields in offset order with `__pad_N` byte arrays filling every gap up to `size`.
    A union's fields (all at offset 0) get one pad member if they fall short of `size`."""
    if union:
        longest = max((ct.sizeof(c) for _, c, _ in fields), default=0)
        pad = [("__pad_end", raw_type(size), 0)] if longest < size else []
        return fields + pad
    out: list[tuple[str, Any, int]] = []
    pos = 0
    for name, ctype, off in sorted(fields, key=lambda f: f[2]):
        if off < pos:
            continue  # overlaps the previous field: not expressible in a ctypes Structure
        if off > pos:
            out.append((f"__pad_{pos}", raw_type(off - pos), pos))
        out.append((name, ctype, off))
        pos = off + ct.sizeof(ctype)
    if pos < size:
        out.append((f"__pad_{pos}", raw_type(size - pos), pos))
    return out


_CACHE: dict[int, Btf] = {}
_CACHE_SIZE = 16

_INT128: dict[bool, Any] = {
    signed: type(f"{'' if signed else 'u'}int128", (raw_type(16),), {"_bpfnb_int128_": signed})
    for signed in (False, True)}

_BUILDERS: dict[BtfKind, Any] = {
    BtfKind.INT: Btf._int, BtfKind.FLOAT: Btf._float, BtfKind.PTR: Btf._ptr,
    BtfKind.ARRAY: Btf._array, BtfKind.STRUCT: Btf._record, BtfKind.UNION: Btf._record,
    BtfKind.ENUM: Btf._enum, BtfKind.ENUM64: Btf._enum,
    **{k: Btf._alias for k in _ALIASES},
}


@dataclass
class MapTypes:
    """A map's key and value as ctypes types, and how they were found."""

    key: Any
    value: Any
    key_decl: str = "raw bytes"
    value_decl: str = "raw bytes"
    notes: list[str] = field(default_factory=list)

    @property
    def raw_key(self) -> bool:
        return is_raw(self.key)

    @property
    def raw_value(self) -> bool:
        return is_raw(self.value)


def map_types(btf_id: int, key_type_id: int, value_type_id: int, key_size: int,
              value_size: int) -> MapTypes:
    """ctypes key/value types of a map from its BTF ids; raw bytes where there is no BTF or
    a type does not fit the map's sizes (every reason is in `notes`)."""
    types = MapTypes(raw_type(key_size), raw_type(value_size))
    if not btf_id:
        types.notes.append("the map has no BTF; keys and values are raw bytes (pass key= and "
                           "value= ctypes types to open_map to decode them)")
        return types
    try:
        btf = Btf.from_id(btf_id)
    except BpfnbError as e:
        types.notes.append(f"BTF {btf_id} unreadable ({e.summary}); raw bytes")
        return types
    for role, type_id, size in (("key", key_type_id, key_size),
                                ("value", value_type_id, value_size)):
        if not type_id or not size:
            if size:
                types.notes.append(f"the map's BTF names no {role} type; {role}s are raw bytes")
            continue
        try:
            ctype = btf.ctype(type_id)
        except BtfError as e:
            types.notes.append(f"{role}: {e.summary}")
            continue
        if ct.sizeof(ctype) != size:
            types.notes.append(f"{role} type {btf.describe(type_id)} is {ct.sizeof(ctype)} "
                               f"bytes, the map's {role}s are {size}; raw bytes")
            continue
        setattr(types, role, ctype)
        setattr(types, f"{role}_decl", btf.describe(type_id))
    types.notes.extend(btf.notes)
    return types


def prefer_btf(fd: int, key: Any, value: Any) -> tuple[Any, Any, list[str]]:
    """The key and value types to read map `fd` with: its BTF types where it has BTF
    (bcc, libbpf and bpftrace maps do), else the given ctypes types (bcc's description).
    Returns (key, value, notes); a type whose size is not the map's raises MapLayoutError."""
    info = bpfsys.map_info(fd)
    found = map_types(info.btf_id, info.btf_key_type_id, info.btf_value_type_id,
                      info.key_size, info.value_size) if info.btf_id else None
    out: list[Any] = []
    for role, given, size in (("key", key, info.key_size), ("value", value, info.value_size)):
        from_btf = getattr(found, role) if found is not None else None
        if from_btf is not None and not is_raw(from_btf) and size:
            out.append(from_btf)
            continue
        if given is not None and size and ct.sizeof(given) != size:
            raise MapLayoutError(
                f"map {info.name.decode(errors='replace')!r}: its {role} type "
                f"{getattr(given, '__name__', given)} is {ct.sizeof(given)} bytes but the "
                f"map's {role}s are {size}; declare the {role} with the type the map was "
                "created with")
        out.append(raw_type(size) if given is None and size else given)
    return out[0], out[1], list(found.notes) if found is not None else []
