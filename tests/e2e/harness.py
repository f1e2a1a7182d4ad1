"""The aigate process under test and the configs the suite gives it.

`Gateway` runs the real binary (`AIGATE_BIN`) on ephemeral loopback ports, with a
generated YAML config and a log file; `standard_config()` points every provider kind
at the mock upstream.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from mock_upstream import MockUpstream

# Loopback only: no proxy may capture test traffic.
for _v in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_v, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

REPO = Path(__file__).resolve().parents[2]
UPSTREAM_KEYS = ["sk-up-1", "sk-up-2", "sk-up-3"]
GW_KEY_A = "sk-gw-a"  # team-a: plain key, no allow-list
GW_KEY_B = "sk-gw-b"  # team-b: configured as sha256, allow-list gpt-*, claude-3-haiku*
GW_KEY_LIMITED = "sk-gw-limited"  # id "limited": rpm 1
START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0


def sha256_hex(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port() -> int:
    """A loopback port nothing listens on (connect gets RST)."""
    return free_port()


def aigate_bin() -> str:
    b = os.environ.get("AIGATE_BIN")
    if not b:
        raise RuntimeError("AIGATE_BIN is not set: point it at the aigate binary (cargo test sets it via tests/e2e_python.rs)")
    if not os.access(b, os.X_OK):
        raise RuntimeError(f"AIGATE_BIN={b} is not an executable file")
    return b


# ---------------------------------------------------------------------------- gateway process

ALL_GATEWAYS: list["Gateway"] = []


class Gateway:
    """One aigate process on ephemeral loopback ports, with its config file and log."""

    def __init__(self, config: dict | str, workdir: Path, env: dict | None = None, name: str = "aigate", tls_ca: str | None = None, binary: str | None = None):
        """`tls_ca`: the config's `listen` serves TLS; clients trust this CA file."""
        self.tls_ca = tls_ca
        self.workdir = Path(workdir)
        self.binary = binary  # default: AIGATE_BIN
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.env = env or {}
        self.config: dict | str = config
        self.proc: subprocess.Popen | None = None
        self.port = self.admin_port = 0
        self.log_path = self.workdir / f"{name}.log"
        self.config_path = self.workdir / f"{name}.yaml"
        self.generation = 0
        ALL_GATEWAYS.append(self)

    # URLs
    @property
    def url(self) -> str:
        return f"{'https' if self.tls_ca else 'http'}://127.0.0.1:{self.port}"

    def verify(self) -> ssl.SSLContext | bool:
        """What an httpx client passes as `verify` to trust this gateway."""
        return ssl.create_default_context(cafile=self.tls_ca) if self.tls_ca else True

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def openai_url(self) -> str:
        return self.url + "/v1"

    def write_config(self) -> Path:
        """Write the config with this run's listen ports; a str config is written as is
        (with `{port}` / `{admin_port}` placeholders filled)."""
        self.config_path.write_text(self.config_text())
        return self.config_path

    def config_text(self) -> str:
        """The YAML `write_config` writes."""
        if isinstance(self.config, str):
            text = self.config.replace("{port}", str(self.port)).replace("{admin_port}", str(self.admin_port))
        else:
            cfg = dict(self.config)
            cfg["listen"] = f"127.0.0.1:{self.port}"
            # Each gateway its own pid file and upgrade socket (defaults are shared /tmp paths).
            cfg.setdefault("pid_file", str(self.workdir / f"{self.name}.pid"))
            cfg.setdefault("upgrade_sock", str(self.workdir / f"{self.name}_upgrade.sock"))
            if cfg.get("admin_listen", True) is not None:
                cfg["admin_listen"] = f"127.0.0.1:{self.admin_port}"
            else:
                cfg.pop("admin_listen")
            text = yaml.safe_dump(cfg, sort_keys=False)
        return text

    def start(self) -> "Gateway":
        last_err: Exception | None = None
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.port, self.admin_port = free_port(), free_port()
            self.write_config()
            self.generation += 1
            with open(self.log_path, "ab") as log:
                exe = self.binary or aigate_bin()
                log.write(f"===== start #{self.generation}: {exe} -c {self.config_path}\n".encode())
                env = {**os.environ, "RUST_LOG": os.environ.get("AIGATE_E2E_RUST_LOG", "info"), "RUST_BACKTRACE": "1", **self.env}
                self.proc = subprocess.Popen([exe, "-c", str(self.config_path)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=self.workdir)
            try:
                self._wait_ready()
                return self
            except _PortClash as e:
                last_err = e
                self.stop()
        raise RuntimeError(f"aigate did not start: {last_err}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        want = [self.url + "/health/live"]
        if isinstance(self.config, dict) and self.config.get("admin_listen", True) is not None:
            want.append(self.admin_url + "/health/live")
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                tail = self.log_tail()
                if "in use" in tail.lower():
                    raise _PortClash(tail)
                raise RuntimeError(f"aigate exited with {self.proc.returncode} during start-up; log:\n{tail}")
            try:
                if all(httpx.get(u, timeout=1.0, verify=self.verify()).status_code == 200 for u in want):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"aigate did not answer GET /health/live within {START_TIMEOUT}s; log:\n{self.log_tail()}")

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT s. Returns the exit code."""
        p, self.proc = self.proc, None
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(STOP_TIMEOUT)
                with open(self.log_path, "ab") as log:
                    log.write(b"===== test harness: no exit within 5 s of SIGTERM; killed\n")
        return p.returncode

    def restart(self, config: dict | str | None = None) -> "Gateway":
        """Stop, optionally swap the config, start again (on new ports: read .url again)."""
        self.stop()
        if config is not None:
            self.config = config
        return self.start()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_text(self, since: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # HTTP helpers
    def client(self, **kw: Any) -> httpx.Client:
        kw.setdefault("verify", self.verify())
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 20.0), **kw)


class _PortClash(Exception):
    pass


# ---------------------------------------------------------------------------- configs


def provider(name: str, kind: str, base_url: str, keys: list | None = None, **extra: Any) -> dict:
    creds = []
    for k in keys or ["sk-up-1"]:
        creds.append(k if isinstance(k, dict) else {"key": k})
    p = {"name": name, "kind": kind, "base_url": base_url, "credentials": creds}
    p.update(extra)
    return p


def route(name: str, *targets: tuple[str, str | None]) -> dict:
    ts = []
    for prov, model in targets:
        t = {"provider": prov}
        if model is not None:
            t["model"] = model
        ts.append(t)
    return {"name": name, "targets": ts}


def standard_config(mock: MockUpstream, dead_port: int) -> dict:
    """The config most tests share: every provider kind on the mock, plus a dead one."""
    fast = {"connect_ms": 1000, "first_byte_ms": 10000, "idle_ms": 10000, "total_ms": 30000}
    slow = {"connect_ms": 1000, "first_byte_ms": 600, "idle_ms": 600, "total_ms": 5000}
    return {
        "listen": "127.0.0.1:0",
        "admin_listen": "127.0.0.1:0",
        "max_body_bytes": 10 * 1024 * 1024,
        "grace_period_seconds": 0,
        "graceful_shutdown_timeout_seconds": 1,
        "keys": [
            {"id": "team-a", "key": GW_KEY_A},
            {"id": "team-b", "sha256": sha256_hex(GW_KEY_B), "models": ["gpt-*", "claude-3-haiku*"]},
            {"id": "limited", "key": GW_KEY_LIMITED, "rpm": 1},
        ],
        "providers": [
            provider("openai", "openai", mock.openai_url, api="chat", timeouts=fast),
            provider("openai-resp", "openai", mock.openai_url, api="responses", timeouts=fast),
            provider("anthropic", "anthropic", mock.url, timeouts=fast),
            provider("gemini", "gemini", mock.url, timeouts=fast),
            provider("compat", "openai-compatible", mock.url + "/compat/v1", keys=["sk-up-2"], timeouts=fast),
            provider("rotating", "openai", mock.openai_url, keys=[{"key": "sk-up-1", "weight": 1}, {"key": "sk-up-2", "weight": 2}], timeouts=fast),
            provider("pair", "openai", mock.openai_url, keys=["sk-up-1", "sk-up-3"], timeouts=fast),
            provider("dead", "openai", f"http://127.0.0.1:{dead_port}/v1", timeouts=fast),
            provider("dead-anthropic", "anthropic", f"http://127.0.0.1:{dead_port}", timeouts=fast),
            # used only by the fallback tests, so no earlier failure has opened their circuit
            provider("dead-fb", "openai", f"http://127.0.0.1:{dead_port}/v1", timeouts=fast),
            provider("dead-fb-anthropic", "anthropic", f"http://127.0.0.1:{dead_port}", timeouts=fast),
            provider("slowpoke", "openai", mock.openai_url, timeouts=slow),
            provider("slowpoke-anthropic", "anthropic", mock.url, timeouts=slow),
        ],
        "models": [
            route("gpt-4o", ("openai", "gpt-4o-upstream")),
            route("gpt-4o-same", ("openai", None)),
            route("gpt-4o-think", ("openai", "gpt-4o-think-upstream")),
            route("gpt-4o-slow", ("openai", "gpt-4o-slow-300")),
            route("gpt-4.1", ("openai-resp", "gpt-4.1-upstream")),
            route("gpt-4.1-slow", ("openai-resp", "gpt-4.1-slow-300")),
            route("claude-sonnet-4-5", ("anthropic", "claude-sonnet-4-5-upstream")),
            route("claude-slow", ("anthropic", "claude-slow-300")),
            route("claude-3-haiku*", ("anthropic", None)),
            route("gemini-2.5-flash", ("gemini", "gemini-2.5-flash-upstream")),
            route("gemini-slow", ("gemini", "gemini-slow-300")),
            route("compat-model", ("compat", "llama-3-upstream")),
            route("rotate-model", ("rotating", None)),
            route("pair-model", ("pair", None)),
            route("fallback-model", ("dead-fb", "gpt-dead"), ("openai", "gpt-4o-fallback")),
            route("fallback-claude", ("dead-fb-anthropic", "claude-dead"), ("anthropic", "claude-fallback")),
            route("dead-model", ("dead", "gpt-dead")),
            route("dead-claude", ("dead-anthropic", "claude-dead")),
            route("hang-model", ("slowpoke", "gpt-hang-5000")),
            route("hang-claude", ("slowpoke-anthropic", "claude-hang-5000")),
            route("err-anthropic-404", ("anthropic", "corpus:anthropic-messages/error-404-not-found")),
            route("err-openai-400", ("openai", "corpus:openai-chat/error-400-unsupported-parameter")),
            route("err-resp-400", ("openai-resp", "corpus:openai-responses/error-400-invalid-parameter")),
            route("err-gemini-404", ("gemini", "corpus.gemini.error-404-model-not-found")),
            route("corpus-chat-stream", ("openai", "corpus:openai-chat/stream-parallel-tool-calls")),
            route("corpus-chat-json", ("openai", "corpus:openai-chat/text-basic")),
            route("corpus-resp-stream", ("openai-resp", "corpus:openai-responses/stream-text")),
            route("corpus-claude-stream", ("anthropic", "corpus:anthropic-messages/stream-thinking")),
            route("corpus-claude-json", ("anthropic", "corpus:anthropic-messages/thinking")),
            route("corpus-gemini-stream", ("gemini", "corpus.gemini.stream-text")),
            route("corpus-gemini-json", ("gemini", "corpus.gemini.text-system-instruction")),
        ],
    }


def four_kinds_config(mock: MockUpstream, names: dict[str, str], key_id: str, think_scenario: str) -> dict:
    """One provider of each wire format on the mock (`names`: client-format key →
    provider name), each with two models: `<name>` reaching the mock as
    `<name>-tools-up` (a request without tools gets the plain echo) and
    `<name>-think` as `<name>-<think_scenario>-up`. The 4 × 4 conversion tests use it."""
    t = {"connect_ms": 1000, "first_byte_ms": 10000, "idle_ms": 10000, "total_ms": 30000}
    models = []
    for name in names.values():
        models.append(route(name, (name, f"{name}-tools-up")))
        models.append(route(f"{name}-think", (name, f"{name}-{think_scenario}-up")))
    return {
        "listen": "127.0.0.1:0",
        "grace_period_seconds": 0,
        "graceful_shutdown_timeout_seconds": 1,
        "keys": [{"id": key_id, "key": GW_KEY_A}],
        "providers": [
            provider(names["openai-chat"], "openai", mock.openai_url, api="chat", timeouts=t),
            provider(names["openai-responses"], "openai", mock.openai_url, api="responses", timeouts=t),
            provider(names["anthropic"], "anthropic", mock.url, timeouts=t),
            provider(names["gemini"], "gemini", mock.url, timeouts=t),
        ],
        "models": models,
    }


# ---------------------------------------------------------------------------- resilience and limits configs

# Tight enough that a fault costs well under a second, loose enough for 2 busy cores.
FAST_TIMEOUTS = {"connect_ms": 500, "first_byte_ms": 1000, "idle_ms": 1000, "total_ms": 10000}


def small_config(providers: list[dict], models: list[dict], keys: list[dict] | None = None, **top: Any) -> dict:
    """A config with only the given providers and models (plus tiny backoffs, 1 s
    cooldowns, keepalive off): each resilience / limits test starts its own gateway
    so breaker, cooldown and window state never leak between tests. `top` overrides
    or adds top-level keys (`retry`, `cooldown`, `circuit_breaker`, ...)."""
    cfg: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "admin_listen": "127.0.0.1:0",
        "grace_period_seconds": 0,
        "graceful_shutdown_timeout_seconds": 1,
        "retry": {"max_attempts": 5, "base_delay_ms": 1, "max_delay_ms": 5, "multiplier": 2.0},
        "cooldown": {"rate_limited_seconds": 1, "auth_failed_seconds": 300},
        "circuit_breaker": {"failure_threshold": 5, "open_seconds": 30},
        "stream_keepalive_seconds": 0,
        "keys": keys if keys is not None else [{"id": "team-a", "key": GW_KEY_A}],
        "providers": providers,
        "models": models,
    }
    cfg.update(top)
    return cfg
