"""Named tuples in recorded cells: what identifies one, and its type rebuilt from a file.

A value's class is never imported: replay makes a new class with `collections.namedtuple`
from the recorded type name and field names, once each has been checked to be an identifier
(`collections.namedtuple` compiles a constructor from them). The rebuilt class has the same
name, fields and values; methods and defaults of the original class are not kept.

>>> Point = collections.namedtuple("Point", "x y")
>>> signature(Point(1, 2))
('Point', ('x', 'y'))
>>> rebuild("Point", ["x", "y"])(1, 2)
Point(x=1, y=2)
"""

from __future__ import annotations

import collections
import functools
import keyword
from typing import Any

from bpfnb.errors import ReplayError

MAX_NAME = 200     # characters of a type or field name
MAX_FIELDS = 1000  # fields of one type
MAX_TYPES = 256    # types in what one read gives back (each costs up to ~5 ms to make)


def signature(v: Any) -> tuple[str, tuple[str, ...]] | None:
    """(type name, field names) of a named tuple; None for anything else (a plain tuple)."""
    cls = type(v)
    if cls is tuple or not isinstance(v, tuple):
        return None
    fields = getattr(cls, "_fields", None)
    if not (isinstance(fields, tuple) and len(fields) == len(v)
            and all(isinstance(f, str) for f in fields) and callable(getattr(cls, "_make", None))):
        return None
    return cls.__name__, fields


def kind(v: Any) -> Any:
    """What a value's type is for comparing: its signature for a named tuple, else its type."""
    return signature(v) or type(v)


def _check_name(name: Any, what: str) -> str:
    if not (isinstance(name, str) and 0 < len(name) <= MAX_NAME and name.isidentifier()
            and not keyword.iskeyword(name)):
        raise ReplayError(f"the {what} of a named tuple is not a Python identifier: "
                          f"{str(name)[:MAX_NAME]!r}")
    return name


def rebuild(name: Any, fields: Any) -> type:
    """The named tuple class `name` with `fields` (the same class for the same pair);
    ReplayError if they are not identifiers namedtuple() takes as they are."""
    _check_name(name, "type name")
    if not (isinstance(fields, list) and len(fields) <= MAX_FIELDS):
        raise ReplayError(f"the fields of named tuple {name} are not a list of at most "
                          f"{MAX_FIELDS} names")
    for i, f in enumerate(fields):
        _check_name(f, "field name")
        if f.startswith("_") and f != f"_{i}":  # namedtuple(rename=True) names field i `_i`
            raise ReplayError(f"field {f!r} of named tuple {name} starts with an underscore")
    if len(set(fields)) != len(fields):
        raise ReplayError(f"named tuple {name} has a field name twice")
    return _make_class(name, tuple(fields))


@functools.lru_cache(maxsize=MAX_TYPES)
def _make_class(name: str, fields: tuple[str, ...]) -> type:
    cls = collections.namedtuple(name, fields, rename=True)  # type: ignore[misc]
    assert cls._fields == fields
    return cls
