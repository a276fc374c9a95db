"""Map names for IPython: `prog["<TAB>` completes them, and `prog.name` of a map says to
write `prog["name"]` instead of a bare AttributeError. Mixed into every program class
(Program, bpftrace programs, replayed programs); each has a `map_names` property."""

from __future__ import annotations

import threading
from typing import Any

_busy = threading.local()  # objects whose map_names is being read (no recursion through it)


class MapNameHints:
    """`_ipython_key_completions_` and a `__getattr__` that points at `prog["map"]`."""

    def _map_names_or_none(self) -> list[str]:
        busy = _busy.__dict__.setdefault("ids", set())
        if id(self) in busy:
            return []
        busy.add(id(self))
        try:
            return list(getattr(self, "map_names"))  # noqa: B009 (each class has one)
        except (AttributeError, OSError, ValueError, KeyError):
            return []
        finally:
            busy.discard(id(self))

    def _ipython_key_completions_(self) -> list[str]:
        """The map names, for `prog["<TAB>`."""
        return self._map_names_or_none()

    def __getattr__(self, name: str) -> Any:
        """Only reached for attributes that do not exist."""
        kind = type(self).__name__
        if not name.startswith("_"):
            names = self._map_names_or_none()
            key = name if name in names else f"@{name}" if f"@{name}" in names else None
            if key is not None:
                raise AttributeError(f"{kind!r} object has no attribute {name!r}; {key!r} is a "
                                     f"map: use prog[{key!r}]")
        raise AttributeError(f"{kind!r} object has no attribute {name!r}")
