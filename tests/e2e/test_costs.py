"""Issue 6, token accounting and cost: `aigate_tokens_total` (input, output, cached,
reasoning) and `aigate_cost_usd_total{key,provider,model}` from the usage each
answer reports — every provider format, streaming and not, same-format and
converted; `cost_usd` and `tokens_estimated` in the access log (text and JSON);
prices from `model_prices` (exact, glob) and the built-in table (dated snapshots
priced as their family).

Prices in these tests are chosen so the expected cost is exact: the mock's usage
(USAGE: 21 input of which 8 cached, 9 output; USAGE_THINK: 30 output of which 12
reasoning) × the configured USD per million tokens.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import httpx
import pytest

from harness import FAST_TIMEOUTS, GW_KEY_A, Gateway, provider, route, small_config
from helpers import anthropic_client, http, key_headers, metric_sum, openai_client, parse_metrics, raw_request, stream_text
from mock_upstream import USAGE, USAGE_THINK, MockUpstream

StartGateway = Callable[..., Gateway]

# USD per million tokens (input, output, cached input).
PRICE = {"input": 1000.0, "output": 2000.0, "cached_input": 100.0}
KINDS = ("input", "output", "cached", "reasoning")


def cost_of(u: dict, p: dict = PRICE) -> float:
    """USD: uncached input, cached input and output at their rates."""
    return ((u["input"] - u["cached"]) * p["input"] + u["cached"] * p["cached_input"] + u["output"] * p["output"]) / 1e6


def costs_config(mock: MockUpstream, **top: Any) -> dict:
    t = FAST_TIMEOUTS
    providers = [
        provider("oa", "openai", mock.openai_url, timeouts=t),
        provider("resp", "openai", mock.openai_url, api="responses", timeouts=t),
        provider("an", "anthropic", mock.url, timeouts=t),
        provider("ge", "gemini", mock.url, timeouts=t),
        provider("compat", "openai-compatible", mock.url + "/compat/v1", timeouts=t),
    ]
    models = [
        route("gpt-c", ("oa", "gpt-cost")),
        route("gpt-c-think", ("oa", "gpt-think-cost")),
        route("resp-c-think", ("resp", "gpt-think-cost")),
        route("claude-c", ("an", "claude-cost")),
        route("claude-c-think", ("an", "claude-think-cost")),
        route("gemini-c-think", ("ge", "gemini-think-cost")),
        route("gpt-unpriced", ("oa", "gpt-nobody-knows")),
        route("sonnet-dated", ("an", "claude-sonnet-4-5-20250929")),
        route("compat-nousage", ("compat", "llama-nousage")),
        route("resp-nousage", ("resp", "gpt-nousage")),
    ]
    cfg = small_config(providers, models, keys=[{"id": "team-a", "key": GW_KEY_A}], **top)
    cfg.setdefault("model_prices", {"*-cost": PRICE})
    return cfg


def scrape(gw: Gateway) -> list:
    return parse_metrics(http().get(gw.admin_url + "/metrics", timeout=5).text)


def wait_for(gw: Gateway, pred: Callable[[list], bool], timeout: float = 3.0) -> list:
    """Metrics are recorded when the request ends (after its last byte): poll briefly."""
    deadline = time.monotonic() + timeout
    while True:
        m = scrape(gw)
        if pred(m) or time.monotonic() > deadline:
            return m
        time.sleep(0.05)


def tokens_of(m: list, model: str) -> dict:
    return {k: metric_sum(m, "aigate_tokens_total", model=model, kind=k) for k in KINDS}


def cost_metric(m: list, **labels: str) -> float:
    return metric_sum(m, "aigate_cost_usd_total", **labels)


def access_lines(gw: Gateway, since: int, request_id: str, timeout: float = 3.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        # Text lines name their target; JSON lines are the bare object.
        lines = [l for l in gw.log_text(since).splitlines() if request_id in l and ("access" in l or l.startswith("{"))]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


# ============================================================================ the demonstration


def test_streamed_anthropic_and_openai_answers_add_exact_tokens_and_cost(start_gateway: StartGateway, upstream: MockUpstream):
    """A streamed Anthropic answer (official SDK, same format) and a streamed OpenAI
    Chat answer (official SDK, usage chunk asked for by aigate) each add the mock's
    usage to aigate_tokens_total and usage × price to aigate_cost_usd_total."""
    price_an = {"input": 3000.0, "output": 15000.0, "cached_input": 300.0, "cache_write": 3750.0}
    price_oa = {"input": 2500.0, "output": 10000.0, "cached_input": 1250.0}
    gw = start_gateway(costs_config(upstream, model_prices={"claude-cost": price_an, "gpt-cost": price_oa}))
    with anthropic_client(gw).messages.stream(model="claude-c", max_tokens=16, messages=[{"role": "user", "content": "s"}]) as st:
        msg = st.get_final_message()
    assert msg.content[0].text == "echo: s"
    chunks = list(openai_client(gw).chat.completions.create(model="gpt-c", messages=[{"role": "user", "content": "s"}], stream=True))
    assert chunks and "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: s"

    want_an, want_oa = cost_of(USAGE, price_an), cost_of(USAGE, price_oa)
    m = wait_for(gw, lambda m: cost_metric(m, model="gpt-c") > 0 and cost_metric(m, model="claude-c") > 0)
    want_tokens = {"input": USAGE["input"], "output": USAGE["output"], "cached": USAGE["cached"], "reasoning": 0}
    assert tokens_of(m, "claude-c") == want_tokens
    assert tokens_of(m, "gpt-c") == want_tokens
    got_an = cost_metric(m, key="team-a", provider="an", model="claude-c")
    got_oa = cost_metric(m, key="team-a", provider="oa", model="gpt-c")
    assert got_an == pytest.approx(want_an, abs=1e-12), f"Anthropic stream cost {got_an}, want {want_an} (13×3000 + 8×300 + 9×15000 µUSD)"
    assert got_oa == pytest.approx(want_oa, abs=1e-12), f"OpenAI stream cost {got_oa}, want {want_oa} (13×2500 + 8×1250 + 9×10000 µUSD)"


# ============================================================================ every provider format, streaming and not

CASES = [
    # (client format, model, provider label, expected reasoning tokens)
    ("openai-chat", "gpt-c-think", "oa", USAGE_THINK["reasoning"]),
    ("openai-responses", "resp-c-think", "resp", USAGE_THINK["reasoning"]),
    ("anthropic", "claude-c-think", "an", USAGE_THINK["reasoning"]),  # output_tokens_details.thinking_tokens
    ("gemini", "gemini-c-think", "ge", USAGE_THINK["reasoning"]),
    # converted: an OpenAI Chat client on each other provider format
    ("openai-chat", "resp-c-think", "resp", USAGE_THINK["reasoning"]),
    ("openai-chat", "claude-c-think", "an", USAGE_THINK["reasoning"]),
    ("openai-chat", "gemini-c-think", "ge", USAGE_THINK["reasoning"]),
    # converted: an Anthropic client on an OpenAI Chat and a Gemini provider
    ("anthropic", "gpt-c-think", "oa", USAGE_THINK["reasoning"]),
    ("anthropic", "gemini-c-think", "ge", USAGE_THINK["reasoning"]),
]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_every_token_kind_and_cost_for_every_provider_format(start_gateway: StartGateway, upstream: MockUpstream, stream: bool):
    """Input, output, cached and reasoning tokens and the cost of one answer, from each
    provider format (same-format and converted), streamed and not."""
    gw = start_gateway(costs_config(upstream))
    for fmt, model, prov, reasoning in CASES:
        case = f"{fmt} -> {prov} ({'stream' if stream else 'json'})"
        before = scrape(gw)
        path, body = raw_request(fmt, model, text="k", stream=stream)
        if fmt != "gemini":
            body["model"] = model
        r = http().post(gw.url + path, json=body, headers=key_headers(fmt), timeout=20)
        assert r.status_code == 200, f"{case}: {r.status_code} {r.text[:300]}"
        if stream:
            assert "echo: k" in stream_text(fmt, r.text), f"{case}: {r.text[:300]}"
        want_cost = cost_of(USAGE_THINK)
        after = wait_for(gw, lambda m: cost_metric(m, model=model) - cost_metric(before, model=model) > 0)
        got = {k: tokens_of(after, model)[k] - tokens_of(before, model)[k] for k in KINDS}
        want = {"input": USAGE_THINK["input"], "output": USAGE_THINK["output"], "cached": USAGE_THINK["cached"], "reasoning": reasoning}
        assert got == want, f"{case}: tokens {got}, want {want}"
        d_cost = cost_metric(after, key="team-a", provider=prov, model=model) - cost_metric(before, key="team-a", provider=prov, model=model)
        assert d_cost == pytest.approx(want_cost, abs=1e-12), f"{case}: cost {d_cost}, want {want_cost}"


# ============================================================================ prices: built-in table, unknown models


def test_builtin_price_of_a_dated_snapshot_and_no_cost_for_unknown_models(start_gateway: StartGateway, upstream: MockUpstream):
    """`claude-sonnet-4-5-20250929` is priced as claude-sonnet-4-5 from the built-in
    table ($3 / $15, cache reads $0.30 per million); a model no price matches adds
    tokens but no cost (and the request is served normally)."""
    gw = start_gateway(costs_config(upstream))
    r = http().post(gw.url + "/v1/messages", json={"model": "sonnet-dated", "max_tokens": 8, "messages": [{"role": "user", "content": "d"}]}, headers=key_headers("anthropic"), timeout=20)
    assert r.status_code == 200, r.text
    r = http().post(gw.url + "/v1/chat/completions", json={"model": "gpt-unpriced", "messages": [{"role": "user", "content": "u"}]}, headers=key_headers("openai-chat"), timeout=20)
    assert r.status_code == 200, r.text
    m = wait_for(gw, lambda m: tokens_of(m, "gpt-unpriced")["input"] > 0 and cost_metric(m, model="sonnet-dated") > 0)
    want = cost_of(USAGE, {"input": 3.0, "output": 15.0, "cached_input": 0.30})
    assert cost_metric(m, model="sonnet-dated") == pytest.approx(want, abs=1e-12)
    assert tokens_of(m, "gpt-unpriced")["input"] == USAGE["input"]
    assert not [s for s in m if s[0] == "aigate_cost_usd_total" and s[1].get("model") == "gpt-unpriced"], "an unknown price produced a cost series"


def test_cost_metric_is_listed_before_any_traffic(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(costs_config(upstream))
    text = http().get(gw.admin_url + "/metrics", timeout=5).text
    assert "# TYPE aigate_cost_usd_total counter" in text and "# HELP aigate_cost_usd_total" in text


# ============================================================================ the access log


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_access_log_carries_cost_and_the_estimate_mark(start_gateway: StartGateway, upstream: MockUpstream, log_format: str):
    gw = start_gateway(costs_config(upstream, log_format=log_format))
    since = gw.log_size()
    rid_known, rid_unknown = "cost-known-1", "cost-unknown-1"
    for model, rid in (("gpt-c", rid_known), ("gpt-unpriced", rid_unknown)):
        r = http().post(gw.url + "/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "l"}]}, headers={**key_headers("openai-chat"), "x-request-id": rid}, timeout=20)
        assert r.status_code == 200
    known, unknown = access_lines(gw, since, rid_known), access_lines(gw, since, rid_unknown)
    assert len(known) == 1 and len(unknown) == 1, gw.log_text(since)[-2000:]
    want = cost_of(USAGE)
    if log_format == "json":
        k = json.loads(known[0][known[0].index("{"):])
        u = json.loads(unknown[0][unknown[0].index("{"):])
        assert k["cost_usd"] == pytest.approx(want, abs=1e-12) and k["tokens_estimated"] is False, k
        assert u["cost_usd"] is None and u["tokens"]["input"] == USAGE["input"], u
    else:
        assert f"cost_usd={want:g}" in known[0], known[0]
        assert "cost_usd=-" in unknown[0] and "tokens_estimated" not in known[0], unknown[0]


# ============================================================================ streams without usage


@pytest.mark.parametrize("fmt,model", [
    ("openai-chat", "compat-nousage"),  # same format: an OpenAI-compatible server ignoring include_usage
    ("anthropic", "compat-nousage"),  # converted from OpenAI Chat
    ("openai-responses", "resp-nousage"),  # same format: usage null at the end
    ("openai-chat", "resp-nousage"),  # converted from Responses
])
def test_stream_without_usage_is_estimated_and_marked(start_gateway: StartGateway, upstream: MockUpstream, fmt: str, model: str):
    """The upstream stream reports no usage: input is estimated from the request
    (bytes / 4), output from the text streamed (~4 characters a token: "echo: hello
    world", 17 characters, is 5 tokens); both are counted and priced, and the access
    log marks the request `tokens_estimated: true`."""
    gw = start_gateway(costs_config(upstream, log_format="json", model_prices={"*-nousage": {"input": 1000.0, "output": 1000.0}}))
    path, body = raw_request(fmt, model, text="hello world", stream=True)
    raw = json.dumps(body).encode()
    rid = f"nousage-{fmt}-{model}"
    since = gw.log_size()
    r = http().post(gw.url + path, content=raw, headers={**key_headers(fmt), "x-request-id": rid}, timeout=20)
    assert r.status_code == 200, r.text[:300]
    assert stream_text(fmt, r.text) == "echo: hello world", r.text[:500]
    want_in, want_out = -(-len(raw) // 4), 5
    m = wait_for(gw, lambda m: tokens_of(m, model)["output"] > 0)
    assert tokens_of(m, model) == {"input": want_in, "output": want_out, "cached": 0, "reasoning": 0}
    assert cost_metric(m, model=model) == pytest.approx((want_in + want_out) * 1000 / 1e6, abs=1e-12)
    lines = access_lines(gw, since, rid)
    assert len(lines) == 1, gw.log_text(since)[-1500:]
    line = json.loads(lines[0][lines[0].index("{"):])
    assert line["tokens_estimated"] is True and line["tokens"]["output"] == want_out, line


def test_stream_without_usage_is_marked_in_the_text_log(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(costs_config(upstream))
    since = gw.log_size()
    for model, rid in (("compat-nousage", "est-1"), ("gpt-c", "rep-1")):
        path, body = raw_request("openai-chat", model, stream=True)
        r = http().post(gw.url + path, json=body, headers={**key_headers("openai-chat"), "x-request-id": rid}, timeout=20)
        assert r.status_code == 200
    est, rep = access_lines(gw, since, "est-1"), access_lines(gw, since, "rep-1")
    assert len(est) == 1 and " tokens_estimated=true" in est[0], est
    assert len(rep) == 1 and "tokens_estimated" not in rep[0], "a stream with usage was marked estimated"
