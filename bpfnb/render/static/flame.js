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
    var t = name + "\n" + fmt(D.value[k]) + " " + D.unit + " (" + pct(D.value[k], total) +
      " of all" + (zoom ? ", " + pct(D.value[k], z) + " of zoom" : "") + "), self " +
      fmt(D.self[k]);
    if (D.diff) {
      var b = D.before[k], a = D.value[k];
      t += "\nbefore " + pct(b, total) + " -> after " + pct(a, total) + "  (" +
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
    info.textContent = zoom ? "zoomed: " + D.names[D.name[zoom]] : "\u00a0";
    draw();
  });
  root.querySelector("[data-act=reset]").addEventListener("click", function () {
    zoom = 0; info.textContent = "\u00a0"; draw();
  });
  flip.textContent = icicle ? "flame" : "icicle";
  flip.addEventListener("click", function () {
    icicle = !icicle; flip.textContent = icicle ? "flame" : "icicle"; draw();
  });
  search.addEventListener("input", function () {
    var q = search.value, re = null;
    if (!q) { match = null; info.textContent = "\u00a0"; draw(); return; }
    try {
      var m = /^\/(.*)\/$/.exec(q);
      var esc = q.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
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
