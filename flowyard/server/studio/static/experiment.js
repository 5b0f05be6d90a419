// Flowyard studio: the experiments pages. Relative times ("5 min ago", the exact time with its
// time zone on hover), the experiment table's column chooser, kept per experiment in this
// browser's localStorage, and its "min" and "max" rows, asked for once the rows are shown.
"use strict";

const RELATIVE = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const EXACT = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
});

function relativeTime(at, now) {
  const seconds = Math.round((at - now) / 1000);
  const units = [["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1]];
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size || unit === "second") {
      return RELATIVE.format(Math.round(seconds / size), unit);
    }
  }
  return "";
}

function relativeTimes(root) {
  const now = Date.now();
  for (const el of root.querySelectorAll("time[data-rel]")) {
    const at = new Date(el.getAttribute("datetime"));
    if (isNaN(at)) continue;
    // A week back and more reads better as a date.
    el.textContent = now - at > 7 * 86400e3 ? at.toLocaleDateString() : relativeTime(at, now);
    el.title = EXACT.format(at);
  }
}

function columnChooser() {
  const chooser = document.getElementById("columns");
  const table = document.getElementById("experiment-table");
  if (!chooser) return;
  const storeKey = `flowyard.columns.${chooser.dataset.experiment}`;
  let hidden;
  try { hidden = new Set(JSON.parse(localStorage.getItem(storeKey) || "[]")); } catch { hidden = new Set(); }
  const apply = () => {
    for (const box of chooser.querySelectorAll("input[type=checkbox]")) box.checked = !hidden.has(box.value);
    if (!table) return;
    for (const cell of table.querySelectorAll("[data-col]")) cell.classList.toggle("off", hidden.has(cell.dataset.col));
  };
  chooser.addEventListener("change", (e) => {
    if (e.target.type !== "checkbox") return;
    e.target.checked ? hidden.delete(e.target.value) : hidden.add(e.target.value);
    localStorage.setItem(storeKey, JSON.stringify([...hidden]));
    apply();
  });
  apply();
}

// Each metric's lowest and highest value over every run the filter selects, the best marked
// there and on the page's runs that hold it.
async function metricRanges() {
  const table = document.getElementById("experiment-table");
  if (!table) return;
  const cells = (stat, key) =>
    table.querySelectorAll(`tr.stat[data-stat="${stat}"] td[data-col="${CSS.escape(`metrics.${key}`)}"]`);
  let html = "";
  try {
    const answer = await fetch(table.dataset.ranges, { credentials: "same-origin" });
    if (answer.ok) html = await answer.text();
  } catch { /* the rows stay without their ranges */ }
  for (const cell of table.querySelectorAll("tr.stat td.num")) cell.replaceChildren();
  const found = new DOMParser().parseFromString(html, "text/html");
  for (const entry of found.querySelectorAll("div[data-key]")) {
    const key = entry.dataset.key;
    for (const span of entry.querySelectorAll("span[data-stat]")) {
      for (const cell of cells(span.dataset.stat, key)) cell.replaceChildren(span.cloneNode(true));
    }
    const best = Number(entry.dataset.best);
    const values = table.querySelectorAll(`tbody td[data-col="${CSS.escape(`metrics.${key}`)}"] span[data-value]`);
    for (const value of values) {
      if (Number(value.dataset.value) !== best) continue;
      value.classList.add("best");
      value.title = entry.dataset.title;
    }
  }
  table.dataset.rangesShown = "1";
}

relativeTimes(document);
columnChooser();
metricRanges();
setInterval(() => relativeTimes(document), 30_000);
