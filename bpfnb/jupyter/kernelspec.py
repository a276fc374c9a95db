"""`bpfnb install-kernel`: a Jupyter kernel that runs with only the capabilities BPF needs.

A one-off admin step, run by root. It builds a small runtime under PREFIX/lib/bpfnb-kernels/NAME:
a copy of a Python interpreter (`bin/python`) carrying file capabilities, a `pyvenv.cfg` and a
`.pth` that adds this environment's site-packages, and a kernelspec at
PREFIX/share/jupyter/kernels/NAME whose argv runs that copy isolated (`-I`: no working-directory,
user-site or PYTHON* environment imports) with `-m bpfnb.jupyter.capkernel`, which empties the
bounding set before ipykernel starts: the kernel holds its capabilities, nothing it starts does.

The install is a transaction: it stages in a root-only directory, sets capabilities last,
smoke-tests as the user, then moves into place; on any failure the staged binary loses its
capabilities and is removed. Every directory is opened without following links and must be
owned by root and writable by root only (bpfnb._sys.safedirs); so must every directory the kernel
imports code from (or be the `--user`'s own). Who may run it: bpfnb.jupyter.kernelaccess.

What needs which capability here (kernel 6.18, perf_event_paranoid=2, kptr_restrict=0):
  bpf, perfmon      load programs; raw tracepoints, perf events, maps, ring/perf buffers, pins
  syslog            real addresses in /proc/kallsyms (kernel stack symbols)
  sys_admin         uprobes/USDT (the uprobe PMU wants CAP_SYS_ADMIN), listing BPF objects by id
  net_admin         XDP, tc and socket programs
  dac_read_search   reads every file on the machine: only where tracefs is not group-readable
Tracepoints need tracefs's `id`/`format` files: `scripts/setup-system` mounts tracefs with
gid=bpfnb,mode=0750 and install-kernel adds the kernel's user to group `bpfnb`.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import site
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager

from bpfnb._sys import capabilities
from bpfnb._sys.capabilities import CapabilityError, cap_mask, file_caps
from bpfnb._sys.safedirs import SafeDir, UnsafePathError, open_root_dir
from bpfnb.jupyter.kernelaccess import (
    TRACEFS_GROUP,
    InstallError,
    dedicated_group,
    grant_tracefs,
    group_exists,
    who_can_run,
)

__all__ = ["DEFAULT_CAPS", "TRACEFS_GROUP", "InstallError", "Installed", "cap_mask", "file_caps",
           "install", "parse_caps", "paths", "uninstall", "who_can_run"]

DEFAULT_CAPS = ("bpf", "perfmon", "syslog")
DEFAULT_NAME = "bpfnb-caps"
STEPS = ("group", "stage", "runtime", "binary", "trust", "capabilities", "smoke_test", "activate",
         "spec")
SCRUBBED_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "PYTHONINSPECT",
                "PYTHONEXECUTABLE", "PYTHONBREAKPOINT", "PYTHONWARNINGS", "PYTHONPLATLIBDIR",
                "PYTHONPYCACHEPREFIX", "PYTHONDEVMODE")


@dataclass(frozen=True)
class Installed:
    """Where an installed capability kernel lives and who may run it."""

    name: str
    kernelspec: Path
    runtime: Path
    python: Path
    caps: tuple[str, ...]
    group: str = ""
    who: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())


def parse_caps(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """'cap_bpf,perfmon' -> ('bpf', 'perfmon'); unknown names raise InstallError."""
    try:
        caps = capabilities.parse_caps(text)
    except CapabilityError as e:
        raise InstallError(str(e)) from None
    if "setpcap" in caps:
        raise InstallError("setpcap is not grantable: the kernel holds it only to confine its "
                           "other capabilities and drops it before any code runs")
    return caps


def paths(name: str = DEFAULT_NAME, prefix: str | Path | None = None) -> tuple[Path, Path]:
    """(kernelspec dir, runtime dir) for a kernel name under a prefix (default sys.prefix)."""
    base = Path(prefix or sys.prefix)
    return base / "share" / "jupyter" / "kernels" / name, base / "lib" / "bpfnb-kernels" / name


# -- the interpreter -------------------------------------------------------------------------
def _ids(user: str | None, group: str | None) -> tuple[int, int]:
    """(uid, gid) for the access check: the user (or nobody) and the group that may run it."""
    try:
        pw = pwd.getpwnam(user) if user else pwd.getpwnam("nobody")
        gid = grp.getgrnam(group).gr_gid if group else pw.pw_gid
    except KeyError as e:
        raise InstallError(f"no such user or group: {e}") from None
    return pw.pw_uid, gid


def _run_as(cmd: list[str], uid: int, gid: int, cwd: str = "/",
            groups: tuple[int, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run a command as uid:gid with only `groups` besides (root dropping, not raising)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": cwd, "LC_ALL": "C.UTF-8"}
    return subprocess.run(cmd, user=uid, group=gid, extra_groups=list(groups), cwd=cwd, env=env,
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


SMOKE_CODE = """\
import subprocess, sys, ipykernel, bcc
from bpfnb._sys.capabilities import CAPS, confine, status_masks
before = status_masks()["CapPrm"]
confine(before & ~(1 << CAPS["setpcap"]))
after = status_masks()
child = subprocess.run([sys.executable, "-I", "-c", "from bpfnb._sys.capabilities import "
                        "status_masks as s; print(s()['CapEff'])"], capture_output=True,
                       text=True, check=True).stdout.strip()
print(before, after["CapEff"], after["CapBnd"], child)
"""


TRUST_CODE = """\
import importlib.util, json, sys
specs = [importlib.util.find_spec(m) for m in ("bpfnb", "ipykernel", "bcc")]
homes = [p for s in specs if s and s.submodule_search_locations
         for p in s.submodule_search_locations]
print(json.dumps([p for p in sys.path if p] + homes))
"""


# -- the transaction -----------------------------------------------------------------------
class _Install:
    """One install: STEPS run in order; `rollback()` undoes whatever ran."""

    def __init__(self, name: str, caps: tuple[str, ...], prefix: Path, interp: str,
                 user: str | None, group: str | None, any_user: bool, display: str) -> None:
        self.name, self.caps, self.prefix, self.interp = name, caps, prefix, interp
        self.user, self.group, self.any_user, self.display = user, group, any_user, display
        self.gid: int | None = None
        self.made_group = ""
        self.root: SafeDir | None = None
        self.kernels: SafeDir | None = None
        self.stage: SafeDir | None = None
        self.stage_name = f".{name}.stage-{os.getpid()}"
        self.binary_fd = -1
        self.activated = False
        self.spec_written = False
        self.notes: list[str] = []

    @property
    def runtime(self) -> Path:
        return paths(self.name, self.prefix)[1]

    def run(self) -> Installed:
        try:
            for step in STEPS:
                getattr(self, f"step_{step}")()
        except BaseException:
            self.rollback()
            raise
        finally:
            self.close()
        who = who_can_run(self.gid)
        return Installed(self.name, paths(self.name, self.prefix)[0], self.runtime,
                         self.runtime / "bin" / "python", self.caps,
                         grp.getgrgid(self.gid).gr_name if self.gid is not None else "",
                         who, tuple(self.notes))

    def staged_binary(self) -> str:
        """The staged binary's path, once more checked to lead to the directory made here."""
        assert self.stage is not None
        if not self.stage.still_at_path():
            raise InstallError(f"{self.stage.path} changed during the install; install again "
                               "into a prefix nobody else can write")
        return str(self.stage.path / "bin" / "python")

    def step_group(self) -> None:
        if self.any_user:
            return
        if self.group is None and self.user is not None:
            existed = group_exists(f"bpfnb-{self.user}"[:32])
            self.group = dedicated_group(self.user)
            self.made_group = "" if existed else self.group
        assert self.group is not None
        self.gid = grp.getgrnam(self.group).gr_gid
        if self.user:
            self.notes.append(grant_tracefs(self.user))
        else:
            self.notes.append(f"for tracepoints, add each member of {self.group} to group "
                              f"{TRACEFS_GROUP} (gpasswd -a USER {TRACEFS_GROUP})")
        if self.made_group:
            self.notes.append(f"made group {self.made_group} for {self.user}: {self.user} logs in "
                              "again (restart Jupyter) to hold it")

    def step_stage(self) -> None:
        self.root = open_root_dir(self.prefix, create=True)
        with self.root.sub("lib") as lib:
            self.kernels = lib.sub("bpfnb-kernels")
        self.kernels.remove_tree(self.stage_name)
        self.stage = self.kernels.sub(self.stage_name, mode=0o700)
        os.fchmod(self.stage.fd, 0o700)

    def step_runtime(self) -> None:
        assert self.stage is not None
        pyver = f"python{sys.version_info.major}.{sys.version_info.minor}"
        with self.stage.sub("lib") as lib, lib.sub(pyver) as lp, lp.sub("site-packages") as sp:
            dirs = [d for d in site.getsitepackages() if os.path.isdir(d)]
            sp.write("bpfnb-env.pth", ("import site; " + "; ".join(
                f"site.addsitedir({d!r})" for d in dirs) + "\n").encode())
        version = _run_as([self.interp, "-I", "-c",
                           "import platform; print(platform.python_version())"], 0, 0)
        self.stage.write("pyvenv.cfg", (
            f"home = {os.path.dirname(self.interp)}\ninclude-system-site-packages = false\n"
            f"version = {version.stdout.strip()}\n").encode())

    def step_binary(self) -> None:
        assert self.stage is not None
        with self.stage.sub("bin") as bindir, open(self.interp, "rb") as src:
            with os.fdopen(bindir.create("python", 0o700), "wb") as dst:
                shutil.copyfileobj(src, dst)
            # read-only from here: an fd open for writing would make exec fail (ETXTBSY)
            self.binary_fd = os.open("python", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                     dir_fd=bindir.fd)
            os.fchown(self.binary_fd, 0, 0 if self.gid is None else self.gid)
            os.fchmod(self.binary_fd, 0o755 if self.gid is None else 0o750)

    def step_trust(self) -> None:
        """Every directory the kernel imports from (its sys.path, and where bpfnb, ipykernel
        and bcc live) must be changeable by root alone, or by the one user it is for."""
        res = _run_as([self.staged_binary(), "-I", "-c", TRUST_CODE], 0, 0)
        if res.returncode != 0:
            raise InstallError(f"the staged interpreter does not start: {res.stderr.strip()}")
        owners = frozenset({0, pwd.getpwnam(self.user).pw_uid} if self.user else {0})
        for d in json.loads(res.stdout):
            if not os.path.isdir(d):
                continue
            try:  # links are fine where only trusted users can replace them
                open_root_dir(os.path.realpath(d), owners=owners).close()
                for link in (a for a in (Path(d), *Path(d).parents) if a.is_symlink()):
                    open_root_dir(os.path.realpath(link.parent), owners=owners,
                                  sticky_ok=True).close()
            except UnsafePathError as e:
                raise InstallError(f"the kernel would import code from {d}, which someone "
                                   f"else can change: {e}") from None

    def step_capabilities(self) -> None:
        """Last change to the binary (chown clears file capabilities). Permitted only: the
        kernel's launcher raises them, and a child's exec of the binary (bounding set empty)
        then runs with none instead of failing."""
        capabilities.set_file_caps(self.binary_fd, (*self.caps, "setpcap"), effective=False)

    def step_smoke_test(self) -> None:
        """Run the staged binary as the user: imports work, it holds exactly the caps after
        confining them, and a child through sys.executable holds none."""
        assert self.stage is not None
        os.fchown(self.stage.fd, 0, 0 if self.gid is None else self.gid)
        os.fchmod(self.stage.fd, 0o755 if self.gid is None else 0o750)
        uid = pwd.getpwnam(self.user or "nobody").pw_uid
        if self.user is None and self.gid is not None and grp.getgrgid(self.gid).gr_mem:
            uid = pwd.getpwnam(grp.getgrgid(self.gid).gr_mem[0]).pw_uid
        gid = self.gid if self.gid is not None else pwd.getpwuid(uid).pw_gid
        res = _run_as([self.staged_binary(), "-I", "-c", SMOKE_CODE], uid, gid)
        if res.returncode != 0:
            last = (res.stderr.strip().splitlines() or ["?"])[-1]
            raise InstallError(f"the kernel binary fails as user {uid}: {last}")
        want = cap_mask(self.caps)
        before, after, bounding, child = (int(x) for x in res.stdout.split())
        if before != want | cap_mask(("setpcap",)):
            raise InstallError(f"the kernel binary runs with CapPrm={before:016x}, not "
                               f"{want:016x}: are file capabilities honoured here (nosuid "
                               "mount, user namespace)?")
        if (after, bounding, child) != (want, 0, 0):
            raise InstallError(f"the kernel cannot confine its capabilities (CapEff={after:x}, "
                               f"CapBnd={bounding:x}, child CapEff={child:x})")

    def step_activate(self) -> None:
        assert self.kernels is not None
        _remove_runtime(self.kernels, self.name)
        self.kernels.rename(self.stage_name, self.kernels, self.name)
        self.activated = True

    def step_spec(self) -> None:
        assert self.root is not None
        binary = self.runtime / "bin" / "python"
        spec = {"argv": [str(binary), "-I", "-m", "bpfnb.jupyter.capkernel",
                         "-f", "{connection_file}"],
                "env": {k: "" for k in SCRUBBED_ENV}, "display_name": self.display,
                "language": "python",
                "metadata": {"bpfnb": {"capabilities": list(self.caps), "binary": str(binary),
                                       "group": self.group or "",
                                       "dedicated_group": self.made_group}}}
        with self.root.sub("share") as share, share.sub("jupyter") as jup, \
                jup.sub("kernels") as kernels:
            kernels.remove_tree(self.name)
            self.spec_written = True
            with kernels.sub(self.name) as d:
                d.write("kernel.json", (json.dumps(spec, indent=1) + "\n").encode())
        if not (self.kernels and self.kernels.still_at_path()):
            raise InstallError(f"{self.prefix} changed during the install; install again into "
                               "a prefix nobody else can write")

    def rollback(self) -> None:
        """Strip the capabilities first (every hard link loses them), then remove."""
        if self.binary_fd >= 0:
            capabilities.clear_file_caps(self.binary_fd)
        if self.kernels is not None:
            self.kernels.remove_tree(self.stage_name)
            if self.activated:
                _remove_runtime(self.kernels, self.name)
        if self.spec_written and self.root is not None:
            with self.root.sub("share") as share, share.sub("jupyter") as jup, \
                    jup.sub("kernels") as kernels:
                kernels.remove_tree(self.name)
        if self.made_group:
            subprocess.run(["groupdel", self.made_group], capture_output=True, check=False)

    def close(self) -> None:
        if self.binary_fd >= 0:
            os.close(self.binary_fd)
            self.binary_fd = -1
        for d in (self.stage, self.kernels, self.root):
            if d is not None:
                d.close()


def _remove_runtime(kernels: SafeDir, name: str) -> None:
    """Remove an installed runtime, its binary's capabilities first."""
    if not kernels.exists(name):
        return
    try:
        fd = os.open(f"{name}/bin/python", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=kernels.fd)
    except OSError:
        fd = -1
    if fd >= 0:
        try:
            capabilities.clear_file_caps(fd)
        finally:
            os.close(fd)
    kernels.remove_tree(name)


def install(name: str = DEFAULT_NAME, caps: tuple[str, ...] = DEFAULT_CAPS, *,
            prefix: str | Path | None = None, user: str | None = None,
            group: str | None = None, any_user: bool = False, python: str | None = None,
            display_name: str | None = None) -> Installed:
    """Install the capability kernel (root only); replaces an earlier one of that name.

    `user`: a dedicated group bpfnb-USER holding only USER may run it; `group`: every member
    of GROUP may; `any_user`: everyone may. The result's `who` lists them."""
    if os.geteuid() != 0:
        raise InstallError("install-kernel is an admin step: run it as root (it sets file "
                           "capabilities; the kernel it installs then runs without root)")
    if sum(map(bool, (user, group, any_user))) != 1:
        raise InstallError("say who may run the kernel: one of --user USER, --group GROUP, or "
                           "--any-user (every local user then holds these capabilities)")
    if "/" in name or name.startswith("."):
        raise InstallError(f"kernel name {name!r} must be a plain name (no '/', no leading '.')")
    caps = parse_caps(caps)
    uid, gid = _ids(user, group)
    interp = choose_python(uid, gid, python)
    display = display_name or f"Python (bpfnb, {','.join(caps)})"
    try:
        return _Install(name, caps, Path(os.path.abspath(prefix or sys.prefix)), interp,
                        user, group, any_user, display).run()
    except UnsafePathError as e:
        raise InstallError(str(e)) from None


def uninstall(name: str = DEFAULT_NAME, prefix: str | Path | None = None) -> bool:
    """Remove the kernelspec, its capability binary and a group made for it; True if found.
    UnsafePathError if a directory on the way is not root's alone."""
    spec_dir, runtime = paths(name, prefix)
    found = False
    try:
        with open_root_dir(spec_dir.parent) as kernels:
            made = _dedicated_group_of(kernels, name)
            found = kernels.exists(name)
            _remove_spec(kernels, name)
    except FileNotFoundError:
        made = ""
    try:
        with open_root_dir(runtime.parent) as rt:
            found = rt.exists(name) or found
            _remove_runtime(rt, name)
    except FileNotFoundError:
        pass
    if made:
        subprocess.run(["groupdel", made], capture_output=True, check=False)
    return found


def _remove_spec(kernels: SafeDir, name: str) -> None:
    """Remove kernelspec `name` from `kernels` (checked root's alone, still at its path) with
    Jupyter's KernelSpecManager, limited to that one directory: a spec of the same name in a
    user's Jupyter path is not touched. A directory without kernel.json (an install that
    failed midway) is no kernelspec to Jupyter: removed through the directory's fd."""
    if not kernels.still_at_path():
        raise UnsafePathError(f"{kernels.path} changed during the uninstall; run it again")
    manager = KernelSpecManager(kernel_dirs=[str(kernels.path)], ensure_native_kernel=False)
    try:
        manager.remove_kernel_spec(name)
    except KeyError:  # NoSuchKernel: not a kernelspec (or absent)
        kernels.remove_tree(name)


def _dedicated_group_of(kernels: SafeDir, name: str) -> str:
    try:
        fd = os.open(f"{name}/kernel.json", os.O_RDONLY | os.O_NOFOLLOW, dir_fd=kernels.fd)
        with os.fdopen(fd) as f:
            meta = json.load(f).get("metadata", {}).get("bpfnb", {})
    except (OSError, ValueError, AttributeError):
        return ""
    made = meta.get("dedicated_group", "") if isinstance(meta, dict) else ""
    return made if isinstance(made, str) and made.startswith("bpfnb-") else ""
