"""Symbolizer: real addresses of a real binary, a live and an exited process, kallsyms."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bpfnb.symbols import symbolizer as symbols
from bpfnb.symbols.symbolizer import Symbolizer, SymbolTable

WORKLOAD = Path(__file__).parent / "workload" / "callchain.c"

CPP_SOURCE = r"""
#include <cstdio>
#include <unistd.h>
namespace spin {
template <typename T> struct Box { T v; };
__attribute__((noinline)) long work(int n, Box<long> *b) {
    for (int i = 0; i < n; i++) b->v += i;
    return b->v;
}
}  // namespace spin
int main() {
    std::printf("work=%p\nready\n", (void *)&spin::work);
    std::fflush(stdout);
    sleep(20);
    return 0;
}
"""


def _compiler(name: str) -> str:
    cc = shutil.which(name)
    if cc is None:
        pytest.skip(f"no {name} to build a test program")
    return cc


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    cc = _compiler("cc")
    out = tmp_path_factory.mktemp("bin")
    flags = ["-O0", "-g", "-fno-omit-frame-pointer"]
    built = {"pie": out / "callchain", "nopie": out / "callchain-nopie"}
    subprocess.run([cc, *flags, "-o", str(built["pie"]), str(WORKLOAD)], check=True)
    subprocess.run([cc, *flags, "-no-pie", "-o", str(built["nopie"]), str(WORKLOAD)], check=True)
    return built


def _start(binary: Path, seconds: float) -> tuple[subprocess.Popen[str], dict[str, int]]:
    proc = subprocess.Popen([str(binary), str(seconds), "1", "1", "0", "addrs"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    addrs = {}
    for line in proc.stdout:
        if line.strip() == "ready":
            break
        key, value = line.strip().split("=")
        addrs[key] = int(value, 16)
    return proc, addrs


@pytest.fixture
def running(binaries: dict[str, Path]) -> Iterator[tuple[subprocess.Popen[str], dict[str, int]]]:
    proc, addrs = _start(binaries["pie"], 20)
    yield proc, addrs
    proc.kill()
    proc.wait()


def test_elf_table_has_the_functions(binaries: dict[str, Path]) -> None:
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    with open(binaries["pie"], "rb") as f:
        table = ELFFile(f).get_section_by_name(".symtab")
        assert isinstance(table, SymbolTableSection)
        want = {s.name: s["st_value"] for s in table.iter_symbols()
                if s.name in ("a", "b", "c", "x", "y", "main")}
    elf = symbols.load_elf(str(binaries["pie"]))
    assert not elf.error
    for name, value in want.items():
        idx = elf.table.lookup(np.array([value, value + 3], np.uint64))
        assert [elf.table.name(int(i)) for i in idx] == [name, name]


def test_resolve_user_pie(running: tuple[subprocess.Popen[str], dict[str, int]]) -> None:
    proc, addrs = running
    sym = Symbolizer()
    got = sym.resolve_user(proc.pid, np.array(
        [addrs["c"], addrs["c"] + 7, addrs["y"], addrs["main"] + 1, addrs["getpid"]], np.uint64))
    assert got[:4] == ["c [callchain]", "c [callchain]", "y [callchain]", "main [callchain]"]
    assert got[4] in ("getpid [libc.so.6]", "__getpid [libc.so.6]")


def test_resolve_user_non_pie(binaries: dict[str, Path]) -> None:
    proc, addrs = _start(binaries["nopie"], 20)
    try:
        got = Symbolizer().resolve_user(proc.pid, [addrs["c"] + 2, addrs["y"]])
    finally:
        proc.kill()
        proc.wait()
    assert got == ["c [callchain-nopie]", "y [callchain-nopie]"]


def test_each_address_in_order_and_duplicates(
        running: tuple[subprocess.Popen[str], dict[str, int]]) -> None:
    proc, addrs = running
    a = np.array([addrs["y"], addrs["c"], addrs["y"], 0x10, addrs["c"]], np.uint64)
    got = Symbolizer().resolve_user(proc.pid, a)
    assert got == ["y [callchain]", "c [callchain]", "y [callchain]", "[unknown] 0x10",
                   "c [callchain]"]


def test_unknown_keeps_the_module(running: tuple[subprocess.Popen[str], dict[str, int]]) -> None:
    proc, _ = running
    sym = Symbolizer()
    pm = sym.snapshot_process(proc.pid)
    assert pm is not None
    mine = [i for i, m in enumerate(pm.module_index.tolist()) if pm.modules[m].name == "callchain"]
    last = int(pm.ends[mine[-1]]) - 1  # page padding after the last function
    assert sym.resolve_user(proc.pid, [last]) == [f"[unknown] {last:#x} [callchain]"]


def test_exited_process_still_resolves(binaries: dict[str, Path]) -> None:
    proc, addrs = _start(binaries["pie"], 0.2)
    sym = Symbolizer()
    assert sym.snapshot_process(proc.pid) is not None
    assert proc.wait(timeout=10) == 0
    assert not Path(f"/proc/{proc.pid}").exists()
    assert sym.resolve_user(proc.pid, [addrs["c"], addrs["y"]]) == ["c [callchain]",
                                                                   "y [callchain]"]
    # without a snapshot the addresses of a gone process cannot be named
    assert Symbolizer().resolve_user(proc.pid, [addrs["c"]]) == [f"[unknown] {addrs['c']:#x}"]


def test_cpp_names_are_demangled(tmp_path: Path) -> None:
    cxx = _compiler("c++")
    src = tmp_path / "spin.cc"
    src.write_text(CPP_SOURCE)
    exe = tmp_path / "spin"
    subprocess.run([cxx, "-O0", "-g", "-o", str(exe), str(src)], check=True)
    proc = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        addr = int(proc.stdout.readline().strip().split("=")[1], 16)
        got = Symbolizer().resolve_user(proc.pid, [addr + 4])
        raw = Symbolizer(demangle=False).resolve_user(proc.pid, [addr])
    finally:
        proc.kill()
        proc.wait()
    assert raw == ["_ZN4spin4workEiPNS_3BoxIlEE [spin]"]
    if symbols.demangle(["_ZN4spin4workEiPNS_3BoxIlEE"])[0].startswith("_Z"):
        pytest.skip("neither c++filt nor libstdc++ is available to demangle")
    assert got == ["spin::work(int, spin::Box<long>*) [spin]"]


def test_demangle_batch() -> None:
    names = ["_ZN3foo3barEi", "main", "_ZNSt6vectorIiSaIiEE9push_backERKi", "_Znot_valid"]
    got = symbols.demangle(names)
    if got[0] == names[0]:
        pytest.skip("neither c++filt nor libstdc++ is available to demangle")
    assert got == ["foo::bar(int)", "main",
                   "std::vector<int, std::allocator<int> >::push_back(int const&)", "_Znot_valid"]


def _kallsyms_text_symbol(name: str) -> int:
    with open(symbols.KALLSYMS) as f:
        lines = [line.split() for line in f]
    addrs = [int(p[0], 16) for p in lines if p[2] == name and p[1] in "tT"]
    if not addrs or addrs[0] == 0:
        pytest.skip("/proc/kallsyms shows no addresses (not root, or kptr_restrict)")
    others = [p[2] for p in lines if int(p[0], 16) == addrs[0] and p[1] not in "bBdDrR"]
    assert others == [name], f"{name} has aliases: {others}"
    return addrs[0]


def test_resolve_kernel_real_symbol() -> None:
    addr = _kallsyms_text_symbol("vfs_read")
    sym = Symbolizer()
    assert sym.resolve_kernel(np.array([addr, addr + 5, addr], np.uint64)) == ["vfs_read"] * 3
    assert sym.resolve_kernel([0x10]) == ["[unknown] 0x10"]


KALLSYMS = b"""ffffffff81000000 T _stext
ffffffff81000000 T startup_64
ffffffff81000100 t helper
ffffffff81000200 D some_data
ffffffff81000300 T do_thing
ffffffffc0001000 t mod_fn\t[mymod]
ffffffffc0002000 b mod_bss\t[mymod]
"""


def test_parse_kallsyms_rules() -> None:
    sym = Symbolizer(kallsyms=KALLSYMS)
    got = sym.resolve_kernel(np.array([0xFFFFFFFF81000000, 0xFFFFFFFF81000250, 0xFFFFFFFF81000301,
                                       0xFFFFFFFFC0001004, 0xFFFFFFFFC0002004, 0x1], np.uint64))
    # later line wins an address tie; data symbols are skipped; module suffix is cut
    assert got == ["startup_64", "helper", "do_thing", "mod_fn", "mod_fn", "[unknown] 0x1"]


def test_nested_symbols_walk_back() -> None:
    # goo [0, 6), foo [6, 0x16), bar [8, 0xc) nested in foo, baz [0x16, 0x26)
    names = b"goo\0foo\0bar\0baz\0"
    t = SymbolTable(np.array([0, 6, 8, 0x16], np.uint64), np.array([6, 0x10, 4, 0x10], np.uint64),
                    np.array([0, 4, 8, 12], np.int64), None, names)
    idx = t.lookup(np.array([0x2, 0x9, 0x12, 0x17, 0x30], np.uint64))
    assert [t.name(int(i)) if i >= 0 else None for i in idx] == ["goo", "bar", "foo", "baz", None]


def test_perf_map_names_jit_code(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "20"])
    path = Path(f"/tmp/perf-{proc.pid}.map")
    try:
        path.write_text("7000 100 jitted::fn\n7100 80 other\n")
        got = Symbolizer().resolve_user(proc.pid, [0x7010, 0x7120, 0x8000])
    finally:
        path.unlink()
        proc.kill()
        proc.wait()
    assert got == [f"jitted::fn [perf-{proc.pid}.map]", f"other [perf-{proc.pid}.map]",
                   "[unknown] 0x8000"]


def test_resolve_users_batches_processes(binaries: dict[str, Path]) -> None:
    """Two processes in one call: the same frames as one call each, the disk cache directory
    opened once for the batch and closed after it."""
    a, addrs_a = _start(binaries["pie"], 20)
    b, addrs_b = _start(binaries["nopie"], 20)
    try:
        want = {a.pid: [addrs_a["c"], addrs_a["main"] + 1, addrs_a["getpid"]],
                b.pid: [addrs_b["y"], addrs_b["c"] + 2]}
        fds = len(os.listdir("/proc/self/fd"))
        batch = Symbolizer()
        opened = []
        real = symbols.elfcache.open_dir
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(symbols.elfcache, "open_dir", lambda: opened.append(1) or real())
            got = batch.resolve_users({p: np.array(v, np.uint64) for p, v in want.items()})
        assert len(opened) == (1 if os.geteuid() == 0 else 0)
        assert len(os.listdir("/proc/self/fd")) == fds
        one = Symbolizer()
        assert got == {p: one.resolve_user(p, v) for p, v in want.items()}
        assert got[a.pid][:2] == ["c [callchain]", "main [callchain]"]
        assert got[b.pid] == ["y [callchain-nopie]", "c [callchain-nopie]"]
    finally:
        for proc in (a, b):
            proc.kill()
            proc.wait()


def test_vdso_from_the_auxiliary_vector() -> None:
    """The vDSO read through AT_SYSINFO_EHDR is the bytes /proc/self/maps locates."""
    data = symbols._own_vdso()
    with open("/proc/self/maps") as f:
        span = next((ln.split()[0] for ln in f if ln.rstrip().endswith("[vdso]")), "")
    if not span:
        pytest.skip("no vDSO in this process")
    lo, hi = (int(v, 16) for v in span.split("-"))
    with open("/proc/self/mem", "rb") as mem:
        mem.seek(lo)
        mapped = mem.read(hi - lo)
    assert data is not None and mapped.startswith(data) and data[:4] == b"\x7fELF"


def test_vdso() -> None:
    sym = Symbolizer()
    elf = sym._vdso_symbols()
    if not len(elf.table):
        pytest.skip("no vDSO in this process")
    i = next(i for i in range(len(elf.table)) if "gettimeofday" in elf.table.name(i))
    with open("/proc/self/maps") as f:
        start = next(int(ln.split("-")[0], 16) for ln in f if ln.rstrip().endswith("[vdso]"))
    addr = start + int(elf.table.starts[i]) - int(elf.segments[0][0]) + 1
    (got,) = sym.resolve_user(os.getpid(), [addr])
    assert "gettimeofday" in got and got.endswith(" [vdso]")


def test_demangle_without_cxxfilt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(symbols.shutil, "which", lambda name: None)
    got = symbols.demangle(["_ZN3foo3barEi", "plain"])
    if got[0] == "_ZN3foo3barEi":
        pytest.skip("libstdc++ is not available to demangle through ctypes")
    assert got == ["foo::bar(int)", "plain"]


def test_kallsyms_cache_per_boot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bpfnb.symbols import kcache

    addr = _kallsyms_text_symbol("vfs_read")
    monkeypatch.setenv("BPFNB_CACHE", str(tmp_path / "cache"))
    live = Symbolizer(cache=False)
    first = Symbolizer()  # reads kallsyms and writes this boot's cache
    assert first.resolve_kernel([addr + 1]) == ["vfs_read"]
    files = os.listdir(tmp_path / "cache" / "kallsyms")
    assert files == [f"{kcache.cache_key()}.bin"]
    assert (tmp_path / "cache" / "kallsyms").stat().st_mode & 0o777 == 0o700
    cached = kcache.load(kcache.cache_key())
    assert cached is not None and cached.covers(np.array([addr], np.uint64))
    table = live.kernel_table
    rng = np.random.default_rng(7)
    probe = np.unique(rng.choice(table.starts, 4000)) + np.uint64(2)
    with open(symbols.KALLSYMS) as f:  # symbols that come and go (BPF) are read afresh
        dynamic = [int(ln.split()[0], 16) + 1 for ln in f if ln.rstrip().endswith("[bpf]")]
    probe = np.concatenate([probe, np.array(dynamic[:5], np.uint64)])
    second = Symbolizer()
    assert second.resolve_kernel(probe) == live.resolve_kernel(probe)
    # a truncated or foreign file is not used
    raw = (tmp_path / "cache" / "kallsyms" / files[0]).read_bytes()
    assert kcache.decode(raw[:-1]) is None and kcache.decode(b"x" * 64) is None
    syms = kcache.decode(raw)
    assert syms is not None and len(syms.starts) == len(cached.starts)


def test_elf_symbol_tables_cached_on_disk(
        running: tuple[subprocess.Popen[str], dict[str, int]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from bpfnb.symbols import elfcache

    proc, addrs = running
    monkeypatch.setenv("BPFNB_CACHE", str(tmp_path / "cache"))
    pm = Symbolizer(cache=False).snapshot_process(proc.pid)
    assert pm is not None
    rng = np.random.default_rng(3)
    probe = np.sort(np.concatenate(
        [rng.integers(s, e, 50, dtype=np.uint64) for s, e in
         zip(pm.starts.tolist(), pm.ends.tolist())] + [np.array([addrs["c"]], np.uint64)]))
    want = Symbolizer(cache=False).resolve_user(proc.pid, probe)
    first = Symbolizer()
    assert first.resolve_user(proc.pid, probe) == want
    files = sorted(os.listdir(tmp_path / "cache" / "elf"))
    assert len(files) >= 2 and all(f.endswith(".bin") for f in files)  # callchain, libc, ...
    assert Symbolizer().resolve_user(proc.pid, probe) == want  # now from the cache
    exe = os.stat(f"/proc/{proc.pid}/exe")
    key = elfcache.file_key(exe.st_dev, exe.st_ino, exe.st_size, exe.st_mtime_ns)
    raw = (tmp_path / "cache" / "elf" / key).read_bytes()
    table = elfcache.decode(raw)
    assert table is not None and len(table.build_id) == 40
    assert first.module_files()["callchain"][1] == table.build_id
    assert elfcache.decode(raw[:-1]) is None and elfcache.decode(b"\0" * 200) is None
    (tmp_path / "cache" / "elf" / key).write_bytes(raw[:100])  # damaged: read the ELF again
    assert Symbolizer().resolve_user(proc.pid, [addrs["c"]]) == ["c [callchain]"]


def test_elf_cache_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bpfnb.symbols import cachedir, elfcache

    monkeypatch.setenv("BPFNB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(elfcache, "MAX_FILES", 4)
    table = elfcache.ElfTable(np.array([16], np.uint64), np.array([8], np.uint64),
                              np.array([0]), b"f\0", np.zeros((0, 3), np.uint64), "ab")
    where = elfcache.open_dir()
    assert where is not None
    with where:
        for i in range(4):
            elfcache.store(where, f"k{i}.bin", table)
            os.utime(f"k{i}.bin", ns=(i, i), dir_fd=where.fd)  # written in this order
        assert sorted(os.listdir(where.fd)) == ["k0.bin", "k1.bin", "k2.bin", "k3.bin"]
        elfcache.store(where, "k4.bin", table)  # the fifth: the oldest two go
        assert sorted(os.listdir(where.fd)) == ["k2.bin", "k3.bin", "k4.bin"]
        got = elfcache.load(where, "k4.bin")
        assert got is not None and got.build_id == "ab" and got.blob == b"f\0"
    assert cachedir.open_cache("elf") is not None
