#!/usr/bin/env bash
# Starts the built server (see scripts/lib/server.sh) and runs the graphql-http audit suite
# (tests/http-audit) against it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/server.sh
start_server http-audit

(cd tests/http-audit && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
ROSTER_URL="$base/graphql" ROSTER_TOKEN="$token" node tests/http-audit/audit.mjs
