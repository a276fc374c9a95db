"""The doctor: its rows match what loads here, it is fast and cached per boot, it leaves
nothing behind, and the CLI prints it.

"Reality" for the attach kinds that fail on the CI machine (kprobe, fentry, LSM) is checked
independently: each is loaded with bcc's auto-attach through `bpfnb.load`, not through the
doctor's own code path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import bpfnb
from bpfnb.__main__ import main
from bpfnb._sys import bpfobjs, features
from bpfnb.doctor import (
    KINDS,
    STATUSES,
    _append,
    cache_path,
    cleanup_stale_probes,
    doctor,
    probe_owners,
    skip_reason,
    stale_probes,
)
from bpfnb.machine.inventory import programs
from conftest import resources

pytestmark = pytest.mark.usefixtures("kernel")
ROOT = Path(__file__).resolve().parent.parent
ALWAYS_OK = ("tracepoint", "raw_tracepoint", "uprobe", "perf_event", "xdp", "cgroup_skb")
DIRECT = {  # an auto-attached program per kind, to compare the doctor with
    "kprobe": "int kprobe__vfs_read(void *ctx) { return 0; }",
    "fentry": "KFUNC_PROBE(vfs_read) { return 0; }",
    "lsm": "LSM_PROBE(file_open, struct file *file) { return 0; }",
}


def prog_ids() -> set[int]:
    return set(bpfobjs.ids(bpfobjs.Kind.PROG))


def leftovers() -> list[str]:
    """Netns, cgroups and programs the doctor's probes would leave if cleanup failed."""
    netns = [n for n in os.listdir("/run/netns") if n.startswith("bpfnb-doctor")] \
        if os.path.isdir("/run/netns") else []
    from bpfnb._sys.cgroupfs import cgroup2_root

    root = cgroup2_root()
    cgroups = [n for n in os.listdir(root) if n.startswith("bpfnb-doctor")] if root else []
    df = programs(processes=False)
    progs = [n for n in df["name"] if n.startswith(("doctor_", "kfunc__vfs_read", "lsm__file"))]
    return netns + cgroups + progs


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BPFNB_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def fresh(cache_dir: Path) -> dict[str, object]:
    """One doctor(refresh=True) run, with what was loaded and open before and after."""
    before_ids, before_res = prog_ids(), resources()
    start = time.perf_counter()
    report = doctor(refresh=True)
    elapsed = time.perf_counter() - start
    return {"report": report, "elapsed": elapsed, "new_ids": prog_ids() - before_ids,
            "before": before_res, "after": resources()}


def test_refresh_probes_afresh(fresh):
    assert fresh["elapsed"] < 120, fresh["elapsed"]  # a hang guard; its speed is in bench/
    assert not fresh["report"].cached


def test_nothing_left_loaded_or_attached(fresh):
    """The kernel frees a detached raw tracepoint's program after an RCU grace period, so
    programs get a moment to go; nothing of the doctor's may stay."""
    deadline = time.monotonic() + 2
    while (ours := fresh["new_ids"] & prog_ids()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not ours, programs(processes=False).query("id in @ours")
    assert leftovers() == []
    fds_before, bpf_before, _ = fresh["before"]
    fds_after, bpf_after, _ = fresh["after"]
    assert bpf_after == bpf_before
    assert fds_after == fds_before


def test_attach_rows_match_this_machine(fresh):
    report = fresh["report"]
    for kind in ALWAYS_OK:
        row = report.row("attach", kind)
        assert row.status == "ok", row
    kprobe = report.row("attach", "kprobe")
    assert (kprobe.status == "ok") == bool(features.kprobes())
    if features.config_says("CONFIG_KPROBES") is False:
        assert "CONFIG_KPROBES" in kprobe.detail and "CONFIG_KPROBES" in kprobe.fix
    for kind in ("fentry", "lsm", "kprobe"):
        row = report.row("attach", kind)
        if row.status != "ok":
            assert row.detail and row.fix, row
            assert skip_reason(kind) == f"{kind}: {row.detail}"
    for kind in ALWAYS_OK:
        assert skip_reason(kind) is None


@pytest.mark.parametrize("kind", sorted(DIRECT))
def test_failing_kinds_match_a_direct_load(fresh, kind):
    """What the doctor says about kprobe/fentry/LSM is what a real auto-attach does."""
    try:
        with bpfnb.load(DIRECT[kind]) as prog:
            assert prog.attach_points
        loads = True
    except bpfnb.BpfnbError as e:
        loads = False
        reason = str(e)
    row = fresh["report"].row("attach", kind)
    assert (row.status == "ok") == loads
    if not loads:  # the same message, but for the doctor's function name
        assert row.detail.replace("doctor_kprobe", "kprobe__vfs_read") == reason


def test_this_ci_machine(fresh):
    """The documented CI machine: kprobes off, fentry/LSM refused with EPERM."""
    if features.config_says("CONFIG_KPROBES") is not False:
        pytest.skip("not the CI machine's kernel configuration (CONFIG_KPROBES is set)")
    report = fresh["report"]
    assert [k for k in KINDS if report.row("attach", k).status != "ok"] == [
        "kprobe", "fentry", "lsm"]
    assert "EPERM" in report.row("attach", "fentry").detail
    assert "EPERM" in report.row("attach", "lsm").detail


def test_facts(fresh):
    report = fresh["report"]
    df = report.df()
    assert list(df.columns) == ["section", "check", "status", "detail", "fix"]
    assert set(df["status"]) <= set(STATUSES)
    assert report.row("kernel", "version").detail.startswith(os.uname().release)
    assert report.row("kernel", "BTF").status == ("ok" if features.btf() else "no")
    headers = report.row("kernel", "headers")
    assert headers.detail.startswith(("exact:", "fallback:"))
    assert report.row("bcc", "version").detail.count(".") == 2
    assert "libbcc.so" in report.row("bcc", "libbcc").detail
    for fstype in ("tracefs", "debugfs", "bpf"):
        assert report.row("mounts", fstype).status == "ok"
    for cap in ("CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN", "CAP_NET_ADMIN"):
        assert report.row("capabilities", cap).status == "ok"  # the suite runs as root
    for name in ("kernel.unprivileged_bpf_disabled", "kernel.perf_event_paranoid"):
        assert report.row("policy", name).detail.startswith(features.sysctl(name) or "?")
    assert report.row("policy", "lockdown").detail.startswith(features.lockdown() or "unknown")
    text, html = str(report), report._repr_html_()
    assert "attach:" in text and "CONFIG_KPROBES" in text
    assert html.startswith("<table>") and html.count("<tr>") == len(report.rows) + 1


def test_second_call_uses_the_cache(fresh, cache_dir):
    again = doctor()
    assert again.cached
    assert again.probes == fresh["report"].probes


def test_cache_is_keyed_by_boot_id(fresh, cache_dir):
    path = cache_path()
    assert path.parent == cache_dir / "doctor"
    assert path.parent.stat().st_mode & 0o777 == 0o700
    data = json.loads(path.read_text())
    assert data["key"]["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert data["key"]["release"] == os.uname().release
    # a cached answer with this boot's key is believed (proof that the cache is read) ...
    data["probes"][0]["reason"] = "planted"
    data["probes"][0]["ok"] = False
    path.write_text(json.dumps(data))
    assert doctor().row("attach", data["probes"][0]["kind"]).detail == "planted"
    # ... and one from another boot is not: the probes run again and rewrite the cache
    data["key"]["boot_id"] = "another-boot"
    path.write_text(json.dumps(data))
    report = doctor()
    assert not report.cached
    assert report.row("attach", "tracepoint").status == "ok"
    assert json.loads(path.read_text())["key"]["boot_id"] != "another-boot"


def test_cache_is_never_read_or_written_through_a_link(fresh, cache_dir, tmp_path):
    path = cache_path()
    data = json.loads(path.read_text())
    data["probes"][0]["reason"] = "planted"
    data["probes"][0]["ok"] = False
    planted = tmp_path / "planted.json"
    planted.write_text(json.dumps(data))
    path.unlink()
    path.symlink_to(planted)
    report = doctor()
    assert not report.cached  # the planted answer was not believed
    assert json.loads(planted.read_text()) == data  # nor written over
    assert not path.is_symlink() and json.loads(path.read_text())["key"] == data["key"]


def test_no_cache_in_a_folder_someone_else_owns(fresh, tmp_path, monkeypatch):
    other = tmp_path / "other"
    other.mkdir()
    os.chown(other, 65534, 65534)  # nobody's: they could swap what is in it
    monkeypatch.setenv("BPFNB_CACHE", str(other / "bpfnb"))
    assert cache_path() is None
    assert not doctor().cached
    assert list(other.iterdir()) == []


def test_skip_reason_rejects_unknown_kinds():
    with pytest.raises(bpfnb.BpfnbError, match="known: tracepoint"):
        skip_reason("kprobez")


def test_cli_prints_the_table(fresh, capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "attach:" in out and "capabilities:" in out
    assert all(f"  {kind} " in out for kind in KINDS)


def test_cli_subprocess(cache_dir):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BPFNB_CACHE": str(cache_dir)}
    res = subprocess.run([sys.executable, "-m", "bpfnb", "doctor"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "tracepoint" in res.stdout and "cached for this boot" in res.stdout


# -- --cleanup and PID namespaces ----------------------------------------------------------
NS_HOLDER = r"""
import os, sys, time
fd = os.open(sys.argv[1] + "/uprobe_events", os.O_WRONLY | os.O_APPEND)
os.write(fd, (sys.argv[2].replace("PID", str(os.getpid())) + "\n").encode())
os.close(fd)
print(os.getpid(), flush=True)
time.sleep(600)
"""


def _uprobe_lines(root: str, event: str) -> list[str]:
    return [ln for ln in Path(root, "uprobe_events").read_text().splitlines()
            if f"{event} " in ln]


def test_cleanup_keeps_the_probe_of_a_live_process_in_another_pid_namespace(workload, capsys):
    """A process in its own PID namespace holds a bcc-named tracefs uprobe, named for its pid
    there, a pid no process has in the initial namespace: --cleanup keeps it while the process
    lives and removes it once the process is gone."""
    root = features.tracefs()
    if root is None or not os.path.exists(f"{root}/uprobe_events"):
        pytest.skip(str(features.uprobes()))
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    inner = next(n for n in range(30000, 20000, -1) if not os.path.exists(f"/proc/{n}"))
    nm = subprocess.run(["nm", str(workload)], capture_output=True, text=True, check=True)
    offset = next(int(ln.split()[0], 16) for ln in nm.stdout.splitlines()
                  if ln.endswith(" record"))
    event = f"uprobes/p_bpfnb_nstest_0x{offset:x}_bcc_{inner}"
    spec = f"p:uprobes/p_bpfnb_nstest_0x{offset:x}_bcc_PID {workload}:0x{offset:x}"
    # inside the namespace the next pid is `inner`: the shell forks python with it
    script = f'echo {inner - 1} > /proc/sys/kernel/ns_last_pid && "$0" -c "$1" "$2" "$3"; true'
    proc = subprocess.Popen(["unshare", "-p", "-f", "--mount-proc", "--kill-child", "sh", "-c",
                             script, sys.executable, NS_HOLDER, root, spec],
                            stdout=subprocess.PIPE, text=True)
    try:
        _keeps_then_removes(root, event, inner, proc, capsys)
    finally:
        proc.kill()
        if _uprobe_lines(root, event):
            _append(f"{root}/uprobe_events", f"-:{event}\n")


def _keeps_then_removes(root: str, event: str, inner: int, proc: subprocess.Popen[str],
                        capsys: pytest.CaptureFixture[str]) -> None:
    try:
        assert proc.stdout is not None
        assert int(proc.stdout.readline()) == inner
        assert not os.path.exists(f"/proc/{inner}")  # the pid means nothing out here
        assert _uprobe_lines(root, event)
        assert event not in stale_probes()
        assert (event, inner, "alive") in probe_owners()
        assert main(["doctor", "--cleanup"]) == 0
        assert f"kept {event} (pid {inner}): a process in some PID namespace" in \
            capsys.readouterr().out
        assert _uprobe_lines(root, event), "--cleanup removed a live process's probe"
    finally:
        proc.kill()
        proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    while (event, inner, "gone") not in probe_owners() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert event in stale_probes()
    assert cleanup_stale_probes() >= 1
    assert _uprobe_lines(root, event) == []


def test_cleanup_keeps_everything_when_it_cannot_see_every_namespace():
    """Run from inside a fresh PID namespace, the doctor cannot tell a dead owner from one
    outside its view: it reports every probe as unknown and removes none."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    code = ("from bpfnb.doctor import _namespace_pids, cleanup_stale_probes, stale_probes\n"
            "print(_namespace_pids(), stale_probes())")
    res = subprocess.run(["unshare", "-p", "-f", "--mount-proc", sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["None", "[]"]
