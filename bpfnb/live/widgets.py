"""Live map views: a sortable top-N table, a plot and controls, refreshed by a Poller.

>>> view = counts["by_pid"].live(every=0.5, top=10, rate=True)
>>> view.stop(); view.history            # tidy DataFrame of every refresh kept

The widget refreshes from a daemon thread (see `bpfnb.live.poller`). Its output also carries a
static HTML table and a PNG of the plot, so a notebook saved without widget state (GitHub,
nbviewer, nbconvert) still shows a picture. The view keeps its display handle: when it stops
(or closes) the output is replaced by the static table and plot of its last refresh, with no
widget view in it, so a notebook saved after its cleanup cell shows the last state and reopens
without "model not found"; start() puts the widget back.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bpfnb._sys import bpfsys
from bpfnb.data import frames
from bpfnb.data.frames import looks_like_hist
from bpfnb.live import poller as live
from bpfnb.live import widgettree
from bpfnb.map.protocol import MapLike
from bpfnb.render import plot

try:
    import ipywidgets as W
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("live views need ipywidgets: pip install 'bpfnb[lab]'") from e

__all__ = ["LiveView", "StaticSnapshot", "live_view", "looks_like_hist"]

MIN_PLOT_INTERVAL = 0.5     # seconds: the plot redraws at most this often...
PLOT_DUTY = 0.25            # ...and its thread draws at most this share of the time
PLOT_DPI = 80
RATE_HISTORY = 120          # snapshots the rate plot draws
FULL_WARNING = 0.9
HASH_TYPES = frozenset({"HASH", "PERCPU_HASH", "LRU_HASH", "LRU_PERCPU_HASH", "LPM_TRIE",
                        "HASH_OF_MAPS"})
LRU_TYPES = frozenset({"LRU_HASH", "LRU_PERCPU_HASH"})
PLOT_KINDS = ("auto", "bars", "hist", "rates", "per_cpu", "none")

_MPL_LOCK = threading.Lock()   # matplotlib is not thread-safe; views draw one at a time


# -- what to draw ---------------------------------------------------------------------------

@dataclass(frozen=True)
class PlotSpec:
    """A parsed `plot=` argument."""

    kind: str                  # one of PLOT_KINDS except "auto"
    linear: int | None = None  # bucket width of a linear histogram


def parse_plot(spec: str, mapview: MapLike, rate: bool) -> PlotSpec:
    """"auto" | "bars" | "hist" | "hist:linear=STEP" | "rates" | "per_cpu" | "none"."""
    kind, _, option = spec.partition(":")
    if kind not in PLOT_KINDS:
        raise ValueError(f"plot={spec!r}: expected one of {', '.join(PLOT_KINDS)} "
                         "or 'hist:linear=STEP'")
    linear = None
    if option:
        m = re.fullmatch(r"linear=(\d+)", option)
        if kind != "hist" or m is None or int(m.group(1)) < 1:
            raise ValueError(f"plot={spec!r}: only 'hist:linear=STEP' takes an option")
        linear = int(m.group(1))
    if kind == "auto":
        kind = "hist" if looks_like_hist(mapview) else ("rates" if rate else "bars")
    return PlotSpec(kind, linear)


def _buckets_as_read(df: pd.DataFrame) -> pd.DataFrame:
    """A map read as buckets already (bpftrace's hist()/lhist(): `low`, `high` keys, a
    `count` value) as the histogram frame: the other key columns are its sections."""
    out = df.copy()
    out.attrs.update(key_columns=[c for c in df.attrs.get("key_columns", [])
                                  if c not in ("low", "high")], value_columns=["count"])
    return out


# -- formatting -----------------------------------------------------------------------------

def _fmt(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "-"
        if v.is_integer() and abs(v) < 1e15:
            return f"{int(v):,}"
        return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.3g}"
    return str(value)


def top_rows(df: pd.DataFrame, column: str | None, n: int | None, ascending: bool
             ) -> pd.DataFrame:
    """The first `n` rows of `df` sorted by `column` (numbers: O(rows), no full sort)."""
    if column is None or column not in df.columns:
        return df.iloc[:n] if n else df
    col = df[column]
    if n and len(df) > 4 * n and pd.api.types.is_numeric_dtype(col):
        values = col.to_numpy(np.float64, na_value=np.nan)
        keyed = np.where(np.isnan(values), np.inf, values if ascending else -values)
        part = np.argpartition(keyed, n - 1)[:n]
        df = df.iloc[part]
    out = df.sort_values(column, ascending=ascending, kind="stable", na_position="last")
    return out.iloc[:n] if n else out


def table_html(df: pd.DataFrame, columns: list[str], sort_by: str | None = None,
               ascending: bool = False, bar: str | None = None, note: str = "",
               plain: tuple[str, ...] = ()) -> str:
    """An HTML table of `df[columns]`; the sort column marked; `bar` drawn as CSS bars;
    `plain` columns (keys: pids, ids) without thousands separators."""
    arrow = "▲" if ascending else "▼"
    head = "".join(
        f"<th class='{'num' if _numeric_column(df, c) else 'txt'}'>{html.escape(str(c))}"
        f"{' ' + arrow if c == sort_by else ''}</th>" for c in columns)
    if bar is not None:
        head += "<th>distribution</th>"
    peak = float(pd.to_numeric(df[bar], errors="coerce").max()) if bar and len(df) else 0.0
    rows = []
    for rec in df[columns + ([bar] if bar and bar not in columns else [])].itertuples(
            index=False, name=None):
        cells = "".join(
            f"<td class='{_cls(v)}'>{html.escape(str(v) if c in plain else _fmt(v))}</td>"
            for c, v in zip(columns, rec[: len(columns)]))
        if bar is not None:
            v = rec[columns.index(bar)] if bar in columns else rec[-1]
            width = 0.0 if not peak or pd.isna(v) else 100.0 * float(v) / peak
            cells += (f"<td class='bar'><div style='width:{width:.1f}%;background:#4c78a8;"
                      f"height:0.8em;min-width:{1 if width else 0}px'></div></td>")
        rows.append(f"<tr>{cells}</tr>")
    if not rows:
        span = len(columns) + (bar is not None)
        rows.append(f"<tr><td colspan='{span}' class='empty'>no entries yet</td></tr>")
    caption = f"<caption>{html.escape(note)}</caption>" if note else ""
    return (f"{_TABLE_STYLE}<table class='bpfnb-live-table'>{caption}<thead><tr>{head}</tr>"
            f"</thead><tbody>{''.join(rows)}</tbody></table>")


def _numeric_column(df: pd.DataFrame, column: str) -> bool:
    return column in df.columns and pd.api.types.is_numeric_dtype(df[column])


def _cls(value: Any) -> str:
    return "num" if isinstance(value, (int, float, np.number)) else "txt"


_TABLE_STYLE = """<style>
.bpfnb-live-table{border-collapse:collapse;font:12px/1.4 monospace;min-width:16em}
.bpfnb-live-table caption{text-align:left;color:#666;font-size:11px}
.bpfnb-live-table th{background:#f3f3f3;padding:2px 8px;border-bottom:1px solid #bbb;
 text-align:left;white-space:nowrap}
.bpfnb-live-table th.num{text-align:right}
.bpfnb-live-table td{padding:1px 8px;border-bottom:1px solid #eee;white-space:nowrap}
.bpfnb-live-table td.num{text-align:right}
.bpfnb-live-table td.bar{width:12em}
.bpfnb-live-table td.empty{color:#888;text-align:center}
</style>"""


def _png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


class StaticSnapshot:
    """A view's table and plot as plain output: HTML, PNG and text, no widgets."""

    def __init__(self, title: str, table: str, png: bytes, text: str) -> None:
        self.title, self.table, self.png, self.text = title, table, png, text

    def html(self) -> str:
        img = (f"<img class='bpfnb-live-plot' src='{_png_data_uri(self.png)}' "
               f"style='max-width:560px'/>" if self.png else "")
        return (f"<div class='bpfnb-live-static'><div><b>{html.escape(self.title)}</b></div>"
                f"<div style='display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start'>"
                f"<div>{self.table}</div><div>{img}</div></div></div>")

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle: dict[str, Any] = {"text/plain": self.text, "text/html": self.html()}
        if self.png:
            bundle["image/png"] = base64.b64encode(self.png).decode("ascii")
        return bundle

    def __repr__(self) -> str:
        return self.text


# -- the view -------------------------------------------------------------------------------

@dataclass
class _Frames:
    """What one refresh produced."""

    time_ns: int
    record: pd.DataFrame        # the shape kept in history (maybe with rate columns)
    long: pd.DataFrame | None   # per-CPU long frame, when the display wants it
    entries: int
    fill: float
    duration_ns: int


class LiveView(W.VBox):
    """A map refreshed every `every` seconds: table, plot, controls and a status line."""

    def __init__(self, mapview: MapLike, every: float = 1.0, top: int = 20,
                 sort_by: str | None = None, rate: bool = False, per_cpu: bool = False,
                 plot: str = "auto", history: int = 600, history_rows: int = 1_000_000,
                 start: bool = True, tag: str | None = None) -> None:
        mapview.fd  # noqa: B018 - raises ProgramClosedError for a closed program's map
        spec = parse_plot(plot, mapview, rate)
        self.mapview = mapview
        self.spec = spec
        self.rate = rate
        self.hist_mode = spec.kind == "hist"
        self.record_cpu = per_cpu and mapview.per_cpu and not self.hist_mode
        self.top = max(1, int(top))
        self.ascending = False
        self.show_cpu = self.record_cpu
        self._cpus = getattr(mapview, "cpus", None) or (
            bpfsys.possible_cpus() if mapview.per_cpu else None)
        self._history = live.History(history, history_rows)
        self._rates: live.Rates | None = None
        self._last: _Frames | None = None
        self._lock = threading.RLock()
        self._table_html = ""
        self._png = b""
        self._plot_key: Any = None
        self._plot_error: str | None = None
        self._shown: tuple[pd.DataFrame, pd.DataFrame] | None = None
        self.owner, self.tag = mapview, tag     # what live.close_views matches
        self._closed = False
        self._handle: Any = None        # the display handle of where the view was shown
        self._static = False            # that output shows the static snapshot
        self.poller = live.Poller(self._refresh, every, name=f"bpfnb-live-{mapview.name}",
                                  owner=mapview, tag=tag, on_status=self._on_status)
        # the plot draws on its own thread, so slow drawing never delays the table
        self.plotter = live.Poller(self._plot_tick, _plot_every(every),
                                   name=f"bpfnb-plot-{mapview.name}", owner=mapview, tag=tag,
                                   max_duty=PLOT_DUTY, on_status=self._on_plot_status)
        self._build_widgets()
        super().__init__(children=[self._title, self._controls, self._body, self._status],
                         layout=W.Layout(border="1px solid #ddd", padding="4px"))
        self.add_class("bpfnb-live")
        live.track(self)
        try:
            self.poller.refresh_now()
            self.sort_by = self._default_sort(sort_by)
            self._render(draw=True)
            if start:
                self.poller.start(wait_first=True)
                if self.spec.kind != "none":
                    self.plotter.start(wait_first=True)
            else:
                self._on_status(self.poller.status)
        except BaseException:        # e.g. a bad sort_by: no widget or thread stays behind
            self.close("failed to start")
            raise

    # -- public -----------------------------------------------------------------------
    @property
    def history(self) -> pd.DataFrame:
        """Every refresh kept: time, key columns, value columns (histograms: time,
        sections, low, high, count); `<col>/s` rate columns when rate=True."""
        return self._history.df()

    @property
    def times(self) -> pd.DatetimeIndex:
        """Read times of the refreshes kept in history, empty snapshots included."""
        return self._history.times

    @property
    def status(self) -> live.PollStatus:
        return self.poller.status

    @property
    def every(self) -> float:
        return self.poller.every

    @every.setter
    def every(self, seconds: float) -> None:
        self._every_box.value = float(seconds)

    def frame(self) -> pd.DataFrame:
        """The last refresh's data (the shape history keeps), or an empty frame."""
        last = self._last
        return last.record.copy() if last is not None else pd.DataFrame()

    def refresh(self) -> bool:
        """Refresh now, in this thread. True if it worked (else see `status`)."""
        return self.poller.refresh_now()

    def pause(self) -> None:
        self._pause_button.value = True

    def resume(self) -> None:
        self._pause_button.value = False

    def start(self) -> LiveView:
        """Start (again) after stop()."""
        self.poller.start()
        if self.spec.kind != "none":
            self.plotter.start(wait_first=True)
        self._set_running(True)
        self._update_display(static=False)
        return self

    def stop(self) -> None:
        """Stop refreshing; the table, plot and history stay, and the output becomes the
        static table and plot of the last refresh."""
        self.poller.stop()
        self.plotter.stop()
        self._set_running(False)
        self._render(draw=True)
        self._update_display(static=True)

    def close(self, reason: str = "closed") -> None:
        """Stop and close every widget of the view (the output area empties). Closing the
        program, `%bpf stop` and unloading the extension do this; the history stays while
        the view is referenced."""
        if getattr(self, "_closed", True):   # twice, or from __del__ of a half-built view
            return
        self._closed = True
        live.untrack(self)
        self.poller.stop(reason)
        self.plotter.stop(reason)
        if self._handle is not None and not self._static and reason != RERUN:
            self._render(draw=True)
            self._update_display(static=True)
        widgettree.close_descendants(self)
        widgettree.close_descendants(self._image)   # not a child with plot="none"
        self._image.close()
        super().close()
        plot.release_fonts()      # the plot thread's font files

    def forget(self) -> None:
        """Drop the history and last data (the view's cell ran again: it is replaced)."""
        with self._lock:
            self._history.clear()
            self._last = self._shown = self._rates = None
            self._png, self._table_html = b"", ""

    def snapshot(self) -> StaticSnapshot:
        """The current table and plot as static output (HTML + PNG + text)."""
        return StaticSnapshot(self._title_text(), self._table_html, self._png, self._text())

    def __repr__(self) -> str:
        return self._text()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        static = self.snapshot()._repr_mimebundle_()
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        static.update({k: v for k, v in bundle.items() if k != "text/plain"})
        return static

    def _ipython_display_(self) -> None:
        """Shown in a notebook: keep the display handle (see `_update_display`)."""
        from IPython.display import display

        self._handle = display(self._repr_mimebundle_(), raw=True, display_id=True)

    def _update_display(self, static: bool) -> None:
        """Replace the view's output: the static snapshot (no widget view: what a saved
        notebook keeps), or the widget again."""
        handle, self._static = self._handle, static
        if handle is not None:
            bundle = (self.snapshot()._repr_mimebundle_() if static
                      else self._repr_mimebundle_())
            handle.update(bundle, raw=True)

    # -- widgets ----------------------------------------------------------------------
    def _build_widgets(self) -> None:
        self._title = W.HTML(f"<b>{html.escape(self._title_text())}</b>")
        self._pause_button = W.ToggleButton(False, description="Pause", icon="pause",
                                            tooltip="pause / resume refreshing",
                                            layout=W.Layout(width="90px"))
        self._stop_button = W.Button(description="Stop", icon="stop", button_style="danger",
                                     tooltip="stop refreshing", layout=W.Layout(width="80px"))
        self._every_box = W.BoundedFloatText(self.poller.every, min=0.01, max=3600, step=0.1,
                                             description="every (s)",
                                             layout=W.Layout(width="150px"),
                                             style={"description_width": "60px"})
        self._sort_box = W.Dropdown(options=[""], description="sort",
                                    layout=W.Layout(width="190px"),
                                    style={"description_width": "30px"})
        self._order_button = W.ToggleButton(False, description="desc", icon="sort-amount-desc",
                                            tooltip="ascending / descending",
                                            layout=W.Layout(width="80px"))
        self._top_box = W.BoundedIntText(self.top, min=1, max=10_000, description="top",
                                         layout=W.Layout(width="120px"),
                                         style={"description_width": "30px"})
        self._cpu_box = W.Checkbox(self.show_cpu, description="per CPU", indent=False,
                                   disabled=not self.mapview.per_cpu or self.hist_mode,
                                   layout=W.Layout(width="90px"))
        self._controls = W.HBox([self._pause_button, self._stop_button, self._every_box,
                                 self._sort_box, self._order_button, self._top_box,
                                 self._cpu_box], layout=W.Layout(flex_flow="row wrap"))
        self._table = W.HTML("", layout=W.Layout(overflow="auto", max_height="480px"))
        self._table.add_class("bpfnb-live-table-box")
        self._image = W.Image(format="png", layout=W.Layout(max_width="560px"))
        self._image.add_class("bpfnb-live-plot")
        parts: list[W.Widget] = [self._table]
        if self.spec.kind != "none":
            parts.append(self._image)
        self._body = W.HBox(parts, layout=W.Layout(flex_flow="row wrap", grid_gap="12px",
                                                   align_items="flex-start"))
        self._status = W.HTML("")
        self._status.add_class("bpfnb-live-status")
        self._pause_button.observe(self._on_pause, "value")
        self._stop_button.on_click(lambda _b: self.stop())
        self._every_box.observe(self._on_every, "value")
        self._sort_box.observe(self._on_sort, "value")
        self._order_button.observe(self._on_order, "value")
        self._top_box.observe(self._on_top, "value")
        self._cpu_box.observe(self._on_cpu, "value")

    def _set_running(self, running: bool) -> None:
        self._pause_button.disabled = not running
        self._stop_button.disabled = not running
        if running and self._pause_button.value:
            self._pause_button.value = False

    def _on_pause(self, change: dict[str, Any]) -> None:
        paused = bool(change["new"])
        self._pause_button.description = "Resume" if paused else "Pause"
        self._pause_button.icon = "play" if paused else "pause"
        for poller in (self.poller, self.plotter):
            if paused:
                poller.pause()
            else:
                poller.resume()

    def _on_every(self, change: dict[str, Any]) -> None:
        try:
            self.poller.every = float(change["new"])
            self.plotter.every = _plot_every(self.poller.every)
        except ValueError:
            self._every_box.value = change["old"]

    def _on_sort(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.sort_by = change["new"]
            self._render(draw=True)

    def _on_order(self, change: dict[str, Any]) -> None:
        self.ascending = bool(change["new"])
        self._order_button.description = "asc" if self.ascending else "desc"
        self._order_button.icon = "sort-amount-asc" if self.ascending else "sort-amount-desc"
        self._render(draw=True)

    def _on_top(self, change: dict[str, Any]) -> None:
        self.top = int(change["new"])
        self._render(draw=True)

    def _on_cpu(self, change: dict[str, Any]) -> None:
        self.show_cpu = bool(change["new"])
        if self.show_cpu != self.record_cpu:
            self.poller.refresh_now()   # the other shape needs a read
        self._render(draw=True)

    # -- refresh (poller thread) ------------------------------------------------------
    def _refresh(self) -> None:
        mv = self.mapview
        snap = mv.read()
        n = len(snap.keys)
        attrs = mv.attrs(snap, n)
        want_long = mv.per_cpu and not self.hist_mode and (self.record_cpu or self.show_cpu)
        long = (frames.frame(snap.keys, snap.values, attrs, per_cpu=True, cpus=self._cpus)
                if want_long else None)
        if self.record_cpu:
            assert long is not None
            record = long
        else:
            record = frames.frame(snap.keys, snap.values, attrs)
        if self.hist_mode:
            record = (_buckets_as_read(record) if {"low", "high"} <= set(record.columns)
                      else frames.hist_frame(record, linear=self.spec.linear))
        else:
            record = record.copy()           # read buffers are reused by the next read
        if long is not None:
            long = long.copy() if long is not record else record
        if self.rate:
            record = self._rate_tracker(record).update(record, snap.time_ns)
        self._history.append(snap.time_ns, record, copy=False)
        fill = n / mv.info.max_entries if mv.info.max_entries else 0.0
        with self._lock:
            self._last = _Frames(snap.time_ns, record, long, n, fill, snap.duration_ns)
        if self._ready():
            self._render(draw=not self.plotter.alive)

    def _ready(self) -> bool:
        return bool(getattr(self, "sort_by", None) is not None)

    def _rate_tracker(self, record: pd.DataFrame) -> live.Rates:
        if self._rates is None:
            self._rates = live.Rates(record.attrs.get("key_columns", []),
                                     record.attrs.get("value_columns", []))
        return self._rates

    # -- rendering --------------------------------------------------------------------
    def _default_sort(self, sort_by: str | None) -> str:
        cols = self._columns(self._display())
        if sort_by is not None:
            if cols and sort_by not in cols:      # no columns yet: the first read failed
                raise ValueError(f"sort_by={sort_by!r}: the table's columns are {cols}")
            return sort_by
        if self.hist_mode:
            self.ascending = True
            return "bucket"
        values = [c for c in self._values(self._display()) if c in cols]
        rates = [c for c in values if c.endswith(live.RATE_SUFFIX)]
        chosen = rates[:1] if self.rate else values[:1]
        return chosen[0] if chosen else (cols[-1] if cols else "")

    def _display(self) -> pd.DataFrame:
        """The frame the table shows: the record, or the other per-CPU shape."""
        last = self._last
        if last is None:
            return pd.DataFrame()
        if self.show_cpu == self.record_cpu or self.hist_mode or not self.mapview.per_cpu:
            return last.record
        if self.show_cpu:
            return last.long if last.long is not None else last.record
        return _sum_cpus(last.record)

    @staticmethod
    def _values(df: pd.DataFrame) -> list[str]:
        return [c for c in df.attrs.get("value_columns", plot.value_columns(df))
                if c in df.columns]

    def _columns(self, df: pd.DataFrame) -> list[str]:
        if self.hist_mode:
            return ["bucket", *[str(c) for c in df.columns if c not in ("low", "high")]]
        if self.show_cpu and "cpu" in df.columns:
            return ["key", *[f"cpu {c}" for c in (self._cpus or [])], "total"]
        return [str(c) for c in df.columns]

    def _render(self, draw: bool = False) -> None:
        """Table (and with `draw`, the plot) of the last refresh."""
        with self._lock:
            last = self._last
            if last is None:
                return
            df = self._display()
            table = self._table_frame(df)
            self._sync_sort_options(list(table.columns))
            note = self._note(df, table)
            bar = "count/s" if self.hist_mode and self.rate else (
                "count" if self.hist_mode else None)
            shown = [c for c in table.columns if c != "high"]
            plain = (*self._key_cols(df), "key", "cpu")
            self._table_html = table_html(table, shown, self.sort_by, self.ascending, bar,
                                          note, plain=tuple(plain))
            self._table.value = self._table_html
            self._shown = (df, table)
        if draw:
            self._plot(df, table, force=True)

    def _table_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        if self.hist_mode:
            out = df.copy()
            out.insert(0, "bucket", plot.bucket_labels(df) if len(df) else [])
            out = out.drop(columns=["low"]) if "low" in out.columns else out
            sort = "high" if self.sort_by == "bucket" else self.sort_by
            return top_rows(out, sort, None, self.ascending)
        if self.show_cpu and "cpu" in df.columns:
            vals = self._values(df)
            value = self.sort_by if self.sort_by in vals else (vals[0] if vals else None)
            wide = plot.cpu_frame(df, value, top=None) if len(df) else pd.DataFrame()
            wide.columns = [f"cpu {c}" for c in wide.columns]
            wide["total"] = wide.sum(axis=1)
            wide = wide.reset_index().rename(columns={wide.index.name or "index": "key"})
            sort = self.sort_by if self.sort_by in wide.columns else "total"
            return top_rows(wide, sort, self.top, self.ascending)
        sort = self.sort_by
        if sort and sort.endswith(live.RATE_SUFFIX) and sort in df.columns \
                and df[sort].isna().all():
            sort = sort[: -len(live.RATE_SUFFIX)]      # no rates before the second read
        return top_rows(df, sort, self.top, self.ascending)

    def _sync_sort_options(self, columns: list[str]) -> None:
        options = [c for c in columns if c != "high"]
        if self.sort_by not in options and options:
            self.sort_by = "total" if "total" in options else self._default_sort(None)
        if list(self._sort_box.options) != options:
            self._sort_box.unobserve(self._on_sort, "value")
            self._sort_box.options = options
            self._sort_box.value = self.sort_by if self.sort_by in options else None
            self._sort_box.observe(self._on_sort, "value")
        elif self.sort_by in options and self._sort_box.value != self.sort_by:
            self._sort_box.value = self.sort_by

    def _note(self, df: pd.DataFrame, table: pd.DataFrame) -> str:
        if self.hist_mode:
            total = pd.to_numeric(df.get("count", pd.Series(dtype=float))).sum()
            return f"{len(table)} buckets, {_fmt(total)} events"
        last = self._last
        keys = last.entries if last is not None else 0
        return f"top {min(self.top, len(table))} of {keys:,} keys"

    @staticmethod
    def _key_cols(df: pd.DataFrame) -> list[str]:
        return [c for c in df.attrs.get("key_columns", plot.key_columns(df)) if c in df.columns]

    # -- plot -------------------------------------------------------------------------
    def _plot_tick(self) -> None:
        """The plot thread: redraw when the data shown changed."""
        shown = self._shown
        if shown is not None:
            self._plot(*shown, force=False)

    def _plot(self, df: pd.DataFrame, table: pd.DataFrame, force: bool) -> None:
        if self.spec.kind == "none":
            return
        draw, key = self._plot_job(df, table)
        if not force and key == self._plot_key:
            return
        png = _draw(draw, self._plot_height(df))
        self._plot_key = key
        self._png = png
        self._image.value = png

    def _on_plot_status(self, status: live.PollStatus) -> None:
        error = status.last_error if status.consecutive_errors else None
        if error != self._plot_error:
            self._plot_error = error
            self._on_status(self.poller.status)

    def _plot_job(self, df: pd.DataFrame, table: pd.DataFrame
                  ) -> tuple[Callable[[Axes], Any], Any]:
        """A function drawing the current plot on an Axes, and a key of what it shows."""
        kind = self.spec.kind
        if self.show_cpu and "cpu" in df.columns and kind in ("bars", "per_cpu", "rates"):
            kind = "per_cpu"
        if kind == "hist":
            hist_df = df
            if self.rate and "count/s" in df.columns:
                hist_df = df.assign(count=df["count/s"].fillna(0.0))
                hist_df.attrs.update(df.attrs)
            return (lambda ax: plot.hist(hist_df, ax=ax)), _data_key(hist_df)
        value = self._plot_value(df)
        if kind == "per_cpu":
            return (lambda ax: plot.per_cpu_bars(df, value, top=self.top, ax=ax)), \
                _data_key(df)
        if kind == "rates" and self.rate and len(self._history) >= 2:
            hist = self._history_tail(table)
            counter = value[: -len(live.RATE_SUFFIX)] if value.endswith(live.RATE_SUFFIX) \
                else value
            def rates(ax: Axes) -> None:
                plot.rates(hist, counter, top=min(self.top, 10), ax=ax)
                ax.set_xlabel("seconds before the last refresh")

            return rates, (len(hist), _data_key(table))
        if value.endswith(live.RATE_SUFFIX) and df[value].isna().all():
            value = value[: -len(live.RATE_SUFFIX)]    # no rates before the second read
        rows = top_rows(df, value, self.top, self.ascending)
        rows.attrs.update(df.attrs)
        return (lambda ax: plot.top_bars(rows, value, top=self.top, ax=ax)), _data_key(rows)

    def _plot_height(self, df: pd.DataFrame) -> float:
        """Inches: bar charts grow with the number of bars."""
        if self.hist_mode or (self.rate and self.spec.kind == "rates" and not self.show_cpu):
            return 3.6
        return min(9.0, max(3.0, 1.2 + 0.28 * min(self.top, len(df))))

    def _plot_value(self, df: pd.DataFrame) -> str:
        vals = [c for c in self._values(df) if plot._numeric(df[c])]
        if self.sort_by in vals:
            return str(self.sort_by)
        return vals[-1] if self.rate and vals else (vals[0] if vals else "value")

    def _history_tail(self, table: pd.DataFrame) -> pd.DataFrame:
        """The last snapshots of history, only the keys in the table."""
        hist = self._history.df(last=RATE_HISTORY)
        if hist.empty:
            return hist
        keys = [k for k in self._key_cols(hist) if k in table.columns]
        if len(keys) == 1:
            hist = hist[hist[keys[0]].isin(table[keys[0]])]
        elif keys:
            wanted = pd.MultiIndex.from_frame(table[keys])
            hist = hist[pd.MultiIndex.from_frame(hist[keys]).isin(wanted)]
        # seconds before the newest refresh: readable for any span, from 1 s to hours
        newest = hist["time"].max()
        hist = hist.assign(time=(hist["time"] - newest).dt.total_seconds())
        hist.attrs.update(self._history._attrs)
        return hist

    # -- status -----------------------------------------------------------------------
    def _on_status(self, status: live.PollStatus) -> None:
        self._status.value = self._status_html(status)
        if status.state == "stopped":
            self._pause_button.disabled = True
            self._stop_button.disabled = True

    def _status_html(self, s: live.PollStatus) -> str:
        info = self.mapview.info
        last = self._last
        icon = {"running": "●", "paused": "❚❚", "stopped": "■"}.get(s.state, "○")
        colour = {"running": "#2a7", "paused": "#c80", "stopped": "#888"}.get(s.state, "#888")
        parts = [f"<span style='color:{colour}'>{icon} {s.state}</span>"]
        if s.state == "stopped" and s.stop_reason and s.stop_reason != "stopped":
            parts[0] += f" ({html.escape(s.stop_reason)})"
        if s.last_time is not None:
            stamp = time.strftime("%H:%M:%S", time.localtime(s.last_time))
            stamp += f".{int(s.last_time % 1 * 1000):03d}"
            parts.append(f"refreshed {stamp} in {_ms(s.last_duration or 0.0)}")
        parts.append(f"every {self.poller.every:g} s" + (
            f" (≈{s.rate:.1f}/s)" if s.rate and s.state == "running" else ""))
        warn: list[str] = []
        if last is not None:
            parts.append(f"{last.entries:,} entries")
            if info.type in HASH_TYPES:
                parts.append(f"{last.fill:.0%} of {info.max_entries:,}")
                if last.fill >= FULL_WARNING:
                    warn.append(f"⚠ map {last.fill:.0%} full" + (
                        ": new keys are dropped once full (updates fail with E2BIG)"
                        if info.type not in LRU_TYPES else ""))
            if info.type in LRU_TYPES:
                warn.append("LRU map: when full, the least recently used entries are "
                            "evicted silently")
            if self._rates is not None and (self._rates.appeared or self._rates.disappeared):
                parts.append(f"keys +{self._rates.appeared}/-{self._rates.disappeared}")
        parts.append(f"history {len(self._history)}")
        if s.backing_off:
            warn.append(f"⏳ a refresh takes {_ms(s.last_duration or 0.0)}: slowed to "
                        f"every {s.interval:.2g} s")
        if s.consecutive_errors and s.last_error:
            warn.append(f"⚠ refresh failed ({s.errors} errors): {html.escape(s.last_error)}")
        if self._plot_error:
            warn.append(f"⚠ plot failed: {html.escape(self._plot_error)}")
        text = " · ".join(parts)
        if warn:
            styled = "".join(
                f"<div style='color:{'#b00' if w.startswith('⚠') else '#a60'}'>{w}</div>"
                for w in warn)
            text += styled
        return f"<div style='font:12px monospace;color:#444'>{text}</div>"

    # -- text -------------------------------------------------------------------------
    def _title_text(self) -> str:
        i = self.mapview.info
        mode = "histogram" if self.hist_mode else ("rates" if self.rate else "top keys")
        return f"{self.mapview.name} · {i.type} · {mode}"

    def _text(self) -> str:
        s = self.poller.status
        head = f"LiveView {self._title_text()} ({s.state}, every {self.poller.every:g} s)"
        last = self._last
        if last is None:
            return head
        table = self._table_frame(self._display())
        body = table.drop(columns=["high"], errors="ignore").to_string(index=False,
                                                                      max_rows=self.top)
        return f"{head}\n{body}"


def _sum_cpus(long: pd.DataFrame) -> pd.DataFrame:
    keys = [c for c in long.attrs.get("key_columns", []) if c in long.columns]
    vals = [c for c in long.attrs.get("value_columns", []) if c in long.columns]
    out = long.groupby(keys, sort=False, as_index=False)[vals].sum() if keys else \
        long[vals].sum().to_frame().T
    out.attrs.update(long.attrs)
    return out


def _data_key(df: pd.DataFrame) -> Any:
    """Something equal for frames with equal data (to skip redrawing the same plot)."""
    if df.empty:
        return (0, tuple(df.columns))
    return (len(df), tuple(df.columns),
            int(pd.util.hash_pandas_object(df, index=False).to_numpy().sum()))


def _draw(fn: Callable[[Axes], Any], height: float = 3.6) -> bytes:
    with _MPL_LOCK:
        fig = Figure(figsize=(6.4, height), layout="constrained")
        fn(fig.add_subplot())
        return plot.figure_png(fig, dpi=PLOT_DPI)


def _plot_every(every: float) -> float:
    return max(every, MIN_PLOT_INTERVAL)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


# -- entry point ----------------------------------------------------------------------------

def _kernel_cell_id(shell: Any) -> str | None:
    """The notebook cell being run (JupyterLab sends its id), if any."""
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return None
    try:
        parent = kernel.get_parent()
    except Exception:
        return None
    cell = (parent or {}).get("metadata", {}).get("cellId")
    return str(cell) if cell else None


def _cell_tag(info: Any = None) -> str | None:
    """What identifies the cell being run (`info`: IPython's ExecutionInfo, else the
    running cell's): its notebook cell id, else a hash of its source (plain IPython)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    if shell is None:
        return None
    if info is None:
        result = getattr(getattr(shell, "displayhook", None), "exec_result", None)
        info = getattr(result, "info", None)
    cell = getattr(info, "cell_id", None) or _kernel_cell_id(shell)
    if cell:
        return str(cell)
    raw = getattr(info, "raw_cell", None)
    if not raw:
        return None
    digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()
    return f"source:{digest[:20]}"


_hooked: set[int] = set()
RERUN = "its cell ran again"


def _hook_cell_reruns() -> None:
    """Once per shell: re-running a cell closes the live views it made."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or id(shell) in _hooked:
        return
    shell.events.register("pre_run_cell", _on_pre_run_cell)
    _hooked.add(id(shell))


def _on_pre_run_cell(info: Any) -> None:
    tag = _cell_tag(info)
    if tag:
        for view in live.close_views(tag=tag, reason=RERUN):
            view.forget()         # replaced: only the output cache may still hold it
        live.stop_all(tag=tag, reason=RERUN)


def live_view(mapview: MapLike, every: float = 1.0, top: int = 20, sort_by: str | None = None,
              rate: bool = False, per_cpu: bool = False, plot: str = "auto",
              **options: Any) -> LiveView:
    """A live widget of `mapview`: top-`top` table sorted by `sort_by`, a plot, controls.

    rate: add per-second change columns (`<col>/s`) and plot them over time.
    per_cpu: per-CPU maps keep and show one row per (key, cpu).
    plot: "auto" (histogram maps: "hist", rate=True: "rates", else "bars"), "bars",
        "hist", "hist:linear=STEP", "rates", "per_cpu" or "none".
    options: history (snapshots kept, 600), history_rows (1,000,000), start (True).
    Runs one refresh before returning; re-running the cell (the same notebook cell, or in
    plain IPython the same source) closes the old view and drops its history.
    """
    _hook_cell_reruns()
    cls = options.pop("view_class", LiveView)   # a LiveView subclass (bpfnb.fleet)
    return cls(mapview, every=every, top=top, sort_by=sort_by, rate=rate,
               per_cpu=per_cpu, plot=plot, tag=_cell_tag(), **options)
