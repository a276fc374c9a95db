"""System call numbers and names for this machine's architecture, from the kernel's own table.

The numbers come from the UAPI header the kernel generates from its syscall table
(`asm/unistd_64.h`, Debian's linux-libc-dev); no list is written down here. Each name is
checked against tracefs: `tracepoint` says whether `syscalls:sys_enter_NAME` exists, and
calls the running kernel traces that the header does not know yet are listed apart
(numbers never change, so a header older than the kernel is right, only shorter).

>>> bpfnb.syscalls().loc[39]            # nr is the index
>>> df["syscall"] = bpfnb.syscall_names(df["key"])
"""

from __future__ import annotations

import functools
import os
import platform
import re

import pandas as pd

from bpfnb._sys import features
from bpfnb.errors import FeatureUnavailableError

_DEFINE = re.compile(r"^#define\s+__NR_(\w+)\s+(\d+)\s*$", re.M)
# the header of the native ABI, per `uname -m` (asm/unistd.h includes it)
_HEADERS = {"x86_64": "unistd_64.h", "i686": "unistd_32.h", "i386": "unistd_32.h"}


def _header_paths() -> list[str]:
    machine = platform.machine()
    name = _HEADERS.get(machine, "unistd.h")
    multiarch = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}.get(
        machine, f"{machine}-linux-gnu")
    return [f"/usr/include/{multiarch}/asm/{name}", f"/usr/include/asm/{name}"]


@functools.lru_cache(maxsize=1)
def table() -> dict[int, str]:
    """{number: name} of every system call of this architecture's native ABI."""
    for path in _header_paths():
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        found = {int(nr): name for name, nr in _DEFINE.findall(text)}
        if found:
            return found
    raise FeatureUnavailableError(
        f"No system call table for {platform.machine()}: bpfnb reads the kernel's UAPI header "
        f"({_header_paths()[0]}). Install it: `apt-get install linux-libc-dev`.")


def syscalls() -> pd.DataFrame:
    """Every system call: index `nr`, columns `name` and `tracepoint` (whether
    `syscalls:sys_enter_NAME` exists in this kernel's tracefs). Calls this kernel traces
    but the header predates (a newer kernel than linux-libc-dev) have no number known
    here: `df.attrs["unnumbered"]` lists them."""
    root = features.tracefs()
    where = f"{root}/events/syscalls" if root else ""
    events = set(os.listdir(where)) if where and os.path.isdir(where) else set()
    rows = sorted(table().items())
    df = pd.DataFrame({"nr": [nr for nr, _ in rows], "name": [n for _, n in rows],
                       "tracepoint": [f"sys_enter_{n}" in events for _, n in rows]})
    known = set(df.name)
    df.attrs["unnumbered"] = sorted(e.removeprefix("sys_enter_") for e in events
                                    if e.startswith("sys_enter_")
                                    and e.removeprefix("sys_enter_") not in known)
    return df.set_index("nr")


def syscall_name(nr: int) -> str:
    """The name of system call `nr` ('syscall_NR' for a number this table lacks)."""
    return table().get(int(nr), f"syscall_{int(nr)}")


def syscall_names(numbers: pd.Series | pd.Index | list[int]) -> pd.Series:
    """A column of system call numbers (e.g. a `key` column of a map keyed by
    `args->id`) as names; unknown numbers become 'syscall_NR'."""
    s = pd.Series(numbers)
    out = s.map(syscall_name)
    out.name = s.name
    return out.astype("string")
