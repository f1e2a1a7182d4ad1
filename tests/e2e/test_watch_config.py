"""`watch_config: true`: a changed config file is reloaded without a signal (the same
path as SIGHUP); an invalid edit is rejected once and counted while the old config
keeps serving; an editor's write-then-rename reloads once, and a file replaced by
rename keeps being watched."""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import httpx

from harness import FAST_TIMEOUTS, Gateway, provider, route, small_config
from helpers import metric_sum, parse_metrics, post
from mock_upstream import MockUpstream

StartGateway = Callable[..., Gateway]


def watched_config(mock: MockUpstream, upstream_model: str, **top: Any) -> dict:
    top.setdefault("watch_config", True)
    return small_config([provider("oa", "openai", mock.openai_url, timeouts=FAST_TIMEOUTS)], [route("w", ("oa", upstream_model))], **top)


def served_by(gw: Gateway, mock: MockUpstream) -> str:
    r = post(gw, "openai-chat", "w", text="which")
    assert r.status_code == 200, r.text
    return mock.last().model or ""


def reloads(gw: Gateway, result: str) -> float:
    return metric_sum(parse_metrics(httpx.get(gw.admin_url + "/metrics", timeout=5).text), "aigate_config_reloads_total", result=result)


def wait_for(cond: Callable[[], Any], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def text_for(gw: Gateway, cfg: dict) -> str:
    """The YAML the harness writes for `cfg` (same ports, pid file, socket)."""
    gw.config = cfg
    return gw.config_text()


# A change is read once it has held still for 250 ms after a 1 s poll: allow a few polls.
SETTLED = 2.5


def test_watch_config_reloads_edits_and_rejects_invalid_ones(start_gateway: StartGateway, upstream: MockUpstream, report_counts):
    gw = start_gateway(watched_config(upstream, "w-first"))
    assert gw.proc is not None
    pid = gw.proc.pid
    assert served_by(gw, upstream) == "w-first"
    assert reloads(gw, "ok") == 0

    # 1. Edited in place: the new config serves, with no signal sent.
    gw.config_path.write_text(text_for(gw, watched_config(upstream, "w-second")))
    wait_for(lambda: served_by(gw, upstream) == "w-second", 10, "the edited config to serve")
    assert reloads(gw, "ok") == 1

    # 2. An invalid edit: rejected once (not on every poll), counted, logged; the
    #    running config keeps serving.
    err0 = reloads(gw, "error")
    gw.config_path.write_text(gw.config_path.read_text() + "\nwatch_config_typo: true\n")
    wait_for(lambda: reloads(gw, "error") == err0 + 1, 10, "the invalid edit to be rejected")
    time.sleep(SETTLED)
    assert reloads(gw, "error") == err0 + 1, "an invalid file must be rejected once, not on every poll"
    assert reloads(gw, "ok") == 1
    assert served_by(gw, upstream) == "w-second"
    assert "config reload rejected" in gw.log_text() and "watch_config_typo" in gw.log_text()

    # 3. An editor's save: write a temp file (in two parts), rename it over the
    #    config, chmod it: one reload.
    body = text_for(gw, watched_config(upstream, "w-third"))
    tmp = gw.config_path.with_suffix(".yaml.swp")
    with open(tmp, "w") as f:
        f.write(body[: len(body) // 2])
        f.flush()
        time.sleep(0.02)
        f.write(body[len(body) // 2 :])
    os.replace(tmp, gw.config_path)
    os.chmod(gw.config_path, 0o640)
    wait_for(lambda: served_by(gw, upstream) == "w-third", 10, "the renamed-in config to serve")
    time.sleep(SETTLED)
    assert reloads(gw, "ok") == 2, "one save, one reload"

    # 4. The path is still watched after the rename: replaced by rename again.
    tmp.write_text(text_for(gw, watched_config(upstream, "w-fourth")))
    os.replace(tmp, gw.config_path)
    wait_for(lambda: served_by(gw, upstream) == "w-fourth", 10, "the second rename to be noticed")

    # 5. Rewritten in place in a burst (truncate, half, pause, rest): the half-written
    #    file is never taken for the config.
    body = text_for(gw, watched_config(upstream, "w-fifth"))
    with open(gw.config_path, "w") as f:
        f.write(body[: len(body) // 2])
        f.flush()
        time.sleep(0.05)
        f.write(body[len(body) // 2 :])
    wait_for(lambda: served_by(gw, upstream) == "w-fifth", 10, "the in-place rewrite to serve")
    time.sleep(SETTLED)
    ok, err = reloads(gw, "ok"), reloads(gw, "error")
    assert (ok, err) == (4, err0 + 1), f"reloads ok={ok} error={err}: a burst of writes must reload once"
    assert gw.alive and gw.proc.pid == pid
    report_counts(f"5 edits without a signal: {ok:.0f} reloads taken, {err:.0f} invalid edit rejected (once), old config kept serving")


def test_watch_config_off_ignores_edits(start_gateway: StartGateway, upstream: MockUpstream):
    gw = start_gateway(watched_config(upstream, "w-first", watch_config=False))
    assert served_by(gw, upstream) == "w-first"
    gw.config_path.write_text(text_for(gw, watched_config(upstream, "w-second", watch_config=False)))
    time.sleep(SETTLED)
    assert served_by(gw, upstream) == "w-first"
    assert reloads(gw, "ok") == 0
