// Metric charts with uPlot (vendored, MIT): one chart per metric, one line per run, grouped by
// the key's prefix (train/, val/ ...), with a toolbar: name filter, smoothing, log scale and the
// x axis (step, wall time, time since the run's start). Hovering shows each line's value.
//
// Histories come sampled from the server (/studio/metric-history: every metric of the runs in
// one answer, at most POINTS values per line); a live job asks only for what was logged since.
"use strict";

FY.colors = ["#2457d6", "#d92d20", "#079455", "#dc6803", "#7a5af8", "#0e9384", "#c11574", "#475467", "#4e5ba6", "#a15c07"];

// A run's colour, the same in every chart of a page: the palette, then hues a golden angle apart.
FY.color = (i) => (i < FY.colors.length ? FY.colors[i] : `hsl(${Math.round((i * 137.508) % 360)} 65% 42%)`);

FY.POINTS = 500;

// Exponential moving average with TensorBoard's debiasing (the first values are not pulled
// towards zero); gaps (null) stay gaps.
FY.smooth = (values, weight) => {
  if (!weight) return values;
  let last = 0, n = 0;
  return values.map((v) => {
    if (v === null || !Number.isFinite(v)) return v;
    last = last * weight + (1 - weight) * v;
    n += 1;
    return last / (1 - weight ** n);
  });
};

FY.formatNumber = (v) => {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(3);
  return String(Number(v.toPrecision(5)));
};

FY.formatSeconds = (s) => {
  if (s === null || s === undefined) return "—";
  const sign = s < 0 ? "-" : "";
  s = Math.abs(s);
  if (s < 60) return `${sign}${Number(s.toFixed(1))} s`;
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  return h ? `${sign}${h}h ${String(m).padStart(2, "0")}m` : `${sign}${m}m ${String(sec).padStart(2, "0")}s`;
};

FY.Chart = class {
  constructor(parent, title) {
    this.box = document.createElement("div");
    this.box.className = "chart";
    this.box.dataset.metric = title;
    const h = document.createElement("h3");
    h.textContent = title;
    this.note = document.createElement("span");
    this.note.className = "muted small sampled";
    h.append(" ", this.note);
    this.box.append(h);
    parent.append(this.box);
    this.plot = null;
    this.shape = null;
    window.addEventListener("resize", () => this.plot && this.plot.setSize(this.size()));
  }

  size() {
    const width = Math.max(this.box.clientWidth - 16, 200);
    return { width, height: Math.round(Math.min(260, Math.max(160, width * 0.45))) };
  }

  // lines: [{label, color, x: [...], y: [...], raw?: [...]}], sorted by x; view: {axis, log};
  // size: the chart's, when the caller measured it (else measured here).
  update(lines, view, size) {
    const columns = lines.flatMap((l) => (l.raw ? [[l.x, l.raw], [l.x, l.y]] : [[l.x, l.y]]));
    let data;
    if (columns.length === 1) data = [columns[0][0], columns[0][1]];
    else if (lines.length === 1) data = [columns[0][0], ...columns.map((c) => c[1])];
    else data = uPlot.join(columns);
    if (view.log) data = [data[0], ...data.slice(1).map((ys) => ys.map((v) => (v > 0 ? v : null)))];
    const total = lines.reduce((n, l) => n + l.x.length, 0);
    this.box.dataset.points = String(total);
    // Values drawn: a log scale leaves out what is not above zero.
    this.box.dataset.drawn = String(data.slice(1).reduce((n, ys) => n + ys.filter((v) => v !== null && v !== undefined).length, 0));
    this.box.dataset.lines = String(lines.length);
    const shape = JSON.stringify([lines.map((l) => [l.label, Boolean(l.raw)]), view.axis, view.log]);
    if (this.plot && shape === this.shape) { this.plot.setData(data); return; }
    if (this.plot) this.plot.destroy();
    this.shape = shape;
    const few = total / Math.max(lines.length, 1) < 60;
    const series = [{
      label: { step: "step", wall: "time", relative: "since start" }[view.axis],
      value: view.axis === "relative" ? (u, v) => FY.formatSeconds(v)
        : view.axis === "wall" ? (u, v) => (v === null ? "—" : new Date(v * 1000).toLocaleString()) : undefined,
    }];
    for (const l of lines) {
      if (l.raw) series.push({ label: `${l.label} (raw)`, stroke: l.color, alpha: 0.25, width: 1, spanGaps: true, points: { show: false } });
      series.push({
        label: l.label, stroke: l.color, width: 2, spanGaps: true, points: { show: few, size: 5 },
        value: (u, v) => FY.formatNumber(v),
      });
    }
    this.plot = new uPlot({
      ...(size || this.size()),
      scales: { x: { time: view.axis === "wall" }, y: view.log ? { distr: 3 } : {} },
      axes: [
        { label: series[0].label, values: view.axis === "relative" ? (u, ticks) => ticks.map(FY.formatSeconds) : undefined },
        { size: 60 },
      ],
      cursor: { drag: { x: true, y: false } },
      legend: { show: true, live: true },
      series,
    }, data, this.box);
  }
};

// The metrics of one or more runs as grouped charts with a toolbar.
//   runs: [{id, label}]; system: true for MLflow's system metrics only, false to leave them out;
//   live(): whether to keep asking for new values.
FY.MetricsPanel = class {
  constructor(root, { runs, system, live, empty, onKeys }) {
    this.root = root;
    this.runs = runs;
    this.system = system;
    this.live = live || (() => false);
    this.empty = empty;
    this.onKeys = onKeys || (() => {});
    this.data = new Map(runs.map((r) => [r.id, {}]));
    this.charts = new Map();
    this.groups = new Map();
    this.until = null;
    this.view = { axis: "step", log: false, smoothing: 0, filter: "" };
    this.toolbar();
    this.body = document.createElement("div");
    this.body.className = "chart-groups";
    root.append(this.body);
  }

  toolbar() {
    const bar = document.createElement("div");
    bar.className = "toolbar chart-toolbar";
    bar.innerHTML = `
      <input type="search" class="chart-filter" placeholder="Filter metrics" aria-label="Filter metrics by name">
      <label>x axis <select class="chart-axis" aria-label="x axis">
        <option value="step">step</option><option value="wall">wall time</option><option value="relative">time since start</option>
      </select></label>
      <label>smoothing <input type="range" class="chart-smoothing" min="0" max="0.99" step="0.01" value="0" aria-label="smoothing"></label>
      <output class="chart-smoothing-value">0</output>
      <label><input type="checkbox" class="chart-log"> log scale</label>
      <span class="muted small chart-note"></span>`;
    this.root.append(bar);
    const $ = (s) => bar.querySelector(s);
    $(".chart-filter").addEventListener("input", (e) => { this.view.filter = e.target.value; this.applyFilter(); });
    $(".chart-axis").addEventListener("change", (e) => { this.view.axis = e.target.value; this.drawAll(); });
    $(".chart-log").addEventListener("change", (e) => { this.view.log = e.target.checked; this.drawAll(); });
    $(".chart-smoothing").addEventListener("input", (e) => {
      this.view.smoothing = Number(e.target.value);
      $(".chart-smoothing-value").textContent = e.target.value;
      this.drawAll();
    });
    this.note = $(".chart-note");
  }

  url(since) {
    const q = new URLSearchParams();
    for (const r of this.runs) q.append("run", r.id);
    q.set("points", String(FY.POINTS));
    q.set("system", this.system ? "true" : "false");
    if (since !== null) q.set("since", String(since));
    return `${FY.prefix}/metric-history?${q}`;
  }

  // Ask for everything (first time, or when a live line has grown past a few samples' worth),
  // else for what was logged since the last answer.
  async refresh() {
    const grown = [...this.data.values()].some((keys) => Object.values(keys).some((s) => s.step.length > 3 * FY.POINTS));
    const since = grown ? null : this.until;
    const body = await FY.json(this.url(since));
    if (since === null) for (const r of this.runs) this.data.set(r.id, {});
    for (const [run, keys] of Object.entries(body.runs)) {
      const have = this.data.get(run);
      for (const [key, s] of Object.entries(keys)) {
        const old = have[key];
        if (!old) { have[key] = s; continue; }
        // Values logged in the millisecond the last answer ended come again: drop what is here.
        const lastT = old.time[old.time.length - 1], lastStep = old.step[old.step.length - 1];
        for (let i = 0; i < s.step.length; i++) {
          if (s.time[i] < lastT || (s.time[i] === lastT && s.step[i] <= lastStep)) continue;
          old.step.push(s.step[i]); old.time.push(s.time[i]); old.value.push(s.value[i]);
        }
        old.total = since === null ? s.total : old.total + s.total;
      }
    }
    this.until = body.until || this.until;
    this.drawAll();
    this.root.dataset.ready = String(this.charts.size);
  }

  keys() {
    const all = new Set();
    for (const keys of this.data.values()) for (const k of Object.keys(keys)) all.add(k);
    return [...all].sort();
  }

  group(key) {
    const cut = key.indexOf("/", this.system ? "system/".length : 0);
    const name = cut > 0 ? key.slice(0, cut) : "";
    if (!this.groups.has(name)) {
      const section = document.createElement("section");
      section.className = "chart-group";
      section.dataset.group = name;
      const h = document.createElement("h2");
      h.textContent = name ? `${name}/` : this.system ? "system/" : "other";
      const grid = document.createElement("div");
      grid.className = "charts";
      section.append(h, grid);
      this.groups.set(name, section);
      // Named groups in order, the ungrouped metrics last.
      const after = [...this.groups.keys()].filter((g) => g && (g > name || !name)).sort()[0];
      const before = name ? (after !== undefined ? this.groups.get(after) : this.groups.get("")) : null;
      this.body.insertBefore(section, before && before !== section ? before : null);
    }
    return this.groups.get(name).querySelector(".charts");
  }

  lines(key) {
    const lines = [];
    this.runs.forEach((run, i) => {
      const s = this.data.get(run.id)[key];
      if (!s) return;
      const start = this.start(run.id);
      let x;
      if (this.view.axis === "wall") x = s.time.map((t) => t / 1000);
      else if (this.view.axis === "relative") x = s.time.map((t) => (t - start) / 1000);
      else x = s.step;
      // A metric logged without steps (all at one step) is drawn in logging order.
      if (this.view.axis === "step" && s.step.length > 1 && s.step[0] === s.step[s.step.length - 1]) x = s.step.map((_, j) => j);
      const order = x.map((_, j) => j);
      if (x.some((v, j) => j && v < x[j - 1])) order.sort((a, b) => x[a] - x[b]);
      const xs = order.map((j) => x[j]);
      const raw = order.map((j) => s.value[j]);
      const smoothed = FY.smooth(raw, this.view.smoothing);
      lines.push({
        label: run.label, color: FY.color(i), x: xs, y: smoothed,
        raw: this.view.smoothing ? raw : null, sampled: s.total > s.step.length, total: s.total,
      });
    });
    return lines;
  }

  start(runId) {
    let start = Infinity;
    for (const s of Object.values(this.data.get(runId))) if (s.time.length) start = Math.min(start, s.time[0]);
    return start;
  }

  drawAll() {
    const keys = this.keys();
    if (this.empty) this.empty.hidden = keys.length > 0;
    this.onKeys(keys.length);
    let sampled = 0;
    // New charts' boxes all in place first, then measured together: one layout, not one a chart.
    const added = keys.filter((key) => !this.charts.has(key));
    for (const key of added) this.charts.set(key, new FY.Chart(this.group(key), key));
    const sizes = new Map(added.map((key) => [key, this.charts.get(key).size()]));
    for (const key of keys) {
      const chart = this.charts.get(key);
      const lines = this.lines(key);
      const cut = lines.filter((l) => l.sampled);
      chart.note.textContent = cut.length ? `(${Math.max(...cut.map((l) => l.x.length)).toLocaleString()} of ${Math.max(...cut.map((l) => l.total)).toLocaleString()} values)` : "";
      sampled += cut.length ? 1 : 0;
      chart.update(lines, this.view, sizes.get(key));
    }
    this.note.textContent = sampled ? `${sampled} chart${sampled === 1 ? "" : "s"} sampled to about ${FY.POINTS} values per line` : "";
    this.applyFilter();
  }

  applyFilter() {
    const term = this.view.filter.trim().toLowerCase();
    let shown = 0;
    for (const [key, chart] of this.charts) {
      chart.box.hidden = Boolean(term) && !key.toLowerCase().includes(term);
      if (!chart.box.hidden) shown += 1;
    }
    for (const section of this.groups.values()) {
      section.hidden = ![...section.querySelectorAll(".chart")].some((c) => !c.hidden);
    }
    this.root.dataset.shown = String(shown);
  }

  // Draw now, then keep up while live() holds.
  startPolling(ms) {
    let once = false;
    FY.poll(async () => { once = true; await this.refresh(); }, ms, () => !once || this.live());
  }
};
