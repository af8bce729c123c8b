#!/usr/bin/env bash
# Delivery latency: a switch committed by the bridge -> the user's LangGraph thread updated
# (LANGGRAPH_DELIVERY=state, a real `langgraph dev`) and -> a Standard Webhooks receiver's 2xx
# (tests/support/webhook_receiver.py, which also verifies every signature), on a release build of
# `auren serve` (embedded log). `auren simulate` drives USERS users through DAYS days; the rate of
# switches this produces is reported, not assumed. scripts/bench/delivery_latency.py measures each
# switch: its commit (the mode history's created_at) -> the LangGraph checkpoint that carries it,
# and -> the receiver's arrival.
# Usage: scripts/bench/delivery.sh            (AUREN_BIN=path measures another build)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/services.sh
source scripts/langgraph.sh
: "${USERS:=40}" "${DAYS:=24}" "${CONCURRENCY:=8}"
if [ -z "${AUREN_BIN:-}" ]; then
  cargo build --release -p auren >&2
  AUREN_BIN=target/release/auren
fi
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
venv=$(ensure_venv contract)
dir=$(mktemp -d "${TMPDIR:-/tmp}/auren-bench-delivery-XXXXXX")
api=$(free_port); metrics=$(free_port); recv=$(free_port); lg=$(free_port)
cleanup() {
  kill "${SERVICE_PID:-}" "${RECV_PID:-}" 2>/dev/null || true
  stop_langgraph
  rm -rf "$dir"
}
trap cleanup EXIT
start_langgraph "$lg"
"$venv/bin/python" crates/auren/tests/support/webhook_receiver.py "$recv" "$dir/secret" "$dir/received.jsonl" 0 &
RECV_PID=$!
ADMIN=bench-admin-token
env AUREN_HTTP_ADDR=127.0.0.1:$api AUREN_METRICS_ADDR=127.0.0.1:$metrics AUREN_DATA_DIR="$dir/data" \
  OURA_CLIENT_SECRET=bench-oura WHOOP_CLIENT_SECRET=bench-whoop OURA_VERIFICATION_TOKEN=x \
  AUREN_PSEUDONYM_KEY=bench-pseudonym-key-0123456789 AUREN_ADMIN_TOKEN=$ADMIN \
  AUREN_TOKEN_KEY="$(head -c 32 /dev/urandom | base64)" AUREN_WEBHOOK_ALLOW_PRIVATE=1 \
  LANGGRAPH_URL="$LANGGRAPH_URL" RUST_LOG=warn \
  "$AUREN_BIN" serve >"$dir/serve.log" 2>&1 &
SERVICE_PID=$!
wait_port 127.0.0.1 "$api" 30
wait_port 127.0.0.1 "$recv" 30
curl -fsS -H "Authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d "{\"url\": \"http://127.0.0.1:$recv/hook\", \"events\": [\"mode.switched\"]}" \
  "http://127.0.0.1:$api/admin/webhooks" | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])' >"$dir/secret"
t0=$(date +%s.%N)
"$AUREN_BIN" simulate --users "$USERS" --days "$DAYS" --concurrency "$CONCURRENCY" \
  --url "http://127.0.0.1:$api" --admin-token "$ADMIN" --whoop-client-secret bench-whoop \
  --oura-client-secret bench-oura --user-prefix bench --log-filter warn >"$dir/simulate.txt"
t1=$(date +%s.%N)
scrape() { curl -fsS "http://127.0.0.1:$metrics/metrics"; }
value() { scrape | awk -v s="$1" '$1 == s { print $2 }'; }
# Wait until both sinks delivered every switch the bridge committed.
for _ in $(seq 1 600); do
  switches=$(scrape | awk '/^auren_mode_switches_total/ { n += $2 } END { print n + 0 }')
  lgd=$(value 'auren_agent_deliveries_total{sink="langgraph",outcome="delivered"}')
  whd=$(value 'auren_agent_deliveries_total{sink="webhook",outcome="delivered"}')
  if [ "${lgd:-0}" = "$switches" ] && [ "${whd:-0}" = "$switches" ] && [ "$switches" != 0 ]; then break; fi
  sleep 0.5
done
t2=$(date +%s.%N)
verified=$(grep -c '"verified": true' "$dir/received.jsonl" || true)
echo "users=$USERS days=$DAYS simulation=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')s switches=$switches" \
  "switch_rate=$(awk -v n="$switches" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / (b - a) }')/s" \
  "all_delivered_after=$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.1f", b - a }')s"
echo "langgraph delivered=${lgd:-0} webhook delivered=${whd:-0} receiver_verified=$verified"
scrape | grep -E '^auren_agent_deliveries_total' || true
python3 scripts/bench/delivery_latency.py "$dir/data/state.db" "$dir/received.jsonl" "$LANGGRAPH_URL"
