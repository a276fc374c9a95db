"""Benchmark: symbolizing profile stacks with bcc's per-address loop vs bpfnb.

Runs a few workloads, samples every CPU with a bcc perf-event program (cpu-clock),
then symbolizes the same distinct stacks two ways:

  bcc:   for each stack, for each address: BPF.sym(addr, pid, show_module=True)
         or BPF.ksym(addr)  (what bcc's tools do, per distinct stack)
  bpfnb: one Symbolizer.resolve_users({pid: all addresses of pid}) call and
         one Symbolizer.resolve_kernel(all kernel addresses)

"cold" starts from empty caches (bcc: BPF._sym_caches cleared; bpfnb: a new
Symbolizer, which loads this boot's kallsyms cache from disk), "first" is bpfnb's
first cold run of a boot (no disk cache: Symbolizer(cache=False)), "warm" repeats with
the caches filled. The outputs must be the same
frame strings once formats are normalised ("[unknown] 0x.. [m]" -> "[unknown] [m]",
"[[vdso]]" -> "[vdso]"); where the two pick different names for one address (aliases:
several symbols starting at the same address) that is counted and shown separately.
Then times Stacks.from_arrays + folded() for 100,000 counts rows.

Needs root and bcc. Run: .venv/bin/python bench/stacks.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bpfnb.profiler.stacks import Stacks
from bpfnb.symbols.symbolizer import KALLSYMS, Symbolizer

ROOT = Path(__file__).resolve().parent.parent
SHOW_ALIASES = False
PROGRAM = rb"""
#include <uapi/linux/ptrace.h>
#include <uapi/linux/bpf_perf_event.h>
#include <linux/sched.h>
struct key_t { u32 pid; int user_stack_id; int kernel_stack_id; char comm[TASK_COMM_LEN]; };
BPF_HASH(targets, u32, u8, 64);
BPF_HASH(counts, struct key_t, u64, 65536);
BPF_STACK_TRACE(stack_traces, 65536);
int on_sample(struct bpf_perf_event_data *ctx) {
    struct key_t key = {};
    key.pid = bpf_get_current_pid_tgid() >> 32;
    if (!targets.lookup(&key.pid))
        return 0;
    bpf_get_current_comm(&key.comm, sizeof(key.comm));
    key.user_stack_id = stack_traces.get_stackid(&ctx->regs, BPF_F_USER_STACK);
    key.kernel_stack_id = stack_traces.get_stackid(&ctx->regs, 0);
    counts.increment(key);
    return 0;
}
"""
PY_WORK = """
import json, re, zlib, random, time
end = time.time() + {secs}
d = [{{"k": i, "v": str(i) * 5}} for i in range(2000)]
while time.time() < end:
    s = json.dumps(d); json.loads(s); zlib.compress(s.encode())
    re.findall(r"[0-9]+", s[:20000]); sorted(random.random() for _ in range(5000))
"""


def start_workloads(tmp: Path, seconds: float) -> list[subprocess.Popen[bytes]]:
    """CPU-bound programs with user and kernel stacks: C, Python, coreutils, the VFS."""
    cc = shutil.which("cc")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    cmds: list[list[str]] = []
    if cc:
        exe = tmp / "callchain"
        subprocess.run([cc, "-O0", "-g", "-fno-omit-frame-pointer", "-o", str(exe),
                        str(ROOT / "tests" / "workload" / "callchain.c")], check=True)
        cmds.append([str(exe), str(seconds), "3", "1", "1"])
    cmds += [[sys.executable, "-c", PY_WORK.format(secs=seconds)],
             ["timeout", str(seconds), "sha256sum", "/dev/urandom"],
             ["timeout", str(seconds), "sh", "-c",
              "while :; do find /usr/lib /usr/share -xdev -name '*.py' -newer /etc; done"]]
    return [subprocess.Popen(c, **quiet) for c in cmds]  # type: ignore[call-overload]


def descendants(pids: list[int]) -> list[int]:
    """The pids and all their children (timeout and sh start the real workers)."""
    out, todo = [], list(pids)
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def collect(seconds: float, pids: list[int]) -> tuple[dict[str, np.ndarray],
                                                     dict[int, np.ndarray]]:
    """Sample the given processes (and the children they start) at 999 Hz on every CPU."""
    import ctypes

    from bcc import BPF, PerfSWConfig, PerfType

    b = BPF(text=PROGRAM)
    targets = b[b"targets"]
    for p in descendants(pids):
        targets[ctypes.c_uint32(p)] = ctypes.c_uint8(1)
    b.attach_perf_event(ev_type=PerfType.SOFTWARE, ev_config=PerfSWConfig.CPU_CLOCK,
                        fn_name=b"on_sample", sample_freq=999, cpu=-1)
    end = time.monotonic() + seconds
    while time.monotonic() < end:  # find's children come and go
        time.sleep(0.05)
        for p in descendants(pids):
            targets[ctypes.c_uint32(p)] = ctypes.c_uint8(1)
    b.detach_perf_event(ev_type=PerfType.SOFTWARE, ev_config=PerfSWConfig.CPU_CLOCK)
    rows = [(k.pid, k.comm, k.user_stack_id, k.kernel_stack_id, v.value)
            for k, v in b[b"counts"].items()]
    traces = b[b"stack_traces"]
    ids = {r[2] for r in rows} | {r[3] for r in rows}
    stacks = {i: np.array(list(traces.walk(i)), np.uint64) for i in ids if i >= 0}
    b.cleanup()
    cols = list(zip(*rows))
    arrays = {"pid": np.array(cols[0], np.int64), "comm": np.array(cols[1]),
              "user_stack_id": np.array(cols[2], np.int64),
              "kernel_stack_id": np.array(cols[3], np.int64), "count": np.array(cols[4])}
    return arrays, stacks


Work = tuple[list[tuple[int, np.ndarray]], list[np.ndarray]]


def work_items(arrays: dict[str, np.ndarray], stacks: dict[int, np.ndarray]) -> Work:
    """Distinct (pid, user stack) and distinct kernel stacks, as address arrays."""
    user = sorted({(int(p), int(u)) for p, u in zip(arrays["pid"], arrays["user_stack_id"])
                   if u >= 0 and u in stacks})
    kernel = sorted({int(k) for k in arrays["kernel_stack_id"] if k >= 0 and k in stacks})
    return [(p, stacks[u]) for p, u in user], [stacks[k] for k in kernel]


def run_bcc(work: Work) -> list[list[str]]:
    from bcc import BPF

    out = []
    for pid, addrs in work[0]:
        out.append([BPF.sym(int(a), pid, show_module=True).decode("utf-8", "replace")
                    for a in addrs])
    for addrs in work[1]:
        out.append([BPF.ksym(int(a)).decode("utf-8", "replace") for a in addrs])
    return out


def _split(names: list[str], segs: list[np.ndarray]) -> list[list[str]]:
    ends = np.cumsum([len(x) for x in segs]).tolist()
    return [names[e - len(x) : e] for e, x in zip(ends, segs)]


def run_bpfnb(sym: Symbolizer, work: Work) -> list[list[str]]:
    by_pid: dict[int, list[int]] = {}
    for i, (pid, _) in enumerate(work[0]):
        by_pid.setdefault(pid, []).append(i)
    out: list[list[str]] = [[] for _ in work[0]]
    segs = {pid: [work[0][i][1] for i in idx] for pid, idx in by_pid.items()}
    names = sym.resolve_users({pid: np.concatenate(s) for pid, s in segs.items()})
    for pid, idx in by_pid.items():
        for i, frames in zip(idx, _split(names[pid], segs[pid])):
            out[i] = frames
    if work[1]:
        out += _split(sym.resolve_kernel(np.concatenate(work[1])), work[1])
    return out


def normalise(frame: str) -> str:
    if frame.startswith("[unknown] 0x"):
        rest = frame.split(" ", 2)
        return "[unknown]" + (" " + rest[2] if len(rest) > 2 else "")
    return frame.replace(" [[vdso]]", " [vdso]")


def aliases(sym: Symbolizer, pid: int | None, addr: int) -> set[str]:
    """Every name of a symbol that starts where the symbol covering addr starts."""
    if pid is None:
        table, vaddr = sym.kernel_table, addr
        suffix = ""
    else:
        pm = sym.processes[pid]
        m = int(np.searchsorted(pm.starts, addr, side="right")) - 1
        mod = pm.modules[int(pm.module_index[m])]
        if mod.elf is None:
            return set()
        table, vaddr = mod.elf.table, (addr - int(pm.bias()[m])) & (2**64 - 1)
        suffix = f" [{mod.name}]"
    i = int(table.lookup(np.array([vaddr], np.uint64))[0])
    if i < 0:
        return set()
    lo = int(np.searchsorted(table.starts, table.starts[i], side="left"))
    hi = int(np.searchsorted(table.starts, table.starts[i], side="right"))
    return {normalise(table.name(j) + suffix) for j in range(lo, hi)}


def compare(sym: Symbolizer, work: Work, ours: list[list[str]],
            theirs: list[list[str]]) -> tuple[int, int, int, list[str]]:
    """(identical, alias picks, named by bpfnb where bcc says unknown, differences)."""
    same = alias = better = 0
    bad = []
    owners: list[int | None] = [p for p, _ in work[0]] + [None] * len(work[1])
    addrs = [a for _, a in work[0]] + work[1]
    for pid, stack, o, t in zip(owners, addrs, ours, theirs):
        for a, x, y in zip(stack.tolist(), o, t):
            x, y = normalise(x), y.replace(" (deleted)]", "]")
            if x == y:
                same += 1
            elif y.startswith("[unknown]") and not x.startswith("[unknown]"):
                better += 1
                if SHOW_ALIASES:
                    print(f"   bpfnb only at {a:#x}: bpfnb {x!r}, bcc {y!r}")
            elif y.replace(" [[vdso]]", " [vdso]") in aliases(sym, pid, a) and x in aliases(
                    sym, pid, a):
                alias += 1
            else:
                bad.append(f"{pid} {a:#x}: bpfnb {x!r} vs bcc {y!r}")
            if x != y and SHOW_ALIASES:
                print(f"   alias at {a:#x}: bpfnb {x!r}, bcc {y!r}")
    return same, alias, better, bad


def measure(work: Work, reps: int) -> dict[str, Any]:
    """Cold and warm times of both symbolizers on the same work, and their outputs."""
    from bcc import BPF

    def bcc_cold() -> list[list[str]]:
        return run_bcc(work)

    syms: list[Symbolizer] = []

    def ours_cold() -> list[list[str]]:
        syms.append(Symbolizer())
        return run_bpfnb(syms[-1], work)

    out: dict[str, Any] = {}
    out["bcc_cold"], out["theirs"] = timed(bcc_cold, reps, BPF._sym_caches.clear)
    out["bcc_warm"], _ = timed(lambda: run_bcc(work), reps)
    Symbolizer().resolve_kernel([1])  # make sure this boot's kallsyms cache exists
    out["cold"], out["ours"] = timed(ours_cold, reps, syms.clear)
    out["first"], _ = timed(lambda: run_bpfnb(Symbolizer(cache=False), work), reps)
    out["symbolizer"] = warm = syms[-1]
    out["warm"], _ = timed(lambda: run_bpfnb(warm, work), reps)
    return out


def timed(fn: Callable[[], Any], reps: int,
          setup: Callable[[], Any] | None = None) -> tuple[float, Any]:
    """Median wall time of fn over reps runs (setup runs before each, off the clock)."""
    times, result = [], None
    for _ in range(reps):
        if setup is not None:
            setup()
            gc.collect()
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="sampling time")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--show-aliases", action="store_true", help="list frames where the two differ")
    args = ap.parse_args()
    global SHOW_ALIASES
    SHOW_ALIASES = args.show_aliases
    if os.geteuid() != 0:
        print("needs root (BPF)")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        procs = start_workloads(Path(tmp), args.seconds + 60)
        stopped: list[int] = []
        try:
            time.sleep(0.5)
            arrays, stacks = collect(args.seconds, [p.pid for p in procs])
            stopped = descendants([p.pid for p in procs])
            for pid in stopped:  # keep their maps, free the CPUs for the timing
                os.kill(pid, signal.SIGSTOP)
            work = work_items(arrays, stacks)
            n_addr = sum(len(a) for _, a in work[0]) + sum(len(a) for a in work[1])
            uniq = len({(p, int(x)) for p, a in work[0] for x in a}) + len(
                {int(x) for a in work[1] for x in a})
            print(f"profile: {int(arrays['count'].sum())} samples, {len(arrays['pid'])} counts "
                  f"rows, {len(set(arrays['pid'].tolist()))} processes, {len(work[0])} user + "
                  f"{len(work[1])} kernel distinct stacks, {n_addr} addresses "
                  f"({uniq} distinct)")

            rows = {}
            for label, part in (("all", work), ("user stacks only", (work[0], [])),
                                ("kernel stacks only", ([], work[1]))):
                rows[label] = measure(part, args.reps)
            r = rows["all"]
            same, alias, better, bad = compare(r["symbolizer"], work, r["ours"], r["theirs"])
            print(f"frames identical: {same}, alias picks differ: {alias}, "
                  f"named by bpfnb only: {better}, different: {len(bad)}")
            for line in bad[:20]:
                print("  ", line)
            print(f"{'':20} {'bcc cold':>9} {'bpfnb cold':>10} {'ratio':>6}   "
                  f"{'1st of boot':>11} {'ratio':>6}   "
                  f"{'bcc warm':>9} {'bpfnb warm':>10} {'ratio':>6}")
            for label, r in rows.items():
                print(f"{label:20} {r['bcc_cold'] * 1e3:7.1f}ms {r['cold'] * 1e3:8.1f}ms "
                      f"{r['bcc_cold'] / r['cold']:5.1f}x   {r['first'] * 1e3:9.1f}ms "
                      f"{r['bcc_cold'] / r['first']:5.1f}x   {r['bcc_warm'] * 1e3:7.1f}ms "
                      f"{r['warm'] * 1e3:8.1f}ms {r['bcc_warm'] / r['warm']:5.1f}x")
            t_ks, _ = timed(lambda: Path(KALLSYMS).read_bytes(), args.reps)
            print(f"(reading {KALLSYMS} alone takes {t_ks * 1e3:.1f} ms; both pay it cold)")
            warm = rows["all"]["symbolizer"]

            t_arr, st = timed(lambda: Stacks.from_arrays(
                arrays["pid"], arrays["comm"], arrays["user_stack_id"],
                arrays["kernel_stack_id"], arrays["count"], stacks, warm), args.reps)
            print(f"Stacks.from_arrays on this profile ({len(arrays['pid'])} rows, warm): "
                  f"{t_arr * 1e3:.1f} ms; folded(): "
                  f"{timed(st.folded, args.reps)[0] * 1e3:.1f} ms")
            n = 100_000
            pick = np.arange(n) % len(arrays["pid"])
            big = {k: v[pick] for k, v in arrays.items()}
            big["comm"] = np.array([f"w{i}" for i in range(n)])  # every row a distinct stack
            big["count"] = np.ones(n, np.int64)
            t_big, sbig = timed(lambda: Stacks.from_arrays(
                big["pid"], big["comm"], big["user_stack_id"], big["kernel_stack_id"],
                big["count"], stacks, warm), 3)
            t_fold, text = timed(sbig.folded, 3)
            print(f"100k samples, 100k distinct rows: from_arrays {t_big * 1e3:.0f} ms + "
                  f"folded {t_fold * 1e3:.0f} ms = {(t_big + t_fold) * 1e3:.0f} ms "
                  f"({len(text) / 1e6:.1f} MB of text)")
            return 1 if bad else 0
        finally:
            for pid in reversed(stopped):  # children first; all were started here
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            for p in procs:
                p.kill()
                p.wait()


if __name__ == "__main__":
    sys.exit(main())
