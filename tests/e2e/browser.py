"""A headless Chromium (Debian's `chromium`) driven over the DevTools protocol.

Why not Selenium or Playwright: the dashboard test needs only to load a page, run a
line of JavaScript, wait for a condition and take a screenshot; the protocol does
that over one WebSocket, with the `websockets` package the suite already pins, so no
driver binary or extra Python package has to match the browser's version.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from harness import free_port


class Browser:
    def __init__(self, workdir: Path, width: int = 1280, height: int = 800):
        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        if exe is None:
            pytest.fail("chromium is not installed: the dashboard test needs it (Debian: apt-get install chromium; .ci/run installs it)")
        port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = open(workdir / "chromium.log", "ab")
        self.proc = subprocess.Popen(
            [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions", "--disable-background-networking",
             f"--remote-debugging-port={port}", "--remote-debugging-address=127.0.0.1", f"--user-data-dir={workdir / 'profile'}",
             f"--window-size={width},{height}", "about:blank"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        ws_url = None
        while time.monotonic() < deadline and ws_url is None:
            assert self.proc.poll() is None, f"chromium exited with {self.proc.returncode}: {(workdir / 'chromium.log').read_text()[-2000:]}"
            try:
                pages = [t for t in httpx.get(base + "/json/list", timeout=1).json() if t.get("type") == "page"]
                ws_url = pages[0]["webSocketDebuggerUrl"] if pages else None
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.1)
        assert ws_url, "chromium's DevTools endpoint did not come up within 30 s"
        self.ws = connect(ws_url, max_size=None, open_timeout=10)
        self.ids = itertools.count(1)
        self.cmd("Page.enable")
        self.cmd("Runtime.enable")
        self.size(width, height)

    def cmd(self, method: str, **params: Any) -> dict:
        i = next(self.ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=30))
            if msg.get("id") == i:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg["result"]

    def eval(self, js: str) -> Any:
        r = self.cmd("Runtime.evaluate", expression=js, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"{js}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, what: str, js: str, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = self.eval(js)
            if v:
                return v
            time.sleep(0.1)
        raise AssertionError(f"not within {timeout} s: {what} ({js})")

    def goto(self, url: str) -> None:
        self.cmd("Page.navigate", url=url)
        self.wait("the page loaded", "document.readyState === 'complete' && location.href !== 'about:blank'")

    def size(self, width: int, height: int) -> None:
        self.cmd("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=width < 600)

    def dark(self, on: bool) -> None:
        self.cmd("Emulation.setEmulatedMedia", features=[{"name": "prefers-color-scheme", "value": "dark" if on else "light"}])

    # Real key events (trusted, as from a keyboard): Tab moves focus, Enter activates.
    KEYS = {"Enter": ("Enter", 13, "\r"), "Tab": ("Tab", 9, ""), "Escape": ("Escape", 27, ""), " ": ("Space", 32, " ")}

    def press(self, key: str) -> None:
        code, vk, text = self.KEYS[key]
        down = {"key": key, "code": code, "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk}
        self.cmd("Input.dispatchKeyEvent", type="keyDown" if text else "rawKeyDown", text=text, **down)
        self.cmd("Input.dispatchKeyEvent", type="keyUp", **down)

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.cmd("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.log.close()
