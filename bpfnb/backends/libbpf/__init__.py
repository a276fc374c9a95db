"""The libbpf CO-RE backend: BCC C compiled by clang against the kernel's BTF."""

from bpfnb.backends.libbpf import background, objcache, spare
from bpfnb.backends.libbpf.load_object import load_object
from bpfnb.backends.libbpf.module import LibbpfModule

__all__ = ["LibbpfModule", "load_object", "release"]


def release() -> None:
    """Give back what the compiler keeps warm between cells: write the queued objects, kill
    the waiting spare clang, end the worker thread. The next compile starts them again."""
    objcache.wait()
    spare.stop()
    background.shutdown()
