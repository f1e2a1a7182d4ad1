"""Issue 7, custom routes: passthrough routes (`routes:` with a target or a provider),
static routes, provider-prefixed passthrough (`provider_passthrough:`), payload rules
(`payload:` on model entries and targets) and extra upstream headers.

Proxied routes go through Pingora's own proxy phases, so the tests check what that
promises: bodies stream both ways unbuffered and unbounded (a multi-MiB upload sent in
slow chunks reaches the upstream before the client finished; SSE events arrive spaced
as sent), header allow-lists both ways, credentials injected and the client's key never
forwarded, per-route timeout (504) and retry (connect failure, then a failure after
sending only when the method or the route allows it).

A tiny echo upstream (`Echo`, below) answers every path with what it received; the
mock LLM upstream serves the payload-rule and SDK tests.
"""

from __future__ import annotations

import hashlib
from http.client import HTTPConnection
import json
import socket
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import anthropic
import httpx
import openai
import pytest
import yaml
from google import genai

from harness import FAST_TIMEOUTS, GW_KEY_A, GW_KEY_B, Gateway, closed_port, provider, route, sha256_hex, small_config
from helpers import assert_error_shape, http, metric_sum, parse_metrics
from mock_upstream import MockUpstream

StartGateway = Callable[..., Gateway]
UP_KEY = "sk-up-route"
KEYS = [{"id": "team-a", "key": GW_KEY_A}, {"id": "team-b", "sha256": sha256_hex(GW_KEY_B)}]
BEARER_A = {"authorization": f"Bearer {GW_KEY_A}"}


# ---------------------------------------------------------------------------- echo upstream


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client the gateway cut off (the timeout test) is expected


class Echo:
    """Loopback HTTP/1.1 upstream that records each request and answers with it as JSON.

    Paths (anywhere in the path): `/sse` streams 5 SSE events 200 ms apart; `/slow-MS`
    waits MS ms first; `/drop` reads the request and closes the connection unanswered;
    `/status-NNN` answers that status. Every JSON answer carries `input_tokens` and
    `totalTokens` (so the Anthropic and Gemini SDKs' count_tokens parse it) and the
    response headers `x-upstream`, `x-secret-upstream`.
    """

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        echo = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _body(self, rec: dict) -> bytes:
                h = hashlib.sha256()
                n = 0
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        data = self.rfile.read(size)
                        self.rfile.readline()
                        rec.setdefault("first_byte_at", time.monotonic())
                        h.update(data)
                        n += size
                else:
                    left = int(self.headers.get("content-length") or 0)
                    while left:
                        data = self.rfile.read(min(left, 65536))
                        if not data:
                            break
                        rec.setdefault("first_byte_at", time.monotonic())
                        h.update(data)
                        n += len(data)
                        left -= len(data)
                rec["len"], rec["sha256"] = n, h.hexdigest()
                rec["body_done_at"] = time.monotonic()
                return b""

            def _handle(self) -> None:
                u = urllib.parse.urlsplit(self.path)
                rec: dict = {
                    "method": self.command,
                    "path": u.path,
                    "query": u.query,
                    "headers": [(k.lower(), v) for k, v in self.headers.items()],
                    "framing": "chunked" if self.headers.get("transfer-encoding") else "length",
                }
                with echo.lock:
                    echo.requests.append(rec)
                self._body(rec)
                if "/drop" in u.path:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                for part in u.path.split("/"):
                    if part.startswith("slow-"):
                        time.sleep(int(part[5:]) / 1000)
                status = 200
                for part in u.path.split("/"):
                    if part.startswith("status-"):
                        status = int(part[7:])
                if "/sse" in u.path:
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("transfer-encoding", "chunked")
                    self.send_header("x-upstream", "sse")
                    self.end_headers()
                    for i in range(5):
                        data = f"data: {{\"n\": {i}}}\n\n".encode()
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                        self.wfile.flush()
                        time.sleep(0.2)
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                    return
                out = json.dumps({"echo": rec, "input_tokens": 7, "totalTokens": 7}).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.send_header("x-upstream", "yes")
                self.send_header("x-secret-upstream", "internal")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

        self.server = _QuietServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def last(self) -> dict:
        with self.lock:
            assert self.requests, "the echo upstream received no request"
            return self.requests[-1]

    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def header(rec: dict, name: str) -> str | None:
    return next((v for k, v in rec["headers"] if k == name), None)


def assert_no_gateway_key(rec: dict, *keys: str) -> None:
    for k in keys:
        for name, v in rec["headers"]:
            assert k not in v, f"gateway key forwarded upstream in {name}"
        assert k not in rec["query"], "gateway key forwarded upstream in the query"


@pytest.fixture(scope="module")
def echo() -> Iterator[Echo]:
    e = Echo()
    yield e
    e.stop()


def routes_config(echo: Echo, dead: int) -> dict:
    e = echo.url
    providers = [
        provider("oa", "openai", e + "/v1", keys=[UP_KEY], headers={"x-prov": "p1"}, timeouts=FAST_TIMEOUTS),
        provider("anthropic", "anthropic", e, keys=[UP_KEY], timeouts=FAST_TIMEOUTS),
        provider("gemini", "gemini", e, keys=[UP_KEY], timeouts=FAST_TIMEOUTS),
        provider("groq", "openai-compatible", e + "/openai/v1", keys=[UP_KEY], timeouts=FAST_TIMEOUTS),
    ]
    routes = [
        {"path": "/v1/audio/*", "methods": ["POST", "GET"], "target": e + "/up/audio", "headers": {"x-route": "r1"}},
        {"path": "/exact/one", "target": e + "/up/exact"},
        {"path": "/filtered/*", "target": e + "/f", "forward_request_headers": ["x-allowed", "x-pre-*"], "forward_response_headers": ["x-upstream"]},
        {"path": "/v1/files/*", "provider": "oa", "headers": {"x-route": "r2"}},
        {"path": "/open/*", "auth": False, "target": e + "/open"},
        {"path": "/open-creds/*", "auth": False, "target": e + "/oc", "forward_request_headers": ["authorization", "accept"]},
        {"path": "/only-b/*", "keys": ["team-b"], "target": e + "/b"},
        {"path": "/slow/*", "target": e + "/slowroute", "timeout_ms": 300},
        {"path": "/failover/*", "target": [f"http://127.0.0.1:{dead}/x", e + "/alive"], "retry": {"max_attempts": 2}, "connect_timeout_ms": 500},
        {"path": "/no-retry/*", "target": [f"http://127.0.0.1:{dead}/x", e + "/alive"], "connect_timeout_ms": 500},
        {"path": "/after-send/*", "target": [e + "/drop", e + "/alive"], "retry": {"max_attempts": 2}},
        {"path": "/after-send-post/*", "target": [e + "/drop", e + "/alive"], "retry": {"max_attempts": 2, "non_idempotent": True}},
        {"path": "/api/event_logging/batch", "methods": ["POST"], "auth": False, "static": {"status": 202, "headers": {"x-static": "yes"}, "body": {"ok": True, "items": [1, "two", None]}}},
        {"path": "/api/user", "static": {"body": {"id": "u1"}}},
        {"path": "/api/empty", "auth": False, "static": {"status": 204}},
    ]
    cfg = small_config(providers, [route("m", ("oa", None))], keys=KEYS, routes=routes, provider_passthrough={"enabled": True, "prefix": "/"})
    cfg["max_body_bytes"] = 1024 * 1024  # routes are not capped by it
    return cfg


@pytest.fixture(scope="module")
def gw(echo: Echo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    g = Gateway(routes_config(echo, closed_port()), tmp_path_factory.mktemp("routes"), name="routes")
    g.start()
    yield g
    g.stop()


# ---------------------------------------------------------------------------- matching, methods, auth


def test_prefix_route_appends_rest_keeps_query_and_adds_headers(gw: Gateway, echo: Echo):
    r = http().post(gw.url + "/v1/audio/speech?voice=alloy&key=" + GW_KEY_A, content=b"abc", headers={"x-client": "c1", "content-type": "audio/wav"})
    assert r.status_code == 200, r.text
    rec = echo.last()
    assert rec["path"] == "/up/audio/speech", rec
    assert rec["query"] == "voice=alloy", "the query is kept, minus the gateway key"
    assert header(rec, "x-client") == "c1" and header(rec, "content-type") == "audio/wav"
    assert header(rec, "x-route") == "r1", "route `headers:` go upstream"
    assert header(rec, "host") == echo.url.removeprefix("http://")
    assert header(rec, "x-request-id") == r.headers["x-request-id"]
    assert rec["len"] == 3
    assert_no_gateway_key(rec, GW_KEY_A)
    # Exact routes forward to the target as is.
    r = http().get(gw.url + "/exact/one", headers=BEARER_A)
    assert r.status_code == 200 and echo.last()["path"] == "/up/exact"
    r = http().get(gw.url + "/exact/one/more", headers=BEARER_A)
    assert_error_shape("openai", r, 404)


def test_methods_not_listed_get_405(gw: Gateway, echo: Echo):
    before = echo.count()
    r = http().delete(gw.url + "/v1/audio/speech", headers=BEARER_A)
    body = assert_error_shape("openai", r, 405)
    assert "DELETE" in body["error"]["message"]
    assert r.headers["allow"] == "GET, POST"
    r = http().get(gw.url + "/api/event_logging/batch")
    assert_error_shape("openai", r, 405)
    assert echo.count() == before, "a refused request must not reach the upstream"


def test_gateway_key_required_unless_auth_false(gw: Gateway, echo: Echo):
    before = echo.count()
    assert_error_shape("openai", http().post(gw.url + "/v1/audio/speech", content=b"x"), 401)
    assert_error_shape("openai", http().post(gw.url + "/v1/audio/speech", content=b"x", headers={"x-api-key": "sk-wrong"}), 401)
    # A key not on the route's `keys` list.
    assert_error_shape("openai", http().get(gw.url + "/only-b/x", headers=BEARER_A), 403)
    assert echo.count() == before
    r = http().get(gw.url + "/only-b/x", headers={"x-api-key": GW_KEY_B})
    assert r.status_code == 200 and echo.last()["path"] == "/b/x"
    # auth: false: no key needed, and a key sent anyway is still not forwarded by default.
    r = http().get(gw.url + "/open/x?key=abc", headers={"authorization": "Bearer client-token", "x-api-key": "k2"})
    assert r.status_code == 200, r.text
    rec = echo.last()
    assert header(rec, "authorization") is None and header(rec, "x-api-key") is None
    assert rec["query"] == "key=abc", "without a key check or provider the query passes untouched"
    # ... unless the route's allow-list names it.
    r = http().get(gw.url + "/open-creds/y", headers={"authorization": "Bearer client-token", "x-api-key": "k2", "accept": "x/y", "x-other": "1"})
    assert r.status_code == 200
    rec = echo.last()
    assert header(rec, "authorization") == "Bearer client-token"
    assert header(rec, "x-api-key") is None and header(rec, "x-other") is None and header(rec, "accept") == "x/y"


def test_header_allow_lists_both_ways(gw: Gateway, echo: Echo):
    r = http().post(gw.url + "/filtered/a", content=b"{}", headers={**BEARER_A, "x-allowed": "1", "x-pre-fix": "2", "x-other": "3", "content-type": "application/json", "cookie": "c=1"})
    assert r.status_code == 200
    rec = echo.last()
    assert header(rec, "x-allowed") == "1" and header(rec, "x-pre-fix") == "2"
    assert header(rec, "x-other") is None and header(rec, "cookie") is None, "headers off the allow-list are dropped"
    assert header(rec, "content-type") == "application/json" and header(rec, "content-length") == "2", "body headers always pass"
    assert r.headers.get("x-upstream") == "yes" and "x-secret-upstream" not in r.headers
    assert r.headers["content-type"] == "application/json" and r.headers.get("x-request-id")
    # Default: every response header but hop-by-hop.
    r = http().get(gw.url + "/exact/one", headers=BEARER_A)
    assert r.headers.get("x-secret-upstream") == "internal"


def test_provider_route_injects_credential_and_provider_headers(gw: Gateway, echo: Echo):
    r = http().get(gw.url + "/v1/files/file-1?purpose=batch", headers={"x-api-key": GW_KEY_A})
    assert r.status_code == 200, r.text
    rec = echo.last()
    # No target: the provider's base_url (".../v1") + the whole path, "/v1" not repeated.
    assert rec["path"] == "/v1/files/file-1", rec["path"]
    assert rec["query"] == "purpose=batch"
    assert header(rec, "authorization") == f"Bearer {UP_KEY}"
    assert header(rec, "x-prov") == "p1" and header(rec, "x-route") == "r2"
    assert_no_gateway_key(rec, GW_KEY_A)


# ---------------------------------------------------------------------------- streaming both ways


def test_multi_mib_upload_streams_through_uncapped(gw: Gateway, echo: Echo):
    chunk = bytes(range(256)) * 1024  # 256 KiB
    n = 24  # 6 MiB, over max_body_bytes (1 MiB): routes are not capped by it
    sent_last_at: list[float] = []

    def body() -> Iterator[bytes]:
        for i in range(n):
            if i == n - 1:
                sent_last_at.append(time.monotonic())
            yield chunk
            time.sleep(0.03)

    r = httpx.post(gw.url + "/v1/audio/upload", content=body(), headers={**BEARER_A, "content-type": "application/octet-stream"}, timeout=30)
    assert r.status_code == 200, r.text
    rec = echo.last()
    assert rec["len"] == n * len(chunk)
    assert rec["sha256"] == hashlib.sha256(chunk * n).hexdigest(), "the upload arrived changed"
    assert rec["first_byte_at"] < sent_last_at[0], "the upstream got nothing before the client finished: the body was buffered"
    # A sized upload (Content-Length) of 3 MiB passes whole too.
    data = bytes(range(251)) * (3 * 1024 * 1024 // 251)
    r = http().put(gw.url + "/v1/audio/put", content=data, headers=BEARER_A, timeout=30)
    assert r.status_code == 405  # PUT is not on the route's method list
    r = http().post(gw.url + "/v1/audio/put", content=data, headers=BEARER_A, timeout=30)
    assert r.status_code == 200 and echo.last()["sha256"] == hashlib.sha256(data).hexdigest()


def test_expect_100_continue_upload(gw: Gateway, echo: Echo):
    """curl sends `Expect: 100-continue` before large bodies: the 100 must come back."""
    data = b"z" * (2 * 1024 * 1024)
    out = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "-o", "-", "-w", "\n%{http_code}", "-H", f"authorization: Bearer {GW_KEY_A}", "-H", "expect: 100-continue", "--expect100-timeout", "10", "--data-binary", "@-", gw.url + "/v1/audio/curl"],
        input=data, capture_output=True, timeout=30,
    )
    text = out.stdout.decode()
    assert out.returncode == 0 and text.endswith("\n200"), (out.returncode, text[-300:], out.stderr)
    assert echo.last()["len"] == len(data)


def test_sse_response_streams_through(gw: Gateway, echo: Echo):
    times: list[float] = []
    got = b""
    with httpx.stream("GET", gw.url + "/v1/audio/sse", headers=BEARER_A, timeout=10) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
        for c in r.iter_raw():
            if c:
                times.append(time.monotonic())
                got += c
    assert got.count(b"data: ") == 5, got
    assert times[-1] - times[0] > 0.5, f"events arrived together ({times}): the answer was buffered"


# ---------------------------------------------------------------------------- timeout and retry


def test_route_timeout_is_504(gw: Gateway, echo: Echo):
    t = time.monotonic()
    r = http().get(gw.url + "/slow/slow-3000", headers=BEARER_A)
    body = assert_error_shape("openai", r, 504)
    assert "timed out" in body["error"]["message"]
    assert time.monotonic() - t < 2.5, "the route's 300 ms timeout was not applied"


def test_retry_on_connect_failure_then_success(gw: Gateway, echo: Echo):
    before = echo.count()
    r = http().get(gw.url + "/failover/x", headers=BEARER_A)
    assert r.status_code == 200, r.text
    assert echo.count() == before + 1 and echo.last()["path"] == "/alive/x"
    # Without `retry`, the dead first target is the answer.
    r = http().get(gw.url + "/no-retry/x", headers=BEARER_A)
    assert_error_shape("openai", r, 502)


def test_retry_after_send_only_when_idempotent_or_allowed(gw: Gateway, echo: Echo):
    before = echo.count()
    r = http().get(gw.url + "/after-send/g", headers=BEARER_A)
    assert r.status_code == 200, r.text
    assert [q["path"] for q in echo.requests[before:]] == ["/drop/g", "/alive/g"]
    before = echo.count()
    r = http().post(gw.url + "/after-send/p", content=b"{}", headers=BEARER_A)
    assert_error_shape("openai", r, 502)
    assert [q["path"] for q in echo.requests[before:]] == ["/drop/p"], "a POST already sent must not be replayed"
    # The gateway closes this connection after a failed proxy: it must say so,
    # or the shared keep-alive client sends the next request into the close.
    assert r.headers.get("connection") == "close", r.headers
    before = echo.count()
    r = http().post(gw.url + "/after-send-post/p", content=b"{}", headers=BEARER_A)
    assert r.status_code == 200, r.text
    assert [q["path"] for q in echo.requests[before:]] == ["/drop/p", "/alive/p"]
    assert echo.last()["len"] == 2, "the retried body was replayed whole"
    # Over Pingora's 64 KiB retry buffer the body cannot be replayed: no retry, even when allowed.
    before = echo.count()
    r = http().post(gw.url + "/after-send-post/big", content=b"b" * (200 * 1024), headers=BEARER_A)
    assert_error_shape("openai", r, 502)
    assert [q["path"] for q in echo.requests[before:]] == ["/drop/big"]


# ---------------------------------------------------------------------------- static routes


def test_static_routes(gw: Gateway, echo: Echo):
    before = echo.count()
    r = http().post(gw.url + "/api/event_logging/batch", json={"events": [1]})
    assert r.status_code == 202
    assert r.json() == {"ok": True, "items": [1, "two", None]}
    assert r.headers["x-static"] == "yes" and r.headers["content-type"] == "application/json"
    assert r.headers.get("x-request-id")
    # Static routes check the gateway key unless `auth: false`.
    assert_error_shape("openai", http().get(gw.url + "/api/user"), 401)
    r = http().get(gw.url + "/api/user", headers=BEARER_A)
    assert r.status_code == 200 and r.json() == {"id": "u1"}
    r = http().get(gw.url + "/api/empty")
    assert r.status_code == 204 and r.content == b""
    assert echo.count() == before, "static routes never reach an upstream"


# ---------------------------------------------------------------------------- provider passthrough


def test_passthrough_each_provider_kind(gw: Gateway, echo: Echo):
    cases = [
        ("/oa/v1/embeddings", "/v1/embeddings", "authorization", f"Bearer {UP_KEY}", {"authorization": f"Bearer {GW_KEY_A}"}),
        ("/oa/batches", "/v1/batches", "authorization", f"Bearer {UP_KEY}", {"authorization": f"Bearer {GW_KEY_A}"}),
        ("/anthropic/v1/messages/count_tokens", "/v1/messages/count_tokens", "x-api-key", UP_KEY, {"x-api-key": GW_KEY_A}),
        ("/gemini/v1beta/models/gemini-2.5-flash:countTokens?key=" + GW_KEY_A, "/v1beta/models/gemini-2.5-flash:countTokens", "x-goog-api-key", UP_KEY, {}),
        ("/groq/v1/audio/transcriptions", "/openai/v1/audio/transcriptions", "authorization", f"Bearer {UP_KEY}", {"x-goog-api-key": GW_KEY_A}),
    ]
    for path, want, cred_header, cred, hdrs in cases:
        r = http().post(gw.url + path, json={"model": "x", "input": "hi"}, headers=hdrs)
        assert r.status_code == 200, (path, r.text)
        rec = echo.last()
        assert rec["path"] == want, (path, rec["path"])
        assert header(rec, cred_header) == cred, (path, rec["headers"])
        assert_no_gateway_key(rec, GW_KEY_A)
        assert rec["query"] == "", "`key=` never goes upstream"
    assert header(echo.requests[-3], "anthropic-version") == "2023-06-01", "Anthropic passthrough gets the API version"
    # The gateway key is required; errors come in the provider's format.
    assert_error_shape("anthropic", http().post(gw.url + "/anthropic/v1/messages/count_tokens", json={}), 401)
    assert_error_shape("gemini", http().post(gw.url + "/gemini/v1beta/models/g:countTokens", json={}), 401)
    assert_error_shape("openai", http().get(gw.url + "/nobody/v1/models", headers=BEARER_A), 404)
    # Dot segments are refused, not sent upstream (httpx would normalise them away).
    before = echo.count()
    for raw in ["/oa/../anthropic/v1/x", "/oa/v1/%2E%2e/x"]:
        conn = HTTPConnection("127.0.0.1", gw.port, timeout=10)
        conn.request("GET", raw, headers=BEARER_A)
        resp = conn.getresponse()
        body = json.loads(resp.read())
        conn.close()
        assert resp.status == 400 and "segments" in body["error"]["message"], (raw, resp.status, body)
    assert echo.count() == before


def test_passthrough_with_the_official_sdks(gw: Gateway, echo: Echo, upstream: MockUpstream, start_gateway: StartGateway):
    a = anthropic.Anthropic(base_url=gw.url + "/anthropic", api_key=GW_KEY_A, max_retries=0)
    n = a.messages.count_tokens(model="claude-x", messages=[{"role": "user", "content": "hi"}])
    assert n.input_tokens == 7
    rec = echo.last()
    assert rec["path"] == "/v1/messages/count_tokens" and header(rec, "x-api-key") == UP_KEY
    g = genai.Client(api_key=GW_KEY_A, http_options={"base_url": gw.url + "/gemini", "api_version": "v1beta"})
    c = g.models.count_tokens(model="gemini-2.5-flash", contents="hi")
    assert c.total_tokens == 7
    rec = echo.last()
    assert rec["path"] == "/v1beta/models/gemini-2.5-flash:countTokens" and header(rec, "x-goog-api-key") == UP_KEY
    assert_no_gateway_key(rec, GW_KEY_A)
    # OpenAI embeddings through passthrough to the mock LLM upstream, untouched.
    cfg = small_config([provider("openai", "openai", upstream.openai_url, timeouts=FAST_TIMEOUTS)], [route("m", ("openai", None))], provider_passthrough={"prefix": "/p/"})
    g2 = start_gateway(cfg)
    o = openai.OpenAI(base_url=g2.url + "/p/openai/v1", api_key=GW_KEY_A, max_retries=0)
    e = o.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(e.data) == 2
    rec = upstream.last("/embeddings")
    assert rec.path == "/v1/embeddings" and rec.credential == "sk-up-1"
    assert rec.json()["input"] == ["a", "b"] and rec.json()["model"] == "text-embedding-3-small"
    assert_error_shape("openai", http().post(g2.url + "/openai/v1/embeddings", json={}, headers=BEARER_A), 404)


def test_route_metrics_and_access_log(gw: Gateway, echo: Echo):
    http().get(gw.url + "/exact/one", headers=BEARER_A)
    http().post(gw.url + "/anthropic/v1/messages/count_tokens", json={}, headers={"x-api-key": GW_KEY_A})
    http().post(gw.url + "/api/event_logging/batch", json={})
    m = parse_metrics(http().get(gw.admin_url + "/metrics").text)
    assert metric_sum(m, "aigate_requests_total", ingress="route", provider="", status="200") >= 1
    assert metric_sum(m, "aigate_requests_total", ingress="passthrough", provider="anthropic", status="200") >= 1
    assert metric_sum(m, "aigate_requests_total", ingress="static", status="202") >= 1
    assert metric_sum(m, "aigate_upstream_attempts_total", provider="anthropic", outcome="ok") >= 1
    assert metric_sum(m, "aigate_request_duration_seconds_count", ingress="passthrough", provider="anthropic") >= 1
    assert metric_sum(m, "aigate_overhead_seconds_count", ingress="route") >= 1
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and "ingress=passthrough provider=anthropic" not in gw.log_text():
        time.sleep(0.05)
    log = gw.log_text()
    assert "ingress=passthrough provider=anthropic" in log and "ingress=route" in log and "ingress=static" in log
    assert GW_KEY_A not in log and UP_KEY not in log, "a key reached the log"


def test_a_client_leaving_a_passthrough_is_counted_not_logged_as_an_error(gw: Gateway, echo: Echo):
    """A client that hangs up while the provider is still answering is the client's
    doing: counted in aigate_client_disconnects_total under the passthrough ingress
    and named on the access line, not logged as an ERROR of the gateway's."""
    def count() -> float:
        m = parse_metrics(http().get(gw.admin_url + "/metrics").text)
        return metric_sum(m, "aigate_client_disconnects_total", ingress="passthrough")

    before = count()
    mark = gw.log_size()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(gw.url + "/oa/v1/slow-800/x", json={"model": "x"}, headers=BEARER_A, timeout=0.3)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and count() < before + 1:
        time.sleep(0.05)
    assert count() == before + 1, f"aigate_client_disconnects_total{{ingress=passthrough}} went {before} -> {count()}"
    while time.monotonic() < deadline and 'error="client disconnected"' not in gw.log_text(mark):
        time.sleep(0.05)
    log = gw.log_text(mark)
    assert 'ingress=passthrough provider=oa' in log and 'error="client disconnected"' in log, log[-2000:]
    assert " ERROR " not in log, log[-2000:]
    assert http().post(gw.url + "/oa/v1/embeddings", json={"model": "x"}, headers=BEARER_A).status_code == 200


def test_config_test_reports_bad_routes(run_aigate, tmp_path: Path, echo: Echo):
    cfg = routes_config(echo, closed_port())
    cfg["routes"] += [
        {"path": "/v1/audio/*", "methods": ["get"], "target": echo.url},
        {"path": "/oa/*", "target": echo.url},
        {"path": "/x", "static": {"status": 200}, "target": echo.url},
    ]
    cfg["models"][0]["payload"] = {"overrides": {"stream": True}}
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = run_aigate("--test", "-c", str(p))
    assert r.returncode != 0
    n = len(routes_config(echo, 1)["routes"])
    for want in [f"routes[{n}].path", f"routes[{n + 1}].path", f"routes[{n + 2}].target", "models[0].payload.overrides.stream"]:
        assert want in r.stderr, (want, r.stderr)


# ---------------------------------------------------------------------------- payload rules and provider headers


def test_payload_rules_after_conversion(upstream: MockUpstream, start_gateway: StartGateway):
    providers = [
        provider("oa", "openai", upstream.openai_url, timeouts=FAST_TIMEOUTS, headers={"x-team": "blue"}),
        provider("an", "anthropic", upstream.url, timeouts=FAST_TIMEOUTS),
    ]
    models = [
        {
            "name": "ruled-*",
            "payload": {"defaults": {"temperature": 0.3, "metadata.user_id": "gw"}, "overrides": {"max_tokens": 77}, "remove": ["top_p"]},
            "targets": [{"provider": "an", "model": "claude-x", "payload": {"overrides": {"top_k": 5}, "remove": ["metadata"]}}],
        },
        {"name": "same", "payload": {"overrides": {"seed": 1, "stream_options.include_usage": True}, "defaults": {"temperature": 1.5}, "remove": ["user"]}, "targets": [{"provider": "oa", "model": "gpt-x"}]},
        route("plain", ("oa", "gpt-plain")),
    ]
    g = start_gateway(small_config(providers, models))
    o = openai.OpenAI(base_url=g.openai_url, api_key=GW_KEY_A, max_retries=0)
    # OpenAI chat in, Anthropic out: rules see the Anthropic body.
    r = o.chat.completions.create(model="ruled-1", messages=[{"role": "user", "content": "hi"}], temperature=0.9, top_p=0.5, max_tokens=10)
    assert r.choices[0].message.content
    body = upstream.last("/v1/messages").json()
    assert body["model"] == "claude-x"
    assert body["max_tokens"] == 77, "override replaces the client's value"
    assert body["temperature"] == 0.9, "a default does not replace the client's value"
    assert body["top_k"] == 5 and "top_p" not in body
    assert "metadata" not in body, "the target's `remove` runs after the entry's defaults"
    assert body["messages"][0]["role"] == "user"
    # Same format: the spliced body is edited.
    o.chat.completions.create(model="same", messages=[{"role": "user", "content": "hi"}], user="u1", stream=False)
    rec = upstream.last("/chat/completions")
    body = rec.json()
    assert body["seed"] == 1 and body["temperature"] == 1.5 and "user" not in body and body["model"] == "gpt-x"
    assert body["stream_options"] == {"include_usage": True}
    assert rec.header("x-team") == "blue", "provider `headers:` reach the upstream on AI routes"
    # No rule: bytes untouched but for the model.
    raw = b'{"model": "plain",  "messages": [{"role": "user", "content": "hi"}], "user": "u1"}'
    r2 = http().post(g.openai_url + "/chat/completions", content=raw, headers={**BEARER_A, "content-type": "application/json"})
    assert r2.status_code == 200
    assert upstream.last("/chat/completions").body == raw.replace(b'"plain"', b'"gpt-plain"')
