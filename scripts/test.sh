#!/usr/bin/env bash
# The whole test suite: unit, property and integration tests against real PostgreSQL, Redis
# and a Kafka-wire broker (Tansu): PostgreSQL and Redis are installed and started when they are not
# up; Tansu is built once into ~/.cache/auren and a fresh broker is started for the run. Python
# tools (schemathesis, standardwebhooks, validators, a LangGraph server) live in pinned, cached
# virtualenvs (scripts/pyenv.sh). Then the deployment files and the example LangGraph agent.
# Arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
source scripts/pyenv.sh
ensure_build_deps
ensure_postgres
ensure_redis
# TLS: PostgreSQL serves the test certificate, a second Redis speaks only TLS, and the tests
# (listener, Kafka client) use the same CA and certificates.
AUREN_TEST_TLS_DIR=$(ensure_test_tls)
export AUREN_TEST_TLS_DIR
ensure_postgres_tls "$AUREN_TEST_TLS_DIR"
: "${AUREN_TEST_REDIS_TLS_PORT:=16380}"
ensure_redis_tls "$AUREN_TEST_TLS_DIR" "$AUREN_TEST_REDIS_TLS_PORT"
export AUREN_TEST_REDIS_TLS=rediss://127.0.0.1:$AUREN_TEST_REDIS_TLS_PORT/0
# A fresh broker for every run, on its own port: results never depend on a broker's history.
# A release build: a debug Tansu (SQLite at -O0 too) answers heartbeats so late under the
# scale-out test's load that the surviving bridge's session keeps expiring.
: "${AUREN_TEST_KAFKA_PORT:=19093}"
start_tansu "$(ensure_tansu_built release)" "$AUREN_TEST_KAFKA_PORT"
# Tansu lingers on SIGTERM once it has had clients; its data is scratch, so SIGKILL.
trap 'kill -9 "$TANSU_PID" 2>/dev/null; rm -rf "$TANSU_DIR"' EXIT
export TANSU_BIN
TANSU_BIN=$(ensure_tansu_built release)
export AUREN_TEST_KAFKA=127.0.0.1:$AUREN_TEST_KAFKA_PORT
export AUREN_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/postgres
export AUREN_TEST_REDIS=redis://127.0.0.1:6379/0
# schemathesis and standardwebhooks: independent checks of our OpenAPI contract and signatures.
AUREN_TEST_CONTRACT_VENV=$(ensure_venv contract)
export AUREN_TEST_CONTRACT_VENV
# The LangGraph server's venv, built once here rather than by the first tests that start one.
ensure_venv langgraph >/dev/null
# promtool, when it can be had, also checks the live /metrics text (tests/metrics.rs).
source scripts/promtool.sh
AUREN_TEST_PROMTOOL=$(find_promtool) || AUREN_TEST_PROMTOOL=
export AUREN_TEST_PROMTOOL
cargo test --workspace --all-targets "$@"
# The declared minimum Rust version is true for every locked dependency.
python3 scripts/check-msrv.py
# Deployment files (Kubernetes, compose, alerts, dashboard) against their schemas and the code.
bash scripts/validate-deploy.sh
# The example LangGraph agent against a real `langgraph dev` server.
bash scripts/test-langgraph.sh
