//! Streaming an upstream answer to the client: bytes pass or are converted as
//! they arrive, with the preamble held back until real content so a failure
//! before it can still fail over, keepalive comments on quiet streams, and
//! prompt notice of a client that went away.

use crate::ir::{StreamEvent, Usage};
use crate::sse;
use crate::translate::{self, Format, StreamDecoder, StreamTranslator};
use bytes::Bytes;

/// Watches a same-format stream going by: usage, whether content started, and
/// an in-stream upstream error. Changes nothing.
pub struct Observer {
    parser: sse::Parser,
    decoder: Box<dyn StreamDecoder>,
    seen: Seen,
    format: Format,
    /// Characters of generated text seen, to estimate output tokens of a
    /// stream that reports no usage.
    chars: u64,
}

/// What the observer learnt so far.
#[derive(Default)]
struct Seen {
    usage: Usage,
    seen_usage: bool,
    content: bool,
    /// Any event at all (an upstream stream with none is a failure).
    any: bool,
    error: Option<(u16, String)>,
}

impl Seen {
    fn event(&mut self, dec: &mut dyn StreamDecoder, ev: sse::Event<'_>) {
        self.any = true;
        // Once content flows, only usage and error events still matter:
        // skip decoding the rest (most of a passthrough stream's cost).
        if self.content && !may_matter(ev.data) {
            return;
        }
        dec.event(ev, &mut |ie| match ie {
            StreamEvent::Start(s) => {
                self.usage.merge(&s.usage);
                self.seen_usage = true;
            }
            StreamEvent::BlockStart { block, .. } => {
                if !matches!(
                    block,
                    crate::ir::BlockStart::Text | crate::ir::BlockStart::Thinking
                ) {
                    self.content = true;
                }
            }
            StreamEvent::Delta { .. } => self.content = true,
            StreamEvent::Usage(u) | StreamEvent::Finish { usage: u, .. } => {
                self.usage.merge(&u);
                self.seen_usage = true;
            }
            StreamEvent::Error(e) => {
                if self.error.is_none() {
                    self.error = Some((e.status, e.message));
                }
            }
            StreamEvent::BlockStop { .. } | StreamEvent::Ping => {}
        })
    }
}

impl Observer {
    pub fn new(format: Format) -> Self {
        Observer {
            parser: sse::Parser::default(),
            seen: Seen::default(),
            decoder: translate::stream_decoder(format),
            format,
            chars: 0,
        }
    }

    /// An observer that holds nothing back (content counts as started):
    /// for streams whose content events the decoder does not know, which
    /// must still flow as they come; usage and errors are still read.
    pub fn committed(format: Format) -> Self {
        let mut o = Observer::new(format);
        o.seen.content = true;
        o
    }

    /// Count the generated text in `chunk`, until the upstream shows it
    /// reports usage (then its count is used).
    fn count(&mut self, chunk: &[u8]) {
        if !(self.seen.seen_usage && self.seen.usage.input > 0) {
            self.chars += translate::sniff::text_chars(self.format, chunk);
        }
    }

    pub fn feed(&mut self, mut chunk: &[u8]) {
        // Until content shows, every event is parsed; so is the rest of an
        // event begun in an earlier chunk. One event at a time, so the moment
        // both are over is noticed even inside one large chunk.
        let skippable = |o: &Self| o.seen.content && o.parser.at_boundary();
        while !chunk.is_empty() && !skippable(self) {
            let end = event_end(chunk).unwrap_or(chunk.len());
            self.parse(&chunk[..end]);
            chunk = &chunk[end..];
        }
        if chunk.is_empty() {
            return;
        }
        // Then only usage and error events matter, and whole events before
        // the first that may need no parsing at all: most of a passthrough
        // stream.
        let from = match translate::sniff::usage_or_error_at(chunk) {
            Some(at) => event_start(chunk, at),
            None if whole_events(chunk) => return,
            // Parse only the last, incomplete event.
            None => event_start(chunk, chunk.len()),
        };
        self.parse(&chunk[from..]);
    }

    fn parse(&mut self, chunk: &[u8]) {
        let dec = &mut *self.decoder;
        let seen = &mut self.seen;
        if self
            .parser
            .feed(chunk, &mut |ev| seen.event(dec, ev))
            .is_err()
        {
            // Too large an event to watch: stop holding anything back.
            self.seen.content = true;
        }
    }

    /// One event parsed by someone else (the usage-chunk filter shares its parse).
    fn event(&mut self, ev: sse::Event<'_>) {
        self.seen.event(&mut *self.decoder, ev);
    }
}

/// The bytes end where an event ends.
fn whole_events(chunk: &[u8]) -> bool {
    chunk.ends_with(b"\n\n") || chunk.ends_with(b"\r\n\r\n")
}

/// Could hold usage (not OpenAI's `"usage":null`) or an error.
fn may_matter(data: &[u8]) -> bool {
    translate::sniff::usage_or_error_at(data).is_some()
}

/// Just past the first blank line (LF LF or LF CR LF) in `chunk`.
fn event_end(chunk: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'\n', chunk)
        .find(|&i| match chunk.get(i + 1) {
            Some(b'\n') => true,
            Some(b'\r') => chunk.get(i + 2) == Some(&b'\n'),
            _ => false,
        })
        .map(|i| if chunk[i + 1] == b'\n' { i + 2 } else { i + 3 })
}

/// Start of the event holding byte `at` of a chunk that starts between
/// events: just after the last blank line before it (LF LF or LF CR LF; a
/// CR-only stream falls back to the chunk's start, which is still correct).
fn event_start(chunk: &[u8], at: usize) -> usize {
    memchr::memrchr_iter(b'\n', &chunk[..at])
        .find(|&i| {
            (i >= 1 && chunk[i - 1] == b'\n')
                || (i >= 2 && chunk[i - 1] == b'\r' && chunk[i - 2] == b'\n')
        })
        .map_or(0, |i| i + 1)
}

/// The per-attempt stream pipe: same-format bytes (watched) or a converter.
/// A same-format OpenAI Chat stream whose usage chunk aigate asked for (the
/// client did not) is re-framed event by event without that chunk.
pub enum Pipe {
    Pass(Observer, Option<sse::Parser>),
    Convert(StreamTranslator),
}

impl Pipe {
    /// Feed one upstream chunk; what the client gets is appended to `out`.
    /// Returns true instead when the chunk itself is what the client gets
    /// and nothing is pending before it: the caller sends it without a copy.
    pub fn feed(&mut self, chunk: &Bytes, out: &mut Vec<u8>) -> bool {
        match self {
            Pipe::Pass(o, strip) => {
                o.count(chunk);
                Self::pass(o, strip, chunk, out)
            }
            Pipe::Convert(t) => {
                t.feed(chunk, out);
                false
            }
        }
    }

    fn pass(
        o: &mut Observer,
        strip: &mut Option<sse::Parser>,
        chunk: &Bytes,
        out: &mut Vec<u8>,
    ) -> bool {
        match strip {
            None => {
                o.feed(chunk);
                if out.is_empty() && o.seen.content {
                    return true;
                }
                out.extend_from_slice(chunk);
            }
            // Whole events, past the preamble, with no usage chunk among
            // them pass as they are. Between events by the parser's own
            // test, as the observer's skip uses: a pending `event:` line
            // holds no bytes but still belongs to the next data.
            Some(p)
                if o.seen.content
                    && p.at_boundary()
                    && whole_events(chunk)
                    && !may_matter(chunk) =>
            {
                if out.is_empty() {
                    return true;
                }
                out.extend_from_slice(chunk)
            }
            Some(p) => {
                // One parse serves the filter and the observer.
                let r = p.feed(chunk, &mut |ev| {
                    o.event(sse::Event {
                        event: ev.event,
                        data: ev.data,
                    });
                    if !translate::openai_chat::is_usage_chunk(ev.data) {
                        sse::write_raw(out, (!ev.event.is_empty()).then_some(ev.event), ev.data);
                    }
                });
                if r.is_err() {
                    // Too large an event: stop filtering and holding back.
                    *strip = None;
                    o.seen.content = true;
                }
            }
        }
        false
    }

    /// The upstream body ended cleanly.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if let Pipe::Convert(t) = self {
            t.finish(out);
        }
    }

    /// The upstream failed after the client got content: end it visibly broken.
    /// Same-format streams end with an error event in their own format.
    pub fn fail(&mut self, format: Format, message: &str, out: &mut Vec<u8>) {
        match self {
            Pipe::Convert(t) => t.fail(message, out),
            Pipe::Pass(..) => translate::errors::write_stream_error(format, 502, message, out),
        }
    }

    pub fn content_started(&self) -> bool {
        match self {
            Pipe::Pass(o, _) => o.seen.content,
            Pipe::Convert(t) => t.content_started(),
        }
    }

    /// Whether a same-format stream carried any event (converted streams
    /// answer an empty upstream stream themselves, in `finish`).
    pub fn saw_events(&self) -> bool {
        match self {
            Pipe::Pass(o, _) => o.seen.any,
            Pipe::Convert(_) => true,
        }
    }

    pub fn upstream_error(&self) -> Option<(u16, String)> {
        match self {
            Pipe::Pass(o, _) => o.seen.error.clone(),
            Pipe::Convert(t) => t.upstream_error().map(|(s, m)| (s, m.to_string())),
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        match self {
            Pipe::Pass(o, _) => o.seen.seen_usage.then_some(o.seen.usage),
            Pipe::Convert(t) => Some(t.usage()),
        }
    }

    /// Characters of generated text so far (for a stream without usage).
    pub fn content_chars(&self) -> u64 {
        match self {
            Pipe::Pass(o, _) => o.chars,
            Pipe::Convert(t) => t.content_chars(),
        }
    }

    /// The usage to account for: what the stream reported, with what it left
    /// out estimated — input from the request (`input_estimate`), output at
    /// about 4 characters per token of the text it carried. The flag says
    /// whether anything was estimated.
    pub fn settled_usage(&self, input_estimate: u64) -> (Usage, bool) {
        let mut u = self.usage().unwrap_or_default();
        let mut estimated = false;
        if u.output == 0 && self.content_chars() > 0 {
            u.output = self.content_chars().div_ceil(4);
            estimated = true;
        }
        if u.input == 0 {
            u.input = input_estimate;
            estimated = true;
        }
        (u, estimated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observer_sees_content_errors_and_usage() {
        let mut o = Observer::new(Format::OpenAiChat);
        o.feed(b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n");
        assert!(!o.seen.content, "role preamble is not content");
        o.feed(b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n");
        assert!(o.seen.content);

        let mut o = Observer::new(Format::Anthropic);
        o.feed(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\",\"content\":[],\"usage\":{\"input_tokens\":7,\"output_tokens\":1}}}\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\n");
        assert!(!o.seen.content);
        o.feed(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n");
        assert_eq!(o.seen.error.as_ref().map(|e| e.0), Some(529));
        assert_eq!(o.seen.usage.input, 7);
    }

    /// What a same-format stream is metered with, split at every few bytes.
    fn pass_usage(format: Format, stream: &str) -> Option<Usage> {
        let mut pipe = Pipe::Pass(Observer::new(format), None);
        let mut out = Vec::new();
        for b in stream.as_bytes().chunks(5) {
            pipe.feed(&Bytes::copy_from_slice(b), &mut out);
        }
        pipe.usage()
    }

    #[test]
    fn pass_pipe_meters_usage_split_anywhere() {
        let an = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\",\"content\":[],\"usage\":{\"input_tokens\":10,\"output_tokens\":1,\"cache_read_input_tokens\":100,\"cache_creation_input_tokens\":10}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":7}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let u = pass_usage(Format::Anthropic, an).expect("usage");
        assert_eq!(
            (u.input, u.output, u.cache_read, u.cache_write, u.reasoning),
            (120, 7, 100, 10, 0)
        );
        let chunk = |rest: &str| {
            format!(
                "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",{rest}}}\n\n"
            )
        };
        let text = chunk(
            r#""choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}],"usage":null"#,
        );
        let usage = chunk(
            r#""choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":4}}"#,
        );
        let u = pass_usage(
            Format::OpenAiChat,
            &format!("{text}{usage}data: [DONE]\n\n"),
        );
        assert_eq!(
            u.map(|u| (u.input, u.output, u.cache_read)),
            Some((9, 2, 4))
        );
        // Nothing reported: nothing counted (`settled_usage` estimates it).
        assert_eq!(
            pass_usage(Format::OpenAiChat, &format!("{text}data: [DONE]\n\n")).unwrap_or_default(),
            Usage::default()
        );
    }

    #[test]
    fn a_stream_without_usage_is_estimated() {
        let mut pipe = Pipe::Pass(
            Observer::new(Format::OpenAiChat),
            Some(sse::Parser::default()),
        );
        let mut out = vec![];
        let chunk = |c: &str| {
            Bytes::from(format!(
                "data: {{\"id\":\"c\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{c}\"}}}}]}}\n\n"
            ))
        };
        for c in ["", "0123456789", "abcdefgh"] {
            pipe.feed(&chunk(c), &mut out);
        }
        pipe.feed(&Bytes::from_static(b"data: [DONE]\n\n"), &mut out);
        assert_eq!(pipe.content_chars(), 18);
        assert_eq!(
            pipe.settled_usage(40),
            (
                Usage {
                    input: 40,
                    output: 5,
                    ..Default::default()
                },
                true
            )
        );
        // Reported usage wins; counting stops once the upstream shows it reports.
        let mut an = Pipe::Pass(Observer::new(Format::Anthropic), None);
        an.feed(&Bytes::from_static(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\",\"content\":[],\"usage\":{\"input_tokens\":7,\"output_tokens\":3}}}\n\n"), &mut out);
        an.feed(&Bytes::from_static(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"abcdefgh\"}}\n\n"), &mut out);
        assert_eq!(an.content_chars(), 0);
        assert_eq!(
            an.settled_usage(40),
            (
                Usage {
                    input: 7,
                    output: 3,
                    ..Default::default()
                },
                false
            )
        );
    }

    #[test]
    fn strips_only_the_usage_chunk() {
        let mut pipe = Pipe::Pass(
            Observer::new(Format::OpenAiChat),
            Some(sse::Parser::default()),
        );
        let stream: &[u8] = b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\ndata: [DONE]\n\n";
        let mut out = vec![];
        for b in stream.chunks(7) {
            let c = Bytes::copy_from_slice(b);
            if pipe.feed(&c, &mut out) {
                out.extend_from_slice(&c);
            }
        }
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\"content\":\"hi\""), "{text}");
        assert!(!text.contains("usage"), "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        assert_eq!(pipe.usage().map(|u| (u.input, u.output)), Some((3, 1)));
    }

    #[test]
    fn may_matter_finds_usage_objects_and_errors_only() {
        for yes in [
            &b"{\"usage\":{\"prompt_tokens\":1}}"[..],
            b"{\"usage\" :\n {\"x\":1}}",
            b"{\"usageMetadata\":{}}",
            b"{\"type\":\"error\"}",
            b"{\"usage\":null,\"x\":{\"usage\": {}}}",
        ] {
            assert!(may_matter(yes), "{}", String::from_utf8_lossy(yes));
        }
        for no in [
            &b"{\"usage\":null,\"choices\":[]}"[..],
            b"{\"content\":\"usage\"}",
            b"{\"content\":\"usage: none\"}",
            b"usage",
            b"",
        ] {
            assert!(!may_matter(no), "{}", String::from_utf8_lossy(no));
        }
    }

    #[test]
    fn observer_skipping_sees_the_same_at_every_split() {
        let openai: &[u8] = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a usage\"}}]}\r\n\r\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"b\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\ndata: [DONE]\n\n";
        let anthropic: &[u8] = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\",\"content\":[],\"usage\":{\"input_tokens\":7,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":9}}\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        for (format, stream, want) in [
            (Format::OpenAiChat, openai, (3, 2, false)),
            (Format::Anthropic, anthropic, (7, 9, true)),
        ] {
            for a in 0..stream.len() {
                for b in [a, (a + 1).min(stream.len()), (a + 37).min(stream.len())] {
                    let mut o = Observer::new(format);
                    o.feed(&stream[..a]);
                    o.feed(&stream[a..b]);
                    o.feed(&stream[b..]);
                    let u = &o.seen.usage;
                    assert_eq!(
                        (u.input, u.output, o.seen.error.is_some()),
                        want,
                        "{format:?} cut at {a}/{b}"
                    );
                    assert!(o.seen.content);
                }
            }
        }
    }
}
