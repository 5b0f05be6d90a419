// The compare page: one legend (a colour per run, the same in every chart), the best run by a
// chosen metric marked everywhere, parallel coordinates of the parameters that differ and that
// metric, a parameter-against-metric scatter (both small hand-written SVG), the line charts of
// every metric (charts.js), and the table's "only differences" switch. Names and values are put
// in as text, never as markup.
"use strict";

(() => {
  const SVG = "http://www.w3.org/2000/svg";
  const table = document.getElementById("compare-table");
  const onlyDiff = document.getElementById("only-diff");
  if (onlyDiff) onlyDiff.addEventListener("change", (e) => table.classList.toggle("only-diff", e.target.checked));

  const set = document.getElementById("compare-set");
  const runs = set ? JSON.parse(set.dataset.runs) : [];
  runs.forEach((r, i) => { r.color = FY.color(i); });

  const box = document.getElementById("compare-charts");
  if (box && runs.length) {
    const panel = new FY.MetricsPanel(box, { runs: runs.map((r) => ({ id: r.id, label: r.label })), system: false });
    panel.refresh().catch((e) => { box.append(`Cannot load the metrics: ${e.message}`); });
  }
  if (!set || !runs.length) return;

  const metrics = JSON.parse(set.dataset.metrics);
  const params = JSON.parse(set.dataset.params);
  const metricSelect = document.getElementById("best-metric");
  const goalSelect = document.getElementById("best-goal");
  const paramSelect = document.getElementById("scatter-param");
  const option = (select, value) => { const o = document.createElement("option"); o.value = value; o.textContent = value; select.append(o); };
  metrics.forEach((m) => option(metricSelect, m));
  // Parameters whose value differs between runs are the ones worth plotting.
  const differing = params.filter((p) => new Set(runs.map((r) => r.params[p])).size > 1);
  (differing.length ? differing : params).forEach((p) => option(paramSelect, p));
  const objective = set.dataset.objective;
  if (objective && metrics.includes(objective)) metricSelect.value = objective;
  else { const loss = metrics.find((m) => /loss|err|rmse|mae/i.test(m)); if (loss) metricSelect.value = loss; }
  goalSelect.value = set.dataset.minimize === "false" ? "max" : "min";

  const el = (name, attrs, text) => {
    const e = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const numeric = (values) => values.every((v) => v === undefined || v === null || (v !== "" && Number.isFinite(Number(v))));

  // An axis over the runs' values: numbers linearly, anything else as evenly spaced categories.
  function scale(values, top, bottom) {
    const present = values.filter((v) => v !== undefined && v !== null);
    if (present.length && numeric(present)) {
      const xs = present.map(Number);
      let low = Math.min(...xs), high = Math.max(...xs);
      if (high === low) { low -= 1; high += 1; }
      const at = (v) => (v === undefined || v === null ? null : bottom - ((Number(v) - low) / (high - low)) * (bottom - top));
      return { at, ticks: [[FY.formatNumber(high), top], [FY.formatNumber(low), bottom]] };
    }
    // Categories inside the axis, clear of its ends (and of the other axis at a scatter's corner).
    const cats = [...new Set(present.map(String))].sort();
    const step = (bottom - top) / cats.length;
    const where = new Map(cats.map((c, i) => [c, top + (i + 0.5) * step]));
    return { at: (v) => (v === undefined || v === null ? null : where.get(String(v))), ticks: [...where.entries()] };
  }

  function best(metric, goal) {
    let found = null;
    for (const r of runs) {
      const v = r.metrics[metric];
      if (v === undefined || v === null || !Number.isFinite(v)) continue;
      if (!found || (goal === "min" ? v < found.metrics[metric] : v > found.metrics[metric])) found = r;
    }
    return found;
  }

  function legend(bestRun) {
    const list = document.getElementById("compare-legend");
    list.replaceChildren(...runs.map((r) => {
      const li = document.createElement("li");
      li.dataset.run = r.id;
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = r.color;
      const link = document.createElement("a");
      link.href = `${FY.prefix}/jobs/${encodeURIComponent(r.id)}`;
      link.textContent = r.label;
      li.append(swatch, link);
      if (bestRun && r.id === bestRun.id) { li.classList.add("best"); li.append(" ★ best"); }
      return li;
    }));
  }

  function parallel(metric, bestRun) {
    const names = [...differing.slice(0, 8), metric];
    const W = 640, H = 240, PAD = 36, top = PAD, bottom = H - 24;
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart parallel", role: "img", "aria-label": "runs as parallel coordinates" });
    const gap = (W - 2 * PAD) / Math.max(names.length - 1, 1);
    const axes = names.map((name, i) => {
      const isMetric = i === names.length - 1;
      const values = runs.map((r) => (isMetric ? r.metrics[name] : r.params[name]));
      return { name, x: PAD + i * gap, s: scale(values, top, bottom), value: (r) => (isMetric ? r.metrics[name] : r.params[name]) };
    });
    // The best run last: drawn on top.
    const order = [...runs].sort((a, b) => (a === bestRun) - (b === bestRun));
    for (const r of order) {
      const pts = axes.map((a) => [a.x, a.s.at(a.value(r))]).filter((p) => p[1] !== null && p[1] !== undefined);
      if (pts.length < 2) continue;
      const isBest = bestRun && r.id === bestRun.id;
      const line = el("polyline", {
        points: pts.map((p) => `${p[0].toFixed(1)},${p[1].toFixed(1)}`).join(" "), fill: "none", stroke: r.color,
        "stroke-width": isBest ? 3.5 : 1.5, "stroke-opacity": isBest ? 1 : 0.7, "data-run": r.id,
      });
      if (isBest) line.classList.add("best");
      line.append(el("title", {}, r.label));
      svg.append(line);
    }
    for (const a of axes) {
      svg.append(el("line", { x1: a.x, x2: a.x, y1: top, y2: bottom, stroke: "#111827" }));
      svg.append(el("text", { x: a.x, y: 14, "font-size": 11, "text-anchor": "middle", class: "axis-name" }, a.name));
      // The last axis's labels on its left: inside the drawing.
      const last = a === axes[axes.length - 1] && axes.length > 1;
      for (const [label, y] of a.s.ticks) svg.append(el("text", { x: last ? a.x - 4 : a.x + 4, y: y + 4, "font-size": 10, "text-anchor": last ? "end" : "start" }, label));
    }
    document.getElementById("parallel").replaceChildren(svg);
  }

  function scatter(param, metric, bestRun) {
    document.getElementById("scatter-title").textContent = param ? `${metric} against ${param}` : metric;
    const W = 420, H = 260, L = 56, R = 16, T = 16, B = 36;
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart scatter", role: "img", "aria-label": `${metric} against ${param}` });
    if (!param || !metric) { document.getElementById("scatter").replaceChildren(svg); return; }
    // x: the parameter (left to right), y: the metric (low at the bottom).
    const xs = scale(runs.map((r) => r.params[param]), L, W - R);
    const xAt = (v) => { const y = xs.at(v); return y === null ? null : L + (W - R) - y; };
    const ys = scale(runs.map((r) => r.metrics[metric]), T, H - B);
    svg.append(el("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: "#111827" }));
    svg.append(el("line", { x1: L, x2: L, y1: T, y2: H - B, stroke: "#111827" }));
    for (const [label, at] of xs.ticks) svg.append(el("text", { x: L + (W - R) - at, y: H - B + 14, "font-size": 10, "text-anchor": "middle" }, label));
    for (const [label, y] of ys.ticks) svg.append(el("text", { x: L - 4, y: y + 4, "font-size": 10, "text-anchor": "end" }, label));
    svg.append(el("text", { x: (L + W - R) / 2, y: H - 4, "font-size": 11, "text-anchor": "middle", class: "axis-name" }, param));
    let drawn = 0;
    for (const r of runs) {
      const x = xAt(r.params[param]), y = ys.at(r.metrics[metric]);
      if (x === null || x === undefined || y === null || y === undefined) continue;
      const isBest = bestRun && r.id === bestRun.id;
      const dot = el("circle", { cx: x.toFixed(1), cy: y.toFixed(1), r: isBest ? 7 : 5, fill: r.color, "data-run": r.id, "fill-opacity": 0.85 });
      if (isBest) { dot.classList.add("best"); dot.setAttribute("stroke", "#111827"); dot.setAttribute("stroke-width", 2.5); }
      dot.append(el("title", {}, `${r.label}: ${param}=${r.params[param]}, ${metric}=${FY.formatNumber(r.metrics[metric])}`));
      svg.append(dot);
      drawn += 1;
    }
    svg.dataset.points = String(drawn);
    document.getElementById("scatter").replaceChildren(svg);
  }

  function draw() {
    const metric = metricSelect.value, goal = goalSelect.value;
    const bestRun = metric ? best(metric, goal) : null;
    const note = document.getElementById("best-note");
    note.textContent = bestRun ? `best: ${bestRun.label}, ${metric} = ${FY.formatNumber(bestRun.metrics[metric])}` : "no run logged this metric";
    set.dataset.best = bestRun ? bestRun.id : "";
    for (const cell of table.querySelectorAll("td.best")) cell.classList.remove("best");
    if (bestRun) {
      for (const row of table.querySelectorAll("tr[data-metric]")) {
        if (row.dataset.metric !== metric) continue;
        for (const cell of row.querySelectorAll("td[data-run]")) if (cell.dataset.run === bestRun.id) cell.classList.add("best");
      }
    }
    legend(bestRun);
    if (metric) { parallel(metric, bestRun); scatter(paramSelect.value, metric, bestRun); }
  }
  for (const s of [metricSelect, goalSelect, paramSelect]) s.addEventListener("change", draw);
  draw();
})();
