"""Issue 15 §1: failures steer traffic, they never black-hole it.

ONE gateway process for the whole file (module fixture), on the DEFAULT `retry`,
`cooldown` and `circuit_breaker` settings, serves a mixed sequence of faults, in file
order, each followed by healthy requests that must succeed as soon as the upstream
does:

- one target ("solo", one credential): 401 twice, 404, 429 without and with
  `Retry-After`, five 500s, five refused connections ("far", on a second mock that
  goes down and comes back);
- two targets per model (a failing provider of its own per fault, then the shared
  healthy "pb"): the healthy one serves while the other rests or its circuit is open;
- `models: [...]` whose every target is out: still one attempt.

The contract (SPEC "Errors", last paragraph): a request never gets an answer no
attempt was made for when the upstream might answer; the client gets the last
attempt's real status in its own format; the one exception is a credential resting
under the upstream's own `Retry-After` (429 with the remaining `Retry-After`).
Each test leaves the providers it shares ("solo", "pb") healthy again, so the cases
also pass alone (`-k`), but they run against the one process in sequence.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from harness import FAST_TIMEOUTS, UPSTREAM_KEYS, Gateway, provider, route, small_config
from helpers import assert_error_shape, http, key_headers, parse_metrics, raw_request
from mock_upstream import MockUpstream

DEBUG = {"x-aigate-debug": "true"}

# Each two-target fault gets a failing provider of its own, so a rest or an open
# circuit left by one case never reaches another; "pb" is the healthy alternative.
PAIRS = ("p401", "p429", "p429ra", "p500", "p404")


def _config(mock: MockUpstream, flapper: MockUpstream) -> dict:
    def oa(name: str, m: MockUpstream, key: str = "sk-up-1") -> dict:
        return provider(name, "openai", m.openai_url, keys=[key], timeouts=FAST_TIMEOUTS)

    providers = [oa("solo", mock), oa("far", flapper), oa("pb", mock, "sk-up-2"), oa("fa", flapper)]
    providers += [oa(p, mock) for p in PAIRS]
    hc = oa("hc", flapper)
    hc["health_check"] = {"interval_seconds": 1, "timeout_ms": 300}
    providers.append(hc)
    models = [route("solo", ("solo", "gpt-solo")), route("far", ("far", "gpt-far")), route("hc", ("hc", "gpt-hc"))]
    models += [route(f"pair-{p}", (p, f"gpt-{p}"), ("pb", "gpt-pb")) for p in PAIRS]
    models += [route("pair-fa", ("fa", "gpt-fa"), ("pb", "gpt-pb"))]
    models += [route("list-a", ("p429", "gpt-p429")), route("list-b", ("p500", "gpt-p500"))]
    cfg = small_config(providers, models, provider_passthrough={"enabled": True, "prefix": "/p/"})
    # The defaults are what is under test: no retry / cooldown / breaker settings.
    for k in ("retry", "cooldown", "circuit_breaker"):
        cfg.pop(k)
    return cfg


@pytest.fixture(scope="module")
def mocks() -> Iterator[tuple[MockUpstream, MockUpstream]]:
    with MockUpstream(keys=UPSTREAM_KEYS) as mock, MockUpstream(keys=UPSTREAM_KEYS) as flapper:
        yield mock, flapper


@pytest.fixture(scope="module")
def gw(mocks: tuple[MockUpstream, MockUpstream], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    g = Gateway(_config(*mocks), Path(tmp_path_factory.mktemp("no-black-hole")), name="no-black-hole")
    g.start()
    yield g
    g.stop()


@pytest.fixture
def mock(mocks: tuple[MockUpstream, MockUpstream]) -> MockUpstream:
    mocks[0].reset()
    return mocks[0]


@pytest.fixture
def flapper(mocks: tuple[MockUpstream, MockUpstream]) -> Iterator[MockUpstream]:
    mocks[1].reset()
    yield mocks[1]
    mocks[1].come_up()


# ----------------------------------------------------------------------------- helpers


def ask(gw: Gateway, model: str, fmt: str = "openai-chat") -> httpx.Response:
    path, body = raw_request(fmt, model, "hi", False)
    return http().post(gw.url + path, json=body, headers={**key_headers(fmt), **DEBUG}, timeout=30)


def ok(r: httpx.Response, provider_name: str, attempts: int = 1) -> None:
    assert r.status_code == 200, f"expected an answer, got {r.status_code}: {r.text[:300]}"
    got = (r.headers.get("x-aigate-provider"), int(r.headers.get("x-aigate-attempts", "-1")))
    assert got == (provider_name, attempts), f"(provider, attempts) {got}, wanted {(provider_name, attempts)}"


def upstream_error(fmt: str, r: httpx.Response, status: int, attempts: int) -> dict:
    """The upstream's own error, relayed with its status in the client's format,
    never the gateway's "resting" / "circuit open" 503."""
    body = assert_error_shape(fmt, r, status)
    text = r.text.lower()
    assert "resting" not in text and "circuit" not in text, f"a gateway refusal instead of the upstream's answer: {r.text}"
    assert int(r.headers["x-aigate-attempts"]) == attempts, dict(r.headers)
    return body


def models_seen(m: MockUpstream, since: int = 0) -> list[str | None]:
    out = []
    for rec in m.requests[since:]:
        m.wait_done(rec, 3.0)
        out.append(rec.model)
    return out


def metrics(gw: Gateway) -> list:
    return parse_metrics(http().get(gw.admin_url + "/metrics", timeout=5).text)


def gauges(gw: Gateway, name: str) -> tuple[float | None, float | None]:
    """(aigate_resting_credentials, aigate_provider_usable) for provider `name`."""
    m = metrics(gw)

    def one(metric: str) -> float | None:
        vals = [v for n, l, v in m if n == metric and l.get("provider") == name]
        return vals[0] if vals else None

    return one("aigate_resting_credentials"), one("aigate_provider_usable")


def outcomes(gw: Gateway, name: str) -> dict[str, int]:
    return {l["outcome"]: int(v) for n, l, v in metrics(gw) if n == "aigate_upstream_attempts_total" and l.get("provider") == name and v}


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before) if after.get(k, 0) != before.get(k, 0)}


def log_lines(gw: Gateway, mark: int, *words: str) -> list[str]:
    return [l for l in gw.log_text(mark).splitlines() if all(w in l for w in words) and "access" not in l]


# ============================================================================ one target, one credential


def test_401_twice_each_tried_logged_once_then_healthy(gw: Gateway, mock: MockUpstream) -> None:
    """A 401 on the provider's only credential rests nothing: the next request is
    sent upstream again (its 401 relayed), and the one after succeeds at once.
    The refusal is logged once for the burst, not per request."""
    mark = gw.log_size()
    before = outcomes(gw, "solo")
    mock.add_rule("fail-401", model="gpt-solo", times=2)
    upstream_error("openai-chat", ask(gw, "solo"), 401, 1)
    upstream_error("anthropic", ask(gw, "solo", "anthropic"), 401, 1)
    ok(ask(gw, "solo"), "solo")
    assert models_seen(mock) == ["gpt-solo"] * 3, "every request must reach the upstream"
    assert gauges(gw, "solo") == (0, 1)
    assert delta(outcomes(gw, "solo"), before) == {"http_4xx": 2, "ok": 1}
    assert len(log_lines(gw, mark, "solo", "401")) == 1, gw.log_text(mark)


def test_404_after_401_is_the_upstreams_404_and_rests_nothing(gw: Gateway, mock: MockUpstream) -> None:
    """The reported sequence: a 401, then a 404 — each the upstream's own answer —
    then a healthy request; a 404 neither rests the credential nor counts toward
    the circuit."""
    mock.add_rule("fail-401", model="gpt-solo", times=1)
    upstream_error("openai-chat", ask(gw, "solo"), 401, 1)
    mock.add_rule("fail-404", model="gpt-solo", times=1)
    upstream_error("openai-chat", ask(gw, "solo"), 404, 1)
    assert gauges(gw, "solo") == (0, 1), "a 404 rested the credential or opened the circuit"
    ok(ask(gw, "solo"), "solo")
    assert models_seen(mock) == ["gpt-solo"] * 3


def test_429_without_retry_after_does_not_block_the_next_request(gw: Gateway, mock: MockUpstream) -> None:
    """A 429 with no reset hint rests the only credential a few seconds, but with no
    alternative the next request still tries it — and succeeds, ending the rest."""
    mock.add_rule("fail-429", model="gpt-solo", times=1)
    upstream_error("openai-chat", ask(gw, "solo"), 429, 1)
    assert gauges(gw, "solo") == (1, 0), "the 429 should rest the credential"
    ok(ask(gw, "solo", "anthropic"), "solo")
    assert models_seen(mock) == ["gpt-solo"] * 2
    assert gauges(gw, "solo") == (0, 1), "a forced attempt that worked must end the rest"


def test_429_with_retry_after_gives_429_until_then_serves(gw: Gateway, mock: MockUpstream) -> None:
    """The one exception: the upstream said when to come back. Meanwhile the client
    gets 429 in its own format with the remaining Retry-After, without an upstream
    request; once that time has passed the next request is served."""
    mock.add_rule("fail-429-retry-1", model="gpt-solo", times=1)
    r = ask(gw, "solo")
    upstream_error("openai-chat", r, 429, 1)
    assert r.headers.get("retry-after") == "1"
    t429 = mock.requests[0].received_at
    r2 = ask(gw, "solo", "anthropic")
    body = assert_error_shape("anthropic", r2, 429)
    assert body["error"]["type"] == "rate_limit_error", body
    assert r2.headers.get("retry-after") == "1", dict(r2.headers)
    assert len(mock.requests) == 1, "no request may go out before the upstream's Retry-After"
    time.sleep(max(0.0, t429 + 1.05 - time.monotonic()))
    ok(ask(gw, "solo"), "solo")


def test_five_500s_open_the_circuit_yet_the_next_request_is_tried(gw: Gateway, mock: MockUpstream) -> None:
    """Default retry: one request makes 5 attempts, all 500: the client gets the real
    500, and the circuit opens. The next request, with no alternative, is still sent
    (the half-open probe); it succeeds and closes the circuit."""
    before = outcomes(gw, "solo")
    mock.add_rule("fail-500", model="gpt-solo", times=5)
    upstream_error("openai-chat", ask(gw, "solo"), 500, 5)
    assert gauges(gw, "solo")[1] == 0, "five failures in a row should open the circuit"
    ok(ask(gw, "solo"), "solo")
    assert gauges(gw, "solo") == (0, 1), "a successful forced attempt must close the circuit"
    ok(ask(gw, "solo"), "solo")
    assert models_seen(mock) == ["gpt-solo"] * 7
    assert delta(outcomes(gw, "solo"), before) == {"http_5xx": 5, "ok": 2}


def test_refused_connections_give_502_then_serve_when_the_upstream_is_back(gw: Gateway, flapper: MockUpstream) -> None:
    """Five refused connects (one request, default retry) open the circuit; while the
    upstream is still down the next request is tried anyway and gets the real 502,
    not a 503; as soon as the upstream is back, the next request is served."""
    before = outcomes(gw, "far")
    flapper.go_down()
    upstream_error("openai-chat", ask(gw, "far"), 502, 5)
    assert gauges(gw, "far")[1] == 0
    upstream_error("anthropic", ask(gw, "far", "anthropic"), 502, 1)
    flapper.come_up()
    ok(ask(gw, "far"), "far")
    assert gauges(gw, "far") == (0, 1)
    assert delta(outcomes(gw, "far"), before) == {"connect_error": 6, "ok": 1}


def ready(gw: Gateway) -> dict[str, bool]:
    return {p["name"]: p["usable"] for p in http().get(gw.admin_url + "/health/ready", timeout=5).json()["providers"]}


def test_failed_health_check_with_no_alternative_is_still_tried(gw: Gateway, flapper: MockUpstream) -> None:
    """A provider whose active health check failed is passed over only while an
    alternative exists: alone, it is tried (the real 502 while it is down), and it
    serves as soon as the upstream is back, before the next check says so."""
    flapper.go_down()
    end = time.monotonic() + 5
    while ready(gw)["hc"] and time.monotonic() < end:
        time.sleep(0.1)
    assert ready(gw)["hc"] is False, "the health check did not mark 'hc' unusable"
    upstream_error("openai-chat", ask(gw, "hc"), 502, 1)
    flapper.come_up()
    ok(ask(gw, "hc"), "hc")


# ============================================================================ two targets: the healthy one serves


def test_pair_401_fails_over_and_the_single_credential_is_tried_again(gw: Gateway, mock: MockUpstream) -> None:
    """401 on the first target's only credential: the other target answers; the
    credential does not rest (its provider has no other), so once the upstream
    accepts it again it serves at once."""
    mock.add_rule("fail-401", model="gpt-p401", times=1)
    ok(ask(gw, "pair-p401"), "pb", attempts=2)
    ok(ask(gw, "pair-p401"), "p401")
    assert models_seen(mock) == ["gpt-p401", "gpt-pb", "gpt-p401"]


@pytest.mark.parametrize("rule, rest", [("fail-429", 5.0), ("fail-429-retry-1", 1.0)], ids=["no-retry-after-default-5s", "retry-after-1"])
def test_pair_429_rests_the_credential_while_the_other_target_serves(gw: Gateway, mock: MockUpstream, rule: str, rest: float) -> None:
    """429 on the first target: the other serves this request and every request
    while the credential rests (Retry-After, else the 5 s default); then the first
    target serves again."""
    name = "p429" if rule == "fail-429" else "p429ra"
    mock.add_rule(rule, model=f"gpt-{name}", times=1)
    ok(ask(gw, f"pair-{name}"), "pb", attempts=2)
    t429 = mock.requests[0].received_at
    assert gauges(gw, name) == (1, 0)
    ok(ask(gw, f"pair-{name}"), "pb")
    assert models_seen(mock) == [f"gpt-{name}", "gpt-pb", "gpt-pb"], "a resting credential was used while an alternative was there"
    assert time.monotonic() < t429 + rest, "the machine is too slow to observe the rest"
    time.sleep(max(0.0, t429 + rest + 0.1 - time.monotonic()))
    ok(ask(gw, f"pair-{name}"), name)


def test_pair_five_500s_open_the_circuit_and_the_other_target_serves(gw: Gateway, mock: MockUpstream) -> None:
    """Five requests each fail over from a 500 to the healthy target; the fifth
    failure opens the first target's circuit, after which it is skipped (one
    attempt, on the healthy target), and the upstream's recovery does not matter
    meanwhile: the request is answered either way."""
    mock.add_rule("fail-500", model="gpt-p500", times=5)
    for _ in range(5):
        ok(ask(gw, "pair-p500"), "pb", attempts=2)
    assert gauges(gw, "p500")[1] == 0
    ok(ask(gw, "pair-p500"), "pb")
    assert models_seen(mock).count("gpt-p500") == 5, "an open circuit was not skipped while an alternative was there"


def test_pair_refused_connections_open_the_circuit_and_the_other_target_serves(gw: Gateway, flapper: MockUpstream) -> None:
    flapper.go_down()
    for _ in range(5):
        ok(ask(gw, "pair-fa"), "pb", attempts=2)
    assert gauges(gw, "fa")[1] == 0
    ok(ask(gw, "pair-fa"), "pb")
    assert outcomes(gw, "fa") == {"connect_error": 5}


def test_pair_404_is_relayed_and_rests_nothing(gw: Gateway, mock: MockUpstream) -> None:
    """A 404 is about the request: relayed as is (no failover), nothing rests, and
    the same target serves the next request."""
    mock.add_rule("fail-404", model="gpt-p404", times=1)
    upstream_error("openai-chat", ask(gw, "pair-p404"), 404, 1)
    assert gauges(gw, "p404") == (0, 1)
    ok(ask(gw, "pair-p404"), "p404")
    assert models_seen(mock) == ["gpt-p404", "gpt-p404"]


# ============================================================================ models: [...] whose every target is out


def test_models_list_with_every_target_out_still_makes_one_attempt(gw: Gateway, mock: MockUpstream) -> None:
    """`models: ["list-a", "list-b"]`: list-a's credential rests after a 429 (no
    hint, 5 s) and list-b's circuit is open (left by the five-500s case above, or
    opened here). Both are out, so the request is tried on the one out longest —
    and served."""
    if gauges(gw, "p500")[1] != 0:  # run alone: open p500's circuit first
        mock.add_rule("fail-500", model="gpt-p500", times=5)
        for _ in range(5):
            ask(gw, "pair-p500")
    mock.reset()
    time.sleep(0.01)  # p500's circuit opened before p429's rest starts: out longest
    mock.add_rule("fail-429", model="gpt-p429", times=1)
    ok(ask(gw, "pair-p429"), "pb", attempts=2)
    assert gauges(gw, "p429")[1] == 0 and gauges(gw, "p500")[1] == 0
    n = len(mock.requests)
    r = http().post(gw.url + "/v1/chat/completions", json={"models": ["list-a", "list-b"], "messages": [{"role": "user", "content": "hi"}]}, headers={**key_headers("openai-chat"), **DEBUG}, timeout=30)
    ok(r, "p500")
    assert models_seen(mock, n) == ["gpt-p500"], "one attempt, on the candidate out longest"


# ============================================================================ passthrough routes: the same rule


def test_passthrough_429_does_not_block_the_next_request(gw: Gateway, mock: MockUpstream) -> None:
    """`/p/solo/...` (provider passthrough) picks credentials by the same rule: a
    429 without a hint rests the only credential, and the next request is still
    sent, and served; its success ends the rest."""
    url = gw.url + "/p/solo/v1/chat/completions"
    body = {"model": "gpt-solo", "messages": [{"role": "user", "content": "hi"}]}
    mock.add_rule("fail-429", model="gpt-solo", times=1)
    r = http().post(url, json=body, headers=key_headers("openai-chat"), timeout=30)
    assert r.status_code == 429, r.text
    assert gauges(gw, "solo") == (1, 0)
    r = http().post(url, json=body, headers=key_headers("openai-chat"), timeout=30)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "echo: hi", r.text
    assert models_seen(mock) == ["gpt-solo"] * 2
    assert gauges(gw, "solo") == (0, 1)
