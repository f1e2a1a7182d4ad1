"""Issue 6, "How it is shown" (multi-node): two aigate processes sharing a real Redis.

The set-up starts `redis-server` on a free loopback port (no persistence); a missing
`redis-server` is a failure, never a skip (.ci/run installs it). Two gateways with
the same config (`limits: {backend: redis, url: ...}`) then enforce one limit
together: requests alternated or fired at once across both nodes are admitted
exactly `rpm` times per window, each node admitting only part of it (alone each
would have admitted all of it), and the window reopens on time. Killing Redis
mid-test keeps both nodes serving on local counters (`on_error: open`), says so in
`/health/ready` and `aigate_limits_backend_up{backend="redis"}`; Redis back on the
same port brings shared counting back. With `on_error: closed` a limited key's
request gets 503 in the client's format and the node reports not ready.
"""

from __future__ import annotations

import copy
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

from harness import FAST_TIMEOUTS, Gateway, free_port, provider, route, small_config
from helpers import assert_error_shape, http, key_headers, metric_sum, parse_metrics, raw_request
from mock_upstream import MockUpstream

StartGateway = Callable[..., Gateway]
WINDOW = 4  # rate_limit_window_seconds: the "minute" of rpm in these tests
KEYS = {  # id -> rpm (the key is "sk-gw-<id>-1")
    "shared": 10,
    "burst": 10,
    "local": 3,
    "after": 4,
    "closed": 5,
}
MODEL = {"openai-chat": "chat-m", "anthropic": "claude-m"}


# ---------------------------------------------------------------------------- redis-server


class RedisServer:
    """A real redis-server on a loopback port, restartable on the same port."""

    def __init__(self, workdir: Path):
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed: the multi-node limit tests need it (Debian: apt-get install redis-server; .ci/run installs it)")
        self.exe = exe
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.proc is None
        log = open(self.workdir / "redis.log", "ab")
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "warning", "--dir", str(self.workdir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"redis-server exited at start ({self.proc.returncode}): {(self.workdir / 'redis.log').read_text()[-2000:]}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise AssertionError(f"redis-server did not answer PING on 127.0.0.1:{self.port} within 10 s")

    def kill(self) -> None:
        """SIGKILL (a crash, not a shutdown) and reap: the port is free again."""
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(5)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    r = RedisServer(tmp_path)
    r.start()
    yield r
    r.kill()


# ---------------------------------------------------------------------------- helpers


def redis_config(mock: MockUpstream, url: str, on_error: str = "open", **limits: Any) -> dict:
    t = FAST_TIMEOUTS
    providers = [provider("oa", "openai", mock.openai_url, timeouts=t), provider("an", "anthropic", mock.url, timeouts=t)]
    models = [route("chat-m", ("oa", "gpt-up")), route("claude-m", ("an", "claude-up"))]
    keys = [{"id": k, "key": f"sk-gw-{k}-1", "rpm": rpm} for k, rpm in KEYS.items()] + [{"id": "other", "key": "sk-gw-other-1"}]
    # A generous per-check timeout: on a loaded test machine a slow answer must not
    # count as Redis down (that would fall back to local counters mid-count).
    store = {"backend": "redis", "url": url, "on_error": on_error, "timeout_ms": 1000, **limits}
    return small_config(providers, models, keys=keys, rate_limit_window_seconds=WINDOW, limits=store)


def send(gw: Gateway, key_id: str, fmt: str = "openai-chat") -> httpx.Response:
    path, body = raw_request(fmt, MODEL[fmt])
    if fmt == "anthropic":
        body["max_tokens"] = 1
    return http().post(gw.url + path, json=body, headers=key_headers(fmt, f"sk-gw-{key_id}-1"), timeout=20)


def remaining(r: httpx.Response) -> int:
    return int(r.headers["x-ratelimit-remaining-requests"])


def assert_429(r: httpx.Response, fmt: str = "openai-chat") -> int:
    assert_error_shape(fmt, r, 429)
    ra = r.headers.get("retry-after")
    assert ra is not None and ra.isdigit() and 1 <= int(ra) <= WINDOW, f"Retry-After {ra!r} for a {WINDOW} s window"
    return int(ra)


def backend_up(gw: Gateway) -> float:
    samples = parse_metrics(http().get(gw.admin_url + "/metrics", timeout=5).text)
    assert any(n == "aigate_limits_backend_up" and l.get("backend") == "redis" for n, l, _ in samples), "no aigate_limits_backend_up{backend=redis} sample"
    return metric_sum(samples, "aigate_limits_backend_up", backend="redis")


def ready(gw: Gateway) -> httpx.Response:
    return http().get(gw.admin_url + "/health/ready", timeout=5)


def wait_for(what: str, pred: Callable[[], bool], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


def alternate(nodes: list[Gateway], key_id: str, count: int, fmt: str = "openai-chat") -> list[tuple[int, httpx.Response]]:
    """`count` requests, node 0, node 1, node 0, ... in turn: (node index, response)."""
    return [(i % 2, send(nodes[i % 2], key_id, fmt)) for i in range(count)]


# ---------------------------------------------------------------------------- tests


def test_two_nodes_share_one_limit_fall_back_when_redis_dies_and_share_again(start_gateway: StartGateway, upstream: MockUpstream, redis: RedisServer):
    cfg = redis_config(upstream, redis.url)
    a, b = start_gateway(cfg, name="node-a"), start_gateway(cfg, name="node-b")
    nodes = [a, b]
    for gw in nodes:
        wait_for("both nodes report Redis up", lambda gw=gw: backend_up(gw) == 1)
        r = ready(gw)
        assert r.status_code == 200 and r.json()["limits"] == "redis", r.text

    # 1. Alternated: one count across both nodes. remaining goes 9, 8, ... whichever
    # node answers, each node admits 5 of the 10 (alone it would have admitted 10).
    n = KEYS["shared"]
    t0 = time.monotonic()
    got = alternate(nodes, "shared", n)
    for i, (_node, r) in enumerate(got):
        assert r.status_code == 200, r.text
        assert remaining(r) == n - 1 - i, f"request {i}: remaining {remaining(r)}: the nodes do not share one count"
    assert [node for node, _ in got].count(0) == n // 2
    for gw in nodes:  # the 11th, on either node: 429 in the client's format
        assert_429(send(gw, "shared"))
        assert_429(send(gw, "shared", "anthropic"), "anthropic")
    assert len(upstream.requests) == n, "a refused request reached the upstream"
    assert time.monotonic() - t0 < WINDOW, "the machine is too slow for this window"

    # 2. The window reopens on time (sliding: the first admissions leave first).
    time.sleep(max(0.0, t0 + WINDOW + 0.3 - time.monotonic()))
    for gw in nodes:
        r = send(gw, "shared")
        assert r.status_code == 200, f"window did not reopen: {r.text}"

    # 3. Concurrent: 2n requests at once, half on each node -> exactly n admitted.
    statuses: list[tuple[int, int]] = []
    lock = threading.Lock()

    def fire(node: int) -> None:
        r = send(nodes[node], "burst")
        with lock:
            statuses.append((node, r.status_code))
        if r.status_code != 200:
            assert_429(r)

    t1 = time.monotonic()
    threads = [threading.Thread(target=fire, args=(i % 2,)) for i in range(2 * n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(statuses) == 2 * n, "a request did not finish"
    assert time.monotonic() - t1 < WINDOW, "the burst took longer than a window: the count would not be exact"
    admitted = [node for node, s in statuses if s == 200]
    assert len(admitted) == n, f"{len(admitted)} admitted across two nodes, limit {n}: {statuses}"
    assert sorted({s for _, s in statuses}) == [200, 429], statuses
    assert 0 < admitted.count(0) < n, f"one node admitted all {n}: not a shared-count proof"

    # 4. Redis dies mid-test: both nodes keep serving on their own counters.
    redis.kill()
    for gw in nodes:
        r = send(gw, "other")
        assert r.status_code == 200, f"fail-open: {r.text}"
    for gw in nodes:
        wait_for("ready says degraded", lambda gw=gw: "degraded" in ready(gw).json().get("limits", ""))
        r = ready(gw)
        assert r.status_code == 200, r.text
        assert r.json()["limits"] == "degraded: redis unreachable, counting locally", r.text
        assert backend_up(gw) == 0
    # Counted locally: each node enforces rpm 3 alone (N nodes admit N x the limit).
    for gw in nodes:
        for i in range(KEYS["local"]):
            r = send(gw, "local")
            assert r.status_code == 200, r.text
            assert remaining(r) == KEYS["local"] - 1 - i, "the local fallback counts per node"
        assert_429(send(gw, "local"))
    for gw in nodes:
        assert "is unavailable" in gw.log_text(), "no log line says Redis went down"

    # 5. Redis back on the same port: shared counting again.
    redis.start()
    for gw in nodes:
        wait_for("both nodes report Redis up again", lambda gw=gw: backend_up(gw) == 1)
        r = ready(gw)
        assert r.status_code == 200 and r.json()["limits"] == "redis", r.text
    got = alternate(nodes, "after", KEYS["after"])
    assert [remaining(r) for _, r in got] == list(range(KEYS["after"] - 1, -1, -1)), [r.text for _, r in got]
    for gw in nodes:
        assert_429(send(gw, "after"))
    for gw in nodes:
        assert "is back" in gw.log_text(), "no log line says Redis is back"
        assert "Redis at 127.0.0.1:" in gw.log_text()


def test_global_rpm_is_shared_across_nodes(start_gateway: StartGateway, upstream: MockUpstream, redis: RedisServer):
    """`limits.rpm` (whole gateway, any key) counts across both nodes as well."""
    cfg = redis_config(upstream, redis.url, rpm=6)
    a, b = start_gateway(cfg, name="node-a"), start_gateway(cfg, name="node-b")
    t0 = time.monotonic()
    got = alternate([a, b], "other", 6)
    assert [r.status_code for _, r in got] == [200] * 6, [r.text for _, r in got]
    for gw in (a, b):
        r = send(gw, "other", "anthropic")
        assert_429(r, "anthropic")
        assert "requests per minute" in r.text, r.text
    assert len(upstream.requests) == 6

    # A reload follows the limits (rpm raised) but keeps the store chosen at start,
    # and says so when the store's keys changed.
    cfg2 = copy.deepcopy(cfg)
    cfg2["limits"].update(rpm=100, key_prefix="elsewhere:")
    a.config = cfg2
    a.write_config()
    since = a.log_size()
    assert a.proc is not None
    os.kill(a.proc.pid, signal.SIGHUP)
    wait_for("the reload", lambda: "config reloaded" in a.log_text(since))
    assert "the limit store is chosen at start" in a.log_text(since)
    assert send(a, "other").status_code == 200, "the raised global rpm did not apply"
    r = send(b, "other")
    assert time.monotonic() - t0 < WINDOW, "the machine is too slow for this window"
    assert_429(r)  # b still has rpm 6 and a full shared window


def test_on_error_closed_refuses_limited_requests_and_is_not_ready(start_gateway: StartGateway, upstream: MockUpstream, redis: RedisServer):
    gw = start_gateway(redis_config(upstream, redis.url, on_error="closed"))
    wait_for("Redis up", lambda: backend_up(gw) == 1)
    assert ready(gw).status_code == 200
    assert send(gw, "closed").status_code == 200

    redis.kill()
    for fmt in MODEL:
        r = send(gw, "closed", fmt)
        assert_error_shape(fmt, r, 503)
        assert r.headers.get("retry-after") == "1", dict(r.headers)
        assert "rate-limit store is unavailable" in r.text, r.text
    # A key without limits needs no store: it is still served.
    assert send(gw, "other").status_code == 200
    r = ready(gw)
    assert r.status_code == 503, r.text
    assert r.json()["status"] == "not ready"
    assert r.json()["limits"].startswith("unavailable: redis unreachable"), r.text
    assert backend_up(gw) == 0
    assert len(upstream.requests) == 2, "a refused request reached the upstream"

    redis.start()
    wait_for("ready again once Redis is back", lambda: ready(gw).status_code == 200)
    assert send(gw, "closed").status_code == 200
