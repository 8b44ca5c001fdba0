// The admin page as an admin uses it, in a real Chromium against the real server: a token
// pasted into it, a CSV file with bad rows previewed, dry-run, imported for real with the
// progress bar fed by the subscription, its failed rows listed and downloaded, retried and
// reverted; the jobs list; the compliance chart of a prepared tenant; what a viewer sees.
// Any console error, page error or failed request of the page fails the test. Screenshots
// go to $ROSTER_BROWSER_OUTPUT (default tests/browser/output).
//
//   ROSTER_URL=… ROSTER_TOKEN=<admin> ROSTER_VIEWER_TOKEN=<viewer of the same tenant> \
//   ROSTER_COMPLIANCE_TOKEN=<admin of an empty tenant> node admin.mjs
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { launch, outputDir, required, watch } from "./harness.mjs";

const base = required("ROSTER_URL");
const token = required("ROSTER_TOKEN");
const viewerToken = required("ROSTER_VIEWER_TOKEN");
const complianceToken = required("ROSTER_COMPLIANCE_TOKEN");
const output = outputDir();

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

async function api(bearer, query, variables = {}) {
  const response = await fetch(`${base}/graphql`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${bearer}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (body.errors) throw new Error(`${query}: ${JSON.stringify(body.errors)}`);
  return body.data;
}

const problems = [];
const browser = await launch();
const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
const frames = []; // the graphql-transport-ws messages the page received

async function open(path = "/admin") {
  const page = await context.newPage();
  watch(page, problems);
  page.on("websocket", (ws) => {
    ws.on("framereceived", (frame) => frames.push(JSON.parse(frame.payload)));
    ws.on("socketerror", (error) => problems.push(`websocket error: ${error}`));
  });
  await page.goto(`${base}${path}`);
  return page;
}

async function signIn(page, bearer, role) {
  await page.getByLabel("Bearer token").fill(bearer);
  await page.getByRole("button", { name: "Use token" }).click();
  await page.locator("#token-state").getByText(`(${role})`).waitFor();
}

const text = async (page, selector) => (await page.locator(selector).innerText()).trim();

async function waitText(page, selector, expected) {
  await page.locator(selector).filter({ hasText: expected }).waitFor({ timeout: 15_000 });
}

async function counts(page) {
  const result = {};
  for (const name of ["created", "updated", "unchanged", "skipped", "failed", "deleted"]) {
    result[name] = Number(await text(page, `#count-${name}`));
  }
  return result;
}

const stamp = Date.now();
const prefix = `adm${stamp}`;
const csv = [
  "externalId,email,firstName,lastName,department,shoe_size",
  ...[1, 2, 3, 4].map((n) => `${prefix}-${n},${prefix}.${n}@example.com,Ada${n},Lovelace,Ops,4${n}`),
  `${prefix}-5,not-an-email,Bad,Email,Ops,40`,
  `${prefix}-6,${prefix}.6@example.com,,Nofirst,Ops,39`,
  // More failed rows than a page of the table holds.
  ...Array.from({ length: 21 }, (_, i) => `${prefix}-x${i},bad-${i},Bad,Email,Ops,38`),
].join("\n") + "\n";

async function usersOfPrefix() {
  const data = await api(token, "query($s: String) { users(filter: { search: $s }) { totalCount } }", { s: prefix });
  return data.users.totalCount;
}

const checks = [];
const check = (name, run) => checks.push({ name, run });
let page;
let dryRunId;
let importId;

check("without a token the page says so and calls nothing", async () => {
  page = await open();
  await waitText(page, "#token-state", "no token");
  assert(!(await page.locator("#import").isVisible()), "the import form shows without a token");
});

check("a pasted admin token signs in", async () => {
  await signIn(page, token, "admin");
  assert(await page.locator("#import").isVisible(), "no import form for an admin");
  await page.screenshot({ path: join(output, "admin-signed-in.png"), fullPage: true });
});

check("the preview marks recognised columns and flags unknown ones", async () => {
  await page.getByLabel("CSV file").setInputFiles({ name: "people.csv", mimeType: "text/csv", buffer: Buffer.from(csv) });
  await page.locator("#preview-table").waitFor();
  const known = await page.locator("#preview-table th.known span").allInnerTexts();
  const unknown = await page.locator("#preview-table th.unknown span").allInnerTexts();
  assert(known.join() === "externalId,email,firstName,lastName,department", `recognised: ${known}`);
  assert(unknown.join() === "shoe_size", `unknown: ${unknown}`);
  assert((await text(page, "#preview-unknown")).includes("shoe_size"), "unknown columns not named");
  assert((await page.locator("#preview-table tbody tr").count()) === 5, "not the first five rows");
  const labelled = await page.evaluate(() => [...document.querySelectorAll("input, select")]
    .filter((control) => control.labels.length === 0).map((control) => control.id));
  assert(labelled.length === 0, `controls without a label: ${labelled}`);
  assert(await page.getByRole("button", { name: "Import for real" }).isDisabled(), "import before a dry run");
  await page.screenshot({ path: join(output, "admin-preview.png"), fullPage: true });
});

check("a dry run shows the counts and the failed rows, and writes nothing", async () => {
  await page.getByRole("button", { name: "Dry run" }).click();
  await waitText(page, "#job-title", "dry run");
  await waitText(page, "#job-status", "COMPLETED_WITH_ERRORS");
  dryRunId = (await text(page, "#job-title")).match(/Job (\d+)/)[1];
  const seen = await counts(page);
  assert(seen.created === 4 && seen.failed === 23, `dry-run counts ${JSON.stringify(seen)}`);
  await page.locator("#failed tbody tr").nth(19).waitFor();
  assert((await page.locator("#failed tbody tr").count()) === 20, "not a page of 20 failed rows");
  await waitText(page, "#failed-count", "20 of 23");
  await page.getByRole("button", { name: "More failed rows" }).click();
  await page.locator("#failed tbody tr").nth(22).waitFor();
  const failed = await text(page, "#failed tbody");
  assert(failed.includes("email") && failed.includes("firstName"), `failed rows: ${failed}`);
  assert(!(await page.getByRole("button", { name: "More failed rows" }).isVisible()), "more after the last page");
  assert((await usersOfPrefix()) === 0, "a dry run wrote users");
  await page.screenshot({ path: join(output, "admin-dry-run.png"), fullPage: true });
});

check("import for real: the bar, fed by the subscription, reaches 100%", async () => {
  const before = frames.length;
  page.once("dialog", (dialog) => dialog.accept());
  await page.getByRole("button", { name: "Import for real" }).click();
  await page.locator("#job-title").filter({ hasNotText: "dry run" }).waitFor();
  await waitText(page, "#job-status", "COMPLETED_WITH_ERRORS");
  importId = (await text(page, "#job-title")).match(/Job (\d+)/)[1];
  await waitText(page, "#job-percent", "100%");
  assert((await page.locator("#job-progress").evaluate((bar) => bar.value)) === 1, "bar not full");
  const events = frames.slice(before).filter((f) => f.type === "next" && f.payload.data?.importJobProgress?.id === importId);
  assert(events.length >= 1, "no importJobProgress event for the job");
  assert(events.at(-1).payload.data.importJobProgress.status === "COMPLETED_WITH_ERRORS", "last event not final");
  const seen = await counts(page);
  assert(seen.created === 4 && seen.failed === 23, `counts ${JSON.stringify(seen)}`);
  assert((await usersOfPrefix()) === 4, "the users were not written");
  await page.locator("#failed tbody tr").nth(19).waitFor();
  assert((await page.locator("#failed tbody tr").count()) === 20, "not a page of failed rows");
  await page.screenshot({ path: join(output, "admin-imported.png"), fullPage: true });
});

check("the failed-rows CSV downloads with its errors", async () => {
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("button", { name: "Download failed rows (CSV)" }).click(),
  ]);
  assert(download.suggestedFilename() === `job-${importId}-failed-rows.csv`, download.suggestedFilename());
  const body = readFileSync(await download.path(), "utf8");
  const lines = body.trim().split(/\r?\n/);
  assert(lines[0].includes("shoe_size") && lines[0].includes("errors"), `header: ${lines[0]}`);
  assert(lines.length === 24 && body.includes("not-an-email"), `file: ${body}`);
});

check("retry asks first and shows the new job", async () => {
  let asked = "";
  page.once("dialog", (dialog) => { asked = dialog.message(); dialog.accept(); });
  await page.getByRole("button", { name: "Retry failed rows" }).click();
  await waitText(page, "#job-title", `retry of job ${importId}`);
  await waitText(page, "#job-status", "COMPLETED_WITH_ERRORS");
  assert(asked.includes(importId), `confirmation: ${asked}`);
  const seen = await counts(page);
  assert(seen.failed === 23 && seen.created === 0, `retry counts ${JSON.stringify(seen)}`);
});

check("a declined confirmation changes nothing; revert removes the users", async () => {
  await page.getByRole("button", { name: `Open job ${importId}` }).click();
  await waitText(page, "#job-title", `Job ${importId}: import`);
  const jobs = async () => (await api(token, "{ importJobs { totalCount } }")).importJobs.totalCount;
  const before = await jobs();
  page.once("dialog", (dialog) => dialog.dismiss());
  await page.getByRole("button", { name: "Revert" }).click();
  await page.waitForTimeout(500);
  assert((await jobs()) === before, "a declined revert started a job");
  assert((await text(page, "#job-title")).startsWith(`Job ${importId}:`), "a declined revert shows another job");
  page.once("dialog", (dialog) => dialog.accept());
  await page.getByRole("button", { name: "Revert" }).click();
  await waitText(page, "#job-title", `revert of job ${importId}`);
  await waitText(page, "#job-status", "COMPLETED");
  const seen = await counts(page);
  assert(seen.deleted === 4, `revert counts ${JSON.stringify(seen)}`);
  assert((await usersOfPrefix()) === 0, "the users are still there");
  await page.screenshot({ path: join(output, "admin-reverted.png"), fullPage: true });
});

check("the jobs list is newest first with status, counts and who started each", async () => {
  await page.getByRole("button", { name: "Refresh" }).click();
  await page.locator("#jobs-table tbody tr").nth(3).waitFor();
  const rows = await page.locator("#jobs-table tbody tr").allInnerTexts();
  assert(rows.length === 4, `jobs: ${rows.length}`);
  assert(rows[0].includes("revert") && rows[3].includes("dry run"), `order: ${rows}`);
  assert(rows[3].includes("COMPLETED_WITH_ERRORS") && rows[3].includes("4 / 0 / 23") && rows[3].includes("browser"), rows[3]);
  await page.getByRole("button", { name: `Open job ${dryRunId}` }).click();
  await waitText(page, "#job-title", `Job ${dryRunId}: dry run`);
  await page.locator("#jobs").screenshot({ path: join(output, "admin-jobs.png") });
});

check("a big file dropped on the page: its counts follow its chunks as they commit, and Cancel stops it", async () => {
  const total = 30_000;
  const big = ["externalId,email,firstName,lastName",
    ...Array.from({ length: total }, (_, i) => `${prefix}-big-${i},${prefix}.big${i}@example.com,Big,Import${i}`)]
    .join("\n") + "\n";
  // Dropped on the page rather than chosen.
  await page.evaluate((text) => {
    const transfer = new DataTransfer();
    transfer.items.add(new File([text], "big.csv", { type: "text/csv" }));
    const zone = document.getElementById("drop");
    zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
  }, big);
  await waitText(page, "#preview-summary", "big.csv");
  assert(await page.getByRole("button", { name: "Import for real" }).isDisabled(), "import before a dry run");
  await page.getByLabel("Import without a dry run first").check();
  const before = frames.length;
  page.once("dialog", (dialog) => dialog.accept());
  await page.getByRole("button", { name: "Import for real" }).click();
  const cancel = page.getByRole("button", { name: "Cancel", exact: true });
  await cancel.waitFor();
  await page.waitForFunction(() => Number(document.querySelector("#count-created")?.textContent) > 0,
    null, { timeout: 60_000 });
  assert((await text(page, "#job-status")) === "RUNNING", "the job ended before it could be cancelled");
  const bigId = (await text(page, "#job-title")).match(/Job (\d+)/)[1];
  let asked = "";
  page.once("dialog", (dialog) => { asked = dialog.message(); dialog.accept(); });
  await cancel.click();
  await waitText(page, "#job-status", "CANCELLED");
  assert(asked.includes(bigId), `confirmation: ${asked}`);
  assert(!(await cancel.isVisible()), "Cancel shows on a cancelled job");
  const processed = frames.slice(before)
    .filter((f) => f.type === "next" && f.payload.data?.importJobProgress?.id === bigId)
    .map((f) => f.payload.data.importJobProgress.processed);
  assert(new Set(processed).size >= 2, `progress events: ${processed}`);
  const stopped = Number((await text(page, "#job-rows")).split(" ")[0]);
  assert(stopped > 0 && stopped < total, `processed ${stopped} of ${total}`);
  await page.screenshot({ path: join(output, "admin-cancelled.png"), fullPage: true });
});

check("the options chosen are the job's: mode, sync mode with its threshold", async () => {
  await page.getByLabel("CSV file").setInputFiles({ name: "again.csv", mimeType: "text/csv", buffer: Buffer.from(csv) });
  await waitText(page, "#preview-summary", "again.csv");
  await page.getByLabel("Mode", { exact: true }).selectOption("UPDATE_ONLY");
  await page.getByLabel("Match by").selectOption("EMAIL");
  assert(await page.getByLabel("Sync threshold (%)").isDisabled(), "a threshold without sync mode");
  await page.getByLabel("Sync mode: deactivate users the file does not name").check();
  assert(await page.getByLabel("Atomic: all rows or none").isDisabled(), "atomic with sync mode");
  await page.getByLabel("Sync threshold (%)").fill("10");
  await page.getByRole("button", { name: "Dry run" }).click();
  await waitText(page, "#job-title", "dry run");
  await page.locator("#job-status").filter({ hasText: /^COMPLETED/ }).waitFor({ timeout: 15_000 });
  const id = (await text(page, "#job-title")).match(/Job (\d+)/)[1];
  assert((await text(page, "#job-facts")).includes("sync (threshold 10%)"), await text(page, "#job-facts"));
  const { importJob } = await api(token, "query($id: ID!) { importJob(id: $id) { dryRun deactivateMissing changeThreshold atomic } }", { id });
  assert(importJob.dryRun && importJob.deactivateMissing && importJob.changeThreshold === 10 && !importJob.atomic,
    JSON.stringify(importJob));
  const seen = await counts(page);
  assert(seen.created === 0, `UPDATE_ONLY created users: ${JSON.stringify(seen)}`);
});

// A tenant of its own: three tracks, 28 users, as of a day 20 days ahead every status has
// users.
async function prepareCompliance() {
  const t = complianceToken;
  const track = async (input) => (await api(t, "mutation($i: LearningTrackInput!) { createLearningTrack(input: $i) { id } }", { i: input })).createLearningTrack.id;
  const safety = await track({ name: "Safety", tags: ["safety"], validityDays: 365 });
  const fire = await track({ name: "Fire drill", tags: ["fire"], dueDays: 10 });
  const short = await track({ name: "First aid", tags: ["aid"], validityDays: 30, expiringSoonDays: 15 });
  const people = [
    // NO_TRACKS_ASSIGNED: more than a page of the list
    ...Array.from({ length: 22 }, (_, i) => [`none${i}`, []]),
    ["fire1", ["fire"]], // UNCOMPLETED now, NOT_COMPLIANT past its 10 due days
    ["safe1", ["safety"]], ["safe2", ["safety"]], // COMPLETED
    ["aid1", ["aid"]], // COMPLETED now, EXPIRING_SOON from day 15
    ["open1", ["safety"]], // UNCOMPLETED: never due
  ];
  for (const [id, tags] of people) {
    await api(t, "mutation($u: UserImportInput!) { importUser(user: $u) { action } }", {
      u: { externalId: id, email: `${id}@compliance.example.com`, firstName: id, lastName: "Person", tags },
    });
  }
  await new Promise((resolve) => setTimeout(resolve, 1100));
  const completedAt = new Date(Date.now() - 500).toISOString();
  const recorded = await api(t, "mutation($c: [TrackCompletionInput!]!) { recordTrackCompletions(completions: $c) { failed } }", {
    c: [["safe1", safety], ["safe2", safety], ["aid1", short]].map(([externalId, track]) => ({ user: { externalId }, track, completedAt })),
  });
  assert(recorded.recordTrackCompletions.failed === 0, "completions refused");
  return fire;
}

const bars = async (page) => {
  const result = {};
  for (const bar of await page.locator("#chart .bar").all()) {
    result[await bar.getAttribute("data-status")] = Number(await bar.locator(".count").innerText());
  }
  return result;
};

check("the compliance chart shows the prepared tenant's numbers, as of a chosen day", async () => {
  await prepareCompliance();
  await signIn(page, complianceToken, "admin");
  const now = { COMPLETED: 3, EXPIRING_SOON: 0, UNCOMPLETED: 2, NOT_COMPLIANT: 0, NO_TRACKS_ASSIGNED: 22 };
  await page.locator("#chart .bar").nth(4).waitFor();
  await page.waitForFunction(() => document.querySelector('#chart [data-status="COMPLETED"] .count')?.textContent === "3");
  let seen = await bars(page);
  assert(JSON.stringify(seen) === JSON.stringify(now), `now: ${JSON.stringify(seen)}`);
  await page.getByRole("button", { name: /^Completed: 3 users/ }).click();
  await waitText(page, "#status-title", "3 users");
  const users = await text(page, "#status-users tbody");
  assert(users.includes("safe1@compliance.example.com") && users.includes("First aid: COMPLETED"), users);
  const later = new Date(Date.now() + 20 * 86_400_000).toISOString().slice(0, 10);
  await page.getByLabel("As of").fill(later);
  await page.getByRole("button", { name: "Show" }).click();
  await page.waitForFunction(() => document.querySelector('#chart [data-status="NOT_COMPLIANT"] .count')?.textContent === "1");
  seen = await bars(page);
  const ahead = { COMPLETED: 2, EXPIRING_SOON: 1, UNCOMPLETED: 1, NOT_COMPLIANT: 1, NO_TRACKS_ASSIGNED: 22 };
  assert(JSON.stringify(seen) === JSON.stringify(ahead), `as of ${later}: ${JSON.stringify(seen)}`);
  // The users listed under a status are the ones the chart counts on that day.
  await waitText(page, "#status-title", `Completed as of ${later}: 2 users`);
  assert(!(await text(page, "#status-users tbody")).includes("aid1@"), "aid1 is expiring soon by then");
  await page.getByRole("button", { name: /^Expiring soon: 1 users/ }).click();
  await waitText(page, "#status-title", `Expiring soon as of ${later}: 1 users`);
  await waitText(page, "#status-users tbody", "First aid: EXPIRING_SOON");
  await page.screenshot({ path: join(output, "admin-compliance.png"), fullPage: true });
  await page.getByRole("button", { name: /^No tracks assigned: 22 users/ }).click();
  await waitText(page, "#status-title", "22 users");
  await page.locator("#status-users tbody tr").nth(19).waitFor();
  assert((await page.locator("#status-users tbody tr").count()) === 20, "not a page of 20 users");
  await page.getByRole("button", { name: "More users" }).click();
  await page.locator("#status-users tbody tr").nth(21).waitFor();
  assert(!(await page.getByRole("button", { name: "More users" }).isVisible()), "more after the last page");
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: join(output, "admin-compliance-phone.png"), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });
});

check("a viewer, signed in and opening a job from the keyboard, sees no button that writes", async () => {
  await page.getByLabel("Bearer token").fill(viewerToken);
  await page.getByLabel("Bearer token").press("Enter");
  await page.locator("#token-state").getByText("(viewer)").waitFor();
  await page.getByRole("button", { name: `Open job ${importId}` }).focus();
  await page.keyboard.press("Enter");
  await waitText(page, "#job-title", `Job ${importId}: import`);
  assert(!(await page.locator("#import").isVisible()), "the import form shows to a viewer");
  for (const name of ["Retry failed rows", "Revert", "Cancel", "Import for real", "Dry run"]) {
    assert((await page.getByRole("button", { name, exact: true }).count()) === 0, `${name} shows to a viewer`);
  }
  assert(await page.getByRole("button", { name: "Download failed rows (CSV)" }).isVisible(), "no download for a viewer");
  await page.screenshot({ path: join(output, "admin-viewer.png"), fullPage: true });
});

check("GraphiQL's page shares the token", async () => {
  const graphiql = await open("/graphql");
  await graphiql.locator(".graphiql-container").waitFor();
  assert((await graphiql.locator("#token").inputValue()) === viewerToken, "GraphiQL has another token");
  await graphiql.close();
});

check("the page reads at phone width", async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  assert(wide <= 390, `the page is ${wide}px wide at 390px`);
  await page.screenshot({ path: join(output, "admin-phone.png"), fullPage: true });
});

let passed = 0;
let failure = null;
try {
  for (const { name, run } of checks) {
    try {
      await run();
    } catch (error) {
      failure = `${name}: ${error.message}`;
      if (page) await page.screenshot({ path: join(output, "admin-failure.png"), fullPage: true }).catch(() => {});
      break;
    }
    passed += 1;
    console.log(`admin: ${name}`);
  }
} finally {
  await browser.close();
}
if (failure) console.error(`admin page test failed: ${failure}`);
for (const problem of problems) console.error(problem);
const failed = checks.length - passed + (problems.length > 0 && !failure ? 1 : 0);
console.log(`browser: admin ${failed ? Math.min(passed, checks.length - 1) : passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
