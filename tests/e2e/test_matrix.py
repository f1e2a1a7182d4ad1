"""Issue 4, "How it is shown": the 4 × 4 conversion matrix through the real binary.

Every client SDK (`openai` chat.completions, `openai` responses, `anthropic` messages,
`google-genai` generate_content) against every provider wire (mock upstreams speaking
OpenAI Chat, OpenAI Responses (`api: responses`), Anthropic Messages, Gemini), streamed
(through each SDK's own stream helper) and not: 32 cells, each its own test
`test_matrix[<sdk>-sdk-><provider>-provider-<stream|nonstream>]`. The 4 same-format
routes pass bytes through and are checked the same way.

Each cell checks, in the client's shape and in what the upstream received:
1. text with a system prompt: the answer, the finish reason, usage (SPEC arithmetic);
   the system prompt and the user text arrived in the provider's own fields;
2. a full tool round trip: two tools declared → two parallel calls parsed by the SDK
   (ids, names, arguments) → results sent back → the provider received its own
   tool-call / tool-result shapes with matching ids and names → the final text;
   finish reasons tool_calls / tool_use / STOP-with-functionCall, then stop.

`test_matrix_reasoning[...]` (same 32 ids): reasoning content and reasoning-token
arithmetic across the same routes (output includes reasoning; Gemini
candidatesTokenCount + thoughtsTokenCount; the reasoning count on every route).

`test_matrix_image[<sdk>-sdk-><provider>-provider]` (16 routes): a base64 image reaches
every provider in its own shape with the same bytes.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Iterator

import pytest

from google.genai import types as gtypes

import mock_upstream as mu
from harness import Gateway, four_kinds_config
from mock_upstream import USAGE, USAGE_THINK, USAGE_TOOLS, MockUpstream
from sdk_turns import (
    DRIVERS,
    ECHO,
    EXPECTED_CALLS,
    FINAL_AFTER_TOOLS,
    FINISH_TEXT,
    FINISH_TOOLS,
    PROVIDER_FORMAT,
    PROVIDERS,
    RESULTS,
    SDKS,
    SYSTEM,
    THINKING,
    USER,
    assert_usage,
    new_requests,
    upstream_view,
)

PROVIDER_NAME = {"openai-chat": "mx-chat", "openai-responses": "mx-resp", "anthropic": "mx-anth", "gemini": "mx-gem"}


def matrix_config(mock: MockUpstream) -> dict:
    # `think` routes reach the mock as `<name>-think-up` (reasoning, no tools).
    return four_kinds_config(mock, PROVIDER_NAME, "matrix", "think")


@pytest.fixture(scope="module")
def matrix_gw(upstream_server: MockUpstream, session_dir: Path) -> Iterator[Gateway]:
    g = Gateway(matrix_config(upstream_server), session_dir / "matrix", name="matrix")
    g.start()
    yield g
    g.stop()


CELLS = [(s, p, st) for s in SDKS for p in PROVIDERS for st in (False, True)]


def cell_id(c: tuple) -> str:
    s, p, st = c
    return f"{s}-sdk->{p}-provider-{'stream' if st else 'nonstream'}"


def one_request(upstream: MockUpstream, since: int, provider: str, upstream_model: str, stream: bool) -> mu.Recorded:
    reqs = new_requests(upstream, since)
    assert len(reqs) == 1, f"one upstream request per client request, got {[(r.path, r.status) for r in reqs]}"
    rec = reqs[0]
    assert rec.format == PROVIDER_FORMAT[provider], f"went to a {rec.format} endpoint ({rec.path}), not {PROVIDER_FORMAT[provider]}"
    assert rec.model == upstream_model, f"upstream model {rec.model!r}, want the target's {upstream_model!r}"
    assert rec.status == 200, f"the mock answered {rec.status}: {bytes(rec.response_bytes)[:300]!r}"
    v = upstream_view(rec)
    assert v.stream == stream, f"stream={stream} must reach the provider as its own stream flag/path ({rec.path})"
    return rec


def issued_ids(rec: mu.Recorded, provider: str, n: int) -> list[str] | None:
    """The tool-call ids the mock minted in its answer to `rec` (None: Gemini mints none)."""
    if provider == "gemini":
        return None
    if provider == "anthropic":
        return ["toolu_01" + mu._hid(rec.seq, i, 22) for i in range(n)]
    return ["call_" + mu._hid(rec.seq, i) for i in range(n)]


@pytest.mark.parametrize("sdk,prov,stream", CELLS, ids=[cell_id(c) for c in CELLS])
def test_matrix(matrix_gw: Gateway, upstream: MockUpstream, sdk: str, prov: str, stream: bool):
    """One cell: text with a system prompt (answer, finish reason, usage arithmetic, system
    prompt and user text in the provider's own fields) and a full parallel tool round trip
    (ids/names/arguments parsed by the SDK, provider-shaped calls and results with matching
    ids/names upstream, final text, finish reasons, usage)."""
    drv = DRIVERS[sdk](matrix_gw)
    gw_model = PROVIDER_NAME[prov]
    up_model = f"{gw_model}-tools-up"

    # ---- 1. text with a system prompt
    n0 = len(upstream.requests)
    t = drv.text_turn(gw_model, stream)
    rec = one_request(upstream, n0, prov, up_model, stream)
    v = upstream_view(rec)
    assert v.system == SYSTEM, f"system prompt must arrive in the {v.format} system field; got {v.system!r} in {v.body}"
    assert v.user_texts == [USER], f"user text upstream: {v.user_texts!r}"
    assert t.text == ECHO, f"answer text {t.text!r}"
    assert t.calls == [] and t.thinking == "", (t.calls, t.thinking)
    assert t.finish == FINISH_TEXT[sdk], f"finish reason {t.finish!r}, want {FINISH_TEXT[sdk]!r}"
    assert_usage(sdk, t.usage, USAGE)

    # ---- 2. tool round trip with parallel calls
    n1 = len(upstream.requests)
    first, second = drv.tool_round(gw_model, stream)
    reqs = new_requests(upstream, n1)
    assert len(reqs) == 2, f"two upstream requests for two client requests, got {[(r.path, r.status) for r in reqs]}"
    rec1 = reqs[0]
    for r in reqs:
        assert r.format == PROVIDER_FORMAT[prov] and r.model == up_model and r.status == 200, (r.path, r.model, r.status, bytes(r.response_bytes)[:300])
    v1, v2 = upstream_view(reqs[0]), upstream_view(reqs[1])
    assert v1.stream == stream and v2.stream == stream
    declared = _declared_tools(v1)
    assert declared == [n for n, _ in EXPECTED_CALLS], f"both tools declared upstream, in order: {declared}"

    # the calls, as the SDK parsed them
    assert [(c.name, c.args) for c in first.calls] == EXPECTED_CALLS, f"tool calls seen by the client: {first.calls}"
    assert first.text == "", f"no text with the tool calls: {first.text!r}"
    assert first.finish == FINISH_TOOLS[sdk], f"finish reason with tool calls {first.finish!r}, want {FINISH_TOOLS[sdk]!r}"
    assert_usage(sdk, first.usage, USAGE_TOOLS)
    ids = [c.id for c in first.calls]
    if sdk != "genai":
        assert all(isinstance(i, str) and i for i in ids) and len(set(ids)) == 2, f"each call has its own id: {ids}"
        minted = issued_ids(rec1, prov, 2)
        if minted is not None:
            assert ids == minted, f"tool-call ids must stay the provider's: client saw {ids}, provider issued {minted}"

    # what the provider received back: its own call and result shapes, matching
    assert [(c.name, c.args) for c in v2.history_calls] == EXPECTED_CALLS, f"assistant tool calls in the history upstream: {v2.history_calls}"
    assert len(v2.results) == 2, f"two tool results upstream: {v2.results}"
    for call, (rid, rname, rtext) in zip(v2.history_calls, v2.results):
        assert RESULTS[call.name] in rtext, f"result for {call.name} ({call.id}) carries {RESULTS[call.name]!r}: got {rtext!r}"
        if prov == "gemini":
            assert rname == call.name, f"functionResponse.name {rname!r} must name the call it answers ({call.name})"
        else:
            assert isinstance(call.id, str) and call.id and rid == call.id, f"tool result id {rid!r} must match its call's id {call.id!r}"
    if prov != "gemini":
        hist_ids = [c.id for c in v2.history_calls]
        assert len(set(hist_ids)) == 2, f"distinct call ids upstream: {hist_ids}"
        if sdk != "genai":
            assert hist_ids == issued_ids(rec1, prov, 2), f"the ids sent back upstream are the ones the provider issued: {hist_ids}"
    assert v2.user_texts[:1] == [USER], v2.user_texts
    assert v2.system == SYSTEM, f"system prompt on the second turn: {v2.system!r}"

    # the final answer
    assert second.text == FINAL_AFTER_TOOLS, f"final text after tool results {second.text!r}"
    assert second.calls == []
    assert second.finish == FINISH_TEXT[sdk], f"finish after tool results {second.finish!r}"
    assert_usage(sdk, second.usage, USAGE)


def _declared_tools(v) -> list[str]:
    b = v.body
    if v.format == "openai-chat":
        return [t["function"]["name"] for t in b.get("tools") or []]
    if v.format == "openai-responses":
        return [t["name"] for t in b.get("tools") or [] if t.get("type") == "function"]
    if v.format == "anthropic-messages":
        return [t["name"] for t in b.get("tools") or []]
    return [d["name"] for t in b.get("tools") or [] for d in t.get("functionDeclarations") or t.get("function_declarations") or []]


@pytest.mark.parametrize("sdk,prov,stream", CELLS, ids=[cell_id(c) for c in CELLS])
def test_matrix_reasoning(matrix_gw: Gateway, upstream: MockUpstream, sdk: str, prov: str, stream: bool):
    """One cell, reasoning on: the client asks for thinking in its own terms; the provider
    answers with thinking first. The client gets the thinking text in its own reasoning
    field (not mixed into the answer), the answer unchanged, and usage where output
    includes reasoning (Gemini: candidatesTokenCount + thoughtsTokenCount) with the
    reasoning count carried on every route."""
    drv = DRIVERS[sdk](matrix_gw)
    gw_model = PROVIDER_NAME[prov] + "-think"
    n0 = len(upstream.requests)
    t = drv.text_turn(gw_model, stream, reasoning=True)
    one_request(upstream, n0, prov, f"{gw_model}-up", stream)
    assert t.text == ECHO, f"answer text (thinking must not leak into it): {t.text!r}"
    assert t.thinking == THINKING, f"thinking in the client's reasoning field: {t.thinking!r}, want {THINKING!r}"
    assert t.finish == FINISH_TEXT[sdk], f"finish reason {t.finish!r}"
    # Every format now says how many output tokens were reasoning (Anthropic:
    # output_tokens_details.thinking_tokens), so the count crosses every route.
    assert_usage(sdk, t.usage, USAGE_THINK)


# ============================================================================ images across the 16 routes

IMG = b"\x89PNG\r\n\x1a\n" + bytes([0xFB, 0xFF, 0xBF]) * 4 + b"IEND"  # standard base64 has '+' and '/'
IMG_STD = base64.b64encode(IMG).decode()
ASK_IMG = "What is in this image?"
ROUTES = [(s, p) for s in SDKS for p in PROVIDERS]


def _send_image(sdk: str, drv: Any, model: str) -> str:
    data_url = f"data:image/png;base64,{IMG_STD}"
    if sdk == "openai-chat":
        return drv.ask(model, [{"role": "user", "content": [{"type": "text", "text": ASK_IMG}, {"type": "image_url", "image_url": {"url": data_url}}]}], False).text
    if sdk == "openai-responses":
        return drv.ask(model, False, input=[{"role": "user", "content": [{"type": "input_text", "text": ASK_IMG}, {"type": "input_image", "image_url": data_url, "detail": "auto"}]}]).text
    if sdk == "anthropic":
        return drv.ask(model, False, messages=[{"role": "user", "content": [{"type": "text", "text": ASK_IMG}, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": IMG_STD}}]}]).text
    return drv.ask(model, [gtypes.Content(role="user", parts=[gtypes.Part(text=ASK_IMG), gtypes.Part.from_bytes(data=IMG, mime_type="image/png")])], False).text


def _image_upstream(rec: mu.Recorded) -> tuple[str | None, bytes | None, str]:
    """(media type, decoded bytes, the base64 text as sent) of the one image in the request."""
    b = rec.json()
    imgs: list[tuple[str | None, str]] = []
    if rec.format == "openai-chat":
        for m in b["messages"]:
            for p in m["content"] if isinstance(m.get("content"), list) else []:
                if p.get("type") == "image_url":
                    imgs.append((None, p["image_url"]["url"]))
    elif rec.format == "openai-responses":
        for it in b["input"] if isinstance(b.get("input"), list) else []:
            for p in it.get("content") if isinstance(it.get("content"), list) else []:
                if p.get("type") == "input_image":
                    imgs.append((None, p.get("image_url")))
    elif rec.format == "anthropic-messages":
        for m in b["messages"]:
            for p in m["content"] if isinstance(m.get("content"), list) else []:
                if p.get("type") == "image" and p["source"].get("type") == "base64":
                    imgs.append((p["source"]["media_type"], p["source"]["data"]))
    else:
        for c in b["contents"]:
            for p in c.get("parts") or []:
                d = p.get("inlineData") or p.get("inline_data")
                if d:
                    imgs.append((d.get("mimeType") or d.get("mime_type"), d["data"]))
    assert len(imgs) == 1, f"one image upstream, got {imgs}"
    media, data = imgs[0]
    if data and data.startswith("data:"):
        head, data = data.split(",", 1)
        media = head[5:].split(";")[0]
    raw = base64.b64decode(data + "=" * (-len(data) % 4), altchars=b"-_" if ("-" in data or "_" in data) else None)
    return media, raw, data


@pytest.mark.parametrize("sdk,prov", ROUTES, ids=[f"{s}-sdk->{p}-provider" for s, p in ROUTES])
def test_matrix_image(matrix_gw: Gateway, upstream: MockUpstream, sdk: str, prov: str):
    """A base64 PNG next to a question reaches each provider in its own image shape
    (image_url / input_image data URL, Anthropic base64 source, Gemini inlineData) with the
    MIME type and the same bytes, in standard base64 wherever the target is not the client's
    own format (google-genai's URL-safe base64 is re-encoded); the text still arrives."""
    drv = DRIVERS[sdk](matrix_gw)
    n = len(upstream.requests)
    text = _send_image(sdk, drv, PROVIDER_NAME[prov])
    rec = one_request(upstream, n, prov, f"{PROVIDER_NAME[prov]}-tools-up", False)
    assert text == f"echo: {ASK_IMG}", text
    media, raw, sent = _image_upstream(rec)
    assert (media, raw) == ("image/png", IMG), f"image upstream: {media} {raw!r}"
    if not (sdk == "genai" and prov == "gemini"):  # same format: bytes untouched
        assert sent == IMG_STD, f"standard base64 upstream, got {sent!r}"
