// The compare page: one chart per metric with a line per job, and the "only differences" switch.
"use strict";

(() => {
  const box = document.getElementById("compare-charts");
  const runs = JSON.parse(box.dataset.runs);
  const labels = JSON.parse(box.dataset.labels).map((l, i) => l || runs[i].slice(0, 8));
  const table = document.getElementById("compare-table");
  document.getElementById("only-diff").addEventListener("change", (e) => table.classList.toggle("only-diff", e.target.checked));
  for (const key of JSON.parse(box.dataset.keys)) {
    const chart = new FY.Chart(box, key);
    Promise.all(runs.map((run) => FY.history(run, key)))
      .then((histories) => chart.update(histories.map((h, i) => ({ label: labels[i], points: FY.points(h) }))))
      .catch((e) => { chart.box.append(`Cannot load ${key}: ${e.message}`); });
  }
})();
