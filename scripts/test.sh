#!/usr/bin/env bash
# The whole test suite: unit, property and integration tests against real PostgreSQL, Redis
# and a Kafka-wire broker (Tansu), which this script installs and starts when they are not up.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
ensure_postgres
ensure_redis
ensure_tansu debug 9092
export AUREN_TEST_KAFKA=127.0.0.1:9092
export AUREN_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/postgres
export AUREN_TEST_REDIS=redis://127.0.0.1:6379/0
cargo test --workspace --all-targets "$@"
