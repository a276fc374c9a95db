"""bpfnb.probes(): tracepoints with their fields, raw tracepoints and kernel functions from
BTF, uprobes and USDT probes of a binary; the per-boot cache."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import bpfnb
from bpfnb._sys import features
from bpfnb.machine import probes as probes_mod
from bpfnb.symbols import cachedir, stapsdt
from conftest import require, run_workload

pytestmark = pytest.mark.usefixtures("kernel")


def test_tracepoint_arguments_come_from_the_format_file() -> None:
    df = bpfnb.probes("syscalls:sys_enter_open*")
    row = df.set_index("probe").loc["tracepoint:syscalls:sys_enter_openat"]
    assert (row.kind, row.target, row["name"]) == ("tracepoint", "syscalls", "sys_enter_openat")
    assert row.args == ("int __syscall_nr, int dfd, const char * filename, int flags, "
                        "umode_t mode")
    fields = {name: (ctype, offset, size) for name, ctype, offset, size in row.fields}
    assert fields["filename"] == ("const char *", 24, 8)
    fmt = Path(f"{features.tracefs()}/events/syscalls/sys_enter_openat/format").read_text()
    assert f"ID: {row.id}\n" in fmt
    assert set(df.kind) == {"tracepoint"}  # syscalls have no raw tracepoints of their own
    both = bpfnb.probes("sched:sched_switch")  # a bare glob spans every kernel kind
    assert both.probe.tolist() == ["tracepoint:sched:sched_switch", "rawtracepoint:sched_switch"]
    assert all(p.startswith("tracepoint:syscalls:sys_enter_open") for p in
               df[df.kind == "tracepoint"].probe)


def test_every_tracepoint_is_listed_from_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once cached, listing reads no format file (the speed is in bench/, not asserted)."""
    bpfnb.probes(kind="tracepoint")  # fills the cache
    probes_mod._MEMO.clear()  # a new process: reads the cache file

    def no_tracefs(root: str) -> list[list[object]]:
        raise AssertionError("the tracepoints were read from tracefs again")

    monkeypatch.setattr(probes_mod, "_tracepoints", no_tracefs)
    df = bpfnb.probes(kind="tracepoint")
    assert set(df.probe) == {f"tracepoint:{e}" for e in features.tracepoints()}
    # arrays and __data_loc strings are spelled as C declarations
    exec_ = bpfnb.probes("tracepoint:sched:sched_process_exec").iloc[0]
    assert exec_.args == "char filename[], pid_t pid, pid_t old_pid"
    switch = bpfnb.probes("tracepoint:sched:sched_switch").iloc[0]
    assert switch.args.startswith("char prev_comm[16], pid_t prev_pid, ")
    assert ("prev_comm", "char[16]", 8, 16) in switch.fields


def test_cache_is_per_boot_and_private() -> None:
    bpfnb.probes(kind="tracepoint")
    where = cachedir.open_cache("probes", users=True)
    assert where is not None and os.fstat(where.fd).st_mode & 0o077 == 0
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    with where:
        (name,) = [n for n in os.listdir(where.fd) if n.startswith(f"tracepoints-{boot}-")]
        data = cachedir.read(where, name)
    assert name.endswith(".json") and data is not None
    assert json.loads(data)["version"] == probes_mod._CACHE_VERSION


def test_raw_tracepoints_and_kernel_functions_have_btf_signatures() -> None:
    require(features.btf())
    raw = bpfnb.probes("rawtracepoint:sched_switch").iloc[0]
    assert (raw.target, raw.args) == ("sched", "bool, struct task_struct *, struct task_struct *, "
                                      "unsigned int")
    fn = bpfnb.probes("kprobe:vfs_read").iloc[0]
    assert fn.args == "ssize_t vfs_read(struct file * file, char * buf, size_t count, loff_t * pos)"
    kp = features.kprobes()
    assert (bool(fn.available), fn.note) == (bool(kp), "" if kp else kp.reason)
    fentry = bpfnb.probes("fentry:vfs_read").iloc[0]
    assert fentry.probe == "fentry:vfs_read" and fentry.args == fn.args
    # the kit's own answer: the doctor loads a KFUNC_PROBE on vfs_read the same way
    reason = bpfnb.skip_reason("fentry")
    assert bool(fentry.available) == (reason is None)
    if reason is not None:
        assert fentry.note.startswith("this kernel refuses fentry programs: loading one on "
                                      "vfs_read gives E")
    # a bare glob spans every kernel kind
    assert set(bpfnb.probes("vfs_read").kind) == {"kprobe", "fentry"}


def test_uprobes_of_a_binary_are_its_function_symbols(workload) -> None:  # type: ignore[no-untyped-def]
    df = bpfnb.probes(f"uprobe:{workload}:*")
    nm = subprocess.run(["nm", "--defined-only", str(workload)], capture_output=True,
                        text=True, check=True).stdout
    funcs = {w[2]: int(w[0], 16) for w in (ln.split() for ln in nm.splitlines())
             if len(w) == 3 and w[1] in "tT"}
    got = dict(zip(df.name, df.address))
    for name in ("record", "doubled", "main"):
        assert got[name] == funcs[name]
    assert set(df.probe) >= {f"uprobe:{workload}:record", f"uprobe:{workload}:doubled"}
    assert bpfnb.probes(f"uprobe:{workload}:doub*").name.tolist() == ["doubled"]


def test_usdt_probes_of_a_binary_and_they_attach(workload) -> None:  # type: ignore[no-untyped-def]
    df = bpfnb.probes(f"usdt:{workload}:*")
    assert df.probe.tolist() == [f"usdt:{workload}:bpfnb:recorded"]
    row = df.iloc[0]
    readelf = subprocess.run(["readelf", "-n", str(workload)], capture_output=True, text=True,
                             check=True).stdout
    assert f"Location: {row.address:#018x}" in readelf
    assert f"Arguments: {stapsdt.probes(str(workload))[0].args}" in readelf
    assert row.semaphore == 0 and row.args.startswith("arg0: u64 in ")
    # the listed probe is one that attaches: count its firings
    require(features.uprobes())
    src = """BPF_HASH(hits, u32, u64);
int on_recorded(struct pt_regs *ctx) { u32 k = 0; hits.increment(k); return 0; }"""
    with bpfnb.load(src, usdt=[bpfnb.Usdt("recorded", "on_recorded", str(workload))],
                    backend="bcc") as prog:
        run_workload(workload, "record", 1, 2, 3)
        assert prog["hits"].df().value.tolist() == [3]


def test_libraries_by_name_as_bcc_and_bpftrace_allow() -> None:
    by_name = bpfnb.probes("uprobe:c:malloc")
    (path,) = set(by_name.target)
    assert path.endswith(".so.6") and by_name.name.tolist() == ["malloc"]
    assert bpfnb.probes(f"uprobe:{path}:malloc").address.tolist() == by_name.address.tolist()


def test_bad_patterns_say_what_to_do(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(bpfnb.BpfnbError, match="needs a binary"):
        bpfnb.probes("uprobe::*")
    with pytest.raises(bpfnb.BpfnbError, match="no file"):
        bpfnb.probes(f"usdt:{tmp_path}/missing:*")
    with pytest.raises(bpfnb.BpfnbError, match="belong to a binary"):
        bpfnb.probes("*", kind="uprobe")
    assert bpfnb.probes("kprobe:vfs_read", kind="tracepoint").empty
    with pytest.raises(bpfnb.BpfnbError, match="unknown probe kind"):
        bpfnb.probes("*", kind="nosuch")
    text = tmp_path / "text"
    text.write_text("not elf")
    with pytest.raises(bpfnb.BpfnbError, match="ELF"):
        bpfnb.probes(f"uprobe:{text}:*")
