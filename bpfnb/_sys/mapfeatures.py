"""Kernel and machine features the map-type examples need, as `features.Feature`s.

Checks are cheap, cached and side-effect free (what they create, they remove).
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess

from bpfnb._sys import cgroupfs
from bpfnb._sys.features import CAP_NET_ADMIN, CAP_SYS_ADMIN, Feature, has_cap

AF_XDP = 44


@functools.lru_cache(maxsize=1)
def cgroup2() -> Feature:
    root = cgroupfs.cgroup2_root()
    if root is None:
        return Feature("cgroup2", False, "cgroup v2 is not mounted (mount -t cgroup2 none "
                       "/sys/fs/cgroup/unified)")
    if not os.access(root, os.W_OK):
        return Feature("cgroup2", False, f"cannot create cgroups under {root} (not writable)")
    return Feature("cgroup2", True)


@functools.lru_cache(maxsize=1)
def netns() -> Feature:
    if shutil.which("ip") is None:
        return Feature("netns", False, "iproute2's `ip` is not installed")
    if not (has_cap(CAP_SYS_ADMIN) and has_cap(CAP_NET_ADMIN)):
        return Feature("netns", False, "network namespaces need CAP_SYS_ADMIN and "
                       "CAP_NET_ADMIN (run as root)")
    if not os.path.exists("/proc/self/ns/net"):
        return Feature("netns", False, "the kernel has no network namespaces")
    return Feature("netns", True)


@functools.lru_cache(maxsize=1)
def veth() -> Feature:
    """Can this machine make veth pairs? (tries one in a throwaway namespace)"""
    base = netns()
    if not base:
        return Feature("veth", False, base.reason)
    name = f"bpfnb-probe-{os.getpid()}"
    try:
        res = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
        if res.returncode:
            return Feature("veth", False, f"cannot make a netns: {res.stderr.strip()}")
        res = subprocess.run(["ip", "-n", name, "link", "add", "p0", "type", "veth", "peer",
                              "name", "p1"], capture_output=True, text=True)
        if res.returncode:
            return Feature("veth", False, f"cannot make a veth pair: {res.stderr.strip()}")
        return Feature("veth", True)
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@functools.lru_cache(maxsize=1)
def af_xdp() -> Feature:
    try:
        s = socket.socket(AF_XDP, socket.SOCK_RAW, 0)
    except OSError as e:
        return Feature("af_xdp", False, f"AF_XDP sockets cannot be opened: {e.strerror}")
    s.close()
    return Feature("af_xdp", True)
