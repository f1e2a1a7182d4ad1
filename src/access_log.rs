//! The access line, written straight to stderr in the same shape as every
//! other log line (`[2026-11-23T15:50:01Z INFO access] ...`), with one write.
//!
//! Why not `log::info!`: through env_logger the line was formatted twice (the
//! message into a String, then into the record buffer) and the timestamp once
//! per line, about 6k instructions of a passthrough request's ~140k. Here the
//! message is formatted once into a per-thread buffer and the timestamp text
//! is reused for the whole second. `RUST_LOG` still decides: the line is
//! written only when the `access` target is enabled at `info`.

use std::cell::RefCell;
use std::fmt::Arguments;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

struct Line {
    buf: Vec<u8>,
    second: u64,
    stamp: String,
}

thread_local! {
    static LINE: RefCell<Line> = const {
        RefCell::new(Line { buf: Vec::new(), second: u64::MAX, stamp: String::new() })
    };
}

/// Whether access lines are on (`RUST_LOG` allows `access` at info).
pub fn enabled() -> bool {
    log::log_enabled!(target: "access", log::Level::Info)
}

/// Write one access line. `bare`: the message is a whole JSON object and is
/// written alone (`log_format: json`).
pub fn write(bare: bool, msg: Arguments<'_>) {
    LINE.with_borrow_mut(|l| {
        l.buf.clear();
        if !bare {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if now != l.second {
                l.second = now;
                l.stamp = stamp(now);
            }
            l.buf.push(b'[');
            l.buf.extend_from_slice(l.stamp.as_bytes());
            l.buf.extend_from_slice(b" INFO access] ");
        }
        // Writing into a Vec cannot fail.
        let _ = l.buf.write_fmt(msg);
        l.buf.push(b'\n');
        // A failed log write must not fail the request (env_logger's rule too).
        let _ = std::io::stderr().lock().write_all(&l.buf);
        if l.buf.capacity() > 64 * 1024 {
            // One huge line (a long error text) does not pin its buffer.
            l.buf = Vec::new();
        }
    });
}

/// RFC 3339 UTC to the second, as env_logger prints it.
fn stamp(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(|| "1970-01-01T00:00:00Z".into(), |t| format!("{t:.0}"))
}

#[cfg(test)]
mod tests {
    use super::stamp;

    #[test]
    fn stamps_like_env_logger() {
        assert_eq!(stamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(stamp(1_795_449_001), "2026-11-23T15:50:01Z");
    }
}
