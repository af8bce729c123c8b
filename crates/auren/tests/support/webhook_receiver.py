"""A Standard Webhooks receiver for the delivery tests: verifies every delivery with the
`standardwebhooks` package (an independent implementation of the signature), answers 500 to the
first FAIL_FIRST requests, and appends one JSON line per request to LOG:
{"n", "received_at" (Unix seconds), "webhook_id", "verified", "error", "answered", "type",
"switch_id"}.

    python webhook_receiver.py PORT SECRET_FILE LOG FAIL_FIRST

The secret is read from SECRET_FILE at each request (it is only known once the endpoint is
registered, after this server is up).
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

PORT, SECRET_FILE, LOG, FAIL_FIRST = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
lock = threading.Lock()
count = 0


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global count
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        received_at = time.time()
        with lock:
            count += 1
            n = count
        record = {"n": n, "received_at": received_at, "webhook_id": self.headers.get("webhook-id")}
        try:
            with open(SECRET_FILE) as f:
                secret = f.read().strip()
            payload = Webhook(secret).verify(body, dict(self.headers.items()))
            record.update(verified=True, type=payload.get("type"),
                          switch_id=payload.get("data", {}).get("switch_id"))
        except Exception as e:  # noqa: BLE001 - any failure is recorded for the test to see
            record.update(verified=False, error=f"{type(e).__name__}: {e}")
        status = 500 if n <= FAIL_FIRST else 204
        record["answered"] = status
        with lock, open(LOG, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
