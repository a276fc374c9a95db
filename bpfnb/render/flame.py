"""Flame and icicle graphs: a prefix tree of stacks, drawn by matplotlib or in the browser.

`FlameTree.build` merges stacks (root first) into a tree laid out left to right in
alphabetical order, as flame graphs are. `plot` draws it on matplotlib axes;
`to_html` writes a self-contained interactive view (canvas + inline script, no
network): click a frame to zoom, type in the search box to highlight matches,
hover for counts and percentages. The HTML carries a static PNG that shows
where scripts do not run (GitHub, nbviewer).
"""

from __future__ import annotations

import base64
import html as _html
import json
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes

ROOT, COMM, USER, KERNEL, MISSING = range(5)
KIND_NAMES = ("root", "process", "user", "kernel", "missing")
_MAX_HTML_NODES = 60_000


@dataclass
class FlameTree:
    """Nodes in pre-order. `value[:, 0]` is the drawn width; more columns ride along."""

    names: list[str]
    name_id: np.ndarray
    depth: np.ndarray
    start: np.ndarray
    value: np.ndarray  # (nodes, k) inclusive weights
    self_value: np.ndarray  # (nodes, k) weights of stacks ending at the node
    kind: np.ndarray

    @property
    def total(self) -> float:
        return float(self.value[0, 0]) if len(self.depth) else 0.0

    def __len__(self) -> int:
        return len(self.depth)

    def label(self, i: int) -> str:
        return self.names[int(self.name_id[i])]

    @classmethod
    def build(cls, paths: Sequence[Sequence[str]], weights: np.ndarray,
              kinds: Sequence[Sequence[int]] | None = None, root: str = "all") -> FlameTree:
        """Merge paths (root first) with weights of shape (n,) or (n, k)."""
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim == 1:
            w = w[:, None]
        k = w.shape[1]
        names: dict[str, int] = {root: 0}
        name_id, depth, start, kind = [0], [0], [0.0], [ROOT]
        parents_of: list[list[int]] = []
        open_nodes = [0]
        prev: Sequence[str] = ()
        x = 0.0
        order = sorted(range(len(paths)), key=lambda i: tuple(paths[i]))
        for i in order:
            p = paths[i]
            n = min(len(p), len(prev))
            common = 0
            while common < n and p[common] == prev[common]:
                common += 1
            del open_nodes[common + 1 :]
            for d in range(common, len(p)):
                open_nodes.append(len(depth))
                name_id.append(names.setdefault(p[d], len(names)))
                depth.append(d + 1)
                start.append(x)
                kind.append(kinds[i][d] if kinds is not None else USER)
            parents_of.append(list(open_nodes))
            x += float(w[i, 0])
            prev = p
        value = np.zeros((len(depth), k))
        self_value = np.zeros((len(depth), k))
        for row, nodes in zip(order, parents_of):
            value[nodes] += w[row]
            self_value[nodes[-1]] += w[row]
        return cls(list(names), np.array(name_id, np.int64), np.array(depth, np.int64),
                   np.array(start), value, self_value, np.array(kind, np.int64))

    def matches(self, needle: str) -> np.ndarray:
        """Boolean mask of nodes whose name contains needle (case-insensitive)."""
        low = needle.lower()
        hit = np.array([low in n.lower() for n in self.names], dtype=bool)
        return hit[self.name_id] if len(hit) else np.zeros(0, bool)


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


def hot_colors(tree: FlameTree) -> np.ndarray:
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


def plot(tree: FlameTree, colors: np.ndarray, *, icicle: bool = False, ax: Axes | None = None,
         title: str | None = None, fontsize: float = 8.0) -> Axes:
    """Draw the tree as a flame graph (root at the bottom) or an icicle graph (root on top)."""
    if ax is None:
        import matplotlib.pyplot as plt

        rows = int(tree.depth.max()) + 1 if len(tree) else 1
        _, ax = plt.subplots(figsize=(12, min(0.22 * rows + 0.8, 40)), layout="constrained")
    draw(ax, tree, colors, icicle=icicle, title=title, fontsize=fontsize)
    return ax


def draw(ax: Axes, tree: FlameTree, colors: np.ndarray, *, icicle: bool = False,
         title: str | None = None, fontsize: float = 8.0) -> None:
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
    ax.set_xlabel("samples")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title)


def png(tree: FlameTree, colors: np.ndarray, *, icicle: bool = False,
        title: str | None = None, dpi: int = 80) -> bytes:
    """The static picture as PNG bytes, drawn without pyplot (no figure left open)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = int(tree.depth.max()) + 1 if len(tree) else 1
    fig = Figure(figsize=(12, min(0.22 * rows + 0.8, 40)), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    draw(ax, tree, colors, icicle=icicle, title=title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# ---------------------------------------------------------------- HTML


def _payload(tree: FlameTree, colors: np.ndarray, before: np.ndarray | None) -> dict[str, Any]:
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


def to_html(tree: FlameTree, colors: np.ndarray, *, title: str = "", icicle: bool = False,
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
    return (_TEMPLATE.replace("__UID__", uid).replace("__DATA__", blob)
            .replace("__IMG__", img).replace("__TITLE__", _html.escape(title)))


_TEMPLATE = """<div id="__UID__" class="bpfnb-flame" style="font:12px sans-serif;position:relative">
<div class="bpfnb-live" style="display:none">
<div style="display:flex;gap:6px;align-items:center;margin:2px 0 4px 0">
<b style="flex:1">__TITLE__</b>
<input type="search" placeholder="search (text or /regex/)" style="width:16em">
<button type="button" data-act="flip">icicle</button>
<button type="button" data-act="reset">reset zoom</button>
</div>
<canvas style="width:100%;display:block;cursor:pointer"></canvas>
<div class="bpfnb-info" style="min-height:1.4em;margin-top:3px;font-family:monospace;
white-space:nowrap;overflow:hidden;text-overflow:ellipsis">&nbsp;</div>
<div class="bpfnb-tip" style="position:absolute;display:none;pointer-events:none;
background:#fffff0;border:1px solid #999;padding:3px 6px;font-family:monospace;
max-width:60em;white-space:pre-wrap;z-index:10;box-shadow:1px 1px 3px #aaa"></div>
</div>
__IMG__
<script type="application/json" class="bpfnb-data">__DATA__</script>
<script>
(function () {
  var root = document.getElementById("__UID__");
  if (!root || root.dataset.ready) return;
  root.dataset.ready = "1";
  var D = JSON.parse(root.querySelector(".bpfnb-data").textContent);
  var live = root.querySelector(".bpfnb-live"), img = root.querySelector(".bpfnb-static");
  var cv = root.querySelector("canvas"), ctx = cv.getContext("2d");
  var search = root.querySelector("input"), info = root.querySelector(".bpfnb-info");
  var tip = root.querySelector(".bpfnb-tip"), flip = root.querySelector("[data-act=flip]");
  live.style.display = "block";
  if (img) img.style.display = "none";
  var N = D.depth.length, ROW = 17, total = N ? D.value[0] : 0, icicle = !!D.icicle;
  var maxDepth = 0, byDepth = [], i;
  for (i = 0; i < N; i++) {
    var d = D.depth[i];
    if (d > maxDepth) maxDepth = d;
    (byDepth[d] = byDepth[d] || []).push(i);
  }
  var zoom = 0, match = null, hover = -1;
  function fmt(v) { return (Math.round(v * 100) / 100).toLocaleString(); }
  function pct(v, of) { return of > 0 ? (100 * v / of).toFixed(2) + "%" : "-"; }
  function rowY(d, H) { return icicle ? d * ROW : H - (d + 1) * ROW; }
  function draw() {
    var W = cv.clientWidth || 800, H = (maxDepth + 1) * ROW, r = window.devicePixelRatio || 1;
    cv.width = W * r; cv.height = H * r; cv.style.height = H + "px";
    ctx.setTransform(r, 0, 0, r, 0, 0);
    ctx.clearRect(0, 0, W, H);
    ctx.font = "11px monospace"; ctx.textBaseline = "middle";
    var cw = ctx.measureText("mmmmmmmmmm").width / 10;
    var zs = D.start[zoom], zv = D.value[zoom] || 1, zd = D.depth[zoom];
    for (var j = 0; j < N; j++) {
      var s = D.start[j], e = s + D.value[j];
      if (e <= zs || s >= zs + zv) continue;
      var x0 = (Math.max(s, zs) - zs) / zv * W, x1 = (Math.min(e, zs + zv) - zs) / zv * W;
      var w = x1 - x0;
      if (w < 0.4) continue;
      var y = rowY(D.depth[j], H);
      ctx.globalAlpha = D.depth[j] < zd ? 0.55 : 1;
      ctx.fillStyle = match && match[j] ? "#d35bff" : D.palette[D.color[j]];
      ctx.fillRect(x0, y + 0.5, Math.max(w - 0.7, 0.4), ROW - 1);
      if (j === hover) {
        ctx.strokeStyle = "#000"; ctx.strokeRect(x0 + .5, y + 1, w - 1.2, ROW - 2);
      }
      var n = Math.floor((w - 6) / cw);
      if (n >= 3) {
        var label = D.names[D.name[j]];
        if (label.length > n) label = label.slice(0, n - 2) + "..";
        ctx.fillStyle = "#000";
        ctx.fillText(label, x0 + 3, y + ROW / 2 + 0.5);
      }
    }
    ctx.globalAlpha = 1;
  }
  function at(ev) {
    var rect = cv.getBoundingClientRect(), W = rect.width, H = (maxDepth + 1) * ROW;
    var y = ev.clientY - rect.top, d = icicle ? Math.floor(y / ROW) : Math.floor((H - y) / ROW);
    var row = byDepth[d];
    if (!row) return -1;
    var zs = D.start[zoom], zv = D.value[zoom] || 1;
    var v = zs + (ev.clientX - rect.left) / W * zv, lo = 0, hi = row.length - 1;
    while (lo <= hi) {
      var mid = (lo + hi) >> 1, k = row[mid];
      if (D.start[k] + D.value[k] <= v) lo = mid + 1;
      else if (D.start[k] > v) hi = mid - 1;
      else return k;
    }
    return -1;
  }
  function describe(k) {
    var name = D.names[D.name[k]], z = D.value[zoom];
    var t = name + "\\n" + fmt(D.value[k]) + " " + D.unit + " (" + pct(D.value[k], total) +
      " of all" + (zoom ? ", " + pct(D.value[k], z) + " of zoom" : "") + "), self " +
      fmt(D.self[k]);
    if (D.diff) {
      var b = D.before[k], a = D.value[k];
      t += "\\nbefore " + pct(b, total) + " -> after " + pct(a, total) + "  (" +
        (a >= b ? "+" : "") + (100 * (a - b) / (total || 1)).toFixed(2) + " points)";
    }
    return t;
  }
  cv.addEventListener("mousemove", function (ev) {
    var k = at(ev);
    if (k !== hover) { hover = k; draw(); }
    if (k < 0) { tip.style.display = "none"; return; }
    tip.textContent = describe(k);
    var box = root.getBoundingClientRect();
    tip.style.display = "block";
    var left = ev.clientX - box.left + 12;
    if (left + tip.offsetWidth > box.width) left = Math.max(0, box.width - tip.offsetWidth);
    tip.style.left = left + "px";
    tip.style.top = (ev.clientY - box.top + 14) + "px";
  });
  cv.addEventListener("mouseleave", function () {
    hover = -1; tip.style.display = "none"; draw();
  });
  cv.addEventListener("click", function (ev) {
    var k = at(ev);
    if (k < 0) return;
    zoom = (k === zoom) ? 0 : k;
    info.textContent = zoom ? "zoomed: " + D.names[D.name[zoom]] : "\\u00a0";
    draw();
  });
  root.querySelector("[data-act=reset]").addEventListener("click", function () {
    zoom = 0; info.textContent = "\\u00a0"; draw();
  });
  flip.textContent = icicle ? "flame" : "icicle";
  flip.addEventListener("click", function () {
    icicle = !icicle; flip.textContent = icicle ? "flame" : "icicle"; draw();
  });
  search.addEventListener("input", function () {
    var q = search.value, re = null;
    if (!q) { match = null; info.textContent = "\\u00a0"; draw(); return; }
    try {
      var m = /^\\/(.*)\\/$/.exec(q);
      var esc = q.replace(/[.*+?^${}()|[\\]\\\\]/g, "\\\\$&");
      re = new RegExp(m ? m[1] : esc, "i");
    } catch (err) { info.textContent = "bad regex: " + err.message; return; }
    var hitName = D.names.map(function (n) { return re.test(n); });
    match = new Array(N);
    var sum = 0, count = 0, openDepth = -1;
    for (var j = 0; j < N; j++) {
      match[j] = hitName[D.name[j]];
      if (openDepth >= 0 && D.depth[j] <= openDepth) openDepth = -1;
      if (match[j]) {
        count++;
        if (openDepth < 0) { sum += D.value[j]; openDepth = D.depth[j]; }
      }
    }
    info.textContent = "matched " + count + " frames, " + fmt(sum) + " " + D.unit +
      " (" + pct(sum, total) + ")";
    draw();
  });
  if (window.ResizeObserver) new ResizeObserver(function () { draw(); }).observe(cv);
  draw();
})();
</script>
</div>"""
