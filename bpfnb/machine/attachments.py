"""What programs are attached to, as strings such as `tracepoint:syscalls:sys_enter_getpid`,
`kprobe:do_sys_open`, `xdp:eth0`: bpf links (by id, system wide) and perf event
attachments (BPF_TASK_FD_QUERY on a process's perf event fds).

bcc and bpftrace attach tracepoints and probes through perf event fds (ioctl
PERF_EVENT_IOC_SET_BPF), not links; those attachments are found from the processes that hold
the fds (see holders.py). Sampling perf events (cpu-clock) attached that way report nothing
to BPF_TASK_FD_QUERY and cannot be listed; neither can tc/XDP/cgroup programs attached
without a link (netlink, BPF_PROG_ATTACH).
"""

from __future__ import annotations

import functools
import glob
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from bpfnb._sys import bpfobjs
from bpfnb._sys.btf import Btf
from bpfnb._sys.features import tracefs
from bpfnb.errors import BpfnbError

LINK_TYPES = ("UNSPEC", "RAW_TRACEPOINT", "TRACING", "CGROUP", "ITER", "NETNS", "XDP",
              "PERF_EVENT", "KPROBE_MULTI", "STRUCT_OPS", "NETFILTER", "TCX", "UPROBE_MULTI",
              "NETKIT", "SOCKMAP")

# enum bpf_attach_type, in order (kernel 6.18)
ATTACH_TYPES = (
    "cgroup_inet_ingress", "cgroup_inet_egress", "cgroup_inet_sock_create", "cgroup_sock_ops",
    "sk_skb_stream_parser", "sk_skb_stream_verdict", "cgroup_device", "sk_msg_verdict",
    "cgroup_inet4_bind", "cgroup_inet6_bind", "cgroup_inet4_connect", "cgroup_inet6_connect",
    "cgroup_inet4_post_bind", "cgroup_inet6_post_bind", "cgroup_udp4_sendmsg",
    "cgroup_udp6_sendmsg", "lirc_mode2", "flow_dissector", "cgroup_sysctl",
    "cgroup_udp4_recvmsg", "cgroup_udp6_recvmsg", "cgroup_getsockopt", "cgroup_setsockopt",
    "tp_btf", "fentry", "fexit", "fmod_ret", "lsm", "iter", "cgroup_inet4_getpeername",
    "cgroup_inet6_getpeername", "cgroup_inet4_getsockname", "cgroup_inet6_getsockname",
    "xdp_devmap", "cgroup_inet_sock_release", "xdp_cpumap", "sk_lookup", "xdp",
    "sk_skb_verdict", "sk_reuseport_select", "sk_reuseport_select_or_migrate", "perf_event",
    "kprobe_multi", "lsm_cgroup", "struct_ops", "netfilter", "tcx_ingress", "tcx_egress",
    "uprobe_multi", "cgroup_unix_connect", "cgroup_unix_sendmsg", "cgroup_unix_recvmsg",
    "cgroup_unix_getpeername", "cgroup_unix_getsockname", "netkit_primary", "netkit_peer",
    "kprobe_session", "uprobe_session",
)

PERF_EVENT_KINDS = ("perf_event", "uprobe", "uretprobe", "kprobe", "kretprobe", "tracepoint",
                    "perf_event")
FD_TYPES = ("raw_tracepoint", "tracepoint", "kprobe", "kretprobe", "uprobe", "uretprobe")


@dataclass(frozen=True)
class LinkRecord:
    """One bpf link: its id, type name, program and a description of its target."""

    id: int
    type: str
    prog_id: int
    target: str


def _name(table: tuple[str, ...], index: int) -> str:
    return table[index] if 0 <= index < len(table) else f"unknown({index})"


def attach_type_name(value: int) -> str:
    return _name(ATTACH_TYPES, value)


@functools.lru_cache(maxsize=4096)
def tracepoint_category(event: str) -> str:
    """The tracefs category of tracepoint `event` ('' if not found)."""
    root = tracefs()
    if root is None or not event:
        return ""
    hits = glob.glob(f"{root}/events/*/{glob.escape(event)}")
    return hits[0].split("/")[-2] if hits else ""


def tracepoint_label(event: str) -> str:
    category = tracepoint_category(event)
    return f"tracepoint:{category}:{event}" if category else f"tracepoint:{event}"


def _ifname(index: int) -> str:
    try:
        return socket.if_indextoname(index)
    except OSError:
        return f"ifindex {index}"


def _u32(raw: bytes, at: int) -> int:
    return int(struct.unpack_from("<I", raw, at)[0])


def _u64(raw: bytes, at: int) -> int:
    return int(struct.unpack_from("<Q", raw, at)[0])


def _probe(kind: str, name: str, offset: int, addr: int = 0) -> str:
    if not name:
        return f"{kind}:{addr:#x}"
    return f"{kind}:{name}+{offset:#x}" if offset else f"{kind}:{name}"


@functools.lru_cache(maxsize=8)
def _btf_type_name(btf_obj_id: int, type_id: int) -> str:
    try:
        return Btf.from_id(btf_obj_id).type(type_id).name
    except BpfnbError:
        return f"btf {btf_obj_id} type {type_id}"


def _tracing(raw: bytes, name: str) -> str:
    kind = attach_type_name(_u32(raw, 16))
    return f"{kind}:{_btf_type_name(_u32(raw, 20), _u32(raw, 24))}"


def _perf_event(raw: bytes, name: str) -> str:
    kind = _name(PERF_EVENT_KINDS, _u32(raw, 16))
    if kind == "tracepoint":
        return tracepoint_label(name)
    if kind in ("kprobe", "kretprobe"):
        return _probe(kind, name, _u32(raw, 36), _u64(raw, 40))
    if kind in ("uprobe", "uretprobe"):
        return _probe(kind, name, _u32(raw, 36))
    return f"perf_event:type {_u32(raw, 32)} config {_u64(raw, 24)}"


def _netfilter(raw: bytes, name: str) -> str:
    priority = struct.unpack_from("<i", raw, 24)[0]
    return f"netfilter:pf {_u32(raw, 16)} hook {_u32(raw, 20)} priority {priority}"


def _device(kind: str) -> Callable[[bytes, str], str]:
    return lambda raw, name: f"{kind}:{_ifname(_u32(raw, 16))}:{attach_type_name(_u32(raw, 20))}"


# struct bpf_link_info offsets: type 0, id 4, prog_id 8, the per-type union from 16
_DESCRIBE: dict[int, Callable[[bytes, str], str]] = {
    1: lambda raw, name: f"raw_tracepoint:{name}",
    2: _tracing,
    3: lambda raw, name: f"cgroup:id {_u64(raw, 16)}:{attach_type_name(_u32(raw, 24))}",
    4: lambda raw, name: f"iter:{name}",
    5: lambda raw, name: f"netns:{_u32(raw, 16)}:{attach_type_name(_u32(raw, 20))}",
    6: lambda raw, name: f"xdp:{_ifname(_u32(raw, 16))}",
    7: _perf_event,
    8: lambda raw, name: f"kprobe_multi:{_u32(raw, 24)} functions",
    9: lambda raw, name: f"struct_ops:map {_u32(raw, 16)}",
    10: _netfilter,
    11: _device("tcx"),
    12: lambda raw, name: f"uprobe_multi:{name} ({_u32(raw, 52)} offsets)",
    13: _device("netkit"),
    14: lambda raw, name: f"sockmap:map {_u32(raw, 16)}:{attach_type_name(_u32(raw, 20))}",
}


def link_record(fd: int) -> LinkRecord:
    """Describe the link behind `fd`."""
    raw, name = bpfobjs.link_info(fd)
    link_type = _u32(raw, 0)
    describe = _DESCRIBE.get(link_type)
    target = describe(raw, name) if describe else ""
    return LinkRecord(_u32(raw, 4), _name(LINK_TYPES, link_type), _u32(raw, 8), target)


def all_links() -> list[LinkRecord]:
    """Every bpf link on the machine (raises OSError like bpfsys)."""
    return [link_record(fd) for _id, fd in bpfobjs.each(bpfobjs.Kind.LINK)]


_FD_QUERY: dict[int, Callable[[bpfobjs.FdQuery], str]] = {
    0: lambda q: f"raw_tracepoint:{q.name}",
    1: lambda q: tracepoint_label(q.name),
    2: lambda q: _probe("kprobe", q.name, q.probe_offset, q.probe_addr),
    3: lambda q: _probe("kretprobe", q.name, q.probe_offset, q.probe_addr),
    4: lambda q: _probe("uprobe", q.name, q.probe_offset),
    5: lambda q: _probe("uretprobe", q.name, q.probe_offset),
}


def describe_fd_query(q: bpfobjs.FdQuery) -> str:
    """`tracepoint:syscalls:sys_enter_getpid` and the like for a BPF_TASK_FD_QUERY answer."""
    describe = _FD_QUERY.get(q.fd_type)
    return describe(q) if describe else f"{_name(FD_TYPES, q.fd_type)}:{q.name}"
