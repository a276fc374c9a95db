"""`top()`: a bpftop-like live view of every BPF program on the machine.

Each refresh samples the programs' run counters (inventory.ProgramStats) and shows events
per second, average run time and share of one CPU, sorted, with a sparkline per program
(events/s) and a matplotlib chart of the busiest programs' CPU share over time.

In a notebook kernel it is an ipywidgets view refreshed by a daemon thread (bpfnb.live.poller's
Poller); elsewhere (a script, nbconvert without widgets) it renders one static snapshot.
Kernel run-time stats are on while the view is open; `close()` (or leaving the interpreter)
stops the thread and releases them. ipywidgets and matplotlib are imported only when used.
"""

from __future__ import annotations

import atexit
import base64
import html
import io
import math
import threading
import time
import weakref
from typing import Any

import pandas as pd

from bpfnb.live.poller import Poller
from bpfnb.live.widgettree import close_descendants
from bpfnb.machine.inventory import ProgramStats

SORT_KEYS = {"cpu": "cpu_pct", "events": "events_per_s", "avg": "avg_run_ns",
             "id": "id", "name": "name"}
BLOCKS = "▁▂▃▄▅▆▇█"
CHART_PROGRAMS = 5
_SUFFIXES = ("", "K", "M", "G", "T")

_open_views: weakref.WeakSet[TopView] = weakref.WeakSet()


def _human(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    power = 0
    while power < len(_SUFFIXES) - 1 and abs(x) >= 1000 ** (power + 1):
        power += 1
    return f"{x / 1000 ** power:.3g}{_SUFFIXES[power]}"


def _pct(x: float) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.2f}"


def text_sparkline(values: list[float], width: int = 20) -> str:
    """Unicode block sparkline of the last `width` values."""
    vals = [v if math.isfinite(v) else 0.0 for v in values[-width:]]
    if not vals:
        return ""
    top = max(vals) or 1.0
    return "".join(BLOCKS[min(int(v / top * (len(BLOCKS) - 1) + 0.5), len(BLOCKS) - 1)]
                   for v in vals)


def svg_sparkline(values: list[float], width: int = 120, height: int = 18) -> str:
    """An inline SVG polyline of `values` (scaled to their maximum)."""
    vals = [v if math.isfinite(v) else 0.0 for v in values]
    if len(vals) < 2:
        return ""
    top = max(vals) or 1.0
    step = width / (len(vals) - 1)
    points = " ".join(f"{i * step:.1f},{height - 1 - v / top * (height - 2):.1f}"
                      for i, v in enumerate(vals))
    return (f'<svg width="{width}" height="{height}" style="vertical-align:middle">'
            f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{points}"/>'
            "</svg>")


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in r.items()} for r in df.to_dict("records")]


def _frontend() -> bool:
    """True inside a Jupyter kernel with ipywidgets installed (a frontend may show widgets)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


class TopView:
    """Live table of program rates. `df()` gives the latest rates as a DataFrame."""

    def __init__(self, every: float = 1.0, limit: int = 20, sort: str = "cpu",
                 history: int = 60, stats: ProgramStats | None = None) -> None:
        if sort not in SORT_KEYS:
            raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)}, not {sort!r}")
        self.every = every
        self.limit = limit
        self.sort = sort
        self.stats = stats or ProgramStats(history=history)
        self.stats.sample()  # the baseline the first rates are measured from
        self._baseline = time.monotonic()
        self._last: pd.DataFrame | None = None
        self._lock = threading.Lock()
        self._poller: Any = None
        self._widgets: dict[str, Any] = {}
        self._figure: Any = None
        self._handle: Any = None     # the display handle where the widget was shown
        self.closed = False
        _open_views.add(self)

    # -- data ---------------------------------------------------------------------------
    def refresh(self) -> pd.DataFrame:
        """Take a sample now and redraw the widget (if shown)."""
        if self.closed:
            raise RuntimeError("this top() view is closed; call bpfnb.top() again")
        df = self.stats.sample()
        key = SORT_KEYS[self.sort]
        df = df.sort_values([key, "id"], ascending=[key in ("id", "name"), True],
                            na_position="last", ignore_index=True)
        with self._lock:
            self._last = df
        if self._widgets:
            self._draw(df)
        return df

    def df(self) -> pd.DataFrame:
        """The latest rates (sampling once, after `every` seconds, if none were taken)."""
        with self._lock:
            last = self._last
        if last is not None:
            return last
        time.sleep(max(0.0, self._baseline + self.every - time.monotonic()))
        return self.refresh()

    def _rows(self, df: pd.DataFrame) -> pd.DataFrame:
        return df.head(self.limit)

    def _history(self, prog_id: int, index: int) -> list[float]:
        return [h[index] for h in self.stats.history.get(prog_id, ())]

    # -- rendering ----------------------------------------------------------------------
    def text(self, df: pd.DataFrame | None = None) -> str:
        """The table as text (what `repr` shows)."""
        df = self.df() if df is None else df
        head = f"{'ID':>6} {'NAME':<32} {'TYPE':<14} {'EVENTS/S':>9} {'AVG NS':>8} {'CPU %':>7}  "
        lines = [head + "EVENTS/S OVER TIME"]
        for r in _records(self._rows(df)):
            lines.append(f"{r['id']:>6} {str(r['name'])[:32]:<32} {str(r['type'])[:14]:<14} "
                         f"{_human(r['events_per_s']):>9} {_human(r['avg_run_ns']):>8} "
                         f"{_pct(r['cpu_pct']):>7}  "
                         f"{text_sparkline(self._history(int(r['id']), 1))}")
        lines.append(self._footer(df))
        return "\n".join(lines)

    def _footer(self, df: pd.DataFrame) -> str:
        shown = min(len(df), self.limit)
        stats = df.attrs.get("stats", "")
        state = "closed" if self.closed else f"every {self.every:g} s"
        return (f"{shown} of {len(df)} programs, sorted by {self.sort}; {state}; "
                f"run-time stats: {stats}")

    def html(self, df: pd.DataFrame | None = None) -> str:
        """The table as HTML with SVG sparklines."""
        df = self.df() if df is None else df
        cells = []
        for r in _records(self._rows(df)):
            cells.append(
                f"<tr><td>{html.escape(str(r['id']))}</td><td>{html.escape(str(r['name']))}</td>"
                f"<td>{html.escape(str(r['type']))}</td>"
                f"<td style='text-align:right'>{_human(r['events_per_s'])}</td>"
                f"<td style='text-align:right'>{_human(r['avg_run_ns'])}</td>"
                f"<td style='text-align:right'>{_pct(r['cpu_pct'])}</td>"
                f"<td>{svg_sparkline(self._history(int(r['id']), 1))}</td></tr>")
        head = ("<tr><th>id</th><th>name</th><th>type</th><th>events/s</th><th>avg ns</th>"
                "<th>CPU %</th><th>events/s over time</th></tr>")
        return (f"<table class='bpfnb-top'>{head}{''.join(cells)}</table>"
                f"<div style='color:#666;font-size:small'>{html.escape(self._footer(df))}"
                "</div>")

    def chart_png(self, df: pd.DataFrame | None = None) -> bytes:
        """PNG of the busiest programs' CPU share over time (matplotlib, no pyplot)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        df = self.df() if df is None else df
        if self._figure is None:
            self._figure = Figure(figsize=(7, 2.2), dpi=90)
            FigureCanvasAgg(self._figure)
        fig = self._figure
        fig.clear()
        ax = fig.add_subplot()
        busiest = df.sort_values("cpu_pct", ascending=False, na_position="last")
        now = time.monotonic_ns()
        oldest = 0.0
        for r in _records(busiest.head(CHART_PROGRAMS)):
            hist = self.stats.history.get(int(r["id"]), ())
            if not hist:
                continue
            xs = [(t - now) / 1e9 for t, _, _ in hist]
            oldest = min(oldest, xs[0])
            ax.plot(xs, [c for _, _, c in hist], label=f"{r['id']} {str(r['name'])[:24]}",
                    linewidth=1.2, marker="o" if len(hist) < 3 else None, markersize=3)
        # a fixed window ending now: a first sample is a dot at -every s, not a 15 ms axis
        ax.set_xlim(min(oldest, -10 * self.every) - 0.5 * self.every, 0)
        ax.set_xlabel("seconds before now")
        ax.set_ylabel("CPU %")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="x-small", loc="upper left", frameon=False)
        else:
            ax.text(0.5, 0.5, "waiting for samples", transform=ax.transAxes, ha="center",
                    color="#888")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()

    # -- widget -------------------------------------------------------------------------
    def widget(self) -> Any:
        """The ipywidgets view (built on first use); starts the refresh thread."""
        if not self._widgets:
            import ipywidgets as W

            self._widgets = {"table": W.HTML(), "chart": W.Image(format="png"),
                             "status": W.HTML()}
            self._widgets["box"] = W.VBox([self._widgets["table"], self._widgets["chart"],
                                           self._widgets["status"]])
            self._draw(self.df())
        self.start()
        return self._widgets["box"]

    def _draw(self, df: pd.DataFrame) -> None:
        w = self._widgets
        w["table"].value = self.html(df)
        w["chart"].value = self.chart_png(df)
        status = getattr(self._poller, "status", None)
        err = f" last error: {html.escape(status.last_error)}" if status and \
            status.last_error else ""
        w["status"].value = f"<span style='color:#a00'>{err}</span>" if err else ""

    def start(self) -> TopView:
        """Refresh every `every` seconds on a daemon thread (idempotent)."""
        if self.closed:
            raise RuntimeError("this top() view is closed; call bpfnb.top() again")
        if self._poller is None:
            self._poller = Poller(self.refresh, self.every, name="bpfnb-top", owner=self)
        self._poller.start()
        return self

    def stop(self) -> None:
        """Stop refreshing; where the view was shown, its output becomes the static table and
        chart of the last refresh (what a saved notebook keeps: no widget view in it)."""
        if self._poller is not None:
            self._poller.stop("top view stopped")
        self._show_static()

    def _show_static(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None and self._last is not None:
            handle.update(self._static_bundle(), raw=True)

    @property
    def running(self) -> bool:
        return self._poller is not None and self._poller.alive

    def close(self) -> None:
        """Stop the thread, close the widget and release the run-time stats. Idempotent."""
        if self.closed:
            return
        self.stop()                    # the output keeps the last state as a picture
        self.closed = True
        box = self._widgets.get("box")
        if box is not None:
            close_descendants(box)     # layouts and styles too, not just the four widgets
            box.close()
        self._widgets = {}
        if self._figure is not None:
            from bpfnb.render.plot import release_fonts

            self._figure = None
            release_fonts()            # the refresh thread's font files
        self.stats.close()
        _open_views.discard(self)

    def __enter__(self) -> TopView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- display ------------------------------------------------------------------------
    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        static = self._static_bundle()
        if self.closed or not _frontend():
            return static
        bundle = self.widget()._repr_mimebundle_(include=include, exclude=exclude)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        return {**static, **data, "text/plain": static["text/plain"]}

    def _ipython_display_(self) -> None:
        """Shown in a notebook: keep the display handle, so stop()/close() can replace the
        widget with the last picture."""
        from IPython.display import display

        bundle = self._repr_mimebundle_()
        handle = display(bundle, raw=True, display_id=True)
        if "application/vnd.jupyter.widget-view+json" in bundle:
            self._handle = handle

    def _static_bundle(self) -> dict[str, Any]:
        df = self.df()
        png = base64.b64encode(self.chart_png(df)).decode()
        return {"text/plain": self.text(df),
                "text/html": self.html(df) + f"<img src='data:image/png;base64,{png}'/>"}

    def __repr__(self) -> str:
        return self.text()


def top(every: float = 1.0, limit: int = 20, sort: str = "cpu", history: int = 60) -> TopView:
    """A bpftop-like live view of every BPF program: events/s, average run time, % of a CPU,
    sorted by `sort` ('cpu', 'events', 'avg', 'id', 'name'), `limit` rows, a time series
    of the last `history` samples per program. Turns kernel run-time stats on while open;
    `close()` stops it. Without a notebook frontend it shows one static snapshot."""
    return TopView(every=every, limit=limit, sort=sort, history=history)


def close_all() -> None:
    """Close every open top() view (interpreter exit)."""
    for view in list(_open_views):
        view.close()


atexit.register(close_all)
