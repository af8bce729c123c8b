#!/usr/bin/env bash
# Load benchmark of durable webhook ingest: wrk drives uniquely signed WHOOP deliveries at a
# release build of `auren serve`, first as fast as it can (throughput), then paced at a fixed
# offered rate (latency). Both the embedded log and Kafka (a Tansu broker) are measured.
# Cases: embedded (auren serve: ingest and bridge in one process), kafka (ingest alone, as when
# bridges run elsewhere: AUREN_NO_BRIDGE=1), kafka-bridge (ingest and bridge in one process).
# slow: the embedded case again while SLOW_CLIENTS hostile connections (headers sent, body dribbled
# or withheld; scripts/bench/slow_clients.py) are held open the whole time.
# sse: the embedded case again while SSE_CLIENTS idle live event streams (scripts/bench/sse_clients.py,
# one user each, so their state is polled every second) are held open the whole time.
# Usage: scripts/bench.sh [embedded|kafka|kafka-bridge|slow|sse|all]   (results in bench-out/)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
which_log=${1:-all}
# Paced: each of PACED_CONNECTIONS waits PACED_DELAY_MS after every answer; 23 x (10 ms + ~1.5 ms
# service time) offers about 2,000 requests/s. The achieved rate is reported, not assumed.
: "${DURATION:=15}" "${CONNECTIONS:=64}" "${PACED_CONNECTIONS:=23}" "${PACED_DELAY_MS:=10}"
: "${SLOW_CLIENTS:=200}" "${SSE_CLIENTS:=1000}"
command -v wrk >/dev/null || apt_install wrk
# AUREN_BIN=path measures that binary instead (an A/B against another build).
if [ -z "${AUREN_BIN:-}" ]; then
  cargo build --release -p auren >&2
  AUREN_BIN=target/release/auren
fi
out=bench-out; mkdir -p "$out"
export AUREN_BENCH_DIR="$PWD/scripts/bench"
SECRET=bench-whoop-secret
PORT=18080

run_service() { # log-kind
  local dir; dir=$(mktemp -d "${TMPDIR:-/tmp}/auren-bench-XXXXXX")
  local env=(AUREN_HTTP_ADDR=127.0.0.1:$PORT AUREN_METRICS_ADDR=127.0.0.1:18081 AUREN_DATA_DIR="$dir"
    OURA_CLIENT_SECRET=x OURA_VERIFICATION_TOKEN=x WHOOP_CLIENT_SECRET=$SECRET
    AUREN_PSEUDONYM_KEY=bench-pseudonym-key-0123456789 MAX_CONCURRENT_EVENTS=256 RUST_LOG=warn
    AUREN_ADMIN_TOKEN=bench-admin-token)
  if [ "$1" = kafka ]; then
    env+=(AUREN_NO_BRIDGE=1)
  fi
  if [ "$1" = kafka ] || [ "$1" = kafka-bridge ]; then
    start_tansu "$(ensure_tansu_built "${TANSU_PROFILE:-release}")" 19092
    BENCH_TANSU_PID=$TANSU_PID
    env+=(KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092)
    env "${env[@]}" "$AUREN_BIN" topics create --partitions 3 >/dev/null
  fi
  env "${env[@]}" "$AUREN_BIN" serve >"$out/serve-$1.log" 2>&1 &
  SERVICE_PID=$!
  wait_port 127.0.0.1 $PORT 30
  SERVICE_DIR=$dir
}

bench_one() { # kind: embedded|kafka|kafka-bridge|slow|sse
  local kind=$1 n slow_pid=
  if [ "$kind" = sse ]; then
    run_service embedded
    python3 scripts/bench/sse_clients.py 127.0.0.1 $PORT "$SSE_CLIENTS" 3600 \
      bench-admin-token >"$out/sse-clients.txt" &
    slow_pid=$!
    sleep 5
  elif [ "$kind" = slow ]; then
    run_service embedded
    python3 scripts/bench/slow_clients.py 127.0.0.1 $PORT "$SLOW_CLIENTS" $(( 2 * DURATION + 15 )) \
      >"$out/slow-clients.txt" &
    slow_pid=$!
    sleep 3
  else
    run_service "$kind"
  fi
  n=$(( (DURATION + 5) * 40000 ))
  python3 scripts/bench/gen_whoop.py "$n" "$SECRET" >"$out/requests.tsv"
  wrk -t1 -c8 -d2s -s scripts/bench/wrk-whoop.lua "http://127.0.0.1:$PORT" -- "$out/requests.tsv" 1 >/dev/null # warm-up
  python3 scripts/bench/gen_whoop.py "$n" "$SECRET" >"$out/requests.tsv"
  echo "== $kind: throughput, $CONNECTIONS connections, ${DURATION}s" | tee "$out/$kind-throughput.txt"
  wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s scripts/bench/wrk-whoop.lua \
    "http://127.0.0.1:$PORT" -- "$out/requests.tsv" 1 | tee -a "$out/$kind-throughput.txt"
  python3 scripts/bench/gen_whoop.py $(( (DURATION + 5) * 4000 )) "$SECRET" >"$out/requests.tsv"
  local delay=$PACED_DELAY_MS
  echo "== $kind: paced, $PACED_CONNECTIONS connections, ${delay} ms pause after each answer, ${DURATION}s" | tee "$out/$kind-paced.txt"
  wrk -t1 -c"$PACED_CONNECTIONS" -d"${DURATION}s" --latency -s scripts/bench/wrk-whoop-paced.lua \
    "http://127.0.0.1:$PORT" -- "$out/requests.tsv" 1 "$delay" | tee -a "$out/$kind-paced.txt"
  curl -s http://127.0.0.1:18081/metrics | grep -E '^auren_(webhook_events_total|http_connections|sse_)' >"$out/$kind-metrics.txt" || true
  if [ -n "$slow_pid" ]; then kill "$slow_pid" 2>/dev/null; wait "$slow_pid" 2>/dev/null || true; fi
  kill "$SERVICE_PID"; wait "$SERVICE_PID" || true
  rm -rf "$SERVICE_DIR"
  if [ -n "${BENCH_TANSU_PID:-}" ]; then kill -9 "$BENCH_TANSU_PID"; BENCH_TANSU_PID=; fi
}

case $which_log in
  embedded | kafka | kafka-bridge | slow | sse) bench_one "$which_log" ;;
  all) bench_one embedded; bench_one slow; bench_one sse; bench_one kafka; bench_one kafka-bridge ;;
  *) echo "usage: $0 [embedded|kafka|kafka-bridge|slow|sse|all]" >&2; exit 2 ;;
esac
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(uname -sr)"
for f in "$out"/*-throughput.txt "$out"/*-paced.txt; do
  [ -f "$f" ] && printf '%s\t%s\n' "$(basename "$f" .txt)" "$(grep RESULT "$f")"
done
