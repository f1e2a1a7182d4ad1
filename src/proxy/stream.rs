//! Streaming an upstream answer to the client: bytes pass or are converted as
//! they arrive, with the preamble held back until real content so a failure
//! before it can still fail over, keepalive comments on quiet streams, and
//! prompt notice of a client that went away.

use crate::ir::StreamEvent;
use crate::sse;
use crate::translate::{self, Format, StreamDecoder, StreamTranslator, Usage};
use bytes::Bytes;

/// Watches a same-format stream going by: usage, whether content started, and
/// an in-stream upstream error. Changes nothing.
pub struct Observer {
    parser: sse::Parser,
    decoder: Option<Box<dyn StreamDecoder>>,
    seen: Seen,
}

/// What the observer learnt so far.
#[derive(Default)]
struct Seen {
    usage: crate::ir::Usage,
    seen_usage: bool,
    content: bool,
    error: Option<(u16, String)>,
}

impl Seen {
    fn event(&mut self, dec: &mut dyn StreamDecoder, ev: sse::Event<'_>) {
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
        let decoder = translate::stream_decoder(format).ok();
        Observer {
            parser: sse::Parser::default(),
            seen: Seen {
                // Unknown format: nothing to hold back for.
                content: decoder.is_none(),
                ..Default::default()
            },
            decoder,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        // Once content flows only usage and error events matter. A chunk that
        // holds whole events (nothing buffered before it, an event end at its
        // end) and names neither needs no parsing at all.
        if self.seen.content
            && self.parser.buffered() == 0
            && whole_events(chunk)
            && !may_matter(chunk)
        {
            return;
        }
        let Some(dec) = self.decoder.as_deref_mut() else {
            return;
        };
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
        if let Some(dec) = self.decoder.as_deref_mut() {
            self.seen.event(dec, ev);
        }
    }
}

/// The bytes end where an event ends.
fn whole_events(chunk: &[u8]) -> bool {
    chunk.ends_with(b"\n\n") || chunk.ends_with(b"\r\n\r\n")
}

/// Could hold usage (not OpenAI's `"usage":null`) or an error.
fn may_matter(data: &[u8]) -> bool {
    use memchr::memmem::find;
    find(data, b"\"usage\":{").is_some()
        || find(data, b"\"usage\": {").is_some()
        || find(data, b"usageMetadata").is_some()
        || find(data, b"error").is_some()
}

/// The per-attempt stream pipe: same-format bytes (watched) or a converter.
/// A same-format OpenAI Chat stream whose usage chunk aigate asked for (the
/// client did not) is re-framed event by event without that chunk.
pub enum Pipe {
    Pass(Observer, Option<sse::Parser>),
    Convert(StreamTranslator),
}

/// The final `choices: []` chunk `stream_options.include_usage` adds.
fn is_usage_chunk(data: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Chunk<'a> {
        #[serde(borrow)]
        choices: Option<Vec<&'a serde_json::value::RawValue>>,
        #[serde(borrow)]
        usage: Option<&'a serde_json::value::RawValue>,
    }
    matches!(serde_json::from_slice::<Chunk>(data),
        Ok(Chunk { choices: Some(c), usage: Some(u) }) if c.is_empty() && u.get() != "null")
}

impl Pipe {
    pub fn feed(&mut self, chunk: &Bytes, out: &mut Vec<u8>) {
        match self {
            Pipe::Pass(o, strip) => match strip {
                None => {
                    o.feed(chunk);
                    out.extend_from_slice(chunk);
                }
                // Whole events, past the preamble, with no usage chunk among
                // them pass as they are.
                Some(p)
                    if o.seen.content
                        && p.buffered() == 0
                        && whole_events(chunk)
                        && !may_matter(chunk) =>
                {
                    out.extend_from_slice(chunk)
                }
                Some(p) => {
                    // One parse serves the filter and the observer.
                    let r = p.feed(chunk, &mut |ev| {
                        o.event(sse::Event {
                            event: ev.event,
                            data: ev.data,
                        });
                        if !is_usage_chunk(ev.data) {
                            sse::write_raw(
                                out,
                                (!ev.event.is_empty()).then_some(ev.event),
                                ev.data,
                            );
                        }
                    });
                    if r.is_err() {
                        // Too large an event: stop filtering and holding back.
                        *strip = None;
                        o.seen.content = true;
                    }
                }
            },
            Pipe::Convert(t) => t.feed(chunk, out),
        }
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
            Pipe::Pass(..) => {
                let body = translate::error_body(format, 502, message);
                match format {
                    Format::Anthropic => sse::write_raw(out, Some("error"), &body),
                    Format::OpenAiResponses => sse::write_raw(out, Some("error"), &body),
                    _ => sse::write_raw(out, None, &body),
                }
            }
        }
    }

    pub fn content_started(&self) -> bool {
        match self {
            Pipe::Pass(o, _) => o.seen.content,
            Pipe::Convert(t) => t.content_started(),
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
            Pipe::Pass(o, _) => o.seen.seen_usage.then(|| o.seen.usage.into()),
            Pipe::Convert(t) => Some(t.usage()),
        }
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

    #[test]
    fn strips_only_the_usage_chunk() {
        let mut pipe = Pipe::Pass(
            Observer::new(Format::OpenAiChat),
            Some(sse::Parser::default()),
        );
        let stream: &[u8] = b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\ndata: [DONE]\n\n";
        let mut out = vec![];
        for b in stream.chunks(7) {
            pipe.feed(&Bytes::copy_from_slice(b), &mut out);
        }
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\"content\":\"hi\""), "{text}");
        assert!(!text.contains("usage"), "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        assert_eq!(pipe.usage().map(|u| (u.input, u.output)), Some((3, 1)));
    }
}
