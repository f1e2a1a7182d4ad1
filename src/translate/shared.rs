//! Helpers more than one format uses: base64 in either alphabet, and the
//! wrapping that lets an opaque signature minted by one provider travel
//! through a client of another format and come back to its part.

use crate::ir::Format;
use base64::Engine as _;
use serde_json::{Value, json};
use std::borrow::Cow;

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
/// OpenAI's error shape, which both OpenAI formats answer with (SPEC "Errors"):
/// `error.type` and the short machine-readable `error.code` for a status.
pub(crate) fn openai_error_value(status: u16, message: &str, param: Option<&str>) -> Value {
    let kind = match status {
        400 | 422 | 413 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        503 => "service_unavailable",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    };
    let code = match status {
        401 => "invalid_api_key",
        403 => "model_not_allowed",
        404 => "model_not_found",
        413 => "request_too_large",
        429 => "rate_limit_exceeded",
        502 => "bad_gateway",
        504 => "upstream_timeout",
        400 => "invalid_request",
        _ => "upstream_error",
    };
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}
