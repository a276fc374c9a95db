"""Who may run the capability kernel: a dedicated group per user, the users a group lets
execute a root:GROUP 0750 file, and the tracefs group that makes CAP_DAC_READ_SEARCH
unnecessary for tracepoints (scripts/setup-system mounts tracefs gid=bpfnb,mode=0750)."""

from __future__ import annotations

import grp
import pwd
import subprocess
from pathlib import Path

from bpfnb.errors import InstallError

TRACEFS_GROUP = "bpfnb"


def _run(cmd: list[str]) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise InstallError(f"`{' '.join(cmd)}` failed: {res.stderr.strip()}")


def who_can_run(gid: int | None) -> tuple[str, ...]:
    """The users who can execute a root:gid 0750 file: root, the group's members and the
    users whose primary group it is; ('every local user',) for gid None (mode 0755)."""
    if gid is None:
        return ("every local user",)
    members = set(grp.getgrgid(gid).gr_mem) | {p.pw_name for p in pwd.getpwall()
                                                if p.pw_gid == gid}
    return ("root", *sorted(members - {"root"}))


def dedicated_group(user: str) -> str:
    """The group `bpfnb-USER` holding exactly USER (made if absent); refuses if it holds more."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise InstallError(f"no such user {user!r}; name an existing login") from None
    name = f"bpfnb-{user}"[:32]
    if not group_exists(name):
        _run(["groupadd", "--system", name])
    gid = grp.getgrnam(name).gr_gid
    others = [u for u in who_can_run(gid) if u not in ("root", pw.pw_name)]
    if not others and user not in grp.getgrgid(gid).gr_mem:
        _run(["gpasswd", "-a", user, name])
    if others:
        raise InstallError(f"group {name} is also the group of {', '.join(others)}; give it "
                           "to USER alone, or share on purpose with --group")
    return name


def _tracefs_gid() -> int | None:
    """The gid tracefs at /sys/kernel/tracing is mounted with (None: root only)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        pre, _, post = line.partition(" - ")
        if pre.split()[4:5] == ["/sys/kernel/tracing"] and post.startswith("tracefs"):
            opts = dict(o.partition("=")[::2] for o in post.split()[-1].split(","))
            return int(opts["gid"]) if opts.get("gid", "0").isdigit() and \
                opts.get("gid", "0") != "0" else None
    return None


def grant_tracefs(user: str) -> str:
    """Add `user` to the tracefs group (so tracepoints work without CAP_DAC_READ_SEARCH);
    a note saying what was done or what is missing."""
    gid = _tracefs_gid()
    try:
        group = grp.getgrnam(TRACEFS_GROUP)
    except KeyError:
        group = None
    if group is None or gid != group.gr_gid:
        return (f"tracefs is not readable by group {TRACEFS_GROUP}: run scripts/setup-system "
                "(it mounts tracefs gid=bpfnb,mode=0750), or tracepoints need "
                "--caps ...,dac_read_search (which reads every file)")
    if user not in group.gr_mem:
        _run(["gpasswd", "-a", user, TRACEFS_GROUP])
    return f"{user} is in group {TRACEFS_GROUP}: reads tracefs (tracepoint ids and formats)"


def group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True
