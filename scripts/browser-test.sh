#!/usr/bin/env bash
# Starts the built server (see scripts/lib/server.sh) and drives its GraphiQL page and its
# admin page in headless Chromium (tests/browser). Installs Debian's chromium when it is
# missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
. scripts/lib/server.sh
start_server browser

(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
status=0
ROSTER_URL="$base" ROSTER_TOKEN="$token" node tests/browser/graphiql.mjs || status=1
ROSTER_URL="$base" ROSTER_TOKEN="$token" ROSTER_VIEWER_TOKEN="$(mint_token viewer)" \
  ROSTER_COMPLIANCE_TOKEN="$(mint_token admin compliance)" node tests/browser/admin.mjs || status=1
exit "$status"
