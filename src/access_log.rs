//! The access line, written straight to stderr in the same shape as every
//! other log line (`[2026-11-23T15:50:01Z INFO access] ...`), with one write.
//!
//! Why not `log::info!`: through env_logger the line was formatted twice (the
//! message into a String, then into the record buffer) and the timestamp once
//! per line, a measurable share of a passthrough request (benches/README.md).
//! Here the message is formatted once into a per-thread buffer and the
//! timestamp text is reused for the whole second. `RUST_LOG` still decides: the line is
//! written only when the `access` target is enabled at `info`.

use crate::translate::json::push_uint;
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
    // Writing into a Vec cannot fail.
    write_with(bare, |buf| {
        let _ = buf.write_fmt(msg);
    });
}

/// `write`, with the message appended by `fill` (the text line of every
/// request: pushing its fields costs a fraction of `format_args!`).
pub fn write_with(bare: bool, fill: impl FnOnce(&mut Vec<u8>)) {
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
        fill(&mut l.buf);
        l.buf.push(b'\n');
        // A failed log write must not fail the request (env_logger's rule too).
        let _ = std::io::stderr().lock().write_all(&l.buf);
        if l.buf.capacity() > 64 * 1024 {
            // One huge line (a long error text) does not pin its buffer.
            l.buf = Vec::new();
        }
    });
}

/// A client-influenced value, escaped so it stays one field on one line: `\`
/// and `"` are backslashed, controls, non-ASCII bytes and (unless `quoted`, when
/// the field is in quotes) spaces become `\xNN` (`\n`, `\r`, `\t`), and a value
/// over `max` bytes is cut and marked with `...`. Printable ASCII (every
/// well-formed id and model name) is copied as it is.
pub fn push_text(buf: &mut Vec<u8>, v: &str, max: usize, quoted: bool) {
    let (v, cut) = match v.as_bytes().get(..max) {
        Some(head) if v.len() > max => (head, true),
        _ => (v.as_bytes(), false),
    };
    for &b in v {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            0x21..=0x7e => buf.push(b),
            b' ' if quoted => buf.push(b),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                buf.extend_from_slice(&[
                    b'\\',
                    b'x',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ]);
            }
        }
    }
    if cut {
        buf.extend_from_slice(b"...");
    }
}

/// Milliseconds with one decimal, as `{:.1}` of `d` in ms.
pub fn push_ms(buf: &mut Vec<u8>, d: std::time::Duration) {
    let tenths = (d.as_nanos() + 50_000) / 100_000;
    push_uint(buf, (tenths / 10) as u64);
    buf.push(b'.');
    buf.push(b'0' + (tenths % 10) as u8);
}

/// Dollars to the nano-dollar, trailing zeros (and a bare point) dropped:
/// `0.0001325`, `2`.
pub fn push_usd(buf: &mut Vec<u8>, usd: f64) {
    let nanos = (usd.max(0.0) * 1e9).round() as u64;
    push_uint(buf, nanos / 1_000_000_000);
    let mut frac = nanos % 1_000_000_000;
    if frac == 0 {
        return;
    }
    let mut width = 9;
    while frac.is_multiple_of(10) {
        frac /= 10;
        width -= 1;
    }
    buf.push(b'.');
    // Leading zeros of the fraction, then its significant digits.
    let digits = frac.ilog10() as usize + 1;
    buf.resize(buf.len() + width - digits, b'0');
    push_uint(buf, frac);
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
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut b = Vec::new();
        f(&mut b);
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn numbers_as_the_format_strings_printed_them() {
        for n in [0, 7, 10, 200, 4_294_967_296, u64::MAX] {
            assert_eq!(text(|b| push_uint(b, n)), n.to_string());
        }
        for us in [0u64, 49, 51, 640, 1_234, 99_949, 99_951, 12_345_678] {
            let d = std::time::Duration::from_micros(us);
            assert_eq!(
                text(|b| push_ms(b, d)),
                format!("{:.1}", d.as_secs_f64() * 1000.0),
                "{us}"
            );
        }
        let old = |c: f64| {
            let c = (c * 1e9).round() / 1e9;
            format!("{c:.9}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
        };
        for c in [
            0.0,
            0.0001325,
            1.0,
            2.5,
            0.000000001,
            0.123456789,
            12.000000004,
            3.1e-10,
            1234.5,
        ] {
            assert_eq!(text(|b| push_usd(b, c)), old(c), "{c}");
        }
    }

    #[test]
    fn text_fields_stay_on_one_line() {
        assert_eq!(text(|b| push_text(b, "gpt-4o", 64, false)), "gpt-4o");
        assert_eq!(
            text(|b| push_text(b, "gpt-4o\r\nX-Evil: 1", 64, false)),
            "gpt-4o\\r\\nX-Evil:\\x201"
        );
        assert_eq!(
            text(|b| push_text(b, "a\0b\"c\\", 64, false)),
            "a\\x00b\\\"c\\\\"
        );
        assert_eq!(text(|b| push_text(b, "é", 64, false)), "\\xc3\\xa9");
        assert_eq!(text(|b| push_text(b, "abcdef", 3, false)), "abc...");
        assert_eq!(
            text(|b| push_text(b, "upstream said \"no\"\n", 64, true)),
            "upstream said \\\"no\\\"\\n"
        );
        // Cutting inside a multi-byte character still writes only ASCII.
        let t = text(|b| push_text(b, "aé", 2, false));
        assert_eq!(t, "a\\xc3...");
        for v in ["x\ny", "\r", "\u{2028}", &"z".repeat(5000)] {
            let t = text(|b| push_text(b, v, 256, false));
            assert!(t.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{t:?}");
            assert!(t.len() <= 256 * 4 + 3);
        }
    }

    #[test]
    fn stamps_like_env_logger() {
        assert_eq!(stamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(stamp(1_795_449_001), "2026-11-23T15:50:01Z");
    }
}
