#!/usr/bin/env bash
# Spike (issue 14): every check of SPIKE.md in one run, on loopback.
#   cargo build --release --example spike_subrequest && benches/subrequest/run.sh
# Starts upstream.py and the spike gateway in drive, pipe and preread modes,
# runs check.py against each (HTTP/1 and h2c), and stops what it started.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${SPIKE_BIN:-$HERE/../../target/release/examples/spike_subrequest}
PA=17201 PB=17202
PIDS=() UP=
# Gateways get SIGINT, Pingora's fast shutdown (SIGTERM waits out a 300 s
# grace period); the Python upstream SIGTERM.
trap 'for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done; [ -z "$UP" ] || kill "$UP" 2>/dev/null || true' EXIT
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/spike-run.XXXXXX")

python3 "$HERE/upstream.py" $PA $PB >"$LOGS/upstream.log" 2>&1 &
UP=$!
start() { # mode port
    "$BIN" --listen "127.0.0.1:$2" --a "127.0.0.1:$PA" --b "127.0.0.1:$PB" \
        --mode "$1" --threads 2 >"$LOGS/$1.log" 2>&1 &
    PIDS+=($!)
}
start drive 17210
start pipe 17211
start preread 17212
sleep 1

for port in 17210 17211; do
    mode=$( [ $port = 17210 ] && echo drive || echo pipe )
    echo "=== $mode (HTTP/1.1)"
    timeout 300 python3 "$HERE/check.py" $port $PA $PB
    timeout 60 python3 "$HERE/check.py" $port $PA $PB "head_hold_$mode"
    echo "=== $mode (h2c)"
    timeout 300 python3 "$HERE/check.py" $port $PA $PB --h2 large_bodies fallback stream_h2
    echo "=== Expect: 100-continue, 5 MiB (curl waits 1 s for a 100 that never comes)"
    timeout 300 python3 "$HERE/check.py" $port $PA $PB expect_continue
done
echo "=== preread (no subrequest): the 64 KiB retry buffer"
timeout 120 python3 "$HERE/check.py" 17212 $PA $PB preread_boundary
echo "logs: $LOGS"
