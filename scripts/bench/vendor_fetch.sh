#!/usr/bin/env bash
# Fetch after notify (issue 8): signed WHOOP `recovery.updated` notifications -> the fetch worker
# fetches each recovery from the fake WHOOP on the same machine (sleep, then the cycle's recovery:
# two requests) -> its readings appended to the log. A release build of `AUREN_DEV_MODE=1 auren
# serve` (embedded log, temp data dir) and `auren dev fake-vendors`; USERS users connected through
# the redirect flow, their backfills (BACKFILL_DAYS) awaited, then RUNS (scripts/bench/vendor_fetch.py):
# `full:COUNT` sends as fast as the webhook answers (throughput), `paced:COUNT@RATE` at a fixed
# rate (added latency). Measured per notification: webhook 2xx -> its reading appended to
# `<data dir>/events.db` (the log's own `ts_ms`).
# WHOOP_RPM is the service's shared WHOOP budget (AUREN_WHOOP_REQUESTS_PER_MINUTE): raised by
# default to measure our fetch path; WHOOP_RPM=100 is WHOOP's real limit (each notification costs
# two requests, so about 50 notifications a minute).
# Usage: scripts/bench/vendor_fetch.sh     (AUREN_BIN=path measures another build)
#        WHOOP_RPM=100 USERS=5 RUNS=paced:100@1 scripts/bench/vendor_fetch.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/services.sh
: "${USERS:=50}" "${BACKFILL_DAYS:=1}" "${RUNS:=full:2000,paced:600@20}" "${CONCURRENCY:=8}"
: "${WHOOP_RPM:=1000000}" "${WHOOP_RPD:=100000000}"
if [ -z "${AUREN_BIN:-}" ]; then
  cargo build --release -p auren >&2
  AUREN_BIN=target/release/auren
fi
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/auren-bench-vendor-XXXXXX")
api=$(free_port); metrics=$(free_port); fake=$(free_port)
cleanup() {
  kill "${SERVICE_PID:-}" "${FAKE_PID:-}" 2>/dev/null || true
  wait "${SERVICE_PID:-}" "${FAKE_PID:-}" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
# Dev mode writes <data dir>/dev-secrets.json; the fakes and the driver read the secrets there.
env AUREN_DEV_MODE=1 AUREN_DATA_DIR="$dir/data" AUREN_HTTP_ADDR=127.0.0.1:$api \
  AUREN_METRICS_ADDR=127.0.0.1:$metrics AUREN_PUBLIC_URL=http://127.0.0.1:$api \
  WHOOP_CLIENT_ID=auren-dev WHOOP_API_BASE_URL=http://127.0.0.1:$fake \
  AUREN_BACKFILL_DAYS=$BACKFILL_DAYS AUREN_RECONCILE_INTERVAL_SECONDS=86400 \
  AUREN_WHOOP_REQUESTS_PER_MINUTE=$WHOOP_RPM AUREN_WHOOP_REQUESTS_PER_DAY=$WHOOP_RPD RUST_LOG=warn \
  "$AUREN_BIN" serve >"$dir/serve.log" 2>&1 &
SERVICE_PID=$!
wait_port 127.0.0.1 "$api" 30
env AUREN_DATA_DIR="$dir/data" RUST_LOG=warn "$AUREN_BIN" dev fake-vendors --port "$fake" >"$dir/fake.log" 2>&1 &
FAKE_PID=$!
wait_port 127.0.0.1 "$fake" 30
echo "users=$USERS backfill_days=$BACKFILL_DAYS whoop_requests_per_minute=$WHOOP_RPM runs=$RUNS concurrency=$CONCURRENCY"
python3 scripts/bench/vendor_fetch.py --api "http://127.0.0.1:$api" --fake "http://127.0.0.1:$fake" \
  --data-dir "$dir/data" --users "$USERS" --runs "$RUNS" --concurrency "$CONCURRENCY"
curl -fsS "http://127.0.0.1:$metrics/metrics" | grep -E '^auren_vendor_(notifications|fetched_events|requests)' || true
curl -fsS "http://127.0.0.1:$fake/_fake/whoop/stats"; echo
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(uname -sr); load: $(cut -d' ' -f1-3 /proc/loadavg)"
if grep -qE 'ERROR|panicked' "$dir/serve.log"; then echo "serve.log errors:"; grep -E 'ERROR|panicked' "$dir/serve.log" | head; fi
