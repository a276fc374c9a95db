"""The bpf(2) errno table (`bpfnb._sys.errnos`): which named error and which advice each
kernel errno gives, for map element operations and for object operations."""

from __future__ import annotations

import errno

import pytest

from bpfnb._sys import bpfsys
from bpfnb._sys.errnos import TABLE, OpContext, translate
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

T = bpfsys.MapType


def ctx(op: str, map_type: T = T.HASH, key: object = 7, flags: str = "") -> OpContext:
    return OpContext(op, "counts", map_type, 1024, key, flags)


def err(code: int) -> OSError:
    return OSError(code, "kernel said no")


@pytest.mark.parametrize(("code", "c", "cls", "text"), [
    (errno.ENOENT, ctx("lookup"), KeyNotFoundError, "key 7 is not in map 'counts' (HASH)"),
    (errno.ENOENT, ctx("update", flags="exist"), KeyNotFoundError, "flags='exist' only"),
    (errno.ENOENT, ctx("pop", T.QUEUE, None), KeyNotFoundError, "map 'counts' (QUEUE) is empty"),
    (errno.EEXIST, ctx("update"), KeyExistsError, "key 7 is already in"),
    (errno.EEXIST, ctx("update", T.ARRAY), KeyExistsError, "every index of"),
    (errno.E2BIG, ctx("update"), MapFullError, "holds max_entries=1024"),
    (errno.E2BIG, ctx("update", T.ARRAY, 2000), KeyNotFoundError, "indexes run 0..1023"),
    (errno.E2BIG, ctx("push", T.STACK, None), MapFullError, "overwrite=True"),
    (errno.EINVAL, ctx("update", flags="lock"), UnsupportedMapError, "struct bpf_spin_lock"),
    (errno.EINVAL, ctx("delete", T.ARRAY), UnsupportedMapError, "write zero instead"),
    (errno.EINVAL, ctx("update", T.LPM_TRIE), KeyTypeError, "prefixlen"),
    (errno.EINVAL, ctx("pop"), UnsupportedMapError, "lookup-and-delete works on"),
    (errno.EINVAL, ctx("lookup"), MapError, "rejected as invalid (EINVAL)"),
    (errno.EOPNOTSUPP, ctx("lookup"), UnsupportedMapError, "does not let user space read"),
    (bpfsys.ENOTSUPP, ctx("delete"), UnsupportedMapError, "array elements cannot be deleted"),
    (errno.EBADF, ctx("update", T.PROG_ARRAY), KeyTypeError, "stores file descriptors"),
    (errno.EPERM, ctx("update"), PrivilegeError, "run as root or with CAP_BPF"),
    (errno.EACCES, ctx("delete"), PrivilegeError, "not permitted"),
    (errno.ENOSPC, ctx("lookup", T.SOCKMAP), UnsupportedMapError, "socket cookies"),
    (errno.EBUSY, ctx("update"), MapError, "is busy (update); retry"),
    (errno.EMFILE, ctx("update"), MapError, "update on map 'counts' (HASH) failed: Too many"),
])
def test_map_operation_errors(code: int, c: OpContext, cls: type, text: str) -> None:
    e = translate(err(code), c)
    assert type(e) is cls
    assert text in str(e)


@pytest.mark.parametrize(("code", "cls", "text"), [
    (errno.ENOENT, MapError, "could not open BPF map id 7: it does not exist (any more)"),
    (errno.EPERM, PrivilegeError, "the kernel refused to open BPF map id 7 (EPERM)"),
    (errno.EACCES, PrivilegeError, "the kernel refused to open BPF map id 7 (EACCES)"),
    (errno.EINVAL, BpfnbError, "could not open BPF map id 7: Invalid argument (errno 22)"),
    (errno.EMFILE, BpfnbError, "could not open BPF map id 7: Too many open files (errno 24)"),
])
def test_object_operation_errors(code: int, cls: type, text: str) -> None:
    e = translate(err(code), "open BPF map id 7")
    assert type(e) is cls
    assert str(e).startswith(text)


@pytest.mark.parametrize("code", sorted(TABLE), ids=errno.errorcode.get)
@pytest.mark.parametrize("map_type", [T.HASH, T.ARRAY, T.QUEUE, T.LPM_TRIE], ids=str)
def test_every_row_names_a_map_error_with_advice(code: int, map_type: T) -> None:
    for op in ("lookup", "update", "delete", "pop", "push", "keys"):
        e = translate(err(code), ctx(op, map_type))
        assert isinstance(e, BpfnbError)
        assert "counts" in str(e).splitlines()[0]


def test_enotsupp_is_the_kernel_internal_524() -> None:
    assert bpfsys.ENOTSUPP == 524 and 524 not in errno.errorcode
    assert str(OSError(524, "x")) and TABLE[524] == TABLE[errno.EOPNOTSUPP]
