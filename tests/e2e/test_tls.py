"""Issue 7, TLS: listener TLS from cert and key files (HTTP/1.1 and HTTP/2 by ALPN),
the certificate swapped on SIGHUP (in place: same process, connections kept; a bad
one rejected while the old keeps serving), `--test` checking the files, and upstream
TLS verified by default, against a provider's `ca_file` when given.

Every certificate is made here (a throw-away CA per test module, P-256 keys) and every
client verifies the gateway against that CA: nothing runs with verification off
except the one provider configured with `tls_verify: false`.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import anthropic
import httpx
import httpx2
import openai
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness import FAST_TIMEOUTS, GW_KEY_A, UPSTREAM_KEYS, Gateway, provider, route, small_config
from helpers import anthropic_stream_text, assert_error_shape, chat_stream_text, metric_sum, parse_metrics
from mock_upstream import MockUpstream

H = {"authorization": f"Bearer {GW_KEY_A}", "content-type": "application/json"}


# ---------------------------------------------------------------------------- certificates


class Pki:
    """A CA that signs leaf certificates, written as PEM files into `dir`."""

    def __init__(self, dir: Path, name: str):
        self.dir = dir
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"aigate e2e {name} CA")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False, key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = str(dir / f"{name}-ca.pem")
        Path(self.ca_file).write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def leaf(self, *names: str) -> tuple[x509.Certificate, bytes, bytes]:
        """(certificate, cert PEM, PKCS#8 key PEM) for these IPs / DNS names."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        sans: list[x509.GeneralName] = []
        for n in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        return cert, cert.public_bytes(serialization.Encoding.PEM), key_pem

    def server_context(self, *names: str) -> ssl.SSLContext:
        """A server-side context with a fresh leaf for `names` (for an HTTPS mock)."""
        _, cert_pem, key_pem = self.leaf(*names)
        tag = "-".join(names).replace(":", "_")
        cf, kf = self.dir / f"srv-{tag}.pem", self.dir / f"srv-{tag}.key"
        cf.write_bytes(cert_pem)
        kf.write_bytes(key_pem)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cf, kf)
        return ctx


def install(cert_pem: bytes, key_pem: bytes, cert_file: Path, key_file: Path) -> None:
    """Replace the files the way deploy tools do: write aside, rename over."""
    for data, path in ((cert_pem, cert_file), (key_pem, key_file)):
        tmp = path.with_suffix(".new")
        tmp.write_bytes(data)
        os.replace(tmp, path)


def served_cert(port: int, ca_file: str) -> x509.Certificate:
    """The certificate a new connection to the gateway gets (verified against the CA)."""
    ctx = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as t:
            der = t.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"), "gateway")


@pytest.fixture
def tls_files(pki: Pki, tmp_path: Path) -> tuple[Path, Path, x509.Certificate]:
    """cert_file / key_file for the listener, holding a fresh leaf for 127.0.0.1."""
    cert, cert_pem, key_pem = pki.leaf("127.0.0.1")
    cf, kf = tmp_path / "server.pem", tmp_path / "server.key"
    install(cert_pem, key_pem, cf, kf)
    return cf, kf, cert


@pytest.fixture
def start_tls(pki: Pki, tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []

    def start(config: dict) -> Gateway:
        g = Gateway(config, tmp_path / f"tls{len(started)}", name=f"tls{len(started)}", tls_ca=pki.ca_file)
        started.append(g)
        return g.start()

    yield start
    for g in started:
        g.stop()


def tls_config(mock: MockUpstream, cf: Path, kf: Path, **tls: Any) -> dict:
    providers = [
        provider("oa", "openai", mock.openai_url, timeouts=FAST_TIMEOUTS),
        provider("an", "anthropic", mock.url, timeouts=FAST_TIMEOUTS),
    ]
    models = [
        route("chat-m", ("oa", "gpt-up")),
        route("slow-m", ("oa", "gpt-slow-250")),
        route("claude-m", ("an", "claude-up")),
    ]
    return small_config(providers, models, tls={"cert_file": str(cf), "key_file": str(kf), **tls})


def chat(text: str, model: str = "chat-m", stream: bool = False) -> dict:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
    return body


def wait_log(gw: Gateway, since: int, *needles: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = gw.log_text(since)
        if all(n in text for n in needles):
            return text
        time.sleep(0.05)
    raise AssertionError(f"log never showed {needles}; got:\n{gw.log_text(since)[-3000:]}")


def running(pid: int) -> bool:
    """Alive and not a zombie (the upgraded process is nobody's child here, so
    it may stay unreaped for a while)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def reloads(gw: Gateway, result: str) -> float:
    text = httpx.get(gw.admin_url + "/metrics", timeout=5).text
    return metric_sum(parse_metrics(text), "aigate_config_reloads_total", result=result)


# ---------------------------------------------------------------------------- listener TLS


def test_tls_http1_and_http2_requests_streams_and_large_bodies(start_tls: Callable[..., Gateway], upstream: MockUpstream, tls_files: tuple[Path, Path, x509.Certificate]) -> None:
    cf, kf, leaf = tls_files
    gw = start_tls(tls_config(upstream, cf, kf))
    assert gw.url.startswith("https://")
    assert served_cert(gw.port, gw.tls_ca).serial_number == leaf.serial_number

    for h2, want in ((False, "HTTP/1.1"), (True, "HTTP/2")):
        with gw.client(http2=h2) as c:
            r = c.post("/v1/chat/completions", json=chat(f"over {want}"), headers=H)
            assert r.status_code == 200, r.text
            assert r.http_version == want
            assert r.json()["choices"][0]["message"]["content"] == f"echo: over {want}"

            # A streamed answer: SSE events pass through, then [DONE].
            with c.stream("POST", "/v1/chat/completions", json=chat(f"stream {want}", stream=True), headers=H) as s:
                assert s.status_code == 200 and s.http_version == want
                assert s.headers["content-type"].startswith("text/event-stream")
                raw = "".join(s.iter_text())
            text, _, done = chat_stream_text(raw)
            assert (text, done) == (f"echo: stream {want}", True), raw[-500:]

            # An Anthropic-format route on the same connection.
            r = c.post("/v1/messages", json={"model": "claude-m", "max_tokens": 16, "messages": [{"role": "user", "content": "hey"}]}, headers={"x-api-key": GW_KEY_A, "anthropic-version": "2023-06-01"})
            assert r.status_code == 200 and r.http_version == want, r.text
            assert r.json()["content"][0]["text"] == "echo: hey"

            # 1 MiB of request body: read in request_filter across many h2 DATA frames / h1 reads.
            big = "x" * (1 << 20)
            r = c.post("/v1/chat/completions", json=chat(big), headers=H, timeout=30)
            assert r.status_code == 200 and r.http_version == want, r.text[:300]
            assert r.json()["choices"][0]["message"]["content"] == "echo: " + big
            assert upstream.last("/chat/completions").json()["messages"][0]["content"] == big

            # The gateway's own errors go out over h2 too, in the client's format.
            r = c.post("/v1/chat/completions", json=chat("x", model="no-such-model"), headers=H)
            assert r.http_version == want
            assert_error_shape("openai-chat", r, 404)

    # Health and metrics stay plain HTTP on admin_listen.
    assert httpx.get(gw.admin_url + "/health/live", timeout=5).status_code == 200


def test_tls_sdk_clients_over_http2(start_tls: Callable[..., Gateway], upstream: MockUpstream, tls_files: tuple[Path, Path, x509.Certificate]) -> None:
    cf, kf, _ = tls_files
    gw = start_tls(tls_config(upstream, cf, kf))
    versions: list[str] = []
    hooks = {"response": [lambda r: versions.append(r.http_version)]}

    oa = openai.OpenAI(base_url=gw.openai_url, api_key=GW_KEY_A, max_retries=0, http_client=httpx.Client(http2=True, verify=gw.verify(), event_hooks=hooks, timeout=20))
    r = oa.chat.completions.create(model="chat-m", messages=[{"role": "user", "content": "sdk"}])
    assert r.choices[0].message.content == "echo: sdk"
    chunks = list(oa.chat.completions.create(model="chat-m", messages=[{"role": "user", "content": "sdk stream"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: sdk stream"

    # anthropic 2.x runs on httpx2, the fork with the same client API.
    an = anthropic.Anthropic(base_url=gw.url, api_key=GW_KEY_A, max_retries=0, http_client=httpx2.Client(http2=True, verify=gw.verify(), event_hooks=hooks, timeout=20))
    with an.messages.stream(model="claude-m", max_tokens=32, messages=[{"role": "user", "content": "claude stream"}]) as s:
        assert s.get_final_text() == "echo: claude stream"

    assert versions == ["HTTP/2"] * 3, versions


def test_tls_client_without_the_ca_is_refused_and_http2_can_be_off(start_tls: Callable[..., Gateway], upstream: MockUpstream, tls_files: tuple[Path, Path, x509.Certificate]) -> None:
    cf, kf, _ = tls_files
    gw = start_tls(tls_config(upstream, cf, kf, http2=False))
    # The system roots do not know the test CA: the certificate is really checked.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(gw.url + "/health/live", verify=ssl.create_default_context(), timeout=5)
    # `http2: false`: ALPN offers HTTP/1.1 only, so an h2-capable client falls back.
    with gw.client(http2=True) as c:
        r = c.post("/v1/chat/completions", json=chat("h1 only"), headers=H)
        assert (r.status_code, r.http_version) == (200, "HTTP/1.1"), r.text


def test_tls_config_test_checks_cert_and_key(run_aigate: Callable[..., Any], pki: Pki, tmp_path: Path, tls_files: tuple[Path, Path, x509.Certificate]) -> None:
    cf, kf, _ = tls_files
    _, _, other_key = pki.leaf("127.0.0.1")
    (tmp_path / "other.key").write_bytes(other_key)

    def check(cert: Path, key: Path) -> Any:
        p = tmp_path / "t.yaml"
        p.write_text(f"listen: 127.0.0.1:1\ntls: {{cert_file: {cert}, key_file: {key}}}\n")
        return run_aigate("--test", "-c", str(p))

    ok = check(cf, kf)
    assert ok.returncode == 0, ok.stderr
    bad = check(cf, tmp_path / "other.key")
    assert bad.returncode != 0 and "tls:" in bad.stderr and "does not go with" in bad.stderr, bad.stderr
    missing = check(tmp_path / "nope.pem", kf)
    assert missing.returncode != 0 and "cannot read cert_file" in missing.stderr, missing.stderr


def test_tls_sighup_serves_the_new_certificate_in_flight_requests_finish(start_tls: Callable[..., Gateway], pki: Pki, upstream: MockUpstream, tls_files: tuple[Path, Path, x509.Certificate]) -> None:
    cf, kf, old = tls_files
    gw = start_tls(tls_config(upstream, cf, kf))
    assert gw.proc is not None
    pid = gw.proc.pid
    assert served_cert(gw.port, gw.tls_ca).serial_number == old.serial_number
    ok_before = reloads(gw, "ok")

    # Established connections (one h2, one h1) and slow streams in flight across the swap.
    h2 = gw.client(http2=True)
    h1 = gw.client(http2=False)
    assert h2.post("/v1/chat/completions", json=chat("warm"), headers=H).http_version == "HTTP/2"
    results: dict[str, str] = {}
    started = threading.Barrier(3)

    def stream(name: str, c: httpx.Client) -> None:
        with c.stream("POST", "/v1/chat/completions", json=chat(f"inflight {name}", model="slow-m", stream=True), headers=H) as s:
            started.wait(5)
            results[name] = f"{s.status_code} {s.http_version} " + chat_stream_text("".join(s.iter_text()))[0]

    threads = [threading.Thread(target=stream, args=(n, c)) for n, c in (("h2", h2), ("h1", h1))]
    for t in threads:
        t.start()
    started.wait(5)

    new, cert_pem, key_pem = pki.leaf("127.0.0.1")
    install(cert_pem, key_pem, cf, kf)
    mark = gw.log_size()
    gw.proc.send_signal(signal.SIGHUP)
    log = wait_log(gw, mark, "config reloaded")
    assert "graceful upgrade" not in log, "a new certificate alone is swapped in place"
    assert f"{new.serial_number:x}"[-8:] in log.replace(":", ""), "the new certificate is logged"

    assert served_cert(gw.port, gw.tls_ca).serial_number == new.serial_number
    for t in threads:
        t.join(20)
    assert results == {"h2": "200 HTTP/2 echo: inflight h2", "h1": "200 HTTP/1.1 echo: inflight h1"}
    # The connections opened before the reload still serve requests.
    for c, want in ((h2, "HTTP/2"), (h1, "HTTP/1.1")):
        r = c.post("/v1/chat/completions", json=chat("after"), headers=H)
        assert (r.status_code, r.http_version, r.json()["choices"][0]["message"]["content"]) == (200, want, "echo: after")
        c.close()
    assert gw.proc.pid == pid and gw.alive
    assert reloads(gw, "ok") == ok_before + 1


def test_tls_sighup_with_a_bad_certificate_keeps_the_old_one(start_tls: Callable[..., Gateway], pki: Pki, upstream: MockUpstream, tls_files: tuple[Path, Path, x509.Certificate]) -> None:
    cf, kf, old = tls_files
    gw = start_tls(tls_config(upstream, cf, kf))
    assert gw.proc is not None
    _, new_cert, _ = pki.leaf("127.0.0.1")
    _, _, wrong_key = pki.leaf("127.0.0.1")
    good_cert, good_key = cf.read_bytes(), kf.read_bytes()
    errors = reloads(gw, "error")

    for n, (cert_pem, key_pem, why) in enumerate([
        (new_cert, wrong_key, "does not go with"),  # a renewal whose key was not copied
        (b"", good_key, "holds no PEM certificate"),  # a cert file caught half written
    ]):
        install(cert_pem, key_pem, cf, kf)
        mark = gw.log_size()
        gw.proc.send_signal(signal.SIGHUP)
        wait_log(gw, mark, "config reload rejected", why)
        assert reloads(gw, "error") == errors + n + 1
        assert served_cert(gw.port, gw.tls_ca).serial_number == old.serial_number
        with gw.client(http2=True) as c:
            r = c.post("/v1/chat/completions", json=chat("still here"), headers=H)
            assert (r.status_code, r.json()["choices"][0]["message"]["content"]) == (200, "echo: still here")

    # Fixed files are taken by the next SIGHUP.
    install(good_cert, good_key, cf, kf)
    mark = gw.log_size()
    gw.proc.send_signal(signal.SIGHUP)
    wait_log(gw, mark, "config reloaded")
    assert served_cert(gw.port, gw.tls_ca).serial_number == old.serial_number


def test_tls_turned_on_by_sighup_hands_the_listener_to_a_new_process(start_gateway: Callable[..., Gateway], pki: Pki, upstream: MockUpstream, tls_files: tuple[Path, Path, x509.Certificate]) -> None:
    """Turning TLS on (or off, or changing `http2`) changes the listeners' acceptor:
    SIGHUP does the graceful upgrade, and the new process serves TLS on the same port."""
    cf, kf, leaf = tls_files
    cfg = tls_config(upstream, cf, kf)
    tls = cfg.pop("tls")
    gw = start_gateway(cfg)
    assert gw.proc is not None
    old_pid = gw.proc.pid
    assert httpx.post(gw.url + "/v1/chat/completions", json=chat("plain"), headers=H, timeout=10).status_code == 200
    pid_file = gw.workdir / f"{gw.name}.pid"

    gw.config = {**cfg, "tls": tls}
    gw.write_config()  # same ports
    mark = gw.log_size()
    gw.proc.send_signal(signal.SIGHUP)
    new_pid = 0
    try:
        wait_log(gw, mark, "the listeners changed: starting a graceful upgrade", timeout=15)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            text = pid_file.read_text().strip() if pid_file.exists() else ""
            if text.isdigit() and int(text) != old_pid:
                new_pid = int(text)
                break
            time.sleep(0.05)
        assert new_pid, f"pid file never named a new process; log:\n{gw.log_text(mark)[-3000:]}"
        gw.proc.wait(15)  # the old process hands over and exits
        assert served_cert(gw.port, pki.ca_file).serial_number == leaf.serial_number
        with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=pki.ca_file), timeout=10) as c:
            r = c.post(f"https://127.0.0.1:{gw.port}/v1/chat/completions", json=chat("now tls"), headers=H)
        assert (r.status_code, r.http_version, r.json()["choices"][0]["message"]["content"]) == (200, "HTTP/2", "echo: now tls")
    finally:
        if new_pid:
            os.kill(new_pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and running(new_pid):
                time.sleep(0.05)


# ---------------------------------------------------------------------------- upstream TLS


@pytest.fixture(scope="module")
def upstream_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("upstream-pki"), "upstream")


@pytest.fixture
def https_mock(upstream_pki: Pki) -> Iterator[Callable[..., MockUpstream]]:
    """HTTPS mock upstreams with a leaf from the upstream CA for the given names."""
    mocks: list[MockUpstream] = []

    def start(*names: str, sni: list | None = None) -> MockUpstream:
        ctx = upstream_pki.server_context(*names)
        if sni is not None:
            ctx.sni_callback = lambda _sock, name, _ctx: sni.append(name)
        m = MockUpstream(keys=UPSTREAM_KEYS, tls=ctx).start()
        mocks.append(m)
        return m

    yield start
    for m in mocks:
        m.stop()


def test_upstream_tls_verified_against_ca_file_and_refused_without_it(start_gateway: Callable[..., Gateway], https_mock: Callable[..., MockUpstream], upstream_pki: Pki) -> None:
    good = https_mock("127.0.0.1")
    wrong_name = https_mock("wrong.invalid")  # same CA, a name that is not the base_url host
    sni: list = []
    by_name = https_mock("localhost", sni=sni)
    assert good.openai_url.startswith("https://")
    ca = upstream_pki.ca_file
    t = FAST_TIMEOUTS
    providers = [
        provider("with-ca", "openai", good.openai_url, timeouts=t, ca_file=ca),
        provider("claude-ca", "anthropic", good.url, timeouts=t, ca_file=ca),
        provider("no-ca", "openai", good.openai_url, timeouts=t),
        provider("wrong-name", "openai", wrong_name.openai_url, timeouts=t, ca_file=ca),
        provider("by-name", "openai", f"https://localhost:{by_name.port}/v1", timeouts=t, ca_file=ca),
        provider("unverified", "openai", good.openai_url, timeouts=t, tls_verify=False),
    ]
    models = [
        route("with-ca", ("with-ca", "gpt-up")),
        route("claude-ca", ("claude-ca", "claude-up")),
        route("no-ca", ("no-ca", "gpt-up")),
        route("wrong-name", ("wrong-name", "gpt-up")),
        route("by-name", ("by-name", "gpt-up")),
        route("unverified", ("unverified", "gpt-up")),
    ]
    cfg = small_config(providers, models, retry={"max_attempts": 2, "base_delay_ms": 1, "max_delay_ms": 5})
    gw = start_gateway(cfg)
    assert "provider 'unverified': upstream TLS certificates are not verified" in gw.log_text()
    c = httpx.Client(base_url=gw.url, timeout=20)

    r = c.post("/v1/chat/completions", json=chat("tls up", model="with-ca"), headers=H)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "echo: tls up"
    assert good.last("/chat/completions").credential == "sk-up-1"
    # A stream, converted (OpenAI client -> Anthropic upstream), over the verified connection.
    with c.stream("POST", "/v1/chat/completions", json=chat("tls stream", model="claude-ca", stream=True), headers=H) as s:
        assert s.status_code == 200
        assert chat_stream_text("".join(s.iter_text()))[0] == "echo: tls stream"
    assert good.last("/v1/messages").json()["stream"] is True

    # Without the CA the system roots do not know the upstream's issuer: 502, and the log says why.
    n = len(good.requests)
    mark = gw.log_size()
    r = c.post("/v1/chat/completions", json=chat("x", model="no-ca"), headers=H)
    body = assert_error_shape("openai-chat", r, 502)
    assert "TLS" in json.dumps(body), body
    log = wait_log(gw, mark, "provider 'no-ca': TLS with 127.0.0.1")
    assert "UnknownIssuer" in log, log
    assert len(good.requests) == n, "no request went over an unverified connection"

    # The right CA but a certificate for another name: refused too.
    mark = gw.log_size()
    r = c.post("/v1/chat/completions", json=chat("x", model="wrong-name"), headers=H)
    assert_error_shape("openai-chat", r, 502)
    assert "not valid for name" in wait_log(gw, mark, "provider 'wrong-name': TLS")
    assert wrong_name.requests == []

    # A DNS-name base_url: SNI and verification use that host.
    r = c.post("/v1/chat/completions", json=chat("named", model="by-name"), headers=H)
    assert r.status_code == 200, r.text
    assert "localhost" in sni, sni

    # `tls_verify: false` is the explicit opt-out.
    r = c.post("/v1/chat/completions", json=chat("unverified", model="unverified"), headers=H)
    assert (r.status_code, r.json()["choices"][0]["message"]["content"]) == (200, "echo: unverified")
    c.close()


def test_upstream_ca_file_is_checked_by_config_test(run_aigate: Callable[..., Any], tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    (tmp_path / "junk.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    p.write_text(
        "providers:\n"
        f"  - {{name: a, kind: openai, credentials: [{{key: k}}], ca_file: {tmp_path / 'junk.pem'}}}\n"
        f"  - {{name: b, kind: openai-compatible, base_url: 'http://127.0.0.1:9/v1', ca_file: {tmp_path / 'junk.pem'}}}\n"
    )
    r = run_aigate("--test", "-c", str(p))
    assert r.returncode != 0
    assert "providers[0].ca_file" in r.stderr and "providers[1].ca_file: needs an https:// base_url" in r.stderr, r.stderr


def test_passthrough_and_routes_dial_with_the_providers_tls_trust(start_gateway: Callable[..., Gateway], https_mock: Callable[..., MockUpstream], upstream_pki: Pki) -> None:
    """Issue 14, drift case 2: provider passthrough and configured routes make their
    upstream peer with the same builder as AI requests, so a provider's `ca_file`
    and `tls_verify: false` hold on them too."""
    good = https_mock("127.0.0.1")
    ca = upstream_pki.ca_file
    t = FAST_TIMEOUTS
    providers = [
        provider("with-ca", "openai", good.openai_url, timeouts=t, ca_file=ca),
        provider("no-ca", "openai", good.openai_url, timeouts=t),
        provider("unverified", "openai", good.openai_url, timeouts=t, tls_verify=False),
        provider("claude-ca", "anthropic", good.url, timeouts=t, ca_file=ca),
    ]
    routes = [
        {"path": "/files/*", "provider": "with-ca", "target": good.openai_url},
        {"path": "/v1/files/*", "provider": "with-ca"},
        {"path": "/files-no-ca/*", "provider": "no-ca", "target": good.openai_url},
    ]
    cfg = small_config(providers, [route("m", ("with-ca", "gpt-up"))], routes=routes, provider_passthrough={"enabled": True, "prefix": "/"})
    gw = start_gateway(cfg)
    c = httpx.Client(base_url=gw.url, timeout=20)

    # Passthrough, verified against the provider's CA.
    r = c.post("/with-ca/v1/chat/completions", json=chat("pass tls", model="gpt-up"), headers=H)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "echo: pass tls"
    assert good.last("/chat/completions").credential == "sk-up-1"
    r = c.post("/claude-ca/v1/messages", json={"model": "claude-up", "max_tokens": 20, "messages": [{"role": "user", "content": "pass claude"}]}, headers=H)
    assert r.status_code == 200, r.text
    assert r.json()["content"][0]["text"] == "echo: pass claude"
    # Configured routes naming the provider: with a target on its host, and without one.
    r = c.post("/files/chat/completions", json=chat("route tls", model="gpt-up"), headers=H)
    assert (r.status_code, r.json()["choices"][0]["message"]["content"]) == (200, "echo: route tls"), r.text
    r = c.post("/v1/files/chat/completions", json=chat("route base", model="gpt-up"), headers=H)
    assert r.status_code == 200, r.text
    assert good.last().path.endswith("/v1/files/chat/completions")

    # Without the CA the system roots do not know the issuer: 502, nothing sent.
    n = len(good.requests)
    for path in ("/no-ca/v1/chat/completions", "/files-no-ca/chat/completions"):
        r = c.post(path, json=chat("x", model="gpt-up"), headers=H)
        body = assert_error_shape("openai-chat", r, 502)
        assert "TLS" in json.dumps(body), body
    assert len(good.requests) == n, "no request went over an unverified connection"

    # `tls_verify: false`: the explicit opt-out works on passthrough too.
    r = c.post("/unverified/v1/chat/completions", json=chat("unverified pass", model="gpt-up"), headers=H)
    assert (r.status_code, r.json()["choices"][0]["message"]["content"]) == (200, "echo: unverified pass")
    c.close()


def test_health_checks_verify_upstream_tls_like_requests(start_gateway: Callable[..., Gateway], https_mock: Callable[..., MockUpstream], upstream_pki: Pki) -> None:
    """The active TLS health check takes its options from the same peer builder: with
    the provider's `ca_file` (or `tls_verify: false`) the upstream is healthy, without
    it the handshake fails and the provider turns unusable."""
    good = https_mock("127.0.0.1")
    hc = {"interval_seconds": 1, "timeout_ms": 500}
    t = FAST_TIMEOUTS
    providers = [
        provider("with-ca", "openai", good.openai_url, timeouts=t, ca_file=upstream_pki.ca_file, health_check=hc),
        provider("unverified", "openai", good.openai_url, timeouts=t, tls_verify=False, health_check=hc),
        provider("no-ca", "openai", good.openai_url, timeouts=t, health_check=hc),
    ]
    gw = start_gateway(small_config(providers, [route("m", ("with-ca", "gpt-up"))]))

    def usable() -> dict:
        body = httpx.get(gw.admin_url + "/health/ready", timeout=5).json()
        return {p["name"]: p["usable"] for p in body["providers"]}

    deadline = time.monotonic() + 6
    while usable().get("no-ca", True) and time.monotonic() < deadline:
        time.sleep(0.1)
    # Checked at least once more after 'no-ca' failed: the others stay up.
    time.sleep(1.2)
    assert usable() == {"with-ca": True, "unverified": True, "no-ca": False}
