"""Each attach kind against the real kernel, with exact counts where the workload knows them."""

from __future__ import annotations

import os
import subprocess

import pytest

import bpfnb
from conftest import run_workload

pytestmark = pytest.mark.usefixtures("kernel")

VALUES = [3, 5, 8, 13]


def by_pid(view) -> dict[int, int]:
    df = view.df()
    return dict(zip(df["key"].tolist(), df["value"].tolist()))


def test_raw_tracepoint(workload):
    src = """
    BPF_HASH(calls, u32, u64);
    RAW_TRACEPOINT_PROBE(sys_enter) {
        // args: struct pt_regs *regs, long id
        if (ctx->args[1] != 39) return 0;   // __NR_getpid on x86_64
        u32 pid = bpf_get_current_pid_tgid() >> 32;
        calls.increment(pid);
        return 0;
    }
    """
    with bpfnb.load(src) as prog:
        assert [str(p) for p in prog.attach_points] == ["raw_tracepoint:sys_enter"]
        pid = run_workload(workload, "getpid", 400)
        assert by_pid(prog["calls"])[pid] == 400


def test_explicit_tracepoint(workload):
    src = """
    BPF_HASH(calls, u32, u64);
    int on_getpid(void *ctx) {
        u32 pid = bpf_get_current_pid_tgid() >> 32;
        calls.increment(pid);
        return 0;
    }
    """
    with bpfnb.load(src, attach=False) as prog:
        prog.attach_tracepoint("syscalls:sys_enter_getpid", "on_getpid")
        pid = run_workload(workload, "getpid", 17)
        assert by_pid(prog["calls"])[pid] == 17


def test_uprobe_and_uretprobe(workload):
    src = """
    #include <uapi/linux/ptrace.h>
    BPF_HASH(args, u64, u64);
    BPF_HASH(rets, u64, u64);
    int on_entry(struct pt_regs *ctx) { u64 v = PT_REGS_PARM1(ctx); args.increment(v); return 0; }
    int on_return(struct pt_regs *ctx) { u64 v = PT_REGS_RC(ctx); rets.increment(v); return 0; }
    """
    with bpfnb.load(src, attach=False) as prog:
        prog.attach_uprobe(str(workload), "doubled", "on_entry")
        prog.attach_uretprobe(str(workload), "doubled", "on_return")
        kinds = sorted(p.kind for p in prog.attach_points)
        assert kinds == ["uprobe", "uretprobe"]
        run_workload(workload, "record", *VALUES)
        assert by_pid(prog["args"]) == {v: 1 for v in VALUES}
        assert by_pid(prog["rets"]) == {2 * v: 1 for v in VALUES}


def test_usdt_attached_after_load(workload):
    src = """
    BPF_ARRAY(fired, u64, 1);
    int on_recorded(void *ctx) { int k = 0; fired.increment(k); return 0; }
    """
    with bpfnb.load(src, attach=False) as prog:
        prog.attach_usdt("bpfnb:recorded", "on_recorded", path=str(workload))
        run_workload(workload, "record", *VALUES)
        assert prog["fired"].df()["value"].tolist() == [len(VALUES)]


def test_usdt_arguments_at_load_time(workload):
    src = """
    #include <uapi/linux/ptrace.h>
    BPF_HASH(seen, u64, u64);
    int on_recorded(struct pt_regs *ctx) {
        u64 v = 0;
        bpf_usdt_readarg(1, ctx, &v);
        seen.increment(v);
        return 0;
    }
    """
    usdt = [bpfnb.Usdt("bpfnb:recorded", "on_recorded", path=str(workload))]
    with bpfnb.load(src, usdt=usdt) as prog:
        assert [p.kind for p in prog.attach_points] == ["usdt"]
        run_workload(workload, "record", *VALUES)
        assert by_pid(prog["seen"]) == {v: 1 for v in VALUES}


def test_perf_event_sampling(workload):
    src = """
    BPF_HASH(samples, u32, u64);
    int on_sample(struct bpf_perf_event_data *ctx) {
        u32 pid = bpf_get_current_pid_tgid() >> 32;
        samples.increment(pid);
        return 0;
    }
    """
    with bpfnb.load(src, attach=False) as prog:
        prog.attach_perf_event("on_sample", sample_freq=99)
        # A busy machine gives a 1 s spin less CPU: spin again until the workload has run
        # 0.5 CPU seconds (enough samples for a tight ratio), then compare the samples with
        # the CPU time the kernel accounted to exactly those processes.
        pids, cpu_seconds = [], 0.0
        while cpu_seconds < 0.5:
            assert len(pids) < 30, f"30 spins got {cpu_seconds:.2f} CPU seconds"
            proc = subprocess.Popen([str(workload), "spin", "1"])
            _, status, usage = os.wait4(proc.pid, 0)
            assert status == 0
            pids.append(proc.pid)
            cpu_seconds += usage.ru_utime + usage.ru_stime
        samples = by_pid(prog["samples"])
        n = sum(samples.get(pid, 0) for pid in set(pids))
        assert 0.6 * 99 * cpu_seconds <= n <= 1.4 * 99 * cpu_seconds


def test_load_never_lifts_rlimit_memlock():
    import resource

    before = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    with bpfnb.load("BPF_HASH(big, u32, u64, 200000);"
                    "TRACEPOINT_PROBE(syscalls, sys_enter_getpid) { return 0; }"):
        assert resource.getrlimit(resource.RLIMIT_MEMLOCK) == before
