"""Conversation turns driven through the official SDKs, and what the mock upstream
received, seen format-neutrally. Shared by test_matrix.py and test_conversion.py.

- `Turn`: what one answer looked like to the client (text, thinking, tool calls,
  finish reason, usage in the client's own field names).
- `ChatSDK`, `ResponsesSDK`, `AnthropicSDK`, `GenaiSDK`: one per client SDK, each with
  `ask(...)` (one request, streamed through the SDK's own stream helper or not) and
  `tool_round(...)` (tools declared → parallel calls → results sent back → final answer).
- `upstream_view(rec)`: a recorded upstream request in any provider format reduced to
  system prompt, user text, tool calls in the history and tool results, each read from
  that provider's own fields.
- `assert_usage(sdk, usage, neutral, reasoning)`: SPEC "Usage totals" arithmetic in the
  client's shape.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import anthropic
import openai
from google.genai import types as gtypes

import mock_upstream as mu
from harness import Gateway
from helpers import anthropic_client, genai_client, openai_client

SYSTEM = "You are terse. Answer in one short line."
USER = "What is the capital of France?"
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "City name"}, "unit": {"type": "string", "enum": ["c", "f"]}},
    "required": ["city", "unit"],
}
TIME_SCHEMA = {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}
TOOLS = [("get_weather", "Current weather in a city", WEATHER_SCHEMA), ("get_time", "Local time in a timezone", TIME_SCHEMA)]
# What the mock calls for TOOLS (mock_upstream.make_args: call i uses tool i, args from the schema).
EXPECTED_CALLS = [("get_weather", {"city": "city-1", "unit": "c"}), ("get_time", {"timezone": "timezone-2"})]
RESULTS = {"get_weather": "18C and sunny", "get_time": "14:05"}
FINAL_AFTER_TOOLS = "tool results: 18C and sunny; 14:05"
ECHO = f"echo: {USER}"
THINKING = mu.thinking_for(mu.Prompt(last_user_text=USER))

SDKS = ("openai-chat", "openai-responses", "anthropic", "genai")
PROVIDERS = ("openai-chat", "openai-responses", "anthropic", "gemini")
# Recorded.format of each provider wire.
PROVIDER_FORMAT = {"openai-chat": "openai-chat", "openai-responses": "openai-responses", "anthropic": "anthropic-messages", "gemini": "gemini"}


@dataclasses.dataclass
class Call:
    id: str | None
    name: str
    args: Any


@dataclasses.dataclass
class Turn:
    text: str
    thinking: str
    calls: list[Call]
    finish: str | None
    usage: dict  # the client's usage object as a dict, in the client's field names
    raw: Any = None  # SDK object(s) for the next turn
    extra: dict = dataclasses.field(default_factory=dict)


def _dump(obj: Any) -> dict:
    if obj is None:
        return {}
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    return dict(obj)


def _parse_args(s: Any) -> Any:
    if isinstance(s, str):
        try:
            return json.loads(s)
        except ValueError:
            return s
    return s


# ============================================================================ OpenAI Chat


class ChatSDK:
    name = "openai-chat"

    def __init__(self, gw: Gateway):
        self.client = openai_client(gw)

    def ask(self, model: str, messages: list, stream: bool, **kw: Any) -> Turn:
        if not stream:
            r = self.client.chat.completions.create(model=model, messages=messages, **kw)
            assert len(r.choices) == 1, r
            m = r.choices[0].message
            extra = m.model_extra or {}
            calls = [Call(tc.id, tc.function.name, _parse_args(tc.function.arguments)) for tc in m.tool_calls or []]
            return Turn(m.content or "", extra.get("reasoning_content") or "", calls, r.choices[0].finish_reason, _dump(r.usage), raw=m, extra={"reasoning_details": extra.get("reasoning_details"), "message": m})
        chunks = list(self.client.chat.completions.create(model=model, messages=messages, stream=True, stream_options={"include_usage": True}, **kw))
        assert chunks, "empty stream"
        assert chunks[0].choices and chunks[0].choices[0].delta.role == "assistant", f"the first chunk carries role assistant: {chunks[0]}"
        text, reasoning, finishes = [], [], []
        tools: dict[int, dict] = {}
        details: dict[int, dict] = {}
        for ch in chunks:
            for c in ch.choices:
                d = c.delta
                text.append(d.content or "")
                de = d.model_extra or {}
                reasoning.append(de.get("reasoning_content") or "")
                for det in de.get("reasoning_details") or []:
                    cur = details.setdefault(det.get("index", len(details)), {})
                    for k, v in det.items():
                        if k == "text" and isinstance(cur.get(k), str):
                            cur[k] += v or ""
                        else:
                            cur[k] = v
                for tc in d.tool_calls or []:
                    cur = tools.setdefault(tc.index, {"id": None, "name": None, "arguments": "", "first": tc, "extra": {}, "fn_extra": {}})
                    cur["extra"].update(tc.model_extra or {})  # fields beyond OpenAI's (e.g. a provider signature)
                    cur["fn_extra"].update((tc.function.model_extra if tc.function else None) or {})
                    if tc.id:
                        assert cur["id"] is None, f"tool call {tc.index}: a second id on a continuation delta: {ch}"
                        cur["id"] = tc.id
                    if tc.function and tc.function.name:
                        assert cur["name"] is None, f"tool call {tc.index}: a name on a continuation delta opens nothing: {ch}"
                        cur["name"] = tc.function.name
                    if tc.function and tc.function.arguments:
                        cur["arguments"] += tc.function.arguments
                if c.finish_reason:
                    finishes.append(c.finish_reason)
        assert len(finishes) == 1, f"exactly one chunk carries a finish_reason, got {finishes}"
        for i, t in tools.items():
            assert t["first"].id and t["first"].function and t["first"].function.name, f"the first delta of tool call {i} carries id and name: {t['first']}"
        usage_chunks = [ch for ch in chunks if ch.usage is not None]
        assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1] and chunks[-1].choices == [], "with include_usage, usage comes once, in a last chunk with no choices"
        calls = [Call(t["id"], t["name"], _parse_args(t["arguments"])) for _, t in sorted(tools.items())]
        msg: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
        if calls:
            msg["tool_calls"] = [
                {**t["extra"], "id": t["id"], "type": "function", "function": {**t["fn_extra"], "name": t["name"], "arguments": t["arguments"]}} for _, t in sorted(tools.items())
            ]
        if "".join(reasoning):
            msg["reasoning_content"] = "".join(reasoning)
        if details:
            msg["reasoning_details"] = [details[k] for k in sorted(details)]
        return Turn("".join(text), "".join(reasoning), calls, finishes[0], _dump(chunks[-1].usage), raw=msg, extra={"reasoning_details": msg.get("reasoning_details"), "message": msg, "chunks": chunks})

    @staticmethod
    def tools() -> list:
        return [{"type": "function", "function": {"name": n, "description": d, "parameters": s}} for n, d, s in TOOLS]

    def text_turn(self, model: str, stream: bool, reasoning: bool = False) -> Turn:
        kw = {"reasoning_effort": "low"} if reasoning else {}
        return self.ask(model, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}], stream, **kw)

    def tool_round(self, model: str, stream: bool) -> tuple[Turn, Turn]:
        msgs: list = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]
        first = self.ask(model, msgs, stream, tools=self.tools())
        msgs.append(first.raw)  # the SDK's message object (non-stream) or the rebuilt one (stream)
        for c in first.calls:
            msgs.append({"role": "tool", "tool_call_id": c.id, "content": RESULTS[c.name]})
        return first, self.ask(model, msgs, stream, tools=self.tools())


# ============================================================================ OpenAI Responses


class ResponsesSDK:
    name = "openai-responses"

    def __init__(self, gw: Gateway):
        self.client = openai_client(gw)

    @staticmethod
    def _turn(resp: Any, extra: dict | None = None) -> Turn:
        calls, thinking = [], []
        for it in resp.output:
            if it.type == "function_call":
                calls.append(Call(it.call_id, it.name, _parse_args(it.arguments)))
            elif it.type == "reasoning":
                thinking += [s.text for s in it.summary or []]
                thinking += [c.text for c in getattr(it, "content", None) or [] if getattr(c, "text", None)]
        finish = resp.status
        if resp.incomplete_details is not None:
            finish = f"{resp.status}:{resp.incomplete_details.reason}"
        return Turn(resp.output_text, "".join(thinking), calls, finish, _dump(resp.usage), raw=resp, extra=extra or {})

    def ask(self, model: str, stream: bool, **kw: Any) -> Turn:
        if not stream:
            return self._turn(self.client.responses.create(model=model, **kw))
        with self.client.responses.stream(model=model, **kw) as s:
            events = list(s)
            final = s.get_final_response()
        assert events[0].type == "response.created", [e.type for e in events[:3]]
        assert events[-1].type == "response.completed", [e.type for e in events[-3:]]
        seqs = [e.sequence_number for e in events]
        assert seqs == sorted(set(seqs)), f"sequence_number must increase: {seqs}"
        deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert deltas == final.output_text, f"text deltas {deltas!r} differ from the final response text {final.output_text!r}"
        return self._turn(final, {"events": events})

    @staticmethod
    def tools() -> list:
        return [{"type": "function", "name": n, "description": d, "parameters": s, "strict": False} for n, d, s in TOOLS]

    def text_turn(self, model: str, stream: bool, reasoning: bool = False) -> Turn:
        kw: dict = {"reasoning": {"effort": "low", "summary": "auto"}} if reasoning else {}
        return self.ask(model, stream, instructions=SYSTEM, input=USER, **kw)

    def tool_round(self, model: str, stream: bool) -> tuple[Turn, Turn]:
        inp: list = [{"role": "user", "content": USER}]
        first = self.ask(model, stream, instructions=SYSTEM, input=inp, tools=self.tools())
        inp += output_items_for_input(first.raw)
        for c in first.calls:
            inp.append({"type": "function_call_output", "call_id": c.id, "output": RESULTS[c.name]})
        return first, self.ask(model, stream, instructions=SYSTEM, input=inp, tools=self.tools())


def output_items_for_input(resp: Any) -> list[dict]:
    """A response's output items as the next request's input items, as coding agents send
    them back every turn (reasoning items with their encrypted content, function calls
    with their ids)."""
    out = []
    for it in resp.output:
        d = it.model_dump(mode="json", exclude_none=True)
        d.pop("parsed_arguments", None)  # added by the SDK's stream helper, not an API field
        out.append(d)
    return out


# ============================================================================ Anthropic


class AnthropicSDK:
    name = "anthropic"

    def __init__(self, gw: Gateway):
        self.client = anthropic_client(gw)

    @staticmethod
    def _turn(m: Any, extra: dict | None = None) -> Turn:
        text = "".join(b.text for b in m.content if b.type == "text")
        thinking = "".join(b.thinking for b in m.content if b.type == "thinking")
        calls = [Call(b.id, b.name, b.input) for b in m.content if b.type == "tool_use"]
        return Turn(text, thinking, calls, m.stop_reason, _dump(m.usage), raw=m, extra=extra or {})

    def ask(self, model: str, stream: bool, max_tokens: int = 512, **kw: Any) -> Turn:
        if not stream:
            return self._turn(self.client.messages.create(model=model, max_tokens=max_tokens, **kw))
        with self.client.messages.stream(model=model, max_tokens=max_tokens, **kw) as s:
            events = list(s)
            final = s.get_final_message()
        types = [e.type for e in events]
        assert types[0] == "message_start" and types[-1] == "message_stop", types
        return self._turn(final, {"events": events})

    @staticmethod
    def tools() -> list:
        return [{"name": n, "description": d, "input_schema": s} for n, d, s in TOOLS]

    def text_turn(self, model: str, stream: bool, reasoning: bool = False) -> Turn:
        kw: dict = {"thinking": {"type": "enabled", "budget_tokens": 1024}, "max_tokens": 2048} if reasoning else {}
        return self.ask(model, stream, system=SYSTEM, messages=[{"role": "user", "content": USER}], **kw)

    def tool_round(self, model: str, stream: bool) -> tuple[Turn, Turn]:
        msgs: list = [{"role": "user", "content": USER}]
        first = self.ask(model, stream, system=SYSTEM, messages=msgs, tools=self.tools())
        msgs.append({"role": "assistant", "content": first.raw.content})  # the SDK's blocks, as its docs show
        msgs.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": c.id, "content": RESULTS[c.name]} for c in first.calls]})
        return first, self.ask(model, stream, system=SYSTEM, messages=msgs, tools=self.tools())


# ============================================================================ google-genai


class GenaiSDK:
    name = "genai"

    def __init__(self, gw: Gateway):
        self.client = genai_client(gw)  # keep referenced: it closes its HTTP client when collected

    @staticmethod
    def _finish(fr: Any) -> str | None:
        if fr is None:
            return None
        return fr.value if hasattr(fr, "value") else str(fr)

    def ask(self, model: str, contents: Any, stream: bool, config: gtypes.GenerateContentConfig | None = None) -> Turn:
        if not stream:
            r = self.client.models.generate_content(model=model, contents=contents, config=config)
            assert r.candidates and len(r.candidates) == 1, r
            parts = list(r.candidates[0].content.parts or [])
            finish, usage, chunks = self._finish(r.candidates[0].finish_reason), r.usage_metadata, [r]
        else:
            chunks = list(self.client.models.generate_content_stream(model=model, contents=contents, config=config))
            assert chunks, "empty stream"
            parts = []
            finishes = []
            for ch in chunks:
                for cand in ch.candidates or []:
                    parts += list((cand.content.parts if cand.content else None) or [])
                    if cand.finish_reason is not None:
                        finishes.append(self._finish(cand.finish_reason))
            assert len(finishes) == 1 and chunks[-1].candidates[0].finish_reason is not None, f"one finishReason, on the last chunk: {finishes}"
            finish, usage = finishes[0], chunks[-1].usage_metadata
        text = "".join(p.text for p in parts if p.text and not p.thought)
        thinking = "".join(p.text for p in parts if p.text and p.thought)
        calls = [Call(p.function_call.id, p.function_call.name, dict(p.function_call.args or {})) for p in parts if p.function_call]
        return Turn(text, thinking, calls, finish, _dump(usage), raw=parts, extra={"chunks": chunks})

    @staticmethod
    def tools() -> list:
        return [gtypes.Tool(function_declarations=[gtypes.FunctionDeclaration(name=n, description=d, parameters=s) for n, d, s in TOOLS])]

    def text_turn(self, model: str, stream: bool, reasoning: bool = False) -> Turn:
        cfg = gtypes.GenerateContentConfig(system_instruction=SYSTEM)
        if reasoning:
            cfg.thinking_config = gtypes.ThinkingConfig(include_thoughts=True, thinking_budget=1024)
        return self.ask(model, USER, stream, cfg)

    def tool_round(self, model: str, stream: bool) -> tuple[Turn, Turn]:
        cfg = gtypes.GenerateContentConfig(system_instruction=SYSTEM, tools=self.tools())
        contents: list = [gtypes.Content(role="user", parts=[gtypes.Part(text=USER)])]
        first = self.ask(model, contents, stream, cfg)
        contents.append(gtypes.Content(role="model", parts=first.raw))  # the parts as received (ids, signatures)
        # Results by name, in call order, without ids (what most Gemini callers send).
        contents.append(gtypes.Content(role="user", parts=[gtypes.Part.from_function_response(name=c.name, response={"result": RESULTS[c.name]}) for c in first.calls]))
        return first, self.ask(model, contents, stream, cfg)


DRIVERS = {"openai-chat": ChatSDK, "openai-responses": ResponsesSDK, "anthropic": AnthropicSDK, "genai": GenaiSDK}


# ============================================================================ expectations in the client's shape

FINISH_TEXT = {"openai-chat": "stop", "openai-responses": "completed", "anthropic": "end_turn", "genai": "STOP"}
FINISH_TOOLS = {"openai-chat": "tool_calls", "openai-responses": "completed", "anthropic": "tool_use", "genai": "STOP"}


def _num(d: dict, *path: str) -> int | None:
    cur: Any = d
    for p in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


def assert_usage(sdk: str, usage: dict, neutral: dict, reasoning: int | None = None) -> None:
    """`neutral`: mock_upstream USAGE-style numbers (input includes cached; output
    includes reasoning). `reasoning`: the reasoning count the client must see (0 also
    accepts an absent field); None: `neutral["reasoning"]`."""
    inp, cached, out = neutral["input"], neutral["cached"], neutral["output"]
    rsn = neutral["reasoning"] if reasoning is None else reasoning
    where = f"{sdk} usage {usage}"
    if sdk == "openai-chat":
        assert _num(usage, "prompt_tokens") == inp, f"prompt_tokens includes cached tokens: want {inp}; {where}"
        assert _num(usage, "completion_tokens") == out, f"completion_tokens want {out}; {where}"
        assert _num(usage, "total_tokens") == inp + out, f"total_tokens want {inp + out}; {where}"
        assert (_num(usage, "prompt_tokens_details", "cached_tokens") or 0) == cached, f"cached_tokens want {cached}; {where}"
        assert (_num(usage, "completion_tokens_details", "reasoning_tokens") or 0) == rsn, f"reasoning_tokens want {rsn}; {where}"
    elif sdk == "openai-responses":
        assert _num(usage, "input_tokens") == inp, f"input_tokens includes cached tokens: want {inp}; {where}"
        assert _num(usage, "output_tokens") == out, f"output_tokens want {out}; {where}"
        assert _num(usage, "total_tokens") == inp + out, f"total_tokens want {inp + out}; {where}"
        assert (_num(usage, "input_tokens_details", "cached_tokens") or 0) == cached, f"cached_tokens want {cached}; {where}"
        assert (_num(usage, "output_tokens_details", "reasoning_tokens") or 0) == rsn, f"reasoning_tokens want {rsn}; {where}"
    elif sdk == "anthropic":
        assert _num(usage, "input_tokens") == inp - cached, f"input_tokens excludes cache reads: want {inp - cached}; {where}"
        assert (_num(usage, "cache_read_input_tokens") or 0) == cached, f"cache_read_input_tokens want {cached}; {where}"
        assert (_num(usage, "cache_creation_input_tokens") or 0) == 0, f"cache_creation_input_tokens want 0; {where}"
        assert _num(usage, "output_tokens") == out, f"output_tokens (thinking included) want {out}; {where}"
        assert (_num(usage, "output_tokens_details", "thinking_tokens") or 0) == rsn, f"output_tokens_details.thinking_tokens want {rsn}; {where}"
    elif sdk == "genai":
        assert _num(usage, "prompt_token_count") == inp, f"promptTokenCount includes cached tokens: want {inp}; {where}"
        cand, thoughts = _num(usage, "candidates_token_count") or 0, _num(usage, "thoughts_token_count") or 0
        assert cand + thoughts == out, f"candidatesTokenCount + thoughtsTokenCount want {out}; {where}"
        assert thoughts == rsn, f"thoughtsTokenCount want {rsn}; {where}"
        assert (_num(usage, "cached_content_token_count") or 0) == cached, f"cachedContentTokenCount want {cached}; {where}"
        assert _num(usage, "total_token_count") == inp + out, f"totalTokenCount want {inp + out}; {where}"
    else:
        raise ValueError(sdk)


# ============================================================================ the upstream request, neutrally


@dataclasses.dataclass
class UpstreamView:
    format: str
    model: str | None
    stream: bool
    system: str | None
    user_texts: list[str]
    history_calls: list[Call]  # assistant/model tool calls in the history, in order
    results: list[tuple[str | None, str | None, str]]  # (call id, function name, text) in order
    body: dict


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_text(p) for p in content)
    if isinstance(content, dict):
        if isinstance(content.get("text"), str) and content.get("type", "text") in ("text", "input_text", "output_text"):
            return content["text"]
        if "content" in content:
            return _text(content["content"])
    return ""


def upstream_view(rec: mu.Recorded) -> UpstreamView:
    body = rec.json()
    fmt = rec.format or ""
    system: str | None = None
    users: list[str] = []
    calls: list[Call] = []
    results: list[tuple[str | None, str | None, str]] = []
    if fmt == "openai-chat":
        msgs = body.get("messages") or []
        sys_msgs = []
        for m in msgs:
            if m.get("role") in ("system", "developer") and not users and not calls:
                sys_msgs.append(_text(m.get("content")))
            elif m.get("role") == "user":
                users.append(_text(m.get("content")))
            elif m.get("role") == "assistant":
                for tc in m.get("tool_calls") or []:
                    calls.append(Call(tc.get("id"), tc["function"]["name"], _parse_args(tc["function"].get("arguments"))))
            elif m.get("role") == "tool":
                results.append((m.get("tool_call_id"), None, _text(m.get("content"))))
        system = "\n".join(sys_msgs) if sys_msgs else None
        stream = bool(body.get("stream"))
    elif fmt == "openai-responses":
        sys_parts = [body["instructions"]] if isinstance(body.get("instructions"), str) else []
        inp = body.get("input")
        items = [{"role": "user", "content": inp}] if isinstance(inp, str) else (inp or [])
        for it in items:
            typ = it.get("type", "message")
            if typ == "message" and it.get("role") in ("system", "developer") and not users:
                sys_parts.append(_text(it.get("content")))
            elif typ == "message" and it.get("role") == "user":
                users.append(_text(it.get("content")))
            elif typ == "function_call":
                calls.append(Call(it.get("call_id"), it.get("name"), _parse_args(it.get("arguments"))))
            elif typ == "function_call_output":
                out = it.get("output")
                results.append((it.get("call_id"), None, out if isinstance(out, str) else _text(out)))
        system = "\n".join(sys_parts) if sys_parts else None
        stream = bool(body.get("stream"))
    elif fmt == "anthropic-messages":
        s = body.get("system")
        system = s if isinstance(s, str) else (_text(s) if s is not None else None)
        for m in body.get("messages") or []:
            c = m.get("content")
            blocks = [{"type": "text", "text": c}] if isinstance(c, str) else (c or [])
            if m.get("role") == "user":
                t = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
                if t:
                    users.append(t)
                for b in blocks:
                    if b.get("type") == "tool_result":
                        results.append((b.get("tool_use_id"), None, _text(b.get("content"))))
            else:
                for b in blocks:
                    if b.get("type") == "tool_use":
                        calls.append(Call(b.get("id"), b.get("name"), b.get("input")))
        stream = bool(body.get("stream"))
    elif fmt == "gemini":
        si = body.get("systemInstruction") or body.get("system_instruction")
        system = "".join(p.get("text", "") for p in (si or {}).get("parts") or []) if si else None
        for c in body.get("contents") or []:
            for p in c.get("parts") or []:
                fc = p.get("functionCall") or p.get("function_call")
                fr = p.get("functionResponse") or p.get("function_response")
                if fc:
                    calls.append(Call(fc.get("id"), fc.get("name"), fc.get("args")))
                elif fr:
                    r = fr.get("response")
                    if isinstance(r, dict) and len(r) == 1 and isinstance(next(iter(r.values())), str):
                        t = next(iter(r.values()))
                    else:
                        t = json.dumps(r, sort_keys=True)
                    results.append((fr.get("id"), fr.get("name"), t))
            if c.get("role", "user") == "user":
                t = "".join(p.get("text", "") for p in c.get("parts") or [] if "text" in p)
                if t:
                    users.append(t)
        stream = rec.path.endswith(":streamGenerateContent")
        if stream:
            assert rec.query.get("alt") == ["sse"], f"a streamed Gemini call asks for SSE: {rec.path}?{rec.query}"
    else:
        raise AssertionError(f"unexpected upstream format {fmt!r} for {rec.path}")
    return UpstreamView(fmt, rec.model, stream, system, users, calls, results, body)


def new_requests(upstream: mu.MockUpstream, since: int) -> list[mu.Recorded]:
    """Requests the mock received after the first `since`, each waited for."""
    return [upstream.wait_done(r) for r in upstream.requests[since:]]
