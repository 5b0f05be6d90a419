// Flowyard studio: the experiments pages. Relative times ("5 min ago", the exact time with its
// time zone on hover) and the experiment table's column chooser, kept per experiment in this
// browser's localStorage.
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

relativeTimes(document);
columnChooser();
setInterval(() => relativeTimes(document), 30_000);
