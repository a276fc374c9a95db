"""Stacks as a pprof profile: gzip-compressed profile.proto, encoded with the protobuf
library from the schema shipped beside this module (profile.proto -> profile_pb2.py).

On-CPU stacks carry two sample types, samples/count and cpu/nanoseconds (count x the
sampling period); off-CPU stacks (weights in microseconds) carry off_cpu/nanoseconds.
Every distinct (function, module) is one Function and one Location; every module one
Mapping (with its build id where the symbolizer read one), the kernel one
`[kernel.kallsyms]` as perf names it. Process id and name ride along as labels.
"""

from __future__ import annotations

import gzip
import time
from typing import TYPE_CHECKING

from bpfnb.profiler import folding, profile_pb2

if TYPE_CHECKING:
    from bpfnb.profiler.stacks import Stacks

KERNEL_MAPPING = "[kernel.kallsyms]"


class _Strings:
    def __init__(self, table: list[str]) -> None:
        self.table = table
        self.index: dict[str, int] = {}
        self.add("")

    def add(self, s: str) -> int:
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.index)
            self.table.append(s)
        return i


def _sample_types(stacks: Stacks) -> tuple[list[tuple[str, str]], list[int], int]:
    """[(type, unit)], a multiplier per type, and the period (0: none)."""
    if stacks.unit == "us":
        return [("off_cpu", "nanoseconds")], [1000], 0
    if stacks.hz > 0:
        period = round(1e9 / stacks.hz)
        return [("samples", "count"), ("cpu", "nanoseconds")], [1, period], period
    return [("samples", "count")], [1], 0


def build(stacks: Stacks) -> profile_pb2.Profile:
    """The Profile message for `stacks`."""
    prof = profile_pb2.Profile()
    strings: list[str] = []
    st = _Strings(strings)
    types, scale, period = _sample_types(stacks)
    for kind, unit in types:
        prof.sample_type.add(type=st.add(kind), unit=st.add(unit))
    if period:
        prof.period_type.type, prof.period_type.unit = st.add("cpu"), st.add("nanoseconds")
        prof.period = period
    mappings: dict[str, int] = {}
    locations: dict[tuple[str, str], int] = {}

    def mapping(module: str) -> int:
        mid = mappings.get(module)
        if mid is None:
            path, build_id = stacks.mappings.get(module, (module, ""))
            mid = mappings[module] = len(mappings) + 1
            prof.mapping.add(id=mid, filename=st.add(path), build_id=st.add(build_id),
                             has_functions=True)
        return mid

    def location(name: str, module: str) -> int:
        lid = locations.get((name, module))
        if lid is None:
            lid = locations[(name, module)] = len(locations) + 1
            prof.function.add(id=lid, name=st.add(name), system_name=st.add(name))
            loc = prof.location.add(id=lid, mapping_id=mapping(module) if module else 0)
            loc.line.add(function_id=lid)
        return lid

    df = stacks.df()
    for pid, comm, frames, nk, count in zip(df["pid"].tolist(), df["comm"].tolist(),
                                            df["frames"].tolist(), df["kernel_frames"].tolist(),
                                            df["count"].tolist()):
        cut = len(frames) - nk
        ids = []
        for j, f in enumerate(frames):
            kernel = j >= cut
            module = KERNEL_MAPPING if kernel else folding.split_frame(f, False)[1]
            ids.append(location(folding.plain_frame(f, kernel), module))
        sample = prof.sample.add()
        sample.location_id.extend(reversed(ids))  # leaf first
        sample.value.extend(int(count) * m for m in scale)
        sample.label.add(key=st.add("comm"), str=st.add(str(comm)))
        if pid >= 0:
            sample.label.add(key=st.add("pid"), num=int(pid))
    prof.time_nanos = time.time_ns()
    if stacks.name:
        prof.comment.append(st.add(stacks.name))
    prof.string_table.extend(strings)
    return prof


def encode(stacks: Stacks) -> bytes:
    """The gzip-compressed serialized Profile, as pprof files are stored."""
    return gzip.compress(build(stacks).SerializeToString(), mtime=0)


def decode(data: bytes) -> profile_pb2.Profile:
    """A Profile from pprof file bytes (gzip-compressed or not)."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    prof = profile_pb2.Profile()
    prof.ParseFromString(data)
    return prof
