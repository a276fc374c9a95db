"""kstack/ustack-keyed bpftrace maps -> the kit's Stacks (via folded text)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bpfnb.bpftrace.script import STACK_KEYS
from bpfnb.errors import UnsupportedMapError
from bpfnb.profiler.stacks import Stacks

if TYPE_CHECKING:
    from bpfnb.bpftrace.views import BpftraceMap

KERNEL_MARK = "_[k]"


def to_stacks(view: BpftraceMap) -> Stacks:
    """Each key's stack frames (bpftrace prints leaf first) folded root first; kernel frames
    marked `_[k]`; a `comm` key component becomes the process name."""
    decl = view.decl
    kinds = [k.strip().split("(")[0].strip() for k in decl.key]
    if not any(k in STACK_KEYS for k in kinds):
        raise UnsupportedMapError(f"{view.name} is not keyed by kstack or ustack "
                                  f"(its key is {list(decl.key)})")
    df = view.df()
    cols = decl.columns()
    value = "value" if "value" in df.columns else df.attrs.get("value_columns", ["value"])[0]
    lines = []
    for rec in df.to_dict("records"):
        comm = str(rec["comm"]) if "comm" in rec else view.name
        frames: list[str] = []
        for col, kind in zip(cols, kinds):
            if kind in STACK_KEYS:
                stack = [f.strip() for f in str(rec[col]).splitlines() if f.strip()]
                mark = KERNEL_MARK if kind == "kstack" else ""
                frames = [*(f + mark for f in reversed(stack)), *frames] if kind == "ustack" \
                    else [*frames, *(f + mark for f in reversed(stack))]
        folded = ";".join([comm.replace(";", ":"), *(f.replace(";", ":").replace(" ", "_")
                                                    for f in frames)])
        lines.append(f"{folded} {int(rec[value])}")
    return Stacks.from_folded("\n".join(lines), name=view.name)
