"""Map helpers from Python (lookup/update/delete/keys/pop/batch) with the kernel's semantics,
named errors, and bpf_spin_lock values read and written under BPF_F_LOCK."""

from __future__ import annotations

import ctypes as ct
import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import bpfnb
from bpfnb._sys.cgroupfs import Cgroup
from bpfnb.errors import (
    KeyExistsError,
    KeyNotFoundError,
    KeyTypeError,
    MapFullError,
    UnsupportedMapError,
)
from bpfnb.program.functions import function
from bpfnb.testing.workload import COMM_FILTER, comm_cflags, getpid

pytestmark = pytest.mark.usefixtures("kernel")

MAPS = r"""
struct key_t { u32 pid; char comm[8]; };
struct val_t { u64 count; u32 flags; };
BPF_HASH(small, u32, u64, 4);
BPF_HASH(big, u32, u64, 4096);
BPF_HASH(pairs, struct key_t, struct val_t, 64);
BPF_ARRAY(arr, u64, 4);
BPF_PERCPU_HASH(pc, u32, u64, 16);
BPF_TABLE("lru_hash", u32, u64, lru, 8);
BPF_HASH(by_pid, u32, u64, 1024);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    COMM_FILTER
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    by_pid.increment(pid);
    return 0;
}
"""


COMM = f"bpfnb-o{os.getpid() % 100000}"  # this session's workloads only


@pytest.fixture(scope="module")
def prog():
    with bpfnb.load(MAPS.replace("COMM_FILTER", COMM_FILTER), name="ops",
                    cflags=comm_cflags(COMM)) as p:
        yield p


@pytest.fixture(autouse=True)
def _empty(prog):
    for name in ("small", "big", "pairs", "pc", "lru"):
        view = prog[name]
        view.delete_keys(view.keys())


def test_update_lookup_delete_with_flags(prog):
    m = prog["small"]
    m.update(1, 10)
    m.update(2, 20, flags="noexist")
    m.update(2, 21, flags="exist")
    assert m.lookup(1) == 10 and m[2] == 21
    assert sorted(m.keys()) == [1, 2] and sorted(m) == [1, 2]
    assert 1 in m and 3 not in m
    with pytest.raises(KeyExistsError, match="already in map 'small'"):
        m.update(1, 5, flags="noexist")
    with pytest.raises(KeyNotFoundError, match="flags='exist'"):
        m.update(9, 5, flags="exist")
    with pytest.raises(KeyNotFoundError):
        m.delete(9)
    with pytest.raises(KeyNotFoundError):
        m[9]
    del m[1]
    assert m.keys() == [2]
    with pytest.raises(KeyTypeError, match="flags must be one of"):
        m.update(1, 1, flags="sometimes")


def test_full_hash_raises_e2big_with_max_entries(prog):
    m = prog["small"]
    for k in range(4):
        m[k] = k
    with pytest.raises(MapFullError, match="max_entries=4"):
        m[4] = 4
    m[3] = 33  # replacing an existing key in a full map is fine
    assert m[3] == 33 and len(m) == 4


def test_lru_evicts_instead_of_e2big(prog):
    m = prog["lru"]
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(old)})  # one CPU: one LRU list, predictable eviction
    try:
        for k in range(100):
            m[k] = k
    finally:
        os.sched_setaffinity(0, old)
    keys = m.keys()
    assert 99 in keys and 0 < len(keys) <= 8
    assert m[99] == 99


def test_wrong_shapes_name_the_expected_fields(prog):
    m = prog["pairs"]
    with pytest.raises(KeyTypeError, match=r"pid: int \(uint32\), comm: char\[8\]"):
        m[(1,)] = (1, 2)
    with pytest.raises(KeyTypeError, match="missing comm"):
        m[{"pid": 1}] = (1, 2)
    with pytest.raises(KeyTypeError, match="unknown colour"):
        m[(1, "a")] = {"count": 1, "flags": 2, "colour": 3}
    with pytest.raises(KeyTypeError, match="outside uint32"):
        prog["small"][-1] = 1
    with pytest.raises(KeyTypeError, match="longer than char"):
        m[(1, "far too long")] = (1, 2)
    with pytest.raises(KeyTypeError, match="not an int"):
        prog["small"]["one"] = 1


def test_struct_keys_as_tuples_dicts_and_ctypes(prog):
    m = prog["pairs"]
    m[(1, "a")] = (10, 1)
    m[{"pid": 2, "comm": "b"}] = {"count": 20, "flags": 2}
    key = m.key_type()
    key.pid, key.comm = 3, b"c"
    value = m.value_type()
    value.count, value.flags = 30, 3
    m[key] = value
    assert m[(3, "c")] == {"count": 30, "flags": 3}
    assert m.lookup({"pid": 1, "comm": "a"}) == {"count": 10, "flags": 1}
    df = m.df().sort_values("pid", ignore_index=True)
    assert list(df.columns) == ["pid", "comm", "count", "flags"]
    assert df["count"].tolist() == [10, 20, 30] and df["comm"].tolist() == ["a", "b", "c"]
    assert sorted(k["pid"] for k in list(m.keys())) == [1, 2, 3]
    assert m.pop((2, "b")) == {"count": 20, "flags": 2}
    assert (2, "b") not in m


def test_array_rules(prog):
    a = prog["arr"]
    a[3] = 7
    assert a[3] == 7 and a.keys() == [0, 1, 2, 3]
    with pytest.raises(KeyNotFoundError, match=r"indexes run 0\.\.3"):
        a[4] = 1
    with pytest.raises(UnsupportedMapError, match="cannot be deleted"):
        del a[3]
    with pytest.raises(KeyExistsError, match="always exists"):
        a.update(0, 1, flags="noexist")
    with pytest.raises(UnsupportedMapError, match="lookup-and-delete"):
        a.pop(0)


def test_per_cpu_values(prog):
    m = prog["pc"]
    ncpu = len(bpfnb._sys.bpfsys.possible_cpus())
    m[1] = 5
    m[2] = list(range(1, ncpu + 1))
    assert m[1] == 5 and m.lookup(1, per_cpu=True) == [5] + [0] * (ncpu - 1)
    assert m[2] == sum(range(1, ncpu + 1))
    long = m.df(per_cpu=True)
    long["value"] += 1
    assert m.update_df(long) == 2  # map elements (keys) written
    assert m[1] == 5 + ncpu and m.lookup(2, per_cpu=True) == list(range(2, ncpu + 2))


def test_batch_update_and_delete(prog):
    m = prog["big"]
    keys = np.arange(1000, dtype=np.uint32)
    df = pd.DataFrame({"key": keys, "value": keys.astype(np.uint64) * 3})
    assert m.update_df(df) == 1000
    got = m.df().sort_values("key", ignore_index=True)
    assert got["value"].tolist() == (keys.astype(np.uint64) * 3).tolist()
    assert m.delete_keys(range(0, 1000, 2)) == 500
    assert len(m) == 500 and 0 not in m and 1 in m
    with pytest.raises(KeyNotFoundError, match="missing_ok=True"):
        m.delete_keys([1, 2, 3])
    assert m.delete_keys([5, 6, 7], missing_ok=True) == 2
    assert m.delete_keys(m.df()) == 497 and len(m) == 0
    m.update_df(df.iloc[:3])
    with pytest.raises(KeyExistsError, match="key 0 is already"):
        m.update_df(df.iloc[:3], flags="noexist")


def test_batch_full_map_names_the_key(prog):
    df = pd.DataFrame({"key": np.arange(6, dtype=np.uint32), "value": np.zeros(6, np.uint64)})
    with pytest.raises(MapFullError, match="key 4"):
        prog["small"].update_df(df)
    assert len(prog["small"]) == 4


def test_keys_and_pop_of_program_filled_map(prog):
    pid = getpid(321, COMM)
    m = prog["by_pid"]
    assert pid in list(m.keys())
    assert m[pid] == 321
    assert m.pop(pid) == 321
    assert pid not in m


def test_no_bare_oserror_reaches_the_user(prog):
    with pytest.raises(UnsupportedMapError, match="push works on QUEUE"):
        prog["small"].push(1)
    with pytest.raises(UnsupportedMapError, match="bpf_spin_lock"):
        prog["small"].lookup(1, lock=True)


LOCKED = r"""
struct counter { struct bpf_spin_lock lock; u64 packets; u64 bytes; };
BPF_HASH(totals, u32, struct counter, 1);
int count_egress(struct __sk_buff *skb) {
    u32 zero = 0;
    struct counter *c = totals.lookup(&zero);
    if (c) {
        bpf_spin_lock(&c->lock);
        c->packets++;
        c->bytes += skb->len;
        bpf_spin_unlock(&c->lock);
    }
    return 1;
}
"""

SENDER = ("import socket, sys\n"
          "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
          "for _ in range(int(sys.argv[2])): s.sendto(b'x' * int(sys.argv[3]), "
          "('127.0.0.1', int(sys.argv[1])))\n")


@pytest.fixture
def udp_sink():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


def test_spin_lock_values_in_cgroup_skb(cgroup, udp_sink):
    with bpfnb.load(LOCKED, name="locked") as p:
        totals = p["totals"]
        totals.update(0, {"packets": 0, "bytes": 0}, lock=True)
        assert list(totals.df().columns) == ["key", "packets", "bytes"]  # lock hidden
        attachment = function(p, "count_egress", "cgroup_skb").attach_cgroup(cgroup, "egress")
        assert cgroup.run([sys.executable, "-c", SENDER, str(udp_sink), "40", "100"]) == 0
        # loopback UDP: skb->len at cgroup egress = IPv4 20 + UDP 8 + payload
        assert totals.lookup(0, lock=True) == {"packets": 40, "bytes": 40 * 128}
        totals.update(0, {"packets": 1, "bytes": 2}, flags="exist", lock=True)
        assert totals.lookup(0, lock=True) == {"packets": 1, "bytes": 2}
        attachment.close()
        assert cgroup.run([sys.executable, "-c", SENDER, str(udp_sink), "5", "10"]) == 0
        assert totals[0] == {"packets": 1, "bytes": 2}  # detached: nothing counted
        function(p, "count_egress", "cgroup_skb").attach_cgroup(cgroup, "egress")
        assert attached_programs(cgroup) == ["count_egress"]
    assert attached_programs(cgroup) == []  # closing the program detached it


def attached_programs(cgroup: Cgroup) -> list[str]:
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool is not installed")
    out = subprocess.run(["bpftool", "-j", "cgroup", "show", cgroup.path], capture_output=True,
                         text=True, check=True).stdout
    return [p["name"] for p in json.loads(out.strip() or "[]")]


def test_function_needs_a_known_name_and_type(prog):
    with pytest.raises(bpfnb.BpfnbError, match="no function 'nope'"):
        function(prog, "nope")
    with pytest.raises(bpfnb.BpfnbError, match="unknown program type"):
        function(prog, "tracepoint__syscalls__sys_enter_getpid", "teapot")


def test_ctypes_scalar_and_raw_bytes_accepted(prog):
    m = prog["small"]
    m[ct.c_uint32(7)] = ct.c_uint64(70)
    assert m[7] == 70
    m[(8).to_bytes(4, "little")] = (80).to_bytes(8, "little")
    assert m[8] == 80
