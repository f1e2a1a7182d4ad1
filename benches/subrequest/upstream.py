"""Spike upstream (issue 14): two loopback "providers", A and B.

POST anything: answers {"server", "path", "len", "sha256"} of the body it got.
  x-fail-first: 1   -> server A answers 500 (B ignores it)
  x-stream: N,MS[,FIRST] -> an SSE stream of N events, one every MS ms (the
                       first after FIRST ms), chunked; each event carries its
                       send time; a client gone away is recorded
  x-cut-first: 1    -> server A sends an SSE head, then drops the connection
  x-canned: 1, or path /v1/chat/completions (no x-stream) -> a fixed OpenAI chat completion
                       (the cost runs: the same answer on every path)
GET /log -> what each server received (JSON list); GET /reset clears it.

Usage: python3 upstream.py PORT_A PORT_B
"""

import hashlib
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = []
LOCK = threading.Lock()


def record(entry):
    with LOCK:
        LOG.append(entry)
    return entry


CANNED = json.dumps({
    "id": "chatcmpl-spike", "object": "chat.completion", "created": 1700000000,
    "model": "gpt-4o", "system_fingerprint": "fp_spike",
    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                 "message": {"role": "assistant", "content": "Hello! How can I help you today?"}}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
}).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_name = "?"

    def log_message(self, *args):
        pass

    def send_json(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/reset":
            with LOCK:
                LOG.clear()
            return self.send_json(200, {})
        with LOCK:
            snapshot = list(LOG)
        self.send_json(200, snapshot)

    def do_POST(self):
        n = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(n)
        stream = self.headers.get("x-stream")
        if self.headers.get("x-canned") or (self.path == "/v1/chat/completions" and not stream):
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(CANNED)))
            self.end_headers()
            return self.wfile.write(CANNED)
        entry = record(
            {
                "server": self.server_name,
                "path": self.path,
                "len": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
                "kind": self.headers.get("x-spike-kind"),
            }
        )
        if self.server_name == "A" and self.headers.get("x-fail-first"):
            entry["status"] = 500
            return self.send_json(500, {"error": "A is down"})
        if self.server_name == "A" and self.headers.get("x-cut-first"):
            entry["status"] = 200
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True
            return
        if stream:
            count, ms, first = ([int(x) for x in stream.split(",")] + [0])[:3]
            return self.stream(entry, count, ms / 1000.0, first / 1000.0)
        entry["status"] = 200
        self.send_json(200, dict(entry))

    def stream(self, entry, count, gap, first):
        entry["status"] = 200
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        try:
            for i in range(count):
                time.sleep(gap if i else first)
                event = f'data: {{"i": {i}, "t": {time.time():.6f}}}\n\n'.encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n".join([b"e\r\n", b"\r\n0\r\n\r\n"]))
            self.wfile.flush()
            entry["events_sent"] = count
        except (BrokenPipeError, ConnectionResetError):
            entry["gone_at_event"] = i
            entry["gone_time"] = time.time()
            self.close_connection = True


def serve(port, name):
    handler = type(f"Handler{name}", (Handler,), {"server_name": name})
    srv = ThreadingHTTPServer(("127.0.0.1", port), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


if __name__ == "__main__":
    serve(int(sys.argv[1]), "A")
    serve(int(sys.argv[2]), "B")
    print("ready", flush=True)
    threading.Event().wait()
