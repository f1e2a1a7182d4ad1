"""The drop-and-name rule (SPEC "Client-facing endpoints", README "What a target
cannot express"), end to end: the official SDKs send the hints real agent CLIs send
(Gemini CLI's `topK`, Codex's `client_metadata` / `include` / `prompt_cache_key`,
Claude Code's `defer_loading` tool behind tool search, cache breakpoints and context
management) to a provider of another format. Each request gets its answer, the
`x-aigate-dropped` header names exactly the client paths left out, the mock provider
received none of them, the access line carries `dropped=`; a field whose loss would
change the answer is still a 400 in the client's format naming it.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import anthropic
import openai
import pytest
from google.genai import types as gtypes

from harness import Gateway, provider, route, small_config
from helpers import anthropic_client, genai_client, openai_client
from mock_upstream import MockUpstream

StartGateway = Callable[..., Gateway]
T = {"connect_ms": 1000, "first_byte_ms": 10000, "idle_ms": 10000, "total_ms": 30000}


def config(mock: MockUpstream, **top: Any) -> dict:
    return small_config(
        [
            provider("oa-chat", "openai", mock.openai_url, api="chat", timeouts=T),
            provider("oa-resp", "openai", mock.openai_url, api="responses", timeouts=T),
            provider("an", "anthropic", mock.url, timeouts=T),
            provider("ge", "gemini", mock.url, timeouts=T),
        ],
        [
            route("to-chat", ("oa-chat", "gpt-up")),
            route("to-chat-stall", ("oa-chat", "gpt-stall-2500")),
            route("to-resp", ("oa-resp", "resp-up")),
            route("to-anth", ("an", "claude-up")),
            route("to-anth-tools", ("an", "claude-tools")),
            route("to-anth-400", ("an", "claude-fail-400")),
            route("to-gem", ("ge", "gem-up")),
            # Gemini fails (500), OpenAI Chat answers: the header is Chat's list.
            route("gem-then-chat", ("ge", "gem-fail-500"), ("oa-chat", "gpt-up")),
        ],
        **top,
    )


@pytest.fixture
def gw(start_gateway: StartGateway, upstream: MockUpstream) -> Gateway:
    return start_gateway(config(upstream))


def dropped(headers: Any) -> list[str]:
    v = headers.get("x-aigate-dropped")
    return v.split(",") if v else []


def access_line(gw: Gateway, since: int, rid: str, timeout: float = 3.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        lines = [l for l in gw.log_text(since).splitlines() if f"request_id={rid}" in l or f'"request_id":"{rid}"' in l]
        if lines or time.monotonic() > deadline:
            assert len(lines) == 1, gw.log_text(since)[-2000:]
            return lines[0]
        time.sleep(0.05)


def absent(body: Any, *keys: str) -> None:
    """None of `keys` appears anywhere in what the provider received."""
    text = json.dumps(body)
    for k in keys:
        assert k not in text, f"{k!r} reached the provider: {text[:600]}"


# ============================================================================ Gemini CLI


def gemini_cli_config(**extra: Any) -> gtypes.GenerateContentConfig:
    """Gemini CLI 0.61's request config: its default model config has topK."""
    return gtypes.GenerateContentConfig(
        system_instruction="You are Gemini CLI.",
        temperature=0,
        top_p=1,
        top_k=64,
        thinking_config=gtypes.ThinkingConfig(include_thoughts=True, thinking_budget=8192),
        tools=[gtypes.Tool(function_declarations=[gtypes.FunctionDeclaration(
            name="read_file", description="read a file",
            parameters_json_schema={"type": "object", "properties": {"path": {"type": "string"}}})])],
        **extra,
    )


@pytest.mark.parametrize("model,fmt", [("to-chat", "openai-chat"), ("to-resp", "openai-responses")])
def test_gemini_cli_top_k_is_dropped_and_named(gw: Gateway, upstream: MockUpstream, model: str, fmt: str):
    client = genai_client(gw)
    since = gw.log_size()
    r = client.models.generate_content(
        model=model, contents="hello from gemini cli",
        config=gemini_cli_config(http_options=gtypes.HttpOptions(headers={"x-request-id": f"gcli-{fmt}"})))
    assert r.text == "echo: hello from gemini cli"
    assert dropped(r.sdk_http_response.headers) == ["generationConfig.topK"]
    got = upstream.last()
    assert got.format == fmt
    absent(got.json(), "top_k", "topK")
    assert got.json()["temperature"] == 0
    assert "dropped=generationConfig.topK" in access_line(gw, since, f"gcli-{fmt}")


def test_gemini_cli_top_k_is_converted_for_anthropic_and_nothing_is_named(gw: Gateway, upstream: MockUpstream):
    client = genai_client(gw)
    r = client.models.generate_content(model="to-anth", contents="hi", config=gemini_cli_config())
    assert r.text == "echo: hi"
    assert "x-aigate-dropped" not in r.sdk_http_response.headers
    assert upstream.last().json()["top_k"] == 64


def test_gemini_stream_names_labels_and_seed(gw: Gateway, upstream: MockUpstream):
    client = genai_client(gw)
    # labels are Vertex billing tags; seed has no Anthropic field.
    cfg = gemini_cli_config(labels={"team": "x"}, seed=3)
    chunks = list(client.models.generate_content_stream(model="to-anth", contents="streamed", config=cfg))
    assert "".join(c.text or "" for c in chunks) == "echo: streamed"
    assert dropped(chunks[0].sdk_http_response.headers) == ["labels", "generationConfig.seed"]
    absent(upstream.last().json(), "labels", "seed")


def test_gemini_candidate_count_is_still_refused_naming_the_field(gw: Gateway, upstream: MockUpstream):
    from google.genai import errors as genai_errors
    n = len(upstream.requests)
    client = genai_client(gw)
    with pytest.raises(genai_errors.ClientError) as ei:
        client.models.generate_content(model="to-anth", contents="x", config=gemini_cli_config(candidate_count=2))
    assert ei.value.code == 400 and ei.value.message.startswith("n: "), ei.value.message
    assert len(upstream.requests) == n, "a refused request reached the provider"


# ============================================================================ Codex CLI


CODEX_EXTRA = {
    "client_metadata": {"x-codex-installation-id": "inst-1"},
    "text": {"verbosity": "low"},
}


def codex_request(**over: Any) -> dict:
    """What Codex (`wire_api = "responses"`) sends on every turn."""
    req: dict[str, Any] = dict(
        instructions="You are Codex, a coding agent.",
        input=[{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list the files"}]}],
        tools=[{"type": "function", "name": "shell", "description": "Runs a shell command", "strict": False,
                "parameters": {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}}, "required": ["command"]}}],
        tool_choice="auto",
        parallel_tool_calls=False,
        reasoning={"effort": "medium", "summary": "auto"},
        store=False,
        include=["reasoning.encrypted_content"],
        prompt_cache_key="019a7c2e-session",
        extra_body=CODEX_EXTRA,
    )
    req.update(over)
    return req


CODEX_NAMED = ["client_metadata", "include", "prompt_cache_key", "text.verbosity"]


@pytest.mark.parametrize("model,fmt", [("to-chat", "openai-chat"), ("to-anth", "anthropic-messages"), ("to-gem", "gemini")])
def test_codex_responses_request_is_answered_with_its_hints_named(gw: Gateway, upstream: MockUpstream, model: str, fmt: str):
    since = gw.log_size()
    rid = f"codex-{fmt}"
    raw = openai_client(gw, **{"x-request-id": rid}).responses.with_raw_response.create(model=model, **codex_request())
    assert raw.parse().output_text == "echo: list the files"
    assert dropped(raw.headers) == CODEX_NAMED
    got = upstream.last()
    assert got.format == fmt
    absent(got.json(), "client_metadata", "prompt_cache_key", "019a7c2e", "encrypted_content", "verbosity", "inst-1")
    assert "shell" in json.dumps(got.json()), "the function tool is converted"
    line = access_line(gw, since, rid)
    assert "dropped=client_metadata,include,prompt_cache_key,text.verbosity" in line, line


def test_codex_stream_to_chat_names_the_same_paths(gw: Gateway, upstream: MockUpstream):
    stream = openai_client(gw).responses.create(model="to-chat", stream=True, **codex_request())
    text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
    assert text == "echo: list the files"
    assert dropped(stream.response.headers) == CODEX_NAMED
    absent(upstream.last().json(), "client_metadata", "prompt_cache_key")


def test_codex_local_shell_tool_is_refused_naming_it(gw: Gateway, upstream: MockUpstream):
    n = len(upstream.requests)
    tools = codex_request()["tools"] + [{"type": "local_shell"}]
    with pytest.raises(openai.BadRequestError) as ei:
        openai_client(gw).responses.create(model="to-anth", **codex_request(tools=tools))
    assert ei.value.status_code == 400
    assert ei.value.body["param"] == "tools[1]", ei.value.body
    assert len(upstream.requests) == n


# Codex 0.169's `multi_agent_v1` tool: a namespace of function tools.
NAMESPACE = {"type": "namespace", "name": "multi_agent_v1", "description": "Tools for sub-agents.", "tools": [
    {"type": "function", "name": "spawn_agent", "description": "Spawn an agent.", "strict": False,
     "parameters": {"type": "object", "properties": {"task": {"type": "string"}}, "required": ["task"], "additionalProperties": False}},
    {"type": "function", "name": "close_agent", "description": "Close an agent.", "strict": False,
     "parameters": {"type": "object", "properties": {"target": {"type": "string"}}, "required": ["target"], "additionalProperties": False}},
]}
FLAT = ["multi_agent_v1__spawn_agent", "multi_agent_v1__close_agent"]


def namespaced_calls(output: list[Any]) -> list[tuple[str, str | None]]:
    return [(i.name, getattr(i, "namespace", None)) for i in output if i.type == "function_call"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_codex_namespace_tool_reaches_anthropic_flattened_and_calls_come_back_in_it(gw: Gateway, upstream: MockUpstream, stream: bool):
    """A namespace of functions goes to Anthropic as functions named
    `namespace__name`; the model's calls of them come back to the client as
    `function_call` items with `namespace` and `name` apart (whole and streamed), and
    given back in the history they reach Anthropic under the flat name again."""
    client = openai_client(gw)
    req = codex_request(tools=[NAMESPACE])
    if stream:
        events = list(client.responses.create(model="to-anth-tools", stream=True, **req))
        done = [e for e in events if e.type == "response.output_item.done" and e.item.type == "function_call"]
        added = [e for e in events if e.type == "response.output_item.added" and e.item.type == "function_call"]
        assert [(e.item.name, e.item.namespace) for e in added] == [(e.item.name, e.item.namespace) for e in done]
        output = [e for e in events if e.type == "response.completed"][0].response.output
    else:
        output = client.responses.create(model="to-anth-tools", **req).output
    assert namespaced_calls(output) == [("spawn_agent", "multi_agent_v1"), ("close_agent", "multi_agent_v1")]
    sent = upstream.last().json()
    assert [t["name"] for t in sent["tools"]] == FLAT
    assert sent["tools"][0]["description"] == "(multi_agent_v1: Tools for sub-agents.) Spawn an agent."
    assert "namespace" not in json.dumps(sent)
    # The next turn: the calls and their outputs, as Codex sends them back.
    calls = [i for i in output if i.type == "function_call"]
    history = req["input"] + [c.model_dump(exclude_none=True) for c in calls] + [
        {"type": "function_call_output", "call_id": c.call_id, "namespace": c.namespace, "name": c.name, "output": f"done {c.name}"} for c in calls]
    answer = client.responses.create(model="to-anth-tools", **codex_request(tools=[NAMESPACE], input=history))
    assert answer.output_text == "tool results: done spawn_agent; done close_agent"
    msgs = upstream.last().json()["messages"]
    assert [b["name"] for b in msgs[1]["content"] if b["type"] == "tool_use"] == FLAT
    assert [b["tool_use_id"] for b in msgs[2]["content"]] == [c.call_id for c in calls]


def test_codex_web_search_is_anthropics_search_tool_and_refused_where_none_runs(gw: Gateway, upstream: MockUpstream):
    """Codex's `web_search` (cached mode: `external_web_access: false`) is Anthropic's
    `web_search_20250305` server tool; the cached-only switch, which Anthropic lacks,
    is named. An OpenAI Chat or Gemini target cannot run it: 400 naming the tool."""
    tools = codex_request()["tools"] + [{"type": "web_search", "external_web_access": False}]
    raw = openai_client(gw).responses.with_raw_response.create(model="to-anth", **codex_request(tools=tools))
    assert raw.parse().output_text == "echo: list the files"
    assert dropped(raw.headers) == CODEX_NAMED + ["tools[1].external_web_access"]
    sent = upstream.last().json()
    assert sent["tools"][1] == {"type": "web_search_20250305", "name": "web_search"}
    n = len(upstream.requests)
    for model in ("to-chat", "to-gem"):
        with pytest.raises(openai.BadRequestError) as ei:
            openai_client(gw).responses.create(model=model, **codex_request(tools=tools))
        assert ei.value.body["param"] == "tools[1]", ei.value.body
        assert "web_search" in ei.value.body["message"], ei.value.body
    assert len(upstream.requests) == n


# ============================================================================ Claude Code


def claude_code_request(**over: Any) -> dict:
    """What Claude Code 2.1 sends: cache breakpoints, a tool with input examples, the
    tool-search tool and an MCP tool deferred behind it, context management, its
    user id, thinking."""
    req: dict[str, Any] = dict(
        max_tokens=32000,
        system=[{"type": "text", "text": "You are Claude Code."},
                {"type": "text", "text": "Environment: linux.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "fix the bug", "cache_control": {"type": "ephemeral"}}]}],
        tools=[
            {"name": "Bash", "description": "Run a command", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
             "input_examples": [{"command": "ls"}]},
            {"type": "tool_search_tool_regex_20251119", "name": "tool_search_tool_regex"},
            {"name": "mcp__db__query", "description": "Query the database", "defer_loading": True,
             "input_schema": {"type": "object", "properties": {"sql": {"type": "string"}}}},
        ],
        metadata={"user_id": "user_4f2a_account__session_9c1e"},
        thinking={"type": "enabled", "budget_tokens": 10000},
        extra_body={"context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}},
    )
    req.update(over)
    return req


CLAUDE_NAMED = [
    "context_management",
    "system[1].cache_control",
    "messages[0].content[0].cache_control",
    "tools[0].input_examples",
    "tools[2].defer_loading",
    "tools[1]",
]


@pytest.mark.parametrize("model,fmt", [("to-chat", "openai-chat"), ("to-resp", "openai-responses"), ("to-gem", "gemini")])
def test_claude_code_turn_is_answered_with_its_hints_named(gw: Gateway, upstream: MockUpstream, model: str, fmt: str):
    since = gw.log_size()
    rid = f"cc-{fmt}"
    c = anthropic.Anthropic(base_url=gw.url, api_key=anthropic_client(gw).api_key, max_retries=0, timeout=20,
                            default_headers={"x-request-id": rid, "anthropic-beta": "context-management-2025-06-27"})
    raw = c.messages.with_raw_response.create(model=model, **claude_code_request())
    msg = raw.parse()
    assert [b.text for b in msg.content if b.type == "text"] == ["echo: fix the bug"]
    want = CLAUDE_NAMED + (["metadata.user_id"] if fmt == "gemini" else [])
    assert sorted(dropped(raw.headers)) == sorted(want)
    got = upstream.last()
    assert got.format == fmt
    absent(got.json(), "cache_control", "defer_loading", "input_examples", "tool_search", "context_management")
    sent = json.dumps(got.json())
    assert "mcp__db__query" in sent and "sql" in sent, "the deferred tool is sent in full"
    if fmt != "gemini":
        assert "user_4f2a_account__session_9c1e" in sent, "metadata.user_id is mapped to user"
    line = access_line(gw, since, rid)
    assert " dropped=" in line and "tools[2].defer_loading" in line, line


def test_claude_code_stream_to_chat_names_top_k(gw: Gateway, upstream: MockUpstream):
    req = claude_code_request()
    req["extra_body"] = {**req["extra_body"], "top_k": 5}
    with anthropic_client(gw).messages.stream(model="to-chat", **req) as st:
        msg = st.get_final_message()
        headers = st.response.headers
    assert [b.text for b in msg.content if b.type == "text"] == ["echo: fix the bug"]
    assert sorted(dropped(headers)) == sorted(CLAUDE_NAMED + ["top_k"])
    absent(upstream.last().json(), "top_k", "defer_loading")


def test_claude_server_tool_is_still_refused_naming_it(gw: Gateway, upstream: MockUpstream):
    n = len(upstream.requests)
    req = claude_code_request()
    req["tools"] = req["tools"] + [{"type": "web_search_20250305", "name": "web_search"}]
    with pytest.raises(anthropic.BadRequestError) as ei:
        anthropic_client(gw).messages.create(model="to-chat", **req)
    assert ei.value.status_code == 400 and ei.value.body["type"] == "error"
    assert "tools[3]" in ei.value.body["error"]["message"], ei.value.body
    assert len(upstream.requests) == n


def claude_code_turn(**over: Any) -> dict:
    """Claude Code 2.1's turn: a system message mid-conversation (beta
    `mid-conversation-system-2026-04-07`), adaptive thinking and `output_config.effort`."""
    req: dict[str, Any] = dict(
        max_tokens=32000,
        system="You are Claude Code.",
        messages=[{"role": "user", "content": "read the note"},
                  {"role": "system", "content": "Available agent types: claude."},
                  {"role": "user", "content": "then tell me the word"}],
        thinking={"type": "adaptive"},
        output_config={"effort": "high"},
    )
    req.update(over)
    return req


@pytest.mark.parametrize("model,fmt", [("to-chat", "openai-chat"), ("to-resp", "openai-responses"), ("to-gem", "gemini")])
def test_claude_code_mid_conversation_system_and_effort_are_converted(gw: Gateway, upstream: MockUpstream, model: str, fmt: str):
    """Nothing refused and nothing named: the system message keeps its place where the
    target has one (Chat: a system message; Responses: a system input item), Gemini's
    one system instruction takes it; the effort is the target's reasoning effort
    (Gemini: a thinking budget)."""
    raw = anthropic_client(gw).messages.with_raw_response.create(model=model, **claude_code_turn())
    text = [b.text for b in raw.parse().content if b.type == "text"]
    # Gemini: with the system text lifted out, the two user turns are one (the mock
    # echoes its parts joined).
    assert text == ["echo: read the notethen tell me the word" if fmt == "gemini" else "echo: then tell me the word"]
    assert dropped(raw.headers) == []
    got = upstream.last().json()
    if fmt == "openai-chat":
        assert [(m["role"], m["content"]) for m in got["messages"]] == [
            ("system", "You are Claude Code."), ("user", "read the note"),
            ("system", "Available agent types: claude."), ("user", "then tell me the word")]
        assert got["reasoning_effort"] == "high"
    elif fmt == "openai-responses":
        assert got["instructions"] == "You are Claude Code."
        assert [(i["role"], i["content"][0]["text"]) for i in got["input"]] == [
            ("user", "read the note"), ("system", "Available agent types: claude."), ("user", "then tell me the word")]
        assert got["reasoning"]["effort"] == "high"
    else:
        assert [p["text"] for p in got["systemInstruction"]["parts"]] == ["You are Claude Code.", "Available agent types: claude."]
        assert got["contents"] == [{"role": "user", "parts": [{"text": "read the note"}, {"text": "then tell me the word"}]}]
        assert got["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 16384


def test_claude_code_stream_with_effort_max_and_unknown_output_config(gw: Gateway, upstream: MockUpstream):
    with anthropic_client(gw).messages.stream(model="to-chat", **claude_code_turn(output_config={"effort": "max"})) as st:
        msg = st.get_final_message()
    assert [b.text for b in msg.content if b.type == "text"] == ["echo: then tell me the word"]
    assert upstream.last().json()["reasoning_effort"] == "max"
    n = len(upstream.requests)
    with pytest.raises(anthropic.BadRequestError) as ei:
        anthropic_client(gw).messages.create(model="to-chat", **claude_code_turn(extra_body={"output_config": {"effort": "low", "task_budget": {"total": 9}}}))
    assert ei.value.body["error"]["message"].startswith("output_config.task_budget:"), ei.value.body
    assert len(upstream.requests) == n


# ============================================================================ OpenAI Chat


def test_chat_hints_to_anthropic_named_and_refused_n(gw: Gateway, upstream: MockUpstream):
    raw = openai_client(gw).chat.completions.with_raw_response.create(
        model="to-anth", messages=[{"role": "user", "content": "hello"}],
        seed=7, store=True, metadata={"k": "v"}, prompt_cache_key="pc-1", user="u-1", temperature=0.5)
    assert raw.parse().choices[0].message.content == "echo: hello"
    assert dropped(raw.headers) == ["metadata", "prompt_cache_key", "store", "seed"]
    got = upstream.last().json()
    absent(got, "seed", "prompt_cache_key", "pc-1", "store")
    assert got["metadata"] == {"user_id": "u-1"} and got["temperature"] == 0.5
    n = len(upstream.requests)
    with pytest.raises(openai.BadRequestError) as ei:
        openai_client(gw).chat.completions.create(model="to-anth", messages=[{"role": "user", "content": "x"}], n=2)
    assert ei.value.body["param"] == "n", ei.value.body
    assert len(upstream.requests) == n


def test_same_format_drops_nothing(gw: Gateway, upstream: MockUpstream):
    raw = openai_client(gw).chat.completions.with_raw_response.create(
        model="to-chat", messages=[{"role": "user", "content": "same"}], seed=7, store=True, metadata={"k": "v"})
    assert raw.parse().choices[0].message.content == "echo: same"
    assert "x-aigate-dropped" not in raw.headers
    assert upstream.last().json()["seed"] == 7


# ============================================================================ every answer of the request


def test_fallback_names_what_the_answering_target_dropped(start_gateway: StartGateway, upstream: MockUpstream):
    """Gemini (first target) would drop metadata.user_id and keep top_k; it fails with
    500 and OpenAI Chat answers, which maps the user and drops top_k."""
    gw = start_gateway(config(upstream))
    raw = anthropic_client(gw).messages.with_raw_response.create(
        model="gem-then-chat", max_tokens=50, metadata={"user_id": "u-7"}, extra_body={"top_k": 5},
        messages=[{"role": "user", "content": "fall back"}])
    assert raw.parse().content[0].text == "echo: fall back"
    assert dropped(raw.headers) == ["top_k"]
    assert upstream.last().format == "openai-chat"


def test_upstream_error_after_conversion_carries_the_header(gw: Gateway, upstream: MockUpstream):
    with pytest.raises(openai.BadRequestError) as ei:
        openai_client(gw).chat.completions.create(model="to-anth-400", messages=[{"role": "user", "content": "x"}], seed=1)
    assert dropped(ei.value.response.headers) == ["seed"]
    absent(upstream.last().json(), "seed")


def test_stream_opened_by_a_keepalive_tick_carries_the_header(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(config(upstream, stream_keepalive_seconds=1))
    stream = openai_client(gw).responses.create(model="to-chat-stall", stream=True, **codex_request())
    text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
    assert text == "echo: list the files"
    assert dropped(stream.response.headers) == CODEX_NAMED


def test_json_access_log_lists_dropped(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(config(upstream, log_format="json"))
    since = gw.log_size()
    client = genai_client(gw)
    r = client.models.generate_content(
        model="to-chat", contents="json log",
        config=gemini_cli_config(http_options=gtypes.HttpOptions(headers={"x-request-id": "json-drop-1"})))
    assert r.text == "echo: json log"
    line = access_line(gw, since, "json-drop-1")
    assert json.loads(line[line.index("{"):])["dropped"] == ["generationConfig.topK"], line
