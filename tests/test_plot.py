"""bpfnb.render.plot: percentiles, bucket labels, what each plot draws, the df.bpf accessor."""

from __future__ import annotations

import math
import struct
import warnings
from collections.abc import Iterator

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import QuadMesh

from bpfnb.render import plot
from bpfnb.render.plot import (
    bucket_label,
    bucket_labels,
    figure_png,
    heatmap,
    hist,
    human,
    key_columns,
    per_cpu_bars,
    per_cpu_heatmap,
    percentiles,
    rate_frame,
    rates,
    top_bars,
    value_columns,
)


@pytest.fixture(autouse=True)
def _no_show(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No plot may call plt.show(); every figure a test makes is closed after it."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("plt.show() called")

    monkeypatch.setattr(plt, "show", refuse)
    yield
    plt.close("all")


def log2_hist(counts: list[int], **attrs: object) -> pd.DataFrame:
    """A histogram frame of log2 buckets 0-1, 2-3, 4-7, ... holding `counts`."""
    slots = np.arange(1, len(counts) + 1, dtype=np.uint64)
    high = (np.uint64(1) << slots) - np.uint64(1)
    low = np.where(slots == 1, 0, np.uint64(1) << (slots - np.uint64(1))).astype(np.uint64)
    df = pd.DataFrame({"low": low, "high": high, "count": np.array(counts, np.uint64)})
    df.attrs.update({"map": "lat", "type": "HASH", "kind": "log2", "key_columns": [],
                     "value_columns": ["count"], **attrs})
    return df


def bar_heights(ax: Axes) -> list[float]:
    return [float(p.get_height()) for p in ax.patches]  # type: ignore[attr-defined]


def tick_texts(labels: list[plt.Text]) -> list[str]:
    return [t.get_text() for t in labels]


def mesh_of(ax: Axes) -> QuadMesh:
    return next(c for c in ax.collections if isinstance(c, QuadMesh))


def grid_of(ax: Axes, rows: int, cols: int) -> list[list[float]]:
    """The colours (values) of the heatmap cells, masked (blank) cells as 0."""
    values = mesh_of(ax).get_array()
    assert values is not None
    return np.ma.filled(values, 0).reshape(rows, cols).tolist()


# -- formatting ----------------------------------------------------------------------------

@pytest.mark.parametrize(("x", "base", "text"), [
    (0, 1000, "0"), (999, 1000, "999"), (1000, 1000, "1K"), (1500, 1000, "1.5K"),
    (123456, 1000, "123K"), (999_999, 1000, "1M"), (2.5e9, 1000, "2.5G"), (-2500, 1000, "-2.5K"),
    (0.25, 1000, "0.25"), (1024, 1024, "1K"), (1536, 1024, "1.5K"), (2**20, 1024, "1M"),
    (2**30, 1024, "1G"), (1000, 1024, "1000"),
])
def test_human(x: float, base: int, text: str) -> None:
    assert human(x, base) == text


def test_log2_bucket_labels_exact_then_short() -> None:
    labels = bucket_labels(log2_hist([1] * 32))
    assert labels[:10] == ["0-1", "2-3", "4-7", "8-15", "16-31", "32-63", "64-127",
                           "128-255", "256-511", "512-1023"]
    assert labels[10:12] == ["1K-2K", "2K-4K"]
    assert labels[19:22] == ["512K-1M", "1M-2M", "2M-4M"]
    assert labels[29:32] == ["512M-1G", "1G-2G", "2G-4G"]


def test_linear_bucket_labels_use_decimal_units() -> None:
    assert bucket_label(0, 9, "linear") == "0-9"
    assert bucket_label(7, 7, "linear") == "7"
    assert bucket_label(1000, 1999, "linear") == "1K-2K"
    assert bucket_label(1500, 1599, "linear") == "1.5K-1.6K"


# -- column detection ----------------------------------------------------------------------

def test_columns_from_attrs_win_over_inference() -> None:
    df = pd.DataFrame({"pid": [1], "comm": ["a"], "calls": [3]})
    df.attrs.update(key_columns=["pid", "comm"], value_columns=["calls"])
    assert key_columns(df) == ["pid", "comm"]
    assert value_columns(df) == ["calls"]


@pytest.mark.parametrize(("columns", "keys", "values"), [
    ({"key": [1], "value": [2]}, ["key"], ["value"]),
    ({"pid": [1], "comm": ["a"], "value": [2]}, ["pid", "comm"], ["value"]),
    ({"key": [1], "bytes": [2], "calls": [3]}, ["key"], ["bytes", "calls"]),
    ({"key.pid": [1], "key.comm": ["a"], "value.n": [2], "value.t": [3]},
     ["key.pid", "key.comm"], ["value.n", "value.t"]),
    ({"comm": ["a"], "bytes": [2], "calls": [3]}, ["comm"], ["bytes", "calls"]),
    ({"time": [0.0], "key": [1], "cpu": [0], "value": [2]}, ["key"], ["value"]),
])
def test_inferred_columns(columns: dict[str, list[object]], keys: list[str],
                          values: list[str]) -> None:
    df = pd.DataFrame(columns)
    assert (key_columns(df), value_columns(df)) == (keys, values)


# -- percentiles ---------------------------------------------------------------------------

def test_percentiles_interpolate_inside_buckets() -> None:
    # 0-1: 0, 2-3: 10, 4-7: 80, 8-15: 10. Bucket [lo, hi] spans [lo, hi + 1).
    got = percentiles(log2_hist([0, 10, 80, 10]))
    assert got == {50.0: 6.0, 90.0: 8.0, 99.0: pytest.approx(15.2)}
    assert list(got) == [50.0, 90.0, 99.0]


def test_percentiles_edges() -> None:
    df = log2_hist([0, 0, 4, 0, 4])      # 4-7: 4, 16-31: 4
    got = percentiles(df, (0, 25, 50, 75, 100))
    assert got == {0.0: 4.0, 25.0: 6.0, 50.0: 8.0, 75.0: 24.0, 100.0: 32.0}


def test_percentiles_of_empty_histogram_are_nan() -> None:
    got = percentiles(log2_hist([0, 0, 0]))
    assert all(math.isnan(v) for v in got.values())
    with pytest.raises(ValueError, match="outside"):
        percentiles(log2_hist([1]), (101,))


def test_percentiles_sum_over_sections() -> None:
    a, b = log2_hist([0, 10, 0, 0]), log2_hist([0, 0, 80, 10])
    both = pd.concat([a.assign(pid=1), b.assign(pid=2)], ignore_index=True)
    both = both[["pid", "low", "high", "count"]]
    assert percentiles(both) == percentiles(log2_hist([0, 10, 80, 10]))
    assert both.bpf.percentiles((50,)) == {50.0: 6.0}


# -- hist ----------------------------------------------------------------------------------

def test_hist_bars_equal_counts_and_are_labelled() -> None:
    ax = hist(log2_hist([3, 0, 7, 12, 5], unit="usecs"))
    assert bar_heights(ax) == [3.0, 0.0, 7.0, 12.0, 5.0]
    assert tick_texts(ax.get_xticklabels()) == ["0-1", "2-3", "4-7", "8-15", "16-31"]
    assert ax.get_xlabel() == "usecs"
    assert ax.get_title() == "lat"


def test_hist_marks_percentiles_at_interpolated_positions() -> None:
    ax = hist(log2_hist([0, 10, 80, 10]))
    lines = [ln for ln in ax.get_lines() if str(ln.get_label()).startswith("p")]
    assert [str(ln.get_label()) for ln in lines] == ["p50", "p90", "p99"]
    # bar i spans [i - 0.5, i + 0.5]: p50 is half way into bar 2, p99 90 % into bar 3
    xs = [float(np.asarray(ln.get_xdata())[0]) for ln in lines]
    assert xs == pytest.approx([2.0, 2.5, 3.4])
    assert [t.get_text() for t in ax.texts] == ["p50 6", "p90 8", "p99 15.2"]


def test_hist_thins_many_bucket_labels() -> None:
    ax = hist(log2_hist(list(range(1, 41))))
    labels = tick_texts(ax.get_xticklabels())
    assert len(ax.patches) == 40
    assert len(labels) <= 20
    assert labels[:3] == ["0-1", "4-7", "16-31"]


def test_hist_sections_draw_grouped_bars() -> None:
    a, b = log2_hist([0, 10, 0, 0]), log2_hist([0, 0, 80, 10])
    both = pd.concat([a.assign(pid=7), b.assign(pid=9)], ignore_index=True)
    both = both[["pid", "low", "high", "count"]]
    both.attrs = {**a.attrs, "key_columns": ["pid"]}
    ax = hist(both)
    assert sorted(bar_heights(ax)) == sorted([0, 10, 0, 0, 0, 0, 80, 10])
    legend = ax.get_legend()
    assert legend is not None
    texts = tick_texts(legend.get_texts())
    assert texts[0].startswith("9 (p50 6")       # largest section first
    assert texts[1].startswith("7 (p50 3")
    assert tick_texts(ax.get_xticklabels()) == ["0-1", "2-3", "4-7", "8-15"]


def test_hist_of_empty_frame_says_no_data() -> None:
    ax = hist(log2_hist([0, 0]))
    assert [t.get_text() for t in ax.texts] == ["no data"]


# -- heatmap -------------------------------------------------------------------------------

def hist_history(snapshots: list[list[int]], start: pd.Timestamp | None = None
                 ) -> pd.DataFrame:
    frames = []
    for i, counts in enumerate(snapshots):
        t = start + pd.Timedelta(seconds=i) if start is not None else float(i)
        frames.append(log2_hist(counts).assign(time=t))
    df = pd.concat(frames, ignore_index=True)[["time", "low", "high", "count"]]
    df.attrs.update({"map": "biolat", "kind": "log2", "unit": "usecs"})
    return df


def test_heatmap_colours_are_the_counts() -> None:
    df = hist_history([[1, 2, 0], [0, 5, 3]])
    ax = heatmap(df)
    assert grid_of(ax, 3, 2) == [[1, 0], [2, 5], [0, 3]]              # buckets x times
    assert tick_texts(ax.get_yticklabels()) == ["0-1", "2-3", "4-7"]
    assert np.ma.getmaskarray(mesh_of(ax).get_array()).sum() == 2  # type: ignore[arg-type]
    assert ax.get_title() == "biolat heatmap"


def test_heatmap_delta_turns_cumulative_snapshots_into_interval_counts() -> None:
    start = pd.Timestamp("2024-01-01 12:00:00")
    df = hist_history([[1, 2], [1, 5, 3], [4, 5, 3]], start)
    wide = plot.heat_frame(df, delta=True)
    assert wide.to_numpy().tolist() == [[0, 3], [3, 0], [3, 0]]
    ax = heatmap(df, delta=True)
    coords = np.asarray(mesh_of(ax).get_coordinates())
    assert coords.shape == (4, 3, 2)                 # 3 buckets, 2 intervals over 3 times
    assert grid_of(ax, 3, 2) == [[0, 3], [3, 0], [3, 0]]


def test_heatmap_sums_sections_and_accepts_log_scale() -> None:
    df = hist_history([[1, 1], [2, 2]])
    both = pd.concat([df.assign(pid=1), df.assign(pid=2)], ignore_index=True)
    ax = heatmap(both, scale="log")
    assert grid_of(ax, 2, 2) == [[2, 4], [2, 4]]
    with pytest.raises(ValueError, match="scale"):
        heatmap(both, scale="cubic")


@pytest.mark.parametrize("span_s", [250, 14_000])   # spans AutoDateLocator has no step for
def test_time_axis_of_minutes_or_hours_draws_without_warnings(span_s: int) -> None:
    start = pd.Timestamp("2024-01-01 12:00:00")
    df = hist_history([[1, 2]] * 20, start)
    df["time"] = start + (df["time"] - start) * (span_s / 19)
    ax = heatmap(df)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ax.figure.canvas.draw()
    assert len(ax.get_xticks()) >= 3


# -- per-CPU -------------------------------------------------------------------------------

def long_frame() -> pd.DataFrame:
    rows = [(10, "bash", 0, 5), (10, "bash", 1, 1), (20, "sshd", 0, 2), (20, "sshd", 1, 2),
            (30, "cron", 0, 0), (30, "cron", 1, 9)]
    df = pd.DataFrame(rows, columns=["pid", "comm", "cpu", "value"])
    df["value"] = df["value"].astype(np.uint64)
    df.attrs.update(map="by_pid", type="PERCPU_HASH", key_columns=["pid", "comm"],
                    value_columns=["value"])
    return df


def test_per_cpu_bars_stack_one_colour_per_cpu() -> None:
    ax = per_cpu_bars(long_frame())
    labels = tick_texts(ax.get_yticklabels())
    assert labels == ["30 cron", "10 bash", "20 sshd"]            # totals 9, 6, 4
    assert [float(t) for t in ax.get_yticks()] == [2.0, 1.0, 0.0]   # largest on top
    bars = ax.containers
    assert len(bars) == 2
    assert [float(p.get_width()) for p in bars[0]] == [0.0, 5.0, 2.0]     # cpu 0
    assert [float(p.get_width()) for p in bars[1]] == [9.0, 1.0, 2.0]     # cpu 1
    assert [float(p.get_x()) for p in bars[1]] == [0.0, 5.0, 2.0]         # stacked on cpu 0
    assert bars[0][0].get_facecolor() != bars[1][0].get_facecolor()
    legend = ax.get_legend()
    assert legend is not None
    assert tick_texts(legend.get_texts()) == ["cpu 0", "cpu 1"]


def test_per_cpu_top_keeps_largest_keys() -> None:
    ax = per_cpu_bars(long_frame(), top=2)
    assert tick_texts(ax.get_yticklabels()) == ["30 cron", "10 bash"]


def test_per_cpu_heatmap_is_keys_by_cpus() -> None:
    ax = per_cpu_heatmap(long_frame())
    assert grid_of(ax, 3, 2) == [[0, 9], [5, 1], [2, 2]]
    assert tick_texts(ax.get_yticklabels()) == ["30 cron", "10 bash", "20 sshd"]
    assert tick_texts(ax.get_xticklabels()) == ["0", "1"]
    assert ax.yaxis_inverted()                          # largest key on top


# -- top bars ------------------------------------------------------------------------------

def map_frame(n: int) -> pd.DataFrame:
    df = pd.DataFrame({"pid": np.arange(n, dtype=np.uint32),
                       "comm": [f"p{i}" for i in range(n)],
                       "value": (np.arange(n, dtype=np.uint64) * 1000)})
    df.attrs.update(map="calls", type="HASH", key_columns=["pid", "comm"],
                    value_columns=["value"])
    return df


def test_top_bars_largest_first_with_joined_key_labels() -> None:
    ax = top_bars(map_frame(30), top=3)
    assert tick_texts(ax.get_yticklabels()) == ["29 p29", "28 p28", "27 p27"]
    assert [float(t) for t in ax.get_yticks()] == [2.0, 1.0, 0.0]   # largest on top
    bars = ax.containers[0]
    assert [float(p.get_width()) for p in bars] == [29000.0, 28000.0, 27000.0]
    assert [float(p.get_y() + p.get_height() / 2) for p in bars] == [2.0, 1.0, 0.0]
    assert [t.get_text() for t in ax.texts] == ["29K", "28K", "27K"]
    assert ax.get_title() == "calls (top 3 of 30)"


def test_top_bars_picks_a_value_column() -> None:
    df = pd.DataFrame({"key": [1, 2], "bytes": [5, 1], "calls": [1, 9]})
    assert tick_texts(top_bars(df).get_yticklabels()) == ["1", "2"]          # by bytes
    assert tick_texts(top_bars(df, value="calls").get_yticklabels()) == ["2", "1"]
    with pytest.raises(KeyError, match="nope"):
        top_bars(df, value="nope")


# -- rates ---------------------------------------------------------------------------------

def counter_history(datetimes: bool) -> pd.DataFrame:
    t0 = pd.Timestamp("2024-01-01 00:00:00")
    times = [0.0, 1.0, 3.0, 4.0]
    rows = [  # (t, key, cumulative value)
        (0, "a", 10), (1, "a", 20), (2, "a", 60), (3, "a", 70),
        (0, "b", 5), (1, "b", 6),                         # b disappears after t=1
        (2, "c", 100), (3, "c", 130),                     # c appears at t=3
        (0, "d", 50), (1, "d", 80), (2, "d", 10), (3, "d", 30),   # d reset at t=3
    ]
    df = pd.DataFrame([(times[i], k, v) for i, k, v in rows], columns=["time", "key", "value"])
    if datetimes:
        df["time"] = t0 + pd.to_timedelta(df["time"], unit="s")
    df["value"] = df["value"].astype(np.uint64)
    df.attrs.update(map="calls", key_columns=["key"], value_columns=["value"])
    return df


@pytest.mark.parametrize("datetimes", [False, True])
def test_rate_frame_exact(datetimes: bool) -> None:
    got = rate_frame(counter_history(datetimes))
    nan = math.nan
    want = pd.DataFrame({"a": [nan, 10.0, 20.0, 10.0], "b": [nan, 1.0, nan, nan],
                         "c": [nan, nan, nan, 30.0], "d": [nan, 30.0, nan, 20.0]})
    np.testing.assert_array_equal(got[["a", "b", "c", "d"]].to_numpy(), want.to_numpy())


def test_rates_draws_the_rate_lines_for_the_top_keys() -> None:
    ax = rates(counter_history(False), top=2)
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == {"a", "d"}                     # total change a 60, d 50, c 30, b 1
    np.testing.assert_array_equal(np.asarray(lines["a"].get_xdata()), [0.0, 1.0, 3.0, 4.0])
    np.testing.assert_array_equal(np.asarray(lines["a"].get_ydata()),
                                  [math.nan, 10.0, 20.0, 10.0])
    assert ax.get_xlabel() == "time (s)"
    assert ax.get_ylabel() == "value / s"


def test_rates_of_a_single_snapshot_say_no_data() -> None:
    df = counter_history(False)
    ax = rates(df[df["time"] == 0.0])
    assert [t.get_text() for t in ax.texts] == ["no data"]


# -- axes, output, accessor ----------------------------------------------------------------

PLOTTERS = [
    (hist, lambda: log2_hist([1, 2, 3])),
    (heatmap, lambda: hist_history([[1, 2], [3, 4]])),
    (per_cpu_bars, long_frame),
    (per_cpu_heatmap, long_frame),
    (top_bars, lambda: map_frame(5)),
    (rates, lambda: counter_history(True)),
]


@pytest.mark.parametrize(("fn", "make"), PLOTTERS)
def test_every_plot_draws_on_the_given_axes(fn: object, make: object) -> None:
    fig, ax = plt.subplots()
    assert fn(make(), ax=ax) is ax  # type: ignore[operator]
    assert fig.axes[0] is ax


def test_figure_png_renders_figure_and_axes() -> None:
    fig, ax = plt.subplots(figsize=(4, 3), layout="constrained")
    hist(log2_hist([1, 2, 3]), ax=ax)
    for png in (figure_png(ax), figure_png(fig)):
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", png[16:24])
        assert 380 <= width <= 440 and 280 <= height <= 340   # 4 x 3 in at 100 dpi
    with pytest.raises(TypeError):
        figure_png("not a figure")  # type: ignore[arg-type]


@pytest.mark.parametrize(("make", "expected"), [
    (lambda: log2_hist([1, 2]), hist),
    (lambda: hist_history([[1], [2]]), heatmap),
    (lambda: counter_history(False), rates),
    (long_frame, per_cpu_bars),
    (lambda: map_frame(3), top_bars),
])
def test_accessor_plot_dispatch(make: object, expected: object,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    df = make()  # type: ignore[operator]
    assert plot.plot_for(df) is expected
    seen: list[str] = []
    def fake(name: str) -> object:
        def draw(df: pd.DataFrame, **kwargs: object) -> str:
            seen.append(name)
            return "ax"
        return draw

    table = [(test, fake(fn.__name__)) for test, fn in plot.PLOTS]
    monkeypatch.setattr(plot, "PLOTS", table)
    assert df.bpf.plot(top=3) == "ax"
    assert seen == [expected.__name__]


def test_accessor_methods_draw() -> None:
    df = map_frame(4)
    assert tick_texts(df.bpf.top_bars(top=2).get_yticklabels()) == ["3 p3", "2 p2"]
    assert bar_heights(plot.BpfAccessor(log2_hist([4, 5])).hist()) == [4.0, 5.0]
    assert isinstance(long_frame().bpf.per_cpu_bars(), Axes)
    assert isinstance(long_frame().bpf.per_cpu_heatmap(), Axes)
    assert isinstance(hist_history([[1], [2]]).bpf.heatmap(), Axes)
    assert isinstance(counter_history(True).bpf.rates(), Axes)


def test_rates_without_key_columns_label_the_series_by_value() -> None:
    df = pd.DataFrame({"time": [0.0, 2.0, 3.0], "value": np.array([1, 5, 11], np.uint64)})
    got = rate_frame(df)
    assert list(got.columns) == ["value"]
    np.testing.assert_array_equal(got["value"].to_numpy(), [math.nan, 2.0, 6.0])
    assert [ln.get_label() for ln in rates(df).get_lines()] == ["value"]


def test_heatmap_of_one_snapshot_spans_one_second() -> None:
    ax = heatmap(hist_history([[3, 4]]))
    assert ax.get_xlim() == pytest.approx((-0.5, 0.5))
    assert grid_of(ax, 2, 1) == [[3], [4]]


def test_many_bars_keep_at_most_40_key_labels() -> None:
    ax = top_bars(map_frame(100), top=100)
    assert len(ax.containers[0]) == 100
    labels = tick_texts(ax.get_yticklabels())
    assert len(labels) == 34 and labels[:2] == ["99 p99", "96 p96"]


def test_hist_of_a_frames_hist_frame() -> None:
    from bpfnb.data.frames import hist_frame

    raw = pd.DataFrame({"slot": np.array([1, 3, 4], np.uint32),
                        "value": np.array([2, 6, 2], np.uint64)})
    raw.attrs.update(map="lat", key_columns=["slot"], value_columns=["value"])
    buckets = hist_frame(raw)
    ax = hist(buckets)
    assert bar_heights(ax) == [2.0, 0.0, 6.0, 2.0]
    assert tick_texts(ax.get_xticklabels()) == ["0-1", "2-3", "4-7", "8-15"]
    assert percentiles(buckets, (50,)) == {50.0: 6.0}    # 5th of 10 is 3/6 into [4, 8)
    assert plot.plot_for(buckets) is hist
