#!/usr/bin/env python3
"""Summarises benches/load.sh results: one table per route, ratios vs targets.

Usage: report.py RESULTS [--json FILE]

RESULTS holds the lines load.sh writes: RUN (one wrk run with the CPU time of
the measured processes), RSS, BAD, LOG and META, each `KIND key=value ...`.
"""

import json
import re
import sys

# The speed budget (issue 14; benchmarks to compare against, not assertions):
# CPU per request vs the nginx hop carrying the native request, at saturation.
CPU_TARGET = {
    "openai-passthrough": 2.0,
    # Pingora's own proxy path: no budget of its own; held to the
    # passthrough one for comparison.
    "openai-provider-passthrough": 2.0,
    "anthropic-passthrough": 2.0,
    "openai-to-anthropic": 2.5,
    "anthropic-to-openai": 2.5,
    # The budget names the converted 200-event stream; a passed-through
    # stream is held to the same.
    "openai-passthrough-stream": 3.0,
    "anthropic-passthrough-stream": 3.0,
    "openai-to-anthropic-stream": 3.0,
    "anthropic-to-openai-stream": 3.0,
}
ADDED_P99_TARGET_US = 1000
IDLE_RSS_TARGET_KB = 30 * 1024


def parse(path):
    runs, rss, bad, logs, cg, meta = [], [], [], [], [], {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "BAD":
                # body= is free text: keep it whole
                head, _, body = rest.partition(" body=")
                d = dict(x.split("=", 1) for x in head.split() if "=" in x)
                d["body"] = body
                bad.append(d)
                continue
            d = {}
            for x in rest.split(" "):
                if "=" in x:
                    k, v = x.split("=", 1)
                    d[k] = v
            if kind == "RUN":
                for k, v in list(d.items()):
                    if k not in ("route", "target", "phase"):
                        d[k] = float(v)
                runs.append(d)
            elif kind == "RSS":
                d["kb"] = int(d["kb"])
                rss.append(d)
            elif kind == "LOG":
                logs.append(d)
            elif kind == "CG":
                cg.append(d)
            elif kind == "META":
                meta = d
    return runs, rss, bad, logs, cg, meta


def print_callgrind(cg, summary):
    """Instructions per request under callgrind: user space only, the same
    count whatever else the machine does."""
    by_route = {}
    for c in cg:
        n = max(int(c["requests"]), 1)
        by_route.setdefault(c["route"], {})[c["target"]] = {
            "requests": int(c["requests"]), "ir": int(c["ir"]), "ir_per_req": int(c["ir"]) / n}
    print()
    print("callgrind: user-space instructions per request (kernel time, i.e. syscalls, not counted)")
    print("  %-30s %14s %14s %8s" % ("route", "nginx Ir/req", "aigate Ir/req", "ratio"))
    for route, t in by_route.items():
        ng = t.get("nginx", {}).get("ir_per_req")
        ag_name = next((k for k in t if k.startswith("aigate")), None)
        ag = t.get(ag_name, {}).get("ir_per_req") if ag_name else None
        r = ratio(ag, ng)
        t["ratio"] = r
        print("  %-30s %14s %14s %8s" % (route, fmt(ng), fmt(ag), fmt(r, "{:.2f}×")))
    summary["callgrind"] = by_route


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def figures(rounds):
    """One phase of one target: the sum over its rounds for counts and CPU,
    the median over rounds for latency percentiles (they cannot be merged)."""
    n = sum(r["requests"] for r in rounds)
    secs = sum(r["duration_us"] for r in rounds) / 1e6
    cpu_ns = sum(r["cpu_ns"] for r in rounds)
    n1 = max(n, 1)
    known = all(r["cpu_ns"] >= 0 for r in rounds)  # -1: not measurable in this phase
    mock_known = all(r["mock_cpu_ns"] >= 0 for r in rounds)
    return {
        "rounds": len(rounds),
        "requests": int(n),
        "seconds": secs,
        "rps": n / secs if secs else 0.0,
        "p50_us": median([r["lat_p50_us"] for r in rounds]),
        "p90_us": median([r["lat_p90_us"] for r in rounds]),
        "p99_us": median([r["lat_p99_us"] for r in rounds]),
        "p999_us": median([r["lat_p999_us"] for r in rounds]),
        "max_us": max(r["lat_max_us"] for r in rounds),
        "cpu_seconds": cpu_ns / 1e9 if known else None,
        "cpu_us_per_req": cpu_ns / 1e3 / n1 if known else None,
        "cpu_ticks_us_per_req": sum(r["cpu_ticks_us"] for r in rounds) / n1 if known else None,
        # The kernel's part (stime, 10 ms ticks): syscalls and the loopback
        # network stack, which a proxy pays per request whatever its code.
        "cpu_sys_us_per_req": (sum(r["cpu_sys_us"] for r in rounds) / n1
                               if known and all(r.get("cpu_sys_us", -1) >= 0 for r in rounds) else None),
        "mock_cpu_us_per_req": sum(r["mock_cpu_ns"] for r in rounds) / 1e3 / n1 if mock_known else None,
        "bad": int(sum(r["non2xx"] + r["incomplete"] + r["err_connect"] + r["err_read"]
                       + r["err_write"] + r["err_timeout"] for r in rounds)),
    }


def fmt(v, spec="{:.0f}"):
    return "-" if v is None else spec.format(v)


def ratio(a, b):
    if a is None or b is None or b <= 0:
        return None
    return a / b


def main():
    path = sys.argv[1]
    json_out = sys.argv[sys.argv.index("--json") + 1] if "--json" in sys.argv else None
    runs, rss, bad, logs, cg, meta = parse(path)

    grouped = {}
    for r in runs:
        if r["phase"] not in ("tput", "rate"):
            continue
        grouped.setdefault((r["route"], r["target"], r["phase"]), []).append(r)
    routes = {}
    for (route, target, phase), rounds in grouped.items():
        routes.setdefault(route, {}).setdefault(target, {})[phase] = figures(rounds)
    for b in bad:
        if b.get("phase") in ("tput", "rate", "probe", "warmup"):
            routes.setdefault(b["route"], {})

    rss_by = {}
    for r in rss:
        rss_by.setdefault(r["target"], {})[r["when"]] = r["kb"]

    print()
    print("aigate load benchmark — %s (sha256 %s…), %s cores" % (
        meta.get("aigate_bin", "?"), meta.get("aigate_sha", "?"), meta.get("nproc", "?")))
    if meta.get("callgrind") == "1":
        print("callgrind mode: nginx (one process) and aigate (threads: 1) under valgrind --tool=callgrind, "
              "wrk -t1 -c4 for %ss per target after a 2 s warm-up" % meta.get("callgrind_seconds", "?"))
    else:
        print("throughput: wrk -t1 -c%s, %s round(s) of %ss per target, targets taking turns; "
              "latency: %s req/s for %ss over %s connections, direct+nginx+aigate at the same time"
              % (meta.get("connections", "?"), meta.get("rounds", "?"), meta.get("round_secs", "?"),
                 meta.get("rate", "?"), meta.get("rate_duration", "?"), meta.get("rate_connections", "?")))
    print("access logs %s; SSE answers of %s events; CPU = schedstat of the measured process(es) / requests served"
          % ("on (nginx access_log, aigate RUST_LOG=info)" if meta.get("access_log") == "1" else "off",
             meta.get("sse_events", "?")))

    summary = {"meta": meta, "rss_kb": rss_by, "routes": {}, "bad": bad, "logs": logs}
    for route, targets in routes.items():
        rate = meta.get("rate", "?")
        print()
        print("== %s" % route)
        head = ("target", "req/s", "p50µs", "p99µs", f"p50@{rate}", f"p99@{rate}", "+p99µs",
                "CPUµs/req", f"CPU@{rate}", "mockµs", "bad")
        print("  %-14s %9s %7s %7s %9s %9s %7s %10s %9s %7s %5s" % head)
        direct_p99 = targets.get("direct", {}).get("rate", {}).get("p99_us")
        direct_p50 = targets.get("direct", {}).get("rate", {}).get("p50_us")
        for name in ("direct", "nginx") + tuple(sorted(t for t in targets if t.startswith("aigate"))):
            t = targets.get(name)
            if not t:
                print("  %-14s %s" % (name, "no figures (failed: see the errors below)"))
                continue
            tp, rt = t.get("tput", {}), t.get("rate", {})
            added = None
            if rt and direct_p99 is not None and name != "direct":
                added = rt["p99_us"] - direct_p99
                rt["added_p99_us"] = added
                rt["added_p50_us"] = rt["p50_us"] - direct_p50
            print("  %-14s %9s %7s %7s %9s %9s %7s %10s %9s %7s %5s" % (
                name, fmt(tp.get("rps")), fmt(tp.get("p50_us")), fmt(tp.get("p99_us")),
                fmt(rt.get("p50_us")), fmt(rt.get("p99_us")), fmt(added),
                fmt(tp.get("cpu_us_per_req"), "{:.1f}"), fmt(rt.get("cpu_us_per_req"), "{:.1f}"),
                fmt(tp.get("mock_cpu_us_per_req"), "{:.1f}"),
                (tp.get("bad", 0) + rt.get("bad", 0)) if t else "-"))

        ng = targets.get("nginx", {})
        ag_name = min((t for t in targets if re.fullmatch(r"aigate-\d+t", t)), default=None,
                      key=lambda s: int(s[len("aigate-"):-1]))
        ag = targets.get(ag_name, {}) if ag_name else {}
        rs = {
            "cpu_ratio_tput": ratio(ag.get("tput", {}).get("cpu_us_per_req"),
                                    ng.get("tput", {}).get("cpu_us_per_req")),
            "cpu_ratio_rate": ratio(ag.get("rate", {}).get("cpu_us_per_req"),
                                    ng.get("rate", {}).get("cpu_us_per_req")),
            "rps_ratio": ratio(ag.get("tput", {}).get("rps"), ng.get("tput", {}).get("rps")),
            "aigate_added_p99_us": ag.get("rate", {}).get("added_p99_us"),
            "nginx_added_p99_us": ng.get("rate", {}).get("added_p99_us"),
            "aigate_added_p50_us": ag.get("rate", {}).get("added_p50_us"),
            "nginx_added_p50_us": ng.get("rate", {}).get("added_p50_us"),
            "cpu_target": CPU_TARGET.get(route),
        }
        a, n = rs["aigate_added_p99_us"], rs["nginx_added_p99_us"]
        rs["added_p99_ratio"] = ratio(a, n) if (n is not None and n > 0) else None

        def verdict(ok):
            return "" if ok is None else (" (target met)" if ok else " (TARGET MISSED)")

        cr = rs["cpu_ratio_tput"]
        print("  %s/nginx CPU per request: %s at saturation, %s at %s/s; target ≤ %s×%s"
              % (ag_name or "aigate", fmt(cr, "{:.2f}×"), fmt(rs["cpu_ratio_rate"], "{:.2f}×"), rate,
                 rs["cpu_target"], verdict(None if cr is None or rs["cpu_target"] is None else cr <= rs["cpu_target"])))
        # Where the ratio comes from: user space (the proxy's own code) or the
        # kernel (syscalls, loopback TCP), from utime/stime.
        def split(t):
            tp = t.get("tput", {})
            tot, sys_ = tp.get("cpu_ticks_us_per_req"), tp.get("cpu_sys_us_per_req")
            return (None, None) if tot is None or sys_ is None else (tot - sys_, sys_)
        (au, ak), (nu, nk) = split(ag), split(ng)
        rs.update(user_us_per_req=au, kernel_us_per_req=ak, nginx_user_us_per_req=nu,
                  nginx_kernel_us_per_req=nk, user_ratio=ratio(au, nu), kernel_ratio=ratio(ak, nk))
        if au is not None and nu is not None:
            print("  user + kernel µs per request at saturation: %s %.1f + %.1f, nginx %.1f + %.1f "
                  "(user %s, kernel %s)" % (ag_name, au, ak, nu, nk, fmt(rs["user_ratio"], "{:.2f}×"),
                                            fmt(rs["kernel_ratio"], "{:.2f}×")))
        print("  added p99 at %s/s vs direct: %s %s µs, nginx %s µs%s; target < %d µs%s"
              % (rate, ag_name or "aigate", fmt(a), fmt(n),
                 "" if rs["added_p99_ratio"] is None else " (ratio %.2f×)" % rs["added_p99_ratio"],
                 ADDED_P99_TARGET_US, verdict(None if a is None else a < ADDED_P99_TARGET_US)))
        print("  added p50 at %s/s vs direct: %s %s µs, nginx %s µs" % (
            rate, ag_name or "aigate", fmt(rs["aigate_added_p50_us"]), fmt(rs["nginx_added_p50_us"])))
        print("  %s/nginx requests/s at saturation: %s" % (ag_name or "aigate", fmt(rs["rps_ratio"], "{:.2f}×")))
        adm = targets.get(f"{ag_name}+admin") if ag_name else None
        if adm:
            rs["admin_cpu_ratio_tput"] = ratio(adm.get("tput", {}).get("cpu_us_per_req"),
                                               ag.get("tput", {}).get("cpu_us_per_req"))
            rs["admin_cpu_ratio_rate"] = ratio(adm.get("rate", {}).get("cpu_us_per_req"),
                                               ag.get("rate", {}).get("cpu_us_per_req"))
            print("  with the admin API on, no dashboard (%s+admin/%s): CPU per request %s at saturation, %s at %s/s"
                  % (ag_name, ag_name, fmt(rs["admin_cpu_ratio_tput"], "{:.3f}×"),
                     fmt(rs["admin_cpu_ratio_rate"], "{:.3f}×"), rate))
        dash = targets.get(f"{ag_name}+dash") if ag_name else None
        if dash:
            rs["dashboard_cpu_ratio_tput"] = ratio(dash.get("tput", {}).get("cpu_us_per_req"),
                                                   ag.get("tput", {}).get("cpu_us_per_req"))
            rs["dashboard_cpu_ratio_rate"] = ratio(dash.get("rate", {}).get("cpu_us_per_req"),
                                                   ag.get("rate", {}).get("cpu_us_per_req"))
            rs["dashboard_rps_ratio"] = ratio(dash.get("tput", {}).get("rps"), ag.get("tput", {}).get("rps"))
            if adm:
                rs["dashboard_vs_admin_cpu_ratio_tput"] = ratio(dash.get("tput", {}).get("cpu_us_per_req"),
                                                                adm.get("tput", {}).get("cpu_us_per_req"))
                print("  one open dashboard against the admin API on alone (%s+dash/%s+admin): CPU per request %s at saturation"
                      % (ag_name, ag_name, fmt(rs["dashboard_vs_admin_cpu_ratio_tput"], "{:.3f}×")))
            print("  with one open dashboard (%s+dash/%s): CPU per request %s at saturation, %s at %s/s; requests/s %s"
                  % (ag_name, ag_name, fmt(rs["dashboard_cpu_ratio_tput"], "{:.3f}×"),
                     fmt(rs["dashboard_cpu_ratio_rate"], "{:.3f}×"), rate, fmt(rs["dashboard_rps_ratio"], "{:.3f}×")))
        summary["routes"][route] = {"targets": targets, "ratios": rs}

    if cg:
        print_callgrind(cg, summary)
    print()
    for t, w in sorted(rss_by.items()):
        parts = ", ".join("%s %.1f MB" % (k, v / 1024) for k, v in w.items())
        line = "RSS %-10s %s" % (t, parts)
        if t.startswith("aigate") and "idle" in w:
            line += "; idle target < 30 MB" + (" (target met)" if w["idle"] < IDLE_RSS_TARGET_KB else " (TARGET MISSED)")
        print(line)
    for l in logs:
        if "errors" in l:
            print("aigate log of %s has %s error/panic lines besides client disconnects (kept with --keep)"
                  % (l.get("target"), l.get("errors")))
        if "polls" in l:
            print("dashboard of %s: %s request events (%s bytes) on its live feed, %s polls, %s failed"
                  % (l.get("target"), l.get("events"), l.get("event_bytes"), l.get("polls"), l.get("poll_errors")))
        if "client_disconnects" in l:
            print("aigate log of %s: %s requests ended by the client closing mid-answer (wrk stopping with requests in flight)"
                  % (l.get("target"), l.get("client_disconnects")))
    if bad:
        print()
        print("non-2xx or incomplete answers seen (last one per run):")
        for b in bad:
            print("  %s/%s/%s: HTTP %s %s" % (b.get("route"), b.get("target"), b.get("phase"),
                                            b.get("status"), b.get("body", "")[:200]))
    if json_out:
        with open(json_out, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
        print("\nJSON written to %s" % json_out)


if __name__ == "__main__":
    main()
