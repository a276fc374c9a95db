"""USDT probes of an ELF file, from its `.note.stapsdt` notes (what `sys/sdt.h` emits).

Each note holds the probe's address, the link-time address of `.stapsdt.base`, the
semaphore's address (0 when none), then provider, name and argument spec as C strings
(`-4@%eax 8@%rdx`: size, negative when signed, @ where the value is). Addresses are
corrected for prelinking as SystemTap does: by the actual `.stapsdt.base` address.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from bpfnb.errors import BpfnbError

NT_STAPSDT = 3


@dataclass(frozen=True)
class UsdtProbe:
    """One USDT probe site (a probe can have several sites)."""

    provider: str
    name: str
    address: int
    semaphore: int
    args: str  # the raw argument spec, e.g. '-4@%eax 8@%rdx'

    def arguments(self) -> list[tuple[int, bool, str]]:
        """Each argument as (size in bytes, signed, location)."""
        out = []
        for word in self.args.split():
            size, _, where = word.partition("@")
            try:
                n = int(size)
            except ValueError:
                continue
            out.append((abs(n), n < 0, where))
        return out

    def signature(self) -> str:
        """'arg0: s32 in %eax, arg1: u64 in %rdx'."""
        return ", ".join(f"arg{i}: {'s' if signed else 'u'}{size * 8} in {where}"
                         for i, (size, signed, where) in enumerate(self.arguments()))


def _notes(data: bytes, little: bool) -> list[tuple[int, str, bytes]]:
    """(type, owner name, descriptor) of each note in a note section's bytes."""
    e = "<" if little else ">"
    out, pos = [], 0
    while pos + 12 <= len(data):
        namesz, descsz, kind = struct.unpack_from(e + "III", data, pos)
        name_at = pos + 12
        desc_at = name_at + ((namesz + 3) & ~3)
        name = data[name_at:name_at + namesz].rstrip(b"\0").decode(errors="replace")
        out.append((kind, name, data[desc_at:desc_at + descsz]))
        pos = desc_at + ((descsz + 3) & ~3)
    return out


def probes(path: str) -> list[UsdtProbe]:
    """Every USDT probe site in ELF file `path` ([] when it has none). BpfnbError when the
    file cannot be read or is not ELF."""
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            notes = elf.get_section_by_name(".note.stapsdt")
            if notes is None:
                return []
            base_sec = elf.get_section_by_name(".stapsdt.base")
            actual_base = base_sec["sh_addr"] if base_sec is not None else None
            little, width = elf.little_endian, elf.elfclass // 8
            raw = notes.data()
    except (OSError, ELFError) as e:
        raise BpfnbError(f"cannot read USDT probes of {path}: {e}. Give the path of an "
                         "ELF binary or shared library.") from e
    fmt = ("<" if little else ">") + ("QQQ" if width == 8 else "III")
    out = []
    for kind, owner, desc in _notes(raw, little):
        if kind != NT_STAPSDT or owner != "stapsdt" or len(desc) < 3 * width:
            continue
        pc, base, sem = struct.unpack_from(fmt, desc)
        provider, name, args = [*desc[3 * width:].split(b"\0"), b"", b""][:3]
        if actual_base is not None and base:
            pc += actual_base - base
            if sem:
                sem += actual_base - base
        out.append(UsdtProbe(provider.decode(errors="replace"), name.decode(errors="replace"),
                             pc, sem, args.decode(errors="replace")))
    return out
