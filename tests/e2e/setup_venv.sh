#!/usr/bin/env bash
# Create target/e2e-venv and install tests/e2e/requirements.txt into it.
# Idempotent: does nothing when the venv already holds exactly these requirements
# (hash of requirements.txt + the Python version, kept in the venv).
#
#   tests/e2e/setup_venv.sh            # from anywhere
#   AIGATE_E2E_VENV=/tmp/v tests/e2e/setup_venv.sh
#   PYTHON=python3.11 tests/e2e/setup_venv.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${AIGATE_E2E_VENV:-$repo/target/e2e-venv}"
req="$here/requirements.txt"
py="${PYTHON:-python3}"

if ! command -v "$py" >/dev/null 2>&1; then
    echo "setup_venv: $py not found; install Python 3 (3.11 tested)" >&2
    exit 1
fi

mkdir -p "$(dirname "$venv")"
# One set-up at a time (two `cargo test` runs sharing a target/).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$venv.lock"
    flock 9
fi

want="$( { cat "$req"; "$py" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
stamp="$venv/.requirements.sha256"

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
    && "$venv/bin/python" -c 'import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in ("openai", "anthropic", "google.genai", "pytest", "httpx", "yaml", "selenium")))' 2>/dev/null; then
    echo "setup_venv: $venv is up to date"
    exit 0
fi

# A venv from another Python, or half-made by an earlier failure: start over.
if [ -e "$venv" ] && ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
    rm -rf "$venv"
fi
if [ ! -x "$venv/bin/python" ]; then
    echo "setup_venv: creating $venv with $("$py" --version 2>&1)"
    if ! "$py" -m venv "$venv"; then
        rm -rf "$venv"
        echo "setup_venv: '$py -m venv' failed; on Debian/Ubuntu: apt-get install -y python3-venv" >&2
        exit 1
    fi
fi

echo "setup_venv: installing $(grep -cE '^[A-Za-z]' "$req") pinned packages"
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$req"
"$venv/bin/python" -c 'import openai, anthropic, google.genai, pytest, httpx, yaml, selenium'
echo "$want" >"$stamp"
echo "setup_venv: ready ($venv)"
