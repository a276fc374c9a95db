"""Addresses -> symbol names, for kernel and user stacks, resolved in bulk.

`Symbolizer` keeps three caches: /proc/kallsyms as one sorted table, one sorted
table per ELF file (symtab + dynsym, keyed by device and inode), and the
executable mappings of each process seen (`snapshot_process`), so stacks of a
process that has exited still resolve. Each distinct address is looked up once
with a vectorised search; names are decoded (and C++ names demangled, in one
batch) only for the symbols that some address hit.

Frame strings: `symbol` for kernel frames, `symbol [module]` for user frames,
`[unknown] 0x...` (plus ` [module]` where the module is known) otherwise.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import shutil
import struct
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

import numpy as np

from bpfnb._sys.libc import libc
from bpfnb._sys.safedirs import SafeDir
from bpfnb.errors import ElfError
from bpfnb.symbols import elfcache, kcache

KALLSYMS = "/proc/kallsyms"
_KERNEL_DATA_TYPES = b"bBdDrR"  # kallsyms types that are data, not code
_FUNC_TYPES = (2, 10)  # STT_FUNC, STT_GNU_IFUNC
_PT_LOAD = 1
_NO_FILE = ("//anon", "/dev/zero", "/anon_hugepage", "[stack", "/SYSV", "[heap]", "[vsyscall]")
_DEBUG_ROOT = "/usr/lib/debug"
_SHT_SYMTAB, _SHT_NOTE, _SHT_NOBITS, _SHT_DYNSYM = 2, 7, 8, 11
_SHN_XINDEX = 0xFFFF
_NT_GNU_BUILD_ID = 3
_U64 = 0xFFFFFFFFFFFFFFFF
_HEX = np.zeros(256, dtype=np.uint8)
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)
_HEX[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)


def unknown(addr: int, module: str | None = None) -> str:
    """The frame string for an address no symbol covers."""
    return f"[unknown] {addr:#x}" + (f" [{module}]" if module else "")


# ---------------------------------------------------------------- symbol tables


@dataclass
class SymbolTable:
    """Symbols sorted by start address; names are decoded lazily from `blob`.

    `sizes is None` means each symbol extends to the next one (kallsyms).
    `name_end is None` means names are NUL-terminated (ELF string tables).
    """

    starts: np.ndarray
    sizes: np.ndarray | None
    name_start: np.ndarray
    name_end: np.ndarray | None
    blob: bytes
    _names: dict[int, str] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.starts)

    def name(self, i: int) -> str:
        name = self._names.get(i)
        if name is None:
            s = int(self.name_start[i])
            e = int(self.name_end[i]) if self.name_end is not None else self.blob.find(0, s)
            name = self.blob[s:e].decode("utf-8", "replace")
            self._names[i] = name
        return name

    def lookup(self, addrs: np.ndarray) -> np.ndarray:
        """Index of the symbol covering each address (sorted uint64 input ok), -1 if none."""
        idx = np.searchsorted(self.starts, addrs, side="right").astype(np.int64) - 1
        if self.sizes is None or not len(idx):
            return idx
        inside = idx >= 0
        ok = inside.copy()
        ok[inside] = addrs[inside] - self.starts[idx[inside]] < self.sizes[idx[inside]]
        for j in np.flatnonzero(inside & ~ok):  # rare: nested symbols or gaps
            idx[j] = self._walk_back(int(addrs[j]), int(idx[j]))
        idx[~inside] = -1
        return idx

    def _walk_back(self, addr: int, i: int) -> int:
        """Step back over nested symbols to one that covers addr (as bcc does)."""
        assert self.sizes is not None
        limit = int(self.starts[i])
        while i >= 0 and addr >= self.starts[i]:
            start, size = int(self.starts[i]), int(self.sizes[i])
            if addr < start + size:
                return i
            if limit > start + size:
                break
            i -= 1
        return -1


def _empty_table() -> SymbolTable:
    z = np.zeros(0, np.uint64)
    return SymbolTable(z, z, np.zeros(0, np.int64), None, b"")


def parse_kallsyms(data: bytes) -> SymbolTable:
    """Code symbols of a /proc/kallsyms text, sorted; later lines win address ties."""
    if not data.endswith(b"\n"):
        data += b"\n"
    width = data.find(b" ")
    if not 0 < width <= 16:
        return SymbolTable(np.zeros(0, np.uint64), None, np.zeros(0, np.int64),
                           np.zeros(0, np.int64), b"")
    buf = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(buf == 10)
    begins = np.empty_like(ends)
    begins[0] = 0
    begins[1:] = ends[:-1] + 1
    addrs = np.zeros(len(begins), np.uint64)
    for j in range(width):  # one hex digit column at a time: little memory, no 2-D index
        addrs <<= np.uint64(4)
        addrs |= _HEX[buf[begins + j]]
    types = buf[begins + width + 1]
    keep = (addrs != 0) & ~np.isin(types, np.frombuffer(_KERNEL_DATA_TYPES, np.uint8))
    name_start = begins + width + 3
    tabs = np.flatnonzero(buf == 9)
    name_end = np.minimum(np.append(tabs, len(buf))[np.searchsorted(tabs, name_start)], ends)
    addrs, name_start, name_end = addrs[keep], name_start[keep], name_end[keep]
    order = np.argsort(addrs, kind="stable")
    return SymbolTable(addrs[order], None, name_start[order].astype(np.int64),
                       name_end[order].astype(np.int64), data)


# ---------------------------------------------------------------- ELF files
# Only the headers, section table and symbol tables are read (with struct and numpy:
# a general ELF library costs ten times more per file, and a cold profile opens many).


@dataclass
class ElfSymbols:
    """One ELF file's function symbols and PT_LOAD segments (vaddr, offset, filesz)."""

    path: str
    table: SymbolTable
    segments: np.ndarray  # shape (n, 3) uint64
    error: str = ""
    build_id: str = ""  # hex of .note.gnu.build-id, "" if none

    def bias(self, start: int, offset: int) -> int:
        """Run-time address minus ELF vaddr for a mapping of this file at start/offset."""
        for vaddr, seg_off, filesz in self.segments.tolist():
            if (seg_off & ~0xFFF) <= offset < seg_off + max(filesz, 1):
                return (start - offset + seg_off - vaddr) & _U64
        return (start - offset) & _U64


def _dtypes(is64: bool, e: str) -> tuple[np.dtype, np.dtype, np.dtype]:
    """Symbol, program header and section header dtypes for a class and byte order."""
    w = e + ("u8" if is64 else "u4")
    u4, u2 = e + "u4", e + "u2"
    if is64:
        sym = [("name", u4), ("info", "u1"), ("other", "u1"), ("shndx", u2), ("value", w),
               ("size", w)]
        ph = [("type", u4), ("flags", u4), ("offset", w), ("vaddr", w), ("paddr", w),
              ("filesz", w), ("memsz", w), ("align", w)]
    else:
        sym = [("name", u4), ("value", w), ("size", w), ("info", "u1"), ("other", "u1"),
               ("shndx", u2)]
        ph = [("type", u4), ("offset", w), ("vaddr", w), ("paddr", w), ("filesz", w),
              ("memsz", w), ("flags", u4), ("align", w)]
    sh = [("name", u4), ("type", u4), ("flags", w), ("addr", w), ("offset", w), ("size", w),
          ("link", u4), ("info", u4), ("addralign", w), ("entsize", w)]
    return np.dtype(sym), np.dtype(ph), np.dtype(sh)


def _read_at(f: IO[bytes], offset: int, size: int) -> bytes:
    f.seek(offset)
    data = f.read(size)
    if len(data) != size:
        raise ElfError("truncated ELF file")
    return data


@dataclass
class _ElfParts:
    tables: list[tuple[np.ndarray, bytes]]  # symbol arrays with their string tables
    build_id: bytes
    debuglink: str
    loads: list[tuple[int, int, int]]  # PT_LOAD (p_vaddr, p_offset, p_filesz)
    has_symtab: bool


def _note_build_id(data: bytes, e: str) -> bytes:
    pos = 0
    while pos + 12 <= len(data):
        namesz, descsz, kind = struct.unpack_from(e + "III", data, pos)
        name_at = pos + 12
        desc_at = name_at + ((namesz + 3) & ~3)
        if kind == _NT_GNU_BUILD_ID and data[name_at : name_at + namesz] == b"GNU\0":
            return data[desc_at : desc_at + descsz]
        pos = desc_at + ((descsz + 3) & ~3)
    return b""


def _elf_parts(f: IO[bytes]) -> _ElfParts:
    ident = _read_at(f, 0, 16)
    if ident[:4] != b"\x7fELF" or ident[4] not in (1, 2) or ident[5] not in (1, 2):
        raise ElfError("not an ELF file")
    is64, e = ident[4] == 2, "<" if ident[5] == 1 else ">"
    fmt = e + ("HHIQQQIHHHHHH" if is64 else "HHIIIIIHHHHHH")
    hdr = struct.unpack(fmt, _read_at(f, 16, struct.calcsize(fmt)))
    phoff, shoff, phentsize, phnum, shentsize, shnum, shstrndx = hdr[4:6] + hdr[8:]
    sym_t, ph_t, sh_t = _dtypes(is64, e)
    loads = []
    if phoff and phnum and phentsize == ph_t.itemsize:
        ph = np.frombuffer(_read_at(f, phoff, phnum * phentsize), ph_t)
        loads = [(int(p["vaddr"]), int(p["offset"]), int(p["filesz"]))
                 for p in ph[ph["type"] == _PT_LOAD]]
    parts = _ElfParts([], b"", "", loads, False)
    if not shoff or shentsize != sh_t.itemsize:
        return parts
    if shnum == 0 or shstrndx == _SHN_XINDEX:  # more sections than the header field holds
        first = np.frombuffer(_read_at(f, shoff, shentsize), sh_t)[0]
        shnum = shnum or int(first["size"])
        shstrndx = int(first["link"]) if shstrndx == _SHN_XINDEX else shstrndx
    sh = np.frombuffer(_read_at(f, shoff, shnum * shentsize), sh_t)

    def content(i: int) -> bytes:
        s = sh[i]
        return b"" if s["type"] == _SHT_NOBITS else _read_at(f, int(s["offset"]), int(s["size"]))

    names = content(shstrndx) if shstrndx < shnum else b""

    def name(i: int) -> bytes:
        start = int(sh[i]["name"])
        return names[start : names.find(b"\0", start)]

    for i in range(shnum):
        kind = int(sh[i]["type"])
        if kind in (_SHT_SYMTAB, _SHT_DYNSYM) and sh[i]["size"] and sh[i]["link"] < shnum:
            raw = content(i)
            syms = np.frombuffer(raw, sym_t, len(raw) // sym_t.itemsize)
            parts.tables.append((syms, content(int(sh[i]["link"]))))
            parts.has_symtab = parts.has_symtab or kind == _SHT_SYMTAB
        elif kind == _SHT_NOTE and name(i) == b".note.gnu.build-id":
            parts.build_id = _note_build_id(content(i), e)
        elif name(i) == b".gnu_debuglink":
            parts.debuglink = content(i).split(b"\0", 1)[0].decode("utf-8", "replace")
    return parts


def _debug_file(path: str, build_id: bytes, debuglink: str) -> str | None:
    """A separate debug-info file for path (build-id or .gnu_debuglink), if installed."""
    candidates = []
    if len(build_id) > 1:
        h = build_id.hex()
        candidates.append(f"{_DEBUG_ROOT}/.build-id/{h[:2]}/{h[2:]}.debug")
    if debuglink:
        d = os.path.dirname(os.path.realpath(path))
        candidates += [os.path.join(d, debuglink), os.path.join(d, ".debug", debuglink),
                       _DEBUG_ROOT + os.path.join(d, debuglink)]
    return next((c for c in candidates if os.path.isfile(c) and c != path), None)


def _table_from(parts: Sequence[tuple[np.ndarray, bytes]]) -> SymbolTable:
    """Merge symbol arrays into one sorted table; ties prefer GLOBAL, then WEAK, then LOCAL."""
    starts, sizes, names, ranks, blobs = [], [], [], [], []
    base = 0
    for syms, strtab in parts:
        keep = np.isin(syms["info"] & 0xF, _FUNC_TYPES) & (syms["value"] != 0)
        s = syms[keep]
        starts.append(s["value"].astype(np.uint64))
        sizes.append(s["size"].astype(np.uint64))
        names.append(s["name"].astype(np.int64) + base)
        bind = s["info"] >> 4  # 0 LOCAL, 1 GLOBAL, 2 WEAK
        ranks.append(np.choose(np.minimum(bind, 3), [0, 2, 1, 0]))
        blobs.append(strtab)
        base += len(strtab)
    if not starts:
        return _empty_table()
    st, sz, nm, rk = (np.concatenate(x) for x in (starts, sizes, names, ranks))
    order = np.lexsort((rk, st))  # last of equal starts is the preferred name
    return SymbolTable(st[order], sz[order], nm[order], None, b"".join(blobs))


def load_elf(path: str, data: bytes | None = None) -> ElfSymbols:
    """Read an ELF file's function symbols (or an in-memory image such as the vDSO).

    Without a .symtab, a separate debug file is looked for (build-id, then debuglink).
    Never raises for unreadable or foreign files: `error` says what went wrong.
    """
    try:
        with (io.BytesIO(data) if data is not None else open(path, "rb")) as f:
            parts = _elf_parts(f)
        debug = None
        if not parts.has_symtab and data is None:
            debug = _debug_file(path, parts.build_id, parts.debuglink)
        if debug:
            with open(debug, "rb") as f:
                parts.tables += _elf_parts(f).tables
    except (OSError, ValueError, struct.error) as e:
        return ElfSymbols(path, _empty_table(), np.zeros((0, 3), np.uint64), str(e))
    segs = np.array(parts.loads, dtype=np.uint64).reshape(-1, 3)
    return ElfSymbols(path, _table_from(parts.tables), segs, build_id=parts.build_id.hex())


# ---------------------------------------------------------------- demangling


@functools.cache
def _cxa_demangler() -> object | None:
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("stdc++")
    if not name:
        return None
    try:
        lib = ctypes.CDLL(name)
        fn = lib.__cxa_demangle
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_void_p
    fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p,
                   ctypes.POINTER(ctypes.c_int)]

    def demangle(names: list[str]) -> list[str]:
        out = []
        for n in names:
            status = ctypes.c_int()
            p = fn(n.encode(), None, None, ctypes.byref(status))
            if p:
                out.append(ctypes.string_at(p).decode("utf-8", "replace"))
                libc.free(p)
            else:
                out.append(n)
        return out

    return demangle


def demangle(names: list[str]) -> list[str]:
    """Demangle C++ (Itanium ABI) names in one batch; other names come back unchanged.

    Uses libstdc++'s `__cxa_demangle` (the demangler bcc uses) in-process through
    ctypes; without libstdc++, one `c++filt` process for the whole batch; else names
    stay mangled.
    """
    todo = [i for i, n in enumerate(names) if n.startswith(("_Z", "___Z"))]
    if not todo:
        return list(names)
    out = list(names)
    mangled = [names[i] for i in todo]
    result: list[str] | None = None
    fn = _cxa_demangler()
    if callable(fn):
        result = fn(mangled)
    cxxfilt = shutil.which("c++filt") if result is None else None
    if cxxfilt:
        try:
            proc = subprocess.run([cxxfilt], input="\n".join(mangled) + "\n",
                                  capture_output=True, text=True, timeout=30, check=True)
            lines = proc.stdout.split("\n")[: len(mangled)]
            result = lines if len(lines) == len(mangled) else None
        except (OSError, subprocess.SubprocessError):
            result = None
    if result is None:
        result = mangled
    for i, d in zip(todo, result):
        out[i] = d
    return out


# ---------------------------------------------------------------- processes


@dataclass
class Module:
    """A mapped file: the name frames show, where to read it, and its symbols once loaded."""

    name: str
    path: str
    elf: ElfSymbols | None = None
    frames: dict[int, str] = field(default_factory=dict)  # symbol index -> frame string


@dataclass
class ProcessMap:
    """Executable mappings of one process (sorted by start), taken from /proc/PID/maps."""

    pid: int
    starts: np.ndarray
    ends: np.ndarray
    offsets: np.ndarray
    module_index: np.ndarray
    modules: list[Module]
    perf_map: Module | None = None
    names: dict[int, str] = field(default_factory=dict)  # address -> frame string, memo
    _bias: np.ndarray | None = None

    def bias(self) -> np.ndarray:
        """Per mapping: run-time address minus ELF vaddr (needs modules loaded)."""
        if self._bias is None:
            b = np.zeros(len(self.starts), np.uint64)
            for i, (s, o, m) in enumerate(zip(self.starts.tolist(), self.offsets.tolist(),
                                              self.module_index.tolist())):
                elf = self.modules[m].elf
                b[i] = elf.bias(s, o) if elf is not None else (s - o) & _U64
            self._bias = b
        return self._bias


def _file_backed(path: str) -> bool:
    return bool(path) and not path.startswith(_NO_FILE)


def _display_name(path: str) -> str:
    if path.startswith("[") and path.endswith("]"):
        return path[1:-1]  # [vdso]
    base = os.path.basename(path.removesuffix(" (deleted)"))
    return base or path


def _parse_perf_map(text: str) -> SymbolTable:
    """A /tmp/perf-PID.map (JIT symbols): `START SIZE name` per line, hex numbers."""
    starts, sizes, names = [], [], []
    for line in text.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3:
            try:
                starts.append(int(parts[0], 16))
                sizes.append(int(parts[1], 16))
            except ValueError:
                continue
            names.append(parts[2])
    blob = "\0".join(names).encode() + b"\0"
    offs = np.cumsum([0] + [len(n.encode()) + 1 for n in names[:-1]]) if names else np.zeros(0)
    st = np.array(starts, np.uint64)
    order = np.argsort(st, kind="stable")
    return SymbolTable(st[order], np.array(sizes, np.uint64)[order],
                       np.array(offs, np.int64)[order], None, blob)


def _load_cached(path: str, key: tuple[int, ...], where: SafeDir | None) -> ElfSymbols:
    """load_elf(path), through the disk cache of symbol tables `where` (None: no cache)."""
    if where is None:
        return load_elf(path)
    name = elfcache.file_key(*key)
    got = elfcache.load(where, name)
    if got is not None:
        table = SymbolTable(got.starts, got.sizes, got.name_start, None, got.blob)
        return ElfSymbols(path, table, got.segments, build_id=got.build_id)
    elf = load_elf(path)
    t = elf.table
    if not elf.error and t.sizes is not None:
        elfcache.store(where, name, elfcache.ElfTable(t.starts, t.sizes, t.name_start, t.blob,
                                                      elf.segments, elf.build_id))
    return elf


_AT_SYSINFO_EHDR = 33  # auxv: where the kernel mapped this process's vDSO
_VDSO_MAX = 1 << 20


def _own_vdso() -> bytes | None:
    """This process's vDSO image (an ELF file in memory), found through the auxiliary
    vector and read through /proc/self/mem (a bad size reads short, never faults)."""
    base = libc.getauxval(_AT_SYSINFO_EHDR)
    if not base:
        return None
    try:
        with open("/proc/self/mem", "rb") as mem:
            mem.seek(base)
            head = mem.read(64)
            if head[:5] != b"\x7fELF\x02" or len(head) < 64:
                return None
            shoff, = struct.unpack_from("<Q", head, 40)
            shentsize, shnum = struct.unpack_from("<HH", head, 58)
            size = shoff + shentsize * shnum
            if not 64 <= size <= _VDSO_MAX:
                return None
            mem.seek(base)
            data = mem.read(size)
    except (OSError, ValueError, OverflowError):
        return None
    return data if len(data) == size else None


# ---------------------------------------------------------------- the symbolizer


def _memoized(addrs: np.ndarray | Sequence[int], memo: dict[int, str],
              name: Callable[[np.ndarray], list[str]]) -> list[str]:
    """Frame strings for addrs; each distinct address not in memo is named once, in one batch."""
    a = np.asarray(addrs, dtype=np.uint64).ravel()
    if not a.size:
        return []
    uniq, inverse = np.unique(a, return_inverse=True)
    keys = uniq.tolist()
    got = [memo.get(k) for k in keys]
    todo = [j for j, v in enumerate(got) if v is None]
    if todo:
        for j, v in zip(todo, name(uniq[todo])):
            got[j] = memo[keys[j]] = v
    if len(keys) == len(a) and bool((a[1:] > a[:-1]).all()):
        return got  # type: ignore[return-value]  # already sorted and distinct
    return np.array(got, dtype=object)[inverse.ravel()].tolist()


class Symbolizer:
    """Resolve kernel and user addresses to frame strings, caching everything it reads.

    `kallsyms` may name another file (or give its text as bytes) for tests and
    recordings. Nothing is read before the first call that needs it. With `cache` (root
    only) the kernel's table comes from this boot's disk cache (bpfnb.symbols.kcache;
    an address outside what it covers, a BPF program, reads kallsyms afresh) and ELF
    symbol tables from bpfnb.symbols.elfcache.
    """

    def __init__(self, kallsyms: str | bytes = KALLSYMS, *, demangle: bool = True,
                 cache: bool = True) -> None:
        self._kallsyms_source = kallsyms
        self._cache = cache and kallsyms == KALLSYMS
        self._use_disk = cache
        self._kernel: SymbolTable | None = None
        self._kernel_cached: kcache.KernelSymbols | None = None  # set while from the cache
        self._kernel_frames: dict[int, str] = {}  # kallsyms index -> name
        self._kernel_names: dict[int, str] = {}  # address -> frame string
        self._gone: set[int] = set()
        self._demangle = demangle
        self._elves: dict[tuple[int, ...], ElfSymbols] = {}
        self._modules: dict[tuple[object, ...], Module] = {}
        self._vdso: ElfSymbols | None = None
        self._where: SafeDir | None = None  # the ELF disk cache, open during a batch
        self._depth = 0
        self.processes: dict[int, ProcessMap] = {}

    # -- kernel

    @property
    def kernel_table(self) -> SymbolTable:
        if self._kernel is None:
            key = kcache.cache_key() if self._cache else ""
            cached = kcache.load(key) if key else None
            if cached is not None:
                self._kernel = SymbolTable(cached.starts, None, cached.name_start,
                                           cached.name_end, cached.blob)
                self._kernel_cached = cached
            else:
                self._kernel = self._read_kallsyms(key)
        return self._kernel

    def _read_kallsyms(self, key: str = "") -> SymbolTable:
        src = self._kallsyms_source
        if isinstance(src, bytes):
            data = src
        else:
            try:
                with open(src, "rb") as f:
                    data = f.read()
            except OSError:
                data = b""
        table = parse_kallsyms(data)
        if key and len(table) and table.name_end is not None:
            kcache.store(key, kcache.lasting(data, table.starts, table.name_start,
                                             table.name_end))
        return table

    def refresh_kernel(self) -> None:
        """Forget kallsyms (after modules or BPF programs were loaded or unloaded)."""
        self._kernel = None
        self._kernel_cached = None
        self._kernel_frames = {}
        self._kernel_names = {}

    def resolve_kernel(self, addrs: np.ndarray | Sequence[int]) -> list[str]:
        """Frame strings for kernel addresses: the nearest kallsyms code symbol at or below."""
        return _memoized(addrs, self._kernel_names, self._name_kernel)

    def _name_kernel(self, addrs: np.ndarray) -> list[str]:
        table = self.kernel_table
        if self._kernel_cached is not None and not self._kernel_cached.covers(addrs):
            table = self._kernel = self._read_kallsyms()  # symbols the cache leaves out
            self._kernel_cached = None
            self._kernel_frames = {}
        names = self._kernel_frames
        out = []
        for i, addr in zip(table.lookup(addrs).tolist(), addrs.tolist()):
            if i < 0:
                out.append(unknown(addr))
                continue
            s = names.get(i)
            if s is None:
                s = names[i] = table.name(i)
            out.append(s)
        return out

    # -- processes

    def snapshot_process(self, pid: int) -> ProcessMap | None:
        """Read /proc/PID/maps now and keep it; None if the process is gone. An exiting
        process (a zombie) shows no mappings: its earlier snapshot, if any, is kept."""
        try:
            with open(f"/proc/{pid}/maps") as f:
                text = f.read()
        except OSError:
            return None
        if not text and pid in self.processes:
            return self.processes[pid]
        try:
            root = os.readlink(f"/proc/{pid}/root")
        except OSError:
            root = "/"
        rows = []
        modules: list[Module] = []
        index: dict[str, int] = {}
        for line in text.splitlines():
            parts = line.split(None, 5)
            if len(parts) < 6 or parts[1][2] != "x":
                continue
            path = parts[5].strip()
            if not _file_backed(path):
                continue
            start, end = (int(v, 16) for v in parts[0].split("-"))
            if path not in index:
                index[path] = len(modules)
                modules.append(self._module(pid, root, path, parts[0]))
            rows.append((start, end, int(parts[2], 16), index[path]))
        rows.sort()
        arr = np.array(rows, dtype=np.uint64).reshape(-1, 4)
        pm = ProcessMap(pid, arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy(),
                        arr[:, 3].astype(np.int64), modules, self._perf_map(pid))
        self.processes[pid] = pm
        self._gone.discard(pid)
        return pm

    def module_files(self) -> dict[str, tuple[str, str]]:
        """Module name (as frames show it) -> (file path, build id hex or "") of every
        module whose symbols were read."""
        return {m.name: (m.path, m.elf.build_id) for m in self._modules.values()
                if m.elf is not None}

    def forget_process(self, pid: int) -> None:
        self.processes.pop(pid, None)

    def _module(self, pid: int, root: str, path: str, span: str) -> Module:
        name = _display_name(path)
        if path == "[vdso]":
            key: tuple[object, ...] = ("[vdso]",)
            if key not in self._modules:
                self._modules[key] = Module(name, path, self._vdso_symbols())
            return self._modules[key]
        if path.endswith(" (deleted)") or root != "/":
            # only reachable through /proc/PID, which goes when the process exits: load now
            access = (f"/proc/{pid}/map_files/{span}" if path.endswith(" (deleted)")
                      else f"/proc/{pid}/root{path}")
            eager = True
        else:
            access, eager = path, False
        try:
            st = os.stat(access)
            key = (name, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            key = (name, path, pid)
        mod = self._modules.get(key)
        if mod is None:
            mod = self._modules[key] = Module(name, access)
        if eager:
            self._load(mod)
        return mod

    def _load_all(self, mods: Iterable[Module]) -> None:
        """Load the symbols of modules not loaded yet (through the batch's disk cache)."""
        todo = [m for m in mods if m.elf is None]
        if todo:
            with self._batch():
                for m in todo:
                    self._load(m, self._cache_dir())

    @contextlib.contextmanager
    def _batch(self) -> Iterator[None]:
        """Calls inside share one open disk cache directory, closed when the batch ends."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and self._where is not None:
                self._where.close()
                self._where = None

    def _cache_dir(self) -> SafeDir | None:
        if self._where is None and self._use_disk and self._depth:
            self._where = elfcache.open_dir()
        return self._where

    def _load(self, mod: Module, where: SafeDir | None = None) -> ElfSymbols:
        if mod.elf is None:
            try:
                st = os.stat(mod.path)
                key: tuple[int, ...] = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            except OSError:
                mod.elf = load_elf(mod.path)
                return mod.elf
            elf = self._elves.get(key)
            if elf is None:
                elf = self._elves[key] = _load_cached(mod.path, key, where)
            mod.elf = elf
        return mod.elf

    def _vdso_symbols(self) -> ElfSymbols:
        """The vDSO is the same image in every process: read it from our own memory."""
        if self._vdso is None:
            data = _own_vdso()
            self._vdso = (load_elf("[vdso]", data) if data else
                          ElfSymbols("[vdso]", _empty_table(), np.zeros((0, 3), np.uint64)))
        return self._vdso

    def _perf_map(self, pid: int) -> Module | None:
        path = f"/tmp/perf-{pid}.map"
        try:
            with open(path, errors="replace") as f:
                table = _parse_perf_map(f.read())
        except OSError:
            return None
        segs = np.zeros((0, 3), np.uint64)
        return Module(os.path.basename(path), path, ElfSymbols(path, table, segs))

    # -- user addresses

    def resolve_user(self, pid: int, addrs: np.ndarray | Sequence[int]) -> list[str]:
        """Frame strings for addresses in process pid (snapshotting its maps if not yet)."""
        pm = self.processes.get(pid)
        if pm is None and pid not in self._gone:
            pm = self.snapshot_process(pid)
            if pm is None:
                self._gone.add(pid)
        if pm is None:
            return _memoized(addrs, {}, lambda a: [unknown(v) for v in a.tolist()])
        return _memoized(addrs, pm.names, lambda a: self._name_user(pm, a))

    def resolve_users(self, addrs_by_pid: Mapping[int, np.ndarray | Sequence[int]]
                      ) -> dict[int, list[str]]:
        """`resolve_user` for several processes at once (the disk cache opened once)."""
        with self._batch():
            return {pid: self.resolve_user(pid, a) for pid, a in addrs_by_pid.items()}

    def _name_user(self, pm: ProcessMap, uniq: np.ndarray) -> list[str]:
        """Frame strings for sorted distinct addresses of one process."""
        if len(pm.starts) == 0:  # no mappings (a kernel thread, or maps were unreadable)
            return [unknown(v) for v in uniq.tolist()]
        m = np.searchsorted(pm.starts, uniq, side="right").astype(np.int64) - 1
        inside = m >= 0
        inside[inside] = uniq[inside] < pm.ends[m[inside]]
        mod_of = np.where(inside, pm.module_index[np.maximum(m, 0)], -1)
        present = np.unique(mod_of[inside]).tolist()
        self._load_all(pm.modules[mi] for mi in present)
        bias = pm.bias()
        sym = np.full(len(uniq), -1, np.int64)
        for mi in present:
            sel = np.flatnonzero(mod_of == mi)
            elf = pm.modules[mi].elf
            assert elf is not None
            sym[sel] = elf.table.lookup(uniq[sel] - bias[m[sel]])
        hits = [(j, pm.modules[mi], k) for j, mi, k in
                zip(np.flatnonzero(sym >= 0).tolist(), mod_of[sym >= 0].tolist(),
                    sym[sym >= 0].tolist())]
        out: list[str | None] = [None] * len(uniq)
        miss = np.flatnonzero(sym < 0)
        jit = pm.perf_map
        if len(miss) and jit is not None and jit.elf is not None:  # JIT code: a perf map
            k = jit.elf.table.lookup(uniq[miss])
            hits += [(j, jit, i) for j, i in zip(miss[k >= 0].tolist(), k[k >= 0].tolist())]
            miss = miss[k < 0]
        for j, mi, addr in zip(miss.tolist(), mod_of[miss].tolist(), uniq[miss].tolist()):
            out[j] = unknown(addr, pm.modules[mi].name if mi >= 0 else None)
        self._fill_frames(hits, out)
        return out  # type: ignore[return-value]  # every slot is filled by now

    def _fill_frames(self, hits: Iterable[tuple[int, Module, int]],
                     out: list[str | None]) -> None:
        """Set out[j] to the frame string of symbol k in module, naming new ones in one batch."""
        todo: list[tuple[int, Module, int]] = []
        for j, mod, k in hits:
            s = mod.frames.get(k)
            if s is None:
                todo.append((j, mod, k))
            else:
                out[j] = s
        if not todo:
            return
        raw = [mod.elf.table.name(k) for _, mod, k in todo if mod.elf is not None]
        names = demangle(raw) if self._demangle else raw
        for (j, mod, k), name in zip(todo, names):
            s = mod.frames.setdefault(k, f"{name} [{mod.name}]")
            out[j] = s
