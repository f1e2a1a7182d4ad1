"""Upstream connection reuse for AI requests, now through Pingora's connection pool
(each attempt is a Pingora subrequest, `src/proxy/subreq.rs`; formerly aigate's own
kept connections): a client's next request rides the upstream connection of its
last answer, and other clients' requests reuse pooled connections.

Checked against an upstream written here on raw sockets, which records the
connection (the gateway's source port) of every request and can close a
connection after an answer:
- requests back to back on one client connection ride one upstream connection,
  also when they alternate between two providers;
- an upstream that closed the kept connection meanwhile costs nothing: the next
  request gets a fresh connection, one attempt, no failure counted;
- after the client idles past a second, or closes, another client's request
  reuses that upstream connection (it went to the pool, not away).
"""

from __future__ import annotations

import http.client
import json
import time
from typing import Callable, Iterator

import pytest

from harness import GW_KEY_A, Gateway, provider, route, small_config
from raw_upstream import ConnUpstream

StartGateway = Callable[..., Gateway]


@pytest.fixture
def two_upstreams() -> Iterator[tuple[ConnUpstream, ConnUpstream]]:
    a, b = ConnUpstream(), ConnUpstream()
    yield a, b
    a.stop()
    b.stop()


def gateway(start_gateway: StartGateway, a: ConnUpstream, b: ConnUpstream) -> Gateway:
    timeouts = {"connect_ms": 1000, "first_byte_ms": 5000, "idle_ms": 5000, "total_ms": 10000}
    return start_gateway(small_config(
        [provider("pa", "openai", a.url, timeouts=timeouts), provider("pb", "openai", b.url, timeouts=timeouts)],
        [route("ma", ("pa", "gpt-a")), route("mb", ("pb", "gpt-b"))],
    ))


def chat(conn: http.client.HTTPConnection, model: str, text: str) -> tuple[int, dict, dict]:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": text}]})
    conn.request("POST", "/v1/chat/completions", body=body, headers={
        "Authorization": f"Bearer {GW_KEY_A}", "Content-Type": "application/json", "x-aigate-debug": "true",
    })
    r = conn.getresponse()
    data = r.read()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, json.loads(data)


def assert_echo(answer: tuple[int, dict, dict], text: str) -> None:
    status, headers, body = answer
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] == f"echo: {text}", body
    assert headers.get("x-aigate-attempts") == "1", headers


def client(gw: Gateway) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)


def io_failures(gw: Gateway) -> list[str]:
    text = gw.client().get(gw.admin_url + "/metrics").text
    return [l for l in text.splitlines() if l.startswith("aigate_upstream_attempts_total") and 'outcome="ok"' not in l]


def test_back_to_back_requests_ride_one_upstream_connection(start_gateway: StartGateway, two_upstreams: tuple[ConnUpstream, ConnUpstream]):
    a, b = two_upstreams
    gw = gateway(start_gateway, a, b)
    c = client(gw)
    for i in range(6):
        assert_echo(chat(c, "ma", f"a{i}"), f"a{i}")
    assert len(a.ports) == 6 and len(set(a.ports)) == 1 and a.accepted == 1, (a.ports, a.accepted)
    # Alternating providers: one kept, the other from the pool; still one connection each.
    for i in range(6):
        m = "ma" if i % 2 else "mb"
        assert_echo(chat(c, m, f"x{i}"), f"x{i}")
    assert a.accepted == 1 and b.accepted == 1, (a.accepted, b.accepted)
    assert len(b.ports) == 3 and len(set(b.ports)) == 1 and len(set(a.ports)) == 1, (a.ports, b.ports)
    assert io_failures(gw) == []
    c.close()


def test_an_upstream_close_while_kept_is_noticed_before_use(start_gateway: StartGateway, two_upstreams: tuple[ConnUpstream, ConnUpstream]):
    a, b = two_upstreams
    a.close_after = 0.05
    gw = gateway(start_gateway, a, b)
    c = client(gw)
    for i in range(4):
        assert_echo(chat(c, "ma", f"r{i}"), f"r{i}")
        time.sleep(0.3)  # the upstream closes its side meanwhile; the client stays under 1 s idle
    assert len(a.ports) == 4 and len(set(a.ports)) == 4 and a.accepted == 4, (a.ports, a.accepted)
    assert io_failures(gw) == [], "a kept connection the upstream had closed was used"
    c.close()


def test_an_idle_or_leaving_client_hands_the_connection_to_the_pool(start_gateway: StartGateway, two_upstreams: tuple[ConnUpstream, ConnUpstream]):
    a, b = two_upstreams
    gw = gateway(start_gateway, a, b)
    first = client(gw)
    assert_echo(chat(first, "ma", "one"), "one")
    time.sleep(1.6)  # past the 1 s a client keeps its upstream connection while idle
    second = client(gw)
    assert_echo(chat(second, "ma", "two"), "two")
    assert a.accepted == 1 and len(set(a.ports)) == 1, ("the idle client's upstream connection was not pooled", a.ports)
    # A client that leaves hands its connection over at once.
    second.close()
    time.sleep(0.2)
    third = client(gw)
    assert_echo(chat(third, "ma", "three"), "three")
    assert a.accepted == 1 and len(set(a.ports)) == 1, ("the leaving client's upstream connection was not pooled", a.ports)
    # The first client, idle all along, still works (on a pooled or a new connection).
    assert_echo(chat(first, "ma", "four"), "four")
    assert io_failures(gw) == []
    first.close()
    third.close()
