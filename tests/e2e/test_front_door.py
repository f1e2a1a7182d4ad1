"""The HTTP/1 loop (`src/proxy/front.rs`): it reads each request head whole and hands
every request to Pingora's proxy with the bytes already read as the session's
pipelined prefix (formerly a front door that served aigate's own endpoints itself;
these checks keep guarding the same behaviour on the one path).

What could break there, and is checked here on raw sockets (so the bytes and the
packet boundaries are the test's, not a client library's):
- a request line cut at any byte across reads, on fresh and on kept-alive
  connections, with the body in the same packet as the head or after it;
- one kept-alive connection carrying requests that alternate between the two paths
  (built-in endpoints, a static route and a passthrough route on it);
- a configured route on a built-in path still wins (the classification reads the
  configured routes: a proxied route can only be served by Pingora's path), and unusual request lines (absolute form, lower-case method,
  escaped bytes) get the answers they got before.
"""

from __future__ import annotations

import json
import socket
import time
from http.client import HTTPResponse
from typing import Callable, Iterator

import pytest

from harness import GW_KEY_A, Gateway, provider, route, small_config
from mock_upstream import MockUpstream

StartGateway = Callable[..., Gateway]


def chat_request(path: str = "/v1/chat/completions", text: str = "front door", method: str = "POST", target: str | None = None) -> bytes:
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}).encode()
    head = (
        f"{method} {target or path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {GW_KEY_A}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def get_request(path: str, auth: bool = True) -> bytes:
    key = f"Authorization: Bearer {GW_KEY_A}\r\n" if auth else ""
    return f"GET {path} HTTP/1.1\r\nHost: gw\r\n{key}\r\n".encode()


class Conn:
    """One client connection; each `send` is one write (one segment on loopback with
    TCP_NODELAY), and `response` reads exactly one answer."""

    def __init__(self, gw: Gateway) -> None:
        self.sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, *parts: bytes, gap: float = 0.02) -> None:
        for i, p in enumerate(parts):
            if i:
                time.sleep(gap)  # the gateway has read the previous part by now
            self.sock.sendall(p)

    def response(self) -> tuple[int, dict, bytes]:
        r = HTTPResponse(self.sock)
        r.begin()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body

    def close(self) -> None:
        self.sock.close()


def assert_chat_answer(status: int, headers: dict, body: bytes, text: str) -> None:
    assert status == 200, body
    assert json.loads(body)["choices"][0]["message"]["content"] == f"echo: {text}"
    assert headers.get("connection", "keep-alive").lower() != "close", "the connection must stay reusable"


@pytest.fixture(scope="module")
def gw(upstream_server: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    routes = [
        # Configured routes on built-in paths win for the methods they take: a
        # proxied one (which only Pingora's proxy path can serve) and a static one.
        {"path": "/v1/models", "methods": ["GET"], "provider": "openai"},
        {"path": "/v1/embeddings", "methods": ["GET"], "auth": False, "static": {"body": {"static": "embeddings"}}},
        {"path": "/upstream/*", "provider": "openai"},
    ]
    cfg = small_config(
        [provider("openai", "openai", upstream_server.openai_url)],
        [route("gpt-4o", ("openai", "gpt-4o-upstream"))],
        keys=[{"id": "team-a", "key": GW_KEY_A}],
        routes=routes,
    )
    g = Gateway(cfg, tmp_path_factory.mktemp("front"), name="front")
    g.start()
    yield g
    g.stop()


def test_request_line_cut_at_every_byte(gw: Gateway, upstream: MockUpstream):
    req = chat_request(text="split")
    line_end = req.index(b"\r\n") + 2
    # Every cut in the request line and its CRLF, and a few in the headers and body.
    cuts = list(range(1, line_end + 1)) + [line_end + 5, req.index(b"\r\n\r\n") + 4, len(req) - 3]
    kept = Conn(gw)
    try:
        for cut in cuts:
            fresh = Conn(gw)
            try:
                fresh.send(req[:cut], req[cut:])
                assert_chat_answer(*fresh.response(), "split")
            finally:
                fresh.close()
            # The same cut on a connection that already served requests.
            kept.send(req[:cut], req[cut:])
            assert_chat_answer(*kept.response(), "split")
    finally:
        kept.close()
    assert len(upstream.requests) == 2 * len(cuts)


def test_head_and_body_in_one_write_and_chunked_body(gw: Gateway, upstream: MockUpstream):
    c = Conn(gw)
    try:
        c.send(chat_request(text="one write"))
        assert_chat_answer(*c.response(), "one write")
        body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "chunked"}]}).encode()
        head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {GW_KEY_A}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        chunks = [f"{len(body[:10]):x}\r\n".encode() + body[:10] + b"\r\n", f"{len(body[10:]):x}\r\n".encode() + body[10:] + b"\r\n", b"0\r\n\r\n"]
        c.send(head + chunks[0], chunks[1], chunks[2])
        assert_chat_answer(*c.response(), "chunked")
    finally:
        c.close()
    assert [r.json()["messages"][0]["content"] for r in upstream.requests] == ["one write", "chunked"]


def test_one_connection_alternates_between_both_paths(gw: Gateway, upstream: MockUpstream):
    c = Conn(gw)
    try:
        for n in range(3):
            c.send(chat_request(text=f"round {n}"))
            assert_chat_answer(*c.response(), f"round {n}")
            # A proxied route on a built-in path: the upstream's model list, not ours.
            c.send(get_request("/v1/models"))
            status, headers, body = c.response()
            assert status == 200, body
            assert {m["owned_by"] for m in json.loads(body)["data"]} == {"mock"}
            # A built-in endpoint served here.
            c.send(get_request("/health", auth=False))
            status, headers, body = c.response()
            assert (status, json.loads(body)["status"]) == (200, "ok")
            # A passthrough route: Pingora proxies it to the upstream, body and all.
            body = json.dumps({"model": "gpt-4o-upstream", "messages": [{"role": "user", "content": f"routed {n}"}]}).encode()
            head = f"POST /upstream/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {GW_KEY_A}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            c.send(head.encode(), body)
            status, headers, answer = c.response()
            assert status == 200, answer
            assert json.loads(answer)["choices"][0]["message"]["content"] == f"echo: routed {n}"
            assert headers.get("connection", "keep-alive").lower() != "close"
    finally:
        c.close()
    sent = [r.json()["messages"][0]["content"] if r.body else r.path for r in upstream.requests]
    assert sent == [x for n in range(3) for x in (f"round {n}", "/v1/models", f"routed {n}")]


def test_configured_route_on_builtin_path_wins_for_its_methods(gw: Gateway, upstream: MockUpstream):
    c = Conn(gw)
    try:
        # GET /v1/embeddings is the static route; POST stays the built-in endpoint.
        c.send(get_request("/v1/embeddings", auth=False))
        status, _, body = c.response()
        assert (status, json.loads(body)) == (200, {"static": "embeddings"})
        body = json.dumps({"model": "gpt-4o", "input": "x"}).encode()
        head = f"POST /v1/embeddings HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        c.send(head.encode() + body)
        status, _, answer = c.response()
        assert status == 401, "the built-in endpoint checks the gateway key"
        assert json.loads(answer)["error"]["message"] == "missing gateway key"
    finally:
        c.close()


def test_unusual_request_lines_get_the_same_answers(gw: Gateway, upstream: MockUpstream):
    c = Conn(gw)
    try:
        # Absolute form (Host matching its authority): Pingora's path serves it.
        c.send(chat_request(text="absolute", target="http://gw/v1/chat/completions"))
        assert_chat_answer(*c.response(), "absolute")
        # A query on a plain path, and a path with escaped bytes.
        c.send(get_request("/health?probe=1&x=%20", auth=False))
        status, _, body = c.response()
        assert (status, json.loads(body)["status"]) == (200, "ok")
        c.send(get_request("/v1/chat/%63ompletions"))
        status, _, body = c.response()
        assert status == 404 and "no route" in json.loads(body)["error"]["message"]
        # Methods are case-sensitive: not the built-in endpoint's method.
        c.send(chat_request(method="post", text="lower"))
        status, _, body = c.response()
        assert status == 405, body
    finally:
        c.close()
    assert [r.json()["messages"][0]["content"] for r in upstream.requests] == ["absolute"]


def test_idle_connection_waits_and_a_closed_one_is_let_go(gw: Gateway, upstream: MockUpstream):
    c = Conn(gw)
    try:
        c.send(chat_request(text="first"))
        assert_chat_answer(*c.response(), "first")
        time.sleep(0.5)  # idle between requests: the connection stays open
        c.send(chat_request(text="after idle"))
        assert_chat_answer(*c.response(), "after idle")
        # Half a request line, then the client goes away: nothing is sent upstream.
        c.send(b"POST /v1/chat/comp")
    finally:
        c.close()
    time.sleep(0.2)
    c = Conn(gw)
    try:
        c.send(get_request("/health", auth=False))
        assert c.response()[0] == 200
    finally:
        c.close()
    assert [r.json()["messages"][0]["content"] for r in upstream.requests] == ["first", "after idle"]
