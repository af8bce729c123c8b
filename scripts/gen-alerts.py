#!/usr/bin/env python3
"""Prometheus alert rules from the thresholds file's `alerts` section.

Writes deploy/prometheus/alerts.yml (the rules) and deploy/prometheus/alerts.test.yml (promtool
unit tests that each rule fires just above its threshold and stays quiet below it). Both are
committed; `--check` regenerates them in memory and fails on any difference, so they never drift
from config/biometric_thresholds.yaml (scripts/validate-deploy.sh runs it).

The bridge itself logs a warning at the same three levels (crates/auren/src/bridge/mod.rs); these
rules are the same levels seen from Prometheus, over the metrics the service exports:

  alerts.error_rate_threshold         fraction of consumed events dead-lettered; also applied to
                                      webhook requests refused with a 503 and to webhook requests
                                      refused for a bad signature, token or key
  alerts.consumer_lag_threshold       auren_consumer_lag (messages) of any partition
  alerts.checkpoint_latency_threshold mean auren_checkpoint_save_seconds over 5 minutes. Not a
                                      quantile: the histogram's last finite bucket is 5 s, and
                                      histogram_quantile never reports more than that.

A few rules need no threshold (a scrape target down, bridge restarts, a rejected reload, an
unreadable checkpoint, cache errors); they are fixed below.

Usage: scripts/gen-alerts.py [--thresholds FILE] [--out-dir DIR] [--check]
Needs PyYAML (the `deploy` virtualenv of scripts/pyenv.sh has it).
"""

import argparse
import difflib
import math
import pathlib
import sys

try:
    import yaml
except ImportError:  # pragma: no cover
    sys.exit("gen-alerts.py needs PyYAML: run it with the deploy virtualenv "
             "(source scripts/pyenv.sh; $(ensure_venv deploy)/bin/python scripts/gen-alerts.py)")

ROOT = pathlib.Path(__file__).resolve().parent.parent
THRESHOLDS = ROOT / "config" / "biometric_thresholds.yaml"
OUT_DIR = ROOT / "deploy" / "prometheus"
KEYS = ("error_rate_threshold", "consumer_lag_threshold", "checkpoint_latency_threshold")
RUNBOOK = "docs/operations.md#alerts"

# Webhook outcomes (the `outcome` label of auren_webhook_events_total) that are the service's own
# failure, answered with 503: crates/auren/src/http/webhooks.rs and http/problem.rs.
# `duplicate_in_flight` is also a 503 but means a vendor sent the same event twice at once.
SERVER_FAILURES = "overloaded|log_unavailable|store_unavailable"
# Outcomes that mean a sender's credentials do not match ours: after a secret rotation gone wrong
# these are every request of one vendor.
AUTH_FAILURES = ("signature_mismatch|verification_token_mismatch|invalid_api_key"
                 "|missing_signature_header|missing_api_key")


def num(x):
    """A number as PromQL and promtool's series notation read it, without float noise."""
    if isinstance(x, int) or float(x).is_integer():
        return str(int(x))
    return repr(float(x))


def pct(x):
    return f"{x * 100:g} %"


def ratio(numerator, denominator):
    return f"sum({numerator}) / sum({denominator})"


def threshold_rules(a):
    err, lag, ckpt = (a[k] for k in KEYS)
    return [
        {
            "alert": "AurenDeadLetterRateHigh",
            "expr": ratio('rate(auren_kafka_messages_processed_total{outcome="dlq"}[5m])',
                          "rate(auren_kafka_messages_processed_total[5m])") + f" > {num(err)}",
            "for": "5m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": f"The bridge dead-letters more than {pct(err)} of the events it consumes",
                "description": "Events the bridge cannot read go to biometric-events.dlq "
                               f"(alerts.error_rate_threshold = {num(err)}). Read the errors "
                               "with auren log read --topic biometric-events.dlq; fix, then "
                               "auren dlq replay.",
                "runbook": RUNBOOK,
            },
        },
        {
            "alert": "AurenIngestErrorRateHigh",
            "expr": ratio(f'rate(auren_webhook_events_total{{outcome=~"{SERVER_FAILURES}"}}[5m])',
                          "rate(auren_webhook_events_total[5m])") + f" > {num(err)}",
            "for": "5m",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": f"More than {pct(err)} of webhooks are refused with 503",
                "description": "Webhooks answered overloaded, log_unavailable or "
                               "store_unavailable: the log or store does not answer in time, or "
                               "every processing slot is taken "
                               f"(alerts.error_rate_threshold = {num(err)}). Vendors retry; "
                               "nothing unacknowledged was lost.",
                "runbook": RUNBOOK,
            },
        },
        {
            "alert": "AurenWebhookAuthFailureRateHigh",
            "expr": ratio(f'rate(auren_webhook_events_total{{outcome=~"{AUTH_FAILURES}"}}[5m])',
                          "rate(auren_webhook_events_total[5m])") + f" > {num(err)}",
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": f"More than {pct(err)} of webhooks fail signature, token or key checks",
                "description": "A vendor signs with a secret we do not have, or push keys are "
                               "wrong: usually a secret rotated on one side only "
                               f"(alerts.error_rate_threshold = {num(err)}).",
                "runbook": RUNBOOK,
            },
        },
        {
            "alert": "AurenConsumerLagHigh",
            "expr": f"max by (partition) (auren_consumer_lag) > {num(lag)}",
            "for": "5m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "Bridge lag on partition {{ $labels.partition }} is over "
                           f"{num(lag)} events",
                "description": "The bridges fall behind the events topic "
                               f"(alerts.consumer_lag_threshold = {num(lag)}): mode switches "
                               "come late.",
                "runbook": RUNBOOK,
            },
        },
        {
            "alert": "AurenCheckpointLatencyHigh",
            "expr": "sum by (instance) (rate(auren_checkpoint_save_seconds_sum[5m])) / "
                    "sum by (instance) (rate(auren_checkpoint_save_seconds_count[5m]))"
                    f" > {num(ckpt)}",
            "for": "5m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "Checkpoints on {{ $labels.instance }} take more than "
                           f"{num(ckpt)} s on average",
                "description": "The bridge's commit transaction (checkpoints, mode history, "
                               "offsets) is slow: the state store is slow or overloaded "
                               f"(alerts.checkpoint_latency_threshold = {num(ckpt)}).",
                "runbook": RUNBOOK,
            },
        },
    ]


FIXED_RULES = [
    {
        "alert": "AurenTargetDown",
        "expr": 'up{job=~"auren.*"} == 0',
        "for": "2m",
        "labels": {"severity": "critical"},
        "annotations": {
            "summary": "{{ $labels.job }} target {{ $labels.instance }} cannot be scraped",
            "description": "The process is down or its metrics listener (AUREN_METRICS_ADDR) "
                           "does not answer.",
            "runbook": RUNBOOK,
        },
    },
    {
        "alert": "AurenBridgeRestarting",
        "expr": "sum by (instance) (increase(auren_bridge_restarts_total[10m])) > 3",
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "The bridge on {{ $labels.instance }} keeps failing batches",
            "description": "Each failed batch makes the bridge resume from its last durable "
                           "point: the log or the state store fails. Its log says why.",
            "runbook": RUNBOOK,
        },
    },
    {
        "alert": "AurenConfigReloadRejected",
        "expr": 'sum by (instance) (increase(auren_config_reloads_total{outcome="rejected"}[10m]))'
                " > 0",
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "{{ $labels.instance }} rejected the thresholds file",
            "description": "The file at BIOMETRIC_CONFIG failed validation; the config in force "
                           "before it stays. A restart with this file would fail.",
            "runbook": RUNBOOK,
        },
    },
    {
        "alert": "AurenCheckpointUnreadable",
        "expr": "sum by (instance) (increase(auren_checkpoint_unreadable_total[10m])) > 0",
        "labels": {"severity": "critical"},
        "annotations": {
            "summary": "A checkpoint could not be read on {{ $labels.instance }}",
            "description": "A user's stored state did not parse and the user started afresh "
                           "(baselines lost). Usually a downgrade across a state format change.",
            "runbook": RUNBOOK,
        },
    },
    {
        "alert": "AurenCacheErrors",
        "expr": "sum by (op) (rate(auren_cache_errors_total[5m])) > 0",
        "for": "10m",
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "Cache operation {{ $labels.op }} keeps failing",
            "description": "Redis does not answer. Running processes go on (ingest without "
                           "deduplication, the state API from the store), but /ready fails, so "
                           "ingest pods are not ready, and no process can start without Redis.",
            "runbook": RUNBOOK,
        },
    },
]


def read_alerts(path):
    doc = yaml.safe_load(path.read_text()) or {}
    alerts = doc.get("alerts")
    if not isinstance(alerts, dict):
        sys.exit(f"{path}: no `alerts` mapping")
    missing = [k for k in KEYS if k not in alerts]
    if missing:
        sys.exit(f"{path}: alerts is missing {', '.join(missing)}")
    for k in KEYS:
        v = alerts[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 \
                or not math.isfinite(v):
            sys.exit(f"{path}: alerts.{k} must be a positive number, not {v!r}")
    return {k: alerts[k] for k in KEYS}


def rules_doc(a):
    return {"groups": [
        {"name": "auren-thresholds", "rules": threshold_rules(a)},
        {"name": "auren-health", "rules": FIXED_RULES},
    ]}


def rendered(rule, labels):
    """The annotations as Prometheus renders them for an alert with these labels."""
    out = {}
    for k, v in rule["annotations"].items():
        for name, value in labels.items():
            v = v.replace("{{ $labels.%s }}" % name, value)
        out[k] = v
    return out


def expect(rule, labels):
    return {"exp_labels": {**labels, **rule["labels"]}, "exp_annotations": rendered(rule, labels)}


def case(name, series, rule, at, labels):
    """A promtool test: with `series`, `rule` fires at `at` with `labels`, or not when None."""
    return {
        "name": name,
        "interval": "1m",
        "input_series": [{"series": s, "values": v} for s, v in series],
        "alert_rule_test": [{
            "eval_time": at,
            "alertname": rule["alert"],
            "exp_alerts": [] if labels is None else [expect(rule, labels)],
        }],
    }


def tests_doc(a):
    err, lag, ckpt = (a[k] for k in KEYS)
    by_name = {r["alert"]: r for r in threshold_rules(a) + FIXED_RULES}
    tests = []
    # Error rates: 10,000 events a minute, a fraction `f` of them failing.
    per_minute = 10_000

    def split(f):
        bad = math.ceil(per_minute * f) if f > err else math.floor(per_minute * f)
        return bad, per_minute - bad

    for alert, metric, bad_label, good_label in [
        ("AurenDeadLetterRateHigh", "auren_kafka_messages_processed_total",
         'outcome="dlq"', 'outcome="applied"'),
        ("AurenIngestErrorRateHigh", "auren_webhook_events_total",
         'source="whoop",outcome="log_unavailable"', 'source="whoop",outcome="accepted"'),
        ("AurenWebhookAuthFailureRateHigh", "auren_webhook_events_total",
         'source="oura",outcome="signature_mismatch"', 'source="oura",outcome="accepted"'),
    ]:
        rule = by_name[alert]
        window = "15m" if rule["for"] == "10m" else "10m"
        for fires, f in [(True, min(1.0, 2 * err)), (False, err / 2)]:
            if fires and not f > err:
                continue  # a threshold of 1 can never be passed
            bad, good = split(f)
            tests.append(case(
                f"{alert} {'fires' if fires else 'stays quiet'} at {pct(bad / per_minute)}",
                [(f"{metric}{{{bad_label},instance=\"a:9000\"}}", f"0+{bad}x20"),
                 (f"{metric}{{{good_label},instance=\"a:9000\"}}", f"0+{good}x20")],
                rule, window, {} if fires else None))
    rule = by_name["AurenConsumerLagHigh"]
    for fires, value in [(True, lag + 1), (False, lag)]:
        tests.append(case(
            f"AurenConsumerLagHigh {'fires' if fires else 'stays quiet'} at {num(value)}",
            [('auren_consumer_lag{partition="2",instance="bridge-1:9000"}', f"{num(value)}+0x20")],
            rule, "10m", {"partition": "2"} if fires else None))
    rule = by_name["AurenCheckpointLatencyHigh"]
    for fires, mean in [(True, 2 * ckpt), (False, ckpt / 2)]:
        tests.append(case(
            f"AurenCheckpointLatencyHigh {'fires' if fires else 'stays quiet'} at {num(mean)} s",
            [('auren_checkpoint_save_seconds_sum{instance="bridge-1:9000"}', f"0+{num(mean)}x20"),
             ('auren_checkpoint_save_seconds_count{instance="bridge-1:9000"}', "0+1x20")],
            rule, "10m", {"instance": "bridge-1:9000"} if fires else None))
    tests.append(case(
        "AurenTargetDown fires for a target that stopped answering",
        [('up{job="auren-bridge",instance="bridge-2:9000"}', "1 1 0+0x10"),
         ('up{job="auren-ingest",instance="ingest:9000"}', "1+0x12")],
        by_name["AurenTargetDown"], "6m",
        {"job": "auren-bridge", "instance": "bridge-2:9000"}))
    tests.append(case(
        "AurenBridgeRestarting fires on a restart a minute",
        [('auren_bridge_restarts_total{instance="bridge-1:9000"}', "0+1x15")],
        by_name["AurenBridgeRestarting"], "12m", {"instance": "bridge-1:9000"}))
    tests.append(case(
        "AurenBridgeRestarting stays quiet on one restart",
        [('auren_bridge_restarts_total{instance="bridge-1:9000"}', "0 0 1+0x13")],
        by_name["AurenBridgeRestarting"], "12m", None))
    for alert, series in [
        ("AurenConfigReloadRejected",
         'auren_config_reloads_total{outcome="rejected",instance="ingest:9000"}'),
        ("AurenCheckpointUnreadable", 'auren_checkpoint_unreadable_total{instance="ingest:9000"}'),
    ]:
        tests.append(case(f"{alert} fires after one", [(series, "0 0 0 1+0x10")],
                          by_name[alert], "5m", {"instance": "ingest:9000"}))
    tests.append(case(
        "AurenConfigReloadRejected stays quiet on applied reloads",
        [('auren_config_reloads_total{outcome="applied",instance="ingest:9000"}', "0 0 0 1+1x10")],
        by_name["AurenConfigReloadRejected"], "5m", None))
    tests.append(case(
        "AurenCacheErrors fires while Redis fails",
        [('auren_cache_errors_total{op="state_put",instance="bridge-1:9000"}', "0+5x20")],
        by_name["AurenCacheErrors"], "15m", {"op": "state_put"}))
    return {"rule_files": ["alerts.yml"], "evaluation_interval": "1m", "tests": tests}


def dump(doc, source):
    header = (f"# Generated by scripts/gen-alerts.py from {source}; do not edit.\n"
              "# Change the thresholds file (or the script) and run the script again.\n")
    return header + yaml.safe_dump(doc, sort_keys=False, width=100, allow_unicode=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--thresholds", type=pathlib.Path, default=THRESHOLDS)
    p.add_argument("--out-dir", type=pathlib.Path, default=OUT_DIR)
    p.add_argument("--check", action="store_true",
                   help="fail if the files in --out-dir differ from a fresh generation")
    args = p.parse_args()
    a = read_alerts(args.thresholds)
    try:
        source = args.thresholds.resolve().relative_to(ROOT)
    except ValueError:
        source = args.thresholds
    files = {
        "alerts.yml": dump(rules_doc(a), source),
        "alerts.test.yml": dump(tests_doc(a), source),
    }
    stale = []
    for name, text in files.items():
        path = args.out_dir / name
        if args.check:
            old = path.read_text() if path.exists() else ""
            if old != text:
                stale.append(name)
                sys.stderr.writelines(difflib.unified_diff(
                    old.splitlines(True), text.splitlines(True), str(path), "generated"))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        sys.exit(f"{', '.join(stale)} differ from the generation from {source}: "
                 "run scripts/gen-alerts.py and commit the result")
    if args.check:
        print(f"alerts.yml and alerts.test.yml match {source}")


if __name__ == "__main__":
    main()
