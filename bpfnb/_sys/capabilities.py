"""Linux capabilities: names and masks, file capabilities (security.capability), and the
process's own sets (capget/capset, the bounding and ambient sets through prctl)."""

from __future__ import annotations

import ctypes as ct
import os
import struct
from pathlib import Path

from bpfnb._sys.libc import libc
from bpfnb.errors import CapabilityError

CAPS = {"chown": 0, "dac_override": 1, "dac_read_search": 2, "fowner": 3, "kill": 5,
        "setgid": 6, "setuid": 7, "setpcap": 8, "net_bind_service": 10, "net_admin": 12,
        "net_raw": 13, "ipc_lock": 14, "sys_ptrace": 19, "sys_admin": 21, "sys_resource": 24,
        "syslog": 34, "perfmon": 38, "bpf": 39}
XATTR = "security.capability"
_VFS_CAP_REVISION_2, _VFS_CAP_FLAGS_EFFECTIVE = 0x02000000, 0x1
_CAPABILITY_VERSION_3 = 0x20080522
_PR_CAPBSET_DROP, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 24, 47, 4
_SYS_CAPGET, _SYS_CAPSET = 125, 126  # x86_64


def parse_caps(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """'cap_bpf,perfmon' -> ('bpf', 'perfmon'); unknown names raise CapabilityError."""
    items = text.split(",") if isinstance(text, str) else list(text)
    caps: list[str] = []
    for item in items:
        name = item.strip().lower().removeprefix("cap_")
        if not name:
            continue
        if name not in CAPS:
            raise CapabilityError(f"unknown capability {item!r}; known: "
                                  f"{', '.join(sorted(CAPS))}")
        if name not in caps:
            caps.append(name)
    if not caps:
        raise CapabilityError("no capabilities given; name at least one, e.g. --caps bpf,perfmon")
    return tuple(caps)


def cap_mask(caps: tuple[str, ...] | list[str]) -> int:
    """The bit mask /proc/PID/status shows as CapEff for these capabilities."""
    return sum(1 << CAPS[c] for c in caps)


def names(mask: int) -> tuple[str, ...]:
    """The known capability names in a mask, lowest bit first."""
    return tuple(n for n, bit in sorted(CAPS.items(), key=lambda kv: kv[1]) if mask >> bit & 1)


def set_file_caps(fd: int, caps: tuple[str, ...], effective: bool = True) -> None:
    """Write security.capability (v2) on an open file: permitted, and effective too unless
    `effective=False` (`setcap +p`: the program raises them itself, and an exec of it where
    the bounding set forbids them still runs, with none)."""
    mask = cap_mask(caps)
    flags = _VFS_CAP_REVISION_2 | (_VFS_CAP_FLAGS_EFFECTIVE if effective else 0)
    value = struct.pack("<IIIII", flags, mask & 0xFFFFFFFF, 0, mask >> 32, 0)
    os.setxattr(fd, XATTR, value)


def clear_file_caps(fd: int) -> None:
    """Remove a file's capabilities (every hard link of it loses them)."""
    try:
        os.removexattr(fd, XATTR)
    except OSError as e:
        if e.errno != 61:  # ENODATA: it had none
            raise


def file_caps(path: Path | str | int) -> tuple[str, ...]:
    """The permitted capabilities set on a file (empty if none); path or open fd."""
    try:
        raw = os.getxattr(path, XATTR, follow_symlinks=False) if not isinstance(path, int) \
            else os.getxattr(path, XATTR)
    except OSError:
        return ()
    _, lo, _, hi, _ = struct.unpack("<IIIII", raw[:20].ljust(20, b"\0"))
    return names(lo | hi << 32)


def status_masks(pid: int | str = "self") -> dict[str, int]:
    """CapInh/CapPrm/CapEff/CapBnd/CapAmb of a process, from /proc/PID/status."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cap"):
            key, value = line.split(":", 1)
            out[key] = int(value.strip(), 16)
    return out


def _last_cap() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return 40


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ct.get_errno()
        raise CapabilityError(f"{what} failed: {os.strerror(err)}; the kernel keeps its "
                              "capabilities only if it can confine them, so it stops here")


def _capset(effective: int, permitted: int) -> None:
    header = struct.pack("<Ii", _CAPABILITY_VERSION_3, 0)
    eff, prm = (effective & 0xFFFFFFFF, effective >> 32), (permitted & 0xFFFFFFFF, permitted >> 32)
    data = struct.pack("<6I", eff[0], prm[0], 0, eff[1], prm[1], 0)  # inheritable: none
    _check(libc.syscall(_SYS_CAPSET, ct.c_char_p(header), ct.c_char_p(data)), "capset")


def confine(keep: int) -> None:
    """Make this process's capabilities its own only: empty the bounding set (so no exec, not
    even of a file-capability binary, regains any), clear the ambient and inheritable sets,
    and keep only `keep`, permitted and effective. Needs CAP_SETPCAP in the permitted set (for
    the bounding set); that capability is itself gone at the end."""
    permitted = status_masks()["CapPrm"]
    _capset(permitted, permitted)
    for bit in range(_last_cap() + 1):
        _check(libc.prctl(_PR_CAPBSET_DROP, bit, 0, 0, 0), f"dropping capability {bit} "
               "from the bounding set")
    _check(libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0),
           "clearing the ambient capabilities")
    _capset(permitted & keep, permitted & keep)
