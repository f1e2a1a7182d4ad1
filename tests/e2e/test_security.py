"""Hostile input that must not change where a request goes or what the logs and
clients see (issue 15, "Hostile input"):

- model names never change the upstream URL: a name with characters no provider
  uses is a 400 naming `model` in the client's format (and nothing reaches the
  upstream); an accepted name with `/` (the `provider/model` and glob forms) stays
  one percent-encoded path segment of the Gemini URL;
- CR/LF and NUL in client values never forge access-log lines;
- an upstream error that echoes the credential aigate sent reaches the client with
  the credential redacted: same format, converted, and on provider passthrough.

One gateway serves the whole module, as users run it.
"""

from __future__ import annotations

import json
import time
import urllib.parse

import httpx
import pytest

from harness import GW_KEY_A, Gateway, provider, route, small_config
from helpers import CLIENT_FORMATS, assert_error_shape, error_message, key_headers, raw_request
from mock_upstream import MockUpstream

UPSTREAM_KEY = "sk-up-1"


@pytest.fixture(scope="module")
def gw(upstream_server: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    mock = upstream_server
    cfg = small_config(
        [
            provider("openai", "openai", mock.openai_url),
            provider("anthropic", "anthropic", mock.url),
            provider("gemini", "gemini", mock.url),
        ],
        [
            route("gem-*", ("gemini", None)),
            route("gpt-echo", ("openai", "gpt-fail-401-echokey")),
            route("claude-echo", ("anthropic", "claude-fail-401-echokey")),
            route("gemini-echo", ("gemini", "gemini-fail-400-echokey")),
            route("gpt-4o", ("openai", "gpt-4o-upstream")),
        ],
        # A 401 must not rest the only credential between the module's requests.
        cooldown={"rate_limited_seconds": 1, "auth_failed_seconds": 0},
        provider_passthrough={"enabled": True, "prefix": "/p/"},
    )
    g = Gateway(cfg, tmp_path_factory.mktemp("security"), name="security")
    g.start()
    yield g
    g.stop()


def _send(gw: Gateway, fmt: str, model: str, stream: bool = False) -> httpx.Response:
    path, body = raw_request(fmt, model, "hello", stream)
    if fmt == "gemini":
        # The model is in the path: percent-encode it as a client library would.
        path = path.replace(model, urllib.parse.quote(model, safe=""), 1)
    # json.dumps keeps control characters escaped inside the JSON string.
    return httpx.post(gw.url + path, content=json.dumps(body), headers=key_headers(fmt), timeout=10)


HOSTILE_MODELS = [
    "gem-x/../../../v1/evil",
    "gemini/x/../../../upload/v1beta/files?alt=json&",
    "gem-x?alt=json",
    "gem-x#frag",
    "gem-%2e%2e",
    "gem x",
    "gpt-4o\r\nX-Evil: 1",
    "gpt-4o\x00",
    "..",
    "gem-" + "x" * 300,
]


@pytest.mark.parametrize("fmt", CLIENT_FORMATS)
def test_hostile_model_names_are_refused_before_any_upstream(gw: Gateway, upstream_server: MockUpstream, fmt: str) -> None:
    before = len(upstream_server.requests)
    for model in HOSTILE_MODELS:
        resp = _send(gw, fmt, model)
        assert resp.status_code in (400, 404), f"{model!r}: {resp.status_code} {resp.text[:300]}"
        body = assert_error_shape(fmt, resp, resp.status_code)
        if resp.status_code == 400:
            assert "model" in error_message(fmt, body).lower(), f"{model!r}: the 400 must name `model`: {resp.text[:300]}"
        else:
            # Only the Gemini client format can get here: its router refuses a path
            # whose model part has a '/' or '?' as no Gemini endpoint at all.
            assert fmt == "gemini", f"{model!r}: {resp.status_code} {resp.text[:300]}"
    after = upstream_server.requests[before:]
    assert not after, f"hostile model names reached the upstream: {[(r.path, r.model) for r in after]}"


def test_slashes_stay_inside_one_gemini_path_segment(gw: Gateway, upstream_server: MockUpstream) -> None:
    # `gem-*` has no model mapping: the client's name goes upstream as it is.
    for fmt in ("openai-chat", "anthropic"):
        before = len(upstream_server.requests)
        resp = _send(gw, fmt, "gem-x/y:z")
        assert resp.status_code == 200, resp.text[:300]
        recs = upstream_server.requests[before:]
        assert [r.raw_path for r in recs] == ["/v1beta/models/gem-x%2Fy%3Az:generateContent"], [r.raw_path for r in recs]
        assert recs[0].query == {}, recs[0].query


@pytest.mark.parametrize("fmt", CLIENT_FORMATS)
def test_access_lines_cannot_be_forged(gw: Gateway, fmt: str) -> None:
    mark = gw.log_size()
    resp = _send(gw, fmt, "gpt-4o\r\nX-Evil: 1 [2026-01-01T00:00:00Z INFO access] request_id=forged")
    assert resp.status_code in (400, 404)
    resp = _send(gw, fmt, "gpt-4o")
    assert resp.status_code == 200, resp.text[:300]
    # The access line is written after the answer went out: wait (bounded) for both.
    deadline = time.monotonic() + 5
    while True:
        log = gw.log_text(mark)
        if log.count(" INFO access] ") >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    lines = log.splitlines()
    assert not [l for l in lines if l.startswith("X-Evil") or "request_id=forged" in l and not l.startswith("[")], log
    access = [l for l in lines if " INFO access] " in l]
    # One line per request, each starting with its own timestamp.
    assert len(access) == 2, log
    assert all(l.startswith("[") for l in access), log


@pytest.mark.parametrize(
    "fmt,model",
    [
        ("openai-chat", "gpt-echo"),  # same format: relayed as it came, but redacted
        ("anthropic", "gpt-echo"),  # converted: re-wrapped in Anthropic's shape
        ("anthropic", "claude-echo"),
        ("openai-responses", "claude-echo"),
        ("gemini", "gemini-echo"),
        ("openai-chat", "gemini-echo"),
    ],
)
def test_upstream_errors_echoing_the_credential_are_redacted(gw: Gateway, upstream_server: MockUpstream, fmt: str, model: str) -> None:
    before = len(upstream_server.requests)
    resp = _send(gw, fmt, model)
    recs = upstream_server.requests[before:]
    assert recs and recs[-1].credential == UPSTREAM_KEY, "the upstream must have been asked (with the real credential)"
    assert UPSTREAM_KEY.encode() in bytes(recs[-1].response_bytes), "the mock must have echoed the credential"
    assert resp.status_code in (400, 401), resp.text[:300]
    assert_error_shape(fmt, resp, resp.status_code)
    assert UPSTREAM_KEY not in resp.text, f"credential relayed to the client: {resp.text}"
    assert "[REDACTED]" in resp.text, resp.text
    assert UPSTREAM_KEY not in gw.log_text(), "credential in the gateway log"


@pytest.mark.parametrize(
    "path,body,headers",
    [
        ("/p/openai/v1/chat/completions", {"model": "gpt-fail-401-echokey", "messages": [{"role": "user", "content": "hi"}]}, {"authorization": f"Bearer {GW_KEY_A}"}),
        ("/p/anthropic/v1/messages", {"model": "claude-fail-401-echokey", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}, {"x-api-key": GW_KEY_A, "anthropic-version": "2023-06-01"}),
        ("/p/gemini/v1beta/models/gemini-fail-400-echokey:generateContent", {"contents": [{"parts": [{"text": "hi"}]}]}, {"x-goog-api-key": GW_KEY_A}),
    ],
)
def test_passthrough_errors_echoing_the_credential_are_redacted(gw: Gateway, upstream_server: MockUpstream, path: str, body: dict, headers: dict) -> None:
    before = len(upstream_server.requests)
    resp = httpx.post(gw.url + path, json=body, headers=headers, timeout=10)
    recs = upstream_server.requests[before:]
    assert recs and recs[-1].credential == UPSTREAM_KEY, "the upstream must have been asked (with the real credential)"
    assert UPSTREAM_KEY.encode() in bytes(recs[-1].response_bytes), "the mock must have echoed the credential"
    assert resp.status_code in (400, 401), resp.text[:300]
    assert UPSTREAM_KEY not in resp.text, f"credential relayed to the client: {resp.text}"
    assert "[REDACTED]" in resp.text, resp.text
    # Still the provider's own error, as JSON.
    assert "error" in resp.json(), resp.text
    # The connection stays usable: the next request on it is answered.
    ok = httpx.post(gw.url + "/p/openai/v1/chat/completions", json={"model": "gpt-4o-upstream", "messages": [{"role": "user", "content": "hi"}]}, headers={"authorization": f"Bearer {GW_KEY_A}"}, timeout=10)
    assert ok.status_code == 200 and UPSTREAM_KEY not in ok.text, ok.text[:300]
