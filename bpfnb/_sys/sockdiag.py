"""Which socket is which: inet_diag over netlink (cookie, addresses, state, inode) and the
processes holding each inode (from /proc/*/fd). Socket maps return cookies; this names them.
"""

from __future__ import annotations

import ctypes as ct
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
ALL_STATES = 0xFFFFFFFF
TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
              6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
              11: "CLOSING"}
PROTOCOLS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}


class _SockId(ct.BigEndianStructure):
    _fields_ = [("sport", ct.c_uint16), ("dport", ct.c_uint16), ("src", ct.c_uint8 * 16),
                ("dst", ct.c_uint8 * 16), ("ifindex", ct.c_uint32),
                ("cookie", ct.c_uint8 * 8)]


class _DiagMsg(ct.Structure):
    _fields_ = [("family", ct.c_uint8), ("state", ct.c_uint8), ("timer", ct.c_uint8),
                ("retrans", ct.c_uint8), ("id", _SockId), ("expires", ct.c_uint32),
                ("rqueue", ct.c_uint32), ("wqueue", ct.c_uint32), ("uid", ct.c_uint32),
                ("inode", ct.c_uint32)]


@dataclass(frozen=True)
class SockInfo:
    cookie: int
    protocol: str
    state: str
    local: str
    remote: str
    inode: int


def _addr(family: int, raw: bytes, port: int) -> str:
    if family == socket.AF_INET:
        return f"{ipaddress.IPv4Address(raw[:4])}:{port}"
    return f"[{ipaddress.IPv6Address(raw[:16])}]:{port}"


def _request(family: int, protocol: int) -> bytes:
    body = struct.pack("=BBBxI", family, protocol, 0, ALL_STATES) + bytes(ct.sizeof(_SockId))
    header = struct.pack("=IHHII", 16 + len(body), SOCK_DIAG_BY_FAMILY,
                         NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    return header + body


def _dump(family: int, protocol: int, name: str) -> list[SockInfo]:
    out: list[SockInfo] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as nl:
        nl.sendto(_request(family, protocol), (0, 0))
        while True:
            data = nl.recv(1 << 16)
            pos = 0
            while pos + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, pos)
                if kind in (NLMSG_DONE, NLMSG_ERROR):
                    return out
                msg = _DiagMsg.from_buffer_copy(data, pos + 16)
                cookie = int.from_bytes(bytes(msg.id.cookie), "little")
                out.append(SockInfo(
                    cookie, name,
                    TCP_STATES.get(msg.state, str(msg.state)) if name == "tcp" else "",
                    _addr(family, bytes(msg.id.src), msg.id.sport),
                    _addr(family, bytes(msg.id.dst), msg.id.dport), int(msg.inode)))
                pos += (length + 3) & ~3
            if not data:
                return out


def sockets() -> dict[int, SockInfo]:
    """Every TCP and UDP socket of this network namespace, by cookie."""
    out: dict[int, SockInfo] = {}
    for family in (socket.AF_INET, socket.AF_INET6):
        for name, proto in PROTOCOLS.items():
            try:
                out.update((s.cookie, s) for s in _dump(family, proto, name))
            except OSError:
                continue
    return out


def owners(inodes: set[int]) -> dict[int, list[int]]:
    """socket inode -> pids holding an fd of it."""
    want = {f"socket:[{i}]": i for i in inodes}
    out: dict[int, list[int]] = {}
    if not want:
        return out
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link in want and int(pid) not in out.setdefault(want[link], []):
                out[want[link]].append(int(pid))
    return out


def cookie_of(sock: socket.socket) -> int:
    """SO_COOKIE of a socket this process holds."""
    so_cookie = 57
    return int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, so_cookie, 8), "little")
