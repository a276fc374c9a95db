"""LibbpfModule: one BCC C cell compiled with clang (CO-RE) and run through libbpf.

Same interface as backends.bcc.BccModule, so Program can drive either. Functions whose
name says where they attach are loaded with the object; any other function is loaded
on first use with the type given (`program_fd`), in a second object that reuses the
first one's maps.
"""

from __future__ import annotations

import ctypes as ct
import errno
import functools
import os
import platform
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bpfnb._sys import bpfsys, features, libbpf
from bpfnb._sys.btf import is_raw
from bpfnb._sys.perfevent import online_cpus, perf_event_open
from bpfnb.backends import diagnose
from bpfnb.backends.base import AttachPoint, Backend, Usdt
from bpfnb.backends.libbpf import compiler
from bpfnb.backends.libbpf.objfile import BpfObject
from bpfnb.backends.libbpf.rewrite import LAZY, USDT_PRELUDE, rewrite
from bpfnb.backends.libbpf.usdt import provider as usdt_provider
from bpfnb.errors import AttachError, BpfnbError, PrivilegeError

KPROBE, TRACEPOINT, PERF_EVENT, RAW_TRACEPOINT = 2, 5, 7, 17
_SECTION_KINDS = (("tracepoint/", "tracepoint"), ("tp/", "tracepoint"),
                  ("raw_tracepoint/", "raw_tracepoint"), ("raw_tp/", "raw_tracepoint"),
                  ("kprobe/", "kprobe"), ("kretprobe/", "kretprobe"), ("fentry/", "kfunc"),
                  ("fexit/", "kretfunc"), ("lsm/", "lsm"), ("tp_btf/", "tp_btf"),
                  ("uprobe", "uprobe"), ("uretprobe", "uretprobe"), ("usdt", "usdt"),
                  ("ksyscall/", "kprobe"), ("kretsyscall/", "kretprobe"), ("iter/", "iter"))
# loaded when attached, one by one as bcc does: a kernel that refuses these types (no BPF
# trampolines, no BPF LSM) then still runs the cell's other functions
ON_ATTACH = ("fentry/", "fexit/", "lsm/")
_INDEXED = frozenset(int(t) for t in (
    bpfsys.MapType.PERF_EVENT_ARRAY, bpfsys.MapType.PROG_ARRAY, bpfsys.MapType.CGROUP_ARRAY,
    bpfsys.MapType.ARRAY_OF_MAPS, bpfsys.MapType.HASH_OF_MAPS, bpfsys.MapType.DEVMAP,
    bpfsys.MapType.CPUMAP, bpfsys.MapType.XSKMAP, bpfsys.MapType.SOCKMAP,
    bpfsys.MapType.SOCKHASH))


@dataclass
class Table:
    """What Program needs of a map: its fd and key/value ctypes types (from BTF), and for
    perf/ring buffers the event type the program sends (None if it could not be told)."""

    name: str
    map_fd: int
    Key: Any
    Leaf: Any
    event_type: Any = None

    def event(self, data: Any) -> Any:
        """An event decoded from a buffer (as bcc's table.event); events.py uses its type."""
        if self.event_type is None:
            raise BpfnbError(f"the type of {self.name!r}'s events is unknown; pass "
                              "event_type=<ctypes struct>")
        return self.event_type.from_buffer_copy(bytes(data)[:ct.sizeof(self.event_type)])


def _kind(section: str) -> tuple[str, str] | None:
    """(attach kind, target) of an ELF section name, or None."""
    for prefix, kind in _SECTION_KINDS:
        if section.startswith(prefix):
            target = section[len(prefix):].lstrip("/")
            return kind, target.replace("/", ":", 1) if kind == "tracepoint" else target
    return None


class LibbpfModule:
    """A compiled and loaded libbpf object: its functions, tables and attachments."""

    backend = "libbpf"
    bpf = None  # no bcc object (bcc-only helpers look for it)

    def __init__(self, source: str, cflags: Sequence[str] = (), usdt: Sequence[Usdt] = (),
                 name: str = "bpfnb", consts: Mapping[str, Any] | None = None) -> None:
        """Compile (or take from the cache), set `const volatile` globals from `consts`
        (values that change per run belong there, not in -D flags: the object is reused),
        load."""
        _check_permission()
        diagnose.check_source(source)
        diagnose.check_tracepoints(source)
        text = rewrite(source, frozenset(u.function for u in usdt))
        if USDT_PRELUDE in text.text:  # usdt.bpf.h includes linux/errno.h -> asm/errno.h
            cflags = [*cflags, "-idirafter", f"/usr/include/{platform.machine()}-linux-gnu"]
        try:
            built = compiler.compile_c(text.text, tuple(cflags))
        except compiler.ClangError as e:
            raise diagnose.compile_error(source, e.output) from None
        self.compiler_output = built.output
        self.cold_compile = built.cold
        self.cached_object = built.cached
        self._events = text.events
        self._setup(BpfObject(built.obj, name, source,
                              autoload=lambda _n, sec: not sec.startswith((LAZY, *ON_ATTACH))),
                    consts)
        try:
            for u in usdt:
                self.attach_usdt(u.probe, u.function, u.path, u.pid)
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_object(cls, data: bytes, name: str,
                    consts: Mapping[str, Any] | None = None) -> LibbpfModule:
        """Load a libbpf CO-RE object built elsewhere (see load_object)."""
        _check_permission()
        self = cls.__new__(cls)
        self.compiler_output, self.cold_compile, self.cached_object = "", False, False
        self._events = {}
        self._setup(BpfObject(data, name), consts)
        return self

    def _setup(self, obj: BpfObject, consts: Mapping[str, Any] | None = None) -> None:
        self.source = obj.source
        self.attached: list[AttachPoint] = []
        self._links: list[int] = []
        self._extra: dict[str, BpfObject] = {}  # lazily loaded functions
        self._tables: dict[str, Table] = {}
        self.obj = obj
        try:
            if consts:
                obj.set_consts(consts)
            obj.load()
        except BaseException:
            obj.close()
            raise

    # -- introspection --------------------------------------------------------------------
    def functions(self) -> list[str]:
        return list(self.obj.programs)

    def table_names(self) -> list[str]:
        """User maps (not .rodata/.bss/.data or libbpf's own), by name as bcc lists them."""
        return sorted(n for n in self.obj.maps if "." not in n and not n.startswith("__bpf"))

    def table(self, name: str) -> Table:
        """The map's fd and key/value types from the object's BTF (which also types maps
        the kernel keeps no BTF for: stack traces, queues, perf arrays)."""
        if name not in self._tables:
            fd = self.obj.map_fd(name)
            info = bpfsys.map_info(fd)
            key, value = self.obj.map_types(name, info.key_size, info.value_size)
            if info.type in _INDEXED:  # slots of fds or ids, declared by size: ints, as in bcc
                key = ct.c_int if is_raw(key) and info.key_size == 4 else key
                value = ct.c_int if is_raw(value) and info.value_size == 4 else value
            event = self._events.get(name)
            self._tables[name] = Table(name, fd, key if info.key_size else None, value,
                                       self.obj.named_type(event) if event else None)
        return self._tables[name]

    def loaded_fds(self) -> dict[str, int]:
        """Every function loaded so far and its program fd (bcc: `bpf.funcs`)."""
        out = {n: int(self.obj.lib.bpf_program__fd(p)) for n, p in self.obj.programs.items()}
        out.update((n, e.program_fd(n)) for n, e in self._extra.items())
        return {n: fd for n, fd in out.items() if fd >= 0}

    def program_fd(self, function: str, prog_type: int) -> int:
        """The function's program fd, loading it as `prog_type` if it was not loaded."""
        return int(self.obj.lib.bpf_program__fd(self._program(function, prog_type)))

    def _program(self, function: str, prog_type: int | None = None) -> int:
        """The loaded bpf_program of `function` (loading one not loaded yet: as prog_type
        if its section does not say)."""
        obj = self.obj
        if function not in obj.programs:
            raise AttachError(f"no function {function!r} in this program; its functions are: "
                              f"{', '.join(obj.programs) or 'none'}")
        lazy = obj.section(function).startswith(LAZY)
        if obj.lib.bpf_program__fd(obj.programs[function]) >= 0 or obj.data is None:
            return int(obj.programs[function])
        if function not in self._extra:
            if prog_type is None and lazy:
                raise AttachError(f"{function} has no attach type in its name; load it with "
                                  "program_fd(function, prog_type) first")
            extra = BpfObject(obj.data, obj.name, obj.source,
                              autoload=lambda n, _s: n == function,
                              reuse={n: obj.map_fd(n) for n in obj.maps
                                     if not n.startswith("__bpf_usdt")})
            try:
                if lazy:
                    obj.lib.bpf_program__set_type(extra.programs[function], prog_type)
                extra.load()
            except BaseException:
                extra.close()
                raise
            self._extra[function] = extra
        return int(self._extra[function].programs[function])

    # -- attaching ------------------------------------------------------------------------
    def autoattach(self) -> None:
        """Attach every loaded program whose section says where (libbpf's auto-attach)."""
        for function in self.obj.programs:
            section = self.obj.section(function)
            kind = _kind(section)
            if section.startswith(LAZY) or kind is None:
                continue
            if not section.startswith(ON_ATTACH) and \
                    not self.obj.lib.bpf_program__autoload(self.obj.programs[function]):
                continue
            prog = self._program(function)
            self._attach(kind[0], kind[1], function,
                         functools.partial(self.obj.lib.bpf_program__attach, prog),
                         optional=kind[0] in ("uprobe", "uretprobe", "usdt", "iter"))

    def attach_btf(self, kind: str, function: str, target: str) -> None:
        prog = self._program(function)
        self._attach(kind, target, function, lambda: self.obj.lib.bpf_program__attach(prog))

    def attach_tracepoint(self, tracepoint: str, function: str) -> None:
        category, _, event = tracepoint.partition(":")
        if features.tracefs() and not features.tracepoint_exists(category, event):
            raise diagnose.unknown_tracepoint(tracepoint)
        prog = self._program(function, TRACEPOINT)
        self._attach("tracepoint", tracepoint, function, lambda: self.obj.lib.
                     bpf_program__attach_tracepoint(prog, category.encode(), event.encode()))

    def attach_raw_tracepoint(self, tracepoint: str, function: str) -> None:
        prog = self._program(function, RAW_TRACEPOINT)
        self._attach("raw_tracepoint", tracepoint, function, lambda: self.obj.lib.
                     bpf_program__attach_raw_tracepoint(prog, tracepoint.encode()))

    def attach_kprobe(self, event: str, function: str, ret: bool = False) -> None:
        kind = "kretprobe" if ret else "kprobe"
        missing = diagnose.probe_missing_feature(kind, function, event)
        if missing is not None:
            raise missing
        prog = self._program(function, KPROBE)
        self._attach(kind, event, function, lambda: self.obj.lib.bpf_program__attach_kprobe(
            prog, ret, event.encode()), on_error=lambda _m: diagnose.kprobe_failure(
                function, event))

    def attach_uprobe(self, binary: str, symbol: str | None, function: str, *, ret: bool,
                      pid: int, addr: int | None, sym_off: int) -> None:
        kind = "uretprobe" if ret else "uprobe"
        path = "libc.so.6" if binary == "c" else binary
        target = f"{binary}:{symbol if symbol else hex(addr or 0)}"
        prog = self._program(function, KPROBE)
        offset = sym_off if symbol else (addr or 0)
        self._attach(kind, target, function, lambda: _null_on_error(
            lambda: libbpf.attach_uprobe(prog, pid, path, offset, ret=ret, func_name=symbol)),
            on_error=lambda msg: diagnose.uprobe_failure(function, binary, symbol or "", msg))

    def attach_usdt(self, probe: str, function: str, path: str | None, pid: int | None) -> None:
        """Attach to USDT probe 'name' or 'provider:name' in `path` (or pid's executable)."""
        binary = path or (f"/proc/{pid}/exe" if pid else None)
        if binary is None:
            raise AttachError(f"USDT probe {probe}: give the binary's path or a pid")
        provider, name = usdt_provider(binary, probe)
        missing = diagnose.probe_missing_feature("usdt", function, f"{binary}:{probe}")
        if missing is not None:
            raise missing
        prog = self._program(function, KPROBE)
        owner = self._extra.get(function, self.obj)
        self._attach("usdt", f"{path or pid}:{provider}:{name}", function, lambda: owner.lib.
                     bpf_program__attach_usdt(prog, pid if pid else -1, binary.encode(),
                                              provider.encode(), name.encode(), None))

    def attach_perf_event(self, function: str, ev_type: int, ev_config: int, *,
                          sample_period: int, sample_freq: int, pid: int, cpu: int) -> None:
        prog = self._program(function, PERF_EVENT)
        target = f"type={ev_type},config={ev_config}"
        cpus = [cpu] if cpu >= 0 else online_cpus()
        for c in cpus:
            pfd = perf_event_open(ev_type, ev_config, sample_period, sample_freq, pid, c)
            call = functools.partial(_attach_perf, self.obj.lib, prog, pfd)
            self._attach("perf_event", target, function, call, record=c == cpus[-1])

    def _attach(self, kind: str, target: str, function: str, call: Callable[[], int | None],
                on_error: Callable[[str], Exception] | None = None, optional: bool = False,
                record: bool = True) -> None:
        with libbpf.capture() as log:
            link = call()
        if not link:
            err = ct.get_errno()
            if optional and err in (errno.EOPNOTSUPP, errno.ESRCH, errno.EINVAL):
                return  # a section with no target (SEC("uprobe")): attached explicitly later
            message = (log.text.strip().splitlines() or [os.strerror(err or 22)])[-1]
            if on_error is not None:
                raise on_error(message)
            if kind == "tracepoint":
                raise diagnose.unknown_tracepoint(target)
            if kind in ("kprobe", "kretprobe"):
                raise diagnose.kprobe_failure(function, target)
            raise AttachError(f"Cannot attach {function} to {kind} {target}: "
                              f"{os.strerror(err or 22)} ({message})", details=log.text)
        self._links.append(link)
        if record:
            self.attached.append(AttachPoint(kind, target, function))

    # -- lifecycle ------------------------------------------------------------------------
    def close(self) -> None:
        """Detach everything and free the object (idempotent)."""
        obj = getattr(self, "obj", None)
        if obj is None:
            return
        _destroy(obj.lib, self._links)
        self._links.clear()
        for extra in self._extra.values():
            extra.close()
        self._extra.clear()
        obj.close()
        self.attached.clear()
        self._tables.clear()
        self.obj = None  # type: ignore[assignment]


def _destroy(lib: Any, links: Sequence[int]) -> None:
    """Detach `links`, several at once: detaching a tracepoint waits for an RCU grace period
    (75 ms each on a loaded machine), and waits that overlap share one."""
    if len(links) < 2:
        for link in links:
            lib.bpf_link__destroy(link)
        return
    with ThreadPoolExecutor(min(len(links), 8), thread_name_prefix="bpfnb-detach") as pool:
        list(pool.map(lib.bpf_link__destroy, links))


def _check_permission() -> None:
    perm = features.can_load_bpf()
    if not perm:
        raise PrivilegeError(f"Cannot load a BPF program: {perm.reason}")


def _null_on_error(call: Callable[[], int]) -> int:
    try:
        return call()
    except OSError as e:
        ct.set_errno(e.errno or 22)
        return 0


def _attach_perf(lib: Any, prog: int, pfd: int) -> int | None:
    """Attach to an open perf event; close it if that fails (a link owns it otherwise)."""
    link = lib.bpf_program__attach_perf_event(prog, pfd)
    if not link:
        err = ct.get_errno()
        os.close(pfd)
        ct.set_errno(err)
    return link


if TYPE_CHECKING:
    def _is_backend(module: LibbpfModule) -> Backend:  # mypy: LibbpfModule is a Backend
        return module
