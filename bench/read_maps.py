"""Reading 1M-entry maps into DataFrames: bcc items(), bcc items_lookup_batch(), a raw batch
syscall loop into numpy (the floor), and bpfnb's MapView.df(), measured side by side.

Run as root: `make bench` or `.venv/bin/python bench/read_maps.py [--entries N] [--skip-items]`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

import bpfnb
from bpfnb import bpfsys

SOURCE = """
BPF_HASH(hash, u32, u64, {n});
BPF_PERCPU_HASH(percpu, u32, u64, {n});
BPF_ARRAY(array, u64, {n});
BPF_F_TABLE("array", int, u64, mmapped, {n}, BPF_F_MMAPABLE);
"""


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def fill(view: bpfnb.MapView, n: int, ncpu: int) -> None:
    keys = np.arange(n, dtype=np.uint32)
    values = np.tile(np.arange(n, dtype=np.uint64)[:, None], (1, ncpu))
    bpfsys.batch(bpfsys.Cmd.MAP_UPDATE_BATCH, view.fd, None, None, keys, values, n)


def raw_floor(fd: int, n: int, ncpu: int) -> Callable[[], pd.DataFrame]:
    """The least work possible: one preallocated buffer pair, batch syscalls, a DataFrame."""
    keys = np.empty(n, np.uint32)
    values = np.empty((n, ncpu), np.uint64)
    token = np.zeros(8, np.uint8)

    def read() -> pd.DataFrame:
        got, tok_in = 0, None
        while True:
            count, done = bpfsys.batch(bpfsys.Cmd.MAP_LOOKUP_BATCH, fd, tok_in, token,
                                       keys[got:], values[got:], n - got)
            got += count
            tok_in = token
            if done or got == n:
                break
        v = values[:got, 0] if ncpu == 1 else values[:got].sum(axis=1)
        return pd.DataFrame({"key": keys[:got], "value": v})

    return read


def bcc_items(table) -> Callable[[], pd.DataFrame]:
    def read() -> pd.DataFrame:
        items = table.items()
        return pd.DataFrame({"key": [getattr(k, "value", k) for k, _ in items],
                             "value": [_leaf(v) for _, v in items]})
    return read


def bcc_batch(table) -> Callable[[], pd.DataFrame]:
    def read() -> pd.DataFrame:
        items = list(table.items_lookup_batch())
        return pd.DataFrame({"key": [getattr(k, "value", k) for k, _ in items],
                             "value": [_leaf(v) for _, v in items]})
    return read


def _leaf(v) -> int:
    if hasattr(v, "value"):
        return v.value
    return v if isinstance(v, int) else sum(v)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-items", action="store_true", help="skip the slow bcc items()")
    args = parser.parse_args()
    n = args.entries
    ncpus = len(bpfsys.possible_cpus())
    rows = []
    with bpfnb.load(SOURCE.format(n=n), attach=False) as prog:
        for name in ("hash", "percpu", "array"):
            view = prog[name]
            ncpu = ncpus if view.per_cpu else 1
            fill(view, n, ncpu)
            table = prog.module.table(name)
            assert len(view.df()) == n
            floor = best(raw_floor(view.fd, n, ncpu), args.repeat)
            ours = best(view.df, args.repeat)
            batch = best(bcc_batch(table), 1)
            items = float("nan") if args.skip_items else best(bcc_items(table), 1)
            rows.append({"map": f"{n:,} {view.info.type}", "a bcc items()": items,
                         "b bcc items_lookup_batch()": batch, "c raw batch floor": floor,
                         "d MapView.df()": ours, "d/c": ours / floor, "a/d": items / ours,
                         "b/d": batch / ours})
        mm = prog["mmapped"]
        fill(mm, n, 1)
        floor = best(raw_floor(mm.fd, n, 1), args.repeat)
        zero_copy = best(mm.values, 20)
        assert int(mm.values()[n - 1]) == n - 1
        df_time = best(mm.df, args.repeat)
    table = pd.DataFrame(rows).set_index("map")
    pd.set_option("display.width", 160)
    print(f"seconds (best of {args.repeat}; bcc APIs once), {ncpus} CPUs\n")
    print(table.round(4).to_string())
    print(f"\nmmapable array, {n:,} u64: raw batch floor {floor * 1e3:.1f} ms, "
          f"zero-copy MapView.values() {zero_copy * 1e6:.1f} us ({floor / zero_copy:,.0f}x), "
          f"MapView.df() via mmap {df_time * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
