#!/usr/bin/env python3
"""Writes COUNT distinct WHOOP deliveries, each signed as WHOOP signs them (base64 HMAC-SHA256 of
timestamp-in-ms followed by the raw body), one per line: timestamp TAB signature TAB body.
Timestamps are "now", so the file is valid for the 300 s replay window."""
import base64, hashlib, hmac, json, random, sys, time, uuid

count, secret = int(sys.argv[1]), sys.argv[2].encode()
rng = random.Random(42)
ts = str(int(time.time() * 1000)).encode()
out = sys.stdout.buffer
for _ in range(count):
    body = json.dumps({
        "user_id": rng.randrange(1, 10_000),
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "type": rng.choice(["recovery.updated", "sleep.updated", "workout.updated"]),
        "trace_id": str(uuid.uuid4()),
    }, separators=(",", ":")).encode()
    sig = base64.b64encode(hmac.new(secret, ts + body, hashlib.sha256).digest())
    out.write(ts + b"\t" + sig + b"\t" + body + b"\n")
