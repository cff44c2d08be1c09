#!/usr/bin/env python3
"""Slow-client soak for `bench/hostile.sh` (issue 16); not a test.

While STALLED uploads (claimed 100 MB bodies that send a line and stop,
reconnecting when the server ends them) and SLOW uploads (a line every
second) run against a `tally serve`, one client measures the latency of
what everyone else does: /readyz, GET /v1/runs and a one-row push, in turn,
for SECONDS. Prints the median, p99 and worst latency and any failure.

    slow_clients.py BASE SECONDS MEASURE_TOKEN SLOW_TOKEN...
"""
import http.client
import socket
import sys
import threading
import time

base, seconds, measure_token = sys.argv[1], float(sys.argv[2]), sys.argv[3]
slow_tokens = sys.argv[4:]
host, port = base.replace("http://", "").split(":")
port = int(port)
LINE = b'{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","route":"chat"}\n'
stop = time.time() + seconds
counts = {"stalled_ended": 0, "slow_lines": 0, "refused_429": 0}
lock = threading.Lock()


def upload_head(token):
    s = socket.create_connection((host, port))
    s.sendall(
        (
            f"POST /v1/usage/client HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/x-ndjson\r\n"
            "Content-Length: 100000000\r\n\r\n"
        ).encode()
        + LINE
    )
    return s


def stalled(token):
    while time.time() < stop:
        try:
            s = upload_head(token)
            s.settimeout(max(0.1, stop - time.time()))
            answer = s.recv(64)
            with lock:
                if b" 429 " in answer:
                    counts["refused_429"] += 1
                else:
                    counts["stalled_ended"] += 1
            s.close()
            if b" 429 " in answer:
                time.sleep(1)
        except OSError:
            pass


def slow(token):
    while time.time() < stop:
        try:
            s = upload_head(token)
            while time.time() < stop:
                s.sendall(LINE)
                with lock:
                    counts["slow_lines"] += 1
                time.sleep(1)
            s.close()
        except OSError:
            time.sleep(0.2)


threads = []
for t in slow_tokens:
    # Each token: one stalled upload and one slow one (its two slots), and
    # one more stalled that the limit refuses.
    for f in (stalled, slow, stalled):
        th = threading.Thread(target=f, args=(t,), daemon=True)
        th.start()
        threads.append(th)
time.sleep(1)

lat = []
fails = []
auth = {"Authorization": f"Bearer {measure_token}"}
i = 0
while time.time() < stop:
    kind = i % 3
    i += 1
    c = http.client.HTTPConnection(host, port, timeout=30)
    t0 = time.perf_counter()
    try:
        if kind == 0:
            c.request("GET", "/readyz", headers=auth)
        elif kind == 1:
            c.request("GET", "/v1/runs", headers=auth)
        else:
            body = LINE.replace(b"10:00:00", b"10:%02d:%02d" % (i // 60 % 60, i % 60))
            c.request(
                "POST",
                f"/v1/usage/client?name=m{i}",
                body=body,
                headers={**auth, "Content-Type": "application/x-ndjson"},
            )
        r = c.getresponse()
        r.read()
        if r.status >= 300:
            fails.append(r.status)
    except OSError as e:
        fails.append(str(e))
    lat.append(time.perf_counter() - t0)
    c.close()
    time.sleep(0.05)

lat.sort()
def q(p):
    return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
print(
    f"   others: {len(lat)} requests, median {q(0.5):.1f} ms, p99 {q(0.99):.1f} ms, "
    f"worst {lat[-1] * 1000:.1f} ms, {len(fails)} failed {sorted(set(map(str, fails)))[:5]}"
)
print(
    f"   hostile: {len(slow_tokens)} tokens; {counts['stalled_ended']} stalled uploads ended by the server, "
    f"{counts['refused_429']} refused (429), {counts['slow_lines']} slow lines sent"
)
