"""What this kernel and process can do: capabilities, config, tracefs. Cheap file reads only.

Each check returns a `Feature`: whether it is there and, if not, a reason a person can act on.
Test skips use these reasons, so a skip always says why in the kit's own words.
"""

from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass
from pathlib import Path

CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 12, 21, 38, 39
TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


@dataclass(frozen=True)
class Feature:
    name: str
    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        return f"{self.name}: {'available' if self.ok else self.reason}"


@functools.lru_cache(maxsize=1)
def kernel_config() -> dict[str, str]:
    """CONFIG_* values from /proc/config.gz or /boot/config-$(uname -r); {} if neither."""
    release = os.uname().release
    for path, opener in (("/proc/config.gz", gzip.open), (f"/boot/config-{release}", open)):
        try:
            with opener(path, "rt") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        config = {}
        for line in lines:
            if line.startswith("CONFIG_"):
                key, _, value = line.partition("=")
                config[key] = value
            elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
                config[line[2:].split()[0]] = "n"
        return config
    return {}


def config_says(option: str) -> bool | None:
    """True/False when the kernel config is readable, None when it is not."""
    config = kernel_config()
    if not config:
        return None
    return config.get(option, "n") in ("y", "m")


def tracefs() -> str | None:
    """Where tracefs is mounted and readable by this process (None if neither)."""
    for path in TRACEFS_CANDIDATES:
        if os.path.exists(f"{path}/events"):
            return path
    return None


def tracefs_mounted_unreadable() -> str | None:
    """A tracefs mount this process may not read (root-only mode, no CAP_DAC_READ_SEARCH)."""
    with open("/proc/self/mounts") as f:
        for line in f:
            _, where, fstype, *_ = line.split()
            if fstype == "tracefs" and not os.access(where, os.R_OK | os.X_OK):
                return where
    return None


def capabilities() -> int:
    """This process's effective capability mask."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def has_cap(cap: int) -> bool:
    return bool(capabilities() >> cap & 1)


def sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", name.replace(".", "/")).read_text().strip()
    except OSError:
        return None


def lockdown() -> str | None:
    """The active lockdown mode ('none', 'integrity', 'confidentiality') or None if unknown."""
    try:
        text = Path("/sys/kernel/security/lockdown").read_text()
    except OSError:
        return None
    return next((w.strip("[]") for w in text.split() if w.startswith("[")), None)


def can_load_bpf() -> Feature:
    """CAP_BPF or CAP_SYS_ADMIN, or unprivileged BPF allowed by sysctl."""
    if has_cap(CAP_BPF) or has_cap(CAP_SYS_ADMIN):
        return Feature("bpf", True)
    unpriv = sysctl("kernel.unprivileged_bpf_disabled")
    return Feature(
        "bpf", False,
        "loading BPF programs needs CAP_BPF (with CAP_PERFMON for tracing) or CAP_SYS_ADMIN, "
        f"and this process has neither (kernel.unprivileged_bpf_disabled={unpriv}). Run the "
        "Jupyter kernel as root, install the capability kernel (`bpfnb install-kernel`), "
        "or replay a recording.")


def can_trace() -> Feature:
    """Tracing programs need CAP_PERFMON or CAP_SYS_ADMIN, and tracefs."""
    if not (has_cap(CAP_PERFMON) or has_cap(CAP_SYS_ADMIN)):
        return Feature("tracing", False,
                       "tracing programs need CAP_PERFMON (or CAP_SYS_ADMIN); this process "
                       "lacks it. Run the kernel as root or with the capability kernel.")
    if tracefs() is None:
        hidden = tracefs_mounted_unreadable()
        if hidden:
            return Feature("tracing", False,
                           f"tracefs at {hidden} is not readable here: tracepoint programs read "
                           "each tracepoint's format and id files; run scripts/setup-system "
                           "(tracefs for group bpfnb) and add this user to bpfnb (install-kernel "
                           "--user does); raw tracepoints, perf events and uprobes need neither")
        return Feature("tracing", False,
                       "tracefs is not mounted: run `mount -t tracefs tracefs "
                       "/sys/kernel/tracing` (scripts/setup-system does it)")
    return Feature("tracing", True)


def _dynamic_probes(name: str, config: str, events: str, missing: str) -> Feature:
    """kprobes/uprobes: `config` set (or unknown) and tracefs' `events` file there (`missing`
    says what its absence means, {} being its path)."""
    if config_says(config) is False:
        return Feature(name, False, f"{config} is not set in this kernel")
    path = tracefs()
    if path and not os.path.exists(f"{path}/{events}"):
        return Feature(name, False, missing.format(f"{path}/{events}"))
    return Feature(name, True)


def kprobes() -> Feature:
    return _dynamic_probes("kprobes", "CONFIG_KPROBES", "kprobe_events",
                           "CONFIG_KPROBE_EVENTS is not set ({} is missing)")


def uprobes() -> Feature:
    return _dynamic_probes("uprobes", "CONFIG_UPROBES", "uprobe_events", "{} is missing")


def btf() -> Feature:
    if os.path.exists("/sys/kernel/btf/vmlinux"):
        return Feature("btf", True)
    return Feature("btf", False, "the kernel has no BTF (/sys/kernel/btf/vmlinux is missing)")


def kernel_headers() -> Feature:
    build = Path(f"/lib/modules/{os.uname().release}/build")
    if not (build / "include").exists():
        return Feature("headers", False,
                       f"no kernel headers at {build}: run `make setup` (scripts/setup-system)")
    target = build.resolve()
    if os.uname().release not in str(target):
        return Feature("headers", True, f"fallback headers {target} (not the running kernel's)")
    return Feature("headers", True)


def tracepoints() -> list[str]:
    """Every tracepoint as 'category:event'."""
    path = tracefs()
    if path is None:
        return []
    try:
        return Path(f"{path}/available_events").read_text().split()
    except OSError:
        return []


def tracepoint_exists(category: str, event: str) -> bool:
    path = tracefs()
    return bool(path) and os.path.exists(f"{path}/events/{category}/{event}")
