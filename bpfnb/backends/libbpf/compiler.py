"""clang against the running kernel's BTF: vmlinux.h and a precompiled prelude, cached.

The compile cache (`libbpf` among the kit's caches, bpfnb.symbols.cachedir: per user,
/var/cache/bpfnb for root) holds one folder per kernel build, named by the sha256 of
/sys/kernel/btf/vmlinux, the compatibility header, the clang build and the flags:
vmlinux.h, the prelude header and its PCH. Every folder is 0700, and it and every folder
above is owned by root or the user and writable by its owner only (no links); files are
written atomically. The PCH is what makes a compile fast
(~45 ms instead of ~300 ms); a clang started ahead of time (spare.py) takes ~20 ms more off.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bpfnb._sys.safedirs import SafeDir
from bpfnb.backends.libbpf import objcache, spare
from bpfnb.data.atomicfile import atomic_write
from bpfnb.errors import BpfnbError, FeatureUnavailableError
from bpfnb.symbols import cachedir

VMLINUX_BTF = "/sys/kernel/btf/vmlinux"
CACHE = "libbpf"  # the compile cache's folder among the kit's caches
COMPAT_H = Path(__file__).with_name("compat.h")
_ARCH = {"x86_64": "x86", "aarch64": "arm64", "s390x": "s390", "ppc64le": "powerpc",
         "riscv64": "riscv"}
PRELUDE = """\
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "compat.h"
"""
WARNINGS = ("-Wno-unused-value", "-Wno-pointer-sign", "-Wno-compare-distinct-pointer-types",
            "-Wno-gnu-variable-sized-type-not-at-end", "-Wno-address-of-packed-member",
            "-Wno-tautological-compare", "-Wno-unknown-warning-option",
            "-Wno-incompatible-pointer-types-discards-qualifiers", "-Wno-int-conversion",
            "-Wno-unused-command-line-argument")


def clang() -> str:
    """The clang binary (CLANG env, clang, clang-14..18); FeatureUnavailableError if none."""
    for name in (os.environ.get("CLANG", ""), "clang", *(f"clang-{v}" for v in range(18, 13, -1))):
        path = shutil.which(name) if name else None
        if path:
            return path
    raise FeatureUnavailableError("clang is not installed: the libbpf backend compiles with it. "
                                  "Install Debian's clang (`scripts/setup-system`) or use "
                                  "backend='bcc'.")


def cache_root() -> Path:
    """Where the compile cache is: CACHE in the kit's cache directory (bpfnb.symbols.cachedir:
    $BPFNB_CACHE, else /var/cache/bpfnb for root, else $XDG_CACHE_HOME/bpfnb)."""
    return Path(cachedir.base_path(), CACHE)


def _private_dir(*parts: str) -> Path:
    """The compile cache's folder `parts` below cache_root(), each made 0700 where absent
    and opened safely (cachedir: every component root's or the user's, writable by its
    owner only, never a link); one open to others is refused."""
    path = cache_root().joinpath(*parts)
    opened: list[SafeDir] = []
    try:
        opened.append(cachedir.require_cache(CACHE))
        for part in parts:
            opened.append(opened[-1].sub(part, mode=0o700))
        modes = [(d.path, os.fstat(d.fd).st_mode & 0o777) for d in opened]
    except (OSError, BpfnbError) as e:
        raise _unsafe(path, str(e).splitlines()[0]) from e
    finally:
        for d in opened:
            d.close()
    shared = [f"{where} has mode {mode:o}" for where, mode in modes if mode & 0o077]
    if shared:
        raise _unsafe(path, "; ".join(shared))
    return path


def _unsafe(path: Path, why: str) -> FeatureUnavailableError:
    return FeatureUnavailableError(
        f"The compile cache {path} is not private ({why}); remove it or set BPFNB_CACHE to "
        "a directory of your own.")


def _clang_identity(cc: str) -> str:
    """The clang build: its real path, size and mtime (`clang --version` costs ~60 ms)."""
    real = os.path.realpath(cc)
    st = os.stat(real)
    return f"{real} {st.st_size} {st.st_mtime_ns}"


def _btf_digest(btf_path: str) -> str:
    """sha256 of the kernel BTF, remembered per boot for the running kernel's (hashing its
    5 MB costs ~20 ms per process)."""
    boot = ""
    if btf_path == VMLINUX_BTF:
        with contextlib.suppress(OSError):
            boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    memo = cache_root() / f"btf-{boot}" if boot else None
    if memo is not None:
        with contextlib.suppress(OSError):
            digest = memo.read_text()
            if len(digest) == 64:
                return digest
    with open(btf_path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if memo is not None:
        with contextlib.suppress(OSError):
            for old in _private_dir().glob("btf-*"):
                old.unlink()
            with atomic_write(memo) as out:
                out.write(digest.encode())
    return digest


@functools.lru_cache(maxsize=4)
def cache_key(btf_path: str = VMLINUX_BTF) -> str:
    """sha256 of the kernel BTF, the compatibility header, the clang build and the flags
    (per process)."""
    h = hashlib.sha256(_btf_digest(btf_path).encode())
    h.update(COMPAT_H.read_bytes())
    h.update(_clang_identity(clang()).encode())
    h.update(" ".join(arch_flags()).encode())
    return h.hexdigest()[:32]


def arch_flags() -> list[str]:
    arch = _ARCH.get(platform.machine(), "x86")
    # -g for BTF; DWARF 4 as DWARF 5 would MD5 every header (vmlinux.h: 2.8 MB) per compile
    return ["-target", "bpf", f"-D__TARGET_ARCH_{arch}", "-O2", "-g", "-gdwarf-4", "-mcpu=v3",
            *WARNINGS]


@dataclass(frozen=True)
class Prelude:
    """The cached headers of one kernel build."""

    directory: Path
    built: bool  # True if this call built it (a cold compile)

    @property
    def header(self) -> Path:
        return self.directory / "prelude.h"

    @property
    def pch(self) -> Path:
        return self.directory / "prelude.h.pch"


def prelude(btf_path: str = VMLINUX_BTF) -> Prelude:
    """vmlinux.h + prelude PCH for this kernel, building them once."""
    if not os.path.exists(btf_path):
        raise FeatureUnavailableError(
            f"The kernel has no BTF ({btf_path} is missing), which the libbpf backend needs; "
            "use backend='bcc'.")
    d = _private_dir() / cache_key(btf_path)
    p = Prelude(d, False)
    if p.pch.exists():
        return p
    _private_dir(d.name)
    with open(d / ".lock", "w") as lock:  # one builder at a time (others wait, then reuse)
        fcntl.flock(lock, fcntl.LOCK_EX)
        if p.pch.exists():
            return p
        _build(d, btf_path)
    return Prelude(d, True)


def _build(d: Path, btf_path: str) -> None:
    p = Prelude(d, True)
    bpftool = shutil.which("bpftool", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if bpftool is None:
        raise FeatureUnavailableError("bpftool is not installed: the libbpf backend needs it "
                                      "once per kernel to write vmlinux.h. Install Debian's "
                                      "bpftool (`scripts/setup-system`).")
    dump = subprocess.run([bpftool, "btf", "dump", "file", btf_path, "format", "c"],
                          capture_output=True)
    if dump.returncode != 0:
        raise FeatureUnavailableError("`bpftool btf dump` failed: "
                                      f"{dump.stderr.decode(errors='replace').strip()}; "
                                      "install Debian's bpftool.")
    for name, data in (("vmlinux.h", dump.stdout), ("compat.h", COMPAT_H.read_bytes()),
                       ("prelude.h", PRELUDE.encode())):
        with atomic_write(d / name) as f:
            f.write(data)
    tmp = d / f".prelude.h.pch.{os.getpid()}"
    run = subprocess.run([clang(), *arch_flags(), "-x", "c-header", str(p.header), "-o",
                          str(tmp)], capture_output=True, text=True)
    if run.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise FeatureUnavailableError(f"Building the libbpf prelude failed:\n{run.stderr[-2000:]}")
    os.replace(tmp, p.pch)


@dataclass(frozen=True)
class Compiled:
    obj: bytes
    output: str  # clang's diagnostics (warnings)
    cold: bool  # the prelude was built for this compile
    cached: bool = False  # the object came from the cache (no clang run)


class ClangError(Exception):
    """clang failed; `output` holds its diagnostics (turned into CompileError by callers)."""

    def __init__(self, output: str) -> None:
        super().__init__(output)
        self.output = output


# files a cell includes may change between runs; libbpf's own <bpf/...> headers do not
_INCLUDE = re.compile(r"^\s*#\s*include\s*(?!<bpf/)", re.MULTILINE)


def compile_c(text: str, cflags: tuple[str, ...] | list[str] = ()) -> Compiled:
    """Compile C text (already rewritten, with #line directives) into a BPF ELF object.

    Objects are cached by text and flags: running the same cell again needs no clang
    (not for text including files other than libbpf's: they may change)."""
    pre = prelude()
    prefix, cflags = defines_as_text(cflags)
    text = prefix + text
    if _INCLUDE.search(text):
        return _clang(text, cflags, pre)
    file = objcache.path(pre.directory / "objects", text, cflags)
    obj = objcache.get(file)
    if obj is not None:
        return Compiled(obj, "", False, True)
    built = _clang(text, cflags, pre)
    _private_dir(pre.directory.name, file.parent.name)
    objcache.put(file, built.obj)
    return built


def defines_as_text(cflags: tuple[str, ...] | list[str]) -> tuple[str, tuple[str, ...]]:
    """-D and -U flags as #define/#undef lines to put before the source, and the other
    flags: cells with different -D flags then run clang with the same arguments (the
    spare fits). The PCH is compiled already, so a -D never reached it anyway."""
    lines: list[str] = []
    rest: list[str] = []
    flags = iter(cflags)
    for flag in flags:
        if flag in ("-D", "-U"):
            flag += next(flags, "")
        if flag[:2] not in ("-D", "-U") or len(flag) == 2 or "\n" in flag:
            rest.append(flag)
            continue
        name, eq, value = flag[2:].partition("=")
        lines.append(f"#define {name} {value if eq else '1'}" if flag[1] == "D"
                     else f"#undef {name}")
    if not lines:
        return "", tuple(rest)
    return ('#line 1 "<command line>"\n' + "\n".join(lines) + '\n#line 1 "<stdin>"\n',
            tuple(rest))


def clang_args(pre: Prelude, cflags: tuple[str, ...] | list[str] = ()) -> list[str]:
    """clang's command line for C on stdin, the object on stdout."""
    return [clang(), *arch_flags(), "-I", str(pre.directory), "-include-pch", str(pre.pch),
            *cflags, "-x", "c", "-", "-c", "-o", "-"]


def _clang(text: str, cflags: tuple[str, ...] | list[str], pre: Prelude) -> Compiled:
    for attempt in range(2):
        if attempt:
            pre = prelude()
        run = spare.run(clang_args(pre, cflags), text.encode())
        err = run.stderr.decode("utf-8", "replace")
        if run.returncode == 0:
            return Compiled(run.stdout, err, pre.built)
        if attempt or "precompiled header" not in err:
            break
        pre.pch.unlink(missing_ok=True)  # stale or damaged cache entry: rebuild it once
        spare.stop()  # it has looked at the old PCH already
    raise ClangError(err)
