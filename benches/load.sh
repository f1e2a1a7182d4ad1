#!/usr/bin/env bash
# aigate load benchmark: direct to a mock provider vs through a plain nginx
# reverse proxy vs through aigate, on loopback, measured in one run.
# See benches/README.md for what each figure means.
#
#   benches/load.sh [--route R[,R...]|all] [--quick] [--json FILE] [options]
#
# Needs wrk, nginx, python3, curl (Debian: apt-get install wrk nginx-light curl).
# Builds aigate with `cargo build --profile dist` (the shipped build) unless
# AIGATE_BIN names a binary.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

ROUTES_ALL="openai-passthrough openai-provider-passthrough anthropic-passthrough openai-to-anthropic anthropic-to-openai openai-passthrough-stream anthropic-passthrough-stream openai-to-anthropic-stream anthropic-to-openai-stream"

usage() {
    cat <<EOF
usage: benches/load.sh [options]

  --route LIST         comma-separated routes, or "all" (default: openai-passthrough)
                       routes: ${ROUTES_ALL// /, }
  --quick              ~30 s smoke run: 1 s warm-up, 3 s throughput, 4 s fixed rate,
                       aigate with 1 thread only
  --duration S         seconds of each throughput run (default 10)
  --rate-duration S    seconds of each fixed-rate run (default 10)
  --warmup S           seconds of warm-up per target (default 2)
  --connections N      wrk connections in the throughput run (default 32)
  --rate N             requests/s of the fixed-rate run (default 200)
  --rate-connections N connections of the fixed-rate run (default 8)
  --aigate-threads L   comma-separated aigate thread counts (default "1,2"; the
                       first is the one compared with nginx's single worker;
                       the others get a throughput run only)
  --sse-events N       events in the mock's SSE answers (default 200)
  --dashboard          also run aigate-<first>t+dash: the same aigate with an admin
                       token (so the request log and live feed are on) and one
                       open dashboard (benches/load/dashboard.py: one
                       /admin/events stream, /admin/stats, /admin/providers and
                       /admin/requests every 2 s), and aigate-<first>t+admin:
                       the admin API on with nobody watching; both compared
                       with aigate-<first>t
  --no-access-log      nginx access_log off and RUST_LOG=warn for aigate
                       (default: both write one access line per request)
  --max-error-pct P    fail when more than P% of a run's answers are not a
                       complete 2xx (default 1)
  --json FILE          also write every figure as JSON to FILE
  --keep               keep the temp dir (configs, logs, raw wrk output)
  --perf               record aigate with perf (cpu-clock, call graphs) during
                       its throughput run; prints the top symbols
  --callgrind          instead of the timed runs: nginx and aigate under
                       valgrind --tool=callgrind, the same requests for
                       --callgrind-seconds (default 8) each, and the user-space
                       instructions per request of both: a count that does not
                       depend on what else the machine is doing
  -h, --help

env: AIGATE_BIN=path  use this aigate binary instead of building one (it is
                      copied first, so a rebuild during the run changes nothing)
     WRK, NGINX       paths of wrk and nginx (default: from PATH)
EOF
}

ROUTES="openai-passthrough"
DURATION=10
RATE_DURATION=10
WARMUP=2
CONNECTIONS=32
RATE=200
RATE_CONNECTIONS=8
AIGATE_THREADS="1,2"
SSE_EVENTS=200
ACCESS_LOG=1
MAX_ERROR_PCT=1
JSON_OUT=""
KEEP=0
PERF=0
CALLGRIND=0
CG_SECONDS=8
QUICK=0
DASHBOARD=0

while [ $# -gt 0 ]; do
    case "$1" in
        --route|--routes) ROUTES="$2"; shift ;;
        --quick) QUICK=1 ;;
        --duration) DURATION="$2"; shift ;;
        --rate-duration) RATE_DURATION="$2"; shift ;;
        --warmup) WARMUP="$2"; shift ;;
        --connections) CONNECTIONS="$2"; shift ;;
        --rate) RATE="$2"; shift ;;
        --rate-connections) RATE_CONNECTIONS="$2"; shift ;;
        --aigate-threads) AIGATE_THREADS="$2"; shift ;;
        --sse-events) SSE_EVENTS="$2"; shift ;;
        --no-access-log) ACCESS_LOG=0 ;;
        --dashboard) DASHBOARD=1 ;;
        --max-error-pct) MAX_ERROR_PCT="$2"; shift ;;
        --json) JSON_OUT="$2"; shift ;;
        --keep) KEEP=1 ;;
        --perf) PERF=1 ;;
        --callgrind) CALLGRIND=1 ;;
        --callgrind-seconds) CG_SECONDS="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "load.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
if [ "$QUICK" = 1 ]; then
    WARMUP=1 DURATION=3 RATE_DURATION=4 AIGATE_THREADS="${AIGATE_THREADS%%,*}"
fi
[ "$ROUTES" = all ] && ROUTES="$ROUTES_ALL"
ROUTES="${ROUTES//,/ }"
for r in $ROUTES; do
    case " $ROUTES_ALL " in *" $r "*) ;; *) echo "load.sh: unknown route '$r'" >&2; exit 2 ;; esac
done
AIGATE_THREADS="${AIGATE_THREADS//,/ }"
# Throughput runs come in rounds (targets taking turns) when long enough.
ROUNDS=3
[ "$DURATION" -lt 6 ] && ROUNDS=1
ROUND_SECS=$(( DURATION / ROUNDS ))
for n in "$DURATION" "$RATE_DURATION" "$WARMUP" "$CONNECTIONS" "$RATE" "$RATE_CONNECTIONS" "$SSE_EVENTS" $AIGATE_THREADS; do
    case "$n" in ''|*[!0-9]*) echo "load.sh: '$n' is not a whole number" >&2; exit 2 ;; esac
done

WRK=${WRK:-wrk}
NGINX=${NGINX:-nginx}
for tool in "$WRK" "$NGINX" python3 curl; do
    command -v "$tool" >/dev/null || { echo "load.sh: '$tool' not found (Debian: apt-get install wrk nginx-light curl python3)" >&2; exit 2; }
done
if [ "$CALLGRIND" = 1 ]; then
    command -v valgrind >/dev/null || { echo "load.sh: --callgrind needs valgrind" >&2; exit 2; }
    AIGATE_THREADS="${AIGATE_THREADS%% *}"
fi
if [ "$PERF" = 1 ]; then
    command -v perf >/dev/null || { echo "load.sh: --perf needs perf (Debian: linux-perf)" >&2; exit 2; }
fi

log() { printf '[load.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- clean-up
TMP=$(mktemp -d "${TMPDIR:-/tmp}/aigate-load.XXXXXX")
# nginx workers run as an unprivileged user when started by root: let them
# read the fixtures (nothing secret in here).
chmod 755 "$TMP"
PIDS=()          # the servers started here, ended in cleanup()
RUNNING=()       # load generators (and perf) running right now
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    PIDS=("${RUNNING[@]}" "${PIDS[@]}")
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for _ in $(seq 1 30); do
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "$KEEP" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- aigate binary
if [ -n "${AIGATE_BIN:-}" ]; then
    [ -x "$AIGATE_BIN" ] || { echo "load.sh: AIGATE_BIN=$AIGATE_BIN is not executable" >&2; exit 2; }
    SRC_BIN="$AIGATE_BIN"
else
    log "building aigate (cargo build --profile dist: the shipped build, LTO)"
    (cd "$ROOT" && cargo build --profile dist --bin aigate)
    SRC_BIN="$ROOT/target/dist/aigate"
fi
# Copy it, and make sure the copy is whole: the binary may be being rebuilt
# while this starts (a copy taken mid-write runs, does nothing and exits 0).
for try in 1 2 3 4 5 6 7 8 9 10; do
    cp "$SRC_BIN" "$TMP/aigate"
    sleep 1
    if cmp -s "$SRC_BIN" "$TMP/aigate" && "$TMP/aigate" --version 2>/dev/null | grep -q aigate; then
        break
    fi
    [ "$try" = 10 ] && { echo "load.sh: $SRC_BIN keeps changing or does not run" >&2; exit 2; }
    log "$SRC_BIN is changing (being rebuilt?); copying again in 5 s"
    sleep 5
done
BIN_SHA=$(sha256sum "$TMP/aigate" | cut -c1-12)
log "aigate binary: $SRC_BIN (sha256 $BIN_SHA…)"

# ---------------------------------------------------------------- fixtures, ports
python3 "$HERE/load/fixtures.py" "$TMP/fx" "$SSE_EVENTS"
DOC="$TMP/docroot"
mkdir -p "$DOC/v1/chat" "$DOC/sse/v1/chat"
cp "$TMP/fx/openai-response.json" "$DOC/v1/chat/completions"
cp "$TMP/fx/anthropic-response.json" "$DOC/v1/messages"
cp "$TMP/fx/openai-stream.sse" "$DOC/sse/v1/chat/completions"
cp "$TMP/fx/anthropic-stream.sse" "$DOC/sse/v1/messages"

NTHREADS=$(echo $AIGATE_THREADS | wc -w)
# shellcheck disable=SC2207
# mock, nginx, one per aigate, and two each for the +admin and +dash twins.
PORTS=($(python3 - "$((6 + NTHREADS))" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
))
MOCK_PORT=${PORTS[0]}
PROXY_PORT=${PORTS[1]}

# ---------------------------------------------------------------- helpers
wait_http() { # URL [SECONDS]: wait (default 10 s) for any HTTP answer
    for _ in $(seq 1 $(( ${2:-10} * 10 ))); do
        curl -s -o /dev/null --max-time 1 "$1" && return 0
        sleep 0.1
    done
    echo "load.sh: nothing answers at $1" >&2
    return 1
}
children() { pgrep -P "$1" || true; }
# CPU time in ns of processes and all their threads (schedstat: ns resolution).
cpu_ns() {
    local t=0 run f
    for pid in "$@"; do
        for f in /proc/"$pid"/task/*/schedstat; do
            read -r run _ < "$f" 2>/dev/null || continue
            t=$((t + run))
        done
    done
    echo $t
}
# CPU time of processes in µs from /proc/PID/stat (clock-tick resolution),
# from one read: "ALL SYS", utime+stime and stime alone (the kernel's part:
# syscalls, the loopback TCP stack).
stat_us() {
    local t=0 k=0 hz stat rest
    hz=$(getconf CLK_TCK)
    for pid in "$@"; do
        stat=$(cat /proc/"$pid"/stat 2>/dev/null) || continue
        rest=${stat##*) }
        # shellcheck disable=SC2086
        set -- $rest
        t=$((t + ${12} + ${13})); k=$((k + ${13}))
    done
    echo $((t * 1000000 / hz)) $((k * 1000000 / hz))
}
cpu_ticks_us() { local all _; read -r all _ < <(stat_us "$@"); echo "$all"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' /proc/"$1"/status; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' /proc/"$1"/status; }

RESULTS="$TMP/results.txt"
: > "$RESULTS"
note() { echo "$*" >> "$RESULTS"; }
# Target name of an aigate start: 1 -> aigate-1t, 1d -> aigate-1t+dash.
# 1a -> aigate-1t+admin (the admin API on, no dashboard open).
tname() {
    case "$1" in
        *d) echo "aigate-${1%d}t+dash" ;;
        *a) echo "aigate-${1%a}t+admin" ;;
        *) echo "aigate-${1}t" ;;
    esac
}

# ---------------------------------------------------------------- mock upstream
render() { # TEMPLATE OUT
    sed -e "s#@TMP@#$TMP#g" -e "s#@DOCROOT@#$DOC#g" \
        -e "s#@MOCK_PORT@#$MOCK_PORT#g" -e "s#@PROXY_PORT@#$PROXY_PORT#g" \
        -e "s#@ACCESS_LOG@#$([ "$ACCESS_LOG" = 1 ] && echo "access_log $TMP/proxy-access.log;" || echo "access_log off;")#g" \
        "$1" > "$2"
}
render "$HERE/nginx/mock.conf.in" "$TMP/mock.conf"
render "$HERE/nginx/proxy.conf.in" "$TMP/proxy.conf"
"$NGINX" -p "$TMP" -c "$TMP/mock.conf" -e "$TMP/mock-error.log" >"$TMP/mock.out" 2>&1 &
PIDS+=($!)
MOCK_PID=$!
# Under callgrind the servers run as one process each (nginx without its
# master) so that one callgrind profile holds all the work.
VG=()
START_WAIT=10
if [ "$CALLGRIND" = 1 ]; then
    sed -i 's/^master_process on;/master_process off;/' "$TMP/proxy.conf"
    VG=(valgrind --tool=callgrind --dump-instr=no)
    START_WAIT=90
fi
"${VG[@]}" ${VG:+--callgrind-out-file=$TMP/cg-nginx.out} \
    "$NGINX" -p "$TMP" -c "$TMP/proxy.conf" -e "$TMP/proxy-error.log" >"$TMP/proxy.out" 2>&1 &
PIDS+=($!)
PROXY_PID=$!
wait_http "http://127.0.0.1:$MOCK_PORT/v1/chat/completions" || { cat "$TMP/mock.out" >&2; exit 1; }
wait_http "http://127.0.0.1:$PROXY_PORT/" "$START_WAIT" || { cat "$TMP/proxy.out" >&2; exit 1; }

# ---------------------------------------------------------------- aigate(s)
declare -A AIGATE_PORT AIGATE_PID
# Thread counts to start; "<N>d" is the --dashboard twin of the first (N threads).
STARTS="$AIGATE_THREADS"
# "<N>a" the same with the admin API on and nobody watching: what turning it
# on costs, apart from what an open dashboard costs.
[ "$DASHBOARD" = 1 ] && [ "$CALLGRIND" = 0 ] && STARTS="$STARTS ${AIGATE_THREADS%% *}a ${AIGATE_THREADS%% *}d"
DASH_TOKEN="bench-dashboard-token-0123456789"
i=2
for t in $STARTS; do
    port=${PORTS[$i]}; i=$((i + 1))
    admin=""
    if [[ "$t" == *d || "$t" == *a ]]; then
        aport=${PORTS[$i]}; i=$((i + 1))
        [[ "$t" == *d ]] && DASH_ADMIN_PORT=$aport
        admin="admin_listen: \"127.0.0.1:$aport\"
admin: {token: \"$DASH_TOKEN\", store: \"$TMP/aigate-keys-$t.json\"}"
    fi
    cat > "$TMP/aigate-$t.yaml" <<EOF
# generated by benches/load.sh
listen: "127.0.0.1:$port"
threads: ${t%[ad]}
pid_file: "$TMP/aigate-$t.pid"
upgrade_sock: "$TMP/aigate-$t-upgrade.sock"
$admin
grace_period_seconds: 0
graceful_shutdown_timeout_seconds: 1
keys: [{id: bench, key: "sk-bench"}]
providers:
  - {name: mock, kind: openai, base_url: "http://127.0.0.1:$MOCK_PORT/v1", credentials: [{key: "sk-up"}]}
  - {name: mocksse, kind: openai, base_url: "http://127.0.0.1:$MOCK_PORT/sse/v1", credentials: [{key: "sk-up"}]}
  - {name: mockanthropic, kind: anthropic, base_url: "http://127.0.0.1:$MOCK_PORT", credentials: [{key: "sk-up"}]}
  - {name: mockanthropicsse, kind: anthropic, base_url: "http://127.0.0.1:$MOCK_PORT/sse", credentials: [{key: "sk-up"}]}
models:
  - {name: gpt-4o, targets: [{provider: mock, model: gpt-4o}]}
  - {name: gpt-4o-sse, targets: [{provider: mocksse}]}
  - {name: claude-x, targets: [{provider: mockanthropic}]}
  - {name: claude-x-sse, targets: [{provider: mockanthropicsse}]}
provider_passthrough: {enabled: true}
EOF
    "$TMP/aigate" --test -c "$TMP/aigate-$t.yaml" >/dev/null
    # MIMALLOC_PURGE_DELAY set here is what aigate's one re-exec would set
    # (src/memory.rs); set by us, there is no re-exec, which valgrind would
    # not follow (the measured process would run natively).
    MIMALLOC_PURGE_DELAY=0 RUST_LOG=$([ "$ACCESS_LOG" = 1 ] && echo info || echo warn) \
        "${VG[@]}" ${VG:+--callgrind-out-file=$TMP/cg-aigate-${t}t.out} \
        "$TMP/aigate" -c "$TMP/aigate-$t.yaml" >"$TMP/aigate-$t.log" 2>&1 &
    PIDS+=($!)
    AIGATE_PID[$t]=$!
    AIGATE_PORT[$t]=$port
done
for t in $STARTS; do
    wait_http "http://127.0.0.1:${AIGATE_PORT[$t]}/health" "$START_WAIT" || { tail -20 "$TMP/aigate-$t.log" >&2; exit 1; }
done
DASH_T=""
if [[ "$STARTS" == *d ]]; then
    DASH_T="${AIGATE_THREADS%% *}d"
    python3 "$HERE/load/dashboard.py" 127.0.0.1 "$DASH_ADMIN_PORT" "$DASH_TOKEN" > "$TMP/dashboard.out" 2>&1 &
    DASH_PID=$!
    PIDS+=("$DASH_PID")
fi
sleep 0.5
if [ "$CALLGRIND" = 0 ]; then
for t in $STARTS; do
    note "RSS target=$(tname "$t") when=idle kb=$(rss_kb "${AIGATE_PID[$t]}")"
done
note "RSS target=nginx when=idle kb=$(( $(rss_kb "$PROXY_PID") + $(for c in $(children "$PROXY_PID"); do rss_kb "$c"; done | awk '{s+=$1} END {print s+0}') ))"
fi
note "META callgrind=$CALLGRIND callgrind_seconds=$CG_SECONDS aigate_bin=$SRC_BIN aigate_sha=$BIN_SHA nproc=$(nproc) rounds=$ROUNDS round_secs=$ROUND_SECS duration=$DURATION rate_duration=$RATE_DURATION warmup=$WARMUP connections=$CONNECTIONS rate=$RATE rate_connections=$RATE_CONNECTIONS sse_events=$SSE_EVENTS access_log=$ACCESS_LOG max_error_pct=$MAX_ERROR_PCT wrk=$("$WRK" -v 2>&1 | head -1 | awk '{print $2}') nginx=$("$NGINX" -v 2>&1 | sed 's/.*nginx\///')"

# ---------------------------------------------------------------- routes
# route -> "client-format model stream": what aigate is sent; the direct and
# nginx paths carry the native request of the upstream format instead.
route_spec() {
    case "$1" in
        openai-passthrough)           echo "openai gpt-4o openai" ;;
        # Pingora's own proxy path (provider passthrough, /mock/...): no body
        # read, no model routing; the floor of what a Pingora hop costs.
        openai-provider-passthrough)  echo "openai gpt-4o openai /mock" ;;
        anthropic-passthrough)        echo "anthropic claude-x anthropic" ;;
        openai-to-anthropic)          echo "openai claude-x anthropic" ;;
        anthropic-to-openai)          echo "anthropic gpt-4o openai" ;;
        openai-passthrough-stream)    echo "openai gpt-4o-sse openai" ;;
        anthropic-passthrough-stream) echo "anthropic claude-x-sse anthropic" ;;
        openai-to-anthropic-stream)   echo "openai claude-x-sse anthropic" ;;
        anthropic-to-openai-stream)   echo "anthropic gpt-4o-sse openai" ;;
    esac
}
# Writes the request as lines: path, body file, marker (a complete answer
# contains it), then headers.
# PREFIX is "/sse" for the direct and nginx stream baselines (the mock's
# stream answers live under /sse/); aigate is always asked at the real path.
request_for() { # FORMAT MODEL STREAM(0/1) KEY PREFIX
    local fmt=$1 model=$2 stream=$3 key=$4 prefix=$5 marker
    case "$fmt" in
        openai)
            if [ "$stream" = 1 ]; then marker="data: [DONE]"; else marker='"chat.completion"'; fi
            printf '%s\n' "$prefix/v1/chat/completions" "$TMP/fx/req-openai-$model.json" "$marker" \
                "Authorization: Bearer $key" "Content-Type: application/json" ;;
        anthropic)
            if [ "$stream" = 1 ]; then marker="message_stop"; else marker='"type":"message"'; fi
            printf '%s\n' "$prefix/v1/messages" "$TMP/fx/req-anthropic-$model.json" "$marker" \
                "x-api-key: $key" "anthropic-version: 2023-06-01" "Content-Type: application/json" ;;
    esac
}

FAILED=()

# ---------------------------------------------------------------- one target's load
# Targets are named direct, nginx, aigate-<N>t. For each the arrays below give
# the base URL, the request file (path, body, marker, headers) and the pids
# whose CPU time is the target's cost.
declare -A T_BASE T_REQ T_PIDS

# wrk_start TARGET PHASE SECONDS CONNECTIONS OUT [rate]: start wrk in the
# background; its pid is left in WRK_PID (not echoed: a process started in a
# command substitution is not this shell's child and cannot be waited for).
wrk_start() {
    local target=$1 phase=$2 dur=$3 conns=$4 out=$5 rate=${6:-}
    local req path body marker h script=wrk.lua
    mapfile -t req < "${T_REQ[$target]}"
    path=${req[0]} body=${req[1]} marker=${req[2]}
    local args=("body=$body" "marker=$marker")
    for h in "${req[@]:3}"; do args+=("header=$h"); done
    if [ -n "$rate" ]; then script=wrk-paced.lua; args+=("rate=$rate"); fi
    timeout $((dur + 30)) "$WRK" -t1 -c"$conns" -d"${dur}s" --timeout 5s --latency \
        -s "$HERE/load/$script" "${T_BASE[$target]}$path" -- "${args[@]}" >"$out" 2>&1 &
    WRK_PID=$!
    RUNNING+=("$WRK_PID")
}

# Check a finished run's output; writes RUN and BAD lines; non-zero past the error threshold.
# wrk_result ROUTE TARGET PHASE ROUND OUT CPU_NS CPU_TICKS_US MOCK_CPU_NS CPU_SYS_US
wrk_result() {
    local route=$1 target=$2 phase=$3 round=$4 out=$5 cpu=$6 ticks=$7 mock=$8 sys=${9:--1} res verdict
    if ! res=$(grep '^RESULT ' "$out" | sed 's/^RESULT //') || [ -z "$res" ]; then
        log "ERROR $route/$target/$phase: wrk gave no result:"; tail -5 "$out" >&2
        FAILED+=("$route/$target/$phase: wrk gave no result")
        return 1
    fi
    note "RUN route=$route target=$target phase=$phase round=$round cpu_ns=$cpu cpu_ticks_us=$ticks cpu_sys_us=$sys mock_cpu_ns=$mock $res"
    grep '^LASTBAD ' "$out" | sed "s#^LASTBAD #BAD route=$route target=$target phase=$phase #" >> "$RESULTS" || true
    # A benchmark of errors is worthless: fail loudly past the threshold.
    verdict=$(python3 - "$res" "$MAX_ERROR_PCT" <<'EOF'
import sys
kv = dict(x.split("=", 1) for x in sys.argv[1].split())
n = int(kv["requests"])
bad = int(kv["non2xx"]) + int(kv["incomplete"]) + sum(int(kv[k]) for k in ("err_connect", "err_read", "err_write", "err_timeout"))
pct = 100.0 * bad / max(n, 1)
print("ok" if n > 0 and pct <= float(sys.argv[2]) else f"{bad} of {n} answers not a complete 2xx ({pct:.2f}%)")
EOF
)
    if [ "$verdict" != ok ]; then
        log "ERROR $route/$target/$phase: $verdict"
        grep '^LASTBAD ' "$out" >&2 || true
        FAILED+=("$route/$target/$phase: $verdict")
        return 1
    fi
}

# Sequential saturating run of one target (warm-up or one throughput round).
run_tput() { # ROUTE TARGET PHASE ROUND SECONDS
    local route=$1 target=$2 phase=$3 round=$4 dur=$5
    local out="$TMP/wrk-$route-$target-$phase-$round.txt" pids perfpid="" wpid c0 t0 m0 s0
    read -ra pids <<<"${T_PIDS[$target]}"
    c0=$(cpu_ns "${pids[@]}"); read -r t0 s0 < <(stat_us "${pids[@]}"); m0=$(cpu_ns $MOCK_PIDS)
    if [ "$PERF" = 1 ] && [ "$phase" = tput ] && [[ "$target" == aigate-* ]]; then
        perf record -e cpu-clock -F 499 --call-graph dwarf,16384 \
            -o "$TMP/perf-$route-$target-$round.data" -p "${pids[0]}" >"$TMP/perf-$route-$target-$round.log" 2>&1 &
        perfpid=$!
        RUNNING+=("$perfpid")
        sleep 0.3
    fi
    wrk_start "$target" "$phase" "$dur" "$CONNECTIONS" "$out"
    wait "$WRK_PID" || true
    local c1 t1 m1 s1
    c1=$(cpu_ns "${pids[@]}"); read -r t1 s1 < <(stat_us "${pids[@]}"); m1=$(cpu_ns $MOCK_PIDS)
    if [ -n "$perfpid" ]; then kill -INT "$perfpid" 2>/dev/null || true; wait "$perfpid" 2>/dev/null || true; fi
    RUNNING=()
    wrk_result "$route" "$target" "$phase" "$round" "$out" $((c1 - c0)) $((t1 - t0)) $((m1 - m0)) $((s1 - s0))
}

# Fixed-rate runs of several targets at the same time, so that whatever else
# the machine does in that window (it is shared and noisy) hits all of them
# alike. Each target gets its own wrk at RATE requests/s.
run_rate_together() { # ROUTE TARGET...
    local route=$1; shift
    local t pids
    declare -A c0 t0 wpid
    for t in "$@"; do
        read -ra pids <<<"${T_PIDS[$t]}"
        c0[$t]=$(cpu_ns "${pids[@]}"); t0[$t]=$(cpu_ticks_us "${pids[@]}")
    done
    for t in "$@"; do
        wrk_start "$t" rate "$RATE_DURATION" "$RATE_CONNECTIONS" "$TMP/wrk-$route-$t-rate.txt" "$RATE"
        wpid[$t]=$WRK_PID
    done
    for t in "$@"; do wait "${wpid[$t]}" || true; done
    RUNNING=()
    local cpu ticks
    for t in "$@"; do
        read -ra pids <<<"${T_PIDS[$t]}"
        cpu=$(( $(cpu_ns "${pids[@]}") - c0[$t] )); ticks=$(( $(cpu_ticks_us "${pids[@]}") - t0[$t] ))
        # The mock serves every target's requests at once here: its CPU time
        # is not the direct run's alone, so none is reported for it.
        [ "$t" = direct ] && cpu=-1 ticks=-1
        wrk_result "$route" "$t" rate 1 "$TMP/wrk-$route-$t-rate.txt" "$cpu" "$ticks" -1 || true
    done
}

# Check one request by hand before loading a target; 0 when it answers a complete 2xx.
probe() { # ROUTE TARGET
    local route=$1 target=$2 req hargs=() h code
    mapfile -t req < "${T_REQ[$target]}"
    for h in "${req[@]:3}"; do hargs+=(-H "$h"); done
    code=$(curl -s -o "$TMP/probe.out" -w '%{http_code}' --max-time 10 -X POST \
        "${hargs[@]}" --data-binary "@${req[1]}" "${T_BASE[$target]}${req[0]}") || code=000
    if [[ "$code" == 2* ]] && grep -qF -- "${req[2]}" "$TMP/probe.out"; then
        return 0
    fi
    local body
    body=$(head -c 300 "$TMP/probe.out" | tr '\n' ' ')
    log "ERROR $route/$target: probe answered HTTP $code: $body"
    note "BAD route=$route target=$target phase=probe status=$code body=$body"
    FAILED+=("$route/$target: probe answered HTTP $code: $body")
    return 1
}

# Callgrind mode: the same requests through one target under valgrind; the
# instructions its process ran between zeroing and dumping the counters,
# divided by the answers wrk counted. 4 connections, so at most 4 requests
# straddle either end of the window.
run_cg() { # ROUTE TARGET
    local route=$1 target=$2 pid out before after dump ir
    read -r pid _ <<<"${T_PIDS[$target]}"
    wrk_start "$target" warmup 2 4 "$TMP/wrk-$route-$target-cgwarm.txt"
    wait "$WRK_PID" || true
    RUNNING=()
    callgrind_control -z "$pid" >/dev/null 2>&1
    out="$TMP/wrk-$route-$target-cg.txt"
    wrk_start "$target" cg "$CG_SECONDS" 4 "$out"
    wait "$WRK_PID" || true
    RUNNING=()
    sleep 0.5
    before=$( (ls "$TMP"/cg-"$target".out.* 2>/dev/null || true) | wc -l)
    callgrind_control -d "$pid" >/dev/null 2>&1
    for _ in $(seq 1 100); do
        after=$( (ls "$TMP"/cg-"$target".out.* 2>/dev/null || true) | wc -l)
        [ "$after" -gt "$before" ] && break
        sleep 0.1
    done
    dump=$(ls "$TMP"/cg-"$target".out.* | sort -t. -k3 -n | tail -1)
    cp "$dump" "$TMP/cg-$route-$target.out"
    ir=$(awk '/^summary:/ {print $2}' "$dump")
    wrk_result "$route" "$target" cg 1 "$out" -1 -1 -1 || return 0
    note "CG route=$route target=$target ir=$ir $(grep '^RESULT ' "$out" | sed 's/^RESULT //' | awk '{print $1}')"
    if [[ "$target" == aigate-* ]]; then
        local n
        n=$(grep '^RESULT ' "$out" | sed 's/.*requests=\([0-9]*\).*/\1/')
        callgrind_annotate --auto=no --inclusive=yes --threshold=100 "$TMP/cg-$route-$target.out" 2>/dev/null \
            | python3 "$HERE/load/cg_top.py" "$n" > "$TMP/cg-$route-$target.top.txt" || true
    fi
}

# ---------------------------------------------------------------- the runs
MOCK_PIDS="$MOCK_PID $(children "$MOCK_PID")"
FIRST_T=${AIGATE_THREADS%% *}
for route in $ROUTES; do
    read -r client model upstream via <<<"$(route_spec "$route")"
    stream=0; [[ "$route" == *-stream ]] && stream=1
    # Baseline: the native request of the upstream's format, straight through.
    if [ "$upstream" = openai ]; then native_model="gpt-4o"; else native_model="claude-x"; fi
    [ "$stream" = 1 ] && native_model="$native_model-sse"
    prefix=""; [ "$stream" = 1 ] && prefix="/sse"
    request_for "$upstream" "$native_model" "$stream" sk-up "$prefix" > "$TMP/req-$route-native.txt"
    request_for "$client" "$model" "$stream" sk-bench "${via:-}" > "$TMP/req-$route-aigate.txt"

    T_BASE[direct]="http://127.0.0.1:$MOCK_PORT"; T_REQ[direct]="$TMP/req-$route-native.txt"; T_PIDS[direct]="$MOCK_PIDS"
    T_BASE[nginx]="http://127.0.0.1:$PROXY_PORT"; T_REQ[nginx]="$TMP/req-$route-native.txt"
    T_PIDS[nginx]="$PROXY_PID $(children "$PROXY_PID")"
    targets=(direct nginx)
    for t in $STARTS; do
        n=$(tname "$t")
        T_BASE[$n]="http://127.0.0.1:${AIGATE_PORT[$t]}"
        T_REQ[$n]="$TMP/req-$route-aigate.txt"
        T_PIDS[$n]="${AIGATE_PID[$t]}"
        targets+=("$n")
    done

    live=()
    for t in "${targets[@]}"; do
        probe "$route" "$t" && live+=("$t")
    done
    [ ${#live[@]} -eq 0 ] && continue
    if [ "$CALLGRIND" = 1 ]; then
        for t in "${live[@]}"; do
            [ "$t" = direct ] && continue
            log "$route / $t: under callgrind, ${CG_SECONDS}s of requests"
            run_cg "$route" "$t"
        done
        continue
    fi
    log "$route: ${live[*]}: warm-up ${WARMUP}s each, throughput ${ROUNDS}×${ROUND_SECS}s each (interleaved), then $RATE/s for ${RATE_DURATION}s (direct, nginx, aigate-${FIRST_T}t at once)"
    ok=()
    for t in "${live[@]}"; do
        run_tput "$route" "$t" warmup 0 "$WARMUP" && ok+=("$t")
    done
    live=("${ok[@]}")
    # Throughput in rounds, the targets taking turns, so that a burst of
    # outside load is spread over all of them rather than landing on one.
    for round in $(seq 1 $ROUNDS); do
        ok=()
        for t in "${live[@]}"; do
            run_tput "$route" "$t" tput "$round" "$ROUND_SECS" && ok+=("$t")
        done
        live=("${ok[@]}")
    done
    rate_targets=()
    for t in "${live[@]}"; do
        case "$t" in direct|nginx|"aigate-${FIRST_T}t"|"aigate-${FIRST_T}t+dash"|"aigate-${FIRST_T}t+admin") rate_targets+=("$t") ;; esac
    done
    [ ${#rate_targets[@]} -gt 0 ] && run_rate_together "$route" "${rate_targets[@]}"
    for t in $STARTS; do
        note "RSS target=$(tname "$t") when=after-$route kb=$(rss_kb "${AIGATE_PID[$t]}")"
    done
done

if [ -n "$DASH_T" ]; then
    kill -TERM "$DASH_PID" 2>/dev/null || true
    wait "$DASH_PID" 2>/dev/null || true
    d=$(grep '^DASHBOARD ' "$TMP/dashboard.out" | sed 's/^DASHBOARD //')
    if [ -z "$d" ]; then
        FAILED+=("the dashboard client gave no result: $(tail -3 "$TMP/dashboard.out")")
    else
        note "LOG target=$(tname "$DASH_T") $d"
        case "$d" in *" polls=0 "*|"events=0 "*) FAILED+=("the dashboard client saw no poll or no event: $d") ;; esac
        case "$d" in *" poll_errors=0") ;; *) FAILED+=("dashboard polls failed: $d") ;; esac
    fi
fi
for t in $STARTS; do
    pid=${AIGATE_PID[$t]}
    kill -0 "$pid" 2>/dev/null || { FAILED+=("$(tname "$t") exited during the run"); continue; }
    if [ "$CALLGRIND" = 0 ]; then
        note "RSS target=$(tname "$t") when=after kb=$(rss_kb "$pid")"
        note "RSS target=$(tname "$t") when=peak kb=$(hwm_kb "$pid")"
    fi
    # wrk closes its connections at the end of each run with requests in
    # flight: aigate logs those as "client disconnected" or as a broken pipe
    # while writing the body; any other ERROR line or panic counts.
    CLIENT_GONE='client disconnected|Broken pipe|Connection reset by peer'
    grep -E ' ERROR |panicked' "$TMP/aigate-$t.log" | grep -vE "$CLIENT_GONE" \
        > "$TMP/aigate-$t.errors" || true
    n=$(wc -l < "$TMP/aigate-$t.errors")
    if [ "$n" -gt 0 ]; then
        note "LOG target=$(tname "$t") errors=$n"
        sed -n '1,3s/^/  aigate log: /p' "$TMP/aigate-$t.errors" >&2
    fi
    note "LOG target=$(tname "$t") client_disconnects=$(grep -E ' ERROR ' "$TMP/aigate-$t.log" | grep -cE "$CLIENT_GONE" || true)"
done
for f in "$TMP/proxy-error.log" "$TMP/mock-error.log"; do
    if [ -s "$f" ]; then log "$(basename "$f"):"; tail -3 "$f" >&2; fi
done

if [ "$PERF" = 1 ]; then
    for f in "$TMP"/perf-*.data; do
        [ -e "$f" ] || continue
        log "perf: $(basename "$f"): top symbols by self time, then by inclusive time (aigate code)"
        perf report -i "$f" --no-children --sort dso,symbol --stdio 2>/dev/null \
            | grep -E '^ +[0-9]' | head -30 | cut -c1-160 | tee "${f%.data}.self.txt" >&2 || true
        perf report -i "$f" --children --sort symbol -g none --stdio 2>/dev/null \
            | grep -E '^ +[0-9]' | grep -E 'aigate::|env_logger|prometheus|serde' | head -30 | cut -c1-160 \
            | tee "${f%.data}.children.txt" >&2 || true
    done
fi

python3 "$HERE/load/report.py" "$RESULTS" ${JSON_OUT:+--json "$JSON_OUT"}
if [ "$CALLGRIND" = 1 ]; then
    for f in "$TMP"/cg-*.top.txt; do
        [ -e "$f" ] || continue
        echo
        echo "$(basename "$f" .top.txt | sed 's/^cg-//'): where aigate's instructions go (inclusive, per request; a function's callees count in it):"
        cat "$f"
    done
fi
if [ ${#FAILED[@]} -gt 0 ]; then
    echo >&2
    echo "load.sh: FAILED — these targets or runs did not answer cleanly (a failed run's answers are counted in its 'bad' column; later runs of that target were skipped):" >&2
    printf '  %s\n' "${FAILED[@]}" >&2
    exit 1
fi
