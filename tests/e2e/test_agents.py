"""Real agent CLIs as clients (issue 17): Claude Code, Codex and Gemini CLI, run
headless against aigate, with aigate's upstream the mock playing a scripted agent turn.

The CLIs are the real npm packages, pinned in tests/e2e/agents/ and installed by
tests/e2e/setup_agents.sh into target/e2e-agents (a no-op once installed). Each runs
against a target of its own provider kind (passthrough) and against one of another
kind (converted; Gemini CLI against two). The mock's `agent` scenario answers the first request with a
call of the CLI's own file-reading tool (Claude Code `Read`, Codex `exec_command`,
Gemini CLI `read_file`) for a file in the run's temp dir, and the request carrying the
tool result with "The code word is <w>." where <w> is read from that result: the CLI
must really have run the tool for its final answer to hold the file's secret.

Each run gets its own HOME (with the config files each CLI needs to stay quiet:
telemetry, update checks, auto-updaters, plugins, IDE and MCP off), TMPDIR and a
bounded timeout; HTTP(S)_PROXY points at a loopback trap that records and refuses
anything not bound for 127.0.0.1, and the test asserts it saw nothing.

Every run, converted or not, is checked in full; the converted runs also check what
their conversion had to do for these CLIs (Claude Code's mid-conversation system
message and `output_config.effort`; Codex's `namespace` and `web_search` tools).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import socketserver
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

import mock_upstream as mu
from harness import GW_KEY_A, REPO, UPSTREAM_KEYS, Gateway, provider, route, small_config
from sdk_turns import UpstreamView, upstream_view

RUN_TIMEOUT = 120.0  # seconds per CLI run; a CLI waiting on the network fails, never hangs
SETUP_TIMEOUT = 900.0
AGENT_TIMEOUTS = {"connect_ms": 1000, "first_byte_ms": 20000, "idle_ms": 20000, "total_ms": 60000}

# provider kind (test id) -> (aigate provider name, its config, the mock's wire format)
TARGETS = {
    "anthropic": ("an", {"kind": "anthropic"}, "anthropic-messages"),
    "openai-chat": ("chat", {"kind": "openai", "api": "chat"}, "openai-chat"),
    "openai-responses": ("resp", {"kind": "openai", "api": "responses"}, "openai-responses"),
    "gemini": ("ge", {"kind": "gemini"}, "gemini"),
}


@dataclasses.dataclass(frozen=True)
class Agent:
    name: str  # test id
    ingress: str  # the client format aigate logs for it
    tool: str  # its file-reading tool the mock calls
    own: str  # target kind of its own provider
    others: tuple[str, ...]  # the converted runs' target kinds


AGENTS = [
    Agent("claude-code", "anthropic", "Read", own="anthropic", others=("openai-chat",)),
    Agent("codex", "openai-responses", "exec_command", own="openai-responses", others=("anthropic",)),
    # Gemini CLI on Anthropic too: a converted run aigate carries today.
    Agent("gemini-cli", "gemini", "read_file", own="gemini", others=("openai-chat", "anthropic")),
]
RUNS = [(a, t) for a in AGENTS for t in (a.own, *a.others)]

def model_for(agent: Agent, target: str) -> str:
    return f"{agent.name}-on-{target}"


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def agent_bin_dir() -> Path:
    """The CLIs' bin folder, installed (or found up to date) by setup_agents.sh; its
    `bin/` (the `node` the CLIs run on) goes first on their PATH."""
    dest = Path(os.environ.get("AIGATE_E2E_AGENTS") or REPO / "target" / "e2e-agents")
    r = subprocess.run(["bash", str(REPO / "tests/e2e/setup_agents.sh")], capture_output=True, text=True, timeout=SETUP_TIMEOUT, env={**os.environ, "AIGATE_E2E_AGENTS": str(dest)}, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"setup_agents.sh failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return dest / "node_modules" / ".bin"


@pytest.fixture(scope="module")
def agent_gateway(upstream_server: mu.MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One gateway for the module: a route per (agent, target), each to the mock with an
    upstream model carrying the `agent` token."""
    providers = [provider(name, extra["kind"], upstream_server.openai_url if extra["kind"] == "openai" else upstream_server.url, timeouts=AGENT_TIMEOUTS, **{k: v for k, v in extra.items() if k != "kind"}) for name, extra, _ in TARGETS.values()]
    models = [route(model_for(a, t), (TARGETS[t][0], f"up-agent-{a.name}-{t}")) for a, t in RUNS]
    g = Gateway(small_config(providers, models), tmp_path_factory.mktemp("agents-gw"), name="agents")
    g.start()
    yield g
    g.stop()


class _Trap(socketserver.ThreadingTCPServer):
    """A loopback HTTP(S) proxy that records each request line and refuses it: any
    traffic a CLI sends outside loopback lands here instead of the network."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.seen: list[str] = []
        super().__init__(("127.0.0.1", 0), _TrapHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _TrapHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.server.seen.append(self.rfile.readline(4096).decode("latin-1").strip())  # type: ignore[attr-defined]
        self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


@pytest.fixture
def trap() -> Iterator[_Trap]:
    t = _Trap()
    threading.Thread(target=t.serve_forever, daemon=True).start()
    yield t
    t.shutdown()
    t.server_close()


# ---------------------------------------------------------------------------- running a CLI


@dataclasses.dataclass
class Workspace:
    root: Path
    home: Path
    project: Path
    note: Path
    word: str


def make_workspace(tmp: Path) -> Workspace:
    home, project, tmpdir = tmp / "home", tmp / "project", tmp / "tmp"
    for d in (home, project, tmpdir):
        d.mkdir()
    word = f"amber-{secrets.token_hex(4)}"
    note = project / "note.txt"
    note.write_text(f"Notes for the release.\ncode word: {word}\n")
    return Workspace(tmp, home, project, note, word)


def base_env(ws: Workspace, trap: _Trap, bins: Path) -> dict:
    """A clean environment: nothing of the caller's (keys, config) leaks into the CLI."""
    loopback = "127.0.0.1,localhost"
    node_dir = bins.parent.parent / "bin"  # setup_agents.sh: the node the CLIs need
    env = {
        "PATH": f"{node_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(ws.home),
        "TMPDIR": str(ws.root / "tmp"),
        "XDG_CONFIG_HOME": str(ws.home / ".config"),
        "XDG_CACHE_HOME": str(ws.home / ".cache"),
        "XDG_DATA_HOME": str(ws.home / ".local/share"),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "NO_COLOR": "1",
        "CI": "1",
        "NO_PROXY": loopback,
        "no_proxy": loopback,
    }
    for v in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env[v] = trap.url
    return env


def claude_command(bins: Path, ws: Workspace, env: dict, gw: Gateway, model: str, prompt: str) -> list[str]:
    env.update(
        ANTHROPIC_BASE_URL=gw.url,
        ANTHROPIC_API_KEY=GW_KEY_A,
        # Side requests (titles, quota probes) stay on the same route.
        ANTHROPIC_SMALL_FAST_MODEL=model,
        ANTHROPIC_DEFAULT_HAIKU_MODEL=model,
        DISABLE_TELEMETRY="1",
        DISABLE_ERROR_REPORTING="1",
        DISABLE_AUTOUPDATER="1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        CLAUDE_CODE_IDE_SKIP_AUTO_INSTALL="1",
    )
    return [str(bins / "claude"), "-p", prompt, "--model", model, "--allowedTools", "Read", "--strict-mcp-config", "--no-session-persistence", "--output-format", "text"]


def codex_command(bins: Path, ws: Workspace, env: dict, gw: Gateway, model: str, prompt: str) -> list[str]:
    codex_home = ws.home / ".codex"
    codex_home.mkdir()
    # plugins off: otherwise codex syncs a curated plugin list from GitHub at start.
    (codex_home / "config.toml").write_text(
        f"""model = "{model}"
model_provider = "aigate"
check_for_update_on_startup = false

[analytics]
enabled = false

[features]
plugins = false

[model_providers.aigate]
name = "aigate"
base_url = "{gw.url}/v1"
env_key = "AIGATE_API_KEY"
wire_api = "responses"
"""
    )
    env.update(CODEX_HOME=str(codex_home), AIGATE_API_KEY=GW_KEY_A)
    return [str(bins / "codex"), "exec", "--skip-git-repo-check", "--ephemeral", "--color", "never", prompt]


def gemini_command(bins: Path, ws: Workspace, env: dict, gw: Gateway, model: str, prompt: str) -> list[str]:
    gemini_dir = ws.home / ".gemini"
    gemini_dir.mkdir()
    # The API-key auth type chosen in settings: with only GOOGLE_GEMINI_BASE_URL set,
    # Gemini CLI 0.61 picks its "gateway" auth type and then rejects it as invalid.
    settings = {
        "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": False}},
        "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
        "ide": {"enabled": False},
        "mcpServers": {},
    }
    (gemini_dir / "settings.json").write_text(json.dumps(settings))
    env.update(GEMINI_API_KEY=GW_KEY_A, GOOGLE_GEMINI_BASE_URL=gw.url)
    return [str(bins / "gemini"), "-p", prompt, "-m", model]


COMMANDS = {"claude-code": claude_command, "codex": codex_command, "gemini-cli": gemini_command}


@dataclasses.dataclass
class Run:
    returncode: int | None  # None: killed at RUN_TIMEOUT
    stdout: str
    stderr: str
    seconds: float

    def describe(self) -> str:
        return f"exit {self.returncode} after {self.seconds:.1f}s\n--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}"


def run_agent(argv: list[str], cwd: Path, env: dict) -> Run:
    t0 = time.monotonic()
    try:
        r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)
        return Run(r.returncode, r.stdout, r.stderr, time.monotonic() - t0)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode("utf-8", "replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode("utf-8", "replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        return Run(None, out, err, time.monotonic() - t0)


# ---------------------------------------------------------------------------- checks

_ACCESS_RE = re.compile(r"INFO access\] (.*)$", re.M)


def access_lines(log: str) -> list[dict]:
    """The gateway's text access lines as field dicts (values may be quoted)."""
    out = []
    for m in _ACCESS_RE.finditer(log):
        fields = dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', m.group(1)))
        out.append({k: v[1:-1] if v.startswith('"') else v for k, v in fields.items()})
    return out


def wait_access_lines(gw: Gateway, mark: int, at_least: int, timeout: float = 3.0) -> list[dict]:
    """The access lines written since `mark`, once there are `at_least` of them (a
    line is written after its answer ends) or `timeout` passed."""
    deadline = time.monotonic() + timeout
    while True:
        lines = access_lines(gw.log_text(mark))
        if len(lines) >= max(at_least, 1) or time.monotonic() >= deadline:
            return lines
        time.sleep(0.05)


def assert_no_gateway_key_upstream(reqs: list[mu.Recorded]) -> None:
    for r in reqs:
        assert r.credential == UPSTREAM_KEYS[0], f"request {r.seq} carried {r.credential!r}, not the provider key"
        leaked = [k for k, v in r.headers if GW_KEY_A in v] + [k for k, vs in r.query.items() if any(GW_KEY_A in v for v in vs)]
        assert not leaked, f"the gateway key reached the upstream in {leaked} of request {r.seq}"
        assert GW_KEY_A.encode() not in r.body, f"the gateway key is in the body of request {r.seq}"


def assert_scripted_turn(agent: Agent, ws: Workspace, views: list[UpstreamView]) -> None:
    """The mock's tool call, the CLI's tool result in the converted history, and the
    ids tying them together."""
    first = views[0]
    assert not first.results, f"the first request already holds tool results: {first.results}"
    assert any(agent.tool in json.dumps(t) for t in _declared_tools(first)), f"{agent.tool} not declared in the first request's tools"
    with_results = [v for v in views if v.results]
    assert with_results, f"no request carried the tool result back; requests: {[(v.format, len(v.history_calls)) for v in views]}"
    last = with_results[-1]
    calls = [c for c in last.history_calls if c.name == agent.tool]
    assert calls, f"the history lacks the {agent.tool} call: {last.history_calls}"
    assert str(ws.note) in json.dumps(calls[-1].args), f"the {agent.tool} call does not read {ws.note}: {calls[-1].args}"
    hits = [r for r in last.results if ws.word in r[2]]
    assert hits, f"the tool result does not hold the file's code word {ws.word}: {last.results}"
    call_id, name, _ = hits[-1]
    if call_id is not None or calls[-1].id is not None:
        assert call_id == calls[-1].id, f"tool result id {call_id} does not answer call {calls[-1].id}"
    if name is not None:
        assert name == agent.tool


def _declared_tools(v: UpstreamView) -> list:
    tools = v.body.get("tools") or []
    if v.format == "gemini":
        return [d for t in tools for d in t.get("functionDeclarations") or t.get("function_declarations") or []]
    return tools


# ---------------------------------------------------------------------------- the runs


@pytest.mark.parametrize("agent,target", RUNS, ids=[f"{a.name}->{t}" for a, t in RUNS])
def test_agent_cli(agent: Agent, target: str, agent_bin_dir: Path, agent_gateway: Gateway, upstream: mu.MockUpstream, trap: _Trap, tmp_path: Path, report_counts) -> None:
    ws = make_workspace(tmp_path)
    env = base_env(ws, trap, agent_bin_dir)
    model = model_for(agent, target)
    prompt = f"Read the file {ws.note} and tell me the code word it contains."
    argv = COMMANDS[agent.name](agent_bin_dir, ws, env, agent_gateway, model, prompt)
    mark = agent_gateway.log_size()

    run = run_agent(argv, ws.project, env)

    reqs = [upstream.wait_done(r) for r in upstream.requests]
    lines = wait_access_lines(agent_gateway, mark, len(reqs))
    report_counts(f"exit {run.returncode} in {run.seconds:.1f}s, {len(lines)} gateway requests, {len(reqs)} upstream")
    assert run.returncode is not None, f"{agent.name} did not finish within {RUN_TIMEOUT}s: {run.describe()}"
    assert not trap.seen, f"{agent.name} tried to reach the network: {trap.seen}"
    assert run.returncode == 0, f"{agent.name} failed: {run.describe()}\naccess: {lines}"
    assert f"The code word is {ws.word}." in run.stdout, f"the final answer lacks the file's code word: {run.describe()}"

    fmt = TARGETS[target][2]
    assert reqs, "the upstream received nothing"
    assert [r.format for r in reqs] == [fmt] * len(reqs), f"upstream formats {[r.format for r in reqs]}, want {fmt}"
    assert all(r.status == 200 for r in reqs), [(r.seq, r.status) for r in reqs]
    assert_no_gateway_key_upstream(reqs)
    views = [upstream_view(r) for r in reqs]
    assert all(v.stream for v in views), "every agent request is a stream"
    assert all(v.system for v in views), "the CLI's system prompt reaches the upstream in its own field"
    assert_scripted_turn(agent, ws, views)

    assert len(lines) == len(reqs), f"{len(lines)} gateway requests for {len(reqs)} upstream ones: {lines}"
    for a in lines:
        assert (a.get("ingress"), a.get("provider"), a.get("model"), a.get("status")) == (agent.ingress, TARGETS[target][0], model, "200"), a
    CONVERSION_CHECKS.get((agent.name, target), lambda views, lines: None)(views, lines)


def check_claude_code_on_chat(views: list[UpstreamView], lines: list[dict]) -> None:
    """Claude Code's mid-conversation system message stays a system message at its
    place (after the first user turn), and its `output_config.effort` is the effort."""
    for v in views:
        roles = [m.get("role") for m in v.body["messages"]]
        assert roles[0] == "system", roles
        assert "system" in roles[2:], f"the mid-conversation system message is gone: {roles}"
        assert v.body.get("reasoning_effort") in ("low", "medium", "high", "xhigh", "max"), v.body.get("reasoning_effort")
    for a in lines:
        assert "output_config" not in a.get("dropped", ""), a


def check_codex_on_anthropic(views: list[UpstreamView], lines: list[dict]) -> None:
    """Codex's namespace tool reaches Anthropic as its functions, flattened
    (`namespace__name`), and its web_search tool as Anthropic's own server tool; the
    cached-only switch Anthropic has no field for is named."""
    for v in views:
        tools = v.body["tools"]
        names = [t.get("name") for t in tools]
        assert any(n and n.startswith("multi_agent_v1__") for n in names), names
        assert not any(t.get("type") == "namespace" for t in tools), names
        assert {"type": "web_search_20250305", "name": "web_search"} in tools, tools
    for a in lines:
        assert re.search(r"tools\[\d+\]\.external_web_access", a.get("dropped", "")), a


# (agent, target) -> what its converted run must show beyond the scripted turn.
CONVERSION_CHECKS = {
    ("claude-code", "openai-chat"): check_claude_code_on_chat,
    ("codex", "anthropic"): check_codex_on_anthropic,
}
