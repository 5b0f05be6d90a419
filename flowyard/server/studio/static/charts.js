// Line charts over steps with uPlot (vendored, MIT): one chart per metric, one line per run.
"use strict";

FY.colors = ["#2457d6", "#d92d20", "#079455", "#dc6803", "#7a5af8", "#0e9384", "#c11574", "#475467", "#4e5ba6", "#a15c07"];

// A metric's history as [x, y] points: by step, or in logging order when every point shares one
// step (a metric logged without steps).
FY.points = (history) => {
  const steps = new Set(history.map((m) => m.step));
  const sorted = [...history].sort((a, b) => (a.step - b.step) || (a.timestamp - b.timestamp));
  const byIndex = steps.size === 1 && history.length > 1;
  return sorted.map((m, i) => [byIndex ? i : Number(m.step), m.value === "NaN" ? null : Number(m.value)]);
};

FY.Chart = class {
  constructor(parent, title) {
    this.box = document.createElement("div");
    this.box.className = "chart";
    this.box.dataset.metric = title;
    const h = document.createElement("h3");
    h.textContent = title;
    this.box.append(h);
    parent.append(this.box);
    this.plot = null;
    this.labels = null;
    window.addEventListener("resize", () => this.plot && this.plot.setSize(this.size()));
  }

  size() {
    const width = Math.max(this.box.clientWidth - 16, 200);
    return { width, height: Math.round(Math.min(260, Math.max(160, width * 0.45))) };
  }

  // series: [{label, points: [[x, y], ...]}]
  update(series) {
    const data = series.length === 1
      ? [series[0].points.map((p) => p[0]), series[0].points.map((p) => p[1])]
      : uPlot.join(series.map((s) => [s.points.map((p) => p[0]), s.points.map((p) => p[1])]));
    const total = series.reduce((n, s) => n + s.points.length, 0);
    this.box.dataset.points = String(total);
    const labels = series.map((s) => s.label).join("\n");
    if (this.plot && labels === this.labels) { this.plot.setData(data); return; }
    if (this.plot) this.plot.destroy();
    this.labels = labels;
    const few = total / Math.max(series.length, 1) < 60;
    this.plot = new uPlot({
      ...this.size(),
      scales: { x: { time: false } },
      axes: [{ label: "step" }, {}],
      legend: { show: series.length > 1 },
      series: [
        { label: "step" },
        ...series.map((s, i) => ({
          label: s.label, stroke: FY.colors[i % FY.colors.length], width: 2, spanGaps: true,
          points: { show: few, size: 5 },
        })),
      ],
    }, data, this.box);
  }
};

// The full history of one metric of one run, from MLflow's REST API.
FY.history = async (runId, key) => {
  const url = `/api/2.0/mlflow/metrics/get-history?run_id=${encodeURIComponent(runId)}&metric_key=${encodeURIComponent(key)}`;
  return (await FY.json(url)).metrics || [];
};
