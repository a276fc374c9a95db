"""bpfnb.syscalls(): numbers and names from the kernel's table; decoding a map's column."""

from __future__ import annotations

import platform

import pandas as pd
import pytest

import bpfnb
from bpfnb._sys import features
from conftest import run_workload

X86_64 = pytest.mark.skipif(platform.machine() != "x86_64", reason="numbers of x86_64")


@X86_64
def test_known_numbers() -> None:
    df = bpfnb.syscalls()
    assert df.index.name == "nr"
    assert (df.loc[39, "name"], df.loc[257, "name"], df.loc[0, "name"]) == \
        ("getpid", "openat", "read")
    assert df.name.is_unique and len(df) > 300
    names = bpfnb.syscall_names(pd.Series([39, 257, 100000], name="key"))
    assert names.tolist() == ["getpid", "openat", "syscall_100000"] and names.name == "key"


def test_names_match_the_syscall_tracepoints() -> None:
    if features.tracefs() is None:
        pytest.skip(str(features.can_trace()))
    df = bpfnb.syscalls()
    enter = {e.split(":")[1].removeprefix("sys_enter_") for e in features.tracepoints()
             if e.startswith("syscalls:sys_enter_")}
    # every traced call is numbered, or listed as one the (older) header lacks
    assert enter and enter == (enter & set(df.name)) | set(df.attrs["unnumbered"])
    assert not set(df.attrs["unnumbered"]) & set(df.name)
    assert df.set_index("name").loc[sorted(enter & set(df.name)), "tracepoint"].all()


@pytest.mark.usefixtures("kernel")
def test_decoding_a_map_keyed_by_syscall_number(workload) -> None:  # type: ignore[no-untyped-def]
    src = """struct call { u32 pid; u32 nr; };
BPF_HASH(calls, struct call, u64);
TRACEPOINT_PROBE(raw_syscalls, sys_enter) {
    char comm[16];
    bpf_get_current_comm(&comm, sizeof(comm));
    if (comm[0] != 'b' || comm[5] != '-' || comm[6] != 'w') return 0;
    struct call key = {bpf_get_current_pid_tgid() >> 32, args->id};
    calls.increment(key);
    return 0;
}"""
    with bpfnb.load(src, backend="bcc") as prog:
        pid = run_workload(workload, "getpid", 250)
        df = prog["calls"].df()
    df = df[df.pid == pid].assign(syscall=lambda d: bpfnb.syscall_names(d["nr"]))
    counts = dict(zip(df.syscall, df.value))
    assert counts["getpid"] == 250 and counts["exit_group"] == 1
