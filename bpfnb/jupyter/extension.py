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
MAGICS = (ProfileMagics, OffcpuMagics, DoctorMagics)  # stateless; %%bpf, %%recorded share state


def _plugins() -> list[Any]:
    """Optional magic modules present in this install (%%bpftrace): each has
    register(ipython, state) and unregister(ipython)."""
    if importlib.util.find_spec(BPFTRACE_MAGIC) is None:
        return []
    return [importlib.import_module(BPFTRACE_MAGIC)]


def load_extension(ipython: Any) -> None:
    state = NotebookState(ipython)
    ipython.register_magics(BpfMagics(ipython, state), RecordedMagics(ipython, state),
                            *MAGICS)
    modules = _plugins()
    for plugin in modules:
        plugin.register(ipython, state)
    names = {m.__name__ for m in modules}  # the registry keeps classes across reloads
    plugins = [m for m in ipython.magics_manager.registry.values()
               if type(m).__module__ in names]
    state.plugins += plugins
    documented = [ipython.magics_manager.registry[c.__name__]
                  for c in (RecordedMagics, *MAGICS)] + plugins
    document(method.__doc__ or "" for magics in documented
             for kind in magics.magics.values() for method in kind.values())
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
