"""The kit's own BPF programs, loaded with per-run settings as `const volatile` globals.

Under libbpf the object is compiled once per kernel and cached (backends.libbpf.compiler),
so loading one needs no compiler after the first build: settings change per load, not the
source or its flags.
"""

from __future__ import annotations

from importlib import resources

from bpfnb.program.core import Program, load


def source(name: str) -> str:
    """The C source of the kit's program `name` (bpfnb/programs/NAME.c)."""
    return resources.files("bpfnb").joinpath(f"programs/{name}.c").read_text()


def profiler_program(pid_filter: int = 0, user: bool = True, kernel: bool = True,
                     backend: str = "auto") -> Program:
    """profile.c loaded, not attached (attach `on_sample` to a perf event): samples of
    process `pid_filter` (0: every process), with user and/or kernel stacks."""
    return load(source("profile"), name="profile", attach=False, backend=backend,
                consts={"filter_pid": pid_filter, "user_stacks": int(user),
                        "kernel_stacks": int(kernel)})
