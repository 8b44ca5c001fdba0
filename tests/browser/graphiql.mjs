// GraphiQL as an admin uses it: Roster's own page in a real Chromium, a token pasted into
// it, an importUser mutation and a users query run from the editor, each result read off
// the result pane. Any console error, page error or failed request of the page fails the
// test. Screenshots go to $ROSTER_BROWSER_OUTPUT (default tests/browser/output).
//
//   ROSTER_URL=http://127.0.0.1:8080 ROSTER_TOKEN=<admin token> node graphiql.mjs
import { join } from "node:path";
import { launch, outputDir, required, watch } from "./harness.mjs";

const base = required("ROSTER_URL");
const token = required("ROSTER_TOKEN");
const output = outputDir();

const problems = [];
const browser = await launch();
const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });

async function open(query) {
  const page = await context.newPage();
  watch(page, problems);
  await page.goto(`${base}/graphql#query=${encodeURIComponent(query)}`);
  await page.locator(".graphiql-container").waitFor();
  return page;
}

async function run(page, expected, screenshot) {
  await page.locator(".graphiql-execute-button").click();
  const result = page.locator(".result-window");
  await result.getByText(expected).first().waitFor({ timeout: 15_000 });
  await page.screenshot({ path: join(output, screenshot) });
  return result.innerText();
}

let failed = false;
try {
  const email = `browser.${Date.now()}@example.com`;
  const mutation = `mutation {
  importUser(user: { externalId: "browser-${Date.now()}", email: "${email}", firstName: "Browser", lastName: "Admin" }) {
    action
    user { email }
  }
}`;
  const first = await open(mutation);
  await first.fill("#token", token);
  await first.getByRole("button", { name: "Use token" }).click();
  await first.locator(".graphiql-container").waitFor();
  await first.getByText("requests carry this token").waitFor();
  // Introspection with the token: the documentation explorer lists the schema's types.
  await first.locator('button[aria-label="Show Documentation Explorer"]').click();
  await first.locator(".graphiql-doc-explorer").getByText("Root Types").waitFor();
  const created = await run(first, "CREATED", "import-user.png");
  console.log(`importUser: ${created.replace(/\s+/g, " ")}`);

  // A new page of the same browser: the token is remembered.
  const second = await open("{\n  users(first: 100) {\n    edges { node { email firstName } }\n  }\n}");
  const listed = await run(second, email, "users.png");
  console.log(`users: lists ${email}: ${listed.includes(email)}`);
} catch (error) {
  failed = true;
  console.error(`browser test failed: ${error.message}`);
} finally {
  await browser.close();
}
for (const problem of problems) console.error(problem);
if (failed || problems.length > 0) {
  console.log("browser: 0 passed, 1 failed");
  process.exit(1);
}
console.log("browser: 1 passed, 0 failed");
