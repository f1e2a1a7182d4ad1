//! Incremental SSE parser and writer (translate helper fills this in).
