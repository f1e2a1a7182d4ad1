"""Issue 14: HTTP/2 to upstreams, per provider (`http2: true`, off by default).

The upstream is `h2_upstream.H2Upstream`: OpenAI's and Anthropic's wire format over
TLS, HTTP/2 when ALPN picks `h2`, HTTP/1.1 otherwise; over plain TCP, h2c when the
connection opens with the HTTP/2 preface. It records the protocol of every request
and the connection it came on, so each test asserts what went over the wire.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import anthropic
import httpx
import openai
import pytest

from h2_upstream import H2Upstream
from harness import GW_KEY_A, Gateway, provider, route, small_config
from helpers import assert_error_shape, chat_stream_text
from mock_upstream import MockUpstream
from test_tls import Pki

H = {"authorization": f"Bearer {GW_KEY_A}", "content-type": "application/json"}
# Held answers wait for the last request of a batch: a first byte may take seconds.
T = {"connect_ms": 2000, "first_byte_ms": 20000, "idle_ms": 20000, "total_ms": 30000}


@pytest.fixture(scope="module")
def upstream_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("h2pki"), "upstream")


@pytest.fixture
def h2_mock(upstream_pki: Pki) -> Iterator[Callable[..., H2Upstream]]:
    made: list[H2Upstream] = []

    def make(tls: bool = True, alpn: tuple[str, ...] = ("h2", "http/1.1")) -> H2Upstream:
        m = H2Upstream(tls=upstream_pki.server_context("127.0.0.1") if tls else None, alpn=alpn).start()
        made.append(m)
        return m

    yield make
    for m in made:
        m.stop()


def providers_on(mock: H2Upstream, ca: str | None, **extra: Any) -> list[dict]:
    """An OpenAI and an Anthropic provider on the mock (TLS trusted by `ca`)."""
    tls = {"ca_file": ca} if ca else {}
    return [
        provider("oa", "openai", mock.openai_url, timeouts=T, **tls, **extra),
        provider("an", "anthropic", mock.url, timeouts=T, **tls, **extra),
    ]


def chat(text: str, model: str, stream: bool = False) -> dict:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
    return body


def test_http2_provider_json_converted_stream_and_passthrough_go_over_h2(start_gateway: Callable[..., Gateway], h2_mock: Callable[..., H2Upstream], upstream_pki: Pki) -> None:
    mock = h2_mock()
    models = [route("chat-m", ("oa", "gpt-up")), route("claude-m", ("an", "claude-up"))]
    routes = [{"path": "/v1/files/*", "provider": "an"}]
    cfg = small_config(providers_on(mock, upstream_pki.ca_file, http2=True), models, routes=routes, provider_passthrough={"enabled": True, "prefix": "/"})
    gw = start_gateway(cfg)

    # A JSON chat completion, same format.
    oa = openai.OpenAI(base_url=gw.openai_url, api_key=GW_KEY_A, max_retries=0, timeout=20)
    r = oa.chat.completions.create(model="chat-m", messages=[{"role": "user", "content": "over h2"}])
    assert r.choices[0].message.content == "echo: over h2"
    seen = mock.requests[-1]
    assert (seen.protocol, seen.path, seen.status) == ("HTTP/2", "/v1/chat/completions", 200)
    assert seen.headers[":authority"] == f"127.0.0.1:{mock.port}" and seen.headers[":scheme"] == "https"
    assert seen.headers["authorization"] == "Bearer sk-up-1"
    assert seen.json()["model"] == "gpt-up"

    # A stream converted: OpenAI client, Anthropic upstream over h2.
    chunks = list(oa.chat.completions.create(model="claude-m", messages=[{"role": "user", "content": "stream over h2"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: stream over h2"
    seen = mock.requests[-1]
    assert (seen.protocol, seen.path) == ("HTTP/2", "/v1/messages")
    assert seen.json()["stream"] is True and seen.headers["x-api-key"] == "sk-up-1"
    assert seen.headers["anthropic-version"]

    # The Anthropic client on its own format, JSON.
    an = anthropic.Anthropic(base_url=gw.url, api_key=GW_KEY_A, max_retries=0, timeout=20)
    m = an.messages.create(model="claude-m", max_tokens=16, messages=[{"role": "user", "content": "claude h2"}])
    assert m.content[0].text == "echo: claude h2"
    assert mock.requests[-1].protocol == "HTTP/2"

    # Provider passthrough and a configured route naming the provider dial the same peer.
    with httpx.Client(base_url=gw.url, timeout=20) as c:
        r = c.post("/an/v1/messages", json={"model": "claude-up", "max_tokens": 20, "messages": [{"role": "user", "content": "pass h2"}]}, headers=H)
        assert r.status_code == 200, r.text
        assert r.json()["content"][0]["text"] == "echo: pass h2"
        seen = mock.requests[-1]
        assert (seen.protocol, seen.path, seen.headers["x-api-key"]) == ("HTTP/2", "/v1/messages", "sk-up-1")
        r = c.post("/oa/v1/chat/completions", json=chat("pass stream", "gpt-up", stream=True), headers=H)
        assert r.status_code == 200, r.text
        assert chat_stream_text(r.text)[0] == "echo: pass stream"
        assert mock.requests[-1].protocol == "HTTP/2"
        r = c.post("/v1/files/x/messages", json={"model": "claude-up", "max_tokens": 20, "messages": [{"role": "user", "content": "route h2"}]}, headers=H)
        assert r.status_code == 200, r.text
        assert (mock.requests[-1].protocol, mock.requests[-1].path) == ("HTTP/2", "/v1/files/x/messages")

    # One after another, every request rode one h2 connection.
    assert len(mock.requests) == 6
    assert {s.conn for s in mock.requests} == {1} and mock.connections == 1


def test_http2_clients_through_a_tls_listener_to_an_http2_upstream(tmp_path: Path, h2_mock: Callable[..., H2Upstream], upstream_pki: Pki) -> None:
    """HTTP/2 on both sides: the client's h2 request becomes an h2 request upstream."""
    mock = h2_mock()
    _, cert_pem, key_pem = upstream_pki.leaf("127.0.0.1")
    cf, kf = tmp_path / "gw.pem", tmp_path / "gw.key"
    cf.write_bytes(cert_pem)
    kf.write_bytes(key_pem)
    models = [route("chat-m", ("oa", "gpt-up")), route("claude-m", ("an", "claude-up"))]
    cfg = small_config(providers_on(mock, upstream_pki.ca_file, http2=True), models, tls={"cert_file": str(cf), "key_file": str(kf)}, provider_passthrough={"enabled": True, "prefix": "/"})
    gw = Gateway(cfg, tmp_path / "gw", name="h2both", tls_ca=upstream_pki.ca_file).start()
    try:
        with gw.client(http2=True) as c:
            r = c.post("/v1/chat/completions", json=chat("both h2", "chat-m"), headers=H)
            assert (r.status_code, r.http_version) == (200, "HTTP/2"), r.text
            assert r.json()["choices"][0]["message"]["content"] == "echo: both h2"
            with c.stream("POST", "/v1/chat/completions", json=chat("both stream", "claude-m", stream=True), headers=H) as s:
                assert (s.status_code, s.http_version) == (200, "HTTP/2")
                text = "".join(s.iter_text())
            assert chat_stream_text(text)[0] == "echo: both stream"
            r = c.post("/an/v1/messages", json={"model": "claude-up", "max_tokens": 20, "messages": [{"role": "user", "content": "both pass"}]}, headers=H)
            assert (r.status_code, r.http_version) == (200, "HTTP/2"), r.text
            assert r.json()["content"][0]["text"] == "echo: both pass"
    finally:
        gw.stop()
    got = [(s.protocol, s.path) for s in mock.requests]
    assert got == [("HTTP/2", "/v1/chat/completions"), ("HTTP/2", "/v1/messages"), ("HTTP/2", "/v1/messages")], got


def test_concurrent_requests_share_one_h2_connection(start_gateway: Callable[..., Gateway], h2_mock: Callable[..., H2Upstream], upstream_pki: Pki) -> None:
    """Requests in flight together are streams of one connection: each is held by the
    mock until all have arrived, so all are open at once."""
    mock = h2_mock()
    models = [route("held", ("oa", "gpt-hold")), route("held-claude", ("an", "claude-hold"))]
    gw = start_gateway(small_config(providers_on(mock, upstream_pki.ca_file, http2=True), models))
    n = 6
    results: list[Any] = [None] * n

    def ask(i: int) -> None:
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            model = "held" if i % 2 == 0 else "held-claude"
            r = c.post("/v1/chat/completions", json=chat(f"n{i}", model, stream=i % 3 == 0), headers=H)
            results[i] = (r.status_code, r.text)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(n)]
    for i, t in enumerate(threads):
        t.start()
        mock.wait_held(i + 1)
    mock.release.set()
    for t in threads:
        t.join(30)
    for i, (status, text) in enumerate(results):
        assert status == 200, text
        assert f"echo: n{i}" in (text if i % 3 else chat_stream_text(text)[0]), text
    assert [s.protocol for s in mock.requests] == ["HTTP/2"] * n
    assert mock.connections == 1
    assert max(s.open_on_conn for s in mock.requests) == n


def test_a_client_leaving_resets_its_h2_stream_and_the_connection_stays(start_gateway: Callable[..., Gateway], h2_mock: Callable[..., H2Upstream], upstream_pki: Pki) -> None:
    mock = h2_mock()
    models = [route("slow-m", ("an", "claude-slow-300")), route("chat-m", ("oa", "gpt-up"))]
    gw = start_gateway(small_config(providers_on(mock, upstream_pki.ca_file, http2=True), models))
    with httpx.Client(base_url=gw.url, timeout=20) as c:
        with c.stream("POST", "/v1/chat/completions", json=chat("leave early please", "slow-m", stream=True), headers=H) as s:
            assert s.status_code == 200
            next(s.iter_raw())  # a first event, then the client goes
    deadline = time.monotonic() + 5
    while not mock.requests[0].reset and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mock.requests[0].reset, "the upstream stream was not reset"
    # The connection itself is kept: the next request is another stream on it.
    with httpx.Client(base_url=gw.url, timeout=20) as c:
        r = c.post("/v1/chat/completions", json=chat("still here", "chat-m"), headers=H)
        assert r.status_code == 200, r.text
    assert [(s.protocol, s.conn) for s in mock.requests] == [("HTTP/2", 1), ("HTTP/2", 1)]
    assert mock.connections == 1


def test_a_5xx_from_the_h2_upstream_falls_back_to_the_next_target(start_gateway: Callable[..., Gateway], h2_mock: Callable[..., H2Upstream], upstream_pki: Pki) -> None:
    mock = h2_mock()
    models = [route("m", ("oa", "gpt-fail-500"), ("an", "claude-up"))]
    gw = start_gateway(small_config(providers_on(mock, upstream_pki.ca_file, http2=True), models))
    with httpx.Client(base_url=gw.url, timeout=20) as c:
        r = c.post("/v1/chat/completions", json=chat("after a 500", "m"), headers=H)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "echo: after a 500"
    got = [(s.protocol, s.path, s.status) for s in mock.requests]
    assert got == [("HTTP/2", "/v1/chat/completions", 500), ("HTTP/2", "/v1/messages", 200)], got


def test_without_http2_the_same_upstream_is_reached_over_http1(start_gateway: Callable[..., Gateway], h2_mock: Callable[..., H2Upstream], upstream_pki: Pki) -> None:
    mock = h2_mock()
    models = [route("chat-m", ("oa", "gpt-up")), route("claude-m", ("an", "claude-up"))]
    gw = start_gateway(small_config(providers_on(mock, upstream_pki.ca_file), models, provider_passthrough={"enabled": True, "prefix": "/"}))
    with httpx.Client(base_url=gw.url, timeout=20) as c:
        r = c.post("/v1/chat/completions", json=chat("over h1", "chat-m"), headers=H)
        assert (r.status_code, r.json()["choices"][0]["message"]["content"]) == (200, "echo: over h1"), r.text
        r = c.post("/v1/chat/completions", json=chat("h1 stream", "claude-m", stream=True), headers=H)
        assert chat_stream_text(r.text)[0] == "echo: h1 stream"
        r = c.post("/an/v1/messages", json={"model": "claude-up", "max_tokens": 20, "messages": [{"role": "user", "content": "pass h1"}]}, headers=H)
        assert r.status_code == 200, r.text
    assert [s.protocol for s in mock.requests] == ["HTTP/1.1"] * 3


def test_http2_on_a_tls_server_without_h2_falls_back_to_http1_by_alpn(start_gateway: Callable[..., Gateway], h2_mock: Callable[..., H2Upstream], upstream_pki: Pki) -> None:
    mock = h2_mock(alpn=("http/1.1",))
    models = [route("chat-m", ("oa", "gpt-up")), route("claude-m", ("an", "claude-up"))]
    gw = start_gateway(small_config(providers_on(mock, upstream_pki.ca_file, http2=True), models, provider_passthrough={"enabled": True, "prefix": "/"}))
    with httpx.Client(base_url=gw.url, timeout=20) as c:
        r = c.post("/v1/chat/completions", json=chat("h1 by alpn", "chat-m"), headers=H)
        assert (r.status_code, r.json()["choices"][0]["message"]["content"]) == (200, "echo: h1 by alpn"), r.text
        r = c.post("/v1/chat/completions", json=chat("h1 stream", "claude-m", stream=True), headers=H)
        assert chat_stream_text(r.text)[0] == "echo: h1 stream"
        r = c.post("/an/v1/messages", json={"model": "claude-up", "max_tokens": 20, "messages": [{"role": "user", "content": "pass"}]}, headers=H)
        assert r.status_code == 200, r.text
    assert [s.protocol for s in mock.requests] == ["HTTP/1.1"] * 3
    # Kept-alive HTTP/1.1 connections as without `http2`: the three used one.
    assert mock.connections == 1


def test_http2_over_plain_http_is_h2c_with_prior_knowledge(start_gateway: Callable[..., Gateway], h2_mock: Callable[..., H2Upstream]) -> None:
    mock = h2_mock(tls=False)
    assert mock.url.startswith("http://")
    providers = [provider("local", "openai-compatible", mock.openai_url, timeouts=T, http2=True), provider("plain", "openai-compatible", mock.openai_url, timeouts=T)]
    models = [route("local-m", ("local", "gpt-up")), route("plain-m", ("plain", "gpt-up"))]
    gw = start_gateway(small_config(providers, models))
    with httpx.Client(base_url=gw.url, timeout=20) as c:
        r = c.post("/v1/chat/completions", json=chat("h2c", "local-m"), headers=H)
        assert (r.status_code, r.json()["choices"][0]["message"]["content"]) == (200, "echo: h2c"), r.text
        r = c.post("/v1/messages", json={"model": "local-m", "max_tokens": 20, "stream": True, "messages": [{"role": "user", "content": "h2cstream"}]}, headers={"x-api-key": GW_KEY_A, "anthropic-version": "2023-06-01"})
        assert r.status_code == 200 and "h2cstream" in r.text, r.text
        r = c.post("/v1/chat/completions", json=chat("plain", "plain-m"), headers=H)
        assert r.status_code == 200, r.text
    seen = [(s.protocol, s.headers.get(":scheme")) for s in mock.requests]
    assert seen == [("HTTP/2", "http"), ("HTTP/2", "http"), ("HTTP/1.1", None)], seen


def test_h2c_to_a_server_without_it_fails_the_attempt_and_falls_back(start_gateway: Callable[..., Gateway], upstream: MockUpstream) -> None:
    """`mock_upstream` speaks HTTP/1.1 only: prior knowledge is wrong there, the
    attempt fails in the client's format, and fallback applies."""
    providers = [provider("wrong", "openai-compatible", upstream.openai_url, timeouts=T, http2=True), provider("right", "openai-compatible", upstream.openai_url, timeouts=T)]
    models = [route("only-m", ("wrong", "gpt-up")), route("fb-m", ("wrong", "gpt-up"), ("right", "gpt-after"))]
    gw = start_gateway(small_config(providers, models))
    with httpx.Client(base_url=gw.url, timeout=20) as c:
        r = c.post("/v1/chat/completions", json=chat("x", "only-m"), headers=H)
        assert_error_shape("openai-chat", r, 502)
        r = c.post("/v1/chat/completions", json=chat("fell back", "fb-m"), headers=H)
        assert (r.status_code, r.json()["choices"][0]["message"]["content"]) == (200, "echo: fell back"), r.text
    assert [q.model for q in upstream.requests] == ["gpt-after"]


def test_http2_must_be_a_boolean(run_aigate: Callable[..., Any], tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("providers:\n  - {name: a, kind: openai, credentials: [{key: k}], http2: h2}\n")
    r = run_aigate("--test", "-c", str(p))
    assert r.returncode != 0
    assert "providers[0].http2" in r.stderr, r.stderr
