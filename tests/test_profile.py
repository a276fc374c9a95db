"""A real CPU profile: perf-event sampling of tests/workload/callchain.c with bcc.

Maps are read with bcc's items() here; Stacks.from_arrays symbolizes them after
the workload has exited (its maps were snapshotted while it ran).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from bpfnb import profile_source
from bpfnb._sys import features
from bpfnb.profiler.stacks import Stacks
from bpfnb.symbols.symbolizer import Symbolizer

WORKLOAD = Path(__file__).parent / "workload" / "callchain.c"

PROGRAM = profile_source()  # the kit's own profiler, driven here through bcc directly


def _build(tmp: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler (cc) to build the callchain workload")
    out = tmp / "callchain"
    subprocess.run([cc, "-O0", "-g", "-fno-omit-frame-pointer", "-o", str(out), str(WORKLOAD)],
                   check=True)
    return out


def _bcc():
    for feature in (features.can_load_bpf(), features.can_trace()):
        if not feature:
            pytest.skip(str(feature))
    try:
        import bcc
    except ImportError as e:
        pytest.skip(f"bcc is not importable ({e}); install python3-bpfcc")
    return bcc


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Stacks, dict[str, int]]:
    bcc = _bcc()
    binary = _build(tmp_path_factory.mktemp("callchain"))
    # c : y = 3 : 1 in CPU, plus some kernel time reading /dev/zero
    proc = subprocess.Popen([str(binary), "30", "3", "1", "1"])
    try:
        try:
            b = bcc.BPF(text=PROGRAM.encode(), cflags=[
                f"-Dfilter_pid={proc.pid}", "-Duser_stacks=1", "-Dkernel_stacks=1"])
        except Exception as e:  # bcc raises bare Exception
            pytest.skip(f"bcc could not compile the profiler: {e}")
        try:
            b.attach_perf_event(ev_type=bcc.PerfType.SOFTWARE,
                                ev_config=bcc.PerfSWConfig.CPU_CLOCK,
                                fn_name=b"on_sample", sample_freq=99, cpu=-1)
        except Exception as e:
            b.cleanup()
            pytest.skip(f"perf-event sampling is not available here: {e}")
        deadline = time.monotonic() + 20  # until 400 samples (a busy machine gives fewer)
        while time.monotonic() < deadline and sum(
                v.value for v in b[b"counts"].values()) < 400:
            time.sleep(0.5)
        b.detach_perf_event(ev_type=bcc.PerfType.SOFTWARE, ev_config=bcc.PerfSWConfig.CPU_CLOCK)
        sym = Symbolizer()
        assert sym.snapshot_process(proc.pid) is not None
        rows = [(k.pid, k.comm, k.user_stack_id, k.kernel_stack_id, v.value)
                for k, v in b[b"counts"].items()]
        traces = b[b"stack_traces"]
        ids = {r[2] for r in rows} | {r[3] for r in rows}
        stacks = {i: np.array(list(traces.walk(i)), dtype=np.uint64) for i in ids if i >= 0}
        b.cleanup()
    finally:
        proc.kill()
        proc.wait()
    pid, comm, uid, kid, count = (list(c) for c in zip(*rows))
    # the process is gone now; its snapshot still resolves the user stacks
    assert not Path(f"/proc/{proc.pid}").exists()
    s = Stacks.from_arrays(np.array(pid), comm, np.array(uid), np.array(kid), np.array(count),
                           stacks, sym)
    return s, {"pid": proc.pid}


def _share(folded: str, chain: str) -> int:
    return sum(int(line.rsplit(" ", 1)[1]) for line in folded.splitlines() if chain in line)


def test_chains_in_order(profile: tuple[Stacks, dict[str, int]]) -> None:
    s, _ = profile
    folded = s.folded(modules=True)
    abc = _share(folded, "main [callchain];a [callchain];b [callchain];c [callchain]")
    xy = _share(folded, "main [callchain];x [callchain];y [callchain]")
    assert s.total >= 300, folded
    assert abc > 0 and xy > 0, folded
    assert all(line.startswith("callchain;") for line in folded.splitlines())


def test_proportion(profile: tuple[Stacks, dict[str, int]]) -> None:
    s, _ = profile
    folded = s.folded(modules=True)
    abc = _share(folded, ";a [callchain];b [callchain];c [callchain]")
    xy = _share(folded, ";x [callchain];y [callchain]")
    ratio = abc / (abc + xy)
    assert abs(ratio - 0.75) < 0.1, (abc, xy, folded)


def test_kernel_frames_are_kallsyms_names(profile: tuple[Stacks, dict[str, int]]) -> None:
    s, _ = profile
    with open("/proc/kallsyms") as f:
        names = {line.split()[2] for line in f}
    df = s.df()
    kernel = [f for frames, nk in zip(df["frames"], df["kernel_frames"]) if nk
              for f in frames[len(frames) - nk :]]
    assert kernel, "no sample caught the workload in the kernel"
    real = [f for f in kernel if not f.startswith("[")]
    assert real and all(f in names for f in real), real
    # the syscall chain: s enters the kernel with read(2) of /dev/zero
    assert any(";main [callchain];s [callchain];" in line and "vfs_read" in line
               for line in s.folded(modules=True).splitlines()), s.folded()
    split = s.kernel_user_split()
    assert (split["samples"] > 0).all(), split


def test_no_dropped_samples(profile: tuple[Stacks, dict[str, int]]) -> None:
    s, info = profile
    assert set(s.df()["pid"]) == {info["pid"]}
    assert s.by_process()["samples"].sum() == s.total
