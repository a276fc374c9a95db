"""ctypes over Debian's libbpf.so.1 (1.1+): open, load, attach and close BPF objects.

Pointer-returning calls give NULL and set errno (libbpf 1.x semantics); `check` turns
that into OSError. libbpf's messages (the verifier log among them) go to a per-thread
buffer through `capture()` instead of stderr.
"""

from __future__ import annotations

import contextlib
import ctypes as ct
import ctypes.util
import os
import threading
from collections.abc import Iterator
from typing import Any

from bpfnb._sys.libc import libc

_lib: Any = None
_local = threading.local()

PRINT_FN = ct.CFUNCTYPE(ct.c_int, ct.c_int, ct.c_char_p, ct.c_void_p)
P = ct.c_void_p


class OpenOpts(ct.Structure):
    """struct bpf_object_open_opts (libbpf 1.1)."""

    _fields_ = [("sz", ct.c_size_t), ("object_name", ct.c_char_p), ("relaxed_maps", ct.c_bool),
                ("pin_root_path", ct.c_char_p), ("_stub", ct.c_uint32),
                ("kconfig", ct.c_char_p), ("btf_custom_path", ct.c_char_p),
                ("kernel_log_buf", ct.c_char_p), ("kernel_log_size", ct.c_size_t),
                ("kernel_log_level", ct.c_uint32)]


class UprobeOpts(ct.Structure):
    """struct bpf_uprobe_opts."""

    _fields_ = [("sz", ct.c_size_t), ("ref_ctr_offset", ct.c_size_t),
                ("bpf_cookie", ct.c_uint64), ("retprobe", ct.c_bool),
                ("func_name", ct.c_char_p)]


_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "libbpf_version_string": (ct.c_char_p, []),
    "libbpf_set_print": (P, [PRINT_FN]),
    "bpf_object__open_mem": (P, [P, ct.c_size_t, ct.POINTER(OpenOpts)]),
    "bpf_object__load": (ct.c_int, [P]),
    "bpf_object__close": (None, [P]),
    "bpf_object__next_map": (P, [P, P]),
    "bpf_object__next_program": (P, [P, P]),
    "bpf_object__btf": (P, [P]),
    "btf__fd": (ct.c_int, [P]),
    "btf__raw_data": (P, [P, ct.POINTER(ct.c_uint32)]),
    "bpf_map__name": (ct.c_char_p, [P]),
    "bpf_map__fd": (ct.c_int, [P]),
    "bpf_map__type": (ct.c_int, [P]),
    "bpf_map__key_size": (ct.c_uint32, [P]),
    "bpf_map__value_size": (ct.c_uint32, [P]),
    "bpf_map__max_entries": (ct.c_uint32, [P]),
    "bpf_map__btf_key_type_id": (ct.c_uint32, [P]),
    "bpf_map__btf_value_type_id": (ct.c_uint32, [P]),
    "bpf_map__initial_value": (P, [P, ct.POINTER(ct.c_size_t)]),
    "bpf_map__set_initial_value": (ct.c_int, [P, P, ct.c_size_t]),
    "bpf_map__reuse_fd": (ct.c_int, [P, ct.c_int]),
    "bpf_program__name": (ct.c_char_p, [P]),
    "bpf_program__section_name": (ct.c_char_p, [P]),
    "bpf_program__fd": (ct.c_int, [P]),
    "bpf_program__type": (ct.c_int, [P]),
    "bpf_program__set_type": (ct.c_int, [P, ct.c_int]),
    "bpf_program__autoload": (ct.c_bool, [P]),
    "bpf_program__set_autoload": (ct.c_int, [P, ct.c_bool]),
    "bpf_program__set_autoattach": (None, [P, ct.c_bool]),
    "bpf_program__attach": (P, [P]),
    "bpf_program__attach_uprobe_opts": (P, [P, ct.c_int, ct.c_char_p, ct.c_size_t,
                                            ct.POINTER(UprobeOpts)]),
    "bpf_program__attach_usdt": (P, [P, ct.c_int, ct.c_char_p, ct.c_char_p, ct.c_char_p, P]),
    "bpf_program__attach_perf_event": (P, [P, ct.c_int]),
    "bpf_program__attach_tracepoint": (P, [P, ct.c_char_p, ct.c_char_p]),
    "bpf_program__attach_raw_tracepoint": (P, [P, ct.c_char_p]),
    "bpf_program__attach_kprobe": (P, [P, ct.c_bool, ct.c_char_p]),
    "bpf_program__attach_trace": (P, [P]),
    "bpf_program__attach_lsm": (P, [P]),
    "bpf_link__destroy": (ct.c_int, [P]),
}


def lib() -> Any:
    """The loaded libbpf with argument types set; OSError if it is not installed."""
    global _lib
    if _lib is None:
        name = "libbpf.so.1"
        # DEEPBIND: libbcc.so exports its own bundled libbpf; without it libbpf.so.1's
        # calls to its public functions could bind to bcc's copies (other log callback)
        mode = os.RTLD_LOCAL | getattr(os, "RTLD_DEEPBIND", 0)
        try:
            handle = ct.CDLL(name, mode=mode, use_errno=True)
        except OSError:
            found = ctypes.util.find_library("bpf")
            if not found:
                raise OSError(f"{name} not found (Debian package libbpf1)") from None
            handle = ct.CDLL(found, use_errno=True)
        for fname, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(handle, fname, None)
            if fn is not None:
                fn.restype, fn.argtypes = restype, argtypes
        handle.libbpf_set_print(_PRINT)
        _lib = handle
    return _lib


def version() -> str:
    return str(lib().libbpf_version_string().decode())


@PRINT_FN
def _print(level: int, fmt: bytes, ap: int) -> int:
    buf = ct.create_string_buffer(4096)
    n = libc.vsnprintf(buf, len(buf), fmt, ap)
    if n >= len(buf):  # long lines (verifier log chunks): format again, big enough
        buf = ct.create_string_buffer(n + 1)
        libc.vsnprintf(buf, len(buf), fmt, ap)
    sink = getattr(_local, "sink", None)
    if sink is not None and level <= 2:
        sink.append(buf.value.decode("utf-8", "replace"))
    return 0


_PRINT = _print


class Log:
    """What libbpf printed while `capture()` was active."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def append(self, s: str) -> None:
        self.parts.append(s)


@contextlib.contextmanager
def capture() -> Iterator[Log]:
    """Collect libbpf's messages printed by this thread."""
    log = Log()
    lib().libbpf_set_print(_PRINT)  # again: something in the process may have replaced it
    saved = getattr(_local, "sink", None)
    _local.sink = log
    try:
        yield log
    finally:
        _local.sink = saved


def check(ptr: int | None, what: str) -> int:
    """A non-NULL pointer, or OSError with libbpf's errno."""
    if not ptr:
        err = ct.get_errno() or 22
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ptr


def check_rc(rc: int, what: str) -> None:
    if rc < 0:
        err = -rc if rc != -1 else (ct.get_errno() or 1)
        raise OSError(err, f"{what}: {os.strerror(err)}")


def iterate(kind: str, obj: int) -> Iterator[int]:
    """Each bpf_map / bpf_program of an object ('map' or 'program')."""
    step = getattr(lib(), f"bpf_object__next_{kind}")
    cur = step(obj, None)
    while cur:
        yield cur
        cur = step(obj, cur)


def open_mem(data: bytes, name: str) -> tuple[int, Any]:
    """bpf_object__open_mem; returns the object and the buffer that must outlive it."""
    buf = ct.create_string_buffer(data, len(data))
    opts = OpenOpts(sz=ct.sizeof(OpenOpts), object_name=name.encode())
    obj = lib().bpf_object__open_mem(buf, len(data), ct.byref(opts))
    return check(obj, f"open BPF object {name}"), buf


def attach_uprobe(prog: int, pid: int, binary: str, offset: int, *, ret: bool,
                  func_name: str | None, ref_ctr_offset: int = 0) -> int:
    opts = UprobeOpts(sz=ct.sizeof(UprobeOpts), ref_ctr_offset=ref_ctr_offset, retprobe=ret,
                      func_name=func_name.encode() if func_name else None)
    link = lib().bpf_program__attach_uprobe_opts(prog, pid, binary.encode(), offset,
                                                 ct.byref(opts))
    return check(link, f"attach uprobe {binary}:{func_name or hex(offset)}")
