"""A live event table in a notebook: the newest events and running totals, redrawn in place
as batches arrive (an IPython display handle; no widget needed, so saved notebooks show the
last state)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from bpfnb.map.view import MapView


class _Table:
    def __init__(self, rows: int) -> None:
        from IPython.display import display  # lazy: core modules do not import IPython

        self.rows = rows
        self.count = 0
        self.last = pd.DataFrame()
        self.handle: Any = display(self._render(), display_id=True)

    def _render(self) -> Any:
        from IPython.display import HTML

        head = f"<b>{self.count:,} events</b>"
        return HTML(head + self.last.tail(self.rows).to_html(index=False))

    def update(self, df: pd.DataFrame) -> None:
        self.count += len(df)
        self.last = pd.concat([self.last, df]).tail(self.rows) if len(self.last) else df
        self.handle.update(self._render())


def live_events(view: MapView, duration: float = 5.0, rows: int = 10,
                max_events: int | None = None, **kwargs: Any) -> pd.DataFrame:
    """view.events(...) while a table of the newest `rows` events updates in the notebook;
    returns every event read."""
    table = _Table(rows)
    return view.event_reader(kwargs.pop("event_type", None)).read(
        duration=duration, max_events=max_events, on_batch=table.update, **kwargs)
