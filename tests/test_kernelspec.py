"""install-kernel: a real Jupyter kernel, started by an unprivileged user, runs BPF with exactly
the requested capabilities and counts a known workload exactly; its interpreter imports nothing
from the notebook's directory, nothing it starts holds capabilities, only the named user can
run it, the install never writes through links and leaves no capability binary when it fails."""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import shutil
import site
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bpfnb._sys import features
from bpfnb.jupyter import kernelspec

CAPS = ("bpf", "perfmon")  # no dac_read_search: tracefs is group-readable
N = 1000

KERNEL_CODE = f"N = {N}\n" + r'''
import ctypes, json, os, threading, bpfnb
cap_eff = [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")][0]
prog = bpfnb.load(r"""
BPF_HASH(raw_counts, u32, u64);
BPF_HASH(tp_counts, u32, u64);
RAW_TRACEPOINT_PROBE(sys_enter) {
    u32 tid = bpf_get_current_pid_tgid();
    if (ctx->args[1] == 39) raw_counts.increment(tid);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    u32 tid = bpf_get_current_pid_tgid();
    tp_counts.increment(tid);
    return 0;
}
""")
tids = []
def work():
    tids.append(threading.get_native_id())
    libc = ctypes.CDLL(None, use_errno=True)
    for _ in range(N):
        libc.syscall(39)
t = threading.Thread(target=work); t.start(); t.join()
def count(name):
    df = prog[name].df()
    return int(df[df["key"] == tids[0]]["value"].sum())
result = {"cap_eff": cap_eff, "uid": os.getuid(), "euid": os.geteuid(),
          "raw": count("raw_counts"), "tp": count("tp_counts")}
prog.close()
import importlib.util, multiprocessing, subprocess, sys
from bpfnb._sys.capabilities import status_masks
result["cap_bnd"] = status_masks()["CapBnd"]
result["planted"] = importlib.util.find_spec("bpfnb_planted") is not None
result["cwd_on_path"] = any(p in ("", ".", os.getcwd()) for p in sys.path)
child = subprocess.run([sys.executable, "-c", "from bpfnb._sys.capabilities import status_masks; "
                        "print(status_masks())"], capture_output=True, text=True, check=True)
result["child"] = eval(child.stdout)
with multiprocessing.get_context("spawn").Pool(1) as pool:
    result["spawned"] = pool.apply(status_masks)
try:
    open("/etc/shadow").read()
    result["shadow"] = "read"
except PermissionError:
    result["shadow"] = "denied"
print("RESULT " + json.dumps(result))
'''
PLANT = "open(__file__ + '.ran', 'w').write('planted code ran')\n"


CLIENT_CODE = r'''
import json, site, sys
for d in json.loads(sys.argv[1]):
    site.addsitedir(d)
from jupyter_client.manager import KernelManager
km = KernelManager(kernel_name=sys.argv[2])
km.start_kernel(cwd=sys.argv[3])
out = {"kernel_pid": km.provisioner.process.pid, "stdout": "", "status": None}
try:
    kc = km.client(); kc.start_channels(); kc.wait_for_ready(timeout=60)
    def hook(msg):
        if msg["msg_type"] == "stream":
            out["stdout"] += msg["content"]["text"]
        elif msg["msg_type"] == "error":
            out["stdout"] += "\n".join(msg["content"]["traceback"])
    reply = kc.execute_interactive(sys.stdin.read(), timeout=120, output_hook=hook)
    out["status"] = reply["content"]["status"]
    kc.stop_channels()
finally:
    km.shutdown_kernel(now=True)
print(json.dumps(out))
'''


def _require_setup() -> None:
    if os.geteuid() != 0:
        pytest.skip("install-kernel is a root step; run this test as root")
    for tool in ("useradd", "userdel", "groupadd", "gpasswd"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed: the test needs a throwaway user")
    for feature in (features.can_load_bpf(), features.can_trace()):
        if not feature:
            pytest.skip(str(feature))


def _useradd(name: str, *args: str) -> tuple[int, int]:
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    *args, name], check=True)
    return kernelspec._ids(name, None)


def _cap_files(root: Path) -> list[Path]:
    """Every file under root that carries file capabilities."""
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()
            and kernelspec.file_caps(p)]


@pytest.fixture()
def prefix() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("install-kernel is a root step; run this test as root")
    path = Path(tempfile.mkdtemp(prefix="bpfnb-kernel-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_parse_caps_and_mask() -> None:
    assert kernelspec.parse_caps("CAP_BPF, perfmon,bpf") == ("bpf", "perfmon")
    assert kernelspec.cap_mask(("bpf", "perfmon")) == 0xC000000000
    with pytest.raises(kernelspec.InstallError, match="unknown capability"):
        kernelspec.parse_caps("bpf,nosuch")
    with pytest.raises(kernelspec.InstallError, match="setpcap is not grantable"):
        kernelspec.parse_caps("bpf,setpcap")


def test_default_caps_leave_out_dac_read_search(capsys: pytest.CaptureFixture[str]) -> None:
    """CAP_DAC_READ_SEARCH reads every file on the machine: never granted unless asked for."""
    from bpfnb.__main__ import main

    assert "dac_read_search" not in kernelspec.DEFAULT_CAPS
    with pytest.raises(SystemExit):
        main(["install-kernel", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert f"(default {','.join(kernelspec.DEFAULT_CAPS)};" in out


def test_install_refuses_without_audience() -> None:
    if os.geteuid() != 0:
        pytest.skip("install-kernel is a root step; run this test as root")
    with pytest.raises(kernelspec.InstallError, match="who may run"):
        kernelspec.install("bpfnb-test-none", prefix="/nonexistent")


@dataclass
class Session:
    """One install for a throwaway user and one real kernel session run by that user."""

    user: str
    uid: int
    gid: int
    done: kernelspec.Installed
    prefix: Path
    notebook: Path
    result: dict[str, Any]


@pytest.fixture(scope="module")
def session() -> Iterator[Session]:
    _require_setup()
    user, other = f"bpfnbt{os.getpid()}", f"bpfnbo{os.getpid()}"
    name = f"bpfnb-test-{os.getpid()}"
    prefix = Path(tempfile.mkdtemp(prefix="bpfnb-kernel-", dir="/tmp"))
    prefix.chmod(0o755)
    uid, gid = _useradd(user, "--user-group")
    _useradd(other, "--gid", str(gid))  # shares the user's primary group
    try:
        try:
            done = kernelspec.install(name, CAPS, prefix=prefix, user=user)
        except kernelspec.InstallError as e:
            pytest.skip(f"cannot install the capability kernel here: {e}")
        home = prefix / "home"
        home.mkdir()
        os.chown(home, uid, gid)
        notebook = prefix / "notebook"  # a directory anybody may write: the attacker plants
        notebook.mkdir()
        notebook.chmod(0o1777)
        for planted in ("ipykernel_launcher.py", "bpfnb_planted.py", "site.py"):
            (notebook / planted).write_text(PLANT)
        extra = [grp.getgrnam(done.group).gr_gid]
        with contextlib.suppress(KeyError):
            extra.append(grp.getgrnam(kernelspec.TRACEFS_GROUP).gr_gid)
        interp = kernelspec.choose_python(uid, gid)  # the same interpreter, without caps
        env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LC_ALL": "C.UTF-8",
               "JUPYTER_PATH": str(prefix / "share" / "jupyter"),
               "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
               "PYTHONPATH": str(notebook), "PYTHONSTARTUP": str(notebook / "site.py"),
               "JUPYTER_DATA_DIR": str(home / "data"), "JUPYTER_CONFIG_DIR": str(home / "cfg")}
        dirs = json.dumps([d for d in site.getsitepackages() if os.path.isdir(d)])
        # the Jupyter side runs as the user with no capabilities at all, as JupyterLab would,
        # and starts the kernel in the notebook's directory
        res = subprocess.run([interp, "-I", "-c", CLIENT_CODE, dirs, name, str(notebook)],
                             input=KERNEL_CODE, capture_output=True, text=True, timeout=300,
                             user=uid, group=gid, extra_groups=extra, env=env, cwd=str(home))
        assert res.returncode == 0, res.stderr[-3000:]
        out = json.loads(res.stdout.strip().splitlines()[-1])
        assert out["status"] == "ok", out["stdout"][-3000:]
        line = next(x for x in out["stdout"].splitlines() if x.startswith("RESULT "))
        result = json.loads(line.removeprefix("RESULT "))
        sys.stderr.write(f"kernel result: {result}\n")
        yield Session(user, uid, gid, done, prefix, notebook, result)
    finally:
        kernelspec.uninstall(name, prefix)
        subprocess.run(["userdel", other], check=False)
        subprocess.run(["userdel", user], check=False)
        shutil.rmtree(prefix, ignore_errors=True)
    assert not (prefix / "share" / "jupyter" / "kernels" / name).exists()
    assert subprocess.run(["getent", "group", f"bpfnb-{user}"]).returncode != 0


def test_capability_kernel_runs_bpf_as_unprivileged_user(session: Session) -> None:
    result = session.result
    assert set(kernelspec.file_caps(session.done.python)) == {*CAPS, "setpcap"}
    assert session.done.python.stat().st_mode & 0o777 == 0o750
    spec = json.loads((session.done.kernelspec / "kernel.json").read_text())
    assert spec["argv"][0] == str(session.done.python)
    assert int(result["cap_eff"], 16) == kernelspec.cap_mask(CAPS)
    assert result["uid"] == session.uid and result["euid"] == session.uid != 0
    assert result["raw"] == N


def test_kernel_imports_nothing_from_the_notebook_directory(session: Session) -> None:
    """Planted ipykernel_launcher.py / site.py / a module in the kernel's cwd, and PYTHONPATH
    and PYTHONSTARTUP pointing there: none of it runs or is importable."""
    spec = json.loads((session.done.kernelspec / "kernel.json").read_text())
    assert spec["argv"][1] == "-I"
    assert spec["env"]["PYTHONPATH"] == "" and spec["env"]["PYTHONSTARTUP"] == ""
    assert session.result["planted"] is False
    assert session.result["cwd_on_path"] is False
    assert sorted(p.name for p in session.notebook.glob("*.ran")) == []


def test_children_hold_no_capabilities(session: Session) -> None:
    """subprocess through sys.executable (the capability binary itself) and a multiprocessing
    spawn child: CapEff and CapPrm 0, while the kernel keeps its own with an empty bounding set."""
    result = session.result
    assert int(result["cap_eff"], 16) == kernelspec.cap_mask(CAPS)
    assert result["cap_bnd"] == 0
    for child in (result["child"], result["spawned"]):
        assert (child["CapEff"], child["CapPrm"], child["CapAmb"], child["CapInh"]) == (0, 0, 0, 0)


def test_tracepoints_without_dac_read_search(session: Session) -> None:
    """Tracepoints count exactly through the tracefs group, and the kernel cannot read
    /etc/shadow (CAP_DAC_READ_SEARCH is not granted)."""
    if "dac_read_search" in session.done.caps or not any(
            kernelspec.TRACEFS_GROUP in n for n in session.done.notes if "is in group" in n):
        pytest.skip(next(iter(session.done.notes), "tracefs is not group-readable"))
    assert session.result["tp"] == N
    assert session.result["shadow"] == "denied"


def test_only_the_named_user_can_run_it(session: Session) -> None:
    """--user U: a dedicated group holding only U; a user sharing U's primary group cannot
    execute the binary; `who` names exactly root and U."""
    assert session.done.group == f"bpfnb-{session.user}"
    assert session.done.who == ("root", session.user)
    group = grp.getgrnam(session.done.group)
    assert group.gr_mem == [session.user]
    assert session.done.python.stat().st_gid == group.gr_gid
    other = pwd.getpwnam(f"bpfnbo{os.getpid()}")
    assert other.pw_gid == session.gid
    with pytest.raises(PermissionError):
        kernelspec._run_as([str(session.done.python), "-c", "pass"], other.pw_uid, other.pw_gid)


def test_refuses_a_dedicated_group_that_holds_others(prefix: Path) -> None:
    """An existing group bpfnb-U with another member is not silently shared (nor emptied)."""
    _require_setup()
    user, other = f"bpfnbg{os.getpid()}", f"bpfnbh{os.getpid()}"
    _useradd(user, "--user-group")
    _useradd(other, "--user-group")
    group = f"bpfnb-{user}"
    subprocess.run(["groupadd", "--system", "--users", other, group], check=True)
    try:
        with pytest.raises(kernelspec.InstallError, match=f"also the group of {other}"):
            kernelspec.install("bpfnb-test-x", ("bpf",), prefix=prefix, user=user)
        assert grp.getgrnam(group).gr_mem == [other]
        assert _cap_files(prefix) == []
    finally:
        subprocess.run(["groupdel", group], check=False)
        subprocess.run(["userdel", other], check=False)
        subprocess.run(["userdel", user], check=False)


def test_cli_prints_who_can_run(prefix: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bpfnb.__main__ import main

    name = f"bpfnb-test-cli-{os.getpid()}"
    try:
        assert main(["install-kernel", "--name", name, "--prefix", str(prefix), "--any-user",
                     "--caps", "bpf"]) == 0
    finally:
        kernelspec.uninstall(name, prefix)
    out = capsys.readouterr().out
    assert "who can run the kernel (and so holds these capabilities): every local user" in out
    assert _cap_files(prefix) == []


# -- the install itself: links, races, failures ---------------------------------------------
def test_refuses_a_prefix_another_user_can_change(prefix: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    theirs = prefix / "theirs"
    theirs.mkdir()
    os.chown(theirs, nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(kernelspec.InstallError, match="owned by uid"):
        kernelspec.install("bpfnb-test-x", ("bpf",), prefix=theirs / "env", any_user=True)
    writable = prefix / "writable"
    writable.mkdir()
    writable.chmod(0o777)
    with pytest.raises(kernelspec.InstallError, match="writable by others"):
        kernelspec.install("bpfnb-test-x", ("bpf",), prefix=writable, any_user=True)
    assert list(theirs.iterdir()) == [] and list(writable.iterdir()) == []


def test_refuses_a_planted_symlink(prefix: Path) -> None:
    """A link in the prefix (say to a root-only directory) is never written through."""
    target = prefix / "target"
    target.mkdir(mode=0o700)
    env = prefix / "env"
    env.mkdir()
    (env / "lib").symlink_to(target)
    with pytest.raises(kernelspec.InstallError, match="symbolic link"):
        kernelspec.install("bpfnb-test-x", ("bpf",), prefix=env, any_user=True)
    assert list(target.iterdir()) == []


def test_a_link_swapped_in_during_the_install(prefix: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """After the prefix was checked, its `lib` becomes a link to elsewhere: nothing is written
    there, the install stops, and no capability binary is left anywhere."""
    elsewhere = prefix / "elsewhere"
    elsewhere.mkdir()
    env = prefix / "env"
    stage = kernelspec._Install.step_stage

    def swap(self: kernelspec._Install) -> None:
        stage(self)
        (env / "lib").rename(env / "lib.real")
        (env / "lib").symlink_to(elsewhere)

    monkeypatch.setattr(kernelspec._Install, "step_stage", swap)
    with pytest.raises(kernelspec.InstallError, match="changed during the install"):
        kernelspec.install("bpfnb-test-x", ("bpf",), prefix=env, any_user=True)
    assert list(elsewhere.iterdir()) == []
    assert _cap_files(prefix) == []
    assert list((env / "lib.real" / "bpfnb-kernels").iterdir()) == []


@pytest.mark.parametrize("step", kernelspec.STEPS)
def test_a_failed_install_leaves_no_capability_binary(prefix: Path, step: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure right after each step (the worst moment): no file with capabilities remains,
    not even a hard link someone made to the staged binary meanwhile, and no kernelspec."""
    original = getattr(kernelspec._Install, f"step_{step}")
    grabbed = prefix / "grabbed"

    def fail(self: kernelspec._Install) -> None:
        original(self)
        staged = self.kernels.path / self.stage_name / "bin" / "python" if self.kernels else None
        if staged and staged.exists() and not grabbed.exists():
            os.link(staged, grabbed)
        raise RuntimeError(f"injected after {step}")

    monkeypatch.setattr(kernelspec._Install, f"step_{step}", fail)
    name = "bpfnb-test-x"
    with pytest.raises(RuntimeError, match="injected"):
        kernelspec.install(name, ("bpf",), prefix=prefix, any_user=True)
    assert _cap_files(prefix) == []
    spec, runtime = kernelspec.paths(name, prefix)
    assert not spec.exists() and not runtime.exists()
    if runtime.parent.exists():
        assert list(runtime.parent.iterdir()) == []


def test_refuses_code_another_user_can_change(prefix: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A site directory the kernel would import from, owned by someone else: refused."""
    nobody = pwd.getpwnam("nobody")
    theirs = prefix / "theirs-site"
    theirs.mkdir()
    os.chown(theirs, nobody.pw_uid, nobody.pw_gid)
    real = site.getsitepackages()
    monkeypatch.setattr(site, "getsitepackages", lambda: [*real, str(theirs)])
    with pytest.raises(kernelspec.InstallError, match=f"import code from {theirs}"):
        kernelspec.install("bpfnb-test-x", ("bpf",), prefix=prefix, any_user=True)
    assert _cap_files(prefix) == []


def test_uninstall_removes_only_the_prefix_spec(prefix: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """uninstall goes through Jupyter's KernelSpecManager, held to the checked prefix: a
    same-named spec in the user's Jupyter path stays, a linked spec loses the link only,
    a half-written one (no kernel.json) goes too."""
    kernels = prefix / "share" / "jupyter" / "kernels"
    user = tmp_path / "data" / "kernels"
    target = tmp_path / "linked"
    for d in (kernels / "bpfnb-test-u", user / "bpfnb-test-u", kernels / "bpfnb-test-half",
              target):
        d.mkdir(parents=True)
        d.chmod(0o755)
    for d in (kernels / "bpfnb-test-u", user / "bpfnb-test-u", target):
        (d / "kernel.json").write_text('{"argv": ["python"], "display_name": "x"}')
    (kernels / "bpfnb-test-link").symlink_to(target)
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    assert kernelspec.uninstall("bpfnb-test-u", prefix)
    assert kernelspec.uninstall("bpfnb-test-half", prefix)
    assert kernelspec.uninstall("bpfnb-test-link", prefix)
    assert not kernelspec.uninstall("bpfnb-test-none", prefix)
    assert list(kernels.iterdir()) == []
    assert (user / "bpfnb-test-u" / "kernel.json").exists()
    assert (target / "kernel.json").exists()
