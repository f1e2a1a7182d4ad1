"""Issue 2, "How it is shown": the real aigate binary in front of the mock upstream.

Same-format proxying for the four client formats with their official SDKs, byte
passthrough, routing, fallback, credential rotation, large bodies, SSE arriving event
by event, /v1/models, health, metrics, request ids and debug headers.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter

import httpx
import pytest
from google.genai import types as gtypes

import mock_upstream as mu
from harness import GW_KEY_A, GW_KEY_B, GW_KEY_LIMITED, Gateway
from helpers import (
    anthropic_client,
    assert_gateway_key_not_forwarded,
    genai_client,
    key_headers,
    metric_sum,
    metric_types,
    openai_client,
    parse_metrics,
    post,
    raw_request,
    stream_event_times,
)
from mock_upstream import USAGE, USAGE_THINK, MockUpstream


def assert_upstream_auth(rec: mu.Recorded, kind: str, key: str = "sk-up-1") -> None:
    """The provider credential is injected the way the provider expects (SPEC, providers)."""
    if kind == "openai":
        assert rec.header("authorization") == f"Bearer {key}", rec.headers
    elif kind == "anthropic":
        assert rec.header("x-api-key") == key, rec.headers
        assert rec.header("anthropic-version"), "anthropic-version must reach Anthropic"
    else:
        assert rec.header("x-goog-api-key") == key, rec.headers
    assert rec.credential == key


# ============================================================================ same format, official SDKs


def test_openai_chat_sdk_same_format_non_streaming(gateway: Gateway, upstream: MockUpstream):
    r = openai_client(gateway).chat.completions.create(model="gpt-4o", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello gateway"}])
    assert r.choices[0].message.content == "echo: hello gateway"
    assert r.choices[0].finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.prompt_tokens_details.cached_tokens) == (USAGE["input"], USAGE["output"], USAGE["cached"])
    rec = upstream.last()
    assert rec.path == "/v1/chat/completions"
    assert rec.json()["model"] == "gpt-4o-upstream", "model must be rewritten to the target's model"
    assert rec.json()["messages"][0] == {"role": "system", "content": "be brief"}
    assert_upstream_auth(rec, "openai")
    assert_gateway_key_not_forwarded(rec, GW_KEY_A)


def test_openai_chat_sdk_same_format_streaming_with_usage(gateway: Gateway, upstream: MockUpstream):
    chunks = list(openai_client(gateway).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "stream through"}], stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: stream through"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage is not None and (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (USAGE["input"], USAGE["output"])
    rec = upstream.last()
    assert rec.json()["model"] == "gpt-4o-upstream" and rec.json()["stream"] is True
    assert_upstream_auth(rec, "openai")
    assert_gateway_key_not_forwarded(rec, GW_KEY_A)


def test_openai_responses_sdk_same_format_non_streaming(gateway: Gateway, upstream: MockUpstream):
    r = openai_client(gateway).responses.create(model="gpt-4.1", input="hello responses", instructions="be brief")
    assert r.output_text == "echo: hello responses"
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.input_tokens_details.cached_tokens) == (USAGE["input"], USAGE["output"], USAGE["cached"])
    rec = upstream.last()
    assert rec.path == "/v1/responses"
    assert rec.json()["model"] == "gpt-4.1-upstream" and rec.json()["instructions"] == "be brief"
    assert_upstream_auth(rec, "openai")
    assert_gateway_key_not_forwarded(rec, GW_KEY_A)


def test_openai_responses_sdk_same_format_streaming(gateway: Gateway, upstream: MockUpstream):
    events = list(openai_client(gateway).responses.create(model="gpt-4.1", input="stream responses", stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "echo: stream responses"
    assert events[-1].response.usage.output_tokens == USAGE["output"]
    rec = upstream.last()
    assert rec.path == "/v1/responses" and rec.json()["model"] == "gpt-4.1-upstream"
    assert_upstream_auth(rec, "openai")
    assert_gateway_key_not_forwarded(rec, GW_KEY_A)


def test_anthropic_sdk_same_format_non_streaming(gateway: Gateway, upstream: MockUpstream):
    c = anthropic_client(gateway)
    r = c.messages.create(model="claude-sonnet-4-5", max_tokens=64, system="be brief", messages=[{"role": "user", "content": "hello claude"}])
    assert r.content[0].text == "echo: hello claude" and r.stop_reason == "end_turn"
    assert (r.usage.input_tokens, r.usage.cache_read_input_tokens, r.usage.output_tokens) == (USAGE["input"] - USAGE["cached"], USAGE["cached"], USAGE["output"])
    rec = upstream.last()
    assert rec.path == "/v1/messages"
    assert rec.json()["model"] == "claude-sonnet-4-5-upstream" and rec.json()["system"] == "be brief"
    assert_upstream_auth(rec, "anthropic")
    # The SDK sent its own anthropic-version; the gateway keeps a client's value.
    assert rec.header("anthropic-version") == c.default_headers["anthropic-version"]
    assert_gateway_key_not_forwarded(rec, GW_KEY_A)


def test_anthropic_sdk_same_format_streaming(gateway: Gateway, upstream: MockUpstream):
    with anthropic_client(gateway).messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "stream claude"}]) as st:
        final = st.get_final_message()
    assert final.content[0].text == "echo: stream claude" and final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (USAGE["input"] - USAGE["cached"], USAGE["output"])
    rec = upstream.last()
    assert rec.json()["model"] == "claude-sonnet-4-5-upstream" and rec.json()["stream"] is True
    assert_upstream_auth(rec, "anthropic")
    assert_gateway_key_not_forwarded(rec, GW_KEY_A)


def test_gemini_sdk_same_format_non_streaming(gateway: Gateway, upstream: MockUpstream):
    gc = genai_client(gateway)
    r = gc.models.generate_content(model="gemini-2.5-flash", contents="hello gemini", config=gtypes.GenerateContentConfig(system_instruction="be brief"))
    assert r.text == "echo: hello gemini"
    u = r.usage_metadata
    assert (u.prompt_token_count, u.candidates_token_count, u.cached_content_token_count) == (USAGE["input"], USAGE["output"], USAGE["cached"])
    rec = upstream.last()
    assert rec.path == "/v1beta/models/gemini-2.5-flash-upstream:generateContent", "Gemini carries the (rewritten) model in the path"
    assert_upstream_auth(rec, "gemini")
    assert "key" not in rec.query
    assert_gateway_key_not_forwarded(rec, GW_KEY_A)


def test_gemini_sdk_same_format_streaming(gateway: Gateway, upstream: MockUpstream):
    gc = genai_client(gateway)
    chunks = list(gc.models.generate_content_stream(model="gemini-2.5-flash", contents="stream gemini now"))
    assert "".join(c.text or "" for c in chunks) == "echo: stream gemini now"
    assert len(chunks) > 1, "a stream of several chunks was expected"
    assert chunks[-1].usage_metadata.candidates_token_count == USAGE["output"]
    rec = upstream.last()
    assert rec.path == "/v1beta/models/gemini-2.5-flash-upstream:streamGenerateContent"
    assert rec.query.get("alt") == ["sse"]
    assert_upstream_auth(rec, "gemini")
    assert_gateway_key_not_forwarded(rec, GW_KEY_A)


def test_gemini_sdk_without_api_version_as_in_readme(gateway: Gateway, upstream: MockUpstream):
    """google-genai with only `base_url` (README snippet) calls /v1/models/...; the gateway
    serves that path too and still calls the provider's /v1beta API."""
    from google import genai

    gc = genai.Client(api_key=GW_KEY_A, http_options={"base_url": gateway.url})
    r = gc.models.generate_content(model="gemini-2.5-flash", contents="readme")
    assert r.text == "echo: readme"
    assert upstream.last().path == "/v1beta/models/gemini-2.5-flash-upstream:generateContent"


# ============================================================================ bytes pass through untouched

# Deliberately odd but valid JSON: spacing, key order, escapes, raw UTF-8, numbers in
# several spellings, and a field no provider knows. Only the model value may change.
ODD_BODIES = {
    "openai-chat": ("/v1/chat/completions", "gpt-4o", "gpt-4o-upstream", b'{\n  "messages" : [ {"role":"user","content":"caf\\u00e9 \xe2\x98\x95 \\"q\\""} ],\n  "model":"gpt-4o",  "temperature": 0.50, "x_unknown": {"keep": [1, 2.0, 3e0, null]}\n}\n'),
    "openai-responses": ("/v1/responses", "gpt-4.1", "gpt-4.1-upstream", b'{"input":[{"role":"user","content":[{"type":"input_text","text":"\xc3\xa9t\xc3\xa9"}]}],\t"model" :"gpt-4.1","top_p":1.0E0 ,"x_unknown":true}'),
    "anthropic": ("/v1/messages", "claude-sonnet-4-5", "claude-sonnet-4-5-upstream", b'{"max_tokens":  64,"model": "claude-sonnet-4-5",\r\n"messages":[{"role":"user","content":[{"type":"text","text":"\\u2603 snow","cache_control":{"type":"ephemeral"}}]}],"metadata":{"user_id":"u-1"}}'),
    "gemini": ("/v1beta/models/gemini-2.5-flash:generateContent", None, None, b'{ "contents": [{"role":"user","parts":[{"text":"\xe6\x97\xa5\xe6\x9c\xac"}]}], "generationConfig": {"temperature": 0.25, "topK": 40} }'),
}


@pytest.mark.parametrize("fmt", list(ODD_BODIES))
def test_same_format_request_body_bytes_untouched_except_model(gateway: Gateway, upstream: MockUpstream, fmt: str):
    path, model, target, body = ODD_BODIES[fmt]
    r = httpx.post(gateway.url + path, content=body, headers=key_headers(fmt), timeout=20)
    assert r.status_code == 200, r.text
    rec = upstream.last()
    expected = body
    if model is not None:
        old = json.dumps(model).encode()
        assert body.count(old) == 1
        expected = body.replace(old, json.dumps(target).encode())
    assert rec.body == expected, f"upstream body differs from the client's beyond the model value:\nsent     {body!r}\nexpected {expected!r}\ngot      {rec.body!r}"


def test_same_format_body_identical_when_target_model_equals_requested(gateway: Gateway, upstream: MockUpstream):
    body = b'{"model":"gpt-4o-same","messages":[{"role":"user","content":"same"}],  "n":1}'
    r = httpx.post(gateway.url + "/v1/chat/completions", content=body, headers=key_headers("openai-chat"), timeout=20)
    assert r.status_code == 200, r.text
    assert upstream.last().body == body


@pytest.mark.parametrize(
    "fmt,model,corpus_case",
    [
        ("openai-chat", "corpus-chat-json", "openai-chat/text-basic"),
        ("openai-chat", "corpus-chat-stream", "openai-chat/stream-parallel-tool-calls"),
        ("openai-responses", "corpus-resp-stream", "openai-responses/stream-text"),
        ("anthropic", "corpus-claude-json", "anthropic-messages/thinking"),
        ("anthropic", "corpus-claude-stream", "anthropic-messages/stream-thinking"),
        ("gemini", "corpus-gemini-json", "gemini/text-system-instruction"),
        ("gemini", "corpus-gemini-stream", "gemini/stream-text"),
    ],
)
def test_same_format_response_bytes_pass_through_untouched(gateway: Gateway, upstream: MockUpstream, fmt: str, model: str, corpus_case: str):
    """Recorded provider answers (incl. Anthropic's padding and Gemini's CRLF events) reach the client byte for byte."""
    d = mu.corpus_dir() / corpus_case
    meta = json.loads((d / "meta.json").read_text())
    expected = (d / ("response.sse" if meta["stream"] else "response.json")).read_bytes()
    path, body = raw_request(fmt, model, "replay", stream=meta["stream"])
    if fmt == "openai-chat" and meta["stream"]:
        # The recording was made with include_usage; without it aigate would
        # ask for usage itself and keep the usage chunk from the client.
        body["stream_options"] = {"include_usage": True}
    with httpx.stream("POST", gateway.url + path, json=body, headers=key_headers(fmt), timeout=20) as r:
        got = r.read()
        assert r.status_code == 200
        ct = r.headers.get("content-type")
        assert ct is not None and ct.split(";")[0] == meta["response_content_type"].split(";")[0], f"Content-Type must pass through: got {ct!r}, upstream sent {meta['response_content_type']!r}"
    assert got == expected, f"response bytes changed on a same-format route ({len(got)} vs {len(expected)} bytes)"


# ============================================================================ SSE event by event


def first_content_event(fmt: str, events: list[bytes]) -> int:
    """Index of the first event carrying content (text, reasoning or tool-call delta).

    Events before it are the stream's preamble (OpenAI role chunk, Anthropic
    message_start/content_block_start/ping, Responses created/in_progress/item added):
    issue 5 lets the gateway hold those back until the first content arrives, so a
    failure before any content can still fail over."""
    for i, ev in enumerate(events):
        data = "".join(l[5:].strip() for l in ev.decode().splitlines() if l.startswith("data:"))
        if not data or data == "[DONE]":
            continue
        obj = json.loads(data)
        if fmt == "openai-chat":
            d = (obj.get("choices") or [{}])[0].get("delta") or {}
            if d.get("content") or d.get("tool_calls") or d.get("reasoning_content"):
                return i
        elif fmt == "openai-responses":
            if obj.get("type", "").endswith(".delta"):
                return i
        elif fmt == "anthropic":
            if obj.get("type") == "content_block_delta":
                return i
        else:
            return i
    raise AssertionError(f"no content event in the stream: {events!r}")


@pytest.mark.parametrize("fmt,model", [("openai-chat", "gpt-4o-slow"), ("openai-responses", "gpt-4.1-slow"), ("anthropic", "claude-slow"), ("gemini", "gemini-slow")])
def test_sse_reaches_client_event_by_event(gateway: Gateway, upstream: MockUpstream, fmt: str, model: str):
    """The mock sends an event, waits 300 ms, sends the next: from the first content event
    on, each event must reach the client before the mock sends the following one (no
    buffering in the gateway); preamble events go out no later than the first content."""
    path, body = raw_request(fmt, model, "one two three", stream=True)
    if fmt == "openai-chat":
        # Else aigate asks for usage itself and drops that chunk (tested below).
        body["stream_options"] = {"include_usage": True}
    with httpx.stream("POST", gateway.url + path, json=body, headers=key_headers(fmt), timeout=30) as r:
        assert r.status_code == 200
        events, recv = stream_event_times(r)
    rec = upstream.last()
    sent = rec.events_sent_at
    assert len(sent) >= 4
    assert len(events) == len(sent), f"client got {len(events)} events, mock sent {len(sent)}"
    assert b"".join(events) == bytes(rec.response_bytes)
    c = first_content_event(fmt, events)
    assert c + 2 < len(sent), "the stream must have content events after the first one"
    for k in range(len(sent) - 1):
        deadline = max(k, c) + 1
        assert recv[k] < sent[deadline], f"event {k} (first content event: {c}) reached the client {recv[k] - sent[deadline]:+.3f}s after the mock sent event {deadline}: buffered"


# ============================================================================ routing


def test_route_glob_with_default_target_model(gateway: Gateway, upstream: MockUpstream):
    """`claude-3-haiku*` matches; a target without `model` keeps the requested name."""
    r = anthropic_client(gateway).messages.create(model="claude-3-haiku-20240307", max_tokens=16, messages=[{"role": "user", "content": "glob"}])
    assert r.content[0].text == "echo: glob"
    rec = upstream.last()
    assert rec.path == "/v1/messages" and rec.json()["model"] == "claude-3-haiku-20240307"


def test_route_provider_slash_model(gateway: Gateway, upstream: MockUpstream):
    r = openai_client(gateway).chat.completions.create(model="compat/qwen-test", messages=[{"role": "user", "content": "direct"}])
    assert r.choices[0].message.content == "echo: direct"
    rec = upstream.last()
    assert rec.path == "/compat/v1/chat/completions", "openai-compatible base_url keeps its path prefix"
    assert rec.json()["model"] == "qwen-test"
    assert_upstream_auth(rec, "openai", "sk-up-2")
    r2 = anthropic_client(gateway).messages.create(model="anthropic/claude-direct", max_tokens=16, messages=[{"role": "user", "content": "direct"}])
    assert r2.content[0].text == "echo: direct"
    assert upstream.last().json()["model"] == "claude-direct"


def test_route_openai_compatible_provider(gateway: Gateway, upstream: MockUpstream):
    r = openai_client(gateway).chat.completions.create(model="compat-model", messages=[{"role": "user", "content": "compat"}])
    assert r.choices[0].message.content == "echo: compat"
    rec = upstream.last()
    assert rec.path == "/compat/v1/chat/completions" and rec.json()["model"] == "llama-3-upstream"
    assert_upstream_auth(rec, "openai", "sk-up-2")


def test_fallback_to_second_target_when_first_is_unreachable(gateway: Gateway, upstream: MockUpstream):
    c = openai_client(gateway)
    raw = c.chat.completions.with_raw_response.create(model="fallback-model", messages=[{"role": "user", "content": "fall back"}], extra_headers={"x-aigate-debug": "true"})
    r = raw.parse()
    assert r.choices[0].message.content == "echo: fall back"
    assert raw.headers.get("x-aigate-attempts") == "2"
    assert raw.headers.get("x-aigate-provider") == "openai"
    recs = upstream.requests
    assert len(recs) == 1 and recs[0].json()["model"] == "gpt-4o-fallback"


def test_fallback_streaming_anthropic(gateway: Gateway, upstream: MockUpstream):
    with anthropic_client(gateway).messages.stream(model="fallback-claude", max_tokens=16, messages=[{"role": "user", "content": "fall back"}]) as st:
        final = st.get_final_message()
    assert final.content[0].text == "echo: fall back"
    assert upstream.last().json()["model"] == "claude-fallback"


def test_credentials_rotate_by_weight(gateway: Gateway, upstream: MockUpstream):
    """Provider `rotating` has sk-up-1 (weight 1) and sk-up-2 (weight 2): 30 requests → 10 and 20."""
    c = openai_client(gateway)
    for i in range(30):
        c.chat.completions.create(model="rotate-model", messages=[{"role": "user", "content": f"r{i}"}])
    used = [r.credential for r in upstream.requests]
    assert len(used) == 30
    assert Counter(used) == {"sk-up-1": 10, "sk-up-2": 20}, Counter(used)
    for i in range(0, 30, 3):
        assert used[i : i + 3].count("sk-up-1") == 1, f"weighted round-robin should spread sk-up-1 once per 3 requests: {used}"


def test_credentials_rotate_round_robin_equal_weights(gateway: Gateway, upstream: MockUpstream):
    c = openai_client(gateway)
    for i in range(10):
        c.chat.completions.create(model="pair-model", messages=[{"role": "user", "content": f"p{i}"}])
    used = [r.credential for r in upstream.requests]
    assert Counter(used) == {"sk-up-1": 5, "sk-up-3": 5}
    assert all(a != b for a, b in zip(used, used[1:])), f"round-robin must alternate: {used}"


# ============================================================================ large bodies


def _big_chat_body(size: int, model: str) -> bytes:
    """An OpenAI chat body of about `size` bytes whose "model" comes LAST (after the bulk),
    so routing needs the whole body, not a 64 KiB prefix."""
    filler = ("lorem ipsum dolor sit amet " * (size // 27 + 1))[:size]
    return b'{"messages":[{"role":"system","content":"' + filler.encode() + b'"},{"role":"user","content":"big body"}],"model":' + json.dumps(model).encode() + b"}"


@pytest.mark.parametrize("size", [1 << 20, 5 << 20], ids=["1MiB", "5MiB"])
def test_large_body_routed_by_trailing_model_arrives_intact(gateway: Gateway, upstream: MockUpstream, size: int):
    body = _big_chat_body(size, "gpt-4o-same")
    r = httpx.post(gateway.url + "/v1/chat/completions", content=body, headers=key_headers("openai-chat"), timeout=60)
    assert r.status_code == 200, r.text[:500]
    assert r.json()["choices"][0]["message"]["content"] == "echo: big body"
    rec = upstream.last()
    assert len(rec.body) == len(body) and rec.sha256 == hashlib.sha256(body).hexdigest(), "body changed on its way upstream"


def test_large_body_model_rewritten_at_the_end(gateway: Gateway, upstream: MockUpstream):
    body = _big_chat_body(1 << 20, "gpt-4o")
    r = httpx.post(gateway.url + "/v1/chat/completions", content=body, headers=key_headers("openai-chat"), timeout=60)
    assert r.status_code == 200, r.text[:500]
    expected = body[: body.rindex(b'"gpt-4o"')] + b'"gpt-4o-upstream"}'
    assert upstream.last().sha256 == hashlib.sha256(expected).hexdigest()


def test_large_chunked_body_without_content_length(gateway: Gateway, upstream: MockUpstream):
    body = _big_chat_body(1 << 20, "gpt-4o-same")

    def pieces():
        for i in range(0, len(body), 64 * 1024):
            yield body[i : i + 64 * 1024]

    r = httpx.post(gateway.url + "/v1/chat/completions", content=pieces(), headers=key_headers("openai-chat"), timeout=60)
    assert r.status_code == 200, r.text[:500]
    assert upstream.last().sha256 == hashlib.sha256(body).hexdigest()


def test_large_anthropic_streaming_body(gateway: Gateway, upstream: MockUpstream):
    filler = "x" * (1 << 20)
    msgs = [{"role": "user", "content": filler}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "big claude"}]
    with anthropic_client(gateway).messages.stream(model="claude-3-haiku-big", max_tokens=16, messages=msgs) as st:
        final = st.get_final_message()
    assert final.content[0].text == "echo: big claude"
    assert upstream.last().json()["messages"][0]["content"] == filler


# ============================================================================ models, health, metrics


def test_models_endpoint_lists_configured_models(gateway: Gateway, upstream: MockUpstream):
    r = httpx.get(gateway.url + "/v1/models", headers={"authorization": f"Bearer {GW_KEY_A}"}, timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    ids = {m["id"] for m in body["data"]}
    assert {"gpt-4o", "gpt-4.1", "claude-sonnet-4-5", "gemini-2.5-flash", "compat-model", "fallback-model"} <= ids
    assert all(m["object"] == "model" for m in body["data"])
    assert upstream.requests == [], "/v1/models is answered by the gateway itself"


@pytest.mark.parametrize("path", ["/health", "/health/live", "/health/ready"])
def test_health_endpoints_need_no_key(gateway: Gateway, path: str):
    for base in (gateway.url, gateway.admin_url):
        r = httpx.get(base + path, timeout=5)
        assert r.status_code == 200, f"{base}{path}: {r.status_code} {r.text}"


SPEC_METRICS = {
    "aigate_requests_total": "counter",
    "aigate_request_duration_seconds": "histogram",
    "aigate_time_to_first_byte_seconds": "histogram",
    "aigate_overhead_seconds": "histogram",
    "aigate_upstream_attempts_total": "counter",
    "aigate_tokens_total": "counter",
    "aigate_inflight_requests": "gauge",
    "aigate_rate_limited_total": "counter",
}


def _metrics(gw: Gateway) -> str:
    r = httpx.get(gw.admin_url + "/metrics", timeout=5)
    assert r.status_code == 200
    return r.text


def test_metrics_expose_every_spec_metric_after_traffic(gateway: Gateway, upstream: MockUpstream):
    oc = openai_client(gateway)
    oc.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "m1"}])
    anthropic_client(gateway).messages.create(model="claude-sonnet-4-5", max_tokens=16, messages=[{"role": "user", "content": "m2"}])
    # key "limited" has rpm 1: a second request within the minute is rate limited
    post(gateway, "openai-chat", "gpt-4o", key=GW_KEY_LIMITED)
    post(gateway, "openai-chat", "gpt-4o", key=GW_KEY_LIMITED)
    text = _metrics(gateway)
    types_ = metric_types(text)
    missing = {name: (typ, types_.get(name)) for name, typ in SPEC_METRICS.items() if types_.get(name) != typ}
    assert not missing, f"metrics missing or of the wrong type (want, got): {missing}"
    for secret in (GW_KEY_A, GW_KEY_LIMITED, "sk-up-1"):
        assert secret not in text, "keys never appear in metrics"


def test_metrics_labels_are_the_spec_labels(gateway: Gateway, upstream: MockUpstream):
    post(gateway, "openai-chat", "gpt-4o")
    after = parse_metrics(_metrics(gateway))

    def labels_of(name: str) -> set[frozenset]:
        return {frozenset(k for k in l if k != "le") for n, l, _ in after if n in (name, name + "_bucket", name + "_count", name + "_sum")}

    want = {
        "aigate_requests_total": {"ingress", "provider", "model", "status"},
        "aigate_request_duration_seconds": {"ingress", "provider", "model"},
        "aigate_time_to_first_byte_seconds": {"provider", "model"},
        "aigate_overhead_seconds": {"ingress", "provider"},
        "aigate_upstream_attempts_total": {"provider", "outcome"},
        "aigate_tokens_total": {"provider", "model", "kind"},
    }
    for name, labels in want.items():
        assert frozenset(labels) in labels_of(name), f"{name}: want labels {sorted(labels)}, found {[sorted(x) for x in labels_of(name)]}"


def test_metrics_count_requests_attempts_and_durations(gateway: Gateway, upstream: MockUpstream):
    before = parse_metrics(_metrics(gateway))
    oc = openai_client(gateway)
    oc.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "c1"}])
    list(oc.chat.completions.create(model="gpt-4o-think", messages=[{"role": "user", "content": "c2"}], stream=True))
    anthropic_client(gateway).messages.create(model="claude-sonnet-4-5", max_tokens=16, messages=[{"role": "user", "content": "c3"}])
    assert post(gateway, "openai-chat", "no-such-model").status_code == 404
    after = parse_metrics(_metrics(gateway))

    def delta(name: str, **match: str) -> float:
        return metric_sum(after, name, **match) - metric_sum(before, name, **match)

    assert delta("aigate_requests_total", provider="openai", status="200") == 2
    assert delta("aigate_requests_total", provider="anthropic", status="200") == 1
    assert delta("aigate_upstream_attempts_total", provider="openai") == 2
    assert delta("aigate_request_duration_seconds_count", provider="anthropic") == 1
    assert delta("aigate_time_to_first_byte_seconds_count", provider="openai") == 2
    assert delta("aigate_overhead_seconds_count", provider="openai") == 2
    # Whether a scrape counts itself is the gateway's choice; what was in flight before
    # this traffic is in flight after it: finished requests and streams are not leaked.
    assert metric_sum(after, "aigate_inflight_requests") == metric_sum(before, "aigate_inflight_requests"), "in-flight gauge leaked"


def test_metrics_count_tokens_in_one_meaning_across_formats(gateway: Gateway, upstream: MockUpstream):
    """SPEC usage rule: input includes cached tokens whatever the provider's format
    (OpenAI prompt_tokens = Anthropic input + cache_read + cache_creation); output
    includes reasoning."""
    before = parse_metrics(_metrics(gateway))
    oc = openai_client(gateway)
    oc.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "t1"}])
    oc.chat.completions.create(model="gpt-4o-think", messages=[{"role": "user", "content": "t2"}])
    anthropic_client(gateway).messages.create(model="claude-sonnet-4-5", max_tokens=16, messages=[{"role": "user", "content": "t3"}])
    after = parse_metrics(_metrics(gateway))

    def tokens(provider: str, kind: str) -> float:
        return metric_sum(after, "aigate_tokens_total", provider=provider, kind=kind) - metric_sum(before, "aigate_tokens_total", provider=provider, kind=kind)

    got = {(p, k): tokens(p, k) for p in ("openai", "anthropic") for k in ("input", "output", "cached", "reasoning")}
    want = {
        ("openai", "input"): 2 * USAGE["input"],
        ("openai", "output"): USAGE["output"] + USAGE_THINK["output"],
        ("openai", "cached"): 2 * USAGE["cached"],
        ("openai", "reasoning"): USAGE_THINK["reasoning"],
        ("anthropic", "input"): USAGE["input"],
        ("anthropic", "output"): USAGE["output"],
        ("anthropic", "cached"): USAGE["cached"],
        ("anthropic", "reasoning"): 0,
    }
    assert got == want


def test_key_rpm_limit_answers_429_with_retry_after_and_counts_it(gateway: Gateway, upstream: MockUpstream):
    """SPEC: key limit reached → 429 with Retry-After, in the client's format; counted in
    aigate_rate_limited_total{key=<id>}."""
    before = parse_metrics(_metrics(gateway))
    codes = [post(gateway, "anthropic", "claude-sonnet-4-5", key=GW_KEY_LIMITED) for _ in range(2)]
    assert [c.status_code for c in codes][-1] == 429, [c.status_code for c in codes]
    limited = codes[-1]
    assert limited.headers.get("retry-after", "").isdigit(), f"Retry-After: {limited.headers.get('retry-after')!r}"
    assert limited.json()["type"] == "error" and limited.json()["error"]["type"]
    after = parse_metrics(_metrics(gateway))
    assert metric_sum(after, "aigate_rate_limited_total", key="limited") - metric_sum(before, "aigate_rate_limited_total", key="limited") >= 1


def test_metrics_count_tokens_of_streamed_answers(gateway: Gateway, upstream: MockUpstream):
    before = parse_metrics(httpx.get(gateway.admin_url + "/metrics", timeout=5).text)
    with anthropic_client(gateway).messages.stream(model="claude-sonnet-4-5", max_tokens=16, messages=[{"role": "user", "content": "s"}]) as st:
        st.get_final_message()
    chunks = list(openai_client(gateway).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "s"}], stream=True))
    # aigate asked the upstream for usage; the client, which did not, gets no usage chunk.
    assert upstream.last().json()["stream_options"] == {"include_usage": True}
    assert chunks and all(c.choices for c in chunks), "usage-only chunk leaked to a client that did not ask"
    after = parse_metrics(httpx.get(gateway.admin_url + "/metrics", timeout=5).text)
    for prov in ("anthropic", "openai"):
        d_in = metric_sum(after, "aigate_tokens_total", provider=prov, kind="input") - metric_sum(before, "aigate_tokens_total", provider=prov, kind="input")
        d_out = metric_sum(after, "aigate_tokens_total", provider=prov, kind="output") - metric_sum(before, "aigate_tokens_total", provider=prov, kind="output")
        assert (d_in, d_out) == (USAGE["input"], USAGE["output"]), f"{prov}: streamed usage not counted ({d_in}, {d_out})"


def test_metrics_also_served_on_main_listener(gateway: Gateway):
    r = httpx.get(gateway.url + "/metrics", timeout=5)
    assert r.status_code == 200 and "aigate_requests_total" in r.text


# ============================================================================ request ids and debug headers


@pytest.mark.parametrize("fmt,model", [("openai-chat", "gpt-4o"), ("anthropic", "claude-sonnet-4-5"), ("gemini", "gemini-2.5-flash")])
def test_request_id_generated_when_absent(gateway: Gateway, upstream: MockUpstream, fmt: str, model: str):
    r = post(gateway, fmt, model)
    assert r.status_code == 200
    rid = r.headers.get("x-request-id")
    assert rid, "x-request-id must be returned"
    assert upstream.last().header("x-request-id") == rid, "the generated id is sent upstream and returned (not the upstream's own id)"
    r2 = post(gateway, fmt, model)
    assert r2.headers.get("x-request-id") not in (None, rid), "each request gets its own id"


@pytest.mark.parametrize("fmt,model", [("openai-chat", "gpt-4o"), ("openai-responses", "gpt-4.1"), ("anthropic", "claude-sonnet-4-5"), ("gemini", "gemini-2.5-flash")])
def test_request_id_propagated_when_present(gateway: Gateway, upstream: MockUpstream, fmt: str, model: str):
    r = post(gateway, fmt, model, headers={"x-request-id": "e2e-req-0042"})
    assert r.status_code == 200
    assert r.headers.get("x-request-id") == "e2e-req-0042"
    assert upstream.last().header_all("x-request-id") == ["e2e-req-0042"]


def test_request_id_on_streams_and_gateway_errors(gateway: Gateway, upstream: MockUpstream):
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", json={"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "x"}]}, headers={**key_headers("openai-chat"), "x-request-id": "e2e-stream-1"}, timeout=20) as r:
        r.read()
        assert r.headers.get("x-request-id") == "e2e-stream-1"
    r = post(gateway, "openai-chat", "no-such-model", headers={"x-request-id": "e2e-err-1"})
    assert r.status_code == 404 and r.headers.get("x-request-id") == "e2e-err-1"


def test_debug_headers_name_provider_model_attempts(gateway: Gateway, upstream: MockUpstream):
    r = post(gateway, "anthropic", "claude-sonnet-4-5", headers={"x-aigate-debug": "true"})
    assert r.status_code == 200
    assert r.headers.get("x-aigate-provider") == "anthropic"
    assert r.headers.get("x-aigate-model") == "claude-sonnet-4-5-upstream"
    assert r.headers.get("x-aigate-attempts") == "1"
    plain = post(gateway, "anthropic", "claude-sonnet-4-5")
    for h in ("x-aigate-provider", "x-aigate-model", "x-aigate-attempts"):
        assert h not in plain.headers, f"{h} only with x-aigate-debug: true"


def test_anthropic_version_default_injected_when_client_sent_none(gateway: Gateway, upstream: MockUpstream):
    path, body = raw_request("anthropic", "claude-sonnet-4-5")
    r = httpx.post(gateway.url + path, json=body, headers={"x-api-key": GW_KEY_A}, timeout=20)
    assert r.status_code == 200, r.text
    rec = upstream.last()
    assert rec.header("anthropic-version") == "2023-06-01"
    assert rec.header("x-api-key") == "sk-up-1"


def test_sha256_configured_key_is_accepted(gateway: Gateway, upstream: MockUpstream):
    r = openai_client(gateway, GW_KEY_B).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hashed"}])
    assert r.choices[0].message.content == "echo: hashed"
    assert_gateway_key_not_forwarded(upstream.last(), GW_KEY_B)


def test_concurrent_streams_are_independent(gateway: Gateway, upstream: MockUpstream):
    """A slow stream in flight does not delay another request through the gateway."""
    import threading

    done = threading.Event()

    def slow() -> None:
        path, body = raw_request("openai-chat", "gpt-4o-slow", "a b c d e f", stream=True)
        with httpx.stream("POST", gateway.url + path, json=body, headers=key_headers("openai-chat"), timeout=30) as r:
            r.read()
        done.set()

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    r = post(gateway, "openai-chat", "gpt-4o", text="quick")
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "echo: quick"
    assert not done.is_set(), "the quick request finished only after the slow stream"
    t.join(30)
    assert done.is_set()
