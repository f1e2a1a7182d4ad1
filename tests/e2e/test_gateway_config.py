"""Config: `aigate --test -c FILE`, ${VAR} interpolation, an open gateway, restarts."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import yaml

from harness import REPO, Gateway, provider, route, standard_config
from helpers import key_headers, post
from mock_upstream import MockUpstream


def _path_re(*parts: str | int) -> str:
    """A YAML path in any of the usual spellings: models[0].targets[0].provider,
    models.0.targets.0.provider, /models/0/targets/0/provider."""
    out = []
    for p in parts:
        out.append(rf"(?:\[{p}\]|[./]{p})" if isinstance(p, int) else rf"[./]?{re.escape(p)}")
    return "".join(out)


def _line_with(output: str, path: str, word: str) -> str | None:
    rx = re.compile(path)
    for line in output.splitlines():
        if rx.search(line) and word in line:
            return line
    return None


def test_config_test_flag_accepts_valid_file(run_aigate, tmp_path: Path, upstream_server: MockUpstream, dead_port: int):
    cfg = tmp_path / "ok.yaml"
    cfg.write_text(yaml.safe_dump(standard_config(upstream_server, dead_port), sort_keys=False))
    r = run_aigate("--test", "-c", str(cfg))
    assert r.returncode == 0, f"valid config rejected:\n{r.stdout}\n{r.stderr}"
    r2 = run_aigate("-t", "--config", str(cfg))
    assert r2.returncode == 0, f"short flags: {r2.stdout}\n{r2.stderr}"


BROKEN = """\
listen: "127.0.0.1:0"
max_body_bytes: "lots"
providers:
  - name: openai
    kind: openai
    base_url: "http://127.0.0.1:9/v1"
    credentials:
      - key: "sk-x"
    colour: blue
models:
  - name: m
    targets:
      - provider: missing-provider
"""


def test_config_test_flag_lists_every_problem_with_its_path(run_aigate, tmp_path: Path):
    cfg = tmp_path / "broken.yaml"
    cfg.write_text(BROKEN)
    r = run_aigate("--test", "-c", str(cfg))
    out = r.stdout + r.stderr
    assert r.returncode != 0, f"an invalid config passed --test:\n{out}"
    problems = {
        "unknown key providers[0].colour": _line_with(out, _path_re("providers", 0), "colour"),
        "wrong type max_body_bytes": _line_with(out, r"max_body_bytes", "max_body_bytes"),
        "models[0].targets[0] names a missing provider": _line_with(out, _path_re("models", 0, "targets", 0), "missing-provider"),
    }
    missing = [k for k, v in problems.items() if v is None]
    assert not missing, f"--test must list every problem with its YAML path; not found: {missing}\noutput:\n{out}"


def test_config_test_flag_rejects_unknown_top_level_key(run_aigate, tmp_path: Path):
    cfg = tmp_path / "typo.yaml"
    cfg.write_text('listen: "127.0.0.1:0"\nlisten_typo: 1\nproviders: []\nmodels: []\n')
    r = run_aigate("--test", "-c", str(cfg))
    assert r.returncode != 0 and "listen_typo" in (r.stdout + r.stderr)


def test_shipped_configs_pass_test_flag(run_aigate):
    """conf/aigate.yaml (the embedded default) and conf/aigate.example.yaml validate."""
    env = {"OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "sk-ant-test", "GEMINI_API_KEY": "g-test"}
    for name in ("aigate.yaml", "aigate.example.yaml"):
        path = REPO / "conf" / name
        assert path.is_file(), f"{path} is part of the SPEC layout"
        r = run_aigate("--test", "-c", str(path), env=env)
        assert r.returncode == 0, f"{name} fails --test:\n{r.stdout}\n{r.stderr}"


def test_env_interpolation_with_and_without_default(start_gateway, upstream: MockUpstream, dead_port: int):
    cfg = standard_config(upstream, dead_port)
    cfg["providers"] = [
        provider("from-env", "openai", upstream.openai_url, keys=["${E2E_UPSTREAM_KEY}"]),
        provider("from-default", "openai", "${E2E_UNSET_BASE:-" + upstream.openai_url + "}", keys=["${E2E_UNSET_KEY:-sk-up-3}"]),
    ]
    cfg["models"] = [route("env-model", ("from-env", "${E2E_MODEL_NAME}")), route("default-model", ("from-default", None))]
    gw = start_gateway(cfg, env={"E2E_UPSTREAM_KEY": "sk-up-2", "E2E_MODEL_NAME": "model-from-env"})
    r = post(gw, "openai-chat", "env-model", text="interp")
    assert r.status_code == 200, r.text
    rec = upstream.last()
    assert rec.credential == "sk-up-2" and rec.json()["model"] == "model-from-env"
    r = post(gw, "openai-chat", "default-model", text="interp")
    assert r.status_code == 200, r.text
    assert upstream.last().credential == "sk-up-3"


def test_open_gateway_without_keys(start_gateway, upstream: MockUpstream, dead_port: int):
    cfg = standard_config(upstream, dead_port)
    del cfg["keys"]
    gw = start_gateway(cfg)
    r = post(gw, "openai-chat", "gpt-4o", key=None, text="open")
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "echo: open"
    assert upstream.last().credential == "sk-up-1"


def test_restart_with_new_config_routes_differently(start_gateway, upstream: MockUpstream, dead_port: int):
    cfg = standard_config(upstream, dead_port)
    cfg["models"] = [route("swap", ("openai", "first-upstream"))]
    gw: Gateway = start_gateway(cfg)
    assert post(gw, "openai-chat", "swap").status_code == 200
    assert upstream.last().json()["model"] == "first-upstream"
    gw.restart(dict(cfg, models=[route("swap", ("compat", "second-upstream"))]))
    assert gw.alive
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "swap", "messages": [{"role": "user", "content": "x"}]}, headers=key_headers("openai-chat"), timeout=20)
    assert r.status_code == 200, r.text
    rec = upstream.last()
    assert rec.path == "/compat/v1/chat/completions" and rec.json()["model"] == "second-upstream"


def test_sigterm_stops_the_gateway_cleanly(start_gateway, upstream: MockUpstream, dead_port: int):
    gw: Gateway = start_gateway(standard_config(upstream, dead_port))
    assert post(gw, "openai-chat", "gpt-4o").status_code == 200
    code = gw.stop()
    assert code == 0, f"exit status after SIGTERM: {code}"
