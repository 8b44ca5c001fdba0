#!/usr/bin/env bash
# Starts the built server (see scripts/lib/server.sh) and points generic GraphQL tooling at
# it (tests/conformance): graphql-inspector must find no change between schema.graphql and
# the live schema, and a graphql-ws client, then Python's gql (pinned in
# tests/conformance/requirements.txt, installed in a virtualenv under the target dir) offering
# graphql-transport-ws alone, each follow a real bulk job's progress to its end.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

venv="${CARGO_TARGET_DIR:-$root/target}/conformance-venv"
if ! cmp -s tests/conformance/requirements.txt "$venv/requirements.txt" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/conformance/requirements.txt
  cp tests/conformance/requirements.txt "$venv/requirements.txt"
fi

. scripts/lib/server.sh
start_server conformance

(cd tests/conformance && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
inspector=tests/conformance/node_modules/.bin/graphql-inspector
diff=$("$inspector" diff schema.graphql "$base/graphql" --header "Authorization: Bearer $token" 2>&1) || {
  echo "$diff"; echo "schema: 0 passed, 1 failed"; exit 1;
}
echo "$diff"
if grep -q "No changes detected" <<<"$diff"; then
  echo "schema: 1 passed, 0 failed"
else
  echo "schema: 0 passed, 1 failed"; exit 1
fi
status=0
ROSTER_URL="$base" ROSTER_TOKEN="$token" node tests/conformance/subscription.mjs || status=1
ROSTER_URL="$base" ROSTER_TOKEN="$token" "$venv/bin/python" tests/conformance/subscription_gql.py ||
  status=1
exit "$status"
