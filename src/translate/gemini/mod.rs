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
mod request;
mod stream;
#[cfg(test)]
mod tests;
mod wire;

use answer::*;
pub use answer::{
    answer_usage, decode_response, encode_response, usage_from_gemini, usage_to_gemini,
};
use request::*;
pub use request::{decode_request, encode_request};
use stream::*;
pub use stream::{StreamDecode, StreamEncode};
use wire::*;

use super::dropped::{self, Dropped};
use super::gemini_schema;
use super::{RequestOpts, ResponseOpts, StreamDecoder, StreamEncoder, TranslateError};
use crate::ir::{self, Part, StreamEvent};
use crate::sse;
use crate::translate::Format;
use base64::Engine as _;
use serde_json::{Map, Value, json};
use std::borrow::Cow;

fn bad(msg: impl Into<String>, field: &str) -> TranslateError {
    TranslateError::bad_request(msg, Some(field))
}

/// A field by its camelCase or snake_case name (protobuf JSON accepts both).
pub(crate) fn field<'a>(o: &'a Map<String, Value>, camel: &str, snake: &str) -> Option<&'a Value> {
    o.get(camel)
        .or_else(|| o.get(snake))
        .filter(|v| !v.is_null())
}

/// Base64 in either alphabet, padded or not → standard padded base64.
/// `None` when the text is not base64 at all.
pub(crate) fn std_base64(s: &str) -> Option<Cow<'_, str>> {
    let s = s.trim();
    let mut needs_map = false;
    let mut body_len = 0usize;
    let mut seen_pad = false;
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' if !seen_pad => body_len += 1,
            b'-' | b'_' if !seen_pad => {
                needs_map = true;
                body_len += 1
            }
            b'=' => seen_pad = true,
            _ => return None,
        }
    }
    if body_len % 4 == 1 {
        return None;
    }
    let padded_len = body_len.div_ceil(4) * 4;
    if !needs_map && s.len() == padded_len {
        return Some(Cow::Borrowed(s));
    }
    let mut out = String::with_capacity(padded_len);
    for c in s.chars().take(body_len) {
        out.push(match c {
            '-' => '+',
            '_' => '/',
            c => c,
        });
    }
    while out.len() < padded_len {
        out.push('=');
    }
    Some(Cow::Owned(out))
}

/// Prefix marking a signature minted by another provider, as shown to clients
/// of a format whose signature slot is base64 bytes (Gemini `thoughtSignature`,
/// Responses `encrypted_content`). base64 of it starts with "YWlnYXRl" ("aigate").
const WRAP_PREFIX: &[u8] = b"aigate1:";

/// What a wrapped signature carries.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Wrapped {
    pub origin: Option<Format>,
    pub sig: String,
    /// Responses reasoning item id, kept for the round trip.
    pub id: Option<String>,
    /// `thinking` (default), `redacted`, `text` or `call`: which IR slot it came from.
    pub kind: String,
}

pub(crate) fn format_from_str(s: &str) -> Option<Format> {
    [
        Format::OpenAiChat,
        Format::OpenAiResponses,
        Format::Anthropic,
        Format::Gemini,
    ]
    .into_iter()
    .find(|f| f.as_str() == s)
}

/// Wrap an opaque signature with its origin as standard base64.
pub(crate) fn wrap_signature(
    origin: Option<Format>,
    sig: &str,
    id: Option<&str>,
    kind: &str,
) -> String {
    let meta = json!({"o": origin.map(Format::as_str), "s": sig, "i": id, "k": kind});
    let mut bytes = WRAP_PREFIX.to_vec();
    let _ = serde_json::to_writer(&mut bytes, &meta);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Undo [`wrap_signature`]; `None` for a signature that was not wrapped.
pub(crate) fn unwrap_signature(sig: &str) -> Option<Wrapped> {
    // Cheap test first: provider signatures are never copied or decoded here.
    if !sig.trim_start().starts_with("YWlnYXRl") {
        return None;
    }
    let std = std_base64(sig)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(std.as_bytes())
        .ok()?;
    let meta: Value = serde_json::from_slice(bytes.strip_prefix(WRAP_PREFIX)?).ok()?;
    Some(Wrapped {
        origin: meta
            .get("o")
            .and_then(Value::as_str)
            .and_then(format_from_str),
        sig: meta.get("s")?.as_str()?.to_string(),
        id: meta.get("i").and_then(Value::as_str).map(str::to_string),
        kind: meta
            .get("k")
            .and_then(Value::as_str)
            .unwrap_or("thinking")
            .to_string(),
    })
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
