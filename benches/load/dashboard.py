"""One open dashboard, for `benches/load.sh --dashboard`: keeps one
`/admin/events` SSE stream open and, every 2 s, fetches what the dashboard's
overview and request-log pages fetch (/admin/stats?window=1h and 24h,
/admin/providers, /admin/requests), faster than the page itself (every 5 s).
Standard library only; runs until killed, then prints what it saw."""

import http.client
import signal
import sys
import threading
import time

host, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
HEADERS = {"authorization": f"Bearer {token}"}
POLLS = ["/admin/stats?window=1h", "/admin/stats?window=24h", "/admin/providers", "/admin/requests?limit=100"]
seen = {"events": 0, "event_bytes": 0, "polls": 0, "poll_errors": 0}


def feed() -> None:
    while True:
        try:
            c = http.client.HTTPConnection(host, port, timeout=60)
            c.request("GET", "/admin/events", headers=HEADERS)
            r = c.getresponse()
            while True:
                chunk = r.read1(65536)
                if not chunk:
                    break
                seen["event_bytes"] += len(chunk)
                seen["events"] += chunk.count(b"\nevent: request") + chunk.startswith(b"event: request")
        except OSError:
            time.sleep(0.5)


def poll() -> None:
    c = http.client.HTTPConnection(host, port, timeout=20)
    while True:
        for path in POLLS:
            try:
                c.request("GET", path, headers=HEADERS)
                r = c.getresponse()
                r.read()
                seen["polls"] += 1
                if r.status != 200:
                    seen["poll_errors"] += 1
            except OSError:
                seen["poll_errors"] += 1
                c = http.client.HTTPConnection(host, port, timeout=20)
        time.sleep(2)


def done(*_: object) -> None:
    print("DASHBOARD events=%(events)d event_bytes=%(event_bytes)d polls=%(polls)d poll_errors=%(poll_errors)d" % seen, flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, done)
threading.Thread(target=feed, daemon=True).start()
threading.Thread(target=poll, daemon=True).start()
while True:
    time.sleep(3600)
