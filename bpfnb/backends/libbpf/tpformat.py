"""C structs for TRACEPOINT_PROBE's `args`, generated from tracefs format files.

Scalars get a fixed-width integer of the field's real size (tracefs may say `int` for an
8-byte slot), arrays keep their element count, pointers stay pointers; gaps become
padding, so every offset is the kernel's.
"""

from __future__ import annotations

import re

from bpfnb._sys import features, tracefs
from bpfnb.backends.diagnose import unknown_tracepoint
from bpfnb.errors import FeatureUnavailableError

_C_WORDS = {"const", "volatile", "unsigned", "signed", "char", "short", "int", "long", "void",
            "struct", "union", "enum"}


def _int(size: int, signed: bool) -> str:
    bits = {1: 8, 2: 16, 4: 32, 8: 64}.get(size)
    return f"{'s' if signed else 'u'}{bits}" if bits else ""


def _member(decl: str, size: int, signed: bool) -> tuple[str, int]:
    """One C member declaration and its alignment."""
    data_loc = "__data_loc" in decl
    decl = decl.replace("__data_loc", "").replace("[]", "").strip()
    m = re.match(r"^(.*?)([A-Za-z_]\w*)\s*(\[(\d*)\])?$", decl)
    if not m:
        return f"char __unparsed_{abs(hash(decl))}[{size}];", 1
    ctype, name, arr, count = m.group(1).strip(), m.group(2), m.group(3), m.group(4)
    if data_loc or (arr is not None and not count):
        return f"u32 {name};", 4  # __data_loc: offset << 16 | length
    if arr is not None:
        n = int(count)
        elem = size // n if n else size
        base = "char" if "char" in ctype and elem == 1 else _int(elem, signed) or "char"
        return f"{base} {name}[{n if base != 'char' or elem == 1 else size}];", min(elem, 8)
    if "*" in ctype:
        words = set(re.findall(r"[A-Za-z_]\w*", ctype))
        keep = words <= _C_WORDS or ctype.lstrip("const ").startswith(("struct ", "union "))
        return f"{ctype if keep else 'const void *'} {name};", 8
    scalar = _int(size, signed)
    return (f"{scalar} {name};", size) if scalar else (f"char {name}[{size}];", 1)


def struct_for(category: str, event: str) -> str:
    """`struct tracepoint__CAT__EVENT {...};` laid out as the kernel's tracefs says."""
    root = features.tracefs()
    if root is None:
        raise FeatureUnavailableError(
            f"TRACEPOINT_PROBE({category}, {event}) needs tracefs to learn the tracepoint's "
            "fields, and it is not mounted or readable; mount it on /sys/kernel/tracing.")
    try:
        with open(f"{root}/events/{category}/{event}/format") as f:
            text = f.read()
    except OSError as e:
        raise unknown_tracepoint(f"{category}:{event}") from e
    members, pos, packed = [], 0, False
    for field in tracefs.fields(text):
        offset, nbytes = field.offset, field.size
        if offset > pos:
            members.append(f"char __pad_{pos}[{offset - pos}];")
            pos = offset
        line, align = _member(field.decl, nbytes, field.signed)
        packed |= offset % max(align, 1) != 0
        members.append(line)
        pos = offset + nbytes
    attr = " __attribute__((packed))" if packed else ""
    body = " ".join(members)
    return f"struct tracepoint__{category}__{event} {{ {body} }}{attr};"
