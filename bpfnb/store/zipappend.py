"""A zip file that grows by appending entries: the cost of an append is the new entries plus
the central directory, however large the file already is.

>>> z = create("run.bpfrec", {"meta.json": b"..."})   # a new file, atomically
>>> z.append({"index/00000001.json": b"..."})          # later: new entries only

An append writes the new entries where the central directory was, then a new directory. If
it fails (an exception, Ctrl-C), the previous directory is written back: the file is again
byte for byte what the previous append left. A crash (SIGKILL, power loss) in the middle
leaves every entry of earlier appends complete before a cut tail: bpfnb.data.safezip.open_zip
reads such a file from its entries' local headers.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import BinaryIO

from bpfnb.data.atomicfile import atomic_write


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED  # Parquet is zstd inside; JSON is small
    info.external_attr = 0o644 << 16
    return info


class Appender:
    """A zip file made by `create` that later entries are appended to."""

    def __init__(self, path: Path, directory_at: int, directory: bytes) -> None:
        self.path = path
        self._at = directory_at       # offset of the central directory of the last append
        self._directory = directory   # that directory and end record, to restore on failure

    def append(self, files: dict[str, bytes]) -> None:
        """Add `files` (name -> bytes); all or none of them (see the module doc)."""
        with open(self.path, "r+b") as f:
            self._restore(f)  # what the last complete append left, whatever happened since
            try:
                with zipfile.ZipFile(f, "a") as zf:
                    for name, data in files.items():
                        zf.writestr(_entry(name), data)
                    at = zf.start_dir  # where close() writes the new directory
                f.truncate()
                f.flush()
                os.fsync(f.fileno())
                f.seek(at)
                directory = f.read()
            except BaseException:
                self._restore(f)
                raise
        self._at, self._directory = at, directory

    def _restore(self, f: BinaryIO) -> None:
        f.seek(self._at)
        f.write(self._directory)
        f.truncate()
        f.flush()
        os.fsync(f.fileno())


def create(path: str | os.PathLike[str], files: dict[str, bytes]) -> Appender:
    """A new zip file at `path` holding `files` (replacing any file there atomically)."""
    out = Path(path)
    with atomic_write(out) as f, zipfile.ZipFile(f, "w") as zf:
        for name, data in files.items():
            zf.writestr(_entry(name), data)
        at = zf.start_dir
    with open(out, "rb") as r:
        r.seek(at)
        return Appender(out, at, r.read())
