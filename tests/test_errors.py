"""Every failure a user can cause raises a bpfnb error that says what happened and what to do."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import bpfnb
from bpfnb._sys import features
from conftest import bpf_fd_count

pytestmark = pytest.mark.usefixtures("kernel")


def test_compile_error_points_at_cell_line():
    src = textwrap.dedent("""\
        BPF_HASH(counts, u32, u64);
        TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
            u32 k = 1;
            counts.increment(k)
            return 0;
        }""")
    with pytest.raises(bpfnb.CompileError) as err:
        bpfnb.load(src)
    first = str(err.value).splitlines()[0]
    assert first.startswith("C compile error at line 4")
    assert "expected ';'" in first and "Fix the cell" in first
    assert "counts.increment(k)" in str(err.value)
    assert err.value.diagnostics[0][0] == 4
    assert "cell:4" in err.value.details


def test_compile_error_line_after_tracepoint_struct_insertion():
    # bcc inserts a struct definition before TRACEPOINT_PROBE; lines must still match the cell
    src = "\n".join([
        "TRACEPOINT_PROBE(syscalls, sys_enter_getpid) { return 0; }",
        "",
        "TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {",
        "    return undefined_name;",
        "}",
    ])
    with pytest.raises(bpfnb.CompileError, match=r"^C compile error at line 4, column 12"):
        bpfnb.load(src)


def test_verifier_rejection_one_line_reason_and_full_log():
    src = textwrap.dedent("""\
        BPF_HASH(counts, u32, u64);
        TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
            u32 k = 1;
            u64 *v = counts.lookup(&k);
            return *v;
        }""")
    before = bpf_fd_count()
    with pytest.raises(bpfnb.VerifierError) as err:
        bpfnb.load(src)
    e = err.value
    first = str(e).splitlines()[0]
    assert first.startswith("The verifier rejected tracepoint__syscalls__sys_enter_getpid:")
    assert "invalid mem access 'map_value_or_null'" in first
    assert "line 5" in first and "NULL" in first
    assert e.line == 5
    assert "processed" in e.log and len(e.log.splitlines()) > 5
    assert len(str(e).splitlines()) == 1  # the log is kept, not dumped
    assert bpf_fd_count() == before  # nothing left loaded or attached


def test_unknown_tracepoint_suggests_close_matches():
    src = "TRACEPOINT_PROBE(syscalls, sys_enter_getpidd) { return 0; }"
    with pytest.raises(bpfnb.UnknownTargetError) as err:
        bpfnb.load(src)
    assert str(err.value).startswith("Unknown tracepoint syscalls:sys_enter_getpidd (line 1)")
    assert "syscalls:sys_enter_getpid" in err.value.matches


def test_explicit_unknown_tracepoint_and_nothing_attached():
    src = "int handler(void *ctx) { return 0; }"
    with bpfnb.load(src, attach=False) as prog:
        with pytest.raises(bpfnb.UnknownTargetError, match="sched:sched_switchh"):
            prog.attach_tracepoint("sched:sched_switchh", "handler")
        assert prog.attach_points == []


def test_kprobe_missing_feature_or_unknown_symbol():
    src = "int kprobe__no_such_function_xyz(void *ctx) { return 0; }"
    before = bpf_fd_count()
    if features.kprobes():
        with pytest.raises(bpfnb.UnknownTargetError, match="no_such_function_xyz"):
            bpfnb.load(src)
    else:
        with pytest.raises(bpfnb.FeatureUnavailableError) as err:
            bpfnb.load(src)
        assert "kprobes are not available" in str(err.value)
        assert features.kprobes().reason in str(err.value)
        assert "TRACEPOINT_PROBE" in str(err.value)
    assert bpf_fd_count() == before


def test_failure_after_partial_attach_detaches_everything():
    src = textwrap.dedent("""\
        TRACEPOINT_PROBE(syscalls, sys_enter_getpid) { return 0; }
        int kprobe__no_such_function_xyz(void *ctx) { return 0; }
        """)
    before = bpf_fd_count()
    with pytest.raises(bpfnb.BpfnbError):
        bpfnb.load(src)
    assert bpf_fd_count() == before
    assert bpfnb.open_programs() == [] or all(p.name != "bpf" for p in bpfnb.open_programs())


def test_unknown_uprobe_symbol_suggests(workload):
    src = "int on_record(void *ctx) { return 0; }"
    with bpfnb.load(src, attach=False) as prog:
        with pytest.raises(bpfnb.UnknownTargetError) as err:
            prog.attach_uprobe(str(workload), "recrod", "on_record")
        assert "record" in err.value.matches
        assert str(err.value).startswith("Unknown symbol recrod in ")
        assert prog.attach_points == []


def test_unknown_perf_event_name():
    src = "int on_sample(void *ctx) { return 0; }"
    with bpfnb.load(src, attach=False) as prog, pytest.raises(
            bpfnb.BpfnbError, match="unknown software perf event 'cpu-clok'"):
        prog.attach_perf_event("on_sample", config="cpu-clok")


def test_closed_program_maps_raise():
    prog = bpfnb.load("BPF_HASH(m, u32, u64);")
    view = prog["m"]
    prog.close()
    prog.close()  # idempotent
    with pytest.raises(bpfnb.ProgramClosedError, match="run its cell"):
        view.df()


def test_missing_privilege_says_which_capability(tmp_path):
    script = textwrap.dedent("""\
        import bpfnb
        try:
            bpfnb.load("TRACEPOINT_PROBE(syscalls, sys_enter_getpid) { return 0; }")
        except bpfnb.PrivilegeError as e:
            print("PRIV", str(e).splitlines()[0])
        """)
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
           "--bounding-set=-all", sys.executable, "-c", script]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                         cwd="/", env={**os.environ, "HOME": str(tmp_path)})
    assert "PRIV Cannot load a BPF program" in out.stdout, out.stderr
    assert "CAP_BPF" in out.stdout and "unprivileged_bpf_disabled" in out.stdout
