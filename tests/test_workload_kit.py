"""The notebooks' workload kit: the comm filter flags and thread naming, on this kernel."""

from __future__ import annotations

import os
import threading

import pytest

import bpfnb
from bpfnb.testing import workload

FILTERED = """
BPF_ARRAY(calls, u64, 1);
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    u64 comm[2] = {};
    bpf_get_current_comm(comm, sizeof(comm));
    if (comm[0] != COMM_LO || comm[1] != COMM_HI)
        return 0;
    int zero = 0;
    calls.increment(zero);
    return 0;
}
"""


@pytest.fixture
def bpf_ok():
    reason = bpfnb.skip_reason("tracepoint")
    if reason:
        pytest.skip(reason)


def test_workload_cflags_count_only_the_workload(bpf_ok):
    with bpfnb.load(FILTERED, cflags=workload.WORKLOAD_CFLAGS.split()) as prog:
        workload.workload(137)
        workload.getpid(50)                     # another notebook's workload: not counted
        assert prog["calls"][0] == 137


def test_name_thread_is_the_comm_bpf_sees(bpf_ok):
    flags = workload.comm_cflags("getpid-worker")

    def work():
        workload.name_thread("getpid-worker")
        for _ in range(42):
            os.getpid()

    with bpfnb.load(FILTERED, cflags=flags) as prog:
        t = threading.Thread(target=work)
        t.start()
        t.join()
        assert prog["calls"][0] == 42
    assert threading.current_thread().name == "MainThread"


def test_workload_comm_is_this_kernels():
    assert workload.WORKLOAD_COMM.startswith(workload.COMM + "-")
    assert len(workload.WORKLOAD_COMM) <= 15      # the kernel keeps 15 bytes of a comm
    assert workload._base36(36 ** 4 * 35 + 1) == "z0001"


def test_unique_names_differ_per_process():
    assert workload.unique("bnb") != "bnb" and workload.unique("bnb").startswith("bnb")
