#!/usr/bin/env python3
"""Holds N hostile connections open against the webhook listener for a while: each sends the
headers of a signed-looking WHOOP delivery declaring a 4,000-byte body, then half dribble one
byte a second and half send nothing. A connection the server closes (header, body or idle
timers) is opened again at once, as a determined attacker would. Prints how many were held and
how often the server closed one.

usage: slow_clients.py HOST PORT N SECONDS
"""
import socket
import sys
import time

host, port, n, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
HEAD = (
    "POST /webhooks/whoop HTTP/1.1\r\nhost: {h}\r\ncontent-type: application/json\r\n"
    "content-length: 4000\r\nx-whoop-signature: AAAA\r\nx-whoop-signature-timestamp: {ts}\r\n\r\n"
)


def connect(i):
    s = socket.create_connection((host, port))
    s.setblocking(False)
    s.send(HEAD.format(h=host, ts=int(time.time() * 1000)).encode())
    return s


conns = [connect(i) for i in range(n)]
reopened = 0
end = time.time() + seconds
while time.time() < end:
    for i, s in enumerate(conns):
        closed = False
        try:
            if s.recv(4096) == b"":
                closed = True
        except BlockingIOError:
            pass
        except OSError:
            closed = True
        if not closed and i % 2 == 0:
            try:
                s.send(b" ")
            except OSError:
                closed = True
        if closed:
            s.close()
            conns[i] = connect(i)
            reopened += 1
    time.sleep(1)
print(f"held {n} slow connections for {seconds:.0f} s; the server closed {reopened} (reopened at once)")
