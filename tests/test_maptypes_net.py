"""Network maps: XDP redirect through a DEVMAP on veth pairs in a namespace the test makes,
CPUMAP and DEVMAP_HASH entries, an XSKMAP holding a real AF_XDP socket, and socket maps
(cookies named by inet_diag; an sk_msg program redirecting bytes between TCP sockets)."""

from __future__ import annotations

import ctypes as ct
import os
import socket
import time

import pytest

import bpfnb
from bpfnb._sys import mapfeatures, sockdiag
from bpfnb._sys.xsk import XdpSocket
from bpfnb.errors import KeyTypeError, UnsupportedMapError
from bpfnb.map import create as mapcreate
from bpfnb.program.functions import function
from bpfnb.testing.netns import NetNs, mac_of, remove_link, veth
from conftest import require

pytestmark = pytest.mark.usefixtures("kernel")

TAG = f"{os.getpid() % 10000}"
PORT = 4242
HEADERS = """
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/udp.h>
static inline int ours(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end || eth->h_proto != htons(ETH_P_IP)) return 0;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_UDP || ip->ihl != 5) return 0;
    struct udphdr *udp = (void *)(ip + 1);
    if ((void *)(udp + 1) > end) return 0;
    return udp->dest == htons(PORT);
}
"""

REDIRECT = HEADERS + r"""
BPF_DEVMAP(tx_port, 4);
BPF_CPUMAP(cpus, 2);
BPF_ARRAY(counts, u64, 2);
int redirect(struct xdp_md *ctx) {
    if (!ours(ctx)) return XDP_PASS;
    int k = 0;
    counts.increment(k);
    return tx_port.redirect_map(0, 0);
}
int arrive(struct xdp_md *ctx) {
    if (!ours(ctx)) return XDP_PASS;
    int k = 1;
    counts.increment(k);
    return XDP_PASS;
}
"""

TO_SOCKET = HEADERS + r"""
BPF_XSKMAP(xsks, 4);
BPF_ARRAY(counts, u64, 1);
int to_socket(struct xdp_md *ctx) {
    if (!ours(ctx)) return XDP_PASS;
    int k = 0;
    counts.increment(k);
    return xsks.redirect_map(ctx->rx_queue_index, XDP_PASS);
}
"""


@pytest.fixture
def net():
    """Namespace ns with veths a0 (here) <-> a1 (ns) and b0 (here) <-> b1 (ns); removed after,
    even when the test fails."""
    require(mapfeatures.veth())
    names = {k: f"bn{TAG}{k}" for k in ("a0", "a1", "b0", "b1")}
    ns = NetNs(f"bpfnb-test-{TAG}")
    try:
        veth(names["a0"], names["a1"], ns, "10.77.1.1/24", "10.77.1.2/24")
        veth(names["b0"], names["b1"], ns, "10.77.2.1/24", "10.77.2.2/24")
        ns.ip("neigh", "add", "10.77.1.1", "lladdr", mac_of(names["a0"]), "dev", names["a1"])
        yield ns, names
    finally:
        remove_link(names["a0"])
        remove_link(names["b0"])
        ns.remove()
    assert not os.path.exists(f"/sys/class/net/{names['a0']}")


def send_from_ns(ns: NetNs, n: int, to: str = "10.77.1.1") -> None:
    s = ns.socket()
    try:
        for _ in range(n):
            s.sendto(b"p" * 64, (to, PORT))
    finally:
        s.close()


def test_xdp_redirect_through_devmap(net):
    ns, names = net
    with bpfnb.load(REDIRECT, cflags=[f"-DPORT={PORT}"], attach=False) as p:
        tx = p["tx_port"]
        tx[0] = names["b0"]  # by name; df() shows the name back
        df = tx.df()
        assert df["interface"].tolist() == [names["b0"]]
        assert df["ifindex"].tolist() == [socket.if_nametoindex(names["b0"])]
        function(p, "redirect", "xdp").attach_xdp(names["a0"])
        function(p, "arrive", "xdp").attach_xdp(names["b1"], netns=ns)
        before = ns.link_stats(names["b1"])["rx_packets"]
        send_from_ns(ns, 100)  # ns -a1-> a0 (XDP: redirect) -b0-> b1 (XDP: count)
        counts = p["counts"]
        for _ in range(50):
            if counts[1] == 100:
                break
            time.sleep(0.02)
        assert counts[0] == 100 and counts[1] == 100
        assert ns.link_stats(names["b1"])["rx_packets"] - before >= 100
        with pytest.raises(KeyTypeError, match="no interface"):
            tx[1] = "no-such-interface"


def test_cpumap_and_devmap_hash_entries():
    with bpfnb.load(REDIRECT, cflags=[f"-DPORT={PORT}"], attach=False) as p:
        cpus = p["cpus"]
        cpus[0] = 192
        assert cpus.df()[["cpu", "qsize"]].values.tolist() == [[0, 192]]
    hashed = mapcreate.create("devmap_hash", ct.c_uint32, ct.c_uint32, 8, name="ports")
    try:
        hashed[1000] = "lo"
        df = hashed.df()
        assert df["key"].tolist() == [1000] and df["interface"].tolist() == ["lo"]
        assert hashed.info.type == "DEVMAP_HASH"
    finally:
        hashed.release()


def test_xskmap_holds_an_af_xdp_socket(net):
    require(mapfeatures.af_xdp())
    ns, names = net
    with bpfnb.load(TO_SOCKET, cflags=[f"-DPORT={PORT}"], attach=False) as p, \
            XdpSocket(socket.if_nametoindex(names["a0"])) as xsk:
        xsks = p["xsks"]
        xsks[0] = xsk
        assert xsks.df()["socket"].tolist() == [xsk.name] and len(xsks) == 1
        with pytest.raises(UnsupportedMapError, match="does not let user space read"):
            xsks[0]
        function(p, "to_socket", "xdp").attach_xdp(names["a0"])
        send_from_ns(ns, 20)
        for _ in range(50):
            if xsk.received() == 20:
                break
            time.sleep(0.02)
        assert p["counts"][0] == 20 and xsk.received() == 20


SOCKETS = r"""
BPF_TABLE("sockmap", u32, u64, by_slot, 4);
/* BPF_SOCKHASH with u64 values, so user space reads socket cookies back */
struct to_peer_table_t {
    u32 key; u64 leaf;
    int (*update)(u32 *, int *); int (*delete)(u32 *);
    int (*sock_hash_update)(void *, void *, u64);
    int (*msg_redirect_hash)(void *, void *, u64);
    int (*sk_redirect_hash)(void *, void *, u64);
    u32 max_entries;
};
__attribute__((section("maps/sockhash"))) struct to_peer_table_t to_peer = { .max_entries = 4 };
BPF_ARRAY(bytes, u64, 1);
int redirect(struct sk_msg_md *msg) {
    int zero = 0;
    u64 *b = bytes.lookup(&zero);
    if (b) __sync_fetch_and_add(b, msg->size);
    u32 to = 2;
    return to_peer.msg_redirect_hash(msg, &to, BPF_F_INGRESS);
}
"""


@pytest.fixture
def tcp_pairs():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    socks = []
    try:
        for _ in range(2):
            c = socket.create_connection(srv.getsockname())
            s, _ = srv.accept()
            socks += [c, s]
        yield socks  # a, a_peer, b, b_peer
    finally:
        for s in [*socks, srv]:
            s.close()


def test_sockmap_cookies_named(tcp_pairs):
    a, a_peer, b, _ = tcp_pairs
    with bpfnb.load(SOCKETS, attach=False) as p:
        slots = p["by_slot"]  # bcc 0.26's Python has no sockmap table: a raw table
        slots[0] = a
        slots[1] = b
        df = slots.df()
        assert df["cookie"].tolist() == [sockdiag.cookie_of(a), sockdiag.cookie_of(b)]
        assert df["local"].tolist() == [f"127.0.0.1:{s.getsockname()[1]}" for s in (a, b)]
        assert df["remote"][0] == f"127.0.0.1:{a_peer.getsockname()[1]}"
        assert (df["pid"] == os.getpid()).all() and (df["state"] == "ESTABLISHED").all()
        with pytest.raises(KeyTypeError, match="stores sockets"):
            slots[2] = "a socket"


def test_sk_msg_redirects_between_loopback_sockets(tcp_pairs):
    a, a_peer, _, b_peer = tcp_pairs
    with bpfnb.load(SOCKETS, attach=False) as p:
        peers = p["to_peer"]
        function(p, "redirect", "sk_msg").attach_map(peers, "msg_verdict")  # before inserting
        peers[1] = a
        peers[2] = b_peer
        assert sorted(peers.df()["key"].tolist()) == [1, 2]
        payload = b"through the sockhash " * 10
        a.sendall(payload)
        b_peer.settimeout(2)
        got = b""
        while len(got) < len(payload):
            got += b_peer.recv(4096)
        assert got == payload  # sent on a's connection, read on b's
        a_peer.setblocking(False)
        with pytest.raises(BlockingIOError):
            a_peer.recv(4096)  # a's own peer saw nothing
        assert p["bytes"][0] == len(payload)
