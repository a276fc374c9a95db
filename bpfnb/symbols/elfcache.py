"""ELF symbol tables kept on disk between runs (root only), so a cold symbolizer does not
parse and sort the symbol tables of every library again.

One file per ELF file version in `$BPFNB_CACHE/elf` (see bpfnb.symbols.cachedir), named
by what identifies that version without reading it: device, inode, size and mtime (ns).
It holds the merged function table (starts, sizes, name offsets into the names it
uses), the PT_LOAD segments and the build id. Past MAX_FILES files the least recently
written half is removed.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import numpy as np

from bpfnb._sys.safedirs import SafeDir
from bpfnb.symbols import cachedir, cachefile

_MAGIC = b"bpfnbEL1"
_HEAD = np.dtype([("magic", "S8"), ("n", "<u8"), ("segs", "<u8"), ("blob", "<u8"),
                  ("build_id", "S64")])


@dataclass
class ElfTable:
    starts: np.ndarray  # uint64, sorted
    sizes: np.ndarray  # uint64
    name_start: np.ndarray  # int64 offsets of NUL-terminated names in blob
    blob: bytes
    segments: np.ndarray  # (n, 3) uint64: vaddr, offset, filesz
    build_id: str  # hex, "" if none


def file_key(st_dev: int, st_ino: int, st_size: int, st_mtime_ns: int) -> str:
    return f"{st_dev:x}-{st_ino:x}-{st_size:x}-{st_mtime_ns:x}.bin"


def _compact(name_start: np.ndarray, blob: bytes) -> tuple[np.ndarray, bytes]:
    """Only the names the table uses (NUL-terminated), in table order: string tables also
    hold data, section and file names, often most of their bytes."""
    raw = np.frombuffer(blob, np.uint8)
    zeros = np.flatnonzero(raw == 0)
    if not len(name_start) or not len(zeros) or int(name_start.max()) > int(zeros[-1]):
        return name_start, blob
    lens = zeros[np.searchsorted(zeros, name_start)] - name_start + 1
    starts = np.cumsum(lens) - lens
    idx = np.repeat(name_start - starts, lens) + np.arange(int(lens.sum()))
    return starts, raw[idx].tobytes()


def encode(t: ElfTable) -> bytes:
    names, blob = _compact(t.name_start, t.blob)
    head = np.array([(_MAGIC, len(t.starts), len(t.segments), len(blob),
                      t.build_id.encode())], _HEAD)
    return cachefile.pack(head, t.starts.astype("<u8"), t.sizes.astype("<u8"),
                          names.astype("<i8"), t.segments.astype("<u8"), blob)


def decode(data: bytes) -> ElfTable | None:
    """What `encode` wrote, or None if it is not that (or truncated, or names out of range)."""
    found = cachefile.unpack(data, _HEAD, _MAGIC, lambda h: [
        ("<u8", h["n"]), ("<u8", h["n"]), ("<i8", h["n"]), ("<u8", 3 * h["segs"]),
        ("u1", h["blob"])])
    if found is None:
        return None
    head, (starts, sizes, names, segs, blob) = found
    if len(names) and (int(names.max()) >= len(blob) or int(names.min()) < 0):
        return None
    return ElfTable(starts, sizes, names, blob.tobytes(), segs.reshape(-1, 3),
                    bytes(head["build_id"]).decode("ascii", "replace"))


def open_dir() -> SafeDir | None:
    """The ELF cache directory, open for a batch of loads and stores (the caller closes it;
    None: no safe place for it here)."""
    return cachedir.open_cache("elf")


def load(where: SafeDir, key: str) -> ElfTable | None:
    data = cachedir.read(where, key)
    return decode(data) if data is not None else None


MAX_FILES = 2000  # past this, a store removes the least recently written half


def store(where: SafeDir, key: str, table: ElfTable) -> None:
    cachedir.write(where, key, encode(table))
    with contextlib.suppress(OSError):
        names = [n for n in os.listdir(where.fd) if n.endswith(".bin")]
        if len(names) > MAX_FILES:
            age = {n: os.stat(n, dir_fd=where.fd, follow_symlinks=False).st_mtime_ns
                   for n in names}
            for n in sorted(names, key=age.__getitem__)[: len(names) // 2]:
                if n != key:
                    os.unlink(n, dir_fd=where.fd)
