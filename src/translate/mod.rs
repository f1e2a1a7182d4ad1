//! Format conversion: every client format to and from every upstream format
//! through one internal model (`crate::ir`). Each wire format lives in its own
//! module (wire types + decode/encode + stream state machine); this file only
//! dispatches, so a new format means one new module and one line per match.
//!
//! Contract used by the proxy (src/proxy/exchange.rs):
//! - `convert_request`: client JSON body -> upstream body bytes, for one target.
//!   Called again for every retry target (it may be a different format).
//! - `convert_response`: whole non-streaming upstream body -> client body.
//! - `StreamTranslator`: upstream SSE bytes, fed chunk by chunk as they arrive
//!   (split at any byte), -> client stream bytes, emitted as soon as possible.
//! - `error_body` / `convert_error`: errors in the client's own format.

use serde_json::Value;

/// A chat wire format, on either side of the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    OpenAiChat,
    OpenAiResponses,
    Anthropic,
    Gemini,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::OpenAiChat => "openai-chat",
            Format::OpenAiResponses => "openai-responses",
            Format::Anthropic => "anthropic",
            Format::Gemini => "gemini",
        }
    }
}

/// A conversion that cannot be done faithfully: the client gets a 400 in its own
/// format naming the field (`param`), never a silently dropped feature.
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
}

/// Token usage in one canonical shape (SPEC "Usage totals mean the same").
/// `input` includes cached tokens; `output` includes reasoning tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cached: u64,
    pub reasoning: u64,
}

pub mod errors;
pub mod embeddings;
pub mod gemini_schema;
pub mod openai_responses;
pub use errors::{convert_error, error_body, error_body_param};

// PLACEHOLDER BODIES (skeleton commit): the translate helper replaces everything
// below this line with the real dispatch over ir + per-format modules, keeping
// these signatures.

/// Convert a client request body (`from`) into the upstream's format (`to`).
pub fn convert_request(
    from: Format,
    to: Format,
    body: &Value,
    opts: &RequestOpts,
) -> Result<Vec<u8>, TranslateError> {
    let _ = (from, to, body, opts);
    Err(TranslateError::bad_request("conversion not built yet", None))
}

/// Convert a whole non-streaming upstream answer (`from`) into the client's format (`to`).
pub fn convert_response(
    from: Format,
    to: Format,
    body: &[u8],
    opts: &ResponseOpts,
) -> Result<Vec<u8>, TranslateError> {
    let _ = (from, to, body, opts);
    Err(TranslateError::bad_request("conversion not built yet", None))
}

/// Usage reported in a whole non-streaming answer of `format`.
pub fn response_usage(format: Format, body: &[u8]) -> Option<Usage> {
    let _ = (format, body);
    None
}

/// Per-request streaming converter: upstream SSE bytes in, client stream bytes out.
pub struct StreamTranslator {
    _from: Format,
    _to: Format,
}

impl StreamTranslator {
    pub fn new(from: Format, to: Format, opts: ResponseOpts) -> Self {
        let _ = opts;
        StreamTranslator { _from: from, _to: to }
    }
    /// Feed one upstream chunk (any split); append whatever client bytes are ready.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let _ = (chunk, out);
    }
    /// The upstream ended; close the client stream properly.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let _ = out;
    }
    /// The upstream failed mid-stream: end with an error event in the client's format.
    pub fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        let _ = (message, out);
    }
    /// Usage seen so far.
    pub fn usage(&self) -> Usage {
        Usage::default()
    }
}

/// Same-format passthrough: watches the bytes going by for usage, changes nothing.
pub struct UsageTap {
    _format: Format,
}

impl UsageTap {
    pub fn new(format: Format, stream: bool) -> Self {
        let _ = stream;
        UsageTap { _format: format }
    }
    pub fn feed(&mut self, chunk: &[u8]) {
        let _ = chunk;
    }
    pub fn usage(&self) -> Option<Usage> {
        None
    }
}
