"""An upstream on loopback that speaks HTTP/2 (issue 14, a provider's `http2`).

`H2Upstream` answers OpenAI chat completions (`.../chat/completions`) and Anthropic
messages (`.../messages`), JSON and SSE streams, with the bodies `mock_upstream`
makes (same replies, same scenarios in the model name: `fail-<status>`, `slow-<ms>`
between stream events, plus `hold`: the answer waits for `release`). It speaks:

- over TLS (`H2Upstream(tls=ctx)`): HTTP/2 when the client's ALPN offers `h2`, else
  HTTP/1.1 (no ALPN, or `http/1.1` chosen);
- over plain TCP: HTTP/2 when the connection opens with the h2 preface (h2c with
  prior knowledge), else HTTP/1.1.

Each request is recorded with the protocol it came over, the connection it came on
(numbered in accept order) and how many requests were open on that connection when
it arrived (2 or more: multiplexed), and whether the client reset its stream before
the answer ended. `connections` counts accepted connections.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import ssl
import threading
import time
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from mock_upstream import (
    anthropic_events,
    anthropic_json,
    error_response,
    make_reply,
    openai_chat_events,
    openai_chat_json,
    parse_scenario,
    prompt_anthropic,
    prompt_openai_chat,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@dataclasses.dataclass
class Seen:
    protocol: str  # "HTTP/2" or "HTTP/1.1"
    conn: int
    open_on_conn: int  # requests open on its connection when it arrived, itself included
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0
    reset: bool = False  # the client reset its stream (HTTP/2 RST_STREAM) before the answer ended

    def json(self) -> Any:
        return json.loads(self.body)


@dataclasses.dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    chunks: list[bytes]  # one DATA frame / HTTP/1.1 chunk each
    stream: bool
    gap: float = 0.01  # seconds between stream chunks (`slow-<ms>` in the model)


class H2Upstream:
    def __init__(self, tls: ssl.SSLContext | None = None, keys: tuple[str, ...] = ("sk-up-1",), alpn: tuple[str, ...] = ("h2", "http/1.1")):
        """`alpn`: the protocols the TLS server accepts (`("http/1.1",)`: a server
        without HTTP/2)."""
        self.tls = tls
        if tls is not None:
            tls.set_alpn_protocols(list(alpn))
        self.keys = keys
        self.requests: list[Seen] = []
        self.connections = 0
        self.release = threading.Event()
        self._held = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._open: dict[int, int] = {}
        self._sock: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._stopped = False

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> "H2Upstream":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        self._sock = s
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped = True
        self.release.set()
        if self._sock is not None:
            self._sock.close()
        for c in list(self._conns):
            try:
                c.close()
            except OSError:
                pass

    @property
    def port(self) -> int:
        assert self._sock is not None
        return self._sock.getsockname()[1]

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        return self.url + "/v1"

    def wait_held(self, n: int, timeout: float = 10.0) -> None:
        """Until `n` requests wait for `release`."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._held >= n, timeout):
                raise AssertionError(f"{self._held} requests held, wanted {n}")

    # ---------------------------------------------------------------- connections

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stopped:
            try:
                raw, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(raw,), daemon=True).start()

    def _connection(self, raw: socket.socket) -> None:
        conn: socket.socket = raw
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(raw, server_side=True)
                h2 = conn.selected_alpn_protocol() == "h2"
            else:
                head = b""
                while len(head) < len(PREFACE) and PREFACE.startswith(head):
                    got = raw.recv(len(PREFACE), socket.MSG_PEEK)
                    if not got:
                        break
                    if got == head:
                        time.sleep(0.005)
                    head = got
                h2 = head == PREFACE
        except (OSError, ssl.SSLError):
            raw.close()
            return
        with self._lock:
            self.connections += 1
            cid = self.connections
            self._conns.append(conn)
        try:
            (self._h2 if h2 else self._h1)(conn, cid)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def _arrive(self, protocol: str, cid: int, method: str, path: str, headers: dict[str, str], body: bytes) -> Seen:
        with self._lock:
            self._open[cid] = self._open.get(cid, 0) + 1
            seen = Seen(protocol, cid, self._open[cid], method, path, headers, body)
            self.requests.append(seen)
            return seen

    def _leave(self, cid: int) -> None:
        with self._lock:
            self._open[cid] -= 1

    # ---------------------------------------------------------------- HTTP/2

    def _h2(self, sock: socket.socket, cid: int) -> None:
        h2c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        h2c.initiate_connection()
        # Only this thread touches the socket (an SSL socket is not safe to read and
        # write from two threads); answering threads write into `h2c` under `lock`
        # and this loop flushes what they wrote between short reads.
        lock = threading.Lock()
        streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        answering: dict[int, Seen] = {}
        sock.settimeout(0.005)
        while True:
            try:
                data: bytes | None = sock.recv(65536)
            except (TimeoutError, ssl.SSLWantReadError):
                data = None
            if data == b"":
                return
            with lock:
                for ev in h2c.receive_data(data) if data else []:
                    if isinstance(ev, h2.events.RequestReceived):
                        streams[ev.stream_id] = (dict(ev.headers), bytearray())
                    elif isinstance(ev, h2.events.DataReceived):
                        streams[ev.stream_id][1].extend(ev.data)
                        h2c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamReset) and ev.stream_id in answering:
                        answering[ev.stream_id].reset = True
                    elif isinstance(ev, h2.events.StreamEnded):
                        hdrs, body = streams.pop(ev.stream_id)
                        seen = self._arrive("HTTP/2", cid, hdrs.get(":method", ""), hdrs.get(":path", ""), hdrs, bytes(body))
                        answering[ev.stream_id] = seen
                        threading.Thread(target=self._h2_answer, args=(h2c, lock, ev.stream_id, seen), daemon=True).start()
                pending = h2c.data_to_send()
            if pending:
                sock.settimeout(None)
                sock.sendall(pending)
                sock.settimeout(0.005)

    def _h2_answer(self, h2c: h2.connection.H2Connection, lock: threading.Lock, sid: int, seen: Seen) -> None:
        try:
            a = self._answer(seen)
            with lock:
                h2c.send_headers(sid, [(":status", str(a.status)), *a.headers])
            for c in a.chunks:
                if a.stream:
                    time.sleep(a.gap)
                if seen.reset:
                    return
                with lock:
                    # The answers are small: well within the initial 64 KiB windows.
                    assert h2c.local_flow_control_window(sid) >= len(c), "answer larger than the window"
                    h2c.send_data(sid, c)
            with lock:
                h2c.end_stream(sid)
        except h2.exceptions.H2Error:
            pass  # the gateway reset the stream
        finally:
            self._leave(seen.conn)

    # ---------------------------------------------------------------- HTTP/1.1

    def _h1(self, sock: socket.socket, cid: int) -> None:
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                data = sock.recv(65536)
                if not data:
                    return
                buf += data
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            hdrs = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
            if hdrs.get("transfer-encoding", "").lower() == "chunked":
                body = b""
                while True:
                    while b"\r\n" not in buf:
                        buf += sock.recv(65536)
                    size_line, buf = buf.split(b"\r\n", 1)
                    size = int(size_line.split(b";")[0], 16)
                    while len(buf) < size + 2:
                        buf += sock.recv(65536)
                    body, buf = body + buf[:size], buf[size + 2 :]
                    if size == 0:
                        break
            else:
                n = int(hdrs.get("content-length", "0"))
                while len(buf) < n:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                body, buf = buf[:n], buf[n:]
            seen = self._arrive("HTTP/1.1", cid, method, path, hdrs, body)
            try:
                a = self._answer(seen)
                head_out = f"HTTP/1.1 {a.status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in a.headers)
                if a.stream:
                    sock.sendall((head_out + "transfer-encoding: chunked\r\n\r\n").encode())
                    for c in a.chunks:
                        sock.sendall(b"%x\r\n%s\r\n" % (len(c), c))
                        time.sleep(a.gap)
                    sock.sendall(b"0\r\n\r\n")
                else:
                    payload = b"".join(a.chunks)
                    sock.sendall((head_out + f"content-length: {len(payload)}\r\n\r\n").encode() + payload)
            finally:
                self._leave(cid)

    # ---------------------------------------------------------------- answers

    def _answer(self, seen: Seen) -> Answer:
        """The provider's answer to `seen`, in its wire format."""
        path = seen.path.split("?", 1)[0]
        fmt = "openai-chat" if path.endswith("/chat/completions") else "anthropic-messages" if path.endswith("/messages") else None
        seq = len(self.requests)
        if fmt is None or seen.method != "POST":
            return self._json(seen, 404, {"error": {"message": f"h2 mock: no route for {seen.method} {path}", "type": "invalid_request_error"}})
        if fmt == "openai-chat":
            auth = seen.headers.get("authorization", "")
            cred = auth[7:] if auth.lower().startswith("bearer ") else None
        else:
            cred = seen.headers.get("x-api-key")
        if cred not in self.keys:
            return self._json(seen, *error_response(fmt, 401, seq))
        req = seen.json()
        model = req.get("model") or "unknown"
        sc = parse_scenario(model)
        if "hold" in model:
            with self._changed:
                self._held += 1
                self._changed.notify_all()
            self.release.wait(20)
        if sc.fail_status:
            return self._json(seen, *error_response(fmt, sc.fail_status, seq))
        stream = bool(req.get("stream"))
        gap = sc.delay_ms / 1000 or 0.01
        if fmt == "openai-chat":
            p = prompt_openai_chat(req)
            r = make_reply(sc, p)
            if stream:
                return self._events(seen, openai_chat_events(seq, model, r, p.include_usage), gap)
            return self._json(seen, 200, openai_chat_json(seq, model, r))
        r = make_reply(sc, prompt_anthropic(req))
        if stream:
            return self._events(seen, anthropic_events(seq, model, r), gap)
        return self._json(seen, 200, anthropic_json(seq, model, r))

    @staticmethod
    def _json(seen: Seen, status: int, obj: Any) -> Answer:
        seen.status = status
        return Answer(status, [("content-type", "application/json")], [json.dumps(obj).encode()], False)

    @staticmethod
    def _events(seen: Seen, events: list[bytes], gap: float) -> Answer:
        seen.status = 200
        return Answer(200, [("content-type", "text/event-stream; charset=utf-8")], events, True, gap)
