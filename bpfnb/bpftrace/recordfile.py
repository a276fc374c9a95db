"""A bpftrace program's recording on disk: `NAME.bpftrace.zip`, one JSON entry (its
`record()`). Written whole or not at all; read as untrusted input: the entry's size is
checked before it is decompressed, its shape by the transcript reader, and every map is
built once so a damaged payload fails here, as a ReplayError, not later in a cell."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

from bpfnb.bpftrace.program import BpftraceProgram
from bpfnb.data import safezip
from bpfnb.data.atomicfile import atomic_write
from bpfnb.errors import BpfnbError, ReplayError

SUFFIX = ".bpftrace.zip"
ENTRY = "bpftrace.json"


def path_for(directory: str | os.PathLike[str], name: str) -> Path:
    """Where a notebook's recording directory keeps program `name`."""
    return Path(directory) / f"{name}{SUFFIX}"


def save(prog: BpftraceProgram, path: str | os.PathLike[str]) -> Path:
    """Write `prog.record()` to `path` (replacing it atomically)."""
    data = json.dumps(prog.record(), separators=(",", ":")).encode()
    with atomic_write(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(ENTRY, data)
    return Path(path)


def load(path: str | os.PathLike[str]) -> BpftraceProgram:
    """The finished program recorded at `path`; ReplayError if it is missing, too big or
    damaged."""
    try:
        zf = safezip.open_zip(path)
    except FileNotFoundError:
        raise ReplayError(f"no bpftrace recording at {str(path)!r}; record the notebook "
                          "where bpftrace runs (make recordings)") from None
    with zf:
        record = safezip.read_json(zf, ENTRY, path)
    prog = BpftraceProgram.replay(record)
    for name in prog.map_names:  # a payload of the wrong shape fails now, named
        try:
            _check_values(prog, name)
            prog[name].df()
        except ReplayError:
            raise
        except (BpfnbError, TypeError, ValueError, KeyError, IndexError, AttributeError,
                OverflowError) as e:
            raise ReplayError(f"{str(path)!r}: map {name!r} is damaged ({type(e).__name__}: "
                              f"{e}); record the notebook again") from None
    return prog


def _check_values(prog: BpftraceProgram, name: str) -> None:
    """A count/sum/stats/plain map's values are numbers, text or stats records (df() would
    turn anything else into text)."""
    msg = prog.latest(name)
    if msg is None or msg.type == "hist":
        return
    payload = msg.data[name]
    values = payload.values() if isinstance(payload, dict) and not _stats(payload) \
        else [payload]
    for v in values:
        if not (isinstance(v, (int, float, str)) or v is None or _stats(v)):
            raise ValueError(f"a value of type {type(v).__name__}")


def _stats(v: object) -> bool:
    return isinstance(v, dict) and set(v) == {"count", "average", "total"} and \
        all(isinstance(x, (int, str)) for x in v.values())
