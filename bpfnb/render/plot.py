"""Matplotlib plots of bpfnb DataFrames: histograms, latency heatmaps, per-CPU views, rates.

Every plotting function takes an optional `ax=` and returns the Axes it drew on; none calls
`plt.show()`. Importing this module registers the `df.bpf` accessor:

>>> df.bpf.plot()          # picks hist / heatmap / rates / per_cpu_bars / top_bars by shape
>>> df.bpf.percentiles()   # {50.0: ..., 90.0: ..., 99.0: ...}

Key and value columns: `df.attrs["key_columns"]` / `df.attrs["value_columns"]` when present.
Otherwise they are inferred, ignoring the `time` and `cpu` columns: if there are columns
`value`, `value.*` or `value[*]`, they are the values and the rest are keys; else if there
are columns `key`, `key.*` or `key[*]`, they are the keys and the rest are values; else the
numeric columns are values and the others (strings) keys.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import matplotlib
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import colors as mcolors
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.ticker import FuncFormatter

__all__ = [
    "BpfAccessor", "bucket_label", "bucket_labels", "cpu_frame", "figure_png", "heat_frame",
    "heatmap", "hist", "human", "key_columns", "per_cpu_bars", "per_cpu_heatmap", "percentiles",
    "plot_for", "rate_frame", "rates", "release_fonts", "top_bars", "top_frame",
    "value_columns",
]

BUCKET = ["low", "high"]
HIST_COLUMNS = ("low", "high", "count")
SPECIAL = ("time", "cpu")
UNIT_BASE = {"log2": 1024, "linear": 1000}   # bucket labels: 1K = 1024 for log2 buckets
SUFFIXES = ("", "K", "M", "G", "T", "P", "E")
SEQUENTIAL = "YlOrRd"                         # heatmaps: white (empty) -> yellow -> red
MARKER_STYLES = ("--", "-.", ":")
MAX_TICKS = 20
MAX_SECTIONS = 6


# -- formatting ----------------------------------------------------------------------------

def human(x: float, base: int = 1000) -> str:
    """`x` in short form: 512, 1K, 1.5M, 2G (K = `base`); 3 significant digits."""
    if not math.isfinite(x):
        return str(x)
    sign, x = ("-" if x < 0 else ""), abs(x)
    power = 0
    while power < len(SUFFIXES) - 1 and x >= base ** (power + 1):
        power += 1
    scaled = float(f"{x / base ** power:.3g}")
    if scaled >= base and power < len(SUFFIXES) - 1:
        power, scaled = power + 1, float(f"{scaled / base:.3g}")
    return f"{sign}{scaled:g}{SUFFIXES[power]}"


def bucket_label(low: int, high: int, kind: str = "log2") -> str:
    """Label of the bucket [low, high]: "0-1", "4-7", "512-1023", then "1K-2K" (high exclusive).

    Below the unit base (1024 for log2, 1000 for linear) both ends are exact; above it they
    are short forms of `low` and `high + 1`, i.e. "1K-2K" is [1024, 2048).
    """
    base = UNIT_BASE.get(kind, 1000)
    if low == high:
        return human(low, base)
    if high < base:
        return f"{low}-{high}"
    return f"{human(low, base)}-{human(high + 1, base)}"


def bucket_labels(hist_df: pd.DataFrame) -> list[str]:
    """Labels of a histogram frame's buckets, in row order."""
    kind = hist_df.attrs.get("kind", "log2")
    return [bucket_label(int(lo), int(hi), kind)
            for lo, hi in zip(hist_df["low"], hist_df["high"])]


def _thin(n: int, most: int = MAX_TICKS) -> range:
    """Indices of the ticks to label out of `n`: at most `most`, evenly spaced."""
    return range(0, n, max(1, math.ceil(n / most)))


def _count_formatter() -> FuncFormatter:
    return FuncFormatter(lambda v, _pos: human(v))


# -- column detection ----------------------------------------------------------------------

def _prefixed(col: str, name: str) -> bool:
    return col == name or col.startswith((f"{name}.", f"{name}["))


def _inferred(df: pd.DataFrame) -> tuple[list[str], list[str]]:
    cols = [str(c) for c in df.columns if c not in SPECIAL]
    values = [c for c in cols if _prefixed(c, "value")]
    if not values:
        keys = [c for c in cols if _prefixed(c, "key")]
        values = [c for c in cols if c not in keys] if keys else \
            [c for c in cols if _numeric(df[c])]
    return [c for c in cols if c not in values], values


def _numeric(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def key_columns(df: pd.DataFrame) -> list[str]:
    """Key columns: `attrs["key_columns"]` if given, else inferred (see the module doc)."""
    given = df.attrs.get("key_columns")
    return [c for c in given if c in df.columns] if given is not None else _inferred(df)[0]


def value_columns(df: pd.DataFrame) -> list[str]:
    """Value columns: `attrs["value_columns"]` if given, else inferred (see the module doc)."""
    given = df.attrs.get("value_columns")
    return [c for c in given if c in df.columns] if given is not None else _inferred(df)[1]


def _value(df: pd.DataFrame, value: str | None) -> str:
    """The value column to plot: `value`, else the first numeric value column."""
    if value is not None:
        if value not in df.columns:
            raise KeyError(f"no column {value!r}; columns are {list(df.columns)}")
        return value
    numeric = [c for c in value_columns(df) if _numeric(df[c])]
    if not numeric:
        raise ValueError(f"no numeric value column among {list(df.columns)}; pass value=")
    return numeric[0]


def _labels(df: pd.DataFrame, keys: Sequence[str], default: str = "all") -> pd.Series:
    """One label per row: the key columns joined with spaces, e.g. "1234 bash"."""
    if not keys:
        return pd.Series([default] * len(df), index=df.index, dtype=object)
    parts = [df[k].astype(str) for k in keys]
    out = parts[0]
    for part in parts[1:]:
        out = out + " " + part
    return out


def _title(df: pd.DataFrame, title: str | None, what: str = "") -> str:
    if title is not None:
        return title
    name = df.attrs.get("map")
    return " ".join(str(p) for p in (name, what) if p)


# -- axes helpers --------------------------------------------------------------------------

def _axes(ax: Axes | None, size: tuple[float, float]) -> Axes:
    """`ax`, or a new constrained-layout figure's Axes of `size`, capped at 14 x 12 in."""
    if ax is not None:
        return ax
    _fig, new = plt.subplots(figsize=(min(size[0], 14), min(size[1], 12)), layout="constrained")
    return new


def _no_data(ax: Axes, title: str) -> Axes:
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes,
            color="0.5")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    return ax


def _tick_categories(ax: Axes, axis: str, labels: Sequence[str], offset: float = 0.0,
                     most: int = MAX_TICKS) -> None:
    """Label a categorical axis, keeping at most `most` labels so none overlap."""
    keep = list(_thin(len(labels), most))
    ticks = [i + offset for i in keep]
    shown = [labels[i] for i in keep]
    if axis == "x":
        ax.set_xticks(ticks, shown)
        if len(keep) > 8:
            plt.setp(ax.get_xticklabels(), rotation=45, ha="right", rotation_mode="anchor")
    else:
        ax.set_yticks(ticks, shown)


def _bar_ticks(ax: Axes, y: np.ndarray, keys: Iterable[Any], most: int = 40) -> None:
    """Key labels on horizontal bars at `y`, thinned beyond `most`."""
    labels = [str(k) for k in keys]
    keep = list(_thin(len(labels), most))
    ax.set_yticks(y[keep], [labels[i] for i in keep])


def _palette(n: int) -> list[tuple[float, float, float, float]]:
    """`n` distinguishable colours: tab10, tab20, then samples of viridis."""
    if n <= 20:
        cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
        return [cmap(i) for i in range(n)]
    cmap = matplotlib.colormaps["viridis"]
    return [cmap(i / (n - 1)) for i in range(n)]


def _masked(values: np.ndarray) -> np.ma.MaskedArray:
    """Zero cells masked so they draw as background, not the palest colour."""
    return np.ma.masked_less_equal(values.astype(float), 0)


NORMS: dict[str, Callable[[], mcolors.Normalize]] = {
    "linear": mcolors.Normalize,
    "log": mcolors.LogNorm,
}


def _norm(scale: str) -> mcolors.Normalize:
    try:
        return NORMS[scale]()
    except KeyError:
        raise ValueError(f"scale must be one of {sorted(NORMS)}, not {scale!r}") from None


# -- percentiles ---------------------------------------------------------------------------

def _summed(hist_df: pd.DataFrame) -> pd.DataFrame:
    """One histogram: counts summed per bucket over every other column (sections, time)."""
    counts = hist_df["count"].astype("float64")
    out = counts.groupby([hist_df["low"], hist_df["high"]], sort=True).sum().reset_index()
    out.attrs.update(hist_df.attrs)
    return out


def _percentiles(low: np.ndarray, high: np.ndarray, counts: np.ndarray,
                 qs: Iterable[float]) -> dict[float, tuple[int, float]]:
    """Per q: (bucket index, fraction into it). Bucket [low, high] spans [low, high + 1)."""
    cum = np.cumsum(counts)
    total = float(cum[-1]) if len(cum) else 0.0
    out: dict[float, tuple[int, float]] = {}
    for q in qs:
        if not 0 <= q <= 100:
            raise ValueError(f"percentile {q} is outside 0..100")
        if total <= 0:
            out[float(q)] = (-1, math.nan)
            continue
        target = total * q / 100
        i = int(np.flatnonzero((cum >= target) & (counts > 0))[0])
        before = cum[i] - counts[i]
        out[float(q)] = (i, float((target - before) / counts[i]))
    return out


def percentiles(hist_df: pd.DataFrame, qs: Iterable[float] = (50, 90, 99)
                ) -> dict[float, float]:
    """Percentiles estimated from a histogram frame's buckets: {q: value}.

    Within a bucket [low, high] the values are taken as spread evenly over [low, high + 1),
    so the estimate is linear inside it. Sections (key columns) are summed first; an empty
    histogram gives NaN.
    """
    one = _summed(hist_df)
    low, high = one["low"].to_numpy(float), one["high"].to_numpy(float)
    found = _percentiles(low, high, one["count"].to_numpy(float), qs)
    return {q: (math.nan if i < 0 else float(low[i] + f * (high[i] + 1 - low[i])))
            for q, (i, f) in found.items()}


# -- histograms ----------------------------------------------------------------------------

def _is_hist(df: pd.DataFrame) -> bool:
    return all(c in df.columns for c in HIST_COLUMNS)


def _sections(hist_df: pd.DataFrame) -> list[str]:
    return [c for c in hist_df.columns if c not in (*HIST_COLUMNS, "time")]


def _mark_percentiles(ax: Axes, one: pd.DataFrame, qs: Sequence[float], base: int) -> None:
    """Dashed vertical lines at the percentiles, labelled "p50 6" at staggered heights."""
    low, high = one["low"].to_numpy(float), one["high"].to_numpy(float)
    found = _percentiles(low, high, one["count"].to_numpy(float), qs)
    for n, (q, (i, frac)) in enumerate(found.items()):
        if i < 0:
            continue
        x = i - 0.5 + frac
        value = low[i] + frac * (high[i] + 1 - low[i])
        style = MARKER_STYLES[n % len(MARKER_STYLES)]
        ax.axvline(x, color="0.2", linestyle=style, linewidth=1, label=f"p{q:g}")
        ax.text(x, 0.98 - 0.07 * n, f"p{q:g} {human(value, base)}", color="0.2",
                transform=ax.get_xaxis_transform(), ha="left", va="top", fontsize="small",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})


def _hist_single(ax: Axes, one: pd.DataFrame, qs: Sequence[float]) -> None:
    heights = one["count"].to_numpy(float)
    ax.bar(range(len(one)), heights, width=0.85, color="tab:blue")
    ax.set_ylim(0, heights.max() * 1.3)   # headroom for the percentile labels
    base = UNIT_BASE.get(one.attrs.get("kind", "log2"), 1000)
    _mark_percentiles(ax, one, qs, base)


def _hist_sections(ax: Axes, hist_df: pd.DataFrame, sections: list[str],
                   qs: Sequence[float], most: int) -> None:
    """Grouped bars: the `most` largest sections, each labelled with its percentiles."""
    buckets = _summed(hist_df)[BUCKET]
    index = pd.MultiIndex.from_frame(buckets)
    labels = _labels(hist_df, sections)
    totals = hist_df["count"].astype(float).groupby(labels).sum().sort_values(ascending=False)
    chosen = list(totals.index[:most])
    width = 0.85 / len(chosen)
    for n, (name, colour) in enumerate(zip(chosen, _palette(len(chosen)))):
        part = hist_df[labels == name]
        counts = part["count"].astype(float).groupby([part["low"], part["high"]]).sum()
        heights = counts.reindex(index, fill_value=0.0).to_numpy(float)
        x = np.arange(len(index)) - 0.425 + width * (n + 0.5)
        ax.bar(x, heights, width=width, color=colour, label=_section_label(part, name, qs))
    hidden = len(totals) - len(chosen)
    title = " ".join(sections) + (f" (top {len(chosen)} of {len(totals)})" if hidden else "")
    ax.legend(title=title, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))


def _section_label(part: pd.DataFrame, name: str, qs: Sequence[float]) -> str:
    base = UNIT_BASE.get(part.attrs.get("kind", "log2"), 1000)
    found = percentiles(part, qs)
    marks = ", ".join(f"p{q:g} {human(v, base)}" for q, v in found.items()
                      if not math.isnan(v))
    return f"{name} ({marks})" if marks else name


def hist(hist_df: pd.DataFrame, ax: Axes | None = None,
         percentiles: Sequence[float] = (50, 90, 99), title: str | None = None,
         sections: int = MAX_SECTIONS) -> Axes:
    """Bars per bucket with labels like "4-7", "1K-2K" and lines at the percentiles.

    A frame with section key columns (e.g. `pid`) draws grouped bars for the `sections`
    largest sections; their percentiles are in the legend.
    """
    ax = _axes(ax, (9, 4))
    name = _title(hist_df, title)
    if hist_df.empty or float(hist_df["count"].astype(float).sum()) == 0:
        return _no_data(ax, name)
    keys = _sections(hist_df)
    buckets = _summed(hist_df)
    if keys and hist_df[keys].drop_duplicates().shape[0] > 1:
        _hist_sections(ax, hist_df, keys, percentiles, sections)
    else:
        _hist_single(ax, buckets, percentiles)
    _tick_categories(ax, "x", bucket_labels(buckets))
    ax.set_xlim(-0.6, len(buckets) - 0.4)
    ax.set_xlabel(hist_df.attrs.get("unit") or "value")
    ax.set_ylabel("count")
    ax.yaxis.set_major_formatter(_count_formatter())
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(name)
    return ax


# -- time -----------------------------------------------------------------------------------

def _is_datetime(times: pd.Series | pd.Index) -> bool:
    return pd.api.types.is_datetime64_any_dtype(times)


def _seconds(times: pd.Series | pd.Index) -> np.ndarray:
    """Times as float seconds (datetimes: since the epoch)."""
    if _is_datetime(times):
        ns = pd.DatetimeIndex(times).as_unit("ns").asi8
        return np.asarray(ns, dtype=float) / 1e9
    return np.asarray(times, dtype=float)


def _plot_x(times: pd.Series | pd.Index) -> np.ndarray:
    """X coordinates matplotlib understands: date numbers for datetimes, else seconds."""
    if _is_datetime(times):
        return np.asarray(mdates.date2num(pd.DatetimeIndex(times).to_pydatetime()))
    return np.asarray(times, dtype=float)


def _time_axis(ax: Axes, datetime: bool) -> None:
    if datetime:
        locator = mdates.AutoDateLocator(maxticks=8)
        # Whole minutes (hours) as steps too: without them a 3.5-5 minute (hour) span fits
        # no interval and matplotlib warns into the notebook on every redraw.
        for freq in (mdates.SECONDLY, mdates.MINUTELY):
            locator.intervald[freq] = [*locator.intervald[freq], 60]
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    else:
        ax.set_xlabel("time (s)")


def _edges(x: np.ndarray, lone: float) -> np.ndarray:
    """Cell edges around sample points: midpoints, the ends half a gap out (`lone` if one)."""
    if len(x) == 1:
        return np.array([x[0] - lone / 2, x[0] + lone / 2])
    mid = (x[1:] + x[:-1]) / 2
    return np.concatenate([[2 * x[0] - mid[0]], mid, [2 * x[-1] - mid[-1]]])


# -- heatmap -------------------------------------------------------------------------------

def heat_frame(history_df: pd.DataFrame, delta: bool = False) -> pd.DataFrame:
    """Counts per bucket (rows, by `low`/`high`) and time (columns), summed over sections.

    `delta=True` reads the history as cumulative snapshots and gives the counts added since
    the previous snapshot (the first snapshot is dropped; a negative change, a cleared map,
    counts as the new value).
    """
    counts = history_df["count"].astype(float)
    grid = counts.groupby([history_df["low"], history_df["high"], history_df["time"]]).sum()
    wide = grid.unstack("time", fill_value=0).sort_index()
    if delta:
        change = wide.diff(axis=1)
        wide = change.where(change >= 0, wide).iloc[:, 1:]
    return wide


def heatmap(history_df: pd.DataFrame, ax: Axes | None = None, delta: bool = False,
            scale: str = "linear", cmap: str = SEQUENTIAL, title: str | None = None) -> Axes:
    """Latency heatmap of a histogram history: x time, y bucket, colour the count.

    `delta=True` for histories of cumulative (never cleared) maps, see `heat_frame`.
    `scale` is "linear" or "log" colour. Empty cells are left blank.
    """
    ax = _axes(ax, (10, 4.5))
    name = _title(history_df, title, "heatmap")
    wide = heat_frame(history_df, delta) if not history_df.empty else pd.DataFrame()
    if wide.empty or not (wide.to_numpy() > 0).any():
        return _no_data(ax, name)
    times = pd.Index(wide.columns)
    every = pd.Index(history_df["time"].drop_duplicates().sort_values())
    second = 1 / 86400 if _is_datetime(times) else 1.0   # date numbers count days
    edges = _plot_x(every) if delta else _edges(_plot_x(times), second)
    mesh = ax.pcolormesh(edges, np.arange(len(wide) + 1), _masked(wide.to_numpy()),
                         cmap=cmap, norm=_norm(scale), shading="flat")
    labels = _heat_labels(wide, history_df.attrs.get("kind", "log2"))
    _tick_categories(ax, "y", labels, offset=0.5)
    _time_axis(ax, _is_datetime(times))
    ax.set_ylabel(history_df.attrs.get("unit") or "bucket")
    ax.figure.colorbar(mesh, ax=ax, label="count", format=_count_formatter())
    ax.set_title(name)
    return ax


def _heat_labels(wide: pd.DataFrame, kind: str) -> list[str]:
    return [bucket_label(int(lo), int(hi), kind) for lo, hi in wide.index]


# -- per-CPU -------------------------------------------------------------------------------

def cpu_frame(long_df: pd.DataFrame, value: str | None = None, top: int | None = 20
              ) -> pd.DataFrame:
    """Key label x CPU table of one value column, the `top` keys by total, largest first."""
    col = _value(long_df, value)
    labels = _labels(long_df, key_columns(long_df)).rename("key")
    values = long_df[col].astype(float)
    wide = values.groupby([labels, long_df["cpu"]]).sum().unstack("cpu", fill_value=0)
    order = wide.sum(axis=1).sort_values(ascending=False, kind="stable").index
    return wide.loc[order[:top] if top else order].sort_index(axis=1)


def per_cpu_bars(long_df: pd.DataFrame, value: str | None = None, top: int = 20,
                 ax: Axes | None = None, title: str | None = None) -> Axes:
    """Horizontal bars per key (largest on top), stacked one colour per CPU."""
    wide = cpu_frame(long_df, value, top) if not long_df.empty else pd.DataFrame()
    ax = _axes(ax, (9, 1.2 + 0.32 * max(1, len(wide))))
    name = _title(long_df, title, "per CPU")
    if wide.empty:
        return _no_data(ax, name)
    y = np.arange(len(wide))[::-1]
    left = np.zeros(len(wide))
    colours = _palette(wide.shape[1])
    for cpu, colour in zip(wide.columns, colours):
        widths = wide[cpu].to_numpy(float)
        ax.barh(y, widths, left=left, color=colour, label=f"cpu {cpu}", height=0.8)
        left += widths
    _bar_ticks(ax, y, wide.index)
    ax.set_xlabel(_value(long_df, value))
    ax.xaxis.set_major_formatter(_count_formatter())
    _cpu_key(ax, list(wide.columns), colours)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(name)
    return ax


def _cpu_key(ax: Axes, cpus: list[Any], colours: list[Any]) -> None:
    """A legend for up to 20 CPUs, a colour bar beyond that."""
    if len(cpus) <= 20:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1),
                  ncols=1 + len(cpus) // 11)
        return
    cmap = mcolors.ListedColormap(colours)
    norm = mcolors.Normalize(vmin=float(min(cpus)), vmax=float(max(cpus)))
    ax.figure.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="cpu")


def per_cpu_heatmap(long_df: pd.DataFrame, value: str | None = None, top: int = 20,
                    ax: Axes | None = None, scale: str = "linear", cmap: str = SEQUENTIAL,
                    title: str | None = None) -> Axes:
    """Key (rows, largest on top) x CPU (columns) heatmap of one value column."""
    wide = cpu_frame(long_df, value, top) if not long_df.empty else pd.DataFrame()
    ax = _axes(ax, (max(6.0, 2 + 0.2 * wide.shape[1]), 1.5 + 0.3 * max(1, len(wide))))
    name = _title(long_df, title, "per CPU")
    if wide.empty or not (wide.to_numpy() > 0).any():
        return _no_data(ax, name)
    mesh = ax.pcolormesh(_masked(wide.to_numpy()), cmap=cmap, norm=_norm(scale))
    ax.invert_yaxis()
    _tick_categories(ax, "x", [str(c) for c in wide.columns], offset=0.5, most=32)
    _tick_categories(ax, "y", [str(k) for k in wide.index], offset=0.5, most=40)
    ax.set_xlabel("cpu")
    ax.figure.colorbar(mesh, ax=ax, label=_value(long_df, value), format=_count_formatter())
    ax.set_title(name)
    return ax


# -- top keys ------------------------------------------------------------------------------

def top_frame(map_df: pd.DataFrame, value: str | None = None, top: int | None = 20
              ) -> pd.Series:
    """The `top` keys by one value column, largest first, indexed by key label."""
    col = _value(map_df, value)
    values = map_df[col].astype(float)
    series = values.groupby(_labels(map_df, key_columns(map_df)).rename("key"), sort=False).sum()
    series = series.sort_values(ascending=False, kind="stable").rename(col)
    return series.iloc[:top] if top else series


def top_bars(map_df: pd.DataFrame, value: str | None = None, top: int = 20,
             ax: Axes | None = None, title: str | None = None) -> Axes:
    """Horizontal bars of the `top` keys by value, largest on top, values at the bar ends."""
    every = top_frame(map_df, value, None) if not map_df.empty else pd.Series(dtype=float)
    series = every.iloc[:top]
    ax = _axes(ax, (8, 1.2 + 0.3 * max(1, len(series))))
    name = _title(map_df, title, f"(top {top} of {len(every)})" if len(every) > top else "")
    if series.empty:
        return _no_data(ax, name)
    y = np.arange(len(series))[::-1]
    bars = ax.barh(y, series.to_numpy(float), color="tab:blue", height=0.75)
    ax.bar_label(bars, [human(v) for v in series], padding=3, fontsize="small")
    _bar_ticks(ax, y, series.index)
    ax.set_xlabel(str(series.name))
    ax.xaxis.set_major_formatter(_count_formatter())
    ax.margins(x=0.1)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(name)
    return ax


# -- rates ---------------------------------------------------------------------------------

def rate_frame(history_df: pd.DataFrame, value: str | None = None) -> pd.DataFrame:
    """Per-second rates of cumulative counters: time (index) x key label (columns).

    The rate at a snapshot is (value - previous value) / elapsed seconds for a key present
    in both snapshots, else NaN: a key seen late starts at its first value, a key that
    disappears ends, and a drop (a counter reset) gives NaN rather than a negative rate.
    """
    col = _value(history_df, value)
    labels = _labels(history_df, key_columns(history_df), col).rename("key")
    values = history_df[col].astype(float)
    wide = values.groupby([history_df["time"], labels]).sum(min_count=1).unstack("key")
    wide = wide.sort_index()
    elapsed = np.diff(_seconds(wide.index), prepend=np.nan)
    rates = wide.diff().div(elapsed, axis=0)
    return rates.where(rates >= 0)


def rates(history_df: pd.DataFrame, value: str | None = None, top: int = 10,
          ax: Axes | None = None, title: str | None = None) -> Axes:
    """Lines of per-second rates per key (see `rate_frame`), the `top` keys by total change."""
    ax = _axes(ax, (10, 4))
    name = _title(history_df, title, "rate")
    table = rate_frame(history_df, value) if not history_df.empty else pd.DataFrame()
    table = table.dropna(axis=1, how="all")
    if table.empty:
        return _no_data(ax, name)
    elapsed = np.diff(_seconds(table.index), prepend=np.nan)
    change = table.mul(elapsed, axis=0).sum()
    chosen = change.sort_values(ascending=False, kind="stable").index[:top]
    xs = _plot_x(table.index)
    for key, colour in zip(chosen, _palette(len(chosen))):
        ax.plot(xs, table[key].to_numpy(float), color=colour, label=str(key), marker=".",
                markersize=3, linewidth=1.5)
    _time_axis(ax, _is_datetime(table.index))
    ax.set_ylabel(f"{_value(history_df, value)} / s")
    ax.yaxis.set_major_formatter(_count_formatter())
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(name)
    return ax


# -- output ---------------------------------------------------------------------------------

def _root(fig_or_ax: Figure | SubFigure | Axes) -> Figure:
    fig: Any = fig_or_ax
    while isinstance(fig, (Axes, SubFigure)):   # a subfigure's .figure is its parent
        fig = fig.figure
    if not isinstance(fig, Figure):
        raise TypeError(f"expected a Figure or Axes, got {type(fig_or_ax).__name__}")
    return fig


def figure_png(fig_or_ax: Figure | SubFigure | Axes, dpi: float = 100) -> bytes:
    """The whole figure (of an Axes: the figure holding it) as PNG bytes."""
    buf = io.BytesIO()
    _root(fig_or_ax).savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def release_fonts() -> None:
    """Close the font files matplotlib keeps open for threads that drew.

    matplotlib caches open fonts per thread (`font_manager._get_font` is keyed by the
    thread id, up to 64 entries), so every drawing thread that ended leaves its font files
    open. Call when such a thread stopped; the next drawing opens the fonts it needs again.
    """
    cached = getattr(font_manager, "_get_font", None)
    clear = getattr(cached, "cache_clear", None)
    if clear is not None:
        clear()


# -- accessor ------------------------------------------------------------------------------

def _is_history(df: pd.DataFrame) -> bool:
    return "time" in df.columns


def _is_hist_history(df: pd.DataFrame) -> bool:
    return _is_history(df) and _is_hist(df)


def _is_per_cpu(df: pd.DataFrame) -> bool:
    return "cpu" in df.columns


def _always(df: pd.DataFrame) -> bool:
    return True


PLOTS: list[tuple[Callable[[pd.DataFrame], bool], Callable[..., Axes]]] = [
    (_is_hist_history, heatmap),
    (_is_history, rates),
    (_is_hist, hist),
    (_is_per_cpu, per_cpu_bars),
    (_always, top_bars),
]


def plot_for(df: pd.DataFrame) -> Callable[..., Axes]:
    """The plot function `df.bpf.plot()` uses for a frame of this shape."""
    return next(fn for test, fn in PLOTS if test(df))


class BpfAccessor:
    """`df.bpf`: the plots of this module as DataFrame methods; `plot()` picks one by shape."""

    def __init__(self, df: pd.DataFrame) -> None:
        self._df = df

    def plot(self, **kwargs: Any) -> Axes:
        """Histogram history -> heatmap, history -> rates, buckets -> hist, `cpu` ->
        per_cpu_bars, else top_bars."""
        return plot_for(self._df)(self._df, **kwargs)

    def hist(self, **kwargs: Any) -> Axes:
        return hist(self._df, **kwargs)

    def heatmap(self, **kwargs: Any) -> Axes:
        return heatmap(self._df, **kwargs)

    def per_cpu_bars(self, **kwargs: Any) -> Axes:
        return per_cpu_bars(self._df, **kwargs)

    def per_cpu_heatmap(self, **kwargs: Any) -> Axes:
        return per_cpu_heatmap(self._df, **kwargs)

    def top_bars(self, **kwargs: Any) -> Axes:
        return top_bars(self._df, **kwargs)

    def rates(self, **kwargs: Any) -> Axes:
        return rates(self._df, **kwargs)

    def percentiles(self, qs: Iterable[float] = (50, 90, 99)) -> dict[float, float]:
        return percentiles(self._df, qs)


with warnings.catch_warnings():   # re-importing (autoreload) re-registers the same name
    warnings.simplefilter("ignore", UserWarning)
    pd.api.extensions.register_dataframe_accessor("bpf")(BpfAccessor)
