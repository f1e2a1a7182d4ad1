"""Issue 17: the side endpoints agent CLIs call besides the chat endpoint.

Token counting (Anthropic `/v1/messages/count_tokens`, Gemini `:countTokens`) to a
same-kind target, converted to the other kind's counting endpoint, or estimated for
OpenAI targets; model lists and details in each client's own shape; the `API-Key`
header; legacy `/v1/completions`. Clients are the official SDKs where they have the
call, raw httpx for header variants; the mock upstream's records show what reached it.

The mock counts tokens as the words of every string value plus 3 (`count_words`), so a
count says whether the system prompt and the turn arrived whatever the format.
"""

from __future__ import annotations

import math
import time

import anthropic
import httpx
import openai
import pytest
from google.genai import errors as gerrors

from harness import GW_KEY_A, GW_KEY_B, Gateway, provider, small_config
from helpers import (
    anthropic_client,
    assert_error_shape,
    assert_gateway_key_not_forwarded,
    genai_client,
    http,
    openai_client,
    stream_event_times,
)
from mock_upstream import MockUpstream

SYSTEM = "be brief"  # 2 words
TEXT = "hello there friend"  # 3 words
MOCK_COUNT = 2 + 3 + 3  # system + turn + the mock's 3


def _anthropic_count(gw: Gateway, model: str, key: str = GW_KEY_A):
    """(count, response headers) through the anthropic SDK."""
    raw = anthropic_client(gw, key).messages.with_raw_response.count_tokens(
        model=model, system=SYSTEM, messages=[{"role": "user", "content": TEXT}]
    )
    return raw.parse().input_tokens, raw.headers


# ============================================================================ counting


def test_anthropic_count_tokens_same_kind_target(gateway: Gateway, upstream: MockUpstream):
    n, headers = _anthropic_count(gateway, "claude-sonnet-4-5")
    assert n == MOCK_COUNT
    assert "x-aigate-estimated" not in headers
    rec = upstream.last()
    assert rec.path == "/v1/messages/count_tokens"
    assert rec.json()["model"] == "claude-sonnet-4-5-upstream", "the model is mapped"
    assert rec.json()["system"] == SYSTEM
    assert rec.credential == "sk-up-1" and rec.header("x-api-key") == "sk-up-1"
    assert rec.header("anthropic-version")
    assert_gateway_key_not_forwarded(rec, GW_KEY_A)


def test_anthropic_count_tokens_to_gemini_target(gateway: Gateway, upstream: MockUpstream):
    n, headers = _anthropic_count(gateway, "gemini-2.5-flash")
    assert n == MOCK_COUNT, "the system prompt and the turn were counted by Gemini"
    assert "x-aigate-estimated" not in headers
    rec = upstream.last()
    assert rec.path == "/v1beta/models/gemini-2.5-flash-upstream:countTokens"
    gcr = rec.json()["generateContentRequest"]
    assert gcr["model"] == "models/gemini-2.5-flash-upstream"
    assert gcr["systemInstruction"]["parts"][0]["text"] == SYSTEM
    assert rec.header("x-goog-api-key") == "sk-up-1"
    assert_gateway_key_not_forwarded(rec, GW_KEY_A)


def test_gemini_count_tokens_same_kind_target(gateway: Gateway, upstream: MockUpstream):
    gc = genai_client(gateway)
    r = gc.models.count_tokens(model="gemini-2.5-flash", contents=TEXT)
    assert r.total_tokens == 3 + 3
    assert "x-aigate-estimated" not in (r.sdk_http_response.headers or {})
    rec = upstream.last()
    assert rec.path == "/v1beta/models/gemini-2.5-flash-upstream:countTokens"
    assert rec.json()["contents"][0]["parts"][0]["text"] == TEXT
    assert rec.credential == "sk-up-1" and rec.header("x-goog-api-key") == "sk-up-1"
    assert_gateway_key_not_forwarded(rec, GW_KEY_A)


def test_gemini_count_tokens_to_anthropic_target(gateway: Gateway, upstream: MockUpstream):
    gc = genai_client(gateway)
    r = gc.models.count_tokens(model="claude-sonnet-4-5", contents=TEXT)
    assert r.total_tokens == 3 + 3
    rec = upstream.last()
    assert rec.path == "/v1/messages/count_tokens"
    body = rec.json()
    assert body["model"] == "claude-sonnet-4-5-upstream"
    assert "max_tokens" not in body, "Anthropic's counting endpoint refuses max_tokens"
    assert rec.header("x-api-key") == "sk-up-1"
    assert_gateway_key_not_forwarded(rec, GW_KEY_A)


def test_gemini_generate_content_request_form_counts_system_and_maps_model(gateway: Gateway, upstream: MockUpstream):
    """The `generateContentRequest` form (the one with a system instruction), raw, with
    `?key=`: same kind keeps it (model mapped inside), Anthropic gets the system prompt."""
    body = {
        "generateContentRequest": {
            "model": "models/gemini-2.5-flash",
            "systemInstruction": {"parts": [{"text": SYSTEM}]},
            "contents": [{"role": "user", "parts": [{"text": TEXT}]}],
        }
    }
    for model, path in [
        ("gemini-2.5-flash", "/v1beta/models/gemini-2.5-flash-upstream:countTokens"),
        ("claude-sonnet-4-5", "/v1/messages/count_tokens"),
    ]:
        r = http().post(f"{gateway.url}/v1beta/models/{model}:countTokens?key={GW_KEY_A}", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["totalTokens"] == MOCK_COUNT, r.json()
        rec = upstream.last()
        assert rec.path == path
        assert "key" not in rec.query, "the ?key= gateway key must not travel upstream"
        if model.startswith("gemini"):
            assert rec.json()["generateContentRequest"]["model"] == "models/gemini-2.5-flash-upstream"
        else:
            assert rec.json()["system"] == SYSTEM
        assert_gateway_key_not_forwarded(rec, GW_KEY_A)


def test_count_tokens_estimated_for_openai_targets(gateway: Gateway, upstream: MockUpstream):
    """OpenAI has no counting endpoint: the count is estimated from the request as
    converted for the target (text chars / 4, + 4 per message), marked, never sent."""
    expected = math.ceil((len(SYSTEM) + len(TEXT)) / 4) + 4 * 2
    for model in ("gpt-4o", "gpt-4.1", "compat-model"):
        n, headers = _anthropic_count(gateway, model)
        assert headers.get("x-aigate-estimated") == "true", model
        assert n == expected, (model, n)
    gc = genai_client(gateway)
    r = gc.models.count_tokens(model="gpt-4o", contents=TEXT)
    assert r.sdk_http_response.headers.get("x-aigate-estimated") == "true"
    assert r.total_tokens == math.ceil(len(TEXT) / 4) + 4
    assert upstream.requests == [], "an estimated count never reaches the upstream"


def test_count_tokens_errors_in_the_clients_format(gateway: Gateway, upstream: MockUpstream):
    url = gateway.url + "/v1/messages/count_tokens"
    body = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": TEXT}]}
    ah = {"anthropic-version": "2023-06-01"}
    assert_error_shape("anthropic", http().post(url, json=body, headers=ah), 401)
    assert_error_shape("anthropic", http().post(url, json=body, headers={**ah, "x-api-key": "wrong"}), 401)
    # team-b may use gpt-* and claude-3-haiku* only.
    assert_error_shape("anthropic", http().post(url, json=body, headers={**ah, "x-api-key": GW_KEY_B}), 403)
    nope = {**body, "model": "no-such-model"}
    assert_error_shape("anthropic", http().post(url, json=nope, headers={**ah, "x-api-key": GW_KEY_A}), 404)
    bad = assert_error_shape("anthropic", http().post(url, content=b"{nope", headers={**ah, "x-api-key": GW_KEY_A}), 400)
    assert "JSON" in bad["error"]["message"]
    g = gateway.url + "/v1beta/models/{}:countTokens"
    gb = {"contents": [{"role": "user", "parts": [{"text": TEXT}]}]}
    assert_error_shape("gemini", http().post(g.format("gemini-2.5-flash"), json=gb), 401)
    assert_error_shape("gemini", http().post(g.format("gemini-2.5-flash"), json=gb, headers={"x-goog-api-key": GW_KEY_B}), 403)
    assert_error_shape("gemini", http().post(g.format("nope"), json=gb, headers={"x-goog-api-key": GW_KEY_A}), 404)
    assert_error_shape("gemini", http().get(g.format("gemini-2.5-flash"), headers={"x-goog-api-key": GW_KEY_A}), 405)
    assert upstream.requests == []
    # An upstream error comes back converted, with its status (the glob passes the name on).
    r = http().post(g.format("claude-3-haiku-fail-400"), json=gb, headers={"x-goog-api-key": GW_KEY_A})
    assert_error_shape("gemini", r, 400)
    assert upstream.last().path == "/v1/messages/count_tokens"
    gc = genai_client(gateway)  # kept referenced: it closes its HTTP client when collected
    with pytest.raises(gerrors.ClientError) as e:
        gc.models.count_tokens(model="claude-3-haiku-fail-404", contents=TEXT)
    assert e.value.code == 404


def test_count_tokens_limits(start_gateway, upstream: MockUpstream):
    """A count is a request (key rpm) that reserves no tokens, and it takes nothing
    from a target's own limits (those model the provider's generation quota);
    payload rules (generation fields) are not applied to it."""
    # The README's payload example (max_tokens default) must not reach a count.
    cfg = small_config(
        [provider("anthropic", "anthropic", upstream.url)],
        [{"name": "claude-lim", "payload": {"defaults": {"max_tokens": 8192}}, "targets": [{"provider": "anthropic", "model": "claude-up", "rpm": 1}]}],
        keys=[{"id": "tok", "key": "sk-tok", "tpm": 100000}, {"id": "two", "key": "sk-two", "rpm": 2}],
    )
    gw = start_gateway(cfg)
    for _ in range(3):
        n, headers = _anthropic_count(gw, "claude-lim", key="sk-tok")
        assert n == MOCK_COUNT
        assert headers["x-ratelimit-remaining-tokens"] == "100000", "a count reserves no tokens"
    assert sum(r.path == "/v1/messages/count_tokens" for r in upstream.requests) == 3, "target rpm 1 did not stop counts"
    c = anthropic_client(gw, "sk-tok")
    raw = c.messages.with_raw_response.create(model="claude-lim", max_tokens=50, messages=[{"role": "user", "content": TEXT}])
    assert int(raw.headers["x-ratelimit-remaining-tokens"]) < 100000, "a chat request reserves tokens"
    with pytest.raises(anthropic.RateLimitError):
        c.messages.create(model="claude-lim", max_tokens=50, messages=[{"role": "user", "content": TEXT}])
    # Key rpm counts counting requests.
    _anthropic_count(gw, "claude-lim", key="sk-two")
    _anthropic_count(gw, "claude-lim", key="sk-two")
    with pytest.raises(anthropic.RateLimitError) as e:
        _anthropic_count(gw, "claude-lim", key="sk-two")
    assert e.value.response.headers.get("retry-after")
    assert_error_shape("anthropic", e.value.response, 429)


# ============================================================================ model lists

LISTED_A = {"gpt-4o", "gpt-4.1", "claude-sonnet-4-5", "gemini-2.5-flash", "compat-model", "fallback-model"}


def test_openai_sdk_models_list_and_retrieve(gateway: Gateway, upstream: MockUpstream):
    oc = openai_client(gateway)
    ids = [m.id for m in oc.models.list()]
    assert LISTED_A <= set(ids)
    assert not any("*" in i for i in ids), "globs are not listed"
    m = oc.models.retrieve("claude-sonnet-4-5")
    assert (m.id, m.object) == ("claude-sonnet-4-5", "model")
    # A name only a glob or the provider/model form routes is known too; the SDK escapes '/'.
    assert oc.models.retrieve("claude-3-haiku-20240307").id == "claude-3-haiku-20240307"
    assert oc.models.retrieve("openai/gpt-x").id == "openai/gpt-x"
    with pytest.raises(openai.NotFoundError):
        oc.models.retrieve("no-such-model")
    b = openai_client(gateway, key=GW_KEY_B)
    b_ids = {m.id for m in b.models.list()}
    assert b_ids and all(i.startswith("gpt-") for i in b_ids), b_ids
    with pytest.raises(openai.NotFoundError) as e:
        b.models.retrieve("claude-sonnet-4-5")
    assert_error_shape("openai-chat", e.value.response, 404)
    assert upstream.requests == []


def test_anthropic_sdk_models_list_and_retrieve(gateway: Gateway, upstream: MockUpstream):
    ac = anthropic_client(gateway)
    page = ac.models.list()
    ids = [m.id for m in page.data]
    assert LISTED_A <= set(ids)
    assert page.has_more is False and page.first_id == ids[0] and page.last_id == ids[-1]
    assert [m.id for m in ac.models.list()] == ids, "auto-pagination stops after one page"
    m = ac.models.retrieve("claude-sonnet-4-5")
    assert (m.id, m.type, m.display_name) == ("claude-sonnet-4-5", "model", "claude-sonnet-4-5")
    assert m.created_at.year == 1970
    with pytest.raises(anthropic.NotFoundError) as e:
        ac.models.retrieve("no-such-model")
    assert_error_shape("anthropic", e.value.response, 404)
    b = anthropic_client(gateway, key=GW_KEY_B)
    assert all(m.id.startswith("gpt-") for m in b.models.list().data)
    with pytest.raises(anthropic.NotFoundError):
        b.models.retrieve("claude-sonnet-4-5")
    # Without anthropic-version the same path answers in OpenAI's shape.
    r = http().get(gateway.url + "/v1/models", headers={"x-api-key": GW_KEY_A})
    assert r.json()["object"] == "list"
    # 401 in Anthropic's shape for an Anthropic client.
    assert_error_shape("anthropic", http().get(gateway.url + "/v1/models", headers={"anthropic-version": "2023-06-01"}), 401)
    assert upstream.requests == []


def test_genai_sdk_models_list_and_get(gateway: Gateway, upstream: MockUpstream):
    gc = genai_client(gateway)
    models = list(gc.models.list())
    names = {m.name for m in models}
    assert {f"models/{n}" for n in LISTED_A} <= names
    for m in models:
        assert m.display_name == m.name.removeprefix("models/")
        assert set(m.supported_actions) == {"generateContent", "streamGenerateContent", "countTokens"}
    g = gc.models.get(model="gemini-2.5-flash")
    assert g.name == "models/gemini-2.5-flash"
    with pytest.raises(gerrors.ClientError) as e:
        gc.models.get(model="no-such-model")
    assert e.value.code == 404
    gb = genai_client(gateway, key=GW_KEY_B)
    assert all(m.name.startswith("models/gpt-") for m in gb.models.list())
    with pytest.raises(gerrors.ClientError) as e:
        gb.models.get(model="gemini-2.5-flash")
    assert e.value.code == 404
    r = http().get(gateway.url + "/v1beta/models/no-such-model", headers={"x-goog-api-key": GW_KEY_A})
    assert_error_shape("gemini", r, 404)
    assert_error_shape("gemini", http().get(gateway.url + "/v1beta/models"), 401)
    assert upstream.requests == []


# ============================================================================ API-Key header


def test_api_key_header_is_a_gateway_key_never_forwarded(gateway: Gateway, upstream: MockUpstream):
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "azure"}]}
    r = http().post(gateway.url + "/v1/chat/completions", json=body, headers={"API-Key": GW_KEY_A})
    assert r.status_code == 200, r.text
    rec = upstream.last()
    assert rec.credential == "sk-up-1"
    assert rec.header("api-key") is None, rec.headers
    assert_gateway_key_not_forwarded(rec, GW_KEY_A)
    r = http().post(gateway.url + "/v1/chat/completions", json=body, headers={"api-key": "wrong"})
    assert_error_shape("openai-chat", r, 401)
    r = http().get(gateway.url + "/v1/models", headers={"api-key": GW_KEY_B})
    assert r.status_code == 200 and all(m["id"].startswith("gpt-") for m in r.json()["data"])
    r = http().post(gateway.url + "/v1/completions", json={"model": "gpt-4o", "prompt": "az"}, headers={"API-Key": GW_KEY_A})
    assert r.json()["choices"][0]["text"] == "echo: az"
    assert upstream.last().header("api-key") is None
    assert_gateway_key_not_forwarded(upstream.last(), GW_KEY_A)


# ============================================================================ legacy completions


def test_completions_passed_to_openai_kinds(gateway: Gateway, upstream: MockUpstream):
    oc = openai_client(gateway)
    c = oc.completions.create(model="gpt-4o", prompt="say hi", max_tokens=20)
    assert c.choices[0].text == "echo: say hi"
    assert c.model == "gpt-4o-upstream"
    rec = upstream.last()
    assert rec.path == "/v1/completions"
    assert rec.json()["model"] == "gpt-4o-upstream" and rec.json()["prompt"] == "say hi"
    assert rec.header("authorization") == "Bearer sk-up-1"
    assert_gateway_key_not_forwarded(rec, GW_KEY_A)
    c = oc.completions.create(model="compat-model", prompt="compat")
    assert c.choices[0].text == "echo: compat"
    rec = upstream.last()
    assert (rec.path, rec.credential, rec.json()["model"]) == ("/compat/v1/completions", "sk-up-2", "llama-3-upstream")


def test_completions_stream(gateway: Gateway, upstream: MockUpstream):
    oc = openai_client(gateway)
    chunks = list(oc.completions.create(model="gpt-4o", prompt="one two three", stream=True))
    assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == "echo: one two three"
    assert all(ch.usage is None for ch in chunks), "usage goes only to clients that asked"
    rec = upstream.last()
    assert rec.path == "/v1/completions" and rec.stream
    assert rec.json()["stream_options"] == {"include_usage": True}, "aigate asks for usage to account tokens"
    assert_gateway_key_not_forwarded(rec, GW_KEY_A)
    chunks = list(oc.completions.create(model="gpt-4o", prompt="u", stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 9


def test_completions_stream_flows_event_by_event(gateway: Gateway, upstream: MockUpstream):
    """Completion chunks are not chat deltas: they still go out as they come."""
    body = {"model": "gpt-4o-slow", "prompt": "a b c d e f", "stream": True}
    with httpx.stream("POST", gateway.url + "/v1/completions", json=body, headers={"authorization": f"Bearer {GW_KEY_A}"}, timeout=20) as r:
        assert r.status_code == 200
        start = time.monotonic()
        events, times = stream_event_times(r)
    data = [e for e in events if e.startswith(b"data: {")]
    assert len(data) >= 4, events
    assert times[0] - start < (times[-1] - start) - 0.6, f"the first event waited for the end: {[t - start for t in times]}"


def test_completions_to_other_kinds_is_a_400_naming_the_endpoint(gateway: Gateway, upstream: MockUpstream):
    oc = openai_client(gateway)
    for model in ("claude-sonnet-4-5", "gemini-2.5-flash"):
        with pytest.raises(openai.BadRequestError) as e:
            oc.completions.create(model=model, prompt="x")
        body = assert_error_shape("openai-chat", e.value.response, 400)
        assert "/v1/completions" in body["error"]["message"], body
    assert upstream.requests == []
    with pytest.raises(openai.NotFoundError):
        oc.completions.create(model="no-such-model", prompt="x")
