"""The README's two dashboard pictures (docs/console-overview.png and
docs/console-keys.png), made the way test_dashboard.py sees the page: the real
binary on loopback in front of the mock upstream, three providers, four models
priced by the built-in table, two config keys and two made at runtime, a minute of
mixed traffic from the `openai` SDK (one model failing now and then), then the
Overview and Keys pages at 1280×800 in headless Chromium.

    AIGATE_BIN=target/release/aigate target/e2e-venv/bin/python tests/e2e/console_screenshots.py docs/
"""

from __future__ import annotations

import math
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import openai

from harness import Gateway, aigate_bin, provider, route, small_config
from helpers import http
from mock_upstream import MockUpstream
from test_admin import PASSWORD, TOKEN
from test_dashboard import chromium, el, page, typed, wait

KEYS = {"web-app": "sk-gw-web-app-4f1c9a", "data-team": "sk-gw-data-team-82be7d"}
# Model as clients ask for it -> provider, upstream model (the mock's scenario in
# its name: answer delays, and a share of 500s for one).
MODELS = {
    "gpt-4.1-mini": ("openai", "gpt-4.1-mini-slow-40"),
    "claude-sonnet-4-5": ("anthropic", "claude-sonnet-4-5-slow-160"),
    "gemini-2.5-flash": ("gemini", "gemini-2.5-flash-slow-70"),
    "gpt-4.1": ("openai", "gpt-4.1-flaky-12"),
}


def config(mock: MockUpstream, password_hash: str) -> dict:
    providers = [provider("openai", "openai", mock.openai_url), provider("anthropic", "anthropic", mock.url), provider("gemini", "gemini", mock.url)]
    models = [route(name, target) for name, target in MODELS.items()]
    keys = [{"id": "web-app", "key": KEYS["web-app"], "rpm": 600}, {"id": "data-team", "key": KEYS["data-team"], "models": ["claude-*", "gemini-*"]}]
    return small_config(providers, models, keys=keys, retry={"max_attempts": 1},
                        admin={"token": TOKEN, "users": [{"name": "ops", "password_hash": password_hash}]})


def traffic(gw: Gateway, key: str, models: list[str], rate: float, stop: threading.Event, seed: int) -> None:
    """About `rate` requests a second, swelling and ebbing, until `stop`."""
    rnd = random.Random(seed)
    client = openai.OpenAI(base_url=gw.openai_url, api_key=key, max_retries=0, timeout=20)
    t0 = time.monotonic()
    while not stop.is_set():
        try:
            client.chat.completions.create(model=rnd.choice(models), messages=[{"role": "user", "content": "Summarise the release notes."}])
        except openai.APIStatusError:
            pass
        swell = 1 + 0.6 * math.sin((time.monotonic() - t0) / 7 + seed)
        stop.wait(rnd.expovariate(rate * swell))


def main(out: Path, seconds: float = 60) -> None:
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="aigate-shots-"))
    hashed = subprocess.run([aigate_bin(), "admin-password"], input=PASSWORD + "\n", capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    with MockUpstream(seed=7) as mock:
        gw = Gateway(config(mock, hashed), work / "gw", name="console").start()
        b = chromium(work / "chromium")
        try:
            made = {}
            for body in ({"id": "ci-bot", "rpm": 60, "models": ["gpt-*"]}, {"id": "support-bot", "budget_usd_daily": 5}):
                r = http().post(gw.admin_url + "/admin/keys", headers={"authorization": f"Bearer {TOKEN}"}, json=body, timeout=10)
                r.raise_for_status()
                made[body["id"]] = r.json()["key"]
            b.get(gw.admin_url + "/")
            typed(b, "#login-form [name=name]", "ops")
            typed(b, "#login-form [name=password]", PASSWORD)
            el(b, "#login-form button[type=submit]").click()
            wait(b, "the overview", "!document.querySelector('#overview').hidden")
            stop = threading.Event()
            flows = [
                (KEYS["web-app"], ["gpt-4.1-mini", "gpt-4.1", "claude-sonnet-4-5"], 6.0),
                (KEYS["data-team"], ["claude-sonnet-4-5", "gemini-2.5-flash"], 3.0),
                (made["ci-bot"], ["gpt-4.1-mini"], 1.0),
                (made["support-bot"], ["gemini-2.5-flash", "gpt-4.1-mini"], 2.0),
            ]
            threads = [threading.Thread(target=traffic, args=(gw, k, m, r, stop, i), daemon=True) for i, (k, m, r) in enumerate(flows)]
            for t in threads:
                t.start()
            try:
                time.sleep(seconds)
                wait(b, "the tiles refreshed", "parseInt(document.querySelector('#t-req').textContent) > 100", timeout=10)
                time.sleep(5.5)  # one more 5 s refresh of the tiles and providers, with the feed still flowing
                b.save_screenshot(str(out / "console-overview.png"))
            finally:
                stop.set()
                for t in threads:
                    t.join(20)
            page(b, "keys")
            wait(b, "every key's chart", "document.querySelectorAll('#key-table svg.usage').length === 4")
            b.save_screenshot(str(out / "console-keys.png"))
        finally:
            b.quit()
            gw.stop()
    print(f"wrote {out / 'console-overview.png'} and {out / 'console-keys.png'} (gateway files in {work})")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs"))
