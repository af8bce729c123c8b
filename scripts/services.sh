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

# Tansu 0.6.0 (the latest release) loses partitions when a consumer-group member dies: the member
# whose heartbeat finds the dead one's session expired is told to rejoin, but the group stays
# "formed" at the same generation, so that member gets its old assignment back and the dead
# member's partitions are assigned to nobody (scale-out's kill test shows it). The fix upstream
# (tansu-io/tansu 9b50583, after 0.6.0) checks for expired members before answering the
# heartbeat, starts a new generation without the dead leader, and counts the request of a member
# as contact (a member slow to rejoin is not expired for it). And when the leader expires while
# the group forms, 0.6.0 completes the group with the next follower's SyncGroup, which carries
# no assignments: every member is then assigned nothing, for good (upstream 50e5666 answers
# REBALANCE_IN_PROGRESS, so a member rejoins and becomes the leader). scripts/tansu/tansu-broker.patch
# backports those parts. Its storage panics, stopping the whole broker, when an idempotent producer
# sends an epoch it never issued (a SQL lookup expecting one row) or asks for its epoch to be bumped
# (KIP-360, `todo!()`, which librdkafka asks for after a timed-out batch). The first was seen after
# produce timeouts under load; scripts/tansu/tansu-storage.patch answers both with Kafka errors
# and a bumped epoch instead (upstream 50e5666 has the first).
TANSU_PATCHES="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/tansu"

# ensure_tansu_built debug|release: builds Tansu once into the cache, outside the repo: the
# crates.io release, with each crate that has a patch in scripts/tansu patched, at the versions
# its Cargo.lock pins. The cache directory is named after the patches, so changed patches build
# anew. TANSU_TARGET_DIR, when set, keeps the build's target directory (a rebuild then only
# compiles what the patches touch).
ensure_tansu_built() {
  local profile=$1 patch_id root src target crate patch flags=() out=debug
  [ "$profile" = release ] && flags=(--release) && out=release
  patch_id=$(cat "$TANSU_PATCHES"/*.patch | sha256sum | cut -c1-8)
  root="$AUREN_CACHE/tansu-$TANSU_VERSION-$patch_id-$profile"
  if [ ! -x "$root/bin/tansu" ]; then
    log "building Tansu $TANSU_VERSION ($profile, patched) into $root; the first time takes 9-17 minutes"
    src="$AUREN_CACHE/tansu-$TANSU_VERSION-src"
    target=${TANSU_TARGET_DIR:-$src/target}
    rm -rf "$src"
    mkdir -p "$src/fetch/src"
    # The release's crates, downloaded by cargo for a scratch package that depends on them.
    printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\ntansu = "=%s"\ntansu-broker = "=%s"\n' \
      "$TANSU_VERSION" "$TANSU_VERSION" >"$src/fetch/Cargo.toml"
    touch "$src/fetch/src/lib.rs"
    (cd "$src/fetch" && cargo fetch -q) >&2
    tar -xzf "$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"tansu-$TANSU_VERSION.crate" | head -n1)" -C "$src"
    printf '\n[patch.crates-io]\n' >>"$src/tansu-$TANSU_VERSION/Cargo.toml"
    for patch in "$TANSU_PATCHES"/*.patch; do
      crate=$(basename "$patch" .patch)
      tar -xzf "$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$crate-$TANSU_VERSION.crate" | head -n1)" -C "$src"
      patch -s -d "$src/$crate-$TANSU_VERSION" -p1 <"$patch"
      printf '%s = { path = "../%s-%s" }\n' "$crate" "$crate" "$TANSU_VERSION" >>"$src/tansu-$TANSU_VERSION/Cargo.toml"
    done
    # Not --locked: the lock file's only changes are the patched crates' sources; every other pin stands.
    (cd "$src/tansu-$TANSU_VERSION" &&
      cargo build --no-default-features --features libsql --bin tansu "${flags[@]}" --target-dir "$target") >&2
    mkdir -p "$root/bin"
    cp "$target/$out/tansu" "$root/bin/tansu"
    rm -rf "$src"
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

# ensure_test_tls: a test CA, a second (wrong) CA, two server certificates for
# 127.0.0.1/localhost and a client certificate, all signed by the first, made once with the
# openssl CLI into $AUREN_CACHE/tls (remade when one has less than a day left). Prints the
# directory.
ensure_test_tls() {
  local dir="$AUREN_CACHE/tls" name
  mkdir -p "$dir"
  if [ -s "$dir/client.pem" ] && openssl x509 -checkend 86400 -noout -in "$dir/server.pem" >/dev/null 2>&1; then
    echo "$dir"; return 0
  fi
  command -v openssl >/dev/null || { log "installing openssl"; apt_install openssl; }
  log "making test certificates in $dir"
  for name in ca other-ca; do
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
      -subj "/CN=AUREN test $name" -keyout "$dir/$name.key" -out "$dir/$name.pem" 2>/dev/null
  done
  for name in server server2 client; do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -subj "/CN=AUREN test $name" -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
    if [ "$name" = client ]; then
      printf 'extendedKeyUsage=clientAuth\n' >"$dir/$name.ext"
    else
      printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$dir/$name.ext"
    fi
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
      -days 825 -extfile "$dir/$name.ext" -out "$dir/$name.pem" 2>/dev/null
    rm -f "$dir/$name.csr" "$dir/$name.ext"
  done
  chmod 600 "$dir"/*.key
  echo "$dir"
}

# ensure_postgres_tls DIR: the local PostgreSQL serves TLS with DIR's server certificate (plain
# connections keep working: pg_hba's `host` lines match both). A reload, no restart.
ensure_postgres_tls() {
  local dir=$1 pg=(psql -h 127.0.0.1 -U postgres -qAtX) data
  if "${pg[@]}" "dbname=postgres sslmode=verify-full sslrootcert=$dir/ca.pem" -c 'select 1' >/dev/null 2>&1; then
    return 0
  fi
  data=$("${pg[@]}" -d postgres -c 'show data_directory')
  log "PostgreSQL: ssl = on with the test certificate"
  install -o postgres -g postgres -m 644 "$dir/server.pem" "$data/auren-test-server.pem"
  install -o postgres -g postgres -m 600 "$dir/server.key" "$data/auren-test-server.key"
  "${pg[@]}" -d postgres -c "ALTER SYSTEM SET ssl_cert_file = '$data/auren-test-server.pem'" \
    -c "ALTER SYSTEM SET ssl_key_file = '$data/auren-test-server.key'" \
    -c "ALTER SYSTEM SET ssl = on" -c "SELECT pg_reload_conf()" >/dev/null
  for _ in $(seq 1 50); do
    "${pg[@]}" "dbname=postgres sslmode=verify-full sslrootcert=$dir/ca.pem" -c 'select 1' >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  log "PostgreSQL does not serve the test certificate"; return 1
}

# ensure_redis_tls DIR PORT: a second Redis that speaks only TLS on 127.0.0.1:PORT, with DIR's
# server certificate (reused when one already answers). Fails when redis-server was built
# without TLS.
ensure_redis_tls() {
  local dir=$1 port=$2 cli
  cli=(redis-cli -h 127.0.0.1 -p "$port" --tls --cacert "$dir/ca.pem")
  [ "$("${cli[@]}" ping 2>/dev/null)" = PONG ] && return 0
  # One we started earlier with certificates since remade: replace it.
  if [ -s "/var/run/redis-tls-$port.pid" ]; then
    kill "$(cat "/var/run/redis-tls-$port.pid")" 2>/dev/null && sleep 0.5
  fi
  log "starting Redis with TLS on 127.0.0.1:$port"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 0 --tls-port "$port" \
    --tls-cert-file "$dir/server.pem" --tls-key-file "$dir/server.key" \
    --tls-ca-cert-file "$dir/ca.pem" --tls-auth-clients no --save "" --appendonly no \
    --dir /var/lib/redis --logfile "/var/log/redis/ci-tls-$port.log" \
    --pidfile "/var/run/redis-tls-$port.pid" ||
    { log "redis-server cannot serve TLS (built without it?)"; return 1; }
  for _ in $(seq 1 50); do [ "$("${cli[@]}" ping 2>/dev/null)" = PONG ] && return 0; sleep 0.2; done
  log "Redis with TLS did not start; see /var/log/redis/ci-tls-$port.log"; return 1
}

# ensure_build_deps: what compiling the workspace needs from the system beyond a C toolchain:
# OpenSSL headers and pkg-config for librdkafka's TLS and SASL SCRAM (rdkafka's `ssl` feature).
ensure_build_deps() {
  if command -v pkg-config >/dev/null && pkg-config --exists openssl; then return 0; fi
  log "installing libssl-dev and pkg-config (librdkafka's TLS)"
  apt_install libssl-dev pkg-config
}
