#!/usr/bin/env bash
# Install the real agent CLIs that tests/e2e/test_agents.py drives through aigate
# (Claude Code, Codex, Gemini CLI; versions pinned in tests/e2e/agents/package.json and
# package-lock.json) into target/e2e-agents. No-op when that folder already holds
# exactly this lock (hash kept in the folder).
#
# The tests put target/e2e-agents/bin first on PATH: it holds `node` for the CLIs.
# Gemini CLI needs Node >= 20; where the system's is older (Debian 12 ships 18), that
# `node` is the pinned Node 20 build the npm registry carries (node-linux-<arch>).
#
#   tests/e2e/setup_agents.sh          # from anywhere
#   AIGATE_E2E_AGENTS=/tmp/a tests/e2e/setup_agents.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dest="${AIGATE_E2E_AGENTS:-$repo/target/e2e-agents}"
src="$here/agents"

for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "setup_agents: $tool not found; on Debian/Ubuntu: apt-get install -y nodejs npm" >&2
        exit 1
    fi
done

mkdir -p "$dest"
# One set-up at a time (two `cargo test` runs sharing a target/).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$dest.lock"
    flock 9
fi

NODE_PINNED=20.20.2
NODE_MIN_MAJOR=20
system_major="$(node -p 'process.versions.node.split(".")[0]')"

want="$( { cat "$src/package.json" "$src/package-lock.json"; node --version; echo "$NODE_PINNED"; } | sha256sum | cut -d' ' -f1)"
stamp="$dest/.lock.sha256"
bins=(claude codex gemini)

installed() {
    local b
    [ -x "$dest/bin/node" ] || return 1
    for b in "${bins[@]}"; do
        [ -x "$dest/node_modules/.bin/$b" ] || return 1
    done
}

# $dest/bin/node: the system's node when new enough, else the registry's Node build.
provide_node() {
    mkdir -p "$dest/bin"
    if [ "$system_major" -ge "$NODE_MIN_MAJOR" ]; then
        ln -sf "$(command -v node)" "$dest/bin/node"
        return
    fi
    local pkg="node-linux-$(node -p process.arch)"
    echo "setup_agents: system node $(node --version) < $NODE_MIN_MAJOR; installing $pkg@$NODE_PINNED"
    npm install --prefix "$dest/node-runtime" --no-save --no-audit --no-fund --loglevel=error "$pkg@$NODE_PINNED"
    ln -sf "$dest/node-runtime/node_modules/$pkg/bin/node" "$dest/bin/node"
}

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && installed; then
    echo "setup_agents: $dest is up to date"
    exit 0
fi

echo "setup_agents: installing $(node -e 'console.log(Object.entries(require(process.argv[1]).dependencies).map(([k, v]) => k + "@" + v).join(" "))' "$src/package.json") into $dest"
rm -f "$stamp"
cp "$src/package.json" "$src/package-lock.json" "$dest/"
# Install scripts off: the CLIs' optional native add-ons (node-pty, keytar) would
# compile or download; the agents run headless without them.
(cd "$dest" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
# Claude Code's own post-install step puts its platform binary in place of a stub.
(cd "$dest/node_modules/@anthropic-ai/claude-code" && node install.cjs)
provide_node
for b in "${bins[@]}"; do
    PATH="$dest/bin:$PATH" "$dest/node_modules/.bin/$b" --version >/dev/null
done
echo "$want" >"$stamp"
echo "setup_agents: ready ($dest)"
