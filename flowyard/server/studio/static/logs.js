// The job page's log viewer: lines rendered on the server (colours, progress bars, line numbers,
// error marks; see routers/studio_logs.py), appended here a page at a time; search over the
// whole stored log on the server; #L123 links to lines. Everything put in the page as HTML comes
// from the server, which escapes the job's output.
"use strict";

(() => {
  const root = document.getElementById("job");
  const box = document.getElementById("log");
  if (!root || !box) return;
  const id = root.dataset.job;
  const FINAL = new Set(["completed", "failed", "canceled"]);
  const base = `${FY.prefix}/jobs/${encodeURIComponent(id)}/log`;
  const TAIL = 1024 * 1024;   // a long log opens at its last MiB; the download has all of it
  const KEEP = 20000;          // lines kept in the page while following a chatty job
  const follow = document.getElementById("log-follow");
  const search = document.getElementById("log-search");
  const onlyStderr = document.getElementById("log-stderr");
  const results = document.getElementById("log-results");
  const matches = document.getElementById("log-matches");
  const note = document.getElementById("log-truncated");

  let status = root.dataset.status;
  let next = null;            // {offset, line, state} of the next page
  let size = Number(root.dataset.logSize);
  let firstLine = 1;          // the number of the first line in the page
  let busy = null;
  let reading = false;
  let seenLines = 0;
  let atEnd = true;           // the page holds the log up to its end (else: lines around a link)
  const live = () => !FINAL.has(status);

  const lineLocation = () => {
    const m = /^#L(\d+)$/.exec(location.hash);
    return m ? Number(m[1]) : null;
  };

  async function fetchLines(params) {
    const response = await fetch(`${base}/lines?${new URLSearchParams(params)}`);
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    return response.json();
  }

  function put(page, replace) {
    // A line still being drawn (no newline yet) is shown, and replaced by the next page.
    box.querySelector(".ll.partial")?.remove();
    if (replace) box.innerHTML = page.html;
    else box.insertAdjacentHTML("beforeend", page.html);
    if (page.partial) box.lastElementChild?.classList.add("partial");
    status = page.status;
    size = page.size;
    next = { offset: page.next_offset, line: page.next_line, state: page.state };
    seenLines = box.childElementCount;
    if (seenLines > KEEP) {
      // Following, the oldest lines go; in a window around a linked line, the last ones.
      for (let n = seenLines - KEEP; n > 0; n--) (atEnd ? box.firstElementChild : box.lastElementChild).remove();
      seenLines = KEEP;
    }
    firstLine = Number(box.firstElementChild?.id.slice(1) || page.line);
    const lastLine = box.lastElementChild?.id.slice(1);
    note.hidden = firstLine <= 1 && atEnd;
    note.replaceChildren(`Showing from line ${firstLine}${atEnd ? "" : ` to ${lastLine}`}. `);
    if (!atEnd) {
      const end = document.createElement("button");
      end.type = "button";
      end.id = "log-end";
      end.textContent = "Show the end";
      end.addEventListener("click", () => showEnd().catch(failed));
      note.append(end, " ");
    }
    const all = document.createElement("a");
    all.href = base.replace(/\/log$/, "/log.txt");
    all.textContent = "Download the whole log";
    note.append(all, ", or search it above.");
    document.getElementById("log-empty").hidden = box.childElementCount > 0;
    document.getElementById("log-size").textContent = `${(size / 1024).toFixed(1)} KB`;
  }

  // Read on from `next` until the log's end as the server has it now.
  async function readOn() {
    if (reading || !next || !atEnd) return;
    reading = true;
    try {
      let more = true;
      while (more) {
        const before = next.offset;
        const page = await fetchLines({ offset: next.offset, line: next.line, state: next.state });
        put(page, false);
        more = page.next_offset > before && page.next_offset < page.size;
      }
      if (follow.checked) box.scrollTop = box.scrollHeight;
    } finally { reading = false; }
    if (!live()) document.dispatchEvent(new CustomEvent("studio:log-read"));
  }

  async function openAt(line) {
    // The lines from a little before `line` (a page of them): a window, not followed.
    atEnd = false;
    follow.checked = false;
    put(await fetchLines({ at_line: Math.max(1, line - 20) }), true);
  }

  async function showEnd() {
    atEnd = true;
    put(await fetchLines({ tail: TAIL }), true);
    await readOn();
    if (live()) follow.checked = true;
    box.scrollTop = box.scrollHeight;
  }

  async function jumpTo(line) {
    if (!document.getElementById(`L${line}`)) await openAt(line);
    const el = document.getElementById(`L${line}`);
    if (!el) return;
    box.querySelector(".ll.target")?.classList.remove("target");
    el.classList.add("target");
    follow.checked = false;
    box.scrollTop = el.offsetTop - box.offsetTop - box.clientHeight / 3;
  }

  async function start() {
    const wanted = lineLocation();
    if (wanted) await jumpTo(wanted);
    else {
      await showEnd();
      // A finished job opens at its end, where a failure's traceback is; nothing to follow.
      if (!live()) follow.checked = false;
    }
    FY.poll(readOn, 1000, () => live() || reading);
  }
  const failed = (e) => { note.hidden = false; note.textContent = `The log cannot be read: ${e.message}`; };

  // A hidden tab's box forgets where it was scrolled: put it back when the Logs tab shows (at
  // the end, or the marked line, the first time).
  let scrolled = null;
  box.addEventListener("scroll", () => {
    if (!box.clientHeight) return;
    scrolled = box.scrollTop;
    // Scrolling up to read stops following; back at the bottom of a live log, it follows again.
    if (!live() || !atEnd) return;
    follow.checked = box.scrollTop + box.clientHeight >= box.scrollHeight - 8;
  });
  document.addEventListener("studio:tab", (e) => {
    if (e.detail !== "logs") return;
    const target = box.querySelector(".ll.target");
    if (follow.checked) box.scrollTop = box.scrollHeight;
    else if (scrolled !== null) box.scrollTop = scrolled;
    else if (target) box.scrollTop = target.offsetTop - box.offsetTop - box.clientHeight / 3;
    else box.scrollTop = box.scrollHeight;
  });
  follow.addEventListener("change", () => {
    if (!follow.checked) return;
    if (atEnd) box.scrollTop = box.scrollHeight;
    else showEnd().catch(failed);
  });
  window.addEventListener("hashchange", () => {
    const line = lineLocation();
    if (line) jumpTo(line);
  });

  // --- search over the whole stored log, on the server ---------------------------------------
  function showResults(found, term, append) {
    if (!append) results.replaceChildren();
    for (const m of found.matches) {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = `#L${m.line}`;
      a.className = "ln";
      a.textContent = String(m.line);
      if (m.stderr) {
        li.className = "se";
        li.title = "Written to stderr";
        const words = document.createElement("span");
        words.className = "sr";
        words.textContent = ", stderr";
        a.append(words);
      }
      const text = document.createElement("span");
      text.className = `lt ${m.kind}`;
      text.innerHTML = m.html; // escaped on the server, with <mark> around each match
      li.append(a, text);
      results.append(li);
    }
    results.querySelector("li.more")?.remove();
    const count = results.querySelectorAll("li:not(.more)").length;
    results.hidden = count === 0;
    const more = found.next_offset !== null;
    const what = term ? "matching line" : "stderr line";
    matches.textContent = `${count} ${what}${count === 1 ? "" : "s"}${more ? " so far" : " in the whole log"}`;
    if (more) {
      const li = document.createElement("li");
      li.className = "more";
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Search on";
      button.addEventListener("click", async () => {
        showResults(await find({ ...wantedLines(term), offset: found.next_offset, line: found.next_line }), term, true);
      });
      li.append(button);
      results.append(li);
    }
  }

  async function find(params) {
    const response = await fetch(`${base}/search?${new URLSearchParams(params)}`);
    const body = await response.json();
    if (!response.ok) throw new Error(body.message || response.statusText);
    return body;
  }

  // The search term, and "stderr only": the lines the job wrote to stderr (holding the term).
  const wantedLines = (term) => (onlyStderr.checked ? { q: term, stderr: "true" } : { q: term });

  async function runSearch() {
    const term = search.value.trim();
    if (!term && !onlyStderr.checked) { results.hidden = true; results.replaceChildren(); matches.textContent = ""; return; }
    matches.textContent = "Searching…";
    try { showResults(await find(wantedLines(term)), term, false); } catch (e) { matches.textContent = e.message; }
  }
  onlyStderr.addEventListener("change", runSearch);
  search.addEventListener("input", () => { clearTimeout(busy); busy = setTimeout(runSearch, 250); });
  document.getElementById("log-search-form").addEventListener("submit", (e) => { e.preventDefault(); runSearch(); });
  results.addEventListener("click", (e) => {
    const a = e.target.closest("a.ln");
    if (!a) return;
    e.preventDefault();
    history.replaceState(null, "", a.hash);
    jumpTo(Number(a.hash.slice(2)));
  });

  document.getElementById("log-first-error").addEventListener("click", async () => {
    const found = await find({ errors: "true", limit: "1" });
    if (!found.matches.length) { matches.textContent = "No error lines in the log"; return; }
    const line = found.matches[0].line;
    history.replaceState(null, "", `#L${line}`);
    await jumpTo(line);
  });

  start().catch(failed);
})();
