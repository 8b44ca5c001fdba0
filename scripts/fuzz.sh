#!/usr/bin/env bash
# Starts the built server (see scripts/lib/server.sh) and fuzzes /graphql with schemathesis
# (pinned in tests/fuzz/requirements.txt, installed in a virtualenv under the target dir)
# with an admin token: no response may be a 5xx nor an INTERNAL error (tests/fuzz/hooks.py),
# and the server must still be healthy afterwards. ROSTER_FUZZ_EXAMPLES (default 20 per
# operation) and ROSTER_FUZZ_SECONDS (default 180) bound the run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

venv="${CARGO_TARGET_DIR:-$root/target}/fuzz-venv"
if ! cmp -s tests/fuzz/requirements.txt "$venv/requirements.txt" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/fuzz/requirements.txt
  cp tests/fuzz/requirements.txt "$venv/requirements.txt"
fi

. scripts/lib/server.sh
start_server fuzz

status=0
(cd "$work" && SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$root/tests/fuzz" \
  "$venv/bin/schemathesis" run "$base/graphql" \
  --header "Authorization: Bearer $token" \
  --checks no_server_error \
  --max-examples "${ROSTER_FUZZ_EXAMPLES:-20}" \
  --max-time "${ROSTER_FUZZ_SECONDS:-180}" \
  --workers 2 \
  --generation-deterministic) || status=$?

if ! curl -fsS "$base/readyz" >/dev/null; then
  echo "the server is not healthy after fuzzing" >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  grep -E " 5[0-9][0-9] |status=5[0-9][0-9]|panicked|ERROR" "$work/server.log" | tail -20 || true
  echo "fuzz: 0 passed, 1 failed"
  exit 1
fi
echo "fuzz: 1 passed, 0 failed"
