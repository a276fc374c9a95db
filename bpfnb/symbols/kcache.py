"""/proc/kallsyms parsed once per boot and kept on disk (root only).

Reading kallsyms is the floor of a cold symbolization: the kernel formats 5 MB of text
(tens of ms) and the parse costs about as much again. The parsed table of the kernel
image and its modules is saved in `$BPFNB_CACHE/kallsyms` (default /var/cache/bpfnb),
a directory owned by root and writable by root only, under a key of the boot id and
the loaded modules (name, size, address). Symbols that come and go within a boot (BPF
programs, ftrace and kprobe trampolines) are left out, and the table says which address
ranges it covers: an address outside them is resolved from a fresh read of kallsyms.
Files are written under a temporary name and renamed into place (atomic).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass

import numpy as np

from bpfnb.symbols import cachedir, cachefile

BOOT_ID = "/proc/sys/kernel/random/boot_id"
MODULES = "/proc/modules"
_VERSION = 1
_DYNAMIC = (b"[bpf]", b"[__builtin__ftrace]", b"[__builtin__kprobes]")


@dataclass
class KernelSymbols:
    """Code symbols sorted by address (names at blob[name_start:name_end]) and the
    [start, end) address ranges they answer for."""

    starts: np.ndarray  # uint64
    name_start: np.ndarray  # int64
    name_end: np.ndarray  # int64
    blob: bytes
    ranges: np.ndarray  # (n, 2) uint64

    def covers(self, addrs: np.ndarray) -> bool:
        a = np.asarray(addrs, dtype=np.uint64)
        inside = np.zeros(len(a), bool)
        for lo, hi in self.ranges.tolist():
            inside |= (a >= np.uint64(lo)) & (a < np.uint64(hi))
        return bool(inside.all())


def cache_key() -> str:
    """Boot id + a digest of the loaded modules; "" when either cannot be read."""
    try:
        with open(BOOT_ID) as f:
            boot = f.read().strip()
    except OSError:
        return ""
    try:
        with open(MODULES, "rb") as f:
            mods = [ln.split() for ln in f.read().splitlines()]
    except OSError:
        mods = []
    ident = b"\n".join(b" ".join((m[0], m[1], m[-1])) for m in mods if len(m) >= 6)
    return f"{boot}-{hashlib.sha256(ident).hexdigest()[:16]}"


def _module_ranges() -> dict[bytes, tuple[int, int]]:
    out = {}
    with contextlib.suppress(OSError, ValueError), open(MODULES, "rb") as f:
        for ln in f.read().splitlines():
            m = ln.split()
            if len(m) >= 6 and int(m[-1], 16):
                out[b"[" + m[0] + b"]"] = (int(m[-1], 16), int(m[-1], 16) + int(m[1]))
    return out


def lasting(data: bytes, starts: np.ndarray, name_start: np.ndarray,
            name_end: np.ndarray) -> KernelSymbols:
    """The part of a parsed kallsyms text `data` (symbols sorted by address, names at
    data[name_start:name_end]) that lasts the boot, with the ranges it covers: the
    kernel image from its first to its last symbol, each module as /proc/modules places
    it."""
    tag_start = name_end + 1  # a tab then "[module]" follows the name, if anything
    tagged = np.zeros(len(starts), bool)
    if len(starts):
        tagged = np.frombuffer(data, np.uint8)[name_end.clip(0, len(data) - 1)] == 9
    tags: dict[int, bytes] = {}
    for i in np.flatnonzero(tagged).tolist():
        s = int(tag_start[i])
        tags[i] = data[s : data.find(b"\n", s)].strip()
    mods = _module_ranges()
    keep = ~tagged
    ranges: list[tuple[int, int]] = []
    static = starts[keep]
    if len(static):
        ranges.append((int(static[0]), int(static[-1]) + 1))
    for i, tag in tags.items():
        if tag in mods and tag not in _DYNAMIC:
            keep[i] = True
    ranges += sorted(set(mods.values()))
    idx = np.flatnonzero(keep)
    names = [data[a:b] for a, b in zip(name_start[idx].tolist(), name_end[idx].tolist())]
    lengths = np.fromiter((len(n) for n in names), np.int64, len(names))
    ends = np.cumsum(lengths)
    return KernelSymbols(starts[idx].copy(), ends - lengths, ends, b"".join(names),
                         np.array(ranges, np.uint64).reshape(-1, 2))


_MAGIC = b"bpfnbKS%d" % _VERSION
_HEAD = np.dtype([("magic", "S8"), ("n", "<u8"), ("ranges", "<u8"), ("blob", "<u8")])


def encode(syms: KernelSymbols) -> bytes:
    """One file: a header, then starts (u64), name ends (u32), ranges (u64), names."""
    head = np.array([(_MAGIC, len(syms.starts), len(syms.ranges), len(syms.blob))], _HEAD)
    return cachefile.pack(head, syms.starts.astype("<u8"), syms.name_end.astype("<u4"),
                          syms.ranges.astype("<u8"), syms.blob)


def decode(data: bytes) -> KernelSymbols | None:
    """What `encode` wrote, or None if it is not that (or truncated)."""
    found = cachefile.unpack(data, _HEAD, _MAGIC, lambda h: [
        ("<u8", h["n"]), ("<u4", h["n"]), ("<u8", 2 * h["ranges"]), ("u1", h["blob"])])
    if found is None:
        return None
    starts, ends32, ranges, blob = found[1]
    ends = ends32.astype(np.int64)
    begins = np.empty_like(ends)
    begins[:1] = 0
    begins[1:] = ends[:-1]
    return KernelSymbols(starts, begins, ends, blob.tobytes(), ranges.reshape(-1, 2))


def load(key: str) -> KernelSymbols | None:
    """This boot's cached table, or None."""
    where = cachedir.open_cache("kallsyms") if key else None
    if where is None:
        return None
    with where:
        data = cachedir.read(where, f"{key}.bin")
    return decode(data) if data is not None else None


def store(key: str, syms: KernelSymbols) -> None:
    """Save the table for this boot (replacing other boots' files); errors are ignored."""
    where = cachedir.open_cache("kallsyms") if key else None
    if where is None:
        return
    with where:
        with contextlib.suppress(OSError):
            for old in os.listdir(where.fd):
                if old.endswith(".bin") and old != f"{key}.bin":
                    os.unlink(old, dir_fd=where.fd)
        cachedir.write(where, f"{key}.bin", encode(syms))
