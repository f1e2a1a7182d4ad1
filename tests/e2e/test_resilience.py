"""Issue 5, "How it is shown": fault injection against the real aigate binary.

Every test starts its own gateway (`small_config`: only the providers and models it
needs, 1-5 ms backoffs, 1 s cooldowns) in front of the mock upstream, injects one fault
by model name or by a mock rule, and checks the outcome the retry rules promise:

- credential failures (429 with/without Retry-After, 401, 403) move to the provider's
  next credential, which then rests for Retry-After / the configured cooldown (a
  401/403 only while another credential is usable); with no alternative left the
  one out longest is still tried (test_no_black_hole.py covers that rule on the
  default settings);
- provider failures (500, 503, 529, reset, accept-then-close, hang past the first-byte
  timeout, connection refused) move to the next target, never to a sibling credential;
- streams: a failure or an in-stream error event before content fails over without
  leaking the failed attempt's preamble; after content the stream ends with an error
  event in the client's format;
- the circuit breaker opens after `failure_threshold` consecutive failures, lets one
  half-open probe through after `open_seconds`, and `/health/ready` shows it;
- `models: [...]` request-level fallback, routing strategies, credential strategies,
  client disconnects, keepalive comments.

Attempts are read from `x-aigate-attempts` (`x-aigate-debug: true`), where the request
went from the mock's records (model, credential, status), and outcomes from
`aigate_upstream_attempts_total{provider,outcome}`: for every provider, the attempts the
gateway counted must equal the requests the mock received.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any, Callable

import anthropic
import httpx
import openai
import pytest

from harness import FAST_TIMEOUTS, Gateway, closed_port, provider, route, small_config
from helpers import (
    anthropic_client,
    anthropic_stream_text,
    assert_error_shape,
    chat_stream_text,
    http,
    key_headers,
    metric_sum,
    openai_client,
    parse_metrics,
    raw_request,
    responses_stream_text,
    sse_events,
    stream_text,
)
from mock_upstream import MockUpstream

DEBUG = {"x-aigate-debug": "true"}
HANG_TIMEOUTS = {**FAST_TIMEOUTS, "first_byte_ms": 300}

StartGateway = Callable[..., Gateway]


# ----------------------------------------------------------------------------- config and request helpers


def oa(mock: MockUpstream, name: str, keys: tuple = ("sk-up-1",), api: str | None = None, **extra: Any) -> dict:
    extra.setdefault("timeouts", FAST_TIMEOUTS)
    if api:
        extra["api"] = api
    return provider(name, "openai", mock.openai_url, keys=list(keys), **extra)


def an(mock: MockUpstream, name: str, keys: tuple = ("sk-up-1",), **extra: Any) -> dict:
    extra.setdefault("timeouts", FAST_TIMEOUTS)
    return provider(name, "anthropic", mock.url, keys=list(keys), **extra)


def ge(mock: MockUpstream, name: str, keys: tuple = ("sk-up-1",), **extra: Any) -> dict:
    extra.setdefault("timeouts", FAST_TIMEOUTS)
    return provider(name, "gemini", mock.url, keys=list(keys), **extra)


def dead(name: str, kind: str = "openai", **extra: Any) -> dict:
    """A provider on a loopback port nothing listens on (connects are refused)."""
    port = closed_port()
    base = f"http://127.0.0.1:{port}" + ("/v1" if kind == "openai" else "")
    return provider(name, kind, base, timeouts=FAST_TIMEOUTS, **extra)


def model(name: str, *targets: tuple[str, str | None], **extra: Any) -> dict:
    m = route(name, *targets)
    m.update(extra)
    return m


def ask(gw: Gateway, model_name: str, fmt: str = "openai-chat", stream: bool = False, text: str = "hi", timeout: float = 20.0) -> httpx.Response:
    """A minimal request in client format `fmt`, with `x-aigate-debug: true`."""
    path, body = raw_request(fmt, model_name, text, stream)
    return http().post(gw.url + path, json=body, headers={**key_headers(fmt), **DEBUG}, timeout=timeout)


def attempts(r: httpx.Response) -> int:
    assert "x-aigate-attempts" in r.headers, f"no x-aigate-attempts on a debug request: {r.status_code} {dict(r.headers)}"
    return int(r.headers["x-aigate-attempts"])


def seen(mock: MockUpstream, since: int = 0) -> list[tuple[str | None, str | None, int | None]]:
    """(model, credential, status) of every request the mock received, in order."""
    out = []
    for r in mock.requests[since:]:
        mock.wait_done(r, 3.0)
        out.append((r.model, r.credential, r.status))
    return out


def models_seen(mock: MockUpstream, since: int = 0) -> list[str | None]:
    return [m for m, _, _ in seen(mock, since)]


def creds_seen(mock: MockUpstream, since: int = 0) -> list[str | None]:
    return [c for _, c, _ in seen(mock, since)]


def metrics(gw: Gateway) -> list:
    return parse_metrics(http().get(gw.admin_url + "/metrics", timeout=5).text)


def outcomes(gw: Gateway) -> dict[tuple[str, str], int]:
    return {(l["provider"], l["outcome"]): int(v) for n, l, v in metrics(gw) if n == "aigate_upstream_attempts_total" and v}


def provider_attempts(gw: Gateway, name: str) -> dict[str, int]:
    return {o: v for (p, o), v in outcomes(gw).items() if p == name}


def gauge(gw: Gateway, name: str, provider_name: str) -> float | None:
    """A per-provider gauge (`aigate_resting_credentials`, `aigate_provider_usable`), None when absent."""
    vals = [v for n, l, v in metrics(gw) if n == name and l.get("provider") == provider_name]
    return vals[0] if vals else None


def ready(gw: Gateway) -> tuple[int, dict[str, bool]]:
    r = http().get(gw.admin_url + "/health/ready", timeout=5)
    return r.status_code, {p["name"]: p["usable"] for p in r.json()["providers"]}


def answer_text(fmt: str, r: httpx.Response, stream: bool) -> str:
    if stream:
        return stream_text(fmt, r.text)
    j = r.json()
    if fmt == "openai-chat":
        return j["choices"][0]["message"]["content"]
    if fmt == "anthropic":
        return "".join(b.get("text", "") for b in j["content"])
    return "".join(c.get("text", "") for it in j["output"] if it["type"] == "message" for c in it["content"])


def wait_until(pred: Callable[[], Any], timeout: float, step: float = 0.02) -> Any:
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > end:
            return v
        time.sleep(step)


def assert_counted_as_received(gw: Gateway, mock: MockUpstream, provider_models: dict[str, set[str]]) -> None:
    """Every attempt the gateway counts reached the mock and vice versa (per provider,
    identified by its upstream model names). Connection refused never reaches the mock."""
    got = outcomes(gw)
    recs = seen(mock)
    for prov, names in provider_models.items():
        counted = sum(v for (p, o), v in got.items() if p == prov and o not in ("connect_error", "unusable"))
        received = sum(1 for m, _, _ in recs if m in names)
        assert counted == received, f"provider {prov}: gateway counted {counted} attempts that reached the upstream ({ {o: v for (p, o), v in got.items() if p == prov} }), the upstream received {received}"


# ============================================================================ credential failures: 429, 401, 403


@pytest.mark.parametrize(
    "rule, cooldown",
    [("fail-429-retry-1", 30), ("fail-429", 1)],
    ids=["retry-after-1-beats-30s-default", "no-retry-after-uses-1s-cooldown"],
)
def test_429_moves_to_next_credential_which_rests_then_returns(start_gateway: StartGateway, upstream: MockUpstream, rule: str, cooldown: int):
    """429 on credential 1: the same request is retried on credential 2 (attempts 2);
    credential 1 rests for Retry-After (else `cooldown.rate_limited_seconds`) and is
    not used meanwhile, then round-robin uses it again."""
    gw = start_gateway(small_config([oa(upstream, "p", keys=("sk-up-1", "sk-up-2"))], [model("m", ("p", "gpt-x"))], cooldown={"rate_limited_seconds": cooldown, "auth_failed_seconds": 300}))
    upstream.add_rule(rule, key="sk-up-1", times=1)
    r = ask(gw, "m")
    t429 = upstream.requests[0].received_at
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "echo: hi", r.text
    assert attempts(r) == 2 and r.headers["x-aigate-provider"] == "p"
    assert seen(upstream) == [("gpt-x", "sk-up-1", 429), ("gpt-x", "sk-up-2", 200)]
    # While credential 1 rests (well inside 1 s), every request goes to credential 2.
    n_before = len(upstream.requests)
    resting_checks = 0
    while time.monotonic() < t429 + 0.7 and resting_checks < 4:
        rr = ask(gw, "m")
        assert rr.status_code == 200 and attempts(rr) == 1
        resting_checks += 1
    assert resting_checks >= 2, "the machine is too slow to observe the rest period"
    if time.monotonic() < t429 + 0.9:
        assert gauge(gw, "aigate_resting_credentials", "p") == 1 and gauge(gw, "aigate_provider_usable", "p") == 1
    assert set(creds_seen(upstream, n_before)) == {"sk-up-2"}, f"a resting credential was used: {seen(upstream, n_before)}"
    # After the rest the credential is back in rotation.
    time.sleep(max(0.0, t429 + 1.3 - time.monotonic()))
    n_after = len(upstream.requests)
    for _ in range(3):
        assert ask(gw, "m").status_code == 200
    assert "sk-up-1" in creds_seen(upstream, n_after), f"credential 1 not used again after its rest: {seen(upstream, n_after)}"
    o = provider_attempts(gw, "p")
    assert o.get("http_429") == 1 and o.get("ok") == len(upstream.requests) - 1, o


def test_429_on_every_credential_relays_429_then_provider_is_skipped_and_not_ready(start_gateway: StartGateway, upstream: MockUpstream):
    """Both credentials 429 (Retry-After 1): the client gets 429 in its own format
    with Retry-After after 2 attempts (not max_attempts: resting credentials are not
    retried). While both rest under the upstream's own Retry-After, the next request
    is not sent upstream: 429 with the remaining Retry-After (SPEC "Errors": the one
    answer without an attempt for a resting credential), and /health/ready says the
    provider is not usable; after the rest it serves again."""
    gw = start_gateway(small_config([oa(upstream, "p", keys=("sk-up-1", "sk-up-2"))], [model("m", ("p", "gpt-x"))], cooldown={"rate_limited_seconds": 30, "auth_failed_seconds": 300}))
    upstream.add_rule("fail-429-retry-1", times=2)
    r = ask(gw, "m", fmt="anthropic")
    body = assert_error_shape("anthropic", r, 429)
    assert body["error"]["type"] == "rate_limit_error", body
    assert r.headers.get("retry-after") == "1"
    assert attempts(r) == 2
    assert sorted(creds_seen(upstream)) == ["sk-up-1", "sk-up-2"]
    st, usable = ready(gw)
    assert (st, usable) == (503, {"p": False}), "every credential resting: the provider is not usable"
    assert (gauge(gw, "aigate_resting_credentials", "p"), gauge(gw, "aigate_provider_usable", "p")) == (2, 0)
    r2 = ask(gw, "m", fmt="openai-chat")
    assert_error_shape("openai-chat", r2, 429)
    assert r2.headers.get("retry-after") == "1", dict(r2.headers)
    assert len(upstream.requests) == 2, "a request was sent before the upstream's Retry-After"
    time.sleep(max(0.0, upstream.requests[-1].received_at + 1.3 - time.monotonic()))
    assert ready(gw) == (200, {"p": True})
    assert (gauge(gw, "aigate_resting_credentials", "p"), gauge(gw, "aigate_provider_usable", "p")) == (0, 1)
    r3 = ask(gw, "m")
    assert r3.status_code == 200 and attempts(r3) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_rests_the_credential_and_logs_once(start_gateway: StartGateway, upstream: MockUpstream, status: int):
    """401/403 on the first credential (fill-first): the request is answered by the
    second; the rejected one rests for `auth_failed_seconds` (not tried again), and
    the gateway logs it once, without the key."""
    bad = "sk-revoked-0001" if status == 401 else "sk-up-2"  # the mock answers 401 to unknown keys
    gw = start_gateway(small_config([oa(upstream, "p", keys=(bad, "sk-up-1"), credential_strategy="fill-first")], [model("m", ("p", "gpt-x"))]))
    if status == 403:
        upstream.add_rule("fail-403", key="sk-up-2")
    mark = gw.log_size()
    r = ask(gw, "m")
    assert r.status_code == 200 and attempts(r) == 2, r.text
    assert seen(upstream) == [("gpt-x", bad, status), ("gpt-x", "sk-up-1", 200)]
    for _ in range(3):
        rr = ask(gw, "m")
        assert rr.status_code == 200 and attempts(rr) == 1
    assert creds_seen(upstream, 2) == ["sk-up-1"] * 3, "a credential resting after an auth failure was used"
    o = provider_attempts(gw, "p")
    assert o.get("http_4xx") == 1 and o.get("ok") == 4, o
    log = gw.log_text(mark)
    lines = [l for l in log.splitlines() if str(status) in l and "credential" in l.lower() and "access" not in l]
    assert len(lines) == 1, f"expected one log line about the rejected credential, got: {lines}"
    assert bad not in log, "a provider key was written to the log"


@pytest.mark.parametrize("fmt", ["openai-chat", "anthropic"])
def test_non_retryable_400_goes_straight_back(start_gateway: StartGateway, upstream: MockUpstream, fmt: str):
    """A 400 from the upstream is about the request: no other credential or target is
    tried; the client gets 400 in its own format."""
    gw = start_gateway(small_config([oa(upstream, "p1", keys=("sk-up-1", "sk-up-2")), oa(upstream, "p2", keys=("sk-up-3",))], [model("m", ("p1", "gpt-fail-400"), ("p2", "gpt-good"))]))
    r = ask(gw, "m", fmt=fmt)
    assert_error_shape(fmt, r, 400)
    assert attempts(r) == 1
    assert models_seen(upstream) == ["gpt-fail-400"]


# ============================================================================ provider failures: each fault fails over


PROVIDER_FAULTS = [
    # (id, bad provider factory, bad upstream model, expected outcome label)
    ("500", lambda m: oa(m, "bad", keys=("sk-up-1", "sk-up-2")), "gpt-fail-500", "http_5xx"),
    ("503", lambda m: oa(m, "bad", keys=("sk-up-1", "sk-up-2")), "gpt-fail-503", "http_5xx"),
    ("529-anthropic", lambda m: an(m, "bad", keys=("sk-up-1", "sk-up-2")), "claude-fail-529", "http_5xx"),
    ("reset-before-headers", lambda m: oa(m, "bad", keys=("sk-up-1", "sk-up-2")), "gpt-reset", "io_error"),
    ("accept-then-close", lambda m: oa(m, "bad", keys=("sk-up-1", "sk-up-2")), "gpt-accept-close", "io_error"),
    ("hang-past-first-byte-timeout", lambda m: oa(m, "bad", keys=("sk-up-1", "sk-up-2"), timeouts=HANG_TIMEOUTS), "gpt-hang-5000", "timeout"),
    ("connection-refused", lambda m: dead("bad"), "gpt-nowhere", "connect_error"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("fault_id, make_bad, bad_model, outcome", PROVIDER_FAULTS, ids=[f[0] for f in PROVIDER_FAULTS])
def test_provider_fault_fails_over_to_next_target(start_gateway: StartGateway, upstream: MockUpstream, fault_id: str, make_bad, bad_model: str, outcome: str, stream: bool):
    """A provider failure moves to the model's next target (not to the bad provider's
    second credential): attempts 2, the answer comes from the second target intact, the
    failed attempt is counted once under its outcome and the good one as ok."""
    gw = start_gateway(small_config([make_bad(upstream), oa(upstream, "good", keys=("sk-up-3",))], [model("m", ("bad", bad_model), ("good", "gpt-good"))]))
    t0 = time.monotonic()
    r = ask(gw, "m", stream=stream)
    assert r.status_code == 200, r.text
    assert attempts(r) == 2 and r.headers["x-aigate-provider"] == "good" and r.headers["x-aigate-model"] == "gpt-good"
    if stream:
        text, roles, done = chat_stream_text(r.text)
        assert (text, roles, done) == ("echo: hi", 1, True), r.text
    else:
        assert r.json()["choices"][0]["message"]["content"] == "echo: hi"
    expected = [] if fault_id == "connection-refused" else [bad_model]
    assert models_seen(upstream) == expected + ["gpt-good"], seen(upstream)
    assert creds_seen(upstream)[-1] == "sk-up-3"
    o = outcomes(gw)
    assert {k: v for k, v in o.items() if k[0] == "bad"} == {("bad", outcome): 1}, o
    assert o.get(("good", "ok")) == 1, o
    if fault_id == "hang-past-first-byte-timeout":
        assert time.monotonic() - t0 < 3.0, "the first-byte timeout (300 ms) was not applied"
        rec = upstream.requests[0]
        assert wait_until(lambda: rec.disconnected_at is not None, 3.0), "the gateway did not close the hung upstream request"


def test_529_from_anthropic_fails_over_to_openai_for_an_anthropic_client(start_gateway: StartGateway, upstream: MockUpstream):
    """Overloaded Anthropic (529) → next target of another kind; the request is
    re-converted for it and the answer converted back."""
    gw = start_gateway(small_config([an(upstream, "claude"), oa(upstream, "gpt", keys=("sk-up-3",))], [model("m", ("claude", "claude-fail-529"), ("gpt", "gpt-good"))]))
    raw = anthropic_client(gw).messages.with_raw_response.create(model="m", max_tokens=32, messages=[{"role": "user", "content": "convert me"}], extra_headers=DEBUG)
    msg = raw.parse()
    assert msg.content[0].text == "echo: convert me"
    assert raw.headers["x-aigate-attempts"] == "2" and raw.headers["x-aigate-provider"] == "gpt"
    recs = upstream.requests
    assert [r.path for r in recs] == ["/v1/messages", "/v1/chat/completions"]
    assert recs[1].json()["messages"][-1]["content"] in ("convert me", [{"type": "text", "text": "convert me"}])


def test_reset_on_a_reused_connection_is_not_resent_uncounted(start_gateway: StartGateway, upstream: MockUpstream):
    """With a pooled keep-alive connection to the upstream, a reset after the request
    was received is still one counted attempt: the upstream must not receive the
    request more often than the gateway counts (an LLM call costs money)."""
    gw = start_gateway(small_config([oa(upstream, "bad"), oa(upstream, "good", keys=("sk-up-3",))], [model("warm", ("good", "gpt-warm")), model("m", ("bad", "gpt-reset"), ("good", "gpt-good"))]))
    for _ in range(3):
        assert ask(gw, "warm").status_code == 200  # leaves idle connections in the pool
    r = ask(gw, "m")
    assert r.status_code == 200 and attempts(r) == 2
    assert models_seen(upstream).count("gpt-reset") == 1, f"the reset request reached the upstream {models_seen(upstream).count('gpt-reset')} times for 1 counted attempt"
    assert_counted_as_received(gw, upstream, {"bad": {"gpt-reset"}, "good": {"gpt-warm", "gpt-good"}})


def test_idle_timeout_before_content_fails_over(start_gateway: StartGateway, upstream: MockUpstream):
    """`idle_ms` 400: the upstream sends its preamble, then nothing for 1.5 s: a
    timeout before content, so the next target answers (outcome `timeout`)."""
    gw = start_gateway(small_config([oa(upstream, "bad", timeouts={**FAST_TIMEOUTS, "idle_ms": 400}), oa(upstream, "good", keys=("sk-up-3",))], [model("m", ("bad", "gpt-stall-1500"), ("good", "gpt-good"))]))
    t0 = time.monotonic()
    r = ask(gw, "m", stream=True)
    assert r.status_code == 200 and attempts(r) == 2 and chat_stream_text(r.text) == ("echo: hi", 1, True), r.text
    assert time.monotonic() - t0 < 1.4, "the idle timeout did not cut the quiet upstream"
    assert provider_attempts(gw, "bad").get("timeout") == 1, outcomes(gw)


def test_total_timeout_mid_stream_ends_the_stream_with_an_error_event(start_gateway: StartGateway, upstream: MockUpstream):
    """`total_ms` 800 with events every 300 ms: content has started when the total
    deadline passes, so the client's stream ends with an error event, not [DONE]."""
    gw = start_gateway(small_config([oa(upstream, "p", timeouts={**FAST_TIMEOUTS, "total_ms": 800}), oa(upstream, "good", keys=("sk-up-3",))], [model("m", ("p", "gpt-slow-300"), ("good", "gpt-good"))]))
    r = ask(gw, "m", stream=True, text="a b c d e f g h")
    assert r.status_code == 200 and attempts(r) == 1
    text, _, done = chat_stream_text(r.text)
    last = sse_events(r.text)[-1]
    assert text.startswith("echo:") and text != "echo: a b c d e f g h" and not done, r.text
    assert last[0] is None and "error" in json.loads(last[1]), last
    assert models_seen(upstream) == ["gpt-slow-300"]


# ============================================================================ exhausting the attempts


def test_all_5xx_rounds_alternate_targets_until_max_attempts_and_relay_last_status(start_gateway: StartGateway, upstream: MockUpstream):
    """Rounds repeat over the targets until `max_attempts` (5): p1, p2, p1, p2, p1; the
    client gets the last upstream status (p1's 500), converted into its format."""
    gw = start_gateway(small_config([oa(upstream, "p1"), oa(upstream, "p2", keys=("sk-up-2",))], [model("m", ("p1", "gpt-fail-500"), ("p2", "gpt-fail-503"))]))
    r = ask(gw, "m", fmt="anthropic")
    body = assert_error_shape("anthropic", r, 500)
    assert body["error"]["type"] == "api_error", body
    assert attempts(r) == 5
    assert models_seen(upstream) == ["gpt-fail-500", "gpt-fail-503"] * 2 + ["gpt-fail-500"]
    assert outcomes(gw) == {("p1", "http_5xx"): 3, ("p2", "http_5xx"): 2}


def test_provider_retry_override_caps_attempts_on_that_provider(start_gateway: StartGateway, upstream: MockUpstream):
    """`providers[].retry.max_attempts: 3` beats the global 5 for that provider."""
    gw = start_gateway(small_config([oa(upstream, "p", retry={"max_attempts": 3})], [model("m", ("p", "gpt-fail-503"))]))
    r = ask(gw, "m")
    assert_error_shape("openai-chat", r, 503)
    assert attempts(r) == 3 and len(upstream.requests) == 3


@pytest.mark.parametrize("fmt", ["openai-chat", "anthropic", "openai-responses", "gemini"])
def test_every_target_unreachable_gives_502_in_client_format(start_gateway: StartGateway, upstream: MockUpstream, fmt: str):
    kind = {"openai-chat": {"kind": "openai"}, "openai-responses": {"kind": "openai", "api": "responses"}, "anthropic": {"kind": "anthropic"}, "gemini": {"kind": "gemini"}}[fmt]
    gw = start_gateway(small_config([dead("d1", **kind), dead("d2", **kind)], [model("m", ("d1", "x"), ("d2", "y"))], retry={"max_attempts": 4, "base_delay_ms": 1, "max_delay_ms": 5}))
    r = ask(gw, "m", fmt=fmt)
    assert_error_shape(fmt, r, 502)
    assert attempts(r) == 4
    assert outcomes(gw) == {("d1", "connect_error"): 2, ("d2", "connect_error"): 2}


def test_every_target_timing_out_gives_504(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(small_config([oa(upstream, "h1", timeouts=HANG_TIMEOUTS), oa(upstream, "h2", timeouts=HANG_TIMEOUTS)], [model("m", ("h1", "gpt-hang-5000"), ("h2", "gpt-hang-5000"))], retry={"max_attempts": 2}))
    t0 = time.monotonic()
    r = ask(gw, "m", fmt="anthropic")
    assert_error_shape("anthropic", r, 504)
    assert attempts(r) == 2 and time.monotonic() - t0 < 4.0
    assert outcomes(gw) == {("h1", "timeout"): 1, ("h2", "timeout"): 1}


def test_no_backoff_when_moving_to_another_provider(start_gateway: StartGateway, upstream: MockUpstream):
    """Backoff (here up to 2 s) applies before retrying the same provider only: five
    requests that each fail over from p1 to p2 take nowhere near 5 × 1 s."""
    gw = start_gateway(small_config([oa(upstream, "p1"), oa(upstream, "p2", keys=("sk-up-2",))], [model("m", ("p1", "gpt-fail-500"), ("p2", "gpt-good"))], retry={"max_attempts": 5, "base_delay_ms": 2000, "max_delay_ms": 2000, "multiplier": 1.0}))
    t0 = time.monotonic()
    for _ in range(5):
        r = ask(gw, "m")
        assert r.status_code == 200 and attempts(r) == 2
    assert time.monotonic() - t0 < 2.5, "failing over to another provider waited a backoff"


# ============================================================================ streams


@pytest.mark.parametrize(
    "fmt, bad, bad_model, good",
    [
        ("openai-chat", "oa", "gpt-die-after-1", "oa"),  # role chunk only
        ("anthropic", "an", "claude-die-after-3", "an"),  # message_start, content_block_start, ping
        ("openai-responses", "resp", "gpt-die-after-2", "resp"),  # response.created, in_progress
        ("anthropic", "oa", "gpt-die-after-1", "oa"),  # converted stream
        ("openai-chat", "an", "claude-die-after-3", "oa"),  # converted, then another kind
        ("openai-responses", "an", "claude-die-after-3", "an"),  # converted both times
        ("gemini", "ge", "gemini-die-after-0", "ge"),  # 200 headers, then nothing
    ],
    ids=["chat", "anthropic", "responses", "anthropic-from-chat", "chat-from-anthropic-to-chat", "responses-from-anthropic", "gemini"],
)
def test_stream_dying_before_content_fails_over_without_leaking_preamble(start_gateway: StartGateway, upstream: MockUpstream, fmt: str, bad: str, bad_model: str, good: str):
    """The upstream sends only its preamble and dies: nothing reached the client yet,
    so the next target answers and the client sees one clean stream (one role chunk /
    message_start / response.created)."""
    makers = {"oa": lambda n, k: oa(upstream, n, keys=k), "an": lambda n, k: an(upstream, n, keys=k), "resp": lambda n, k: oa(upstream, n, keys=k, api="responses"), "ge": lambda n, k: ge(upstream, n, keys=k)}
    good_model = {"an": "claude-good", "ge": "gemini-good"}.get(good, "gpt-good")
    gw = start_gateway(small_config([makers[bad]("bad", ("sk-up-1",)), makers[good]("good", ("sk-up-3",))], [model("m", ("bad", bad_model), ("good", good_model))]))
    r = ask(gw, "m", fmt=fmt, stream=True)
    assert r.status_code == 200, r.text
    assert attempts(r) == 2 and r.headers["x-aigate-provider"] == "good"
    assert stream_text(fmt, r.text) == "echo: hi", r.text
    if fmt == "openai-chat":
        assert chat_stream_text(r.text)[1:] == (1, True), r.text
    elif fmt == "anthropic":
        kinds = anthropic_stream_text(r.text)[1]
        assert (kinds["message_start"], kinds["message_stop"], kinds["error"]) == (1, 1, 0), r.text
    elif fmt == "openai-responses":
        kinds = responses_stream_text(r.text)[1]
        assert (kinds["response.created"], kinds["response.completed"]) == (1, 1), r.text
    rec = upstream.requests[0]
    assert rec.model == bad_model and rec.status == 200 and len(rec.events_sent_at) == int(bad_model.rsplit("-", 1)[1])


@pytest.mark.parametrize(
    "fmt, kind, bad_model",
    [("anthropic", "an", "claude-error-after-2"), ("openai-responses", "resp", "gpt-error-after-2"), ("openai-chat", "an", "claude-error-after-2"), ("gemini", "ge", "gemini-error-after-0")],
    ids=["anthropic-overloaded", "responses-failed", "chat-from-anthropic-overloaded", "gemini-unavailable"],
)
def test_in_stream_error_before_content_fails_over(start_gateway: StartGateway, upstream: MockUpstream, fmt: str, kind: str, bad_model: str):
    """An error event inside a 200 stream before any content (Anthropic
    overloaded_error, Responses response.failed) fails over like a 5xx status."""
    bad = {"an": lambda: an(upstream, "bad"), "resp": lambda: oa(upstream, "bad", api="responses"), "ge": lambda: ge(upstream, "bad")}[kind]()
    good = oa(upstream, "good", keys=("sk-up-3",), api="responses" if fmt == "openai-responses" else None)
    if fmt == "anthropic":
        good = an(upstream, "good", keys=("sk-up-3",))
    if fmt == "gemini":
        good = ge(upstream, "good", keys=("sk-up-3",))
    gw = start_gateway(small_config([bad, good], [model("m", ("bad", bad_model), ("good", "x-good"))]))
    r = ask(gw, "m", fmt=fmt, stream=True)
    assert r.status_code == 200, r.text
    assert attempts(r) == 2 and r.headers["x-aigate-provider"] == "good"
    assert stream_text(fmt, r.text) == "echo: hi", r.text
    assert "overloaded" not in r.text.lower() and "response.failed" not in r.text and "UNAVAILABLE" not in r.text


@pytest.mark.parametrize("fmt", ["openai-chat", "anthropic"], ids=["same-format", "converted"])
def test_json_answer_cut_mid_body_fails_over(start_gateway: StartGateway, upstream: MockUpstream, fmt: str):
    """A non-streaming answer whose body dies half way (200 headers, half the JSON,
    then close): the client asked for one JSON document and has none yet, so the next
    target answers instead of the client getting a truncated body."""
    gw = start_gateway(small_config([oa(upstream, "bad"), oa(upstream, "good", keys=("sk-up-3",))], [model("m", ("bad", "gpt-die-after-1"), ("good", "gpt-good"))]))
    try:
        r = ask(gw, "m", fmt=fmt)
    except httpx.TransportError as e:
        raise AssertionError(f"the client got a broken answer instead of a failover: {type(e).__name__}: {e}") from None
    assert r.status_code == 200 and answer_text(fmt, r, False) == "echo: hi", r.text[:300]
    assert attempts(r) == 2 and r.headers["x-aigate-provider"] == "good"


@pytest.mark.parametrize(
    "fmt, kind, bad_model, stream, outcome",
    [
        ("openai-chat", "oa", "gpt-die-after-1", True, "io_error"),
        ("anthropic", "an", "claude-error-after-2", True, "http_5xx"),
        ("anthropic", "oa", "gpt-die-after-1", False, "io_error"),
    ],
    ids=["stream-died-before-content", "in-stream-overloaded-before-content", "json-cut-converted"],
)
def test_attempt_failing_after_200_headers_is_counted_once_as_a_failure(start_gateway: StartGateway, upstream: MockUpstream, fmt: str, kind: str, bad_model: str, stream: bool, outcome: str):
    """`aigate_upstream_attempts_total` counts each attempt once, under how it ended:
    an attempt whose 200 headers arrived but whose answer then failed (and was retried
    elsewhere) is that failure, not also an `ok` — else attempts and upstream requests
    no longer add up."""
    bad = oa(upstream, "bad") if kind == "oa" else an(upstream, "bad")
    good = an(upstream, "good", keys=("sk-up-3",)) if fmt == "anthropic" else oa(upstream, "good", keys=("sk-up-3",))
    gw = start_gateway(small_config([bad, good], [model("m", ("bad", bad_model), ("good", "x-good"))]))
    r = ask(gw, "m", fmt=fmt, stream=stream)
    assert r.status_code == 200 and attempts(r) == 2, r.text[:300]
    got = provider_attempts(gw, "bad")
    assert got == {outcome: 1}, f"one failed attempt on 'bad' (the mock received {len([x for x in upstream.requests if x.model == bad_model])} request) was counted as {got}"
    assert provider_attempts(gw, "good") == {"ok": 1}


@pytest.mark.parametrize(
    "fmt, kind, bad_model",
    [
        ("openai-chat", "oa", "gpt-die-after-3"),
        ("anthropic", "an", "claude-die-after-5"),
        ("openai-responses", "resp", "gpt-die-after-5"),
        ("anthropic", "oa", "gpt-die-after-3"),
        ("openai-chat", "an", "claude-die-after-5"),
        ("gemini", "ge", "gemini-die-after-1"),
        ("gemini", "oa", "gpt-die-after-3"),
    ],
    ids=["chat", "anthropic", "responses", "anthropic-from-chat", "chat-from-anthropic", "gemini", "gemini-from-chat"],
)
def test_stream_dying_after_content_ends_with_error_event_in_client_format(start_gateway: StartGateway, upstream: MockUpstream, fmt: str, kind: str, bad_model: str):
    """Content already reached the client: no retry (attempts 1, the second target is
    never asked); the stream ends with a well-formed error event in the client's
    format and no success terminator."""
    bad = {"oa": lambda: oa(upstream, "bad"), "an": lambda: an(upstream, "bad"), "resp": lambda: oa(upstream, "bad", api="responses"), "ge": lambda: ge(upstream, "bad")}[kind]()
    gw = start_gateway(small_config([bad, oa(upstream, "good", keys=("sk-up-3",))], [model("m", ("bad", bad_model), ("good", "gpt-good"))]))
    r = ask(gw, "m", fmt=fmt, stream=True)
    assert r.status_code == 200
    assert attempts(r) == 1 and r.headers["x-aigate-provider"] == "bad"
    assert models_seen(upstream) == [bad_model], "content had been sent: nothing may be retried"
    events = sse_events(r.text)
    assert stream_text(fmt, r.text).startswith("echo:"), r.text
    last_name, last_data = events[-1]
    if fmt == "openai-chat":
        assert last_name is None and "error" in json.loads(last_data), f"last event must be an OpenAI error chunk: {events[-1]}"
        assert chat_stream_text(r.text)[2] is False, "[DONE] after a failure"
        assert not any('"finish_reason":"stop"' in d.replace(" ", "") for _, d in events)
    elif fmt == "anthropic":
        assert last_name == "error", events[-1]
        err = json.loads(last_data)
        assert err["type"] == "error" and err["error"]["type"] and err["error"]["message"], err
        assert "message_stop" not in [n for n, _ in events]
    elif fmt == "gemini":
        err = json.loads(last_data).get("error")
        assert isinstance(err, dict) and err.get("code") and err.get("message") and err.get("status"), f"last event must be a Gemini error object: {events[-1]}"
        assert not any('"finishReason"' in d for _, d in events), "a finish reason after a failure"
    else:
        assert last_name in ("error", "response.failed"), events[-1]
        assert "response.completed" not in [n for n, _ in events]


def test_stream_failure_after_content_is_raised_by_the_sdks(start_gateway: StartGateway, upstream: MockUpstream):
    """The error event is one the official SDKs recognise: iterating raises."""
    gw = start_gateway(small_config([oa(upstream, "oa"), an(upstream, "an")], [model("gpt-m", ("oa", "gpt-die-after-3")), model("claude-m", ("an", "claude-die-after-5"))]))
    with pytest.raises(openai.APIError):
        for _ in openai_client(gw).chat.completions.create(model="gpt-m", messages=[{"role": "user", "content": "hi"}], stream=True):
            pass
    with pytest.raises(anthropic.APIError):
        with anthropic_client(gw).messages.stream(model="claude-m", max_tokens=16, messages=[{"role": "user", "content": "hi"}]) as s:
            s.get_final_message()


def test_in_stream_error_after_content_reaches_the_client_without_retry(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(small_config([an(upstream, "bad"), an(upstream, "good", keys=("sk-up-3",))], [model("m", ("bad", "claude-error-after-5"), ("good", "claude-good"))]))
    r = ask(gw, "m", fmt="anthropic", stream=True)
    assert r.status_code == 200 and attempts(r) == 1
    events = sse_events(r.text)
    assert events[-1][0] == "error" and "overloaded" in events[-1][1], events[-3:]
    assert models_seen(upstream) == ["claude-error-after-5"]


# ============================================================================ circuit breaker and /health/ready


def test_circuit_opens_after_threshold_probes_half_open_and_closes(start_gateway: StartGateway, upstream: MockUpstream):
    """threshold 3, open 1 s. Three failing requests open the circuit; then the bad
    provider is skipped (attempts 1, nothing sent to it) and /health/ready shows it
    unusable. After 1 s one probe goes through: failing, it re-opens the circuit at
    once; after another second a successful probe closes it."""
    gw = start_gateway(
        small_config(
            [oa(upstream, "bad", keys=("sk-up-1", "sk-up-2")), oa(upstream, "good", keys=("sk-up-3",))],
            [model("m", ("bad", "gpt-bad"), ("good", "gpt-good"))],
            circuit_breaker={"failure_threshold": 3, "open_seconds": 1},
        )
    )
    upstream.add_rule("fail-500", model="gpt-bad", times=4)
    for i in range(3):
        r = ask(gw, "m")
        assert r.status_code == 200 and attempts(r) == 2, f"request {i}: {r.headers}"
    opened = time.monotonic()
    st, usable = ready(gw)
    assert st == 200 and usable == {"bad": False, "good": True}
    assert gauge(gw, "aigate_provider_usable", "bad") == 0 and gauge(gw, "aigate_provider_usable", "good") == 1
    r = ask(gw, "m")
    assert r.status_code == 200 and attempts(r) == 1 and r.headers["x-aigate-provider"] == "good"
    assert models_seen(upstream).count("gpt-bad") == 3, "an open circuit was not skipped"
    # Half-open: one probe, which fails (4th rule use) and re-opens.
    time.sleep(max(0.0, opened + 1.2 - time.monotonic()))
    r = ask(gw, "m")
    assert r.status_code == 200 and attempts(r) == 2, "the half-open probe did not go to the bad provider"
    r = ask(gw, "m")
    assert attempts(r) == 1, "a failed probe must re-open the circuit"
    assert ready(gw)[1]["bad"] is False
    reopened = time.monotonic()
    # Next probe succeeds (the rule is used up): closed again, the bad provider serves.
    time.sleep(max(0.0, reopened + 1.2 - time.monotonic()))
    r = ask(gw, "m")
    assert r.status_code == 200 and attempts(r) == 1 and r.headers["x-aigate-provider"] == "bad"
    r = ask(gw, "m")
    assert r.headers["x-aigate-provider"] == "bad" and attempts(r) == 1
    assert ready(gw) == (200, {"bad": True, "good": True})
    assert provider_attempts(gw, "bad") == {"http_5xx": 4, "ok": 2}


def test_half_open_lets_exactly_one_probe_through(start_gateway: StartGateway, upstream: MockUpstream):
    """While the (slow, successful) probe is in flight, concurrent requests skip the
    provider instead of piling onto it."""
    gw = start_gateway(small_config([oa(upstream, "bad"), oa(upstream, "good", keys=("sk-up-3",))], [model("m", ("bad", "gpt-bad"), ("good", "gpt-good"))], circuit_breaker={"failure_threshold": 1, "open_seconds": 1}))
    upstream.add_rule("fail-500", model="gpt-bad", times=1)
    upstream.add_rule("stall-800", model="gpt-bad")
    assert attempts(ask(gw, "m")) == 2
    time.sleep(1.2)
    n = len(upstream.requests)
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def one() -> None:
        rr = ask(gw, "m")
        with lock:
            results.append(rr)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join(10)
    assert len(results) == 4 and all(r.status_code == 200 for r in results)
    assert models_seen(upstream, n).count("gpt-bad") == 1, f"half-open admitted more than one probe: {models_seen(upstream, n)}"
    assert sorted(r.headers["x-aigate-provider"] for r in results) == ["bad", "good", "good", "good"]


def test_circuit_opens_on_connection_refused_and_ready_reports_it(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(small_config([dead("down"), oa(upstream, "up")], [model("m", ("down", "x"), ("up", "gpt-up"))], circuit_breaker={"failure_threshold": 2, "open_seconds": 30}))
    assert ready(gw) == (200, {"down": True, "up": True})
    assert [attempts(ask(gw, "m")) for _ in range(4)] == [2, 2, 1, 1]
    assert ready(gw) == (200, {"down": False, "up": True})
    assert provider_attempts(gw, "down") == {"connect_error": 2}


def test_ready_is_503_while_the_only_provider_is_open(start_gateway: StartGateway, upstream: MockUpstream):
    """/health/ready reports the open circuit; a request still gets an attempt on
    the only provider (no alternative), so the client sees the real 502."""
    gw = start_gateway(small_config([dead("only")], [model("m", ("only", "x"))], circuit_breaker={"failure_threshold": 2, "open_seconds": 30}, retry={"max_attempts": 2, "base_delay_ms": 1, "max_delay_ms": 2}))
    assert_error_shape("openai-chat", ask(gw, "m"), 502)
    st, usable = ready(gw)
    assert (st, usable) == (503, {"only": False})
    r = ask(gw, "m", fmt="anthropic")
    assert_error_shape("anthropic", r, 502)  # every target passed over: the one out longest is tried
    assert attempts(r) == 1 and "circuit" not in r.text
    assert provider_attempts(gw, "only") == {"connect_error": 3}


# ============================================================================ request-level fallback: "models": [...]


@pytest.mark.parametrize("fmt", ["openai-chat", "openai-responses"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_models_list_falls_back_in_order(start_gateway: StartGateway, upstream: MockUpstream, fmt: str, stream: bool):
    api = "responses" if fmt == "openai-responses" else None
    gw = start_gateway(small_config([oa(upstream, "p1", api=api), oa(upstream, "p2", keys=("sk-up-2",), api=api)], [model("m-bad", ("p1", "gpt-fail-503")), model("m-good", ("p2", "gpt-good")), model("m-spare", ("p2", "gpt-spare"))]))
    path, body = raw_request(fmt, "unused", stream=stream)
    del body["model"]
    body["models"] = ["m-bad", "m-good", "m-spare"]
    r = http().post(gw.url + path, json=body, headers={**key_headers(fmt), **DEBUG}, timeout=20)
    assert r.status_code == 200, r.text
    assert attempts(r) == 2 and r.headers["x-aigate-model"] == "gpt-good"
    assert answer_text(fmt, r, stream) == "echo: hi"
    recs = upstream.requests
    assert [x.model for x in recs] == ["gpt-fail-503", "gpt-good"]
    for x in recs:
        assert "models" not in x.json(), "the fallback list must not reach the upstream"


def test_models_list_first_healthy_answers_alone(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(small_config([oa(upstream, "p1")], [model("a", ("p1", "gpt-a")), model("b", ("p1", "gpt-b"))]))
    r = http().post(gw.url + "/v1/chat/completions", json={"models": ["a", "b"], "messages": [{"role": "user", "content": "hi"}]}, headers={**key_headers("openai-chat"), **DEBUG}, timeout=20)
    assert r.status_code == 200 and attempts(r) == 1 and models_seen(upstream) == ["gpt-a"]


# ============================================================================ routing strategies


def test_round_robin_alternates_targets(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(small_config([oa(upstream, "pa"), oa(upstream, "pb", keys=("sk-up-2",))], [model("m", ("pa", "gpt-a"), ("pb", "gpt-b"), strategy="round-robin")]))
    for _ in range(6):
        assert ask(gw, "m").status_code == 200
    seq = models_seen(upstream)
    assert Counter(seq) == {"gpt-a": 3, "gpt-b": 3}
    assert all(x != y for x, y in zip(seq, seq[1:])), f"round-robin did not alternate: {seq}"


def test_round_robin_still_fails_over(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(small_config([oa(upstream, "pa"), oa(upstream, "pb", keys=("sk-up-2",))], [model("m", ("pa", "gpt-fail-500"), ("pb", "gpt-b"), strategy="round-robin")], circuit_breaker={"failure_threshold": 100, "open_seconds": 30}))
    rs = [ask(gw, "m") for _ in range(4)]
    assert all(r.status_code == 200 and r.headers["x-aigate-provider"] == "pb" for r in rs)
    assert sorted(attempts(r) for r in rs) == [1, 1, 2, 2]


def test_weighted_spreads_by_weight(start_gateway: StartGateway, upstream: MockUpstream):
    """weights 3:1 over 200 requests: the heavy target gets 65-85% (expected 75%,
    ±3.3 standard deviations)."""
    weighted = {"name": "m", "strategy": "weighted", "targets": [{"provider": "heavy", "model": "gpt-heavy", "weight": 3}, {"provider": "light", "model": "gpt-light", "weight": 1}]}
    gw = start_gateway(small_config([oa(upstream, "heavy"), oa(upstream, "light", keys=("sk-up-2",))], [weighted]))
    path, body = raw_request("openai-chat", "m")
    with httpx.Client(timeout=10) as c:
        for _ in range(200):
            assert c.post(gw.url + path, json=body, headers=key_headers("openai-chat")).status_code == 200
    n = Counter(models_seen(upstream))
    assert n["gpt-heavy"] + n["gpt-light"] == 200
    assert 130 <= n["gpt-heavy"] <= 170, f"weights 3:1 gave {dict(n)}"


def test_least_inflight_prefers_the_idle_provider(start_gateway: StartGateway, upstream: MockUpstream):
    """A slow request is in flight on target A: the next requests go to B; once A is
    idle again it is picked first again."""
    slow_ok = {**FAST_TIMEOUTS, "first_byte_ms": 5000}
    gw = start_gateway(small_config([oa(upstream, "pa", timeouts=slow_ok), oa(upstream, "pb", keys=("sk-up-2",))], [model("m", ("pa", "gpt-a"), ("pb", "gpt-b"), strategy="least-inflight")]))
    upstream.add_rule("stall-1200", model="gpt-a", times=1)
    slow: list[httpx.Response] = []
    t = threading.Thread(target=lambda: slow.append(ask(gw, "m")))
    t.start()
    assert wait_until(lambda: len(upstream.requests) == 1, 5), "the slow request never reached A"
    during = [ask(gw, "m").headers["x-aigate-provider"] for _ in range(4)]
    t.join(10)
    assert slow and slow[0].headers["x-aigate-provider"] == "pa"
    assert during == ["pb"] * 4, f"with A busy, requests went to {during}"
    after = [ask(gw, "m").headers["x-aigate-provider"] for _ in range(2)]
    assert after[0] == "pa", f"with both idle, A (first) was not picked: {after}"


def test_ordered_always_uses_the_first_healthy_target(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(small_config([oa(upstream, "pa"), oa(upstream, "pb", keys=("sk-up-2",))], [model("m", ("pa", "gpt-a"), ("pb", "gpt-b"))]))
    for _ in range(5):
        assert ask(gw, "m").headers["x-aigate-provider"] == "pa"
    assert set(models_seen(upstream)) == {"gpt-a"}


# ============================================================================ credential strategies


def test_fill_first_uses_first_credential_until_it_rests_round_robin_rotates(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(
        small_config(
            [oa(upstream, "ff", keys=("sk-up-1", "sk-up-2"), credential_strategy="fill-first"), oa(upstream, "rr", keys=("sk-up-1", "sk-up-2"), credential_strategy="round-robin")],
            [model("fill", ("ff", "gpt-ff")), model("rot", ("rr", "gpt-rr"))],
            cooldown={"rate_limited_seconds": 30, "auth_failed_seconds": 300},
        )
    )
    for _ in range(4):
        assert ask(gw, "fill").status_code == 200
        assert ask(gw, "rot").status_code == 200
    ff = [c for m, c, _ in seen(upstream) if m == "gpt-ff"]
    rr = [c for m, c, _ in seen(upstream) if m == "gpt-rr"]
    assert ff == ["sk-up-1"] * 4, f"fill-first spread load: {ff}"
    assert Counter(rr) == {"sk-up-1": 2, "sk-up-2": 2} and all(a != b for a, b in zip(rr, rr[1:])), rr
    # fill-first spills to the second credential only while the first rests.
    upstream.add_rule("fail-429-retry-1", key="sk-up-1", model="gpt-ff", times=1)
    n = len(upstream.requests)
    r = ask(gw, "fill")
    assert r.status_code == 200 and attempts(r) == 2
    t429 = upstream.requests[n].received_at
    assert ask(gw, "fill").status_code == 200
    assert creds_seen(upstream, n) == ["sk-up-1", "sk-up-2", "sk-up-2"]
    time.sleep(max(0.0, t429 + 1.3 - time.monotonic()))
    assert ask(gw, "fill").status_code == 200
    assert creds_seen(upstream)[-1] == "sk-up-1", "fill-first did not return to the first credential after its rest"


# ============================================================================ client disconnects


@pytest.mark.parametrize("fmt, kind", [("openai-chat", "oa"), ("anthropic", "an"), ("anthropic", "oa")], ids=["chat", "anthropic", "anthropic-from-chat"])
def test_client_disconnect_mid_stream_closes_upstream_promptly_and_is_counted(start_gateway: StartGateway, upstream: MockUpstream, fmt: str, kind: str):
    """The client hangs up after the first content: the gateway closes the upstream
    request (the mock sees its connection closed between two slow events) and counts
    the disconnect under the client's ingress."""
    up = oa(upstream, "p") if kind == "oa" else an(upstream, "p")
    slow_model = ("gpt" if kind == "oa" else "claude") + "-slow-250"
    gw = start_gateway(small_config([up], [model("m", ("p", slow_model))]))
    path, body = raw_request(fmt, "m", stream=True)
    with httpx.Client(timeout=20) as c:
        with c.stream("POST", gw.url + path, json=body, headers=key_headers(fmt)) as resp:
            assert resp.status_code == 200
            got = b""
            for chunk in resp.iter_raw():
                got += chunk
                if b"echo" in got:
                    break  # content arrived; hang up mid-stream
    closed = time.monotonic()
    rec = upstream.requests[0]
    assert wait_until(lambda: rec.disconnected_at is not None, 3.0), "the upstream request was still open 3 s after the client left"
    assert rec.disconnected_at - closed < 1.5, f"upstream closed {rec.disconnected_at - closed:.2f}s after the client"
    count = lambda: metric_sum(metrics(gw), "aigate_client_disconnects_total", ingress=fmt)  # noqa: E731
    wait_until(lambda: count() >= 1, 3.0)
    assert count() == 1, f"aigate_client_disconnects_total{{ingress={fmt}}} = {count()}"
    assert ask(gw, "m", fmt="openai-chat").status_code == 200, "the gateway must keep serving"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream-preamble-held"])
def test_client_disconnect_before_any_answer_byte_closes_upstream(start_gateway: StartGateway, upstream: MockUpstream, stream: bool):
    """The client gives up while the upstream is still thinking (no byte has reached
    the client: a long first-byte wait, or a stream whose preamble is held back):
    the upstream request is closed too, not left running until its timeout."""
    gw = start_gateway(small_config([oa(upstream, "p", timeouts={**FAST_TIMEOUTS, "first_byte_ms": 8000, "idle_ms": 8000})], [model("m", ("p", "gpt-hang-6000" if not stream else "gpt-stall-6000"))]))
    with pytest.raises(httpx.ReadTimeout):
        ask(gw, "m", stream=stream, timeout=0.5)
    closed = time.monotonic()
    rec = upstream.requests[0]
    assert wait_until(lambda: rec.disconnected_at is not None, 2.0), "the upstream request was still open 2 s after the client left"
    assert rec.disconnected_at - closed < 1.5


# ============================================================================ keepalive


def test_keepalive_comment_on_a_quiet_stream_and_none_when_off(start_gateway: StartGateway, upstream: MockUpstream):
    """`stream_keepalive_seconds: 1`, upstream quiet for 1.8 s after its preamble: the
    client gets `: keepalive` comments before the content, and the stream still
    parses (the SDK ignores comments). With 0 no comment is sent."""
    prov = [oa(upstream, "p", timeouts={**FAST_TIMEOUTS, "idle_ms": 5000})]
    models_ = [model("m", ("p", "gpt-stall-1800"))]
    on = start_gateway(small_config(prov, models_, stream_keepalive_seconds=1))
    off = start_gateway(small_config(prov, models_, stream_keepalive_seconds=0))
    out: dict[str, Any] = {}

    def run(name: str, gw: Gateway) -> None:
        out[name] = ask(gw, "m", stream=True)

    def sdk() -> None:
        chunks = list(openai_client(on).chat.completions.create(model="m", messages=[{"role": "user", "content": "sdk"}], stream=True))
        out["sdk"] = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    ts = [threading.Thread(target=run, args=("on", on)), threading.Thread(target=run, args=("off", off)), threading.Thread(target=sdk)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(15)
    ev_on = sse_events(out["on"].text)
    names = [n for n, _ in ev_on]
    assert "<comment>" in names, f"no keepalive comment on a stream quiet for 1.8 s: {out['on'].text[:300]!r}"
    first_content = next(i for i, (n, d) in enumerate(ev_on) if n is None and '"content":"echo' in d.replace(" ", ""))
    assert names.index("<comment>") < first_content
    assert chat_stream_text(out["on"].text) == ("echo: hi", 1, True)
    assert "<comment>" not in [n for n, _ in sse_events(out["off"].text)], "keepalive sent although stream_keepalive_seconds is 0"
    assert chat_stream_text(out["off"].text) == ("echo: hi", 1, True)
    assert out.get("sdk") == "echo: sdk", "the OpenAI SDK could not read a stream with keepalive comments"


def test_active_health_check_marks_a_dead_provider_and_routing_skips_it(start_gateway: StartGateway, upstream: MockUpstream):
    """`health_check` (opt-in, pingora-load-balancing's TCP check): a provider whose
    port refuses connections turns unusable within an interval without any request
    touching it, and routing then skips it (one attempt, on the healthy target);
    the healthy provider, checked too, stays usable."""
    hc = {"interval_seconds": 1, "timeout_ms": 300}
    gw = start_gateway(
        small_config(
            [dead("down", health_check=hc), oa(upstream, "up", health_check=hc)],
            [model("m", ("down", "x"), ("up", "gpt-up"))],
        )
    )
    deadline = time.monotonic() + 5
    while ready(gw)[1].get("down", True) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ready(gw) == (200, {"down": False, "up": True}), "the failed health check did not mark 'down' unusable"
    r = ask(gw, "m")
    assert r.status_code == 200 and attempts(r) == 1 and r.headers["x-aigate-provider"] == "up"
    assert provider_attempts(gw, "down") == {}, "an unhealthy provider was still tried"
