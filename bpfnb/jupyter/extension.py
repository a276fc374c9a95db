"""`%load_ext bpfnb` / `%unload_ext bpfnb`: register the magics, show bpfnb errors briefly,
close everything on unload."""

from __future__ import annotations

import importlib.util
from typing import Any

from IPython.display import display

from bpfnb.errors import BpfnbError
from bpfnb.jupyter.displays import LogView
from bpfnb.jupyter.doctor_magic import DoctorMagics
from bpfnb.jupyter.magics import BpfMagics, document
from bpfnb.jupyter.offcpu_magic import OffcpuMagics
from bpfnb.jupyter.profile_magic import ProfileMagics
from bpfnb.jupyter.recorded_magic import RecordedMagics
from bpfnb.jupyter.state import NotebookState
from bpfnb.live import poller as live
from bpfnb.live import progressbar

BPFTRACE_MAGIC = "bpfnb.jupyter.bpftrace_magic"


def _plugins() -> list[Any]:
    """Optional magic modules present in this install (%%bpftrace): each has
    register(ipython) and unregister(ipython)."""
    if importlib.util.find_spec(BPFTRACE_MAGIC) is None:
        return []
    return [importlib.import_module(BPFTRACE_MAGIC)]


def load_extension(ipython: Any) -> None:
    state = NotebookState(ipython)
    ipython.register_magics(BpfMagics(ipython, state), RecordedMagics(ipython, state),
                            ProfileMagics, OffcpuMagics, DoctorMagics)
    helps = [RecordedMagics.recorded.__doc__, ProfileMagics.bpf_profile.__doc__,
             OffcpuMagics.bpf_offcpu.__doc__, DoctorMagics.bpf_doctor.__doc__]
    before = set(ipython.magics_manager.registry)
    for plugin in _plugins():
        plugin.register(ipython)
    for key in set(ipython.magics_manager.registry) - before:
        magics = ipython.magics_manager.registry[key]
        state.plugins.append(magics)
        helps += [method.__doc__ for kind in magics.magics.values()
                  for method in kind.values()]
    document(h or "" for h in helps)
    ipython.set_custom_exc((BpfnbError,), _show_error)
    progressbar.install()  # profile/offcpu/events/record show a bar while they run


def unload_extension(ipython: Any) -> None:
    magics = ipython.magics_manager.registry.get("BpfMagics")
    if magics is not None:
        magics.state.shutdown()
    for plugin in _plugins():
        plugin.unregister(ipython)
    live.stop_all(reason="extension unloaded")
    progressbar.uninstall()
    ipython.set_custom_exc((), None)


def _show_error(shell: Any, etype: type, value: BaseException, tb: Any,
                tb_offset: int | None = None) -> list[str]:
    """Show a bpfnb error as its message (no traceback), the long log folded away."""
    if isinstance(value, BpfnbError):
        magics = shell.magics_manager.registry.get("BpfMagics")
        if magics is not None:
            magics.state.last_error = value
        if value.details:
            display(LogView(value))
    stb = [f"\x1b[0;31m{etype.__name__}\x1b[0m: {value}"]
    shell._showtraceback(etype, value, stb)  # IPython ignores the handler's return value
    return stb
