"""Each verifier hint is tested with a real program that triggers it (issue 11): the hint
matches the verifier's reason (not words elsewhere in the log) and the error names the cell
line, also for a probe written on one line. Odd bytes in a cell are CompileErrors."""

from __future__ import annotations

import pytest

import bpfnb
from bpfnb.errors import CompileError, VerifierError

pytestmark = pytest.mark.usefixtures("kernel")

MAPS = "BPF_HASH(h, u32, u64);\nBPF_ARRAY(a, u64, 4);\n"
PROBE = "TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {\n"
NULL_HINT = "Check the pointer a map lookup returns for NULL"
LOOP_HINT = "The verifier cannot follow this loop to its end"
BOUNDS_HINT = "The index may be out of bounds"
POINTER_HINT = "The pointer is not one the verifier can prove valid"
UNINIT_HINT = "A variable is read before it is set"

CASES = {
    "unchecked lookup": (MAPS + PROBE + """\
  u32 k = 1;
  u64 *v = h.lookup(&k);
  return *v;
}
""", 6, NULL_HINT),
    "unchecked lookup, one line": (
        MAPS + "TRACEPOINT_PROBE(syscalls, sys_enter_getpid) "
        "{ u32 k = 1; u64 *v = h.lookup(&k); return *v; }\n", 3, NULL_HINT),
    "too complex, with a checked lookup": (MAPS + PROBE + """\
  u32 k = 0;
  u64 *c = h.lookup(&k);
  if (!c) return 0;
  volatile u64 s = 0;
  for (u64 i = 0; i < 100000; i++) { s += bpf_get_prandom_u32() & 1 ? 1 : 2; }
  *c = s;
  return 0;
}
""", 8, LOOP_HINT),
    "out of bounds": (MAPS + PROBE + """\
  u32 k = 0;
  u64 *v = a.lookup(&k);
  if (!v) return 0;
  u32 i = bpf_get_prandom_u32();
  return v[i];
}
""", 8, BOUNDS_HINT),
    "uninitialised read": (MAPS + PROBE + """\
  u64 r;
  bpf_get_prandom_u32();
  asm volatile("%0 = r3" : "=r"(r));
  return r;
}
""", 6, UNINIT_HINT),
    "invalid mem access": (MAPS + PROBE + """\
  u64 addr = bpf_get_prandom_u32();
  u64 *p = (u64 *)addr;
  return *p;
}
""", 6, POINTER_HINT),
}


@pytest.mark.parametrize("case", CASES)
def test_each_hint_with_a_program_that_triggers_it(case):
    source, line, hint = CASES[case]
    with pytest.raises(VerifierError) as err:
        bpfnb.load(source, name="hint")
    e = err.value
    assert e.line == line
    first = str(e).splitlines()[0]
    assert f"at line {line}: `{source.splitlines()[line - 1].strip()}`" in first
    assert hint in first
    others = {NULL_HINT, LOOP_HINT, BOUNDS_HINT, POINTER_HINT, UNINIT_HINT} - {hint}
    assert not [h for h in others if h in first]
    assert "..`" not in first and ". at line" not in first
    assert bpfnb.open_programs() == []


def test_loop_the_verifier_gives_up_on_says_so():
    source = MAPS + PROBE + """\
  u32 k = 0;
  u64 *n = h.lookup(&k);
  if (!n) return 0;
  u64 s = 0;
  for (u64 i = 0; i < *n; i++) { s += i; }
  h.update(&k, &s);
  return 0;
}
"""
    # bcc gets no log for E2BIG ("too complex"); libbpf gets the kernel's "too large"
    with pytest.raises(VerifierError, match=f"too (complex|large).*{LOOP_HINT}"):
        bpfnb.load(source, name="hint")


def test_one_line_probe_compile_error_keeps_its_line():
    source = MAPS + "TRACEPOINT_PROBE(syscalls, sys_enter_getpid) { return nosuch; }\n"
    with pytest.raises(CompileError, match=r"^C compile error at line 3, column \d+: "
                                           r"use of undeclared identifier 'nosuch'"):
        bpfnb.load(source, name="hint")


@pytest.mark.parametrize("bad, what, line, column", [
    ("\x00", "a NUL byte", 4, 12),
    ("\udce9", "U+DCE9, a lone surrogate", 4, 12),
])
def test_nul_and_lone_surrogate_are_compile_errors_with_the_line(bad, what, line, column):
    source = MAPS + PROBE + f"  return 0;{bad} h.increment(1);\n}}\n"
    with pytest.raises(CompileError) as err:
        bpfnb.load(source, name="odd")
    assert err.value.summary == (f"C source error at line {line}, column {column} holds "
                                 f"{what}" + (" (the source would end there)" if bad == "\x00"
                                              else " that is not valid Unicode") +
                                 ". Delete that character and run the cell again.")
    assert err.value.diagnostics[0][:2] == (line, column)
    assert bpfnb.open_programs() == []


def test_nul_in_a_cell_through_the_magic(shell):
    result = shell.run_cell("%%bpf odd_cell\n" + MAPS + PROBE + "  return 0;\x00\n}\n")
    assert isinstance(result.error_in_exec, CompileError)
    assert "line 5, column 12 holds a NUL byte" in str(result.error_in_exec)  # editor lines
    assert "odd_cell" not in shell.user_ns
