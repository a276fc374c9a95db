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


class Folder:
    """Folds stacks into lines, naming each distinct frame string once (memoized).

    `modules=True` keeps ` [module]` on user frames; `annotations=True` marks kernel
    frames `_[k]` as bcc's `profile -a` does. `;` inside a name becomes `:`.
    """

    def __init__(self, *, modules: bool = False, annotations: bool = False) -> None:
        self.modules, self.annotations = modules, annotations
        self._user: dict[str, str] = {}
        self._kernel: dict[str, str] = {}

    def _text(self, frame: str, kernel: bool) -> str:
        text = frame if self.modules else plain_frame(frame, kernel)
        if kernel and self.annotations and not text.startswith("[missing "):
            text += KERNEL_MARK
        return text.replace(";", ":")

    def fold(self, comm: str, frames: tuple[str, ...], kernel_frames: int) -> str:
        """One folded stack (no count): `comm;frame;...;frame`, root first."""
        cut = len(frames) - kernel_frames
        user, kern = self._user, self._kernel
        out = [comm.replace(";", ":")]
        for f in frames[:cut]:
            t = user.get(f)
            if t is None:
                t = user[f] = self._text(f, False)
            out.append(t)
        for f in frames[cut:]:
            t = kern.get(f)
            if t is None:
                t = kern[f] = self._text(f, True)
            out.append(t)
        return ";".join(out)


def fold(comm: str, frames: tuple[str, ...], kernel_frames: int, *, modules: bool = False,
         annotations: bool = False) -> str:
    """One folded stack (no count): `comm;frame;...;frame`, root first (see `Folder`)."""
    return Folder(modules=modules, annotations=annotations).fold(comm, frames, kernel_frames)
