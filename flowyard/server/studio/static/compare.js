// The compare page: grouped charts with a line per job (charts.js), and the "only differences"
// switch of the table.
"use strict";

(() => {
  const box = document.getElementById("compare-charts");
  const runs = JSON.parse(box.dataset.runs);
  const labels = JSON.parse(box.dataset.labels).map((l, i) => l || runs[i].slice(0, 8));
  const table = document.getElementById("compare-table");
  document.getElementById("only-diff").addEventListener("change", (e) => table.classList.toggle("only-diff", e.target.checked));
  if (!runs.length) return;
  const panel = new FY.MetricsPanel(box, { runs: runs.map((id, i) => ({ id, label: labels[i] })), system: false });
  panel.refresh().catch((e) => { box.append(`Cannot load the metrics: ${e.message}`); });
})();
