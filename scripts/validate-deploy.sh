#!/usr/bin/env bash
# Validates the deployment and operations files without Docker or a cluster:
#   - the alert rules are the generation from the thresholds file (scripts/gen-alerts.py --check);
#   - every Kubernetes manifest against the API schemas of two Kubernetes versions, strict
#     (kubernetes-validate: unknown fields are errors);
#   - deploy/compose.yaml against the Compose Specification schema (the copy check-jsonschema
#     ships as vendor.compose-spec; the schema is the compose-spec project's, Apache-2.0);
#   - the cross-checks of scripts/deploy_checks.py: metric names exist in the code, variables are
#     ones the service reads, secrets come from Secrets, the dashboard's panels and thresholds...;
#   - with promtool: the rules parse, their unit tests pass, the Prometheus config of compose is
#     valid, the dashboard's queries parse;
#   - the image's health check script against a local HTTP server.
# Not checked here (nothing on this machine can): building the Dockerfile, running compose,
# applying the manifests to a cluster, rendering the dashboard in Grafana.
#
# Python tools come from the cached, pinned `deploy` virtualenv (scripts/pyenv.sh). promtool comes
# from Debian's prometheus package, unpacked into the cache rather than installed: installing it
# would also add a system user and start a Prometheus server. Where neither promtool nor that
# package can be had, the promtool checks are skipped, and the script says so.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pyenv.sh

# Kubernetes versions the manifests must be valid for: an old one still supported by the big
# providers, and the newest kubernetes-validate knows.
K8S_VERSIONS=(1.30.0 1.37.0)

started=$(date +%s%N)
step() { printf '\n== %s\n' "$*"; }
elapsed() { local ms=$(( ($(date +%s%N) - started) / 1000000 )); printf '%d.%d s' $((ms / 1000)) $((ms % 1000 / 100)); }

VENV=$(ensure_venv deploy)
PY=$VENV/bin/python

step "alert rules match config/biometric_thresholds.yaml"
"$PY" scripts/gen-alerts.py --check

step "Kubernetes manifests (kubernetes-validate --strict, ${K8S_VERSIONS[*]})"
mapfile -t manifests < <(find deploy/k8s -name '*.yaml' | sort)
for v in "${K8S_VERSIONS[@]}"; do
  "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "${manifests[@]}"
  echo "ok   ${#manifests[@]} files against Kubernetes $v"
done

step "deploy/compose.yaml (Compose Specification schema)"
"$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose.yaml

step "cross-checks (scripts/deploy_checks.py)"
"$PY" scripts/deploy_checks.py all

step "promtool"
source scripts/promtool.sh
if PROMTOOL=$(find_promtool); then
  "$PROMTOOL" --version 2>&1 | head -n1
  "$PROMTOOL" check rules deploy/prometheus/alerts.yml
  (cd deploy/prometheus && "$PROMTOOL" test rules alerts.test.yml)
  "$PROMTOOL" check config deploy/prometheus/prometheus.yml
  queries=$(mktemp --suffix=.yml)
  "$PY" scripts/deploy_checks.py dashboard-exprs >"$queries"
  echo "the dashboard's queries:"
  "$PROMTOOL" check rules "$queries"
  rm -f "$queries"
else
  echo "SKIPPED: promtool checks (rules syntax, rule unit tests, Prometheus config, dashboard queries): see the reason above"
fi

step "image health check script (deploy/docker/healthcheck.sh)"
dir=$(mktemp -d)
touch "$dir/health"
port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$PY" -m http.server "$port" --bind 127.0.0.1 --directory "$dir" >/dev/null 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
bash deploy/docker/healthcheck.sh "$port" /health
AUREN_HTTP_ADDR="0.0.0.0:$port" bash deploy/docker/healthcheck.sh
if bash deploy/docker/healthcheck.sh "$port" /missing >/dev/null; then
  echo "FAIL the health check passed on a 404"; exit 1
fi
kill "$server"; wait "$server" 2>/dev/null || true
if bash deploy/docker/healthcheck.sh "$port" /health >/dev/null; then
  echo "FAIL the health check passed with nothing listening"; exit 1
fi
echo "ok   200 passes; 404 and a closed port fail"

printf '\nvalidate-deploy: all checks passed in %s\n' "$(elapsed)"
