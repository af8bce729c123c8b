#!/usr/bin/env python3
"""Checks of the deployment files that no schema can make: that they agree with the code and with
each other. Run by scripts/validate-deploy.sh (with the deploy virtualenv's Python, for PyYAML):

  deploy_checks.py all               every check below; prints one line per check
  deploy_checks.py dashboard-exprs   the dashboard's queries as a Prometheus rules file (stdout),
                                     for `promtool check rules` to parse them

What is checked:
- metrics: every auren_* metric the dashboard and the alert rules use is exported by the Rust
  sources (metrics::counter!/gauge!/histogram!; _bucket, _sum and _count of histograms).
- dashboard: valid JSON; the expected panels; unique ids; every panel on the datasource variable;
  its threshold lines equal the thresholds file's alerts section.
- environment: every variable the compose file and the Kubernetes manifests give an auren
  container is one the service reads (an `env = "..."` of crates/auren/src).
- kubernetes: each secret the service has comes from a Secret, never a ConfigMap or a literal; every
  Secret and ConfigMap referenced exists with that key (unless optional); no Secret holds an empty
  AUREN_ADMIN_TOKEN (the service would take "" as the token, and an empty header matches it); the ingest is ready on /ready; every
  container has CPU and memory requests and runs as non-root; bridges never outnumber the
  topic partitions; a PodDisruptionBudget covers each Deployment; the thresholds ConfigMap is the
  thresholds file.
- compose: the services the issue names; depends_on, volumes and bind mounts resolve; the
  bridges never outnumber the partitions; secrets are passed through, never set to "".
- Dockerfile: EXPOSE matches the default API and metrics ports.
"""

import json
import pathlib
import re
import shlex
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SRC = ROOT / "crates"

failures = []


def check(name, problems):
    problems = [p for p in problems if p]
    if problems:
        failures.append(name)
        print(f"FAIL {name}")
        for p in problems:
            print(f"     - {p}")
    else:
        print(f"ok   {name}")


# --- what the code says ----------------------------------------------------------------------

def rust_sources():
    return [(p, p.read_text()) for p in sorted(SRC.rglob("*.rs"))]


def exported_metrics():
    """{name: kind} of every metric the Rust sources record or describe."""
    out = {}
    pat = re.compile(r'\b(counter|gauge|histogram)!\s*\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"')
    for _, text in rust_sources():
        for kind, name in pat.findall(text):
            out[name] = kind
    return out


def service_env_vars():
    """Every environment variable a command of the service reads (clap `env = ...`)."""
    names = set()
    consts = {}
    for _, text in rust_sources():
        for const, value in re.findall(r'pub const ([A-Z_]+): &str = "([A-Z][A-Z0-9_]*)"', text):
            consts[const] = value
    for _, text in rust_sources():
        names.update(re.findall(r'\benv\s*=\s*"([A-Z][A-Z0-9_]*)"', text))
        for const in re.findall(r'\benv\s*=\s*(?:settings::)?env::([A-Z_]+)', text):
            if const in consts:
                names.add(consts[const])
    return names


def secret_env_vars():
    """The variables of SecretSettings except the dev-mode switch: what must come from Secrets."""
    text = (SRC / "auren" / "src" / "settings.rs").read_text()
    body = text.split("pub struct SecretSettings", 1)[1].split("\n}\n", 1)[0]
    consts = dict(re.findall(r'pub const ([A-Z_]+): &str = "([A-Z][A-Z0-9_]*)"', text))
    names = set(re.findall(r'env\s*=\s*"([A-Z][A-Z0-9_]*)"', body))
    names.update(consts[c] for c in re.findall(r'env\s*=\s*env::([A-Z_]+)', body))
    names.discard("AUREN_DEV_MODE")
    # The URLs hold passwords.
    return names | {"POSTGRES_URL", "REDIS_URL"}


def default_ports():
    text = (SRC / "auren" / "src" / "settings.rs").read_text()
    http = re.search(r'env = "AUREN_HTTP_ADDR", default_value = "[^"]*:(\d+)"', text).group(1)
    metrics = re.search(r'env = "AUREN_METRICS_ADDR", default_value = "[^"]*:(\d+)"', text).group(1)
    return int(http), int(metrics)


def alert_thresholds():
    doc = yaml.safe_load((ROOT / "config" / "biometric_thresholds.yaml").read_text())
    return doc["alerts"]


# --- metrics ---------------------------------------------------------------------------------

METRIC_RE = re.compile(r"\b(auren_[a-z0-9_]+)")


def unknown_metrics(exprs, exported):
    problems = []
    for where, expr in exprs:
        for name in METRIC_RE.findall(expr):
            if name in exported:
                continue
            base, _, suffix = name.rpartition("_")
            if suffix in ("bucket", "sum", "count") and exported.get(base) == "histogram":
                continue
            problems.append(f"{where}: {name} is not exported by crates/ (counter!/gauge!/histogram!)")
    return problems


def dashboard():
    return json.loads((DEPLOY / "grafana" / "auren.json").read_text())


def panels(d):
    for p in d.get("panels", []):
        yield p
        yield from p.get("panels", [])


def dashboard_exprs(d):
    for p in panels(d):
        for t in p.get("targets", []):
            yield f"dashboard panel {p.get('title')!r} {t.get('refId')}", t.get("expr", "")


def alert_rules():
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    for g in doc["groups"]:
        for r in g["rules"]:
            yield r


def check_metrics():
    exported = exported_metrics()
    exprs = list(dashboard_exprs(dashboard()))
    exprs += [(f"alert {r['alert']}", r["expr"]) for r in alert_rules()]
    problems = unknown_metrics(exprs, exported)
    if len(exported) < 10:
        problems.append(f"found only {len(exported)} metrics in crates/: is the pattern stale?")
    check(f"metrics: the dashboard and alerts use only the {len(exported)} metrics the code exports",
          problems)
    used = {n for _, e in exprs for n in METRIC_RE.findall(e)}
    used |= {n.rpartition("_")[0] for n in used}
    missing = sorted(set(exported) - used)
    if missing:
        print(f"note exported but on no panel or alert: {', '.join(missing)}")


# --- dashboard -------------------------------------------------------------------------------

# Panels the issue asks for, by a metric each must show.
EXPECTED_PANELS = {
    "ingest rate": "auren_webhook_events_total",
    "ingest outcomes": "auren_webhook_events_total",
    "webhook latency": "auren_webhook_process_duration_seconds_bucket",
    "bridge lag": "auren_consumer_lag",
    "switches by mode": "auren_mode_switches_total",
    "checkpoint time": "auren_checkpoint_save_seconds_bucket",
    "cache errors": "auren_cache_errors_total",
    "deliveries (dead letters)": 'auren_kafka_messages_processed_total{outcome="dlq"}',
    "agent deliveries": "auren_agent_deliveries_total",
    "delivery latency": "auren_agent_delivery_lag_seconds_bucket",
}


def check_dashboard():
    problems = []
    try:
        d = dashboard()
    except json.JSONDecodeError as e:
        check("dashboard: deploy/grafana/auren.json is JSON", [str(e)])
        return
    ps = list(panels(d))
    ids = [p.get("id") for p in ps]
    if len(ids) != len(set(ids)):
        problems.append("panel ids are not unique")
    if not d.get("uid") or not d.get("title"):
        problems.append("the dashboard needs a uid and a title")
    var = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    if var.get("datasource", {}).get("type") != "datasource":
        problems.append("no `datasource` variable of type datasource")
    for p in ps:
        if p.get("type") == "row":
            continue
        for key in ("h", "w", "x", "y"):
            if not isinstance(p.get("gridPos", {}).get(key), int):
                problems.append(f"panel {p.get('title')!r}: gridPos.{key} missing")
        if p.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"panel {p.get('title')!r}: not on the ${{datasource}} variable")
        if not p.get("targets"):
            problems.append(f"panel {p.get('title')!r}: no query")
        for t in p.get("targets", []):
            if not t.get("expr") or not t.get("refId"):
                problems.append(f"panel {p.get('title')!r}: a target without expr or refId")
    all_exprs = " ".join(e for _, e in dashboard_exprs(d))
    for what, needle in EXPECTED_PANELS.items():
        if needle not in all_exprs:
            problems.append(f"no panel shows {what} ({needle})")
    # Threshold lines: the same numbers as the alerts.
    a = alert_thresholds()
    want = {
        "auren_consumer_lag": a["consumer_lag_threshold"],
        'outcome="dlq"': a["error_rate_threshold"],
        "auren_checkpoint_save_seconds": a["checkpoint_latency_threshold"],
    }
    for needle, value in want.items():
        for p in ps:
            if any(needle in t.get("expr", "") for t in p.get("targets", [])):
                steps = p.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}) \
                    .get("steps", [])
                values = [s.get("value") for s in steps if s.get("value") is not None]
                if values and float(values[-1]) != float(value):
                    problems.append(f"panel {p.get('title')!r}: threshold line {values[-1]} "
                                    f"but the thresholds file says {value}")
                if not values and needle != "auren_checkpoint_save_seconds" \
                        and p.get("type") == "timeseries":
                    problems.append(f"panel {p.get('title')!r}: no threshold line at {value}")
    check(f"dashboard: {len([p for p in ps if p.get('type') != 'row'])} panels, the expected ones, "
          "thresholds as in the thresholds file", problems)


def dashboard_rules_file():
    """The dashboard's queries as recording rules, Grafana's variables replaced, for promtool."""
    subs = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h"}
    rules = []
    for i, (where, expr) in enumerate(dashboard_exprs(dashboard())):
        for k, v in subs.items():
            expr = expr.replace(k, v)
        rules.append({"record": f"auren_dashboard_query_{i}", "expr": expr})
    return yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]},
                          sort_keys=False)


# --- manifests -------------------------------------------------------------------------------

def k8s_docs():
    out = []
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((path.relative_to(ROOT), doc))
    return out


def pod_spec(doc):
    kind = doc.get("kind")
    if kind in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        return doc["spec"]["template"]["spec"]
    return None


def check_kubernetes():
    docs = k8s_docs()
    problems = []
    known_env = service_env_vars()
    secret_vars = secret_env_vars()
    secrets = {d["metadata"]["name"]: set((d.get("stringData") or {}) | (d.get("data") or {}))
               for _, d in docs if d["kind"] == "Secret"}
    configmaps = {d["metadata"]["name"]: d.get("data") or {}
                  for _, d in docs if d["kind"] == "ConfigMap"}
    kinds = {}
    for path, d in docs:
        kinds.setdefault(d["kind"], []).append(d["metadata"]["name"])
        if d["metadata"].get("namespace", "auren") != "auren" and d["kind"] != "Namespace":
            problems.append(f"{path}: {d['kind']}/{d['metadata']['name']} outside namespace auren")
    for kind in ("Namespace", "Deployment", "Job", "Secret", "PodDisruptionBudget", "Service",
                 "ConfigMap"):
        if kind not in kinds:
            problems.append(f"no {kind}")
    deployments = {}
    partitions = None
    for path, d in docs:
        spec = pod_spec(d)
        if spec is None:
            continue
        name = f"{path}: {d['kind']}/{d['metadata']['name']}"
        if d["kind"] == "Deployment":
            deployments[d["metadata"]["name"]] = d
        if not spec.get("securityContext", {}).get("runAsNonRoot"):
            problems.append(f"{name}: pod securityContext.runAsNonRoot is not true")
        for c in spec["containers"]:
            args = c.get("args", [])
            req = c.get("resources", {}).get("requests", {})
            if "cpu" not in req or "memory" not in req:
                problems.append(f"{name}: container {c['name']} lacks CPU or memory requests")
            if c.get("securityContext", {}).get("allowPrivilegeEscalation") is not False:
                problems.append(f"{name}: container {c['name']} may escalate privileges")
            for e in c.get("env", []):
                if e["name"] not in known_env:
                    problems.append(f"{name}: {e['name']} is no variable the service reads")
                if e["name"] in secret_vars and "secretKeyRef" not in e.get("valueFrom", {}):
                    problems.append(f"{name}: {e['name']} is a secret but not from a Secret")
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["name"] not in secrets:
                    problems.append(f"{name}: no Secret {ref['name']}")
                elif ref and not ref.get("optional") and ref["key"] not in secrets[ref["name"]]:
                    problems.append(f"{name}: Secret {ref['name']} has no key {ref['key']}")
            for ef in c.get("envFrom", []):
                cm = ef.get("configMapRef", {}).get("name")
                if cm:
                    if cm not in configmaps:
                        problems.append(f"{name}: no ConfigMap {cm}")
                    for k in configmaps.get(cm, {}):
                        if k not in known_env:
                            problems.append(f"ConfigMap {cm}: {k} is no variable the service reads")
                        if k in secret_vars:
                            problems.append(f"ConfigMap {cm}: {k} is a secret")
            if args[:2] == ["topics", "create"] and "--partitions" in args:
                partitions = int(args[args.index("--partitions") + 1])
            if args == ["serve"]:
                probe = c.get("readinessProbe", {}).get("httpGet", {})
                if probe.get("path") != "/ready":
                    problems.append(f"{name}: the ingest's readiness probe is not GET /ready")
                env = {e["name"]: e for e in c.get("env", [])}
                if env.get("AUREN_NO_BRIDGE", {}).get("value") != "1":
                    problems.append(f"{name}: serve without AUREN_NO_BRIDGE=1 (ingest only)")
                missing = sorted(secret_vars - set(env))
                if missing:
                    problems.append(f"{name}: the ingest is not given {', '.join(missing)}")
        for v in spec.get("volumes", []):
            cm = v.get("configMap", {}).get("name")
            if cm and cm not in configmaps:
                problems.append(f"{name}: volume from missing ConfigMap {cm}")
    # An empty admin token is taken as a token that an empty header matches: never ship one.
    for _, d in docs:
        if d["kind"] == "Secret":
            values = {**(d.get("stringData") or {}), **(d.get("data") or {})}
            if "AUREN_ADMIN_TOKEN" in values and not str(values["AUREN_ADMIN_TOKEN"]).strip():
                problems.append(f"Secret {d['metadata']['name']}: AUREN_ADMIN_TOKEN is empty")
    cm = configmaps.get("auren-thresholds", {}).get("biometric_thresholds.yaml")
    if cm != (ROOT / "config" / "biometric_thresholds.yaml").read_text():
        problems.append("ConfigMap auren-thresholds is not a copy of config/biometric_thresholds.yaml")
    bridge = deployments.get("auren-bridge")
    if partitions is None:
        problems.append("no Job runs `topics create --partitions N`")
    elif bridge and bridge["spec"]["replicas"] > partitions:
        problems.append(f"{bridge['spec']['replicas']} bridges for {partitions} partitions")
    covered = []
    for _, d in docs:
        if d["kind"] == "PodDisruptionBudget":
            covered.append(d["spec"]["selector"]["matchLabels"])
    for name, d in deployments.items():
        labels = d["spec"]["template"]["metadata"]["labels"]
        if not any(all(labels.get(k) == v for k, v in sel.items()) for sel in covered):
            problems.append(f"Deployment {name}: no PodDisruptionBudget selects it")
    check(f"kubernetes: {len(docs)} resources agree with the code and with each other", problems)


SECRET_PASS_THROUGH = {"OURA_CLIENT_SECRET", "OURA_VERIFICATION_TOKEN", "WHOOP_CLIENT_SECRET",
                       "AUREN_PSEUDONYM_KEY", "AUREN_ADMIN_TOKEN"}


def check_compose():
    path = DEPLOY / "compose.yaml"
    c = yaml.safe_load(path.read_text())
    services = c.get("services", {})
    problems = []
    known_env = service_env_vars()
    for want in ("kafka", "postgres", "redis", "ingest", "bridge", "prometheus", "grafana"):
        if want not in services:
            problems.append(f"no service {want}")
    volumes = set(c.get("volumes") or {})
    partitions = None
    for name, s in services.items():
        deps = s.get("depends_on") or []
        for dep in (deps if isinstance(deps, list) else deps.keys()):
            if dep not in services:
                problems.append(f"{name}: depends on unknown service {dep}")
        for v in s.get("volumes", []):
            src = v.split(":", 1)[0] if isinstance(v, str) else v.get("source")
            if src.startswith((".", "/")):
                if not (DEPLOY / src).exists():
                    problems.append(f"{name}: bind mount {src} does not exist")
            elif src not in volumes:
                problems.append(f"{name}: volume {src} is not declared")
        cmd = s.get("command") or []
        cmd = shlex.split(cmd) if isinstance(cmd, str) else cmd
        image = str(s.get("image", ""))
        if "auren" in image:
            env = s.get("environment") or {}
            for k in (env if isinstance(env, dict) else [e.split("=")[0] for e in env]):
                if k not in known_env:
                    problems.append(f"{name}: {k} is no variable the service reads")
            # Secrets pass through from the environment or .env, or are left out: never "" (an
            # empty AUREN_ADMIN_TOKEN is taken as a token).
            for k in SECRET_PASS_THROUGH & set(env if isinstance(env, dict) else []):
                if env[k] is not None:
                    problems.append(f"{name}: {k} must be given without a value (pass-through)")
        if cmd[:2] == ["topics", "create"]:
            partitions = int(cmd[cmd.index("--partitions") + 1])
    ingest = services.get("ingest", {})
    if ingest.get("command") != ["serve"] or \
            str((ingest.get("environment") or {}).get("AUREN_NO_BRIDGE")) != "1":
        problems.append("ingest is not `serve` with AUREN_NO_BRIDGE=1")
    bridge = services.get("bridge", {})
    replicas = (bridge.get("deploy") or {}).get("replicas", 1)
    if bridge.get("command") != ["bridge"] or replicas != 2:
        problems.append("bridge is not `bridge` with 2 replicas")
    if partitions is None or replicas > partitions:
        problems.append(f"{replicas} bridges for {partitions} partitions")
    check(f"compose: {len(services)} services, references resolve, known variables only", problems)


def check_dockerfile():
    text = (ROOT / "Dockerfile").read_text()
    http, metrics = default_ports()
    problems = []
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", text, re.M) for p in line.split()}
    if exposed != {http, metrics}:
        problems.append(f"EXPOSE {sorted(exposed)}, but the defaults are {http} and {metrics}")
    if not re.search(r"^USER (?!root|0\b)", text, re.M):
        problems.append("no non-root USER")
    if not re.search(r"^HEALTHCHECK ", text, re.M):
        problems.append("no HEALTHCHECK")
    if len(re.findall(r"^FROM ", text, re.M)) < 2:
        problems.append("not multi-stage")
    check(f"Dockerfile: multi-stage, non-root, health check, EXPOSE {http} {metrics}", problems)


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what == "dashboard-exprs":
        sys.stdout.write(dashboard_rules_file())
        return
    if what != "all":
        sys.exit(__doc__)
    check_metrics()
    check_dashboard()
    check_kubernetes()
    check_compose()
    check_dockerfile()
    if failures:
        sys.exit(f"{len(failures)} deployment check(s) failed")


if __name__ == "__main__":
    main()
