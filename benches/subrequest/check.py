"""Spike checks (issue 14) against a running spike gateway and upstream.py.

Usage: python3 check.py GATEWAY_PORT PORT_A PORT_B [--h2]
Each check asserts; the figures are printed. HTTP/2 checks use curl (h2c).
"""

import hashlib
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

GW, PA, PB = (int(x) for x in sys.argv[1:4])
H2 = "--h2" in sys.argv


def conv(kind, body):
    return b"A:" + body if kind == "A" else b"BB:" + body + b":BB"


def make_body(size):
    head = b'{"model":"m","pad":"'
    pad = os.urandom((size - len(head) - 2) // 2 + 1).hex().encode()
    return head + pad[: size - len(head) - 2] + b'"}'


def upstream(path, port=PA):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path)
    return json.loads(c.getresponse().read())


def post(body, headers=None, port=GW):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    h = {"content-type": "application/json"}
    h.update(headers or {})
    c.request("POST", "/v1/chat/completions", body=body, headers=h)
    r = c.getresponse()
    return r.status, r.read(), r


def post_h2(body, headers=None, stream=False):
    """curl over h2c; returns (status, body, http_version)."""
    with tempfile.NamedTemporaryFile() as f:
        f.write(body)
        f.flush()
        cmd = ["curl", "-sS", "--http2-prior-knowledge", "-H", "Expect:",
               "-H", "content-type: application/json", "--data-binary", "@" + f.name,
               "-o", "-", "-w", "\n%{http_code} %{http_version}", "--max-time", "60"]
        if stream:
            cmd.append("-N")
        for k, v in (headers or {}).items():
            cmd += ["-H", f"{k}: {v}"]
        cmd.append(f"http://127.0.0.1:{GW}/v1/chat/completions")
        out = subprocess.run(cmd, capture_output=True, check=True, timeout=90).stdout
    payload, _, tail = out.rpartition(b"\n")
    status, version = tail.decode().split()
    return int(status), payload, version


def check_echo(payload, kind, body):
    got = json.loads(payload)
    want = conv(kind, body)
    assert got["server"] == kind, got
    assert got["len"] == len(want), (got["len"], len(want))
    assert got["sha256"] == hashlib.sha256(want).hexdigest(), "digest differs"
    return got


def large_bodies():
    for mib in (1, 5, 10):
        body = make_body(mib << 20)
        t = time.monotonic()
        if H2:
            status, payload, ver = post_h2(body)
            assert ver == "2", ver
        else:
            status, payload, _ = post(body)
        ms = (time.monotonic() - t) * 1000
        assert status == 200, (status, payload[:200])
        got = check_echo(payload, "A", body)
        print(f"  {mib:>2} MiB -> upstream A got {got['len']} B, digest ok, {ms:.0f} ms")


def fallback():
    upstream("/reset")
    body = make_body(5 << 20)
    hdr = {"x-fail-first": "1"}
    status, payload, _ = post_h2(body, hdr) if H2 else post(body, hdr)
    assert status == 200, (status, payload[:200])
    check_echo(payload, "B", body)
    log = upstream("/log")
    assert [e["server"] for e in log] == ["A", "B"], log
    assert log[0]["status"] == 500 and log[0]["sha256"] == hashlib.sha256(conv("A", body)).hexdigest()
    assert log[1]["path"] == "/b/v1/messages" and log[1]["kind"] == "B", log[1]
    print(f"  5 MiB: A got {log[0]['len']} B (500), B got {log[1]['len']} B re-converted; client 200 from B")


def preread_boundary():
    """Only for a gateway in --mode preread (no subrequests)."""
    for kib in (60, 63, 65, 70, 1024):
        body = make_body(kib << 10)
        c = http.client.HTTPConnection("127.0.0.1", GW, timeout=3)
        c.request("POST", "/v1/chat/completions", body=body, headers={"content-type": "application/json"})
        try:
            r = c.getresponse()
            payload = r.read()
            check_echo(payload, "A", body)
            print(f"  {kib:>4} KiB: upstream got the converted body ({r.status})")
        except (TimeoutError, socket.timeout):
            print(f"  {kib:>4} KiB: no answer in 3 s (the upstream never got the body)")
            assert kib > 64, kib


def expect_continue():
    """curl sends `Expect: 100-continue` for big bodies and waits 1 s for it."""
    with tempfile.NamedTemporaryFile() as f:
        body = make_body(5 << 20)
        f.write(body)
        f.flush()
        t = time.monotonic()
        out = subprocess.run(["curl", "-sv", "--data-binary", "@" + f.name, "-H", "content-type: application/json",
                              "--max-time", "30", f"http://127.0.0.1:{GW}/v1/chat/completions"],
                             capture_output=True, check=True, timeout=60)
        secs = time.monotonic() - t
    heads = [l for l in out.stderr.decode().splitlines() if l.startswith("< HTTP/")]
    check_echo(out.stdout, "A", body)
    assert heads == ["< HTTP/1.1 100 Continue", "< HTTP/1.1 200 OK"], heads
    assert secs < 0.9, secs
    print(f"  one 100 Continue, then 200; {secs * 1000:.0f} ms")


def read_events(sock_file, stop_after=None):
    """Reads a chunked SSE answer; returns [(arrival, payload_line)]."""
    events, buf = [], b""
    while True:
        size_line = sock_file.readline()
        if not size_line:
            break
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            sock_file.readline()
            break
        buf += sock_file.read(size)
        sock_file.readline()
        now = time.time()
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            events.append((now, ev))
            if stop_after and len(events) >= stop_after:
                return events
    return events


def open_stream(port, count, gap_ms, extra=b"", first_ms=0):
    """Raw HTTP/1.1 stream request; returns (socket, file, head_time, t0)."""
    body = make_body(2048)
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    t0 = time.time()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
              b"x-stream: %d,%d,%d\r\n%scontent-length: %d\r\n\r\n%s" % (count, gap_ms, first_ms, extra, len(body), body))
    f = s.makefile("rb")
    status = f.readline()
    head_time = time.time()
    while f.readline() not in (b"\r\n", b""):
        pass
    assert b" 200 " in status, status
    return s, f, head_time, t0


def first_byte(port):
    s, f, head_time, t0 = open_stream(port, 3, 200)
    evs = read_events(f, stop_after=1)
    f.close()
    s.close()
    return head_time - t0, evs[0][0] - t0


def stream_timing():
    for port in (GW, PA):
        first_byte(port)  # warm: pooled upstream connection, lazy allocations
    gw = [first_byte(GW) for _ in range(15)]
    direct = [first_byte(PA) for _ in range(15)]
    med = lambda xs, i: statistics.median(x[i] for x in xs) * 1000
    print(f"  first event: direct median {med(direct, 1):.2f} ms, through spike {med(gw, 1):.2f} ms "
          f"(head: direct {med(direct, 0):.2f} ms, spike {med(gw, 0):.2f} ms)")
    for extra, who in ((b"", "A"), (b"x-fail-first: 1\r\n", "B (after A's 500)")):
        s, f, _, _ = open_stream(GW, 20, 100, extra)
        evs = read_events(f)
        f.close()
        s.close()
        data = [e for e in evs if e[1].startswith(b"data: conv:{")]
        assert len(data) == 20, evs[:3]
        assert evs[-1][1] == b"data: conv:[DONE]", evs[-1]
        lags = [(arr - json.loads(ev[len(b"data: conv:"):])["t"]) * 1000 for arr, ev in data]
        spread = (data[-1][0] - data[0][0]) * 1000
        assert spread > 1500, spread  # arrived as sent, not gathered at the end
        print(f"  stream from {who}: 20 events every 100 ms, converted; arrival spread {spread:.0f} ms, "
              f"per-event lag median {statistics.median(lags):.2f} ms, max {max(lags):.2f} ms")


def head_hold():
    """When does the answer head reach the client, for a first event 300 ms late?"""
    s, f, head_time, t0 = open_stream(GW, 2, 10, b"", first_ms=300)
    evs = read_events(f)
    f.close()
    s.close()
    head_ms, first_ms = (head_time - t0) * 1000, (evs[0][0] - t0) * 1000
    print(f"  head at {head_ms:.1f} ms, first event at {first_ms:.1f} ms")
    return head_ms, first_ms


def head_hold_drive():
    head_ms, first_ms = head_hold()
    assert head_ms > 250, "the head should wait for the first content"
    # A stream that fails after its head but before any content is retried.
    upstream("/reset")
    s, f, _, _ = open_stream(GW, 3, 10, b"x-cut-first: 1\r\n")
    evs = read_events(f)
    f.close()
    s.close()
    assert len(evs) == 4 and evs[0][1].startswith(b"data: conv:"), evs
    assert [e["server"] for e in upstream("/log")] == ["A", "B"]
    print("  A's stream cut after its head, before content: retried on B, client got B's 3 events")


def head_hold_pipe():
    head_ms, _ = head_hold()
    assert head_ms < 250, "pipe relays the head as it comes"


def stream_h2():
    status, payload, ver = post_h2(make_body(1 << 20), {"x-stream": "5,50", "x-fail-first": "1"}, stream=True)
    assert status == 200 and ver == "2", (status, ver)
    events = [e for e in payload.split(b"\n\n") if e]
    assert len(events) == 6 and all(e.startswith(b"data: conv:") for e in events), events
    print("  h2 stream after A's 500: 6 converted events from B")


def disconnect():
    upstream("/reset")
    s, f, _, _ = open_stream(GW, 200, 50)
    read_events(f, stop_after=3)
    gone = time.time()
    f.close()  # the file holds the socket open too
    s.close()
    deadline = time.time() + 5
    while time.time() < deadline:
        log = upstream("/log")
        if log and "gone_time" in log[-1]:
            break
        time.sleep(0.05)
    entry = log[-1]
    assert "gone_time" in entry, entry
    # the upstream notices on its next write after the proxy closed its side
    print(f"  client left after 3 events; upstream saw it at event {entry['gone_at_event']} "
          f"{(entry['gone_time'] - gone) * 1000:.0f} ms later (events every 50 ms)")


if __name__ == "__main__":
    which = [a for a in sys.argv[4:] if not a.startswith("--")] or [
        "large_bodies", "fallback", "stream_timing", "disconnect"]
    for name in which:
        print(f"{name}{' (h2)' if H2 else ''}:")
        globals()[name]()
    print("ok")
