"""A provider upstream on raw sockets, for tests about the connection and the
exact bytes of an answer (the mock in mock_upstream.py speaks through Python's
HTTP server, which decides framing itself)."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Callable

Piece = tuple[bytes, float]  # bytes to send, then seconds to wait


def chat_answer(model: str, text: str) -> bytes:
    return json.dumps({
        "id": "chatcmpl-raw", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": f"echo: {text}"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }).encode()


class ConnUpstream:
    """An OpenAI Chat upstream on loopback, on raw sockets: it answers JSON on
    keep-alive connections and records which connection (the gateway's source
    port) carried each request. `answer(model, text)`, when set, gives the exact
    bytes of an answer (in timed pieces) and whether to close the connection
    after it, for framing tests."""

    def __init__(self, answer: Callable[[str, str], tuple[list[Piece], bool]] | None = None) -> None:
        self.answer = answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.ports: list[int] = []  # the gateway's source port, per request
        self.accepted = 0
        self.close_after: float | None = None  # close a connection this long after an answer
        # Answer as soon as the connection opens, before the request is read
        # (then read it and close): the answer is in before the gateway has
        # sent the body, as with a fast upstream that answers without reading
        # the body (a static file server, an early refusal).
        self.early = False
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _accept(self) -> None:
        while not self.stopped:
            try:
                conn, peer = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
            threading.Thread(target=self._serve, args=(conn, peer[1]), daemon=True).start()

    def _serve(self, conn: socket.socket, port: int) -> None:
        buf = b""
        conn.settimeout(30)
        try:
            if self.early:
                answer = chat_answer("early", "early")
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(answer), answer))
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(buf) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                body, buf = buf[:length], buf[length:]
                req = json.loads(body)
                text = req["messages"][-1]["content"]
                with self.lock:
                    self.ports.append(port)
                if self.early:
                    return
                if self.answer is not None:
                    pieces, close = self.answer(req["model"], text)
                    for data, wait in pieces:
                        conn.sendall(data)
                        time.sleep(wait)
                    if close:
                        return
                    continue
                answer = chat_answer(req["model"], text)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))
                if self.close_after is not None:
                    time.sleep(self.close_after)
                    return  # closes (FIN) the idle connection, as an upstream's keep-alive timeout does
        except (OSError, ValueError):
            return
        finally:
            conn.close()

    def stop(self) -> None:
        self.stopped = True
        self.listener.close()
        # close() does not wake the thread blocked in accept(), and until it
        # returns the port still listens (and may answer a later test's
        # connection): one connection wakes it, and it exits.
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        except OSError:
            pass
