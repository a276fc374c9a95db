"""`bpfnb install-kernel`: a Jupyter kernel that runs with only the capabilities BPF needs.

A one-off admin step, run by root. It builds a small runtime under PREFIX/lib/bpfnb-kernels/NAME:
a copy of a Python interpreter (`bin/python`) carrying file capabilities, a `pyvenv.cfg` and a
`.pth` that adds this environment's site-packages, and a kernelspec at
PREFIX/share/jupyter/kernels/NAME whose argv runs that copy with `-m ipykernel_launcher`.
A non-root user whose Jupyter starts that kernel gets exactly those capabilities in the kernel
process (and none in the programs it starts). The kit never raises privileges by itself.

What needs which capability here (kernel 6.18, perf_event_paranoid=2, kptr_restrict=0):
  bpf, perfmon      load programs; raw tracepoints, perf events, maps, ring/perf buffers, pins
  dac_read_search   tracepoints: tracefs is root-only (0700), bcc reads events/CAT/EV/{id,format}
  syslog            real addresses in /proc/kallsyms (kernel stack symbols)
  sys_admin         uprobes/USDT (the uprobe PMU wants CAP_SYS_ADMIN), listing BPF objects by id
  net_admin         XDP, tc and socket programs
Anyone who can run the binary holds these capabilities: restrict it to a group.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import site
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import BpfnbError

CAPS = {"chown": 0, "dac_override": 1, "dac_read_search": 2, "fowner": 3, "kill": 5,
        "setgid": 6, "setuid": 7, "net_bind_service": 10, "net_raw": 13, "net_admin": 12,
        "ipc_lock": 14, "sys_ptrace": 19, "sys_admin": 21, "sys_resource": 24, "syslog": 34,
        "perfmon": 38, "bpf": 39}
DEFAULT_CAPS = ("bpf", "perfmon", "dac_read_search", "syslog")
DEFAULT_NAME = "bpfnb-caps"
XATTR = "security.capability"
_VFS_CAP_REVISION_2, _VFS_CAP_FLAGS_EFFECTIVE = 0x02000000, 0x1


class InstallError(BpfnbError):
    """install-kernel cannot do what was asked; the message says why and what to do."""


@dataclass(frozen=True)
class Installed:
    """Where an installed capability kernel lives."""

    name: str
    kernelspec: Path
    runtime: Path
    python: Path
    caps: tuple[str, ...]


def parse_caps(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """'cap_bpf,perfmon' -> ('bpf', 'perfmon'); unknown names raise InstallError."""
    items = text.split(",") if isinstance(text, str) else list(text)
    caps: list[str] = []
    for item in items:
        name = item.strip().lower().removeprefix("cap_")
        if not name:
            continue
        if name not in CAPS:
            raise InstallError(f"unknown capability {item!r}; known: {', '.join(sorted(CAPS))}")
        if name not in caps:
            caps.append(name)
    if not caps:
        raise InstallError("no capabilities given")
    return tuple(caps)


def cap_mask(caps: tuple[str, ...] | list[str]) -> int:
    """The bit mask /proc/PID/status shows as CapEff for these capabilities."""
    return sum(1 << CAPS[c] for c in caps)


def set_file_caps(path: Path, caps: tuple[str, ...]) -> None:
    """Write security.capability (v2, permitted+effective) as `setcap CAPS+ep` would."""
    mask = cap_mask(caps)
    value = struct.pack("<IIIII", _VFS_CAP_REVISION_2 | _VFS_CAP_FLAGS_EFFECTIVE,
                        mask & 0xFFFFFFFF, 0, mask >> 32, 0)
    os.setxattr(path, XATTR, value)


def file_caps(path: Path) -> tuple[str, ...]:
    """The permitted capabilities set on a file (empty if none)."""
    try:
        raw = os.getxattr(path, XATTR)
    except OSError:
        return ()
    _, lo, _, hi, _ = struct.unpack("<IIIII", raw[:20].ljust(20, b"\0"))
    mask = lo | hi << 32
    return tuple(name for name, bit in sorted(CAPS.items(), key=lambda kv: kv[1])
                 if mask >> bit & 1)


def paths(name: str = DEFAULT_NAME, prefix: str | Path | None = None) -> tuple[Path, Path]:
    """(kernelspec dir, runtime dir) for a kernel name under a prefix (default sys.prefix)."""
    base = Path(prefix or sys.prefix)
    return base / "share" / "jupyter" / "kernels" / name, base / "lib" / "bpfnb-kernels" / name


def _ids(user: str | None, group: str | None) -> tuple[int, int]:
    """(uid, gid) for the access check: the user (or nobody) and the group that may run it."""
    try:
        pw = pwd.getpwnam(user) if user else pwd.getpwnam("nobody")
        gid = grp.getgrnam(group).gr_gid if group else pw.pw_gid
    except KeyError as e:
        raise InstallError(f"no such user or group: {e}") from None
    return pw.pw_uid, gid


def _run_as(cmd: list[str], uid: int, gid: int, cwd: str = "/") -> subprocess.CompletedProcess[str]:
    """Run a command as uid:gid with no supplementary groups (root dropping, not raising)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": cwd, "LC_ALL": "C.UTF-8"}
    return subprocess.run(cmd, user=uid, group=gid, extra_groups=[], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def interpreter_problem(python: str, uid: int, gid: int) -> str | None:
    """Why `python` cannot serve as the kernel's interpreter for uid:gid, or None if it can."""
    want = f"{sys.version_info.major}.{sys.version_info.minor}"
    try:
        with open(python, "rb") as f:
            if f.read(4) != b"\x7fELF":
                return f"{python} is not an ELF executable (file capabilities need a binary)"
    except OSError as e:
        return f"cannot read {python}: {e.strerror}"
    try:
        res = _run_as([python, "-I", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                      uid, gid)
    except OSError as e:
        return f"user {uid} cannot run {python}: {e.strerror}"
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["?"])[-1]
        return f"user {uid} cannot run {python} ({last}); is a directory above it private?"
    got = res.stdout.strip()
    if got != want:
        return f"{python} is Python {got}, this environment is {want}"
    return None


def candidate_pythons() -> list[str]:
    """Interpreters to try: this environment's base interpreter, then the system's."""
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    found = [os.path.realpath(getattr(sys, "_base_executable", sys.executable))]
    for d in ("/usr/bin", "/usr/local/bin"):
        if os.path.exists(f"{d}/{minor}"):
            found.append(os.path.realpath(f"{d}/{minor}"))
    return list(dict.fromkeys(found))


def choose_python(uid: int, gid: int, python: str | None = None) -> str:
    """The given interpreter, or the first candidate uid:gid can run; InstallError says why."""
    problems = []
    for cand in [python] if python else candidate_pythons():
        problem = interpreter_problem(cand, uid, gid)
        if problem is None:
            return cand
        problems.append(problem)
    raise InstallError("no usable interpreter for the kernel: " + "; ".join(problems)
                       + ". Pass --python with an interpreter of this Python version that the "
                       "user can run.")


def install(name: str = DEFAULT_NAME, caps: tuple[str, ...] = DEFAULT_CAPS, *,
            prefix: str | Path | None = None, user: str | None = None,
            group: str | None = None, any_user: bool = False, python: str | None = None,
            display_name: str | None = None) -> Installed:
    """Install the capability kernel (root only); replaces an earlier one of that name."""
    if os.geteuid() != 0:
        raise InstallError("install-kernel is an admin step: run it as root (it sets file "
                           "capabilities; the kernel it installs then runs without root)")
    if not (user or group or any_user):
        raise InstallError("say who may run the kernel: --user USER, --group GROUP, or "
                           "--any-user (every local user then holds these capabilities)")
    caps = parse_caps(caps)
    uid, gid = _ids(user, group)
    interp = choose_python(uid, gid, python)
    spec_dir, runtime = paths(name, prefix)
    uninstall(name, prefix)
    pyver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    sp = runtime / "lib" / pyver / "site-packages"
    sp.mkdir(parents=True)
    (runtime / "bin").mkdir()
    version = _run_as([interp, "-I", "-c", "import platform; print(platform.python_version())"],
                      0, 0).stdout.strip()
    (runtime / "pyvenv.cfg").write_text(
        f"home = {os.path.dirname(interp)}\ninclude-system-site-packages = false\n"
        f"version = {version}\n")
    dirs = [d for d in site.getsitepackages() if os.path.isdir(d)]
    (sp / "bpfnb-env.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({d!r})" for d in dirs) + "\n")
    for path in [runtime, *runtime.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    binary = runtime / "bin" / "python"
    shutil.copyfile(interp, binary)
    os.chown(binary, 0, 0 if any_user else gid)  # chown clears file caps: set them last
    binary.chmod(0o755 if any_user else 0o750)
    set_file_caps(binary, caps)
    _smoke_test(binary, caps, uid, gid)
    _write_spec(spec_dir, binary, caps, display_name or f"Python (bpfnb, {','.join(caps)})")
    return Installed(name, spec_dir, runtime, binary, caps)


def _smoke_test(binary: Path, caps: tuple[str, ...], uid: int, gid: int) -> None:
    """Run the installed binary as the user: it imports the kernel stack and has `caps`."""
    code = ("import ipykernel, bpfnb, bcc\n"
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')][0])")
    res = _run_as([str(binary), "-c", code], uid, gid)
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["?"])[-1]
        raise InstallError(f"the installed kernel binary fails as user {uid}: {last}")
    if int(res.stdout.strip(), 16) != cap_mask(caps):
        raise InstallError(f"the kernel binary runs with CapEff={res.stdout.strip()}, not "
                           f"{cap_mask(caps):016x}: are file capabilities honoured here "
                           "(nosuid mount, user namespace)?")


def _write_spec(spec_dir: Path, binary: Path, caps: tuple[str, ...], display: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    spec = {"argv": [str(binary), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": display, "language": "python",
            "metadata": {"bpfnb": {"capabilities": list(caps), "binary": str(binary)}}}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / spec_dir.name
        src.mkdir()
        (src / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n")
        installed = KernelSpecManager().install_kernel_spec(
            str(src), kernel_name=spec_dir.name, prefix=str(spec_dir.parents[3]))
    for path in [Path(installed), *Path(installed).rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def uninstall(name: str = DEFAULT_NAME, prefix: str | Path | None = None) -> bool:
    """Remove the kernelspec and its capability binary; True if anything was there."""
    found = False
    for path in paths(name, prefix):
        if path.exists():
            shutil.rmtree(path)
            found = True
    return found
