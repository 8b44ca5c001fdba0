#!/usr/bin/env bash
# The read benchmark: requests per second of small GraphQL reads, for one or more builds of
# the server measured in turn, so that two builds are compared in one sitting (the machine
# is shared, and absolute figures move from run to run; compare the ratios).
#
#   benches/reads.sh [BINARY ...]    (default: target/release/roster)
#
# Each binary serves a fresh SQLite database with 100 users; `wrk` (Debian's package) sends
# each read for ROSTER_BENCH_SECONDS (10) over 8 connections, and the whole round runs
# ROSTER_BENCH_ROUNDS (3) times, the binaries alternating. Prints one line per measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "install wrk (apt-get install wrk)" >&2; exit 1; }
binaries=("$@")
[ ${#binaries[@]} -gt 0 ] || binaries=(target/release/roster)
seconds=${ROSTER_BENCH_SECONDS:-10}
rounds=${ROSTER_BENCH_ROUNDS:-3}

# shellcheck source=../scripts/lib/server.sh
source scripts/lib/server.sh

users=$(python3 -c 'import json; print(json.dumps({"query": "mutation($u: [UserImportInput!]!) { importUsers(users: $u) { id } }", "variables": {"u": [{"externalId": f"u{i}", "email": f"u{i}@example.com", "firstName": "U", "lastName": str(i), "tags": ["staff"]} for i in range(100)]}}))')
reads=(
  "viewer=%7Bviewer%7Brole%7D%7D"
  "users=%7Busers(first%3A100)%7Bnodes%7Bid%20email%20fullName%20tags%7D%7D%7D"
)

measure() {
  local bin=$1 label=$2
  ROSTER_BIN=$bin start_server bench
  curl -fsS "$base/graphql" -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d "$users" >/dev/null
  sleep 2 # the job's 100 users are written
  for read in "${reads[@]}"; do
    local name=${read%%=*} query=${read#*=}
    local rate
    rate=$(wrk -t1 -c8 -d"${seconds}s" -H "authorization: Bearer $token" \
      -H 'accept: application/json' "$base/graphql?query=$query" |
      awk '/Requests\/sec/ {print $2}')
    printf 'reads: %-8s %-40s %10s req/s\n' "$name" "$label" "$rate"
  done
  kill "$server"; wait "$server" 2>/dev/null || true; rm -rf "$work"; trap - EXIT
}

for round in $(seq 1 "$rounds"); do
  for bin in "${binaries[@]}"; do
    measure "$bin" "$bin (round $round)"
  done
done
