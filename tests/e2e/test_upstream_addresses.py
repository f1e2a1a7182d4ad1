"""A provider host with several addresses (issue 14): each address is a backend of the
provider's pingora-load-balancing `LoadBalancer`, checked on its own by the provider's
`health_check`, and picked round-robin, skipping unhealthy addresses and addresses
already tried by the request.

The host must resolve to two loopback addresses of one family (the gateway balances over
the family the resolver lists first) while the mock listens on only one: a name in a
private /etc/hosts, 127.0.0.1 and 127.0.0.2, that the gateway sees through a user and
mount namespace (`unshare`; the system's /etc/hosts is not touched).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from harness import FAST_TIMEOUTS, aigate_bin, provider, route, small_config
from helpers import http, key_headers, raw_request
from mock_upstream import MockUpstream

TOKEN = "admin-token-0123456789abcdef"
NAME = "aigate-two-addresses"


def two_address_host(tmp_path: Path) -> tuple[str, tuple[str, str], str]:
    """(host, (live address, dead address), the binary to start): a name in a private
    /etc/hosts the gateway sees through a user and mount namespace."""
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n127.0.0.1 {NAME}\n127.0.0.2 {NAME}\n")
    wrapper = tmp_path / "aigate-private-hosts"
    script = 'mount --bind "$1" /etc/hosts && shift && exec "$@"'
    wrapper.write_text(f"#!/bin/sh\nexec unshare --user --map-root-user --mount sh -c '{script}' sh {hosts} \"$@\"\n")
    wrapper.chmod(0o755)
    probe = subprocess.run([str(wrapper), "getent", "ahosts", NAME], capture_output=True, text=True, timeout=10)
    seen = {line.split()[0] for line in probe.stdout.splitlines() if line.strip()}
    assert probe.returncode == 0 and {"127.0.0.1", "127.0.0.2"} <= seen, (
        "this test needs unprivileged user and mount namespaces (`unshare --user --map-root-user "
        f"--mount`) to give the gateway a host name with two loopback addresses: {probe.stderr.strip()}"
    )
    gateway = tmp_path / "aigate-two-hosts"
    gateway.write_text(f'#!/bin/sh\nexec {wrapper} {aigate_bin()} "$@"\n')
    gateway.chmod(0o755)
    return NAME, ("127.0.0.1", "127.0.0.2"), str(gateway)


def ask(gw) -> tuple[int, int, str]:
    path, body = raw_request("openai-chat", "m", "hi")
    r = http().post(gw.url + path, json=body, headers={**key_headers("openai-chat"), "x-aigate-debug": "true"}, timeout=20)
    return r.status_code, int(r.headers.get("x-aigate-attempts", "0")), r.text


def addresses(gw) -> dict[str, bool]:
    r = http().get(gw.admin_url + "/admin/providers", headers={"authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert r.status_code == 200, r.text
    (p,) = [p for p in r.json()["providers"] if p["name"] == "two"]
    return {a["address"]: a["healthy"] for a in p["addresses"]}


def sockaddr(ip: str, port: int) -> str:
    return f"{ip}:{port}"


def test_a_dead_address_of_a_provider_host_is_marked_unhealthy_and_skipped(start_gateway, upstream: MockUpstream, tmp_path: Path):
    host, (live, dead), binary = two_address_host(tmp_path)
    base = upstream.openai_url.replace("127.0.0.1", host)
    hc = {"interval_seconds": 1, "timeout_ms": 300}
    two = provider("two", "openai", base, keys=["sk-up-1"], timeouts=FAST_TIMEOUTS, health_check=hc, retry={"max_attempts": 2})
    gw = start_gateway(small_config([two], [route("m", ("two", "gpt-up"))], admin={"token": TOKEN}), binary=binary)
    up, down = sockaddr(live, upstream.port), sockaddr(dead, upstream.port)

    # From the start, whatever the checks have seen: a request sent to the dead
    # address is retried on the other one, never on the dead one again.
    for _ in range(6):
        status, tries, text = ask(gw)
        assert status == 200 and tries in (1, 2), text

    deadline = time.monotonic() + 5
    while addresses(gw).get(down, True) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert addresses(gw) == {up: True, down: False}, "the dead address was not marked unhealthy (or the live one was)"
    # One healthy address: the provider is usable.
    ready = http().get(gw.admin_url + "/health/ready", timeout=5).json()
    assert [p["usable"] for p in ready["providers"] if p["name"] == "two"] == [True]

    # Marked down: every request goes to the live address at the first attempt.
    before = len(upstream.requests)
    for _ in range(8):
        status, tries, text = ask(gw)
        assert (status, tries) == (200, 1), text
    assert len(upstream.requests) - before == 8
