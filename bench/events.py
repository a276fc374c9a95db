"""Benchmark: ring-buffer events of a 32-byte struct into a DataFrame, bcc vs bpfnb.

The same program (bpfnb.testing.events) and workload feed each reader an identical stream:
one event per getpid() of the workload (`struct event { u32 pid; u32 seq; u64 ts;
char comm[16]; }`, 32 bytes, 40 with the ring header).

  bcc:   BPF["rb"].open_ring_buffer(callback); the callback casts each record with
         table.event(data) and keeps (pid, seq, ts, comm); ring_buffer_consume() until all
         are in; then DataFrame.from_records. (What bcc's tools do, plus the frame.)
  bpfnb: view.event_reader().read(...): records cut out of the mmapped ring as one byte
         array and viewed through the struct's numpy dtype.

Two runs per reader:
  drain: N events produced first into a ring big enough for all of them, then read and
         decoded; events/s = N / (read + decode + DataFrame time). The decode-speed number.
  live:  the reader runs while the workload produces M events into a 1 MiB ring; events
         the program could not output (ring full) are counted in a map: "lost".

Needs root and bcc. Run: .venv/bin/python bench/events.py [--events 1000000]
Writes bench/README-events.md unless --no-write.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import bpfnb
from bpfnb.testing import events

ROOT = Path(__file__).resolve().parent.parent
WORKLOAD_SRC = ROOT / "tests" / "workload" / "workload.c"
COLUMNS = ["pid", "seq", "ts", "comm"]

def workload_binary(tmp: Path) -> Path:
    out = tmp / "workload"
    subprocess.run(["gcc", "-O2", "-o", str(out), str(WORKLOAD_SRC)], check=True)
    return out


def load(pages: int) -> bpfnb.Program:
    return events.load(ring=True, perf=False, rb_pages=pages, name="bench_events",
                       backend="bcc")  # the bcc reader needs bcc's BPF object


def produce(binary: Path, n: int) -> None:
    subprocess.run([str(binary), "getpid", str(n)], check=True)


def start_producer(binary: Path, n: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(binary), "getpid", str(n)])


def dropped(prog: bpfnb.Program) -> int:
    return int(prog["dropped"][0])


# -- the two readers ----------------------------------------------------------------------

class BccReader:
    """bcc's callback reader: one Python call and one event() cast per record."""

    def __init__(self, prog: bpfnb.Program) -> None:
        self.bpf = prog.module.bpf
        self.table = self.bpf["rb"]
        self.rows: list[tuple[Any, ...]] = []
        table, rows = self.table, self.rows

        def callback(ctx: Any, data: Any, size: int) -> int:
            e = table.event(data)
            rows.append((e.pid, e.seq, e.ts, e.comm))
            return 0

        self.table.open_ring_buffer(callback)

    def drain(self, n: int) -> pd.DataFrame:
        while len(self.rows) < n:
            self.bpf.ring_buffer_consume()
        return self.frame()

    def poll(self, timeout_ms: int) -> None:
        self.bpf.ring_buffer_poll(timeout_ms)

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame.from_records(self.rows, columns=COLUMNS)
        df["comm"] = df["comm"].str.decode("utf-8")
        return df


class BpfnbReader:
    def __init__(self, prog: bpfnb.Program) -> None:
        self.reader = prog["rb"].event_reader()
        self.frames: list[pd.DataFrame] = []

    def drain(self, n: int) -> pd.DataFrame:
        return self.reader.read(duration=None, max_events=n)

    def poll(self, timeout_ms: int) -> None:
        df = self.reader.read(duration=timeout_ms / 1000)
        if len(df):
            self.frames.append(df)

    def frame(self) -> pd.DataFrame:
        return pd.concat(self.frames, ignore_index=True) if self.frames else pd.DataFrame()


READERS = {"bcc": BccReader, "bpfnb": BpfnbReader}


# -- runs -----------------------------------------------------------------------------------

def drain_run(kind: str, binary: Path, n: int) -> dict[str, Any]:
    pages = 1 << max(0, int(np.ceil(np.log2(n * 40 / 4096 * 1.1))))  # room for every event
    with load(pages) as prog:
        reader = READERS[kind](prog)
        produce(binary, n)
        gc.collect()
        start = time.perf_counter()
        df = reader.drain(n)
        seconds = time.perf_counter() - start
        lost = dropped(prog)
    check(df, n)
    return {"reader": kind, "run": "drain", "events": len(df), "seconds": seconds,
            "events_per_s": len(df) / seconds, "lost": lost, "ring": f"{pages * 4} KiB"}


def live_run(kind: str, binary: Path, n: int, pages: int = 256) -> dict[str, Any]:
    with load(pages) as prog:
        reader = READERS[kind](prog)
        stop = threading.Event()
        start = time.perf_counter()
        proc = start_producer(binary, n)

        def wait() -> None:
            proc.wait()
            stop.set()

        threading.Thread(target=wait, daemon=True).start()
        while not stop.is_set():
            reader.poll(50)
        reader.poll(50)  # what is left
        reader.poll(50)
        seconds = time.perf_counter() - start
        df = reader.frame()
        lost = dropped(prog)
    assert len(df) + lost == n, (kind, len(df), lost, n)
    return {"reader": kind, "run": "live", "events": len(df), "seconds": seconds,
            "events_per_s": len(df) / seconds, "lost": lost, "ring": f"{pages * 4} KiB"}


def check(df: pd.DataFrame, n: int) -> None:
    """Every event once, decoded right."""
    assert len(df) == n, (len(df), n)
    assert np.array_equal(np.sort(df["seq"].to_numpy().astype(np.int64)), np.arange(n))
    assert (df["comm"] == "bpfnb-wl").all()


def markdown(rows: list[dict[str, Any]], n: int, m: int) -> str:
    table = pd.DataFrame(rows)
    lines = ["| run | reader | events | seconds | events/s | lost | ring |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['reader']} | {r['events']:,} | {r['seconds']:.3f} | "
                     f"{r['events_per_s']:,.0f} | {r['lost']:,} | {r['ring']} |")
    drain = table[table.run == "drain"].set_index("reader")["events_per_s"]
    speedup = drain["bpfnb"] / drain["bcc"]
    cpu = next((ln.split(":", 1)[1].strip() for ln in
                Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")),
               platform.machine())
    return "\n".join([
        "# Ring-buffer events into a DataFrame: bcc callback vs bpfnb batches",
        "",
        f"Machine: {cpu}, {os.cpu_count()} CPUs, kernel {platform.release()}, "
        f"Python {platform.python_version()}, numpy {np.__version__}, "
        f"pandas {pd.__version__}.",
        "Event: `struct event { u32 pid; u32 seq; u64 ts; char comm[16]; }` (32 bytes), one "
        "per getpid() of tests/workload (`workload getpid N`).",
        "",
        f"- drain: {n:,} events produced first, then read + decoded into a DataFrame "
        "(timed). Every event is checked (seq 0..N-1 once each, comm decoded).",
        f"- live: the reader runs while the workload produces {m:,} events into a 1 MiB "
        "ring; `lost` = ringbuf_output failures counted by the program (ring full). "
        "events + lost = produced, asserted.",
        "",
        *lines,
        "",
        f"Decode speed (drain): bpfnb is **{speedup:.1f}x** bcc's events/s "
        f"(target >= 5x).",
        "",
        "Reproduce: `.venv/bin/python bench/events.py` (root).",
        "",
    ])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="drain-run events")
    ap.add_argument("--live-events", type=int, default=1_000_000, help="live-run events")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        binary = workload_binary(Path(tmp))
        rows = []
        for kind in READERS:
            rows.append(drain_run(kind, binary, args.events))
            print(rows[-1], flush=True)
        for kind in READERS:
            rows.append(live_run(kind, binary, args.live_events))
            print(rows[-1], flush=True)
    text = markdown(rows, args.events, args.live_events)
    print(text)
    if not args.no_write:
        (Path(__file__).parent / "README-events.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
