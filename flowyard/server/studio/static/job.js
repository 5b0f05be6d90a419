// The job page: status, log tail, metric charts and outputs, kept live from the JSON APIs.
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
    timeline.replaceChildren(...job.events.map((e) => {
      const li = document.createElement("li");
      li.innerHTML = `<span class="at"><time datetime="${FY.escape(e.at)}"></time></span> `;
      if (e.from_status) li.append(`${e.from_status} → `);
      li.append(FY.badge(e.to_status), " ");
      const reason = document.createElement("span");
      reason.className = "reason";
      reason.textContent = e.reason;
      li.append(reason);
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

  const rerun = document.getElementById("rerun-form");
  if (rerun) rerun.addEventListener("submit", async (event) => {
    event.preventDefault();
    const parameters = {};
    for (const input of rerun.querySelectorAll("input[name]")) parameters[input.name] = input.value;
    const error = document.getElementById("rerun-error");
    error.textContent = "";
    try {
      const job = await FY.json(`${jobUrl}/rerun`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ parameters }),
      });
      location.href = `${FY.prefix}/jobs/${job.id}`;
    } catch (e) { error.textContent = e.message; }
  });

  // --- log: static/logs.js reads it; once it has a finished job's whole log, reload -------------
  let logRead = false;
  function reloadWhenRead() {
    if (finished && logRead) { finished = false; setTimeout(() => location.reload(), 300); }
  }
  document.addEventListener("studio:log-read", () => { logRead = true; reloadWhenRead(); });

  // --- metrics ---------------------------------------------------------------------------------
  const chartsBox = document.getElementById("charts");
  const charts = new Map();
  let keys = JSON.parse(chartsBox.dataset.keys);
  let metricsStarted = false;

  async function drawMetrics() {
    if (running()) {
      const run = await FY.json(`/api/2.0/mlflow/runs/get?run_id=${encodeURIComponent(id)}`);
      keys = [...new Set([...keys, ...((run.run.data.metrics || []).map((m) => m.key))])].sort();
    }
    document.getElementById("no-metrics").hidden = keys.length > 0;
    document.querySelector(".tabs a[href='#metrics'] .count").textContent = String(keys.length);
    await Promise.all(keys.map(async (key) => {
      if (!charts.has(key)) charts.set(key, new FY.Chart(chartsBox, key));
      charts.get(key).update([{ label: key, points: FY.points(await FY.history(id, key)) }]);
    }));
  }
  function startMetrics() {
    if (metricsStarted) return;
    metricsStarted = true;
    let once = false;
    FY.poll(async () => { once = true; await drawMetrics(); }, 5000, () => !once || running());
  }

  // --- outputs ---------------------------------------------------------------------------------
  const IMAGE = /\.(png|jpe?g|gif|svg|webp)$/i;
  const TEXT = /\.(txt|json|csv|tsv|ya?ml|md|log|py|ini|cfg|toml|html?|xml|sh)$/i;
  const artifactUrl = (path) => `/get-artifact?path=${encodeURIComponent(path)}&run_uuid=${encodeURIComponent(id)}`;
  let outputsStarted = false;

  async function listOutputs(path, depth, found) {
    const url = `/api/2.0/mlflow/artifacts/list?run_id=${encodeURIComponent(id)}&path=${encodeURIComponent(path)}`;
    for (const f of (await FY.json(url)).files || []) {
      if (f.is_dir && depth < 4 && found.length < 500) await listOutputs(f.path, depth + 1, found);
      else if (!f.is_dir) found.push(f);
    }
    return found;
  }

  async function preview(file) {
    const box = document.getElementById("preview");
    box.hidden = false;
    box.replaceChildren();
    const title = document.createElement("h3");
    title.textContent = file.path;
    box.append(title);
    if (IMAGE.test(file.path)) {
      const img = document.createElement("img");
      img.src = artifactUrl(file.path);
      img.alt = file.path;
      box.append(img);
    } else {
      const body = await (await fetch(artifactUrl(file.path))).text();
      const pre = document.createElement("pre");
      pre.textContent = body.length > 200000 ? `${body.slice(0, 200000)}\n… (download for the rest)` : body;
      box.append(pre);
    }
    box.scrollIntoView({ behavior: "smooth", block: "nearest" });
  }

  async function showOutputs() {
    const list = document.getElementById("output-list");
    let files;
    try { files = await listOutputs("outputs", 0, []); } catch (e) {
      list.innerHTML = `<li class="error-text"></li>`;
      list.firstChild.textContent = `The outputs cannot be listed: ${e.message}`;
      return;
    }
    if (!files.length) {
      list.innerHTML = `<li class="muted">${running() ? "Outputs are uploaded when the job ends." : "This job wrote no outputs."}</li>`;
      return;
    }
    list.replaceChildren(...files.map((f) => {
      const li = document.createElement("li");
      li.dataset.path = f.path;
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = f.path.replace(/^outputs\//, "");
      const sizeEl = document.createElement("span");
      sizeEl.className = "muted";
      sizeEl.textContent = `${((f.file_size || 0) / 1024).toFixed(1)} KB`;
      const download = document.createElement("a");
      download.href = artifactUrl(f.path);
      download.download = f.path.split("/").pop();
      download.textContent = "Download";
      li.append(name, sizeEl);
      if (IMAGE.test(f.path) || TEXT.test(f.path)) {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = "Preview";
        button.addEventListener("click", () => preview(f));
        li.append(button);
      }
      li.append(download);
      return li;
    }));
  }

  function onTab(tab) {
    if (tab === "metrics") startMetrics();
    if (tab === "outputs" && !outputsStarted) { outputsStarted = true; showOutputs(); }
  }
  document.addEventListener("studio:tab", (e) => onTab(e.detail));
  const current = document.querySelector("section.tab.on");
  if (current) onTab(current.id);
})();
