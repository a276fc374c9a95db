"""The kit's stack collectors (bpfnb/programs: profile.c, offcpu.c) share their settings and
counts key through one header, and load with it on both backends."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import resources

import pytest

import bpfnb
from bpfnb.backends.select import libbpf_ready
from bpfnb.profiler.programs import source
from conftest import require

PROGRAMS = ("profile", "offcpu")
SETTINGS = ("filter_pid", "user_stacks", "kernel_stacks")
# a child that waits for its tracer, then blocks 20 times for 10 ms and spins for 0.3 s
CHILD = ("import sys, time\nsys.stdin.read()\nfor _ in range(20): time.sleep(0.01)\n"
         "end = time.monotonic() + 0.3\nwhile time.monotonic() < end: pass\n")


def _file(name: str) -> str:
    return resources.files("bpfnb").joinpath(f"programs/{name}").read_text()


def test_settings_and_key_defined_once_in_the_shared_header() -> None:
    header = _file("stacks.h")
    assert header.count("struct key_t {") == 1
    assert all(len(re.findall(rf"const volatile \w+ {s} =", header)) == 1 for s in SETTINGS)
    for name in PROGRAMS:
        own = _file(f"{name}.c")
        assert '#include "stacks.h"' in own
        assert "struct key_t {" not in own
        assert not any(re.search(rf"const volatile \w+ {s} =", own) for s in SETTINGS)
        text = source(name)  # what the backends compile: the header in place, once
        assert text.count(header) == 1 and "#include \"stacks.h\"" not in text
    assert bpfnb.profile_source() == source("profile")


@pytest.mark.usefixtures("kernel")
@pytest.mark.parametrize("backend", ["bcc", "libbpf"])
def test_both_collectors_load_with_one_key_and_follow_one_pid(backend: str) -> None:
    if backend == "libbpf":
        require(libbpf_ready())
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE)
    consts = {"filter_pid": child.pid, "user_stacks": 1, "kernel_stacks": 1}
    with bpfnb.load(source("profile"), name="prof", attach=False, backend=backend,
                    consts=consts) as prof, \
            bpfnb.load(source("offcpu"), name="off", backend=backend,
                       consts={**consts, "min_us": 1000}) as off:
        prof.attach_perf_event("on_sample", sample_freq=199)
        child.communicate(b"", timeout=60)
        samples, blocked = prof["counts"].df(), off["counts"].df()
    keys = ["pid", "user_stack_id", "kernel_stack_id", "comm"]
    assert samples.attrs["key_columns"] == blocked.attrs["key_columns"] == keys
    assert dict(samples.dtypes[keys]) == dict(blocked.dtypes[keys])
    assert set(samples["pid"]) == set(blocked["pid"]) == {child.pid}
    assert samples["value"].sum() > 0
    assert 20 * 10_000 <= blocked["value"].sum() < 20_000_000  # µs blocked, >= 10 ms each
