// What the browser tests share: their settings from the environment, the screenshot folder,
// Debian's Chromium launched headless, and a page watched for every sign of trouble.
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

/** The environment variable `name`; the script stops, saying so, when it is not set. */
export function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is required`);
    process.exit(2);
  }
  return value;
}

/** $ROSTER_BROWSER_OUTPUT (default tests/browser/output), made if missing. */
export function outputDir() {
  const output = process.env.ROSTER_BROWSER_OUTPUT ?? new URL("output", import.meta.url).pathname;
  mkdirSync(output, { recursive: true });
  return output;
}

/** Chromium ($CHROMIUM, default Debian's /usr/bin/chromium), headless and kept off the network. */
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
}

/** Adds to `problems` every console error, page error, failed request and HTTP error of `page`. */
export function watch(page, problems) {
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console error: ${message.text()}`);
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("requestfailed", (request) =>
    problems.push(`request failed: ${request.url()} (${request.failure()?.errorText})`),
  );
  page.on("response", (response) => {
    if (response.status() >= 400) problems.push(`HTTP ${response.status()}: ${response.url()}`);
  });
}
