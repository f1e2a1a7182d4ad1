"""How an upstream's answer is read off the wire (Pingora's HTTP/1 client, through
the attempt's subrequest, `src/proxy/subreq.rs`; formerly aigate's own reader), end
to end: the exact bytes come from a raw-socket upstream (raw_upstream.py), so the
framing is the test's, not a server library's.

- chunked answers with odd chunk sizes, a chunk extension and trailers, their
  pieces cut anywhere across packets (mid size line, mid data, mid CRLF);
- an informational `100 Continue` head before the answer;
- an HTTP/1.0 answer delimited by the close (the connection is then not reused);
- a stream whose SSE events are cut across chunks and packets, read by the
  official OpenAI SDK;
- broken framing (a Content-Length that is not one number, an answer cut short,
  a bad chunk size, a head past 1 MiB) gives the client a 502 in its own format;
- an answer that is in before the request's body went out (a fast upstream
  answering without reading the body: a static file server, an early refusal)
  is relayed every time: the attempt's body is not held back until the
  subrequest asks for it (it once was, and such an answer could hang).
"""

from __future__ import annotations

import json
from typing import Callable, Iterator

import httpx
import openai
import pytest

from harness import GW_KEY_A, Gateway, provider, route, small_config
from helpers import assert_error_shape
from raw_upstream import ConnUpstream, Piece, chat_answer

StartGateway = Callable[..., Gateway]


def chunked(body: bytes, sizes: list[int]) -> bytes:
    """`body` in chunked coding, chunk sizes cycling through `sizes`; the first
    chunk carries an extension, and trailers end it."""
    out, i, k = b"", 0, 0
    while i < len(body):
        n = sizes[k % len(sizes)]
        part = body[i:i + n]
        ext = b';name="v"' if k == 0 else b""
        out += b"%x%s\r\n%s\r\n" % (len(part), ext, part)
        i += n
        k += 1
    return out + b"0\r\nx-trailer: t\r\n\r\n"


def cut(data: bytes, at: list[int], wait: float = 0.01) -> list[Piece]:
    """`data` sent in pieces cut at the given offsets, a short wait after each."""
    bounds = [0, *at, len(data)]
    return [(data[a:b], wait) for a, b in zip(bounds, bounds[1:]) if b > a]


JSON_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


def sse_body(model: str, text: str) -> bytes:
    chunks = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {"content": "echo: "}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}},
    ]
    events = b""
    for c in chunks:
        c.update({"id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 1, "model": model})
        events += b"data: " + json.dumps(c).encode() + b"\n\n"
    return events + b"data: [DONE]\n\n"


def answers(model: str, text: str) -> tuple[list[Piece], bool]:
    body = chat_answer(model, text)
    if model == "chunked":
        wire = JSON_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body, [1, 7, 50, 3])
        # Cut inside the head, a size line, chunk data and a CRLF, and the trailers.
        return cut(wire, [10, 60, 75, 77, 140, 141, len(wire) - 12, len(wire) - 3]), False
    if model == "continue":
        return [(b"HTTP/1.1 100 Continue\r\n\r\n", 0.02), (JSON_HEAD + b"Content-Length: %d\r\n\r\n%s" % (len(body), body), 0)], False
    if model == "http10":
        return cut(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body, [70]), True
    if model == "stream":
        wire = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(sse_body(model, text), [37, 5, 120])
        return cut(wire, list(range(90, len(wire), 41))), False
    if model == "bad-length":
        return [(JSON_HEAD + b"Content-Length: %d, %d\r\n\r\n%s" % (len(body), len(body) + 1, body), 0)], True
    if model == "cut-short":
        return [(JSON_HEAD + b"Content-Length: %d\r\n\r\n%s" % (len(body) + 100, body), 0)], True
    if model == "bad-chunk":
        return [(JSON_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"zz\r\n" + body, 0)], True
    if model == "huge-head":
        return [(JSON_HEAD + b"x-pad: " + b"p" * (1100 * 1024) + b"\r\n\r\n", 0)], True
    raise AssertionError(f"no answer scripted for {model}")


MODELS = ["chunked", "continue", "http10", "stream", "bad-length", "cut-short", "bad-chunk", "huge-head"]


@pytest.fixture
def upstream() -> Iterator[ConnUpstream]:
    u = ConnUpstream(answers)
    yield u
    u.stop()


@pytest.fixture
def gw(start_gateway: StartGateway, upstream: ConnUpstream) -> Gateway:
    timeouts = {"connect_ms": 1000, "first_byte_ms": 5000, "idle_ms": 5000, "total_ms": 10000}
    return start_gateway(small_config(
        [provider("raw", "openai", upstream.url, timeouts=timeouts, retry={"max_attempts": 1})],
        [route(m, ("raw", None)) for m in MODELS],
    ))


def ask(client: httpx.Client, gw: Gateway, model: str, text: str) -> httpx.Response:
    return client.post(gw.url + "/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": text}]},
                       headers={"Authorization": f"Bearer {GW_KEY_A}"}, timeout=15)


def content(r: httpx.Response) -> str:
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def test_chunked_answer_with_trailers_cut_anywhere_and_the_connection_reused(gw: Gateway, upstream: ConnUpstream):
    with httpx.Client() as c:
        for i in range(3):
            r = ask(c, gw, "chunked", f"chunk {i}")
            assert content(r) == f"echo: chunk {i}"
            assert int(r.headers["content-length"]) == len(r.content)
    assert upstream.accepted == 1, f"the connection was not reused after a chunked answer with trailers ({upstream.accepted} connections)"


def test_informational_head_before_the_answer_is_skipped(gw: Gateway, upstream: ConnUpstream):
    with httpx.Client() as c:
        assert content(ask(c, gw, "continue", "one")) == "echo: one"
        assert content(ask(c, gw, "continue", "two")) == "echo: two"
    assert upstream.accepted == 1


def test_an_answer_before_the_body_is_read_never_hangs(gw: Gateway, upstream: ConnUpstream):
    upstream.early = True
    with httpx.Client() as c:
        for i in range(300):
            # The client waits 15 s; a hung attempt fails the test.
            assert content(ask(c, gw, "chunked", f"n{i}")) == "echo: early", f"request {i}"


def test_close_delimited_answer_is_whole_and_its_connection_not_reused(gw: Gateway, upstream: ConnUpstream):
    with httpx.Client() as c:
        assert content(ask(c, gw, "http10", "one")) == "echo: one"
        assert content(ask(c, gw, "http10", "two")) == "echo: two"
    assert upstream.accepted == 2, "an answer ended by the close left its connection in use"


def test_stream_cut_across_chunks_and_packets_reads_whole_in_the_sdk(gw: Gateway, upstream: ConnUpstream):
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=GW_KEY_A, max_retries=0)
    deltas, finish = [], None
    for chunk in client.chat.completions.create(model="stream", messages=[{"role": "user", "content": "streamed"}], stream=True):
        for choice in chunk.choices:
            deltas.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(deltas) == "echo: streamed" and finish == "stop", deltas
    # The SDK hangs up right after `[DONE]`, here 10 ms before the upstream's
    # last chunk: still a complete answer, not a disconnect, and the upstream
    # connection carries the next requests.
    with httpx.Client() as c:
        for text in ("twice", "thrice"):
            body = {"model": "stream", "messages": [{"role": "user", "content": text}], "stream": True}
            r = c.post(gw.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {GW_KEY_A}"}, timeout=15)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), r.text
            datas = [l[6:] for l in r.text.split("\n") if l.startswith("data: ")]
            assert datas[-1] == "[DONE]", r.text
            text_out = "".join((json.loads(d)["choices"] or [{"delta": {}}])[0]["delta"].get("content") or "" for d in datas[:-1])
            assert text_out == f"echo: {text}", r.text
    assert upstream.accepted == 1, f"{upstream.accepted} upstream connections for three streams"
    metrics = httpx.get(gw.admin_url + "/metrics", timeout=5).text
    disconnects = [l for l in metrics.splitlines() if l.startswith("aigate_client_disconnects_total")]
    assert all(l.endswith(" 0") for l in disconnects), disconnects
    assert 'aigate_upstream_attempts_total{outcome="ok",provider="raw"} 3' in metrics, [l for l in metrics.splitlines() if l.startswith("aigate_upstream_attempts_total")]
    log = gw.log_text()
    assert "client disconnected" not in log, log[-2000:]


@pytest.mark.parametrize("model", ["bad-length", "cut-short", "bad-chunk", "huge-head"])
def test_broken_framing_is_a_502_in_the_client_format(gw: Gateway, upstream: ConnUpstream, model: str):
    with httpx.Client() as c:
        r = ask(c, gw, model, "x")
        assert_error_shape("openai-chat", r, 502)
        # The gateway is fine afterwards, on the same client connection.
        assert content(ask(c, gw, "continue", "after")) == "echo: after"
