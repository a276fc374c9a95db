"""A minimal AF_XDP socket from Python: enough to fill an XSKMAP and count what arrives.

An AF_XDP socket needs a UMEM (packet memory this process registers), a fill ring (frames
the kernel may write packets into), a completion ring, an RX ring, and a bind to one queue
of one interface. Copy mode (XDP_COPY) works on any driver, veth included. `received()`
reads the RX ring's producer counter; frames are not recycled, so at most `frames` packets
are received.
"""

from __future__ import annotations

import contextlib
import ctypes as ct
import mmap
import os
import socket

import numpy as np

from bpfnb._sys.libc import libc
from bpfnb.errors import BpfnbError, FeatureUnavailableError

AF_XDP, SOL_XDP = 44, 283
XDP_MMAP_OFFSETS, XDP_RX_RING, XDP_UMEM_REG = 1, 2, 4
XDP_UMEM_FILL_RING, XDP_UMEM_COMPLETION_RING, XDP_STATISTICS = 5, 6, 7
XDP_COPY = 1 << 1
PGOFF_RX_RING, UMEM_PGOFF_FILL_RING = 0, 0x100000000



class _UmemReg(ct.Structure):
    _fields_ = [("addr", ct.c_uint64), ("len", ct.c_uint64), ("chunk_size", ct.c_uint32),
                ("headroom", ct.c_uint32), ("flags", ct.c_uint32), ("tx_metadata_len",
                                                                     ct.c_uint32)]


class _RingOffsets(ct.Structure):
    _fields_ = [("producer", ct.c_uint64), ("consumer", ct.c_uint64), ("desc", ct.c_uint64),
                ("flags", ct.c_uint64)]


class _MmapOffsets(ct.Structure):
    _fields_ = [("rx", _RingOffsets), ("tx", _RingOffsets), ("fr", _RingOffsets),
                ("cr", _RingOffsets)]


class _SockaddrXdp(ct.Structure):
    _fields_ = [("family", ct.c_uint16), ("flags", ct.c_uint16), ("ifindex", ct.c_uint32),
                ("queue_id", ct.c_uint32), ("shared_umem_fd", ct.c_uint32)]


class _Stats(ct.Structure):
    _fields_ = [("rx_dropped", ct.c_uint64), ("rx_invalid_descs", ct.c_uint64),
                ("tx_invalid_descs", ct.c_uint64), ("rx_ring_full", ct.c_uint64),
                ("rx_fill_ring_empty_descs", ct.c_uint64), ("tx_ring_empty_descs", ct.c_uint64)]


def _check(ret: int, what: str) -> None:
    if ret < 0:
        err = ct.get_errno()
        raise BpfnbError(f"AF_XDP {what}: {os.strerror(err)} (errno {err})")


class XdpSocket:
    """An AF_XDP socket bound to (ifindex, queue) in copy mode; `fileno()` goes in XSKMAP."""

    def __init__(self, ifindex: int, queue: int = 0, frames: int = 64,
                 frame_size: int = 4096, sock: socket.socket | None = None) -> None:
        try:
            self.sock = sock or socket.socket(AF_XDP, socket.SOCK_RAW, 0)
        except OSError as e:
            raise FeatureUnavailableError(f"AF_XDP sockets cannot be opened: {e.strerror}") \
                from None
        self.ifindex, self.queue, self.frames = ifindex, queue, frames
        self.name = f"xsk(ifindex {ifindex}, queue {queue})"
        self._maps: list[mmap.mmap] = []
        try:
            self._setup(frames, frame_size)
        except BaseException:
            self.close()
            raise

    def _setsockopt(self, opt: int, value: ct.Structure | ct.c_int) -> None:
        _check(libc.setsockopt(self.sock.fileno(), SOL_XDP, opt, ct.byref(value),
                                ct.sizeof(value)), f"setsockopt({opt})")

    def _setup(self, frames: int, frame_size: int) -> None:
        self.umem = mmap.mmap(-1, frames * frame_size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._maps.append(self.umem)
        base = ct.addressof(ct.c_char.from_buffer(self.umem))
        self._setsockopt(XDP_UMEM_REG, _UmemReg(addr=base, len=frames * frame_size,
                                                chunk_size=frame_size))
        for opt in (XDP_UMEM_FILL_RING, XDP_UMEM_COMPLETION_RING, XDP_RX_RING):
            self._setsockopt(opt, ct.c_int(frames))
        off = _MmapOffsets()
        size = ct.c_uint32(ct.sizeof(off))
        _check(libc.getsockopt(self.sock.fileno(), SOL_XDP, XDP_MMAP_OFFSETS, ct.byref(off),
                                ct.byref(size)), "getsockopt(XDP_MMAP_OFFSETS)")
        fill = self._ring(UMEM_PGOFF_FILL_RING, off.fr.desc + frames * 8)
        prod = np.frombuffer(fill, np.uint32, count=1, offset=off.fr.producer)
        desc = np.frombuffer(fill, np.uint64, count=frames, offset=off.fr.desc)
        desc[:] = np.arange(frames, dtype=np.uint64) * frame_size  # every frame to the kernel
        prod[0] = frames
        rx = self._ring(PGOFF_RX_RING, off.rx.desc + frames * 16)
        self._rx_prod = np.frombuffer(rx, np.uint32, count=1, offset=off.rx.producer)
        addr = _SockaddrXdp(family=AF_XDP, flags=XDP_COPY, ifindex=self.ifindex,
                            queue_id=self.queue)
        _check(libc.bind(self.sock.fileno(), ct.byref(addr), ct.sizeof(addr)),
               f"bind to ifindex {self.ifindex} queue {self.queue}")

    def _ring(self, offset: int, length: int) -> mmap.mmap:
        m = mmap.mmap(self.sock.fileno(), length, mmap.MAP_SHARED | mmap.MAP_POPULATE,
                      mmap.PROT_READ | mmap.PROT_WRITE, offset=offset)
        self._maps.append(m)
        return m

    def fileno(self) -> int:
        return self.sock.fileno()

    def received(self) -> int:
        """Packets the kernel has put on the RX ring so far."""
        return int(self._rx_prod[0])

    def stats(self) -> dict[str, int]:
        st = _Stats()
        size = ct.c_uint32(ct.sizeof(st))
        _check(libc.getsockopt(self.sock.fileno(), SOL_XDP, XDP_STATISTICS, ct.byref(st),
                                ct.byref(size)), "getsockopt(XDP_STATISTICS)")
        return {field[0]: int(getattr(st, field[0])) for field in _Stats._fields_}

    def close(self) -> None:
        self.__dict__.pop("_rx_prod", None)
        for m in self._maps:
            with contextlib.suppress(BufferError):  # a numpy view still alive
                m.close()
        self._maps = []
        self.sock.close()

    def __enter__(self) -> XdpSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<XdpSocket ifindex {self.ifindex} queue {self.queue}>"
