"""Fixtures for the end-to-end suite: the mock upstream and the real aigate binary.

- `upstream_server` (session): one MockUpstream on an ephemeral loopback port;
  `upstream` (per test): the same server with its request log and rules cleared.
- `gateway` (session): aigate started from `AIGATE_BIN` with `standard_config()`
  (every provider kind pointing at the mock), listening on ephemeral ports.
- `start_gateway(config)` (per test): more gateways with other configs, stopped after
  the test. `Gateway.restart(config)` swaps a running gateway's config.
- `run_aigate(*args)`: run the binary to completion (e.g. `--test -c FILE`).
- `report_counts(text)`: a test's counts (e.g. requests completed during an upgrade),
  printed in the terminal summary ("counts") so they show in `cargo test` output.

A gateway's stderr/stdout go to a log file; when a test fails, the part of every
gateway log written during that test is attached to the report ("aigate log").
Nothing leaves loopback: every URL is 127.0.0.1 and proxies are disabled.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest

from harness import ALL_GATEWAYS, UPSTREAM_KEYS, Gateway, aigate_bin, closed_port, standard_config
from mock_upstream import MockUpstream


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    item._aigate_log_marks = {id(g): g.log_size() for g in ALL_GATEWAYS}  # type: ignore[attr-defined]
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    marks = getattr(item, "_aigate_log_marks", {})
    for g in ALL_GATEWAYS:
        since = marks.get(id(g), 0)
        text = g.log_text(since)
        if not text.strip():
            continue
        lines = text.splitlines()
        if len(lines) > 300:
            lines = [f"... ({len(lines) - 300} earlier lines in {g.log_path})"] + lines[-300:]
        state = "running" if g.alive else "stopped"
        rep.sections.append((f"aigate log: {g.name} ({state}, {g.log_path})", "\n".join(lines)))


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[MockUpstream]:
    with MockUpstream(keys=UPSTREAM_KEYS) as m:
        yield m


@pytest.fixture
def upstream(upstream_server: MockUpstream) -> MockUpstream:
    upstream_server.reset()
    return upstream_server


@pytest.fixture(scope="session")
def dead_port() -> int:
    return closed_port()


@pytest.fixture(scope="session")
def session_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="aigate-e2e-"))
    yield d
    if not os.environ.get("AIGATE_E2E_KEEP"):
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def gateway(upstream_server: MockUpstream, dead_port: int, session_dir: Path) -> Iterator[Gateway]:
    g = Gateway(standard_config(upstream_server, dead_port), session_dir / "standard", name="standard")
    g.start()
    yield g
    g.stop()


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []

    def start(config: dict | str, env: dict | None = None, name: str | None = None, binary: str | None = None) -> Gateway:
        g = Gateway(config, tmp_path / f"gw{len(started)}", env=env, name=name or f"extra{len(started)}", binary=binary)
        started.append(g)
        return g.start()

    yield start
    for g in started:
        g.stop()


@pytest.fixture
def run_aigate(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    def run(*args: str, env: dict | None = None, timeout: float = 30.0) -> subprocess.CompletedProcess:
        return subprocess.run([aigate_bin(), *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}, cwd=tmp_path, stdin=subprocess.DEVNULL)

    return run


# ---------------------------------------------------------------------------- counts in the summary

_COUNTS: list[tuple[str, str]] = []


@pytest.fixture
def report_counts(request: pytest.FixtureRequest, record_property: Callable[[str, object], None]) -> Callable[[str], None]:
    def report(text: str) -> None:
        _COUNTS.append((request.node.nodeid, text))
        record_property("counts", text)
        print(f"[counts] {request.node.name}: {text}", file=sys.stderr)

    return report


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001 (pytest hook)
    if not _COUNTS:
        return
    terminalreporter.section("counts")
    for nodeid, text in _COUNTS:
        terminalreporter.write_line(f"{nodeid}: {text}")
