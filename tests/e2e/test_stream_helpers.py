"""Issue 15 §4: every converted stream, read by every SDK's high-level stream helper.

For each client SDK, the stream helper agent frameworks use, with its final object:
`openai` `chat.completions.stream(...).get_final_completion()`, `openai`
`responses.stream(...).get_final_response()`, `anthropic`
`messages.stream(...).get_final_message()`, and `google-genai`
`generate_content_stream` (chunks merged as its docs show) — from every upstream wire
(OpenAI Chat, Responses, Anthropic, Gemini; the diagonal passes bytes through).

Each test asks the same question twice, streamed and not, and checks that the helper's
final object says what the non-streamed answer says: the same text, thinking, tool calls
(names and arguments; ids the provider minted for that request, or distinct ones where
Gemini mints none), per-call Gemini signatures, finish reason and usage, the reasoning
count included (Anthropic `output_tokens_details.thinking_tokens`). The expected values
come from the mock upstream's scripted answer, so two equally wrong answers still fail.

Cases: `text` (plain answer), `tools` (two parallel calls), `think` (reasoning then the
answer), `think-tools` (reasoning then two calls; from Gemini the first call carries a
`thoughtSignature`, which an OpenAI Chat client gets as `extra_content` on the call's
first delta: the OpenAI helper asserts every tool-call delta has `function`).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from google.genai import types as gtypes

import mock_upstream as mu
from harness import Gateway, four_kinds_config
from helpers import anthropic_client, genai_client, openai_client
from mock_upstream import USAGE, USAGE_THINK, USAGE_TOOLS, MockUpstream
from sdk_turns import ECHO, EXPECTED_CALLS, PROVIDER_FORMAT, PROVIDERS, SDKS, SYSTEM, THINKING, TOOLS, USER, assert_usage, new_requests

PROVIDER_NAME = {"openai-chat": "sh-chat", "openai-responses": "sh-resp", "anthropic": "sh-anth", "gemini": "sh-gem"}
CASES = ("text", "tools", "think", "think-tools")
# What the mock answers for each case (mock_upstream.make_reply): the usage it reports.
USAGE_OF = {
    "text": USAGE,
    "tools": USAGE_TOOLS,
    "think": USAGE_THINK,
    "think-tools": {**USAGE_TOOLS, "output": USAGE_TOOLS["output"] + USAGE_THINK["reasoning"], "reasoning": USAGE_THINK["reasoning"]},
}
FINISH = {
    "openai-chat": {False: "stop", True: "tool_calls"},
    "openai-responses": {False: "completed", True: "completed"},
    "anthropic": {False: "end_turn", True: "tool_use"},
    "genai": {False: "STOP", True: "STOP"},
}


def helpers_config(mock: MockUpstream) -> dict:
    # `tools` answers calls only when the request declares tools, so one route serves
    # `text` and `tools`, the other `think` and `think-tools`.
    return four_kinds_config(mock, PROVIDER_NAME, "helpers", "think-tools")


@pytest.fixture(scope="session")
def helpers_gw(upstream_server: MockUpstream, session_dir: Path) -> Iterator[Gateway]:
    g = Gateway(helpers_config(upstream_server), session_dir / "stream-helpers", name="stream-helpers")
    g.start()
    yield g
    g.stop()


def _dump(obj: Any) -> dict:
    return obj.model_dump(mode="json") if obj is not None else {}


def _args(s: Any) -> Any:
    return json.loads(s) if isinstance(s, str) else s


# ============================================================================ one answer, read per SDK
#
# Each reader gives (view, ids): `view` is what the answer says, in the client's own
# field names, without the ids (two requests get different ids from the provider);
# `ids` are the tool-call ids in order.


def chat_read(gw: Gateway, model: str, case: str, stream: bool) -> tuple[dict, list]:
    client = openai_client(gw)
    kw: dict[str, Any] = {"model": model, "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]}
    if "tools" in case:
        kw["tools"] = [{"type": "function", "function": {"name": n, "description": d, "parameters": s}} for n, d, s in TOOLS]
    if "think" in case:
        kw["reasoning_effort"] = "low"
    if stream:
        with client.chat.completions.stream(stream_options={"include_usage": True}, **kw) as s:
            for _ in s:  # every event through the helper's accumulator
                pass
            r = s.get_final_completion()
    else:
        r = client.chat.completions.create(**kw)
    assert len(r.choices) == 1, r
    m = r.choices[0].message
    calls = m.tool_calls or []
    view = {
        "text": m.content or "",
        "reasoning_content": (m.model_extra or {}).get("reasoning_content") or "",
        # signed thinking and redacted blocks (the OpenRouter convention)
        "reasoning_details": (m.model_extra or {}).get("reasoning_details"),
        "calls": [(c.function.name, _args(c.function.arguments), (c.model_extra or {}).get("extra_content")) for c in calls],
        "finish": r.choices[0].finish_reason,
        "usage": _dump(r.usage),
    }
    return view, [c.id for c in calls]


def responses_read(gw: Gateway, model: str, case: str, stream: bool) -> tuple[dict, list]:
    client = openai_client(gw)
    kw: dict[str, Any] = {"model": model, "instructions": SYSTEM, "input": USER}
    if "tools" in case:
        kw["tools"] = [{"type": "function", "name": n, "description": d, "parameters": s, "strict": False} for n, d, s in TOOLS]
    if "think" in case:
        kw["reasoning"] = {"effort": "low", "summary": "auto"}
    if stream:
        with client.responses.stream(**kw) as s:
            for _ in s:
                pass
            r = s.get_final_response()
    else:
        r = client.responses.create(**kw)
    calls = [it for it in r.output if it.type == "function_call"]
    thinking = "".join(p.text for it in r.output if it.type == "reasoning" for p in it.summary or [])
    items = []
    for it in r.output:
        d = it.model_dump(mode="json", exclude_none=True)
        for k in ("id", "parsed_arguments"):  # item ids are aigate's own on converted routes; parsed_arguments the helper's
            d.pop(k, None)
        items.append(d)
    view = {
        "items": items,
        "text": r.output_text,
        "thinking": thinking,
        "calls": [(c.name, _args(c.arguments)) for c in calls],
        "finish": r.status,
        "usage": _dump(r.usage),
    }
    return view, [c.call_id for c in calls]


def anthropic_read(gw: Gateway, model: str, case: str, stream: bool) -> tuple[dict, list]:
    client = anthropic_client(gw)
    kw: dict[str, Any] = {"model": model, "max_tokens": 512, "system": SYSTEM, "messages": [{"role": "user", "content": USER}]}
    if "tools" in case:
        kw["tools"] = [{"name": n, "description": d, "input_schema": s} for n, d, s in TOOLS]
    if "think" in case:
        kw.update(thinking={"type": "enabled", "budget_tokens": 1024}, max_tokens=2048)
    if stream:
        with client.messages.stream(**kw) as s:
            for _ in s:
                pass
            m = s.get_final_message()
    else:
        m = client.messages.create(**kw)
    blocks = [b.model_dump(mode="json", exclude_none=True) for b in m.content]
    view = {"blocks": blocks, "finish": m.stop_reason, "usage": _dump(m.usage)}
    return view, [b.id for b in m.content if b.type == "tool_use"]


def genai_read(gw: Gateway, model: str, case: str, stream: bool) -> tuple[dict, list]:
    client = genai_client(gw)
    cfg = gtypes.GenerateContentConfig(system_instruction=SYSTEM)
    if "tools" in case:
        cfg.tools = [gtypes.Tool(function_declarations=[gtypes.FunctionDeclaration(name=n, description=d, parameters=s) for n, d, s in TOOLS])]
    if "think" in case:
        cfg.thinking_config = gtypes.ThinkingConfig(include_thoughts=True, thinking_budget=1024)
    if stream:
        chunks = list(client.models.generate_content_stream(model=model, contents=USER, config=cfg))
        assert chunks, "empty stream"
    else:
        chunks = [client.models.generate_content(model=model, contents=USER, config=cfg)]
    parts, finishes = [], []
    for ch in chunks:
        for cand in ch.candidates or []:
            parts += list((cand.content.parts if cand.content else None) or [])
            if cand.finish_reason is not None:
                finishes.append(cand.finish_reason.value)
    assert len(finishes) == 1, f"one finishReason: {finishes}"
    fcs = [p for p in parts if p.function_call]
    view = {
        "text": "".join(p.text for p in parts if p.text and not p.thought),
        "thinking": "".join(p.text for p in parts if p.text and p.thought),
        # (name, args, signature) per call; signatures on other parts, in order
        "calls": [(p.function_call.name, dict(p.function_call.args or {}), p.thought_signature) for p in fcs],
        "signatures": [p.thought_signature for p in parts if p.thought_signature and not p.function_call],
        "finish": finishes[0],
        "usage": _dump(chunks[-1].usage_metadata),
    }
    return view, [p.function_call.id for p in fcs]


# Another provider's signature reaches a client wrapped with its origin and the id of
# the call or reasoning item it belongs to: `aigate1:{"i": id, ...}` (base64 in text
# fields, bytes in google-genai's `thought_signature`).
WRAP = b"aigate1:"
WRAP_B64 = base64.b64encode(WRAP).decode()[:8]


def scrub(v: Any, names: dict[str, str]) -> Any:
    """`v` with every id of `names` (they differ per request) replaced by its role,
    also inside wrapped signatures, which are shown decoded."""
    if isinstance(v, str) and v.startswith(WRAP_B64):
        v = base64.b64decode(v)
    if isinstance(v, bytes) and v.startswith(WRAP):
        return {"wrapped": scrub(json.loads(v[len(WRAP) :]), names)}
    if isinstance(v, str):
        return names.get(v, v)
    if isinstance(v, (list, tuple)):
        return [scrub(x, names) for x in v]
    if isinstance(v, dict):
        return {k: scrub(x, names) for k, x in v.items()}
    return v


READERS = {"openai-chat": chat_read, "openai-responses": responses_read, "anthropic": anthropic_read, "genai": genai_read}


# ============================================================================ what the answer must say


def expected_calls(sdk: str, view: dict) -> list:
    """The tool calls in the view as (name, args): they are EXPECTED_CALLS."""
    if sdk == "anthropic":
        return [(b["name"], b["input"]) for b in view["blocks"] if b["type"] == "tool_use"]
    return [(c[0], c[1]) for c in view["calls"]]


def assert_answer(sdk: str, prov: str, case: str, view: dict) -> None:
    """The scripted answer, in the client's shape (so two equal wrong answers still fail)."""
    tools, think = "tools" in case, "think" in case
    if sdk == "anthropic":
        text = "".join(b["text"] for b in view["blocks"] if b["type"] == "text")
        thinking = "".join(b["thinking"] for b in view["blocks"] if b["type"] == "thinking")
    elif sdk == "openai-chat":
        text, thinking = view["text"], view["reasoning_content"]
    else:
        text, thinking = view["text"], view["thinking"]
    assert text == ("" if tools else ECHO), f"answer text {text!r}"
    assert thinking == (THINKING if think else ""), f"thinking {thinking!r}"
    assert expected_calls(sdk, view) == (EXPECTED_CALLS if tools else []), f"tool calls {view}"
    assert view["finish"] == FINISH[sdk][tools], f"finish {view['finish']!r}"
    assert_usage(sdk, view["usage"], USAGE_OF[case])
    if sdk == "openai-chat" and prov == "gemini" and case == "think-tools":
        sigs = [c[2] for c in view["calls"]]
        assert sigs[0] and sigs[0]["google"]["thought_signature"] and sigs[1] is None, f"the first call carries Gemini's signature: {sigs}"


def assert_ids(sdk: str, prov: str, recs: list[mu.Recorded], ids: list, n: int) -> None:
    """Tool-call ids: the provider's own (what it minted for that request), or distinct
    ones where the provider mints none (Gemini) or the client format has none."""
    if not n:
        assert ids == [], ids
        return
    if sdk == "genai" and prov == "gemini":
        return  # Gemini to Gemini: bytes untouched, the mock mints no ids
    assert all(isinstance(i, str) and i for i in ids) and len(set(ids)) == n, f"distinct ids: {ids}"
    if prov == "anthropic":
        assert ids == ["toolu_01" + mu._hid(recs[0].seq, i, 22) for i in range(n)], ids
    elif prov != "gemini":
        assert ids == ["call_" + mu._hid(recs[0].seq, i) for i in range(n)], ids


CELLS = [(s, p, c) for s in SDKS for p in PROVIDERS for c in CASES]


@pytest.mark.parametrize("sdk,prov,case", CELLS, ids=[f"{s}-sdk->{p}-provider-{c}" for s, p, c in CELLS])
def test_stream_helper_final_equals_answer(helpers_gw: Gateway, upstream: MockUpstream, sdk: str, prov: str, case: str):
    """The SDK's stream helper reads the converted stream without error, and its final
    object says what the non-streamed answer of the same upstream says."""
    model = PROVIDER_NAME[prov] + ("-think" if "think" in case else "")
    read = READERS[sdk]
    n_calls = len(EXPECTED_CALLS) if "tools" in case else 0

    views = []
    for stream in (False, True):
        since = len(upstream.requests)
        view, ids = read(helpers_gw, model, case, stream)
        recs = new_requests(upstream, since)
        assert len(recs) == 1 and recs[0].format == PROVIDER_FORMAT[prov] and recs[0].status == 200, [(r.path, r.status) for r in recs]
        if prov == "gemini":
            assert recs[0].path.endswith(":streamGenerateContent") == stream, recs[0].path
        assert_ids(sdk, prov, recs, ids, n_calls)
        names = {i: f"<call {n}>" for n, i in enumerate(ids) if i}
        names["rs_" + mu._hid(recs[0].seq, 50, 48)] = "<reasoning item>"  # the mock's Responses reasoning item id
        views.append(scrub(view, names))
    want, got = views

    assert_answer(sdk, prov, case, want)
    assert got == want, f"the stream helper's final object differs from the answer:\n stream: {got}\n answer: {want}"
