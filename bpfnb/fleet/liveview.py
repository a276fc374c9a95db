"""Live views of fleet maps: the kit's LiveView over a feed that asks each host for its top
rows only, with one more status line saying how each host answered."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any, cast

from bpfnb.data.mapread import Snapshot
from bpfnb.live import poller as live
from bpfnb.live.widgets import LiveView, live_view

if TYPE_CHECKING:  # FleetMap.live() imports this module: the plugin must not import it back
    from bpfnb.fleet.program import FleetMap


class Feed:
    """A FleetMap whose read() is each host's top-N (what the table shows)."""

    def __init__(self, fmap: FleetMap, top: int, sort: str | None) -> None:
        self.fmap, self.top, self.sort = fmap, top, sort
        fmap.feeds.add(self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fmap, name)

    def read(self) -> Snapshot:
        return self.fmap.read(top=self.top, sort=self.sort)


class FleetLiveView(LiveView):
    """LiveView plus a line per refresh: each host ✓ (round trip) or ✗ (why)."""

    def _status_html(self, s: live.PollStatus) -> str:
        base = super()._status_html(s)
        status = cast(Feed, self.mapview).status
        hosts = []
        for row in status.itertuples(index=False):
            if row.ok:
                hosts.append(f"<span style='color:#2a7'>✓ {html.escape(str(row.host))}</span>"
                             f" {row.seconds * 1000:.0f} ms")
            else:
                hosts.append(f"<span style='color:#b00'>✗ {html.escape(str(row.host))}: "
                             f"{html.escape(str(row.error))}</span>")
        line = " · ".join(hosts) or "no host answered yet"
        return base + f"<div style='font:12px monospace;color:#444'>hosts: {line}</div>"


def fleet_live_view(fmap: FleetMap, every: float = 1.0, top: int = 20,
                    sort_by: str | None = None, **options: Any) -> FleetLiveView:
    """A live top-`top` view across hosts; `sort_by` is also what each host ranks on."""
    sort = sort_by if sort_by in (fmap.value_dtype.names or ()) else None
    feed = Feed(fmap, top, sort)
    view = live_view(feed, every=every, top=top, sort_by=sort_by,
                     view_class=FleetLiveView, **options)
    assert isinstance(view, FleetLiveView)
    return view
