"""Network namespaces and veth pairs for XDP and socket-map examples (made and removed here).

`NetNs.call(fn)` runs fn on a thread that has entered the namespace: sockets it makes,
interface indexes it resolves and links it creates belong to that namespace.
"""

from __future__ import annotations

import ctypes as ct
import json
import os
import queue
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from bpfnb._sys.libc import libc
from bpfnb.errors import BpfnbError, FeatureUnavailableError

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/var/run/netns"
T = TypeVar("T")


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    """Run `ip [-n NS] ARGS...`; its stdout. BpfnbError with ip's message on failure."""
    exe = shutil.which("ip")
    if exe is None:
        raise FeatureUnavailableError("the `ip` command (iproute2) is not installed")
    cmd = [exe, *(["-n", netns] if netns else []), *args]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise BpfnbError(f"`{' '.join(cmd[1:])}` failed: {res.stderr.strip()}")
    return res.stdout


class NetNs:
    """A named network namespace this process made; `remove()` (or `with`) deletes it and
    every interface inside it (so veth peers outside vanish too)."""

    def __init__(self, name: str) -> None:
        self.name = name
        ip("netns", "add", name)
        ip("link", "set", "lo", "up", netns=name)

    def call(self, fn: Callable[[], T]) -> T:
        """fn() on a thread inside this namespace; its result (or its exception)."""
        out: queue.Queue[tuple[bool, Any]] = queue.Queue()

        def run() -> None:
            try:
                fd = os.open(os.path.join(NETNS_DIR, self.name), os.O_RDONLY)
                try:
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        err = ct.get_errno()
                        raise OSError(err, f"setns: {os.strerror(err)}")
                finally:
                    os.close(fd)
                out.put((True, fn()))
            except BaseException as e:  # handed to the caller
                out.put((False, e))

        thread = threading.Thread(target=run, name=f"netns-{self.name}", daemon=True)
        thread.start()
        thread.join()
        ok, value = out.get()
        if not ok:
            raise value
        result: T = value
        return result

    def socket(self, family: int = socket.AF_INET, kind: int = socket.SOCK_DGRAM) -> socket.socket:
        """A socket living in this namespace (usable from any thread)."""
        return self.call(lambda: socket.socket(family, kind))

    def ifindex(self, interface: str | int) -> int:
        if isinstance(interface, int):
            return interface
        return self.call(lambda: socket.if_nametoindex(interface))

    def ip(self, *args: str) -> str:
        return ip(*args, netns=self.name)

    def link_stats(self, interface: str) -> dict[str, int]:
        """rx/tx packet and byte counters of an interface in this namespace."""
        return link_stats(interface, self.name)

    def remove(self) -> None:
        if os.path.exists(os.path.join(NETNS_DIR, self.name)):
            ip("netns", "del", self.name, check=False)

    def __enter__(self) -> NetNs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"<NetNs {self.name}>"


def link_stats(interface: str, netns: str | None = None) -> dict[str, int]:
    data = json.loads(ip("-s", "-j", "link", "show", "dev", interface, netns=netns))
    stats = data[0]["stats64"]
    return {"rx_packets": stats["rx"]["packets"], "rx_bytes": stats["rx"]["bytes"],
            "tx_packets": stats["tx"]["packets"], "tx_bytes": stats["tx"]["bytes"]}


def mac_of(interface: str, netns: str | None = None) -> str:
    return str(json.loads(ip("-j", "link", "show", "dev", interface, netns=netns))[0]["address"])


def veth(outside: str, inside: str, netns: NetNs, outside_addr: str | None = None,
         inside_addr: str | None = None) -> None:
    """A veth pair: `outside` here, `inside` in `netns`; both up, with optional addresses."""
    ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", netns.name)
    if outside_addr:
        ip("addr", "add", outside_addr, "dev", outside)
    if inside_addr:
        netns.ip("addr", "add", inside_addr, "dev", inside)
    ip("link", "set", outside, "up")
    netns.ip("link", "set", inside, "up")


def remove_link(interface: str) -> None:
    """Delete an interface here if it exists (its veth peer goes with it)."""
    if os.path.exists(f"/sys/class/net/{interface}"):
        ip("link", "del", interface, check=False)


def remove_matching(prefix: str) -> list[str]:
    """Delete every namespace and interface here whose name starts with `prefix` (cleanup
    after an interrupted example); the names removed."""
    gone = []
    if os.path.isdir(NETNS_DIR):
        for name in os.listdir(NETNS_DIR):
            if name.startswith(prefix):
                ip("netns", "del", name, check=False)
                gone.append(name)
    for name in os.listdir("/sys/class/net"):
        if name.startswith(prefix):
            remove_link(name)
            gone.append(name)
    return gone
