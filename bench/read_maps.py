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
from bpfnb._sys import bpfsys

SOURCE = """
BPF_HASH(hash, u32, u64, {n});
BPF_PERCPU_HASH(percpu, u32, u64, {n});
BPF_ARRAY(array, u64, {n});
BPF_F_TABLE("array", int, u64, mmapped, {n}, BPF_F_MMAPABLE);
struct rec_t {{ u32 pid, tid, cpu, flags, bytes, count, lat; char comm[16]; }};
BPF_HASH(structs, u32, struct rec_t, {n});
"""
COMMS = [f"worker-{i}" for i in range(40)] + ["bash", "python3", "systemd", "kworker/0:1"]


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


def fill_structs(view: bpfnb.MapView, n: int) -> None:
    """1M 44-byte struct values, comm from a realistic handful of process names."""
    keys = np.arange(n, dtype=np.uint32)
    values = np.zeros(n, view.value_dtype)
    for name in ("pid", "tid", "cpu", "flags", "bytes", "count", "lat"):
        values[name] = np.arange(n, dtype=np.uint32)
    comms = np.array([c.encode() for c in COMMS], dtype="S16")
    values["comm"] = comms[np.arange(n) % len(comms)]
    bpfsys.batch(bpfsys.Cmd.MAP_UPDATE_BATCH, view.fd, None, None, keys, values, n)


def syscall_floor(view: bpfnb.MapView, n: int) -> Callable[[], object]:
    """Batch syscalls into preallocated buffers, nothing decoded: the least a read can cost."""
    keys = np.empty(n, view.key_dtype)
    values = np.empty(n, view.value_dtype)
    token = np.zeros(8, np.uint8)

    def read() -> object:
        got, tok_in = 0, None
        while True:
            count, done = bpfsys.batch(bpfsys.Cmd.MAP_LOOKUP_BATCH, view.fd, tok_in, token,
                                       keys[got:], values[got:], n - got)
            got += count
            tok_in = token
            if done or got == n:
                break
        return keys[:got], values[:got]

    return read


def one_thread(view: bpfnb.MapView, fn: Callable[[], float]) -> float:
    """fn() with parallel reads off (bpfnb.data.parallelread), as the syscall floor reads."""
    from bpfnb.data import parallelread

    saved = parallelread.MIN_ENTRIES
    parallelread.MIN_ENTRIES = 1 << 62
    view.release()  # a fresh reader
    try:
        return fn()
    finally:
        parallelread.MIN_ENTRIES = saved
        view.release()


def peak_extra(fn: Callable[[], object]) -> int:
    """Peak bytes allocated while fn runs (numpy and Python objects; tracemalloc)."""
    import gc
    import tracemalloc

    gc.collect()
    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    return peak


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
        sv = prog["structs"]
        fill_structs(sv, n)
        df = sv.df()
        assert len(df) == n and set(df["comm"]) == set(COMMS)
        raw = n * (sv.info.key_size + sv.info.value_size)
        struct_floor = best(syscall_floor(sv, n), args.repeat)
        struct_df = best(sv.df, args.repeat)
        struct_peak = peak_extra(sv.df)
        single = one_thread(sv, lambda: best(sv.df, args.repeat))
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
    print(f"\nHASH u32 -> 44-byte struct (7 u32 + char[16]), {n:,} entries: syscall floor "
          f"{struct_floor * 1e3:.0f} ms, MapView.df() {struct_df * 1e3:.0f} ms "
          f"({struct_df / struct_floor:.2f}x the floor); peak extra memory "
          f"{struct_peak / 1e6:.0f} MB = {struct_peak / raw:.2f}x the raw {raw / 1e6:.0f} MB; "
          f"one thread: MapView.df() {single * 1e3:.0f} ms ({single / struct_floor:.2f}x)")


if __name__ == "__main__":
    main()
