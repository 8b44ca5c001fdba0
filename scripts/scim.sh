#!/usr/bin/env bash
# Builds and starts the server (see scripts/lib/server.sh) and points SCIM tooling at /scim/v2:
# scim2-tester's RFC 7643/7644 checks (tests/scim/check.py, itself tested by test_check.py;
# the checks Roster cannot pass are listed, with their reasons, in README.md's SCIM section), then a round trip through
# scim2-client (tests/scim/roundtrip.py). Both are pinned in tests/scim/requirements.txt and
# installed in a virtualenv under the target dir.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

venv="${CARGO_TARGET_DIR:-$root/target}/scim-venv"
if ! cmp -s tests/scim/requirements.txt "$venv/requirements.txt" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/scim/requirements.txt
  cp tests/scim/requirements.txt "$venv/requirements.txt"
fi

[ -n "${ROSTER_BIN:-}" ] || cargo build --quiet --bin roster
. scripts/lib/server.sh
start_server scim

status=0
# check.py's own rule first: which failures it counts apart, and for which checks only.
(cd tests/scim && "$venv/bin/python" -m unittest -q test_check) || status=1
ROSTER_SCIM_URL="$base/scim/v2" ROSTER_TOKEN="$token" "$venv/bin/python" tests/scim/check.py ||
  status=1
ROSTER_SCIM_URL="$base/scim/v2" ROSTER_TOKEN="$token" "$venv/bin/python" tests/scim/roundtrip.py ||
  status=1
exit "$status"
