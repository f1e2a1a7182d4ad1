"""The request log on disk (`admin.request_log_persist`) and per-key usage that
outlives the process: entries and stats survive a restart, the retention prunes
old lines, a corrupt line is skipped with a warning, the file is private and
holds neither a prompt nor any configured secret."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from harness import GW_KEY_A, Gateway
from helpers import http, metric_sum, parse_metrics
from mock_upstream import MockUpstream
from test_admin import HEADER_SECRET, PASSWORD, TOKEN, UPSTREAM_SECRET, admin_config, chat, create_key, get, password_hash, private_binary, upgraded_by_the_reload_endpoint  # noqa: F401
from test_redis_limits import RedisServer, wait_for

StartGateway = Callable[..., Gateway]
PROMPT = "the-prompt-text-that-must-never-be-stored"


def persisted(upstream: MockUpstream, hash: str | None = None, **admin: Any) -> dict:
    return admin_config(upstream, hash, request_log_persist=True, **admin)


def log_file(gw: Gateway) -> Path:
    return gw.config_path.parent / "aigate-requests.jsonl"


def lines(p: Path) -> list[dict]:
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def request_ids(gw: Gateway, query: str = "") -> list[str]:
    r = get(gw, "/admin/requests" + query)
    assert r.status_code == 200, r.text
    return [e["request_id"] for e in r.json()["requests"]]


def settled(gw: Gateway, n: int) -> list[str]:
    """The log's request ids once it holds `n` entries (an entry is added as
    the access line is written, just after the answer)."""
    wait_for(f"{n} entries in the log", lambda: len(request_ids(gw)) == n)
    return request_ids(gw)


def test_entries_and_stats_survive_a_restart_and_the_file_is_private_and_secret_free(start_gateway: StartGateway, upstream: MockUpstream, password_hash: str):  # noqa: F811
    gw = start_gateway(persisted(upstream, password_hash))
    key = create_key(gw, id="ci")["key"]
    for _ in range(3):
        chat(gw, GW_KEY_A, text=PROMPT)
    chat(gw, key, text=PROMPT)
    with pytest.raises(Exception):
        chat(gw, GW_KEY_A, model="fail-m", text=PROMPT)
    before = settled(gw, 5)
    wait_for("five lines in the file", lambda: log_file(gw).exists() and len(lines(log_file(gw))) == 5)
    stats_before = get(gw, "/admin/stats?window=1h").json()

    text = log_file(gw).read_text()
    assert log_file(gw).stat().st_mode & 0o777 == 0o600
    for secret in (TOKEN, PASSWORD, password_hash, UPSTREAM_SECRET, HEADER_SECRET, GW_KEY_A, key, PROMPT):
        assert secret not in text, f"a secret or the prompt is in the request log file: {secret[:6]}..."
    # The ring's fields, one JSON object a line.
    first = lines(log_file(gw))[0]
    assert {"request_id", "key", "model", "status", "duration_ms", "tokens_in", "cost_usd"} <= set(first)
    assert first["key"] == "team-a" and first["status"] == 200

    # A reload keeps the log (it is not part of the config snapshot).
    r = http().post(gw.admin_url + "/admin/reload", headers={"authorization": f"Bearer {TOKEN}"}, timeout=20)
    assert r.status_code == 200, r.text
    assert request_ids(gw) == before
    gw.restart()
    assert request_ids(gw) == before, "the log after a restart is not the log before it"
    assert request_ids(gw, "?key=ci") == [before[1]]
    assert request_ids(gw, "?status=5xx") == [before[0]]
    stats_after = get(gw, "/admin/stats?window=1h").json()
    assert stats_after["total"]["requests"] == stats_before["total"]["requests"] == 5
    assert stats_after["total"]["errors"] == 1
    assert "request log: 5 entries read back" in gw.log_text()
    # New entries go on after the old ones, in memory and in the file.
    chat(gw, GW_KEY_A)
    after = settled(gw, 6)
    assert after[1:] == before
    wait_for("the sixth line", lambda: len(lines(log_file(gw))) == 6)
    m = parse_metrics(http().get(gw.admin_url + "/metrics", timeout=5).text)
    assert any(n == "aigate_admin_request_log_dropped_total" for n, _, _ in m)
    assert metric_sum(m, "aigate_admin_request_log_dropped_total") == 0


def test_entries_survive_a_binary_upgrade(start_gateway: StartGateway, upstream: MockUpstream, tmp_path: Path):
    exe = private_binary(tmp_path)
    gw = start_gateway(persisted(upstream), binary=str(exe))
    chat(gw, GW_KEY_A)
    chat(gw, GW_KEY_A, model="claude-m")
    before = settled(gw, 2)
    wait_for("two lines", lambda: log_file(gw).exists() and len(lines(log_file(gw))) == 2)
    with upgraded_by_the_reload_endpoint(gw, exe):
        assert request_ids(gw) == before, "the new process did not read the log back"
        chat(gw, GW_KEY_A)
        wait_for("the new process appends", lambda: len(lines(log_file(gw))) == 3)


def test_retention_prunes_old_entries_at_start_and_while_running(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(persisted(upstream, request_log_retention="3s"))
    chat(gw, GW_KEY_A)
    chat(gw, GW_KEY_A)
    old = settled(gw, 2)
    wait_for("two lines", lambda: log_file(gw).exists() and len(lines(log_file(gw))) == 2)
    time.sleep(3.5)
    # Running: the next write notices the oldest line is past the retention.
    chat(gw, GW_KEY_A)
    new = settled(gw, 3)[0]
    wait_for("the old lines pruned from the file", lambda: [e["request_id"] for e in lines(log_file(gw))] == [new])
    # At start: nothing past the retention comes back.
    time.sleep(3.5)
    gw.restart()
    assert request_ids(gw) == [], "entries older than the retention came back"
    assert lines(log_file(gw)) == []
    assert not set(old) & set(request_ids(gw))


def test_a_corrupt_line_is_skipped_with_a_warning(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(persisted(upstream, request_log_file="logs/requests.jsonl"))
    path = gw.workdir / "logs" / "requests.jsonl"
    path.parent.mkdir(exist_ok=True)
    chat(gw, GW_KEY_A)
    wait_for("one line", lambda: path.exists() and len(lines(path)) == 1)
    gw.stop()
    good = path.read_text()
    # A torn write (a crash mid-line) and a line that is JSON but no entry.
    path.write_text(good + '{"seq": 7, "time_ms": 1, "request_\n' + '{"hello": 1}\n' + good.replace("team-a", "team-b"))
    since = gw.log_size()
    gw.start()
    assert "2 unreadable line(s)" in gw.log_text(since)
    entries = get(gw, "/admin/requests").json()["requests"]
    assert [e["key"] for e in entries] == ["team-b", "team-a"]
    assert len(lines(path)) == 2, "the start's rewrite keeps only readable entries"


def test_the_log_needs_persist_and_checks_its_settings(start_gateway: StartGateway, upstream: MockUpstream, tmp_path: Path, run_aigate: Callable[..., Any]):
    gw = start_gateway(admin_config(upstream))
    chat(gw, GW_KEY_A)
    gw.restart()
    assert request_ids(gw) == [], "without request_log_persist the log is memory only"
    assert not log_file(gw).exists()
    import yaml

    bad = admin_config(upstream, request_log_persist=True, request_log_retention="7w")
    bad["listen"] = "127.0.0.1:1"
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(bad))
    r = run_aigate("--test", "-c", str(cfg))
    assert r.returncode != 0
    assert "admin.request_log_retention" in r.stdout + r.stderr


def priced(upstream: MockUpstream) -> dict:
    cfg = admin_config(upstream)
    cfg["model_prices"] = {"gpt-up": {"input": 1000.0, "output": 2000.0}}
    return cfg


def test_key_usage_survives_a_restart(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(priced(upstream))
    key = create_key(gw, id="spender", budget_usd_daily=5)["key"]
    for _ in range(3):
        chat(gw, key)
    chat(gw, GW_KEY_A)

    def usage() -> dict:
        return {k["id"]: k for k in get(gw, "/admin/keys").json()["keys"]}

    wait_for("4 requests counted", lambda: [usage()[k]["usage"]["today"]["requests"] for k in ("spender", "team-a")] == [3, 1])
    before = usage()
    assert before["spender"]["usage"]["month"]["requests"] == 3
    spent = before["spender"]["usage"]["today"]["cost_usd"]
    assert spent > 0
    gw.restart()
    after = usage()
    for k in ("spender", "team-a"):
        assert after[k]["usage"] == before[k]["usage"], k
    assert after["spender"]["remaining_budget_usd"]["daily"] == pytest.approx(5 - spent)
    chat(gw, key)
    wait_for("the 4th request counted", lambda: usage()["spender"]["usage"]["today"]["requests"] == 4)
    text = (gw.config_path.parent / "aigate-usage.json").read_text()
    assert key not in text and (gw.config_path.parent / "aigate-usage.json").stat().st_mode & 0o777 == 0o600


def test_key_usage_is_shared_through_redis_and_survives_restarts(start_gateway: StartGateway, upstream: MockUpstream, tmp_path: Path):
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        cfg = priced(upstream)
        cfg["limits"] = {"backend": "redis", "url": redis.url, "timeout_ms": 1000}
        a, b = start_gateway(cfg, name="a"), start_gateway(cfg, name="b")
        key = create_key(a, id="fleet", budget_usd_monthly=10)["key"]
        chat(a, key)
        chat(a, key)
        wait_for("node b knows the key", lambda: any(k["id"] == "fleet" for k in get(b, "/admin/keys").json()["keys"]), timeout=5)
        chat(b, key)
        chat(b, GW_KEY_A)

        def usage(gw: Gateway, id: str) -> dict:
            r = get(gw, f"/admin/keys/{id}")
            assert r.status_code == 200, r.text
            return r.json()

        # Each node counts what it served; Redis adds them up within a second.
        wait_for("both nodes see 3 requests", lambda: all(usage(g, "fleet")["usage"]["month"]["requests"] == 3 for g in (a, b)), timeout=5)
        on_a = usage(a, "fleet")
        assert on_a == usage(b, "fleet")
        spent = on_a["usage"]["today"]["cost_usd"]
        assert spent > 0 and on_a["remaining_budget_usd"]["monthly"] == pytest.approx(10 - spent)
        assert usage(b, "team-a")["usage"]["today"]["requests"] == 1
        # Both restarted: the totals are in Redis, not in either process.
        a.restart()
        b.restart()
        assert usage(a, "fleet")["usage"] == on_a["usage"]
        assert usage(b, "team-a")["usage"]["today"]["requests"] == 1
        assert not (a.config_path.parent / "aigate-usage.json").exists(), "usage lives in Redis"
    finally:
        redis.kill()
