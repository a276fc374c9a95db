"""RINGBUF and PERF_EVENT_ARRAY events decoded in batches into DataFrames; lost events."""

from __future__ import annotations

import ctypes as ct
import os

import numpy as np
import pytest

import bpfnb
from bpfnb.errors import UnsupportedMapError
from bpfnb.testing import events
from bpfnb.testing.workload import getpid

pytestmark = pytest.mark.usefixtures("kernel")

COMM = f"bpfnb-e{os.getpid() % 100000}"  # this session's workloads only


def load(rb_pages: int = 64, use_rb: bool = True) -> bpfnb.Program:
    return events.load(COMM, ring=use_rb, perf=not use_rb, rb_pages=rb_pages)


def test_ring_buffer_events_as_rows():
    with load() as p:
        rb = p["rb"]
        rb.event_reader()  # open before the workload: nothing is missed either way
        pid = getpid(5000, COMM)
        df = rb.events(duration=0.2, lost_map=p["dropped"])
        assert list(df.columns) == ["pid", "seq", "ts", "comm"]
        assert len(df) == 5000 and df.attrs["lost"] == 0
        assert df["seq"].tolist() == list(range(5000))
        assert (df["pid"] == pid).all() and (df["comm"] == COMM).all()
        assert df["ts"].is_monotonic_increasing and df["seq"].dtype == np.uint32


def test_ring_buffer_max_events_keeps_the_rest():
    with load() as p:
        rb = p["rb"]
        getpid(300, COMM)
        first = rb.events(duration=None, max_events=100)
        rest = rb.events(duration=0.1)
        assert first["seq"].tolist() == list(range(100))
        assert rest["seq"].tolist() == list(range(100, 300))
        assert len(rb.df()) == 0  # df(): what is waiting now


def test_ring_buffer_drops_are_counted():
    with load(rb_pages=1) as p:  # 4 KiB: 102 records of 8 + 32 bytes
        getpid(1000, COMM)
        df = p["rb"].events(duration=0.1, lost_map=p["dropped"])
        assert len(df) == 4096 // 40
        assert df.attrs["lost"] == 1000 - len(df)
        assert df["seq"].tolist() == list(range(len(df)))


def test_perf_buffer_events_and_lost_records():
    with load(use_rb=False) as p:
        perf = p["perf"]
        perf.event_reader()  # installs one perf buffer per CPU (64 pages each)
        getpid(20000, COMM, cpu=0)
        first = perf.events(duration=0.2)
        capacity = 64 * 4096 // (8 + 40)  # header + (u32 size + 32-byte event), 8-aligned
        assert len(first) == capacity and (first["cpu"] == 0).all()
        assert first["seq"].tolist() == list(range(capacity))
        getpid(10, COMM, cpu=0)  # the kernel reports losses on next write
        second = perf.events(duration=0.2)
        assert len(second) == 10
        assert second.attrs["lost"] == 20000 - capacity
        assert second["seq"].tolist() == list(range(20000, 20010))


def test_explicit_event_type_and_wrong_map():
    class Small(ct.Structure):
        _fields_ = [("pid", ct.c_uint32), ("seq", ct.c_uint32)]

    with load() as p:
        df = p["rb"].events(duration=0, event_type=Small)
        assert list(df.columns) == ["pid", "seq"] and len(df) == 0
        with pytest.raises(UnsupportedMapError, match="RINGBUF and PERF_EVENT_ARRAY"):
            p["seq"].events(duration=0)
