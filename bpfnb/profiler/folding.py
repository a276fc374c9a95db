"""Frame strings in the folded convention of flamegraph.pl, bcc's `profile -f` and
stackcollapse-perf: plain symbol names (`main`, not `main [app]`), the module only
where a frame has no symbol (`[libfoo.so]`), kernel frames optionally marked `_[k]`.

The symbolizer's frames are `symbol [module]` for user code, `symbol` for the
kernel and `[unknown] 0x... [module]` where no symbol covers an address.
"""

from __future__ import annotations

KERNEL_MARK = "_[k]"


def split_frame(frame: str, kernel: bool) -> tuple[str, str]:
    """(symbol, module) of a frame string; module is "" where the frame names none."""
    if kernel or not frame.endswith("]"):
        return frame, ""
    head, sep, module = frame.rpartition(" [")
    if not sep or not head:
        return frame, ""
    return head, module[:-1]


def plain_frame(frame: str, kernel: bool) -> str:
    """`main [app]` -> `main`; `[unknown] 0x1f [libfoo.so]` -> `[libfoo.so]`."""
    name, module = split_frame(frame, kernel)
    if name.startswith("[unknown]"):
        return f"[{module}]" if module else "[unknown]"
    return name


def fold(comm: str, frames: tuple[str, ...], kernel_frames: int, *, modules: bool = False,
         annotations: bool = False) -> str:
    """One folded stack (no count): `comm;frame;...;frame`, root first.

    `modules=True` keeps ` [module]` on user frames; `annotations=True` marks kernel
    frames `_[k]` as bcc's `profile -a` does. `;` inside a name becomes `:`.
    """
    cut = len(frames) - kernel_frames
    out = [comm.replace(";", ":")]
    for j, f in enumerate(frames):
        kernel = j >= cut
        text = f if modules else plain_frame(f, kernel)
        if annotations and kernel and not text.startswith("[missing "):
            text += KERNEL_MARK
        out.append(text.replace(";", ":"))
    return ";".join(out)
