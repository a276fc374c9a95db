"""The libbpf CO-RE backend on the real kernel: LibbpfModule directly, and Program on it."""

from __future__ import annotations

import ctypes as ct
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import bpfnb
from bpfnb._sys import bpfsys, features
from bpfnb.backends.bcc import BccModule
from bpfnb.backends.libbpf import LibbpfModule, load_object, objcache, spare
from bpfnb.backends.select import Choice, libbpf_ready
from bpfnb.errors import BpfnbError, CompileError, FeatureUnavailableError, VerifierError
from bpfnb.map.view import MapView
from bpfnb.testing.events import source as event_source
from bpfnb.testing.workload import COMM_FILTER, comm_cflags, getpid
from conftest import COUNT_BY_PID, open_fds, require, run_workload

pytestmark = pytest.mark.usefixtures("kernel")
COMM = f"bpfnb-lb{os.getpid() % 10000}"  # our own name: other tests run workloads too


def run(n: int) -> int:
    """A process named COMM making exactly n getpid() calls; its pid."""
    return getpid(n, comm=COMM)


@pytest.fixture(scope="module", autouse=True)
def _toolchain() -> None:
    require(libbpf_ready())  # kernel BTF, clang, bpftool, libbpf.so.1


def items(module, name: str) -> list[tuple]:
    """(key, value) pairs read with the table's BTF-derived ctypes types, element by element
    (independent of MapView's layout code)."""
    t = module.table(name)
    out, key, nxt = [], None, t.Key()
    while bpfsys.next_key(t.map_fd, key, nxt):
        value = t.Leaf()
        bpfsys.lookup(t.map_fd, nxt, value)
        out.append((nxt.value, value))
        key, nxt = nxt, t.Key()
    return out


def view(module, name: str) -> MapView:
    t = module.table(name)
    return MapView(name, t.map_fd, t.Key, t.Leaf)


TASK = """
struct info_t { u32 tgid; u32 pid; char comm[16]; u64 calls; };
BPF_HASH(seen, u32, struct info_t);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    COMM_FILTER
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    u32 key = bpf_get_current_pid_tgid() >> 32;
    struct info_t zero = {};
    struct info_t *info = seen.lookup_or_try_init(&key, &zero);
    if (!info) return 0;
    info->tgid = BPF_CORE_READ(task, tgid);
    info->pid = BPF_CORE_READ(task, pid);
    BPF_CORE_READ_STR_INTO(&info->comm, task, comm);
    __sync_fetch_and_add(&info->calls, 1);
    return 0;
}
"""


def test_core_reads_task_struct_right() -> None:
    src = TASK.replace("COMM_FILTER", COMM_FILTER)
    m = LibbpfModule(src, comm_cflags(COMM))
    try:
        m.autoattach()
        pid = run(1000)
        rows = [(k, v.tgid, v.pid, v.comm, v.calls) for k, v in items(m, "seen")]
    finally:
        m.close()
    assert rows == [(pid, pid, pid, COMM.encode(), 1000)]  # only our process has COMM


def _on_both(src: str, flags: list[str], table: str, calls: int
             ) -> tuple[int, pd.DataFrame, pd.DataFrame]:
    """`src` attached on bcc and on libbpf while the workload makes `calls` getpid() calls:
    (its pid, bcc's `table` as a DataFrame, libbpf's)."""
    bcc, lb = BccModule(src, flags), LibbpfModule(src, flags)
    try:
        bcc.autoattach()
        lb.autoattach()
        pid = run(calls)
        t = bcc.table(table)
        return pid, MapView(table, t.map_fd, t.Key, t.Leaf).df(), view(lb, table).df()
    finally:
        bcc.close()
        lb.close()


def test_same_bcc_source_same_counts() -> None:
    pid, by_bcc, by_lb = _on_both(COUNT_BY_PID, [], "by_pid", 321)
    by_bcc, by_lb = by_bcc.set_index("key"), by_lb.set_index("key")
    assert by_bcc.loc[pid, "value"] == by_lb.loc[pid, "value"] == 321
    assert by_lb["value"].dtype == by_bcc["value"].dtype


HIST = """
BPF_HISTOGRAM(dist);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    COMM_FILTER
    dist.increment(bpf_log2l(7));
    dist.increment(bpf_log2l(1000), 2);
    return 0;
}
"""


def test_histogram_matches_bcc() -> None:
    src = HIST.replace("COMM_FILTER", COMM_FILTER)
    flags = comm_cflags(COMM)
    _pid, h_bcc, h_lb = _on_both(src, flags, "dist", 50)
    nonzero = h_lb[h_lb["value"] > 0].set_index("key")["value"].to_dict()
    assert nonzero == {3: 50, 10: 100}
    assert h_lb.equals(h_bcc)


RINGBUF = """
struct event_t { u32 pid; u32 seq; };
BPF_RINGBUF_OUTPUT(events, 8);
BPF_ARRAY(counter, u32, 1);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    COMM_FILTER
    int zero = 0;
    u32 *c = counter.lookup(&zero);
    if (!c) return 0;
    struct event_t *e = events.ringbuf_reserve(sizeof(struct event_t));
    if (!e) return 0;
    e->pid = bpf_get_current_pid_tgid() >> 32;
    e->seq = __sync_fetch_and_add(c, 1);
    events.ringbuf_submit(e, 0);
    return 0;
}
"""


def test_ring_buffer_events() -> None:
    m = LibbpfModule(RINGBUF.replace("COMM_FILTER", COMM_FILTER), comm_cflags(COMM))
    try:
        m.autoattach()
        pid = run(20)
        t = m.table("events")
        assert [f[0] for f in t.event_type._fields_] == ["pid", "seq"]  # from reserve's type
        df = MapView("events", t.map_fd, t.Key, t.Leaf).events(duration=None,
                                                               event_type=t.event_type)
    finally:
        m.close()
    assert df["pid"].tolist() == [pid] * 20
    assert df["seq"].tolist() == list(range(20))


LIBBPF_STYLE = r"""
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
char LICENSE[] SEC("license") = "GPL";
const volatile u64 comm_lo = 0, comm_hi = 0;
const volatile u32 weight = 1;
struct { __uint(type, BPF_MAP_TYPE_HASH); __type(key, u32); __type(value, u64);
         __uint(max_entries, 1024); } counts SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } rb SEC(".maps");
SEC("tracepoint/syscalls/sys_enter_getpid")
int on_getpid(void *ctx) {
    u64 comm[2] = {};
    bpf_get_current_comm(comm, sizeof(comm));
    if (comm[0] != comm_lo || comm[1] != comm_hi) return 0;
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    u64 *v = bpf_map_lookup_elem(&counts, &pid);
    if (v) { __sync_fetch_and_add(v, weight); }
    else { u64 w = weight; bpf_map_update_elem(&counts, &pid, &w, BPF_NOEXIST); }
    bpf_ringbuf_output(&rb, &pid, sizeof(pid), 0);
    return 0;
}
SEC("uprobe")
int not_auto_attached(void *ctx) { return 0; }
"""


def _build_tool(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """LIBBPF_STYLE built with clang as a libbpf tool would be; the consts for COMM."""
    from bpfnb.backends.libbpf import compiler

    pre = compiler.prelude()
    src = tmp_path / "tool.bpf.c"
    src.write_text(LIBBPF_STYLE)
    out = tmp_path / "tool.bpf.o"
    subprocess.run([compiler.clang(), *compiler.arch_flags(), "-I", str(pre.directory),
                    "-c", str(src), "-o", str(out)], check=True)
    lo, hi = (int(f.split("=")[1].removesuffix("ULL"), 16) for f in comm_cflags(COMM))
    return out, {"comm_lo": lo, "comm_hi": hi, "weight": 3}


def test_load_object_consts_maps_events(tmp_path: Path) -> None:
    out, consts = _build_tool(tmp_path)
    m = load_object(out, consts=consts)
    try:
        assert [str(a) for a in m.attached] == ["tracepoint:syscalls:sys_enter_getpid"]
        assert m.table_names() == ["counts", "rb"]
        pid = run(40)
        counts = view(m, "counts").df()
        t = m.table("rb")
        events = MapView("rb", t.map_fd, None, ct.c_ubyte * 0).events(
            duration=None, event_type=ct.c_uint32)
    finally:
        m.close()
    assert counts.to_dict("records") == [{"key": pid, "value": 120}]
    assert len(events) == 40 and set(events.iloc[:, 0]) == {pid}


def test_compile_error_has_cell_line() -> None:
    src = "BPF_HASH(h, u32, u64);\n\nTRACEPOINT_PROBE(syscalls, sys_enter_getpid) {\n" \
          "    u32 x = undefined_name;\n    return 0;\n}\n"
    with pytest.raises(CompileError) as e:
        LibbpfModule(src)
    assert e.value.diagnostics[0][0] == 4
    assert e.value.summary.startswith("C compile error at line 4")


def test_kernel_pointer_deref_asks_for_core_read() -> None:
    src = ("TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {\n"
           "    struct task_struct *task = (struct task_struct *)bpf_get_current_task();\n"
           "    u32 ppid = task->real_parent->tgid;\n    return ppid;\n}\n")
    with pytest.raises(CompileError) as e:
        LibbpfModule(src)
    assert e.value.summary.startswith("Use BPF_CORE_READ(task, real_parent)")
    assert e.value.diagnostics[0][0] == 3


def test_verifier_rejection_one_line_with_log() -> None:
    src = ("BPF_HASH(h, u32, u64);\nTRACEPOINT_PROBE(syscalls, sys_enter_getpid) {\n"
           "    u32 k = 0;\n    u64 *v = h.lookup(&k);\n    return *v;\n}\n")
    with pytest.raises(VerifierError) as e:
        LibbpfModule(src)
    err = e.value
    assert err.function == "tracepoint__syscalls__sys_enter_getpid"
    assert "\n" not in str(err)
    assert "map_value_or_null" in err.log
    assert err.line == 5


RECORD = """
BPF_HASH(values, u64, u64);
int on_record(struct pt_regs *ctx) {
    u64 v = PT_REGS_PARM1(ctx);
    values.increment(v);
    return 0;
}
"""


def test_uprobe_function_loaded_on_attach(workload: Path) -> None:
    require(features.uprobes())
    m = LibbpfModule(RECORD)
    try:
        m.attach_uprobe(str(workload), "record", "on_record", ret=False, pid=-1, addr=None,
                        sym_off=0)
        run_workload(workload, "record", 3, 5, 7, 5)
        got = {k: v.value for k, v in items(m, "values")}
        assert [str(a) for a in m.attached] == [f"uprobe:{workload}:record"]
    finally:
        m.close()
    assert got == {3: 1, 5: 2, 7: 1}


SAMPLES = """
BPF_HASH(samples, u32, u64);
int on_sample(struct bpf_perf_event_data *ctx) {
    COMM_FILTER
    samples.increment(bpf_get_current_pid_tgid() >> 32);
    return 0;
}
"""


def test_perf_event_sampling(workload: Path) -> None:
    m = LibbpfModule(SAMPLES.replace("COMM_FILTER", COMM_FILTER), comm_cflags("bpfnb-wl"))
    try:
        m.attach_perf_event("on_sample", 1, 0, sample_period=0, sample_freq=99, pid=-1, cpu=-1)
        proc = subprocess.Popen([str(workload), "spin", "1"])
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = 0
        got = dict((k, v.value) for k, v in items(m, "samples"))
    finally:
        m.close()
    assert status == 0
    expected = (usage.ru_utime + usage.ru_stime) * 99  # cpu-clock samples its CPU time
    assert 0.5 * expected - 3 <= got[proc.pid] <= 1.5 * expected + 3


TP = "TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {{ {body} return 0; }}"
CONSTRUCTS = {
    "hash_defaults": ("BPF_HASH(h);", "u64 k = 1; h.increment(k);"),
    "hash_struct_key": ("struct k_t { u32 a; char c[8]; }; BPF_HASH(h, struct k_t, u64, 100);",
                        "struct k_t k = {}; h.increment(k, 5); h.delete(&k);"),
    "array": ("BPF_ARRAY(a, u64, 4);",
              "int i = 1; u64 *v = a.lookup(&i); if (v) *v += 1; a.atomic_increment(i);"),
    "percpu": ("BPF_PERCPU_ARRAY(a, u64, 4); BPF_PERCPU_HASH(h, u32, u64);",
               "a.increment(0); h.increment(1);"),
    "histogram_struct_key": ("struct hk { u32 slot; u32 cpu; }; BPF_HISTOGRAM(h, struct hk, 8);",
                             "struct hk k = {1, 2}; h.increment(k);"),
    "table_lru": ('BPF_TABLE("lru_hash", u32, u64, l, 128); '
                  'BPF_TABLE("lru_percpu_hash", u32, u64, p, 128);',
                  "u32 k = 1; u64 v = 2, z = 0; l.update(&k, &v); l.insert(&k, &v); "
                  "u64 *x = p.lookup_or_try_init(&k, &z); if (x) *x += 1;"),
    "f_table": ('BPF_F_TABLE("hash", u32, u64, h, 128, BPF_F_NO_PREALLOC);', "h.increment(1);"),
    "lpm_trie": ("struct lk { u32 prefixlen; u32 ip; }; BPF_LPM_TRIE(t, struct lk, u64, 16);",
                 "struct lk k = {32, 1}; u64 *v = t.lookup(&k); if (v) return *v;"),
    "stack_trace": ("BPF_STACK_TRACE(st, 128);", "st.get_stackid(args, BPF_F_USER_STACK);"),
    "prog_array": ("BPF_PROG_ARRAY(pa, 4);", "pa.call(args, 1);"),
    "cgroup_array": ("BPF_CGROUP_ARRAY(cg, 4);", "if (cg.check_current_task(0) > 0) return 1;"),
    "maps_of_maps": ("BPF_ARRAY(inner, u64, 4); BPF_ARRAY_OF_MAPS(outer, inner, 4); "
                     "BPF_HASH_OF_MAPS(houter, int, inner, 4);",
                     "int i = 0; void *m = outer.lookup(&i); if (m) bpf_map_lookup_elem(m, &i);"
                     " m = houter.lookup(&i); if (m) bpf_map_lookup_elem(m, &i);"),
    "queue_stack": ("BPF_QUEUE(q, u64, 16); BPF_STACK(s, u64, 16);",
                    "u64 v = 1; q.push(&v, 0); q.pop(&v); s.push(&v, 0); s.peek(&v);"),
    "ringbuf": ("BPF_RINGBUF_OUTPUT(rb, 4);",
                "u64 v = 1; rb.ringbuf_output(&v, sizeof(v), 0); "
                "u64 *p = rb.ringbuf_reserve(8); if (p) rb.ringbuf_discard(p, 0);"),
    "perf_output": ("BPF_PERF_OUTPUT(ev);", "u64 v = 1; ev.perf_submit(args, &v, sizeof(v));"),
    "task_storage": ("BPF_TASK_STORAGE(ts, u64);",
                     "struct task_struct *t = bpf_get_current_task_btf(); "
                     "u64 *v = ts.task_storage_get(t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE); "
                     "if (v) *v += 1;"),
    "trace_printk": ("", 'bpf_trace_printk("hi %d\\n", 1);'),
    "of_maps_inner_by_string": ('BPF_ARRAY(inner, u64, 1); BPF_ARRAY_OF_MAPS(outer, "inner", 1);',
                                "int i = 0; struct bpf_map *m = outer.lookup(&i); "
                                "if (m) bpf_map_lookup_elem(m, &i);"),
    "kernel_includes_and_htons": ("#include <uapi/linux/ptrace.h>\n#include <linux/sched.h>\n"
                                  "#include <net/sock.h>",
                                  "u16 p = htons(80); if (ntohs(p) != 80) return 1;"),
    "raw_tracepoint": ("RAW_TRACEPOINT_PROBE(sched_switch) { return ctx->args[0] != 0; }", None),
    "tracepoint_fields": ("TRACEPOINT_PROBE(sched, sched_switch) { char c[16]; "
                          "__builtin_memcpy(c, args->next_comm, 16); return args->prev_pid + c[0];"
                          " }", None),
}


@pytest.mark.parametrize("name", list(CONSTRUCTS))
def test_bcc_construct_compiles_and_loads(name: str) -> None:
    decl, body = CONSTRUCTS[name]
    m = LibbpfModule(decl + "\n" + (TP.format(body=body) if body is not None else ""))
    try:
        assert m.functions()
    finally:
        m.close()


NET = {
    "xdp_devmap_cpumap_xskmap": (
        "BPF_DEVMAP(dm, 4); BPF_CPUMAP(cm, 4); BPF_XSKMAP(xm, 4);\n"
        "int fn(struct xdp_md *ctx) { if (ctx->data_end - ctx->data < ETH_HLEN) return XDP_DROP;"
        " return dm.redirect_map(0, 0); }", bpfsys.ProgType.XDP),
    "sk_msg_sockmap_sockhash": (
        "BPF_SOCKMAP(sm, 4); BPF_SOCKHASH(sh, u32, 4);\n"
        "int fn(struct sk_msg_md *msg) { u32 k = 0; return sh.msg_redirect_hash(msg, &k, 0); }",
        bpfsys.ProgType.SK_MSG),
    "cgroup_skb_storage": (
        "BPF_CGROUP_STORAGE(cs, u64);\nint fn(struct __sk_buff *skb) { "
        "u64 *v = cs.get_local_storage(0); if (v) __sync_fetch_and_add(v, 1); return 1; }",
        bpfsys.ProgType.CGROUP_SKB),
}


@pytest.mark.parametrize("name", list(NET))
def test_typed_on_load_functions(name: str) -> None:
    src, prog_type = NET[name]
    m = LibbpfModule(src)
    try:
        assert m.loaded_fds() == {}  # typed on first use
        fd = m.program_fd("fn", prog_type)
        assert fd > 0 and m.program_fd("fn", prog_type) == fd
        assert m.loaded_fds() == {"fn": fd}
        assert bpfsys.prog_info(fd).type == prog_type
    finally:
        m.close()


def test_compile_cache_private_built_once_and_repaired(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from bpfnb.backends.libbpf import compiler

    monkeypatch.setenv("BPFNB_CACHE", str(tmp_path / "cache"))
    first = compiler.compile_c("int x;")
    second = compiler.compile_c("int y;")
    again = compiler.compile_c("int y;")
    entry = compiler.prelude().directory
    assert (first.cold, second.cold) == (True, False)
    assert (second.cached, again.cached, again.obj) == (False, True, second.obj)
    assert entry.parent == tmp_path / "cache" / "libbpf" == compiler.cache_root()
    assert entry.parent.stat().st_mode & 0o777 == 0o700
    assert entry.stat().st_mode & 0o777 == 0o700
    assert (entry / "objects").stat().st_mode & 0o777 == 0o700
    assert entry.name == compiler.cache_key()
    assert {p.name for p in entry.iterdir()} >= {"vmlinux.h", "prelude.h", "prelude.h.pch"}
    os.utime(entry / "vmlinux.h", (1, 1))  # the PCH no longer matches its header
    assert compiler.compile_c("int z;").cold  # rebuilt, not a compile error


def test_struct_values_same_dataframe_as_bcc() -> None:
    src = """
struct key_t { u32 pid; char comm[16]; };
struct val_t { u64 calls; u32 last_cpu; s16 small; };
BPF_HASH(stats, struct key_t, struct val_t);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    COMM_FILTER
    struct key_t k = {};
    k.pid = bpf_get_current_pid_tgid() >> 32;
    bpf_get_current_comm(&k.comm, sizeof(k.comm));
    struct val_t zero = {};
    struct val_t *v = stats.lookup_or_try_init(&k, &zero);
    if (!v) return 0;
    __sync_fetch_and_add(&v->calls, 1);
    v->last_cpu = 7;
    v->small = -3;
    return 0;
}
""".replace("COMM_FILTER", COMM_FILTER)
    flags = comm_cflags(COMM)
    pid, by_bcc, by_lb = _on_both(src, flags, "stats", 77)
    assert by_lb.to_dict("records") == [
        {"pid": pid, "comm": COMM, "calls": 77, "last_cpu": 7, "small": -3}]
    assert by_lb.equals(by_bcc)
    assert list(by_lb.dtypes) == list(by_bcc.dtypes)


def test_perf_output_event_type_from_source() -> None:
    m = LibbpfModule(event_source(ring=False), comm_cflags(COMM))
    try:
        m.autoattach()
        t = m.table("perf")
        assert [f[0] for f in t.event_type._fields_] == ["pid", "seq", "ts", "comm"]
        v = MapView("perf", t.map_fd, t.Key, t.Leaf)
        v.event_reader(t.event_type)  # open the per-CPU buffers before the workload runs
        pid = run(25)
        df = v.events(duration=None)
        v.release()
    finally:
        m.close()
    assert df["pid"].tolist() == [pid] * 25
    assert sorted(df["seq"]) == list(range(25))
    assert set(df["comm"]) == {COMM}


def test_auto_picks_libbpf_here_and_bcc_for_bcc_only_programs() -> None:
    from bpfnb.backends.select import choose, make_module

    assert choose(COUNT_BY_PID).backend == "libbpf"
    assert choose(COUNT_BY_PID).reason.startswith("auto: kernel BTF, clang and libbpf v1.")
    hack = '__attribute__((section("maps/sockhash"))) struct t_t t = {};'
    assert choose(hack) == Choice("bcc", "auto: the program declares maps through bcc's "
                                  "internal sections (bcc only)")
    assert choose(COUNT_BY_PID, "bcc").backend == "bcc"
    with pytest.raises(FeatureUnavailableError, match="only the bcc backend"):
        choose(hack, "libbpf")
    with pytest.raises(BpfnbError, match="unknown backend"):
        choose(COUNT_BY_PID, "llvm")
    from bpfnb.backends.select import status

    state = status()
    assert state["auto picks"].startswith("libbpf (auto: kernel BTF, clang and libbpf v1.")
    assert state["prelude for this kernel"] == "built"
    module, choice = make_module(COUNT_BY_PID)
    try:
        assert (type(module).__name__, choice.backend) == ("LibbpfModule", "libbpf")
        assert module.table_names() == ["by_pid"]
    finally:
        module.close()


def test_close_releases_every_fd() -> None:
    src = COUNT_BY_PID + "int on_sample(struct bpf_perf_event_data *ctx) { return 0; }\n"
    LibbpfModule(src).close()  # warm the caches (libbpf's first-use probes keep nothing)
    spare.waiting()  # the compiles' background work (a spare clang, a cache write) done
    objcache.wait()
    before = open_fds()
    m = LibbpfModule(src)
    m.autoattach()
    m.attach_perf_event("on_sample", 1, 0, sample_period=0, sample_freq=99, pid=-1, cpu=-1)
    assert len(open_fds()) > len(before)
    m.close()
    m.close()  # idempotent
    assert open_fds() == before
    assert m.attached == []


USDT = """
BPF_HASH(values, u64, u64);
int on_recorded(struct pt_regs *ctx) {
    u64 v = 0;
    bpf_usdt_readarg(1, ctx, &v);
    values.increment(v);
    return 0;
}
"""


def test_usdt_arguments_at_load_and_later(workload: Path) -> None:
    require(features.uprobes())
    from bpfnb.backends.bcc import Usdt

    m = LibbpfModule(USDT, usdt=[Usdt("recorded", "on_recorded", str(workload))])
    later = LibbpfModule(USDT.replace("values", "later"))
    try:
        later.attach_usdt("bpfnb:recorded", "on_recorded", str(workload), None)
        run_workload(workload, "record", 4, 9, 4)
        got = {k: v.value for k, v in items(m, "values")}
        got_later = {k: v.value for k, v in items(later, "later")}
        assert [str(a) for a in m.attached] == [f"usdt:{workload}:bpfnb:recorded"]
    finally:
        m.close()
        later.close()
    assert got == got_later == {4: 2, 9: 1}


def test_rewrite_sections_for_bcc_probe_names() -> None:
    from bpfnb.backends.libbpf.rewrite import rewrite

    r = rewrite("int kprobe__sys_clone(struct pt_regs *ctx, unsigned long flags) { return 0; }\n"
                "int kretprobe__vfs_read(struct pt_regs *ctx) { return 0; }\n"
                "int tracepoint__sched__sched_switch(struct tracepoint__sched__sched_switch "
                "*args) { return args->prev_pid; }\n"
                "static inline int helper(void) { return 0; }\n"
                "int on_xdp(struct xdp_md *ctx) { return XDP_PASS; }\n")
    assert r.sections == {"kprobe__sys_clone": "ksyscall/clone",
                          "kretprobe__vfs_read": "kretprobe/vfs_read",
                          "tracepoint__sched__sched_switch": "tracepoint/sched/sched_switch",
                          "on_xdp": "bpfnb/on_xdp"}
    assert "int BPF_KSYSCALL(kprobe__sys_clone, unsigned long flags)" in r.text
    assert r.tracepoints == [("sched", "sched_switch")]


def test_consts_set_per_load_on_one_cached_object() -> None:
    src = """
const volatile u32 target = 0;
const volatile u64 weight = 1;
BPF_HASH(counts, u32, u64);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (tgid != target) return 0;
    counts.increment(tgid, weight);
    return 0;
}
"""
    from bpfnb.backends.libbpf.module import LibbpfModule as Module

    results = []
    for weight in (2, 5):
        proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()\n"
                                 "import os\nfor _ in range(30): os.getpid()"],
                                stdin=subprocess.PIPE)
        m = Module(src, consts={"target": proc.pid, "weight": weight})
        try:
            m.autoattach()
            proc.communicate(b"", timeout=60)
            results.append(({k: v.value for k, v in items(m, "counts")}, proc.pid,
                            m.cached_object, m.table_names()))
        finally:
            m.close()
    (first, pid1, _, tables), (second, pid2, cached, _) = results
    assert (first, second) == ({pid1: 60}, {pid2: 150})
    assert cached  # the second load compiled nothing
    assert tables == ["counts"]  # .rodata is not a table


TASK_PTR = "struct task_struct *t = (struct task_struct *)bpf_get_current_task();\n"


@pytest.mark.parametrize(("line", "flagged"), [
    ("u32 p = BPF_CORE_READ(t, tgid);", False),
    ("bpf_probe_read_kernel(&p, 4, &t->pid);", False),
    ("u64 a = (u64)&t->pid;", False),
    ("if (x && t->pid) return 0;", True),
    ("u32 p = t->tgid;", True),
])
def test_implicit_kernel_reads_are_flagged(line: str, flagged: bool) -> None:
    from bpfnb.backends.libbpf.rewrite import check_kernel_derefs

    if not flagged:
        check_kernel_derefs(TASK_PTR + line)
        return
    with pytest.raises(CompileError, match=r"^Use BPF_CORE_READ\(t, (pid|tgid)\)"):
        check_kernel_derefs(TASK_PTR + line)
    packet = "struct ethhdr *eth = data;\nreturn eth->h_proto;"  # packet pointers are fine
    check_kernel_derefs(packet)


# -- through Program: bpfnb.load / bpfnb.load_object ----------------------------------------
MANY = """
struct key_t { u32 pid; char comm[16]; };
BPF_HASH(by_task, struct key_t, u64);
BPF_PERCPU_ARRAY(per_cpu, u64, 4);
BPF_HISTOGRAM(dist);
BPF_ARRAY(arr, u32, 8);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    COMM_FILTER
    struct key_t k = {};
    k.pid = bpf_get_current_pid_tgid() >> 32;
    bpf_get_current_comm(&k.comm, sizeof(k.comm));
    by_task.increment(k);
    int i = 1;
    per_cpu.increment(i);
    dist.increment(bpf_log2l(k.pid));
    u32 *a = arr.lookup(&i);
    if (a) __sync_fetch_and_add(a, 2);
    return 0;
}
""".replace("COMM_FILTER", COMM_FILTER)


def test_both_backends_give_identical_dataframes() -> None:
    flags = comm_cflags(COMM)
    with bpfnb.load(MANY, name="auto", cflags=flags) as auto, \
            bpfnb.load(MANY, name="old", cflags=flags, backend="bcc") as old:
        pid = run(50)
        frames = [{n: p[n].df() for n in p.map_names} for p in (auto, old)]
        per_cpu = [p["per_cpu"].df(per_cpu=True) for p in (auto, old)]
        hists = [p["dist"].hist() for p in (auto, old)]
        assert (auto.backend, old.backend) == ("libbpf", "bcc")
        assert auto.map_names == old.map_names == ["arr", "by_task", "dist", "per_cpu"]
    for name in frames[1]:
        pd.testing.assert_frame_equal(frames[0][name], frames[1][name])
    pd.testing.assert_frame_equal(*per_cpu)
    pd.testing.assert_frame_equal(*hists)
    assert frames[0]["by_task"].to_dict("records") == [{"pid": pid, "comm": COMM, "value": 50}]
    assert frames[0]["arr"]["value"].tolist() == [0, 100, 0, 0, 0, 0, 0, 0]
    assert hists[0]["count"].sum() == 50


def test_program_says_which_backend_ran_and_why(tmp_path: Path) -> None:
    import json
    import zipfile

    from bpfnb.store.recording import record

    with bpfnb.load("BPF_HASH(m, u32, u64);", name="<b>x</b>") as prog:
        assert prog.backend == "libbpf"
        assert prog.backend_reason == f"auto: {libbpf_ready().reason}"
        assert prog.summary()["backend"] == "libbpf"
        card = prog._repr_html_()
        assert "backend: libbpf (auto: kernel BTF" in card and "<b>x</b>" not in card
        record(prog, tmp_path / "r.zip", every=0.01, count=1)
    meta = json.loads(zipfile.ZipFile(tmp_path / "r.zip").read("meta.json"))
    assert meta["backend"] == {"name": "libbpf", "reason": prog.backend_reason}
    with bpfnb.load("BPF_HASH(m, u32, u64);", backend="bcc") as prog:
        assert (prog.backend, prog.backend_reason) == ("bcc", "backend='bcc' was asked for")
        assert "backend: bcc" in prog._repr_html_()


def test_load_object_is_a_program(tmp_path: Path) -> None:
    out, consts = _build_tool(tmp_path)
    base = open_fds()
    with bpfnb.load_object(out, consts=consts) as prog:
        assert (prog.name, prog.backend) == ("tool", "libbpf")
        assert [str(a) for a in prog.attach_points] == ["tracepoint:syscalls:sys_enter_getpid"]
        assert prog.map_names == ["counts", "rb"]
        pid = run(40)
        counts = prog["counts"].df()
        events = prog["rb"].events(duration=None, event_type=ct.c_uint32)
    assert counts.to_dict("records") == [{"key": pid, "value": 120}]
    assert len(events) == 40 and set(events.iloc[:, 0]) == {pid}
    assert open_fds() == base
    with bpfnb.load_object(out.read_bytes(), attach=False, consts=consts) as prog:
        assert (prog.name, prog.attach_points) == ("object", [])


def test_nul_byte_is_a_compile_error_on_libbpf_too() -> None:
    with pytest.raises(CompileError, match=r"line 2, column 5 holds a NUL byte"):
        bpfnb.load("BPF_HASH(m, u32, u64);\nint \0x;", backend="libbpf")


def test_profiler_built_once_then_loaded_without_compiling() -> None:
    from bpfnb.profiler.programs import profiler_program

    profiler_program(1).close()  # built (or taken from the cache)
    with profiler_program(os.getpid(), kernel=False) as prog:
        assert prog.backend == "libbpf" and prog.module.cached_object
        prog.attach_perf_event("on_sample", sample_freq=999)
        end = time.process_time() + 0.3
        while time.process_time() < end:
            pass
        df = prog["counts"].df()
    assert len(df) and set(df["pid"]) == {os.getpid()}
    assert set(df["kernel_stack_id"]) == {-1}


def test_doctor_shows_each_backend_and_what_auto_picks() -> None:
    report = bpfnb.doctor()
    assert report.row("backends", "libbpf").status == "ok"
    assert report.row("backends", "auto picks").detail == \
        f"libbpf (auto: {libbpf_ready().reason})"
    headers = features.kernel_headers()
    assert report.row("backends", "headers match (bcc)").status == (
        "no" if not headers else "warn" if headers.reason else "ok")


def test_without_clang_auto_runs_bcc_and_says_why(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.delenv("CLANG", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no clang on it
    assert libbpf_ready().reason == "clang is not installed"
    with pytest.raises(FeatureUnavailableError, match="libbpf backend cannot run here: clang"):
        bpfnb.load("BPF_HASH(m, u32, u64);", backend="libbpf")
    with bpfnb.load("BPF_HASH(m, u32, u64);") as prog:
        assert (prog.backend, prog.backend_reason) == (
            "bcc", "auto: libbpf unavailable (clang is not installed)")
