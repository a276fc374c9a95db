"""load_object: any libbpf CO-RE object (`.bpf.o`) built elsewhere, as a LibbpfModule."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bpfnb.backends.libbpf.module import LibbpfModule


def load_object(path_or_bytes: str | os.PathLike[str] | bytes, name: str | None = None,
                attach: bool = True, consts: Mapping[str, Any] | None = None) -> LibbpfModule:
    """Open, set `const volatile` globals from `consts`, load and (unless attach=False)
    auto-attach every program whose SEC() says where."""
    if isinstance(path_or_bytes, bytes):
        data, default = path_or_bytes, "object"
    else:
        path = Path(path_or_bytes)
        data, default = path.read_bytes(), path.name.split(".")[0]
    module = LibbpfModule.from_object(data, name or default, consts)
    try:
        if attach:
            module.autoattach()
    except BaseException:
        module.close()
        raise
    return module
