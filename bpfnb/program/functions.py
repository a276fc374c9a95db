"""Function: one C function of a Program loaded as a BPF program of some type, with its fd.

Used where a program is a value (tail-call slots of a PROG_ARRAY) or is attached by hand
(cgroups, XDP, sockmaps). `function(prog, "name")` is what `prog.function("name")` returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bpfnb._sys import bpfsys
from bpfnb.errors import BpfnbError
from bpfnb.program import attach as progattach
from bpfnb.program import events

if TYPE_CHECKING:
    from bpfnb.program.core import Program

# bcc's auto-attach prefixes say which program type a function needs
_PREFIX_TYPES = {
    "tracepoint__": bpfsys.ProgType.TRACEPOINT,
    "raw_tracepoint__": bpfsys.ProgType.RAW_TRACEPOINT,
    "kprobe__": bpfsys.ProgType.KPROBE,
    "kretprobe__": bpfsys.ProgType.KPROBE,
}


@dataclass
class Function:
    """A loaded function: `fd`, `prog_type`, kernel `id`; attach it or store it in a map."""

    program: Program = field(repr=False)
    name: str
    fd: int
    prog_type: bpfsys.ProgType

    @property
    def id(self) -> int:
        return int(bpfsys.prog_info(self.fd).id)

    def fileno(self) -> int:
        return self.fd

    def attach_cgroup(self, cgroup: Any, direction: str = "ingress") -> progattach.Attachment:
        """Attach to a cgroup (a Cgroup, a path or a directory fd); detached on close."""
        fd, label, closer = _cgroup_fd(cgroup)
        try:
            return progattach.attach_cgroup(self.fd, fd, direction, label=label,
                                            owner=self.program)
        finally:
            closer()

    def attach_xdp(self, interface: str | int, mode: str = "generic",
                   netns: Any = None) -> progattach.Attachment:
        """Attach to a network interface's XDP hook (in `netns`, a NetNs, if given)."""
        if netns is not None:
            index = netns.ifindex(interface)
            return progattach.attach_xdp(self.fd, index, mode=mode, label=str(interface),
                                         owner=self.program, run=netns.call)
        return progattach.attach_xdp(self.fd, progattach.ifindex(interface), mode=mode,
                                     label=str(interface), owner=self.program)

    def attach_map(self, view: Any, kind: str) -> progattach.Attachment:
        """Attach to a map: sockmap/sockhash 'msg_verdict', 'stream_verdict', 'skb_verdict'."""
        return progattach.attach_to_map(self.fd, view.fd, kind, label=view.name,
                                        owner=self.program)


def _cgroup_fd(cgroup: Any) -> tuple[int, str, Any]:
    import os

    if hasattr(cgroup, "fd") and callable(cgroup.fd):
        return cgroup.fd(), getattr(cgroup, "relpath", str(cgroup)), (lambda: None)
    if isinstance(cgroup, int):
        return cgroup, str(cgroup), (lambda: None)
    fd = os.open(str(cgroup), os.O_RDONLY | os.O_DIRECTORY)
    return fd, str(cgroup), (lambda: os.close(fd))


def _loaded_types(prog: Program) -> set[bpfsys.ProgType]:
    out = set()
    for fd in prog.module.loaded_fds().values():
        try:
            out.add(bpfsys.ProgType(bpfsys.prog_info(fd).type))
        except (OSError, ValueError):
            continue
    return out


def _type_of(prog: Program, name: str, prog_type: int | str | None) -> bpfsys.ProgType:
    if isinstance(prog_type, str):
        try:
            return bpfsys.ProgType[prog_type.upper()]
        except KeyError:
            raise BpfnbError(f"unknown program type {prog_type!r}; known: "
                             f"{', '.join(t.name.lower() for t in bpfsys.ProgType)}") from None
    if prog_type is not None:
        return bpfsys.ProgType(prog_type)
    for prefix, ptype in _PREFIX_TYPES.items():
        if name.startswith(prefix):
            return ptype
    loaded = _loaded_types(prog)
    if len(loaded) == 1:  # tail calls must have the caller's type: the usual case
        return next(iter(loaded))
    raise BpfnbError(f"which program type is {name!r}? Pass prog_type= (e.g. 'tracepoint', "
                     "'xdp', 'cgroup_skb', 'sk_msg'); tail-called functions take their "
                     "caller's type")


def function(prog: Program, name: str, prog_type: int | str | None = None) -> Function:
    """Load C function `name` of `prog` as a BPF program; `prog_type` defaults to the type of
    the functions already loaded (what a tail call needs) or the one its name says."""
    if name not in prog.functions:
        raise BpfnbError(f"no function {name!r} in program {prog.name!r}; its functions are: "
                         f"{', '.join(prog.functions)}")
    ptype = _type_of(prog, name, prog_type)
    return Function(prog, name, prog.program_fd(name, int(ptype)), ptype)


# hand-made attachments (cgroup, XDP, sockmap) are detached when their program closes
events.on_close(progattach.close_owned)
