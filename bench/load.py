"""Source to attached: bcc vs libbpf (cold, warm) vs bpftrace, for two small programs.

    .venv/bin/python bench/load.py [N]
"""

from __future__ import annotations

import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bpfnb.backends.bcc import BccModule
from bpfnb.backends.libbpf import LibbpfModule, compiler, spare
from bpfnb.profiler.programs import profiler_program

PROGRAMS = {
    "count": ("""
BPF_HASH(by_pid, u32, u64);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    by_pid.increment(pid);
    return 0;
}
""", "tracepoint:syscalls:sys_enter_getpid { @[pid] = count(); }"),
    "latency": ("""
BPF_HASH(start, u32, u64);
BPF_HISTOGRAM(dist);
TRACEPOINT_PROBE(syscalls, sys_enter_read) {
    u32 tid = bpf_get_current_pid_tgid();
    u64 ts = bpf_ktime_get_ns();
    start.update(&tid, &ts);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_read) {
    u32 tid = bpf_get_current_pid_tgid();
    u64 *ts = start.lookup(&tid);
    if (!ts) return 0;
    dist.increment(bpf_log2l(bpf_ktime_get_ns() - *ts));
    start.delete(&tid);
    return 0;
}
""", "tracepoint:syscalls:sys_enter_read { @s[tid] = nsecs; } "
     "tracepoint:syscalls:sys_exit_read /@s[tid]/ { @h = hist(nsecs - @s[tid]); "
     "delete(@s[tid]); }"),
}


def fresh(src: str) -> str:
    """The source made new (a comment), so the object cache cannot answer: a clang run."""
    return f"{src}\n// run {next(_RUNS)} {time.time_ns()}"


_RUNS = itertools.count(1)


def timed(make, before=None) -> float:
    if before is not None:
        before()
    t = time.perf_counter()
    m = make()
    m.autoattach()
    dt = time.perf_counter() - t
    m.close()
    return dt


def bpftrace(script: str) -> float:
    """Seconds from start until bpftrace's BEGIN probe prints (probes are attached then)."""
    t = time.perf_counter()
    p = subprocess.Popen(["bpftrace", "-e", f'BEGIN {{ printf("up\\n"); }} {script}'],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert p.stdout is not None
    p.stdout.readline()
    dt = time.perf_counter() - t
    p.terminate()
    p.wait()
    return dt


def profiler_attached() -> float:
    """Seconds from nothing to the kit's profiler sampling on every CPU (what profile()
    waits for before the workload runs)."""
    t = time.perf_counter()
    prog = profiler_program(os.getpid())
    prog.attach_perf_event("on_sample", sample_freq=99)
    dt = time.perf_counter() - t
    prog.close()
    return dt


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    cache = tempfile.mkdtemp(prefix="bpfnb-bench-")
    os.chmod(cache, 0o700)
    print(f"median of {n}; ms from source to attached")
    print(f"load average {os.getloadavg()[0]:.1f}")
    print("lb cold: first compile on this kernel (builds vmlinux.h and its PCH); lb warm: "
          "new source, PCH cached, into the spare clang started after the previous compile; "
          "no spare: the same without it (a process's first compile); lb rerun: same source "
          "again (object cached, no clang)")
    print(f"{'program':10}{'bcc':>10}{'lb cold':>10}{'lb warm':>10}{'no spare':>10}"
          f"{'lb rerun':>10}{'bpftrace':>10}{'bcc/warm':>10}")
    for name, (src, bt) in PROGRAMS.items():
        os.environ["BPFNB_CACHE"] = os.path.join(cache, name)
        compiler.cache_key.cache_clear()
        cold = timed(lambda s=src: LibbpfModule(fresh(s)))
        runs: dict[str, list[float]] = {k: [] for k in ("nospare", "warm", "rerun", "bcc", "bt")}
        for _ in range(n):  # interleaved: every kind sees the same load
            runs["nospare"].append(timed(lambda s=src: LibbpfModule(fresh(s)), spare.stop))
            runs["warm"].append(timed(lambda s=src: LibbpfModule(fresh(s))))  # spare: 1 ms old
            runs["rerun"].append(timed(lambda s=src: LibbpfModule(s)))
            runs["bcc"].append(timed(lambda s=src: BccModule(s)))
            runs["bt"].append(bpftrace(bt) if shutil.which("bpftrace") else float("nan"))
        nospare, warm, rerun, bcc, btr = (statistics.median(v) for v in runs.values())
        print(f"{name:10}{bcc * 1e3:10.0f}{cold * 1e3:10.0f}{warm * 1e3:10.0f}"
              f"{nospare * 1e3:10.0f}{rerun * 1e3:10.0f}{btr * 1e3:10.0f}{bcc / warm:10.1f}x")
    os.environ["BPFNB_CACHE"] = os.path.join(cache, "profile")
    first = profiler_attached()
    warm = statistics.median(profiler_attached() for _ in range(n))
    print(f"profile() attached (profile.c + a perf event per CPU): first {first * 1e3:.0f} ms "
          f"(compiles once per kernel), then {warm * 1e3:.0f} ms (no compiler)")
    print(f"load average {os.getloadavg()[0]:.1f}")
    spare.stop()
    shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
