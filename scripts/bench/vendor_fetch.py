#!/usr/bin/env python3
"""Fetch-after-notify benchmark driver for scripts/bench/vendor_fetch.sh.

Against a running `auren serve` (embedded log, dev mode, WHOOP pointed at `auren dev
fake-vendors`): creates USERS WHOOP users on the fake, connects each through the service's redirect
flow (GET /connect/whoop -> the fake's authorize page -> our callback), waits until every backfill
is done, then for each run adds COUNT scored recoveries on the fake and sends one signed
`recovery.updated` notification per recovery to /webhooks/whoop, signed as WHOOP signs (base64
HMAC-SHA256 of the millisecond timestamp followed by the body, under the client secret).

Each recovery carries a unique RMSSD (40 ms + tag / 100,000), so its fetched reading can be told
apart in the log. The log is the embedded SQLite file `<data dir>/events.db`, opened read-only:
its `ts_ms` column is the time the log appended the row, so the latency of a notification is that
minus the time its webhook's 2xx answer reached the sender (same machine, same clock).

    vendor_fetch.py --api URL --fake URL --data-dir DIR --users N --runs full:2000,paced:600@20
"""
import argparse
import base64
import hashlib
import hmac
import http.client
import json
import sqlite3
import threading
import time
import urllib.parse
import uuid

TAG_BASE = 40.0
TAG_SCALE = 100_000


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))] if v else float("nan")


class Http:
    """One keep-alive connection to a base URL."""

    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                r = self.conn.getresponse()
                data = r.read()
                return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def json(self, method, path, obj=None, headers=None):
        h = {"content-type": "application/json", **(headers or {})}
        status, _, data = self.request(method, path, json.dumps(obj) if obj is not None else None, h)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {data[:300]!r}")
        return json.loads(data) if data else None


def path_of(url):
    u = urllib.parse.urlsplit(url)
    return u.path + ("?" + u.query if u.query else "")


def connect(api, fake_base, admin, user):
    """The browser's part: our 302 to the fake's authorize page, its 302 back to our callback."""
    status, h, data = api.request("GET", f"/connect/whoop?user_id={user}",
                                  headers={"authorization": f"Bearer {admin}"})
    assert status == 302, (status, data)
    fake = Http(fake_base)
    status, h2, data = fake.request("GET", path_of(h["location"]))
    assert status == 302, (status, data)
    status, _, data = api.request("GET", path_of(h2["location"]))
    assert status == 200, (status, data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--api", required=True)
    ap.add_argument("--fake", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--history-days", type=int, default=1)
    ap.add_argument("--runs", default="full:2000,paced:600@20",
                    help="comma-separated full:COUNT (as fast as answers come) or paced:COUNT@RATE")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--idle-timeout", type=float, default=120,
                    help="give up waiting for fetched readings after this many seconds without one")
    a = ap.parse_args()

    secrets = json.load(open(f"{a.data_dir}/dev-secrets.json"))
    admin, secret = secrets["admin_token"], secrets["whoop_client_secret"].encode()
    api, fake = Http(a.api), Http(a.fake)
    fake.json("POST", "/_fake/whoop/webhook", {"url": f"{a.api}/webhooks/whoop"})

    t = time.time()
    users = []  # (our user id, WHOOP user id)
    for i in range(a.users):
        whoop_id = fake.json("POST", "/_fake/whoop/users")["user_id"]
        fake.json("POST", "/_fake/whoop/history", {"user_id": whoop_id, "days": a.history_days})
        ours = f"bench-vf-{uuid.uuid4().hex[:8]}-{i}"
        connect(api, a.fake, admin, ours)
        users.append((ours, whoop_id))
    print(f"connected {len(users)} users in {time.time() - t:.1f}s", flush=True)
    pending = {u for u, _ in users}
    while pending:
        for u in list(pending):
            c = api.json("GET", f"/users/{u}/connections", headers={"authorization": f"Bearer {admin}"})
            b = c["connections"][0]["backfill"]
            if b["status"] == "done":
                pending.discard(u)
        if pending:
            if time.time() - t > 600:
                raise SystemExit(f"backfills not done after 600 s: {len(pending)} left")
            time.sleep(0.5)
    print(f"backfills done {time.time() - t:.1f}s after the first connect", flush=True)

    db = sqlite3.connect(f"file:{a.data_dir}/events.db?mode=ro", uri=True, timeout=30)
    tag = 0
    for spec in a.runs.split(","):
        kind, _, rest = spec.partition(":")
        count, _, rate = rest.partition("@")
        count, rate = int(count), float(rate or 0)
        assert kind in ("full", "paced") and (kind == "full" or rate > 0), spec
        # The fake's data for every notification, added before the clock starts.
        items = []
        for k in range(count):
            ours, whoop_id = users[k % len(users)]
            sleep_id = fake.json("POST", "/_fake/whoop/recoveries", {
                "user_id": whoop_id, "recovery_score": 50, "resting_heart_rate": 60,
                "hrv_rmssd_milli": TAG_BASE + tag / TAG_SCALE})["sleep_id"]
            items.append((tag, whoop_id, sleep_id))
            tag += 1
        acked = {}  # tag -> time of the 2xx, ms
        failures = []
        lock = threading.Lock()
        next_i = [0]
        t0 = time.time()

        def sender():
            conn = Http(a.api)
            while True:
                with lock:
                    i = next_i[0]
                    next_i[0] += 1
                if i >= len(items):
                    return
                if kind == "paced":
                    delay = t0 + i / rate - time.time()
                    if delay > 0:
                        time.sleep(delay)
                t_tag, whoop_id, sleep_id = items[i]
                body = json.dumps({"user_id": whoop_id, "id": sleep_id, "type": "recovery.updated",
                                   "trace_id": str(uuid.uuid4())}, separators=(",", ":")).encode()
                ts = str(int(time.time() * 1000)).encode()
                sig = base64.b64encode(hmac.new(secret, ts + body, hashlib.sha256).digest()).decode()
                status, _, data = conn.request("POST", "/webhooks/whoop", body, {
                    "content-type": "application/json", "x-whoop-signature": sig,
                    "x-whoop-signature-timestamp": ts.decode()})
                now = time.time() * 1000
                with lock:
                    if 200 <= status < 300:
                        acked[t_tag] = now
                    else:
                        failures.append((status, data[:200]))

        threads = [threading.Thread(target=sender) for _ in range(a.concurrency)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        t_sent = time.time()
        # Wait for every acknowledged notification's reading to be in the log.
        start_ms = int(t0 * 1000) - 1
        first_tag = items[0][0]
        fetched = {}
        last_progress = time.time()
        while len(fetched) < len(acked) and time.time() - last_progress < a.idle_timeout:
            rows = db.execute(
                "SELECT ts_ms, value FROM log WHERE ts_ms >= ? AND CAST(value AS TEXT) LIKE '%\"hrv_rmssd\"%'",
                (start_ms,)).fetchall()
            before = len(fetched)
            for ts_ms, value in rows:
                e = json.loads(value)
                v = e.get("payload", {}).get("value")
                if e.get("vendor") != "whoop" or not isinstance(v, (int, float)) or not TAG_BASE <= v < TAG_BASE + 0.5:
                    continue
                t_tag = round((v - TAG_BASE) * TAG_SCALE)
                if t_tag in acked and (t_tag not in fetched or ts_ms < fetched[t_tag]):
                    fetched[t_tag] = ts_ms
            if len(fetched) > before:
                last_progress = time.time()
            if len(fetched) < len(acked):
                time.sleep(0.2)
        lat = [fetched[k] - acked[k] for k in fetched]
        last = max(fetched.values()) / 1000 if fetched else t0
        span = last - t0
        offered = len(acked) / (t_sent - t0) if t_sent > t0 else float("nan")
        label = "full speed" if kind == "full" else f"paced at {rate:g}/s"
        print(f"== {label}: sent {count}, acknowledged {len(acked)} ({len(failures)} refused), "
              f"sending took {t_sent - t0:.2f}s ({offered:.1f}/s); fetched {len(fetched)}/{len(acked)} "
              f"(first tag {first_tag})", flush=True)
        if failures:
            print(f"   first refusal: {failures[0]}")
        print(f"   throughput: {len(fetched)} notifications fetched in {span:.2f}s from the first send to "
              f"the last reading appended = {len(fetched) / span if span > 0 else float('nan'):.1f}/s", flush=True)
        print(f"   webhook 2xx -> reading in the log, ms: p50 {pct(lat, 50):.1f}, p95 {pct(lat, 95):.1f}, "
              f"p99 {pct(lat, 99):.1f}, max {max(lat) if lat else float('nan'):.1f}, min {min(lat) if lat else float('nan'):.1f}",
              flush=True)


if __name__ == "__main__":
    main()
