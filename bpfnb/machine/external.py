"""Maps this notebook did not create: open by id, pin path or name; pin and unpin.

>>> m = open_map(name="@counts")     # a running bpftrace's `@counts` (its map AT_counts)
>>> m.df()                           # typed from the map's BTF, raw bytes without one
>>> m.close()                        # or `with open_map(...) as m:`
"""

from __future__ import annotations

import ctypes as ct
import dataclasses
import difflib
import os
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bpfnb._sys import bpfobjs, bpfsys, errnos
from bpfnb._sys.btf import MapTypes, is_raw, map_types, raw_type
from bpfnb.data import frames
from bpfnb.data.layout import dtype_of
from bpfnb.data.mapread import Snapshot
from bpfnb.errors import BpfnbError, MapError, ProgramClosedError
from bpfnb.machine.attachments import link_record
from bpfnb.machine.inventory import map_type_name, prog_type_name, program_name
from bpfnb.map.kinds import kind_of
from bpfnb.map.pins import BPFFS_ROOT, bpffs_mounts, mounts_text, on_bpffs, pin, pin_path, unpin
from bpfnb.map.view import MapView

BPFTRACE_PREFIX = ("@", "AT_")  # bpftrace names the map of `@x` AT_x


class _FdHandle:
    """Owns one fd; closes it once, on close() or when garbage collected."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._finalizer = weakref.finalize(self, os.close, fd)

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def alive(self) -> bool:
        return self._finalizer.alive

    def close(self) -> None:
        self._finalizer()


class ExternalMap(MapView):
    """A MapView over a map another program (bpftrace, a bcc tool, ...) created.

    It holds its own fd to the map (keeping the map alive while open); `close()` releases
    it, as does garbage collection. `types` says how keys and values were decoded, `notes`
    what was left out. Raw byte keys/values come out of df() as `bytes`; enum columns as
    categoricals of their names (`decode_enums=False` gives the numbers).
    """

    def __init__(self, fd: int, types: MapTypes, name: str | None = None,
                 source: str = "", decode_enums: bool = True) -> None:
        self._handle = _FdHandle(fd)
        try:
            info = bpfsys.map_info(fd)
            super().__init__(name or info.name.decode(errors="replace"), fd, types.key, types.value,
                             owner=self._handle.alive, btf=False)
        except BaseException:
            self._handle.close()
            raise
        self.types = types
        self.source = source
        self.decode_enums = decode_enums
        self.btf_id = int(info.btf_id)
        self.key_dtype = _readable_dtype(types.key, "key")
        self.value_dtype = _readable_dtype(types.value, "value")

    @property
    def notes(self) -> list[str]:
        return list(self.types.notes)

    @property
    def closed(self) -> bool:
        return self._handle.closed

    def close(self) -> None:
        """Release read buffers and this view's fd to the map. Safe to call twice."""
        self.release()
        self._handle.close()

    def __enter__(self) -> ExternalMap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self) -> None:
        if self._handle.closed:
            raise ProgramClosedError(f"map {self.name!r} (id {self.info.id}) was closed; "
                                     f"open it again with open_map(id={self.info.id})")

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return super().__repr__()[:-1] + f" btf {self.btf_id or 'none'}{state}>"

    # -- reading ------------------------------------------------------------------------
    @property
    def _raw_plain(self) -> bool:
        """Raw bytes in a map whose type has no DataFrame of its own (hash, array...)."""
        return (self.types.raw_key or self.types.raw_value) and kind_of(self.type).frame is None

    def read(self) -> Snapshot:
        """As MapView.read(); raw keys/values come out as `bytes` objects, a per-CPU raw
        value as a tuple of each CPU's bytes (bytes cannot be summed over CPUs)."""
        snap = super().read()
        if not self._raw_plain:
            return snap
        keys = _as_bytes(snap.keys) if self.types.raw_key else snap.keys
        values = snap.values
        if self.types.raw_value:
            if values.ndim == 2:
                values = np.empty(len(snap.values), dtype=object)
                values[:] = [tuple(row) for row in snap.values.tolist()]
            else:
                values = _as_bytes(values)
        return dataclasses.replace(snap, keys=keys, values=values)

    def df(self, per_cpu: bool = False) -> pd.DataFrame:
        """As MapView.df(); raw bytes are `bytes` objects (see read()) and enum fields
        their names (open_map(..., decode_enums=False) keeps the numbers)."""
        if per_cpu and self.per_cpu and self.types.raw_value and self._raw_plain:
            df = self._raw_long_frame()
        else:
            df = super().df(per_cpu=per_cpu)
        for col in df.columns:
            if df[col].dtype.kind == "V":
                df[col] = pd.Series(_as_bytes(df[col].to_numpy()), index=df.index)
        if not self.decode_enums:
            _enum_numbers(df)
        df.attrs["btf_id"] = self.btf_id
        df.attrs["notes"] = self.notes
        return df

    def _raw_long_frame(self) -> pd.DataFrame:
        snap = MapView.read(self)
        keys = _as_bytes(snap.keys) if self.types.raw_key else snap.keys
        return frames.frame(keys, _as_bytes(snap.values), self.attrs(snap, len(snap.keys)),
                            per_cpu=True, cpus=bpfsys.possible_cpus())


def _as_bytes(arr: np.ndarray) -> np.ndarray:
    """An object array of `bytes`, same shape, from an array of raw (`V`) items."""
    out = np.empty(arr.shape, dtype=object)
    out.reshape(-1)[:] = np.ascontiguousarray(arr).reshape(-1).tolist()
    return out


def _readable_dtype(ctype: Any, role: str) -> np.dtype:
    """How the reader sees a key/value: raw bytes as one `V` item, a top-level numeric
    array as a one-field record (so per-entry arrays stay one row), else as layout says."""
    if is_raw(ctype):
        return np.dtype(f"V{ct.sizeof(ctype)}")
    dtype = dtype_of(ctype)
    if dtype.subdtype is not None:
        return np.dtype({"names": [role], "formats": [dtype], "offsets": [0],
                         "itemsize": dtype.itemsize})
    return dtype


def _enum_numbers(df: pd.DataFrame) -> None:
    """Enum columns back to their numbers (df.attrs['enums'] maps names to numbers)."""
    for col, numbers in df.attrs.get("enums", {}).items():
        if col in df.columns:
            df[col] = df[col].map(numbers).astype(np.int64)


# -- opening ------------------------------------------------------------------------------

def open_map(id: int | None = None, pinned: str | None = None, name: str | None = None, *,
             key: Any = None, value: Any = None, decode_enums: bool = True) -> ExternalMap:
    """A MapView over an existing map, by `id`, `pinned` path or `name` (exactly one).

    Keys and values are decoded from the map's BTF where it has one and are raw bytes
    otherwise; `key=` / `value=` (ctypes types) override either, e.g. for a bpftrace map:
    `open_map(name="@counts", key=ctypes.c_char * 16, value=ctypes.c_uint64)`.
    A name starting with '@' means bpftrace's map of that name (AT_...).
    """
    given = [x for x in (id, pinned, name) if x is not None]
    if len(given) != 1:
        raise MapError("open_map needs exactly one of id=, pinned= or name=; list the "
                       "machine's maps with bpfnb.maps()")
    if id is not None:
        id = _map_id(id)
    if name is not None and not isinstance(name, str):
        raise MapError(f"open_map(name=...) wants a map's name (a str), not {name!r}; "
                       "list the machine's maps with bpfnb.maps()")
    for role, ctype in (("key", key), ("value", value)):
        if ctype is not None and not _is_ctype(ctype):
            raise MapError(f"open_map({role}=...) wants a ctypes type such as "
                           f"ctypes.c_uint32 or ctypes.c_char * 16, not {ctype!r}")
    fd, source = _open_fd(id, pinned, name)
    try:
        info = bpfsys.map_info(fd)
        types = map_types(info.btf_id, info.btf_key_type_id, info.btf_value_type_id,
                          info.key_size, info.value_size)
        types = _kernel_layout(types, info.type, info.key_size, info.value_size)
        types = _override(types, key, "key", info.key_size)
        types = _override(types, value, "value", info.value_size)
    except BaseException:
        os.close(fd)
        raise
    return ExternalMap(fd, types, source=source, decode_enums=decode_enums)


def _map_id(map_id: Any) -> int:
    """A map id as given to open_map(id=...): a positive int, nothing else."""
    if isinstance(map_id, (int, np.integer)) and not isinstance(map_id, bool) and map_id > 0:
        return int(map_id)
    raise MapError(f"open_map(id=...) wants a map id (a positive int, as bpfnb.maps() "
                   f"lists), not {map_id!r}")


def _is_ctype(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(
        obj, (ct._SimpleCData, ct.Structure, ct.Union, ct.Array))


def _open_fd(map_id: int | None, pinned: str | None, name: str | None) -> tuple[int, str]:
    if pinned is not None:
        pinned = pin_path(pinned, "open")
        if not os.path.exists(pinned):
            raise MapError(f"nothing is pinned at {pinned}; list pins with bpfnb.pinned()")
        if not on_bpffs(pinned):
            raise MapError(f"{pinned} is not a BPF object (it is not on a bpf file system: "
                           f"{mounts_text()}); list pins with bpfnb.pinned()")
        try:
            fd = bpfsys.obj_get(pinned)
        except OSError as e:
            raise errnos.translate(e, f"open the pinned object {pinned}") from e
        kind = _fd_kind(fd)
        if kind != "map":
            os.close(fd)
            raise MapError(f"{pinned} is a pinned {kind or 'object'}, not a map; "
                           "list pinned maps with bpfnb.pinned()")
        return fd, f"pinned {pinned}"
    if name is not None:
        map_id = _id_by_name(name)
    assert map_id is not None
    try:
        return bpfsys.fd_by_id(bpfsys.Cmd.MAP_GET_FD_BY_ID, int(map_id)), f"id {map_id}"
    except OSError as e:
        raise errnos.translate(e, f"open BPF map id {map_id}") from e


def _id_by_name(name: str) -> int:
    wanted = name
    if name.startswith(BPFTRACE_PREFIX[0]):
        wanted = BPFTRACE_PREFIX[1] + name[1:]
    wanted = wanted[: bpfsys.OBJ_NAME_LEN - 1]
    found: dict[int, str] = {}
    try:
        for map_id, fd in bpfobjs.each(bpfobjs.Kind.MAP):
            found[map_id] = bpfsys.map_info(fd).name.decode(errors="replace")
    except OSError as e:
        raise errnos.translate(e, "list the machine's BPF maps") from e
    hits = [i for i, n in found.items() if n == wanted]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise MapError(f"{len(hits)} maps are called {wanted!r} (ids {hits}); "
                       "pass open_map(id=...) with the one you mean")
    close = difflib.get_close_matches(wanted, sorted(set(found.values())), n=5)
    hint = f"; close names: {', '.join(close)}" if close else ""
    raise MapError(f"no BPF map is called {wanted!r}{hint}. List them with bpfnb.maps()")


def _uint(size: int) -> Any:
    return {1: ct.c_uint8, 2: ct.c_uint16, 4: ct.c_uint32, 8: ct.c_uint64}.get(size)


def _ids(key_size: int, value_size: int) -> tuple[Any, Any]:
    """Maps of fds/ids: u32 index -> u32 (or u64) id."""
    return _uint(key_size), _uint(value_size)


def _id_values(key_size: int, value_size: int) -> tuple[Any, Any]:
    """User keys (raw unless BTF says otherwise) -> u32 ids."""
    return None, _uint(value_size)


def _stack_trace(key_size: int, value_size: int) -> tuple[Any, Any]:
    value = ct.c_uint64 * (value_size // 8) if value_size and value_size % 8 == 0 else None
    return _uint(key_size), value


def _lpm(key_size: int, value_size: int) -> tuple[Any, Any]:
    if key_size <= 4:
        return None, None
    key = type("lpm_key", (ct.Structure,), {"_pack_": 1, "_layout_": "ms", "_fields_": [
        ("prefixlen", ct.c_uint32), ("data", ct.c_ubyte * (key_size - 4))]})
    return key, None


# layouts the kernel fixes whatever the creator's BTF says: used where BTF gives none
_T = bpfsys.MapType
KERNEL_LAYOUTS: dict[bpfsys.MapType, Any] = {
    **{t: _ids for t in (_T.PROG_ARRAY, _T.PERF_EVENT_ARRAY, _T.CGROUP_ARRAY,
                         _T.ARRAY_OF_MAPS, _T.DEVMAP, _T.XSKMAP, _T.SOCKMAP,
                         _T.REUSEPORT_SOCKARRAY)},
    **{t: _id_values for t in (_T.HASH_OF_MAPS, _T.SOCKHASH, _T.DEVMAP_HASH)},
    _T.STACK_TRACE: _stack_trace,
    _T.LPM_TRIE: _lpm,
}


def _kernel_layout(types: MapTypes, map_type: int, key_size: int, value_size: int
                   ) -> MapTypes:
    """Fill raw parts of map types whose layout the kernel defines (ids, stack traces)."""
    try:
        layout = KERNEL_LAYOUTS.get(bpfsys.MapType(map_type))
    except ValueError:  # a map type newer than bpfnb
        return types
    if layout is None:
        return types
    key, value = layout(key_size, value_size)
    for role, ctype in (("key", key), ("value", value)):
        if ctype is not None and is_raw(getattr(types, role)):
            setattr(types, role, ctype)
            setattr(types, f"{role}_decl", f"{ctype.__name__} (kernel layout)")
    return types


def _override(types: MapTypes, ctype: Any, role: str, size: int) -> MapTypes:
    if ctype is None:
        return types
    if ct.sizeof(ctype) != size:
        raise MapError(f"{role}={ctype.__name__} is {ct.sizeof(ctype)} bytes but the map's "
                       f"{role}s are {size}; pass a ctypes type of {size} bytes")
    setattr(types, role, ctype)
    setattr(types, f"{role}_decl", f"{ctype.__name__} (given)")
    return types


def _fd_kind(fd: int) -> str:
    """'map', 'prog' or 'link' for a bpf object fd ('' if it is none of them)."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""
    return {"anon_inode:bpf-map": "map", "anon_inode:bpf-prog": "prog",
            "anon_inode:bpf_link": "link", "anon_inode:bpf-link": "link"}.get(target, "")


_PINNED_COLUMNS = ["path", "kind", "id", "name", "type"]


def pinned(root: str = BPFFS_ROOT) -> pd.DataFrame:
    """Everything pinned under `root`: path, kind (map/prog/link), id, name, type."""
    rows: list[dict[str, Any]] = []
    rootp = Path(root)
    if not rootp.is_dir():
        raise BpfnbError(f"{root} is not a directory; bpf file systems: "
                         f"{', '.join(bpffs_mounts()) or 'none mounted'}")
    for path in sorted(p for p in rootp.rglob("*") if not p.is_dir()):
        try:
            fd = bpfsys.obj_get(str(path))
        except OSError:
            continue
        try:
            rows.append(_pinned_row(str(path), fd))
        finally:
            os.close(fd)
    df = pd.DataFrame(rows, columns=_PINNED_COLUMNS)
    df["id"] = df["id"].astype("int64")
    return df


def _pinned_row(path: str, fd: int) -> dict[str, Any]:
    kind = _fd_kind(fd)
    row: dict[str, Any] = {"path": path, "kind": kind or "unknown", "id": -1, "name": "",
                           "type": ""}
    if kind == "map":
        info = bpfsys.map_info(fd)
        row.update(id=info.id, name=info.name.decode(errors="replace"),
                   type=map_type_name(info.type))
    elif kind == "prog":
        pinfo = bpfsys.prog_info(fd)
        row.update(id=pinfo.id, name=program_name(fd, pinfo), type=prog_type_name(pinfo.type))
    elif kind == "link":
        link = link_record(fd)
        row.update(id=link.id, name=link.target, type=link.type)
    return row


__all__ = ["ExternalMap", "bpffs_mounts", "open_map", "pin", "pinned", "raw_type", "unpin"]
