"""The only module that imports bcc: compile, load, attach and free one BCC C program.

bcc reports problems as bare Exceptions and writes details to the C-level stderr; every
call here captures that stream and turns the failure into a bpfnb error.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes as ct
import errno
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from bpfnb._sys import features
from bpfnb.backends import diagnose
from bpfnb.backends.base import AttachPoint, Usdt
from bpfnb.errors import (
    AttachError,
    BpfnbError,
    FeatureUnavailableError,
    PrivilegeError,
    UnknownMapError,
    UnknownTargetError,
)

_stderr_lock = threading.RLock()


class Captured:
    text = ""


@contextlib.contextmanager
def captured_stderr() -> Iterator[Captured]:
    """Redirect the process's fd 2 (where libbcc and clang write) into a buffer."""
    out = Captured()
    with _stderr_lock, tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.text = tmp.read().decode("utf-8", "replace")


def _bcc() -> Any:
    try:
        import bcc
    except ImportError as e:  # pragma: no cover - depends on the machine
        raise FeatureUnavailableError(
            "bcc is not importable: install Debian's python3-bpfcc (`make setup` does it and "
            "links it into the venv). PyPI's 'bcc' is an unrelated project.") from e
    return bcc


_SUBCLASS: Any = None


def _bpf_class() -> Any:
    """bcc.BPF without its constructor-time auto-attach: we attach one by one, with errors."""
    global _SUBCLASS
    if _SUBCLASS is None:
        bcc = _bcc()

        class QuietBPF(bcc.BPF):  # type: ignore[name-defined]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                try:
                    super().__init__(*args, **kwargs)
                except BaseException:   # e.g. a USDT probe failing after the maps exist
                    _discard(self)
                    raise

            def _trace_autoload(self) -> None:
                pass

        _SUBCLASS = QuietBPF
    return _SUBCLASS


def _discard(bpf: Any) -> None:
    """Free a BPF object whose constructor failed: bcc's atexit hook is all that holds it,
    and its maps and loaded functions are open fds until the module is destroyed."""
    atexit.unregister(bpf.cleanup)
    with contextlib.suppress(Exception):
        bpf.cleanup()


_AUTO_PREFIXES = (
    ("kretprobe__", "kretprobe"), ("kprobe__", "kprobe"), ("tracepoint__", "tracepoint"),
    ("raw_tracepoint__", "raw_tracepoint"), ("kretfunc__", "kretfunc"), ("kfunc__", "kfunc"),
    ("lsm__", "lsm"),
)
_STRERROR_ERRNO = {os.strerror(n): n for n in errno.errorcode}


def _detach_each(bpf: Any) -> None:
    """Detach probe by probe, so one failure (e.g. bcc removing a tracefs uprobe event
    without tracefs access, after it already closed the probe's perf fd) skips nothing."""
    groups = ((bpf.kprobe_fds, bpf.detach_kprobe_event),
              (bpf.uprobe_fds, bpf.detach_uprobe_event),
              (bpf.tracepoint_fds, bpf.detach_tracepoint),
              (bpf.raw_tracepoint_fds, bpf.detach_raw_tracepoint),
              (bpf.kfunc_entry_fds, bpf.detach_kfunc),
              (bpf.kfunc_exit_fds, bpf.detach_kretfunc),
              (bpf.lsm_fds, bpf.detach_lsm))
    for fds, detach in groups:
        for key in list(fds):
            try:
                detach(key)
            except Exception:
                held = fds.pop(key, None)  # what bcc could not release: close its fds
                for fd in held.values() if isinstance(held, dict) else [held]:
                    with contextlib.suppress(OSError, TypeError):
                        os.close(fd)


def _attach_uprobe(bpf: Any, fn_name: bytes, binary: str, symbol: str | None,
                   addr: int | None, pid: int, sym_off: int, ret: bool) -> None:
    """bcc's attach_u(ret)probe, but with an explicit zero reference counter offset: bcc's
    Python passes none (bcc issue 5236), so perf_event_open gets stack garbage and the
    uprobe conflicts with every other tool's (bpftrace's) probe on the same function."""
    bcc = _bcc()
    path, address = bcc.BPF._check_path_symbol(binary.encode(), (symbol or "").encode(),
                                               addr, pid, sym_off)
    bpf._check_probe_quota(1)
    fd_prog = bpf.load_func(fn_name, bcc.BPF.KPROBE).fd
    ev_name = bpf._get_uprobe_evname(b"r" if ret else b"p", path, address, pid)
    ct.set_errno(0)
    fd = _libbcc_attach_uprobe()(fd_prog, int(ret), ev_name, path, address, pid, 0)
    if fd < 0:
        err = ct.get_errno() or errno.EINVAL
        raise OSError(err, f"Failed to attach BPF to {'uretprobe' if ret else 'uprobe'}: "
                           f"{os.strerror(err)}")
    bpf._add_uprobe_fd(ev_name, fd)


_ATTACH_UPROBE: Any = None


def _libbcc_attach_uprobe() -> Any:
    """libbcc's bpf_attach_uprobe with its full 0.26 signature (a private function object,
    so bcc's own 6-argument prototype stays as it is)."""
    global _ATTACH_UPROBE
    if _ATTACH_UPROBE is None:
        func = ct.CDLL("libbcc.so.0", use_errno=True).bpf_attach_uprobe
        func.restype = ct.c_int
        func.argtypes = [ct.c_int, ct.c_int, ct.c_char_p, ct.c_char_p, ct.c_uint64, ct.c_int,
                         ct.c_uint32]
        _ATTACH_UPROBE = func
    return _ATTACH_UPROBE


class BccModule:
    """One compiled BCC program: its functions, tables and attachments."""

    def __init__(self, source: str, cflags: Sequence[str] = (), usdt: Sequence[Usdt] = ()):
        perm = features.can_load_bpf()
        if not perm:
            raise PrivilegeError(f"Cannot load a BPF program: {perm.reason}")
        diagnose.check_tracepoints(source)
        self.source = source
        self.attached: list[AttachPoint] = []
        bcc = _bcc()
        contexts = [self._usdt_context(u) for u in usdt]
        text = diagnose.prepare_source(source)
        failed = False
        with captured_stderr() as cap:
            try:
                # allow_rlimit=False: never lift RLIMIT_MEMLOCK behind the user's back
                # (kernels >= 5.11 account BPF memory to the cgroup instead)
                self.bpf = _bpf_class()(text=text.encode(), cflags=list(cflags),
                                        usdt_contexts=contexts, allow_rlimit=False)
            except Exception:
                failed = True
        if failed:
            raise diagnose.compile_error(source, cap.text)
        self.compiler_output = cap.text
        atexit.unregister(self.bpf.cleanup)  # we free it ourselves, once
        atexit.unregister(self.bpf.donothing)
        self.attached.extend(AttachPoint("usdt", f"{u.path or u.pid}:{u.probe}", u.function)
                             for u in usdt)
        self._bcc = bcc

    # -- introspection --------------------------------------------------------------------
    def functions(self) -> list[str]:
        lib = self._bcc.libbcc.lib
        return [lib.bpf_function_name(self.bpf.module, i).decode()
                for i in range(lib.bpf_num_functions(self.bpf.module))]

    def table_names(self) -> list[str]:
        lib = self._bcc.libbcc.lib
        lib.bpf_num_tables.restype = ct.c_size_t
        lib.bpf_num_tables.argtypes = [ct.c_void_p]
        lib.bpf_table_name.restype = ct.c_char_p
        lib.bpf_table_name.argtypes = [ct.c_void_p, ct.c_size_t]
        n = lib.bpf_num_tables(self.bpf.module)
        return [lib.bpf_table_name(self.bpf.module, i).decode() for i in range(n)]

    def table(self, name: str) -> Any:
        """bcc's table object (key/leaf ctypes types and fd); for map types bcc 0.26's
        Python cannot open (sockmap, sockhash, cgroup storage, ...) a RawTable."""
        try:
            return self.bpf[name.encode()]
        except Exception:  # bcc: "Unknown table type N"
            return raw_table(self.bpf, name)

    def loaded_fds(self) -> dict[str, int]:
        """Every function loaded so far and its program fd."""
        return {n.decode() if isinstance(n, bytes) else n: int(fn.fd)
                for n, fn in self.bpf.funcs.items()}

    def program_fd(self, function: str, prog_type: int) -> int:
        """Load a function as a program of this type; its fd (bcc keeps it)."""
        fn = self._guard("load", function, function,
                         lambda: self.bpf.load_func(function.encode(), prog_type))
        return int(fn.fd)

    # -- attaching ----------------------------------------------------------------------
    def autoattach(self) -> None:
        """Attach every function whose name says where (as bcc does), one at a time."""
        for function in self.functions():
            for prefix, kind in _AUTO_PREFIXES:
                if function.startswith(prefix):
                    self._autoattach(kind, function, function[len(prefix):])
                    break

    def _autoattach(self, kind: str, function: str, rest: str) -> None:
        b, fn = self.bpf, function.encode()
        if kind in ("kprobe", "kretprobe"):
            event = b.fix_syscall_fnname(rest.encode())
            call = b.attach_kprobe if kind == "kprobe" else b.attach_kretprobe
            target = event.decode()
            self._attach(kind, target, function, lambda: call(
                event=event, fn_name=self._loaded(function, b.KPROBE)))
        elif kind == "tracepoint":
            target = rest.replace("__", ":", 1)
            self._attach(kind, target, function, lambda: b.attach_tracepoint(
                tp=target.encode(), fn_name=self._loaded(function, b.TRACEPOINT)))
        elif kind == "raw_tracepoint":
            self._attach(kind, rest, function, lambda: b.attach_raw_tracepoint(
                tp=rest.encode(), fn_name=self._loaded(function, b.RAW_TRACEPOINT)))
        else:  # kfunc, kretfunc, lsm: bcc loads with the right type itself
            call = {"kfunc": b.attach_kfunc, "kretfunc": b.attach_kretfunc,
                    "lsm": b.attach_lsm}[kind]
            self._attach(kind, rest, function, lambda: call(fn_name=fn))

    def attach_btf(self, kind: str, function: str, target: str) -> None:
        """fentry/fexit/LSM ('kfunc', 'kretfunc', 'lsm'): bcc loads with the BTF target."""
        self._autoattach(kind, function, target)

    def _loaded(self, function: str, prog_type: int) -> bytes:
        self.program_fd(function, prog_type)
        return function.encode()

    def attach_tracepoint(self, tracepoint: str, function: str) -> None:
        category, _, event = tracepoint.partition(":")
        if features.tracefs() and not features.tracepoint_exists(category, event):
            raise diagnose.unknown_tracepoint(tracepoint)
        self._attach("tracepoint", tracepoint, function, lambda: self.bpf.attach_tracepoint(
            tp=tracepoint.encode(), fn_name=self._loaded(function, self.bpf.TRACEPOINT)))

    def attach_raw_tracepoint(self, tracepoint: str, function: str) -> None:
        self._attach("raw_tracepoint", tracepoint, function, lambda: self.bpf.attach_raw_tracepoint(
            tp=tracepoint.encode(), fn_name=self._loaded(function, self.bpf.RAW_TRACEPOINT)))

    def attach_kprobe(self, event: str, function: str, ret: bool = False) -> None:
        kind = "kretprobe" if ret else "kprobe"
        call = self.bpf.attach_kretprobe if ret else self.bpf.attach_kprobe
        self._attach(kind, event, function, lambda: call(
            event=event.encode(), fn_name=self._loaded(function, self.bpf.KPROBE)))

    def attach_uprobe(self, binary: str, symbol: str | None, function: str, *, ret: bool,
                      pid: int, addr: int | None, sym_off: int) -> None:
        kind = "uretprobe" if ret else "uprobe"
        target = f"{binary}:{symbol if symbol else hex(addr or 0)}"
        fn = self._loaded(function, self.bpf.KPROBE)
        self._attach(kind, target, function, lambda: _attach_uprobe(
            self.bpf, fn, binary, symbol, addr, pid, 0 if ret else sym_off, ret),
                     on_error=lambda msg: diagnose.uprobe_failure(
                         function, binary, symbol or "", msg))

    def attach_usdt(self, probe: str, function: str, path: str | None, pid: int | None) -> None:
        ctx = self._usdt_context(Usdt(probe, function, path, pid))
        self._loaded(function, self.bpf.KPROBE)
        self._attach("usdt", f"{path or pid}:{probe}", function,
                     lambda: ctx.attach_uprobes(self.bpf, False))

    def attach_perf_event(self, function: str, ev_type: int, ev_config: int, *,
                          sample_period: int, sample_freq: int, pid: int, cpu: int) -> None:
        target = f"type={ev_type},config={ev_config}"
        self._attach("perf_event", target, function, lambda: self.bpf.attach_perf_event(
            ev_type=ev_type, ev_config=ev_config,
            fn_name=self._loaded(function, self.bpf.PERF_EVENT),
            sample_period=sample_period, sample_freq=sample_freq, pid=pid, cpu=cpu))

    def _usdt_context(self, u: Usdt) -> Any:
        bcc = _bcc()
        try:
            ctx = bcc.USDT(path=u.path, pid=u.pid)
            ctx.enable_probe(u.probe, u.function)
        except Exception as e:
            raise UnknownTargetError(
                f"Cannot enable USDT probe {u.probe} in {u.path or u.pid}: {str(e).splitlines()[0]}"
                " List the probes with `tplist-bpfcc -l PATH`.") from e
        return ctx

    def _attach(self, kind: str, target: str, function: str, call: Callable[[], Any],
                on_error: Callable[[str], Exception] | None = None) -> None:
        missing = diagnose.probe_missing_feature(kind, function, target)
        if missing is not None:
            raise missing
        self._guard(kind, target, function, call, on_error)
        self.attached.append(AttachPoint(kind, target, function))

    def _guard(self, kind: str, target: str, function: str, call: Callable[[], Any],
               on_error: Callable[[str], Exception] | None = None) -> Any:
        with captured_stderr() as cap:
            try:
                result = call()
            except BpfnbError:
                raise
            except Exception as e:
                failure: Exception | None = e
            else:
                failure = None
        if failure is None:
            return result
        message = str(failure)
        if "Failed to load BPF program" in message or "Need super-user" in message:
            err = next((n for s, n in _STRERROR_ERRNO.items() if message.endswith(s)),
                       errno.EPERM)
            raise diagnose.verifier_error(function, self.source, cap.text, err) from None
        if on_error is not None:
            raise on_error(message) from None
        if kind in ("kprobe", "kretprobe"):
            raise diagnose.kprobe_failure(function, target) from None
        if kind == "tracepoint":
            raise diagnose.unknown_tracepoint(target) from None
        detail = cap.text.strip().splitlines()[-1] if cap.text.strip() else ""
        raise AttachError(f"Cannot attach {function} to {kind} {target}: {message}"
                          + (f" ({detail})" if detail else ""), details=cap.text) from None

    # -- lifecycle ----------------------------------------------------------------------
    def close(self) -> None:
        """Detach everything and free the module (idempotent)."""
        bpf = getattr(self, "bpf", None)
        if bpf is None:
            return
        with captured_stderr():
            _detach_each(bpf)
            try:
                bpf.cleanup()  # perf buffers, perf events, ring buffers, fds, the module
            except Exception:
                bpf.close()
        self.attached.clear()
        self.bpf = None


# -- maps bcc's Python does not know ---------------------------------------------------------

@dataclass(frozen=True)
class RawTable:
    """A map bcc's table classes cannot open: its fd and key/leaf types straight from libbcc
    (MapView reads the map's BTF where bcc has no ctypes type)."""

    map_fd: int
    Key: Any
    Leaf: Any


def raw_table(bpf: Any, name: str) -> RawTable:
    """The fd and key/leaf types of map `name` of a loaded bcc BPF object."""
    lib = _bcc().lib
    for fn, res in (("bpf_table_fd", ct.c_int), ("bpf_table_key_desc", ct.c_char_p),
                    ("bpf_table_leaf_desc", ct.c_char_p)):
        getattr(lib, fn).restype = res
        getattr(lib, fn).argtypes = [ct.c_void_p, ct.c_char_p]
    fd = lib.bpf_table_fd(bpf.module, name.encode())
    if fd < 0:
        raise UnknownMapError(f"no map {name!r} in this program; see prog.map_names")
    key_desc = lib.bpf_table_key_desc(bpf.module, name.encode())
    leaf_desc = lib.bpf_table_leaf_desc(bpf.module, name.encode())
    key = _decode(bpf, key_desc) if key_desc else None
    leaf = _decode(bpf, leaf_desc) if leaf_desc else ct.c_uint8
    return RawTable(int(fd), key, leaf)


def _decode(bpf: Any, desc: bytes) -> Any:
    """bcc's ctypes type for a description, or None where bcc has none (e.g. 'signed char')."""
    try:
        return bpf._decode_table_type(json.loads(desc))
    except (KeyError, TypeError, ValueError, IndexError):
        return None


__all__ = ["AttachPoint", "BccModule", "RawTable", "Usdt", "captured_stderr", "raw_table"]
