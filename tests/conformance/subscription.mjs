// A generic subscription client against Roster: graphql-ws (with ws) over /graphql/ws.
// An invalid token is refused at connection_init (close 4403); with an admin token, the
// client follows `importJobProgress` of a real bulk job, submitted over HTTP, to its end.
//
//   ROSTER_URL=http://127.0.0.1:8080 ROSTER_TOKEN=<admin token> node subscription.mjs
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const base = process.env.ROSTER_URL;
const token = process.env.ROSTER_TOKEN;
if (!base || !token) {
  console.error("ROSTER_URL and ROSTER_TOKEN are required");
  process.exit(2);
}
const wsUrl = base.replace(/^http/, "ws") + "/graphql/ws";
const ROWS = 2500;

function client(authorization) {
  return createClient({
    url: wsUrl,
    webSocketImpl: WebSocket,
    connectionParams: { Authorization: authorization },
    retryAttempts: 0,
    lazy: true,
  });
}

function subscribe(c, query, variables) {
  const events = [];
  return new Promise((resolve, reject) => {
    c.subscribe(
      { query, variables },
      {
        next: (event) => events.push(event),
        error: reject,
        complete: () => resolve(events),
      },
    );
  });
}

const failures = [];
let checks = 0;
function check(ok, what) {
  checks += 1;
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures.push(what);
}

// 1. A token that is not one: the connection is refused, as graphql-transport-ws says.
const refused = client("Bearer not-a-token");
try {
  await subscribe(refused, "subscription { importJobProgress(id: \"1\") { status } }");
  check(false, "an invalid token is refused");
} catch (error) {
  check(error?.code === 4403, `an invalid token is refused (close ${error?.code})`);
} finally {
  await refused.dispose();
}

// 2. A real job, followed to its end.
const users = Array.from({ length: ROWS }, (_, i) => ({
  externalId: `ws-${i}`,
  email: `ws-${i}@example.com`,
  firstName: "Socket",
  lastName: `User ${i}`,
  tags: ["subscribed"],
  ...(i > 0 ? { managerExternalId: `ws-${Math.floor(i / 10)}` } : {}),
}));
const submitted = await fetch(`${base}/graphql`, {
  method: "POST",
  headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
  body: JSON.stringify({
    query: "mutation($u: [UserImportInput!]!) { importUsers(users: $u) { id status } }",
    variables: { u: users },
  }),
}).then((response) => response.json());
const id = submitted?.data?.importUsers?.id;
check(Boolean(id), `importUsers answers a job (${JSON.stringify(submitted).slice(0, 120)})`);

const admin = client(`Bearer ${token}`);
try {
  const events = await subscribe(
    admin,
    "subscription($id: ID!) { importJobProgress(id: $id) { status processed total progress summary { created failed } } }",
    { id },
  );
  const jobs = events.map((event) => event.data?.importJobProgress);
  const last = jobs.at(-1);
  console.log(
    `events: ${jobs.map((job) => `${job?.status}:${job?.processed}`).join(" ")}`,
  );
  check(events.every((event) => !event.errors), "no event carries errors");
  check(jobs.length >= 2, `several events (${jobs.length})`);
  check(last?.status === "COMPLETED", `the last event is final (${last?.status})`);
  check(last?.processed === ROWS && last?.summary?.created === ROWS, "every row was created");
  check(
    jobs.every((job, i) => i === 0 || job.processed >= jobs[i - 1].processed),
    "progress never goes back",
  );
} catch (error) {
  check(false, `the subscription runs to its end (${error?.message ?? JSON.stringify(error)})`);
} finally {
  await admin.dispose();
}

console.log(`subscription: ${checks - failures.length} passed, ${failures.length} failed`);
process.exit(failures.length === 0 ? 0 : 1);
