"""The fleet's costs on one machine: a 1M-entry map read locally vs gathered from 1, 2, 4 and
8 local ipyparallel engines (each holding its own 1M-entry map), full and reduced (top-N
ranked on each engine), and what the fleet adds to every refresh (an empty round trip, a
10-key map). Engines share this machine's cores, so gathers from k engines also pay for k
reads on 2 cores: per-host costs on real hosts are the 1-engine numbers.

Run as root: `.venv/bin/python bench/fleet.py [--entries N] [--engines 1,2,4,8]`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

import bpfnb
from bpfnb.testing.hosts import local_cluster

SOURCE = """
BPF_HASH(big, u32, u64, {n});
BPF_HASH(small, u32, u64, 64);
"""


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(best, median) seconds of `repeat` runs."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def fill(prog: Any, n: int, seed: int) -> None:
    """n keys 0..n-1 with distinct values in `big`, 10 in `small`."""
    rng = np.random.default_rng(seed)
    keys = np.arange(n, dtype=np.uint32)
    prog["big"].update_df(pd.DataFrame({"key": keys, "value": rng.permutation(n).astype(
        np.uint64)}))
    prog["small"].update_df(pd.DataFrame({"key": np.arange(10, dtype=np.uint32),
                                          "value": np.arange(10, dtype=np.uint64)}))


def local_top(view: Any, top: int) -> pd.DataFrame:
    """The top rows ranked as an engine ranks them (argpartition on the read buffers)."""
    snap = view.read()
    idx = np.argpartition(snap.values, len(snap.values) - top)[-top:]
    return pd.DataFrame({"key": snap.keys[idx], "value": snap.values[idx]})


def measure(fleet: Any, fp: Any, k: int, n: int, top: int, rep: int
            ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows for k engines: full gather, top-N, summed; and per-refresh latency."""
    wire = 12 * n * k / 1e6   # u32 key + u64 value per entry, per host
    rows = []
    assert len(fp["big"].df()) == n * k, "the engines' maps are not full"
    for read, call, nrows, mb, times in (
            ("full", lambda: fp["big"].df(), n * k, wire, rep),
            (f"top {top}", lambda: fp["big"].df(top=top), top * k, 12 * top * k / 1e6, rep),
            ("summed", lambda: fp["big"].df(by_host=False), n, wire, 1)):
        best, med = timed(call, times)
        rows.append({"where": "fleet", "engines": k, "read": read, "rows": nrows,
                     "best_s": best, "median_s": med, "wire_MB": mb})
    rt = timed(lambda: fleet.latency(), 20)
    small = timed(lambda: fp["small"].df(top=20), 20)
    return rows, {"engines": k, "round_trip_ms": rt[1] * 1e3,
                  "small_map_refresh_ms": small[1] * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--engines", default="1,2,4,8")
    ap.add_argument("--top", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    n, top, rep = args.entries, args.top, args.repeat
    counts = [int(x) for x in args.engines.split(",")]
    source = SOURCE.format(n=n)
    rows: list[dict[str, Any]] = []

    with bpfnb.load(source, name="benchlocal") as prog:
        fill(prog, n, 0)
        best, med = timed(lambda: prog["big"].df(), rep)
        rows.append({"where": "local", "engines": 0, "read": "full", "rows": n,
                     "best_s": best, "median_s": med, "wire_MB": 0.0})
        best, med = timed(lambda: local_top(prog["big"], top), rep)
        rows.append({"where": "local", "engines": 0, "read": f"top {top}", "rows": top,
                     "best_s": best, "median_s": med, "wire_MB": 0.0})

    def fill_here(token: str, entries: int, seed: int) -> int:
        import numpy as np
        import pandas as pd

        import bpfnb.fleet.engine as eng

        prog = eng.HELD[token]
        rng = np.random.default_rng(seed)
        prog["big"].update_df(pd.DataFrame({
            "key": np.arange(entries, dtype=np.uint32),
            "value": rng.permutation(entries).astype(np.uint64)}))
        prog["small"].update_df(pd.DataFrame({"key": np.arange(10, dtype=np.uint32),
                                              "value": np.arange(10, dtype=np.uint64)}))
        return entries

    latency: list[dict[str, Any]] = []
    with local_cluster(max(counts), prefix="bench-") as rc:
        for k in counts:
            fleet = bpfnb.fleet(rc[list(rc.ids)[:k]], timeout=300)
            fp = fleet.load(source, name="benchfleet")
            try:
                filled = fleet.run(fill_here, fp.token, n, 1, timeout=600)
                failed = {h: v for h, v in filled.items() if isinstance(v, Exception)}
                if failed:
                    raise SystemExit(f"filling the engines' maps failed: {failed}")
                got, lat = measure(fleet, fp, k, n, top, rep)
                rows += got
                latency.append(lat)
            finally:
                fp.close()
    with bpfnb.load(source.replace(f", {n});", ", 16);"), name="benchsmall") as local:
        fill(local, 16, 0)
        t = timed(lambda: local["small"].df(), 20)
        latency.insert(0, {"engines": 0, "round_trip_ms": 0.0,
                           "small_map_refresh_ms": t[1] * 1e3})

    pd.set_option("display.width", 120)
    print(f"1 map of {n:,} u32->u64 entries per host; best/median of {rep}")
    print(pd.DataFrame(rows).round(4).to_string(index=False))
    print("\nper refresh (median of 20): empty round trip, a 10-key map read through the fleet")
    print(pd.DataFrame(latency).round(2).to_string(index=False))


if __name__ == "__main__":
    main()
