"""Views of maps whose type bcc 0.26's Python layer does not know (sockmap, sockhash, cgroup
storage, ...): fd and key/value types straight from libbcc, no bcc table object.

`view(prog, name)` is `prog[name]` for every map type; Program uses `raw_table` when
bcc's own table lookup fails.
"""

from __future__ import annotations

import ctypes as ct
import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bpfnb.errors import UnknownMapError

if TYPE_CHECKING:
    from bpfnb.map.view import MapView
    from bpfnb.program.core import Program


@dataclass(frozen=True)
class RawTable:
    """What Program needs of a table: its fd and ctypes key/leaf types."""

    map_fd: int
    Key: Any
    Leaf: Any


def _lib() -> Any:
    bcc = sys.modules.get("bcc")  # loaded by the backend that made the BPF object
    if bcc is None:
        raise UnknownMapError("bcc is not loaded")
    return bcc.lib


def raw_table(bpf: Any, name: str) -> RawTable:
    """The fd and key/leaf types of map `name` of a loaded bcc BPF object."""
    lib = _lib()
    for fn, res in (("bpf_table_fd", ct.c_int), ("bpf_table_key_desc", ct.c_char_p),
                    ("bpf_table_leaf_desc", ct.c_char_p)):
        getattr(lib, fn).restype = res
        getattr(lib, fn).argtypes = [ct.c_void_p, ct.c_char_p]
    fd = lib.bpf_table_fd(bpf.module, name.encode())
    if fd < 0:
        raise UnknownMapError(f"no map {name!r} in this program")
    key_desc = lib.bpf_table_key_desc(bpf.module, name.encode())
    leaf_desc = lib.bpf_table_leaf_desc(bpf.module, name.encode())
    key = _decode(bpf, key_desc) if key_desc else None
    leaf = _decode(bpf, leaf_desc) if leaf_desc else ct.c_uint8
    return RawTable(int(fd), key, leaf)


def _decode(bpf: Any, desc: bytes) -> Any:
    """bcc's ctypes type for a description, or None where bcc has none (e.g. 'signed char');
    MapView then reads the map's BTF."""
    try:
        return bpf._decode_table_type(json.loads(desc))
    except (KeyError, TypeError, ValueError, IndexError):
        return None


def view(prog: Program, name: str) -> MapView:
    """`prog[name]`, also for map types bcc's Python cannot open (until Program does this)."""
    try:
        return prog[name]
    except UnknownMapError:
        raise
    except Exception:  # bcc: "Unknown table type N"
        from bpfnb.map.view import MapView

        _hook_close()
        cache = _views.setdefault(id(prog), {})
        if name not in cache or not cache[name]._alive():
            table = raw_table(prog.module.bpf, name)
            cache[name] = MapView(name, table.map_fd, table.Key, table.Leaf,
                                  owner=lambda: not prog.closed)
        return cache[name]


_views: dict[int, dict[str, MapView]] = {}
_hooked = False


def _release(prog: Program) -> None:
    for v in _views.pop(id(prog), {}).values():
        v.release()


def _hook_close() -> None:
    global _hooked
    if not _hooked:
        from bpfnb.program import core as program

        program._close_hooks.append(_release)
        _hooked = True
