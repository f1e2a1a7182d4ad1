"""Issue 17, safe defaults and operations: no keys on a non-loopback listener is
refused (`allow_unauthenticated: true` overrides), the embedded default's
AIGATE_KEY, the client address in the access line (trusted proxies), `aigate
stop|status|reload`, a drain as long as the work in flight (and a second signal
cutting it short), `/health/live` and `process_*` metrics."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import yaml

from harness import GW_KEY_A, Gateway, aigate_bin, free_port, provider, route, small_config
from helpers import key_headers, metric_sum, parse_metrics, post
from mock_upstream import MockUpstream

StartGateway = Callable[..., Gateway]
PROVIDER_ENV = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "AIGATE_KEY", "AIGATE_LISTEN", "AIGATE_ADMIN_LISTEN")


def clean_env(**extra: str) -> dict:
    """The process environment without provider keys (the embedded default must never
    reach a real provider) and without aigate's own variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_ENV}
    env.update(extra)
    return env


def run(*args: str, env: dict | None = None, timeout: float = 15.0, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([aigate_bin(), *args], capture_output=True, text=True, timeout=timeout, env=env or clean_env(), cwd=cwd, stdin=subprocess.DEVNULL)


def oa_config(mock: MockUpstream, models: list[dict] | None = None, **top: Any) -> dict:
    """`m` answers at once, `m-long` streams 12 events 300 ms apart."""
    t = {"connect_ms": 500, "first_byte_ms": 5000, "idle_ms": 5000, "total_ms": 20000}
    models = models or [route("m", ("oa", "ops")), route("m-long", ("oa", "ops-pieces-12-slow-300"))]
    return small_config([provider("oa", "openai", mock.openai_url, timeouts=t)], models, **top)


def exposed_yaml(mock: MockUpstream, tmp: Path, extra: str = "") -> str:
    """A config listening on every interface (0.0.0.0) with no gateway keys; `{port}`
    filled by the harness. Its only provider is the loopback mock."""
    return (
        'listen: "0.0.0.0:{port}"\n'
        f'pid_file: "{tmp}/exposed.pid"\n'
        f'upgrade_sock: "{tmp}/exposed.sock"\n'
        "grace_period_seconds: 0\n"
        f"{extra}"
        "providers:\n"
        f'  - {{name: oa, kind: openai, base_url: "{mock.openai_url}", credentials: [{{key: sk-up-1}}]}}\n'
        "models:\n"
        "  - {name: m, targets: [{provider: oa, model: ops}]}\n"
    )


# ----------------------------------------------------------------------------- safe defaults


def test_public_listen_without_keys_is_refused(upstream: MockUpstream, tmp_path: Path):
    cfg = tmp_path / "exposed.yaml"
    cfg.write_text(exposed_yaml(upstream, tmp_path).replace("{port}", str(free_port())))
    for args in (["-c", str(cfg)], ["--test", "-c", str(cfg)]):
        r = run(*args)
        out = r.stdout + r.stderr
        assert r.returncode == 1, f"{args}: exit {r.returncode}, a gateway without keys on 0.0.0.0 must not start:\n{out}"
        line = next((l for l in out.splitlines() if "config error: keys" in l), None)
        assert line is not None, out
        for fix in ("0.0.0.0", "keys:", "AIGATE_KEY", "allow_unauthenticated: true"):
            assert fix in line, f"the refusal names the fix '{fix}': {line}"
    assert upstream.requests == []


def test_allow_unauthenticated_starts_open(start_gateway: StartGateway, upstream: MockUpstream, tmp_path: Path):
    gw = start_gateway(exposed_yaml(upstream, tmp_path, "allow_unauthenticated: true\n"))
    r = post(gw, "openai-chat", "m", key=None, text="open")
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "echo: open"
    assert "allow_unauthenticated: true" in gw.log_text(), "the open gateway is still warned about"


def test_embedded_default_takes_its_key_from_aigate_key(tmp_path: Path):
    port, admin = free_port(), free_port()
    listen = {"AIGATE_LISTEN": f"127.0.0.1:{port}", "AIGATE_ADMIN_LISTEN": f"127.0.0.1:{admin}"}
    # Unset: open but local (valid, warned).
    r = run("--test", env=clean_env(**listen))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "left out" in r.stderr and "open" in r.stderr, r.stderr
    # Unset and public: refused, naming AIGATE_KEY.
    r = run("--test", env=clean_env(AIGATE_LISTEN=f"0.0.0.0:{port}"))
    assert r.returncode == 1 and "AIGATE_KEY" in r.stderr, r.stdout + r.stderr
    # Set and public: valid.
    r = run("--test", env=clean_env(AIGATE_LISTEN=f"0.0.0.0:{port}", AIGATE_KEY="sk-gw-default"))
    assert r.returncode == 0, r.stdout + r.stderr
    # Set: the running gateway wants that key (no provider key in the environment:
    # every provider is disabled, so nothing leaves this machine).
    env = clean_env(AIGATE_KEY="sk-gw-default", **listen)
    log = open(tmp_path / "default.log", "wb")
    p = subprocess.Popen([aigate_bin()], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=tmp_path)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert p.poll() is None, (tmp_path / "default.log").read_text()
            try:
                if httpx.get(url + "/health/live", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
        no_key = httpx.post(url + "/v1/chat/completions", json=body, timeout=5)
        assert no_key.status_code == 401, no_key.text
        wrong = httpx.post(url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer nope"}, timeout=5)
        assert wrong.status_code == 401, wrong.text
        models = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer sk-gw-default"}, timeout=5)
        assert models.status_code == 200, models.text
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(10)
        log.close()


# ----------------------------------------------------------------------------- client address


def _access_lines(gw: Gateway, since: int) -> list[str]:
    return [l for l in gw.log_text(since).splitlines() if " access]" in l or l.startswith("{")]


def _absolute_form_chat(gw: Gateway, text: str, xff: str) -> None:
    """One request in absolute form (formerly the proxy path beside the front door's
    plain request lines; now one path, still a distinct request-line form)."""
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": text}]}).encode()
    head = (
        f"POST http://gw/v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {GW_KEY_A}\r\n"
        f"X-Forwarded-For: {xff}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.sendall(head.encode() + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data[:200]


def _client_of(lines: list[str], text_log: bool) -> list[str]:
    if text_log:
        return [m.group(1) for l in lines if (m := re.search(r" client=(\S+)", l))]
    return [json.loads(l[l.index("{"):])["client"] for l in lines if '"request_id"' in l]


def test_access_line_client_without_trusted_proxies(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(oa_config(upstream))
    mark = gw.log_size()
    h = {**key_headers("openai-chat"), "X-Forwarded-For": "203.0.113.9"}
    r = httpx.post(gw.openai_url + "/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "a"}]}, headers=h, timeout=10)
    assert r.status_code == 200, r.text
    _absolute_form_chat(gw, "b", "203.0.113.9")
    time.sleep(0.2)
    clients = _client_of(_access_lines(gw, mark), True)
    assert clients == ["127.0.0.1", "127.0.0.1"], f"an untrusted peer's X-Forwarded-For is not the client: {clients}"


def test_access_line_client_from_trusted_proxy(start_gateway: StartGateway, upstream: MockUpstream):
    for log_format in ("text", "json"):
        gw = start_gateway(oa_config(upstream, trusted_proxies=["127.0.0.0/8"], log_format=log_format))
        mark = gw.log_size()
        # The left entry was written by the client itself: the rightmost untrusted hop counts.
        h = {**key_headers("openai-chat"), "X-Forwarded-For": "6.6.6.6, 203.0.113.9, 127.0.0.5"}
        r = httpx.post(gw.openai_url + "/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "a"}]}, headers=h, timeout=10)
        assert r.status_code == 200, r.text
        _absolute_form_chat(gw, "b", "198.51.100.4")
        fwd = {**key_headers("openai-chat"), "Forwarded": 'for="[2001:db8::7]:4711";proto=https'}
        r = httpx.post(gw.openai_url + "/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "c"}]}, headers=fwd, timeout=10)
        assert r.status_code == 200, r.text
        time.sleep(0.2)
        clients = _client_of(_access_lines(gw, mark), log_format == "text")
        assert clients == ["203.0.113.9", "198.51.100.4", "2001:db8::7"], f"{log_format}: {clients}"
        gw.stop()


def test_trusted_proxies_must_be_addresses(tmp_path: Path, upstream: MockUpstream):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(oa_config(upstream, trusted_proxies=["10.0.0.0/33", "proxy.local"])))
    r = run("--test", "-c", str(cfg))
    assert r.returncode == 1
    assert "trusted_proxies[0]" in r.stderr and "trusted_proxies[1]" in r.stderr, r.stderr


# ----------------------------------------------------------------------------- stop / status / reload


def test_status_reload_and_stop_commands(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(oa_config(upstream))
    assert gw.proc is not None
    pid, cfg = gw.proc.pid, str(gw.config_path)
    time.sleep(1.1)
    r = run("-c", cfg, "status")
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"running: pid (\d+), up (\S+)", r.stdout)
    assert m and int(m.group(1)) == pid, r.stdout
    assert m.group(2) != "unknown" and m.group(2).endswith("s"), r.stdout

    # A valid edit: reloaded, and the new route serves.
    gw.config = oa_config(upstream, models=[route("m", ("oa", "after-reload"))])
    gw.write_config()
    r = run("-c", cfg, "reload")
    assert r.returncode == 0 and "config reloaded" in r.stdout, r.stdout + r.stderr
    assert post(gw, "openai-chat", "m").status_code == 200
    assert upstream.last().json()["model"] == "after-reload"

    # An invalid edit: reported as rejected, with the file's problem; the old config serves.
    gw.config_path.write_text(gw.config_path.read_text() + "colour: blue\n")
    r = run("-c", cfg, "reload")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "rejected" in r.stderr and "colour" in r.stderr, r.stderr
    assert post(gw, "openai-chat", "m").status_code == 200
    assert upstream.last().json()["model"] == "after-reload"

    t0 = time.monotonic()
    r = run("-c", cfg, "stop")
    assert r.returncode == 0 and "stopped" in r.stdout, r.stdout + r.stderr
    assert gw.proc.poll() is not None, "stop returns once the process is gone"
    assert time.monotonic() - t0 < 5
    r = run("-c", cfg, "status")
    assert r.returncode == 3 and "not running" in r.stdout, r.stdout + r.stderr
    r = run("-c", cfg, "stop")
    assert r.returncode == 3, r.stdout + r.stderr


# ----------------------------------------------------------------------------- drains


def _long_stream(gw: Gateway) -> tuple[threading.Thread, dict]:
    out: dict[str, Any] = {}
    started = threading.Event()

    def go() -> None:
        body = {"model": "m-long", "stream": True, "messages": [{"role": "user", "content": " ".join(f"w{i}" for i in range(12))}]}
        raw = b""
        try:
            with httpx.stream("POST", gw.openai_url + "/chat/completions", json=body, headers=key_headers("openai-chat"), timeout=30) as r:
                for b in r.iter_bytes():
                    raw += b
                    started.set()
        except httpx.HTTPError as e:
            out["error"] = type(e).__name__
        out["raw"], out["end"] = raw.decode("utf-8", "replace"), time.monotonic()
        started.set()

    t = threading.Thread(target=go, daemon=True)
    t.start()
    assert started.wait(10), "the stream did not start"
    return t, out


def _wait_exit(p: subprocess.Popen, limit: float) -> float:
    t0 = time.monotonic()
    p.wait(limit)
    return time.monotonic() - t0


def test_sigterm_with_nothing_in_flight_exits_at_once(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(oa_config(upstream, grace_period_seconds=30))
    p = gw.proc
    assert p is not None
    # An idle keep-alive connection is not work in flight.
    with httpx.Client(timeout=10) as c:
        assert c.post(gw.openai_url + "/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}]}, headers=key_headers("openai-chat")).status_code == 200
        p.send_signal(signal.SIGTERM)
        took = _wait_exit(p, 10)
    assert took < 1.5, f"SIGTERM with nothing in flight took {took:.1f}s (grace period 30 s)"
    assert p.returncode == 0
    assert not Path(gw.config_path.parent / f"{gw.name}.pid").exists(), "the pid file is removed at exit"


def test_sigterm_waits_for_the_stream_then_exits(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(oa_config(upstream, grace_period_seconds=30))
    p = gw.proc
    assert p is not None
    t, out = _long_stream(gw)
    p.send_signal(signal.SIGTERM)
    t.join(20)
    assert "error" not in out, out
    assert out["raw"].rstrip().endswith("data: [DONE]"), "the stream in flight completes"
    p.wait(10)
    after = time.monotonic() - out["end"]
    assert after < 1.5, f"exit {after:.1f}s after the last stream ended (grace period 30 s)"
    assert p.returncode == 0


def test_second_sigint_during_the_drain_exits_at_once(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(oa_config(upstream, grace_period_seconds=30))
    p = gw.proc
    assert p is not None
    t, out = _long_stream(gw)
    p.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert p.poll() is None, "still draining the stream"
    p.send_signal(signal.SIGINT)
    took = _wait_exit(p, 10)
    t.join(10)
    assert took < 1.0, f"the second signal took {took:.1f}s"
    assert "[DONE]" not in out.get("raw", ""), "the stream was cut"


# ----------------------------------------------------------------------------- health and process metrics


def test_health_live_reports_uptime_and_memory(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(oa_config(upstream))
    first = httpx.get(gw.url + "/health/live", timeout=5).json()
    assert first["status"] == "ok"
    assert isinstance(first["uptime_seconds"], int) and 0 <= first["uptime_seconds"] < 60
    assert isinstance(first["resident_memory_bytes"], int) and first["resident_memory_bytes"] > 1 << 20
    time.sleep(1.1)
    later = httpx.get(gw.admin_url + "/health/live", timeout=5).json()
    assert later["uptime_seconds"] > first["uptime_seconds"], (first, later)


def test_process_metrics_on_metrics(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(oa_config(upstream))
    samples = parse_metrics(httpx.get(gw.admin_url + "/metrics", timeout=5).text)
    rss = metric_sum(samples, "process_resident_memory_bytes")
    assert rss > 1 << 20, rss
    assert metric_sum(samples, "process_start_time_seconds") > 1.6e9
    assert metric_sum(samples, "process_open_fds") > 0
