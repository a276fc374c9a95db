"""What works here, why not, and how to fix it: one table for people and test skips.

`doctor()` gathers cheap facts (kernel, BTF, headers, bcc, mounts, capabilities, lockdown,
sysctls, stale tracefs probes) and, for each attach kind, whether a tiny program loads *and*
attaches here. The attach probes compile as one bcc program (clang runs once), attach one by
one and are fully removed again; their results are cached per boot, kernel, euid and
capability set, so the second call is instant. `skip_reason(kind)` is what tests skip with.
"""

from __future__ import annotations

import contextlib
import html
import importlib.util
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bpfnb._sys import features
from bpfnb._sys.cgroupfs import Cgroup
from bpfnb.backends import select
from bpfnb.errors import BpfnbError, CompileError, PrivilegeError
from bpfnb.program.core import load
from bpfnb.symbols import cachedir
from bpfnb.testing.netns import NetNs

if TYPE_CHECKING:
    import pandas as pd

    from bpfnb.program.core import Program

CACHE_VERSION = 2
CACHE, CACHE_FILE = "doctor", "attach.json"  # bpfnb.symbols.cachedir folder, file in it
STATUSES = ("ok", "no", "warn", "info")
_STATUS_COLORS = {"ok": "#1a7f37", "no": "#cf222e", "warn": "#9a6700", "info": "#57606a"}
_CAPS = {"CAP_BPF": features.CAP_BPF, "CAP_PERFMON": features.CAP_PERFMON,
         "CAP_SYS_ADMIN": features.CAP_SYS_ADMIN, "CAP_NET_ADMIN": features.CAP_NET_ADMIN}
_CAP_USES = {
    "CAP_BPF": "load programs and create maps",
    "CAP_PERFMON": "tracing programs, perf events, reading kernel memory",
    "CAP_SYS_ADMIN": "everything, on kernels older than 5.8; some map and program types",
    "CAP_NET_ADMIN": "XDP, tc and cgroup_skb programs",
}
_MOUNTS = {
    "tracefs": ("/sys/kernel/tracing", "tracepoints and tracefs probes"),
    "debugfs": ("/sys/kernel/debug", "older tools that look for tracing under debugfs"),
    "bpf": ("/sys/fs/bpf", "pinning maps and programs"),
    "securityfs": ("/sys/kernel/security", "reading the lockdown mode"),
}
_SYSCTL_MEANINGS = {
    "kernel.unprivileged_bpf_disabled": {
        "0": "unprivileged BPF allowed", "1": "unprivileged BPF off until reboot",
        "2": "unprivileged BPF off; root may turn it on"},
    "kernel.perf_event_paranoid": {
        "-1": "no restrictions", "0": "no raw tracepoints for users",
        "1": "users: no kernel profiling", "2": "users: own processes, user space only",
        "3": "users: no perf events at all (Debian patch)"},
}

# -- the attach probes: one C function each, compiled together --------------------------
_HEADER = """\
#include <uapi/linux/ptrace.h>
#include <uapi/linux/bpf.h>
#include <linux/bpf_perf_event.h>
"""
_SNIPPETS = {
    "tracepoint": "int doctor_tp(void *ctx) { return 0; }",
    "raw_tracepoint": "int doctor_raw(void *ctx) { return 0; }",
    "kprobe": "int doctor_kprobe(struct pt_regs *ctx) { return 0; }",
    "fentry": "KFUNC_PROBE(vfs_read) { return 0; }",
    "uprobe": "int doctor_uprobe(struct pt_regs *ctx) { return 0; }",
    "perf_event": "int doctor_perf(struct bpf_perf_event_data *ctx) { return 0; }",
    "xdp": "int doctor_xdp(struct xdp_md *ctx) { return XDP_PASS; }",
    "cgroup_skb": "int doctor_skb(struct __sk_buff *skb) { return 1; }",
    "lsm": "LSM_PROBE(file_open, struct file *file) { return 0; }",
}
KINDS = tuple(_SNIPPETS)
_FIXES = {
    "tracepoint": "mount tracefs; check the tracepoint in /sys/kernel/tracing/available_events",
    "raw_tracepoint": "needs kernel >= 4.17 and CAP_PERFMON (or CAP_SYS_ADMIN)",
    "kprobe": "boot a kernel with CONFIG_KPROBES=y and CONFIG_KPROBE_EVENTS=y; "
              "meanwhile use TRACEPOINT_PROBE or RAW_TRACEPOINT_PROBE",
    "fentry": "needs BTF, CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS and a kernel that allows "
              "BPF trampolines (not under some lockdown/VM setups); use kprobes or tracepoints",
    "uprobe": "boot a kernel with CONFIG_UPROBES=y and CONFIG_UPROBE_EVENTS=y",
    "perf_event": "lower kernel.perf_event_paranoid or grant CAP_PERFMON",
    "xdp": "grant CAP_NET_ADMIN; generic (SKB) mode works on any interface",
    "cgroup_skb": "mount cgroup v2 (`mount -t cgroup2 none /sys/fs/cgroup/unified`) and grant "
                  "CAP_NET_ADMIN",
    "lsm": "boot with CONFIG_BPF_LSM=y and 'bpf' in the lsm= kernel parameter",
}
_PRIVILEGE_FIX = ("run the Jupyter kernel as root or with CAP_BPF and CAP_PERFMON (the "
                  "capability kernel, `bpfnb install-kernel`), or replay a recording")
_DESCRIPTIONS = {
    "tracepoint": "tracepoint sched:sched_process_exec",
    "raw_tracepoint": "raw tracepoint sched_process_exec",
    "kprobe": "kprobe on vfs_read",
    "fentry": "fentry (KFUNC_PROBE) on vfs_read",
    "uprobe": "uprobe on libc getpid (this process only)",
    "perf_event": "perf event software cpu-clock (this process)",
    "xdp": "XDP generic mode on lo in a throwaway netns",
    "cgroup_skb": "cgroup_skb ingress on a throwaway cgroup",
    "lsm": "LSM hook file_open",
}


def _attach_tracepoint(prog: Program) -> None:
    prog.attach_tracepoint("sched:sched_process_exec", "doctor_tp")


def _attach_raw_tracepoint(prog: Program) -> None:
    prog.attach_raw_tracepoint("sched_process_exec", "doctor_raw")


def _attach_kprobe(prog: Program) -> None:
    prog.attach_kprobe("vfs_read", "doctor_kprobe")


def _attach_uprobe(prog: Program) -> None:
    prog.attach_uprobe("c", "getpid", "doctor_uprobe", pid=os.getpid())


def _attach_perf_event(prog: Program) -> None:
    prog.attach_perf_event("doctor_perf", sample_freq=1, pid=os.getpid())


def _attach_btf(kind: str, function: str, target: str) -> Callable[[Program], None]:
    """fentry/LSM: bcc loads these with their BTF target itself."""
    def attach(prog: Program) -> None:
        if kind == "lsm":
            prog.attach_lsm(function)
        else:
            prog.attach_kfunc(function, ret=kind == "kretfunc")
    return attach


def _attach_xdp(prog: Program) -> None:
    with NetNs(f"bpfnb-doctor-{os.getpid()}") as ns:
        prog.function("doctor_xdp", "xdp").attach_xdp("lo", mode="generic", netns=ns).close()


def _attach_cgroup_skb(prog: Program) -> None:
    with Cgroup(f"bpfnb-doctor-{os.getpid()}") as cg:
        prog.function("doctor_skb", "cgroup_skb").attach_cgroup(cg, "ingress").close()


_ATTACHERS: dict[str, Callable[[Program], None]] = {
    "tracepoint": _attach_tracepoint,
    "raw_tracepoint": _attach_raw_tracepoint,
    "kprobe": _attach_kprobe,
    "fentry": _attach_btf("kfunc", "kfunc__vfs_read", "vfs_read"),
    "uprobe": _attach_uprobe,
    "perf_event": _attach_perf_event,
    "xdp": _attach_xdp,
    "cgroup_skb": _attach_cgroup_skb,
    "lsm": _attach_btf("lsm", "lsm__file_open", "file_open"),
}


@dataclass(frozen=True)
class ProbeResult:
    """Whether one attach kind loads and attaches here; if not, the kit's reason."""

    kind: str
    ok: bool
    reason: str = ""
    fix: str = ""
    ms: float = 0.0


def _source(kinds: tuple[str, ...]) -> str:
    return _HEADER + "\n".join(_SNIPPETS[k] for k in kinds) + "\n"


def _why(e: BaseException) -> str:
    if isinstance(e, BpfnbError):
        return str(e).split("\n", 1)[0] if isinstance(e, CompileError) else str(e)
    return f"{type(e).__name__}: {e}"


def _try_attach(prog: Program, kind: str) -> ProbeResult:
    start = time.perf_counter()
    try:
        _ATTACHERS[kind](prog)
    except (BpfnbError, OSError) as e:
        return _failed(kind, e, _ms(start))
    return ProbeResult(kind, True, ms=_ms(start))


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


def _run_group(kinds: tuple[str, ...]) -> list[ProbeResult]:
    """Compile `kinds` as one program, attach each, then free everything."""
    prog = load(_source(kinds), name="bpfnb_doctor", attach=False)
    try:
        return [_try_attach(prog, k) for k in kinds]
    finally:
        prog.close()


def probe_attach_kinds(kinds: tuple[str, ...] = KINDS) -> list[ProbeResult]:
    """Load and attach a tiny program of each kind; nothing stays attached or loaded."""
    try:
        return _run_group(kinds)
    except CompileError:
        if len(kinds) == 1:
            raise
    except BpfnbError as e:  # no privilege, no bcc: every kind fails the same way
        return [_failed(k, e) for k in kinds]
    return [_one(k) for k in kinds]  # one snippet broke the build: find which


def _one(kind: str) -> ProbeResult:
    try:
        return _run_group((kind,))[0]
    except BpfnbError as e:
        return _failed(kind, e)


def _failed(kind: str, e: BaseException, ms: float = 0.0) -> ProbeResult:
    """A failure with the kit's reason; a missing privilege is fixed the same for every kind."""
    fix = _PRIVILEGE_FIX if isinstance(e, PrivilegeError) else _FIXES[kind]
    return ProbeResult(kind, False, _why(e), fix, ms)


# -- cache ---------------------------------------------------------------------------------
def cache_key() -> dict[str, Any]:
    """What the attach results depend on: this boot, kernel, user, capability set and the
    backend `auto` loads the probes with."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "unknown"
    return {"version": CACHE_VERSION, "boot_id": boot, "release": os.uname().release,
            "euid": os.geteuid(), "caps": features.capabilities(),
            "backend": select.choose("").backend}


def cache_path() -> Path | None:
    """Where the attach results are kept: CACHE_FILE in the kit's cache folder CACHE
    (bpfnb.symbols.cachedir: root's under /var/cache/bpfnb, a user's under ~/.cache/bpfnb),
    or None if there is no safe place for it."""
    where = cachedir.open_cache(CACHE, users=True)
    if where is None:
        return None
    with where:
        return where.path / CACHE_FILE


def _read_cache(key: dict[str, Any]) -> list[ProbeResult] | None:
    where = cachedir.open_cache(CACHE, users=True)
    if where is None:
        return None
    with where:
        raw = cachedir.read(where, CACHE_FILE)
    try:
        data = json.loads(raw or b"{}")
        if data.get("key") != key:
            return None
        return [ProbeResult(**r) for r in data["probes"]]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _write_cache(key: dict[str, Any], probes: list[ProbeResult]) -> None:
    """Atomic (cachedir.write: never through a link); no cache without a safe place."""
    where = cachedir.open_cache(CACHE, users=True)
    if where is None:
        return
    with where:
        text = json.dumps({"key": key, "probes": [asdict(p) for p in probes]})
        cachedir.write(where, CACHE_FILE, text.encode())


def attach_results(refresh: bool = False) -> tuple[list[ProbeResult], bool]:
    """The attach probes' results and whether they came from the cache."""
    key = cache_key()
    cached = None if refresh else _read_cache(key)
    if cached is not None and {p.kind for p in cached} == set(KINDS):
        return cached, True
    probes = probe_attach_kinds()
    select.release()  # its probes were one-offs: keep no spare compiler for them
    _write_cache(key, probes)
    return probes, False


# -- stale tracefs probes ----------------------------------------------------------------
_PROBE_FILES = {"uprobes": "uprobe_events", "kprobes": "kprobe_events"}
_BCC_EVENT = re.compile(r"^[pr](?:\d+)?:(?P<group>\w+)/(?P<name>\S+_bcc_(?P<pid>\d+))\s")


def _tracefs_probes() -> Iterator[tuple[str, str, int]]:
    """(events file, 'group/name', creator pid) for every bcc-named tracefs probe."""
    root = features.tracefs()
    if root is None:
        return
    for group, filename in _PROBE_FILES.items():
        path = os.path.join(root, filename)
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            m = _BCC_EVENT.match(line)
            if m and m.group("group") == group:
                yield path, f"{group}/{m.group('name')}", int(m.group("pid"))


INIT_PID_NS_INO = 0xEFFFFFFC  # PROC_PID_INIT_INO: the initial PID namespace's inode


def _namespace_pids() -> set[int] | None:
    """Every pid any live process has in any PID namespace (from each NSpid line), or None
    if this process cannot see them all (it is not in the initial PID namespace)."""
    try:
        if os.stat("/proc/self/ns/pid").st_ino != INIT_PID_NS_INO:
            return None
    except OSError:
        return None
    pids: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for line in Path(entry.path, "status").read_text().splitlines():
                if line.startswith("NSpid:"):
                    pids.update(int(x) for x in line.split()[1:])
                    break
    return pids


def probe_owners() -> list[tuple[str, int, str]]:
    """(event, creator pid, state) for each bcc tracefs probe; state is 'gone' only when no
    process in any PID namespace has that pid, 'alive' when one may be its creator, 'unknown'
    when this process cannot see every namespace."""
    probes = list(_tracefs_probes())
    seen = _namespace_pids()
    return [(event, pid, "unknown" if seen is None else "alive" if pid in seen else "gone")
            for _path, event, pid in probes]


def stale_probes() -> list[str]:
    """bcc-made tracefs kprobe/uprobe events ('group/name') whose creating process is gone.

    bcc names the tracefs events it makes `..._bcc_<pid>` (the pid as its creator saw it, in
    its own PID namespace) and removes them on a clean exit; a process killed with SIGKILL
    leaves them behind. A probe counts as stale only if no process in any namespace has that
    pid: a live owner in another container is never taken for a dead one.
    """
    return [event for event, _pid, state in probe_owners() if state == "gone"]


def cleanup_stale_probes() -> int:
    """Remove the stale bcc tracefs probes (see stale_probes); how many were removed. Probes
    whose owner may be alive, or cannot be told, are kept (probe_owners() says which)."""
    gone = set(stale_probes())
    removed = 0
    for path, event, _pid in list(_tracefs_probes()):
        if event not in gone:
            continue
        try:
            _append(path, f"-:{event}\n")
        except OSError:  # busy (still in use) or already gone
            continue
        removed += 1
    return removed


def _append(path: str, text: str) -> None:
    """One write with O_APPEND and no seek: O_TRUNC would delete every probe, and tracefs
    rejects the seek that Python's append mode does."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


# -- cheap facts -------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    section: str
    check: str
    status: str  # one of STATUSES
    detail: str
    fix: str = ""


def _kernel_rows() -> list[Row]:
    u = os.uname()
    btf = features.btf()
    rows = [Row("kernel", "version", "info", f"{u.release} ({u.version})"),
            Row("kernel", "BTF", "ok" if btf else "no",
                "/sys/kernel/btf/vmlinux" if btf else btf.reason,
                "" if btf else "boot a kernel built with CONFIG_DEBUG_INFO_BTF=y")]
    return [*rows, _headers_row()]


def _headers_row() -> Row:
    feat = features.kernel_headers()
    build = f"/lib/modules/{os.uname().release}/build"
    if not feat:
        return Row("kernel", "headers", "no", feat.reason,
                   "install linux-headers for this kernel, or link the newest installed "
                   "headers (`make setup`)")
    target = os.path.realpath(build)
    if feat.reason:
        return Row("kernel", "headers", "warn", f"fallback: {build} -> {target}",
                   "install headers for the running kernel if programs misbehave")
    return Row("kernel", "headers", "ok", f"exact: {build} -> {target}")


def bcc_info() -> tuple[str | None, str | None]:
    """bcc's version and the libbcc it uses (without importing bcc)."""
    spec = importlib.util.find_spec("bcc")
    version = None
    if spec and spec.origin:
        text = Path(spec.origin).with_name("version.py")
        with contextlib.suppress(OSError):
            m = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", text.read_text())
            version = m.group(1) if m else None
    return version, _libbcc_path()


def _libbcc_path() -> str | None:
    """The loaded libbcc, else where the dynamic linker would find it."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/maps").read_text().splitlines():
            if "libbcc.so" in line:
                return line.split()[-1]
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=5).stdout
        m = re.search(r"libbcc\.so\.0 .*=> (\S+)", out)
        if m:
            return os.path.realpath(m.group(1))
    return None


def _bcc_rows() -> list[Row]:
    version, lib = bcc_info()
    if version is None:
        return [Row("bcc", "version", "no", "bcc's Python package is not importable",
                    "install Debian's python3-bpfcc and link it into the venv (`make setup`); "
                    "PyPI's 'bcc' is unrelated")]
    return [Row("bcc", "version", "ok", version),
            Row("bcc", "libbcc", "ok" if lib else "no", lib or "libbcc.so.0 not found",
                "" if lib else "install libbpfcc")]


def _mount_points() -> dict[str, list[str]]:
    points: dict[str, list[str]] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 2:
                points.setdefault(parts[2], []).append(parts[1])
    return points


def _mount_rows() -> list[Row]:
    points = _mount_points()
    rows = []
    for fstype, (where, needed_for) in _MOUNTS.items():
        at = points.get(fstype)
        status = "ok" if at else ("warn" if fstype in ("debugfs", "securityfs") else "no")
        rows.append(Row("mounts", fstype, status,
                        ", ".join(at) if at else f"not mounted (needed for {needed_for})",
                        "" if at else f"mount -t {fstype} {fstype} {where}"))
    return rows


def _cap_rows() -> list[Row]:
    mask = features.capabilities()
    rows = []
    for name, bit in _CAPS.items():
        has = bool(mask >> bit & 1)
        rows.append(Row("capabilities", name, "ok" if has else "no",
                        f"{'has' if has else 'lacks'} it ({_CAP_USES[name]})",
                        "" if has else _PRIVILEGE_FIX))
    return rows


def _policy_rows() -> list[Row]:
    lock = features.lockdown()
    if lock is None:
        lock_row = Row("policy", "lockdown", "info", "unknown (securityfs not mounted)",
                       "mount -t securityfs securityfs /sys/kernel/security")
    else:
        lock_row = Row("policy", "lockdown", "warn" if lock == "confidentiality" else "info",
                       lock, "confidentiality blocks reading kernel memory; boot with "
                       "lockdown=integrity or none" if lock == "confidentiality" else "")
    rows = [lock_row]
    for name, meanings in _SYSCTL_MEANINGS.items():
        value = features.sysctl(name)
        meaning = meanings.get(value or "", "unreadable" if value is None else "")
        rows.append(Row("policy", name, "info", f"{value} ({meaning})" if value else meaning))
    return rows


def _probe_mechanism_row() -> Row:
    pmu = {kind: os.path.exists(f"/sys/bus/event_source/devices/{kind}/type")
           for kind in ("kprobe", "uprobe")}
    have = [k for k, ok in pmu.items() if ok]
    detail = (f"perf_event_open PMU for {' and '.join(have)}: no tracefs entries, nothing "
              "left behind by a crash" if have else "tracefs only: a crashed process can "
              "leave probes behind")
    return Row("tracefs", "probe mechanism", "info", detail)


def _stale_row() -> Row:
    root = features.tracefs()
    if root and not os.access(f"{root}/uprobe_events", os.R_OK):
        return Row("tracefs", "stale probes", "info", "unknown: cannot read tracefs here")
    stale = stale_probes()
    if not stale:
        return Row("tracefs", "stale probes", "ok", "none")
    shown = ", ".join(stale[:3]) + (f" and {len(stale) - 3} more" if len(stale) > 3 else "")
    return Row("tracefs", "stale probes", "warn",
               f"{len(stale)} left by dead processes: {shown}",
               "cleanup_stale_probes() from bpfnb.doctor, or `bpfnb doctor --cleanup`")


def _attach_rows(probes: list[ProbeResult]) -> list[Row]:
    return [Row("attach", p.kind, "ok" if p.ok else "no",
                f"{_DESCRIPTIONS[p.kind]}: loads and attaches" if p.ok else p.reason,
                p.fix)
            for p in probes]


def _backend_rows() -> list[Row]:
    """Each engine's state (select.status()) and the one `backend="auto"` picks here."""
    ready = select.libbpf_ready()
    state = select.status()
    headers = features.kernel_headers()
    match = (("no", "bcc has no kernel headers to compile against") if not headers else
             ("warn", "bcc compiles against another kernel's headers: its struct reads may "
              "be wrong (libbpf reads by BTF, unaffected)") if headers.reason else
             ("ok", "bcc compiles against this kernel's own headers"))
    rows = [Row("backends", "libbpf", "ok" if ready else "no", ready.reason,
                "" if ready else "install clang, bpftool and libbpf1 (`scripts/setup-system`)"),
            Row("backends", "headers match (bcc)", *match)]
    rows += [Row("backends", "libbpf version" if check == "libbpf" else check, "info",
                 state[check])
             for check in ("clang", "libbpf", "compile cache", "prelude for this kernel")
             if check in state]
    return [*rows, Row("backends", "auto picks", "info", state["auto picks"])]


_FACTS: tuple[Callable[[], list[Row]], ...] = (
    _kernel_rows, _bcc_rows, _backend_rows, _mount_rows, _cap_rows, _policy_rows,
    lambda: [_probe_mechanism_row(), _stale_row()],
)
#: rows about engines above this layer (bpfnb.bpftrace adds its own when imported)
ENGINE_ROWS: list[Callable[[], list[Row]]] = []


# -- the report --------------------------------------------------------------------------
class DoctorReport:
    """The doctor's table: `df()`, text with `str()`, HTML in notebooks."""

    columns = ("section", "check", "status", "detail", "fix")

    def __init__(self, rows: list[Row], probes: list[ProbeResult], cached: bool,
                 elapsed: float) -> None:
        self.rows = rows
        self.probes = {p.kind: p for p in probes}
        self.cached = cached
        self.elapsed = elapsed

    def df(self) -> pd.DataFrame:
        import pandas as pd

        df = pd.DataFrame([asdict(r) for r in self.rows], columns=list(self.columns))
        df.attrs.update(cached=self.cached, elapsed_s=self.elapsed)
        return df

    def row(self, section: str, check: str) -> Row:
        return next(r for r in self.rows if r.section == section and r.check == check)

    def _footer(self) -> str:
        how = "attach results cached for this boot" if self.cached else "attach probes run now"
        return f"bpfnb doctor: {how}; {self.elapsed:.2f} s (refresh with doctor(refresh=True))"

    def __str__(self) -> str:
        widths = [max(len(getattr(r, c)) for r in self.rows) for c in ("check", "status")]
        out, section = [], ""
        for r in self.rows:
            if r.section != section:
                section = r.section
                out.append(f"{section}:")
            line = f"  {r.check:<{widths[0]}}  {r.status:<{widths[1]}}  {r.detail}"
            out.append(line + (f"\n  {'':<{widths[0]}}  {'':<{widths[1]}}  fix: {r.fix}"
                               if r.fix and r.status != "ok" else ""))
        return "\n".join([*out, self._footer()])

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        head = "".join(f"<th style='text-align:left'>{html.escape(str(c))}</th>"
                       for c in self.columns)
        body = "".join(_html_row(r) for r in self.rows)
        return (f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
                f"<p><small>{html.escape(self._footer())}</small></p>")


def _html_row(r: Row) -> str:
    color = _STATUS_COLORS.get(r.status, "inherit")
    cells = [r.section, r.check, f"<b style='color:{color}'>{html.escape(r.status)}</b>", r.detail,
             r.fix]
    escaped = [c if i == 2 else html.escape(c) for i, c in enumerate(cells)]
    return "<tr>" + "".join(f"<td style='text-align:left'>{c}</td>" for c in escaped) + "</tr>"


def doctor(refresh: bool = False) -> DoctorReport:
    """Check this machine; attach probes run once per boot unless refresh=True."""
    start = time.perf_counter()
    probes, cached = attach_results(refresh)
    rows = [row for fact in (*_FACTS, *ENGINE_ROWS) for row in fact()] + _attach_rows(probes)
    return DoctorReport(rows, probes, cached, time.perf_counter() - start)


def _kind(kind: str) -> str:
    name = kind.lower().replace(" ", "_").replace("-", "_")
    name = {"fexit": "fentry", "kfunc": "fentry", "kretprobe": "kprobe", "uretprobe": "uprobe",
            "raw_tp": "raw_tracepoint", "perf": "perf_event"}.get(name, name)
    if name not in KINDS:
        raise BpfnbError(f"unknown attach kind {kind!r}; known: {', '.join(KINDS)}")
    return name


def skip_reason(kind: str) -> str | None:
    """None if a `kind` program loads and attaches here, else the doctor's reason."""
    name = _kind(kind)
    probe = next(p for p in attach_results()[0] if p.kind == name)
    return None if probe.ok else f"{probe.kind}: {probe.reason}"
