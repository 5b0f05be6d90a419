// Flowyard studio: behaviour shared by every page, the jobs table and the computes page.
// Plain browser JavaScript, no build step: the pages work without it, and it adds live updates.
"use strict";

const FY = {
  prefix: document.body.dataset.prefix,
  api: document.body.dataset.api,

  // A signed-in studio sends its session's CSRF token with every request that changes something.
  csrf: document.querySelector('meta[name="csrf-token"]')?.content || "",

  async json(url, options) {
    options = { ...(options || {}) };
    if (options.method && options.method !== "GET" && FY.csrf) {
      options.headers = { ...(options.headers || {}), "X-CSRF-Token": FY.csrf };
    }
    const response = await fetch(url, options);
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.message || `${response.status} ${response.statusText}`);
    return body;
  },

  // Run `task` now and every `ms` while `keepGoing()` holds; paused while the tab is hidden, so a
  // forgotten tab costs the server nothing.
  poll(task, ms, keepGoing) {
    let timer = null;
    const tick = async () => {
      if (!keepGoing()) return;
      if (!document.hidden) {
        try { await task(); } catch (e) { console.warn("studio: refresh failed", e); }
      }
      if (keepGoing()) timer = setTimeout(tick, ms);
    };
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && timer) { clearTimeout(timer); tick(); }
    });
    tick();
  },

  // Server times are UTC; show them in the reader's zone (relative ones: experiment.js).
  localTimes(root) {
    for (const el of (root || document).querySelectorAll("time[datetime]:not([data-rel])")) {
      const at = new Date(el.getAttribute("datetime"));
      if (!isNaN(at)) { el.textContent = at.toLocaleString(); el.title = el.getAttribute("datetime"); }
    }
  },

  badge(status) {
    const span = document.createElement("span");
    span.className = `badge s-${status}`;
    span.dataset.status = status;
    span.textContent = status;
    return span;
  },

  // Make `old` look like `fresh` while touching only what differs: same-shaped elements are
  // kept (and so keep focus, checked state and text selection), their attributes and children
  // updated; rows with a data-job are matched by it, so a row that moves is the same element.
  morph(old, fresh) {
    if (old.nodeType !== fresh.nodeType || old.nodeName !== fresh.nodeName) {
      old.replaceWith(fresh);
      return;
    }
    if (old.nodeType !== Node.ELEMENT_NODE) {
      if (old.nodeValue !== fresh.nodeValue) old.nodeValue = fresh.nodeValue;
      return;
    }
    if (old.isEqualNode(fresh)) return;
    for (const { name } of [...old.attributes]) {
      if (!fresh.hasAttribute(name)) old.removeAttribute(name);
    }
    for (const { name, value } of fresh.attributes) {
      if (old.getAttribute(name) !== value) old.setAttribute(name, value);
    }
    const keyed = (el) => (el.nodeType === Node.ELEMENT_NODE && el.dataset.job) || null;
    const byKey = new Map();
    for (const child of old.childNodes) if (keyed(child)) byKey.set(keyed(child), child);
    let at = old.firstChild;
    for (const next of [...fresh.childNodes]) {
      const key = keyed(next);
      let match = key ? byKey.get(key) : at;
      if (key && !match) match = null;
      if (match && !key && keyed(match)) match = null;
      if (!match) {
        old.insertBefore(next, at);
        continue;
      }
      if (match !== at) old.insertBefore(match, at);
      at = match.nextSibling;
      FY.morph(match, next);
    }
    while (at) {
      const gone = at;
      at = at.nextSibling;
      gone.remove();
    }
  },

  escape(text) {
    return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  },
};

function jobsPage() {
  const filters = document.getElementById("filters");
  if (!filters) return;
  for (const select of filters.querySelectorAll("select")) {
    select.addEventListener("change", () => filters.submit());
  }
  const form = document.getElementById("compare-form");
  const button = document.getElementById("compare-selected");
  const picked = new Set();
  const syncPicks = () => {
    for (const box of form.querySelectorAll("input[name=ids]")) box.checked = picked.has(box.value);
    button.disabled = picked.size < 2;
    button.textContent = picked.size ? `Compare selected (${picked.size})` : "Compare selected";
  };
  form.addEventListener("change", (e) => {
    if (e.target.name !== "ids") return;
    e.target.checked ? picked.add(e.target.value) : picked.delete(e.target.value);
    syncPicks();
  });
  const note = document.getElementById("live-note");
  const table = () => document.getElementById("jobs-table");
  const active = () => table() && table().dataset.active === "true";
  if (active()) note.textContent = "Live: refreshing while jobs are queued or running";
  // The same page as a fragment, merged into the table in place (FY.morph): one query plan, one
  // template, and the focus, the picks and any selected text survive every refresh.
  FY.poll(async () => {
    const url = new URL(location.href);
    url.searchParams.set("fragment", "1");
    const response = await fetch(url);
    if (!response.ok) return;
    const holder = document.createElement("div");
    holder.innerHTML = await response.text();
    const fresh = holder.firstElementChild;
    FY.localTimes(fresh);
    FY.morph(table(), fresh);
    syncPicks();
    if (!active()) note.textContent = "";
  }, 3000, active);
}

function computesPage() {
  for (const row of document.querySelectorAll("tr[data-compute]")) {
    const name = row.dataset.compute;
    // The server checks health in the background; asking here gets a fresh check if it comes
    // within a couple of seconds, else the last one, so the page never waits on a hung compute.
    FY.json(`${FY.api}/computes/${encodeURIComponent(name)}?health=true`).then((c) => {
      const cell = row.querySelector(".health");
      if (c.healthy === null || c.healthy === undefined) {
        cell.innerHTML = `<span class="muted"></span>`;
        cell.querySelector(".muted").textContent = c.health || "not checked yet";
        return;
      }
      cell.innerHTML = `<span class="badge ${c.healthy ? "s-completed" : "s-failed"}">${c.healthy ? "healthy" : "unhealthy"}</span> <span class="muted"></span>`;
      const age = Math.max(0, Math.round((Date.now() - Date.parse(c.health_checked_at)) / 1000));
      cell.querySelector(".muted").textContent = `${c.health || ""} (checked ${age} s ago)`;
      const r = c.resources || {};
      const parts = [];
      if (r.nodes !== undefined) parts.push(`${r.nodes} node${r.nodes === 1 ? "" : "s"}`);
      if (r.cpus !== undefined && r.cpus !== null) parts.push(`${r.cpus} CPUs`);
      if (r.gpus !== undefined) parts.push(`${r.gpus} GPUs`);
      row.querySelector(".resources").textContent = parts.join(" · ");
    }).catch((e) => { row.querySelector(".health").textContent = `unknown (${e.message})`; });
  }
}

function tabs() {
  // The WAI-ARIA tabs pattern: one tab in the tab order, arrows (Home, End) move between tabs.
  const sections = [...document.querySelectorAll("section.tab")];
  if (!sections.length) return;
  document.body.classList.add("js");
  const links = [...document.querySelectorAll(".tabs a[role=tab]")];
  for (const a of links) {
    const panel = a.hash.slice(1);
    a.id = a.id || `tab-${panel}`;
    a.setAttribute("aria-controls", panel);
  }
  for (const s of sections) {
    s.setAttribute("role", "tabpanel");
    s.setAttribute("aria-labelledby", `tab-${s.id}`);
  }
  const show = () => {
    // A log line's link (#L123) is on the Logs tab.
    const id = /^L\d+$/.test(location.hash.slice(1)) ? "logs" : location.hash.slice(1);
    const current = sections.find((s) => s.id === id) || sections[0];
    for (const s of sections) s.classList.toggle("on", s === current);
    for (const a of links) {
      const on = a.hash === `#${current.id}`;
      a.classList.toggle("on", on);
      a.setAttribute("aria-selected", String(on));
      a.tabIndex = on ? 0 : -1;
    }
    document.dispatchEvent(new CustomEvent("studio:tab", { detail: current.id }));
  };
  const tablist = document.querySelector(".tabs[role=tablist]");
  if (tablist) tablist.addEventListener("keydown", (e) => {
    const at = links.indexOf(document.activeElement);
    if (at < 0) return;
    const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: links.length - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault();
    const link = links[(to + links.length) % links.length];
    history.replaceState(null, "", link.hash);
    show();
    link.focus();
  });
  window.addEventListener("hashchange", show);
  show();
}

jobsPage();
computesPage();
tabs();
// The first date formatted loads the browser's locale data (50-90 ms in a new tab): done once
// the page's scripts have sent their first requests, so it does not hold them up.
document.addEventListener("DOMContentLoaded", () => FY.localTimes());
