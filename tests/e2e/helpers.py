"""Shared helpers for the gateway tests: SDK clients aimed at a gateway, raw requests
per client format, error-shape checks, SSE timing, Prometheus text parsing."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from typing import Any, Iterable

import anthropic
import httpx
import openai
from google import genai
from google.genai import types as gtypes

from harness import GW_KEY_A, Gateway
from mock_upstream import Recorded

SDK_TIMEOUT = 20.0

_shared_client: httpx.Client | None = None
_shared_lock = threading.Lock()


def http() -> httpx.Client:
    """One keep-alive httpx client for plain requests, shared by the whole run (and
    thread-safe): creating an httpx.Client costs ~50 ms (its TLS context), which adds
    up in tests that start their own gateway and make a few requests."""
    global _shared_client
    with _shared_lock:
        if _shared_client is None:
            _shared_client = httpx.Client(timeout=SDK_TIMEOUT, limits=httpx.Limits(max_connections=64, max_keepalive_connections=16))
        return _shared_client


def openai_client(gw: Gateway, key: str = GW_KEY_A, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_url, api_key=key, max_retries=0, timeout=SDK_TIMEOUT, default_headers=headers or None)


def anthropic_client(gw: Gateway, key: str = GW_KEY_A) -> anthropic.Anthropic:
    # anthropic 2.x sends the key as `Authorization: Bearer`.
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, timeout=SDK_TIMEOUT)


def genai_client(gw: Gateway, key: str = GW_KEY_A) -> genai.Client:
    # Keep the returned client referenced while using it: it closes its HTTP client when collected.
    return genai.Client(api_key=key, http_options=gtypes.HttpOptions(base_url=gw.url, api_version="v1beta", timeout=int(SDK_TIMEOUT * 1000)))


# ----------------------------------------------------------------------------- raw requests per client format

CLIENT_FORMATS = ("openai-chat", "openai-responses", "anthropic", "gemini")


def raw_request(fmt: str, model: str, text: str = "hi", stream: bool = False) -> tuple[str, dict]:
    """(path, JSON body) of a minimal request in a client format."""
    if fmt == "openai-chat":
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}]}
        if stream:
            body["stream"] = True
        return "/v1/chat/completions", body
    if fmt == "openai-responses":
        body = {"model": model, "input": text}
        if stream:
            body["stream"] = True
        return "/v1/responses", body
    if fmt == "anthropic":
        body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": text}]}
        if stream:
            body["stream"] = True
        return "/v1/messages", body
    if fmt == "gemini":
        path = f"/v1beta/models/{model}:" + ("streamGenerateContent?alt=sse" if stream else "generateContent")
        return path, {"contents": [{"role": "user", "parts": [{"text": text}]}]}
    raise ValueError(fmt)


def key_headers(fmt: str, key: str | None = GW_KEY_A) -> dict:
    """The header each format's SDK would carry the key in (Anthropic: x-api-key as the
    classic SDKs and curl examples do; Gemini: x-goog-api-key)."""
    h: dict[str, str] = {"content-type": "application/json"}
    if fmt == "anthropic":
        h["anthropic-version"] = "2023-06-01"
    if key is None:
        return h
    if fmt.startswith("openai"):
        h["authorization"] = f"Bearer {key}"
    elif fmt == "anthropic":
        h["x-api-key"] = key
    else:
        h["x-goog-api-key"] = key
    return h


def post(gw: Gateway, fmt: str, model: str, key: str | None = GW_KEY_A, text: str = "hi", stream: bool = False, headers: dict | None = None, timeout: float = SDK_TIMEOUT) -> httpx.Response:
    path, body = raw_request(fmt, model, text, stream)
    return httpx.post(gw.url + path, json=body, headers={**key_headers(fmt, key), **(headers or {})}, timeout=timeout)


# ----------------------------------------------------------------------------- assertions


def assert_error_shape(fmt: str, resp: httpx.Response, status: int) -> dict:
    """SPEC "Errors": the gateway's own errors come in the client's format."""
    assert resp.status_code == status, f"expected {status}, got {resp.status_code}: {resp.text[:500]}"
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError(f"error body is not JSON: {resp.text[:500]!r}") from None
    if fmt.startswith("openai"):
        err = body.get("error")
        assert isinstance(err, dict), f"OpenAI error shape wanted {{'error': {{message, type, code}}}}, got {body}"
        assert isinstance(err.get("message"), str) and err["message"], body
        assert isinstance(err.get("type"), str) and err["type"], body
        assert "code" in err, body
    elif fmt == "anthropic":
        assert body.get("type") == "error", f"Anthropic error shape wanted {{'type': 'error', 'error': {{type, message}}}}, got {body}"
        assert isinstance(body.get("error"), dict) and body["error"].get("type") and body["error"].get("message"), body
    else:
        err = body.get("error")
        assert isinstance(err, dict), f"Gemini error shape wanted {{'error': {{code, message, status}}}}, got {body}"
        assert err.get("code") == status and err.get("message") and isinstance(err.get("status"), str), body
    return body


def error_message(fmt: str, body: dict) -> str:
    return body["error"]["message"]


def assert_gateway_key_not_forwarded(rec: Recorded, *keys: str) -> None:
    for k in keys:
        for name, value in rec.headers:
            assert k not in value, f"gateway key leaked upstream in header {name}: {value}"
        for name, values in rec.query.items():
            assert all(k not in v for v in values), f"gateway key leaked upstream in query ?{name}="
        assert k.encode() not in rec.body, "gateway key leaked upstream in the body"


# ----------------------------------------------------------------------------- SSE timing

_TERM = re.compile(rb"\r\n\r\n|\n\n|\r\r")


def stream_event_times(resp: httpx.Response) -> tuple[list[bytes], list[float]]:
    """Read an SSE response as it arrives: each event and the monotonic time its last byte came in."""
    events: list[bytes] = []
    times: list[float] = []
    buf = b""
    for chunk in resp.iter_raw():
        buf += chunk
        now = time.monotonic()
        while m := _TERM.search(buf):
            events.append(buf[: m.end()])
            times.append(now)
            buf = buf[m.end() :]
    if buf.strip():
        events.append(buf)
        times.append(time.monotonic())
    return events, times


# ----------------------------------------------------------------------------- SSE bodies read whole


def sse_events(raw: str) -> list[tuple[str | None, str]]:
    """(event name, data) of each SSE event; comments come as ("<comment>", text)."""
    out: list[tuple[str | None, str]] = []
    for block in raw.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        name, data, comments = None, [], []
        for line in block.split("\n"):
            if line.startswith(":"):
                comments.append(line[1:].strip())
            elif line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
        if comments and not data and name is None:
            out.append(("<comment>", "\n".join(comments)))
        else:
            out.append((name, "\n".join(data)))
    return out


def chat_stream_text(raw: str) -> tuple[str, int, bool]:
    """OpenAI Chat SSE: (content, role chunks, [DONE] seen)."""
    text, roles, done = "", 0, False
    for _, data in sse_events(raw):
        if data == "[DONE]":
            done = True
            continue
        if not data.startswith("{"):
            continue
        obj = json.loads(data)
        for ch in obj.get("choices") or []:
            d = ch.get("delta") or {}
            if d.get("role"):
                roles += 1
            text += d.get("content") or ""
    return text, roles, done


def anthropic_stream_text(raw: str) -> tuple[str, Counter]:
    text, kinds = "", Counter()
    for name, data in sse_events(raw):
        kinds[name] += 1
        if name == "content_block_delta":
            text += json.loads(data)["delta"].get("text", "")
    return text, kinds


def responses_stream_text(raw: str) -> tuple[str, Counter]:
    text, kinds = "", Counter()
    for name, data in sse_events(raw):
        kinds[name] += 1
        if name == "response.output_text.delta":
            text += json.loads(data)["delta"]
    return text, kinds


def gemini_stream_text(raw: str) -> tuple[str, int]:
    """Gemini SSE (`alt=sse`): (text of the non-thought parts, error objects seen)."""
    text, errors = "", 0
    for _, data in sse_events(raw):
        if not data.startswith("{"):
            continue
        obj = json.loads(data)
        if "error" in obj:
            errors += 1
        for cand in obj.get("candidates") or []:
            for part in (cand.get("content") or {}).get("parts") or []:
                if not part.get("thought"):
                    text += part.get("text", "")
    return text, errors


def stream_text(fmt: str, raw: str) -> str:
    """The text an SSE answer carries, in client format `fmt` (openai-chat, anthropic,
    openai-responses, gemini)."""
    if fmt == "openai-chat":
        return chat_stream_text(raw)[0]
    if fmt == "anthropic":
        return anthropic_stream_text(raw)[0]
    if fmt == "gemini":
        return gemini_stream_text(raw)[0]
    return responses_stream_text(raw)[0]


# ----------------------------------------------------------------------------- Prometheus text

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict, float]]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m:
            labels = dict(_LABEL.findall(m.group(2) or ""))
            out.append((m.group(1), labels, float(m.group(3))))
    return out


def metric_sum(samples: Iterable[tuple[str, dict, float]], name: str, **match: str) -> float:
    return sum(v for n, l, v in samples if n == name and all(l.get(k) == val for k, val in match.items()))


def metric_types(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(r"^# TYPE (\S+) (\S+)", text, re.M)}


def json_of(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return json.loads(resp.content or b"null")
