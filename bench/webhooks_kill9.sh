#!/usr/bin/env bash
# Webhook delivery under kill -9, and delivery throughput (issue 12).
#
#   bench/webhooks_kill9.sh [EVENTS]        (default 5000; needs psql and a built binary)
#
# Three endpoints, each with its own `print-gateway webhooks listen` receiver (which checks
# every signature). Phase 1 writes EVENTS events to the outbox in one transaction and times
# how long the gateway takes to deliver all of them to all three endpoints (deliveries/s).
# Phase 2 writes EVENTS more, kills the gateway with SIGKILL while they are being delivered,
# starts it again, and checks that every event reached every endpoint at least once,
# counting duplicates (receivers count by webhook-id).
#
# Events are printer events written straight into the outbox table (the fan-out trigger
# creates the deliveries exactly as for events written by state changes): this measures
# delivery, not job processing. BIN=path/to/print-gateway overrides the binary
# (default target/release if built, else target/debug).
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${1:-5000}
BASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB_NAME="pgw_bench_webhooks_$(date +%s)"
DB_URL="${BASE_URL%/*}/$DB_NAME"
if [[ -z "${BIN:-}" ]]; then
    BIN=target/release/print-gateway
    [[ -x $BIN ]] || BIN=target/debug/print-gateway
fi
[[ -x $BIN ]] || { echo "build first: cargo build (--release)" >&2; exit 2; }
WORK=$(mktemp -d)
GATEWAY_PORT=$((20000 + RANDOM % 10000))
PORTS=($((GATEWAY_PORT + 1)) $((GATEWAY_PORT + 2)) $((GATEWAY_PORT + 3)))
PIDS=()
GATEWAY_PID=

cleanup() {
    for pid in "${PIDS[@]}" $GATEWAY_PID; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql -q "$BASE_URL" -c "DROP DATABASE IF EXISTS \"$DB_NAME\" WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

export DATABASE_URL=$DB_URL BIND_ADDR=127.0.0.1:$GATEWAY_PORT LOG_FORMAT=json RUST_LOG=warn
export WEBHOOK_ALLOW_HTTP=true WEBHOOK_ALLOW_PRIVATE_URLS=true WEBHOOK_TIMEOUT_MS=2000

now() { date +%s.%N; }

start_gateway() {
    "$BIN" serve >>"$WORK/gateway.log" 2>&1 &
    GATEWAY_PID=$!
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$GATEWAY_PORT/healthz" >/dev/null && return 0
        sleep 0.1
    done
    echo "the gateway did not start:" >&2
    tail -20 "$WORK/gateway.log" >&2
    exit 1
}

start_receivers() { # $1 = phase
    PIDS=()
    for i in 0 1 2; do
        "$BIN" webhooks listen --quiet --port "${PORTS[$i]}" --secret "${SECRETS[$i]}" \
            >"$WORK/recv-$1-$i.log" 2>>"$WORK/recv-errors.log" &
        PIDS+=($!)
    done
    for port in "${PORTS[@]}"; do
        for _ in $(seq 1 50); do
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
            sleep 0.1
        done
    done
}

stop_receivers() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}

received() { # $1 = phase: total lines (deliveries received, duplicates included)
    cat "$WORK"/recv-"$1"-*.log 2>/dev/null | wc -l
}

unique_per_endpoint() { # $1 = phase, $2 = endpoint index
    cut -d' ' -f1 "$WORK/recv-$1-$2.log" | sort -u | wc -l
}

write_events() { # $1 = how many, in one transaction
    psql -q "$DB_URL" -v ON_ERROR_STOP=1 -c "
        INSERT INTO outbox_events (tenant, type, printer_id, snapshot)
        SELECT p.owner_tenant, 'printer.offline', p.id,
               (to_jsonb(p) - 'secrets' - 'capabilities_raw' - 'capabilities') || '{\"secrets\": {}}'::jsonb
        FROM printers p, generate_series(1, $1) WHERE p.id = 'bench-printer'"
}

wait_for() { # $1 = phase, $2 = expected unique per endpoint, $3 = deadline seconds
    local deadline=$(( $(date +%s) + $3 ))
    while :; do
        local done=1
        for i in 0 1 2; do
            [[ $(unique_per_endpoint "$1" "$i") -ge $2 ]] || done=0
        done
        [[ $done == 1 ]] && return 0
        if [[ $(date +%s) -ge $deadline ]]; then
            echo "timed out: per endpoint $(unique_per_endpoint "$1" 0) $(unique_per_endpoint "$1" 1) $(unique_per_endpoint "$1" 2) of $2" >&2
            return 1
        fi
        sleep 0.2
    done
}

"$BIN" migrate 2>/dev/null
KEY=$("$BIN" api-keys create --tenant bench --scopes webhooks:admin,jobs:read 2>/dev/null)
psql -q "$DB_URL" -c "INSERT INTO printers (id, display_name, backend, device, max_in_flight, owner_tenant)
                      VALUES ('bench-printer', 'bench', 'lianke', 'bench', 1, 'bench')"
start_gateway
SECRETS=()
for port in "${PORTS[@]}"; do
    answer=$(curl -sf -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
        "http://127.0.0.1:$GATEWAY_PORT/v1/webhook-endpoints" -d "{\"url\":\"http://127.0.0.1:$port/\"}")
    SECRETS+=("$(sed -E 's/.*"secret":"([^"]+)".*/\1/' <<<"$answer")")
done

echo "== phase 1: throughput ($EVENTS events x 3 endpoints, binary $BIN)"
start_receivers 1
t0=$(now)
write_events "$EVENTS"
wait_for 1 "$EVENTS" 600
t1=$(now)
total=$(received 1)
awk -v n="$total" -v a="$t0" -v b="$t1" 'BEGIN { printf "delivered %d in %.2f s: %.0f deliveries/s\n", n, b - a, n / (b - a) }'
stop_receivers

echo "== phase 2: kill -9 while delivering $EVENTS events x 3 endpoints"
start_receivers 2
write_events "$EVENTS"
while [[ $(received 2) -lt $EVENTS ]]; do sleep 0.05; done
kill -9 "$GATEWAY_PID"
wait "$GATEWAY_PID" 2>/dev/null || true
echo "killed the gateway after $(received 2) of $((EVENTS * 3)) deliveries"
start_gateway
# Deliveries claimed by the killed process come back when their lease (timeout + 30 s) ends.
wait_for 2 "$EVENTS" 600
sleep 1
total=$(received 2)
lost=0
for i in 0 1 2; do
    u=$(unique_per_endpoint 2 "$i")
    [[ $u -ge $EVENTS ]] || lost=$((lost + EVENTS - u))
done
echo "every event reached every endpoint: $([[ $lost == 0 ]] && echo yes || echo "NO, $lost missing")"
echo "received $total for $((EVENTS * 3)) deliveries: $((total - EVENTS * 3)) duplicates"
echo "signature failures at the receivers: $(grep -c rejected "$WORK/recv-errors.log" 2>/dev/null || true)"
[[ $lost == 0 ]]
