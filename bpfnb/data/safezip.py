"""Reading entries of untrusted zip files (recordings, cell stores, stacks) within limits.

>>> with zipfile.ZipFile(path) as zf:
...     data = read_entry(zf, "meta.json", path)     # bytes, or ZipLimitError

An entry is refused before it is decompressed when its declared size (`ZipInfo.file_size`)
is over `LIMITS.max_entry` or its compression ratio over `LIMITS.max_ratio`; while it is
decompressed, reading stops at the declared size plus one byte (a header that lies is
refused the same way). Parquet tables are checked again before they are decoded (rows and
uncompressed bytes from the footer). Raise the limits for files you trust:
`BPFNB_ZIP_MAX_MB=4096` in the environment, or `bpfnb.data.safezip.LIMITS.max_entry = ...`.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

from bpfnb.data.arrow import pyarrow_module
from bpfnb.errors import ReplayError, ZipLimitError

ENV = "BPFNB_ZIP_MAX_MB"
_MIB = 1 << 20


def _env_limit() -> int:
    try:
        return max(1, int(float(os.environ.get(ENV, "512")) * _MIB))
    except ValueError:
        return 512 * _MIB


@dataclass
class Limits:
    """What a zip entry may hold: bytes after decompression, and how much it may expand
    (only checked for entries over `ratio_from` bytes: small JSON compresses well)."""

    max_entry: int = 512 * _MIB
    max_ratio: float = 200.0
    ratio_from: int = _MIB
    max_rows: int = 200_000_000


LIMITS = Limits(max_entry=_env_limit())


def _how_to_raise() -> str:
    return (f"if you trust the file, raise the limit: {ENV}=<MiB> in the environment or "
            "bpfnb.data.safezip.LIMITS.max_entry = <bytes>")


def _too_big(path: Any, name: str, what: str) -> ZipLimitError:
    return ZipLimitError(f"{str(path)!r}: entry {name!r} {what}; refused so a crafted file "
                         f"cannot exhaust memory; {_how_to_raise()}")


def check_entry(zf: zipfile.ZipFile, name: str, path: Any) -> zipfile.ZipInfo:
    """The ZipInfo of `name` if its declared size and ratio are within LIMITS; ReplayError
    (missing) or ZipLimitError (too big) otherwise."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise ReplayError(f"{str(path)!r} has no entry {name!r}: the file is incomplete or "
                          "not what it claims to be") from None
    if info.file_size > LIMITS.max_entry:
        raise _too_big(path, name, f"declares {info.file_size:,} bytes, over the limit of "
                                   f"{LIMITS.max_entry:,}")
    if info.file_size > LIMITS.ratio_from and \
            info.file_size > LIMITS.max_ratio * max(info.compress_size, 1):
        raise _too_big(path, name, f"expands {info.compress_size:,} bytes to "
                                   f"{info.file_size:,}, more than {LIMITS.max_ratio:g} "
                                   "times (a zip bomb?)")
    return info


def read_entry(zf: zipfile.ZipFile, name: str, path: Any) -> bytes:
    """The bytes of entry `name`, checked before and while decompressing."""
    info = check_entry(zf, name, path)
    try:
        with zf.open(info) as f:
            data = f.read(info.file_size + 1)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError,
            NotImplementedError, ValueError) as e:
        raise ReplayError(f"{str(path)!r}: entry {name!r} is corrupt ({e})") from None
    if len(data) > info.file_size:
        raise _too_big(path, name, f"holds more than the {info.file_size:,} bytes its header "
                                   "declares")
    return data


def read_json(zf: zipfile.ZipFile, name: str, path: Any) -> Any:
    """Entry `name` parsed as JSON; ReplayError if it is not JSON."""
    data = read_entry(zf, name, path)
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:
        raise ReplayError(f"{str(path)!r}: entry {name!r} is not valid JSON ({e})") from None


def read_parquet(zf: zipfile.ZipFile, name: str, path: Any) -> Any:
    """Entry `name` as an Arrow table, its footer checked against LIMITS before decoding."""
    pa = pyarrow_module()
    data = read_entry(zf, name, path)
    try:
        pf = pa.parquet.ParquetFile(io.BytesIO(data))
        meta = pf.metadata
        size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if meta.num_rows > LIMITS.max_rows or size > LIMITS.max_entry:
            raise _too_big(path, name, f"is a table of {meta.num_rows:,} rows and {size:,} "
                                       f"bytes, over the limits ({LIMITS.max_rows:,} rows, "
                                       f"{LIMITS.max_entry:,} bytes)")
        return pf.read()
    except ReplayError:
        raise
    except (pa.ArrowException, OSError, ValueError, TypeError, IndexError, KeyError) as e:
        raise ReplayError(f"{str(path)!r}: table {name!r} is unreadable "
                          f"({type(e).__name__}: {e})") from None


def open_zip(path: Any, recover: bool = False) -> zipfile.ZipFile:
    """The zip file at `path`; ReplayError if it is missing, unreadable or not a zip. With
    `recover`, a file whose end was cut while entries were appended (bpfnb.zipappend) opens
    with the entries that are complete."""
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise
    except zipfile.BadZipFile as e:
        recovered = _recover(path) if recover else None
        if recovered is None:
            raise ReplayError(f"{str(path)!r} is not a zip file or is corrupt ({e})") from None
        return recovered
    except (OSError, ValueError, EOFError, RuntimeError, NotImplementedError) as e:
        raise ReplayError(f"{str(path)!r} is not a zip file or is corrupt ({e})") from None


# -- a cut file: its complete entries, from their local headers ---------------------------------

_LOCAL = struct.Struct("<4s2B4HL2L2H")        # zipfile.structFileHeader
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")    # zipfile.structCentralDir
_END = struct.Struct("<4s4H2LH")              # zipfile.structEndArchive
_DOS_1980_01_01 = 33


class _Spliced(io.RawIOBase):
    """The first `size` bytes of a file followed by `tail` (a central directory built here)."""

    def __init__(self, f: io.BufferedReader, size: int, tail: bytes) -> None:
        self.f, self.size, self.tail, self.pos = f, size, tail, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.size + len(self.tail)}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        if self.pos < self.size:
            self.f.seek(self.pos)
            got = self.f.readinto(view[:self.size - self.pos]) or 0
        else:
            chunk = self.tail[self.pos - self.size:self.pos - self.size + len(view)]
            view[:len(chunk)] = chunk
            got = len(chunk)
        self.pos += got
        return got

    def close(self) -> None:
        self.f.close()
        super().close()


def is_recovered(zf: zipfile.ZipFile) -> bool:
    """Whether open_zip read `zf` from its local headers (its end was cut)."""
    return isinstance(zf, _Recovered)


class _Recovered(zipfile.ZipFile):
    def close(self) -> None:
        fp = self.fp
        super().close()
        if isinstance(fp, _Spliced):
            fp.close()


def _recover(path: Any) -> zipfile.ZipFile | None:
    """A ZipFile of the complete entries at the start of `path` (local headers read in
    order up to the first incomplete one), or None if there are none."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - owned by the _Spliced view it returns
    except OSError:
        return None
    size = os.fstat(f.fileno()).st_size
    entries: list[tuple[bytes, tuple[Any, ...]]] = []
    pos = 0
    while pos + _LOCAL.size <= size and len(entries) < 0xFFFF:
        f.seek(pos)
        head = _LOCAL.unpack(f.read(_LOCAL.size))
        sig, flags, method, crc, csize, usize, nlen, elen = (head[0], head[3], head[4],
                                                              *head[7:])
        end = pos + _LOCAL.size + nlen + elen + csize
        if sig != b"PK\x03\x04" or flags & 0x08 or end > size or \
                0xFFFFFFFF in (csize, usize, pos):
            break
        name = f.read(nlen)
        entries.append((name, (flags, method, crc, csize, usize, pos)))
        pos = end
    if not entries:
        f.close()
        return None
    directory = b"".join(
        _CENTRAL.pack(b"PK\x01\x02", 20, 3, 20, 0, flags, method, 0,
                      _DOS_1980_01_01, crc, csize, usize, len(name), 0, 0, 0, 0, 0, at) + name
        for name, (flags, method, crc, csize, usize, at) in entries)
    tail = directory + _END.pack(b"PK\x05\x06", 0, 0, len(entries), len(entries),
                                 len(directory), pos, 0)
    try:
        return _Recovered(cast(BinaryIO, _Spliced(f, pos, tail)))
    except (zipfile.BadZipFile, OSError, ValueError):
        f.close()
        return None
