"""Live view speed: achieved refresh rate and kernel-process CPU for maps of 1k-1M entries.

Each case fills a u32 -> u64 hash of N entries (max_entries N) with one BPF_MAP_UPDATE_BATCH
call, attaches a tracepoint that keeps bumping random keys (so every refresh sees new data
and redraws), then runs a LiveView in a real IPython kernel (started with jupyter_client, as
JupyterLab would) for a few seconds while the kernel's main thread sleeps. CPU is the
kernel process's user + system time over wall time (1.0 = one core).

    python bench/live.py [--seconds 5] [--sizes 1000,100000,1000000] [--out FILE]
    python bench/live.py --in-process      # no kernel: the view in this process
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
SIZES = (1_000, 100_000, 1_000_000)
CASES = [  # (size, every, rate)
    (1_000, 0.05, False), (1_000, 0.05, True),
    (100_000, 0.05, False), (100_000, 0.1, False), (100_000, 0.2, True),
    (1_000_000, 0.05, False), (1_000_000, 1.0, False), (1_000_000, 1.0, True),
]
WARMUP = 1.0   # seconds before measuring: the first refreshes, the first plot
TARGETS = {1_000: "20 Hz", 100_000: ">= 5 Hz, < 1 core", 1_000_000: "backs off, no queueing"}

PROGRAM = r"""
BPF_HASH(big, u32, u64, SIZE);

TRACEPOINT_PROBE(raw_syscalls, sys_enter) {
    u32 key = bpf_get_prandom_u32() % SIZE;
    u64 *value = big.lookup(&key);
    if (value)
        __sync_fetch_and_add(value, 1);
    return 0;
}
"""


def measure(size: int, every: float, rate: bool, seconds: float) -> dict[str, Any]:
    """Run one live view for `seconds`; runs in the kernel (or this process)."""
    import numpy as np

    import bpfnb
    from bpfnb._sys import bpfsys
    from bpfnb.live.widgets import live_view

    prog = bpfnb.load(PROGRAM.replace("SIZE", str(size)), name=f"bench{size}")
    try:
        m = prog["big"]
        keys = np.arange(size, dtype=np.uint32)
        values = np.arange(size, dtype=np.uint64)
        done = 0
        while done < size:
            n, _ = bpfsys.batch(bpfsys.Cmd.MAP_UPDATE_BATCH, m.fd, None, None, keys[done:],
                                values[done:], size - done)
            done += n
        read_s = _median([_timed(m.read) for _ in range(3)])
        df_s = _median([_timed(m.df) for _ in range(3)])
        view = live_view(m, every=every, rate=rate, top=20)
        time.sleep(max(WARMUP, 2 * every))
        t0, c0 = time.monotonic(), os.times()
        r0, p0 = view.status.refreshes, view.plotter.status.refreshes
        time.sleep(seconds)
        t1, c1 = time.monotonic(), os.times()
        status = view.status
        view.stop()
        wall = t1 - t0
        cpu = (c1.user - c0.user) + (c1.system - c0.system)
        return {"size": size, "every": every, "rate": rate, "entries": len(m),
                "refresh_hz": (status.refreshes - r0) / wall, "cpu_cores": cpu / wall,
                "refresh_ms": 1000 * (status.last_duration or 0), "read_ms": 1000 * read_s,
                "df_ms": 1000 * df_s, "backing_off": status.backing_off,
                "errors": status.errors, "history_snapshots": len(view._history),
                "plots_hz": (view.plotter.status.refreshes - p0) / wall}
    finally:
        prog.close()


def _timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def in_kernel(cases: list[tuple[int, float, bool]], seconds: float) -> list[dict[str, Any]]:
    """Run each case in a fresh ipykernel; collect the JSON it prints."""
    from jupyter_client.manager import start_new_kernel

    results = []
    for size, every, rate in cases:
        km, kc = start_new_kernel(kernel_name="python3")
        try:
            code = (f"import runpy, json\nns = runpy.run_path({str(HERE)!r})\n"
                    f"print('RESULT', json.dumps(ns['measure']({size}, {every}, {rate}, "
                    f"{seconds})))")
            out: list[str] = []
            kc.execute_interactive(code, timeout=seconds + 120,
                                   output_hook=lambda msg, out=out: _collect(msg, out))
            text = "".join(out)
            line = next((x for x in text.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                raise RuntimeError(f"case {size}/{every}/{rate} failed:\n{text}")
            results.append(json.loads(line[len("RESULT "):]))
            print(_row(results[-1]), flush=True)
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    return results


def _collect(msg: dict[str, Any], out: list[str]) -> None:
    kind, content = msg["msg_type"], msg["content"]
    if kind == "stream":
        out.append(content["text"])
    elif kind == "error":
        out.append("\n".join(content["traceback"]))


HEADER = ("| entries | every (s) | rate | achieved Hz | plots/s | kernel CPU (cores) | "
          "refresh ms | read ms | df() ms | backing off |\n"
          "|---:|---:|:-:|---:|---:|---:|---:|---:|---:|:-:|")


def _row(r: dict[str, Any]) -> str:
    return (f"| {r['size']:,} | {r['every']:g} | {'yes' if r['rate'] else 'no'} | "
            f"{r['refresh_hz']:.1f} | {r['plots_hz']:.1f} | {r['cpu_cores']:.2f} | "
            f"{r['refresh_ms']:.1f} | "
            f"{r['read_ms']:.1f} | {r['df_ms']:.1f} | {'yes' if r['backing_off'] else 'no'} |")


def report(results: list[dict[str, Any]], seconds: float, where: str,
           load: tuple[float, float, float]) -> str:
    rows = "\n".join(_row(r) for r in results)
    targets = "\n".join(f"- {n:,} entries: {t}" for n, t in TARGETS.items())
    machine = (f"{platform.node() or 'this machine'} ({os.cpu_count()} CPUs, kernel "
               f"{platform.release()}, Python {platform.python_version()}, load average "
               f"{load[0]:.1f} when it started)")
    return f"""# Live view benchmark

`python bench/live.py` on {machine}, {where}, {seconds:g} s per case.

A u32 -> u64 hash filled to N entries (max_entries N) while a tracepoint bumps random keys;
the view shows the top 20 keys with a bar chart (rate=yes: per-second columns and a line
plot of the top keys' rates). "achieved Hz" counts refreshes (read, DataFrame, history,
table); "plots/s" counts redraws of the plot, which runs on its own thread at most every
max(every, 0.5 s) and at most a quarter of the time; "kernel CPU" is the kernel process's
user + system time over wall time; "refresh ms" is the last refresh's duration; "read ms"
and "df() ms" time `MapView.read()` and `MapView.df()` alone.

Targets:
{targets}

{HEADER}
{rows}

A refresh never queues: when it takes longer than the interval allows, the poller waits at
least as long as the refresh took (at most half the time is spent refreshing, so a view uses
at most about half a core, plus plotting), and the status line says it slowed down.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--in-process", action="store_true", help="no kernel; run views here")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bpfnb-bench-live.md"),
                    help="where to write the markdown table (merged into bench/README.md)")
    args = ap.parse_args()
    sizes = {int(s) for s in args.sizes.split(",")}
    cases = [c for c in CASES if c[0] in sizes]
    load = os.getloadavg()
    print(HEADER, flush=True)
    if args.in_process:
        results = []
        for size, every, rate in cases:
            results.append(measure(size, every, rate, args.seconds))
            print(_row(results[-1]), flush=True)
        where = "views in the benchmark process (no kernel)"
    else:
        results = in_kernel(cases, args.seconds)
        where = "each view in a fresh ipykernel"
    args.out.write_text(report(results, args.seconds, where, load))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
