// Runs every graphql-http server audit against a running Roster server and fails unless all
// of them pass (the SHOULDs and MAYs too, not only the MUSTs).
//
//   ROSTER_URL=http://127.0.0.1:8080/graphql ROSTER_TOKEN=<admin token> node audit.mjs
import { serverAudits } from 'graphql-http';

const url = process.env.ROSTER_URL;
const token = process.env.ROSTER_TOKEN;
if (!url || !token) {
  console.error('set ROSTER_URL (the /graphql endpoint) and ROSTER_TOKEN (an admin token)');
  process.exit(2);
}

const fetchFn = (input, init = {}) => {
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${token}`);
  return fetch(input, { ...init, headers });
};

let passed = 0;
let failed = 0;
for (const audit of serverAudits({ url, fetchFn })) {
  const result = await audit.fn();
  if (result.status === 'ok') {
    passed += 1;
    console.log(`ok      ${audit.id} ${audit.name}`);
  } else {
    failed += 1;
    console.log(`${result.status.padEnd(7)} ${audit.id} ${audit.name}: ${result.reason}`);
    if (result.response) {
      const body = await result.response.text().catch(() => '');
      console.log(`        HTTP ${result.response.status} ${body.slice(0, 300)}`);
    }
  }
}
console.log(`audit: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
