"""install-kernel: a real Jupyter kernel, started by an unprivileged user, runs BPF with exactly
the requested capabilities and counts a known workload exactly."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bpfnb import features, kernelspec

CAPS = ("bpf", "perfmon", "dac_read_search")
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
print("RESULT " + json.dumps(result))
'''

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
    for tool in ("useradd", "userdel"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed: the test needs a throwaway user")
    for feature in (features.can_load_bpf(), features.can_trace()):
        if not feature:
            pytest.skip(str(feature))


def test_parse_caps_and_mask() -> None:
    assert kernelspec.parse_caps("CAP_BPF, perfmon,bpf") == ("bpf", "perfmon")
    assert kernelspec.cap_mask(("bpf", "perfmon")) == 0xC000000000
    with pytest.raises(kernelspec.InstallError, match="unknown capability"):
        kernelspec.parse_caps("bpf,nosuch")


def test_install_refuses_without_audience() -> None:
    if os.geteuid() != 0:
        pytest.skip("install-kernel is a root step; run this test as root")
    with pytest.raises(kernelspec.InstallError, match="who may run"):
        kernelspec.install("bpfnb-test-none", prefix="/nonexistent")


def test_capability_kernel_runs_bpf_as_unprivileged_user() -> None:
    _require_setup()
    user = f"bpfnbt{os.getpid()}"
    name = f"bpfnb-test-{os.getpid()}"
    prefix = Path(tempfile.mkdtemp(prefix="bpfnb-kernel-", dir="/tmp"))
    prefix.chmod(0o755)
    subprocess.run(["useradd", "--system", "--no-create-home", "--user-group",
                    "--shell", "/usr/sbin/nologin", user], check=True)
    try:
        try:
            done = kernelspec.install(name, CAPS, prefix=prefix, user=user)
        except kernelspec.InstallError as e:
            pytest.skip(f"cannot install the capability kernel here: {e}")
        assert set(kernelspec.file_caps(done.python)) == set(CAPS)
        assert done.python.stat().st_mode & 0o777 == 0o750
        spec = json.loads((done.kernelspec / "kernel.json").read_text())
        assert spec["argv"][0] == str(done.python)

        home = prefix / "home"
        home.mkdir()
        uid, gid = kernelspec._ids(user, None)
        os.chown(home, uid, gid)
        interp = kernelspec.choose_python(uid, gid)  # the same interpreter, without caps
        env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LC_ALL": "C.UTF-8",
               "JUPYTER_PATH": str(prefix / "share" / "jupyter"),
               "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
               "JUPYTER_DATA_DIR": str(home / "data"), "JUPYTER_CONFIG_DIR": str(home / "cfg")}
        dirs = json.dumps([d for d in site.getsitepackages() if os.path.isdir(d)])
        # the Jupyter side runs as the user with no capabilities at all, as JupyterLab would
        res = subprocess.run([interp, "-c", CLIENT_CODE, dirs, name, str(home)],
                             input=KERNEL_CODE, capture_output=True, text=True, timeout=300,
                             user=uid, group=gid, extra_groups=[], env=env, cwd=str(home))
        assert res.returncode == 0, res.stderr[-3000:]
        out = json.loads(res.stdout.strip().splitlines()[-1])
        assert out["status"] == "ok", out["stdout"][-3000:]
        line = next(x for x in out["stdout"].splitlines() if x.startswith("RESULT "))
        result = json.loads(line.removeprefix("RESULT "))
        assert int(result["cap_eff"], 16) == kernelspec.cap_mask(CAPS)
        assert result["uid"] == uid and result["euid"] == uid and uid != 0
        sys.stderr.write(f"kernel result: {result}\n")
        assert result["raw"] == N
        assert result["tp"] == N
    finally:
        kernelspec.uninstall(name, prefix)
        subprocess.run(["userdel", user], check=False)
        shutil.rmtree(prefix, ignore_errors=True)
    assert not (prefix / "share" / "jupyter" / "kernels" / name).exists()
