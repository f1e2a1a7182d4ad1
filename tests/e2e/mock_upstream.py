#!/usr/bin/env python3
"""Mock LLM provider upstream for aigate's end-to-end tests and benchmarks.

One threaded HTTP/1.1 server (keep-alive; Content-Length or chunked framing;
every SSE event written and flushed on its own) serves the four provider wire
formats on their real paths:

  OpenAI      POST .../v1/chat/completions, .../v1/completions (legacy), .../v1/responses,
              .../v1/embeddings, GET .../v1/models   auth: Authorization: Bearer <k>
  Anthropic   POST .../v1/messages, .../v1/messages/count_tokens
                                                     auth: x-api-key + anthropic-version
  Gemini      POST .../v1beta/models/{m}:generateContent, :streamGenerateContent
              (SSE with ?alt=sse, CRLF event ends; JSON array without), :embedContent,
              :batchEmbedContents, :countTokens      auth: x-goog-api-key or ?key=

The counting endpoints answer `count_words` of the prompt (the words of every string
value, plus 3) and refuse what the real ones refuse (Anthropic: fields other than
model/messages/system/tools/tool_choice/thinking/mcp_servers; Gemini: both or neither
of `contents` and `generateContentRequest`, or the latter without its `models/...`).

Paths are matched by suffix, so a provider `base_url` with a path prefix
(`http://127.0.0.1:N/openai/v1`) works; the recorded request keeps the full path.

Behaviour is chosen by the model name the request asks for (so any SDK, and any
gateway route, can drive it). Tokens may be combined (`gpt-think-tools-slow`):

  (default)            text answer "echo: <last user text>" with usage (USAGE)
  tools                two parallel tool calls when the request declares tools and
                       the last turn is not a tool result (one call only when the
                       request forces one declared tool by name: tool_choice /
                       toolConfig allowedFunctionNames; none when tool_choice is
                       none / mode NONE); otherwise a text answer
                       "tool results: r1; r2" summarising the latest tool results
  think                reasoning first (Anthropic signed thinking block, OpenAI-chat
                       `reasoning_content`, Responses reasoning item, Gemini thought
                       part + thoughtSignature), then the answer (USAGE_THINK; the
                       reasoning count in each format's field, Anthropic
                       `output_tokens_details.thinking_tokens` included)
  length               the answer is cut by the token limit (length / max_tokens /
                       incomplete / MAX_TOKENS)
  slow[-MS]            MS ms (default 300) between stream events (and before a
                       non-stream body)
  pieces-N             the answer text streams in up to N deltas (default 4), cut at
                       spaces: with slow-MS a long stream (e.g. pieces-30-slow-100)
  stall-MS             one pause of MS ms after the first stream event (before a
                       non-stream body): a quiet stream, e.g. long reasoning
  corpus:<fmt>/<case>  replay tests/corpus/<fmt>/<case> byte for byte (status and
                       content type from meta.json); `corpus.<fmt>.<case>` also works
                       (URL-friendly, for Gemini's model-in-path)
  fail-<status>[-retry-<s>]  the provider's own error body for that status
                       (429, 500, 503, 529, ...), with `Retry-After: s` when given
  echokey              with fail-<status>: the error message quotes the credential the
                       request carried, whole (as some OpenAI-compatible servers do)
  reset                the connection is reset (RST) before any response byte
  accept-close         the request is read, then the connection closed (FIN), no response
  hang[-MS]            no response for MS ms (default 60000), then close
  die-after-<n>        a stream stops after n events: the connection closes without the
                       terminating chunk (non-stream: half the body, then close)
  error-after-<n>      a stream sends n events, then the format's in-stream error
                       event (Anthropic `event: error` overloaded_error, Responses
                       `response.failed`, OpenAI chat `data: {"error":..}`, Gemini error
                       object), then ends cleanly
  nousage              streams carry no usage (OpenAI chat ignores include_usage, as
                       some OpenAI-compatible servers do; Responses ends with usage null)
  agent                a scripted agent turn (tests/e2e/test_agents.py): when the
                       request declares a file-reading tool (Claude Code `Read`,
                       Gemini CLI `read_file`, Codex `shell` / `exec_command`) and
                       the last user text names an absolute `*.txt` path, one call
                       of that tool reading the file; when the last turn holds tool
                       results, "The code word is <w>." with <w> taken from a
                       `code word: <w>` line in those results; otherwise as default
  flaky-<pct>[-<status>]  each request fails with the provider's error for <status>
                       (default 500) with probability pct%, else answers normally
                       (seeded: `MockUpstream(seed=...)`)

While the mock waits (`slow` between stream events, `hang`), it watches the
connection: when the peer closes it, the request's `disconnected_at` is set and the
mock stops answering (a failed write marks it too).

`MockUpstream.go_down()` closes the listening socket (connects are refused) and the
idle keep-alive connections; requests already being answered finish, and a request
arriving later on a surviving connection is closed unanswered: not recorded, only
counted in `.dropped`. `come_up()` listens on the same port again (a flapping upstream).

Rules (`MockUpstream.add_rule`, or `POST /__mock/rules`) apply a scenario to requests
matching a credential / model / path, optionally only `times` times: e.g. the first
request with key sk-up-1 gets `fail-429-retry-1`.

Every request is recorded (method, path, query, headers, raw body, the credential it
carried, the model, what was answered, when each stream event was sent):
in-process via `MockUpstream.requests`, over HTTP via `GET /__mock/requests`;
`POST /__mock/reset` clears the log and the rules.

`MockUpstream(tls=ctx)` speaks HTTPS with that server-side `ssl.SSLContext` (`url` is
then https://...).

Standalone (benchmarks):  python3 tests/e2e/mock_upstream.py --port N --key K [--key K2]
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import json
import os
import random
import re
import select
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

# Usage every generated answer reports, in neutral terms. `input` includes `cached`
# (OpenAI prompt_tokens semantics); `output` includes `reasoning`.
USAGE = {"input": 21, "cached": 8, "output": 9, "reasoning": 0}
USAGE_THINK = {"input": 21, "cached": 8, "output": 30, "reasoning": 12}
USAGE_TOOLS = {"input": 48, "cached": 0, "output": 24, "reasoning": 0}
EMBED_DIMS = 8
ANTHROPIC_VERSION_REQUIRED = True

FORMATS = ("openai-chat", "openai-responses", "anthropic-messages", "gemini")


def corpus_dir() -> Path:
    """Where the recorded corpus lives: $AIGATE_CORPUS_DIR, else the repo's tests/corpus."""
    env = os.environ.get("AIGATE_CORPUS_DIR")
    candidates = [Path(env)] if env else []
    candidates += [REPO / "tests" / "corpus"]
    for c in candidates:
        if (c / "openai-chat").is_dir():
            return c
    return candidates[0]


# ---------------------------------------------------------------------------
# scenarios


@dataclasses.dataclass
class Scenario:
    kind: str = "echo"  # echo | tools | corpus
    think: bool = False
    tools: bool = False
    length: bool = False
    corpus: tuple[str, str] | None = None
    fail_status: int | None = None
    retry_after: str | None = None
    reset: bool = False
    accept_close: bool = False
    hang_ms: int | None = None
    die_after: int | None = None
    error_after: int | None = None
    delay_ms: int = 0
    flaky_pct: int | None = None
    flaky_status: int = 500
    stall_ms: int = 0
    no_usage: bool = False
    pieces: int = 4
    echo_key: bool = False
    agent: bool = False

    def merged(self, other: "Scenario") -> "Scenario":
        """`other`'s non-default fields win."""
        out = dataclasses.replace(self)
        default = Scenario()
        for f in dataclasses.fields(Scenario):
            v = getattr(other, f.name)
            if v != getattr(default, f.name):
                setattr(out, f.name, v)
        return out


_CORPUS_RE = re.compile(r"^(?:models/)?corpus[:.](?P<fmt>[a-z-]+)[/.](?P<case>[A-Za-z0-9_-]+)$")


def parse_scenario(model: str | None) -> Scenario:
    s = Scenario()
    m = (model or "").strip()
    cm = _CORPUS_RE.match(m)
    if cm:
        s.kind = "corpus"
        s.corpus = (cm.group("fmt"), cm.group("case"))
        return s
    low = m.lower()
    if "tools" in low:
        s.tools = True
    if "think" in low:
        s.think = True
    if re.search(r"(^|[^a-z])length($|[^a-z])", low):
        s.length = True
    if mm := re.search(r"fail-(\d{3})(?:-retry-(\d+))?", low):
        s.fail_status = int(mm.group(1))
        s.retry_after = mm.group(2)
    if re.search(r"(^|[^a-z])reset($|[^a-z])", low):
        s.reset = True
    if "accept-close" in low:
        s.accept_close = True
    if mm := re.search(r"(?:^|[^a-z])hang(?:-(\d+))?(?:$|[^a-z0-9])", low):
        s.hang_ms = int(mm.group(1) or 60000)
    if mm := re.search(r"die-after-(\d+)", low):
        s.die_after = int(mm.group(1))
    if mm := re.search(r"error-after-(\d+)", low):
        s.error_after = int(mm.group(1))
    if mm := re.search(r"(?:^|[^a-z])slow(?:-(\d+))?(?:$|[^a-z0-9])", low):
        s.delay_ms = int(mm.group(1) or 300)
    if mm := re.search(r"(?:^|[^a-z])stall-(\d+)", low):
        s.stall_ms = int(mm.group(1))
    if "nousage" in low:
        s.no_usage = True
    if "echokey" in low:
        s.echo_key = True
    if re.search(r"(^|[^a-z])agent($|[^a-z])", low):
        s.agent = True
    if mm := re.search(r"(?:^|[^a-z])pieces-(\d+)", low):
        s.pieces = max(1, int(mm.group(1)))
    if mm := re.search(r"flaky-(\d+)(?:-(\d{3}))?", low):
        s.flaky_pct = int(mm.group(1))
        s.flaky_status = int(mm.group(2) or 500)
    return s


@dataclasses.dataclass
class Rule:
    scenario: Scenario
    key: str | None = None
    model: str | None = None
    path: str | None = None  # suffix of the path
    times: int | None = None  # None: forever
    used: int = 0

    def matches(self, rec: "Recorded") -> bool:
        if self.times is not None and self.used >= self.times:
            return False
        if self.key is not None and rec.credential != self.key:
            return False
        if self.model is not None and rec.model != self.model:
            return False
        if self.path is not None and not rec.path.endswith(self.path):
            return False
        return True


# ---------------------------------------------------------------------------
# recorded requests


@dataclasses.dataclass
class Recorded:
    seq: int
    method: str
    path: str
    query: dict[str, list[str]]
    headers: list[tuple[str, str]]
    body: bytes
    framing: str  # content-length | chunked | none
    received_at: float  # time.monotonic() when the body was read
    received_wall: float
    format: str | None = None  # openai-chat | openai-responses | openai-embeddings | anthropic-messages | gemini | gemini-embeddings
    model: str | None = None
    stream: bool = False
    credential: str | None = None  # the provider key the request carried
    scenario: str | None = None
    status: int | None = None
    events_sent_at: list[float] = dataclasses.field(default_factory=list)  # monotonic, one per stream event
    response_bytes: bytearray = dataclasses.field(default_factory=bytearray)  # body sent (de-chunked)
    done: bool = False
    disconnected_at: float | None = None  # monotonic: the peer closed the connection before the answer ended
    raw_path: str = ""  # the path as it came on the request line (`path` is percent-decoded)

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    def to_dict(self) -> dict:
        try:
            body_text, body_b64 = self.body.decode("utf-8"), None
        except UnicodeDecodeError:
            body_text, body_b64 = None, base64.b64encode(self.body).decode()
        return {
            "seq": self.seq,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": body_text,
            "body_base64": body_b64,
            "body_len": len(self.body),
            "body_sha256": self.sha256,
            "framing": self.framing,
            "received_wall": self.received_wall,
            "format": self.format,
            "model": self.model,
            "stream": self.stream,
            "credential": self.credential,
            "scenario": self.scenario,
            "status": self.status,
            "events_sent_wall": [self.received_wall + (t - self.received_at) for t in self.events_sent_at],
            "response_len": len(self.response_bytes),
            "done": self.done,
            "disconnected_wall": None if self.disconnected_at is None else self.received_wall + (self.disconnected_at - self.received_at),
        }


# ---------------------------------------------------------------------------
# reading requests: a neutral view of the prompt


@dataclasses.dataclass
class Prompt:
    last_user_text: str = ""
    tools: list[tuple[str, dict]] = dataclasses.field(default_factory=list)  # (name, json schema)
    last_is_tool_result: bool = False
    tool_results: list[str] = dataclasses.field(default_factory=list)  # of the latest round
    include_usage: bool = False  # OpenAI chat stream_options.include_usage
    forced_tool: str | None = None  # tool_choice naming one tool (any format)
    no_tools: bool = False  # tool_choice none (any format)


def _text_of(content: Any) -> str:
    """Text of a content value in any format (string, list of parts/blocks)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        if isinstance(content.get("text"), str):
            return content["text"]
        return _text_of(content.get("content"))
    if isinstance(content, list):
        out = []
        for p in content:
            if isinstance(p, str):
                out.append(p)
            elif isinstance(p, dict) and p.get("type") in (None, "text", "input_text", "output_text") and isinstance(p.get("text"), str):
                out.append(p["text"])
        return "".join(out)
    return str(content)


def prompt_openai_chat(body: dict) -> Prompt:
    p = Prompt()
    msgs = body.get("messages") or []
    for t in body.get("tools") or []:
        fn = t.get("function") or {}
        if fn.get("name"):
            p.tools.append((fn["name"], fn.get("parameters") or {}))
    for m in msgs:
        if m.get("role") == "user":
            p.last_user_text = _text_of(m.get("content"))
    i = len(msgs)
    while i > 0 and msgs[i - 1].get("role") == "tool":
        i -= 1
    p.tool_results = [_text_of(m.get("content")) for m in msgs[i:]]
    p.last_is_tool_result = bool(p.tool_results)
    p.include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    tc = body.get("tool_choice")
    if isinstance(tc, dict) and tc.get("type") == "function":
        p.forced_tool = (tc.get("function") or {}).get("name")
    p.no_tools = tc == "none"
    return p


def prompt_openai_responses(body: dict) -> Prompt:
    p = Prompt()
    for t in body.get("tools") or []:
        if t.get("type") == "function" and t.get("name"):
            p.tools.append((t["name"], t.get("parameters") or {}))
    tc = body.get("tool_choice")
    if isinstance(tc, dict) and tc.get("type") == "function":
        p.forced_tool = tc.get("name")
    p.no_tools = tc == "none"
    inp = body.get("input")
    if isinstance(inp, str):
        p.last_user_text = inp
        return p
    items = inp or []
    for it in items:
        if it.get("role") == "user":
            p.last_user_text = _text_of(it.get("content"))
    i = len(items)
    while i > 0 and items[i - 1].get("type") == "function_call_output":
        i -= 1
    p.tool_results = [_text_of(it.get("output")) for it in items[i:]]
    p.last_is_tool_result = bool(p.tool_results)
    return p


def prompt_anthropic(body: dict) -> Prompt:
    p = Prompt()
    for t in body.get("tools") or []:
        if t.get("name") and (t.get("type") in (None, "custom")):
            p.tools.append((t["name"], t.get("input_schema") or {}))
    tc = body.get("tool_choice")
    if isinstance(tc, dict) and tc.get("type") == "tool":
        p.forced_tool = tc.get("name")
    p.no_tools = isinstance(tc, dict) and tc.get("type") == "none"
    msgs = body.get("messages") or []
    for m in msgs:
        if m.get("role") != "user":
            continue
        c = m.get("content")
        if isinstance(c, str):
            p.last_user_text = c
        else:
            text = "".join(b.get("text", "") for b in c or [] if b.get("type") == "text")
            if text:
                p.last_user_text = text
    if msgs and msgs[-1].get("role") == "user" and isinstance(msgs[-1].get("content"), list):
        res = [b for b in msgs[-1]["content"] if b.get("type") == "tool_result"]
        p.tool_results = [_text_of(b.get("content")) for b in res]
        p.last_is_tool_result = bool(res)
    return p


def prompt_gemini(body: dict) -> Prompt:
    p = Prompt()
    for t in body.get("tools") or []:
        for d in t.get("functionDeclarations") or t.get("function_declarations") or []:
            if d.get("name"):
                # The REST API takes proto JSON: camelCase or snake_case field names.
                p.tools.append((d["name"], d.get("parameters") or d.get("parametersJsonSchema") or d.get("parameters_json_schema") or {}))
    fcc = (body.get("toolConfig") or body.get("tool_config") or {})
    fcc = fcc.get("functionCallingConfig") or fcc.get("function_calling_config") or {}
    allowed = fcc.get("allowedFunctionNames") or fcc.get("allowed_function_names") or []
    if str(fcc.get("mode", "")).upper() == "ANY" and len(allowed) == 1:
        p.forced_tool = allowed[0]
    p.no_tools = str(fcc.get("mode", "")).upper() == "NONE"
    contents = body.get("contents") or []
    for c in contents:
        if c.get("role", "user") == "user":
            text = "".join(pt.get("text", "") for pt in c.get("parts") or [] if "text" in pt)
            if text:
                p.last_user_text = text
    if contents:
        frs = [pt.get("functionResponse") or pt.get("function_response") for pt in contents[-1].get("parts") or []]
        frs = [f for f in frs if f]
        for f in frs:
            r = f.get("response")
            if isinstance(r, dict) and len(r) == 1 and isinstance(next(iter(r.values())), str):
                p.tool_results.append(next(iter(r.values())))
            else:
                p.tool_results.append(json.dumps(r, sort_keys=True))
        p.last_is_tool_result = bool(frs)
    return p


# ---------------------------------------------------------------------------
# the answer, format-neutral


@dataclasses.dataclass
class Reply:
    text: str
    tool_calls: list[tuple[str, dict]]  # (name, arguments)
    thinking: str | None
    usage: dict
    length: bool = False
    pieces: int = 4  # text deltas in a stream


def make_args(schema: dict, i: int) -> dict:
    """Deterministic arguments for call number i (0-based) that fit a JSON schema."""
    args: dict[str, Any] = {}
    props = (schema or {}).get("properties") or {}
    for name, s in props.items():
        s = s or {}
        t = s.get("type")
        if isinstance(t, list):
            t = next((x for x in t if x != "null"), "string")
        t = (t or "string").lower()
        if s.get("enum"):
            v: Any = s["enum"][i % len(s["enum"])]
        elif t in ("integer", "number"):
            v = i + 1
        elif t == "boolean":
            v = i % 2 == 0
        elif t == "array":
            v = []
        elif t == "object":
            v = {}
        else:
            v = f"{name}-{i + 1}"
        args[name] = v
    return args


def thinking_for(prompt: Prompt) -> str:
    return f"The user said: {prompt.last_user_text}. I will answer briefly."


# Each agent CLI's own file-reading tool, in order of preference.
AGENT_READ_TOOLS = ("Read", "read_file", "shell", "shell_command", "exec_command")
_AGENT_PATH_RE = re.compile(r"(/[\w./-]+\.txt)\b")
_AGENT_WORD_RE = re.compile(r"code word: ([\w-]+)")


def agent_read_args(schema: dict, path: str) -> dict:
    """Arguments that make a file-reading (or shell) tool read `path`, from its schema."""
    props = (schema or {}).get("properties") or {}
    for key in ("file_path", "absolute_path", "path"):
        if key in props:
            return {key: path}
    for key in ("command", "cmd"):
        if key in props:
            as_list = (props[key] or {}).get("type") == "array"
            return {key: ["cat", path] if as_list else f"cat {path}"}
    raise ValueError(f"mock upstream: no path or command argument in the read tool's schema {props}")


def agent_reply(prompt: Prompt, usage: dict) -> Reply | None:
    """The scripted agent turn (`agent` token); None when the request is not part of it."""
    if prompt.last_is_tool_result:
        joined = "\n".join(prompt.tool_results)
        m = _AGENT_WORD_RE.search(joined)
        text = f"The code word is {m.group(1)}." if m else f"No code word in the tool result: {joined[:200]}"
        return Reply(text, [], None, usage)
    tools = dict(prompt.tools)
    name = next((t for t in AGENT_READ_TOOLS if t in tools), None)
    path = _AGENT_PATH_RE.search(prompt.last_user_text)
    if name is None or path is None:
        return None
    return Reply("", [(name, agent_read_args(tools[name], path.group(1)))], None, dict(USAGE_TOOLS))


def make_reply(sc: Scenario, prompt: Prompt) -> Reply:
    if sc.agent and (scripted := agent_reply(prompt, dict(USAGE))):
        return scripted
    thinking = thinking_for(prompt) if sc.think else None
    usage = dict(USAGE_THINK if sc.think else USAGE)
    if sc.tools and prompt.tools and not prompt.last_is_tool_result and not prompt.no_tools:
        calls = []
        forced = [t for t in prompt.tools if t[0] == prompt.forced_tool]
        for i in range(1 if forced else 2):
            name, schema = forced[0] if forced else prompt.tools[i % len(prompt.tools)]
            calls.append((name, make_args(schema, i)))
        u = dict(USAGE_TOOLS)
        if sc.think:
            u["output"] += USAGE_THINK["reasoning"]
            u["reasoning"] = USAGE_THINK["reasoning"]
        return Reply("", calls, thinking, u)
    if prompt.last_is_tool_result:
        text = "tool results: " + "; ".join(prompt.tool_results)
    else:
        text = "echo: " + (prompt.last_user_text or "(no text)")
    return Reply(text, [], thinking, usage, length=sc.length, pieces=sc.pieces)


def split_text(text: str, n: int = 4) -> list[str]:
    """Split into up to n pieces at spaces (pieces keep their spaces)."""
    words = re.split(r"(?<= )", text)
    if len(words) <= 1:
        return [text] if text else []
    size = max(1, -(-len(words) // n))
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


def split_json(s: str) -> list[str]:
    """Argument deltas: the JSON text cut into 3 pieces (cuts inside strings are fine)."""
    if len(s) < 6:
        return [s]
    a, b = len(s) // 3, 2 * len(s) // 3
    return [s[:a], s[a:b], s[b:]]


def _hid(seq: int, i: int, n: int = 24, alphabet: str = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") -> str:
    h = int.from_bytes(hashlib.sha256(f"{seq}:{i}".encode()).digest(), "big")
    out = []
    for _ in range(n):
        h, r = divmod(h, len(alphabet))
        out.append(alphabet[r])
    return "".join(out)


def signature_for(text: str) -> str:
    return base64.b64encode(b"sig:" + hashlib.sha256(text.encode()).digest() * 2).decode()


def embedding_for(text: str) -> list[float]:
    """The vector the mock returns for a text (float32-exact values)."""
    d = hashlib.sha256(text.encode()).digest()
    return [struct.unpack("<f", struct.pack("<f", (d[i] - 128) / 128.0))[0] for i in range(EMBED_DIMS)]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


# ---------------------------------------------------------------------------
# OpenAI Chat Completions


def oa_usage(u: dict) -> dict:
    return {
        "prompt_tokens": u["input"],
        "completion_tokens": u["output"],
        "total_tokens": u["input"] + u["output"],
        "prompt_tokens_details": {"cached_tokens": u["cached"], "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": u["reasoning"],
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _oa_tool_calls(seq: int, r: Reply) -> list[dict]:
    return [
        {"id": "call_" + _hid(seq, i), "type": "function", "function": {"name": n, "arguments": _dumps(a)}}
        for i, (n, a) in enumerate(r.tool_calls)
    ]


def _oa_finish(r: Reply) -> str:
    return "tool_calls" if r.tool_calls else ("length" if r.length else "stop")


def openai_chat_json(seq: int, model: str, r: Reply) -> dict:
    msg: dict[str, Any] = {"role": "assistant", "content": r.text or None, "refusal": None, "annotations": []}
    if r.thinking is not None:
        msg["reasoning_content"] = r.thinking
    if r.tool_calls:
        msg["tool_calls"] = _oa_tool_calls(seq, r)
    return {
        "id": "chatcmpl-" + _hid(seq, 99, 29),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": msg, "logprobs": None, "finish_reason": _oa_finish(r)}],
        "usage": oa_usage(r.usage),
        "service_tier": "default",
        "system_fingerprint": "fp_mock0001",
    }


def openai_chat_events(seq: int, model: str, r: Reply, include_usage: bool) -> list[bytes]:
    cid, created = "chatcmpl-" + _hid(seq, 99, 29), int(time.time())
    n = [0]

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        n[0] += 1
        c: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": "fp_mock0001",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            c["usage"] = None
        c["obfuscation"] = _hid(seq, 1000 + n[0], 4 + n[0] % 7)
        return b"data: " + _dumps(c).encode() + b"\n\n"

    out = [chunk({"role": "assistant", "content": "", "refusal": None})]
    if r.thinking is not None:
        for piece in split_text(r.thinking):
            out.append(chunk({"reasoning_content": piece}))
    for piece in split_text(r.text, r.pieces):
        out.append(chunk({"content": piece}))
    for i, tc in enumerate(_oa_tool_calls(seq, r)):
        out.append(chunk({"tool_calls": [{"index": i, "id": tc["id"], "type": "function", "function": {"name": tc["function"]["name"], "arguments": ""}}]}))
        for piece in split_json(tc["function"]["arguments"]):
            out.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
    out.append(chunk({}, _oa_finish(r)))
    if include_usage:
        u = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": "fp_mock0001",
            "choices": [],
            "usage": oa_usage(r.usage),
            "obfuscation": "x1",
        }
        out.append(b"data: " + _dumps(u).encode() + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return out


# ---------------------------------------------------------------------------
# OpenAI Responses


def resp_usage(u: dict) -> dict:
    return {
        "input_tokens": u["input"],
        "input_tokens_details": {"cached_tokens": u["cached"]},
        "output_tokens": u["output"],
        "output_tokens_details": {"reasoning_tokens": u["reasoning"]},
        "total_tokens": u["input"] + u["output"],
    }


def _resp_items(seq: int, r: Reply, req: dict) -> list[dict]:
    items: list[dict] = []
    if r.thinking is not None:
        item = {"id": "rs_" + _hid(seq, 50, 48), "type": "reasoning", "summary": [{"type": "summary_text", "text": r.thinking}]}
        if "reasoning.encrypted_content" in (req.get("include") or []):
            # Asked for (stateless callers): opaque reasoning state, as the API sends it.
            item["encrypted_content"] = "gAAAAA" + signature_for(r.thinking)
        items.append(item)
    if r.text:
        items.append(
            {
                "id": "msg_" + _hid(seq, 51, 48),
                "type": "message",
                "status": "completed",
                "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": r.text}],
                "role": "assistant",
            }
        )
    for i, (name, args) in enumerate(r.tool_calls):
        items.append(
            {
                "id": "fc_" + _hid(seq, 60 + i, 48),
                "type": "function_call",
                "status": "completed",
                "arguments": _dumps(args),
                "call_id": "call_" + _hid(seq, i),
                "name": name,
            }
        )
    return items


def openai_responses_json(seq: int, model: str, r: Reply, req: dict, status: str | None = None, output: list | None = None, with_usage: bool = True) -> dict:
    st = status or ("incomplete" if r.length else "completed")
    return {
        "id": "resp_" + _hid(seq, 98, 48),
        "object": "response",
        "created_at": int(time.time()),
        "status": st,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if st == "incomplete" else None,
        "instructions": req.get("instructions"),
        "max_output_tokens": req.get("max_output_tokens"),
        "max_tool_calls": None,
        "model": model,
        "output": _resp_items(seq, r, req) if output is None else output,
        "parallel_tool_calls": True,
        "previous_response_id": req.get("previous_response_id"),
        "prompt_cache_key": None,
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": None,
        "service_tier": "default",
        "store": req.get("store", True),
        "temperature": req.get("temperature", 1.0),
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": req.get("tool_choice", "auto"),
        "tools": req.get("tools") or [],
        "top_logprobs": 0,
        "top_p": req.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": resp_usage(r.usage) if with_usage else None,
        "user": None,
        "metadata": {},
    }


def openai_responses_events(seq: int, model: str, r: Reply, req: dict, with_usage: bool = True) -> list[bytes]:
    n = [0]
    out: list[bytes] = []

    def ev(typ: str, **fields: Any) -> None:
        obj = {"type": typ, "sequence_number": n[0], **fields}
        n[0] += 1
        out.append(b"event: " + typ.encode() + b"\ndata: " + _dumps(obj).encode() + b"\n\n")

    pending = openai_responses_json(seq, model, r, req, status="in_progress", output=[], with_usage=False)
    ev("response.created", response=pending)
    ev("response.in_progress", response=pending)
    for oi, item in enumerate(_resp_items(seq, r, req)):
        if item["type"] == "reasoning":
            added = {k: v for k, v in item.items() if k != "encrypted_content"}
            ev("response.output_item.added", output_index=oi, item={**added, "summary": []})
            text = item["summary"][0]["text"]
            ev("response.reasoning_summary_part.added", item_id=item["id"], output_index=oi, summary_index=0, part={"type": "summary_text", "text": ""})
            for piece in split_text(text):
                ev("response.reasoning_summary_text.delta", item_id=item["id"], output_index=oi, summary_index=0, delta=piece, obfuscation="ob")
            ev("response.reasoning_summary_text.done", item_id=item["id"], output_index=oi, summary_index=0, text=text)
            ev("response.reasoning_summary_part.done", item_id=item["id"], output_index=oi, summary_index=0, part={"type": "summary_text", "text": text})
            ev("response.output_item.done", output_index=oi, item=item)
        elif item["type"] == "message":
            text = item["content"][0]["text"]
            ev("response.output_item.added", output_index=oi, item={**item, "status": "in_progress", "content": []})
            ev("response.content_part.added", item_id=item["id"], output_index=oi, content_index=0, part={"type": "output_text", "annotations": [], "logprobs": [], "text": ""})
            for piece in split_text(text, r.pieces):
                ev("response.output_text.delta", item_id=item["id"], output_index=oi, content_index=0, delta=piece, logprobs=[], obfuscation="ob")
            ev("response.output_text.done", item_id=item["id"], output_index=oi, content_index=0, text=text, logprobs=[])
            ev("response.content_part.done", item_id=item["id"], output_index=oi, content_index=0, part=item["content"][0])
            ev("response.output_item.done", output_index=oi, item=item)
        else:
            ev("response.output_item.added", output_index=oi, item={**item, "status": "in_progress", "arguments": ""})
            for piece in split_json(item["arguments"]):
                ev("response.function_call_arguments.delta", item_id=item["id"], output_index=oi, delta=piece, obfuscation="ob")
            ev("response.function_call_arguments.done", item_id=item["id"], output_index=oi, arguments=item["arguments"])
            ev("response.output_item.done", output_index=oi, item=item)
    final = openai_responses_json(seq, model, r, req, with_usage=with_usage)
    ev("response.incomplete" if r.length else "response.completed", response=final)
    return out


# ---------------------------------------------------------------------------
# Anthropic Messages


def an_usage(u: dict, output: int | None = None) -> dict:
    out: dict[str, Any] = {
        "input_tokens": u["input"] - u["cached"],
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": u["cached"],
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": u["output"] if output is None else output,
        "service_tier": "standard",
    }
    if u["reasoning"] and output is None:
        # As the API reports thinking now (message_start, sent before any output, has none).
        out["output_tokens_details"] = {"thinking_tokens": u["reasoning"]}
    return out


def _an_delta_usage(u: dict) -> dict:
    out: dict[str, Any] = {"output_tokens": u["output"]}
    if u["reasoning"]:
        out["output_tokens_details"] = {"thinking_tokens": u["reasoning"]}
    return out


def _an_stop(r: Reply) -> str:
    return "tool_use" if r.tool_calls else ("max_tokens" if r.length else "end_turn")


def _an_blocks(seq: int, r: Reply) -> list[dict]:
    blocks: list[dict] = []
    if r.thinking is not None:
        blocks.append({"type": "thinking", "thinking": r.thinking, "signature": signature_for(r.thinking)})
    if r.text:
        blocks.append({"type": "text", "text": r.text})
    for i, (name, args) in enumerate(r.tool_calls):
        blocks.append({"type": "tool_use", "id": "toolu_01" + _hid(seq, i, 22), "name": name, "input": args})
    return blocks


def anthropic_json(seq: int, model: str, r: Reply) -> dict:
    return {
        "id": "msg_01" + _hid(seq, 97, 22),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _an_blocks(seq, r),
        "stop_reason": _an_stop(r),
        "stop_sequence": None,
        "usage": an_usage(r.usage),
    }


def anthropic_events(seq: int, model: str, r: Reply) -> list[bytes]:
    out: list[bytes] = []
    pad = [0]

    def ev(typ: str, obj: dict) -> None:
        # Anthropic pads most data objects with spaces before the closing brace.
        pad[0] += 1
        s = _dumps(obj)
        s = s[:-1] + " " * (pad[0] * 3 % 13) + "}"
        out.append(b"event: " + typ.encode() + b"\ndata: " + s.encode() + b"\n\n")

    msg = anthropic_json(seq, model, r)
    start = {**msg, "content": [], "stop_reason": None, "stop_sequence": None, "usage": an_usage(r.usage, output=1)}
    ev("message_start", {"type": "message_start", "message": start})
    for idx, b in enumerate(_an_blocks(seq, r)):
        if b["type"] == "thinking":
            ev("content_block_start", {"type": "content_block_start", "index": idx, "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
        elif b["type"] == "text":
            ev("content_block_start", {"type": "content_block_start", "index": idx, "content_block": {"type": "text", "text": ""}})
        else:
            ev("content_block_start", {"type": "content_block_start", "index": idx, "content_block": {"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}})
        if idx == 0:
            out.append(b'event: ping\ndata: {"type": "ping"}\n\n')
        if b["type"] == "thinking":
            for piece in split_text(b["thinking"]):
                ev("content_block_delta", {"type": "content_block_delta", "index": idx, "delta": {"type": "thinking_delta", "thinking": piece}})
            ev("content_block_delta", {"type": "content_block_delta", "index": idx, "delta": {"type": "signature_delta", "signature": b["signature"]}})
        elif b["type"] == "text":
            for piece in split_text(b["text"], r.pieces):
                ev("content_block_delta", {"type": "content_block_delta", "index": idx, "delta": {"type": "text_delta", "text": piece}})
        else:
            for piece in split_json(_dumps(b["input"])):
                ev("content_block_delta", {"type": "content_block_delta", "index": idx, "delta": {"type": "input_json_delta", "partial_json": piece}})
        ev("content_block_stop", {"type": "content_block_stop", "index": idx})
    ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": _an_stop(r), "stop_sequence": None}, "usage": _an_delta_usage(r.usage)})
    ev("message_stop", {"type": "message_stop"})
    return out


# ---------------------------------------------------------------------------
# Gemini


def ge_usage(u: dict, final: bool = True) -> dict:
    out: dict[str, Any] = {"promptTokenCount": u["input"]}
    if final:
        out["candidatesTokenCount"] = u["output"] - u["reasoning"]
    out["totalTokenCount"] = u["input"] + (u["output"] if final else 0)
    if u["cached"]:
        out["cachedContentTokenCount"] = u["cached"]
    out["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": u["input"]}]
    if u["cached"]:
        out["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": u["cached"]}]
    if u["reasoning"] and final:
        out["thoughtsTokenCount"] = u["reasoning"]
    return out


def _ge_parts(r: Reply) -> list[dict]:
    parts: list[dict] = []
    sig = signature_for(r.thinking) if r.thinking is not None else None
    if r.thinking is not None:
        parts.append({"text": r.thinking, "thought": True})
    if r.text:
        p: dict[str, Any] = {"text": r.text}
        if sig:
            p["thoughtSignature"] = sig
            sig = None
        parts.append(p)
    for name, args in r.tool_calls:
        p = {"functionCall": {"name": name, "args": args}}
        if sig:
            p["thoughtSignature"] = sig
            sig = None
        parts.append(p)
    return parts


def _ge_finish(r: Reply) -> str:
    return "MAX_TOKENS" if r.length else "STOP"


def gemini_json(seq: int, model: str, r: Reply) -> dict:
    return {
        "candidates": [{"content": {"parts": _ge_parts(r), "role": "model"}, "finishReason": _ge_finish(r), "index": 0}],
        "usageMetadata": ge_usage(r.usage),
        "modelVersion": model,
        "responseId": _hid(seq, 96, 23),
    }


def gemini_chunks(seq: int, model: str, r: Reply) -> list[dict]:
    rid = _hid(seq, 96, 23)
    chunks: list[dict] = []
    parts = _ge_parts(r)
    # Split text parts into pieces; other parts go out whole (real Gemini streams
    # function calls as complete parts).
    pieces: list[dict] = []
    for p in parts:
        if "text" in p and not p.get("thought"):
            texts = split_text(p["text"], r.pieces)
            for i, t in enumerate(texts):
                q = {"text": t}
                if i == 0 and "thoughtSignature" in p:
                    q["thoughtSignature"] = p["thoughtSignature"]
                pieces.append(q)
        else:
            pieces.append(p)
    for i, p in enumerate(pieces):
        last = i == len(pieces) - 1
        cand: dict[str, Any] = {"content": {"parts": [p], "role": "model"}}
        if last:
            cand["finishReason"] = _ge_finish(r)
        cand["index"] = 0
        chunks.append({"candidates": [cand], "usageMetadata": ge_usage(r.usage, final=last), "modelVersion": model, "responseId": rid})
    return chunks


def gemini_sse(chunk: dict) -> bytes:
    # Real Gemini: `": "` after keys, no space after commas, CRLF CRLF after each event.
    return b"data: " + json.dumps(chunk, ensure_ascii=False, separators=(",", ": ")).encode() + b"\r\n\r\n"


# ---------------------------------------------------------------------------
# provider errors


def _req_id(seq: int) -> str:
    return "req_011C" + _hid(seq, 77, 20)


def error_response(fmt: str, status: int, seq: int, message: str | None = None) -> tuple[int, dict]:
    """The provider's own error body for `status`, in format `fmt`."""
    if fmt.startswith("openai"):
        table = {
            400: ("invalid_request_error", None, "Invalid request."),
            401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
            404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
            429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
            500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
            503: ("server_error", None, "The engine is currently overloaded, please try again later"),
        }
        typ, code, msg = table.get(status, ("server_error", None, f"upstream error {status}"))
        return status, {"error": {"message": message or msg, "type": typ, "param": None, "code": code}}
    if fmt.startswith("anthropic"):
        table = {
            400: ("invalid_request_error", "Invalid request."),
            401: ("authentication_error", "invalid x-api-key"),
            403: ("permission_error", "Your API key does not have permission to use the specified resource."),
            404: ("not_found_error", "Not found."),
            429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
            500: ("api_error", "Internal server error"),
            529: ("overloaded_error", "Overloaded"),
        }
        typ, msg = table.get(status, ("api_error", f"upstream error {status}"))
        return status, {"type": "error", "error": {"type": typ, "message": message or msg}, "request_id": _req_id(seq)}
    table = {
        400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
        403: ("PERMISSION_DENIED", "The caller does not have permission."),
        404: ("NOT_FOUND", "Requested entity was not found."),
        429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
        500: ("INTERNAL", "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"),
        503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
        504: ("DEADLINE_EXCEEDED", "The request timed out. Please try again."),
    }
    st, msg = table.get(status, ("UNKNOWN", f"upstream error {status}"))
    return status, {"error": {"code": status, "message": message or msg, "status": st}}


def stream_error_event(fmt: str, seq: int) -> bytes:
    if fmt == "anthropic-messages":
        return b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"' + _req_id(seq).encode() + b'"}\n\n'
    if fmt == "openai-responses":
        obj = {"type": "response.failed", "sequence_number": 9999, "response": {"id": "resp_" + _hid(seq, 98, 48), "object": "response", "status": "failed", "error": {"code": "server_error", "message": "The server had an error while processing your request."}, "output": [], "usage": None}}
        return b"event: response.failed\ndata: " + _dumps(obj).encode() + b"\n\n"
    if fmt == "openai-chat":
        return b'data: {"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}\n\n'
    return gemini_sse({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}})


# ---------------------------------------------------------------------------
# the HTTP server


_GEMINI_RE = re.compile(r"^(?P<prefix>.*?)/models/(?P<model>.+):(?P<method>[A-Za-z]+)$")


class _Stop(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-upstream/1"
    sys_version = ""
    disable_nagle_algorithm = True
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.owner.verbose:
            sys.stderr.write("mock: " + (format % args) + "\n")

    # -- plumbing ---------------------------------------------------------

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            # In this connection's thread, not the accept loop (see _Server.get_request).
            self.request.do_handshake()
        super().setup()
        self.server.owner._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, False)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _read_body(self) -> tuple[bytes, str]:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            parts = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise _Stop()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers
                        t = self.rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts), "chunked"
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            return self.rfile.read(n), "content-length"
        return b"", "none"

    def _send_bytes(self, rec: Recorded | None, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if rec is not None:
            rec.status = status
            rec.response_bytes += body
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, rec: Recorded | None, status: int, obj: Any, headers: dict | None = None, content_type: str = "application/json", pretty: bool = False) -> None:
        body = (json.dumps(obj, indent=2, ensure_ascii=False) if pretty else _dumps(obj)).encode()
        self._send_bytes(rec, status, body, content_type, headers)

    def _wait(self, ms: int, rec: Recorded | None = None) -> None:
        """Sleep ms; with `rec`, watch the connection meanwhile and stop (marking
        `rec.disconnected_at`) as soon as the peer closes it."""
        if ms <= 0:
            return
        stopping = self.server.owner.stopping
        if rec is None:
            if stopping.wait(ms / 1000.0):
                raise _Stop()
            return
        end = time.monotonic() + ms / 1000.0
        while (left := end - time.monotonic()) > 0:
            if stopping.is_set():
                raise _Stop()
            if self._peer_closed(min(left, 0.05)):
                rec.disconnected_at = time.monotonic()
                raise _Stop()

    def _peer_closed(self, timeout: float) -> bool:
        """Within `timeout` s: did the peer close (FIN or RST) the connection? The
        request has been read whole, so anything readable now is the close."""
        conn = self.connection
        try:
            readable, _, _ = select.select([conn], [], [], timeout)
            if not readable:
                return False
            if isinstance(conn, ssl.SSLSocket):
                data = self._tls_read_one(conn)
                if data is None:
                    return False
            else:
                data = conn.recv(1, socket.MSG_PEEK)
        except (OSError, ValueError):
            return True
        if data:  # a pipelined request: not a close; don't spin on it
            time.sleep(timeout)
            return False
        return True

    @staticmethod
    def _tls_read_one(conn: ssl.SSLSocket) -> bytes | None:
        """TLS cannot peek: read a byte without blocking (None: only part of a
        record arrived). Nothing is pipelined after a whole request, so the byte
        is a close or stray."""
        conn.setblocking(False)
        try:
            return conn.recv(1)
        except (ssl.SSLWantReadError, BlockingIOError):
            return None
        finally:
            conn.setblocking(True)

    def _stream(self, rec: Recorded, status: int, content_type: str, events: list[bytes], sc: Scenario, headers: dict | None = None, fmt: str = "") -> None:
        """Chunked response, one chunk per event, each flushed; delays and faults per scenario."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        rec.status = status
        for i, ev in enumerate(events):
            if sc.die_after is not None and i >= sc.die_after:
                self._die()
                return
            if sc.error_after is not None and i >= sc.error_after:
                ev = stream_error_event(fmt, rec.seq)
                rec.response_bytes += ev
                self.wfile.write(b"%x\r\n%s\r\n" % (len(ev), ev))
                rec.events_sent_at.append(time.monotonic())
                break
            if i > 0:
                self._wait(sc.delay_ms, rec)
            if i == 1 and sc.stall_ms:
                self._wait(sc.stall_ms, rec)
            rec.response_bytes += ev
            self.wfile.write(b"%x\r\n%s\r\n" % (len(ev), ev))
            rec.events_sent_at.append(time.monotonic())
        self.wfile.write(b"0\r\n\r\n")

    def _die(self) -> None:
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _reset(self) -> None:
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    # -- dispatch -----------------------------------------------------------

    def _dispatch(self) -> None:
        owner = self.server.owner
        split = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(split.path)
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        try:
            body, framing = self._read_body()
        except (_Stop, ValueError, OSError):
            self.close_connection = True
            return

        if path.startswith("/__mock/"):
            return self._control(path, body)

        if not owner._begin(self.connection):
            # Down: as if this connection had been closed before the request came.
            self.close_connection = True
            return
        try:
            rec = owner._record(self.command, path, query, list(self.headers.items()), body, framing)
            rec.raw_path = split.path
        except BaseException:
            owner._end(self.connection)
            raise
        try:
            self._serve(rec, path, query, body)
        except _Stop:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            if rec.disconnected_at is None:
                rec.disconnected_at = time.monotonic()
        except Exception as e:  # a request shape the mock cannot read: answer 400 like a provider
            if rec.status is not None:
                raise
            _, err = error_response(rec.format or "openai", 400, rec.seq, f"mock upstream could not process the request: {type(e).__name__}: {e}")
            self._send_json(rec, 400, err)
        finally:
            owner._end(self.connection)  # before `done`: once done, the connection is idle
            rec.done = True

    def _control(self, path: str, body: bytes) -> None:
        owner = self.server.owner
        if path == "/__mock/requests" and self.command == "GET":
            return self._send_json(None, 200, [r.to_dict() for r in owner.requests])
        if path == "/__mock/reset" and self.command == "POST":
            owner.reset()
            return self._send_json(None, 200, {"ok": True})
        if path == "/__mock/rules" and self.command == "POST":
            spec = json.loads(body or b"{}")
            owner.add_rule(spec["scenario"], key=spec.get("key"), model=spec.get("model"), path=spec.get("path"), times=spec.get("times"))
            return self._send_json(None, 200, {"ok": True})
        if path == "/__mock/health":
            return self._send_json(None, 200, {"ok": True})
        return self._send_json(None, 404, {"error": f"unknown mock control path {path}"})

    def _classify(self, path: str) -> tuple[str | None, str | None, str | None]:
        """(format, model-from-path, gemini method)."""
        if path.endswith("/chat/completions"):
            return "openai-chat", None, None
        if path.endswith("/completions"):
            return "openai-completions", None, None
        if path.endswith("/messages/count_tokens"):
            return "anthropic-count", None, None
        if path.endswith("/responses"):
            return "openai-responses", None, None
        if path.endswith("/embeddings"):
            return "openai-embeddings", None, None
        if path.endswith("/models") and self.command == "GET":
            return "openai-models", None, None
        if path.endswith("/messages"):
            return "anthropic-messages", None, None
        m = _GEMINI_RE.match(path)
        if m:
            method = m.group("method")
            fmt = "gemini-embeddings" if method in ("embedContent", "batchEmbedContents") else "gemini-count" if method == "countTokens" else "gemini"
            return fmt, m.group("model"), method
        return None, None, None

    def _auth(self, rec: Recorded, fmt: str, query: dict) -> bool:
        """Check provider auth like the real API does; answer its error when it fails."""
        owner = self.server.owner
        keys = owner.keys
        if fmt.startswith("openai"):
            auth = rec.header("authorization") or ""
            cred = auth[7:].strip() if auth.lower().startswith("bearer ") else None
            rec.credential = cred
            if not cred:
                self._send_json(rec, 401, {"error": {"message": "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.", "type": "invalid_request_error", "param": None, "code": None}})
                return False
            if keys and cred not in keys:
                masked = cred[:3] + "*" * 4 + cred[-4:] if len(cred) > 8 else "*" * len(cred)
                self._send_json(rec, 401, {"error": {"message": f"Incorrect API key provided: {masked}. You can find your API key at https://platform.openai.com/account/api-keys.", "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}})
                return False
            return True
        if fmt.startswith("anthropic"):
            # x-api-key; current anthropic SDKs (2.x) send the API key as Bearer instead.
            cred = _anthropic_cred(rec)
            rec.credential = cred
            if not cred:
                self._send_json(rec, 401, {"type": "error", "error": {"type": "authentication_error", "message": "x-api-key header is required"}, "request_id": _req_id(rec.seq)})
                return False
            if keys and cred not in keys:
                self._send_json(rec, 401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}, "request_id": _req_id(rec.seq)})
                return False
            if ANTHROPIC_VERSION_REQUIRED and not rec.header("anthropic-version"):
                self._send_json(rec, 400, {"type": "error", "error": {"type": "invalid_request_error", "message": "anthropic-version: header is required"}, "request_id": _req_id(rec.seq)})
                return False
            return True
        # Gemini: x-goog-api-key header, or ?key= (both accepted by the real API).
        cred = rec.header("x-goog-api-key") or (query.get("key") or [None])[0]
        rec.credential = cred
        if not cred:
            self._send_json(rec, 403, {"error": {"code": 403, "message": "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.", "status": "PERMISSION_DENIED"}}, content_type="application/json; charset=UTF-8", pretty=True)
            return False
        if keys and cred not in keys:
            self._send_json(rec, 400, {"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]}}, content_type="application/json; charset=UTF-8", pretty=True)
            return False
        return True

    def _serve(self, rec: Recorded, path: str, query: dict, body: bytes) -> None:
        owner = self.server.owner
        fmt, path_model, gmethod = self._classify(path)
        rec.format = fmt
        if fmt is None:
            return self._send_json(rec, 404, {"error": {"message": f"mock upstream: no route for {self.command} {path}", "type": "invalid_request_error"}})

        req: dict = {}
        if self.command == "POST":
            try:
                req = json.loads(body) if body else {}
                if not isinstance(req, dict):
                    raise ValueError("not an object")
            except ValueError as e:
                if not self._auth(rec, fmt, query):
                    return
                _, err = error_response(fmt, 400, rec.seq, f"We could not parse the JSON body of your request. ({e})")
                return self._send_json(rec, 400, err)
        rec.model = path_model if path_model is not None else req.get("model")
        if fmt == "gemini":
            rec.stream = gmethod == "streamGenerateContent"
        else:
            rec.stream = bool(req.get("stream"))

        # Fault scenarios act before auth, like a broken network would.
        sc = parse_scenario(rec.model)
        sc = owner._apply_rules(rec, sc, self)
        rec.scenario = rec.model if rec.scenario is None else rec.scenario
        if sc.flaky_pct is not None and owner._roll(sc.flaky_pct):
            sc = dataclasses.replace(sc, fail_status=sc.flaky_status)
            rec.scenario += " +flaky"
        if sc.reset:
            return self._reset()
        if sc.accept_close:
            return self._die()
        if sc.hang_ms is not None:
            self._wait(sc.hang_ms, rec)
            return self._die()

        if not self._auth(rec, fmt, query):
            return
        if sc.fail_status:
            echoed = f"Incorrect API key provided: {rec.credential}." if sc.echo_key else None
            status, err = error_response(fmt, sc.fail_status, rec.seq, echoed)
            hdrs = {"Retry-After": sc.retry_after} if sc.retry_after else {}
            ct = "application/json; charset=UTF-8" if fmt.startswith("gemini") else "application/json"
            return self._send_json(rec, status, err, headers=hdrs, content_type=ct, pretty=fmt.startswith("gemini"))

        if fmt == "anthropic-count":
            return self._count_anthropic(rec, req)
        if fmt == "gemini-count":
            return self._count_gemini(rec, req)
        if fmt == "openai-completions":
            return self._completions(rec, req, sc)
        if fmt == "openai-models":
            return self._send_json(rec, 200, {"object": "list", "data": [{"id": m, "object": "model", "created": 1700000000, "owned_by": "mock"} for m in ("gpt-4o", "gpt-4o-mini")]})
        if fmt == "openai-embeddings":
            return self._embeddings_openai(rec, req)
        if fmt == "gemini-embeddings":
            return self._embeddings_gemini(rec, req, gmethod or "")
        if sc.kind == "corpus":
            return self._replay(rec, fmt, sc, query)

        if (sc.delay_ms or sc.stall_ms) and not rec.stream:
            self._wait(sc.delay_ms + sc.stall_ms, rec)
        model = rec.model or "unknown"
        seq = rec.seq
        if fmt == "openai-chat":
            p = prompt_openai_chat(req)
            r = make_reply(sc, p)
            if rec.stream:
                return self._stream(rec, 200, "text/event-stream; charset=utf-8", openai_chat_events(seq, model, r, p.include_usage and not sc.no_usage), sc, self._oa_headers(seq), fmt)
            return self._send_json_faulty(rec, sc, openai_chat_json(seq, model, r), self._oa_headers(seq))
        if fmt == "openai-responses":
            r = make_reply(sc, prompt_openai_responses(req))
            if rec.stream:
                return self._stream(rec, 200, "text/event-stream; charset=utf-8", openai_responses_events(seq, model, r, req, with_usage=not sc.no_usage), sc, self._oa_headers(seq), fmt)
            return self._send_json_faulty(rec, sc, openai_responses_json(seq, model, r, req), self._oa_headers(seq))
        if fmt == "anthropic-messages":
            r = make_reply(sc, prompt_anthropic(req))
            hdrs = {"request-id": _req_id(seq), "anthropic-organization-id": "00000000-0000-0000-0000-000000000000"}
            if rec.stream:
                return self._stream(rec, 200, "text/event-stream; charset=utf-8", anthropic_events(seq, model, r), sc, hdrs, fmt)
            return self._send_json_faulty(rec, sc, anthropic_json(seq, model, r), hdrs)
        # gemini
        r = make_reply(sc, prompt_gemini(req))
        if rec.stream:
            chunks = gemini_chunks(seq, model, r)
            if (query.get("alt") or [""])[0] == "sse":
                return self._stream(rec, 200, "text/event-stream", [gemini_sse(c) for c in chunks], sc, {}, fmt)
            return self._stream(rec, 200, "application/json; charset=UTF-8", _json_array_pieces(chunks), sc, {}, fmt)
        return self._send_json_faulty(rec, sc, gemini_json(seq, model, r), {}, content_type="application/json; charset=UTF-8", pretty=True)

    def _oa_headers(self, seq: int) -> dict:
        # Real OpenAI answers with its own x-request-id; a gateway must not let it
        # replace the request id it returns to its client.
        return {"x-request-id": "req_" + _hid(seq, 88, 32, "0123456789abcdef"), "openai-processing-ms": "42", "openai-version": "2020-10-01"}

    def _send_json_faulty(self, rec: Recorded, sc: Scenario, obj: Any, headers: dict, content_type: str = "application/json", pretty: bool = False) -> None:
        if sc.die_after is None:
            return self._send_json(rec, 200, obj, headers=headers, content_type=content_type, pretty=pretty)
        body = (json.dumps(obj, indent=2) if pretty else _dumps(obj)).encode()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        rec.status = 200
        half = body[: len(body) // 2]
        rec.response_bytes += half
        self.wfile.write(half)
        self._die()

    def _replay(self, rec: Recorded, fmt: str, sc: Scenario, query: dict) -> None:
        cfmt, case = sc.corpus  # type: ignore[misc]
        d = corpus_dir() / cfmt / case
        if cfmt != fmt:
            return self._send_json(rec, 400, {"error": {"message": f"mock upstream: corpus case {cfmt}/{case} is {cfmt}, but the request came to a {fmt} endpoint", "type": "mock_error"}})
        if not (d / "meta.json").is_file():
            return self._send_json(rec, 404, {"error": {"message": f"mock upstream: no corpus case at {d}", "type": "mock_error"}})
        meta = json.loads((d / "meta.json").read_text())
        status = int(meta.get("http_status", 200))
        ct = meta.get("response_content_type") or "application/json"
        if (d / "response.json").is_file():
            return self._send_bytes(rec, status, (d / "response.json").read_bytes(), ct)
        raw = (d / "response.sse").read_bytes()
        events = split_sse_events(raw)
        if fmt == "gemini" and (query.get("alt") or [""])[0] != "sse":
            chunks = [json.loads(_sse_data(e)) for e in events if _sse_data(e).strip()]
            return self._stream(rec, status, "application/json; charset=UTF-8", _json_array_pieces(chunks), sc, {}, fmt)
        return self._stream(rec, status, ct, events, sc, {}, fmt)

    def _count_anthropic(self, rec: Recorded, req: dict) -> None:
        # The real endpoint refuses what it does not count (max_tokens, stream, ...).
        extra = sorted(set(req) - ANTHROPIC_COUNT_FIELDS)
        if extra or not isinstance(req.get("messages"), list) or not req.get("model"):
            msg = f"{extra[0]}: Extra inputs are not permitted" if extra else "messages and model: Field required"
            _, err = error_response("anthropic-count", 400, rec.seq, msg)
            return self._send_json(rec, 400, err)
        n = count_words({k: req.get(k) for k in ("system", "messages", "tools")})
        self._send_json(rec, 200, {"input_tokens": n}, headers={"request-id": _req_id(rec.seq)})

    def _count_gemini(self, rec: Recorded, req: dict) -> None:
        # Either contents or a whole generateContentRequest (which needs its model), not both.
        gcr = req.get("generateContentRequest")
        bad = None
        if ("contents" in req) == (gcr is not None):
            bad = "Exactly one of contents or generateContentRequest must be set."
        elif gcr is not None and not str(gcr.get("model", "")).startswith("models/"):
            bad = "generateContentRequest.model is required (models/{model})."
        elif set(req) - {"contents", "generateContentRequest"}:
            bad = f"Invalid JSON payload received. Unknown name \"{sorted(set(req) - {'contents', 'generateContentRequest'})[0]}\": Cannot find field."
        if bad:
            _, err = error_response("gemini", 400, rec.seq, bad)
            return self._send_json(rec, 400, err, content_type="application/json; charset=UTF-8", pretty=True)
        src = gcr if gcr is not None else req
        n = count_words({k: src.get(k) for k in ("systemInstruction", "contents", "tools")})
        self._send_json(rec, 200, {"totalTokens": n, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": n}]}, content_type="application/json; charset=UTF-8", pretty=True)

    def _completions(self, rec: Recorded, req: dict, sc: Scenario) -> None:
        prompt = req.get("prompt")
        text = prompt if isinstance(prompt, str) else " ".join(p for p in prompt or [] if isinstance(p, str))
        r = make_reply(sc, Prompt(last_user_text=text))
        seq, model = rec.seq, rec.model or "unknown"
        cid, created = "cmpl-" + _hid(seq, 77, 29), int(time.time())
        finish = "length" if r.length else "stop"
        usage = {"prompt_tokens": r.usage["input"], "completion_tokens": r.usage["output"], "total_tokens": r.usage["input"] + r.usage["output"]}
        if not rec.stream:
            body = {"id": cid, "object": "text_completion", "created": created, "model": model,
                    "choices": [{"text": r.text, "index": 0, "logprobs": None, "finish_reason": finish}], "usage": usage}
            return self._send_json_faulty(rec, sc, body, self._oa_headers(seq))

        def chunk(text: str, fin: str | None) -> bytes:
            c = {"id": cid, "object": "text_completion", "created": created, "model": model,
                 "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": fin}]}
            return b"data: " + _dumps(c).encode() + b"\n\n"

        events = [chunk(piece, None) for piece in split_text(r.text, r.pieces)] + [chunk("", finish)]
        if (req.get("stream_options") or {}).get("include_usage") and not sc.no_usage:
            u = {"id": cid, "object": "text_completion", "created": created, "model": model, "choices": [], "usage": usage}
            events.append(b"data: " + _dumps(u).encode() + b"\n\n")
        events.append(b"data: [DONE]\n\n")
        self._stream(rec, 200, "text/event-stream; charset=utf-8", events, sc, self._oa_headers(seq), "openai-chat")

    def _embeddings_openai(self, rec: Recorded, req: dict) -> None:
        inp = req.get("input")
        texts = [inp] if isinstance(inp, str) else list(inp or [])
        texts = [t if isinstance(t, str) else json.dumps(t) for t in texts]
        b64 = req.get("encoding_format") == "base64"
        data = []
        for i, t in enumerate(texts):
            vec = embedding_for(t)
            emb: Any = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode() if b64 else vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = sum(max(1, len(t) // 4) for t in texts)
        self._send_json(rec, 200, {"object": "list", "data": data, "model": rec.model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}, headers=self._oa_headers(rec.seq))

    def _embeddings_gemini(self, rec: Recorded, req: dict, method: str) -> None:
        if method == "embedContent":
            text = "".join(p.get("text", "") for p in (req.get("content") or {}).get("parts") or [])
            return self._send_json(rec, 200, {"embedding": {"values": embedding_for(text)}}, content_type="application/json; charset=UTF-8", pretty=True)
        embs = []
        for r in req.get("requests") or []:
            text = "".join(p.get("text", "") for p in (r.get("content") or {}).get("parts") or [])
            embs.append({"values": embedding_for(text)})
        self._send_json(rec, 200, {"embeddings": embs}, content_type="application/json; charset=UTF-8", pretty=True)


ANTHROPIC_COUNT_FIELDS = {"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers"}


def count_words(v: Any) -> int:
    """The mock's token count: the words of every string value (not keys) plus 3,
    so a count says whether the system prompt and every turn arrived, in any format."""
    if isinstance(v, str):
        return len(v.split())
    if isinstance(v, list):
        return sum(count_words(x) for x in v)
    if isinstance(v, dict):
        return sum(count_words(x) for k, x in v.items() if k not in ("role", "type")) + (3 if "messages" in v or "contents" in v else 0)
    return 0


def _anthropic_cred(rec: Recorded) -> str | None:
    if rec.header("x-api-key"):
        return rec.header("x-api-key")
    a = rec.header("authorization") or ""
    return a[7:].strip() if a.lower().startswith("bearer ") else None


def _json_array_pieces(chunks: list[dict]) -> list[bytes]:
    """Gemini streamGenerateContent without alt=sse: one JSON array, element by element."""
    out = []
    for i, c in enumerate(chunks):
        body = json.dumps(c, indent=2, ensure_ascii=False)
        out.append(("[" if i == 0 else "\n,\r\n").encode() + body.encode())
    out.append(b"\n]" if chunks else b"[]")
    return out


def split_sse_events(raw: bytes) -> list[bytes]:
    """Cut an SSE body after each blank-line terminator; the pieces concatenate to `raw`."""
    out, pos = [], 0
    for m in re.finditer(rb"\r\n\r\n|\n\n|\r\r", raw):
        out.append(raw[pos : m.end()])
        pos = m.end()
    if pos < len(raw):
        if out and not raw[pos:].strip():
            out[-1] += raw[pos:]
        else:
            out.append(raw[pos:])
    return out


def _sse_data(event: bytes) -> str:
    lines = event.decode().replace("\r\n", "\n").split("\n")
    return "\n".join(l[5:].lstrip(" ") if l.startswith("data:") else "" for l in lines if l.startswith("data:"))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    owner: "MockUpstream"

    def get_request(self) -> tuple[Any, Any]:
        conn, addr = super().get_request()
        if self.owner.tls is not None:
            # The handshake runs in the connection's thread (Handler.setup).
            conn = self.owner.tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Resets and dropped connections are part of the job; stay quiet unless asked.
        if self.owner.verbose:
            super().handle_error(request, client_address)


class MockUpstream:
    """The mock, in-process. `with MockUpstream(keys=[...]) as m: m.url ...`"""

    def __init__(self, keys: list[str] | tuple[str, ...] | None = ("sk-up-1",), host: str = "127.0.0.1", port: int = 0, verbose: bool = False, seed: int | None = None, tls: ssl.SSLContext | None = None):
        self.keys = set(keys or [])
        self.tls = tls  # a server-side context: the mock speaks HTTPS
        self.host, self._port = host, port
        self.verbose = verbose
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._rules: list[Rule] = []
        self._conns: set[socket.socket] = set()
        self._busy: set[socket.socket] = set()  # connections with a request being answered
        self._down = False
        self.dropped = 0  # requests read while down and closed unanswered (not in .requests)
        self._rng = random.Random(seed)
        self._seq = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> "MockUpstream":
        self._server = _Server((self.host, self._port), Handler)
        self._server.owner = self
        self._port = self._server.server_address[1]  # fixed from now on: come_up() reuses it
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"mock-upstream-{self.port}", daemon=True)
        self._thread.start()
        return self

    @property
    def is_down(self) -> bool:
        return self._down

    def go_down(self) -> None:
        """Stop listening (new connects are refused) and close idle keep-alive
        connections; answers in progress finish. Requests arriving later on a
        surviving connection are dropped unanswered and not recorded."""
        with self._lock:
            if self._down:
                return
            self._down = True
            idle = [c for c in self._conns if c not in self._busy]
        assert self._server is not None, "mock not started"
        self._server.shutdown()
        self._server.server_close()
        for c in idle:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def come_up(self, timeout: float = 5.0) -> None:
        """Listen again on the same port (retrying while the port is still taken)."""
        if not self._down:
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                server = _Server((self.host, self._port), Handler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        server.owner = self
        self._server = server
        with self._lock:
            self._down = False
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"mock-upstream-{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> "MockUpstream":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "mock not started"
        return self._port

    @property
    def url(self) -> str:
        """Origin, e.g. http://127.0.0.1:12345 (Anthropic / Gemini base_url)."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def openai_url(self) -> str:
        """OpenAI-style base_url including /v1."""
        return self.url + "/v1"

    # records
    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    def last(self, path_suffix: str | None = None, wait: float = 2.0) -> Recorded:
        """The latest request (to `path_suffix`), once the mock has finished answering it
        (waits up to `wait` s: a client can hold the whole answer a moment before the
        mock's handler returns)."""
        for r in reversed(self.requests):
            if path_suffix is None or r.path.endswith(path_suffix):
                return self.wait_done(r, wait)
        raise AssertionError(f"mock upstream received no request{' for ' + path_suffix if path_suffix else ''}; got {[r.path for r in self.requests]}")

    def wait_done(self, rec: Recorded, timeout: float = 5.0) -> Recorded:
        end = time.monotonic() + timeout
        while not rec.done and time.monotonic() < end:
            time.sleep(0.01)
        return rec

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._rules.clear()
            self.dropped = 0

    def add_rule(self, scenario: str, *, key: str | None = None, model: str | None = None, path: str | None = None, times: int | None = None) -> None:
        """Apply `scenario` (same syntax as model names) to matching requests."""
        with self._lock:
            self._rules.append(Rule(parse_scenario(scenario), key=key, model=model, path=path, times=times))

    # internals
    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def _begin(self, conn: socket.socket) -> bool:
        """A request starts on `conn`: False when the mock is down (drop it)."""
        with self._lock:
            if self._down:
                self.dropped += 1
                return False
            self._busy.add(conn)
            return True

    def _end(self, conn: socket.socket) -> None:
        with self._lock:
            self._busy.discard(conn)

    def _roll(self, pct: int) -> bool:
        with self._lock:
            return self._rng.random() * 100 < pct

    def _record(self, method: str, path: str, query: dict, headers: list, body: bytes, framing: str) -> Recorded:
        with self._lock:
            self._seq += 1
            rec = Recorded(self._seq, method, path, query, headers, body, framing, time.monotonic(), time.time())
            self._requests.append(rec)
            return rec

    def _apply_rules(self, rec: Recorded, sc: Scenario, handler: Handler) -> Scenario:
        # Credential must be known for key rules: peek at it the way _auth will.
        if rec.format:
            if rec.format.startswith("openai"):
                a = rec.header("authorization") or ""
                cred = a[7:].strip() if a.lower().startswith("bearer ") else None
            elif rec.format.startswith("anthropic"):
                cred = _anthropic_cred(rec)
            else:
                cred = rec.header("x-goog-api-key") or (rec.query.get("key") or [None])[0]
            rec.credential = cred
        with self._lock:
            for rule in self._rules:
                if rule.matches(rec):
                    rule.used += 1
                    sc = sc.merged(rule.scenario)
                    rec.scenario = f"{rec.model} +rule"
        return sc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="aigate mock provider upstream (OpenAI, Anthropic, Gemini wire formats)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--key", action="append", default=[], help="accepted provider key (repeatable); none: any non-empty key")
    ap.add_argument("--no-record", action="store_true", help="keep no request log (long benchmarks)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    m = MockUpstream(keys=args.key, host=args.host, port=args.port, verbose=args.verbose)
    if args.no_record:
        m._record = _no_record(m)  # type: ignore[method-assign]
    m.start()
    print(f"mock upstream listening on {m.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        m.stop()
    return 0


def _no_record(m: MockUpstream) -> Callable[..., Recorded]:
    def record(method: str, path: str, query: dict, headers: list, body: bytes, framing: str) -> Recorded:
        with m._lock:
            m._seq += 1
            seq = m._seq
        return Recorded(seq, method, path, query, headers, body, framing, time.monotonic(), time.time())

    return record


if __name__ == "__main__":
    sys.exit(main())
