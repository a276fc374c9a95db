"""Errors count lines as the editor does: from the `%%bpf` / `%%bpftrace` line."""

from __future__ import annotations

import pytest

import bpfnb
from bpfnb.bpftrace.health import available

pytestmark = pytest.mark.usefixtures("kernel")

# as typed in the notebook; the typo `incremnt` is on editor line 5
MULTI = """%%bpf typo {backend}
BPF_HASH(c, u32, u64);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {{
    u32 k = 0;
    c.incremnt(k);
    return 0;
}}"""
SINGLE = "%%bpf single {backend}\nint x = ;"
NULL_DEREF = """BPF_HASH(c, u32, u64);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    u32 k = 0;
    u64 *v = c.lookup(&k);
    *v += 1;
    return 0;
}"""


def _cell(shell, text: str) -> BaseException:  # type: ignore[no-untyped-def]
    line, _, body = text.partition("\n")
    with pytest.raises(bpfnb.BpfnbError) as ei:
        shell.run_cell_magic("bpf", line.removeprefix("%%bpf "), body)
    return ei.value


@pytest.mark.parametrize("backend", ["--backend bcc", "--backend libbpf"])
def test_compile_errors_in_multi_and_single_line_cells(shell, backend) -> None:  # type: ignore[no-untyped-def]
    err = _cell(shell, MULTI.format(backend=backend))
    if isinstance(err, bpfnb.FeatureUnavailableError):
        pytest.skip(str(err))
    assert isinstance(err, bpfnb.CompileError)
    assert str(err).startswith("C compile error at line 5, column 7: no member named 'incremnt'")
    assert err.diagnostics[0][:2] == (5, 7)
    assert "c.incremnt(k);" in str(err).splitlines()[1]
    err = _cell(shell, SINGLE.format(backend=backend))
    assert isinstance(err, bpfnb.CompileError)
    assert str(err).startswith("C compile error at line 2, column 9: expected expression")


def test_library_calls_count_from_the_first_source_line() -> None:
    with pytest.raises(bpfnb.CompileError, match="at line 1, column 9"):
        bpfnb.load("int x = ;", backend="bcc")
    with pytest.raises(bpfnb.CompileError, match="at line 3, column 9"):
        bpfnb.load("int x = ;", backend="bcc", line_offset=2)


def test_verifier_and_unknown_tracepoint_lines_follow_the_offset() -> None:
    with pytest.raises(bpfnb.VerifierError) as ei:
        bpfnb.load(NULL_DEREF, backend="bcc", line_offset=1)
    assert ei.value.line == 6 and "at line 6: `*v += 1;`" in str(ei.value)
    src = "TRACEPOINT_PROBE(syscalls, sys_enter_getpidd) { return 0; }"
    with pytest.raises(bpfnb.UnknownTargetError, match=r"\(line 2\)"):
        bpfnb.load(src, backend="bcc", line_offset=1)


def test_bpftrace_cell_errors_count_from_the_magic_line(shell) -> None:  # type: ignore[no-untyped-def]
    ok = available()
    if not ok:
        pytest.skip(str(ok))
    from bpfnb.jupyter import bpftrace_magic

    if "BpftraceMagics" not in shell.magics_manager.registry:
        bpftrace_magic.register(shell)
    for body, line in [("BEGIN { @x = cout(); }", 2), ("BEGIN {\n  @x = 1;\n  @y = cout();\n}", 4)]:
        with pytest.raises(bpfnb.BpfnbError, match=f"line {line}"):
            shell.run_cell_magic("bpftrace", "bt_lines", body)
