"""Per map type behaviour: how a type's DataFrame looks and how Python objects go in and out.

Each module here registers a `Kind` for the map types it explains. A type with no entry
behaves like a plain hash/array: generic codec, generic df().
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bpfnb._sys import bpfsys

if TYPE_CHECKING:
    import pandas as pd

    from bpfnb.map.protocol import TypedMapLike
    from bpfnb.map.view import MapView

Closer = Callable[[], None]


@dataclass(frozen=True)
class Kind:
    """Hooks for one map type; None means the generic behaviour."""

    frame: Callable[[TypedMapLike, bool], pd.DataFrame] | None = None  # (view, per_cpu)
    key_in: Callable[[TypedMapLike, Any], Any] | None = None
    key_out: Callable[[TypedMapLike, Any], Any] | None = None
    value_in: Callable[[TypedMapLike, Any], tuple[Any, Closer | None]] | None = None
    value_out: Callable[[TypedMapLike, Any], Any] | None = None
    on_update: Callable[[TypedMapLike, Any, Any], None] | None = None
    on_delete: Callable[[TypedMapLike, Any], None] | None = None
    length: Callable[[MapView], int] | None = None  # len() of a kernel map
    note: str = ""


GENERIC = Kind()
_KINDS: dict[bpfsys.MapType, Kind] = {}
_MODULES = ("lpm", "progarray", "mapinmap", "stacktrace", "cgroups", "netdev", "sockets",
            "queues", "eventmaps")  # fdvalues: shared helpers, registers nothing
_loaded = False


def register(kind: Kind, *types: bpfsys.MapType) -> Kind:
    for t in types:
        _KINDS[t] = kind
    return kind


def kind_of(map_type: bpfsys.MapType) -> Kind:
    """The hooks for a map type (modules are imported on first use)."""
    global _loaded
    if not _loaded:
        for name in _MODULES:
            importlib.import_module(f"{__name__}.{name}")
        _loaded = True
    return _KINDS.get(map_type, GENERIC)


def insert_columns(df: pd.DataFrame, columns: dict[str, Any], at: int = 0,
                   key_columns: list[str] | None = None, **attrs: Any) -> pd.DataFrame:
    """df with extra columns inserted at position `at`; attrs kept and updated."""
    import pandas as pd

    left = df.iloc[:, :at]
    right = df.iloc[:, at:]
    extra = pd.DataFrame(columns, index=df.index)
    out = pd.concat([left, extra, right], axis=1)
    out.attrs = dict(df.attrs)
    if key_columns is not None:
        out.attrs["key_columns"] = key_columns
    out.attrs.update(attrs)
    return out
