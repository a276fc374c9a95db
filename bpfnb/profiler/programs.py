"""The kit's own BPF programs, loaded with per-run settings as `const volatile` globals.

Under libbpf the object is compiled once per kernel and cached (backends.libbpf.compiler),
so loading one needs no compiler after the first build: settings change per load, not the
source or its flags.
"""

from __future__ import annotations

import re
from importlib import resources

from bpfnb.program.core import Program, load

_HEADER = re.compile(r'^#include "(\w+\.h)"$', re.MULTILINE)


def source(name: str) -> str:
    """The C source of the kit's program `name` (bpfnb/programs/NAME.c), its own headers
    (`#include "X.h"`, next to it) put in place: bcc's BPF(text=) and clang reading stdin
    have no directory to find them in, and the object cache keys on the text."""
    folder = resources.files("bpfnb").joinpath("programs")
    return _HEADER.sub(lambda m: folder.joinpath(m.group(1)).read_text(),
                       folder.joinpath(f"{name}.c").read_text())


def profiler_program(pid_filter: int = 0, user: bool = True, kernel: bool = True,
                     backend: str = "auto") -> Program:
    """profile.c loaded, not attached (attach `on_sample` to a perf event): samples of
    process `pid_filter` (0: every process), with user and/or kernel stacks."""
    return load(source("profile"), name="profile", attach=False, backend=backend,
                consts={"filter_pid": pid_filter, "user_stacks": int(user),
                        "kernel_stacks": int(kernel)})
