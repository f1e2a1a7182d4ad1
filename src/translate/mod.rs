//! Format conversion: every client format to and from every upstream format
//! through one internal model (`crate::ir`). Each wire format lives in its own
//! module (wire types + decode/encode + stream state machine); this file only
//! dispatches, so a new format means one new module and one line per match.
//!
//! Contract used by the proxy (src/proxy/pipeline/):
//! - `convert_request`: client JSON body -> upstream body bytes, for one target,
//!   with the client paths it left out (`Dropped`, sent as `x-aigate-dropped`).
//!   Called again for every retry target (it may be a different format).
//! - `convert_response`: whole non-streaming upstream body -> client body.
//! - `StreamTranslator`: upstream SSE bytes, fed chunk by chunk as they arrive
//!   (split at any byte), -> client stream bytes, emitted as soon as possible.
//! - `error_body` / `convert_error`: errors in the client's own format.

/// The wire formats are named with the internal model (`ir`); callers know
/// them as `translate::Format`.
pub use crate::ir::Format;

use crate::ir::{self, StreamEvent, Usage};
use crate::sse;
use serde_json::Value;

/// A conversion that cannot be done faithfully: the client gets a 400 in its own
/// format naming the field (`param`). Hints are left out and named instead
/// ([`Dropped`]); nothing is dropped silently.
#[derive(Debug, Clone, PartialEq)]
pub struct TranslateError {
    pub status: u16,
    pub message: String,
    pub param: Option<String>,
}

impl TranslateError {
    pub fn bad_request(message: impl Into<String>, param: Option<&str>) -> Self {
        TranslateError {
            status: 400,
            message: message.into(),
            param: param.map(str::to_string),
        }
    }
}

impl std::fmt::Display for TranslateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What a conversion needs to know beyond the body itself.
#[derive(Debug, Clone, Default)]
pub struct RequestOpts {
    /// Model name to send upstream (the target's model).
    pub model: String,
    /// Whether the client asked for a stream (Gemini clients say so by path).
    pub stream: bool,
}

/// Facts about the client request that shape the converted answer.
#[derive(Debug, Clone, Default)]
pub struct ResponseOpts {
    /// Model name the client asked for.
    pub client_model: String,
    /// OpenAI Chat clients only get the final usage chunk when they asked for it
    /// (`stream_options.include_usage`); aigate always asks the upstream.
    pub include_usage: bool,
    /// Gemini streams: `alt=sse` gives SSE; without it a JSON array is streamed.
    pub gemini_sse: bool,
    /// A Responses client's namespaced functions, whose calls go back split.
    pub namespaces: openai_responses::Namespaces,
}

pub mod anthropic;
pub mod count;
pub mod dropped;
pub mod embeddings;
pub mod errors;
pub mod gemini;
pub mod json;
pub mod openai_chat;
pub mod openai_responses;
pub mod shared;
pub mod sniff;
pub mod tail_field;
pub use dropped::{Converted, Dropped};
pub use errors::{convert_error, error_body, error_body_param};

/// Tool aigate adds when a target with no native structured output (classic
/// Anthropic Messages) must answer in a client's `response_format` JSON schema:
/// the model is made to call it, and its input is given back to the client as
/// the message text (streams included). The name is reserved.
pub const RESPONSE_FORMAT_TOOL: &str = "aigate_response_format";

/// Upstream SSE events → IR events, for one upstream format. A sync state machine
/// over explicit state (STYLE habit 8): one event in, zero or more IR events out.
pub trait StreamDecoder: Send {
    /// One complete upstream event. Malformed data is reported as an
    /// [`StreamEvent::Error`], never a panic.
    fn event(&mut self, ev: sse::Event<'_>, sink: &mut dyn FnMut(StreamEvent<'_>));
    /// The upstream body ended. Emit `Finish` only if the answer is complete by
    /// this format's rules although its terminal event never came; else nothing
    /// (the caller then ends the client stream with an error).
    fn end(&mut self, sink: &mut dyn FnMut(StreamEvent<'_>));
}

/// IR events → client stream bytes, for one client format.
pub trait StreamEncoder: Send {
    /// Append the bytes for `ev`. After `Finish` or `Error` nothing else is sent.
    fn event(&mut self, ev: &StreamEvent<'_>, out: &mut Vec<u8>);
}

// ---- dispatch: one arm per format in each function (issue 4 adds Gemini and
// ---- Responses by replacing their arms).

/// A client request body of `format` → IR.
pub fn decode_request(format: Format, body: &Value) -> Result<ir::Request, TranslateError> {
    match format {
        Format::OpenAiChat => openai_chat::decode_request(body),
        Format::Anthropic => anthropic::decode_request(body),
        Format::OpenAiResponses => openai_responses::decode_request(body),
        Format::Gemini => gemini::decode_request(body),
    }
}

/// IR → an upstream request body of `format`; what `format` cannot express
/// but may leave out is named in `dropped` (see [`dropped`]).
pub fn encode_request(
    format: Format,
    req: &ir::Request,
    opts: &RequestOpts,
    dropped: &mut Dropped,
) -> Result<Vec<u8>, TranslateError> {
    match format {
        Format::OpenAiChat => openai_chat::encode_request(req, opts, dropped),
        Format::Anthropic => anthropic::encode_request(req, opts, dropped),
        Format::OpenAiResponses => openai_responses::encode_request(req, opts, dropped),
        Format::Gemini => gemini::encode_request(req, opts, dropped),
    }
}

/// A whole upstream answer of `format` → IR.
pub fn decode_response(format: Format, body: &[u8]) -> Result<ir::Response, TranslateError> {
    match format {
        Format::OpenAiChat => openai_chat::decode_response(body),
        Format::Anthropic => anthropic::decode_response(body),
        Format::OpenAiResponses => openai_responses::decode_response(body),
        Format::Gemini => gemini::decode_response(body),
    }
}

/// IR → a whole client answer of `format`.
pub fn encode_response(format: Format, resp: &ir::Response, opts: &ResponseOpts) -> Vec<u8> {
    match format {
        Format::OpenAiChat => openai_chat::encode_response(resp, opts),
        Format::Anthropic => anthropic::encode_response(resp, opts),
        Format::OpenAiResponses => openai_responses::encode_response(resp, opts),
        Format::Gemini => gemini::encode_response(resp, opts),
    }
}

/// A stream decoder for upstream `format`.
pub fn stream_decoder(format: Format) -> Box<dyn StreamDecoder> {
    match format {
        Format::OpenAiChat => Box::new(openai_chat::StreamDecode::default()),
        Format::Anthropic => Box::new(anthropic::StreamDecode::default()),
        Format::OpenAiResponses => Box::new(openai_responses::StreamDecode::default()),
        Format::Gemini => Box::new(gemini::StreamDecode::default()),
    }
}

/// A stream encoder for client `format`. `created` (Unix seconds) stamps
/// answers whose upstream gave no creation time.
pub fn stream_encoder(format: Format, opts: &ResponseOpts, created: u64) -> Box<dyn StreamEncoder> {
    match format {
        Format::OpenAiChat => Box::new(openai_chat::StreamEncode::with_created(opts, created)),
        Format::Anthropic => Box::new(anthropic::StreamEncode::new(opts)),
        Format::OpenAiResponses => {
            Box::new(openai_responses::StreamEncode::with_created(opts, created))
        }
        Format::Gemini => Box::new(gemini::StreamEncode::new(opts)),
    }
}

// ---- the public contract used by the proxy

/// Convert a client request body (`from`) into the upstream's format (`to`),
/// with the client paths the conversion left out.
pub fn convert_request(
    from: Format,
    to: Format,
    body: &Value,
    opts: &RequestOpts,
) -> Result<Converted, TranslateError> {
    let req = decode_request(from, body)?;
    let mut dropped = Dropped::default();
    let body = encode_request(to, &req, opts, &mut dropped)?;
    Ok(Converted { body, dropped })
}

/// Like [`convert_request`], for a provider of kind `openai-compatible`: the
/// same Chat Completions body except the output limit, sent as `max_tokens`
/// (the field those servers know) instead of OpenAI's `max_completion_tokens`.
pub fn convert_request_compatible(
    from: Format,
    to: Format,
    body: &Value,
    opts: &RequestOpts,
) -> Result<Converted, TranslateError> {
    let req = decode_request(from, body)?;
    let mut dropped = Dropped::default();
    let body = match to {
        Format::OpenAiChat => openai_chat::encode_request_for(&req, opts, true, &mut dropped),
        _ => encode_request(to, &req, opts, &mut dropped),
    }?;
    Ok(Converted { body, dropped })
}

/// Convert a whole non-streaming upstream answer (`from`) into the client's format (`to`).
pub fn convert_response(
    from: Format,
    to: Format,
    body: &[u8],
    opts: &ResponseOpts,
) -> Result<Vec<u8>, TranslateError> {
    let mut resp = decode_response(from, body)?;
    settle_response(&mut resp);
    Ok(encode_response(to, &resp, opts))
}

/// Usage reported in a whole non-streaming answer of `format`.
pub fn response_usage(format: Format, body: &[u8]) -> Option<Usage> {
    match format {
        Format::OpenAiChat => openai_chat::answer_usage(body),
        Format::Anthropic => anthropic::answer_usage(body),
        Format::OpenAiResponses => openai_responses::answer_usage(body),
        Format::Gemini => gemini::answer_usage(body),
    }
}

/// Format-independent fix-ups of a decoded answer: the response-format tool is
/// given back as text, and a turn that ends in tool calls says so whatever the
/// upstream's finish reason was (SPEC "Finish reasons").
pub fn settle_response(resp: &mut ir::Response) {
    let mut unwrapped = false;
    for part in &mut resp.content {
        if let ir::Part::ToolCall(call) = part
            && call.name == RESPONSE_FORMAT_TOOL
        {
            *part = ir::Part::Text(ir::TextPart::new(std::mem::take(&mut call.arguments)));
            unwrapped = true;
        }
    }
    let calls = resp
        .content
        .iter()
        .any(|p| matches!(p, ir::Part::ToolCall(_)));
    if let Some(reason) = resp.finish.take() {
        resp.finish = Some(settle_finish(reason, calls, unwrapped));
    }
}

fn settle_finish(
    reason: ir::FinishReason,
    saw_tool_call: bool,
    unwrapped: bool,
) -> ir::FinishReason {
    use ir::FinishReason as F;
    // A cut-short or filtered turn did not "end in" a usable tool call.
    let keep = reason.is_truncation() || matches!(reason, F::ContentFilter | F::Refusal);
    if saw_tool_call && !keep {
        F::ToolCalls
    } else if unwrapped && reason == F::ToolCalls {
        F::Stop
    } else {
        reason
    }
}

/// Stream state between decoder and encoder, independent of both formats.
#[derive(Debug, Default)]
struct Relay {
    finished: bool,
    content_started: bool,
    usage: ir::Usage,
    /// Characters of text, thinking and tool arguments passed.
    chars: u64,
    upstream_error: Option<ir::StreamError>,
    saw_tool_call: bool,
    /// IR index of the response-format tool block being re-expressed as text.
    unwrap_block: Option<usize>,
    unwrapped: bool,
}

impl Relay {
    fn pass(&mut self, ev: StreamEvent<'_>, enc: &mut dyn StreamEncoder, out: &mut Vec<u8>) {
        use ir::{BlockStart, Delta};
        if self.finished {
            return;
        }
        let ev = match ev {
            StreamEvent::Start(s) => {
                self.usage.merge(&s.usage);
                StreamEvent::Start(s)
            }
            StreamEvent::BlockStart {
                index,
                block: BlockStart::ToolCall { name, .. },
            } if name == RESPONSE_FORMAT_TOOL => {
                self.unwrap_block = Some(index);
                self.unwrapped = true;
                StreamEvent::BlockStart {
                    index,
                    block: BlockStart::Text,
                }
            }
            StreamEvent::BlockStart { index, block } => {
                match block {
                    BlockStart::ToolCall { .. } => {
                        self.saw_tool_call = true;
                        self.content_started = true;
                    }
                    BlockStart::RedactedThinking { .. } | BlockStart::Raw(_) => {
                        self.content_started = true
                    }
                    BlockStart::Text | BlockStart::Thinking => {}
                }
                StreamEvent::BlockStart { index, block }
            }
            StreamEvent::Delta { index, delta } => {
                let delta = match delta {
                    Delta::ToolArgs(s) if self.unwrap_block == Some(index) => Delta::Text(s),
                    d => d,
                };
                let non_empty = match &delta {
                    Delta::Text(s) | Delta::Thinking(s) | Delta::ToolArgs(s) => {
                        self.chars += s.chars().count() as u64;
                        !s.is_empty()
                    }
                    Delta::Signature(s) => !s.is_empty(),
                    Delta::ThinkingId(_) => false,
                };
                self.content_started |= non_empty;
                StreamEvent::Delta { index, delta }
            }
            StreamEvent::BlockStop { index } => {
                if self.unwrap_block == Some(index) {
                    self.unwrap_block = None;
                }
                StreamEvent::BlockStop { index }
            }
            StreamEvent::Usage(u) => {
                self.usage.merge(&u);
                StreamEvent::Usage(u)
            }
            StreamEvent::Ping => StreamEvent::Ping,
            StreamEvent::Finish { reason, usage } => {
                self.usage.merge(&usage);
                self.finished = true;
                StreamEvent::Finish {
                    reason: settle_finish(reason, self.saw_tool_call, self.unwrapped),
                    usage: self.usage,
                }
            }
            StreamEvent::Error(e) => {
                self.finished = true;
                self.upstream_error = Some(e.clone());
                StreamEvent::Error(e)
            }
        };
        enc.event(&ev, out);
    }
}

/// Per-request streaming converter: upstream SSE bytes in, client stream bytes out.
///
/// Every `feed` appends exactly the client bytes that the upstream bytes so far
/// allow (nothing is held back beyond an incomplete upstream event). The client
/// stream always ends well-formed: with the format's terminal events after a
/// complete answer, or with an error event in the client's format (`fail`, an
/// upstream error event, malformed upstream data, or `finish` before the
/// upstream's terminal event) — never with a clean end that looks complete.
pub struct StreamTranslator {
    parser: sse::Parser,
    decoder: Box<dyn StreamDecoder>,
    encoder: Box<dyn StreamEncoder>,
    relay: Relay,
}

impl StreamTranslator {
    pub fn new(from: Format, to: Format, opts: ResponseOpts) -> Self {
        Self::new_at(from, to, opts, json::now_unix())
    }

    /// Like [`StreamTranslator::new`] with a fixed clock (`created` for
    /// answers whose upstream gave none), so output is reproducible.
    pub fn new_at(from: Format, to: Format, opts: ResponseOpts, created: u64) -> Self {
        StreamTranslator {
            parser: sse::Parser::default(),
            decoder: stream_decoder(from),
            encoder: stream_encoder(to, &opts, created),
            relay: Relay::default(),
        }
    }

    /// Feed one upstream chunk (any split); append whatever client bytes are ready.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if self.relay.finished {
            return;
        }
        // Room for the converted events up front: a read holding many events
        // would otherwise grow `out` by doubling, copying it each time.
        // Twice the input covers the wordiest direction (an Anthropic delta
        // becomes an OpenAI chunk that repeats id, model and created).
        out.reserve(chunk.len().saturating_mul(2));
        let (dec, enc) = (&mut *self.decoder, &mut *self.encoder);
        let relay = &mut self.relay;
        let res = self.parser.feed(chunk, &mut |ev| {
            dec.event(ev, &mut |ie| relay.pass(ie, enc, out))
        });
        if let Err(overflow) = res {
            let e = ir::StreamError {
                status: 502,
                message: overflow.to_string(),
            };
            relay.pass(StreamEvent::Error(e), enc, out);
        }
    }

    /// The upstream ended; close the client stream properly. If the upstream
    /// never completed its answer, the client gets an error event instead.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.relay.finished {
            return;
        }
        let (dec, enc) = (&mut *self.decoder, &mut *self.encoder);
        let relay = &mut self.relay;
        let res = self
            .parser
            .finish(&mut |ev| dec.event(ev, &mut |ie| relay.pass(ie, enc, out)));
        if res.is_ok() && !relay.finished {
            dec.end(&mut |ie| relay.pass(ie, enc, out));
        }
        if !relay.finished {
            let e = ir::StreamError {
                status: 502,
                message: "upstream stream ended before the answer was complete".to_string(),
            };
            relay.pass(StreamEvent::Error(e), enc, out);
        }
    }

    /// The upstream failed mid-stream: end with an error event in the client's format.
    pub fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        if self.relay.finished {
            return;
        }
        let enc = &mut *self.encoder;
        let e = ir::StreamError {
            status: 502,
            message: message.to_string(),
        };
        self.relay.pass(StreamEvent::Error(e), enc, out);
    }

    /// Usage seen so far.
    pub fn usage(&self) -> Usage {
        self.relay.usage
    }

    /// Characters of generated text passed so far (to estimate the output
    /// of a stream that reports no usage).
    pub fn content_chars(&self) -> u64 {
        self.relay.chars
    }

    /// Whether real content (a non-empty text/thinking/argument delta, or a tool
    /// call) has been sent to the client. Until then a failed attempt may still
    /// be retried elsewhere by discarding this translator's output.
    pub fn content_started(&self) -> bool {
        self.relay.content_started
    }

    /// An error event the upstream sent inside its stream (status, message);
    /// with `!content_started()` the attempt is a candidate for failover.
    pub fn upstream_error(&self) -> Option<(u16, &str)> {
        self.relay
            .upstream_error
            .as_ref()
            .map(|e| (e.status, e.message.as_str()))
    }

    /// Whether the client stream has been ended (completed or errored).
    pub fn is_finished(&self) -> bool {
        self.relay.finished
    }
}

#[cfg(test)]
mod tests;
