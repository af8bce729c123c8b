"""Per-switch delivery latency for scripts/bench/delivery.sh: from the commit (the mode history's
`created_at` in the SQLite state store) to the LangGraph state update that carries the switch (the
thread history's checkpoint time) and to the webhook receiver's arrival time.

    python delivery_latency.py STATE_DB RECEIVED_JSONL LANGGRAPH_URL
"""
import json
import sqlite3
import sys
import urllib.request
import uuid
from datetime import datetime

NS = uuid.UUID("b4341596-9c01-5880-b268-ef1e5382dbdd")


def ts(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))] if v else float("nan")


db = sqlite3.connect(sys.argv[1])
committed = {sid: ts(at) for sid, at in db.execute("SELECT switch_id, created_at FROM mode_history")}
users = [p for (p,) in db.execute("SELECT user_pseudonym FROM threads")]

webhook = {}
for line in open(sys.argv[2]):
    r = json.loads(line)
    if r.get("verified") and r.get("answered", 500) < 300 and r["switch_id"] not in webhook:
        webhook[r["switch_id"]] = r["received_at"]

langgraph = {}
for p in users:
    thread = uuid.uuid5(NS, p)
    req = urllib.request.Request(f"{sys.argv[3]}/threads/{thread}/history", data=b'{"limit": 1000}',
                                 headers={"content-type": "application/json"})
    try:
        history = json.load(urllib.request.urlopen(req))
    except Exception:  # noqa: BLE001 - a user without a thread has no deliveries
        continue
    for snap in history:
        sid = (snap.get("values") or {}).get("switch_id")
        if sid and snap.get("metadata", {}).get("source") == "update":
            t = ts(snap["created_at"])
            langgraph[sid] = min(t, langgraph.get(sid, t))

for name, got in [("langgraph", langgraph), ("webhook", webhook)]:
    lat = [1000 * (got[s] - committed[s]) for s in committed if s in got]
    print(f"{name}: {len(lat)}/{len(committed)} switches; commit -> delivered ms: "
          f"p50 {pct(lat, 50):.1f}, p90 {pct(lat, 90):.1f}, p99 {pct(lat, 99):.1f}, max {max(lat) if lat else float('nan'):.1f}")
