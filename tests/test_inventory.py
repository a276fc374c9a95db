"""The machine's BPF state as DataFrames, checked against bpftool and bpftrace on a real kernel.

A bcc program of our own (a struct-keyed map on sys_enter_getpid) and, for one test, a
bpftrace one-liner are loaded; workloads call getpid() a known number of times under a
known comm. Other processes may load and unload programs meanwhile, so comparisons are
over the objects that exist before and after the bpftool call.
"""

from __future__ import annotations

import ctypes as ct
import gc
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bpfnb._sys import bpfsys
from bpfnb.errors import BpfnbError, MapError
from bpfnb.machine.external import ExternalMap, open_map, pin, pinned, unpin
from bpfnb.machine.inventory import ProgramStats, links, maps, programs, stats_sysctl

COMM_LEN = 16
BPFTRACE_SCRIPT = "tracepoint:syscalls:sys_enter_getpid { @counts[comm] = count(); }"

PROGRAM = r"""
#include <linux/sched.h>

enum state { IDLE = 0, BUSY = 1, RUNNING = 2 };

struct key_t {
    u32 pid;
    char comm[TASK_COMM_LEN];
    enum state st;
};

struct val_t {
    u64 count;
    s32 neg;
    u16 arr[2];
    struct { u8 a; u8 b; } inner;
    union { u32 x; u16 y; } u;
    unsigned int bits : 3;
    void *ptr;
};

BPF_HASH(by_key, struct key_t, struct val_t, 1024);

TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    struct key_t key = {};
    key.pid = bpf_get_current_pid_tgid() >> 32;
    bpf_get_current_comm(&key.comm, sizeof(key.comm));
    key.st = RUNNING;
    struct val_t zero = {};
    struct val_t *val = by_key.lookup_or_try_init(&key, &zero);
    if (val) {
        __sync_fetch_and_add(&val->count, 1);
        val->neg = -1;
        val->arr[0] = 1;
        val->arr[1] = 2;
        val->inner.a = 7;
        val->u.x = 0x10002;
    }
    return 0;
}
"""

WORKLOAD = """
import ctypes, os, sys
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)  # PR_SET_NAME
for _ in range(int(sys.argv[2])):
    os.getpid()
os._exit(0)
"""


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("reading the machine's BPF objects needs root (CAP_SYS_ADMIN)")


def _run_getpids(comm: str, n: int) -> int:
    """Run a process called `comm` that calls getpid() `n` times; return its pid."""
    proc = subprocess.Popen([sys.executable, "-c", WORKLOAD, comm, str(n)])
    assert proc.wait(timeout=30) == 0
    return proc.pid


def _comm(tag: str) -> str:
    return f"bpfnb{tag}{os.getpid() % 100000}"[: COMM_LEN - 1]


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _bpftool(*args: str) -> list[dict]:
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool is not installed (apt-get install bpftool)")
    out = subprocess.run(["bpftool", "-j", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout or "[]")


def _exists(kind: int, obj_id: int) -> bool:
    try:
        os.close(bpfsys.fd_by_id(kind, obj_id))
    except FileNotFoundError:
        return False
    return True


def _type_matches(ours: str, theirs: object, enum: type) -> bool:
    """bpftool prints libbpf's lower-case names, or the number for types libbpf predates."""
    if isinstance(theirs, int):
        return ours == enum(theirs).name
    return ours.lower() == theirs


@pytest.fixture(scope="module")
def bcc_prog() -> Iterator[tuple[object, int, int]]:
    """(bcc.BPF, program id, map id) of our struct-keyed getpid counter."""
    _need_root()
    try:
        import bcc
    except ImportError as e:
        pytest.skip(f"bcc is not importable ({e}); install python3-bpfcc")
    b = bcc.BPF(text=PROGRAM.encode())
    try:
        map_info = bpfsys.map_info(b[b"by_key"].map_fd)
        df = programs(processes=False)
        prog_id = int(df[df.map_ids.map(lambda ids: map_info.id in ids)].id.iloc[0])
        yield b, prog_id, int(map_info.id)
    finally:
        b.cleanup()


# -- programs() and maps() against bpftool ------------------------------------------------

def _against_bpftool(listing: Any, kind: str, by_id: bpfsys.Cmd, mine: int
                     ) -> tuple[Any, dict[int, dict[str, Any]], set[int]]:
    """(our rows by id, bpftool's by id, the ids alive before and after): `listing()` read
    on either side of `bpftool KIND show`, leaving no fd open, missing nothing bpftool saw
    (but what is gone since) and holding `mine`."""
    fds = _fd_count()
    before = listing()
    theirs = {o["id"]: o for o in _bpftool(kind, "show")}
    after = listing()
    assert _fd_count() == fds, f"{listing.__name__}() left fds open"
    stable = set(before.id) & set(after.id)
    assert mine in stable
    assert stable <= set(theirs), f"bpftool missed {stable - set(theirs)}"
    for gone in set(theirs) - set(before.id) - set(after.id):
        assert not _exists(by_id, gone)
    return after.set_index("id"), theirs, stable


def test_programs_match_bpftool(bcc_prog: tuple[object, int, int]) -> None:
    _b, prog_id, map_id = bcc_prog
    rows, theirs, stable = _against_bpftool(programs, "prog", bpfsys.Cmd.PROG_GET_FD_BY_ID,
                                            prog_id)
    for pid in stable:
        ours, bt = rows.loc[pid], theirs[pid]
        assert ours["name"] == bt.get("name", ""), pid
        assert _type_matches(ours["type"], bt["type"], bpfsys.ProgType), pid
        assert ours["tag"] == bt["tag"]
        assert ours["bytes_xlated"] == bt["bytes_xlated"]
        assert ours["bytes_jited"] == bt.get("bytes_jited", 0)
        assert ours["bytes_memlock"] == bt["bytes_memlock"]
        assert ours["uid"] == bt["uid"]
        assert ours["gpl"] == bt["gpl_compatible"]
        assert list(ours["map_ids"]) == bt.get("map_ids", [])
        assert abs(ours["loaded_at"].timestamp() - bt["loaded_at"]) <= 1.5
    mine = rows.loc[prog_id]
    assert mine["name"] == "tracepoint__syscalls__sys_enter_getpid"  # completed from BTF
    assert mine["type"] == "TRACEPOINT"
    assert map_id in mine["map_ids"]
    assert os.getpid() in mine["pids"]
    assert "tracepoint:syscalls:sys_enter_getpid" in mine["attached"]


def test_maps_match_bpftool(bcc_prog: tuple[object, int, int]) -> None:
    _b, prog_id, map_id = bcc_prog
    rows, theirs, stable = _against_bpftool(maps, "map", bpfsys.Cmd.MAP_GET_FD_BY_ID, map_id)
    static_memlock = {"HASH", "ARRAY", "PERCPU_HASH", "PERCPU_ARRAY"}
    for mid in stable:
        ours, bt = rows.loc[mid], theirs[mid]
        assert ours["name"] == bt.get("name", ""), mid
        assert _type_matches(ours["type"], bt["type"], bpfsys.MapType), mid
        assert ours["key_size"] == bt["bytes_key"]
        assert ours["value_size"] == bt["bytes_value"]
        assert ours["max_entries"] == bt["max_entries"]
        assert ours["flags"] == bt["flags"]
        if ours["btf_id"]:  # bpftool 7.1 shows a leftover btf_id (varying) for some maps
            assert ours["btf_id"] == bt.get("btf_id", 0), mid  # without BTF: check ours only
        assert ours["frozen"] == bool(bt.get("frozen", 0))
        if ours["type"] in static_memlock and not ours["flags"] & 1:  # BPF_F_NO_PREALLOC
            assert ours["bytes_memlock"] == bt["bytes_memlock"]
    mine = rows.loc[map_id]
    assert (mine["name"], mine["type"]) == ("by_key", "HASH")
    assert prog_id in mine["prog_ids"]
    assert os.getpid() in mine["pids"]
    assert mine["btf_key_type_id"] and mine["btf_value_type_id"]


def test_links_match_bpftool(bcc_prog: tuple[object, int, int], pin_dir: Path) -> None:
    import bcc

    from bpfnb._sys import bpfobjs

    raw = bcc.BPF(text=b"RAW_TRACEPOINT_PROBE(sched_switch) { return 0; }")
    try:
        fds = _fd_count()
        df = links()
        theirs = {link["id"]: link for link in _bpftool("link", "show")}
        after = links(processes=False)
        assert _fd_count() == fds
        assert list(df.columns) == ["id", "type", "prog_id", "target", "pids", "comms"]
        stable = set(df.id) & set(after.id)
        assert stable <= set(theirs)
        rows = df.set_index("id")
        for lid in stable:
            assert rows.loc[lid, "type"].lower() == theirs[lid]["type"]
            assert rows.loc[lid, "prog_id"] == theirs[lid]["prog_id"]
        mine = df[(df.type == "RAW_TRACEPOINT") & df.pids.map(lambda p: os.getpid() in p)]
        assert len(mine) == 1
        assert mine.target.iloc[0] == "raw_tracepoint:sched_switch"
        link_id, prog_id = int(mine.id.iloc[0]), int(mine.prog_id.iloc[0])
        progs = programs().set_index("id")
        assert progs.loc[prog_id, "links"] == [link_id]
        assert progs.loc[prog_id, "attached"] == ["raw_tracepoint:sched_switch"]

        # pinned() tells links and programs apart
        with bpfobjs.opened(bpfobjs.Kind.LINK, link_id) as lfd:
            pin(lfd, str(pin_dir / "link"))
        with bpfobjs.opened(bpfobjs.Kind.PROG, prog_id) as pfd:
            pin(pfd, str(pin_dir / "prog"))
        listed = pinned(str(pin_dir)).set_index("kind")
        assert listed.loc["link", "id"] == link_id
        assert listed.loc["link", "name"] == "raw_tracepoint:sched_switch"
        assert (listed.loc["prog", "id"], listed.loc["prog", "type"]) == (prog_id,
                                                                          "RAW_TRACEPOINT")
        with pytest.raises(MapError, match="not a map"):
            open_map(pinned=str(pin_dir / "prog"))
        unpin(str(pin_dir / "link"))
        unpin(str(pin_dir / "prog"))
        assert _fd_count() == fds
    finally:
        raw.cleanup()


# -- open_map and BTF ---------------------------------------------------------------------

def test_btf_struct_keyed_map(bcc_prog: tuple[object, int, int]) -> None:
    b, _prog_id, map_id = bcc_prog
    comm = _comm("k")
    pid = _run_getpids(comm, 321)
    fds = _fd_count()
    with open_map(id=map_id) as m:
        assert isinstance(m, ExternalMap)
        assert (m.types.key_decl, m.types.value_decl) == ("struct key_t", "struct val_t")
        assert not m.notes
        # the layout agrees with bcc's own ctypes key type, field by field
        bcc_key = b[b"by_key"].Key  # type: ignore[index]
        assert ct.sizeof(m.key_type) == ct.sizeof(bcc_key)
        for name in ("pid", "comm", "st"):
            assert getattr(m.key_type, name).offset == getattr(bcc_key, name).offset
        df = m.df()
        assert _fd_count() == fds + 1
    assert _fd_count() == fds
    row = df[df.comm == comm]
    assert len(row) == 1, df
    r = row.iloc[0]
    assert r["pid"] == pid and r["count"] == 321
    assert r["st"] == "RUNNING"
    assert r["neg"] == -1 and (r["arr[0]"], r["arr[1]"]) == (1, 2)
    assert (r["inner.a"], r["inner.b"]) == (7, 0)
    assert (r["u.x"], r["u.y"]) == (0x10002, 2)
    assert r["ptr"] == "0x0" and r["bits"] == 0  # pointers in hex; bit fields are columns
    assert str(df.dtypes["pid"]) == "uint32" and str(df.dtypes["count"]) == "uint64"
    assert str(df.dtypes["neg"]) == "int32" and str(df.dtypes["arr[0]"]) == "uint16"
    with open_map(id=map_id, decode_enums=False) as m:
        assert set(m.df().st) == {2}


def test_btf_lays_out_every_kernel_struct() -> None:
    from bpfnb._sys import bpfattrs, bpfobjs
    from bpfnb._sys.btf import Btf, BtfKind

    path = Path("/sys/kernel/btf/vmlinux")
    if not path.exists():
        pytest.skip("the kernel has no BTF (/sys/kernel/btf/vmlinux; CONFIG_DEBUG_INFO_BTF)")
    btf = Btf.from_file(str(path))
    records = [t for t in btf.types() if t.kind in (BtfKind.STRUCT, BtfKind.UNION)]
    wrong = [t.name for t in records if ct.sizeof(btf.ctype(t.id)) != t.size_or_type]
    assert len(records) > 1000 and not wrong

    # the bpf_link_info offsets bpfnb reads by hand agree with this kernel's layout
    info = btf.ctype(btf.find("bpf_link_info", BtfKind.STRUCT))
    union = dict(info._fields_)["_anon0"]
    base = info._anon0.offset

    def at(*names: str) -> int:
        ctype, off = union, base
        for name in names:
            off += getattr(ctype, name).offset
            ctype = dict(ctype._fields_)[name]
        return off

    assert bpfobjs.LINK_NAME_SLOTS[1] == (at("raw_tracepoint", "tp_name"),
                                         at("raw_tracepoint", "tp_name_len"))
    assert bpfobjs.LINK_NAME_SLOTS[4] == (at("iter", "target_name"),
                                         at("iter", "target_name_len"))
    assert bpfobjs.LINK_NAME_SLOTS[12] == (at("uprobe_multi", "path"),
                                          at("uprobe_multi", "path_size"))
    perf = ("perf_event", "_anon0", "tracepoint")
    assert (at(*perf, "tp_name"), at(*perf, "name_len")) == bpfobjs.PERF_NAME_SLOT
    assert ct.sizeof(info) <= bpfattrs.LINK_INFO_SIZE


def test_live_view_of_an_external_map(bcc_prog: tuple[object, int, int]) -> None:
    pytest.importorskip("ipywidgets")
    from bpfnb.live.widgets import live_view

    _b, _prog_id, map_id = bcc_prog
    comm = _comm("l")
    _run_getpids(comm, 7)
    with open_map(id=map_id) as m:
        view = live_view(m, every=0.2, top=100_000, start=False)
        try:
            assert comm in repr(view)
        finally:
            view.close()


def test_open_map_closes_its_fd_when_collected(bcc_prog: tuple[object, int, int]) -> None:
    _b, _prog_id, map_id = bcc_prog
    fds = _fd_count()
    m = open_map(id=map_id)
    assert _fd_count() == fds + 1
    del m
    gc.collect()
    assert _fd_count() == fds
    m = open_map(id=map_id)
    m.close()
    m.close()
    assert m.closed and _fd_count() == fds
    with pytest.raises(BpfnbError, match="open it again"):
        m.df()


def test_open_map_errors() -> None:
    _need_root()
    with pytest.raises(MapError, match="exactly one"):
        open_map()
    with pytest.raises(MapError, match=r"bpfnb\.maps\(\)"):
        open_map(id=2**31 - 2)
    with pytest.raises(MapError, match="no BPF map is called"):
        open_map(name="no_such_map_xyz")


@pytest.fixture
def bpftrace() -> Iterator[subprocess.Popen[str]]:
    """A running bpftrace counting getpid() calls per comm; stopped however the test ends."""
    _need_root()
    if shutil.which("bpftrace") is None:
        pytest.skip("bpftrace is not installed (apt-get install bpftrace)")
    proc = subprocess.Popen(["bpftrace", "-e", BPFTRACE_SCRIPT], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline() if ready else ""
        if "Attaching" not in line:
            proc.kill()
            pytest.fail(f"bpftrace did not start: {line!r} {proc.communicate()[1][-500:]}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _bpftrace_map(proc: subprocess.Popen[str], timeout: float = 10.0) -> int:
    """The id of bpftrace's AT_counts map, found through the processes holding maps."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        df = maps()
        hit = df[(df.name == "AT_counts") & df.pids.map(lambda p: proc.pid in p)]
        if len(hit):
            return int(hit.id.iloc[0])
        time.sleep(0.1)
    pytest.fail("bpftrace's AT_counts map did not show up in maps()")


def test_bpftrace_map_matches_what_bpftrace_prints(bpftrace: subprocess.Popen[str]) -> None:
    map_id = _bpftrace_map(bpftrace)
    progs = programs()
    theirs = progs[progs.pids.map(lambda p: bpftrace.pid in p)]
    assert "tracepoint:syscalls:sys_enter_getpid" in theirs.attached.iloc[0]
    assert map_id in theirs.map_ids.iloc[0]

    try:
        by_name = open_map(name="@counts")
    except MapError as e:  # another bpftrace with an @counts map is running too
        assert str(map_id) in str(e) and "open_map(id=" in str(e)
    else:
        with by_name:
            assert by_name.info.id == map_id

    raw = open_map(id=map_id)
    typed = open_map(id=map_id, key=ct.c_char * COMM_LEN, value=ct.c_uint64)
    try:
        assert raw.btf_id == 0 and raw.types.raw_key and raw.types.raw_value
        deadline = time.monotonic() + 10  # bpftrace prints "Attaching" before it attaches
        while not len(typed.df()) and time.monotonic() < deadline:
            os.getpid()
            time.sleep(0.05)
        comm, n = _comm("t"), 1234
        _run_getpids(comm, n)
        df = typed.df()
        raw_df = raw.df()
    finally:
        raw.close()
        typed.close()
    counts = dict(zip(df.key, df.value))
    assert counts[comm] == n
    assert str(df.dtypes["value"]) == "uint64"
    # raw bytes: the comm padded with NULs, one 8-byte value per CPU
    raw_row = raw_df[raw_df.key == comm.encode().ljust(COMM_LEN, b"\0")]
    assert sum(int.from_bytes(v, "little") for v in raw_row.value.iloc[0]) == n

    bpftrace.send_signal(signal.SIGINT)
    out, _err = bpftrace.communicate(timeout=15)
    printed = {m[1]: int(m[2]) for m in re.finditer(r"^@counts\[(.*)\]: (\d+)$", out, re.M)}
    assert printed[comm] == n
    for key, value in counts.items():  # others may have called getpid() after our read
        assert printed.get(key, 0) >= value, key


# -- pinning --------------------------------------------------------------------------------

@pytest.fixture
def pin_dir() -> Iterator[Path]:
    _need_root()
    root = Path("/sys/fs/bpf")
    if not root.is_dir():
        pytest.skip("no bpf file system at /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf)")
    path = root / f"bpfnb-test-{os.getpid()}"
    try:
        yield path
    finally:
        for entry in sorted(path.rglob("*"), reverse=True) if path.exists() else []:
            entry.rmdir() if entry.is_dir() else entry.unlink()
        if path.exists():
            path.rmdir()


def test_pin_round_trip(bcc_prog: tuple[object, int, int], pin_dir: Path) -> None:
    _b, _prog_id, map_id = bcc_prog
    target = pin_dir / "sub" / "by_key"
    with open_map(id=map_id) as m:
        assert pin(m, str(target)) == str(target)
        with pytest.raises(BpfnbError, match="already exists"):
            pin(m, str(target))
    listed = pinned(str(pin_dir))
    assert list(listed.path) == [str(target)]
    assert (listed.kind.iloc[0], listed.id.iloc[0], listed.name.iloc[0]) == ("map", map_id,
                                                                            "by_key")
    assert listed.type.iloc[0] == "HASH"
    with open_map(pinned=str(target)) as again:
        assert again.info.id == map_id
        assert "count" in again.df().columns
    unpin(str(target))
    assert len(pinned(str(pin_dir))) == 0
    with pytest.raises(BpfnbError, match="nothing is pinned"):
        unpin(str(target))
    with pytest.raises(BpfnbError, match="not on a bpf file system"):
        unpin("/tmp/not-a-pin")


# -- run-time statistics -----------------------------------------------------------------------

def test_stats_rates_follow_a_workload(bcc_prog: tuple[object, int, int]) -> None:
    _b, prog_id, _map_id = bcc_prog
    sysctl_before = stats_sysctl()
    n = 20000
    with ProgramStats() as stats:
        assert stats.switch is not None and stats.switch.on
        first = stats.sample()
        assert first.events_per_s.isna().all()
        _run_getpids(_comm("s"), n)
        rates = stats.sample().set_index("id")
        mine = rates.loc[prog_id]
        assert mine["run_cnt"] >= n
        assert mine["events_per_s"] > 0 and mine["cpu_pct"] > 0 and mine["avg_run_ns"] > 0
        assert len(stats.history[prog_id]) == 1
        snap = stats.snapshot()
        assert prog_id in set(snap.id)
    assert stats_sysctl() == sysctl_before


def test_top_renders_a_static_snapshot_and_stops(bcc_prog: tuple[object, int, int]) -> None:
    from bpfnb.live.poller import running
    from bpfnb.live.top import top

    _b, prog_id, _map_id = bcc_prog
    view = top(every=0.2, limit=500)
    try:
        os.getpid()
        bundle = view._repr_mimebundle_()  # no frontend here: one static snapshot
        assert f"{prog_id:>6} tracepoint__syscalls__sys_" in bundle["text/plain"]
        assert "tracepoint__syscalls__sys_enter_getpid" in bundle["text/html"]
        assert "<table" in bundle["text/html"] and "image/png" not in bundle
        view.start()
        assert view.running
        deadline = time.monotonic() + 10
        while len(view.stats.history.get(prog_id, ())) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(view.stats.history[prog_id]) >= 3
    finally:
        view.close()
    assert not view.running
    assert not [p for p in running() if p.owner is view]
