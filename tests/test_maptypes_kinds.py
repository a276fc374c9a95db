"""Map types with DataFrames of their own, filled by real programs and a known workload:
LPM tries, program arrays (tail calls), maps of maps, stack traces, queues and stacks,
cgroup arrays and cgroup storage."""

from __future__ import annotations

import os
import platform
import socket
import sys

import numpy as np
import pytest

import bpfnb
from bpfnb.errors import KeyNotFoundError, KeyTypeError, MapFullError, UnsupportedMapError
from bpfnb.map.kinds.lpm import longest_match
from bpfnb.program.functions import function
from bpfnb.testing.workload import COMM_FILTER, comm_cflags, getpid

pytestmark = pytest.mark.usefixtures("kernel")

# syscall numbers the dispatcher test routes (after naming itself, the workload makes getpid
# exactly N times and exit_group once)
SYSCALLS = {"x86_64": {"getpid": 39, "exit_group": 231},
            "aarch64": {"getpid": 172, "exit_group": 94}}
COMM = f"bpfnb-k{os.getpid() % 100000}"  # this session's workloads only
CFLAGS = comm_cflags(COMM)
IS_WORKLOAD = COMM_FILTER


# -- LPM trie ---------------------------------------------------------------------------------

LPM = r"""
struct v4 { u32 prefixlen; u32 addr; };
struct v6 { u32 prefixlen; u8 addr[16]; };
BPF_LPM_TRIE(routes, struct v4, u32, 64);
BPF_LPM_TRIE(routes6, struct v6, u32, 16);
BPF_ARRAY(hits, u64, 8);
int classify(struct __sk_buff *skb) {
    struct v4 key = {.prefixlen = 32};
    bpf_skb_load_bytes(skb, 16, &key.addr, 4);   /* IPv4 destination, network order */
    u32 *rule = routes.lookup(&key);
    int slot = rule ? *rule : 0;
    if (slot < 8) hits.increment(slot);
    return 1;
}
"""


def test_lpm_trie_networks_and_longest_match():
    with bpfnb.load(LPM, attach=False) as p:
        r = p["routes"]
        r["10.0.0.0/8"] = 1
        r["10.1.0.0/16"] = 2
        r["10.1.2.0/24"] = 3
        df = r.df()
        assert df["network"].tolist() == ["10.1.2.0/24", "10.1.0.0/16", "10.0.0.0/8"]
        assert df["prefixlen"].tolist() == [24, 16, 8] and df["value"].tolist() == [3, 2, 1]
        assert r.lookup("10.1.2.3") == 3 and r["10.1.9.9"] == 2 and r["10.200.0.1"] == 1
        with pytest.raises(KeyNotFoundError):
            r["192.168.0.1"]
        assert longest_match(r, "10.1.9.9") == "10.1.0.0/16"
        assert sorted(r.keys()) == ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24"]
        r6 = p["routes6"]
        r6["2001:db8::/32"] = 6
        assert r6.df()["network"].tolist() == ["2001:db8::/32"] and r6["2001:db8::1"] == 6
        df["value"] += 10
        r.update_df(df)  # keys given as networks
        assert r["10.1.2.3"] == 13
        assert r.delete_keys(["10.1.2.0/24"]) == 1 and r["10.1.2.3"] == 12


def test_lpm_key_size_rules():
    with bpfnb.load(LPM, attach=False) as p:
        r = p["routes"]
        with pytest.raises(KeyTypeError, match="needs 16"):
            r["2001:db8::/32"] = 1
        with pytest.raises(KeyTypeError, match="not an IP address"):
            r["10.0.0.0/33"] = 1
        with pytest.raises(KeyTypeError, match="exceeds the 32 address bits"):
            r[{"prefixlen": 40, "addr": 0}] = 1


def test_lpm_trie_matched_by_a_program(cgroup):
    """cgroup_skb egress looks up each packet's destination: the longest prefix wins."""
    with bpfnb.load(LPM, attach=False) as p:
        r = p["routes"]
        r["127.0.0.0/8"] = 1
        r["127.1.0.0/16"] = 2
        function(p, "classify", "cgroup_skb").attach_cgroup(cgroup, "egress")
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("0.0.0.0", 0))
        port = sink.getsockname()[1]
        code = ("import socket, sys\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                f"[s.sendto(b'x', ('127.0.0.1', {port})) for _ in range(3)]\n"
                f"[s.sendto(b'x', ('127.1.2.3', {port})) for _ in range(5)]\n")
        try:
            assert cgroup.run([sys.executable, "-c", code]) == 0
        finally:
            sink.close()
        hits = p["hits"].df().set_index("key")["value"]
        assert hits[1] == 3 and hits[2] == 5 and hits[0] == 0


# -- PROG_ARRAY -------------------------------------------------------------------------------

DISPATCH = r"""
BPF_PROG_ARRAY(handlers, 512);
BPF_ARRAY(counts, u64, 512);
BPF_HASH(unhandled, u32, u64, 512);
TRACEPOINT_PROBE(raw_syscalls, sys_enter) {
    IS_WORKLOAD
    u32 nr = args->id;
    handlers.call(args, nr);
    unhandled.increment(nr);   /* reached only when slot nr is empty */
    return 0;
}
int on_getpid(void *ctx) { int k = NR_GETPID; counts.increment(k); return 0; }
int on_exit_group(void *ctx) { int k = NR_EXIT_GROUP; counts.increment(k); return 0; }
""".replace("IS_WORKLOAD", IS_WORKLOAD)


def test_prog_array_dispatches_tail_calls():
    nrs = SYSCALLS.get(platform.machine())
    if nrs is None:
        pytest.skip(f"syscall numbers of {platform.machine()} not in this test")
    cflags = [*CFLAGS, f"-DNR_GETPID={nrs['getpid']}", f"-DNR_EXIT_GROUP={nrs['exit_group']}"]
    with bpfnb.load(DISPATCH, cflags=cflags) as p:
        h = p["handlers"]
        h[nrs["getpid"]] = function(p, "on_getpid")  # type taken from the dispatcher
        h[nrs["exit_group"]] = function(p, "on_exit_group")
        df = h.df()
        assert df["slot"].tolist() == [nrs["getpid"], nrs["exit_group"]]
        assert df["prog_name"].tolist() == ["on_getpid", "on_exit_group"]
        assert df["prog_type"].tolist() == ["tracepoint", "tracepoint"]
        assert (df["prog_id"] > 0).all() and len(h) == 2
        getpid(500, COMM)
        counts = p["counts"]
        assert counts[nrs["getpid"]] == 500 and counts[nrs["exit_group"]] == 1
        unhandled = p["unhandled"]
        assert nrs["getpid"] not in unhandled and nrs["exit_group"] not in unhandled
        del h[nrs["exit_group"]]
        assert h.df()["slot"].tolist() == [nrs["getpid"]]
        getpid(10, COMM)
        assert counts[nrs["getpid"]] == 510 and unhandled[nrs["exit_group"]] == 1


# -- maps of maps -----------------------------------------------------------------------------

MAP_OF_MAPS = r"""
BPF_ARRAY(inner_a, u64, 1);
BPF_ARRAY(inner_b, u64, 1);
BPF_ARRAY_OF_MAPS(current, "inner_a", 1);
BPF_HASH_OF_MAPS(by_tenant, u32, "inner_a", 4);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    IS_WORKLOAD
    int zero = 0;
    struct bpf_map *inner = current.lookup(&zero);
    if (!inner) return 0;
    u64 *v = bpf_map_lookup_elem(inner, &zero);
    if (v) __sync_fetch_and_add(v, 1);
    return 0;
}
""".replace("IS_WORKLOAD", IS_WORKLOAD)


def test_array_of_maps_swaps_inner_map():
    with bpfnb.load(MAP_OF_MAPS, cflags=CFLAGS) as p:
        cur = p["current"]
        assert len(cur.df()) == 0
        cur[0] = p["inner_a"]
        df = cur.df()
        assert df["map_name"].tolist() == ["inner_a"] and df["map_type"].tolist() == ["array"]
        assert df["map_id"].tolist() == [p["inner_a"].info.id]
        getpid(100, COMM)
        cur[0] = p["inner_b"]  # the running program now counts into inner_b
        getpid(250, COMM)
        assert p["inner_a"][0] == 100 and p["inner_b"][0] == 250
        assert cur.inner(0) is p["inner_b"]
        tenants = p["by_tenant"]
        tenants[7] = p["inner_a"]
        assert tenants.df()["map_name"].tolist() == ["inner_a"]
        assert tenants.inner(7)[0] == 100
        with pytest.raises(KeyTypeError, match="stores maps"):
            tenants[8] = "inner_b"


# -- stack traces -----------------------------------------------------------------------------

STACKS = r"""
BPF_STACK_TRACE(stacks, 64);
BPF_HASH(counts, int, u64, 64);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    IS_WORKLOAD
    int user = stacks.get_stackid(args, BPF_F_USER_STACK);
    int kernel = stacks.get_stackid(args, 0);
    counts.increment(user);
    counts.increment(kernel);
    return 0;
}
""".replace("IS_WORKLOAD", IS_WORKLOAD)


def test_stack_trace_raw_view():
    with bpfnb.load(STACKS, cflags=CFLAGS) as p:
        getpid(200, COMM)
        counts = p["counts"].df()
        df = p["stacks"].df()
        assert list(df.columns) == ["stack_id", "depth", "top", "addresses", "frames"]
        assert sorted(df["stack_id"].tolist()) == sorted(counts["key"].tolist())
        for _, row in df.iterrows():
            assert row["depth"] == len(row["addresses"]) > 0
            assert row["top"] == row["addresses"][0] and (row["addresses"] != 0).all()
        df["space"] = np.where(df["top"] >= np.uint64(1 << 63), "kernel", "user")
        for _, row in df[df.space == "kernel"].iterrows():  # root first, real kallsyms names
            assert len(row["frames"]) == row["depth"]
            assert row["frames"][0].startswith("entry_SYSCALL")
        for _, row in df[df.space == "user"].iterrows():
            assert all(f.startswith("[unknown] 0x") for f in row["frames"])
        both = df.merge(counts, left_on="stack_id", right_on="key")
        assert both.groupby("space")["value"].sum().to_dict() == {"kernel": 200, "user": 200}


# -- queues and stacks ------------------------------------------------------------------------

QUEUES = r"""
struct ev { u32 pid; u32 n; };
BPF_QUEUE(fifo, u64, 8);
BPF_STACK(lifo, u64, 8);
BPF_QUEUE(events, struct ev, 16);
BPF_ARRAY(seq, u64, 1);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    IS_WORKLOAD
    int zero = 0;
    u64 *s = seq.lookup(&zero);
    if (!s) return 0;
    struct ev e = {.pid = bpf_get_current_pid_tgid() >> 32, .n = __sync_fetch_and_add(s, 1)};
    events.push(&e, BPF_EXIST);  /* full: drop the oldest */
    return 0;
}
""".replace("IS_WORKLOAD", IS_WORKLOAD)


def test_queue_and_stack_from_python():
    with bpfnb.load(QUEUES, cflags=CFLAGS, attach=False) as p:
        q, s = p["fifo"], p["lifo"]
        for v in (1, 2, 3):
            q.push(v)
            s.push(v)
        assert q.peek() == 1 and s.peek() == 3
        assert q.df()["value"].tolist() == [1] and "peek" in q.df().attrs["note"]
        assert q.pop() == 1 and s.pop() == 3
        assert q.drain()["value"].tolist() == [2, 3] and s.drain()["value"].tolist() == [2, 1]
        with pytest.raises(KeyNotFoundError, match="empty"):
            q.pop()
        for v in range(8):
            q.push(v)
        with pytest.raises(MapFullError, match="overwrite=True"):
            q.push(8)
        q.push(8, overwrite=True)
        assert q.drain()["value"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
        with pytest.raises(UnsupportedMapError, match="without draining"):
            len(q)
        with pytest.raises(UnsupportedMapError, match="has no keys"):
            q[0]


def test_queue_filled_by_a_program():
    with bpfnb.load(QUEUES, cflags=CFLAGS) as p:
        pid = getpid(20, COMM)
        df = p["events"].drain()
        assert df["n"].tolist() == list(range(4, 20))  # 16 slots: the newest 16 of 20
        assert (df["pid"] == pid).all()
        assert len(p["events"].drain()) == 0


# -- cgroup array and cgroup storage ---------------------------------------------------------

UNDER_CGROUP = r"""
BPF_CGROUP_ARRAY(watched, 2);
BPF_ARRAY(counts, u64, 2);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    IS_WORKLOAD
    int slot = watched.check_current_task(0) == 1 ? 0 : 1;
    counts.increment(slot);
    return 0;
}
""".replace("IS_WORKLOAD", IS_WORKLOAD)


def test_cgroup_array_counts_only_that_cgroup(cgroup):
    with bpfnb.load(UNDER_CGROUP, cflags=CFLAGS) as p:
        w = p["watched"]
        w[0] = cgroup
        df = w.df()
        assert df["cgroup"].tolist() == [cgroup.relpath] and df["cgroup_id"][0] == cgroup.id
        getpid(300, COMM, cgroup=cgroup)
        getpid(50, COMM)
        counts = p["counts"]
        assert counts[0] == 300 and counts[1] == 50
        with pytest.raises(UnsupportedMapError, match="does not let user space read"):
            w[0]
        w[1] = cgroup.path  # a path works too
        assert w.df()["slot"].tolist() == [0, 1]


STORAGE = r"""
struct traffic { struct bpf_spin_lock lock; u64 packets; u64 bytes; };
BPF_CGROUP_STORAGE(per_cgroup, struct traffic);
BPF_PERCPU_CGROUP_STORAGE(per_cpu, u64);
int count(struct __sk_buff *skb) {
    struct traffic *t = per_cgroup.get_local_storage(0);
    bpf_spin_lock(&t->lock);
    t->packets++;
    t->bytes += skb->len;
    bpf_spin_unlock(&t->lock);
    u64 *n = per_cpu.get_local_storage(0);
    *n += 1;
    return 1;
}
"""
SENDER = ("import socket, sys\n"
          "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
          "for _ in range(int(sys.argv[2])): s.sendto(b'x' * int(sys.argv[3]), "
          "('127.0.0.1', int(sys.argv[1])))\n")


def test_cgroup_storage_rows_by_cgroup_and_attach_type(cgroup):
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    port = str(sink.getsockname()[1])
    try:
        with bpfnb.load(STORAGE, attach=False) as p:
            fn = function(p, "count", "cgroup_skb")
            fn.attach_cgroup(cgroup, "egress")
            fn.attach_cgroup(cgroup, "ingress")  # one storage value per attach type
            assert cgroup.run([sys.executable, "-c", SENDER, port, "25", "72"]) == 0
            storage = p["per_cgroup"]  # bcc 0.26's Python has no cgroup storage table
            df = storage.df().sort_values("attach", ignore_index=True)
            assert df[["cgroup", "attach"]].values.tolist() == [[cgroup.relpath, "egress"],
                                                                [cgroup.relpath, "ingress"]]
            assert df.attrs["key_columns"][:2] == ["cgroup", "attach"]
            assert df["packets"].tolist() == [25, 0]  # the sink is outside the cgroup
            assert df["bytes"][0] == 25 * (20 + 8 + 72)
            assert "lock.val" not in df.columns
            key = (cgroup, "egress")
            assert storage.lookup(key, lock=True) == {"packets": 25, "bytes": 2500}
            pc = p["per_cpu"]
            assert pc.df().sort_values("attach")["value"].tolist() == [25, 0]
            long = pc.df(per_cpu=True)
            assert len(long) == 2 * len(bpfnb._sys.bpfsys.possible_cpus())
            assert long.groupby("attach")["value"].sum().to_dict() == {"egress": 25,
                                                                      "ingress": 0}
    finally:
        sink.close()
