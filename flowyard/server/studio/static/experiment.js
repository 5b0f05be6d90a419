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
// there and on the page's runs that hold it. Which is best (lower or higher) is guessed from the
// metric's name; the button beside the lowest flips it, kept per experiment in this browser.
async function metricRanges() {
  const table = document.getElementById("experiment-table");
  if (!table) return;
  const filtered = table.dataset.filtered === "1" ? "filtered " : "";
  const storeKey = `flowyard.better.${table.dataset.experiment}`;
  let chosen;
  try { chosen = JSON.parse(localStorage.getItem(storeKey) || "{}"); } catch { chosen = {}; }
  const column = (key) => CSS.escape(`metrics.${key}`);
  const statCell = (stat, key) => table.querySelector(`tr.stat[data-stat="${stat}"] td[data-col="${column(key)}"]`);
  let html = "";
  try {
    const answer = await fetch(table.dataset.ranges, { credentials: "same-origin" });
    if (answer.ok) html = await answer.text();
  } catch { /* the rows stay without their ranges */ }
  for (const cell of table.querySelectorAll("tr.stat td.num")) cell.replaceChildren();
  const found = new DOMParser().parseFromString(html, "text/html");
  for (const entry of found.querySelectorAll("div[data-key]")) {
    const key = entry.dataset.key;
    const min = statCell("min", key), max = statCell("max", key);
    if (!min || !max) continue;
    const [low, high] = entry.querySelectorAll("span[data-stat]");
    const flip = document.createElement("button");
    flip.type = "button";
    flip.className = "better";
    max.append(high);
    min.append(low, " ", flip);
    const mark = () => {
      const lower = key in chosen ? chosen[key] === "lower" : entry.dataset.lowerIsBetter === "1";
      const best = Number(lower ? entry.dataset.low : entry.dataset.high);
      flip.textContent = lower ? "↓ better" : "↑ better";
      flip.title = `${lower ? "lower" : "higher"} is better for ${key}: click for ${lower ? "higher" : "lower"}`;
      flip.setAttribute("aria-label", flip.title);
      for (const [span, isBest] of [[low, lower], [high, !lower]]) {
        span.classList.toggle("best", isBest);
        span.title = isBest ? `best: ${lower ? "lower" : "higher"} is better for ${key}` : "";
      }
      const values = table.querySelectorAll(`tbody td[data-col="${column(key)}"] span[data-value]`);
      for (const value of values) {
        const isBest = Number(value.dataset.value) === best;
        value.classList.toggle("best", isBest);
        value.title = isBest ? `the best ${key} of the ${filtered}runs` : "";
      }
    };
    flip.addEventListener("click", () => {
      const lower = key in chosen ? chosen[key] === "lower" : entry.dataset.lowerIsBetter === "1";
      chosen[key] = lower ? "higher" : "lower";
      localStorage.setItem(storeKey, JSON.stringify(chosen));
      mark();
    });
    mark();
  }
  table.dataset.rangesShown = "1";
}

relativeTimes(document);
columnChooser();
metricRanges();
setInterval(() => relativeTimes(document), 30_000);
