//! Incremental Server-Sent Events parser and writer.
//!
//! The parser takes the upstream body in whatever pieces Pingora hands over
//! (STYLE P2: "not the entire body"; an event may be cut at any byte, a CRLF may
//! be cut between its CR and LF) and calls back once per complete event. It
//! follows the WHATWG event-stream rules: lines end with CR, LF or CRLF; `data:`
//! lines of one event are joined with `\n`; one space after the colon is
//! dropped; lines starting with `:` are comments; `id:`/`retry:` are ignored; an
//! event without any `data` line is not dispatched. It differs in one way: at
//! end of input an event still missing its blank line is dispatched, because
//! some OpenAI-compatible servers end with `data: [DONE]` and no blank line.
//!
//! Memory is bounded: a line plus the event being assembled may not exceed
//! `max_event_bytes`; past that the parser fails for good (the caller ends the
//! client stream with an error event), so a hostile upstream cannot grow it.

use serde::Serialize;

/// Default cap on one event (a Gemini answer with an inline image is a few MB).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// One complete event. `event` is empty when the stream gave no `event:` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    pub event: &'a str,
    pub data: &'a [u8],
}

/// The parser gave up: an event grew past the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow {
    pub limit: usize,
}

impl std::fmt::Display for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "upstream stream event larger than {} bytes", self.limit)
    }
}

#[derive(Debug)]
pub struct Parser {
    /// Bytes of a line not yet terminated (carried across feeds).
    line: Vec<u8>,
    /// `data` of the event being assembled.
    data: Vec<u8>,
    has_data: bool,
    event: String,
    /// The previous feed ended with CR: a LF starting the next one belongs to it.
    skip_lf: bool,
    /// Still at the very start (a UTF-8 BOM may be skipped).
    at_start: bool,
    max: usize,
    failed: bool,
}

impl Default for Parser {
    fn default() -> Self {
        Parser::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl Parser {
    pub fn new(max_event_bytes: usize) -> Self {
        Parser {
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
            event: String::new(),
            skip_lf: false,
            at_start: true,
            max: max_event_bytes.max(1),
            failed: false,
        }
    }

    /// Bytes held for an incomplete event.
    pub fn buffered(&self) -> usize {
        self.line.len() + self.data.len()
    }

    /// Between events: nothing of a next one seen yet, so the next byte fed
    /// starts an event (a caller may then skip whole events it does not need).
    pub fn at_boundary(&self) -> bool {
        self.line.is_empty()
            && !self.has_data
            && self.event.is_empty()
            && !self.skip_lf
            && !self.at_start
            && !self.failed
    }

    /// Feed the next piece of the body; `on_event` runs for each completed event.
    pub fn feed(
        &mut self,
        mut chunk: &[u8],
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), Overflow> {
        if self.failed {
            return Err(Overflow { limit: self.max });
        }
        if self.skip_lf && !chunk.is_empty() {
            self.skip_lf = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        while let Some(i) = memchr::memchr2(b'\n', b'\r', chunk) {
            if self.line.is_empty() {
                self.line_done(&chunk[..i], on_event)?;
            } else {
                self.line.extend_from_slice(&chunk[..i]);
                let line = std::mem::take(&mut self.line);
                let r = self.line_done(&line, on_event);
                self.line = line;
                self.line.clear();
                r?;
            }
            let mut next = i + 1;
            if chunk[i] == b'\r' {
                if next < chunk.len() {
                    if chunk[next] == b'\n' {
                        next += 1;
                    }
                } else {
                    self.skip_lf = true;
                }
            }
            chunk = &chunk[next..];
        }
        if !chunk.is_empty() {
            self.line.extend_from_slice(chunk);
            self.check_cap()?;
        }
        Ok(())
    }

    /// End of input: dispatch an event still missing its terminating blank line.
    pub fn finish(&mut self, on_event: &mut dyn FnMut(Event<'_>)) -> Result<(), Overflow> {
        if self.failed {
            return Err(Overflow { limit: self.max });
        }
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, on_event)?;
        }
        self.line_done(b"", on_event)
    }

    fn check_cap(&mut self) -> Result<(), Overflow> {
        if self.line.len() + self.data.len() > self.max {
            self.failed = true;
            self.line = Vec::new();
            self.data = Vec::new();
            return Err(Overflow { limit: self.max });
        }
        Ok(())
    }

    fn line_done(
        &mut self,
        mut line: &[u8],
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), Overflow> {
        // The same bound as for a buffered partial line, so whether a line
        // arrived whole or in pieces never changes the outcome.
        if line.len() + self.data.len() > self.max {
            self.failed = true;
            self.line = Vec::new();
            self.data = Vec::new();
            return Err(Overflow { limit: self.max });
        }
        if self.at_start {
            // The first line is whole here however it was split, so a UTF-8 BOM
            // (allowed at the start of an event stream) is stripped once.
            self.at_start = false;
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.is_empty() {
            if self.has_data {
                on_event(Event {
                    event: &self.event,
                    data: &self.data,
                });
            }
            self.data.clear();
            self.event.clear();
            self.has_data = false;
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                self.event.clear();
                // Event names are ASCII: the plain check is the cheap path.
                match std::str::from_utf8(value) {
                    Ok(v) => self.event.push_str(v),
                    Err(_) => self.event.push_str(&String::from_utf8_lossy(value)),
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Append one event: `event: <name>\n` (when given), `data: <json>\n\n`.
/// serde_json's compact output has no raw newline, so one `data:` line suffices.
pub fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, event: Option<&str>, data: &T) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    if serde_json::to_writer(&mut *out, data).is_err() {
        // Our own types always serialize; keep the frame well-formed regardless.
        out.extend_from_slice(b"{}");
    }
    out.extend_from_slice(b"\n\n");
}

/// Append an event whose data is already text without newlines (e.g. `[DONE]`).
pub fn write_raw(out: &mut Vec<u8>, event: Option<&str>, data: &[u8]) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
}

/// Append a comment line (ignored by every SSE client; a keep-alive).
pub fn write_comment(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b": ");
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(p: &mut Parser, pieces: &[&[u8]]) -> Vec<(String, String)> {
        let mut got = Vec::new();
        let mut on = |e: Event<'_>| {
            got.push((
                e.event.to_string(),
                String::from_utf8_lossy(e.data).into_owned(),
            ));
        };
        for piece in pieces {
            p.feed(piece, &mut on).expect("no overflow");
        }
        p.finish(&mut on).expect("no overflow");
        got
    }

    fn ev(e: &str, d: &str) -> (String, String) {
        (e.to_string(), d.to_string())
    }

    #[test]
    fn line_endings_multiline_comments() {
        let input = b"event: a\r\ndata: 1\r\ndata:2\r\n\r\n: comment\n\ndata: x\rdata: y\r\revent: b\nid: 7\nretry: 5\ndata\n\n";
        let whole = collect(&mut Parser::default(), &[input]);
        assert_eq!(whole, vec![ev("a", "1\n2"), ev("", "x\ny"), ev("b", "")]);
    }

    #[test]
    fn any_split_gives_the_same_events() {
        let input: &[u8] = b"\xEF\xBB\xBFevent: message_start\r\ndata: {\"a\": 1}\r\n\r\ndata: two\rdata: lines\r\r:c\ndata: [DONE]\n\n";
        let whole = collect(&mut Parser::default(), &[input]);
        assert_eq!(whole.len(), 3, "{whole:?}");
        assert_eq!(whole[0], ev("message_start", "{\"a\": 1}"));
        for i in 0..=input.len() {
            for j in i..=input.len() {
                let got = collect(
                    &mut Parser::default(),
                    &[&input[..i], &input[i..j], &input[j..]],
                );
                assert_eq!(got, whole, "split at {i},{j}");
            }
        }
        let bytewise: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(collect(&mut Parser::default(), &bytewise), whole);
    }

    #[test]
    fn cr_at_chunk_end_then_lf() {
        // "\r" | "\n" must count as one line end, not an extra blank line.
        let got = collect(
            &mut Parser::default(),
            &[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"],
        );
        assert_eq!(got, vec![ev("", "a\nb")]);
    }

    #[test]
    fn unterminated_last_event_is_dispatched_at_finish() {
        let got = collect(&mut Parser::default(), &[b"data: 1\n\ndata: [DONE]"]);
        assert_eq!(got, vec![ev("", "1"), ev("", "[DONE]")]);
        let got = collect(&mut Parser::default(), &[b"event: only-name\n\n"]);
        assert!(
            got.is_empty(),
            "an event without data is not dispatched: {got:?}"
        );
    }

    #[test]
    fn cap_is_enforced_and_sticky() {
        let mut p = Parser::new(16);
        let mut n = 0;
        let mut on = |_: Event<'_>| n += 1;
        assert!(p.feed(b"data: 0123456789\n\n", &mut on).is_ok());
        assert_eq!(
            p.feed(b"data: 0123456789abcdef", &mut on),
            Err(Overflow { limit: 16 })
        );
        assert!(p.feed(b"\n\n", &mut on).is_err(), "stays failed");
        let mut p = Parser::new(16);
        // Many short data lines add up too.
        let r = p.feed(b"data: 12345\ndata: 12345\ndata: 12345\n", &mut on);
        assert!(r.is_err());
        assert_eq!(n, 1);
        assert_eq!(p.buffered(), 0, "memory released on overflow");
    }

    #[test]
    fn cap_does_not_depend_on_how_input_is_cut() {
        // Found by fuzzing: a long ignored line counted only when buffered.
        let input = b"data: 1\n\n: a comment longer than the cap\ndata: 2\n\n";
        for cap in [10, 20, 40, 80] {
            let outcome = |pieces: &[&[u8]]| {
                let mut p = Parser::new(cap);
                let mut n = 0;
                let mut on = |_: Event<'_>| n += 1;
                let ok =
                    pieces.iter().all(|c| p.feed(c, &mut on).is_ok()) && p.finish(&mut on).is_ok();
                (ok, n)
            };
            let whole = outcome(&[input]);
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(whole, outcome(&bytes), "cap {cap}");
            for i in 0..input.len() {
                assert_eq!(
                    whole,
                    outcome(&[&input[..i], &input[i..]]),
                    "cap {cap}, cut {i}"
                );
            }
        }
    }

    #[test]
    fn writer_frames() {
        let mut out = Vec::new();
        write_json(
            &mut out,
            Some("ping"),
            &serde_json::json!({"type": "ping", "t": "a\nb"}),
        );
        write_raw(&mut out, None, b"[DONE]");
        write_comment(&mut out, "keep-alive");
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "event: ping\ndata: {\"t\":\"a\\nb\",\"type\":\"ping\"}\n\ndata: [DONE]\n\n: keep-alive\n\n"
        );
        let got = collect(&mut Parser::default(), &[&out]);
        assert_eq!(
            got,
            vec![
                ev("ping", "{\"t\":\"a\\nb\",\"type\":\"ping\"}"),
                ev("", "[DONE]")
            ]
        );
    }
}
