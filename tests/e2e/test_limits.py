"""Issue 6, "How it is shown" (per-key limits): rpm, tpm and max_concurrent.

For each limit, in several client formats: the request that crosses it gets 429 in the
client's own error format with `Retry-After` (whole seconds) and the
`x-ratelimit-*-requests` / `-tokens` headers, is not sent upstream, and is counted in
`aigate_rate_limited_total{key}`; the window reopens on time (1-2 s windows via
`rate_limit_window_seconds`); token reservations (body bytes / 4 + max output tokens)
block concurrent requests and are reconciled with the usage the answer reports
(JSON and streams); concurrency slots come back however a request ends.

Every test starts its own gateway, so windows never carry over between tests.
"""

from __future__ import annotations

import datetime
import re
import threading
import time
from typing import Any, Callable

import httpx
import pytest

from harness import FAST_TIMEOUTS, Gateway, closed_port, provider, route, small_config
from helpers import assert_error_shape, http, key_headers, metric_sum, parse_metrics, raw_request, stream_text
from mock_upstream import MockUpstream

StartGateway = Callable[..., Gateway]
KEY = "sk-gw-limited-1"
OTHER = "sk-gw-other-1"
FORMATS = ["openai-chat", "openai-responses", "anthropic", "gemini"]
MODEL = {"openai-chat": "chat-m", "openai-responses": "resp-m", "anthropic": "claude-m", "gemini": "gemini-m"}


def limits_config(mock: MockUpstream, limit: dict, window: int = 1, upstream_model: str = "up", **top: Any) -> dict:
    """One limited key (`limit`), one unlimited key, a same-format route per client format."""
    t = FAST_TIMEOUTS
    providers = [
        provider("oa", "openai", mock.openai_url, timeouts=t),
        provider("resp", "openai", mock.openai_url, api="responses", timeouts=t),
        provider("an", "anthropic", mock.url, timeouts=t),
        provider("ge", "gemini", mock.url, timeouts=t),
        provider("dead", "openai", f"http://127.0.0.1:{closed_port()}/v1", timeouts=t),
    ]
    models = [
        route("chat-m", ("oa", f"gpt-{upstream_model}")),
        route("resp-m", ("resp", f"gpt-{upstream_model}")),
        route("claude-m", ("an", f"claude-{upstream_model}")),
        route("gemini-m", ("ge", f"gemini-{upstream_model}")),
        route("chat-500", ("oa", "gpt-fail-500")),
        route("chat-dead", ("dead", "gpt-dead")),
    ]
    keys = [{"id": "limited", "key": KEY, **limit}, {"id": "other", "key": OTHER}]
    return small_config(providers, models, keys=keys, rate_limit_window_seconds=window, **top)


def body_for(fmt: str, max_out: int | None = None, stream: bool = False, text: str = "hi") -> tuple[str, dict]:
    path, body = raw_request(fmt, MODEL[fmt], text=text, stream=stream)
    if max_out is not None:
        if fmt == "openai-chat":
            body["max_tokens"] = max_out
        elif fmt == "openai-responses":
            body["max_output_tokens"] = max_out
        elif fmt == "anthropic":
            body["max_tokens"] = max_out
        else:
            body["generationConfig"] = {"maxOutputTokens": max_out}
    elif fmt == "anthropic":
        body["max_tokens"] = 1  # required by the format; keep the estimate small
    return path, body


def send(gw: Gateway, fmt: str, key: str = KEY, max_out: int | None = None, stream: bool = False, path_body: tuple[str, dict] | None = None, client: httpx.Client | None = None) -> httpx.Response:
    path, body = path_body or body_for(fmt, max_out, stream)
    return (client or http()).post(gw.url + path, json=body, headers=key_headers(fmt, key), timeout=20)


def rate_limited_count(gw: Gateway, key_id: str = "limited") -> float:
    return metric_sum(parse_metrics(http().get(gw.admin_url + "/metrics", timeout=5).text), "aigate_rate_limited_total", key=key_id)


def retry_after(r: httpx.Response) -> int:
    ra = r.headers.get("retry-after")
    assert ra is not None and re.fullmatch(r"[1-9][0-9]*", ra), f"Retry-After must be whole seconds >= 1, got {ra!r}"
    return int(ra)


def assert_reset_header(r: httpx.Response, name: str) -> None:
    v = r.headers.get(name)
    assert v is not None and re.fullmatch(r"(\d+m)?\d+(\.\d+)?m?s", v), f"{name}: {v!r}"


def assert_request_headers(r: httpx.Response, limit: int, remaining: int | None = None) -> None:
    assert r.headers.get("x-ratelimit-limit-requests") == str(limit), dict(r.headers)
    rem = r.headers.get("x-ratelimit-remaining-requests")
    assert rem is not None and rem.isdigit(), dict(r.headers)
    if remaining is not None:
        assert int(rem) == remaining, f"x-ratelimit-remaining-requests {rem}, expected {remaining}"
    assert_reset_header(r, "x-ratelimit-reset-requests")


def assert_token_headers(r: httpx.Response, limit: int) -> int:
    assert r.headers.get("x-ratelimit-limit-tokens") == str(limit), dict(r.headers)
    rem = r.headers.get("x-ratelimit-remaining-tokens")
    assert rem is not None and rem.isdigit(), dict(r.headers)
    assert_reset_header(r, "x-ratelimit-reset-tokens")
    return int(rem)


def sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.monotonic()))


# ============================================================================ rpm


@pytest.mark.parametrize("fmt", FORMATS)
def test_rpm_crossing_request_gets_429_in_client_format(start_gateway: StartGateway, upstream: MockUpstream, fmt: str):
    """rpm 3: three requests pass with remaining 2, 1, 0; the fourth gets 429 in the
    client's format with Retry-After and the request headers, never reaches the
    upstream and is counted in aigate_rate_limited_total{key}."""
    gw = start_gateway(limits_config(upstream, {"rpm": 3}, window=60))
    for i in range(3):
        r = send(gw, fmt)
        assert r.status_code == 200, r.text
        assert_request_headers(r, 3, remaining=2 - i)
        assert "x-ratelimit-limit-tokens" not in r.headers, "no tpm on this key: no token headers"
    r = send(gw, fmt)
    assert_error_shape(fmt, r, 429)
    retry_after(r)
    assert_request_headers(r, 3, remaining=0)
    assert len(upstream.requests) == 3, "the refused request reached the upstream"
    assert rate_limited_count(gw) == 1


def test_retry_after_never_exceeds_the_window(start_gateway: StartGateway, upstream: MockUpstream):
    """rpm 3, 60 s window, three requests at once: in a sliding window every one of
    them has aged out 60 s later, so the refused request is told to come back within
    the window (OpenAI-style clients sleep exactly Retry-After)."""
    gw = start_gateway(limits_config(upstream, {"rpm": 3}, window=60))
    for _ in range(3):
        assert send(gw, "openai-chat").status_code == 200
    r = send(gw, "openai-chat")
    assert r.status_code == 429
    ra = retry_after(r)
    assert ra <= 60, f"Retry-After {ra}s is longer than the 60 s window"


def test_rpm_window_reopens_after_retry_after(start_gateway: StartGateway, upstream: MockUpstream):
    """rpm 3 with a 1 s window: refused right after the third request, admitted again
    once the Retry-After it was given has passed."""
    gw = start_gateway(limits_config(upstream, {"rpm": 3}, window=1))
    for _ in range(3):
        assert send(gw, "anthropic").status_code == 200
    r = send(gw, "anthropic")
    refused_at = time.monotonic()
    assert_error_shape("anthropic", r, 429)
    ra = retry_after(r)
    assert ra <= 2, f"Retry-After {ra}s for a 1 s window"
    assert send(gw, "anthropic").status_code == 429, "reopened at once"
    sleep_until(refused_at + ra + 0.05)
    r = send(gw, "anthropic")
    assert r.status_code == 200, f"still refused after the Retry-After of {ra}s: {r.status_code} {r.text[:200]}"
    assert_request_headers(r, 3)


def test_rpm_is_per_key(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(limits_config(upstream, {"rpm": 1}, window=60))
    assert send(gw, "openai-chat").status_code == 200
    assert send(gw, "openai-chat").status_code == 429
    r = send(gw, "openai-chat", key=OTHER)
    assert r.status_code == 200 and "x-ratelimit-limit-requests" not in r.headers, "an unlimited key got limited or limit headers"
    assert rate_limited_count(gw) == 1 and rate_limited_count(gw, "other") == 0


def test_rate_headers_on_every_response_to_a_limited_key(start_gateway: StartGateway, upstream: MockUpstream):
    """JSON answers, streams, relayed upstream errors and gateway errors after the
    limit check all carry the request and token trios."""
    gw = start_gateway(limits_config(upstream, {"rpm": 100, "tpm": 100000}, window=60))
    cases = {
        "json": send(gw, "openai-chat"),
        "stream": send(gw, "anthropic", stream=True),
        "gemini-stream": send(gw, "gemini", stream=True),
        "upstream-500": send(gw, "openai-chat", path_body=("/v1/chat/completions", {"model": "chat-500", "messages": [{"role": "user", "content": "x"}]})),
        "upstream-unreachable": send(gw, "openai-chat", path_body=("/v1/chat/completions", {"model": "chat-dead", "messages": [{"role": "user", "content": "x"}]})),
    }
    assert [cases[k].status_code for k in cases] == [200, 200, 200, 500, 502]
    for name, r in cases.items():
        try:
            assert_request_headers(r, 100)
            assert_token_headers(r, 100000)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None


def test_sliding_window_never_admits_more_than_rpm_in_any_window(start_gateway: StartGateway, upstream: MockUpstream):
    """Sliding-window semantics (issue 6): in no period one window long may more than
    `rpm` requests be admitted, wherever the burst falls relative to any internal
    bucket boundary. rpm 10, window 2 s: a burst of 10, probes every 25 ms until one
    more is admitted, then a second burst placed late in the window the first probe
    revealed, and probes for another window. The admitted requests are the ones the
    upstream received; any 1.7 s span (0.3 s slack for scheduling) must hold <= 10."""
    limit, window, slack = 10, 2.0, 0.3
    gw = start_gateway(limits_config(upstream, {"rpm": limit}, window=int(window)))
    path_body = body_for("openai-chat")
    with httpx.Client(timeout=20) as c:

        def burst() -> None:
            for _ in range(limit):
                send(gw, "openai-chat", path_body=path_body, client=c)

        def probe_until(pred: Callable[[], bool], until: float) -> None:
            while time.monotonic() < until and not pred():
                send(gw, "openai-chat", path_body=path_body, client=c)
                time.sleep(0.025)

        burst()
        assert len(upstream.requests) == limit, "the first burst was not admitted whole"
        probe_until(lambda: len(upstream.requests) > limit, time.monotonic() + window + 1.0)
        assert len(upstream.requests) == limit + 1, "no request admitted within a window after the burst"
        t1 = upstream.requests[-1].received_at
        # If the window is bucketed, a bucket started about window/limit before t1.
        start = t1 - window / limit + 0.75 * window
        while start < time.monotonic():
            start += window
        sleep_until(start)
        burst()
        probe_until(lambda: False, time.monotonic() + window + 0.3)
    times = sorted(r.received_at for r in upstream.requests)
    worst = max(sum(1 for x in times if a <= x < a + window - slack) for a in times)
    assert worst <= limit, f"{worst} requests admitted within {window - slack:.1f}s with rpm {limit} per {window:.0f}s window (sliding window exceeded)"


# ============================================================================ tpm


@pytest.mark.parametrize("fmt", FORMATS)
def test_tpm_reservation_blocks_concurrent_request_then_reconciles_with_usage(start_gateway: StartGateway, upstream: MockUpstream, fmt: str):
    """tpm 1000 (60 s window): request A reserves ~25 + 600 tokens and is held
    upstream for 0.6 s; B (another ~625) crosses the limit while A is in flight: 429
    with the token headers. A's answer reports 30 tokens; after reconciliation C (~625)
    fits (30 + 625 <= 1000) although A's reservation alone would have blocked it."""
    gw = start_gateway(limits_config(upstream, {"tpm": 1000}, window=60))
    upstream.add_rule("stall-600", times=1)
    out: list[httpx.Response] = []
    t = threading.Thread(target=lambda: out.append(send(gw, fmt, max_out=600)))
    t.start()
    deadline = time.monotonic() + 5
    while not upstream.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert upstream.requests, "request A never reached the upstream"
    b = send(gw, fmt, max_out=600)
    t.join(10)
    a = out[0]
    assert a.status_code == 200, a.text
    assert_error_shape(fmt, b, 429)
    retry_after(b)
    remaining_b = assert_token_headers(b, 1000)
    assert remaining_b <= 400, f"A's reservation of ~625 not counted: remaining {remaining_b}"
    assert "x-ratelimit-limit-requests" not in b.headers
    assert len(upstream.requests) == 1, "the refused request reached the upstream"
    c = send(gw, fmt, max_out=600)
    assert c.status_code == 200, f"A's reservation was not reconciled with its reported usage (30 tokens): {c.status_code} {c.text[:200]}"
    remaining_c = assert_token_headers(c, 1000)
    assert 300 <= remaining_c <= 400, f"after A (30 used) and C (~625 reserved) remaining should be ~345, got {remaining_c}"
    assert rate_limited_count(gw) == 1


@pytest.mark.parametrize("fmt", ["openai-chat", "anthropic", "anthropic-from-chat"])
def test_tpm_reconciles_streamed_usage(start_gateway: StartGateway, upstream: MockUpstream, fmt: str):
    """A streamed answer's usage (OpenAI's usage chunk aigate asks for, Anthropic's
    message_start/message_delta, or converted) reconciles the reservation too: with
    tpm 1000, three sequential ~625-token requests all pass."""
    cfg = limits_config(upstream, {"tpm": 1000}, window=60)
    if fmt == "anthropic-from-chat":
        cfg["models"].append(route("claude-m-x", ("oa", "gpt-up")))
    gw = start_gateway(cfg)
    client_fmt = "anthropic" if fmt.startswith("anthropic") else fmt
    for i in range(3):
        path, body = body_for(client_fmt, max_out=600, stream=True)
        if fmt == "anthropic-from-chat":
            body["model"] = "claude-m-x"
        r = send(gw, client_fmt, path_body=(path, body))
        assert r.status_code == 200, f"request {i}: {r.status_code} {r.text[:300]} (streamed usage not reconciled?)"
        assert stream_text(client_fmt, r.text) == "echo: hi", r.text


def test_tpm_crossing_then_window_reopens(start_gateway: StartGateway, upstream: MockUpstream):
    """tpm 100 (1 s window): A reserves ~85 and reports 30; B (~85) would make 115:
    429 with Retry-After in Anthropic's format; after Retry-After it passes."""
    gw = start_gateway(limits_config(upstream, {"tpm": 100}, window=1))
    assert send(gw, "anthropic", max_out=60).status_code == 200
    b = send(gw, "anthropic", max_out=60)
    refused = time.monotonic()
    body = assert_error_shape("anthropic", b, 429)
    assert body["error"]["type"] == "rate_limit_error", body
    ra = retry_after(b)
    assert ra <= 2
    assert_token_headers(b, 100)
    sleep_until(refused + ra + 0.05)
    c = send(gw, "anthropic", max_out=60)
    assert c.status_code == 200, f"tpm window did not reopen after Retry-After {ra}s: {c.text[:200]}"


def test_tpm_reservation_of_a_failed_request_is_released(start_gateway: StartGateway, upstream: MockUpstream):
    """A request that failed upstream used no tokens: its ~625-token reservation must
    not stay in the window (tpm 1000, 60 s) and block the next request."""
    gw = start_gateway(limits_config(upstream, {"tpm": 1000}, window=60, circuit_breaker={"failure_threshold": 1000, "open_seconds": 1}))
    failing = ("/v1/chat/completions", {"model": "chat-500", "max_tokens": 600, "messages": [{"role": "user", "content": "hi"}]})
    assert send(gw, "openai-chat", path_body=failing).status_code == 500
    r = send(gw, "openai-chat", max_out=600)
    assert r.status_code == 200, f"a failed request kept its token reservation: {r.status_code} {r.text[:200]}"


# ============================================================================ max_concurrent


@pytest.mark.parametrize("fmt", ["openai-chat", "anthropic", "gemini"])
def test_max_concurrent_refuses_the_third_in_flight_request(start_gateway: StartGateway, upstream: MockUpstream, fmt: str):
    """max_concurrent 2: with two requests held upstream, a third gets 429 in the
    client's format with Retry-After; once they finish a new one passes."""
    gw = start_gateway(limits_config(upstream, {"max_concurrent": 2}, upstream_model="stall-400"))
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def one() -> None:
        r = send(gw, fmt)
        with lock:
            results.append(r)

    ts = [threading.Thread(target=one) for _ in range(2)]
    for t in ts:
        t.start()
    deadline = time.monotonic() + 5
    while len(upstream.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(upstream.requests) == 2
    third = send(gw, fmt)
    for t in ts:
        t.join(10)
    assert [r.status_code for r in results] == [200, 200]
    assert_error_shape(fmt, third, 429)
    retry_after(third)
    assert len(upstream.requests) == 2
    assert rate_limited_count(gw) == 1
    assert send(gw, fmt).status_code == 200, "slots not released after the requests finished"


def test_max_concurrent_slots_come_back_after_failures_streams_and_disconnects(start_gateway: StartGateway, upstream: MockUpstream):
    """max_concurrent 1: upstream 500s, unreachable upstreams, completed streams and a
    client that hangs up mid-stream each give their slot back."""
    gw = start_gateway(limits_config(upstream, {"max_concurrent": 1}, circuit_breaker={"failure_threshold": 1000, "open_seconds": 1}))
    chat = lambda model: ("/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": "x"}]})  # noqa: E731
    for _ in range(3):
        assert send(gw, "openai-chat", path_body=chat("chat-500")).status_code == 500
        assert send(gw, "openai-chat", path_body=chat("chat-dead")).status_code == 502
        assert send(gw, "anthropic", stream=True).status_code == 200
    # A client leaving a slow stream.
    upstream.add_rule("slow-500", model="gpt-up", times=1)
    path, body = body_for("openai-chat", stream=True)
    with httpx.Client(timeout=10) as c:
        with c.stream("POST", gw.url + path, json=body, headers=key_headers("openai-chat", KEY)) as r:
            for chunk in r.iter_raw():
                if b"echo" in chunk:
                    break
    deadline = time.monotonic() + 3
    while True:
        r = send(gw, "openai-chat")
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.status_code == 200, f"the slot of a disconnected stream was not released within 3 s: {r.status_code}"


# ============================================================================ global limits (limits: {rpm, max_concurrent})


@pytest.mark.parametrize("fmt", FORMATS)
def test_global_rpm_counts_every_key_and_refuses_in_client_format(start_gateway: StartGateway, upstream: MockUpstream, fmt: str):
    """limits.rpm 3 for the whole gateway: requests of two keys share it; the fourth
    gets 429 in the client's format with Retry-After, never reaches the upstream and
    is counted under its key."""
    gw = start_gateway(limits_config(upstream, {}, window=60, limits={"rpm": 3}))
    for key in (KEY, OTHER, KEY):
        r = send(gw, fmt, key=key)
        assert r.status_code == 200, r.text
    r = send(gw, fmt, key=OTHER)
    body = assert_error_shape(fmt, r, 429)
    assert "gateway" in r.text and "3 requests per minute" in r.text, body
    ra = retry_after(r)
    assert 1 <= ra <= 60
    assert len(upstream.requests) == 3, "the refused request reached the upstream"
    assert rate_limited_count(gw, "other") == 1 and rate_limited_count(gw) == 0


def test_global_rpm_window_reopens_after_retry_after(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(limits_config(upstream, {}, window=1, limits={"rpm": 2}))
    for _ in range(2):
        assert send(gw, "openai-responses", key=OTHER).status_code == 200
    r = send(gw, "openai-responses", key=OTHER)
    refused = time.monotonic()
    assert_error_shape("openai-responses", r, 429)
    ra = retry_after(r)
    assert ra <= 2
    sleep_until(refused + ra + 0.05)
    r = send(gw, "openai-responses", key=OTHER)
    assert r.status_code == 200, f"global window did not reopen after Retry-After {ra}s: {r.text[:200]}"


def test_global_refusal_gives_back_the_keys_request(start_gateway: StartGateway, upstream: MockUpstream):
    """A request the global limit refuses never ran: the key's rpm entry it took is
    given back (key rpm 2, global rpm 1: the key still has 1 left after the refusal)."""
    gw = start_gateway(limits_config(upstream, {"rpm": 2}, window=60, limits={"rpm": 1}))
    assert send(gw, "openai-chat").status_code == 200
    r = send(gw, "openai-chat")
    assert r.status_code == 429 and "gateway reached" in r.text, r.text
    # The key's own headers still tell its state: 1 remaining (the refused one came back).
    assert_request_headers(r, 2)
    gw2 = start_gateway(limits_config(upstream, {"rpm": 2}, window=60))
    assert [send(gw2, "openai-chat").status_code for _ in range(3)] == [200, 200, 429]


@pytest.mark.parametrize("fmt", ["openai-chat", "anthropic", "gemini"])
def test_global_max_concurrent_refuses_while_full(start_gateway: StartGateway, upstream: MockUpstream, fmt: str):
    """limits.max_concurrent 1: while one request (of any key) is held upstream, another
    gets 429 in its client's format with Retry-After; afterwards requests pass."""
    gw = start_gateway(limits_config(upstream, {}, upstream_model="stall-400", limits={"max_concurrent": 1}))
    out: list[httpx.Response] = []
    t = threading.Thread(target=lambda: out.append(send(gw, fmt, key=OTHER)))
    t.start()
    deadline = time.monotonic() + 5
    while not upstream.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert upstream.requests, "the first request never reached the upstream"
    second = send(gw, fmt)
    t.join(10)
    assert out and out[0].status_code == 200
    assert_error_shape(fmt, second, 429)
    assert "in flight" in second.text
    retry_after(second)
    assert len(upstream.requests) == 1
    assert send(gw, fmt).status_code == 200, "the global slot was not released"


# ============================================================================ per-target limits (models[].targets[].rpm/rph/rpd/tpm)

PROVIDER_OF = {"openai-chat": "oa", "openai-responses": "resp", "anthropic": "an", "gemini": "ge"}
PREFIX_OF = {"openai-chat": "gpt", "openai-responses": "gpt", "anthropic": "claude", "gemini": "gemini"}


def target(prov: str, model: str, **limits: int) -> dict:
    return {"provider": prov, "model": model, **limits}


def target_config(mock: MockUpstream, models: list[dict], window: int = 60, **top: Any) -> dict:
    """limits_config plus `models` (whose targets carry limits); the key is unlimited."""
    cfg = limits_config(mock, {}, window=window, **top)
    cfg["models"] += models
    return cfg


def upstream_models(mock: MockUpstream) -> list[str]:
    return [r.model for r in mock.requests]


@pytest.mark.parametrize("fmt", FORMATS)
def test_target_at_its_rpm_is_skipped_then_all_limited_gets_429(start_gateway: StartGateway, upstream: MockUpstream, fmt: str):
    """Two targets with rpm 1 each: the first request goes to target 1, the second
    skips it (at its limit) and target 2 serves, the third finds both at their limit:
    429 in the client's format with Retry-After; no upstream is hit by it."""
    prov, pre = PROVIDER_OF[fmt], PREFIX_OF[fmt]
    gw = start_gateway(target_config(upstream, [{"name": "lim-m", "targets": [target(prov, f"{pre}-t1", rpm=1), target(prov, f"{pre}-t2", rpm=1)]}]))
    path, body = raw_request(fmt, "lim-m")
    if fmt == "anthropic":
        body["max_tokens"] = 1
    for _ in range(2):
        r = send(gw, fmt, key=OTHER, path_body=(path, body))
        assert r.status_code == 200, r.text
    assert upstream_models(upstream) == [f"{pre}-t1", f"{pre}-t2"], "the limited target was hit instead of skipped"
    r = send(gw, fmt, key=OTHER, path_body=(path, body))
    body_err = assert_error_shape(fmt, r, 429)
    assert "reached its limit of 1 requests per minute" in r.text, body_err
    ra = retry_after(r)
    assert ra <= 60
    assert len(upstream.requests) == 2, "a request reached an upstream at its limit"
    assert rate_limited_count(gw, "other") == 1


def test_all_targets_limited_answers_the_shortest_retry_after(start_gateway: StartGateway, upstream: MockUpstream):
    """Target 1 has rpm 1 (free again within a minute), target 2 rph 1 (an hour): once
    both are used, the 429 carries target 1's Retry-After, the shorter."""
    gw = start_gateway(target_config(upstream, [{"name": "lim-m", "targets": [target("oa", "gpt-t1", rpm=1), target("oa", "gpt-t2", rph=1)]}]))
    pb = ("/v1/chat/completions", {"model": "lim-m", "messages": [{"role": "user", "content": "x"}]})
    assert [send(gw, "openai-chat", key=OTHER, path_body=pb).status_code for _ in range(2)] == [200, 200]
    r = send(gw, "openai-chat", key=OTHER, path_body=pb)
    assert r.status_code == 429
    assert retry_after(r) <= 60, "not the shortest Retry-After of the limited targets"
    assert "gpt-t1" in r.text, r.text


def test_target_rpm_window_reopens_after_retry_after(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(target_config(upstream, [{"name": "lim-m", "targets": [target("an", "claude-t1", rpm=2)]}], window=1))
    pb = ("/v1/messages", {"model": "lim-m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]})
    assert [send(gw, "anthropic", key=OTHER, path_body=pb).status_code for _ in range(2)] == [200, 200]
    r = send(gw, "anthropic", key=OTHER, path_body=pb)
    refused = time.monotonic()
    assert_error_shape("anthropic", r, 429)
    ra = retry_after(r)
    assert ra <= 2
    sleep_until(refused + ra + 0.05)
    r = send(gw, "anthropic", key=OTHER, path_body=pb)
    assert r.status_code == 200, f"target window did not reopen after Retry-After {ra}s: {r.text[:200]}"


def test_target_rph_and_rpd_windows_are_an_hour_and_a_day_of_the_minute(start_gateway: StartGateway, upstream: MockUpstream):
    """rph and rpd windows are 60 and 1440 `rate_limit_window_seconds`: with a 1 s
    minute, an exhausted rph target is free again within 60 s and an rpd one within
    1440 s, which the Retry-After of each says."""
    gw = start_gateway(target_config(upstream, [
        {"name": "hour-m", "targets": [target("ge", "gemini-h1", rph=1)]},
        {"name": "day-m", "targets": [target("ge", "gemini-d1", rpd=1)]},
    ], window=1))
    for model, lo, hi, word in (("hour-m", 55, 60, "per hour"), ("day-m", 1400, 1440, "per day")):
        path = f"/v1beta/models/{model}:generateContent"
        body = {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}
        assert send(gw, "gemini", key=OTHER, path_body=(path, body)).status_code == 200
        r = send(gw, "gemini", key=OTHER, path_body=(path, body))
        assert_error_shape("gemini", r, 429)
        assert word in r.text, r.text
        ra = retry_after(r)
        assert lo <= ra <= hi, f"{model}: Retry-After {ra}s, want {lo}..{hi} for a 1 s minute"
    assert upstream_models(upstream) == ["gemini-h1", "gemini-d1"]


def test_models_list_fallback_skips_a_limited_target(start_gateway: StartGateway, upstream: MockUpstream):
    """`models: [a, b]`: a's only target is at its limit, so b's serves; with both at
    their limits the client gets 429."""
    gw = start_gateway(target_config(upstream, [
        {"name": "fb-a", "targets": [target("oa", "gpt-a1", rpm=1)]},
        {"name": "fb-b", "targets": [target("oa", "gpt-b1", rpm=1)]},
    ]))
    pb = ("/v1/chat/completions", {"models": ["fb-a", "fb-b"], "messages": [{"role": "user", "content": "x"}]})
    codes = [send(gw, "openai-chat", key=OTHER, path_body=pb).status_code for _ in range(3)]
    assert codes == [200, 200, 429], codes
    assert upstream_models(upstream) == ["gpt-a1", "gpt-b1"]


def test_target_tpm_reserves_then_reconciles_with_reported_usage(start_gateway: StartGateway, upstream: MockUpstream):
    """Target 1 has tpm 1000. A (~625 tokens reserved: body/4 + max_tokens 600) is
    held upstream; B would make ~1250, so target 1 is skipped and target 2 serves B.
    A reports 30 tokens; after reconciliation C fits target 1 again."""
    gw = start_gateway(target_config(upstream, [{"name": "tpm-m", "targets": [target("oa", "gpt-t1", tpm=1000), target("oa", "gpt-t2")]}]))
    pb = ("/v1/chat/completions", {"model": "tpm-m", "max_tokens": 600, "messages": [{"role": "user", "content": "hi"}]})
    upstream.add_rule("stall-600", model="gpt-t1", times=1)
    out: list[httpx.Response] = []
    t = threading.Thread(target=lambda: out.append(send(gw, "openai-chat", key=OTHER, path_body=pb)))
    t.start()
    deadline = time.monotonic() + 5
    while not upstream.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    b = send(gw, "openai-chat", key=OTHER, path_body=pb)
    t.join(10)
    assert out[0].status_code == 200 and b.status_code == 200
    c = send(gw, "openai-chat", key=OTHER, path_body=pb)
    assert c.status_code == 200
    assert upstream_models(upstream) == ["gpt-t1", "gpt-t2", "gpt-t1"], "target tpm not reserved or not reconciled"


def test_target_tpm_of_a_failed_attempt_comes_back(start_gateway: StartGateway, upstream: MockUpstream):
    """A failed attempt used no tokens: target 1 (tpm 700) answers 500 and target 2
    serves; the next request is tried on target 1 again, not skipped for a
    reservation that was never used."""
    gw = start_gateway(target_config(upstream, [{"name": "f-m", "targets": [target("oa", "gpt-fail-500", tpm=700), target("oa", "gpt-t2")]}],
                                     circuit_breaker={"failure_threshold": 1000, "open_seconds": 1}))
    pb = ("/v1/chat/completions", {"model": "f-m", "max_tokens": 600, "messages": [{"role": "user", "content": "hi"}]})
    assert [send(gw, "openai-chat", key=OTHER, path_body=pb).status_code for _ in range(2)] == [200, 200]
    assert upstream_models(upstream) == ["gpt-fail-500", "gpt-t2", "gpt-fail-500", "gpt-t2"]


# ============================================================================ budgets (keys[].budget_usd_daily / budget_usd_monthly)

# $1000 per million tokens for every mock model here: each answer (USAGE: 21 input,
# 9 output) costs exactly $0.03.
BUDGET_PRICES = {"*-up": {"input": 1000.0, "output": 1000.0}}


def seconds_until_utc(period: str) -> float:
    now = datetime.datetime.now(datetime.timezone.utc)
    if period == "day":
        end = (now + datetime.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (first + datetime.timedelta(days=32)).replace(day=1)
    return (end - now).total_seconds()


@pytest.mark.parametrize("fmt", FORMATS)
def test_daily_budget_spent_gets_429_until_the_utc_day_ends(start_gateway: StartGateway, upstream: MockUpstream, fmt: str):
    """budget_usd_daily $0.05, each answer costs $0.03: the first two pass (the second
    starts with $0.02 left), the third finds the budget spent: 429 in the client's
    format, a message saying so, Retry-After = until the UTC day ends; not sent."""
    gw = start_gateway(limits_config(upstream, {"budget_usd_daily": 0.05}, model_prices=BUDGET_PRICES))
    for i in range(2):
        r = send(gw, fmt)
        assert r.status_code == 200, f"request {i}: {r.text[:300]}"
    r = send(gw, fmt)
    body = assert_error_shape(fmt, r, 429)
    assert "spent its daily budget of $0.05" in r.text, body
    ra = retry_after(r)
    want = seconds_until_utc("day")
    assert want - 5 <= ra <= want + 5, f"Retry-After {ra}s, want ~{want:.0f}s (until the UTC day ends)"
    assert len(upstream.requests) == 2, "a request over budget reached the upstream"
    assert rate_limited_count(gw) == 1
    assert send(gw, fmt, key=OTHER).status_code == 200, "another key's budget is its own"


def test_monthly_budget_and_an_estimate_larger_than_what_is_left(start_gateway: StartGateway, upstream: MockUpstream):
    """budget_usd_monthly $0.05 and requests allowing 100 output tokens (estimated at
    ~$0.115 each, more than the whole budget): the estimate never locks the key out
    while money is left — what is left is reserved — and the reconciled real cost
    ($0.03 each) spends the budget on the second request; the third gets 429 with
    Retry-After = until the UTC month ends."""
    gw = start_gateway(limits_config(upstream, {"budget_usd_monthly": 0.05}, model_prices=BUDGET_PRICES))
    assert [send(gw, "openai-chat", max_out=100).status_code for _ in range(2)] == [200, 200]
    r = send(gw, "openai-chat", max_out=100)
    assert_error_shape("openai-chat", r, 429)
    assert "spent its monthly budget" in r.text, r.text
    ra, want = retry_after(r), seconds_until_utc("month")
    assert want - 5 <= ra <= want + 5, f"Retry-After {ra}s, want ~{want:.0f}s (until the UTC month ends)"


def test_budget_reservation_blocks_concurrent_spending(start_gateway: StartGateway, upstream: MockUpstream):
    """budget_usd_daily $0.02: A (estimated above the budget, so it reserves all of it)
    is held upstream; B at the same time finds nothing left: 429. A's real cost ($0.03)
    then leaves the budget spent."""
    gw = start_gateway(limits_config(upstream, {"budget_usd_daily": 0.02}, model_prices=BUDGET_PRICES))
    upstream.add_rule("stall-600", times=1)
    out: list[httpx.Response] = []
    t = threading.Thread(target=lambda: out.append(send(gw, "anthropic", max_out=100)))
    t.start()
    deadline = time.monotonic() + 5
    while not upstream.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    b = send(gw, "anthropic", max_out=1)
    t.join(10)
    assert out[0].status_code == 200
    assert_error_shape("anthropic", b, 429)
    assert "budget" in b.text
    assert len(upstream.requests) == 1
    assert send(gw, "anthropic", max_out=1).status_code == 429, "A's real cost did not land in the budget"


def test_failed_request_gives_its_budget_reservation_back(start_gateway: StartGateway, upstream: MockUpstream):
    """A request that failed upstream cost nothing: budget $0.05, a failing request
    estimated at ~$0.115 (reserving all of it) must not leave the key spent."""
    cfg = limits_config(upstream, {"budget_usd_daily": 0.05}, model_prices={**BUDGET_PRICES, "gpt-fail-500": {"input": 1000.0, "output": 1000.0}},
                        circuit_breaker={"failure_threshold": 1000, "open_seconds": 1})
    gw = start_gateway(cfg)
    failing = ("/v1/chat/completions", {"model": "chat-500", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]})
    assert send(gw, "openai-chat", path_body=failing).status_code == 500
    r = send(gw, "openai-chat")
    assert r.status_code == 200, f"a failed request kept its budget reservation: {r.status_code} {r.text[:200]}"
