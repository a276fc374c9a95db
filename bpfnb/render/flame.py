"""Flame and icicle graphs drawn: by matplotlib, or in the browser.

The tree itself (a prefix tree of stacks) is bpfnb.profiler.flametree.FlameTree; this
module only draws one. `plot` draws on matplotlib axes; `to_html` writes a
self-contained interactive view (canvas + inline script, no network) from the
package data files static/flame.html, .css and .js: click a frame to zoom, type in
the search box to highlight matches, hover for counts and percentages. The HTML
carries a static PNG that shows where scripts do not run (GitHub, nbviewer).
"""

from __future__ import annotations

import base64
import functools
import html as _html
import json
import re
import uuid
import zlib
from importlib import resources
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes

ROOT, COMM, USER, KERNEL, MISSING = range(5)
_MAX_HTML_NODES = 60_000


class Tree(Protocol):
    """What the drawing functions need of a flame tree (bpfnb.profiler.flametree.FlameTree):
    nodes in pre-order, `value[:, 0]` the drawn width."""

    names: list[str]
    name_id: np.ndarray
    depth: np.ndarray
    start: np.ndarray
    value: np.ndarray
    self_value: np.ndarray
    kind: np.ndarray

    @property
    def total(self) -> float: ...

    def __len__(self) -> int: ...

    def label(self, i: int) -> str: ...


# ---------------------------------------------------------------- colours


def _hash01(name: str, salt: int) -> float:
    return (zlib.crc32(name.encode("utf-8", "replace"), salt) & 0xFFFF) / 0xFFFF


def frame_color(name: str, kind: int) -> tuple[float, float, float]:
    """Deterministic colour of a frame: warm for user code, aqua for kernel, grey otherwise."""
    a, b = _hash01(name, 1), _hash01(name, 2)
    if kind == USER:
        return (0.86 + 0.12 * a, 0.32 + 0.45 * b, 0.12 + 0.15 * a)
    if kind == KERNEL:
        return (0.30 + 0.20 * a, 0.72 + 0.18 * b, 0.78 + 0.17 * a)
    if kind == MISSING:
        return (0.62, 0.62, 0.62)
    return (0.84 + 0.05 * a, 0.84 + 0.05 * a, 0.80 + 0.05 * b)


def hot_colors(tree: Tree) -> np.ndarray:
    """(nodes, 3) RGB in [0, 1] from each node's name and kind."""
    cache: dict[tuple[int, int], tuple[float, float, float]] = {}
    out = np.empty((len(tree), 3))
    for i, (nid, kd) in enumerate(zip(tree.name_id.tolist(), tree.kind.tolist())):
        c = cache.get((nid, kd))
        if c is None:
            c = cache[(nid, kd)] = frame_color(tree.names[nid], kd)
        out[i] = c
    return out


def diff_colors(after: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Red where a node's share grew, blue where it shrank, white where unchanged.

    `after` and `before` are inclusive weights already on the same scale.
    """
    delta = after - before
    scale = float(np.abs(delta).max()) if len(delta) else 0.0
    t = np.clip(delta / scale, -1, 1) if scale > 0 else np.zeros_like(delta)
    out = np.ones((len(t), 3))
    grew, shrank = t > 0, t < 0
    out[grew, 1] = out[grew, 2] = 1 - 0.8 * t[grew]
    out[shrank, 0] = out[shrank, 1] = 1 + 0.8 * t[shrank]
    return out


def _hex(rgb: np.ndarray) -> list[str]:
    v = np.clip(np.round(rgb * 255), 0, 255).astype(int)
    return ["#" + "".join(f"{c:02x}" for c in row) for row in v.tolist()]


# ---------------------------------------------------------------- matplotlib


def plot(tree: Tree, colors: np.ndarray, *, icicle: bool = False, ax: Axes | None = None,
         title: str | None = None, fontsize: float = 8.0, unit: str = "samples") -> Axes:
    """Draw the tree as a flame graph (root at the bottom) or an icicle graph (root on top)."""
    if ax is None:
        import matplotlib.pyplot as plt

        rows = int(tree.depth.max()) + 1 if len(tree) else 1
        _, ax = plt.subplots(figsize=(12, min(0.22 * rows + 0.8, 40)), layout="constrained")
    draw(ax, tree, colors, icicle=icicle, title=title, fontsize=fontsize, unit=unit)
    return ax


def draw(ax: Axes, tree: Tree, colors: np.ndarray, *, icicle: bool = False,
         title: str | None = None, fontsize: float = 8.0, unit: str = "samples") -> None:
    from matplotlib.collections import PolyCollection

    total = tree.total
    rows = int(tree.depth.max()) + 1 if len(tree) else 1
    dpi = float(ax.figure.dpi)
    width_px = float(ax.get_window_extent().width)
    px = total / max(width_px, 1.0) if total else 1.0
    widths = tree.value[:, 0]
    visible = np.flatnonzero(widths >= 0.5 * px) if total else np.zeros(0, np.int64)
    x0 = tree.start[visible]
    x1 = x0 + widths[visible]
    y0 = tree.depth[visible].astype(float)
    pad = min(0.5 * px, 0.2 * widths[visible].min()) if len(visible) else 0.0
    verts = np.stack([np.stack([x0, y0], 1), np.stack([x0, y0 + 0.92], 1),
                      np.stack([x1 - pad, y0 + 0.92], 1), np.stack([x1 - pad, y0], 1)], 1)
    ax.add_collection(PolyCollection(list(verts), facecolors=colors[visible], edgecolors="none"))
    char_px = fontsize * 0.62 * dpi / 72
    for i in visible.tolist():
        chars = int(widths[i] / px / char_px) - 1
        if chars < 3:
            continue
        name = tree.label(i)
        text = name if len(name) <= chars else name[: chars - 2] + ".."
        ax.text(tree.start[i] + 2 * px, tree.depth[i] + 0.46, text, fontsize=fontsize,
                va="center", ha="left", clip_on=True, family="monospace")
    ax.set_xlim(0, total or 1)
    ax.set_ylim(rows, 0) if icicle else ax.set_ylim(0, rows)
    ax.set_yticks([])
    ax.set_xlabel("µs off CPU" if unit == "us" else unit)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title)


def png(tree: Tree, colors: np.ndarray, *, icicle: bool = False,
        title: str | None = None, dpi: int = 80, unit: str = "samples") -> bytes:
    """The static picture as PNG bytes, drawn without pyplot (no figure left open)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = int(tree.depth.max()) + 1 if len(tree) else 1
    fig = Figure(figsize=(12, min(0.22 * rows + 0.8, 40)), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    draw(ax, tree, colors, icicle=icicle, title=title, unit=unit)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# ---------------------------------------------------------------- HTML


def _payload(tree: Tree, colors: np.ndarray, before: np.ndarray | None) -> dict[str, Any]:
    keep = np.flatnonzero(tree.value[:, 0] > 0)
    if len(keep) > _MAX_HTML_NODES:  # drop the narrowest frames; their parents keep the time
        cut = np.sort(tree.value[keep, 0])[-_MAX_HTML_NODES]
        keep = keep[tree.value[keep, 0] >= cut]
    hexes = _hex(colors[keep])
    palette = sorted(set(hexes))
    pidx = {c: i for i, c in enumerate(palette)}
    used = np.unique(tree.name_id[keep])
    remap = np.full(len(tree.names), -1, np.int64)
    remap[used] = np.arange(len(used))

    def nums(a: np.ndarray) -> list[float | int]:
        r = np.round(a, 3)
        return [int(v) if v == int(v) else v for v in r.tolist()]

    data: dict[str, Any] = {
        "names": [tree.names[i] for i in used.tolist()],
        "name": remap[tree.name_id[keep]].tolist(),
        "depth": tree.depth[keep].tolist(),
        "start": nums(tree.start[keep]),
        "value": nums(tree.value[keep, 0]),
        "self": nums(tree.self_value[keep, 0]),
        "kind": tree.kind[keep].tolist(),
        "color": [pidx[c] for c in hexes],
        "palette": palette,
    }
    if before is not None:
        data["before"] = nums(before[keep])
    return data


def to_html(tree: Tree, colors: np.ndarray, *, title: str = "", icicle: bool = False,
            before: np.ndarray | None = None, static_png: bytes | None = None,
            unit: str = "samples") -> str:
    """A self-contained interactive flame graph; `before` makes it a differential view."""
    uid = "bpfnb-flame-" + uuid.uuid4().hex[:12]
    data = _payload(tree, colors, before)
    data.update(title=title, icicle=icicle, unit=unit, diff=before is not None)
    blob = json.dumps(data, separators=(",", ":"))
    blob = blob.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    img = ""
    if static_png:
        b64 = base64.b64encode(static_png).decode()
        img = (f'<img class="bpfnb-static" alt="{_html.escape(title or "flame graph")}" '
               f'style="max-width:100%" src="data:image/png;base64,{b64}">')
    parts = {"__UID__": uid, "__DATA__": blob, "__IMG__": img, "__TITLE__": _html.escape(title),
             "__CSS__": _static("flame.css"), "__JS__": _static("flame.js").replace("__UID__", uid)}
    return _PLACEHOLDER.sub(lambda m: parts[m.group(0)], _static("flame.html"))


_PLACEHOLDER = re.compile(r"__(UID|DATA|IMG|TITLE|CSS|JS)__")


@functools.cache
def _static(name: str) -> str:
    """A package data file of the interactive view (bpfnb/render/static/)."""
    return resources.files("bpfnb.render").joinpath("static", name).read_text(encoding="utf-8")
