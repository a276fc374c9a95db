"""Attaching programs by bpf(2): BPF_LINK_CREATE (cgroups, XDP) and BPF_PROG_ATTACH/DETACH
(sockmap and sockhash programs), with the attach type names the package accepts.

A link detaches when its last fd closes; PROG_ATTACH stays until PROG_DETACH or until
its target goes. Functions raise OSError with the kernel's errno, like bpfsys.
"""

from __future__ import annotations

from bpfnb._sys import bpfsys
from bpfnb._sys.bpfattrs import LinkCreateAttr, ProgAttachAttr
from bpfnb.errors import AttachError

ATTACH_TYPES = {
    "ingress": 0,  # BPF_CGROUP_INET_INGRESS
    "egress": 1,  # BPF_CGROUP_INET_EGRESS
    "sock_create": 2,
    "sock_ops": 3,
    "stream_parser": 4,  # BPF_SK_SKB_STREAM_PARSER
    "stream_verdict": 5,  # BPF_SK_SKB_STREAM_VERDICT
    "device": 6,
    "msg_verdict": 7,  # BPF_SK_MSG_VERDICT
    "xdp": 37,  # BPF_XDP
    "skb_verdict": 38,  # BPF_SK_SKB_VERDICT
}
ATTACH_NAMES = {v: k for k, v in ATTACH_TYPES.items()}
XDP_FLAGS = {"generic": 1 << 1, "native": 1 << 2}  # XDP_FLAGS_SKB_MODE, XDP_FLAGS_DRV_MODE


def attach_type(name: str | int) -> int:
    """The kernel's enum bpf_attach_type value for a name of ATTACH_TYPES (ints pass)."""
    if isinstance(name, int):
        return name
    if name not in ATTACH_TYPES:
        raise AttachError(f"unknown attach type {name!r}; known: {', '.join(ATTACH_TYPES)}")
    return ATTACH_TYPES[name]


def link_create(prog_fd: int, target: int, kind: int, flags: int = 0) -> int:
    """BPF_LINK_CREATE: the link's fd (closing it detaches)."""
    return bpfsys.bpf(bpfsys.Cmd.LINK_CREATE, LinkCreateAttr(prog_fd=prog_fd, target=target,
                                                             attach_type=kind, flags=flags))


def prog_attach(prog_fd: int, target_fd: int, kind: int) -> None:
    """BPF_PROG_ATTACH of a program to a target fd (a sockmap, a cgroup)."""
    bpfsys.bpf(bpfsys.Cmd.PROG_ATTACH, ProgAttachAttr(target_fd=target_fd,
                                                      attach_bpf_fd=prog_fd, attach_type=kind))


def prog_detach(prog_fd: int, target_fd: int, kind: int) -> None:
    """BPF_PROG_DETACH: undoes prog_attach."""
    bpfsys.bpf(bpfsys.Cmd.PROG_DETACH, ProgAttachAttr(target_fd=target_fd,
                                                      attach_bpf_fd=prog_fd, attach_type=kind))
