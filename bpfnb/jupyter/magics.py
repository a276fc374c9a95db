"""`%%bpf NAME` cells and `%bpf COMMAND` lines: one magic, parsed by bpf_cell and bpf_line."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from IPython.core.magic import Magics, line_cell_magic, magics_class

from bpfnb.jupyter import bpf_cell, bpf_line
from bpfnb.jupyter.state import NotebookState

INTRO = """\
bpfnb's magics; each has a section below with its options and an example.
  %%bpf NAME [options]      compile, load and attach the cell's BPF C program; bind NAME
  %bpf ls | stop | log | record | fallback | trace | probes ...   manage programs
  %%recorded                a cell that drives the kernel, recorded and replayed
  %bpf_profile, %bpf_offcpu on-CPU samples / off-CPU time by stack, as a flame graph
  %bpf_doctor               what loads and attaches here, and how to fix what does not
  %%bpftrace NAME [--duration S] [-- ARGS]   a bpftrace script in the background; e.g.
      %%bpftrace calls --duration 10
      tracepoint:syscalls:sys_enter_getpid { @n[comm] = count(); }"""


@magics_class
class BpfMagics(Magics):
    """%%bpf and %bpf; the notebook's programs and session live in `state`."""

    def __init__(self, shell: Any, state: NotebookState) -> None:
        super().__init__(shell)
        self.state = state

    @property
    def session(self) -> Any:
        return self.state.session

    @session.setter
    def session(self, value: Any) -> None:
        self.state.session = value

    @line_cell_magic
    def bpf(self, line: str, cell: str | None = None) -> Any:
        if cell is not None:
            return bpf_cell.run_cell(self.state, line, cell)
        return bpf_line.run_line(self.state, line)


def document(helps: Iterable[str]) -> None:
    """Make `%bpf?` say everything: the intro, then every magic's and command's help."""
    parts = [INTRO, bpf_cell.bpf_cell.__doc__ or ""]
    parts += [parser.__doc__ or "" for parser, _ in bpf_line.COMMANDS.values()]
    BpfMagics.bpf.__doc__ = "\n\n".join(p.strip() for p in [*parts, *helps])
