# Sourced by the scripts that test the real server. `start_server NAME` starts the built
# `roster` on a free port with a fresh SQLite database, waits until it is ready, mints an
# admin token, and stops the server when the script exits. It sets `base`
# (http://127.0.0.1:PORT), `token` and `work` (a scratch directory, removed on exit);
# `mint_token ROLE [TENANT]` mints another token for that server.
# The binary is ROSTER_BIN (default: $CARGO_TARGET_DIR/debug/roster, else target/debug/roster).

start_server() {
  local name=$1
  bin="${ROSTER_BIN:-${CARGO_TARGET_DIR:-target}/debug/roster}"
  [ -x "$bin" ] || { echo "no server binary at $bin: run cargo build first" >&2; exit 1; }
  work=$(mktemp -d)
  local port
  secret="$name-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  ROSTER_ADDR="127.0.0.1:$port" DATABASE_URL="sqlite://$work/$name.db?mode=rwc" \
    ROSTER_JWT_SECRET="$secret" "$bin" serve >"$work/server.log" 2>&1 &
  server=$!
  trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
  base="http://127.0.0.1:$port"
  for _ in $(seq 1 100); do
    curl -fsS "$base/readyz" >/dev/null 2>&1 && break
    kill -0 "$server" 2>/dev/null || { cat "$work/server.log"; exit 1; }
    sleep 0.1
  done
  curl -fsS "$base/readyz" >/dev/null || { echo "server not ready" >&2; cat "$work/server.log"; exit 1; }
  token=$(ROSTER_JWT_SECRET="$secret" "$bin" token --sub "$name" --role admin --ttl 30m)
  server_name=$name
}

mint_token() {
  ROSTER_JWT_SECRET="$secret" "$bin" token --sub "$server_name-$1" --role "$1" \
    ${2:+--tenant "$2"} --ttl 30m
}
