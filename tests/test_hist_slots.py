"""hist() against bcc's print_log2_hist in every one of the 65 log2 slots (values to 2^64-1),
for array, hash (argdist's u64 keys), per-CPU and struct-keyed (section) histograms."""

from __future__ import annotations

import contextlib
import ctypes as ct
import io
import re

import pytest

from conftest import on_both_backends

pytestmark = pytest.mark.usefixtures("kernel")

SLOTS = r"""
#include <uapi/linux/ptrace.h>
typedef struct { u64 sec; u64 slot; } sec_t;
BPF_HISTOGRAM(dist, int, 65);
BPF_HASH(hdist, u64, u64, 128);
BPF_PERCPU_ARRAY(pdist, u64, 65);
BPF_HISTOGRAM(sdist, sec_t, 256);
int on_doubled(struct pt_regs *ctx) {
    u64 v = PT_REGS_PARM1(ctx);
    int s = v ? bpf_log2l(v) : 0;
    u64 hs = s;
    dist.increment(s);
    hdist.increment(hs);
    u64 *p = pdist.lookup(&s);
    if (p) *p += 1;
    sec_t k = {};
    k.sec = hs % 3;
    k.slot = s;
    sdist.increment(k);
    return 0;
}
"""


def _value(slot: int) -> int:
    """A value bpf_log2l puts in `slot` (slot 0: the value 0, counted there explicitly)."""
    return 0 if slot == 0 else 1 << (slot - 1)


VALUES = [_value(s) for s in range(65) for _ in range(s + 1)]  # slot s: s+1 values


def _printed(print_fn) -> dict[str, list[tuple[int, int, int]]]:
    """bcc's printed rows (low, high, count), per section ('' when there are none)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        print_fn()
    out: dict[str, list[tuple[int, int, int]]] = {}
    section = ""
    for line in buf.getvalue().splitlines():
        head = re.match(r"Bucket ptr = (\d+)", line)
        if head:
            section = head.group(1)
        row = re.match(r"^\s*(\d+)\s*->\s*(\d+)\s*:\s*(\d+)", line)
        if row:
            out.setdefault(section, []).append(tuple(int(x) for x in row.groups()))
    return out


def _rows(h) -> list[tuple[int, int, int]]:
    return [(int(lo), int(hi), int(c)) for lo, hi, c in zip(h["low"], h["high"], h["count"])]


@pytest.fixture(scope="module")
def slot_programs(workload):
    """The program on both backends (auto: libbpf where it runs); bcc's printer is the
    reference for both."""
    with on_both_backends(SLOTS, "slots", workload, "doubled", "on_doubled", *VALUES) as progs:
        yield progs


@pytest.fixture(params=["auto", "bcc"])
def slots(request, slot_programs):
    return slot_programs[request.param]


@pytest.fixture
def bcc_slots(slot_programs):
    return slot_programs["bcc"]


@pytest.mark.parametrize("name", ["dist", "hdist"])
def test_every_slot_matches_bcc(slots, bcc_slots, name):
    h = slots[name].hist()
    printed = _printed(lambda: bcc_slots.module.table(name).print_log2_hist())[""]
    assert len(printed) == 64  # bcc prints slots 1..64
    assert _rows(h) == printed
    assert _rows(h)[-1] == (1 << 63, (1 << 64) - 1, 65)
    assert _rows(h)[0] == (0, 1, 2)


def test_per_cpu_slots_match_bcc(slots, bcc_slots):
    table = bcc_slots.module.bpf.get_table(
        b"pdist", reducer=lambda a, b: ct.c_uint64(getattr(a, "value", a) + b))
    printed = _printed(table.print_log2_hist)[""]
    assert _rows(slots["pdist"].hist()) == printed
    assert [c for _, _, c in printed] == list(range(2, 66))


def test_section_slots_match_bcc(slots, bcc_slots):
    h = slots["sdist"].hist()
    assert list(h.columns) == ["sec", "low", "high", "count"]
    printed = _printed(bcc_slots.module.table("sdist").print_log2_hist)
    assert sorted(printed) == ["0", "1", "2"]
    for sec, rows in printed.items():
        assert _rows(h[h.sec == int(sec)]) == rows
    assert _rows(h[h.sec == 1])[-1] == (1 << 63, (1 << 64) - 1, 65)
