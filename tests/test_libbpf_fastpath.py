"""The libbpf backend's fast paths: a warm compile runs in the spare clang started after
the previous one (backends/libbpf/spare.py), with the same output as a clang started for
it; -D flags as source lines; close() detaching several links at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from bpfnb._sys import bpfsys, objinfo
from bpfnb.backends.bcc import BccModule
from bpfnb.backends.libbpf import LibbpfModule, compiler, spare
from bpfnb.backends.select import libbpf_ready
from bpfnb.errors import CompileError
from bpfnb.testing.workload import COMM_FILTER, comm_cflags, getpid
from conftest import require


@pytest.fixture(autouse=True)
def _toolchain() -> None:
    require(libbpf_ready())  # kernel BTF, clang, bpftool, libbpf.so.1
    spare.stop()


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] in "XZ"  # exited (reaped or not)
    except FileNotFoundError:
        return True


def _fresh(body: str) -> str:
    return f"{body}\n// {time.time_ns()}\n"


def test_next_compile_runs_in_the_spare_same_object() -> None:
    assert spare.waiting() is None
    compiler.compile_c(_fresh("int first;"))
    first = spare.waiting()
    assert first is not None and not _gone(first)
    text = _fresh("int second = 2;")
    served = spare.served()
    built = compiler.compile_c(text)
    assert spare.served() == served + 1
    assert not built.cached
    second = spare.waiting()
    assert second is not None and second != first and _gone(first)
    direct = subprocess.run(compiler.clang_args(compiler.prelude()), input=text.encode(),
                            capture_output=True, check=True)
    assert built.obj == direct.stdout


def test_killed_spare_replaced_and_compile_succeeds() -> None:
    compiler.compile_c(_fresh("int a;"))
    pid = spare.waiting()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    served = spare.served()
    built = compiler.compile_c(_fresh("int b = 1;"))
    assert spare.served() == served
    assert built.obj.startswith(b"\x7fELF") and not built.cached
    assert spare.waiting() not in (None, pid)


def test_other_flags_start_a_new_spare_and_stop_leaves_none() -> None:
    compiler.compile_c(_fresh("int c;"))
    pid = spare.waiting()
    served = spare.served()
    built = compiler.compile_c(_fresh("int d = 1;"), ("-I/nonexistent",))
    assert spare.served() == served  # other arguments: not the spare's
    assert built.obj.startswith(b"\x7fELF")
    assert pid is not None and _gone(pid)
    last = spare.waiting()
    assert last is not None
    spare.stop()
    assert spare.waiting() is None and _gone(last)


def test_defines_become_source_lines_and_share_the_spare() -> None:
    compiler.compile_c(_fresh("int e;"))
    served = spare.served()
    built = compiler.compile_c(_fresh("#ifdef GONE\n#error GONE\n#endif\nint v = X;"),
                               ("-D", "X=0x1234567", "-DGONE", "-UGONE"))
    assert (0x1234567).to_bytes(4, "little") in built.obj
    assert spare.served() == served + 1  # the same clang arguments: the spare ran it
    assert compiler.defines_as_text(["-DA", "-D", "B=2", "-UC", "-I/x", "-D"]) == (
        '#line 1 "<command line>"\n#define A 1\n#define B 2\n#undef C\n#line 1 "<stdin>"\n',
        ("-I/x", "-D"))


def test_compile_error_with_defines_still_names_the_cell_line() -> None:
    src = "BPF_HASH(c, u32, u64);\nint f(void *ctx) {\n    u64 x = COMM_LO +;\n    return 0;\n}\n"
    with pytest.raises(CompileError) as err:
        LibbpfModule(src, cflags=comm_cflags("abc"))
    assert err.value.diagnostics[0][:2] == (3, 22)
    assert str(err.value).startswith("C compile error at line 3, column 22")


def test_forked_child_compiles_without_the_parents_spare() -> None:
    compiler.compile_c(_fresh("int f;"))
    parent, served = spare.waiting(), spare.served()
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        ok = False
        try:
            built = compiler.compile_c(_fresh("int g;"))
            ok = built.obj.startswith(b"\x7fELF") and spare.served() == served
            spare.stop()
        finally:
            os.write(w, b"1" if ok else b"0")
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        assert f.read() == b"1"
    os.waitpid(child, 0)
    assert parent is not None and spare.waiting() == parent and not _gone(parent)


def test_close_detaches_every_tracepoint() -> None:
    src = """
BPF_HASH(start, u32, u64);
TRACEPOINT_PROBE(syscalls, sys_enter_read) { u32 k = 1; u64 v = 2; start.update(&k, &v); return 0; }
TRACEPOINT_PROBE(syscalls, sys_exit_read) { u32 k = 1; start.delete(&k); return 0; }
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) { return 0; }
"""
    m = LibbpfModule(src)
    m.autoattach()
    ids = [bpfsys.prog_info(fd).id for fd in m.loaded_fds().values()]
    assert len(ids) == 3 and all(objinfo.prog_by_id(i) is not None for i in ids)
    m.close()
    assert [objinfo.prog_by_id(i) for i in ids] == [None, None, None]


LOG2_VALUES = [0, 1, 2, 3, 7, 1000, (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32,
               (1 << 32) + 1, 0x123456789, (1 << 63) - 1, 1 << 63, (1 << 64) - 1]
LOG2 = "BPF_ARRAY(out, u32, {n});\nTRACEPOINT_PROBE(syscalls, sys_enter_getpid) {{\n" \
    "    COMM_FILTER\n    volatile u64 v; u32 k, r;\n{body}    return 0;\n}}\n"


def _bcc_log2l(v: int) -> int:
    """bcc's bpf_log2l, as its helpers.h writes it."""
    def log2(x: int) -> int:
        r = (x > 0xFFFF) << 4
        x >>= r
        for bits, limit in ((3, 0xFF), (2, 0xF), (1, 0x3)):
            shift = (x > limit) << bits
            x >>= shift
            r |= shift
        return r | (x >> 1)
    hi = v >> 32
    return log2(hi) + 33 if hi else log2(v) + 1


def test_log2l_same_value_as_bccs_for_64_bit_values() -> None:
    body = "".join(f"    v = {v:#x}ULL; k = {i}; r = bpf_log2l(v); out.update(&k, &r);\n"
                   for i, v in enumerate(LOG2_VALUES))
    src = LOG2.format(n=len(LOG2_VALUES), body=body).replace("COMM_FILTER", COMM_FILTER)
    comm = f"bpfnb-log{os.getpid() % 10000}"
    results = []
    makers: list[Callable[..., Any]] = [LibbpfModule, BccModule]
    for make in makers:
        m = make(src, cflags=comm_cflags(comm))
        try:
            m.autoattach()
            getpid(1, comm=comm)
            t = m.table("out")
            value = t.Leaf()
            row = []
            for i in range(len(LOG2_VALUES)):
                bpfsys.lookup(t.map_fd, t.Key(i), value)
                row.append(value.value)
            results.append(row)
        finally:
            m.close()
    assert results[0] == results[1] == [_bcc_log2l(v) for v in LOG2_VALUES]
    assert results[0][:4] == [1, 1, 2, 2] and results[0][-1] == 64


AT_EXIT = """
import atexit, sys, time
from bpfnb.backends.libbpf import compiler, spare
def late():
    built = compiler.compile_c(f"int late_{time.time_ns()};")
    print("late", built.obj[:4] == b"\\x7fELF", spare.waiting(), flush=True)
atexit.register(late)  # runs before spare's own at-exit stop (registered earlier)
compiler.compile_c(f"int early_{time.time_ns()};")
"""


def test_compile_while_the_interpreter_exits_then_no_spare_left() -> None:
    run = subprocess.run([sys.executable, "-c", AT_EXIT], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    word, ok, pid = run.stdout.split()
    assert (word, ok) == ("late", "True")
    assert _gone(int(pid))  # the spare started at exit was stopped
