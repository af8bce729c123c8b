#!/usr/bin/env bash
# Starts (installing when missing) the real services the tests and benchmarks talk to, all on
# 127.0.0.1: PostgreSQL :5432 (trust auth), Redis :6379, and a Tansu Kafka-wire broker.
# Sourced by scripts/test.sh and scripts/bench.sh; safe to run when they are already up.

TANSU_VERSION=0.6.0
: "${AUREN_CACHE:=$HOME/.cache/auren}"

log() { echo "[services] $*" >&2; }

apt_install() {
  if [ -z "${APT_UPDATED:-}" ]; then
    apt-get update -qq >/dev/null || true
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

wait_port() { # host port seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

ensure_postgres() {
  if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then return 0; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    log "installing PostgreSQL"
    apt_install postgresql
    # Tests connect as postgres over TCP without a password, as on the project's machines.
    for hba in /etc/postgresql/*/main/pg_hba.conf; do
      sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
    done
  fi
  log "starting PostgreSQL"
  local v
  v=$(ls /etc/postgresql | sort -V | tail -n1)
  pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
  for _ in $(seq 1 100); do pg_isready -q -h 127.0.0.1 -p 5432 && return 0; sleep 0.2; done
  log "PostgreSQL did not start"; return 1
}

ensure_redis() {
  if command -v redis-cli >/dev/null && [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; then return 0; fi
  command -v redis-server >/dev/null || { log "installing Redis"; apt_install redis-server; }
  log "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 50); do [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ] && return 0; sleep 0.2; done
  log "Redis did not start"; return 1
}

# ensure_tansu_built debug|release: builds Tansu once into the cache, outside the repo.
ensure_tansu_built() {
  local profile=$1 root="$AUREN_CACHE/tansu-$TANSU_VERSION-$1" flags=()
  [ "$profile" = debug ] && flags=(--debug)
  if [ ! -x "$root/bin/tansu" ]; then
    log "building Tansu $TANSU_VERSION ($profile) into $root; the first time takes 9-17 minutes"
    cargo install "tansu@$TANSU_VERSION" --locked --no-default-features --features libsql \
      "${flags[@]}" --root "$root" >&2
  fi
  echo "$root/bin/tansu"
}

# ensure_tansu PROFILE PORT: a broker on 127.0.0.1:PORT (reused when one already listens),
# with its data in a fresh scratch dir.
ensure_tansu() {
  local profile=${1:-debug} port=${2:-9092} bin
  bin=$(ensure_tansu_built "$profile")
  export TANSU_BIN="$bin"
  if wait_port 127.0.0.1 "$port" 0; then return 0; fi
  start_tansu "$bin" "$port"
}

# start_tansu BIN PORT: starts a fresh broker; its pid is in TANSU_PID.
start_tansu() {
  local bin=$1 port=$2 dir
  dir=$(mktemp -d "${TMPDIR:-/tmp}/auren-tansu-XXXXXX")
  log "starting Tansu on 127.0.0.1:$port (data in $dir)"
  cd "$dir"
  RUST_LOG=warn nohup "$bin" broker \
    --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine sqlite://tansu.db >tansu.log 2>&1 &
  TANSU_PID=$!
  TANSU_DIR=$dir
  cd - >/dev/null
  wait_port 127.0.0.1 "$port" 30 || { log "Tansu did not start; see $dir/tansu.log"; return 1; }
}
