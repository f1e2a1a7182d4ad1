"""Issue 5, "How it is shown" (bounded soak): three upstreams behind one model —

- `vllm`: a local OpenAI-compatible server failing 30% of requests at random
  (`flaky-30`: a 500 with the provider's error body), seeded;
- `openai`: flapping — its mock stops listening for ~2 s, then listens again, over and
  over (connects refused while down, idle connections closed);
- `anthropic`: healthy (another kind: requests are converted both ways);

round-robin over the three, clients in OpenAI Chat and Anthropic formats, JSON and SSE,
from several threads at once for AIGATE_SOAK_SECONDS (default 15) on loopback.

Shown: zero client-visible failures (every answer is 200 and carries its own prompt
back), and the request counts add up: the attempts the gateway counted
(`aigate_upstream_attempts_total`) equal the sum of the `x-aigate-attempts` it reported
and the client requests plus the counted retries; per upstream, the requests it answered
equal the attempts counted with an answer's outcome (ok, http_*), and the requests the
flapping one read but never answered (it went down) are within the counted transport
failures (refused connects and resets while it was down, which never reach a mock's
log). The figures are printed.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections import Counter

import httpx

from harness import GW_KEY_A, Gateway, provider, small_config
from helpers import key_headers, parse_metrics, raw_request, stream_text
from mock_upstream import MockUpstream

SOAK_SECONDS = float(os.environ.get("AIGATE_SOAK_SECONDS", "15"))
WORKERS = 6
FLAP_SECONDS = 2.0
CLIENT_SHAPES = [("openai-chat", False), ("openai-chat", True), ("anthropic", False), ("anthropic", True)]


def low_port() -> int:
    """A free port below the ephemeral range: while the flapping mock is down, no
    outgoing connection can be given its port, so it can listen there again."""
    rng = random.Random()
    for _ in range(200):
        p = rng.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
                return p
            except OSError:
                continue
    raise RuntimeError("no free port in 20000-32000")


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def test_soak_flaky_and_flapping_upstreams_give_no_client_failures_and_counts_add_up(start_gateway, capsys):
    flaky = MockUpstream(keys=["sk-vllm"], seed=5).start()
    flapping = MockUpstream(keys=["sk-up-1", "sk-up-2", "sk-up-3"], port=low_port()).start()
    healthy = MockUpstream(keys=["sk-ant"]).start()
    mocks = {"vllm": flaky, "openai": flapping, "anthropic": healthy}
    try:
        t = {"connect_ms": 500, "first_byte_ms": 3000, "idle_ms": 3000, "total_ms": 15000}
        cfg = small_config(
            [
                provider("vllm", "openai-compatible", flaky.openai_url, keys=["sk-vllm"], timeouts=t),
                provider("openai", "openai", flapping.openai_url, keys=["sk-up-1", "sk-up-2", "sk-up-3"], timeouts=t),
                provider("anthropic", "anthropic", healthy.url, keys=["sk-ant"], timeouts=t),
            ],
            [{"name": "soak", "strategy": "round-robin", "targets": [{"provider": "vllm", "model": "llama-flaky-30"}, {"provider": "openai", "model": "gpt-4o"}, {"provider": "anthropic", "model": "claude-sonnet"}]}],
            retry={"max_attempts": 5, "base_delay_ms": 5, "max_delay_ms": 50, "multiplier": 2.0},
            circuit_breaker={"failure_threshold": 3, "open_seconds": 1},
        )
        gw: Gateway = start_gateway(cfg)

        stop = threading.Event()
        flips = [0]

        def flapper() -> None:
            while not stop.wait(FLAP_SECONDS):
                if flapping.is_down:
                    flapping.come_up()
                else:
                    flapping.go_down()
                flips[0] += 1
            flapping.come_up()

        lock = threading.Lock()
        latencies: list[float] = []
        failures: list[str] = []
        reported_attempts = Counter()  # x-aigate-attempts -> requests
        served_by = Counter()
        shapes = Counter()
        seq = [0]

        def worker(wid: int) -> None:
            rng = random.Random(wid)
            with httpx.Client(timeout=30) as c:
                while not stop.is_set():
                    fmt, stream = rng.choice(CLIENT_SHAPES)
                    with lock:
                        seq[0] += 1
                        n = seq[0]
                    text = f"soak {wid} {n}"
                    path, body = raw_request(fmt, "soak", text=text, stream=stream)
                    t0 = time.monotonic()
                    try:
                        r = c.post(gw.url + path, json=body, headers={**key_headers(fmt, GW_KEY_A), "x-aigate-debug": "true"})
                        ok = r.status_code == 200
                        got = (stream_text(fmt, r.text) if stream else (r.json()["choices"][0]["message"]["content"] if fmt == "openai-chat" else r.json()["content"][0]["text"])) if ok else None
                        err = None if ok and got == f"echo: {text}" else f"{fmt} stream={stream}: {r.status_code} {r.text[:200]!r}"
                        att = int(r.headers.get("x-aigate-attempts", "-1"))
                        prov = r.headers.get("x-aigate-provider", "?")
                    except Exception as e:  # noqa: BLE001 - every client-visible failure counts
                        err, att, prov = f"{fmt} stream={stream}: {type(e).__name__}: {e}", -1, "?"
                    dt = time.monotonic() - t0
                    with lock:
                        latencies.append(dt)
                        shapes[(fmt, stream)] += 1
                        reported_attempts[att] += 1
                        served_by[prov] += 1
                        if err:
                            failures.append(err)

        threads = [threading.Thread(target=flapper)] + [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
        started = time.monotonic()
        for th in threads:
            th.start()
        time.sleep(SOAK_SECONDS)
        stop.set()
        for th in threads:
            th.join(30)
        elapsed = time.monotonic() - started
        assert not any(th.is_alive() for th in threads), "a client thread did not finish"

        samples = parse_metrics(httpx.get(gw.admin_url + "/metrics", timeout=5).text)
        counted = Counter()
        for name, labels, v in samples:
            if name == "aigate_upstream_attempts_total" and v:
                counted[(labels["provider"], labels["outcome"])] += int(v)
        for m in mocks.values():
            for r in m.requests:
                m.wait_done(r, 5)
        transport = ("connect_error", "io_error", "timeout", "unusable")
        answered = {name: sum(1 for r in m.requests if r.status is not None) for name, m in mocks.items()}
        unanswered = {name: len(m.requests) - answered[name] + m.dropped for name, m in mocks.items()}
        counted_answered = {name: sum(v for (p, o), v in counted.items() if p == name and o not in transport) for name in mocks}
        counted_transport = {name: sum(v for (p, o), v in counted.items() if p == name and o in transport) for name in mocks}
        flaky_failed = sum(1 for r in flaky.requests if r.status == 500)

        requests = sum(shapes.values())
        total_counted = sum(counted.values())
        header_attempts = sum(a * n for a, n in reported_attempts.items() if a > 0)
        retries = total_counted - requests
        retries_answered = sum(counted_answered.values()) - requests
        by_outcome = Counter()
        for (p, o), v in counted.items():
            if o != "ok":
                by_outcome[f"{p}:{o}"] += v
        with capsys.disabled():
            print(
                f"\n[soak] {elapsed:.1f}s, {WORKERS} clients, flapping upstream flipped {flips[0]} times\n"
                f"[soak] client requests {requests} ({requests / elapsed:.0f}/s): failures {len(failures)}; "
                f"latency p50 {percentile(latencies, 0.5) * 1000:.0f} ms, p99 {percentile(latencies, 0.99) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms\n"
                f"[soak] shapes { {f + ('-stream' if s else ''): n for (f, s), n in shapes.items()} }; served by {dict(served_by)}\n"
                f"[soak] attempts counted {total_counted} = requests {requests} + retries {retries} ({dict(by_outcome)}); "
                f"sum of x-aigate-attempts {header_attempts}; attempts per request {dict(sorted(reported_attempts.items()))}\n"
                f"[soak] upstreams answered {sum(answered.values())} {answered} = client requests {requests} + counted retries answered upstream {retries_answered}; "
                f"flaky answered 500 to {flaky_failed}/{answered['vllm']} ({100 * flaky_failed / max(1, answered['vllm']):.0f}%)\n"
                f"[soak] transport-level failures counted {counted_transport} (refused / reset while down); of these the upstream read but did not answer {unanswered}"
            )
        assert requests >= 100, f"only {requests} requests in {elapsed:.0f}s: not a soak"
        assert not failures, f"{len(failures)} client-visible failures of {requests}, e.g. {failures[:5]}"
        assert flips[0] >= 3 and flaky_failed > 0 and counted_transport["openai"] > 0, "the faults did not happen"
        assert sum(v for (p, o), v in counted.items() if o == "ok") == requests, f"ok attempts {counted} != client requests {requests}"
        assert header_attempts == total_counted, f"x-aigate-attempts add up to {header_attempts}, aigate_upstream_attempts_total to {total_counted}"
        # Requests reaching upstreams = client requests + counted retries: every request an
        # upstream answered is one counted attempt with that answer's outcome, per upstream;
        # what the flapping one read but never answered is among the counted transport failures.
        assert sum(answered.values()) == requests + retries_answered
        for name in mocks:
            assert answered[name] == counted_answered[name], f"{name}: upstream answered {answered[name]} requests, gateway counted {counted_answered[name]} answered attempts ({ {o: v for (p, o), v in counted.items() if p == name} })"
            assert unanswered[name] <= counted_transport[name], (
                f"{name}: the upstream read {unanswered[name]} requests it never answered, but only {counted_transport[name]} transport failures were counted: "
                "a request the upstream read was sent again without being counted (cf. test_reset_on_a_reused_connection_is_not_resent_uncounted)"
            )
        assert counted_transport["vllm"] == counted_transport["anthropic"] == 0, f"transport failures on upstreams that never failed that way: {counted_transport}"
    finally:
        for m in mocks.values():
            m.stop()
