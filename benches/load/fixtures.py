#!/usr/bin/env python3
"""Writes the fixed request and answer bodies the load benchmark uses.

Usage: fixtures.py DIR [SSE_EVENTS]

Everything is generated here (no network, no corpus needed) in the shape of
real provider traffic: an OpenAI chat completion of ~600 bytes, an Anthropic
message, ~1 KB client requests with a system prompt and a user message, and
SSE streams of SSE_EVENTS events (default 200) in each provider's framing
(OpenAI: `data:` chunks ending in `data: [DONE]`; Anthropic: `event:` names,
message_start ... ping ... content_block_delta ... message_delta, message_stop).
"""

import json
import os
import sys

SYSTEM = (
    "You are a meticulous senior support engineer for an infrastructure company. "
    "Answer precisely, cite the configuration keys involved, prefer short numbered "
    "steps, never invent options that do not exist, and say so plainly when a "
    "question cannot be answered from the information given. Keep answers under "
    "200 words unless the user asks for more detail."
)
USER = (
    "Our reverse proxy sits in front of three upstream pools and we see occasional "
    "502 responses during deploys. Connections are kept alive for 60 seconds on the "
    "proxy side and 75 seconds on the upstream side. The health checks run every 5 "
    "seconds. What are the likely causes, and which settings should we look at first? "
    "We run two proxy replicas behind a TCP load balancer, and deploys roll one upstream "
    "pool at a time with a 30 second drain."
)


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def openai_request(model, stream):
    body = {
        "model": model,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": USER},
        ],
        "temperature": 0.2,
        "max_tokens": 512,
        "user": "bench-user-0042",
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return compact(body)


def anthropic_request(model, stream):
    body = {
        "model": model,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": [{"type": "text", "text": USER}]}],
        "max_tokens": 512,
        "temperature": 0.2,
        "metadata": {"user_id": "bench-user-0042"},
    }
    if stream:
        body["stream"] = True
    return compact(body)


ANSWER = (
    "Most likely the upstream closes idle keep-alive connections while the proxy "
    "still reuses them; set the proxy's idle timeout below the upstream's."
)


def openai_response():
    return compact({
        "id": "chatcmpl-BJjf61mLb9z5H45ClJzbx0UWKwjo1",
        "object": "chat.completion",
        "created": 1744043456,
        "model": "gpt-4o-2024-08-06",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": ANSWER, "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": 142, "completion_tokens": 31, "total_tokens": 173,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0},
        },
        "service_tier": "default",
        "system_fingerprint": "fp_898ac29719",
    })


def anthropic_response():
    return compact({
        "id": "msg_01Fg1JVgvCYUHWsxrj9GkpEv",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-20250514",
        "content": [{"type": "text", "text": ANSWER}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 142, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0, "output_tokens": 31,
            "service_tier": "standard",
        },
    })


WORDS = ANSWER.split(" ")


def openai_sse(events):
    base = {"id": "chatcmpl-C4HqHBe4xca0k0EzsCnf1t6V3YFXp", "object": "chat.completion.chunk",
            "created": 1755137933, "model": "gpt-4o-2024-08-06", "service_tier": "default",
            "system_fingerprint": "fp_898ac29719"}
    out = []

    def chunk(delta, finish=None, usage=False):
        c = dict(base)
        c["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        if usage:
            c["choices"] = []
            c["usage"] = {"prompt_tokens": 142, "completion_tokens": events - 4,
                          "total_tokens": 142 + events - 4}
        out.append("data: " + compact(c) + "\n\n")

    # events = role chunk + content chunks + finish chunk + usage chunk + [DONE]
    chunk({"role": "assistant", "content": "", "refusal": None})
    for i in range(events - 4):
        chunk({"content": (" " if i else "") + WORDS[i % len(WORDS)]})
    chunk({}, finish="stop")
    chunk({}, usage=True)
    out.append("data: [DONE]\n\n")
    return "".join(out)


def anthropic_sse(events):
    out = []

    def ev(name, data):
        out.append("event: " + name + "\ndata: " + compact(data) + "\n\n")

    ev("message_start", {"type": "message_start", "message": {
        "id": "msg_01PgicqXb8hKdXEPHm3LLTGF", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-20250514", "content": [], "stop_reason": None,
        "stop_sequence": None, "usage": {"input_tokens": 142, "cache_creation_input_tokens": 0,
                                         "cache_read_input_tokens": 0, "output_tokens": 1}}})
    ev("content_block_start", {"type": "content_block_start", "index": 0,
                               "content_block": {"type": "text", "text": ""}})
    ev("ping", {"type": "ping"})
    # 7 framing events + the deltas
    for i in range(events - 6):
        ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                   "delta": {"type": "text_delta",
                                             "text": (" " if i else "") + WORDS[i % len(WORDS)]}})
    ev("content_block_stop", {"type": "content_block_stop", "index": 0})
    ev("message_delta", {"type": "message_delta",
                         "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                         "usage": {"output_tokens": events - 6}})
    ev("message_stop", {"type": "message_stop"})
    return "".join(out)


def main():
    d = sys.argv[1]
    events = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    os.makedirs(d, exist_ok=True)
    # Client requests, named req-<client format>-<model>.json. Streaming
    # requests ask for the "-sse" models, which load.sh's aigate config routes
    # to providers whose base_url points at the mock's /sse/ answers (the
    # model name is unchanged upstream, so no body rewrite is added).
    files = {
        "req-openai-gpt-4o.json": openai_request("gpt-4o", False),
        "req-openai-gpt-4o-sse.json": openai_request("gpt-4o-sse", True),
        "req-openai-claude-x.json": openai_request("claude-x", False),
        "req-openai-claude-x-sse.json": openai_request("claude-x-sse", True),
        "req-anthropic-claude-x.json": anthropic_request("claude-x", False),
        "req-anthropic-claude-x-sse.json": anthropic_request("claude-x-sse", True),
        "req-anthropic-gpt-4o.json": anthropic_request("gpt-4o", False),
        "req-anthropic-gpt-4o-sse.json": anthropic_request("gpt-4o-sse", True),
        # mock upstream answers (non-streaming under /v1/..., streams under /sse/v1/...)
        "openai-response.json": openai_response(),
        "anthropic-response.json": anthropic_response(),
        "openai-stream.sse": openai_sse(events),
        "anthropic-stream.sse": anthropic_sse(events),
    }
    for name, text in files.items():
        with open(os.path.join(d, name), "w", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
