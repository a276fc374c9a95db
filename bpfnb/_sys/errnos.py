"""The errno table of bpf(2): a kernel errno -> a named bpfnb error whose message says what
to do, for a map element operation (given its OpContext) or an object operation (given
what it tried to do: "open BPF map id 7")."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bpfnb._sys import bpfsys
from bpfnb._sys.bpfsys import ARRAYS, QUEUES
from bpfnb.errors import (
    BpfnbError,
    KeyExistsError,
    KeyNotFoundError,
    KeyTypeError,
    MapError,
    MapFullError,
    PrivilegeError,
    UnsupportedMapError,
)


@dataclass(frozen=True)
class OpContext:
    """What was being done when the kernel said no."""

    op: str  # lookup, update, delete, pop, push, peek, update_batch, delete_batch, keys
    map_name: str
    map_type: bpfsys.MapType
    max_entries: int
    key: Any = None
    flags: str = ""

    @property
    def where(self) -> str:
        return f"map {self.map_name!r} ({self.map_type.name})"

    @property
    def key_text(self) -> str:
        return "" if self.key is None else f" {self.key!r}"


def _enoent(c: OpContext) -> MapError:
    if c.map_type in QUEUES:
        return KeyNotFoundError(f"{c.where} is empty")
    if c.op == "update":
        return KeyNotFoundError(f"key{c.key_text} is not in {c.where}; flags='exist' only "
                                "replaces existing keys (use flags='any' to insert)")
    return KeyNotFoundError(f"key{c.key_text} is not in {c.where}")


def _eexist(c: OpContext) -> MapError:
    if c.map_type in ARRAYS:
        return KeyExistsError(f"every index of {c.where} always exists; flags='noexist' "
                              "cannot insert into an array (use flags='any')")
    return KeyExistsError(f"key{c.key_text} is already in {c.where}; flags='noexist' only "
                          "inserts new keys (use flags='any' or 'exist' to replace)")


def _e2big(c: OpContext) -> MapError:
    if c.map_type in ARRAYS:
        return KeyNotFoundError(f"index{c.key_text} is outside {c.where}: indexes run "
                                f"0..{c.max_entries - 1} (max_entries {c.max_entries})")
    if c.map_type in QUEUES:
        return MapFullError(f"{c.where} is full ({c.max_entries} entries, max_entries); "
                            "pop some, or push(value, overwrite=True) to drop the oldest")
    return MapFullError(f"{c.where} is full: it holds max_entries={c.max_entries} entries and "
                        f"cannot take key{c.key_text}. Delete keys, raise max_entries, or use "
                        "an LRU map, which evicts the least recently used key instead")


def _unsupported(c: OpContext) -> MapError:
    hint = {
        "delete": "; array elements cannot be deleted, write zero instead",
        "pop": "; lookup-and-delete works on hash, LRU, queue and stack maps",
        "lookup": "; the kernel does not let user space read this map type",
    }.get(c.op, "")
    return UnsupportedMapError(f"{c.op} is not supported on {c.where}{hint}")


def _einval(c: OpContext) -> MapError:
    if c.flags and "lock" in c.flags:
        return UnsupportedMapError(f"{c.op} with lock=True needs a value holding a "
                                   f"struct bpf_spin_lock (and BTF); {c.where} has none")
    if c.op == "delete" and c.map_type in ARRAYS:
        return _unsupported(c)
    if c.map_type == bpfsys.MapType.LPM_TRIE:
        return KeyTypeError(f"key{c.key_text} breaks {c.where}'s rules: prefixlen must not "
                            "exceed the address bits in the key")
    if c.op in ("pop", "push", "peek") and c.map_type not in QUEUES:
        return _unsupported(c)
    return MapError(f"{c.op} on {c.where} rejected as invalid (EINVAL) for key{c.key_text}"
                    f"{' with flags ' + c.flags if c.flags else ''}")


MapMessage = Callable[[OpContext], BpfnbError]
ObjMessage = Callable[[str], BpfnbError]


def _map(cls: type[BpfnbError], text: str) -> MapMessage:
    """A map message with no cases: `text` with the OpContext as {c}."""
    return lambda c: cls(text.format(c=c))


def _obj(cls: type[BpfnbError], text: str) -> ObjMessage:
    """An object message: `text` with what was tried as {what}."""
    return lambda what: cls(text.format(what=what))


_eperm = _map(PrivilegeError, "{c.op} on {c.where} is not permitted: run as root or with "
              "CAP_BPF (maps of a frozen or read-only kind refuse writes too)")

# errno: (error for a map element op, error for an object op or None for the generic one)
TABLE: dict[int, tuple[MapMessage, ObjMessage | None]] = {
    errno.ENOENT: (_enoent, _obj(
        MapError, "could not {what}: it does not exist (any more); list what there is with "
        "bpfnb.maps(), bpfnb.programs() or bpfnb.pinned()")),
    errno.EEXIST: (_eexist, None),
    errno.E2BIG: (_e2big, None),
    errno.EINVAL: (_einval, None),
    errno.EOPNOTSUPP: (_unsupported, None),
    bpfsys.ENOTSUPP: (_unsupported, None),
    errno.EBADF: (_map(
        KeyTypeError, "{c.where} stores file descriptors: the value given to {c.op} is not "
        "an open fd of the right kind (program, map, socket, cgroup...)"), None),
    errno.EPERM: (_eperm, _obj(
        PrivilegeError, "the kernel refused to {what} (EPERM): listing and opening BPF "
        "objects by id needs CAP_SYS_ADMIN; run the notebook kernel as root")),
    errno.EACCES: (_eperm, _obj(
        PrivilegeError, "the kernel refused to {what} (EACCES): check the file's "
        "permissions and run the notebook kernel as root")),
    errno.ENOSPC: (_map(
        UnsupportedMapError, "{c.op} on {c.where}: the kernel returns socket cookies only "
        "when the value is 8 bytes (declare the map with a u64 value)"), None),
    errno.EBUSY: (_map(MapError, "{c.where} is busy ({c.op}); retry (a program holds the "
                                 "element)"), None),
}


def translate(err: OSError, ctx: OpContext | str) -> BpfnbError:
    """The bpfnb error for an OSError a bpf(2) call raised: `ctx` is the map element
    operation, or (a string) what an object operation tried to do."""
    row = TABLE.get(err.errno or 0)
    reason = f"{os.strerror(err.errno or 0)} (errno {err.errno})"
    if isinstance(ctx, str):
        if row is not None and row[1] is not None:
            return row[1](ctx)
        return BpfnbError(f"could not {ctx}: {reason}")
    if row is not None:
        return row[0](ctx)
    return MapError(f"{ctx.op} on {ctx.where} failed: {reason}")
