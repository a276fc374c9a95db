"""Tracepoint format files (tracefs `events/CAT/EVENT/format`): each field's C declaration,
name, type, offset, size and signedness.

>>> [f.name for f in fields(open(".../sys_enter_openat/format").read())][-4:]
['dfd', 'filename', 'flags', 'mode']
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FIELD = re.compile(r"^\s*field:(.*?);\s*offset:(\d+);\s*size:(\d+);\s*signed:(\d+);", re.M)
_DECL = re.compile(r"^(.*?)([A-Za-z_]\w*)\s*(\[(\d*)\])?$")


@dataclass(frozen=True)
class Field:
    """One field of a tracepoint's record, as its format file states it."""

    decl: str  # the declaration as written: 'const char * filename', '__data_loc char[] s'
    offset: int
    size: int
    signed: bool

    @property
    def data_loc(self) -> bool:
        """A `__data_loc` field: a u32 (offset << 16 | length) of data after the record."""
        return "__data_loc" in self.decl

    @property
    def common(self) -> bool:
        """One of the `common_*` fields every event record starts with."""
        return self.name.startswith("common_")

    def _parts(self) -> tuple[str, str, str | None]:
        decl = self.decl.replace("__data_loc", "").replace("[]", "").strip()
        m = _DECL.match(decl)
        if not m:
            return decl, "", None
        return m.group(1).strip(), m.group(2), m.group(4) if m.group(3) else None

    @property
    def name(self) -> str:
        return self._parts()[1]

    @property
    def ctype(self) -> str:
        """The C type without the name: 'const char *', 'char[16]', 'char[]' (__data_loc)."""
        base = self._parts()[0]
        if "[]" in self.decl:
            return f"{base}[]"
        n = self._parts()[2]
        return f"{base}[{n}]" if n is not None else base


def fields(text: str) -> list[Field]:
    """Every field of a format file's text, common ones first, in offset order."""
    return [Field(d.strip(), int(o), int(s), g == "1") for d, o, s, g in _FIELD.findall(text)]


def event_id(text: str) -> int | None:
    """The `ID:` line of a format file (the perf event config of the tracepoint)."""
    m = re.search(r"^ID:\s*(\d+)", text, re.M)
    return int(m.group(1)) if m else None
