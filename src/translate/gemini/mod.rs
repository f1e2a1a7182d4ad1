//! Gemini (`generativelanguage` v1beta `generateContent` /
//! `streamGenerateContent`) as a format of the internal model, on both sides.
//!
//! Decoders walk `serde_json::Value` rather than typed structs so that (a)
//! every error names its JSON path, and (b) both protobuf-JSON spellings are
//! accepted (`inlineData` and `inline_data`, `thoughtSignature` and
//! `thought_signature`, ...: the google-genai SDK sends either). Encoders write
//! camelCase.
//!
//! Mappings and defaults (README "Conversions" repeats them):
//! - Tool-call ids: Gemini's `functionCall.id` when present; otherwise a stable
//!   id derived from the response id, the call's index and its name
//!   ([`call_id`]). Tool results go back to Gemini as `functionResponse` named
//!   after the call whose id they answer (looked up in the history). Gemini
//!   clients get the id in `functionCall.id` and may echo it in
//!   `functionResponse.id`; without one, results are matched to calls by name
//!   and order.
//! - `functionResponse.response`: a JSON-object result is sent as is; other
//!   text as `{"output": text}`, an error result as `{"error": text}` (the keys
//!   Gemini's documentation names). The reverse unwraps `output`/`result`.
//! - Base64 (inline images, signatures) is held as standard base64 in the IR;
//!   URL-safe input (google-genai) is re-encoded.
//! - `thoughtSignature` rides on the IR part it was on (text, tool call,
//!   thinking). Signatures minted by another provider (Anthropic thinking
//!   signatures, Responses `encrypted_content`) are shown to Gemini clients
//!   wrapped ([`wrap_signature`]) so they come back with their origin, and are
//!   never sent to Gemini.
//! - Finish reasons: STOP → stop (tool_calls when the turn has calls),
//!   MAX_TOKENS → length, SAFETY/RECITATION/BLOCKLIST/PROHIBITED_CONTENT/SPII/
//!   IMAGE_SAFETY → content_filter, others kept verbatim. To Gemini clients:
//!   stop/tool_calls/stop_sequence/pause_turn → STOP, length → MAX_TOKENS,
//!   content_filter/refusal → SAFETY.
//! - Usage: input = promptTokenCount (+ toolUsePromptTokenCount), cached =
//!   cachedContentTokenCount, output = candidatesTokenCount + thoughtsTokenCount,
//!   reasoning = thoughtsTokenCount. Every stream chunk repeats the running
//!   totals: they replace, never add.
//! - Thinking: effort → `thinkingBudget` via `ir::effort_to_budget`, disabled →
//!   budget 0, and `includeThoughts: true` whenever thinking is on (other
//!   formats expect the thinking back). `includeThoughts` from a Gemini client
//!   maps to a reasoning `summary: "auto"`.

mod answer;
pub mod count;
mod request;
mod schema;
mod stream;
#[cfg(test)]
mod tests;
mod wire;

use answer::*;
pub use answer::{
    answer_usage, decode_response, encode_response, error_value, usage_from_gemini, usage_to_gemini,
};
use request::*;
pub use request::{decode_request, encode_request};
pub use stream::{StreamDecode, StreamEncode, TEXT_KEYS, write_error_event};
use wire::*;

use super::dropped::{self, Dropped};
use super::json::{Path, idx as at, join};
use super::shared::{std_base64, unwrap_signature, wrap_signature};
use super::{RequestOpts, ResponseOpts, StreamDecoder, StreamEncoder, TranslateError};
use crate::ir::{self, Part, StreamEvent};
use crate::sse;
use crate::translate::Format;
use serde_json::{Map, Value, json};
use std::borrow::Cow;

fn bad(msg: impl Into<String>, field: &(impl std::fmt::Display + ?Sized)) -> TranslateError {
    TranslateError::bad_request(msg, Some(&field.to_string()))
}

/// A field by its camelCase or snake_case name (protobuf JSON accepts both).
pub(crate) fn field<'a>(o: &'a Map<String, Value>, camel: &str, snake: &str) -> Option<&'a Value> {
    o.get(camel)
        .or_else(|| o.get(snake))
        .filter(|v| !v.is_null())
}

/// FNV-1a, for stable generated ids (deterministic: same answer, same ids).
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100000001b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Stable tool-call id for a Gemini call without one: derived from the
/// response id (so ids differ across turns), the call's index and its name.
pub fn call_id(response_id: &str, index: usize, name: &str) -> String {
    let idx = index.to_string();
    format!(
        "call_{:016x}",
        fnv(&[response_id.as_bytes(), idx.as_bytes(), name.as_bytes()])
    )
}

fn mime_from_url(url: &str) -> &'static str {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    match path.rsplit('.').next().unwrap_or("") {
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        _ => "image/jpeg",
    }
}

/// Split a `data:` URL into (media type, standard base64 data).
fn parse_data_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media = meta.strip_suffix(";base64")?;
    Some((media.to_string(), std_base64(data)?.into_owned()))
}
