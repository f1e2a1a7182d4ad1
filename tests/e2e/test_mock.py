"""The mock upstream by itself, driven by the official SDKs pointed straight at it.

These prove the mock speaks each provider's real wire format (the SDKs parse it),
so a gateway test that fails points at the gateway, not at the mock.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types as gtypes

import mock_upstream as mu
from mock_upstream import USAGE, USAGE_THINK, MockUpstream

KEY = "sk-up-1"
WEATHER_TOOL_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}


@pytest.fixture(scope="module")
def server():
    with MockUpstream(keys=[KEY, "sk-up-2"]) as m:
        yield m


@pytest.fixture
def mock(server):
    server.reset()
    return server


def oai(m: MockUpstream, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=m.openai_url, api_key=key, max_retries=0, timeout=10)


def ant(m: MockUpstream, key: str = KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=m.url, api_key=key, max_retries=0, timeout=10)


def gem(m: MockUpstream, key: str = KEY) -> genai.Client:
    return genai.Client(api_key=key, http_options=gtypes.HttpOptions(base_url=m.url, api_version="v1beta", timeout=10_000))


# --------------------------------------------------------------------------- OpenAI Chat


def test_openai_chat_text_echoes_last_user_text_with_usage(mock):
    r = oai(mock).chat.completions.create(model="gpt-4o", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello mock"}])
    assert r.choices[0].message.content == "echo: hello mock"
    assert r.choices[0].finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (USAGE["input"], USAGE["output"], USAGE["input"] + USAGE["output"])
    assert r.usage.prompt_tokens_details.cached_tokens == USAGE["cached"]
    rec = mock.last("/v1/chat/completions")
    assert rec.credential == KEY and rec.model == "gpt-4o" and not rec.stream and rec.status == 200


def test_openai_chat_stream_include_usage_only_when_asked(mock):
    c = oai(mock)
    chunks = list(c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "one two three"}], stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "echo: one two three"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == USAGE["output"]
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == USAGE["cached"]
    raw = bytes(mock.last().response_bytes)
    assert raw.endswith(b"data: [DONE]\n\n")

    chunks = list(c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True))
    assert all(ch.usage is None for ch in chunks), "usage chunk sent although include_usage was not asked"
    assert b'"usage"' not in bytes(mock.last().response_bytes)


def test_nousage_streams_carry_no_usage(mock):
    """`nousage`: an OpenAI Chat stream ignores include_usage (some OpenAI-compatible
    servers do); a Responses stream completes with usage null."""
    chunks = list(oai(mock).chat.completions.create(model="gpt-nousage", messages=[{"role": "user", "content": "q"}], stream=True, stream_options={"include_usage": True}))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "echo: q"
    assert all(ch.usage is None for ch in chunks) and b'"usage"' not in bytes(mock.last().response_bytes)
    events = list(oai(mock).responses.create(model="gpt-nousage", input="q", stream=True))
    assert events[-1].type == "response.completed" and events[-1].response.usage is None


def test_openai_chat_parallel_tool_calls_then_tool_results_summary(mock):
    c = oai(mock)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_TOOL_SCHEMA}}, {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}}]
    msgs: list = [{"role": "user", "content": "weather?"}]
    r = c.chat.completions.create(model="gpt-4o-tools", messages=msgs, tools=tools)
    m = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls"
    assert [tc.function.name for tc in m.tool_calls] == ["get_weather", "get_time"]
    assert json.loads(m.tool_calls[0].function.arguments) == {"city": "city-1", "unit": "c"}
    assert json.loads(m.tool_calls[1].function.arguments) == {"tz": "tz-2"}
    assert m.tool_calls[0].id != m.tool_calls[1].id
    msgs.append(m.model_dump(exclude_none=True))
    msgs += [{"role": "tool", "tool_call_id": m.tool_calls[0].id, "content": "sunny"}, {"role": "tool", "tool_call_id": m.tool_calls[1].id, "content": "noon"}]
    r2 = c.chat.completions.create(model="gpt-4o-tools", messages=msgs, tools=tools)
    assert r2.choices[0].message.content == "tool results: sunny; noon"


def test_openai_chat_stream_tool_call_argument_deltas_reassemble(mock):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_TOOL_SCHEMA}}]
    calls: dict[int, dict] = {}
    finish = None
    for ch in oai(mock).chat.completions.create(model="gpt-4o-tools", messages=[{"role": "user", "content": "w"}], tools=tools, stream=True):
        for tc in ch.choices[0].delta.tool_calls or []:
            slot = calls.setdefault(tc.index, {"id": tc.id, "name": tc.function.name, "args": ""})
            slot["args"] += tc.function.arguments or ""
        finish = ch.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert [calls[i]["name"] for i in sorted(calls)] == ["get_weather", "get_weather"]
    assert [json.loads(calls[i]["args"]) for i in sorted(calls)] == [{"city": "city-1", "unit": "c"}, {"city": "city-2", "unit": "f"}]
    assert all(c["id"].startswith("call_") for c in calls.values())


def test_openai_chat_think_gives_reasoning_content_and_reasoning_tokens(mock):
    r = oai(mock).chat.completions.create(model="deepseek-think", messages=[{"role": "user", "content": "hi"}])
    msg = r.choices[0].message.model_dump()
    assert msg["reasoning_content"] == mu.thinking_for(mu.Prompt(last_user_text="hi"))
    assert msg["content"] == "echo: hi"
    assert r.usage.completion_tokens_details.reasoning_tokens == USAGE_THINK["reasoning"]
    parts = []
    for ch in oai(mock).chat.completions.create(model="deepseek-think", messages=[{"role": "user", "content": "hi"}], stream=True):
        d = ch.choices[0].delta.model_dump()
        parts.append(("r", d["reasoning_content"]) if d.get("reasoning_content") else ("c", d.get("content") or ""))
    kinds = [k for k, v in parts if v]
    assert kinds == sorted(kinds, key=lambda k: k != "r"), "reasoning must stream before content"
    assert "".join(v for k, v in parts if k == "r") == msg["reasoning_content"]


# --------------------------------------------------------------------------- OpenAI Responses


def test_openai_responses_text_and_usage(mock):
    r = oai(mock).responses.create(model="gpt-4.1", input="hello responses", instructions="be brief")
    assert r.output_text == "echo: hello responses"
    assert r.status == "completed"
    assert (r.usage.input_tokens, r.usage.output_tokens) == (USAGE["input"], USAGE["output"])
    assert r.usage.input_tokens_details.cached_tokens == USAGE["cached"]
    assert r.instructions == "be brief"


def test_openai_responses_stream_events_and_sequence_numbers(mock):
    events = list(oai(mock).responses.create(model="gpt-4.1", input=[{"role": "user", "content": "a b c"}], stream=True))
    types_ = [e.type for e in events]
    assert types_[:4] == ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
    assert types_[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "echo: a b c"
    assert events[-1].response.usage.output_tokens == USAGE["output"]


def test_openai_responses_function_calls_then_outputs(mock):
    c = oai(mock)
    tools = [{"type": "function", "name": "get_weather", "parameters": WEATHER_TOOL_SCHEMA, "strict": False}]
    r = c.responses.create(model="gpt-4.1-tools", input="weather in two cities", tools=tools)
    calls = [o for o in r.output if o.type == "function_call"]
    assert [json.loads(o.arguments)["city"] for o in calls] == ["city-1", "city-2"]
    inp = [{"role": "user", "content": "weather in two cities"}] + [o.model_dump(exclude_none=True) for o in calls]
    inp += [{"type": "function_call_output", "call_id": calls[0].call_id, "output": "rain"}, {"type": "function_call_output", "call_id": calls[1].call_id, "output": "snow"}]
    r2 = c.responses.create(model="gpt-4.1-tools", input=inp, tools=tools)
    assert r2.output_text == "tool results: rain; snow"
    with c.responses.stream(model="gpt-4.1-tools", input="w", tools=tools) as st:
        final = st.get_final_response()
    assert [o.name for o in final.output if o.type == "function_call"] == ["get_weather", "get_weather"]


def test_openai_responses_think_gives_reasoning_item_first(mock):
    with oai(mock).responses.stream(model="o3-think", input="why") as st:
        final = st.get_final_response()
    assert [o.type for o in final.output] == ["reasoning", "message"]
    assert final.output[0].summary[0].text == mu.thinking_for(mu.Prompt(last_user_text="why"))
    assert final.usage.output_tokens_details.reasoning_tokens == USAGE_THINK["reasoning"]


# --------------------------------------------------------------------------- Anthropic


def test_anthropic_text_and_usage(mock):
    r = ant(mock).messages.create(model="claude-mock", max_tokens=64, system="be brief", messages=[{"role": "user", "content": "hello claude"}])
    assert r.content[0].text == "echo: hello claude"
    assert r.stop_reason == "end_turn"
    assert (r.usage.input_tokens, r.usage.cache_read_input_tokens, r.usage.output_tokens) == (USAGE["input"] - USAGE["cached"], USAGE["cached"], USAGE["output"])
    rec = mock.last("/v1/messages")
    assert rec.credential == KEY and rec.header("anthropic-version")


def test_anthropic_stream_full_event_sequence_with_ping(mock):
    with ant(mock).messages.stream(model="claude-mock", max_tokens=64, messages=[{"role": "user", "content": "stream me"}]) as st:
        final = st.get_final_message()
    assert final.content[0].text == "echo: stream me"
    assert final.usage.output_tokens == USAGE["output"] and final.usage.input_tokens == USAGE["input"] - USAGE["cached"]
    raw = bytes(mock.last().response_bytes).decode()
    names = [l[7:] for l in raw.split("\n") if l.startswith("event: ")]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_anthropic_parallel_tool_use_round_trip(mock):
    c = ant(mock)
    tools = [{"name": "get_weather", "input_schema": WEATHER_TOOL_SCHEMA}]
    msgs: list = [{"role": "user", "content": "weather?"}]
    with c.messages.stream(model="claude-tools", max_tokens=64, messages=msgs, tools=tools) as st:
        r = st.get_final_message()
    assert r.stop_reason == "tool_use"
    uses = [b for b in r.content if b.type == "tool_use"]
    assert [u.input for u in uses] == [{"city": "city-1", "unit": "c"}, {"city": "city-2", "unit": "f"}]
    msgs.append({"role": "assistant", "content": [u.model_dump(exclude_none=True) for u in uses]})
    msgs.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": "warm"}, {"type": "tool_result", "tool_use_id": uses[1].id, "content": [{"type": "text", "text": "cold"}]}]})
    r2 = c.messages.create(model="claude-tools", max_tokens=64, messages=msgs, tools=tools)
    assert r2.content[0].text == "tool results: warm; cold"


def test_anthropic_think_gives_signed_thinking_block(mock):
    with ant(mock).messages.stream(model="claude-think", max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024}, messages=[{"role": "user", "content": "q"}]) as st:
        r = st.get_final_message()
    assert [b.type for b in r.content] == ["thinking", "text"]
    assert r.content[0].signature == mu.signature_for(r.content[0].thinking)


# --------------------------------------------------------------------------- Gemini


def test_gemini_text_and_usage(mock):
    gc = gem(mock)
    r = gc.models.generate_content(model="gemini-2.5-flash", contents="hello gemini", config=gtypes.GenerateContentConfig(system_instruction="be brief"))
    assert r.text == "echo: hello gemini"
    u = r.usage_metadata
    assert (u.prompt_token_count, u.candidates_token_count, u.cached_content_token_count) == (USAGE["input"], USAGE["output"], USAGE["cached"])
    rec = mock.last()
    assert rec.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert rec.header("x-goog-api-key") == KEY


def test_gemini_sse_stream_uses_crlf_event_ends(mock):
    gc = gem(mock)
    texts = [ch.text for ch in gc.models.generate_content_stream(model="gemini-2.5-flash", contents="a b c d")]
    assert "".join(texts) == "echo: a b c d"
    rec = mock.last()
    assert rec.query == {"alt": ["sse"]}
    raw = bytes(rec.response_bytes)
    assert raw.count(b"\r\n\r\n") == len(texts) and b"\n\n" not in raw.replace(b"\r\n\r\n", b"")


def test_gemini_stream_without_alt_sse_is_a_json_array(mock):
    r = httpx.post(mock.url + "/v1beta/models/gemini-2.5-flash:streamGenerateContent", headers={"x-goog-api-key": KEY}, json={"contents": [{"role": "user", "parts": [{"text": "a b"}]}]})
    assert r.status_code == 200
    arr = r.json()
    assert isinstance(arr, list) and "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in arr) == "echo: a b"
    assert arr[-1]["candidates"][0]["finishReason"] == "STOP"


def test_gemini_function_calls_then_responses(mock):
    c = gem(mock)
    decl = gtypes.FunctionDeclaration(name="get_weather", parameters_json_schema=WEATHER_TOOL_SCHEMA)
    cfg = gtypes.GenerateContentConfig(tools=[gtypes.Tool(function_declarations=[decl])], automatic_function_calling=gtypes.AutomaticFunctionCallingConfig(disable=True))
    r = c.models.generate_content(model="gemini-tools", contents="w", config=cfg)
    fcs = r.function_calls
    assert [(f.name, f.args) for f in fcs] == [("get_weather", {"city": "city-1", "unit": "c"}), ("get_weather", {"city": "city-2", "unit": "f"})]
    contents = [
        gtypes.Content(role="user", parts=[gtypes.Part(text="w")]),
        r.candidates[0].content,
        gtypes.Content(role="user", parts=[gtypes.Part.from_function_response(name="get_weather", response={"result": "dry"}), gtypes.Part.from_function_response(name="get_weather", response={"result": "wet"})]),
    ]
    r2 = c.models.generate_content(model="gemini-tools", contents=contents, config=cfg)
    assert r2.text == "tool results: dry; wet"


def test_gemini_think_gives_thought_part_and_signature(mock):
    gc = gem(mock)
    r = gc.models.generate_content(model="gemini-think", contents="q", config=gtypes.GenerateContentConfig(thinking_config=gtypes.ThinkingConfig(include_thoughts=True)))
    parts = r.candidates[0].content.parts
    assert parts[0].thought is True and parts[0].text == mu.thinking_for(mu.Prompt(last_user_text="q"))
    assert parts[1].text == "echo: q" and parts[1].thought_signature
    assert r.usage_metadata.thoughts_token_count == USAGE_THINK["reasoning"]
    assert r.usage_metadata.candidates_token_count == USAGE_THINK["output"] - USAGE_THINK["reasoning"]


# --------------------------------------------------------------------------- embeddings


_TIME_SCHEMA = {"type": "object", "properties": {"tz": {"type": "string"}}}
# (path, body with two tools declared, how to force get_time, how to say none, calls in the answer)
_TOOL_CHOICE_FORMATS = {
    "openai-chat": (
        "/v1/chat/completions",
        {"model": "m-tools", "messages": [{"role": "user", "content": "w"}], "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_TOOL_SCHEMA}}, {"type": "function", "function": {"name": "get_time", "parameters": _TIME_SCHEMA}}]},
        {"tool_choice": {"type": "function", "function": {"name": "get_time"}}},
        {"tool_choice": "none"},
        lambda b: [tc["function"]["name"] for tc in b["choices"][0]["message"].get("tool_calls") or []],
    ),
    "openai-responses": (
        "/v1/responses",
        {"model": "m-tools", "input": "w", "tools": [{"type": "function", "name": "get_weather", "parameters": WEATHER_TOOL_SCHEMA}, {"type": "function", "name": "get_time", "parameters": _TIME_SCHEMA}]},
        {"tool_choice": {"type": "function", "name": "get_time"}},
        {"tool_choice": "none"},
        lambda b: [it["name"] for it in b["output"] if it["type"] == "function_call"],
    ),
    "anthropic": (
        "/v1/messages",
        {"model": "m-tools", "max_tokens": 64, "messages": [{"role": "user", "content": "w"}], "tools": [{"name": "get_weather", "input_schema": WEATHER_TOOL_SCHEMA}, {"name": "get_time", "input_schema": _TIME_SCHEMA}]},
        {"tool_choice": {"type": "tool", "name": "get_time"}},
        {"tool_choice": {"type": "none"}},
        lambda b: [c["name"] for c in b["content"] if c["type"] == "tool_use"],
    ),
    "gemini": (
        "/v1beta/models/m-tools:generateContent",
        {"contents": [{"role": "user", "parts": [{"text": "w"}]}], "tools": [{"functionDeclarations": [{"name": "get_weather", "parameters": WEATHER_TOOL_SCHEMA}, {"name": "get_time", "parameters": _TIME_SCHEMA}]}]},
        {"toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}}},
        {"toolConfig": {"functionCallingConfig": {"mode": "NONE"}}},
        lambda b: [p["functionCall"]["name"] for p in b["candidates"][0]["content"]["parts"] if "functionCall" in p],
    ),
}


@pytest.mark.parametrize("fmt", list(_TOOL_CHOICE_FORMATS))
def test_tools_scenario_honours_forced_tool_and_none(mock, fmt):
    """`tools`: two parallel calls by default; one call of the tool a tool_choice / toolConfig
    forces by name; no call (the echo) when the choice is none."""
    path, body, forced, none, names = _TOOL_CHOICE_FORMATS[fmt]
    headers = {"authorization": f"Bearer {KEY}", "x-api-key": KEY, "anthropic-version": "2023-06-01", "x-goog-api-key": KEY}
    free = httpx.post(mock.url + path, json=body, headers=headers).json()
    assert names(free) == ["get_weather", "get_time"]
    one = httpx.post(mock.url + path, json={**body, **forced}, headers=headers).json()
    assert names(one) == ["get_time"]
    zero = httpx.post(mock.url + path, json={**body, **none}, headers=headers).json()
    assert names(zero) == []
    assert "echo: w" in json.dumps(zero)


def test_embeddings_openai_float_and_base64_and_gemini_batch(mock):
    e = oai(mock).embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])  # SDK asks for base64
    assert [d.embedding for d in e.data] == [mu.embedding_for("alpha"), mu.embedding_for("beta")]
    assert json.loads(mock.last().body)["encoding_format"] == "base64"
    e2 = oai(mock).embeddings.create(model="text-embedding-3-small", input="alpha", encoding_format="float")
    assert e2.data[0].embedding == mu.embedding_for("alpha")
    gc = gem(mock)
    g = gc.models.embed_content(model="text-embedding-004", contents=["alpha", "beta"])
    assert [x.values for x in g.embeddings] == [mu.embedding_for("alpha"), mu.embedding_for("beta")]
    assert mock.last().path == "/v1beta/models/text-embedding-004:batchEmbedContents"


# --------------------------------------------------------------------------- auth like the real APIs


def test_auth_openai_missing_and_wrong_key_401(mock):
    r = httpx.post(mock.openai_url + "/chat/completions", json={"model": "gpt-4o", "messages": []})
    assert r.status_code == 401 and "didn't provide an API key" in r.json()["error"]["message"]
    with pytest.raises(openai.AuthenticationError) as ei:
        oai(mock, "sk-wrong-key-123").chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert ei.value.status_code == 401 and ei.value.body["code"] == "invalid_api_key"


def test_auth_anthropic_key_and_version_required(mock):
    body = {"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    r = httpx.post(mock.url + "/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    r = httpx.post(mock.url + "/v1/messages", json=body, headers={"x-api-key": "nope", "anthropic-version": "2023-06-01"})
    assert r.status_code == 401 and r.json()["error"]["message"] == "invalid x-api-key"
    r = httpx.post(mock.url + "/v1/messages", json=body, headers={"x-api-key": KEY})
    assert r.status_code == 400 and "anthropic-version" in r.json()["error"]["message"]
    r = httpx.post(mock.url + "/v1/messages", json=body, headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"})
    assert r.status_code == 200 and mock.last().credential == KEY


def test_auth_gemini_missing_403_invalid_400_query_key_ok(mock):
    body = {"contents": [{"parts": [{"text": "x"}]}]}
    url = mock.url + "/v1beta/models/gemini-2.5-flash:generateContent"
    r = httpx.post(url, json=body)
    assert r.status_code == 403 and r.json()["error"]["status"] == "PERMISSION_DENIED"
    r = httpx.post(url, json=body, headers={"x-goog-api-key": "bad"})
    assert r.status_code == 400 and r.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    r = httpx.post(url + "?key=" + KEY, json=body)
    assert r.status_code == 200 and mock.last().credential == KEY


# --------------------------------------------------------------------------- corpus replay


def _corpus(fmt: str, case: str) -> Path:
    return mu.corpus_dir() / fmt / case


@pytest.mark.parametrize(
    "path,fmt,case,model_in_path",
    [
        ("/v1/chat/completions", "openai-chat", "text-basic", False),
        ("/v1/chat/completions", "openai-chat", "stream-parallel-tool-calls", False),
        ("/v1/responses", "openai-responses", "stream-text", False),
        ("/v1/messages", "anthropic-messages", "stream-thinking", False),
        ("/v1/messages", "anthropic-messages", "error-404-not-found", False),
        ("/v1beta/models/{m}:streamGenerateContent?alt=sse", "gemini", "stream-text", True),
        ("/v1beta/models/{m}:generateContent", "gemini", "error-404-model-not-found", True),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_corpus_replay_is_byte_for_byte(mock, path, fmt, case, model_in_path):
    d = _corpus(fmt, case)
    meta = json.loads((d / "meta.json").read_text())
    expected = (d / ("response.sse" if meta["stream"] else "response.json")).read_bytes()
    model = f"corpus.{fmt}.{case}" if model_in_path else f"corpus:{fmt}/{case}"
    body = json.loads((d / "request.json").read_text())
    if not model_in_path:
        body["model"] = model
    headers = {"authorization": f"Bearer {KEY}", "x-api-key": KEY, "anthropic-version": "2023-06-01", "x-goog-api-key": KEY}
    with httpx.stream("POST", mock.url + path.format(m=model), json=body, headers=headers) as r:
        got = r.read()
        assert r.status_code == meta["http_status"]
        assert r.headers["content-type"] == meta["response_content_type"]
    assert got == expected
    if meta["stream"]:
        assert len(mock.last().events_sent_at) == len(mu.split_sse_events(expected)) > 1


def test_corpus_format_mismatch_is_a_clear_mock_error(mock):
    r = httpx.post(mock.openai_url + "/chat/completions", json={"model": "corpus:anthropic-messages/thinking", "messages": []}, headers={"authorization": f"Bearer {KEY}"})
    assert r.status_code == 400 and "anthropic-messages" in r.json()["error"]["message"]


# --------------------------------------------------------------------------- faults


def test_fail_scenarios_answer_the_provider_error_body(mock):
    with pytest.raises(openai.RateLimitError) as ei:
        oai(mock).chat.completions.create(model="gpt-fail-429-retry-2", messages=[{"role": "user", "content": "x"}])
    assert ei.value.response.headers["retry-after"] == "2" and ei.value.body["code"] == "rate_limit_exceeded"
    with pytest.raises(openai.RateLimitError) as ei:
        oai(mock).chat.completions.create(model="gpt-fail-429", messages=[{"role": "user", "content": "x"}])
    assert "retry-after" not in ei.value.response.headers
    with pytest.raises(anthropic.APIStatusError) as ei2:
        ant(mock).messages.create(model="claude-fail-529", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert ei2.value.status_code == 529 and ei2.value.body["error"]["type"] == "overloaded_error"
    r = httpx.post(mock.url + "/v1beta/models/gem-fail-500:generateContent", headers={"x-goog-api-key": KEY}, json={"contents": []})
    assert r.status_code == 500 and r.json()["error"]["status"] == "INTERNAL"


def _raw_post(port: int, path: str, body: bytes, headers: dict, timeout: float = 5.0) -> bytes:
    """Send one request on a raw socket; return everything read until close or timeout."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    s.sendall(head.encode() + body)
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except ConnectionResetError:
        out += b"<RST>"
    finally:
        s.close()
    return out


def test_reset_accept_close_and_hang_before_headers(mock):
    auth = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    assert _raw_post(mock.port, "/v1/chat/completions", json.dumps({"model": "gpt-reset", "messages": []}).encode(), auth) == b"<RST>"
    assert _raw_post(mock.port, "/v1/chat/completions", json.dumps({"model": "gpt-accept-close", "messages": []}).encode(), auth) == b""
    t0 = time.monotonic()
    assert _raw_post(mock.port, "/v1/chat/completions", json.dumps({"model": "gpt-hang-400", "messages": []}).encode(), auth) == b""
    assert time.monotonic() - t0 >= 0.4


def test_die_after_n_events_ends_without_terminating_chunk(mock):
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        with httpx.stream("POST", mock.openai_url + "/chat/completions", json={"model": "gpt-die-after-2", "stream": True, "messages": [{"role": "user", "content": "a b c d e"}]}, headers={"authorization": f"Bearer {KEY}"}) as r:
            r.read()
    assert len(mock.last().events_sent_at) == 2


def test_error_after_n_events_sends_in_stream_error(mock):
    with pytest.raises(anthropic.APIStatusError) as ei:
        with ant(mock).messages.stream(model="claude-error-after-2", max_tokens=5, messages=[{"role": "user", "content": "x"}]) as st:
            st.get_final_message()
    assert "overloaded" in str(ei.value).lower()


def test_rules_apply_per_credential_and_count(mock):
    mock.add_rule("fail-429-retry-1", key=KEY, times=1)
    with pytest.raises(openai.RateLimitError):
        oai(mock).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert oai(mock, "sk-up-2").chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}]).choices[0].message.content == "echo: x"
    assert oai(mock).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "y"}]).choices[0].message.content == "echo: y"
    assert [r.status for r in mock.requests] == [429, 200, 200]


# --------------------------------------------------------------------------- framing and recording


def test_stream_events_are_flushed_one_at_a_time(mock):
    """With `slow-300`, the client holds event k before the mock sends event k+1."""
    recv: list[float] = []
    buf = b""
    with httpx.stream("POST", mock.openai_url + "/chat/completions", json={"model": "gpt-slow-300", "stream": True, "messages": [{"role": "user", "content": "a b"}]}, headers={"authorization": f"Bearer {KEY}"}) as r:
        for chunk in r.iter_raw():
            buf += chunk
            while b"\n\n" in buf:
                _, buf = buf.split(b"\n\n", 1)
                recv.append(time.monotonic())
    sent = mock.last().events_sent_at
    assert len(recv) == len(sent) >= 4
    for k in range(len(sent) - 1):
        assert recv[k] < sent[k + 1], f"event {k} reached the client only after event {k + 1} was sent"


def test_chunked_request_body_and_recording(mock):
    payload = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "chunky"}]}).encode()

    def gen():
        yield payload[:10]
        yield payload[10:]

    r = httpx.post(mock.openai_url + "/chat/completions?x=1", content=gen(), headers={"authorization": f"Bearer {KEY}", "x-request-id": "rid-1"})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "echo: chunky"
    rec = mock.last()
    assert rec.framing == "chunked" and rec.body == payload and rec.query == {"x": ["1"]}
    assert rec.header("X-Request-Id") == "rid-1"
    listed = httpx.get(mock.url + "/__mock/requests").json()
    assert listed[-1]["body_sha256"] == rec.sha256 and listed[-1]["credential"] == KEY
    assert httpx.post(mock.url + "/__mock/reset").json() == {"ok": True}
    assert mock.requests == []


def test_http_rules_endpoint_and_keep_alive(mock):
    with httpx.Client() as c:
        c.post(mock.url + "/__mock/rules", json={"scenario": "fail-503", "path": "/chat/completions", "times": 1})
        r1 = c.post(mock.openai_url + "/chat/completions", json={"model": "gpt-4o", "messages": []}, headers={"authorization": f"Bearer {KEY}"})
        r2 = c.post(mock.openai_url + "/chat/completions", json={"model": "gpt-4o", "messages": []}, headers={"authorization": f"Bearer {KEY}"})
        assert (r1.status_code, r2.status_code) == (503, 200)
        assert r1.headers.get("connection") != "close" and r2.http_version == "HTTP/1.1"


def test_standalone_cli_serves_and_exits(tmp_path):
    p = subprocess.Popen([sys.executable, str(Path(mu.__file__)), "--port", "0", "--key", "sk-bench"], stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert line.startswith("mock upstream listening on http://127.0.0.1:")
        url = line.split(" on ")[1].strip()
        r = httpx.post(url + "/v1/messages", json={"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "cli"}]}, headers={"x-api-key": "sk-bench", "anthropic-version": "2023-06-01"})
        assert r.json()["content"][0]["text"] == "echo: cli"
    finally:
        p.terminate()
        p.wait(5)


def test_concurrent_streams_do_not_block_each_other(mock):
    """Threaded server: a slow stream does not hold up another connection."""
    done = threading.Event()

    def slow():
        list(oai(mock).chat.completions.create(model="gpt-slow-400", messages=[{"role": "user", "content": "a b c"}], stream=True))
        done.set()

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.1)
    r = oai(mock).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "fast"}])
    assert r.choices[0].message.content == "echo: fast" and not done.is_set()
    t.join(10)
    assert done.is_set()


# --------------------------------------------------------------------------- resilience scenarios (flaky, down/up, disconnects)


def _chat(m: MockUpstream, model: str, timeout: float = 5.0, client: httpx.Client | None = None) -> httpx.Response:
    return (client or httpx).post(m.openai_url + "/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "x"}]}, headers={"authorization": f"Bearer {KEY}"}, timeout=timeout)


def test_flaky_fails_about_pct_percent_with_the_given_status(mock):
    with httpx.Client() as c:
        statuses = [_chat(mock, "gpt-flaky-30", client=c).status_code for _ in range(100)]
    fails = statuses.count(500)
    assert set(statuses) <= {200, 500}
    assert 15 <= fails <= 45, f"flaky-30 failed {fails}/100 requests"
    assert {_chat(mock, "gpt-flaky-100-503").status_code for _ in range(5)} == {503}
    assert {_chat(mock, "gpt-flaky-0").status_code for _ in range(5)} == {200}
    recs = mock.requests
    assert sum(1 for r in recs[:100] if r.scenario.endswith("+flaky")) == fails
    assert _chat(mock, "gpt-flaky-100-503").json()["error"]["type"] == "server_error", "the provider's own error body"


def test_flaky_is_reproducible_with_a_seed():
    runs = []
    for _ in range(2):
        with MockUpstream(keys=[KEY], seed=7) as m, httpx.Client() as c:
            runs.append([_chat(m, "gpt-flaky-50", client=c).status_code for _ in range(30)])
    assert runs[0] == runs[1] and 200 in runs[0] and 500 in runs[0]


def test_go_down_refuses_connects_and_come_up_serves_on_the_same_port():
    with MockUpstream(keys=[KEY]) as m:
        port = m.port
        with httpx.Client(timeout=5) as c:  # keep-alive connection made while up
            assert c.post(m.openai_url + "/chat/completions", json={"model": "gpt-4o", "messages": []}, headers={"authorization": f"Bearer {KEY}"}).status_code == 200
            m.wait_done(m.requests[0])  # the connection is idle now
            m.go_down()
            assert m.is_down
            with pytest.raises(httpx.ConnectError):
                _chat(m, "gpt-4o")
            # The kept-alive connection was closed too; nothing new is recorded.
            with pytest.raises(httpx.TransportError):
                c.post(m.openai_url + "/chat/completions", json={"model": "gpt-4o", "messages": []}, headers={"authorization": f"Bearer {KEY}"})
        assert len(m.requests) == 1 and m.dropped == 0
        m.come_up()
        assert m.port == port and not m.is_down
        assert _chat(m, "gpt-4o").status_code == 200
        assert len(m.requests) == 2


def test_go_down_lets_an_answer_in_progress_finish():
    with MockUpstream(keys=[KEY]) as m:
        out: list = []
        t = threading.Thread(target=lambda: out.append(_chat(m, "gpt-slow-400")))
        t.start()
        time.sleep(0.15)
        m.go_down()
        t.join(5)
        assert out and out[0].status_code == 200 and out[0].json()["choices"][0]["message"]["content"] == "echo: x"
        m.come_up()


def test_disconnect_is_noticed_promptly_between_slow_events(mock):
    with httpx.stream("POST", mock.openai_url + "/chat/completions", json={"model": "gpt-slow-1000", "stream": True, "messages": [{"role": "user", "content": "a b c d"}]}, headers={"authorization": f"Bearer {KEY}"}) as r:
        for _ in r.iter_raw():
            break  # first event, then hang up
        closed = time.monotonic()
    rec = mock.last(wait=3)
    assert rec.disconnected_at is not None, "the mock did not notice the client closing"
    assert rec.disconnected_at - closed < 0.5, "noticed only at the next write, not while waiting"
    assert len(rec.events_sent_at) == 1


def test_disconnect_is_noticed_during_a_hang(mock):
    with pytest.raises(httpx.ReadTimeout):
        _chat(mock, "gpt-hang-5000", timeout=0.3)
    rec = mock.last(wait=3)
    assert rec.done and rec.disconnected_at is not None and rec.disconnected_at - rec.received_at < 1.5
    with pytest.raises(httpx.RemoteProtocolError):  # an uninterrupted hang still ends with a close
        _chat(mock, "gpt-hang-200")


def test_stall_pauses_once_after_the_first_event(mock):
    with httpx.stream("POST", mock.openai_url + "/chat/completions", json={"model": "gpt-stall-600", "stream": True, "messages": [{"role": "user", "content": "a b c"}]}, headers={"authorization": f"Bearer {KEY}"}) as r:
        r.read()
    sent = mock.last().events_sent_at
    gaps = [b - a for a, b in zip(sent, sent[1:])]
    assert len(sent) >= 4 and gaps[0] >= 0.6 and max(gaps[1:]) < 0.3, gaps


def test_go_down_drops_a_request_on_a_busy_connection_and_counts_it():
    """A keep-alive connection busy when the mock went down survives; the next request
    on it is read, closed unanswered, counted in `.dropped` and not recorded."""
    with MockUpstream(keys=[KEY]) as m:
        with socket.create_connection(("127.0.0.1", m.port), timeout=5) as s:
            def req(model: str) -> bytes:
                body = json.dumps({"model": model, "messages": []}).encode()
                return b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body

            s.sendall(req("gpt-slow-300"))
            time.sleep(0.1)
            m.go_down()  # the answer in progress finishes
            got = b""
            while b"\r\n0\r\n\r\n" not in got and b'"usage"' not in got:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            assert got.startswith(b"HTTP/1.1 200")
            s.sendall(req("gpt-4o"))
            assert s.recv(65536) == b"", "a request on a surviving connection was answered while down"
        assert len(m.requests) == 1 and m.dropped == 1
        m.come_up()
