// The job page: status, log tail and metric charts, kept live from the JSON APIs (artifacts:
// artifacts.js; the re-run dialog: rerun.js).
"use strict";

(() => {
  const root = document.getElementById("job");
  const id = root.dataset.job;
  const FINAL = new Set(["completed", "failed", "canceled"]);
  let status = root.dataset.status;
  const running = () => !FINAL.has(status);
  const jobUrl = `${FY.api}/jobs/${encodeURIComponent(id)}`;

  // --- status, timeline, actions -------------------------------------------------------------
  function showStatus(job) {
    const was = status;
    status = job.status;
    document.getElementById("status").replaceChildren(FY.badge(status));
    const timeline = document.getElementById("timeline");
    timeline.replaceChildren(...job.events.map((e, i) => {
      const li = document.createElement("li");
      li.innerHTML = `<span class="at"><time datetime="${FY.escape(e.at)}"></time></span> `;
      if (e.from_status) li.append(`${e.from_status} → `);
      li.append(FY.badge(e.to_status), " ");
      const reason = document.createElement("span");
      reason.className = "reason";
      reason.textContent = e.reason;
      li.append(reason);
      const next = job.events[i + 1];
      if (next) {
        const took = document.createElement("span");
        took.className = "took muted";
        took.title = "until the next step";
        took.textContent = FY.formatSeconds((new Date(next.at) - new Date(e.at)) / 1000);
        li.append(" ", took);
      }
      return li;
    }));
    FY.localTimes(timeline);
    const waiting = document.getElementById("waiting");
    if (waiting) {
      waiting.hidden = status !== "queued" || !job.waiting_reason;
      waiting.textContent = `Waiting: ${job.waiting_reason || ""}`;
    }
    const duration = document.getElementById("duration");
    if (duration && job.started_at) {
      const seconds = Math.max(0, Math.round(((job.ended_at ? new Date(job.ended_at) : new Date()) - new Date(job.started_at)) / 1000));
      const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
      duration.textContent = h ? `${h}h ${String(m).padStart(2, "0")}m` : `${m}m ${String(s).padStart(2, "0")}s`;
    }
    // The server renders what only a finished job has (error box, outputs, duration): reload
    // once the log has been read to its end.
    if (!FINAL.has(was) && FINAL.has(status)) { finished = true; reloadWhenRead(); }
  }
  let finished = false;

  FY.poll(async () => showStatus(await FY.json(jobUrl)), 2000, running);

  const cancel = document.getElementById("cancel");
  if (cancel) cancel.addEventListener("click", async () => {
    if (!confirm(`Cancel job ${id}? It stops where it is; run it again to start over.`)) return;
    cancel.disabled = true;
    cancel.textContent = "Canceling…";
    try {
      showStatus(await FY.json(`${jobUrl}/cancel`, { method: "POST" }));
      cancel.textContent = "Cancel requested";
    } catch (e) {
      cancel.disabled = false;
      cancel.textContent = "Cancel";
      alert(`The job could not be canceled: ${e.message}`);
    }
  });

  const del = document.getElementById("delete");
  if (del) del.addEventListener("click", async () => {
    const question = `Delete job ${id} for good, with its MLflow run, artifacts and log? ` +
      "This cannot be undone.";
    if (!confirm(question)) return;
    del.disabled = true;
    try {
      await FY.json(jobUrl, { method: "DELETE" });
      window.location.assign(`${FY.prefix}/jobs`);
    } catch (e) {
      del.disabled = false;
      alert(`The job could not be deleted: ${e.message}`);
    }
  });

  // --- log: static/logs.js reads it; once it has a finished job's whole log, reload -------------
  let logRead = false;
  function reloadWhenRead() {
    if (finished && logRead) { finished = false; setTimeout(() => location.reload(), 300); }
  }
  document.addEventListener("studio:log-read", () => { logRead = true; reloadWhenRead(); });

  // --- metrics and system metrics (charts.js) ------------------------------------------------
  const run = [{ id, label: document.getElementById("charts").dataset.label || id }];
  const panels = {
    metrics: new FY.MetricsPanel(document.getElementById("charts"), {
      runs: run, system: false, live: running, empty: document.getElementById("no-metrics"),
      onKeys: (n) => { document.querySelector(".tabs a[href='#metrics'] .count").textContent = String(n); },
    }),
    system: new FY.MetricsPanel(document.getElementById("system-charts"), {
      runs: run, system: true, live: running, empty: document.getElementById("no-system-metrics"),
    }),
  };
  const panelsStarted = new Set();
  function startMetrics(tab) {
    if (panelsStarted.has(tab)) return;
    panelsStarted.add(tab);
    panels[tab].startPolling(5000);
  }

  function onTab(tab) {
    if (tab === "metrics" || tab === "system") startMetrics(tab);
  }
  document.addEventListener("studio:tab", (e) => onTab(e.detail));
  const current = document.querySelector("section.tab.on");
  if (current) onTab(current.id);
})();
