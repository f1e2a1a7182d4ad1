"""SPEC "Errors": every error the gateway makes itself comes in the client's format with
the SPEC status; upstream errors keep the upstream status (and, same-format, the body)."""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest

import mock_upstream as mu
from harness import GW_KEY_A, GW_KEY_B, Gateway, standard_config
from helpers import (
    CLIENT_FORMATS,
    anthropic_client,
    assert_error_shape,
    assert_gateway_key_not_forwarded,
    genai_client,
    key_headers,
    openai_client,
    post,
    raw_request,
)
from mock_upstream import MockUpstream

MODEL_FOR = {"openai-chat": "gpt-4o", "openai-responses": "gpt-4.1", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}


# ============================================================================ 401


@pytest.mark.parametrize("fmt", CLIENT_FORMATS)
def test_401_missing_key_in_client_format(gateway: Gateway, upstream: MockUpstream, fmt: str):
    r = post(gateway, fmt, MODEL_FOR[fmt], key=None)
    assert_error_shape(fmt, r, 401)
    assert upstream.requests == [], "a refused request never reaches the provider"


@pytest.mark.parametrize(
    "how,fmt",
    [("authorization", "openai-chat"), ("x-api-key", "anthropic"), ("x-goog-api-key", "gemini"), ("query", "gemini"), ("authorization", "anthropic"), ("x-api-key", "openai-chat")],
)
def test_401_unknown_key_in_each_key_header(gateway: Gateway, upstream: MockUpstream, how: str, fmt: str):
    path, body = raw_request(fmt, MODEL_FOR[fmt])
    headers = key_headers(fmt, key=None)
    bad = "sk-gw-not-a-key"
    if how == "authorization":
        headers["authorization"] = f"Bearer {bad}"
    elif how == "query":
        path += ("&" if "?" in path else "?") + "key=" + bad
    else:
        headers[how] = bad
    r = httpx.post(gateway.url + path, json=body, headers=headers, timeout=10)
    assert_error_shape(fmt, r, 401)
    assert bad not in r.text, "the error must not echo the presented key"
    assert upstream.requests == []


@pytest.mark.parametrize("how,fmt", [("authorization", "openai-chat"), ("x-api-key", "anthropic"), ("x-goog-api-key", "gemini"), ("query", "gemini"), ("x-api-key", "openai-responses")])
def test_valid_key_accepted_in_each_key_header_and_not_forwarded(gateway: Gateway, upstream: MockUpstream, how: str, fmt: str):
    path, body = raw_request(fmt, MODEL_FOR[fmt], "keyed")
    headers = key_headers(fmt, key=None)
    if how == "authorization":
        headers["authorization"] = f"Bearer {GW_KEY_A}"
    elif how == "query":
        path += ("&" if "?" in path else "?") + "key=" + GW_KEY_A
    else:
        headers[how] = GW_KEY_A
    r = httpx.post(gateway.url + path, json=body, headers=headers, timeout=20)
    assert r.status_code == 200, r.text
    rec = upstream.last()
    assert_gateway_key_not_forwarded(rec, GW_KEY_A)
    assert rec.credential == "sk-up-1"
    if how == "query":
        assert "key" not in rec.query, "?key= is a client key: removed before the request goes upstream"


def test_401_sdk_errors_are_parsed_by_each_sdk(gateway: Gateway, upstream: MockUpstream):
    with pytest.raises(openai.AuthenticationError) as e1:
        openai_client(gateway, "sk-wrong").chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert e1.value.status_code == 401
    with pytest.raises(anthropic.AuthenticationError) as e2:
        anthropic_client(gateway, "sk-wrong").messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert e2.value.status_code == 401
    from google.genai import errors as gerrors

    gc = genai_client(gateway, "sk-wrong")
    with pytest.raises(gerrors.ClientError) as e3:
        gc.models.generate_content(model="gemini-2.5-flash", contents="x")
    assert e3.value.code == 401


# ============================================================================ 403 allow-list


@pytest.mark.parametrize("fmt,model", [("openai-chat", "claude-sonnet-4-5"), ("anthropic", "claude-sonnet-4-5"), ("gemini", "gemini-2.5-flash"), ("openai-chat", "compat-model")])
def test_403_model_not_in_key_allow_list(gateway: Gateway, upstream: MockUpstream, fmt: str, model: str):
    """team-b may use gpt-* and claude-3-haiku* only."""
    r = post(gateway, fmt, model, key=GW_KEY_B)
    assert_error_shape(fmt, r, 403)
    assert upstream.requests == []


def test_allow_list_globs_admit_matching_models(gateway: Gateway, upstream: MockUpstream):
    assert post(gateway, "openai-chat", "gpt-4o", key=GW_KEY_B).status_code == 200
    r = post(gateway, "anthropic", "claude-3-haiku-20240307", key=GW_KEY_B)
    assert r.status_code == 200, r.text
    assert [x.json()["model"] for x in upstream.requests] == ["gpt-4o-upstream", "claude-3-haiku-20240307"]


# ============================================================================ 404 / 400 / 413


@pytest.mark.parametrize("fmt", CLIENT_FORMATS)
def test_404_unknown_model(gateway: Gateway, upstream: MockUpstream, fmt: str):
    r = post(gateway, fmt, "no-such-model-xyz")
    body = assert_error_shape(fmt, r, 404)
    assert "no-such-model-xyz" in json.dumps(body), "the message names the model"
    assert upstream.requests == []


def test_404_unknown_provider_in_slash_form(gateway: Gateway, upstream: MockUpstream):
    assert_error_shape("openai-chat", post(gateway, "openai-chat", "nosuchprovider/some-model"), 404)
    assert upstream.requests == []


@pytest.mark.parametrize("fmt", CLIENT_FORMATS)
def test_400_body_not_json(gateway: Gateway, upstream: MockUpstream, fmt: str):
    path, _ = raw_request(fmt, MODEL_FOR[fmt])
    r = httpx.post(gateway.url + path, content=b'{"model": "gpt-4o", "messages": [', headers=key_headers(fmt), timeout=10)
    assert_error_shape(fmt, r, 400)
    assert upstream.requests == []


@pytest.mark.parametrize("fmt", ["openai-chat", "openai-responses", "anthropic"])
def test_400_missing_model_names_the_field(gateway: Gateway, upstream: MockUpstream, fmt: str):
    path, body = raw_request(fmt, "x")
    del body["model"]
    r = httpx.post(gateway.url + path, json=body, headers=key_headers(fmt), timeout=10)
    b = assert_error_shape(fmt, r, 400)
    assert "model" in b["error"]["message"], f"the message must name the missing field: {b}"
    assert upstream.requests == []


def test_400_model_of_wrong_type_names_the_field(gateway: Gateway, upstream: MockUpstream):
    r = httpx.post(gateway.url + "/v1/chat/completions", json={"model": 42, "messages": []}, headers=key_headers("openai-chat"), timeout=10)
    b = assert_error_shape("openai-chat", r, 400)
    assert "model" in b["error"]["message"]


@pytest.fixture(scope="module")
def small_gateway(upstream_server: MockUpstream, dead_port: int, session_dir) -> Gateway:
    cfg = standard_config(upstream_server, dead_port)
    cfg["max_body_bytes"] = 4096
    g = Gateway(cfg, session_dir / "small", name="small-body-limit")
    g.start()
    yield g
    g.stop()


@pytest.mark.parametrize("fmt", CLIENT_FORMATS)
def test_413_body_over_max_body_bytes(small_gateway: Gateway, upstream: MockUpstream, fmt: str):
    path, body = raw_request(fmt, MODEL_FOR[fmt], "y" * 8192)
    r = httpx.post(small_gateway.url + path, json=body, headers=key_headers(fmt), timeout=10)
    assert_error_shape(fmt, r, 413)
    assert upstream.requests == []


def test_413_chunked_body_over_limit_and_small_body_passes(small_gateway: Gateway, upstream: MockUpstream):
    path, body = raw_request("openai-chat", "gpt-4o", "z" * 8192)
    data = json.dumps(body).encode()
    r = httpx.post(small_gateway.url + path, content=iter([data[:3000], data[3000:]]), headers=key_headers("openai-chat"), timeout=10)
    assert_error_shape("openai-chat", r, 413)
    ok = post(small_gateway, "openai-chat", "gpt-4o", text="small enough")
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "echo: small enough"


# ============================================================================ 502 / 504


@pytest.mark.parametrize("fmt,model", [("openai-chat", "dead-model"), ("anthropic", "dead-claude")])
def test_502_when_upstream_port_is_closed(gateway: Gateway, upstream: MockUpstream, fmt: str, model: str):
    r = post(gateway, fmt, model)
    assert_error_shape(fmt, r, 502)


def test_504_when_upstream_hangs_past_first_byte_timeout(gateway: Gateway, upstream: MockUpstream):
    """Provider `slowpoke` has first_byte_ms 600; the mock holds the answer for 5 s."""
    r = post(gateway, "openai-chat", "hang-model", timeout=15)
    assert_error_shape("openai-chat", r, 504)
    assert upstream.requests and upstream.requests[0].json()["model"] == "gpt-hang-5000"


def test_504_streaming_request_in_anthropic_format(gateway: Gateway, upstream: MockUpstream):
    path, body = raw_request("anthropic", "hang-claude", stream=True)
    r = httpx.post(gateway.url + path, json=body, headers=key_headers("anthropic"), timeout=15)
    assert_error_shape("anthropic", r, 504)


# ============================================================================ upstream errors


def _corpus_body(case: str) -> bytes:
    return (mu.corpus_dir() / case / "response.json").read_bytes()


def test_upstream_error_anthropic_404_passes_through_with_status(gateway: Gateway, upstream: MockUpstream):
    with pytest.raises(anthropic.NotFoundError) as ei:
        anthropic_client(gateway).messages.create(model="err-anthropic-404", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert ei.value.status_code == 404
    assert ei.value.response.content == _corpus_body("anthropic-messages/error-404-not-found")


def test_upstream_error_openai_400_passes_through_with_status(gateway: Gateway, upstream: MockUpstream):
    with pytest.raises(openai.BadRequestError) as ei:
        openai_client(gateway).chat.completions.create(model="err-openai-400", messages=[{"role": "user", "content": "x"}])
    assert ei.value.status_code == 400
    assert ei.value.response.content == _corpus_body("openai-chat/error-400-unsupported-parameter")


def test_upstream_error_responses_400_passes_through_with_status(gateway: Gateway, upstream: MockUpstream):
    r = post(gateway, "openai-responses", "err-resp-400")
    assert r.status_code == 400 and r.content == _corpus_body("openai-responses/error-400-invalid-parameter")


def test_upstream_error_gemini_404_passes_through_with_status(gateway: Gateway, upstream: MockUpstream):
    r = post(gateway, "gemini", "err-gemini-404")
    assert r.status_code == 404 and r.content == _corpus_body("gemini/error-404-model-not-found")
    assert r.json()["error"]["status"] == "NOT_FOUND"


def test_upstream_error_on_streaming_request_keeps_status(gateway: Gateway, upstream: MockUpstream):
    with pytest.raises(anthropic.NotFoundError):
        with anthropic_client(gateway).messages.stream(model="err-anthropic-404", max_tokens=8, messages=[{"role": "user", "content": "x"}]) as st:
            st.get_final_message()


def test_gateway_survives_garbage_and_keeps_serving(gateway: Gateway, upstream: MockUpstream):
    """No input crashes the process or kills other requests."""
    import socket

    junk = [b"GARBAGE\r\n\r\n", b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 5\r\n\r\n{", b"\x00\xff" * 100, b"POST /v1/messages HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]
    for j in junk:
        s = socket.create_connection(("127.0.0.1", gateway.port), timeout=3)
        try:
            s.sendall(j)
            s.shutdown(socket.SHUT_WR)
            try:
                s.recv(4096)
            except OSError:
                pass
        finally:
            s.close()
    for body in ([], "str", {"model": None}, {"model": "gpt-4o", "messages": "nope"}, {"model": ["a"]}):
        r = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=key_headers("openai-chat"), timeout=10)
        assert r.status_code == 400, f"{body!r} → {r.status_code} {r.text[:300]}"
    assert gateway.alive
    ok = post(gateway, "openai-chat", "gpt-4o", text="still here")
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "echo: still here"
    assert_gateway_key_not_forwarded(upstream.last(), GW_KEY_A)
