"""Issue 16: the dashboard in a real browser (headless Chromium, `browser.py`).

It logs in, sees the live numbers move while traffic flows, creates a key and uses
it with the `openai` SDK, revokes it and sees the SDK get 401, filters the request
log, and saves a screenshot of each page (light, dark, phone width) under the test's
output folder (`AIGATE_E2E_SCREENSHOTS=<dir>` copies them there too).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

import openai
import pytest

from browser import Browser
from harness import GW_KEY_A, Gateway
from helpers import http
from mock_upstream import MockUpstream
from test_admin import PASSWORD, admin_config, chat, password_hash  # noqa: F401 (fixture)

StartGateway = Callable[..., Gateway]


@pytest.fixture
def browser(tmp_path: Path):
    b = Browser(tmp_path / "chromium")
    yield b
    b.close()


def test_dashboard_login_live_numbers_keys_and_request_log(start_gateway: StartGateway, upstream: MockUpstream, password_hash: str, browser: Browser, tmp_path: Path):  # noqa: F811
    cfg = admin_config(upstream, password_hash)
    cfg["models"].append({"name": "quota-m", "targets": [{"provider": "oa", "model": "gpt-q", "rpm": 10, "rpd": 50}]})
    gw = start_gateway(cfg)
    shots = tmp_path / "screenshots"
    b = browser

    # The page itself needs no session; the API behind it does.
    b.goto(gw.admin_url + "/")
    assert b.eval("location.pathname") == "/ui/"
    b.wait("the login form", "!document.querySelector('#login').hidden")
    b.screenshot(shots / "login.png")
    b.eval("document.querySelector('#login-form [name=name]').value = 'ops'")
    b.eval("document.querySelector('#login-form [name=password]').value = 'wrong'")
    b.eval("document.querySelector('#login-form').requestSubmit()")
    b.wait("a refused login says so", "document.querySelector('#login-error').textContent.includes('wrong user name or password')")
    b.eval(f"document.querySelector('#login-form [name=password]').value = {PASSWORD!r}")
    b.eval("document.querySelector('#login-form').requestSubmit()")
    b.wait("the overview", "!document.querySelector('#overview').hidden && !document.querySelector('#nav').hidden")
    assert b.eval("document.cookie") == "", "the session cookie is HttpOnly"

    # Live numbers move while traffic flows (the event feed, no reload).
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            chat(gw, GW_KEY_A)
            time.sleep(0.05)

    t = threading.Thread(target=traffic, daemon=True)
    t.start()
    try:
        b.wait("requests/s above 0", "parseFloat(document.querySelector('#t-rps').textContent) > 0", timeout=15)
        b.wait("tokens/s above 0", "parseFloat(document.querySelector('#t-tps').textContent) > 0", timeout=15)
        b.wait("the 1h request count refreshed", "parseInt(document.querySelector('#t-req').textContent) > 0", timeout=15)
        b.wait("a sparkline drawn", "document.querySelector('#c-rps polyline') !== null")
        b.screenshot(shots / "overview.png")
    finally:
        stop.set()
        t.join(10)
    assert "oa" in b.eval("document.querySelector('#providers').textContent")

    # Keys: create (shown once), use it with the SDK, revoke, SDK gets 401.
    b.eval("location.hash = '#keys'")
    b.wait("the keys page", "!document.querySelector('#keys').hidden && document.querySelector('#key-table tbody').rows.length > 0")
    b.eval("document.querySelector('#key-form [name=id]').value = 'ui-key'")
    b.eval("document.querySelector('#key-form [name=rpm]').value = '100'")
    b.eval("document.querySelector('#key-form').requestSubmit()")
    key = b.wait("the new key shown", "!document.querySelector('#new-key').hidden && document.querySelector('#new-key-value').textContent")
    assert key.startswith("sk-aigate-")
    b.wait("the key listed", "[...document.querySelectorAll('#key-table tbody tr')].some(r => r.dataset.id === 'ui-key')")
    assert chat(gw, key).choices[0].message.content == "echo: hi"
    # Usage and spend per key: a chart of the last 24 h that matches /admin/stats.
    sent = http().get(gw.admin_url + "/admin/stats?window=24h", headers={"authorization": "Bearer admin-token-0123456789abcdef"}, timeout=5).json()["keys"]["team-a"]
    label = b.wait("team-a's usage chart", "document.querySelector('#key-table tr[data-id=\"team-a\"] svg.usage')?.getAttribute('aria-label')")
    assert label.startswith(f"team-a: {sent['requests']} requests, ${sent['cost_usd']:.4f}"), (label, sent)
    assert b.eval("[...document.querySelectorAll('#key-table tr[data-id=\"team-a\"] svg.usage rect')].filter(r => parseFloat(r.getAttribute('height')) > 0).length") >= 1
    b.screenshot(shots / "keys.png")
    b.eval("window.confirm = () => true")
    b.eval("document.querySelector('#key-table tr[data-id=\"ui-key\"] button[data-action=revoke]').click()")
    b.wait("the key gone", "![...document.querySelectorAll('#key-table tbody tr')].some(r => r.dataset.id === 'ui-key')")
    with pytest.raises(openai.AuthenticationError):
        chat(gw, key)

    # Request log: filter by key.
    b.eval("location.hash = '#requests'")
    b.wait("the request log", "!document.querySelector('#requests').hidden && document.querySelector('#req-table tbody').rows.length > 0")
    b.eval("document.querySelector('#filter-form [name=key]').value = 'ui-key'")
    b.eval("document.querySelector('#filter-form').requestSubmit()")
    b.wait("the filtered log", "document.querySelector('#req-count').textContent.startsWith('1 matching')")
    keys = b.eval("[...document.querySelectorAll('#req-table tbody tr')].map(r => r.cells[1].textContent)")
    assert keys == ["ui-key"], keys
    b.screenshot(shots / "requests.png")
    # Keyboard: Tab from the Filter button reaches the row, with a visible focus ring;
    # Enter opens every field of that request; Escape closes and gives focus back.
    b.eval("document.querySelector('#filter-form button').focus()")
    b.press("Tab")
    assert b.eval("document.activeElement.closest('#req-table tbody tr') !== null"), b.eval("document.activeElement.outerHTML")
    assert b.eval("getComputedStyle(document.activeElement).outlineStyle") == "solid", "no visible focus on the row"
    b.press("Enter")
    b.wait("the request's details", "!document.querySelector('#req-detail').hidden")
    field = lambda f: b.eval(f"document.querySelector('#req-fields dd[data-field={f}]')?.textContent")  # noqa: E731
    logged = http().get(gw.admin_url + "/admin/requests?key=ui-key", headers={"authorization": "Bearer admin-token-0123456789abcdef"}, timeout=5).json()["requests"][0]
    for f in ("request_id", "key", "ingress", "provider", "model", "upstream_model", "status", "attempts", "tokens_in", "tokens_out", "duration_ms"):
        # Numbers as the page prints them (JavaScript shows 1.0 as "1"), the rest as text.
        want = logged[f]
        if isinstance(want, (int, float)) and not isinstance(want, bool):
            assert float(field(f)) == float(want), (f, field(f), want)
        else:
            assert field(f) == str(want), (f, field(f), want)
    assert field("error") == "–" and logged["error"] is None
    assert b.eval("document.activeElement.id") == "req-close", "focus moves into the panel"
    b.screenshot(shots / "request-detail.png")
    b.press("Escape")
    b.wait("the panel closed", "document.querySelector('#req-detail').hidden")
    assert b.eval("document.activeElement.dataset.id") == logged["request_id"], "focus back on the row"
    # A click opens it too.
    b.eval("document.querySelector('#req-table tbody tr').click()")
    b.wait("the details by click", "!document.querySelector('#req-detail').hidden")

    # Models and the redacted config, with a reload that reports a broken file.
    b.eval("location.hash = '#models'")
    b.wait("the models page", "document.querySelector('#model-table tbody').rows.length >= 3")
    assert "gpt-up" in b.eval("document.querySelector('#model-table').textContent")
    # Quota left: two requests through the limited target take two.
    assert "rpm 10/10, rpd 50/50" in b.eval("document.querySelector('#model-table').textContent")
    for _ in range(2):
        chat(gw, GW_KEY_A, model="quota-m")
    b.eval("location.hash = '#overview'")
    b.eval("location.hash = '#models'")
    b.wait("the quota dropped by 2", "document.querySelector('#model-table').textContent.includes('rpm 8/10, rpd 48/50')")
    b.screenshot(shots / "models.png")
    b.eval("location.hash = '#config'")
    b.wait("the config page", "document.querySelector('#config-text').textContent.includes('[redacted]')")
    assert PASSWORD not in b.eval("document.body.textContent") and GW_KEY_A not in b.eval("document.body.textContent")
    good = gw.config_path.read_text()
    gw.config_path.write_text(good.replace("- id: team-a\n", "- id: team-a\n  rpm: 0\n", 1))
    b.eval("document.querySelector('#reload').click()")
    b.wait("the reload refused with its path", "document.querySelector('#reload-result').textContent.includes('keys[0].rpm')")
    gw.config_path.write_text(good)
    b.eval("document.querySelector('#reload').click()")
    b.wait("the reload taken", "document.querySelector('#reload-result').textContent === 'config reloaded'")
    b.screenshot(shots / "config.png")

    # Dark, and a phone-width screen: still readable (no horizontal page scroll).
    b.dark(True)
    b.eval("location.hash = '#overview'")
    b.wait("overview again", "!document.querySelector('#overview').hidden")
    assert b.eval("getComputedStyle(document.body).backgroundColor") == "rgb(13, 17, 23)"
    b.screenshot(shots / "overview-dark.png")
    b.eval("location.hash = '#keys'")
    b.wait("keys in dark", "!document.querySelector('#keys').hidden && document.querySelector('svg.usage') !== null")
    b.screenshot(shots / "keys-dark.png")
    b.size(390, 844)
    b.wait("keys at phone width", "!document.querySelector('#keys').hidden")
    assert b.eval("document.documentElement.scrollWidth <= window.innerWidth + 1"), "the page scrolls sideways at 390 px"
    b.screenshot(shots / "keys-phone.png")
    b.eval("location.hash = '#requests'")
    b.wait("the log at phone width", "document.querySelector('#req-table tbody').rows.length > 0")
    b.eval("document.querySelector('#req-table tbody tr').click()")
    b.wait("details at phone width", "!document.querySelector('#req-detail').hidden")
    assert b.eval("document.documentElement.scrollWidth <= window.innerWidth + 1"), "the details scroll sideways at 390 px"
    b.screenshot(shots / "request-detail-phone.png")

    for name in ("login", "overview", "keys", "requests", "request-detail", "models", "config", "overview-dark", "keys-dark", "keys-phone", "request-detail-phone"):
        assert (shots / f"{name}.png").stat().st_size > 5000, name
    out = os.environ.get("AIGATE_E2E_SCREENSHOTS")
    if out:
        shutil.copytree(shots, out, dirs_exist_ok=True)
    # Logged in through the dashboard: the login is in the admin log.
    assert "admin=ops action=login" in gw.log_text()
    assert http().get(gw.admin_url + "/ui/app.js", timeout=5).headers["content-security-policy"].startswith("default-src 'self'")
