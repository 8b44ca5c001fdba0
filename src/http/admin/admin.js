// Roster's admin page. Everything it shows comes from the public GraphQL API (POST /graphql,
// subscriptions on /graphql/ws) and the failed-rows route, with the token pasted at the top.
// The token is kept in this browser under GraphiQL's key, so signing in on one page signs in
// on the other. A viewer token sees everything but the controls that write (class `write`).

const KEY = "roster.token";

// The header names importUsersCsv recognises, as src/jobs/csv.rs reads them (Field::ALL,
// each with seed 001's spelling, and Column::of) and the mutation's description in
// schema.graphql lists them; compared case-insensitively. Keep this list in step with it.
const COLUMNS = [
  ["externalId", "uid"], ["source"], ["email"], ["login"], ["firstName"],
  ["middleName", "patronymic"], ["lastName", "secondname"], ["title"], ["password"],
  ["passwordHash"], ["birthDate", "birth_date"], ["gender"], ["active", "is_active"],
  ["phone"], ["city"], ["department"], ["position"], ["company"],
  ["workContact", "work_contact"], ["structureUid", "structure_uid"], ["language"],
  ["facebookId", "facebook_id"], ["googleId", "google_id"],
  ["employmentStartDate", "date_of_employment"], ["employmentEndDate"],
  ["positionAssignedDate", "date_of_assignment_current_position"], ["tags"],
  ["attributes"], ["customInfo"], ["approvers"], ["managerExternalId", "manager_uid"],
  ["clear"],
];
// A file lacking one of these is refused whole.
const REQUIRED = ["externalId", "email", "firstName", "lastName"];
// Read and ignored: the export's own columns and a failed-rows file's `errors`.
const IGNORED = ["id", "createdat", "updatedat", "errors", ""];

const COUNTS = ["created", "updated", "unchanged", "skipped", "failed", "deactivated",
  "blocked", "unblocked", "deleted"];
const STATUSES = [
  ["COMPLETED", "Completed"], ["EXPIRING_SOON", "Expiring soon"],
  ["UNCOMPLETED", "Uncompleted"], ["NOT_COMPLIANT", "Not compliant"],
  ["NO_TRACKS_ASSIGNED", "No tracks assigned"],
];
const PAGE = 20;

const JOB = `fragment Job on ImportJob {
  id kind status dryRun atomic deactivateMissing changeThreshold total processed progress
  createdAt createdBy startedAt finishedAt errorMessage warnings failedRowsCsvUrl
  repeatable revertible description
  summary { created updated unchanged skipped failed deactivated blocked unblocked deleted }
  retryOf { id } revertOf { id } revertedBy { id status }
}`;

const $ = (id) => document.getElementById(id);
const token = () => localStorage.getItem(KEY) || "";

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

class ApiError extends Error {}

async function graphql(query, variables = {}) {
  if (!token()) throw new ApiError("Paste a bearer token into the field at the top first.");
  const response = await fetch("/graphql", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token()}` },
    body: JSON.stringify({ query, variables }),
  });
  return answer(response);
}

async function answer(response) {
  const body = await response.json();
  if (body.errors && body.errors.length) {
    throw new ApiError(body.errors.map((e) => e.message).join("; "));
  }
  return body.data;
}

function say(id, text, error = false) {
  const node = $(id);
  node.textContent = text;
  node.classList.toggle("error", error);
}

// ---- Sign-in ----

async function signIn() {
  document.body.dataset.role = "";
  // What another token showed goes.
  stopFollowing();
  shown = null;
  statusShown = null;
  $("job").hidden = true;
  $("status-title").hidden = true;
  $("status-users").hidden = true;
  $("status-more").hidden = true;
  $("jobs-table").tBodies[0].replaceChildren();
  $("chart").replaceChildren();
  $("token").value = token();
  if (!token()) {
    say("token-state", "no token: paste one to use this page");
    return;
  }
  try {
    const { viewer } = await graphql("{ viewer { subject role tenant } }");
    document.body.dataset.role = viewer.role;
    say("token-state", `${viewer.subject} (${viewer.role}) of tenant ${viewer.tenant}`);
    loadJobs();
    loadCompliance();
  } catch (error) {
    say("token-state", error.message, true);
  }
}

$("token-bar").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem(KEY, $("token").value.trim());
  signIn();
});
window.addEventListener("storage", (event) => {
  if (event.key === KEY) signIn();
});

// ---- Import a file: preview ----

let file = null;
let dryRunOf = null; // the file and options of the last finished dry run

// Splits CSV text into rows of cells: quoted cells may hold separators, quotes and breaks.
function parseCsv(text, separator, limit) {
  const rows = [];
  let row = [];
  let cell = "";
  let quoted = false;
  for (let i = 0; i < text.length && rows.length < limit; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { cell += '"'; i++; }
      else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === separator) { row.push(cell); cell = ""; }
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(cell); cell = "";
      if (row.some((v) => v !== "")) rows.push(row);
      row = [];
    } else cell += c;
  }
  if (rows.length < limit && (cell !== "" || row.length)) {
    row.push(cell);
    if (row.some((v) => v !== "")) rows.push(row);
  }
  return rows;
}

// What importUsersCsv makes of a column: a field (by either spelling), an attribute,
// a column it ignores, or one it does not know.
function columnKind(name) {
  const lower = name.trim().toLowerCase();
  const field = COLUMNS.find((names) => names.some((n) => n.toLowerCase() === lower));
  if (field) return { kind: "known", field: field[0] };
  if (/^attr:.+/.test(lower) || /^user_field[1-5]$/.test(lower)) return { kind: "known", field: "attribute" };
  if (IGNORED.includes(lower)) return { kind: "ignored" };
  return { kind: "unknown" };
}

async function preview(chosen) {
  file = chosen;
  dryRunOf = null;
  const box = $("preview");
  box.replaceChildren();
  if (!file) return updateButtons();
  const head = await file.slice(0, 256 * 1024).text();
  const text = head.replace(/^\uFEFF/, "");
  const firstLine = text.split(/\r?\n/, 1)[0];
  const separator = [",", ";", "\t"]
    .map((s) => [s, firstLine.split(s).length])
    .sort((a, b) => b[1] - a[1])[0][0];
  const rows = parseCsv(text, separator, 6);
  const [header = [], ...sample] = rows;
  const kinds = header.map(columnKind);
  const present = new Set(kinds.map((k) => k.field));
  const missing = REQUIRED.filter((f) => !present.has(f));
  const unknown = header.filter((_, i) => kinds[i].kind === "unknown");
  const names = { ",": "comma", ";": "semicolon", "\t": "tab" };
  box.append(
    element("p", { id: "preview-summary", text:
      `${file.name}: ${header.length} columns, ${names[separator]}-separated; first rows below.` }),
  );
  if (missing.length) {
    box.append(element("p", { class: "error", id: "preview-missing", text:
      `Missing required columns: ${missing.join(", ")}. The server will refuse this file.` }));
  }
  if (unknown.length) {
    box.append(element("p", { class: "warning", id: "preview-unknown", text:
      `Unknown columns, to be ignored: ${unknown.join(", ")}.` }));
  }
  const thead = element("tr", {}, ...header.map((name, i) => {
    const kind = kinds[i].kind;
    const label = { known: "recognised", ignored: "ignored", unknown: "unknown" }[kind];
    return element("th", { scope: "col", class: kind, title: label },
      element("span", { text: name }), element("small", { text: label }));
  }));
  const tbody = element("tbody", {}, ...sample.map((row) =>
    element("tr", {}, ...header.map((_, i) => element("td", { class: kinds[i].kind, text: row[i] ?? "" })))));
  box.append(element("div", { class: "scroll" },
    element("table", { id: "preview-table", "aria-label": "First rows of the file" },
      element("thead", {}, thead), tbody)));
  updateButtons();
}

$("file").addEventListener("change", () => preview($("file").files[0] || null));
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  const dropped = event.dataTransfer.files[0];
  if (dropped) preview(dropped);
});

$("deactivateMissing").addEventListener("change", () => {
  $("changeThreshold").disabled = !$("deactivateMissing").checked;
  $("atomic").disabled = $("deactivateMissing").checked;
});
$("atomic").addEventListener("change", () => {
  $("deactivateMissing").disabled = $("atomic").checked;
});

function options(dryRun) {
  const chosen = {
    dryRun,
    mode: $("mode").value,
    matchBy: $("matchBy").value,
    atomic: $("atomic").checked,
    deactivateMissing: $("deactivateMissing").checked,
  };
  if (chosen.deactivateMissing && $("changeThreshold").value !== "") {
    chosen.changeThreshold = Number($("changeThreshold").value);
  }
  return chosen;
}

const optionsKey = () => JSON.stringify(options(false));

function updateButtons() {
  $("dry-run").disabled = !file;
  const tried = dryRunOf && dryRunOf.file === file && dryRunOf.options === optionsKey();
  $("import-real").disabled = !file || !(tried || $("skip-dry-run").checked);
  if (file && $("import-real").disabled) say("import-state", "Run a dry run of this file and these options first.");
}
$("import-form").addEventListener("change", (event) => {
  if (event.target.id !== "file") updateButtons();
});

async function upload(dryRun) {
  const form = new FormData();
  form.append("operations", JSON.stringify({
    query: `mutation Import($file: Upload!, $options: ImportOptions) {
      importUsersCsv(file: $file, options: $options) { ...Job } } ${JOB}`,
    variables: { file: null, options: options(dryRun) },
  }));
  form.append("map", JSON.stringify({ 0: ["variables.file"] }));
  form.append("0", file, file.name);
  const response = await fetch("/graphql", {
    method: "POST", headers: { Authorization: `Bearer ${token()}` }, body: form,
  });
  return (await answer(response)).importUsersCsv;
}

async function submit(dryRun) {
  const sent = { file, options: optionsKey() };
  say("import-state", dryRun ? "Dry run: uploading…" : "Importing: uploading…");
  $("dry-run").disabled = true;
  $("import-real").disabled = true;
  try {
    const job = await upload(dryRun);
    say("import-state", `${dryRun ? "Dry run" : "Import"}: job ${job.id} ${job.status}`);
    const final = (await openJob(job.id, job)) || job;
    if (!FINAL.includes(final.status)) {
      say("import-state", `Job ${job.id}: ${final.status}; open it from the jobs list to follow it.`);
    } else if (dryRun) {
      if (final.status.startsWith("COMPLETED")) dryRunOf = sent;
      say("import-state", `Dry run finished (${final.status}): nothing was written. Check the counts, then import for real.`);
    } else {
      say("import-state", `Import finished: ${final.status}.`);
    }
  } catch (error) {
    say("import-state", error.message, true);
  }
  updateButtons();
}

$("import-form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (file) submit(true);
});
$("import-real").addEventListener("click", () => {
  if (confirm(`Import ${file.name} for real? Users will be written.`)) submit(false);
});

// ---- Watch a job ----

let shown = null; // id of the job on show
let socket = null;
let failedAfter = null;

const FINAL = ["COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELLED"];

// Closes the progress stream of the job on show, when another job or token takes over.
function stopFollowing() {
  if (!socket) return;
  socket.superseded = true;
  socket.close(1000);
  socket = null;
}

// Follows a job through importJobProgress until its final status; resolves with it (or
// with the job as last seen, when another job takes over).
function follow(id, onJob) {
  return new Promise((resolve, reject) => {
    stopFollowing();
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(`${scheme}${location.host}/graphql/ws`, "graphql-transport-ws");
    socket = ws;
    let last = null;
    ws.addEventListener("open", () => ws.send(JSON.stringify({
      type: "connection_init", payload: { Authorization: `Bearer ${token()}` },
    })));
    ws.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "ping") ws.send(JSON.stringify({ type: "pong" }));
      else if (message.type === "connection_ack") {
        ws.send(JSON.stringify({ id: "progress", type: "subscribe", payload: {
          query: `subscription Progress($id: ID!) { importJobProgress(id: $id) { ...Job } } ${JOB}`,
          variables: { id },
        } }));
      } else if (message.type === "next") {
        if (message.payload.errors) {
          reject(new ApiError(message.payload.errors.map((e) => e.message).join("; ")));
          return;
        }
        last = message.payload.data.importJobProgress;
        onJob(last);
      } else if (message.type === "error") {
        reject(new ApiError(message.payload.map((e) => e.message).join("; ")));
      } else if (message.type === "complete") {
        ws.close(1000);
        resolve(last);
      }
    });
    ws.addEventListener("close", (event) => {
      if (socket === ws) socket = null;
      if (ws.superseded) resolve(last);
      else if (!last || !FINAL.includes(last.status)) {
        reject(new ApiError(`progress stream closed (${event.code} ${event.reason})`));
      }
    });
  });
}

async function openJob(id, known) {
  if (shown !== id && !known) say("job-state", "");
  shown = id;
  $("job").hidden = false;
  let job = known;
  if (!job) job = (await graphql(`query Job($id: ID!) { importJob(id: $id) { ...Job } } ${JOB}`, { id })).importJob;
  if (!job) throw new ApiError(`no job ${id}`);
  renderJob(job);
  $("job").scrollIntoView({ block: "start" });
  if (!FINAL.includes(job.status)) {
    job = await follow(id, (update) => { if (shown === id) renderJob(update); });
  }
  if (shown === id) {
    renderJob(job);
    await loadFailed(id, null);
  }
  loadJobs();
  return job;
}

function renderJob(job) {
  const kind = job.kind === "REVERT" ? `revert of job ${job.revertOf ? job.revertOf.id : "?"}`
    : job.retryOf ? `retry of job ${job.retryOf.id}` : "import";
  $("job-title").textContent = `Job ${job.id}: ${job.dryRun ? "dry run, " : ""}${kind}`;
  const facts = [
    ["Status", job.status, "job-status"],
    ["Rows", `${job.processed} of ${job.total} processed`, "job-rows"],
    ["Started by", job.createdBy],
    ["Created", new Date(job.createdAt).toLocaleString()],
    ["Options", [job.atomic && "atomic", job.deactivateMissing &&
      `sync${job.changeThreshold != null ? ` (threshold ${job.changeThreshold}%)` : ""}`]
      .filter(Boolean).join(", ") || "—"],
  ];
  if (job.finishedAt) facts.push(["Finished", new Date(job.finishedAt).toLocaleString()]);
  if (job.errorMessage) facts.push(["Error", job.errorMessage, "job-error"]);
  if (job.revertedBy) facts.push(["Reverted by", `job ${job.revertedBy.id} (${job.revertedBy.status})`]);
  $("job-facts").replaceChildren(...facts.flatMap(([term, value, id]) => [
    element("dt", { text: term }), element("dd", id ? { id, text: value } : { text: value }),
  ]));
  $("job-progress").value = job.progress;
  $("job-percent").textContent = `${Math.floor(job.progress * 100)}%`;
  $("job-counts").tBodies[0].replaceChildren(...COUNTS.map((name) => element("tr", {},
    element("th", { scope: "row", text: name }),
    element("td", { id: `count-${name}`, text: String(job.summary[name]) }))));
  $("job-warnings").textContent = job.warnings.join(" ");
  // A dry run or an atomic job is one transaction: cancellable only while queued.
  const cancellable = job.status === "QUEUED" || (job.status === "RUNNING" && !job.dryRun && !job.atomic);
  $("job-cancel").hidden = !cancellable;
  $("job-retry").hidden = !job.repeatable;
  $("job-revert").hidden = !job.revertible;
  $("job-download").hidden = !job.failedRowsCsvUrl;
  $("job-download").dataset.url = job.failedRowsCsvUrl || "";
  $("job").dataset.status = job.status;
}

async function loadFailed(id, after) {
  const data = await graphql(`query Failed($id: ID!, $first: Int!, $after: String) {
    importJob(id: $id) { rows(first: $first, after: $after, onlyFailed: true) {
      totalCount pageInfo { hasNextPage endCursor }
      nodes { index lookupKey action errors { field code message } } } } }`,
  { id, first: PAGE, after });
  if (shown !== id || !data.importJob) return;
  const rows = data.importJob.rows;
  const body = $("failed").tBodies[0];
  if (!after) body.replaceChildren();
  for (const row of rows.nodes) {
    const line = /\(line (\d+)\)$/.exec(row.lookupKey);
    body.append(element("tr", {},
      element("td", { text: line ? line[1] : String(row.index + 1) }),
      element("td", { text: row.lookupKey.replace(/ \(line \d+\)$/, "") }),
      element("td", { text: row.action }),
      element("td", {}, element("ul", {}, ...row.errors.map((e) =>
        element("li", { text: `${e.field ? `${e.field}: ` : ""}${e.message} (${e.code})` }))))));
  }
  $("failed").hidden = rows.totalCount === 0;
  $("failed-count").textContent = rows.totalCount === 0 ? "No failed rows."
    : `${body.rows.length} of ${rows.totalCount} failed rows shown.`;
  failedAfter = rows.pageInfo.endCursor;
  $("failed-more").hidden = !rows.pageInfo.hasNextPage;
}

$("failed-more").addEventListener("click", () => loadFailed(shown, failedAfter).catch(report));

$("job-download").addEventListener("click", async () => {
  try {
    const response = await fetch($("job-download").dataset.url, {
      headers: { Authorization: `Bearer ${token()}` },
    });
    if (!response.ok) throw new ApiError(`download failed: HTTP ${response.status}`);
    const url = URL.createObjectURL(await response.blob());
    const link = element("a", { href: url, download: `job-${shown}-failed-rows.csv` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (error) {
    report(error);
  }
});

function report(error) {
  say("job-state", error.message, true);
}

// Retry, cancel and revert: each asks first, then shows the job it answers.
for (const [button, mutation, question] of [
  ["job-retry", "retryImportJob", (id) => `Run the failed rows of job ${id} again, as a new job?`],
  ["job-cancel", "cancelImportJob", (id) => `Cancel job ${id}? What it committed stays.`],
  ["job-revert", "revertImportJob", (id) => `Revert job ${id}? Users it created are removed, the others put back as they were.`],
]) {
  $(button).addEventListener("click", async () => {
    const id = shown;
    if (!confirm(question(id))) return;
    try {
      const data = await graphql(`mutation Act($id: ID!) { ${mutation}(id: $id) { ...Job } } ${JOB}`, { id });
      const job = data[mutation];
      say("job-state", `${mutation}: job ${job.id} ${job.status}`);
      await openJob(job.id, job);
    } catch (error) {
      report(error);
    }
  });
}

// ---- Jobs ----

let jobsAfter = null;

async function loadJobs(after = null) {
  try {
    const { importJobs } = await graphql(`query Jobs($after: String) {
      importJobs(first: ${PAGE}, after: $after) { pageInfo { hasNextPage endCursor }
        nodes { id kind dryRun status total createdAt createdBy summary { created updated failed deleted } } } }`,
    { after });
    const body = $("jobs-table").tBodies[0];
    if (!after) body.replaceChildren();
    for (const job of importJobs.nodes) {
      const { created, updated, failed, deleted } = job.summary;
      body.append(element("tr", {},
        element("td", {}, element("button", { type: "button", "aria-label": `Open job ${job.id}`,
          text: `#${job.id}`, onclick: () => openJob(job.id).catch(report) })),
        element("td", { text: new Date(job.createdAt).toLocaleString() }),
        element("td", { text: `${job.kind === "REVERT" ? "revert" : "import"}${job.dryRun ? " (dry run)" : ""}` }),
        element("td", { text: job.status }),
        element("td", { text: String(job.total) }),
        element("td", { text: `${created} / ${updated} / ${failed}${deleted ? ` (${deleted} deleted)` : ""}` }),
        element("td", { text: job.createdBy })));
    }
    if (!body.rows.length) {
      body.append(element("tr", {}, element("td", { colspan: "7", text: "No jobs yet." })));
    }
    jobsAfter = importJobs.pageInfo.endCursor;
    $("jobs-more").hidden = !importJobs.pageInfo.hasNextPage;
  } catch (error) {
    say("token-state", error.message, true);
  }
}

$("jobs-refresh").addEventListener("click", () => loadJobs());
$("jobs-more").addEventListener("click", () => loadJobs(jobsAfter));

// ---- Compliance ----

let statusShown = null;
let statusAfter = null;

function asOf() {
  const day = $("asOf").value;
  return day ? `${day}T23:59:59Z` : null;
}

async function loadCompliance() {
  try {
    const { complianceSummary } = await graphql(`query Summary($asOf: DateTime) {
      complianceSummary(asOf: $asOf) { completed expiringSoon uncompleted notCompliant noTracksAssigned } }`,
    { asOf: asOf() });
    const counts = {
      COMPLETED: complianceSummary.completed,
      EXPIRING_SOON: complianceSummary.expiringSoon,
      UNCOMPLETED: complianceSummary.uncompleted,
      NOT_COMPLIANT: complianceSummary.notCompliant,
      NO_TRACKS_ASSIGNED: complianceSummary.noTracksAssigned,
    };
    const most = Math.max(1, ...Object.values(counts));
    $("chart").replaceChildren(...STATUSES.map(([status, label]) => element("div", {
      role: "listitem", class: "bar", "data-status": status },
    element("button", { type: "button", text: label, "aria-label": `${label}: ${counts[status]} users; list them`,
      onclick: () => loadStatus(status, null) }),
    element("span", { class: "track" }, element("span", { class: "fill", style: `width: ${(100 * counts[status]) / most}%` })),
    element("span", { class: "count", text: String(counts[status]) }))));
  } catch (error) {
    say("token-state", error.message, true);
  }
}

async function loadStatus(status, after) {
  try {
    const { users } = await graphql(`query Status($status: LearningTrackStatus!, $after: String, $asOf: DateTime) {
      users(first: ${PAGE}, after: $after, filter: { learningTrackStatus: $status, asOf: $asOf }) {
        totalCount pageInfo { hasNextPage endCursor }
        nodes { id fullName email learningTracks(asOf: $asOf) { status track { name } } } } }`,
    { status, after, asOf: asOf() });
    statusShown = status;
    const label = STATUSES.find(([s]) => s === status)[1];
    $("status-title").hidden = false;
    $("status-title").textContent = `${label} ${asOf() ? `as of ${$("asOf").value}` : "now"}: ${users.totalCount} users`;
    $("status-users").hidden = false;
    const body = $("status-users").tBodies[0];
    if (!after) body.replaceChildren();
    for (const user of users.nodes) {
      body.append(element("tr", {},
        element("td", { text: user.fullName }),
        element("td", { text: user.email }),
        element("td", { text: user.learningTracks.map((t) => `${t.track.name}: ${t.status}`).join(", ") || "—" })));
    }
    statusAfter = users.pageInfo.endCursor;
    $("status-more").hidden = !users.pageInfo.hasNextPage;
  } catch (error) {
    say("token-state", error.message, true);
  }
}

$("status-more").addEventListener("click", () => loadStatus(statusShown, statusAfter));
$("compliance-form").addEventListener("submit", (event) => {
  event.preventDefault();
  loadCompliance();
  if (statusShown) loadStatus(statusShown, null);
});

signIn();
