"""Closing a whole ipywidgets tree: children, layouts, styles, what Output widgets show.

`Widget.close()` closes one model only. Its `children`, and even its `layout` and `style`
(models of their own), stay in ipywidgets' registry, and the kernel keeps them and what
they reference until each is closed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ipywidgets as W

__all__ = ["close_descendants", "descendants"]


def descendants(widget: W.Widget) -> Iterator[W.Widget]:
    """Every widget `widget` references through its synced traits, depth first, each once
    (children before their parents; `widget` itself not included)."""
    seen = {id(widget)}

    def walk(w: W.Widget) -> Iterator[W.Widget]:
        for name in w.keys:
            for child in _widgets_in(getattr(w, name, None)):
                if id(child) not in seen:
                    seen.add(id(child))
                    yield from walk(child)
                    yield child

    yield from walk(widget)


def _widgets_in(value: Any) -> Iterator[W.Widget]:
    if isinstance(value, W.Widget):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _widgets_in(item)
    elif isinstance(value, dict):
        model = value.get("model_id")   # a widget shown inside an Output widget
        if isinstance(model, str) and model in _registry():
            yield _registry()[model]
        for item in value.values():
            yield from _widgets_in(item)


def _registry() -> dict[str, W.Widget]:
    """ipywidgets' open models by id (`Widget.widgets` in ipywidgets 7)."""
    registry = getattr(W.widgets.widget, "_instances", None)
    return registry if registry is not None else W.Widget.widgets


def close_descendants(widget: W.Widget) -> None:
    """Close every widget below `widget` (not `widget` itself)."""
    for child in list(descendants(widget)):
        child.close()
