// The job page's Artifacts tab: every file of the run and of its logged models, as a tree with
// human sizes, and a preview that reads only a file's first bytes (the server cuts them): CSV as
// a table, JSON folded, text as text, images capped. An artifact is anyone's content: it is only
// ever put in the page as text (textContent) or as an <img>, never as markup.
"use strict";

(() => {
  const root = document.getElementById("job");
  const list = document.getElementById("artifact-list");
  if (!root || !list) return;
  const id = root.dataset.job;
  const jobUrl = `${FY.api}/jobs/${encodeURIComponent(id)}`;
  const HEAD = 64 * 1024;            // a preview's first bytes
  const JSON_HEAD = 512 * 1024;      // a JSON file folds only when whole: read more of it
  const MAX_IMAGE = 10 * 1024 * 1024; // bigger images are offered as downloads only
  const MAX_ROWS = 200;
  const IMAGE = /\.(png|jpe?g|gif|webp|bmp|svg)$/i;
  const CSV = /\.(csv|tsv)$/i;
  const JSON_FILE = /\.json$/i;

  const size = (n) => {
    let value = n;
    for (const unit of ["B", "KB", "MB", "GB"]) {
      if (value < 1024 || unit === "GB") return unit === "B" ? `${value} B` : `${value.toFixed(1)} ${unit}`;
      value /= 1024;
    }
    return `${n} B`;
  };
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const enc = (path) => path.split("/").map(encodeURIComponent).join("/");
  const downloadUrl = (f) => f.model
    ? `/ajax-api/2.0/mlflow/logged-models/${encodeURIComponent(f.model)}/artifacts/files?artifact_file_path=${encodeURIComponent(f.path)}`
    : `/get-artifact?path=${encodeURIComponent(f.path)}&run_uuid=${encodeURIComponent(id)}`;
  const headUrl = (f, limit) =>
    `${jobUrl}/artifacts/${enc(f.path)}?limit=${limit}${f.model ? `&model=${encodeURIComponent(f.model)}` : ""}`;

  // --- the tree ------------------------------------------------------------------------------
  function tree(files) {
    const top = {};
    for (const f of files) {
      const parts = f.path.split("/");
      let node = top;
      for (const part of parts.slice(0, -1)) node = (node[`${part}/`] ||= {});
      node[parts[parts.length - 1]] = f;
    }
    return top;
  }
  function folderSize(node) {
    return Object.values(node).reduce((sum, v) => sum + (v.path !== undefined ? v.size : folderSize(v)), 0);
  }
  function renderNode(node, open) {
    const ul = el("ul", "tree");
    const names = Object.keys(node).sort((a, b) =>
      (b.endsWith("/") - a.endsWith("/")) || a.localeCompare(b));
    for (const name of names) {
      const child = node[name];
      const li = el("li");
      if (child.path === undefined) {
        li.className = "dir";
        const details = el("details");
        details.open = open;
        const summary = el("summary", "", name);
        summary.append(" ", el("span", "muted", size(folderSize(child))));
        details.append(summary, renderNode(child, open));
        li.append(details);
      } else {
        li.className = "file";
        li.dataset.path = child.path;
        if (child.model) li.dataset.model = child.model;
        const button = el("button", "link", name);
        button.type = "button";
        button.title = "Preview";
        button.addEventListener("click", () => preview(child));
        const download = el("a", "", "Download");
        download.href = downloadUrl(child);
        download.download = name;
        li.append(button, " ", el("span", "muted size", size(child.size)), " ", download);
      }
      ul.append(li);
    }
    return ul;
  }

  async function show() {
    let found;
    try { found = await FY.json(`${jobUrl}/artifacts`); } catch (e) {
      list.replaceChildren(el("p", "error-text", `The artifacts cannot be listed: ${e.message}`));
      return;
    }
    const running = !["completed", "failed", "canceled"].includes(document.querySelector("#status .badge")?.dataset.status || root.dataset.status);
    if (!found.files.length) {
      list.replaceChildren(el("p", "muted", running
        ? "No artifacts yet: ./outputs is uploaded when the job ends; refresh to see what it logs."
        : "This job wrote no outputs and logged no artifacts."));
      return;
    }
    const total = found.files.reduce((s, f) => s + f.size, 0);
    const parts = [];
    const own = found.files.filter((f) => !f.model);
    const head = el("p", "muted");
    head.id = "artifact-count";
    const n = found.files.length;
    head.textContent = `${n} file${n === 1 ? "" : "s"}, ${size(total)}` +
      (found.cut ? ` — the first ${found.max_files} only; MLflow's UI lists the rest.` : "");
    parts.push(head);
    if (own.length) {
      const box = el("section", "artifact-root");
      box.append(el("h3", "", "Run artifacts"), renderNode(tree(own), own.length <= 50));
      parts.push(box);
    }
    for (const model of found.models) {
      const files = found.files.filter((f) => f.model === model.id);
      const box = el("section", "artifact-root");
      box.dataset.model = model.id;
      const title = el("h3", "", `Model ${model.name} `);
      title.append(el("span", "muted mono small", model.id));
      box.append(title, renderNode(tree(files), files.length <= 50));
      parts.push(box);
    }
    list.replaceChildren(...parts);
  }

  // --- previews ----------------------------------------------------------------------------
  function csvRows(text, separator) {
    // RFC 4180: quoted fields may hold separators, quotes ("") and newlines.
    const rows = [];
    let row = [], field = "", quoted = false;
    for (let i = 0; i < text.length && rows.length <= MAX_ROWS; i++) {
      const c = text[i];
      if (quoted) {
        if (c === '"' && text[i + 1] === '"') { field += '"'; i++; } else if (c === '"') quoted = false; else field += c;
      } else if (c === '"' && field === "") quoted = true;
      else if (c === separator) { row.push(field); field = ""; }
      else if (c === "\n" || c === "\r") {
        if (c === "\r" && text[i + 1] === "\n") i++;
        row.push(field); rows.push(row); row = []; field = "";
      } else field += c;
    }
    if (field !== "" || row.length) { row.push(field); rows.push(row); }
    return rows;
  }

  function csvTable(text, separator, cut) {
    let rows = csvRows(text, separator);
    if (cut && rows.length > 1) rows = rows.slice(0, -1); // the last row may be cut in half
    const shown = rows.slice(0, MAX_ROWS + 1);
    const wrap = el("div", "table-wrap");
    const table = el("table", "csv");
    const thead = el("thead"), tbody = el("tbody");
    const tr = el("tr");
    for (const name of shown[0] || []) tr.append(el("th", "", name));
    thead.append(tr);
    for (const row of shown.slice(1)) {
      const r = el("tr");
      for (const cell of row) r.append(el("td", /^-?[\d.]+(e[-+]?\d+)?$/i.test(cell) ? "num" : "", cell));
      tbody.append(r);
    }
    table.append(thead, tbody);
    wrap.append(table);
    const rowsNote = rows.length > MAX_ROWS + 1 ? `the first ${MAX_ROWS} rows` : `${shown.length - 1} rows`;
    return [wrap, rowsNote];
  }

  let nodes = 0;
  function jsonNode(key, value, depth) {
    const li = el("li");
    if (key !== null) li.append(el("span", "key", `${key}: `));
    if (value !== null && typeof value === "object") {
      const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
      const details = el("details");
      details.open = depth < 2;
      const n = entries.length;
      const label = Array.isArray(value) ? `[${n} item${n === 1 ? "" : "s"}]` : `{${n} key${n === 1 ? "" : "s"}}`;
      details.append(el("summary", "muted", label));
      const ul = el("ul", "json");
      for (const [k, v] of entries) {
        if (++nodes > 5000) { ul.append(el("li", "muted", "… (download for the rest)")); break; }
        ul.append(jsonNode(k, v, depth + 1));
      }
      details.append(ul);
      li.append(details);
    } else {
      li.append(el("span", `v-${value === null ? "null" : typeof value}`, JSON.stringify(value)));
    }
    return li;
  }

  async function preview(f) {
    const box = document.getElementById("preview");
    box.hidden = false;
    box.dataset.path = f.path;
    for (const li of list.querySelectorAll("li.file")) {
      const on = li.dataset.path === f.path && (li.dataset.model || "") === (f.model || "");
      li.classList.toggle("on", on);
      if (on) li.setAttribute("aria-current", "true"); else li.removeAttribute("aria-current");
    }
    const title = el("h3", "", f.path);
    const download = el("a", "", `Download (${size(f.size)})`);
    download.href = downloadUrl(f);
    download.download = f.path.split("/").pop();
    const toolbar = el("div", "toolbar");
    toolbar.append(download);
    box.replaceChildren(title, toolbar);
    if (IMAGE.test(f.path)) {
      if (f.size > MAX_IMAGE) {
        box.append(el("p", "muted", `This image is ${size(f.size)}: download it to see it.`));
      } else {
        const img = el("img");
        img.src = downloadUrl(f);
        img.alt = f.path;
        box.append(img);
      }
      box.scrollIntoView({ block: "nearest" });
      return;
    }
    const limit = JSON_FILE.test(f.path) ? JSON_HEAD : HEAD;
    let bytes;
    try {
      const response = await fetch(headUrl(f, limit));
      if (!response.ok) throw new Error((await response.json().catch(() => ({}))).message || response.statusText);
      bytes = new Uint8Array(await response.arrayBuffer());
    } catch (e) {
      box.append(el("p", "error-text", `The preview failed: ${e.message}`));
      return;
    }
    if (box.dataset.path !== f.path) return; // another preview was asked for meanwhile
    const cut = bytes.length < f.size;
    const note = el("p", "muted cut-note");
    if (cut) {
      note.append(`Showing the first ${size(bytes.length)} of ${size(f.size)}; `);
      const all = el("a", "", "download the whole file");
      all.href = downloadUrl(f);
      all.download = download.download;
      note.append(all, ".");
    }
    if (bytes.subarray(0, 8192).includes(0)) {
      box.append(el("p", "muted", `A binary file of ${size(f.size)}: download it to open it.`));
      return;
    }
    const text = new TextDecoder().decode(bytes);
    let body = null;
    if (CSV.test(f.path)) {
      const [table, rows] = csvTable(text, /\.tsv$/i.test(f.path) ? "\t" : ",", cut);
      body = table;
      note.prepend(`${rows}. `);
    } else if (JSON_FILE.test(f.path) && !cut) {
      try {
        nodes = 0;
        const ul = el("ul", "json");
        ul.append(jsonNode(null, JSON.parse(text), 0));
        body = ul;
      } catch (e) { /* not JSON after all: shown as text */ }
    }
    if (!body) body = el("pre", "", text);
    box.append(note, body);
    box.scrollIntoView({ block: "nearest" });
  }

  let started = false;
  const start = () => { if (!started) { started = true; show(); } };
  document.getElementById("artifact-refresh").addEventListener("click", show);
  document.addEventListener("studio:tab", (e) => { if (e.detail === "outputs") start(); });
  if (document.querySelector("section.tab.on")?.id === "outputs") start();
})();
