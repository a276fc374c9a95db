"""The libbpf CO-RE backend: BCC C compiled by clang against the kernel's BTF."""

from .load_object import load_object
from .module import LibbpfModule

__all__ = ["LibbpfModule", "load_object"]
