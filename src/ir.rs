//! The internal model every wire format converts to and from (issue 3 "one
//! internal representation"). A format module only knows its own wire types and
//! this file; `translate/mod.rs` glues decoder(from) → IR → encoder(to).
//!
//! Designed for the four formats (OpenAI Chat, OpenAI Responses, Anthropic
//! Messages, Gemini) — what one format has and another lacks has a slot here so
//! it survives a round trip through a third format:
//! - Gemini has no tool-call ids: decoders generate them; results carry `name`.
//! - Gemini puts an opaque `thoughtSignature` on any part: [`TextPart::signature`],
//!   [`ToolCall::signature`].
//! - Responses reasoning items carry `encrypted_content` and an item id:
//!   [`Thinking::signature`] + [`Thinking::id`]; [`Thinking::origin`] says which
//!   format minted a signature, so an encoder never hands one provider's opaque
//!   blob to another (it would be rejected).
//! - Blocks no other format can express are kept verbatim as [`Raw`] with
//!   their origin format; an encoder of that same format re-emits them, any
//!   other returns a 400 naming the field (requests) or skips them (answers).
//!
//! Usage is kept in [`Usage`], whose `input` includes cached tokens and whose
//! `output` includes reasoning tokens (SPEC "Usage totals mean the same").

use serde_json::{Map, Value};
use std::borrow::Cow;

/// A chat wire format, on either side of the gateway. Defined with the
/// internal model, which tags opaque values with the format that minted them
/// (`translate::Format` is the same type).
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

// ---------------------------------------------------------------- requests

/// A chat request in no particular format.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    /// Model as the client named it (encoders use `RequestOpts::model`).
    pub model: String,
    /// System prompt blocks, in order (Anthropic `system`, OpenAI leading
    /// system/developer messages, Gemini `systemInstruction`, Responses `instructions`).
    pub system: Vec<TextPart>,
    pub messages: Vec<Message>,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    /// `Some(false)`: at most one tool call per turn (OpenAI `parallel_tool_calls:
    /// false` ⇄ Anthropic `disable_parallel_tool_use: true`).
    pub parallel_tool_calls: Option<bool>,
    pub sampling: Sampling,
    pub reasoning: Option<Reasoning>,
    pub response_format: Option<ResponseFormat>,
    /// End-user id (OpenAI `user` ⇄ Anthropic `metadata.user_id`).
    pub user: Option<String>,
    pub stream: bool,
    /// The client asked for usage in its stream (OpenAI `stream_options.include_usage`).
    pub stream_include_usage: bool,
    /// Fields of the source format with no slot above. Only an encoder of the
    /// same format may emit them; any other must refuse with a 400 naming them.
    pub extra: Extra,
}

/// Source-format fields with no IR slot (see [`Request::extra`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Extra {
    pub format: Format,
    /// Features: another format must refuse them (400 naming the field).
    pub fields: Map<String, Value>,
    /// Hints with no effect on the answer's content (`store`, `service_tier`,
    /// ...): another format leaves them out and names them in the
    /// `x-aigate-dropped` list (each decoder documents its list).
    pub hints: Map<String, Value>,
    /// The client path [`Request::user`] came from (`user`,
    /// `safety_identifier`, `metadata.user_id`), named when a target has no slot.
    pub user_from: &'static str,
    /// Client paths of `cache_control` markers (Anthropic, and OpenAI Chat in
    /// LiteLLM's style): only an Anthropic target keeps them, others name them.
    pub cache_paths: Vec<String>,
}

impl Default for Extra {
    fn default() -> Self {
        Extra {
            format: Format::OpenAiChat,
            fields: Map::new(),
            hints: Map::new(),
            user_from: "user",
            cache_paths: Vec::new(),
        }
    }
}

impl Extra {
    pub fn new(format: Format) -> Self {
        Extra {
            format,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sampling {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u64>,
    /// Maximum output tokens, as the client gave it (never overridden).
    pub max_tokens: Option<u64>,
    pub stop: Vec<String>,
    pub seed: Option<i64>,
    pub frequency_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
    /// Number of choices; only OpenAI formats can return more than one.
    pub n: Option<u64>,
}

/// Reasoning / extended thinking controls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reasoning {
    /// Thinking explicitly turned off (Anthropic `thinking.type: disabled`,
    /// OpenAI `reasoning_effort: none`, Gemini `thinkingBudget: 0`).
    pub disabled: bool,
    /// OpenAI-style effort ("minimal", "low", "medium", "high", ...).
    pub effort: Option<String>,
    /// Anthropic / Gemini style token budget.
    pub budget_tokens: Option<u64>,
    /// Responses `reasoning.summary` ("auto", "concise", "detailed").
    pub summary: Option<String>,
    /// Only an effort was given, no thinking switch (Anthropic
    /// `output_config.effort` without `thinking`): an Anthropic request keeps
    /// it as an effort and turns no thinking on.
    pub effort_only: bool,
}

/// Thinking budget for an OpenAI or Anthropic effort (documented mapping,
/// README "Conversions"); `max` gets the largest, as `xhigh`.
pub fn effort_to_budget(effort: &str) -> Option<u64> {
    match effort {
        "minimal" | "low" => Some(1024),
        "medium" => Some(4096),
        "high" => Some(16384),
        "xhigh" | "max" => Some(32768),
        _ => None,
    }
}

/// OpenAI effort for a thinking budget: the nearest of low/medium/high.
pub fn budget_to_effort(budget: u64) -> &'static str {
    match budget {
        0..=2048 => "low",
        2049..=8192 => "medium",
        _ => "high",
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        description: Option<String>,
        schema: Value,
        strict: Option<bool>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Only for system/developer turns found after the first user/assistant
    /// turn (leading ones go to [`Request::system`]).
    System,
    User,
    Assistant,
}

/// One turn. Tool results are [`Part::ToolResult`]s in a `User` turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Part>,
    /// OpenAI participant `name` (no other format has it).
    pub name: Option<String>,
}

impl Message {
    pub fn new(role: Role, content: Vec<Part>) -> Self {
        Message {
            role,
            content,
            name: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(TextPart),
    Image(ImagePart),
    ToolCall(ToolCall),
    ToolResult(ToolResult),
    Thinking(Thinking),
    RedactedThinking(RedactedThinking),
    Raw(Raw),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextPart {
    pub text: String,
    /// Anthropic `cache_control`, kept verbatim.
    pub cache_control: Option<Value>,
    /// Opaque per-part signature (Gemini `thoughtSignature`).
    pub signature: Option<String>,
}

impl TextPart {
    pub fn new(text: impl Into<String>) -> Self {
        TextPart {
            text: text.into(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImagePart {
    pub source: ImageSource,
    /// OpenAI `detail` hint ("low" / "high" / "auto").
    pub detail: Option<String>,
    pub cache_control: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// Standard base64 (encoders of URL-safe formats re-encode).
    Base64 {
        media_type: String,
        data: String,
    },
    Url {
        url: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// Arguments as JSON text (OpenAI keeps them as a string; others as objects).
    pub arguments: String,
    pub cache_control: Option<Value>,
    /// Opaque per-part signature (Gemini `thoughtSignature`).
    pub signature: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolResult {
    /// The id of the call answered.
    pub id: String,
    /// Name of the tool, when the source knows it (Gemini needs it).
    pub name: Option<String>,
    /// Text and image parts.
    pub content: Vec<Part>,
    pub is_error: bool,
    pub cache_control: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thinking {
    pub text: String,
    /// Anthropic `signature`, Responses `encrypted_content`, Gemini `thoughtSignature`.
    pub signature: Option<String>,
    /// The format that minted `signature` (None: unknown).
    pub origin: Option<Format>,
    /// Responses reasoning item id.
    pub id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RedactedThinking {
    pub data: String,
    pub origin: Option<Format>,
}

/// A block only its own format understands, kept verbatim.
#[derive(Debug, Clone, PartialEq)]
pub struct Raw {
    pub format: Format,
    pub value: Value,
}

impl Raw {
    /// The block's `type` (for error messages).
    pub fn kind(&self) -> &str {
        self.value
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Tool {
    Function(FunctionTool),
    /// A provider-specific tool (Anthropic server tools, OpenAI custom tools...).
    Raw(Raw),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FunctionTool {
    pub name: String,
    pub description: Option<String>,
    /// JSON schema of the arguments (OpenAI `parameters` ⇄ Anthropic `input_schema`).
    pub parameters: Value,
    pub strict: Option<bool>,
    pub cache_control: Option<Value>,
    /// Anthropic-only tool-loading hints kept verbatim (`defer_loading`,
    /// `input_examples`, `eager_input_streaming`): an Anthropic target gets
    /// them back, any other gets the tool without them and names them.
    pub hints: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    None,
    /// OpenAI `required` ⇄ Anthropic `any` ⇄ Gemini `ANY`.
    Required,
    Tool(String),
}

// ---------------------------------------------------------------- responses

/// A whole (non-streaming) answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Response {
    pub id: String,
    pub model: String,
    /// Unix seconds, when the source said.
    pub created: Option<u64>,
    pub content: Vec<Part>,
    pub finish: Option<FinishReason>,
    pub usage: Usage,
}

/// Why the model stopped. Every value of every format has a home; what no
/// format names is kept verbatim in `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    /// A stop sequence matched (Anthropic keeps which).
    StopSequence(Option<String>),
    Refusal,
    PauseTurn,
    ContextWindowExceeded,
    Other(String),
}

impl FinishReason {
    /// Whether the answer was cut short (its last tool call may be incomplete).
    pub fn is_truncation(&self) -> bool {
        matches!(
            self,
            FinishReason::Length | FinishReason::ContextWindowExceeded
        )
    }
}

/// Token usage in one canonical shape, for every format and every use
/// (metering, prices, limits; SPEC "Usage totals mean the same"). `input`
/// includes cache reads and writes; `output` includes reasoning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub reasoning: u64,
}

impl Usage {
    /// Input tokens that were neither read from nor written to a cache
    /// (Anthropic's `input_tokens`).
    pub fn uncached_input(&self) -> u64 {
        self.input
            .saturating_sub(self.cache_read.saturating_add(self.cache_write))
    }

    /// Fields the newer report knows replace the older ones (streams report
    /// input at the start and output at the end).
    pub fn merge(&mut self, newer: &Usage) {
        if newer.input > 0 {
            self.input = newer.input;
            self.cache_read = newer.cache_read;
            self.cache_write = newer.cache_write;
        }
        if newer.output > 0 {
            self.output = newer.output;
        }
        if newer.reasoning > 0 {
            self.reasoning = newer.reasoning;
        }
    }
}

// ---------------------------------------------------------------- streams

/// One step of a streamed answer. Strings borrow from the upstream event where
/// they can (no allocation per delta unless the JSON had escapes).
///
/// Grammar every decoder produces and every encoder may rely on (encoders are
/// still defensive):
/// `Start (BlockStart Delta* BlockStop)* Usage* Finish` or `... Error`,
/// with at most one block open at a time and block indices 0, 1, 2, ...
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent<'a> {
    Start(StreamStart<'a>),
    BlockStart {
        index: usize,
        block: BlockStart<'a>,
    },
    Delta {
        index: usize,
        delta: Delta<'a>,
    },
    BlockStop {
        index: usize,
    },
    /// Usage learnt mid-stream (replaces known fields, see [`Usage::merge`]).
    Usage(Usage),
    /// Keep-alive from the upstream.
    Ping,
    /// The answer is complete.
    Finish {
        reason: FinishReason,
        usage: Usage,
    },
    /// The upstream reported an error inside the stream.
    Error(StreamError),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamStart<'a> {
    pub id: Cow<'a, str>,
    pub model: Cow<'a, str>,
    pub created: Option<u64>,
    /// What is known at the start (Anthropic sends input tokens here).
    pub usage: Usage,
    /// The upstream format (whose signatures the stream carries).
    pub origin: Option<Format>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BlockStart<'a> {
    Text,
    Thinking,
    RedactedThinking {
        data: Cow<'a, str>,
    },
    ToolCall {
        id: Cow<'a, str>,
        name: Cow<'a, str>,
    },
    /// A block only `format` understands (e.g. Anthropic `server_tool_use`).
    Raw(Raw),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Delta<'a> {
    Text(Cow<'a, str>),
    Thinking(Cow<'a, str>),
    /// Signature of the open block (thinking, or Gemini's per-part signature).
    Signature(Cow<'a, str>),
    /// The upstream's id of the open thinking block (a Responses reasoning
    /// item), before its signature: a client gives it back with the signature,
    /// as it does from a whole answer (`Thinking::id`).
    ThinkingId(Cow<'a, str>),
    /// A fragment of a tool call's JSON arguments.
    ToolArgs(Cow<'a, str>),
}

/// An error reported inside an upstream stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError {
    /// HTTP status the error corresponds to (529 overloaded, 429, 500...).
    pub status: u16,
    pub message: String,
}

/// HTTP status for an Anthropic / OpenAI error `type` string.
pub fn status_for_error_type(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" | "rate_limit_exceeded" | "insufficient_quota" => 429,
        "overloaded_error" => 529,
        "timeout_error" => 504,
        "service_unavailable" => 503,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_merge_keeps_both_ends_of_a_stream() {
        let mut u = Usage {
            input: 120,
            cache_read: 100,
            ..Default::default()
        };
        u.merge(&Usage {
            output: 42,
            reasoning: 7,
            ..Default::default()
        });
        assert_eq!(
            u,
            Usage {
                input: 120,
                output: 42,
                cache_read: 100,
                cache_write: 0,
                reasoning: 7
            }
        );
        assert_eq!(u.uncached_input(), 20);
    }

    #[test]
    fn effort_budget_mapping_round_trips() {
        for e in ["low", "medium", "high"] {
            let b = effort_to_budget(e).expect("known effort");
            assert_eq!(budget_to_effort(b), e, "effort {e} -> budget {b} -> effort");
        }
        assert_eq!(effort_to_budget("minimal"), Some(1024));
        assert_eq!(effort_to_budget("bogus"), None);
    }

    #[test]
    fn error_types_have_statuses() {
        assert_eq!(status_for_error_type("overloaded_error"), 529);
        assert_eq!(status_for_error_type("rate_limit_error"), 429);
        assert_eq!(status_for_error_type("something_new"), 500);
    }
}
