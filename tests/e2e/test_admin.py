"""Issue 16, part 1: the admin API on `admin_listen` (README "Admin console").

Real binary, mock upstream, official `openai` SDK. Shown here: the API is off (404)
without admin credentials and says how to turn it on; a missing or wrong token is
401; a dashboard session expires and logins are rate-limited; no configured secret
appears in any admin answer; a config key is read-only; a runtime key works with
the SDK right after its creation, after a SIGHUP reload and after a restart (file
store) and after a binary upgrade, and is refused (401) right after revocation; the request log filters; the
stats add up to the traffic sent; `POST /admin/reload` reports a broken config with
its YAML path; the event feed shows a completion; two gateways sharing Redis share
their runtime keys.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import openai
import pytest

from harness import FAST_TIMEOUTS, GW_KEY_A, Gateway, aigate_bin, provider, route, small_config
from helpers import http, metric_sum, parse_metrics
from mock_upstream import MockUpstream
from test_redis_limits import RedisServer, wait_for

StartGateway = Callable[..., Gateway]
TOKEN = "admin-token-0123456789abcdef"
PASSWORD = "correct horse battery staple"
# Secrets the config holds; none may appear in an admin answer.
UPSTREAM_SECRET = "sk-up-1"
HEADER_SECRET = "x-secret-header-value-42"


@pytest.fixture(scope="module")
def password_hash() -> str:
    """`aigate admin-password` (cost 10: made once for the module)."""
    r = subprocess.run([aigate_bin(), "admin-password"], input=PASSWORD + "\n", capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    h = r.stdout.strip()
    assert h.startswith("$2") and len(h) == 60, h
    return h


def admin_config(mock: MockUpstream, password_hash: str | None = None, **admin: Any) -> dict:
    t = FAST_TIMEOUTS
    providers = [
        provider("oa", "openai", mock.openai_url, timeouts=t, headers={"x-extra": HEADER_SECRET}),
        provider("an", "anthropic", mock.url, timeouts=t),
    ]
    models = [route("chat-m", ("oa", "gpt-up")), route("claude-m", ("an", "claude-up")), route("fail-m", ("oa", "fail-500"))]
    conf: dict[str, Any] = {"token": TOKEN, **admin}
    if password_hash:
        conf["users"] = [{"name": "ops", "password_hash": password_hash}]
    return small_config(providers, models, keys=[{"id": "team-a", "key": GW_KEY_A}], admin=conf, retry={"max_attempts": 1})


def auth() -> dict:
    return {"authorization": f"Bearer {TOKEN}"}


def get(gw: Gateway, path: str, **kw: Any) -> httpx.Response:
    return http().get(gw.admin_url + path, headers=kw.pop("headers", auth()), timeout=20, **kw)


def sdk(gw: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_url, api_key=key, max_retries=0, timeout=20)


def chat(gw: Gateway, key: str, model: str = "chat-m", text: str = "hi") -> Any:
    return sdk(gw, key).chat.completions.create(model=model, messages=[{"role": "user", "content": text}])


def create_key(gw: Gateway, **body: Any) -> dict:
    r = http().post(gw.admin_url + "/admin/keys", headers=auth(), json=body, timeout=20)
    assert r.status_code == 201, r.text
    return r.json()


# ---------------------------------------------------------------------------- off, and authentication


def test_off_without_admin_credentials_and_says_how(start_gateway: StartGateway, upstream: MockUpstream):
    cfg = admin_config(upstream)
    cfg.pop("admin")
    gw = start_gateway(cfg)
    r = get(gw, "/admin/config")
    assert r.status_code == 404, r.text
    assert "admin API off" in gw.log_text() and "admin.token" in gw.log_text()
    # Health and metrics are unchanged.
    assert http().get(gw.admin_url + "/health/live", timeout=5).status_code == 200
    assert http().get(gw.admin_url + "/metrics", timeout=5).status_code == 200


def test_token_required_and_compared(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(admin_config(upstream))
    for headers in ({}, {"authorization": "Bearer wrong-token-0123456789abcdef"}, {"authorization": TOKEN}, {"x-api-key": TOKEN}):
        r = get(gw, "/admin/keys", headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["error"]["message"].startswith("admin authentication required")
    assert get(gw, "/admin/keys").status_code == 200
    # The admin API is not on the AI listener.
    assert http().get(gw.url + "/admin/keys", headers=auth(), timeout=5).status_code in (401, 404)
    assert get(gw, "/admin/nope").status_code == 404
    assert http().put(gw.admin_url + "/admin/keys", headers=auth(), timeout=5).status_code == 405


def test_session_login_expiry_csrf_and_rate_limit(start_gateway: StartGateway, upstream: MockUpstream, password_hash: str):
    gw = start_gateway(admin_config(upstream, password_hash, session_seconds=2))
    c = httpx.Client(base_url=gw.admin_url, timeout=20)
    r = c.post("/admin/login", json={"name": "ops", "password": PASSWORD})
    assert r.status_code == 200, r.text
    sc = r.headers["set-cookie"]
    for part in ("aigate_session=", "HttpOnly", "SameSite=Strict", "Path=/"):
        assert part in sc, sc
    assert c.get("/admin/session").json() == {"admin": "ops"}
    # A write by cookie needs JSON or the custom header (CSRF).
    r = c.post("/admin/keys", content=b"id=x", headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 403, r.text
    r = c.post("/admin/keys", json={"id": "by-session"})
    assert r.status_code == 201, r.text
    assert "admin=ops action=key_create target=by-session status=201" in gw.log_text()
    time.sleep(2.2)
    assert c.get("/admin/session").status_code == 401, "the session outlived session_seconds"
    # A forged cookie is refused.
    assert httpx.get(gw.admin_url + "/admin/session", cookies={"aigate_session": "b3BzfDk5OTk5OTk5OTk5OTk5.AAAA"}, timeout=5).status_code == 401
    # 5 attempts a minute per address (the successful one counted): the 6th is 429.
    codes = [c.post("/admin/login", json={"name": "ops", "password": "wrong"}).status_code for _ in range(5)]
    assert codes == [401, 401, 401, 401, 429], codes
    r = c.post("/admin/login", json={"name": "ops", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1, r.text
    samples = parse_metrics(http().get(gw.admin_url + "/metrics", timeout=5).text)
    assert metric_sum(samples, "aigate_admin_writes_total", action="key_create") == 1


# ---------------------------------------------------------------------------- redaction


def test_no_configured_secret_in_any_admin_answer(start_gateway: StartGateway, upstream: MockUpstream, password_hash: str):
    gw = start_gateway(admin_config(upstream, password_hash))
    chat(gw, GW_KEY_A)
    made = create_key(gw, id="fresh")
    secrets = [TOKEN, PASSWORD, password_hash, GW_KEY_A, UPSTREAM_SECRET, HEADER_SECRET, made["key"]]
    bodies = {}
    for path in ("/admin/config", "/admin/models", "/admin/providers", "/admin/keys", "/admin/keys/fresh", "/admin/keys/team-a", "/admin/requests", "/admin/stats?window=1h", "/admin/session"):
        r = get(gw, path)
        assert r.status_code == 200, (path, r.text)
        bodies[path] = r.text
    r = http().patch(gw.admin_url + "/admin/keys/fresh", headers=auth(), json={"rpm": 100}, timeout=5)
    assert r.status_code == 200
    bodies["PATCH"] = r.text
    r = http().post(gw.admin_url + "/admin/reload", headers=auth(), timeout=20)
    bodies["reload"] = r.text
    for path, body in bodies.items():
        for s in secrets:
            assert s not in body, f"{s!r} in the answer to {path}"
    cfg = json.loads(bodies["/admin/config"])
    assert cfg["source"].endswith(".yaml") and cfg["loaded_at"] and cfg["reload_count"] == 0
    assert cfg["config"]["keys"][0] == {"id": "team-a", "key": "[redacted]"}
    assert cfg["config"]["providers"][0]["credentials"][0]["key"] == "[redacted]"
    assert cfg["config"]["admin"]["token"] == "[redacted]"
    # Providers: credentials by index, state.
    p = json.loads(bodies["/admin/providers"])["providers"][0]
    assert p["name"] == "oa" and p["usable"] is True and p["credentials"] == [{"index": 0, "resting": False}]
    m = json.loads(bodies["/admin/models"])["models"][0]
    assert m["name"] == "chat-m" and m["targets"][0]["provider"] == "oa" and m["targets"][0]["model"] == "gpt-up"


# ---------------------------------------------------------------------------- runtime keys


def test_runtime_key_lifecycle_reload_and_restart(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(admin_config(upstream))
    made = create_key(gw, id="ci", models=["chat-m"], rpm=50, budget_usd_daily=5)
    key = made["key"]
    assert key.startswith("sk-aigate-") and made["id"] == "ci" and made["read_only"] is False
    # Usable at once, with its allow-list.
    assert chat(gw, key).choices[0].message.content == "echo: hi"
    with pytest.raises(openai.PermissionDeniedError):
        chat(gw, key, model="claude-m")
    # Stored as its digest only, next to the config.
    stored = (gw.config_path.parent / "aigate-keys.json").read_text()
    assert key not in stored and '"id": "ci"' in stored
    listed = {k["id"]: k for k in get(gw, "/admin/keys").json()["keys"]}
    assert listed["team-a"]["read_only"] is True and listed["ci"]["rpm"] == 50
    assert listed["ci"]["usage"]["today"]["requests"] == 2
    assert "key" not in listed["ci"]
    # A config key is read-only.
    for method in ("PATCH", "DELETE"):
        r = http().request(method, gw.admin_url + "/admin/keys/team-a", headers=auth(), json={"rpm": 1}, timeout=5)
        assert r.status_code == 403, r.text
        assert "config file" in r.json()["error"]["message"]
    # Ids are unique across config and runtime keys.
    r = http().post(gw.admin_url + "/admin/keys", headers=auth(), json={"id": "team-a"}, timeout=5)
    assert r.status_code == 409, r.text
    r = http().post(gw.admin_url + "/admin/keys", headers=auth(), json={"rpm": 0}, timeout=5)
    assert r.status_code == 400 and "rpm" in r.text
    # Disabled, then enabled again.
    r = http().patch(gw.admin_url + "/admin/keys/ci", headers=auth(), json={"disabled": True}, timeout=5)
    assert r.status_code == 200 and r.json()["disabled"] is True
    with pytest.raises(openai.AuthenticationError):
        chat(gw, key)
    http().patch(gw.admin_url + "/admin/keys/ci", headers=auth(), json={"disabled": False}, timeout=5)
    assert chat(gw, key).choices
    # SIGHUP reload: still valid.
    since = gw.log_size()
    assert gw.proc is not None
    os.kill(gw.proc.pid, signal.SIGHUP)
    wait_for("the reload", lambda: "config reloaded" in gw.log_text(since))
    assert chat(gw, key).choices
    # Restart (file store): still valid, the config key too.
    gw.restart()
    assert chat(gw, key).choices
    assert chat(gw, GW_KEY_A).choices
    # Revoked: refused at once.
    r = http().delete(gw.admin_url + "/admin/keys/ci", headers=auth(), timeout=5)
    assert r.status_code == 200, r.text
    with pytest.raises(openai.AuthenticationError):
        chat(gw, key)
    assert http().delete(gw.admin_url + "/admin/keys/ci", headers=auth(), timeout=5).status_code == 404
    assert "admin=token action=key_delete target=ci status=200" in gw.log_text()


def private_binary(tmp_path: Path) -> Path:
    """A copy of aigate that a test may replace: a binary upgrade needs a new
    executable (new inode) at the path the process was started from."""
    exe = tmp_path / "bin" / "aigate"
    exe.parent.mkdir()
    shutil.copy2(aigate_bin(), exe)
    return exe


@contextlib.contextmanager
def upgraded_by_the_reload_endpoint(gw: Gateway, exe: Path) -> Iterator[None]:
    """Replace `exe` with a new executable and ask the reload endpoint to hand
    over to it. Inside, the new process serves and the old one has exited;
    after, the new process is stopped."""
    old = gw.proc
    assert old is not None
    shutil.copy2(aigate_bin(), exe.parent / "aigate.new")
    os.replace(exe.parent / "aigate.new", exe)
    r = http().post(gw.admin_url + "/admin/reload", headers=auth(), timeout=20)
    assert r.status_code == 200 and "a new process is taking over" in r.json()["message"], r.text
    pid_file = gw.workdir / f"{gw.name}.pid"
    wait_for("the new process's pid", lambda: pid_file.read_text().strip() not in ("", str(old.pid)), timeout=15)
    new_pid = int(pid_file.read_text())
    try:
        wait_for("the old process gone", lambda: old.poll() is not None, timeout=15)
        yield
    finally:
        os.kill(new_pid, signal.SIGTERM)
        wait_for("the new process stopped", lambda: not Path(f"/proc/{new_pid}").exists() or "zombie" in Path(f"/proc/{new_pid}/status").read_text().lower(), timeout=10)


def test_runtime_key_survives_a_binary_upgrade_started_by_the_reload_endpoint(start_gateway: StartGateway, upstream: MockUpstream, tmp_path: Path):
    exe = private_binary(tmp_path)
    gw = start_gateway(admin_config(upstream), binary=str(exe))
    key = create_key(gw, id="kept")["key"]
    assert chat(gw, key).choices
    with upgraded_by_the_reload_endpoint(gw, exe):
        assert chat(gw, key).choices, "the runtime key did not survive the upgrade"
        assert any(k["id"] == "kept" for k in get(gw, "/admin/keys").json()["keys"])


def test_runtime_keys_turn_authentication_on(start_gateway: StartGateway, upstream: MockUpstream):
    cfg = admin_config(upstream)
    cfg["keys"] = []
    gw = start_gateway(cfg)
    assert chat(gw, "anything").choices, "no keys: open (loopback)"
    key = create_key(gw)["key"]
    with pytest.raises(openai.AuthenticationError):
        chat(gw, "anything")
    assert chat(gw, key).choices


# ---------------------------------------------------------------------------- request log, stats, events, reload


def test_request_log_filters_and_stats_match_the_traffic(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(admin_config(upstream))
    other = create_key(gw, id="other")["key"]
    tokens = {"team-a": 0, "other": 0}
    for _ in range(3):
        tokens["team-a"] += chat(gw, GW_KEY_A).usage.total_tokens
    for _ in range(2):
        tokens["other"] += chat(gw, other, model="claude-m").usage.total_tokens
    with pytest.raises(openai.InternalServerError):
        chat(gw, GW_KEY_A, model="fail-m")

    def ids(q: str) -> list[dict]:
        r = get(gw, "/admin/requests" + q)
        assert r.status_code == 200, r.text
        return r.json()["requests"]

    assert len(ids("")) == 6
    assert [e["key"] for e in ids("?key=other")] == ["other", "other"]
    assert {e["provider"] for e in ids("?model=claude-m")} == {"an"}
    assert len(ids("?model=claude-up")) == 2, "the upstream model filters too"
    failed = ids("?status=5xx")
    assert len(failed) == 1 and failed[0]["model"] == "fail-m" and failed[0]["status"] >= 500
    assert len(ids("?provider=oa&status=200")) == 3
    page = get(gw, "/admin/requests?limit=4").json()
    assert len(page["requests"]) == 4 and page["matched"] == 6
    rest = ids(f"?before={page['next_before']}")
    assert len(rest) == 2 and max(e["seq"] for e in rest) < min(e["seq"] for e in page["requests"])
    now = time.time()
    assert ids(f"?since={now + 60}") == [] and len(ids(f"?until={now + 60}")) == 6
    assert get(gw, "/admin/requests?status=oops").status_code == 400
    entry = ids("?key=team-a&status=200")[0]
    for field in ("request_id", "time_ms", "ingress", "upstream_model", "attempts", "duration_ms", "tokens_in", "tokens_out", "cost_usd", "error"):
        assert field in entry, field
    assert "messages" not in json.dumps(entry) and GW_KEY_A not in json.dumps(entry)

    s = get(gw, "/admin/stats?window=1h").json()
    assert s["total"]["requests"] == 6 and s["total"]["errors"] == 1
    assert s["keys"]["team-a"]["requests"] == 4 and s["keys"]["team-a"]["errors"] == 1
    assert s["keys"]["other"]["requests"] == 2
    for k, want in tokens.items():
        got = s["keys"][k]["tokens_in"] + s["keys"][k]["tokens_out"]
        assert got == want, (k, got, want)
    assert s["providers"]["an"]["requests"] == 2 and s["models"]["chat-m"]["requests"] == 3
    assert 0 < s["total"]["p50_ms"] <= s["total"]["p95_ms"]
    assert get(gw, "/admin/stats?window=soon").status_code == 400
    # Per-key series (the dashboard's usage chart): the buckets add up to the totals.
    s = get(gw, "/admin/stats?window=1h&buckets=12").json()
    series = s["series"]
    assert series["buckets"] == 12 and series["bucket_ms"] == 300_000
    for k in ("team-a", "other"):
        assert sum(series["keys"][k]["requests"]) == s["keys"][k]["requests"], k
        assert sum(series["keys"][k]["tokens"]) == tokens[k], k
        assert len(series["keys"][k]["cost_usd"]) == 12
    assert sum(series["keys"]["team-a"]["requests"][-1:]) == 4, "all just now: the last bucket"
    assert get(gw, "/admin/stats?buckets=0").status_code == 400


def test_reload_endpoint_reports_problems_with_their_paths(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(admin_config(upstream))
    r = http().post(gw.admin_url + "/admin/reload", headers=auth(), timeout=20)
    assert r.status_code == 200 and r.json() == {"ok": True, "message": "config reloaded"}, r.text
    good = gw.config_path.read_text()
    assert "- id: team-a\n" in good
    gw.config_path.write_text(good.replace("- id: team-a\n", "- id: team-a\n  rpm: 0\n", 1))
    r = http().post(gw.admin_url + "/admin/reload", headers=auth(), timeout=20)
    assert r.status_code == 422, r.text
    problems = r.json()["problems"]
    assert any(p.startswith("keys[0].rpm:") for p in problems), problems
    assert get(gw, "/admin/config").json()["reload_count"] == 1
    assert chat(gw, GW_KEY_A).choices, "the running config still serves"


def test_events_feed_shows_a_completion_and_a_circuit_opening(start_gateway: StartGateway, upstream: MockUpstream):
    cfg = admin_config(upstream)
    cfg["circuit_breaker"] = {"failure_threshold": 1, "open_seconds": 30}
    gw = start_gateway(cfg)
    seen: list[str] = []
    ready = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", gw.admin_url + "/admin/events", headers=auth(), timeout=20) as r:
            assert r.headers["content-type"] == "text/event-stream"
            counted = 0
            for line in r.iter_lines():
                ready.set()
                seen.append(line)
                if line.startswith("data:") and '"type":"totals"' in line:
                    counted += json.loads(line[5:])["data"]["requests"]
                # The circuit event, and the per-second totals counting both requests.
                if any('"type":"circuit"' in x for x in seen) and counted >= 2:
                    return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert ready.wait(10), "no first line from the feed"
    resp = sdk(gw, GW_KEY_A).chat.completions.with_raw_response.create(model="chat-m", messages=[{"role": "user", "content": "hi"}])
    rid = resp.headers["x-request-id"]
    with pytest.raises(openai.InternalServerError):
        chat(gw, GW_KEY_A, model="fail-m")
    t.join(10)
    assert not t.is_alive(), f"no circuit event; saw {seen}"
    events = [json.loads(line[5:]) for line in seen if line.startswith("data:")]
    done = [e["data"] for e in events if e["type"] == "request"]
    assert done[0]["request_id"] == rid and done[0]["key"] == "team-a" and done[0]["status"] == 200, done
    assert {"provider": "oa", "open": True} in [e["data"] for e in events if e["type"] == "circuit"], events
    totals = [e["data"] for e in events if e["type"] == "totals"]
    assert sum(t["requests"] for t in totals) == 2 and sum(t["errors"] for t in totals) == 1, totals
    assert sum(t["tokens"] for t in totals) == done[0]["tokens_in"] + done[0]["tokens_out"] > 0, (totals, done)


def test_event_feed_ends_when_its_session_expires(start_gateway: StartGateway, upstream: MockUpstream, password_hash: str):
    gw = start_gateway(admin_config(upstream, password_hash, session_seconds=3))
    c = httpx.Client(base_url=gw.admin_url, timeout=20)
    assert c.post("/admin/login", json={"name": "ops", "password": PASSWORD}).status_code == 200
    lines: list[str] = []
    t0 = time.monotonic()
    with c.stream("GET", "/admin/events") as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            lines.append(line)
            # Traffic keeps the feed busy: the session is checked between events too.
            if line.startswith("data:") and '"type":"request"' in line and time.monotonic() - t0 < 2:
                chat(gw, GW_KEY_A)
            if len(lines) == 1:
                chat(gw, GW_KEY_A)
            assert time.monotonic() - t0 < 10, f"the feed outlived its session: {lines}"
    took = time.monotonic() - t0
    assert 2.5 <= took < 6, took
    assert "event: expired" in lines, lines
    assert any('"type":"request"' in x for x in lines), lines
    # The expired session opens no new feed; the token's feed is not bound to it.
    assert c.get("/admin/events").status_code == 401


# ---------------------------------------------------------------------------- target quota


def test_models_show_each_targets_quota_left(start_gateway: StartGateway, upstream: MockUpstream, tmp_path: Path):
    """After N requests through a limited target, /admin/models shows N fewer left (memory and Redis)."""
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        for backend in ("memory", "redis"):
            cfg = admin_config(upstream)
            cfg["models"].append({"name": "quota-m", "targets": [{"provider": "oa", "model": "gpt-q", "rpm": 10, "rpd": 50, "tpm": 100000}]})
            if backend == "redis":
                cfg["limits"] = {"backend": "redis", "url": redis.url, "timeout_ms": 1000, "key_prefix": f"q{time.time_ns()}:"}
            gw = start_gateway(cfg, name=backend)

            def quota() -> dict:
                ms = {m["name"]: m for m in get(gw, "/admin/models").json()["models"]}
                assert ms["chat-m"]["targets"][0]["quota"] is None, "no limits: no quota"
                return ms["quota-m"]["targets"][0]["quota"]

            q = quota()
            assert q["label"] == "oa/gpt-q" and "rph" not in q, q
            assert q["rpm"] == {"limit": 10, "left": 10} and q["rpd"] == {"limit": 50, "left": 50}, (backend, q)
            assert quota() == q, "reading the quota takes none of it"
            used = 0
            for _ in range(3):
                used += chat(gw, GW_KEY_A, model="quota-m").usage.total_tokens
            # The tokens are settled in Pingora's logging phase, just after the
            # answer went out: the last request's may still be in flight.
            assert used > 0
            wait_for("the last request's tokens settled", lambda: quota()["tpm"]["left"] == 100000 - used, timeout=5)
            q = quota()
            assert q["rpm"]["left"] == 7 and q["rpd"]["left"] == 47, (backend, q)
            assert q["tpm"]["left"] == 100000 - used, (backend, q, used)
            gw.stop()
    finally:
        redis.kill()


# ---------------------------------------------------------------------------- two nodes, one Redis


def test_runtime_keys_are_shared_through_redis(start_gateway: StartGateway, upstream: MockUpstream, tmp_path: Path):
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        cfg = admin_config(upstream)
        cfg["limits"] = {"backend": "redis", "url": redis.url, "timeout_ms": 1000}
        a, b = start_gateway(cfg, name="a"), start_gateway(cfg, name="b")
        made = create_key(a, id="fleet", rpm=3)
        key = made["key"]
        assert chat(a, key).choices
        wait_for("node b knows the key", lambda: any(k["id"] == "fleet" for k in get(b, "/admin/keys").json()["keys"]), timeout=5)
        assert chat(b, key).choices
        # One limiter: rpm 3 over both nodes.
        assert chat(a, key).choices
        with pytest.raises(openai.RateLimitError):
            chat(b, key)
        # Revoked on b: a refuses it within the sync interval.
        assert http().delete(b.admin_url + "/admin/keys/fleet", headers=auth(), timeout=5).status_code == 200

        def refused() -> bool:
            try:
                chat(a, key)
            except openai.RateLimitError:
                pass  # still known here (its rpm spent): not synced yet
            except openai.AuthenticationError:
                return True
            return False

        wait_for("node a refuses the revoked key", refused, timeout=5)
        assert not (a.config_path.parent / "aigate-keys.json").exists(), "keys live in Redis"
    finally:
        redis.kill()
