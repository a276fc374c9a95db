"""`%bpf_offcpu`: where threads wait (off-CPU time by stack), shown as a flame graph."""

from __future__ import annotations

from typing import Any

from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from bpfnb.jupyter import args as margs
from bpfnb.jupyter.profile_magic import target, target_options
from bpfnb.profiler.offcpu import offcpu


@magics_class
class OffcpuMagics(Magics):
    """%bpf_offcpu."""

    @line_magic
    @magic_arguments("bpf_offcpu")
    @target_options
    @argument("--min-us", default="1", metavar="N",
              help="ignore waits shorter than N microseconds (1)")
    def bpf_offcpu(self, line: str) -> Any:
        """Off-CPU time by stack (bpfnb.offcpu): where threads block and for how long; returns
        a Stacks weighted by microseconds. After `--`, a COMMAND [ARGS] to start and trace.

        Example: %bpf_offcpu -d 3 --min-us 100 -- sleep 1
        """
        magic, func = "%bpf_offcpu", OffcpuMagics.bpf_offcpu
        ns, pid, duration, command = target(line, magic, func)
        min_us = int(margs.number(ns.min_us, f"{magic} --min-us", margs.usage_of(func),
                                  whole=True))
        return offcpu(pid=pid, command=command or None, duration=duration, min_us=min_us)
