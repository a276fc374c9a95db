"""What travels between engines and the notebook: DataFrames as Arrow IPC streams.

Raw map snapshots travel as numpy arrays (ipyparallel sends those as zero-copy buffers);
frames (histogram buckets, events, stacks, the doctor's table) as one Arrow IPC stream with
the frame's JSON-safe attrs in the schema metadata. Nothing is pickled row by row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pandas as pd
import pyarrow as pa

from bpfnb.errors import BpfnbError

MAX_FRAME_BYTES = 256 << 20   # one host's frame larger than this is refused, not decoded
_ATTRS = b"bpfnb.attrs"


def _json_safe(attrs: dict[Any, Any]) -> dict[str, Any]:
    out = {}
    for k, v in attrs.items():
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            continue
        out[str(k)] = v
    return out


def pack(df: pd.DataFrame) -> bytes:
    """A DataFrame as Arrow IPC stream bytes (attrs that JSON can say ride along)."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[_ATTRS] = json.dumps(_json_safe(df.attrs)).encode()
    table = table.replace_schema_metadata(meta)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def unpack(data: bytes, where: str = "an engine") -> pd.DataFrame:
    """The DataFrame `pack` sent; BpfnbError if it is too large or not an Arrow stream."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BpfnbError(f"{where} sent {type(data).__name__}, not an Arrow stream; check "
                         "that the engine runs the same bpfnb version")
    if len(data) > MAX_FRAME_BYTES:
        raise BpfnbError(f"{where} sent a {len(data):,}-byte frame (limit "
                         f"{MAX_FRAME_BYTES:,}); ask for a reduction (top=N) instead")
    try:
        table = pa.ipc.open_stream(pa.py_buffer(bytes(data))).read_all()
    except (pa.ArrowInvalid, OSError) as e:
        raise BpfnbError(f"{where} sent a malformed Arrow stream ({e}); check that the "
                         "engine runs the same bpfnb version") from None
    df = table.to_pandas()
    raw = (table.schema.metadata or {}).get(_ATTRS)
    if raw:
        try:
            attrs = json.loads(raw)
        except ValueError:
            attrs = {}
        if isinstance(attrs, dict):
            df.attrs.update(attrs)
    return df


def host_frames(answers: Mapping[Any, Any]) -> list[pd.DataFrame]:
    """The frames of the hosts that answered (`answers`: host -> call outcome), each with
    `host` as its first column."""
    parts = []
    for host, outcome in answers.items():
        if outcome.ok:
            part = unpack(outcome.value, f"host {host}")
            part.insert(0, "host", host)
            parts.append(part)
    return parts
