"""bpfnb.profile / %bpf_profile / bpfnb.profiler.stacks on a workload with known call chains."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest
from IPython.core.error import UsageError

import bpfnb
from conftest import HERE, build

pytestmark = pytest.mark.usefixtures("kernel")


@pytest.fixture(scope="module")
def callchain():
    return build(HERE / "workload" / "callchain.c", "callchain", "-O0")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat, clock ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def chain_counts(folded: str, comm: str = "callchain") -> dict[str, int]:
    out: dict[str, int] = {}
    for line in folded.splitlines():
        stack, count = line.rsplit(" ", 1)
        frames = [re.sub(r" \[.*\]$", "", f) for f in stack.split(";")]
        if frames[0] != comm:
            continue
        names = [f for f in frames[1:] if f in ("main", "a", "b", "c", "x", "y")]
        out[";".join(names)] = out.get(";".join(names), 0) + int(count)
    return out


@pytest.fixture(scope="module")
def run(callchain):
    return bpfnb.profile(command=[str(callchain), "5", "3", "1"], duration=15, hz=199)


def test_profile_command_chains_in_order_and_proportion(run):
    chains = chain_counts(run.folded())
    abc, xy = chains.get("main;a;b;c", 0), chains.get("main;x;y", 0)
    assert abc + xy >= 0.8 * sum(chains.values())
    assert abc + xy > 100
    assert abc / (abc + xy) == pytest.approx(0.75, abs=0.05)


def test_profile_resolves_after_the_process_exited(run):
    # the command exited before the maps were read: its symbols come from the memory map
    # snapshot taken while it ran (PLT stubs have no symbol and stay [unknown] [callchain])
    lines = run.folded(modules=True).splitlines()
    assert any("main [callchain];a [callchain];b [callchain];c [callchain]" in ln
               for ln in lines)
    unknown = sum(int(ln.rsplit(" ", 1)[1]) for ln in lines if "[unknown]" in ln)
    assert unknown <= 0.05 * run.total


def test_folded_round_trip(run):
    again = bpfnb.Stacks.from_folded(run.folded())
    assert again.folded() == run.folded()


def test_stacks_from_user_program_with_custom_field_names(callchain):
    src = """
    #include <uapi/linux/bpf_perf_event.h>
    struct key_t { u32 tgid; int ustack; int kstack; char task[16]; };
    BPF_HASH(samples, struct key_t, u64);
    BPF_STACK_TRACE(traces, 1024);
    int on_sample(struct bpf_perf_event_data *ctx) {
        struct key_t k = {};
        k.tgid = bpf_get_current_pid_tgid() >> 32;
        if (k.tgid != TARGET) return 0;
        bpf_get_current_comm(&k.task, sizeof(k.task));
        k.ustack = traces.get_stackid(&ctx->regs, BPF_F_USER_STACK);
        k.kstack = -14;   /* -EFAULT: no kernel stack collected */
        samples.increment(k);
        return 0;
    }
    """
    proc = subprocess.Popen([str(callchain), "60", "1", "1"])
    try:
        with bpfnb.load(src, cflags=[f"-DTARGET={proc.pid}"], attach=False) as prog:
            prog.attach_perf_event("on_sample", sample_freq=99)
            start = cpu_seconds(proc.pid)
            deadline = time.monotonic() + 30   # until it ran 0.5 s, however busy the CPUs
            while cpu_seconds(proc.pid) - start < 0.5 and time.monotonic() < deadline:
                time.sleep(0.1)
            proc.send_signal(signal.SIGSTOP)   # no samples after its CPU time is read
            ran = cpu_seconds(proc.pid) - start
            st = bpfnb.stacks(prog["samples"], prog["traces"], pid="tgid", comm="task")
    finally:
        proc.kill()
        proc.wait(timeout=30)
    df = st.df()
    assert set(df["pid"]) == {proc.pid} and set(df["comm"]) == {"callchain"}
    assert ran >= 0.5
    assert 0.8 * ran * 99 - 2 <= df["count"].sum() <= 1.2 * ran * 99 + 2   # 99 Hz of its CPU
    assert {"main;a;b;c", "main;x;y"} <= set(chain_counts(st.folded()))


def test_missing_stacks_are_counted():
    src = """
    #include <uapi/linux/bpf_perf_event.h>
    struct key_t { u32 pid; int user_stack_id; int kernel_stack_id; char comm[16]; };
    BPF_HASH(counts, struct key_t, u64);
    BPF_STACK_TRACE(stack_traces, 16);
    int fill(void *ctx) {
        struct key_t k = {.pid = 1, .user_stack_id = -17, .kernel_stack_id = -14};
        u64 n = 5;
        counts.update(&k, &n);
        return 0;
    }
    """
    with bpfnb.load(src, attach=False) as prog:
        prog.attach_tracepoint("syscalls:sys_enter_getppid", "fill")
        import os

        os.getppid()
        st = bpfnb.stacks(prog["counts"], prog["stack_traces"])
    assert "[missing user stack: EEXIST]" in st.folded()
    assert st.df()["count"].sum() == 5


def test_profile_magic(callchain):
    from IPython.testing.globalipapp import start_ipython

    ip = start_ipython() or __import__("IPython").get_ipython()
    ip.run_line_magic("load_ext", "bpfnb")
    st = ip.run_line_magic("bpf_profile", f"-F 99 -d 8 -- {callchain} 3 1 1")
    assert isinstance(st, bpfnb.Stacks)
    assert "main;a;b;c" in chain_counts(st.folded())
    with pytest.raises(UsageError, match=r"unknown (argument|option)"):
        ip.run_line_magic("bpf_profile", "--frob")
    with pytest.raises(UsageError, match="nothing after --"):
        ip.run_line_magic("bpf_profile", "--")
