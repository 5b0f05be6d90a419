// The job page's "Run again…": a modal dialog (it moves nothing on the page) to edit a re-run
// (name, compute, experiment, priority, parameters, environment variables), review what differs
// from this job, and submit it (POST .../rerun).
"use strict";

(() => {
  const root = document.getElementById("job");
  const dialog = document.getElementById("rerun-dialog");
  const opener = document.getElementById("rerun-open");
  if (!root || !dialog || !opener) return;
  const jobUrl = `${FY.api}/jobs/${encodeURIComponent(root.dataset.job)}`;
  opener.addEventListener("click", () => dialog.showModal());
  for (const button of dialog.querySelectorAll(".rerun-close")) {
    button.addEventListener("click", () => dialog.close());
  }
  const form = document.getElementById("rerun-form");
  if (!form) return;
  const original = JSON.parse(form.dataset.original);
  const experiments = JSON.parse(form.dataset.experiments);
  const edit = form.querySelector(".rerun-edit");
  const review = form.querySelector(".rerun-review");
  const error = document.getElementById("rerun-error");

  // The form as the re-run API's body; throws on a line that is not NAME=value.
  function body() {
    const parameters = {};
    for (const input of form.querySelectorAll("input[data-param]")) parameters[input.dataset.param] = input.value;
    const env = {};
    form.elements.env_vars.value.split("\n").forEach((line, i) => {
      if (!line.trim()) return;
      const at = line.indexOf("=");
      if (at <= 0) throw new Error(`Line ${i + 1} of the environment variables is not NAME=value; write it so, or delete it.`);
      env[line.slice(0, at).trim()] = line.slice(at + 1);
    });
    const secrets = {};
    for (const input of form.querySelectorAll("input[data-secret]")) if (input.value) secrets[input.dataset.secret] = input.value;
    const priority = form.elements.priority.value.trim();
    if (!/^-?\d+$/.test(priority)) throw new Error("The priority must be a whole number, such as 0 or 10.");
    return {
      run_name: form.elements.run_name.value.trim(),
      compute: form.elements.compute.value,
      experiment_id: form.elements.experiment_id.value,
      priority: Number(priority),
      parameters,
      env_vars: env,
      secret_env: secrets,
    };
  }

  // What differs from this job: [field, this job's value, the re-run's value].
  function differences(b) {
    const rows = [];
    const add = (field, before, after) => { if (before !== after) rows.push([field, before, after]); };
    add("run name", original.run_name, b.run_name);
    add("compute", original.compute, b.compute);
    add("experiment", experiments[original.experiment_id] || original.experiment_id,
      experiments[b.experiment_id] || b.experiment_id);
    add("priority", String(original.priority), String(b.priority));
    for (const k of Object.keys(b.parameters).sort()) add(`parameter ${k}`, original.parameters[k] ?? "", b.parameters[k]);
    const names = [...new Set([...Object.keys(original.env_vars), ...Object.keys(b.env_vars)])].sort();
    for (const k of names) add(`env ${k}`, original.env_vars[k] ?? "(not set)", b.env_vars[k] ?? "(not set)");
    for (const k of Object.keys(b.secret_env).sort()) rows.push([`secret ${k}`, "(theirs)", "(your own value)"]);
    return rows;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    error.textContent = "";
    let b;
    try { b = body(); } catch (e) { error.textContent = e.message; return; }
    const rows = differences(b);
    const tbody = document.querySelector("#rerun-diff tbody");
    tbody.replaceChildren(...rows.map(([field, before, after]) => {
      const tr = document.createElement("tr");
      for (const [text, cls] of [[field, ""], [before, "old"], [after, "new"]]) {
        const td = document.createElement(cls ? "td" : "th");
        td.textContent = text;
        if (cls) td.className = cls;
        tr.append(td);
      }
      return tr;
    }));
    document.getElementById("rerun-same").hidden = rows.length > 1 || (rows.length === 1 && rows[0][0] !== "run name");
    edit.hidden = true;
    review.hidden = false;
    document.getElementById("rerun-submit").focus();
  });

  document.getElementById("rerun-back").addEventListener("click", () => {
    review.hidden = true;
    edit.hidden = false;
    error.textContent = "";
  });

  document.getElementById("rerun-submit").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    error.textContent = "";
    button.disabled = true;
    try {
      const job = await FY.json(`${jobUrl}/rerun`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body()),
      });
      location.href = `${FY.prefix}/jobs/${job.id}`;
    } catch (e) {
      error.textContent = e.message;
      button.disabled = false;
    }
  });
})();
