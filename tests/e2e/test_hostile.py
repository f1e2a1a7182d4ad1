"""Answers to hostile and broken input, on raw sockets where the bytes and their
timing matter, on an AI endpoint (the body read in `request_filter`, the upstream
reached by a subrequest) and a passthrough route (Pingora's proxy phases), both
entering through `src/proxy/front.rs`'s head reader and Pingora's proxy:

- whole buffered answers share one memory budget (`max_buffered_bytes`: 503 in the
  client's format past it), and the process gives the memory back after a burst;
- a request head must arrive within `client_header_timeout_seconds` (every head of a
  kept-alive connection, on both paths), a body may not pause longer than
  `client_body_timeout_seconds` nor arrive slower than `client_body_min_rate`; slow
  clients are closed and counted (`aigate_client_timeouts_total{phase}`) while a
  normal client is served, over HTTP/1 and HTTP/2;
- a malformed chunked body is a 400; a same-format stream with no events is a 502
  in the client's format; a pipelined second request is answered; a duplicate
  `model` key is refused as such.
"""

from __future__ import annotations

import json
import select
import socket
import ssl
import threading
import time
from http.client import HTTPResponse
from pathlib import Path
from typing import Callable, Iterator

import anthropic
import h2.config
import h2.connection
import h2.events
import httpx
import openai
import pytest

from harness import GW_KEY_A, Gateway, provider, route, small_config
from helpers import anthropic_client, assert_error_shape, metric_sum, openai_client, parse_metrics, post
from raw_upstream import ConnUpstream, Piece

MiB = 1024 * 1024


def big_answer(size: int) -> bytes:
    return json.dumps({
        "id": "chatcmpl-big", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "x" * size}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }).encode()


def rss_mb(gw: Gateway) -> float:
    assert gw.proc is not None
    with open(f"/proc/{gw.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def metrics(gw: Gateway) -> list:
    return parse_metrics(gw.client().get(gw.admin_url + "/metrics").text)


def burst(client: openai.OpenAI, n: int) -> list[object]:
    """`n` concurrent non-streamed requests; each result is the answer's text length
    or the exception raised."""
    out: list[object] = [None] * n

    def one(i: int) -> None:
        try:
            r = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"big {i}"}])
            out[i] = len(r.choices[0].message.content or "")
        except Exception as e:  # noqa: BLE001 (the assertion names it)
            out[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


# ---------------------------------------------------------------------------- 1. buffered answers


def test_buffered_answers_share_one_budget(start_gateway: Callable[..., Gateway]):
    size = 30 * MiB
    body = big_answer(size)

    def answer(model: str, text: str) -> tuple[list[Piece], bool]:
        # The head first, the body a moment later: every request's head (and with
        # it its declared length) is in before any body, so who fits is decided
        # by the budget alone.
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        return [(head, 2.0), (body, 0)], False

    up = ConnUpstream(answer)
    try:
        cfg = small_config([provider("openai", "openai", up.url)], [route("gpt-4o", ("openai", "gpt-4o"))], max_buffered_bytes=70 * MiB)
        gw = start_gateway(cfg)
        results = burst(openai_client(gw), 5)
        ok = [r for r in results if r == size]
        refused = [r for r in results if isinstance(r, openai.APIStatusError) and r.status_code == 503]
        assert (len(ok), len(refused)) == (2, 3), f"70 MiB holds two 30 MiB answers: {results}"
        assert all("buffered" in r.message for r in refused), refused
        # The budget comes back with the answers.
        assert burst(openai_client(gw), 2) == [size, size]
    finally:
        up.stop()


def test_memory_is_given_back_after_a_burst(start_gateway: Callable[..., Gateway]):
    size = 40 * MiB
    body = big_answer(size)

    def answer(model: str, text: str) -> tuple[list[Piece], bool]:
        return [(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body, 0)], False

    up = ConnUpstream(answer)
    try:
        cfg = small_config([provider("openai", "openai", up.url)], [route("gpt-4o", ("openai", "gpt-4o"))], threads=2)
        gw = start_gateway(cfg)
        base = rss_mb(gw)
        for round_ in range(3):
            assert burst(openai_client(gw), 6) == [size] * 6
            # Given back promptly, with no further traffic to trigger it.
            deadline = time.monotonic() + 3
            while rss_mb(gw) > base + 40 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert rss_mb(gw) <= base + 40, f"round {round_}: {rss_mb(gw):.0f} MB resident after six {size // MiB} MiB answers (started at {base:.0f} MB)"
    finally:
        up.stop()


# ---------------------------------------------------------------------------- 2. slow clients


@pytest.fixture
def slow_gw(start_gateway: Callable[..., Gateway]) -> Iterator[Gateway]:
    up = ConnUpstream()
    cfg = small_config(
        [provider("openai", "openai", up.url)],
        [route("gpt-4o", ("openai", "gpt-4o"))],
        routes=[{"path": "/upstream/*", "provider": "openai"}],
        client_header_timeout_seconds=1,
        client_body_timeout_seconds=1,
    )
    yield start_gateway(cfg)
    up.stop()


def chat_head(path: str, length: int, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {GW_KEY_A}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n{extra}\r\n"
    ).encode()


def chat_body(text: str, model: str = "gpt-4o") -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": text}]}).encode()


def closed(sock: socket.socket) -> bool:
    """Whether the gateway closed this connection (EOF or reset)."""
    r, _, _ = select.select([sock], [], [], 0)
    if not r:
        return False
    try:
        return sock.recv(65536) == b""
    except OSError:
        return True


def test_slow_request_heads_are_closed_while_others_are_served(slow_gw: Gateway):
    gw = slow_gw
    request = chat_head("/v1/chat/completions", 10) + b"0123456789"
    routed = chat_head("/upstream/chat/completions", 10) + b"0123456789"
    socks = []
    for i in range(40):
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append((s, routed if i % 2 else request))
    # One connection that never sends a byte: its first head is late too.
    silent = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    start = time.monotonic()
    closed_at: dict[int, float] = {}
    sent = 0
    client = openai_client(gw)
    served = 0
    # One byte per connection every 0.25 s: each read is well within any per-read
    # timeout, but the whole head would take 50 s.
    while len(closed_at) < len(socks) and time.monotonic() - start < 6:
        for i, (s, data) in enumerate(socks):
            if i in closed_at:
                continue
            if closed(s):
                closed_at[i] = time.monotonic() - start
                continue
            try:
                s.sendall(data[sent : sent + 1])
            except OSError:
                closed_at[i] = time.monotonic() - start
        sent += 1
        # A normal client is served meanwhile.
        r = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"normal {sent}"}])
        assert r.choices[0].message.content == f"echo: normal {sent}"
        served += 1
        time.sleep(0.25)
    assert len(closed_at) == len(socks), f"{len(socks) - len(closed_at)} slow heads still open after 6 s"
    assert max(closed_at.values()) < 3.5, f"closed too late: {sorted(closed_at.values())[-3:]}"
    assert sent < 20, "the heads were still incomplete when closed"
    for _ in range(20):
        if closed(silent):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("a connection that sends nothing is closed too")
    assert served >= 3
    total = metric_sum(metrics(gw), "aigate_client_timeouts_total", phase="header")
    assert total >= len(socks) + 1, total
    for s, _ in socks:
        s.close()
    silent.close()


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/upstream/chat/completions"])
def test_a_stalled_body_gets_408(slow_gw: Gateway, path: str):
    gw = slow_gw
    body = chat_body("slow body")
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    try:
        s.sendall(chat_head(path, len(body)) + body[:5])
        time.sleep(1.6)  # longer than client_body_timeout_seconds between two reads
        try:
            s.sendall(body[5:6])
        except OSError:
            pass
        r = HTTPResponse(s)
        r.begin()
        answer = r.read()
        assert r.status == 408, answer
        err = json.loads(answer)["error"]
        assert "timed out" in err["message"], err
        assert (r.getheader("connection") or "").lower() == "close"
    finally:
        s.close()
    assert metric_sum(metrics(gw), "aigate_client_timeouts_total", phase="body") >= 1
    # A body sent at an ordinary pace is unaffected.
    assert openai_client(gw).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "after"}]).choices[0].message.content == "echo: after"


@pytest.fixture
def rate_gw(start_gateway: Callable[..., Gateway]) -> Iterator[Gateway]:
    """Short limits: a head within 2 s, no body pause over 1 s, bodies at 20 bytes/s
    at least (after the first second)."""
    up = ConnUpstream()
    yield start_gateway(rate_config(up))
    up.stop()


def rate_config(up: ConnUpstream, **extra: object) -> dict:
    """One AI model and one proxied route on `up`, with the short slow-client limits."""
    return small_config(
        [provider("openai", "openai", up.url)],
        [route("gpt-4o", ("openai", "gpt-4o"))],
        routes=[{"path": "/upstream/*", "provider": "openai"}],
        client_header_timeout_seconds=2,
        client_body_timeout_seconds=1,
        client_body_min_rate=20,
        **extra,
    )


def trickle_until_closed(s: socket.socket, data: bytes, every: float, limit: float) -> tuple[float, bytes]:
    """Send `data` one byte every `every` seconds until the gateway answers or
    closes; (seconds taken, what it sent back)."""
    start = time.monotonic()
    got = b""
    for i in range(len(data)):
        r, _, _ = select.select([s], [], [], 0)
        if r:
            break
        try:
            s.sendall(data[i : i + 1])
        except OSError:
            break
        time.sleep(every)
        assert time.monotonic() - start < limit, f"still open after {limit} s ({i + 1} bytes sent)"
    s.settimeout(limit)
    try:
        while chunk := s.recv(65536):
            got += chunk
    except OSError:
        pass
    return time.monotonic() - start, got


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/upstream/chat/completions"])
def test_a_body_below_the_minimum_rate_gets_408(rate_gw: Gateway, path: str):
    gw = rate_gw
    before = metric_sum(metrics(gw), "aigate_client_timeouts_total", phase="body_rate")
    body = chat_body("x" * 300)
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    try:
        s.sendall(chat_head(path, len(body)))
        # 5 bytes/s, every byte well within the 1 s pause limit: the deadline
        # (1 s + bytes / 20 per s) passes after about 1.3 s; the body would take 70 s.
        took, got = trickle_until_closed(s, body, 0.2, 6)
    finally:
        s.close()
    assert took < 3.5, took
    head, _, answer = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), got[:300]
    assert b"connection: close" in head.lower(), head
    err = json.loads(answer)["error"]
    assert "slower than 20 bytes/s" in err["message"], err
    after = metric_sum(metrics(gw), "aigate_client_timeouts_total", phase="body_rate")
    assert after == before + 1, (before, after)
    # A body sent at an ordinary pace is unaffected.
    r = openai_client(gw).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "after"}])
    assert r.choices[0].message.content == "echo: after"


def test_a_body_at_the_minimum_rate_is_served(rate_gw: Gateway):
    gw = rate_gw
    body = chat_body("steady " * 8)
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    try:
        s.sendall(chat_head("/upstream/chat/completions", len(body)))
        # 40 bytes/s, twice the minimum, in pieces 0.5 s apart: about 2.5 s in all.
        for i in range(0, len(body), 20):
            time.sleep(0.5)
            s.sendall(body[i : i + 20])
        [(status, answer)] = read_answers(s, 1)
    finally:
        s.close()
    assert status == 200, answer
    assert json.loads(answer)["choices"][0]["message"]["content"] == "echo: " + "steady " * 8


def test_many_slow_bodies_are_closed_while_others_are_served(rate_gw: Gateway):
    gw = rate_gw
    before = metric_sum(metrics(gw), "aigate_client_timeouts_total", phase="body_rate")
    body = chat_body("y" * 200)
    socks = []
    for i in range(50):
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        path = "/upstream/chat/completions" if i % 2 else "/v1/chat/completions"
        s.sendall(chat_head(path, len(body)))
        socks.append(s)
    start = time.monotonic()
    closed_at: dict[int, float] = {}
    client = openai_client(gw)
    sent = 0
    slowest_normal = 0.0
    # One body byte per connection every 0.25 s (4 bytes/s, each read within the
    # pause limit), while a normal client is served.
    while len(closed_at) < len(socks) and time.monotonic() - start < 8:
        for i, s in enumerate(socks):
            if i in closed_at:
                continue
            r, _, _ = select.select([s], [], [], 0)
            if r:
                closed_at[i] = time.monotonic() - start
                continue
            try:
                s.sendall(body[sent : sent + 1])
            except OSError:
                closed_at[i] = time.monotonic() - start
        sent += 1
        t = time.monotonic()
        r = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"normal {sent}"}])
        assert r.choices[0].message.content == f"echo: normal {sent}"
        slowest_normal = max(slowest_normal, time.monotonic() - t)
        time.sleep(0.25)
    assert len(closed_at) == len(socks), f"{len(socks) - len(closed_at)} slow bodies still open after 8 s"
    assert max(closed_at.values()) < 3.5, sorted(closed_at.values())[-3:]
    assert slowest_normal < 1.0, slowest_normal
    for s in socks:
        s.settimeout(5)
        answer = b""
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except OSError:
            pass
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        s.close()
    after = metric_sum(metrics(gw), "aigate_client_timeouts_total", phase="body_rate")
    assert after - before == len(socks), (before, after)


def test_the_next_head_after_a_route_request_is_timed_too(rate_gw: Gateway):
    gw = rate_gw
    before = metric_sum(metrics(gw), "aigate_client_timeouts_total", phase="header")
    body = chat_body("first")
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    try:
        s.sendall(chat_head("/upstream/chat/completions", len(body)) + body)
        [(status, answer)] = read_answers(s, 1)
        assert status == 200, answer
        # The second head, one byte per 0.3 s: it would take 40 s.
        took, got = trickle_until_closed(s, chat_head("/upstream/chat/completions", len(body)), 0.3, 6)
    finally:
        s.close()
    assert got == b"", got[:200]
    assert 1.5 < took < 3.5, took
    after = metric_sum(metrics(gw), "aigate_client_timeouts_total", phase="header")
    assert after == before + 1, (before, after)


# HTTP/2 (over TLS, ALPN h2: how aigate offers it), with the `h2` package.


@pytest.fixture
def h2_gw(start_gateway: Callable[..., Gateway], tmp_path: Path) -> Iterator[Gateway]:
    """`rate_gw`'s limits on a TLS listener that offers HTTP/2."""
    from test_tls import Pki

    pki = Pki(tmp_path, "h2")
    _, cert_pem, key_pem = pki.leaf("127.0.0.1")
    cf, kf = tmp_path / "server.pem", tmp_path / "server.key"
    cf.write_bytes(cert_pem)
    kf.write_bytes(key_pem)
    up = ConnUpstream()
    cfg = rate_config(up, tls={"cert_file": str(cf), "key_file": str(kf)})
    g = Gateway(cfg, tmp_path / "h2gw", name="h2gw", tls_ca=pki.ca_file)
    try:
        yield g.start()
    finally:
        g.stop()
        up.stop()


def h2_socket(gw: Gateway) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=gw.tls_ca)
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    assert s.selected_alpn_protocol() == "h2"
    return s


class H2Client:
    """One HTTP/2 connection, driven by hand: each frame is sent when the test says."""

    def __init__(self, gw: Gateway) -> None:
        self.sock = h2_socket(gw)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.flush()
        self.status: int | None = None
        self.body = b""
        self.ended = False
        self.reset = False
        self.closed = False

    def flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def start(self, path: str, length: int) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [
            (":method", "POST"), (":path", path), (":scheme", "https"), (":authority", "127.0.0.1"),
            ("authorization", f"Bearer {GW_KEY_A}"), ("content-type", "application/json"),
            ("content-length", str(length)),
        ])
        self.flush()
        return sid

    def pump(self, wait: float) -> None:
        """Take in whatever the gateway sent within `wait` seconds."""
        r, _, _ = select.select([self.sock], [], [], wait)
        if not r:
            return
        try:
            data = self.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return
        for ev in self.conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                self.status = int(dict(ev.headers)[":status"])
            elif isinstance(ev, h2.events.DataReceived):
                self.body += ev.data
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self.ended = True
            elif isinstance(ev, h2.events.StreamReset):
                self.reset = True
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.closed = True
        try:
            self.flush()
        except OSError:
            self.closed = True

    def done(self) -> bool:
        return self.ended or self.reset or self.closed

    def trickle(self, sid: int, data: bytes, every: float, limit: float) -> float:
        """One DATA frame of one byte every `every` seconds until the stream ends;
        the seconds taken."""
        start = time.monotonic()
        for i in range(len(data)):
            self.pump(0)
            if self.done() or self.status is not None:
                break
            self.conn.send_data(sid, data[i : i + 1])
            self.flush()
            self.pump(every)
            assert time.monotonic() - start < limit, f"stream still open after {limit} s"
        while not self.done() and time.monotonic() - start < limit:
            self.pump(0.1)
        return time.monotonic() - start


def test_http2_connections_that_ask_nothing_are_closed(h2_gw: Gateway):
    gw = h2_gw
    before = metric_sum(metrics(gw), "aigate_client_timeouts_total", phase="header")
    # TLS done, then silence: not even the HTTP/2 preface.
    silent = h2_socket(gw)
    # The preface and settings, then no request.
    idle = H2Client(gw)
    start = time.monotonic()
    closed: dict[str, float] = {}
    while len(closed) < 2 and time.monotonic() - start < 6:
        if "silent" not in closed:
            r, _, _ = select.select([silent], [], [], 0.05)
            if r:
                try:
                    gone = silent.recv(65536) == b""
                except OSError:
                    gone = True
                if gone:
                    closed["silent"] = time.monotonic() - start
        if "idle" not in closed:
            idle.pump(0.05)
            if idle.closed:
                closed["idle"] = time.monotonic() - start
    silent.close()
    idle.sock.close()
    assert set(closed) == {"silent", "idle"}, closed
    assert all(1.5 < t < 3.5 for t in closed.values()), closed
    # Both never sent a first request: both are counted.
    after = metric_sum(metrics(gw), "aigate_client_timeouts_total", phase="header")
    assert after == before + 2, (before, after)
    # Between requests too: a connection idle after its answer is closed (not
    # counted: it was served).
    c = H2Client(gw)
    try:
        body = chat_body("then idle")
        sid = c.start("/v1/chat/completions", len(body))
        c.conn.send_data(sid, body, end_stream=True)
        c.flush()
        start = time.monotonic()
        while not c.ended and time.monotonic() - start < 5:
            c.pump(0.1)
        assert c.status == 200 and json.loads(c.body)["choices"][0]["message"]["content"] == "echo: then idle", (c.status, c.body)
        answered = time.monotonic()
        while not c.closed and time.monotonic() - answered < 6:
            c.pump(0.1)
        idle_for = time.monotonic() - answered
    finally:
        c.sock.close()
    assert c.closed and 1.5 < idle_for < 3.5, idle_for
    assert metric_sum(metrics(gw), "aigate_client_timeouts_total", phase="header") == after
    # A connection that asks is served.
    with httpx.Client(http2=True, verify=gw.verify()) as c:
        r = c.post(gw.url + "/v1/chat/completions", json={"model": "gpt-4o", "messages": [{"role": "user", "content": "h2"}]}, headers={"authorization": f"Bearer {GW_KEY_A}"})
    assert r.http_version == "HTTP/2" and r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "echo: h2"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/upstream/chat/completions"])
def test_a_slow_http2_body_is_ended(h2_gw: Gateway, path: str):
    gw = h2_gw
    before = metric_sum(metrics(gw), "aigate_client_timeouts_total", phase="body_rate")
    body = chat_body("z" * 300)
    c = H2Client(gw)
    try:
        sid = c.start(path, len(body))
        # 5 bytes/s in one-byte DATA frames, each well within the pause limit.
        took = c.trickle(sid, body, 0.2, 6)
    finally:
        c.sock.close()
    assert took < 3.5, took
    if path.startswith("/v1/"):
        # The AI endpoints time their own reads: a 408 in the client's format.
        assert c.status == 408, (c.status, c.body)
        assert "slower than 20 bytes/s" in json.loads(c.body)["error"]["message"], c.body
    else:
        # A route's body is read inside Pingora's proxy loop: a 408 when the
        # deadline passes at a frame, else the stream is reset.
        assert c.status == 408 or (c.reset and c.status is None), (c.status, c.reset, c.body)
    after = metric_sum(metrics(gw), "aigate_client_timeouts_total", phase="body_rate")
    assert after == before + 1, (before, after)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/upstream/chat/completions"])
def test_a_stalled_http2_body_is_ended(h2_gw: Gateway, path: str):
    gw = h2_gw
    before = metric_sum(metrics(gw), "aigate_client_timeouts_total", phase="body")
    body = chat_body("stalled")
    c = H2Client(gw)
    try:
        sid = c.start(path, len(body))
        c.conn.send_data(sid, body[:5])
        c.flush()
        start = time.monotonic()
        while not c.done() and time.monotonic() - start < 5:
            c.pump(0.1)
        took = time.monotonic() - start
    finally:
        c.sock.close()
    assert 0.8 < took < 2.5, took
    if path.startswith("/v1/"):
        assert c.status == 408, (c.status, c.body)
        assert "timed out" in json.loads(c.body)["error"]["message"], c.body
    else:
        assert c.reset and c.status is None, (c.status, c.reset, c.body)
    after = metric_sum(metrics(gw), "aigate_client_timeouts_total", phase="body")
    assert after == before + 1, (before, after)


# ---------------------------------------------------------------------------- 3. other bad input


@pytest.fixture
def raw_gw(start_gateway: Callable[..., Gateway]) -> Iterator[tuple[Gateway, ConnUpstream]]:
    up = ConnUpstream()
    cfg = small_config(
        [provider("openai", "openai", up.url)],
        [route("gpt-4o", ("openai", "gpt-4o"))],
        routes=[{"path": "/upstream/*", "provider": "openai"}],
    )
    yield start_gateway(cfg), up
    up.stop()


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/upstream/chat/completions"])
def test_malformed_chunk_size_is_a_400(raw_gw: tuple[Gateway, ConnUpstream], path: str):
    gw, up = raw_gw
    head = f"POST {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {GW_KEY_A}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    try:
        s.sendall(head.encode() + b"zz\r\n{}\r\n0\r\n\r\n")
        r = HTTPResponse(s)
        r.begin()
        answer = r.read()
        assert r.status == 400, answer
        assert "chunk" in json.loads(answer)["error"]["message"].lower(), answer
    finally:
        s.close()
    assert up.ports == [], "nothing reaches the upstream"
    assert "Fail to serve request" not in gw.log_text(), "a client's mistake is not logged as the gateway's"


def test_a_stream_with_no_events_is_an_error(start_gateway: Callable[..., Gateway]):
    def empty(model: str, text: str) -> tuple[list[Piece], bool]:
        return [(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 0\r\n\r\n", 0)], False

    up = ConnUpstream(empty)
    try:
        cfg = small_config(
            [provider("openai", "openai", up.url), provider("anthropic", "anthropic", up.url.removesuffix("/v1"))],
            [route("gpt-4o", ("openai", "gpt-4o")), route("claude", ("anthropic", "claude"))],
            # Each request retries the empty stream: keep the circuit closed.
            circuit_breaker={"failure_threshold": 100, "open_seconds": 30},
        )
        gw = start_gateway(cfg)
        with pytest.raises(openai.APIStatusError) as e:
            for _ in openai_client(gw).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True):
                pass
        assert e.value.status_code == 502 and "no events" in e.value.message, e.value
        with pytest.raises(anthropic.APIStatusError) as a:
            with anthropic_client(gw).messages.stream(model="claude", max_tokens=10, messages=[{"role": "user", "content": "hi"}]) as st:
                st.get_final_message()
        assert a.value.status_code == 502 and "no events" in str(a.value.message), a.value
        assert_error_shape("anthropic", post(gw, "anthropic", "claude", stream=True), 502)
    finally:
        up.stop()


def read_answers(s: socket.socket, n: int) -> list[tuple[int, bytes]]:
    """`n` answers with Content-Length read off one connection (answers to
    pipelined requests may share a read, so one buffer serves them all)."""
    buf = b""
    out: list[tuple[int, bytes]] = []
    while len(out) < n:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = buf[:end].decode("latin-1").split("\r\n")
            fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
            assert "content-length" in fields, head
            size = int(fields["content-length"])
            if len(buf) >= end + 4 + size:
                out.append((int(head[0].split()[1]), buf[end + 4 : end + 4 + size]))
                buf = buf[end + 4 + size :]
                continue
        data = s.recv(65536)
        assert data, f"connection closed after {len(out)} of {n} answers"
        buf += data
    return out


@pytest.mark.parametrize("paths", [
    ("/v1/chat/completions", "/v1/chat/completions"),
    ("/upstream/chat/completions", "/upstream/chat/completions"),
    ("/v1/chat/completions", "/upstream/chat/completions"),
    ("/upstream/chat/completions", "/v1/chat/completions"),
])
def test_pipelined_requests_are_all_answered(raw_gw: tuple[Gateway, ConnUpstream], paths: tuple[str, str]):
    gw, up = raw_gw
    wire = b""
    texts = [f"pipelined {i}" for i in range(len(paths) + 1)]
    for path, text in zip(paths + (paths[0],), texts):
        b = chat_body(text)
        wire += chat_head(path, len(b)) + b
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    try:
        s.sendall(wire)  # every request before any answer
        answers = read_answers(s, len(texts))
    finally:
        s.close()
    for (status, answer), text in zip(answers, texts):
        assert status == 200, answer
        assert json.loads(answer)["choices"][0]["message"]["content"] == f"echo: {text}"
    assert len(up.ports) == len(texts)


@pytest.mark.parametrize("fmt", ["openai-chat", "anthropic"])
def test_a_duplicate_model_key_is_named(raw_gw: tuple[Gateway, ConnUpstream], fmt: str):
    gw, up = raw_gw
    path = "/v1/chat/completions" if fmt == "openai-chat" else "/v1/messages"
    body = b'{"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "model": "other"}'
    headers = {"authorization": f"Bearer {GW_KEY_A}", "content-type": "application/json"}
    r = gw.client().post(path, content=body, headers=headers)
    err = assert_error_shape(fmt, r, 400)
    assert "duplicate key `model`" in err["error"]["message"], err
    assert up.ports == []
