#!/usr/bin/env bash
# Starts the built server on a free port with a fresh SQLite database and runs the
# graphql-http audit suite (tests/http-audit) against it. Needs a built `roster` binary:
# ROSTER_BIN (default: $CARGO_TARGET_DIR/debug/roster, else target/debug/roster).
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${ROSTER_BIN:-${CARGO_TARGET_DIR:-target}/debug/roster}"
[ -x "$bin" ] || { echo "no server binary at $bin: run cargo build first" >&2; exit 1; }

work=$(mktemp -d)
secret="audit-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

ROSTER_ADDR="127.0.0.1:$port" DATABASE_URL="sqlite://$work/audit.db?mode=rwc" \
  ROSTER_JWT_SECRET="$secret" "$bin" serve >"$work/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { echo "server not ready" >&2; cat "$work/server.log"; exit 1; }

token=$(ROSTER_JWT_SECRET="$secret" "$bin" token --sub http-audit --role admin --ttl 10m)
(cd tests/http-audit && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
ROSTER_URL="http://127.0.0.1:$port/graphql" ROSTER_TOKEN="$token" node tests/http-audit/audit.mjs
