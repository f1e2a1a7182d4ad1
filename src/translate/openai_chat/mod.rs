//! OpenAI Chat Completions (`POST /v1/chat/completions`) ⇄ IR.
//!
//! Choices made here (documented in README "Conversions"):
//! - Leading `system`/`developer` messages become the IR system prompt; later
//!   ones stay in place as system turns.
//! - `role: tool` messages become tool results in a user turn (consecutive ones
//!   merged). Tool results with images: OpenAI tool messages take text only, so
//!   the images follow in a user message. `is_error` results are prefixed
//!   `Error: ` (OpenAI has no error flag).
//! - Thinking on assistant messages travels as `reasoning_content` (text, what
//!   DeepSeek-style servers and clients use) plus `reasoning_details` (the
//!   OpenRouter convention: one entry per block with its `signature`, redacted
//!   blocks as `reasoning.encrypted`, `format` naming the provider that signed
//!   it). Clients that send `reasoning_details` back get signed Anthropic
//!   thinking round-tripped exactly. Upstream requests carry only unsigned
//!   thinking (`reasoning_content`); another provider's signatures are useless
//!   to an OpenAI-format upstream and are not sent.
//! - Gemini's per-call `thoughtSignature` rides on its tool call as
//!   `tool_calls[i].extra_content.google.thought_signature` (the field Gemini's
//!   own OpenAI-compatible API uses; in streams, a `tool_calls` delta of its
//!   own after the arguments). The official SDKs keep it on the message a
//!   client sends back, which puts it back on that call for Gemini; it is not
//!   sent to OpenAI-format upstreams.
//! - Upstream requests use `max_completion_tokens` (OpenAI's current name;
//!   reasoning models reject `max_tokens`), or `max_tokens` for
//!   OpenAI-compatible servers (`convert_request_compatible`), and, when
//!   streaming, always `stream_options.include_usage: true`.
//! - `cache_control` accepted on content parts, messages and tools (LiteLLM
//!   style) is kept for Anthropic; OpenAI caches by itself, so it is not sent
//!   to OpenAI-format upstreams (named in `x-aigate-dropped`, see `dropped.rs`). Tool `strict` is kept only between OpenAI formats.
//! - Upstream message content that is only text is sent as one string (blocks
//!   joined with a blank line): many OpenAI-compatible servers reject arrays.

mod answer;
mod request;
mod stream;
#[cfg(test)]
mod tests;
mod wire;

use answer::*;
pub use answer::{answer_usage, decode_response, encode_response};
use request::*;
pub use request::{decode_request, encode_request, encode_request_for};
pub use stream::{StreamDecode, StreamEncode, TEXT_KEYS, is_usage_chunk, write_error_event};
use wire::*;

use super::dropped::{self, Dropped};
use super::json::{self, CowStr, Path, bad, field, idx, inexpressible, join};
use super::{Format, RequestOpts, ResponseOpts, StreamDecoder, StreamEncoder, TranslateError};
use crate::ir::{self, BlockStart, Delta, FinishReason, Part, Role, StreamEvent};
use crate::sse;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::borrow::Cow;

const NAME: &str = "openai-chat";

/// Request fields that only tune delivery, length or accounting: other
/// formats leave them out and name them (`x-aigate-dropped`). `verbosity` is
/// a length hint (GPT-5); `prediction` a latency hint (predicted outputs).
const HINTS: &[&str] = &[
    "store",
    "metadata",
    "service_tier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
    "verbosity",
    "prediction",
];
