"""A writer of raw BTF blobs for kernel-free tests: types are added one by one (ids from 1)
and `blob()` lays out header, type section and string section as the kernel does."""

from __future__ import annotations

import struct

from bpfnb._sys.btf import BTF_MAGIC, INT_BOOL, INT_CHAR, INT_SIGNED, BtfKind

Member = tuple[str, int, int, int]  # name, type id, bit offset, bit field size (0: none)


class BtfBlob:
    def __init__(self) -> None:
        self._strings = bytearray(b"\0")
        self._types: list[bytes] = []

    def _name(self, name: str) -> int:
        if not name:
            return 0
        off = len(self._strings)
        self._strings += name.encode() + b"\0"
        return off

    def add(self, kind: BtfKind, name: str = "", vlen: int = 0, size_or_type: int = 0,
            trailer: bytes = b"", kind_flag: bool = False, raw_kind: int | None = None) -> int:
        k = int(kind) if raw_kind is None else raw_kind
        info = vlen | k << 24 | int(kind_flag) << 31
        self._types.append(struct.pack("<III", self._name(name), info, size_or_type) + trailer)
        return len(self._types)

    def int(self, name: str, size: int, signed: bool = False, bits: int = 0,
            char: bool = False, boolean: bool = False) -> int:
        enc = (INT_SIGNED * signed | INT_CHAR * char | INT_BOOL * boolean) << 24
        return self.add(BtfKind.INT, name, 0, size,
                        struct.pack("<I", enc | (bits or size * 8)))

    def float(self, name: str, size: int) -> int:
        return self.add(BtfKind.FLOAT, name, 0, size)

    def ptr(self, target: int) -> int:
        return self.add(BtfKind.PTR, "", 0, target)

    def alias(self, kind: BtfKind, target: int, name: str = "") -> int:
        return self.add(kind, name, 0, target)

    def array(self, elem: int, n: int, index: int) -> int:
        return self.add(BtfKind.ARRAY, "", 0, 0, struct.pack("<III", elem, index, n))

    def record(self, name: str, size: int, members: list[Member], union: bool = False) -> int:
        """A struct (or union); members with a bit field size use kind_flag encoding."""
        flag = any(bits for _, _, _, bits in members)
        trailer = b"".join(
            struct.pack("<III", self._name(m), t, (bits << 24 | off) if flag else off)
            for m, t, off, bits in members)
        kind = BtfKind.UNION if union else BtfKind.STRUCT
        return self.add(kind, name, len(members), size, trailer, kind_flag=flag)

    def enum(self, name: str, size: int, values: dict[str, int], signed: bool = False) -> int:
        if size == 8:
            trailer = b"".join(struct.pack("<III", self._name(n), v & 0xFFFFFFFF,
                                           (v >> 32) & 0xFFFFFFFF) for n, v in values.items())
            return self.add(BtfKind.ENUM64, name, len(values), 8, trailer, kind_flag=signed)
        trailer = b"".join(struct.pack("<II", self._name(n), v & 0xFFFFFFFF)
                           for n, v in values.items())
        return self.add(BtfKind.ENUM, name, len(values), size, trailer, kind_flag=signed)

    def func_proto(self, ret: int, params: list[tuple[str, int]]) -> int:
        trailer = b"".join(struct.pack("<II", self._name(n), t) for n, t in params)
        return self.add(BtfKind.FUNC_PROTO, "", len(params), ret, trailer)

    def blob(self) -> bytes:
        types = b"".join(self._types)
        header = struct.pack("<HBBIIIII", BTF_MAGIC, 1, 0, 24, 0, len(types), len(types),
                             len(self._strings))
        return header + types + bytes(self._strings)
