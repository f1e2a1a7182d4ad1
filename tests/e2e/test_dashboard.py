"""Issue 16: the dashboard in a real browser — headless Chromium (Debian's
`chromium`) driven by Selenium through Debian's `chromedriver` (`chromium-driver`).

It logs in, sees the live numbers move while traffic flows, creates a key and uses
it with the `openai` SDK, revokes it (accepting the browser's confirm dialog) and
sees the SDK get 401, filters the request log, walks it with the keyboard, and saves
a screenshot of each page (light, dark, phone width) under the test's output folder
(`AIGATE_E2E_SCREENSHOTS=<dir>` copies them there too). Every step is a real click
or key press on the element a user would use, and every check waits for the page
(no sleeps).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import struct
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import openai
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from harness import GW_KEY_A, Gateway
from helpers import http
from mock_upstream import MockUpstream
from test_admin import PASSWORD, admin_config, auth, chat, password_hash  # noqa: F401 (fixture)

StartGateway = Callable[..., Gateway]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# The network is closed: no sync, update, QUIC or background fetches; a fresh profile.
# No scrollbars: a page longer than the viewport keeps its full width (as on a phone).
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-extensions", "--hide-scrollbars")


def chromium(work: Path) -> WebDriver:
    """Debian's chromium through Debian's chromedriver, headless, profile in `work`."""
    for exe, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(exe, os.X_OK):
            pytest.fail(f"{exe} is missing: the dashboard test needs Debian's {pkg} (apt-get install chromium chromium-driver; .ci/run installs them)")
    work.mkdir(parents=True, exist_ok=True)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in (*CHROMIUM_ARGS, f"--user-data-dir={work / 'profile'}", "--window-size=1280,800"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Both paths given, so Selenium Manager (which would look for drivers online) is never run.
    service = Service(executable_path=CHROMEDRIVER, log_output=str(work / "chromedriver.log"))
    drv = webdriver.Chrome(service=service, options=opts)
    try:
        size(drv, 1280, 800)
    except BaseException:
        drv.quit()
        raise
    return drv


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    drv = chromium(tmp_path / "chromium")
    yield drv
    drv.quit()


# --- Small helpers over Selenium: the page's state, waits, viewport, pictures ---

def js(drv: WebDriver, expr: str) -> Any:
    return drv.execute_script(f"return ({expr});")


def wait(drv: WebDriver, what: str, expr: str, timeout: float = 10.0) -> Any:
    """Waits until the JavaScript expression is truthy; returns its value."""
    try:
        return WebDriverWait(drv, timeout, poll_frequency=0.1).until(lambda d: js(d, expr))
    except TimeoutException:
        raise AssertionError(f"not within {timeout} s: {what} ({expr})") from None


def el(drv: WebDriver, css: str, timeout: float = 10.0) -> WebElement:
    """The element, once it is shown and can be clicked."""
    try:
        return WebDriverWait(drv, timeout, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException]).until(EC.element_to_be_clickable((By.CSS_SELECTOR, css)))
    except TimeoutException:
        raise AssertionError(f"not within {timeout} s: {css} shown and enabled") from None


def click(drv: WebDriver, css: str) -> None:
    """Clicks the element; again on its successor when the page re-rendered it in
    between (a table refreshed by the live feed replaces its rows)."""
    for _ in range(5):
        try:
            el(drv, css).click()
            return
        except StaleElementReferenceException:
            continue
    raise AssertionError(f"{css} was re-rendered under every click")


def typed(drv: WebDriver, css: str, text: str) -> WebElement:
    e = el(drv, css)
    e.clear()
    e.send_keys(text)
    return e


def press(drv: WebDriver, key: str) -> None:
    """A key press on whatever has the focus (trusted events, as from a keyboard)."""
    ActionChains(drv).send_keys(key).perform()


def page(drv: WebDriver, name: str) -> None:
    """Clicks the page's link in the navigation and waits for the page to show."""
    click(drv, f"#nav a[data-page={name}]")
    wait(drv, f"the {name} page", f"!document.querySelector('#{name}').hidden && document.querySelector('#nav a[aria-current=page]')?.dataset.page === '{name}'")


def size(drv: WebDriver, width: int, height: int) -> None:
    # The exact viewport (a headless window's size includes a toolbar and has a
    # minimum width), as a phone of that width would have it.
    drv.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})


def dark(drv: WebDriver, on: bool) -> None:
    drv.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark" if on else "light"}]})


def screenshot(drv: WebDriver, path: Path, width: int) -> None:
    """The whole page (beyond the viewport when it is longer), as PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    png = base64.b64decode(drv.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n", path.name
    w, h = struct.unpack(">II", png[16:24])
    assert w == width and h >= js(drv, "window.innerHeight"), (path.name, w, h)
    path.write_bytes(png)


def no_sideways_scroll(drv: WebDriver) -> bool:
    return js(drv, "document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_dashboard_login_live_numbers_keys_and_request_log(start_gateway: StartGateway, upstream: MockUpstream, password_hash: str, browser: WebDriver, tmp_path: Path):  # noqa: F811
    cfg = admin_config(upstream, password_hash)
    cfg["models"].append({"name": "quota-m", "targets": [{"provider": "oa", "model": "gpt-q", "rpm": 10, "rpd": 50}]})
    gw = start_gateway(cfg)
    shots = tmp_path / "screenshots"
    b = browser

    # The page itself needs no session; the API behind it does.
    b.get(gw.admin_url + "/")
    assert js(b, "location.pathname") == "/ui/"
    wait(b, "the login form", "!document.querySelector('#login').hidden")
    assert not b.find_element(By.ID, "nav").is_displayed(), "the page links show before login"
    assert b.switch_to.active_element == el(b, "#login-form [name=name]"), "the user field has the focus"
    screenshot(b, shots / "login.png", 1280)
    typed(b, "#login-form [name=name]", "ops")
    typed(b, "#login-form [name=password]", "wrong")
    click(b, "#login-form button[type=submit]")
    wait(b, "a refused login says so", "document.querySelector('#login-error').textContent.includes('wrong user name or password')")
    assert not b.find_element(By.ID, "nav").is_displayed(), "a refused login shows the page links"
    typed(b, "#login-form [name=name]", "ops")
    typed(b, "#login-form [name=password]", PASSWORD).send_keys(Keys.ENTER)
    wait(b, "the overview", "!document.querySelector('#overview').hidden && !document.querySelector('#nav').hidden")
    cookies = b.get_cookies()
    assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [("aigate_session", True, "Strict")], cookies
    assert js(b, "document.cookie") == "", "the session cookie is HttpOnly"

    # Live numbers move while traffic flows (the event feed, no reload): 0 before.
    wait(b, "the live numbers drawn", "document.querySelector('#c-rps polyline') !== null")
    assert float(js(b, "document.querySelector('#t-rps').textContent")) == 0
    assert float(js(b, "document.querySelector('#t-tps').textContent")) == 0
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            chat(gw, GW_KEY_A)
            time.sleep(0.05)

    t = threading.Thread(target=traffic, daemon=True)
    t.start()
    try:
        wait(b, "requests/s above 0", "parseFloat(document.querySelector('#t-rps').textContent) > 0", timeout=15)
        wait(b, "tokens/s above 0", "parseFloat(document.querySelector('#t-tps').textContent) > 0", timeout=15)
        wait(b, "the 1h request count refreshed", "parseInt(document.querySelector('#t-req').textContent) > 0", timeout=15)
        wait(b, "the sparkline rising", "document.querySelector('#c-rps polyline').getAttribute('points').split(' ').some(p => parseFloat(p.split(',')[1]) < 29)")
        screenshot(b, shots / "overview.png", 1280)
    finally:
        stop.set()
        t.join(10)
    assert "oa" in js(b, "document.querySelector('#providers').textContent")

    # Keys: create (shown once), use it with the SDK, revoke, SDK gets 401.
    page(b, "keys")
    wait(b, "the keys listed", "document.querySelector('#key-table tbody').rows.length > 0")
    typed(b, "#key-form [name=id]", "ui-key")
    typed(b, "#key-form [name=rpm]", "100")
    click(b, "#key-form button[type=submit]")
    key = wait(b, "the new key shown", "!document.querySelector('#new-key').hidden && document.querySelector('#new-key-value').textContent")
    assert key.startswith("sk-aigate-")
    wait(b, "the key listed", "[...document.querySelectorAll('#key-table tbody tr')].some(r => r.dataset.id === 'ui-key')")
    assert js(b, "document.querySelector('#key-table tr[data-id=\"ui-key\"] input[name=rpm]').value") == "100"
    assert chat(gw, key).choices[0].message.content == "echo: hi"
    # Usage and spend per key: a chart of the last 24 h that matches /admin/stats.
    sent = http().get(gw.admin_url + "/admin/stats?window=24h", headers=auth(), timeout=5).json()["keys"]["team-a"]
    assert sent["requests"] > 0
    label = wait(b, "team-a's usage chart", "document.querySelector('#key-table tr[data-id=\"team-a\"] svg.usage')?.getAttribute('aria-label')")
    assert label.startswith(f"team-a: {sent['requests']} requests, ${sent['cost_usd']:.4f}"), (label, sent)
    assert js(b, "[...document.querySelectorAll('#key-table tr[data-id=\"team-a\"] svg.usage rect')].filter(r => parseFloat(r.getAttribute('height')) > 0).length") >= 1
    screenshot(b, shots / "keys.png", 1280)
    click(b, "#key-table tr[data-id=\"ui-key\"] button[data-action=revoke]")
    dialog = WebDriverWait(b, 5).until(EC.alert_is_present())
    assert "Revoke key ui-key?" in dialog.text, dialog.text
    dialog.accept()
    wait(b, "the key gone", "![...document.querySelectorAll('#key-table tbody tr')].some(r => r.dataset.id === 'ui-key')")
    with pytest.raises(openai.AuthenticationError):
        chat(gw, key)

    # Request log: filter by key.
    page(b, "requests")
    wait(b, "the request log", "document.querySelector('#req-table tbody').rows.length > 1")
    typed(b, "#filter-form [name=key]", "ui-key")
    click(b, "#filter-form button[type=submit]")
    wait(b, "the filtered log", "document.querySelector('#req-count').textContent.startsWith('1 matching')")
    keys = js(b, "[...document.querySelectorAll('#req-table tbody tr')].map(r => r.cells[1].textContent)")
    assert keys == ["ui-key"], keys
    screenshot(b, shots / "requests.png", 1280)
    # Keyboard: Tab from the Filter button reaches the row, with a visible focus ring;
    # Enter opens every field of that request; Escape closes and gives focus back.
    assert b.switch_to.active_element == el(b, "#filter-form button[type=submit]")
    press(b, Keys.TAB)
    row = b.switch_to.active_element
    assert js(b, "document.activeElement.closest('#req-table tbody tr') !== null"), row.get_attribute("outerHTML")
    assert row.value_of_css_property("outline-style") == "solid", "no visible focus on the row"
    press(b, Keys.ENTER)
    wait(b, "the request's details", "!document.querySelector('#req-detail').hidden")
    field = lambda f: js(b, f"document.querySelector('#req-fields dd[data-field={f}]')?.textContent")  # noqa: E731
    logged = http().get(gw.admin_url + "/admin/requests?key=ui-key", headers=auth(), timeout=5).json()["requests"][0]
    for f in ("request_id", "key", "ingress", "provider", "model", "upstream_model", "status", "attempts", "tokens_in", "tokens_out", "duration_ms"):
        # Numbers as the page prints them (JavaScript shows 1.0 as "1"), the rest as text.
        want = logged[f]
        if isinstance(want, (int, float)) and not isinstance(want, bool):
            assert float(field(f)) == float(want), (f, field(f), want)
        else:
            assert field(f) == str(want), (f, field(f), want)
    assert field("error") == "–" and logged["error"] is None
    assert b.switch_to.active_element.get_attribute("id") == "req-close", "focus moves into the panel"
    screenshot(b, shots / "request-detail.png", 1280)
    press(b, Keys.ESCAPE)
    wait(b, "the panel closed", "document.querySelector('#req-detail').hidden")
    assert b.switch_to.active_element.get_attribute("data-id") == logged["request_id"], "focus back on the row"
    # Space opens it too; the Close button closes it.
    press(b, Keys.SPACE)
    wait(b, "the details by Space", "!document.querySelector('#req-detail').hidden")
    click(b, "#req-close")
    wait(b, "closed by its button", "document.querySelector('#req-detail').hidden")
    # And a click.
    click(b, "#req-table tbody tr")
    wait(b, "the details by click", "!document.querySelector('#req-detail').hidden && document.querySelector('#req-fields dd[data-field=key]').textContent === 'ui-key'")

    # Models and the redacted config, with a reload that reports a broken file.
    page(b, "models")
    wait(b, "the models listed", "document.querySelector('#model-table tbody').rows.length >= 3")
    assert "gpt-up" in js(b, "document.querySelector('#model-table').textContent")
    # Quota left: two requests through the limited target take two.
    assert "rpm 10/10, rpd 50/50" in js(b, "document.querySelector('#model-table').textContent")
    for _ in range(2):
        chat(gw, GW_KEY_A, model="quota-m")
    page(b, "overview")
    page(b, "models")
    wait(b, "the quota dropped by 2", "document.querySelector('#model-table').textContent.includes('rpm 8/10, rpd 48/50')")
    screenshot(b, shots / "models.png", 1280)
    page(b, "config")
    wait(b, "the config shown", "document.querySelector('#config-text').textContent.includes('[redacted]')")
    body = js(b, "document.body.textContent")
    # No secret in the page, and the new key, shown once, left it with the Keys page.
    assert PASSWORD not in body and GW_KEY_A not in body and key not in body
    good = gw.config_path.read_text()
    gw.config_path.write_text(good.replace("- id: team-a\n", "- id: team-a\n  rpm: 0\n", 1))
    click(b, "#reload")
    wait(b, "the reload refused with its path", "document.querySelector('#reload-result').textContent.includes('keys[0].rpm')")
    gw.config_path.write_text(good)
    click(b, "#reload")
    wait(b, "the reload taken", "document.querySelector('#reload-result').textContent === 'config reloaded'")
    screenshot(b, shots / "config.png", 1280)

    # Dark, and a phone-width screen: still readable (no horizontal page scroll).
    dark(b, True)
    page(b, "overview")
    assert js(b, "getComputedStyle(document.body).backgroundColor") == "rgb(13, 17, 23)"
    screenshot(b, shots / "overview-dark.png", 1280)
    page(b, "keys")
    wait(b, "keys in dark", "document.querySelector('svg.usage') !== null")
    screenshot(b, shots / "keys-dark.png", 1280)
    size(b, 390, 844)
    wait(b, "the phone width", "window.innerWidth === 390")
    assert no_sideways_scroll(b), "the keys page scrolls sideways at 390 px"
    screenshot(b, shots / "keys-phone.png", 390)
    page(b, "requests")
    wait(b, "the log at phone width", "document.querySelector('#req-table tbody').rows.length > 0")
    assert no_sideways_scroll(b), "the log scrolls sideways at 390 px"
    click(b, "#req-table tbody tr")
    wait(b, "details at phone width", "!document.querySelector('#req-detail').hidden")
    assert no_sideways_scroll(b), "the details scroll sideways at 390 px"
    screenshot(b, shots / "request-detail-phone.png", 390)
    dark(b, False)
    page(b, "overview")
    assert js(b, "getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"
    assert no_sideways_scroll(b), "the overview scrolls sideways at 390 px"
    screenshot(b, shots / "overview-phone.png", 390)

    for name in ("login", "overview", "keys", "requests", "request-detail", "models", "config", "overview-dark", "keys-dark", "keys-phone", "request-detail-phone", "overview-phone"):
        assert (shots / f"{name}.png").stat().st_size > 5000, name
    out = os.environ.get("AIGATE_E2E_SCREENSHOTS")
    if out:
        shutil.copytree(shots, out, dirs_exist_ok=True)
    # Logged in through the dashboard: the login is in the admin log.
    assert "admin=ops action=login" in gw.log_text()
    assert http().get(gw.admin_url + "/ui/app.js", timeout=5).headers["content-security-policy"].startswith("default-src 'self'")
    # Nothing the page did was refused by that policy or failed in its script: the
    # browser's only errors are the answers this test asked for.
    expected = {("/admin/session", 401), ("/admin/login", 401), ("/admin/reload", 422), ("/favicon.ico", 404)}
    seen = set()
    for e in b.get_log("browser"):
        if e["level"] == "SEVERE" and e["source"] == "network":
            m = re.match(r"(\S+) - Failed to load resource: the server responded with a status of (\d+)", e["message"])
            assert m and (urlsplit(m[1]).path, int(m[2])) in expected, e
            seen.add((urlsplit(m[1]).path, int(m[2])))
        else:
            assert e["level"] not in ("SEVERE", "WARNING"), e
    assert seen >= expected - {("/favicon.ico", 404)}, seen
