#!/usr/bin/env bash
# Hostile webhook posts while normal traffic is served (issue 18's bench phase).
#
#   bench/hostile.sh [CLIENTS] [MB]        (defaults 200 and 10; needs psql and a built binary)
#
# Starts the gateway (release build if there is one) on a database of its own, with a key
# and a few jobs so that the normal traffic (GET /v1/jobs?limit=10, back to back) reads
# something, then runs bench/hostile_webhooks.py: CLIENTS connections each post MB megabytes
# with no token to /webhooks/lianke/{id} or with a bogus signature to /webhooks/wecom. It
# prints the idle and peak RSS of the gateway, the peak above idle (goal: < 64 MiB), how
# much each hostile client could push before the gateway stopped reading, and the normal
# traffic's p50/p99. BIN=path/to/print-gateway overrides the binary.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${1:-200}
MB=${2:-10}
BASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB_NAME="pgw_bench_hostile_$(date +%s)"
DB_URL="${BASE_URL%/*}/$DB_NAME"
if [[ -z "${BIN:-}" ]]; then
    BIN=target/release/print-gateway
    [[ -x $BIN ]] || BIN=target/debug/print-gateway
fi
[[ -x $BIN ]] || { echo "build first: cargo build (--release)" >&2; exit 2; }
WORK=$(mktemp -d)
PORT=$((20000 + RANDOM % 10000))
GATEWAY_PID=

cleanup() {
    [[ -n $GATEWAY_PID ]] && kill "$GATEWAY_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    psql -q "$BASE_URL" -c "DROP DATABASE IF EXISTS \"$DB_NAME\" WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# The WeCom push route needs WeCom configured to check a signature; Lianke callbacks need a
# public base URL. Neither vendor is called: no job is dispatched (no worker role).
export DATABASE_URL=$DB_URL BIND_ADDR=127.0.0.1:$PORT LOG_FORMAT=json RUST_LOG=warn
export PUBLIC_BASE_URL=https://gateway.example LIANKE_API_KEY=bench-key
export CALLBACK_SECRETS=bench-callback-secret-0123456789abcdef
export WECOM_MODEL_ID=bench WECOM_MODEL_SECRET=bench-secret WECOM_CALLBACK_TOKEN=bench-token
export WECOM_CALLBACK_AES_KEY=abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG

"$BIN" migrate >/dev/null 2>&1
KEY=$("$BIN" api-keys create --tenant bench --scopes jobs:read,jobs:write,printers:admin 2>/dev/null)
"$BIN" serve --role api >"$WORK/gateway.log" 2>&1 &
GATEWAY_PID=$!
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null || { echo "the gateway did not start:" >&2; tail -20 "$WORK/gateway.log" >&2; exit 1; }
curl -sf -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    "http://127.0.0.1:$PORT/v1/printers?verify=false" \
    -d '{"id":"bench-box","backend":"lianke","locator":{"device_id":"lk-bench"},"secrets":{"device_key":"k"}}' >/dev/null
for i in $(seq 1 20); do
    curl -sf -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
        "http://127.0.0.1:$PORT/v1/jobs" -d "{\"printer_id\":\"bench-box\",\"document\":{\"text\":\"job $i\"}}" >/dev/null
done
echo "gateway $BIN (pid $GATEWAY_PID); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 bench/hostile_webhooks.py "http://127.0.0.1:$PORT" "$KEY" "$GATEWAY_PID" --clients "$CLIENTS" --mb "$MB"
kill -0 "$GATEWAY_PID" || { echo "the gateway died" >&2; exit 1; }
