"""The symbolizer without a kernel or a running process: a synthetic kallsyms text, a small
ELF built here with gcc (checked against binutils' nm and readelf), and a process map given
by hand."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bpfnb.symbols.symbolizer import (
    ElfSymbols,
    Module,
    ProcessMap,
    Symbolizer,
    load_elf,
    parse_kallsyms,
)

SOURCE = r"""
int counter;
__attribute__((noinline)) int alpha(int x) { return x + counter; }
static __attribute__((noinline, used)) int beta(int x) { return x * 2 + counter; }
int main(void) { return alpha(beta(counter)); }
"""
FUNCS = ("alpha", "beta", "main")


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for tool in ("gcc", "nm", "readelf"):
        if shutil.which(tool) is None:
            pytest.skip(f"no {tool} to build and inspect a test ELF")
    out = tmp_path_factory.mktemp("elf")
    (out / "prog.c").write_text(SOURCE)
    subprocess.run(["gcc", "-O1", "-g", "-Wl,--build-id=sha1", "-o", str(out / "prog"),
                    str(out / "prog.c")], check=True)
    return out / "prog"


def nm(path: Path) -> dict[str, tuple[int, int]]:
    """name -> (address, size) of the functions, as binutils sees them."""
    text = subprocess.run(["nm", "-S", "--defined-only", str(path)], check=True,
                          capture_output=True, text=True).stdout
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "Tt":
            out[parts[3]] = (int(parts[0], 16), int(parts[1], 16))
    return out


def test_elf_functions_match_nm(prog: Path) -> None:
    elf = load_elf(str(prog))
    assert elf.error == ""
    want = nm(prog)
    for name in FUNCS:
        addr, size = want[name]
        idx = elf.table.lookup(np.array([addr, addr + size - 1], np.uint64))
        assert [elf.table.name(int(i)) for i in idx] == [name, name]
    names = {elf.table.name(i) for i in range(len(elf.table))}
    assert set(FUNCS) <= names and "counter" not in names        # objects are not functions


def test_build_id_matches_readelf(prog: Path) -> None:
    text = subprocess.run(["readelf", "-n", str(prog)], check=True, capture_output=True,
                          text=True).stdout
    match = re.search(r"Build ID: ([0-9a-f]+)", text)
    assert match is not None and load_elf(str(prog)).build_id == match.group(1)


def test_in_memory_image(prog: Path) -> None:
    elf = load_elf("[image]", prog.read_bytes())
    assert elf.error == "" and len(elf.table) == len(load_elf(str(prog)).table)


@pytest.mark.parametrize("data", [b"", b"not an ELF file at all", b"\x7fELF\x02\x01\x01"],
                         ids=["empty", "text", "truncated"])
def test_foreign_files_give_an_error_not_an_exception(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bad"
    path.write_bytes(data)
    elf = load_elf(str(path))
    assert elf.error and len(elf.table) == 0 and elf.segments.shape == (0, 3)


def _text_segment(elf: ElfSymbols, vaddr: int) -> tuple[int, int, int]:
    for seg_vaddr, off, filesz in elf.segments.tolist():
        if seg_vaddr <= vaddr < seg_vaddr + filesz:
            return seg_vaddr, off, filesz
    raise AssertionError(f"no PT_LOAD holds {vaddr:#x}")


def test_user_addresses_through_a_process_map(prog: Path) -> None:
    sym = Symbolizer(kallsyms=b"")
    want = nm(prog)
    elf = load_elf(str(prog))
    seg_vaddr, off, filesz = _text_segment(elf, want["alpha"][0])
    start, page_off = 0x5555_1234_0000, off & ~0xFFF         # mmap of the text segment
    end = start + (off - page_off) + filesz

    def runtime(name: str, plus: int = 0) -> int:
        return start + (want[name][0] - seg_vaddr + off - page_off) + plus

    sym.processes[4242] = ProcessMap(
        4242, np.array([start], np.uint64), np.array([end], np.uint64),
        np.array([page_off], np.uint64), np.array([0], np.int64), [Module("prog", str(prog))])
    addrs = [runtime("beta", 1), runtime("alpha"), end + 0x10, runtime("main", 2),
             runtime("alpha", 3)]
    assert sym.resolve_user(4242, addrs) == [
        "beta [prog]", "alpha [prog]", f"[unknown] {end + 0x10:#x}", "main [prog]",
        "alpha [prog]"]
    assert sym.resolve_user(4242, []) == []


KALLSYMS = b"""\
0000000000000000 T zero_is_skipped
ffffffff81000000 T _stext
ffffffff81000000 T startup_64
ffffffff81000100 t helper
ffffffff81000200 D some_data
ffffffff81000280 r some_rodata
ffffffff81000300 W weak_fn
ffffffffc0001000 t mod_fn\t[mymod]
ffffffffc0002000 B mod_bss\t[mymod]"""


@pytest.mark.parametrize(("addr", "name"), [
    (0xFFFFFFFF81000000, "startup_64"),                   # the later line wins a tie
    (0xFFFFFFFF810000FF, "startup_64"),
    (0xFFFFFFFF81000100, "helper"),
    (0xFFFFFFFF81000250, "helper"),                       # data symbols are not frames
    (0xFFFFFFFF81000300, "weak_fn"),
    (0xFFFFFFFFC0001004, "mod_fn"),                       # the module suffix is cut
    (0xFFFFFFFFC0002008, "mod_fn"),
    (0xFFFFFFFF80FFFFFF, "[unknown] 0xffffffff80ffffff"),  # below the first symbol
    (0x10, "[unknown] 0x10"),
])
def test_kernel_address(addr: int, name: str) -> None:
    assert Symbolizer(kallsyms=KALLSYMS).resolve_kernel([addr]) == [name]


def test_kernel_addresses_in_bulk_keep_order_and_duplicates() -> None:
    sym = Symbolizer(kallsyms=KALLSYMS)
    addrs = np.array([0xFFFFFFFFC0001004, 0xFFFFFFFF81000100, 0xFFFFFFFFC0001004, 1], np.uint64)
    assert sym.resolve_kernel(addrs) == ["mod_fn", "helper", "mod_fn", "[unknown] 0x1"]


@pytest.mark.parametrize(("text", "count"), [
    (b"", 0),
    (b"no_space_in_this_line", 0),
    (b"c0001000 T short_width\nc0002000 t other", 2),     # 32-bit kallsyms
    (b"0000000000000000 T a\n0000000000000000 t b\n", 0),  # kptr_restrict hides addresses
])
def test_kallsyms_shapes(text: bytes, count: int) -> None:
    assert len(parse_kallsyms(text)) == count


def test_kallsyms_from_a_file_and_refresh(tmp_path: Path) -> None:
    path = tmp_path / "kallsyms"
    path.write_bytes(b"ffffffff81000000 T first\n")
    sym = Symbolizer(kallsyms=str(path))
    assert sym.resolve_kernel([0xFFFFFFFF81000010]) == ["first"]
    path.write_bytes(b"ffffffff81000000 T second\n")
    assert sym.resolve_kernel([0xFFFFFFFF81000010]) == ["first"]       # cached
    sym.refresh_kernel()
    assert sym.resolve_kernel([0xFFFFFFFF81000010]) == ["second"]
    assert Symbolizer(kallsyms=str(tmp_path / "missing")).resolve_kernel([5]) == [
        "[unknown] 0x5"]
