"""Maps as DataFrames against the real kernel: exact counts from a known workload."""

from __future__ import annotations

import contextlib
import io
import re

import numpy as np
import pytest

import bpfnb
from conftest import on_both_backends, run_workload

pytestmark = pytest.mark.usefixtures("kernel")

COUNTS = r"""
struct key_t { u32 pid; char comm[16]; };
BPF_HASH(by_pid, u32, u64);
BPF_HASH(by_comm, struct key_t, u64);
BPF_PERCPU_HASH(percpu, u32, u64);
BPF_PERCPU_ARRAY(percpu_arr, u64, 4);
BPF_TABLE("lru_hash", u32, u64, lru, 128);
BPF_ARRAY(arr, u64, 8);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    by_pid.increment(pid);
    struct key_t k = {};
    k.pid = pid;
    bpf_get_current_comm(&k.comm, sizeof(k.comm));
    by_comm.increment(k);
    u64 zero = 0, *v = percpu.lookup_or_try_init(&pid, &zero);
    if (v) *v += 1;
    int slot = 2;
    percpu_arr.increment(slot);
    v = lru.lookup_or_try_init(&pid, &zero);
    if (v) *v += 1;
    int i = pid % 8;
    arr.increment(i);
    return 0;
}
"""


@pytest.fixture(scope="module")
def counts():
    with bpfnb.load(COUNTS, name="counts") as prog:
        yield prog


def test_hash_counts_per_pid_exact(counts, workload):
    pids = {run_workload(workload, "getpid", n): n for n in (100, 250, 1)}
    df = counts["by_pid"].df()
    assert list(df.columns) == ["key", "value"]
    assert df["key"].dtype == np.uint32 and df["value"].dtype == np.uint64
    got = dict(zip(df["key"], df["value"]))
    assert {pid: got.get(pid) for pid in pids} == pids
    assert df["key"].is_unique


def test_struct_key_has_comm_and_widths(counts, workload):
    pid = run_workload(workload, "getpid", 42)
    df = counts["by_comm"].df()
    assert list(df.columns) == ["pid", "comm", "value"]
    assert str(df["pid"].dtype) == "uint32" and str(df["value"].dtype) == "uint64"
    row = df[df["pid"] == pid]
    assert row["comm"].tolist() == ["bpfnb-wl"]
    assert row["value"].tolist() == [42]
    assert df.attrs["key_columns"] == ["pid", "comm"]
    assert df.attrs["map"] == "by_comm" and df.attrs["type"] == "HASH"


def test_percpu_sum_and_long_format(counts, workload):
    a = run_workload(workload, "getpid", 30, cpu=0)
    b = run_workload(workload, "getpid", 70, cpu=1)
    view = counts["percpu"]
    assert view.per_cpu
    summed = view.df()
    got = dict(zip(summed["key"], summed["value"]))
    assert got[a] == 30 and got[b] == 70
    assert summed["value"].dtype == np.uint64
    long = view.df(per_cpu=True)
    assert list(long.columns) == ["key", "cpu", "value"]
    rows = {(k, c): v for k, c, v in long[long["key"].isin([a, b])].itertuples(index=False)}
    assert rows == {(a, 0): 30, (a, 1): 0, (b, 0): 0, (b, 1): 70}


def test_percpu_array(counts, workload):
    before = counts["percpu_arr"].df()
    run_workload(workload, "getpid", 55, cpu=1)
    after = counts["percpu_arr"].df(per_cpu=True)
    diff = after.set_index(["key", "cpu"])["value"] - before.set_index("key")["value"].reindex(
        after["key"]).to_numpy()
    per_cpu = counts["percpu_arr"].df(per_cpu=True)
    assert set(per_cpu["cpu"]) == {0, 1} and len(per_cpu) == 8
    assert int(diff.groupby(level="key").sum().loc[2]) >= 55
    assert int(after[(after.key == 2) & (after.cpu == 1)]["value"].iloc[0]) >= 55


def test_array_and_len(counts, workload):
    pid = run_workload(workload, "getpid", 13)
    view = counts["arr"]
    df = view.df()
    assert len(df) == 8 and len(view) == 8
    assert df["key"].tolist() == list(range(8))
    assert int(df.loc[df.key == pid % 8, "value"].iloc[0]) >= 13
    assert view.info.type == "ARRAY" and view.info.max_entries == 8


def test_lru_map(counts, workload):
    pid = run_workload(workload, "getpid", 9)
    df = counts["lru"].df()
    assert dict(zip(df["key"], df["value"]))[pid] == 9
    assert counts["lru"].info.type == "LRU_HASH"
    assert len(counts["lru"]) == len(df) <= 128
    assert df.attrs["fill"] == pytest.approx(len(df) / 128)


def test_info_and_fd(counts):
    info = counts["by_pid"].info
    assert (info.type, info.key_size, info.value_size, info.max_entries) == ("HASH", 4, 8, 10240)
    assert info.id > 0 and counts["by_pid"].fd > 0


def test_unknown_map_lists_names(counts):
    with pytest.raises(bpfnb.UnknownMapError, match=r"its maps are: .*by_comm.*by_pid") as err:
        counts["nope"]
    assert isinstance(err.value, KeyError)


HIST = r"""
#include <uapi/linux/ptrace.h>
BPF_HISTOGRAM(dist);
BPF_HISTOGRAM(linear, u64, 64);
typedef struct { u32 odd; u64 slot; } section_t;
BPF_HISTOGRAM(sections, section_t);
int on_record(struct pt_regs *ctx) {
    u64 v = PT_REGS_PARM1(ctx);
    dist.increment(bpf_log2l(v));
    u64 bucket = v / 10;
    if (bucket < 64) linear.increment(bucket);
    section_t key = {};
    key.odd = v & 1;
    key.slot = bpf_log2l(v);
    sections.increment(key);
    return 0;
}
"""
VALUES = [0, 1, 2, 3, 4, 7, 8, 15, 16, 100, 1000, 1000, 5, 55, 63]


def _bcc_printed(print_fn) -> list[tuple[int, int, int]]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        print_fn()
    rows = re.findall(r"^\s*(\d+)\s*->\s*(\d+)\s*:\s*(\d+)", buf.getvalue(), re.M)
    return [tuple(map(int, r)) for r in rows]


def _log2_slot(v: int) -> int:
    return v.bit_length() if v else 1


@pytest.fixture(scope="module")
def hist_programs(workload):
    """The same program on both backends (auto: libbpf where it runs), same workload."""
    with on_both_backends(HIST, "hists", workload, "record", "on_record", *VALUES) as progs:
        yield progs


@pytest.fixture(params=["auto", "bcc"])
def hists(request, hist_programs):
    return hist_programs[request.param]


def test_log2_hist_matches_bcc_print_log2_hist(hists, hist_programs):
    h = hists["dist"].hist()
    assert list(h.columns) == ["low", "high", "count"]
    assert h["count"].dtype == np.uint64
    bcc_table = hist_programs["bcc"].module.table("dist")
    expected = _bcc_printed(lambda: bcc_table.print_log2_hist())
    assert [tuple(map(int, r)) for r in h.itertuples(index=False)] == expected
    slots = [_log2_slot(v) for v in VALUES]
    assert h["count"].tolist() == [slots.count(s) for s in range(1, max(slots) + 1)]


def test_linear_hist_buckets(hists):
    h = hists["linear"].hist(linear=10)
    want = [sum(1 for v in VALUES if v // 10 == b) for b in range(max(VALUES) // 10 + 1)
            if b < 64]
    last = max(b for b in range(64) if any(v // 10 == b for v in VALUES))
    assert h["count"].tolist() == want[: last + 1]
    assert h["low"].tolist() == [10 * b for b in range(last + 1)]
    assert h["high"].tolist() == [10 * b + 9 for b in range(last + 1)]


def test_sectioned_hist(hists):
    h = hists["sections"].hist()
    assert list(h.columns) == ["odd", "low", "high", "count"]
    for odd in (0, 1):
        part = h[h.odd == odd]
        vals = [_log2_slot(v) for v in VALUES if v & 1 == odd]
        assert part["count"].tolist() == [vals.count(s) for s in range(1, max(vals) + 1)]


MMAP = r"""
BPF_F_TABLE("array", int, u64, counters, 1024, BPF_F_MMAPABLE);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    int i = (bpf_get_current_pid_tgid() >> 32) % 1024;
    counters.increment(i);
    return 0;
}
"""


def test_mmapable_array_zero_copy(workload):
    with bpfnb.load(MMAP) as prog:
        view = prog["counters"]
        values = view.values()
        assert values.base is not None  # a view on the mapping, not a copy
        pid = run_workload(workload, "getpid", 77)
        assert int(values[pid % 1024]) == 77  # the same array sees the kernel's writes
        df = view.df()
        assert df.attrs["read_method"] == "mmap"
        assert int(df.loc[pid % 1024, "value"]) == 77


def test_reads_while_written_have_no_duplicates(workload):
    src = r"""
    BPF_HASH(churn, u64, u64, 4096);
    TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
        u64 t = bpf_ktime_get_ns() % 8192;
        u64 one = 1;
        if (t & 1) churn.delete(&t); else churn.update(&t, &one);
        return 0;
    }
    """
    import subprocess

    with bpfnb.load(src) as prog:
        proc = subprocess.Popen([str(workload), "getpid", "3000000"])
        try:
            for _ in range(50):
                df = prog["churn"].df()
                assert df["key"].is_unique
        finally:
            proc.kill()
            proc.wait()


def test_iterate_fallback_matches_batch(counts, workload):
    run_workload(workload, "getpid", 5)
    view = counts["by_comm"]
    batch = view.df().sort_values(["pid", "comm"]).reset_index(drop=True)
    reader = view.reader
    keys, values = reader._read_iterate()
    from bpfnb.data import frames

    it = frames.frame(keys, values.reshape(len(values)), {}).sort_values(["pid", "comm"])
    assert it.reset_index(drop=True).equals(batch)


def test_dataframes_do_not_alias_read_buffers(counts, workload):
    pid = run_workload(workload, "getpid", 3)
    first = counts["by_pid"].df()
    value = int(first.loc[first.key == pid, "value"].iloc[0])
    run_workload(workload, "getpid", 4)
    counts["by_pid"].df()
    assert int(first.loc[first.key == pid, "value"].iloc[0]) == value


BIG = """
struct big_key { u32 a; u16 b; };
BPF_HASH(big_hash, u32, u64, 200000);
BPF_HASH(struct_hash, struct big_key, u64, 150000);
BPF_PERCPU_HASH(big_percpu, u32, u64, 100000);
BPF_ARRAY(big_array, u64, 300001);
"""


def _fill(view, keys, values):
    from bpfnb._sys import bpfsys

    bpfsys.batch(bpfsys.Cmd.MAP_UPDATE_BATCH, view.fd, None, None, keys, values, len(keys))


def test_large_maps_read_in_parallel_exactly():
    from bpfnb._sys import bpfsys
    from bpfnb.data import parallelread

    with bpfnb.load(BIG, attach=False) as prog:
        n = 180_000
        keys = np.random.default_rng(1).permutation(10_000_000)[:n].astype(np.uint32)
        _fill(prog["big_hash"], keys, keys.astype(np.uint64) * 3)
        assert parallelread.workers_for(bpfsys.MapType.HASH, 200000) == min(
            4, len(__import__("os").sched_getaffinity(0)))
        df = prog["big_hash"].df()
        assert len(df) == n and df["key"].is_unique
        assert (df["value"].to_numpy() == df["key"].to_numpy().astype(np.uint64) * 3).all()
        assert set(df["key"].tolist()) == set(keys.tolist())

        skeys = np.zeros(120_000, prog["struct_hash"].key_dtype)
        skeys["a"] = np.arange(120_000)
        skeys["b"] = np.arange(120_000) % 7
        _fill(prog["struct_hash"], skeys, np.arange(120_000, dtype=np.uint64))
        sdf = prog["struct_hash"].df()
        assert len(sdf) == 120_000 and not sdf.duplicated(["a", "b"]).any()
        assert (sdf["b"].to_numpy() == sdf["a"].to_numpy() % 7).all()

        ncpu = len(bpfsys.possible_cpus())
        pkeys = np.arange(90_000, dtype=np.uint32)
        pvals = np.tile(pkeys.astype(np.uint64)[:, None], (1, ncpu))
        _fill(prog["big_percpu"], pkeys, pvals)
        pdf = prog["big_percpu"].df()
        assert len(pdf) == 90_000
        assert (pdf["value"].to_numpy() == pdf["key"].to_numpy().astype(np.uint64) * ncpu).all()

        arr = prog["big_array"]
        _fill(arr, np.arange(300_001, dtype=np.int32), np.arange(300_001, dtype=np.uint64) + 5)
        adf = arr.df()
        assert adf["key"].tolist() == list(range(300_001))
        assert (adf["value"].to_numpy() == np.arange(300_001) + 5).all()


def test_parallel_read_under_churn_has_no_duplicates(workload):
    import subprocess

    src = r"""
    BPF_HASH(churn, u64, u64, 100000);
    TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
        u64 t = bpf_ktime_get_ns() % 150000;
        u64 one = 1;
        if (t % 3 == 0) churn.delete(&t); else churn.update(&t, &one);
        return 0;
    }
    """
    with bpfnb.load(src) as prog:
        proc = subprocess.Popen([str(workload), "getpid", "20000000"])
        try:
            for _ in range(20):
                assert prog["churn"].df()["key"].is_unique
        finally:
            proc.kill()
            proc.wait()
