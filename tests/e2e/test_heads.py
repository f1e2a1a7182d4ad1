"""Issue 14: one answer head. Every kind of answer carries the gateway's header set
(SPEC "Headers", README "Headers", "CORS", "Limits"): `x-request-id`, the key's
`x-ratelimit-*`, CORS `access-control-allow-origin` / `-expose-headers` for an allowed
`Origin`, and with `x-aigate-debug: true` the debug headers (`x-aigate-attempts`
always, `x-aigate-provider` / `x-aigate-model` once a provider was chosen).

The kinds: the gateway's own error (before and after the key is known), a converted
JSON answer, a converted stream, a stream whose head a keepalive tick sent (the
upstream quiet after its preamble), a static route, provider passthrough — each over
HTTP/1.1 (plain listener) and over HTTP/2 (TLS listener, ALPN h2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest

from harness import FAST_TIMEOUTS, GW_KEY_A, Gateway, provider, route, small_config
from helpers import chat_stream_text, sse_events
from mock_upstream import MockUpstream
from test_tls import Pki

ORIGIN = "https://app.example"
RPM, TPM = 1000, 5_000_000
AUTH = {"authorization": f"Bearer {GW_KEY_A}"}
# The stall outlasts the 1 s keepalive interval: the head goes out with a tick.
STALL_MS = 1800


def heads_config(mock: MockUpstream, **top) -> dict:
    slow = {**FAST_TIMEOUTS, "first_byte_ms": 5000, "idle_ms": 5000}
    providers = [
        provider("oa", "openai", mock.openai_url, timeouts=slow),
        provider("an", "anthropic", mock.url, timeouts=slow),
    ]
    models = [
        route("to-anth", ("an", "claude-up")),
        route("stall", ("oa", f"gpt-stall-{STALL_MS}")),
        route("anth-stall", ("an", f"claude-stall-{STALL_MS}")),
    ]
    keys = [{"id": "team-a", "key": GW_KEY_A, "rpm": RPM, "tpm": TPM}]
    routes = [{"path": "/api/hello", "static": {"status": 200, "headers": {"x-served-by": "aigate"}, "body": {"ok": True}}}]
    return small_config(
        providers, models, keys=keys, routes=routes,
        provider_passthrough={"enabled": True, "prefix": "/"},
        cors={"allowed_origins": [ORIGIN]},
        stream_keepalive_seconds=1, **top)


def headers(rid: str) -> dict:
    return {**AUTH, "origin": ORIGIN, "x-request-id": rid, "x-aigate-debug": "true"}


def chat(model: str, text: str, stream: bool = False) -> dict:
    body: dict = {"model": model, "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
    return body


def assert_gateway_set(kind: str, h: httpx.Headers, rid: str, limited: bool = True, provider: str | None = None, model: str | None = None) -> None:
    """The header set; `limited`: the key was admitted (its limits are known)."""
    got = {k: h.get(k) for k in h.keys() if k.startswith(("x-", "access-control-", "vary"))}
    assert h.get("x-request-id") == rid, f"{kind}: x-request-id {got}"
    assert h.get("access-control-allow-origin") == ORIGIN, f"{kind}: CORS {got}"
    assert "x-ratelimit-remaining-requests" in h.get("access-control-expose-headers", ""), f"{kind}: CORS expose {got}"
    assert "origin" in h.get("vary", "").lower(), f"{kind}: vary {got}"
    assert "x-aigate-attempts" in h, f"{kind}: debug {got}"
    if limited:
        assert h.get("x-ratelimit-limit-requests") == str(RPM), f"{kind}: rpm {got}"
        assert int(h["x-ratelimit-remaining-requests"]) < RPM, f"{kind}: rpm {got}"
        assert "x-ratelimit-reset-requests" in h, f"{kind}: rpm {got}"
        assert h.get("x-ratelimit-limit-tokens") == str(TPM), f"{kind}: tpm {got}"
    if provider is not None:
        assert (h.get("x-aigate-provider"), h.get("x-aigate-model")) == (provider, model), f"{kind}: debug {got}"
        assert int(h["x-aigate-attempts"]) >= 1, f"{kind}: debug {got}"


def opened_by_keepalive(raw: str) -> None:
    """A keepalive comment came before any content: the tick sent the head (with
    the held-back preamble, if any), not the first content."""
    events = sse_events(raw)
    names = [n for n, _ in events]
    assert "<comment>" in names, f"no keepalive comment: {raw[:300]!r}"
    content = [i for i, (n, d) in enumerate(events) if n != "<comment>" and chat_stream_text(f"data: {d}\n\n")[0]]
    assert content and names.index("<comment>") < content[0], f"content before the keepalive: {raw[:300]!r}"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("heads-pki"), "heads")


@pytest.fixture
def gateways(upstream: MockUpstream, pki: Pki, tmp_path: Path) -> Iterator[Callable[[str], Gateway]]:
    started: list[Gateway] = []

    def start(proto: str) -> Gateway:
        cfg = heads_config(upstream)
        tls_ca = None
        if proto == "http2":
            _, cert_pem, key_pem = pki.leaf("127.0.0.1")
            cf, kf = tmp_path / "gw.pem", tmp_path / "gw.key"
            cf.write_bytes(cert_pem)
            kf.write_bytes(key_pem)
            cfg["tls"] = {"cert_file": str(cf), "key_file": str(kf)}
            tls_ca = pki.ca_file
        g = Gateway(cfg, tmp_path / proto, name=f"heads-{proto}", tls_ca=tls_ca).start()
        started.append(g)
        return g

    yield start
    for g in started:
        g.stop()


def test_stream_opened_by_a_keepalive_carries_the_full_head(gateways: Callable[[str], Gateway], upstream: MockUpstream) -> None:
    """Drift case 1: a reasoning model quiet for longer than the keepalive interval
    after its preamble; the keepalive tick sends the head, which must be the one every
    other answer carries (a browser client rejects a stream without CORS)."""
    gw = gateways("http1")
    with gw.client() as c:
        for model, provider_name, upstream_model in (("stall", "oa", f"gpt-stall-{STALL_MS}"), ("anth-stall", "an", f"claude-stall-{STALL_MS}")):
            rid = f"keepalive-{model}"
            with c.stream("POST", "/v1/chat/completions", json=chat(model, "think first", stream=True), headers=headers(rid)) as r:
                raw = "".join(r.iter_text())
            assert r.status_code == 200, raw
            opened_by_keepalive(raw)
            assert chat_stream_text(raw)[0] == "echo: think first"
            assert_gateway_set(f"keepalive stream ({model})", r.headers, rid, provider=provider_name, model=upstream_model)
            assert r.headers["content-type"].startswith("text/event-stream")


@pytest.mark.parametrize("proto", ["http1", "http2"])
def test_every_kind_of_answer_carries_the_same_header_set(gateways: Callable[[str], Gateway], upstream: MockUpstream, proto: str) -> None:
    gw = gateways(proto)
    h2 = proto == "http2"
    with gw.client(http2=h2) as c:

        def check(kind: str, r: httpx.Response, status: int, **want) -> None:
            assert r.status_code == status, f"{kind}: {r.status_code} {r.text[:300]}"
            assert r.http_version == ("HTTP/2" if h2 else "HTTP/1.1"), f"{kind}: {r.http_version}"
            assert_gateway_set(f"{kind} over {proto}", r.headers, r.request.headers["x-request-id"], **want)

        # The gateway's own errors: before the key is known (no limits yet)...
        r = c.post("/v1/chat/completions", json=chat("to-anth", "x"), headers={**headers("local-401"), "authorization": ""})
        check("local 401", r, 401, limited=False)
        assert r.json()["error"]["message"] == "missing gateway key"
        # ... and after (a request the target's format cannot express: `n` > 1 to Anthropic).
        body = {**chat("to-anth", "x"), "n": 2}
        r = c.post("/v1/chat/completions", json=body, headers=headers("local-400"))
        check("local 400", r, 400)
        assert r.json()["error"]["param"] == "n"

        # Converted JSON (OpenAI client, Anthropic upstream).
        r = c.post("/v1/chat/completions", json=chat("to-anth", "json"), headers=headers("json"))
        check("converted JSON", r, 200, provider="an", model="claude-up")
        assert r.json()["choices"][0]["message"]["content"] == "echo: json"

        # Converted stream.
        with c.stream("POST", "/v1/chat/completions", json=chat("to-anth", "stream", stream=True), headers=headers("stream")) as r:
            raw = "".join(r.iter_text())
        check("converted stream", r, 200, provider="an", model="claude-up")
        assert chat_stream_text(raw)[0] == "echo: stream"

        # A stream whose head a keepalive tick sent.
        with c.stream("POST", "/v1/chat/completions", json=chat("stall", "quiet", stream=True), headers=headers("keepalive")) as r:
            raw = "".join(r.iter_text())
        check("keepalive stream", r, 200, provider="oa", model=f"gpt-stall-{STALL_MS}")
        opened_by_keepalive(raw)
        assert chat_stream_text(raw)[0] == "echo: quiet"

        # A static route.
        r = c.post("/api/hello", json={}, headers=headers("static"))
        check("static route", r, 200)
        assert (r.json(), r.headers.get("x-served-by")) == ({"ok": True}, "aigate")

        # Provider passthrough (the upstream's own answer, relayed by Pingora's proxy).
        r = c.post("/oa/v1/chat/completions", json=chat("gpt-up", "pass"), headers=headers("passthrough"))
        check("passthrough", r, 200, provider="oa", model=None)
        assert r.json()["choices"][0]["message"]["content"] == "echo: pass"
        assert upstream.last("/chat/completions").credential == "sk-up-1"
