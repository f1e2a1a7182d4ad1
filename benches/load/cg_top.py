#!/usr/bin/env python3
"""Reads `callgrind_annotate --inclusive=yes` output on stdin and prints where
aigate's instructions go, per request: the gateway's own functions and the
libraries that usually matter (allocator, memcpy, serde, logging, metrics,
pingora's HTTP code), largest first, one line per function.

Usage: callgrind_annotate --inclusive=yes FILE | cg_top.py REQUESTS [N]
"""

import re
import sys

INTEREST = re.compile(
    r"aigate::|env_logger|anstream|log::__private|serde_json::|serde_path_to_error|prometheus::|"
    r"sha2::|__memcpy|__memmove|memcpy|malloc|_int_free|\bfree\b|__rust_alloc|__rust_dealloc|"
    r"pingora_http::|pingora_core::protocols::http|pingora_core::connectors|pingora_proxy::Session|"
    r"http::header::|rand::|core::fmt::write"
)
LINE = re.compile(r"\s*([\d,]+)\s+\(\s*([\d.]+)%\)\s+(\S.*)$")


def main():
    requests = max(int(sys.argv[1]), 1)
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    best = {}
    for raw in sys.stdin:
        m = LINE.match(raw)
        if not m:
            continue
        ir = int(m.group(1).replace(",", ""))
        where = m.group(3)
        if where.startswith("=>") or where.startswith("*"):
            continue  # call-tree or source-annotation lines
        # "file:function [object]": keep the function; the same function shows
        # up under several files when code was inlined into it.
        func = where.split(":", 1)[1] if ":" in where.split(" ")[0] else where
        func = re.sub(r"\s*\[[^\]]*\]\s*$", "", func).strip()
        func = re.sub(r"'\d+$", "", func)  # recursion markers
        if not INTEREST.search(func):
            continue
        if ir > best.get(func, 0):
            best[func] = ir
    rows = sorted(best.items(), key=lambda kv: -kv[1])[:top]
    for func, ir in rows:
        print("  %9.0f Ir/req  %s" % (ir / requests, func[:150]))


if __name__ == "__main__":
    main()
