//! Anthropic Messages (`POST /v1/messages`) ⇄ IR.
//!
//! Choices made here (documented in README "Conversions"):
//! - `max_tokens` is required by Anthropic: the client's value is never
//!   changed; when absent, [`DEFAULT_MAX_TOKENS`] (4096), or budget + 4096 with
//!   thinking on.
//! - OpenAI `reasoning_effort` → thinking budget via [`ir::effort_to_budget`]
//!   (minimal/low 1024, medium 4096, high 16384, xhigh 32768), capped below the
//!   client's max_tokens (thinking counts toward it on both sides).
//! - Requests: no empty text blocks; turns left empty are dropped; consecutive
//!   turns of one role are merged (Anthropic would merge them anyway) with
//!   `tool_result` blocks first; system turns found mid-conversation are
//!   appended to the top-level `system`.
//! - Client requests may carry a `system` message mid-conversation (Claude
//!   Code's beta `mid-conversation-system-2026-04-07`): it is a system turn
//!   at its place, which other formats express as theirs (OpenAI Chat a
//!   `system` message, Responses a `system` input item, Gemini joins it to
//!   `systemInstruction`). `output_config.effort` is the reasoning effort
//!   (OpenAI `reasoning_effort` / `reasoning.effort` as is, Gemini a
//!   thinking budget via [`ir::effort_to_budget`]); `output_config.format`
//!   is the response format; other `output_config` keys are refused elsewhere. Thinking blocks go upstream only when
//!   signed by Anthropic (an unsigned or foreign-signed block would be rejected).
//! - `response_format` (json_schema / json_object) has no classic-API
//!   equivalent: it is expressed as forced use of the reserved tool
//!   [`super::RESPONSE_FORMAT_TOOL`] whose input schema is the client's schema;
//!   the tool input is given back as the message text (see `translate::Relay`).
//!   With thinking on, forced tool use is not allowed: 400 naming `response_format`.
//! - Answers: thinking synthesised from OpenAI-style `reasoning_content` is a
//!   thinking block with an empty signature, closed before the next block.
//!   Another provider's thinking signature is given wrapped with its origin
//!   (`shared::wrap_signature`, `aigate1:`); a Gemini functionCall part's
//!   `thoughtSignature` comes as an empty thinking block right after that
//!   `tool_use`, its signature wrapped with the call id (kind `call`).
//!   Anthropic clients send thinking blocks back verbatim: wrapped signatures
//!   return to their part (the call's goes back onto the call) and are never
//!   sent to Anthropic.
//! - With thinking on, a tool-use continuation whose assistant turn lacks its
//!   signed thinking (the client dropped it) is sent without thinking, which
//!   Anthropic would otherwise reject; an Anthropic client's request is never
//!   changed that way.
//! - Citations on text blocks are not carried to other formats (the text is).
//! - Tool arguments that are not a JSON object (a model's broken output) are
//!   given to Anthropic clients as `{"_raw_arguments": "<text>"}` in
//!   non-streaming answers (streams pass the fragments through as they come).

mod answer;
pub mod count;
mod request;
mod stream;
#[cfg(test)]
mod tests;
mod wire;

use answer::*;
pub use answer::{answer_usage, decode_response, encode_response, error_value};
use request::*;
pub use request::{decode_request, encode_request};
pub use stream::{StreamDecode, StreamEncode, TEXT_KEYS, write_error_event};
use wire::*;

use super::dropped::{self, Dropped};
use super::json::{self, CowStr, Path, bad, field, idx, inexpressible, join, push_uint};
use super::shared::{unwrap_signature, wrap_signature};
use super::{
    Format, RESPONSE_FORMAT_TOOL, RequestOpts, ResponseOpts, StreamDecoder, StreamEncoder,
    TranslateError,
};
use crate::ir::{self, BlockStart, Delta, FinishReason, Part, Role, StreamEvent};
use crate::sse;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use std::borrow::Cow;

const NAME: &str = "anthropic";

/// `max_tokens` sent when the client gave none (Anthropic requires it).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Request fields that only tune delivery; other formats drop them.
/// `context_management` asks Anthropic to prune old tool results server-side
/// near the context limit (Claude Code sends it); it never changes an answer
/// that fits, so a non-Anthropic upstream simply does not prune.
const HINTS: &[&str] = &["service_tier", "context_management"];
