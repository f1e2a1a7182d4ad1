"""Issue 3 (and issue 4's Gemini specifics), "How it is shown", end to end: the official
SDKs through the real binary to mock providers of another format.

Mostly the `openai` SDK against an Anthropic provider and the `anthropic` SDK against an
OpenAI provider, streamed and not: images (base64 and URL), thinking (signed Anthropic
thinking ⇄ `reasoning_content`, signatures given back intact), stop sequences, the
Anthropic `max_tokens` default, tool_choice, `response_format`, upstream errors in each
SDK's own exception classes, an `overloaded_error` event before content, a stream dying
mid-content. Gemini: tool schemas sanitised, `thoughtSignature` round trips, URL-safe
base64 from google-genai re-encoded.

The mock records what each provider received; tests assert on the converted request.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any, Iterator

import anthropic
import httpx
import openai
import pytest
from google.genai import errors as genai_errors
from google.genai import types as gtypes

import mock_upstream as mu
from harness import GW_KEY_A, REPO, Gateway, provider, route
from helpers import anthropic_client, genai_client, openai_client
from mock_upstream import USAGE, MockUpstream
from sdk_turns import (
    ECHO,
    RESULTS,
    SYSTEM,
    THINKING,
    TOOLS,
    USER,
    AnthropicSDK,
    ChatSDK,
    GenaiSDK,
    ResponsesSDK,
    new_requests,
    output_items_for_input,
    upstream_view,
)

SIG = mu.signature_for(THINKING)  # the mock's signature for THINKING (Anthropic signature / Gemini thoughtSignature)
# Bytes whose standard base64 has '+' and '/', so URL-safe base64 ('-', '_') differs.
IMG = b"\x89PNG\r\n\x1a\n" + bytes([0xFB, 0xFF, 0xBF]) * 4 + b"IEND"
IMG_STD = base64.b64encode(IMG).decode()
IMG_URLSAFE = base64.urlsafe_b64encode(IMG).decode()
IMG_URL = "https://images.example.com/cat.png"
ASK_IMG = "What is in this image?"
DEFAULT_ANTHROPIC_MAX_TOKENS = 4096  # src/translate/anthropic/mod.rs DEFAULT_MAX_TOKENS

STREAM = [False, True]
STREAM_IDS = ["nonstream", "stream"]


def conversion_config(mock: MockUpstream) -> dict:
    t = {"connect_ms": 1000, "first_byte_ms": 10000, "idle_ms": 10000, "total_ms": 30000}
    P = lambda name, kind, url, **kw: provider(name, kind, url, timeouts=t, **kw)  # noqa: E731
    return {
        "listen": "127.0.0.1:0",
        "grace_period_seconds": 0,
        "graceful_shutdown_timeout_seconds": 1,
        # Errors are the point of some tests here: no cooldown or open circuit may turn a
        # later request's upstream answer into a gateway answer; one retry (failover).
        "retry": {"max_attempts": 2, "base_delay_ms": 1, "max_delay_ms": 1},
        "cooldown": {"rate_limited_seconds": 0, "auth_failed_seconds": 0},
        "circuit_breaker": {"failure_threshold": 0},
        "keys": [{"id": "conv", "key": GW_KEY_A}],
        "providers": [
            P("cv-anth", "anthropic", mock.url),
            P("cv-chat", "openai", mock.openai_url, api="chat"),
            P("cv-resp", "openai", mock.openai_url, api="responses"),
            P("cv-compat", "openai-compatible", mock.url + "/compat/v1"),
            P("cv-gem", "gemini", mock.url),
            # failing upstreams, each on its own provider
            P("cv-err-a404", "anthropic", mock.url),
            P("cv-err-a529", "anthropic", mock.url),
            P("cv-err-c429", "openai", mock.openai_url),
            P("cv-err-g404", "gemini", mock.url),
            P("cv-ovl-a", "anthropic", mock.url),
            P("cv-ovl-a2", "anthropic", mock.url),
            P("cv-die-a", "anthropic", mock.url),
            P("cv-die-c", "openai", mock.openai_url),
        ],
        "models": [
            route("to-claude", ("cv-anth", "claude-conv")),
            route("to-claude-tools", ("cv-anth", "claude-tools-up")),
            route("to-claude-think", ("cv-anth", "claude-think-up")),
            route("to-claude-think-tools", ("cv-anth", "claude-think-tools-up")),
            route("to-claude-stopseq", ("cv-anth", "corpus:anthropic-messages/stop-sequence")),
            route("to-claude-stopseq-stream", ("cv-anth", "corpus:anthropic-messages/stream-stop-sequence-prefill")),
            route("to-gpt", ("cv-chat", "gpt-conv")),
            route("to-gpt-tools", ("cv-chat", "gpt-tools-up")),
            route("to-compat-think", ("cv-compat", "llama-think-up")),
            route("to-compat-think-tools", ("cv-compat", "llama-think-tools-up")),
            route("to-resp", ("cv-resp", "resp-conv")),
            route("to-gemini", ("cv-gem", "gem-conv")),
            route("to-gemini-tools", ("cv-gem", "gem-tools-up")),
            route("to-gemini-think-tools", ("cv-gem", "gem-think-tools-up")),
            route("err-claude-404", ("cv-err-a404", "corpus:anthropic-messages/error-404-not-found")),
            route("err-claude-529", ("cv-err-a529", "claude-fail-529")),
            route("err-gpt-429", ("cv-err-c429", "gpt-fail-429")),
            route("err-gemini-404", ("cv-err-g404", "corpus.gemini.error-404-model-not-found")),
            route("overload-failover", ("cv-ovl-a", "claude-error-after-1"), ("cv-chat", "gpt-after-overload")),
            route("overload-only", ("cv-ovl-a2", "claude-error-after-1")),
            route("die-claude", ("cv-die-a", "claude-die-after-5")),
            route("die-gpt", ("cv-die-c", "gpt-die-after-3")),
        ],
    }


@pytest.fixture(scope="module")
def conv_gw(upstream_server: MockUpstream, session_dir: Path) -> Iterator[Gateway]:
    g = Gateway(conversion_config(upstream_server), session_dir / "conversion", name="conversion")
    g.start()
    yield g
    g.stop()


def only_request(upstream: MockUpstream, since: int, fmt: str) -> mu.Recorded:
    reqs = new_requests(upstream, since)
    assert len(reqs) == 1, f"one upstream request, got {[(r.path, r.model, r.status) for r in reqs]}"
    assert reqs[0].format == fmt, f"went to {reqs[0].path} ({reqs[0].format}), want {fmt}"
    return reqs[0]


def chat_stream(client: openai.OpenAI, **kw: Any) -> tuple[str, str, list, Any]:
    """(content, reasoning_content, finish reasons, last chunk) of a streamed chat answer."""
    text, reasoning, finishes, last = [], [], [], None
    for ch in client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw):
        last = ch
        for c in ch.choices:
            text.append(c.delta.content or "")
            reasoning.append((c.delta.model_extra or {}).get("reasoning_content") or "")
            if c.finish_reason:
                finishes.append(c.finish_reason)
    return "".join(text), "".join(reasoning), finishes, last


def chat_answer(client: openai.OpenAI, stream: bool, **kw: Any) -> tuple[str, str | None]:
    """(content, finish_reason), streamed or not."""
    if stream:
        text, _, finishes, _ = chat_stream(client, **kw)
        assert len(finishes) == 1, finishes
        return text, finishes[0]
    r = client.chat.completions.create(**kw)
    return r.choices[0].message.content or "", r.choices[0].finish_reason


def anthropic_answer(client: anthropic.Anthropic, stream: bool, **kw: Any) -> Any:
    if stream:
        with client.messages.stream(**kw) as s:
            return s.get_final_message()
    return client.messages.create(**kw)


# ============================================================================ images


@pytest.mark.parametrize("stream", STREAM, ids=STREAM_IDS)
@pytest.mark.parametrize(
    "url,source",
    [
        (f"data:image/png;base64,{IMG_STD}", {"type": "base64", "media_type": "image/png", "data": IMG_STD}),
        (IMG_URL, {"type": "url", "url": IMG_URL}),
    ],
    ids=["base64", "url"],
)
def test_image_from_openai_sdk_arrives_as_anthropic_source(conv_gw: Gateway, upstream: MockUpstream, url: str, source: dict, stream: bool):
    """An OpenAI `image_url` part (data URL / http URL) reaches Anthropic as an image block
    with a base64 / url `source`, next to the text, in order."""
    n = len(upstream.requests)
    text, finish = chat_answer(openai_client(conv_gw), stream, model="to-claude", messages=[{"role": "user", "content": [{"type": "text", "text": ASK_IMG}, {"type": "image_url", "image_url": {"url": url}}]}])
    assert (text, finish) == (f"echo: {ASK_IMG}", "stop")
    body = only_request(upstream, n, "anthropic-messages").json()
    blocks = body["messages"][-1]["content"]
    assert [b["type"] for b in blocks] == ["text", "image"], blocks
    assert blocks[0]["text"] == ASK_IMG
    assert blocks[1]["source"] == source, f"image source upstream: {blocks[1]}"


@pytest.mark.parametrize("stream", STREAM, ids=STREAM_IDS)
@pytest.mark.parametrize(
    "source,url",
    [
        ({"type": "base64", "media_type": "image/png", "data": IMG_STD}, f"data:image/png;base64,{IMG_STD}"),
        ({"type": "url", "url": IMG_URL}, IMG_URL),
    ],
    ids=["base64", "url"],
)
def test_image_from_anthropic_sdk_arrives_as_openai_image_url(conv_gw: Gateway, upstream: MockUpstream, source: dict, url: str, stream: bool):
    """An Anthropic image block (base64 / url source) reaches OpenAI Chat as an `image_url`
    part (data URL / the URL), next to the text, in order."""
    n = len(upstream.requests)
    m = anthropic_answer(anthropic_client(conv_gw), stream, model="to-gpt", max_tokens=256, messages=[{"role": "user", "content": [{"type": "image", "source": source}, {"type": "text", "text": ASK_IMG}]}])
    assert m.content[0].text == f"echo: {ASK_IMG}" and m.stop_reason == "end_turn"
    body = only_request(upstream, n, "openai-chat").json()
    parts = body["messages"][-1]["content"]
    assert isinstance(parts, list) and [p["type"] for p in parts] == ["image_url", "text"], parts
    assert parts[0]["image_url"]["url"] == url, f"image_url upstream: {parts[0]}"
    assert parts[1]["text"] == ASK_IMG


def test_image_from_openai_sdk_arrives_as_gemini_inline_data(conv_gw: Gateway, upstream: MockUpstream):
    """An OpenAI data-URL image reaches Gemini as `inlineData` with the MIME type and
    standard base64."""
    n = len(upstream.requests)
    text, _ = chat_answer(openai_client(conv_gw), False, model="to-gemini", messages=[{"role": "user", "content": [{"type": "text", "text": ASK_IMG}, {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{IMG_STD}"}}]}])
    assert text == f"echo: {ASK_IMG}"
    body = only_request(upstream, n, "gemini").json()
    parts = body["contents"][-1]["parts"]
    inline = [p.get("inlineData") or p.get("inline_data") for p in parts if "inlineData" in p or "inline_data" in p]
    assert len(inline) == 1, parts
    assert (inline[0].get("mimeType") or inline[0].get("mime_type"), inline[0]["data"]) == ("image/png", IMG_STD)


@pytest.mark.parametrize("target", ["anthropic", "openai-chat"])
def test_genai_urlsafe_inline_data_reencoded_to_standard_base64(conv_gw: Gateway, upstream: MockUpstream, target: str):
    """google-genai sends inline bytes as URL-safe base64 (shown on the same-format route,
    which passes it untouched); Anthropic and OpenAI receive standard base64."""
    gc = genai_client(conv_gw)
    contents = [gtypes.Content(role="user", parts=[gtypes.Part(text=ASK_IMG), gtypes.Part.from_bytes(data=IMG, mime_type="image/png")])]
    n = len(upstream.requests)
    assert gc.models.generate_content(model="to-gemini", contents=contents).text == f"echo: {ASK_IMG}"
    sent = only_request(upstream, n, "gemini").json()["contents"][0]["parts"][1]
    assert (sent.get("inlineData") or sent.get("inline_data"))["data"] == IMG_URLSAFE, "precondition: the SDK sends URL-safe base64"

    n = len(upstream.requests)
    model = "to-claude" if target == "anthropic" else "to-gpt"
    assert gc.models.generate_content(model=model, contents=contents).text == f"echo: {ASK_IMG}"
    body = only_request(upstream, n, "anthropic-messages" if target == "anthropic" else "openai-chat").json()
    content = body["messages"][-1]["content"]
    if target == "anthropic":
        img = [b for b in content if b["type"] == "image"]
        assert len(img) == 1 and img[0]["source"] == {"type": "base64", "media_type": "image/png", "data": IMG_STD}, content
    else:
        img = [p for p in content if p["type"] == "image_url"]
        assert len(img) == 1 and img[0]["image_url"]["url"] == f"data:image/png;base64,{IMG_STD}", content


# ============================================================================ thinking


@pytest.mark.parametrize("stream", STREAM, ids=STREAM_IDS)
def test_anthropic_signed_thinking_reaches_openai_sdk_as_reasoning_content(conv_gw: Gateway, upstream: MockUpstream, stream: bool):
    """`reasoning_effort` turns Anthropic thinking on (budget below max_tokens); the signed
    thinking block comes back as `reasoning_content` (deltas when streamed), apart from the
    answer text, with its signature kept for the client (`reasoning_details`)."""
    n = len(upstream.requests)
    t = ChatSDK(conv_gw).ask("to-claude-think", [{"role": "user", "content": USER}], stream, reasoning_effort="low")
    assert t.text == ECHO and t.thinking == THINKING and t.finish == "stop", t
    sigs = [d.get("signature") for d in t.extra.get("reasoning_details") or []]
    assert SIG in sigs, f"the thinking signature reaches the client in reasoning_details: {t.extra.get('reasoning_details')}"
    body = only_request(upstream, n, "anthropic-messages").json()
    th = body.get("thinking") or {}
    assert th.get("type") == "enabled" and th.get("budget_tokens", 0) >= 1024, f"thinking upstream: {th}"
    assert body["max_tokens"] > th["budget_tokens"], f"max_tokens {body['max_tokens']} must exceed budget_tokens {th['budget_tokens']}"


@pytest.mark.parametrize("stream", STREAM, ids=STREAM_IDS)
def test_signed_thinking_given_back_by_openai_sdk_arrives_intact_at_anthropic(conv_gw: Gateway, upstream: MockUpstream, stream: bool):
    """Tool round trip with thinking on: the OpenAI client sends the assistant message back as
    it got it; Anthropic receives the thinking block first, with its text and signature
    byte-identical, then the tool_use blocks, then the tool results."""
    sdk = ChatSDK(conv_gw)
    msgs: list = [{"role": "user", "content": USER}]
    first = sdk.ask("to-claude-think-tools", msgs, stream, tools=ChatSDK.tools(), reasoning_effort="low")
    assert [c.name for c in first.calls] == ["get_weather", "get_time"] and first.thinking == THINKING, first
    msgs.append(first.raw)
    msgs += [{"role": "tool", "tool_call_id": c.id, "content": RESULTS[c.name]} for c in first.calls]
    n = len(upstream.requests)
    second = sdk.ask("to-claude-think-tools", msgs, stream, tools=ChatSDK.tools(), reasoning_effort="low")
    assert second.text == "tool results: 18C and sunny; 14:05"
    body = only_request(upstream, n, "anthropic-messages").json()
    assistant = [m for m in body["messages"] if m["role"] == "assistant"]
    assert len(assistant) == 1, body["messages"]
    blocks = assistant[0]["content"]
    assert [b["type"] for b in blocks] == ["thinking", "tool_use", "tool_use"], blocks
    assert (blocks[0]["thinking"], blocks[0]["signature"]) == (THINKING, SIG), f"thinking block upstream: {blocks[0]}"
    assert [b["id"] for b in blocks[1:]] == [c.id for c in first.calls]


@pytest.mark.parametrize("stream", STREAM, ids=STREAM_IDS)
def test_signed_thinking_given_back_by_responses_sdk_arrives_intact_at_anthropic(conv_gw: Gateway, upstream: MockUpstream, stream: bool):
    """Responses client, Anthropic provider, thinking on, tool round trip: the client sends its
    output items back as input (reasoning item, function calls) with the outputs; Anthropic
    receives the thinking block first with text and signature byte-identical, then the
    tool_use blocks with the ids the client saw, then matching tool_result blocks."""
    sdk = ResponsesSDK(conv_gw)
    inp: list = [{"role": "user", "content": USER}]
    kw = dict(tools=ResponsesSDK.tools(), reasoning={"effort": "low", "summary": "auto"})
    first = sdk.ask("to-claude-think-tools", stream, input=inp, **kw)
    assert [c.name for c in first.calls] == ["get_weather", "get_time"] and first.thinking == THINKING, first
    inp += output_items_for_input(first.raw)
    inp += [{"type": "function_call_output", "call_id": c.id, "output": RESULTS[c.name]} for c in first.calls]
    n = len(upstream.requests)
    second = sdk.ask("to-claude-think-tools", stream, input=inp, **kw)
    assert second.text == "tool results: 18C and sunny; 14:05"
    body = only_request(upstream, n, "anthropic-messages").json()
    assistant = [m for m in body["messages"] if m["role"] == "assistant"]
    assert len(assistant) == 1, body["messages"]
    blocks = assistant[0]["content"]
    assert [b["type"] for b in blocks] == ["thinking", "tool_use", "tool_use"], blocks
    assert (blocks[0]["thinking"], blocks[0]["signature"]) == (THINKING, SIG), f"thinking block upstream: {blocks[0]}"
    assert [b["id"] for b in blocks[1:]] == [c.id for c in first.calls]
    results = [b for m in body["messages"] if m["role"] == "user" and isinstance(m["content"], list) for b in m["content"] if b.get("type") == "tool_result"]
    assert [b["tool_use_id"] for b in results] == [c.id for c in first.calls]


@pytest.mark.parametrize("stream", STREAM, ids=STREAM_IDS)
def test_openai_compatible_reasoning_content_reaches_anthropic_sdk_as_thinking_block(conv_gw: Gateway, upstream: MockUpstream, stream: bool):
    """An OpenAI-compatible provider's `reasoning_content` becomes an Anthropic thinking
    block before the text block; streamed: thinking_delta events, then a signature_delta,
    then the block's stop, all before the text block starts."""
    c = anthropic_client(conv_gw)
    n = len(upstream.requests)
    kw = dict(model="to-compat-think", max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024}, messages=[{"role": "user", "content": USER}])
    if not stream:
        m = c.messages.create(**kw)
    else:
        with c.messages.stream(**kw) as s:
            raw = [e for e in s if e.type in ("message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop")]
            m = s.get_final_message()
        seq = []
        for e in raw:
            if e.type == "content_block_start":
                seq.append(f"start:{e.index}:{e.content_block.type}")
            elif e.type == "content_block_delta":
                seq.append(f"delta:{e.index}:{e.delta.type}")
            elif e.type == "content_block_stop":
                seq.append(f"stop:{e.index}")
            else:
                seq.append(e.type)
        compact = [x for i, x in enumerate(seq) if i == 0 or x != seq[i - 1]]  # runs of equal deltas as one
        assert compact == [
            "message_start",
            "start:0:thinking",
            "delta:0:thinking_delta",
            "delta:0:signature_delta",
            "stop:0",
            "start:1:text",
            "delta:1:text_delta",
            "stop:1",
            "message_delta",
            "message_stop",
        ], seq
    assert [b.type for b in m.content] == ["thinking", "text"], m.content
    assert m.content[0].thinking == THINKING and isinstance(m.content[0].signature, str)
    assert m.content[1].text == ECHO and m.stop_reason == "end_turn"
    assert only_request(upstream, n, "openai-chat").path == "/compat/v1/chat/completions"


@pytest.mark.parametrize("stream", STREAM, ids=STREAM_IDS)
def test_thinking_given_back_by_anthropic_sdk_reaches_openai_compatible_as_reasoning_content(conv_gw: Gateway, upstream: MockUpstream, stream: bool):
    """Tool round trip with an OpenAI-compatible reasoning model (DeepSeek style): the thinking
    block the Anthropic client got (synthesised from `reasoning_content`) and sends back
    with the tool_use blocks reaches the provider as the assistant message's
    `reasoning_content`, with the tool calls and matching tool results."""
    sdk = AnthropicSDK(conv_gw)
    msgs: list = [{"role": "user", "content": USER}]
    kw = dict(thinking={"type": "enabled", "budget_tokens": 1024}, max_tokens=2048, tools=AnthropicSDK.tools())
    first = sdk.ask("to-compat-think-tools", stream, messages=msgs, **kw)
    assert first.thinking == THINKING and [c.name for c in first.calls] == ["get_weather", "get_time"], first
    msgs.append({"role": "assistant", "content": first.raw.content})
    msgs.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": c.id, "content": RESULTS[c.name]} for c in first.calls]})
    n = len(upstream.requests)
    second = sdk.ask("to-compat-think-tools", stream, messages=msgs, **kw)
    assert second.text == "tool results: 18C and sunny; 14:05"
    body = only_request(upstream, n, "openai-chat").json()
    assistant = [m for m in body["messages"] if m["role"] == "assistant"]
    assert len(assistant) == 1, body["messages"]
    assert assistant[0].get("reasoning_content") == THINKING, f"assistant message upstream: {assistant[0]}"
    assert [tc["id"] for tc in assistant[0]["tool_calls"]] == [c.id for c in first.calls]
    assert [m["tool_call_id"] for m in body["messages"] if m["role"] == "tool"] == [c.id for c in first.calls]


@pytest.mark.parametrize("target", ["openai-chat", "gemini"])
def test_tool_result_is_error_from_anthropic_sdk_stays_an_error(conv_gw: Gateway, upstream: MockUpstream, target: str):
    """An Anthropic `tool_result` with `is_error: true` still reads as an error upstream
    (OpenAI has no flag: the text says so; Gemini: a functionResponse `error` field), next
    to a normal result, each matched to its call."""
    sdk = AnthropicSDK(conv_gw)
    model = "to-gpt-tools" if target == "openai-chat" else "to-gemini-tools"
    msgs: list = [{"role": "user", "content": USER}]
    first = sdk.ask(model, False, messages=msgs, tools=AnthropicSDK.tools())
    assert [c.name for c in first.calls] == ["get_weather", "get_time"]
    msgs.append({"role": "assistant", "content": first.raw.content})
    msgs.append({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": first.calls[0].id, "content": "weather service down", "is_error": True},
        {"type": "tool_result", "tool_use_id": first.calls[1].id, "content": RESULTS["get_time"]},
    ]})
    n = len(upstream.requests)
    sdk.ask(model, False, messages=msgs, tools=AnthropicSDK.tools())
    body = only_request(upstream, n, target).json()
    if target == "openai-chat":
        tool_msgs = [m for m in body["messages"] if m["role"] == "tool"]
        assert [m["tool_call_id"] for m in tool_msgs] == [c.id for c in first.calls]
        err, ok = (_text_of(m["content"]) for m in tool_msgs)
        assert "weather service down" in err and "error" in err.lower(), f"the failed result must read as an error: {err!r}"
        assert ok == RESULTS["get_time"] and "error" not in ok.lower()
    else:
        frs = [p.get("functionResponse") or p.get("function_response") for c in body["contents"] for p in c.get("parts") or [] if "functionResponse" in p or "function_response" in p]
        assert [f["name"] for f in frs] == ["get_weather", "get_time"], frs
        assert "weather service down" in json.dumps(frs[0]["response"]) and "error" in frs[0]["response"], f"the failed result must read as an error: {frs[0]}"
        assert "error" not in frs[1]["response"] and RESULTS["get_time"] in json.dumps(frs[1]["response"])


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [] if isinstance(p, dict))


# ============================================================================ stop sequences, max_tokens


def _corpus_stream_text(case: str) -> str:
    raw = (mu.corpus_dir() / "anthropic-messages" / case / "response.sse").read_bytes()
    out = []
    for ev in mu.split_sse_events(raw):
        d = mu._sse_data(ev)
        if d.strip():
            obj = json.loads(d)
            if obj.get("type") == "content_block_delta" and obj["delta"].get("type") == "text_delta":
                out.append(obj["delta"]["text"])
    return "".join(out)


@pytest.mark.parametrize("stream", STREAM, ids=STREAM_IDS)
def test_stop_sequences_from_openai_sdk_and_anthropic_stop_sequence_finish(conv_gw: Gateway, upstream: MockUpstream, stream: bool):
    """`stop` reaches Anthropic as `stop_sequences`; Anthropic's `stop_sequence` stop reason
    (recorded answers) reaches the OpenAI client as finish_reason `stop`, text intact."""
    if stream:
        model, seq, want = "to-claude-stopseq-stream", "```", _corpus_stream_text("stream-stop-sequence-prefill")
    else:
        model, seq, want = "to-claude-stopseq", "Paris", "The beautiful city of "
    n = len(upstream.requests)
    text, finish = chat_answer(openai_client(conv_gw), stream, model=model, messages=[{"role": "user", "content": "Name a city"}], stop=[seq])
    assert text == want
    assert finish == "stop", f"Anthropic stop_sequence → OpenAI finish_reason: {finish!r}"
    assert only_request(upstream, n, "anthropic-messages").json().get("stop_sequences") == [seq]


@pytest.mark.parametrize("stream", STREAM, ids=STREAM_IDS)
def test_stop_sequences_from_anthropic_sdk_reach_openai_as_stop(conv_gw: Gateway, upstream: MockUpstream, stream: bool):
    """Anthropic `stop_sequences` reach OpenAI Chat as `stop`, in order."""
    n = len(upstream.requests)
    m = anthropic_answer(anthropic_client(conv_gw), stream, model="to-gpt", max_tokens=128, stop_sequences=["END", "HALT"], messages=[{"role": "user", "content": USER}])
    assert m.content[0].text == ECHO and m.stop_reason == "end_turn"
    assert only_request(upstream, n, "openai-chat").json().get("stop") == ["END", "HALT"]


@pytest.mark.parametrize("stream", STREAM, ids=STREAM_IDS)
@pytest.mark.parametrize("given,want", [({}, DEFAULT_ANTHROPIC_MAX_TOKENS), ({"max_tokens": 77}, 77), ({"max_completion_tokens": 55}, 55)], ids=["absent", "max_tokens", "max_completion_tokens"])
def test_anthropic_max_tokens_default_filled_never_overriding_the_client(conv_gw: Gateway, upstream: MockUpstream, given: dict, want: int, stream: bool):
    """Anthropic requires max_tokens: an OpenAI request without one gets the documented
    default (4096); a client's max_tokens / max_completion_tokens is sent unchanged."""
    n = len(upstream.requests)
    text, _ = chat_answer(openai_client(conv_gw), stream, model="to-claude", messages=[{"role": "user", "content": USER}], **given)
    assert text == ECHO
    assert only_request(upstream, n, "anthropic-messages").json().get("max_tokens") == want


def test_anthropic_max_tokens_default_is_documented(conv_gw: Gateway):
    """SPEC/issue 3: the max_tokens default filled for Anthropic is documented (README)."""
    readme = (REPO / "README.md").read_text()
    assert re.search(r"max_tokens[^\n]*\b4096\b|\b4096\b[^\n]*max_tokens", readme), "README does not document the default max_tokens (4096) sent to Anthropic"


def test_anthropic_sdk_max_tokens_reaches_openai_unchanged(conv_gw: Gateway, upstream: MockUpstream):
    """The Anthropic client's max_tokens reaches OpenAI Chat as max_completion_tokens (or max_tokens), unchanged."""
    n = len(upstream.requests)
    anthropic_client(conv_gw).messages.create(model="to-gpt", max_tokens=333, messages=[{"role": "user", "content": USER}])
    body = only_request(upstream, n, "openai-chat").json()
    assert body.get("max_completion_tokens", body.get("max_tokens")) == 333, body


# ============================================================================ tool_choice


OPENAI_TO_ANTHROPIC_CHOICE = [
    ("auto", {"tool_choice": "auto"}, [{"type": "auto"}], ["get_weather", "get_time"]),
    ("required", {"tool_choice": "required"}, [{"type": "any"}], ["get_weather", "get_time"]),
    ("named", {"tool_choice": {"type": "function", "function": {"name": "get_time"}}}, [{"type": "tool", "name": "get_time"}], ["get_time"]),
    ("none", {"tool_choice": "none"}, [{"type": "none"}, None], []),
    ("no-parallel", {"tool_choice": "auto", "parallel_tool_calls": False}, [{"type": "auto", "disable_parallel_tool_use": True}], ["get_weather", "get_time"]),
]


@pytest.mark.parametrize("case,given,want,calls", OPENAI_TO_ANTHROPIC_CHOICE, ids=[c[0] for c in OPENAI_TO_ANTHROPIC_CHOICE])
def test_tool_choice_from_openai_sdk_to_anthropic(conv_gw: Gateway, upstream: MockUpstream, case: str, given: dict, want: list, calls: list):
    """tool_choice auto/required/named/none and parallel_tool_calls=false map to Anthropic's
    auto/any/tool/none and disable_parallel_tool_use (none: or no tools sent); the answer
    follows the choice."""
    n = len(upstream.requests)
    r = openai_client(conv_gw).chat.completions.create(model="to-claude-tools", messages=[{"role": "user", "content": USER}], tools=ChatSDK.tools(), **given)
    body = only_request(upstream, n, "anthropic-messages").json()
    got = body.get("tool_choice") if body.get("tools") else None
    assert got in want, f"tool_choice upstream {body.get('tool_choice')!r} (tools sent: {bool(body.get('tools'))}), want one of {want}"
    assert [tc.function.name for tc in r.choices[0].message.tool_calls or []] == calls


ANTHROPIC_TO_OPENAI_CHOICE = [
    ("auto", {"type": "auto"}, ("auto", None), ["get_weather", "get_time"]),
    ("any", {"type": "any"}, ("required", None), ["get_weather", "get_time"]),
    ("named", {"type": "tool", "name": "get_time"}, ({"type": "function", "function": {"name": "get_time"}}, None), ["get_time"]),
    ("none", {"type": "none"}, ("none", None), []),
    ("no-parallel", {"type": "auto", "disable_parallel_tool_use": True}, ("auto", False), ["get_weather", "get_time"]),
]


@pytest.mark.parametrize("case,given,want,calls", ANTHROPIC_TO_OPENAI_CHOICE, ids=[c[0] for c in ANTHROPIC_TO_OPENAI_CHOICE])
def test_tool_choice_from_anthropic_sdk_to_openai(conv_gw: Gateway, upstream: MockUpstream, case: str, given: dict, want: tuple, calls: list):
    """Anthropic tool_choice auto/any/tool/none and disable_parallel_tool_use map to OpenAI
    auto/required/function/none and parallel_tool_calls=false; the answer follows."""
    n = len(upstream.requests)
    m = anthropic_client(conv_gw).messages.create(model="to-gpt-tools", max_tokens=256, messages=[{"role": "user", "content": USER}], tools=AnthropicSDK.tools(), tool_choice=given)
    body = only_request(upstream, n, "openai-chat").json()
    assert (body.get("tool_choice"), body.get("parallel_tool_calls")) == want, f"tool_choice/parallel_tool_calls upstream: {body.get('tool_choice')!r}, {body.get('parallel_tool_calls')!r}"
    assert [b.name for b in m.content if b.type == "tool_use"] == calls


# ============================================================================ response_format

ANSWER_SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}, "score": {"type": "integer"}}, "required": ["answer", "score"], "additionalProperties": False}


@pytest.mark.parametrize("stream", STREAM, ids=STREAM_IDS)
def test_response_format_json_schema_to_anthropic_answers_in_the_schema(conv_gw: Gateway, upstream: MockUpstream, stream: bool):
    """`response_format` json_schema to Anthropic is expressed as the documented forced tool
    (`aigate_response_format`, input_schema = the client's schema); the client gets the
    tool input as its message text (JSON matching the schema), finish_reason stop, no tool calls."""
    n = len(upstream.requests)
    rf = {"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA, "strict": True}}
    msgs = [{"role": "user", "content": USER}]
    t = ChatSDK(conv_gw).ask("to-claude-tools", msgs, stream, response_format=rf)
    assert t.calls == [], f"the response-format tool must not surface as a tool call: {t.calls}"
    assert json.loads(t.text) == {"answer": "answer-1", "score": 1}, t.text
    assert t.finish == "stop"
    body = only_request(upstream, n, "anthropic-messages").json()
    tools = body.get("tools") or []
    assert [tl["name"] for tl in tools] == ["aigate_response_format"], tools
    assert tools[0]["input_schema"] == ANSWER_SCHEMA
    assert body.get("tool_choice") == {"type": "tool", "name": "aigate_response_format"}


def test_response_format_with_thinking_to_anthropic_is_400_naming_response_format(conv_gw: Gateway, upstream: MockUpstream):
    """With thinking on, Anthropic cannot force a tool: the documented answer is a 400 in the
    OpenAI format naming `response_format`, and nothing goes upstream."""
    n = len(upstream.requests)
    with pytest.raises(openai.BadRequestError) as ei:
        openai_client(conv_gw).chat.completions.create(model="to-claude-tools", messages=[{"role": "user", "content": USER}], reasoning_effort="low", response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA}})
    assert ei.value.status_code == 400
    assert "response_format" in str(ei.value.body), ei.value.body
    assert new_requests(upstream, n) == []


@pytest.mark.parametrize("stream", STREAM, ids=STREAM_IDS)
def test_responses_text_format_json_schema_to_anthropic_answers_in_the_schema(conv_gw: Gateway, upstream: MockUpstream, stream: bool):
    """The Responses form of structured output (`text.format` json_schema) to Anthropic takes
    the same documented forced-tool path: the client's output_text is the JSON object."""
    n = len(upstream.requests)
    fmt = {"format": {"type": "json_schema", "name": "answer", "schema": ANSWER_SCHEMA, "strict": True}}
    t = ResponsesSDK(conv_gw).ask("to-claude-tools", stream, input=USER, text=fmt)
    assert t.calls == [], t.calls
    assert json.loads(t.text) == {"answer": "answer-1", "score": 1}, t.text
    body = only_request(upstream, n, "anthropic-messages").json()
    assert [tl["name"] for tl in body.get("tools") or []] == ["aigate_response_format"]
    assert body.get("tool_choice") == {"type": "tool", "name": "aigate_response_format"}


def test_response_format_json_schema_to_gemini_uses_its_json_mode(conv_gw: Gateway, upstream: MockUpstream):
    """`response_format` json_schema to Gemini becomes generationConfig JSON mode with the
    schema (responseSchema, sanitised, or responseJsonSchema)."""
    n = len(upstream.requests)
    openai_client(conv_gw).chat.completions.create(model="to-gemini", messages=[{"role": "user", "content": USER}], response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA}})
    gc = only_request(upstream, n, "gemini").json().get("generationConfig") or {}
    assert gc.get("responseMimeType") == "application/json", gc
    schema = gc.get("responseSchema") or gc.get("responseJsonSchema")
    assert schema and set(schema.get("properties") or {}) == {"answer", "score"} and set(schema.get("required") or []) == {"answer", "score"}, gc
    if "responseSchema" in gc:
        assert not (_keys_deep(schema) & GEMINI_UNKNOWN_KEYWORDS), f"responseSchema must be sanitised: {schema}"


# ============================================================================ upstream errors in each SDK's format

# case → (gateway model, provider format, status, a phrase of the provider's message)
ERROR_CASES = {
    "anthropic-404": ("err-claude-404", "anthropic", 404, "model: claude-sonet-4-5"),
    "anthropic-529": ("err-claude-529", "anthropic", 529, "Overloaded"),
    "openai-429": ("err-gpt-429", "openai", 429, "Rate limit reached"),
    "gemini-404": ("err-gemini-404", "gemini", 404, "is not found for API version v1beta"),
}
SDK_FORMAT = {"openai-chat": "openai", "openai-responses": "openai", "anthropic": "anthropic", "genai": "gemini"}
ERROR_PARAMS = [(sdk, case, st) for sdk in SDK_FORMAT for case in ERROR_CASES for st in STREAM if ERROR_CASES[case][1] != SDK_FORMAT[sdk]]


def _raise_via(sdk: str, gw: Gateway, model: str, stream: bool) -> None:
    if sdk == "openai-chat":
        chat_answer(openai_client(gw), stream, model=model, messages=[{"role": "user", "content": USER}])
    elif sdk == "openai-responses":
        c = openai_client(gw)
        if stream:
            with c.responses.stream(model=model, input=USER) as s:
                s.get_final_response()
        else:
            c.responses.create(model=model, input=USER)
    elif sdk == "anthropic":
        anthropic_answer(anthropic_client(gw), stream, model=model, max_tokens=64, messages=[{"role": "user", "content": USER}])
    else:
        gc = genai_client(gw)
        if stream:
            list(gc.models.generate_content_stream(model=model, contents=USER))
        else:
            gc.models.generate_content(model=model, contents=USER)


@pytest.mark.parametrize("sdk,case,stream", ERROR_PARAMS, ids=[f"{s}-sdk<-{c}-{'stream' if st else 'nonstream'}" for s, c, st in ERROR_PARAMS])
def test_upstream_error_reaches_each_sdk_in_its_format_with_the_upstream_status(conv_gw: Gateway, upstream: MockUpstream, sdk: str, case: str, stream: bool):
    """A provider error (another format) reaches the client in the client's error format with
    the upstream status and message: the SDK raises its own exception class for that status."""
    model, _, status, phrase = ERROR_CASES[case]
    n = len(upstream.requests)
    with pytest.raises(Exception) as ei:
        _raise_via(sdk, conv_gw, model, stream)
    e = ei.value
    reqs = new_requests(upstream, n)
    assert reqs, f"the provider was never called; the client got {type(e).__name__}: {e}"
    assert all(r.status == status for r in reqs), [(r.path, r.status) for r in reqs]
    if sdk in ("openai-chat", "openai-responses"):
        want = {404: openai.NotFoundError, 429: openai.RateLimitError, 529: openai.InternalServerError}[status]
        assert type(e) is want, f"{type(e).__name__}: {e}"
        assert e.status_code == status
        assert isinstance(e.body, dict) and phrase in e.body.get("message", "") and e.body.get("type"), f"OpenAI error body: {e.body}"
    elif sdk == "anthropic":
        want = {404: anthropic.NotFoundError, 429: anthropic.RateLimitError, 529: anthropic.OverloadedError}[status]
        assert type(e) is want, f"{type(e).__name__}: {e}"
        assert e.status_code == status
        assert e.body.get("type") == "error" and phrase in e.body["error"]["message"] and e.body["error"].get("type"), f"Anthropic error body: {e.body}"
    else:
        want = genai_errors.ClientError if status < 500 else genai_errors.ServerError
        assert type(e) is want, f"{type(e).__name__}: {e}"
        assert e.code == status
        err = (e.details or {}).get("error") or {}
        assert err.get("code") == status and phrase in err.get("message", "") and isinstance(err.get("status"), str), f"Gemini error body: {e.details}"


# ============================================================================ failures inside a 200 stream


def test_anthropic_overloaded_event_before_content_fails_over_or_is_a_clean_error(conv_gw: Gateway, upstream: MockUpstream):
    """An Anthropic `overloaded_error` event right after message_start (no content yet), with
    a second target configured: either the gateway fails over and the OpenAI client gets the
    second target's complete answer, or the client gets a well-formed error — never a
    clean-looking empty answer."""
    n = len(upstream.requests)
    got: Any
    try:
        got = chat_stream(openai_client(conv_gw), model="overload-failover", messages=[{"role": "user", "content": USER}])
    except openai.APIError as e:
        got = e
    reqs = new_requests(upstream, n)
    assert reqs[0].format == "anthropic-messages" and b"overloaded_error" in bytes(reqs[0].response_bytes)
    if len(reqs) == 2:
        assert reqs[1].format == "openai-chat" and reqs[1].model == "gpt-after-overload"
        assert not isinstance(got, Exception), f"failed over, yet the client got an error: {got!r}"
        text, _, finishes, last = got
        assert text == ECHO and finishes == ["stop"], (text, finishes)
        assert last.usage is not None and last.usage.prompt_tokens == USAGE["input"]
    else:
        assert len(reqs) == 1, [(r.path, r.model) for r in reqs]
        assert isinstance(got, openai.APIError) and not isinstance(got, openai.APIConnectionError), f"want a well-formed stream error, got {got!r}"
        assert "verload" in str(got), got


@pytest.mark.parametrize("sdk", ["openai-chat", "openai-responses", "genai"])
def test_anthropic_overloaded_event_with_no_fallback_is_an_error_the_sdk_raises(conv_gw: Gateway, upstream: MockUpstream, sdk: str):
    """An Anthropic `overloaded_error` event before content, no other target: each SDK sees a
    well-formed error in its own format (not a connection error, not a clean end)."""
    _assert_stream_error(sdk, conv_gw, "overload-only", upstream)


# client SDK → a route whose provider (another format) dies after some content
DIE_ROUTES = {"openai-chat": "die-claude", "openai-responses": "die-claude", "anthropic": "die-gpt", "genai": "die-gpt"}


@pytest.mark.parametrize("sdk", list(DIE_ROUTES))
def test_stream_dying_mid_content_ends_with_an_error_the_sdk_raises(conv_gw: Gateway, upstream: MockUpstream, sdk: str):
    """The provider's stream stops mid-answer (connection closed without the terminating
    chunk) after some text reached the client: the stream ends with a well-formed error
    event in the client's format that the SDK raises — never a clean, complete-looking end."""
    text = _assert_stream_error(sdk, conv_gw, DIE_ROUTES[sdk], upstream)
    assert text and ECHO.startswith(text) and text != ECHO, f"the text before the error is a strict prefix of the answer: {text!r}"


def _assert_stream_error(sdk: str, gw: Gateway, model: str, upstream: MockUpstream) -> str:
    """Stream `model` through `sdk`; assert it ends in the format's error (not a complete
    answer, not a transport error). Returns the text received before the error."""
    n = len(upstream.requests)
    text: list[str] = []
    if sdk == "openai-chat":
        finishes = []
        with pytest.raises(openai.APIError) as ei:
            for ch in openai_client(gw).chat.completions.create(model=model, messages=[{"role": "user", "content": USER}], stream=True, stream_options={"include_usage": True}):
                for c in ch.choices:
                    text.append(c.delta.content or "")
                    if c.finish_reason:
                        finishes.append(c.finish_reason)
        assert not isinstance(ei.value, openai.APIConnectionError), ei.value
        assert finishes == [], f"no finish_reason before the error: {finishes}"
    elif sdk == "openai-responses":
        types: list[str] = []
        try:
            for ev in openai_client(gw).responses.create(model=model, input=USER, stream=True):
                types.append(ev.type)
                if ev.type == "response.output_text.delta":
                    text.append(ev.delta)
        except openai.APIStatusError as e:  # failed before the first byte: an HTTP error is well-formed too
            assert types == [] and e.status_code >= 400 and isinstance(e.body, dict) and e.body.get("message"), (types, e)
        else:
            assert "response.completed" not in types, f"a failed stream must not complete: {types}"
            assert types and types[-1] in ("response.failed", "error"), f"the stream ends with response.failed (or error): {types}"
    elif sdk == "anthropic":
        types = []
        with pytest.raises(anthropic.APIStatusError) as ei:
            with anthropic_client(gw).messages.stream(model=model, max_tokens=64, messages=[{"role": "user", "content": USER}]) as s:
                for ev in s:
                    types.append(ev.type)
                    if ev.type == "text":
                        text.append(ev.text)
        assert "message_stop" not in types and "message_delta" not in types, types
    else:
        gc = genai_client(gw)
        finishes = []
        with pytest.raises(genai_errors.APIError) as ei:
            for ch in gc.models.generate_content_stream(model=model, contents=USER):
                for cand in ch.candidates or []:
                    text += [p.text for p in (cand.content.parts if cand.content else None) or [] if p.text]
                    if cand.finish_reason:
                        finishes.append(cand.finish_reason)
        assert finishes == [], f"no finishReason before the error: {finishes}"
    assert new_requests(upstream, n), "the provider was never called"
    return "".join(text)


def test_non_stream_upstream_body_cut_short_is_502_in_client_format(conv_gw: Gateway, upstream: MockUpstream):
    """A non-streamed provider answer cut off mid-body (connection closed) is a 502 in the
    client's format, not a half-converted answer."""
    with pytest.raises(openai.APIStatusError) as ei:
        openai_client(conv_gw).chat.completions.create(model="die-claude", messages=[{"role": "user", "content": USER}])
    assert ei.value.status_code == 502, ei.value
    assert isinstance(ei.value.body, dict) and ei.value.body.get("message"), ei.value.body


@pytest.mark.parametrize("target", ["anthropic", "openai-chat"])
@pytest.mark.parametrize("ids", ["ids-echoed", "no-ids"])
def test_gemini_sdk_results_for_two_calls_of_one_tool_matched_by_order(conv_gw: Gateway, upstream: MockUpstream, target: str, ids: str):
    """Gemini has no required tool-call ids: two calls of the same function, answered by two
    functionResponse parts of that name in order (with the ids the gateway handed out
    echoed, or with no ids at all, as in Gemini's own docs), reach the provider as results
    whose ids match the two calls in order."""
    gc = genai_client(conv_gw)
    model = "to-claude-tools" if target == "anthropic" else "to-gpt-tools"
    decl = gtypes.FunctionDeclaration(name="get_weather", description="weather", parameters=TOOLS[0][2])
    cfg = gtypes.GenerateContentConfig(tools=[gtypes.Tool(function_declarations=[decl])])
    contents: list = [gtypes.Content(role="user", parts=[gtypes.Part(text=USER)])]
    r = gc.models.generate_content(model=model, contents=contents, config=cfg)
    parts = list(r.candidates[0].content.parts)
    fcs = [p.function_call for p in parts if p.function_call]
    assert [(f.name, dict(f.args)) for f in fcs] == [("get_weather", {"city": "city-1", "unit": "c"}), ("get_weather", {"city": "city-2", "unit": "f"})]
    if ids == "no-ids":
        parts = [gtypes.Part(function_call=gtypes.FunctionCall(name=f.name, args=f.args)) for f in fcs]
    contents.append(gtypes.Content(role="model", parts=parts))
    frs = [gtypes.Part(function_response=gtypes.FunctionResponse(name="get_weather", response={"result": w}, id=(f.id if ids == "ids-echoed" else None))) for f, w in zip(fcs, ["warm", "cold"])]
    contents.append(gtypes.Content(role="user", parts=frs))
    n = len(upstream.requests)
    r2 = gc.models.generate_content(model=model, contents=contents, config=cfg)
    assert r2.text == "tool results: warm; cold"
    v = upstream_view(only_request(upstream, n, "anthropic-messages" if target == "anthropic" else "openai-chat"))
    call_ids = [c.id for c in v.history_calls]
    assert [c.args for c in v.history_calls] == [{"city": "city-1", "unit": "c"}, {"city": "city-2", "unit": "f"}]
    assert len(set(call_ids)) == 2 and all(call_ids), call_ids
    assert [(rid, text) for rid, _, text in v.results] == list(zip(call_ids, ["warm", "cold"])), f"results upstream {v.results} for calls {call_ids}"


def test_openai_sdk_stream_without_include_usage_gets_no_usage_chunk_from_anthropic(conv_gw: Gateway, upstream: MockUpstream):
    """A converted OpenAI stream the client did not ask usage for carries no usage chunk
    (no chunk without choices, `usage` never set), though the gateway tracks usage."""
    chunks = list(openai_client(conv_gw).chat.completions.create(model="to-claude", messages=[{"role": "user", "content": USER}], stream=True))
    assert all(ch.choices for ch in chunks), "a chunk without choices (the usage chunk) the client did not ask for"
    assert all(getattr(ch, "usage", None) is None for ch in chunks)
    assert "".join(c.delta.content or "" for ch in chunks for c in ch.choices) == ECHO


# ============================================================================ Responses specifics


@pytest.mark.parametrize("stream", STREAM, ids=STREAM_IDS)
@pytest.mark.parametrize("model", ["to-claude", "to-gpt", "to-gemini"])
def test_responses_answer_converted_from_another_provider_is_well_formed(conv_gw: Gateway, upstream: MockUpstream, model: str, stream: bool):
    """A Responses answer built from another provider's answer has the fields the Responses
    API always fills: an `resp_` id, `created_at` a real Unix time (not 0), `object`
    "response", status completed, the output message with its text."""
    import time as _time

    t = ResponsesSDK(conv_gw).ask(model, stream, input=USER)
    r = t.raw
    assert r.object == "response" and r.id.startswith("resp_") and r.status == "completed", (r.object, r.id, r.status)
    assert abs(r.created_at - _time.time()) < 3600, f"created_at {r.created_at} is not the time of the answer"
    assert t.text == ECHO


def test_previous_response_id_to_a_non_responses_provider_is_a_clear_400(conv_gw: Gateway, upstream: MockUpstream):
    """`previous_response_id` only means something to a provider speaking Responses natively:
    to an Anthropic provider it is a 400 in the OpenAI format naming the field, and nothing
    goes upstream (never silently dropped)."""
    n = len(upstream.requests)
    with pytest.raises(openai.BadRequestError) as ei:
        openai_client(conv_gw).responses.create(model="to-claude", input=USER, previous_response_id="resp_abc123")
    assert ei.value.status_code == 400 and "previous_response_id" in str(ei.value.body), ei.value.body
    assert new_requests(upstream, n) == []


def test_previous_response_id_reaches_a_responses_provider(conv_gw: Gateway, upstream: MockUpstream):
    """To a provider speaking Responses natively, `previous_response_id` goes through."""
    n = len(upstream.requests)
    r = openai_client(conv_gw).responses.create(model="to-resp", input=USER, previous_response_id="resp_abc123")
    assert r.output_text == ECHO
    assert only_request(upstream, n, "openai-responses").json().get("previous_response_id") == "resp_abc123"


# ============================================================================ Gemini specifics

HOSTILE_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "additionalProperties": False,
    "$defs": {"Unit": {"type": "string", "enum": ["c", "f"], "$comment": "temperature unit"}},
    "properties": {
        "city": {"type": "string", "description": "City name", "$comment": "free text"},
        "unit": {"$ref": "#/$defs/Unit"},
        "days": {"type": "integer", "exclusiveMinimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "mode": {"const": "fast"},
    },
    "required": ["city", "unit"],
}
GEMINI_UNKNOWN_KEYWORDS = {"$schema", "$defs", "$ref", "$comment", "additionalProperties", "exclusiveMinimum", "uniqueItems", "const", "definitions", "$id"}


def _keys_deep(v: Any) -> set[str]:
    if isinstance(v, dict):
        return set(v) | set().union(*(_keys_deep(x) for x in v.values())) if v else set()
    if isinstance(v, list):
        return set().union(*(_keys_deep(x) for x in v)) if v else set()
    return set()


def test_tool_schema_from_openai_sdk_arrives_at_gemini_sanitised(conv_gw: Gateway, upstream: MockUpstream):
    """A tool schema with `$schema`, `additionalProperties`, `$defs`/`$ref`, `$comment`,
    `exclusiveMinimum`, `uniqueItems`, `const` reaches Gemini without any keyword Gemini
    rejects ($ref inlined, const as a one-value enum), properties and required kept; the
    call comes back with arguments that fit the schema."""
    n = len(upstream.requests)
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "weather", "parameters": HOSTILE_SCHEMA}}]
    r = openai_client(conv_gw).chat.completions.create(model="to-gemini-tools", messages=[{"role": "user", "content": USER}], tools=tools)
    body = only_request(upstream, n, "gemini").json()
    decls = [d for t in body.get("tools") or [] for d in t.get("functionDeclarations") or t.get("function_declarations") or []]
    assert [d["name"] for d in decls] == ["get_weather"], body.get("tools")
    d = decls[0]
    schema = d.get("parameters") or d.get("parametersJsonSchema") or d.get("parameters_json_schema")
    bad = _keys_deep(schema) & GEMINI_UNKNOWN_KEYWORDS  # (no property here is named like a keyword)
    assert not bad, f"keywords Gemini rejects reached it: {sorted(bad)} in {json.dumps(schema)}"
    props = schema["properties"]
    assert set(props) == {"city", "unit", "days", "tags", "mode"}, props
    assert set(schema.get("required") or []) == {"city", "unit"}
    assert props["unit"].get("enum") == ["c", "f"], f"$ref inlined: {props['unit']}"
    assert props["mode"].get("enum") == ["fast"], f"const as enum: {props['mode']}"
    assert str(props["tags"].get("type", "")).lower() == "array" and str(props["tags"]["items"].get("type", "")).lower() == "string"
    calls = r.choices[0].message.tool_calls
    assert calls and all(c.function.name == "get_weather" for c in calls)
    args = json.loads(calls[0].function.arguments)
    assert (args["city"], args["unit"], args["mode"]) == ("city-1", "c", "fast"), args


@pytest.mark.parametrize("stream", STREAM, ids=STREAM_IDS)
@pytest.mark.parametrize("sdk", ["openai-chat", "openai-responses", "anthropic"])
def test_gemini_thought_signature_round_trips_through_other_sdks(conv_gw: Gateway, upstream: MockUpstream, sdk: str, stream: bool):
    """Gemini answers with a thought and a `thoughtSignature` on its first functionCall part;
    the client (another format) sends its history back as its SDK gives it; Gemini receives
    the model turn's functionCall parts with that same signature on the first one, and the
    results as functionResponse parts named after the calls."""
    model = "to-gemini-think-tools"
    if sdk == "openai-chat":
        drv = ChatSDK(conv_gw)
        msgs: list = [{"role": "user", "content": USER}]
        first = drv.ask(model, msgs, stream, tools=ChatSDK.tools(), reasoning_effort="low")
        msgs.append(first.raw)
        msgs += [{"role": "tool", "tool_call_id": c.id, "content": RESULTS[c.name]} for c in first.calls]
        n = len(upstream.requests)
        second = drv.ask(model, msgs, stream, tools=ChatSDK.tools(), reasoning_effort="low")
    elif sdk == "openai-responses":
        drv = ResponsesSDK(conv_gw)
        inp: list = [{"role": "user", "content": USER}]
        kw = dict(tools=ResponsesSDK.tools(), reasoning={"effort": "low", "summary": "auto"})
        first = drv.ask(model, stream, input=inp, **kw)
        inp += output_items_for_input(first.raw)
        inp += [{"type": "function_call_output", "call_id": c.id, "output": RESULTS[c.name]} for c in first.calls]
        n = len(upstream.requests)
        second = drv.ask(model, stream, input=inp, **kw)
    else:
        drv = AnthropicSDK(conv_gw)
        amsgs: list = [{"role": "user", "content": USER}]
        kw = dict(tools=AnthropicSDK.tools(), thinking={"type": "enabled", "budget_tokens": 1024}, max_tokens=2048)
        first = drv.ask(model, stream, messages=amsgs, **kw)
        amsgs.append({"role": "assistant", "content": first.raw.content})
        amsgs.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": c.id, "content": RESULTS[c.name]} for c in first.calls]})
        n = len(upstream.requests)
        second = drv.ask(model, stream, messages=amsgs, **kw)
    assert [c.name for c in first.calls] == ["get_weather", "get_time"], first.calls
    assert second.text == "tool results: 18C and sunny; 14:05", second.text
    body = only_request(upstream, n, "gemini").json()
    model_turns = [c for c in body["contents"] if c.get("role") == "model"]
    assert len(model_turns) == 1, body["contents"]
    fc_parts = [p for p in model_turns[0]["parts"] if "functionCall" in p or "function_call" in p]
    assert [(p.get("functionCall") or p.get("function_call"))["name"] for p in fc_parts] == ["get_weather", "get_time"], model_turns[0]
    sig = fc_parts[0].get("thoughtSignature") or fc_parts[0].get("thought_signature")
    assert sig == SIG, f"thoughtSignature on the first functionCall part given back: {sig!r}, want {SIG!r}; model turn: {model_turns[0]}"
    v = upstream_view(new_requests(upstream, n)[0])
    assert [(name, RESULTS[name] in text) for _, name, text in v.results] == [("get_weather", True), ("get_time", True)], v.results


def test_gemini_stream_without_alt_sse_is_a_json_array_from_another_provider(conv_gw: Gateway, upstream: MockUpstream):
    """`:streamGenerateContent` without `alt=sse` (a Gemini client format too) answers one
    JSON array, converted from an Anthropic stream: the text pieces in order, a single
    finishReason STOP on the last element, usage on the last element."""
    r = httpx.post(
        conv_gw.url + "/v1beta/models/to-claude:streamGenerateContent",
        headers={"x-goog-api-key": GW_KEY_A},
        json={"contents": [{"role": "user", "parts": [{"text": USER}]}], "systemInstruction": {"parts": [{"text": SYSTEM}]}},
        timeout=20,
    )
    assert r.status_code == 200, r.text
    arr = r.json()
    assert isinstance(arr, list) and arr, r.text[:300]
    text = "".join(p.get("text", "") for el in arr for c in el.get("candidates") or [] for p in (c.get("content") or {}).get("parts") or [] if not p.get("thought"))
    assert text == ECHO
    finishes = [c.get("finishReason") for el in arr for c in el.get("candidates") or [] if c.get("finishReason")]
    assert finishes == ["STOP"] and arr[-1]["candidates"][0].get("finishReason") == "STOP", finishes
    u = arr[-1]["usageMetadata"]
    assert (u["promptTokenCount"], u["candidatesTokenCount"], u.get("cachedContentTokenCount")) == (USAGE["input"], USAGE["output"], USAGE["cached"]), u
    rec = upstream.last()
    assert rec.format == "anthropic-messages" and rec.json().get("stream") is True and rec.json().get("system") == SYSTEM
