"""Does this kernel load fentry programs? Found out by loading the smallest one (`return 0`)
on a kernel function given by its vmlinux BTF id, and closing it; nothing is attached."""

from __future__ import annotations

import ctypes as ct
import errno
import functools
import os
import struct

from bpfnb._sys import bpfsys, features
from bpfnb._sys.bpfattrs import ProgLoadAttr

TRACE_FENTRY = 24  # enum bpf_attach_type
_RETURN_0 = struct.pack("<BBhiBBhi", 0xB7, 0, 0, 0, 0x95, 0, 0, 0)  # r0 = 0; exit


@functools.lru_cache(maxsize=8)
def fentry(btf_id: int, function: str) -> features.Feature:
    """Whether an fentry program on `function` (vmlinux BTF type `btf_id`) loads here."""
    perm = features.can_load_bpf()
    if not perm:
        return features.Feature("fentry", False, perm.reason)
    insns = ct.create_string_buffer(_RETURN_0, len(_RETURN_0))
    gpl = ct.create_string_buffer(b"GPL")
    attr = ProgLoadAttr(prog_type=bpfsys.ProgType.TRACING, insn_cnt=2, insns=ct.addressof(insns),
                        license=ct.addressof(gpl), prog_name=b"bpfnb_fentry",
                        expected_attach_type=TRACE_FENTRY, attach_btf_id=btf_id)
    try:
        os.close(bpfsys.bpf(bpfsys.Cmd.PROG_LOAD, attr))
    except OSError as e:
        name = errno.errorcode.get(e.errno or 0, str(e.errno))
        return features.Feature("fentry", False, f"this kernel refuses fentry programs: "
                                f"loading one on {function} gives {name} ({e.strerror})")
    return features.Feature("fentry", True)
