"""Issue 7, "How it is shown": zero dropped requests across a SIGHUP reload, an upgrade
by SIGQUIT + `--upgrade`, and an upgrade by SIGHUP after the executable was replaced;
SIGTERM drains an in-flight stream, SIGINT exits fast.

A bounded load loop runs on loopback while the signals happen: client threads, each
with its own keep-alive connection pool as an SDK has, send non-streaming requests and
long streams (~7.5 s: 38 text deltas 180 ms apart) in the OpenAI Chat and Anthropic
formats. Every request must complete 200 with the exact answer; a stream must carry
every delta in order and end properly. Nothing is retried: a connection the gateway
closes under a request is a failure. Each test prints its counts (terminal summary
"counts").
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import yaml

from harness import FAST_TIMEOUTS, Gateway, aigate_bin, free_port, provider, route, small_config
from helpers import key_headers, metric_sum, parse_metrics, sse_events
from mock_upstream import MockUpstream, split_text

StartGateway = Callable[..., Gateway]

PIECES = 40  # at most this many text deltas in a long stream: one per word of the answer
LONG_MS = 180  # between stream events: ~40 events, 7-8 s per long stream
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu one two three four five six "
         "seven eight nine ten").split()
MAX_LOOP_SECONDS = 2 * 60  # hard bound on any one test's load loop, seconds
# Pingora's upgrade: the old process keeps accepting this long after sending its sockets.
CLOSE_TIMEOUT = 5.0
# Busy keep-alive clients during upgrades: each connection is reused within ms, so
# one closed under a client is likely to be hit.
UPGRADE_FAST = 4
# The old process drains this long after it stops accepting: a stream it began just
# before, and the one request its client may send next on that keep-alive
# connection (served there: see src/proxy/drain.rs), both complete.
GRACE = 12


def zd_config(mock: MockUpstream, tag: str, long_ms: int = LONG_MS, **top: Any) -> dict:
    """Four client models; `tag` ("a" or "b") picks the upstream model names, and "b"
    routes each format to the other provider kind (so a reload visibly changes both
    the target and the conversion)."""
    t = dict(FAST_TIMEOUTS, total_ms=20000)
    providers = [provider("oa", "openai", mock.openai_url, timeouts=t), provider("an", "anthropic", mock.url, timeouts=t)]
    chat_p, claude_p = ("oa", "an") if tag == "a" else ("an", "oa")
    long = f"long-pieces-{PIECES}-slow-{long_ms}"  # the mock's scenario
    models = [
        route("zd-chat", (chat_p, f"zd-{tag}-fast")),
        route("zd-chat-long", (chat_p, f"zd-{tag}-{long}")),
        route("zd-claude", (claude_p, f"zd-{tag}-fast")),
        route("zd-claude-long", (claude_p, f"zd-{tag}-{long}")),
    ]
    top.setdefault("grace_period_seconds", GRACE)
    return small_config(providers, models, **top)


# ----------------------------------------------------------------------------- the load loop


@dataclasses.dataclass
class Result:
    worker: str
    fmt: str
    stream: bool
    tag: str  # unique per request, in the prompt: finds the upstream record
    start: float
    end: float = 0.0
    first: float = 0.0  # streams: when the first bytes of the answer arrived
    error: str | None = None  # None: complete and correct


def _expected(tag: str) -> str:
    return "echo: " + tag + " " + " ".join(WORDS)


def _request(fmt: str, stream: bool, tag: str) -> tuple[str, dict]:
    text = tag + " " + " ".join(WORDS)
    if fmt == "openai-chat":
        return "/v1/chat/completions", {"model": "zd-chat-long" if stream else "zd-chat", "stream": stream, "messages": [{"role": "user", "content": text}]}
    return "/v1/messages", {"model": "zd-claude-long" if stream else "zd-claude", "stream": stream, "max_tokens": 256, "messages": [{"role": "user", "content": text}]}


def check_json(fmt: str, r: httpx.Response, tag: str) -> str | None:
    if r.status_code != 200:
        return f"status {r.status_code}: {r.text[:300]}"
    body = r.json()
    want = _expected(tag)
    if fmt == "openai-chat":
        ch = body["choices"][0]
        got, fin, want_fin = ch["message"]["content"], ch["finish_reason"], "stop"
    else:
        got, fin, want_fin = "".join(b.get("text", "") for b in body["content"]), body["stop_reason"], "end_turn"
    if got != want or fin != want_fin:
        return f"wrong answer: {got!r} ({fin}), wanted {want!r} ({want_fin})"
    return None


def check_stream(fmt: str, raw: str, tag: str) -> str | None:
    """Every delta, in order, and the format's proper end."""
    events = sse_events(raw)
    want = split_text(_expected(tag), PIECES)
    if fmt == "openai-chat":
        if not events or events[-1][1] != "[DONE]":
            return f"stream does not end with [DONE]: last events {events[-2:]}"
        chunks = [json.loads(d) for _, d in events[:-1]]
        deltas = [c["choices"][0]["delta"].get("content") for c in chunks if c.get("choices")]
        deltas = [d for d in deltas if d]
        finish = [c["choices"][0].get("finish_reason") for c in chunks if c.get("choices") and c["choices"][0].get("finish_reason")]
        if chunks[0]["choices"][0]["delta"].get("role") != "assistant":
            return f"first chunk has no assistant role: {chunks[0]}"
        if deltas != want or finish != ["stop"]:
            return f"deltas {deltas} / finish {finish}, wanted {want} / ['stop']"
        return None
    names = [n for n, _ in events]
    if names[:1] != ["message_start"] or names[-1:] != ["message_stop"]:
        return f"Anthropic stream from {names[:1]} to {names[-1:]}"
    deltas = [json.loads(d)["delta"].get("text") for n, d in events if n == "content_block_delta"]
    stops = [json.loads(d)["delta"].get("stop_reason") for n, d in events if n == "message_delta"]
    if deltas != want or stops != ["end_turn"]:
        return f"deltas {deltas} / stop {stops}, wanted {want} / ['end_turn']"
    return None


class LoadLoop:
    """Client threads until `stop()` (or MAX_LOOP_SECONDS, or `max_each` requests per thread)."""

    def __init__(self, gw: Gateway, fast: int = 2, long: int = 2, max_each: int = 20000, pause: float = 0.005):
        self.gw, self.max_each, self.pause = gw, max_each, pause
        self.results: list[Result] = []
        self.streaming: dict[str, float] = {}  # long worker -> first byte of its current stream
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._fast, args=(f"fast{i}",), daemon=True) for i in range(fast)]
        fmts = ["openai-chat", "anthropic"]
        self._threads += [threading.Thread(target=self._long, args=(f"long{i}", fmts[i % 2]), daemon=True) for i in range(long)]
        self._deadline = time.monotonic() + MAX_LOOP_SECONDS

    def start(self) -> "LoadLoop":
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> list[Result]:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=40)
            assert not t.is_alive(), "a load thread did not finish (a request hung)"
        return self.results

    def wait_fresh_stream(self, within: float = 0.4, timeout: float = 20.0) -> None:
        """Until some long stream has just begun (its first bytes came less than
        `within` s ago): a signal sent now finds it with most of its seconds to go."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            now = time.monotonic()
            with self._lock:
                if any(now - t < within for t in self.streaming.values()):
                    return
            time.sleep(0.01)
        raise AssertionError(f"no long stream began within {timeout}s")

    def _running(self, n: int) -> bool:
        return not self._stop.is_set() and n < self.max_each and time.monotonic() < self._deadline

    def _client(self) -> httpx.Client:
        # One pool per thread, keep-alive on, no retries: what an SDK client does.
        return httpx.Client(base_url=self.gw.url, timeout=httpx.Timeout(30.0), limits=httpx.Limits(max_connections=4, max_keepalive_connections=4))

    def _record(self, res: Result) -> None:
        res.end = time.monotonic()
        with self._lock:
            self.results.append(res)

    def _fast(self, name: str) -> None:
        n = 0
        with self._client() as c:
            while self._running(n):
                fmt = ("openai-chat", "anthropic")[n % 2]
                res = Result(name, fmt, False, f"tag-{name}-{n}", time.monotonic())
                path, body = _request(fmt, False, res.tag)
                try:
                    res.error = check_json(fmt, c.post(path, json=body, headers=key_headers(fmt)), res.tag)
                except (httpx.HTTPError, ValueError, KeyError, IndexError) as e:
                    res.error = f"{type(e).__name__}: {e}"
                self._record(res)
                n += 1
                time.sleep(self.pause)

    def _long(self, name: str, fmt: str) -> None:
        n = 0
        with self._client() as c:
            while self._running(n):
                res = Result(name, fmt, True, f"tag-{name}-{n}", time.monotonic())
                path, body = _request(fmt, True, res.tag)
                try:
                    with c.stream("POST", path, json=body, headers=key_headers(fmt)) as r:
                        chunks = []
                        for b in r.iter_bytes():
                            if not res.first:
                                res.first = time.monotonic()
                                with self._lock:
                                    self.streaming[name] = res.first
                            chunks.append(b)
                        raw = b"".join(chunks).decode()
                        res.error = f"status {r.status_code}: {raw[:300]}" if r.status_code != 200 else check_stream(fmt, raw, res.tag)
                except (httpx.HTTPError, ValueError, KeyError, IndexError) as e:
                    res.error = f"{type(e).__name__}: {e}"
                with self._lock:
                    self.streaming.pop(name, None)
                self._record(res)
                n += 1


def summarize(results: list[Result]) -> tuple[str, list[Result]]:
    failed = [r for r in results if r.error]
    parts = []
    for fmt in ("openai-chat", "anthropic"):
        for stream in (False, True):
            sel = [r for r in results if r.fmt == fmt and r.stream == stream]
            parts.append(f"{fmt}{' stream' if stream else ''} {sum(1 for r in sel if not r.error)}/{len(sel)}")
    return f"{len(results) - len(failed)}/{len(results)} requests complete and correct ({', '.join(parts)}), {len(failed)} failed", failed


def assert_no_failures(results: list[Result]) -> str:
    text, failed = summarize(results)
    assert results, "the load loop made no requests"
    assert not failed, text + "; first failures:\n" + "\n".join(f"{r.worker} {r.fmt} stream={r.stream} at +{r.start:.2f}s: {r.error}" for r in failed[:10])
    return text


def metrics(gw: Gateway) -> list:
    return parse_metrics(httpx.get(gw.admin_url + "/metrics", timeout=5).text)


def reloads(gw: Gateway, result: str) -> float:
    return metric_sum(metrics(gw), "aigate_config_reloads_total", result=result)


def wait_for(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def pid_running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie may linger if nothing reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stop_pid(pid: int) -> None:
    if not pid_running(pid):
        return
    os.kill(pid, signal.SIGINT)
    end = time.monotonic() + 5
    while pid_running(pid) and time.monotonic() < end:
        time.sleep(0.05)
    if pid_running(pid):
        os.kill(pid, signal.SIGKILL)


def upstream_models(mock: MockUpstream) -> dict[str, str]:
    """Request tag -> the upstream model the gateway asked for."""
    out = {}
    for rec in mock.requests:
        text = rec.body.decode("utf-8", "replace")
        i = text.find("tag-")
        if i >= 0:
            out[text[i : text.index(" ", i)]] = rec.model or ""
    return out


def spanning(results: list[Result], t: float) -> list[Result]:
    """Long streams that were in flight at time t."""
    return [r for r in results if r.stream and r.start < t < r.end]


# ----------------------------------------------------------------------------- reload


def test_reload_under_load_drops_nothing_and_switches_config(start_gateway: StartGateway, upstream: MockUpstream, report_counts):
    """Five SIGHUPs (four valid configs alternating the targets, one invalid file) under
    load: nothing fails; a request that starts after a reload is confirmed uses the new
    config, one that started before keeps the config it started with (streams in flight
    across a reload included); the invalid file is counted and changes nothing."""
    # No drain needed at the end (the loop has stopped): a short grace keeps teardown quick.
    # Streams of ~3 s (70 ms apart) here: each crosses a reload or two, and streams
    # start under every config.
    gw = start_gateway(zd_config(upstream, "a", long_ms=70, grace_period_seconds=1))
    assert gw.proc is not None
    pid = gw.proc.pid
    loop = LoadLoop(gw).start()
    time.sleep(1.5)
    # (tag in force after this step, SIGHUP sent at, reload confirmed at)
    steps: list[tuple[str, float, float]] = []
    active = "a"
    for tag in ("b", "a", "invalid", "b", "a"):
        ok0, err0 = reloads(gw, "ok"), reloads(gw, "error")
        if tag == "invalid":
            gw.config_path.write_text(gw.config_path.read_text() + "\nnot_a_key: 1\n")
        else:
            gw.config = zd_config(upstream, tag, long_ms=70, grace_period_seconds=1)
            gw.write_config()
        loop.wait_fresh_stream(within=0.5)  # so a stream is in flight across this reload
        sent = time.monotonic()
        os.kill(gw.proc.pid, signal.SIGHUP)
        if tag == "invalid":
            wait_for(lambda: reloads(gw, "error") == err0 + 1, 10, "the invalid config to be rejected")
            assert reloads(gw, "ok") == ok0
        else:
            wait_for(lambda: reloads(gw, "ok") == ok0 + 1, 10, f"reload to config {tag}")
            active = tag
        steps.append((active, sent, time.monotonic()))
        time.sleep(0.8)
    results = loop.stop()
    assert gw.alive and gw.proc.pid == pid, "a reload must not replace the process"
    text = assert_no_failures(results)
    streams_b = [r for r in results if r.stream and upstream_models(upstream).get(r.tag, "").startswith("zd-b-")]
    assert streams_b, "no long stream ran under config b (converted)"
    assert "config reload rejected" in gw.log_text() and "not_a_key" in gw.log_text()

    # Which config served each request: the upstream model carries the tag.
    seen = upstream_models(upstream)
    exact = 0
    crossings = [0] * len(steps)  # per reload: streams answering before it and ending after it
    for r in results:
        # The gateway picked the config between the request's start and the first
        # byte of its answer: the config in force at the start, or one a reload
        # under way during that span brought in.
        picked_by = r.first or r.end
        allowed = {"a"}
        for tag, sent, confirmed in steps:
            if r.start >= confirmed:
                allowed = {tag}
        allowed |= {tag for tag, sent, confirmed in steps if confirmed > r.start and sent < picked_by}
        got = seen.get(r.tag, "")
        assert any(got.startswith(f"zd-{t}-") for t in allowed), f"{r.worker} {r.tag}: config {allowed} was in force from its start {r.start:.3f} to its first byte {picked_by:.3f}, but it went to upstream model {got!r}; reloads (config, SIGHUP sent, confirmed): {[(t, round(a, 3), round(b, 3)) for t, a, b in steps]}"
        exact += len(allowed) == 1
        if r.stream:
            for i, (_, sent, confirmed) in enumerate(steps):
                if r.first < sent and r.end > confirmed:
                    crossings[i] += 1
    assert all(crossings), f"long streams in flight across each reload: {crossings}; each reload should have had one; streams {[(r.tag, round(r.start, 2), round(r.first, 2), round(r.end, 2)) for r in results if r.stream]}, reloads {[(t, round(a, 2), round(b, 2)) for t, a, b in steps]}"
    report_counts(f"{text}; 5 SIGHUPs (4 reloads, 1 invalid file rejected); every request went to the config in force when it started ({exact} started clear of any reload, {len(results) - exact} during one); long streams in flight across each reload {crossings}, each finished on the config it started with")


# ----------------------------------------------------------------------------- upgrades


def _upgrade_outcome(gw: Gateway, old: subprocess.Popen, new_pid: int, loop: LoadLoop, signal_at: float, pid_file: Path) -> str:
    """Wait for the hand-over (the new pid in the pid file: written once the new
    process holds the sockets) and for the old process to drain and exit; load the new
    one a moment more; check that nothing failed and what each process did."""
    wait_for(lambda: read_pid(pid_file) == new_pid, 15, "the new process's pid in the pid file")
    handed = time.monotonic()
    code = old.wait(timeout=CLOSE_TIMEOUT + GRACE + 15)
    exited = time.monotonic()
    assert code == 0, f"the old process exited with {code}"
    time.sleep(1.5)
    results = loop.stop()
    assert read_pid(pid_file) == new_pid, f"pid file holds {read_pid(pid_file)}, not the new process {new_pid}"
    assert pid_running(new_pid)
    text = assert_no_failures(results)
    after = [r for r in results if r.start > exited]
    assert len(after) >= 10, f"only {len(after)} requests reached the new process after the old one exited"
    # The old process stops accepting CLOSE_TIMEOUT s after sending the sockets
    # (before `handed`); streams it was answering at the signal and still in flight
    # then were drained (and were checked complete above).
    drained = [r for r in spanning(results, handed + CLOSE_TIMEOUT + 0.2) if 0 < r.first < signal_at]
    assert drained, "no long stream of the old process was in flight when it stopped accepting"
    served_new = metric_sum(metrics(gw), "aigate_requests_total")
    assert served_new > 0
    log = gw.log_text()
    assert "listener sockets sent" in log, "the old process did not hand its sockets over"
    return (f"{text}; {len(spanning(results, signal_at))} long streams in flight at the signal, "
            f"{len(drained)} of them still streaming from the old process after it stopped accepting, "
            f"all completed; new pid in the pid file {handed - signal_at:.1f}s and old process exited "
            f"{exited - signal_at:.1f}s after the signal; {len(after)} requests after it exited; "
            f"the new process counted {served_new:.0f} requests")


def test_upgrade_by_sigquit_and_upgrade_flag_drops_nothing(start_gateway: StartGateway, upstream: MockUpstream, report_counts):
    """Pingora's sequence: a second process with `--upgrade` (same config, same
    upgrade_sock) waits for the sockets; SIGQUIT makes the old one send them and drain."""
    gw = start_gateway(zd_config(upstream, "a"))
    old = gw.proc
    assert old is not None
    pid_file = gw.workdir / f"{gw.name}.pid"
    assert read_pid(pid_file) == old.pid
    loop = LoadLoop(gw, fast=UPGRADE_FAST, pause=0.002).start()
    new = None
    try:
        time.sleep(1.0)
        # A long stream first, then the successor: pingora's `--upgrade`
        # waits only ~5 s for the sockets, and a fresh stream can take longer
        # to begin than that. Both sides retry for seconds, so SIGQUIT may
        # follow the successor's start at once (as an operator's script does).
        loop.wait_fresh_stream()
        with open(gw.log_path, "ab") as log:
            log.write(b"===== test: starting the successor with --upgrade\n")
            new = subprocess.Popen([aigate_bin(), "-c", str(gw.config_path), "--upgrade"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=gw.workdir)
        signal_at = time.monotonic()
        old.send_signal(signal.SIGQUIT)
        report_counts("SIGQUIT + --upgrade: " + _upgrade_outcome(gw, old, new.pid, loop, signal_at, pid_file))
    finally:
        loop.stop()
        if new is not None:
            new.send_signal(signal.SIGINT)
            try:
                new.wait(5)
            except subprocess.TimeoutExpired:
                new.kill()
                new.wait(5)


def test_upgrade_by_sighup_after_binary_replaced_drops_nothing(start_gateway: StartGateway, upstream: MockUpstream, tmp_path: Path, report_counts):
    """The gateway runs from a copy of the binary; the copy is replaced (new inode, as
    `install` or a package manager does) and one SIGHUP makes the running process check
    the config with the new executable, start it with `--upgrade` and hand over."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "aigate"
    shutil.copy2(aigate_bin(), exe)
    gw = start_gateway(zd_config(upstream, "a"), binary=str(exe))
    old = gw.proc
    assert old is not None
    pid_file = gw.workdir / f"{gw.name}.pid"
    assert read_pid(pid_file) == old.pid
    loop = LoadLoop(gw, fast=UPGRADE_FAST, pause=0.002).start()
    new_pid = None
    try:
        time.sleep(1.0)
        shutil.copy2(aigate_bin(), bindir / "aigate.new")
        os.replace(bindir / "aigate.new", exe)
        loop.wait_fresh_stream()
        signal_at = time.monotonic()
        os.kill(old.pid, signal.SIGHUP)
        new_pid = wait_for(lambda: (p := read_pid(pid_file)) != old.pid and p, 15, "the new process's pid in the pid file")
        assert pid_running(new_pid)
        cmdline = Path(f"/proc/{new_pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[0] == bytes(exe) and b"--upgrade" in cmdline, cmdline
        text = _upgrade_outcome(gw, old, new_pid, loop, signal_at, pid_file)
        assert "the executable was replaced" in gw.log_text()
        report_counts(f"SIGHUP after the binary was replaced: {text}")
    finally:
        loop.stop()
        if new_pid:
            stop_pid(new_pid)


# ----------------------------------------------------------------------------- SIGTERM / SIGINT


def _one_long_stream(gw: Gateway) -> tuple[threading.Thread, dict]:
    """A long OpenAI stream in a thread; `out` gets first (time of the first event),
    raw, error, end."""
    out: dict[str, Any] = {}
    started = threading.Event()

    def run() -> None:
        path, body = _request("openai-chat", True, "sig-0")
        raw = b""
        try:
            with httpx.stream("POST", gw.url + path, json=body, headers=key_headers("openai-chat"), timeout=30) as r:
                for b in r.iter_bytes():
                    raw += b
                    if not started.is_set():
                        out["first"] = time.monotonic()
                        started.set()
        except httpx.HTTPError as e:
            out["error"] = f"{type(e).__name__}: {e}"
        out["raw"], out["end"] = raw.decode("utf-8", "replace"), time.monotonic()
        started.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert started.wait(10), "the stream did not start"
    return t, out


def test_sigterm_drains_an_inflight_stream(start_gateway: StartGateway, upstream: MockUpstream, report_counts):
    gw = start_gateway(zd_config(upstream, "a"))
    proc = gw.proc
    assert proc is not None
    t, out = _one_long_stream(gw)
    term_at = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    t.join(20)
    assert not t.is_alive()
    assert "error" not in out, out.get("error")
    err = check_stream("openai-chat", out["raw"], "sig-0")
    assert err is None, err
    assert out["end"] - term_at > 3, "the stream should have had seconds left when SIGTERM came"
    code = proc.wait(GRACE + 10)
    assert code == 0
    report_counts(f"SIGTERM: the in-flight stream completed {out['end'] - term_at:.1f}s after the signal with all {PIECES} deltas; exit 0 after {time.monotonic() - term_at:.1f}s")


def test_sigint_exits_fast_even_with_a_stream_in_flight(start_gateway: StartGateway, upstream: MockUpstream, report_counts):
    gw = start_gateway(zd_config(upstream, "a", grace_period_seconds=30))
    proc = gw.proc
    assert proc is not None
    t, out = _one_long_stream(gw)
    int_at = time.monotonic()
    proc.send_signal(signal.SIGINT)
    code = proc.wait(10)
    took = time.monotonic() - int_at
    t.join(20)
    assert took < 2.0, f"SIGINT took {took:.1f}s (grace_period_seconds is 30: SIGINT must not wait for it)"
    assert check_stream("openai-chat", out["raw"], "sig-0") is not None, "the stream completed: SIGINT did not cut it"
    report_counts(f"SIGINT: exit {code} after {took:.2f}s with a stream in flight (cut, as fast shutdown means)")


# ----------------------------------------------------------------------------- listeners changed


def test_sighup_with_changed_listeners_upgrades_or_refuses(start_gateway: StartGateway, upstream: MockUpstream, report_counts):
    """A config that moves the listeners cannot be taken in place: SIGHUP hands over to
    a new process started with it. A listen address already taken is refused up front
    (the new process would fail only after taking the sockets), the old one serves on."""
    gw = start_gateway(zd_config(upstream, "a", grace_period_seconds=1))
    old = gw.proc
    assert old is not None
    pid_file = gw.workdir / f"{gw.name}.pid"
    base = yaml.safe_load(gw.config_text())

    def ask(port: int) -> str | None:
        path, body = _request("openai-chat", False, "tag-x-0")
        r = httpx.post(f"http://127.0.0.1:{port}{path}", json=body, headers=key_headers("openai-chat"), timeout=10)
        return check_json("openai-chat", r, "tag-x-0")

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = taken.getsockname()[1]
    try:
        err0 = reloads(gw, "error")
        gw.config_path.write_text(yaml.safe_dump(dict(base, listen=[base["listen"], f"127.0.0.1:{busy}"]), sort_keys=False))
        os.kill(old.pid, signal.SIGHUP)
        wait_for(lambda: reloads(gw, "error") == err0 + 1, 10, "the taken address to be refused")
        assert f"cannot listen on 127.0.0.1:{busy}" in gw.log_text()
        assert ask(gw.port) is None and read_pid(pid_file) == old.pid and gw.alive
    finally:
        taken.close()

    extra = free_port()
    gw.config_path.write_text(yaml.safe_dump(dict(base, listen=[base["listen"], f"127.0.0.1:{extra}"]), sort_keys=False))
    os.kill(old.pid, signal.SIGHUP)
    new_pid = wait_for(lambda: (p := read_pid(pid_file)) != old.pid and p, 15, "the new process's pid in the pid file")
    try:
        assert "the listeners changed" in gw.log_text()
        # The pid file is written once the sockets arrived, a moment before the new listener binds.
        def answers_on_extra() -> bool:
            try:
                return ask(extra) is None
            except httpx.ConnectError:
                return False

        wait_for(answers_on_extra, 10, "the new listener to answer")
        assert old.wait(CLOSE_TIMEOUT + 1 + 10) == 0
        assert ask(gw.port) is None and ask(extra) is None, "the new process serves both listeners"
        report_counts(f"a taken address refused with the old process serving on; a new listener: old pid {old.pid} handed over to {new_pid}, which answers on both")
    finally:
        stop_pid(new_pid)
