"""LPM_TRIE: longest-prefix-match keys shown as networks ('10.0.0.0/8'), given as strings.

A trie key is `u32 prefixlen` followed by the address bytes in network order. The kernel's
rules: 1..256 address bytes (key_size 5..260), prefixlen at most 8 * address bytes, and the
map created with BPF_F_NO_PREALLOC (bcc's BPF_LPM_TRIE does that).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import numpy as np
import pandas as pd

from bpfnb._sys import bpfsys
from bpfnb.data import frames
from bpfnb.errors import KeyTypeError
from bpfnb.map.kinds import Kind, register

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PREFIX_BYTES = 4


def data_size(view: Any) -> int:
    return int(view.info.key_size) - PREFIX_BYTES


def parse(view: Any, text: Any) -> Network:
    """'10.0.0.0/8', '10.1.2.3' (a full-length prefix) or an ipaddress object -> network,
    checked against the map's address size."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError as e:
        raise KeyTypeError(f"{text!r} is not an IP address or network: {_why(text, e)}"
                           ) from None
    need = net.max_prefixlen // 8
    have = data_size(view)
    if need > have:
        raise KeyTypeError(
            f"map {view.name!r} keys hold {have} address bytes after the u32 prefixlen; "
            f"{net} needs {need} (declare the key as struct {{ u32 prefixlen; u8 addr[{need}]; }})")
    return net


def _why(text: Any, e: ValueError) -> str:
    """What is wrong with `text`, without repeating it (ipaddress's messages quote it)."""
    addr, _, plen = str(text).partition("/")
    try:
        bits = ipaddress.ip_address(addr).max_prefixlen
    except ValueError:
        return "write it like '10.0.0.0/8' or '2001:db8::/32'"
    if plen.isdigit() and int(plen) > bits:
        return f"the prefix length {plen} is longer than the address ({bits} bits)"
    return str(e).replace(repr(str(text)), "it").replace(str(text), "it")


def encode(view: Any, key: Any) -> Any:
    """Strings and ipaddress objects -> raw key bytes; other shapes pass to the codec."""
    if isinstance(key, (str, ipaddress.IPv4Address, ipaddress.IPv6Address,
                        ipaddress.IPv4Network, ipaddress.IPv6Network)):
        net = parse(view, key)
        size = data_size(view)
        addr = net.network_address.packed.ljust(size, b"\0")
        return int(net.prefixlen).to_bytes(PREFIX_BYTES, "little") + addr
    if isinstance(key, dict) and "prefixlen" in key:
        limit = 8 * data_size(view)
        if int(key["prefixlen"]) > limit:
            raise KeyTypeError(f"prefixlen {key['prefixlen']} exceeds the {limit} address bits "
                               f"of map {view.name!r}'s keys")
    return key


def networks(raw_keys: np.ndarray, size: int) -> tuple[np.ndarray, list[str]]:
    """(prefixlen, network strings) of raw trie keys."""
    n = len(raw_keys)
    raw = np.ascontiguousarray(raw_keys).view(np.uint8).reshape(n, PREFIX_BYTES + size)
    plen = raw[:, :PREFIX_BYTES].copy().view("<u4").reshape(n)
    return plen, [_network(bytes(raw[i, PREFIX_BYTES:]), int(plen[i])) for i in range(n)]


def _network(data: bytes, prefixlen: int) -> str:
    cls = _BY_WIDTH.get(len(data))
    if cls is not None and prefixlen <= 8 * len(data):
        return str(cls((data, prefixlen), strict=False))
    return f"{data.hex()}/{prefixlen}"


_BY_WIDTH: dict[int, Any] = {4: ipaddress.IPv4Network, 16: ipaddress.IPv6Network}


def _key_out(view: Any, key: Any) -> Any:
    raw = view.ops.key.encode(key)
    return networks(raw, data_size(view))[1][0]


def frame(view: Any, per_cpu: bool) -> pd.DataFrame:
    snap = view.read()
    plen, nets = networks(snap.keys, data_size(view))
    cpus = bpfsys.possible_cpus() if view.per_cpu else None
    df = frames.frame(snap.keys, snap.values, view.attrs(snap, len(snap.keys)),
                      per_cpu=per_cpu and view.per_cpu, cpus=cpus)
    kcols = list(df.attrs.get("key_columns", []))
    rows = np.repeat(np.arange(len(nets)), len(df) // max(len(nets), 1))
    body = df.drop(columns=kcols)
    out = pd.concat([pd.DataFrame({"network": np.array(nets, dtype=object)[rows],
                                   "prefixlen": plen[rows]}), body], axis=1)
    out.attrs = dict(df.attrs)
    out.attrs["key_columns"] = ["network"]
    return out.sort_values(["prefixlen", "network"], ascending=[False, True],
                           ignore_index=True)


def longest_match(view: Any, address: str) -> str | None:
    """Which entry of the trie `address` matches (the kernel's lookup gives only its value)."""
    target = ipaddress.ip_address(address)
    best: Network | None = None
    for text in view:  # keys, as networks
        try:
            net = ipaddress.ip_network(text)
        except ValueError:
            continue
        if net.version == target.version and target in net and (
                best is None or net.prefixlen > best.prefixlen):
            best = net
    return None if best is None else str(best)


register(Kind(frame=frame, key_in=encode, key_out=_key_out), bpfsys.MapType.LPM_TRIE)
