"""The libbpf CO-RE backend: BCC C compiled by clang against the kernel's BTF."""

from bpfnb.backends.libbpf.load_object import load_object
from bpfnb.backends.libbpf.module import LibbpfModule

__all__ = ["LibbpfModule", "load_object"]
