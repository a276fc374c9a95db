"""prog.trace(): a program's bpf_trace_printk lines, exactly, and no other program's."""

from __future__ import annotations

import os

import pytest

import bpfnb
from bpfnb._sys import features
from conftest import run_workload

pytestmark = pytest.mark.usefixtures("kernel")

PRINTS = r"""
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    char comm[16];
    bpf_get_current_comm(&comm, sizeof(comm));
    if (comm[0] != 'b' || comm[5] != '-' || comm[6] != 'w')  /* only "bpfnb-wl" */
        return 0;
    bpf_trace_printk("WHO pid=%d\n", bpf_get_current_pid_tgid() >> 32);
    return 0;
}
"""


@pytest.fixture(params=["bcc", "libbpf"])
def backend(request):  # type: ignore[no-untyped-def]
    return request.param


def _load(who: str, backend: str) -> bpfnb.Program:
    try:
        return bpfnb.load(PRINTS.replace("WHO", who), name=who, backend=backend)
    except bpfnb.FeatureUnavailableError as e:
        pytest.skip(str(e))


def test_lines_of_this_program_exactly_and_not_the_others(workload, backend) -> None:  # type: ignore[no-untyped-def]
    mine, other = _load("mine", backend), _load("other", backend)
    with mine, other:
        pid = run_workload(workload, "getpid", 4)
        df = mine.trace(duration=0.5)
        assert list(df.columns) == ["time", "cpu", "pid", "comm", "message"]
        df = df[df.pid == pid]  # other test runs on this machine use the workload too
        assert df.message.tolist() == [f"mine pid={pid}"] * 4
        assert df.pid.tolist() == [pid] * 4 and set(df.comm) == {"bpfnb-wl"}
        assert df.time.is_monotonic_increasing
        assert set(df.cpu) <= set(range(os.cpu_count() or 1))
        # the other program's lines were left for it
        theirs = other.trace(duration=0.5)
        theirs = theirs[theirs.pid == pid]
        assert theirs.message.tolist() == [f"other pid={pid}"] * 4
        # read once: a second call has nothing new
        assert (mine.trace(duration=0.1).pid != pid).all()


def test_max_lines_keeps_the_rest_for_the_next_call(workload) -> None:  # type: ignore[no-untyped-def]
    with _load("few", "bcc") as prog:
        pid = run_workload(workload, "getpid", 5)
        first = prog.trace(duration=2, max_lines=2)
        assert len(first) == 2
        rest = prog.trace(duration=0.5)
        both = [*first.message[first.pid == pid], *rest.message[rest.pid == pid]]
        assert both == [f"few pid={pid}"] * 5


def test_instance_goes_when_the_program_closes() -> None:
    root = features.tracefs()
    before = set(os.listdir(f"{root}/instances"))
    prog = _load("gone", "bcc")
    made = set(os.listdir(f"{root}/instances")) - before
    assert len(made) == 1 and next(iter(made)).startswith(f"bpfnb-{os.getpid()}-")
    prog.close()  # removed with the program, not later
    assert set(os.listdir(f"{root}/instances")) == before
    with pytest.raises(bpfnb.ProgramClosedError, match="run its cell again"):
        prog.trace(duration=0)


def test_a_program_that_prints_nothing_says_so() -> None:
    src = "TRACEPOINT_PROBE(syscalls, sys_enter_getpid) { return 0; }"
    with bpfnb.load(src, backend="bcc") as prog, \
            pytest.raises(bpfnb.BpfnbError, match="bpf_trace_printk"):
        prog.trace(duration=0)


def test_lines_parse_and_forgotten_task_names_come_from_proc() -> None:
    from bpfnb.program import trace

    tag = "bpfnb1.2: "
    me = os.getpid()
    with open(f"/proc/{me}/comm") as f:
        comm = f.read().strip()
    line = f"           <...>-{me}     [001] d..31  3646.293428: bpf_trace_printk: {tag}hi 1"
    assert trace.parse(line, tag) == {"time": 3646.293428, "cpu": 1, "pid": me, "comm": comm,
                                      "message": "hi 1"}
    named = f" bpfnb-wl-7 [000] ..... 1.5: bpf_trace_printk: {tag}a: b"
    assert trace.parse(named, tag) == {"time": 1.5, "cpu": 0, "pid": 7, "comm": "bpfnb-wl",
                                       "message": "a: b"}
    assert trace.parse(named, "bpfnb1.3: ") is None  # another program's line


def test_a_program_loaded_again_gets_its_tag_and_compiled_object_back() -> None:
    first = _load("again", "libbpf")
    tag = first._trace_tag
    first.close()
    with _load("again", "libbpf") as second:
        assert second._trace_tag == tag and second.module.cached_object
        with _load("beside", "libbpf") as third:
            assert third._trace_tag != tag
