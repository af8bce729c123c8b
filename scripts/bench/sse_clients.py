#!/usr/bin/env python3
"""Holds N live event streams open for a while: each is `GET /users/bench-sse-<i>/events` with
the admin token (N distinct users, so the server polls N users' state every second), reading
whatever comes (keep-alive comments) and otherwise idle. A stream the server ends is opened
again. Prints how many were open at the start and at the end, the bytes read and the reopenings.

usage: sse_clients.py HOST PORT N SECONDS ADMIN_TOKEN   (SIGTERM ends it early, with the summary)
"""
import selectors
import signal
import socket
import sys
import time

host, port, n, seconds, token = (
    sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
REQUEST = "GET /users/bench-sse-{i}/events HTTP/1.1\r\nhost: {h}\r\nauthorization: Bearer {t}\r\n\r\n"

sel = selectors.DefaultSelector()
answered = set()
read_bytes = 0
reopened = 0


def connect(i):
    s = socket.create_connection((host, port))
    s.sendall(REQUEST.format(i=i, h=host, t=token).encode())
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, i)


def stop(*_):
    raise SystemExit


signal.signal(signal.SIGTERM, stop)
started = time.time()
for i in range(n):
    connect(i)
all_open = False
end = started + seconds
try:
    while time.time() < end:
        for key, _ in sel.select(timeout=0.5):
            s, i = key.fileobj, key.data
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                s.close()
                answered.discard(i)
                connect(i)
                reopened += 1
                continue
            read_bytes += len(data)
            if data.startswith(b"HTTP/1.1 200"):
                answered.add(i)
            elif data.startswith(b"HTTP/1.1"):
                print(f"stream {i}: {data.splitlines()[0].decode()}", file=sys.stderr)
        if len(answered) == n and not all_open:
            print(f"{n} streams open {time.time() - started:.1f} s after the first connect", flush=True)
            all_open = True
finally:
    print(f"held {len(answered)} of {n} event streams for {time.time() - started:.0f} s; "
          f"read {read_bytes} bytes; the server ended {reopened} (reopened at once)", flush=True)
