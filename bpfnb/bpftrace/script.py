"""What a bpftrace script declares, read from its text: each map's aggregation and keys.

bpftrace 0.17's maps carry no BTF, so the key layout the kernel holds (and the number
of components joined into a JSON key) comes from the assignments in the script.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: the marker the injected BEGIN probe prints once every probe is attached
MARKER = "__bpfnb_attached__"

_ASSIGN = re.compile(r"(@\w*)\s*(\[(?P<key>[^\]]*)\])?\s*=\s*(?P<fn>\w+)\s*\(")
_ANY_MAP = re.compile(r"(@\w*)\s*(\[(?P<key>[^\]]*)\])?")
AGGREGATIONS = frozenset({"count", "sum", "min", "max", "avg", "stats", "hist", "lhist"})

#: key components whose kernel layout is known: name -> (bytes, kind)
BUILTIN_KEYS: dict[str, tuple[int, str]] = {
    "comm": (16, "str"),
    **{n: (8, "int") for n in ("pid", "tid", "uid", "gid", "cpu", "cgroup", "retval",
                               "nsecs", "elapsed", "numaid", "rand")},
    **{f"arg{i}": (8, "int") for i in range(10)},
}
STACK_KEYS = frozenset({"kstack", "ustack"})


@dataclass(frozen=True)
class MapDecl:
    """One map: its name, aggregation ("" when a plain value) and key components."""

    name: str
    function: str
    key: tuple[str, ...]
    params: tuple[str, ...] = ()

    @property
    def arity(self) -> int:
        return len(self.key)

    def columns(self) -> list[str]:
        """Key column names: `key` for one component; for more, each component's expression
        when it is a plain name (`comm`, `pid`), else `key0`, `key1`, ..."""
        if len(self.key) <= 1:
            return ["key"] if self.key else []
        names = [k if re.fullmatch(r"[A-Za-z_]\w*", k) else f"key{i}"
                 for i, k in enumerate(self.key)]
        return names if len(set(names)) == len(names) else [f"key{i}" for i in
                                                             range(len(names))]

    def key_layout(self) -> list[tuple[str, int, str]] | None:
        """(name, bytes, kind) of each key component when every one is a known builtin."""
        out = []
        for k in self.key:
            known = BUILTIN_KEYS.get(k.strip())
            if known is None:
                return None
            out.append((k.strip(), *known))
        return out


def split_args(text: str) -> tuple[str, ...]:
    """Top-level comma-separated expressions (commas inside () or "" do not split)."""
    parts: list[str] = []
    cur: list[str] = []
    depth, quoted = 0, False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "([":
            depth += 1
        elif not quoted and ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0 and not quoted:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return tuple(parts)


def declarations(script: str) -> dict[str, MapDecl]:
    """Maps assigned in `script`: the first aggregation seen wins, else a plain value."""
    text = _strip_comments(script)
    out: dict[str, MapDecl] = {}
    for m in _ASSIGN.finditer(text):
        fn = m.group("fn")
        name = m.group(1)
        key = split_args(m.group("key") or "")
        if fn in AGGREGATIONS and (name not in out or not out[name].function):
            out[name] = MapDecl(name, fn, key, split_args(_call_args(text, m.end())))
    for m in _ANY_MAP.finditer(text):
        name = m.group(1)
        if name not in out:
            out[name] = MapDecl(name, "", split_args(m.group("key") or ""))
    return out


def _call_args(text: str, start: int) -> str:
    """The text between the "(" just before `start` and its matching ")"."""
    depth = 1
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i]
    return text[start:]


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", lambda m: re.sub(r"[^\n]", " ", m.group()), text, flags=re.S)
    return re.sub(r"//[^\n]*", lambda m: " " * len(m.group()), text)


_BEGIN = re.compile(r"(?<![\w:])BEGIN\s*\{")
_MARK_CALL = f'printf("{MARKER}\\n"); '


@dataclass(frozen=True)
class Marked:
    """The script bpftrace runs, and where the marker went (1-based line, 0-based column,
    length) when it was put inside the script's own BEGIN block (0.17 allows one)."""

    script: str
    inserted: tuple[int, int, int] | None

    def cell_column(self, line: int, column: int) -> int:
        """A column bpftrace reported, as a column of the cell."""
        if self.inserted and line == self.inserted[0] and column > self.inserted[1]:
            return max(column - self.inserted[2], self.inserted[1])
        return column


def with_marker(script: str) -> Marked:
    """`script` plus a printf of MARKER in BEGIN, which runs once every probe is attached:
    at the start of the script's BEGIN block, else in a BEGIN block after its last line;
    either way line numbers in bpftrace's errors stay those of the cell."""
    m = _BEGIN.search(_strip_comments(script))
    if m is None:
        return Marked(f'{script.rstrip()}\nBEGIN {{ {_MARK_CALL}}}\n', None)
    at = m.end()
    line = script.count("\n", 0, at) + 1
    col = at - (script.rfind("\n", 0, at) + 1)
    return Marked(script[:at] + " " + _MARK_CALL + script[at:], (line, col, len(_MARK_CALL) + 1))
