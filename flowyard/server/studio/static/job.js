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
    if (!FINAL.has(was) && FINAL.has(status)) finished = true;
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

  // --- log tail --------------------------------------------------------------------------------
  const TAIL = 256 * 1024;       // a long log opens at its end; the download has all of it
  const KEEP = 2 * 1024 * 1024;  // bound the page's memory on a chatty job
  const pre = document.getElementById("log");
  const search = document.getElementById("log-search");
  const follow = document.getElementById("log-follow");
  const decoder = new TextDecoder();
  let offset = Math.max(0, Number(root.dataset.logSize) - TAIL);
  let size = Number(root.dataset.logSize);
  let text = "";
  if (offset > 0) {
    const note = document.getElementById("log-truncated");
    note.hidden = false;
    note.textContent = `Showing the last ${Math.round(TAIL / 1024)} KB; download the log for all of it.`;
  }

  function render(appended) {
    const term = search.value.trim().toLowerCase();
    if (!term) {
      if (appended !== null && pre.dataset.mode === "all") pre.append(appended);
      else { pre.textContent = text; pre.dataset.mode = "all"; }
      document.getElementById("log-matches").textContent = "";
    } else {
      const lines = text.split("\n").filter((l) => l.toLowerCase().includes(term));
      const pattern = new RegExp(term.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"), "gi");
      pre.innerHTML = lines.map((l) => FY.escape(l).replace(pattern, (m) => `<mark>${m}</mark>`)).join("\n");
      pre.dataset.mode = "search";
      document.getElementById("log-matches").textContent = `${lines.length} matching line${lines.length === 1 ? "" : "s"}`;
    }
    document.getElementById("log-empty").hidden = text.length > 0;
    document.getElementById("log-size").textContent = `${(size / 1024).toFixed(1)} KB`;
    if (follow.checked) pre.scrollTop = pre.scrollHeight;
  }
  search.addEventListener("input", () => render(null));
  pre.addEventListener("scroll", () => {
    // Scrolling up to read stops following; back at the bottom, it follows again.
    follow.checked = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
  });

  async function readPage() {
    const response = await fetch(`${jobUrl}/logs?offset=${offset}`);
    if (!response.ok) return false;
    const bytes = new Uint8Array(await response.arrayBuffer());
    size = Number(response.headers.get("X-Flowyard-Log-Size") || size);
    const chunk = decoder.decode(bytes, { stream: true });
    offset = Number(response.headers.get("X-Flowyard-Next-Offset") || offset + bytes.length);
    if (chunk) {
      text += chunk;
      if (text.length > KEEP) { text = text.slice(text.length - KEEP); pre.dataset.mode = ""; }
      render(pre.dataset.mode === "all" ? chunk : null);
    } else render(null);
    return bytes.length > 0;
  }

  async function readLog() {
    // The workspace answers a page at a time: read on until the page reaches the log's end.
    let more = true;
    while (more) more = (await readPage()) && offset < size;
    if (finished && offset >= size) {
      setTimeout(() => location.reload(), 300);
      finished = false;
    }
  }
  let logDone = false;
  FY.poll(async () => {
    await readLog();
    logDone = !running() && offset >= size && !finished;
  }, 1000, () => !logDone);

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
