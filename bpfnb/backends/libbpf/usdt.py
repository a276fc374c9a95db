"""USDT probe names in an ELF file's .note.stapsdt (libbpf needs the provider; bcc takes
just the probe name)."""

from __future__ import annotations

import struct

from bpfnb.errors import UnknownTargetError

_NT_STAPSDT = 3


def probes(path: str) -> list[tuple[str, str]]:
    """(provider, name) of every USDT probe in an ELF64 little-endian file."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return []
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names_off = sections[shstrndx][4]
    out = []
    for name_off, _type, _flags, _addr, offset, size in sections:
        end = data.index(b"\0", names_off + name_off)
        if data[names_off + name_off:end] != b".note.stapsdt":
            continue
        pos = offset
        while pos + 12 <= offset + size:
            namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
            desc = pos + 12 + ((namesz + 3) & ~3)
            if ntype == _NT_STAPSDT:
                provider, probe = data[desc + 24: desc + descsz].split(b"\0")[:2]
                out.append((provider.decode(), probe.decode()))
            pos = desc + ((descsz + 3) & ~3)
    return out


def provider(path: str, probe: str) -> tuple[str, str]:
    """(provider, name) for 'name' or 'provider:name' in `path`."""
    if ":" in probe:
        prov, _, name = probe.partition(":")
        return prov, name
    found = sorted({p for p, n in probes(path) if n == probe})
    if len(found) == 1:
        return found[0], probe
    known = ", ".join(sorted({f"{p}:{n}" for p, n in probes(path)})) or "none"
    what = "is in several providers" if found else "is not"
    raise UnknownTargetError(f"USDT probe {probe} {what} in {path}; name it as "
                             f"provider:name. Its probes: {known}")
