"""Instructions per small JSON request (callgrind), spike paths vs aigate.

Usage: python3 cost.py SPIKE_BIN AIGATE_BIN [N]
Starts upstream.py, then each gateway under callgrind (one thread), warms it,
zeroes the counters, sends N requests on one keep-alive connection, dumps,
and prints user-space instructions per request. Deterministic counts: the
machine's load does not change them.
"""

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

SPIKE, AIGATE = sys.argv[1:3]
N = int(sys.argv[3]) if len(sys.argv) > 3 else 200
PA, PB, GW = 17101, 17102, 17100
HERE = os.path.dirname(os.path.abspath(__file__))
TMP = tempfile.mkdtemp(prefix="spike-cost.")
BODY = json.dumps({"model": "gpt-4o", "messages": [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Say hello in one short sentence, please."}],
    "max_tokens": 64}).encode()

AIGATE_CONF = f"""
listen: "127.0.0.1:{GW}"
threads: 1
pid_file: "{TMP}/aigate.pid"
upgrade_sock: "{TMP}/aigate-upgrade.sock"
grace_period_seconds: 0
graceful_shutdown_timeout_seconds: 1
keys: [{{id: bench, key: "sk-bench"}}]
providers:
  - {{name: mock, kind: openai, base_url: "http://127.0.0.1:{PA}/v1", credentials: [{{key: "sk-up"}}]}}
models:
  - {{name: gpt-4o, targets: [{{provider: mock, model: gpt-4o}}]}}
provider_passthrough: {{enabled: true}}
"""


def request(conn, path, headers):
    conn.request("POST", path, body=BODY, headers=headers)
    r = conn.getresponse()
    data = r.read()
    assert r.status == 200, (r.status, data[:300])
    return data


def wait_ready(path, headers, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", GW, timeout=30)
            request(c, path, headers)
            return c
        except (ConnectionRefusedError, ConnectionResetError, http.client.RemoteDisconnected):
            time.sleep(0.5)
    raise SystemExit("gateway did not answer")


def measure(name, argv, path, headers):
    out = f"{TMP}/cg-{name}.out"
    # Set here, aigate skips its one re-exec (src/memory.rs), which valgrind would not follow.
    env = dict(os.environ, RUST_LOG="warn", MIMALLOC_PURGE_DELAY="0")
    p = subprocess.Popen(["valgrind", "--tool=callgrind", "--dump-instr=no",
                          f"--callgrind-out-file={out}"] + argv,
                         env=env, stdout=subprocess.DEVNULL, stderr=open(f"{TMP}/{name}.log", "w"))
    try:
        c = wait_ready(path, headers)
        for _ in range(20):
            request(c, path, headers)
        subprocess.run(["callgrind_control", "-z", str(p.pid)], check=True, capture_output=True)
        for _ in range(N):
            request(c, path, headers)
        subprocess.run(["callgrind_control", "-d", str(p.pid)], check=True, capture_output=True)
        time.sleep(0.5)
        dumps = sorted(f for f in os.listdir(TMP) if f.startswith(f"cg-{name}.out."))
        text = open(f"{TMP}/{dumps[-1]}").read()
        total = sum(int(m) for m in re.findall(r"^(?:summary|totals): (\d+)", text, re.M)[:1])
        print(f"{name:<28} {total / N / 1000:8.1f} k instructions/request", flush=True)
    finally:
        p.send_signal(signal.SIGINT)  # Pingora's fast shutdown (SIGTERM is graceful: slow)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main():
    up = subprocess.Popen([sys.executable, f"{HERE}/upstream.py", str(PA), str(PB)], stdout=subprocess.PIPE)
    try:
        up.stdout.readline()
        spike_h = {"content-type": "application/json", "x-canned": "1"}
        for mode in ("plain", "pipe", "drive"):
            measure(f"spike-{mode}", [SPIKE, "--listen", f"127.0.0.1:{GW}", "--a", f"127.0.0.1:{PA}",
                                      "--b", f"127.0.0.1:{PB}", "--mode", mode, "--threads", "1"],
                    "/v1/chat/completions", spike_h)
        conf = f"{TMP}/aigate.yaml"
        open(conf, "w").write(AIGATE_CONF)
        aig_h = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
        measure("aigate-openai-passthrough", [AIGATE, "-c", conf], "/v1/chat/completions", aig_h)
        measure("aigate-provider-passthrough", [AIGATE, "-c", conf], "/mock/v1/chat/completions", aig_h)
    finally:
        up.terminate()


main()
