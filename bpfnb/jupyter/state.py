"""What the notebook's magics share: the programs they bound, the last error, the session."""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError

from bpfnb import bpftrace, fleet
from bpfnb.errors import BpfnbError
from bpfnb.jupyter import session as nbsession
from bpfnb.program import core
from bpfnb.store.replay import ReplayProgram

# IPython's output and input history (_, __, _5, _i, _ii5, _ih, _oh, _dh) and its own names
_IPYTHON_NAMES = re.compile(r"_+\d*|_i+\d*|_[iod]h|_exit_code|In|Out|get_ipython|exit|quit")


def check_free(shell: Any, name: str, magic: str, replaceable: Callable[[Any], bool]) -> None:
    """UsageError unless `name` is free or holds a value `magic` may replace (a program)."""
    why = None
    if _IPYTHON_NAMES.fullmatch(name) or name in getattr(shell, "user_ns_hidden", {}):
        why = "is reserved by IPython"
    elif hasattr(builtins, name):
        why = "is a Python builtin"
    elif name in shell.user_ns and not replaceable(shell.user_ns[name]):
        why = f"is already bound to a {type(shell.user_ns[name]).__name__}"
    if why is not None:
        raise UsageError(f"{magic} {name}: {name!r} {why}; choose another NAME (binding it "
                         "would hide it from the notebook)")


class NotebookState:
    """Programs bound by %%bpf (live, replayed or on a fleet), the last bpfnb error (for
    `%bpf log`) and the notebook's record/replay session, hooked into the shell's cells."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.programs: dict[str, Any] = {}
        self.last_error: BpfnbError | None = None
        self.session = nbsession.NotebookSession()
        self.plugins: list[Any] = []  # magics holding programs of their own (%%bpftrace),
        # each with .programs (by name) and .close(name); their modules' unregister() ends them
        self._hooks = [("pre_run_cell", self.session.pre_run_cell),
                       ("post_run_cell", self.session.post_run_cell)]
        for event, hook in self._hooks:
            shell.events.register(event, hook)

    def check_free(self, name: str) -> None:
        """UsageError unless `name` is free or holds a program a magic bound."""
        check_free(self.shell, name, "%%bpf", lambda bound: isinstance(
            bound, (core.Program, ReplayProgram)) or self.programs.get(name) is bound)

    def bind(self, name: str, prog: Any) -> None:
        self.programs[name] = prog
        self.shell.user_ns[name] = prog

    def close(self, name: str) -> None:
        """Close what NAME holds: the program bound there, a bpftrace program of that name."""
        old = self.programs.pop(name, None)
        if old is not None:
            old.close()
        bound = self.shell.user_ns.get(name)
        if isinstance(bound, (core.Program, ReplayProgram)):
            bound.close()
        for plugin in self.plugins:
            if name in plugin.programs:
                plugin.close(name)
        for prog in bpftrace.programs():
            if prog.name == name:
                prog.close()

    def names(self) -> list[str]:
        """Names `%bpf stop NAME` knows: bound programs, %%bpftrace's, running bpftraces."""
        return list(dict.fromkeys([*self.programs, *(n for p in self.plugins for n in p.programs),
                                   *(p.name for p in bpftrace.programs())]))

    def close_programs(self) -> None:
        """Close every program: bound (live, replayed, fleet), loaded by hand (bpfnb.load,
        Fleet.load, bpfnb.bpftrace), %%bpftrace's."""
        for name in self.names():
            self.close(name)
        core.close_all()
        fleet.close_all()
        bpftrace.stop_all()

    def shutdown(self) -> None:
        """Close every program and the session; unhook the session from the shell."""
        self.close_programs()
        self.session.close()
        for event, hook in self._hooks:
            self.shell.events.unregister(event, hook)
