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

use super::dropped::{self, Dropped};
use super::gemini_schema;
use super::{RequestOpts, ResponseOpts, StreamDecoder, StreamEncoder, TranslateError};
use crate::ir::{self, Part, StreamEvent};
use crate::sse;
use crate::translate::Format;
use base64::Engine as _;
use serde_json::{Map, Value, json};
use std::borrow::Cow;

// ------------------------------------------------------------ shared helpers

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

// ------------------------------------------------------------ finish / usage

fn finish_from_gemini(reason: &str) -> ir::FinishReason {
    use ir::FinishReason as F;
    match reason {
        "STOP" => F::Stop,
        "MAX_TOKENS" => F::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            F::ContentFilter
        }
        other => F::Other(other.to_string()),
    }
}

fn finish_to_gemini(reason: &ir::FinishReason) -> Cow<'static, str> {
    use ir::FinishReason as F;
    match reason {
        F::Stop | F::ToolCalls | F::StopSequence(_) | F::PauseTurn => "STOP".into(),
        F::Length | F::ContextWindowExceeded => "MAX_TOKENS".into(),
        F::ContentFilter | F::Refusal => "SAFETY".into(),
        F::Other(s) => {
            let known = [
                "FINISH_REASON_UNSPECIFIED",
                "RECITATION",
                "LANGUAGE",
                "OTHER",
                "BLOCKLIST",
                "PROHIBITED_CONTENT",
                "SPII",
                "MALFORMED_FUNCTION_CALL",
                "IMAGE_SAFETY",
                "UNEXPECTED_TOOL_CALL",
                "TOO_MANY_TOOL_CALLS",
            ];
            if known.contains(&s.as_str()) {
                Cow::Owned(s.clone())
            } else {
                "OTHER".into()
            }
        }
    }
}

fn num(o: &Map<String, Value>, camel: &str, snake: &str) -> u64 {
    field(o, camel, snake).and_then(Value::as_u64).unwrap_or(0)
}

/// `usageMetadata` → canonical usage.
pub fn usage_from_gemini(u: &Value) -> ir::Usage {
    let Some(o) = u.as_object() else {
        return ir::Usage::default();
    };
    let prompt = num(o, "promptTokenCount", "prompt_token_count");
    let tool_prompt = num(o, "toolUsePromptTokenCount", "tool_use_prompt_token_count");
    let cands = num(o, "candidatesTokenCount", "candidates_token_count");
    let thoughts = num(o, "thoughtsTokenCount", "thoughts_token_count");
    ir::Usage {
        input: prompt + tool_prompt,
        output: cands + thoughts,
        cache_read: num(o, "cachedContentTokenCount", "cached_content_token_count"),
        cache_write: 0,
        reasoning: thoughts,
    }
}

/// Canonical usage → `usageMetadata`.
pub fn usage_to_gemini(u: &ir::Usage) -> Value {
    let mut m = Map::new();
    m.insert("promptTokenCount".into(), u.input.into());
    m.insert(
        "candidatesTokenCount".into(),
        u.output.saturating_sub(u.reasoning).into(),
    );
    m.insert("totalTokenCount".into(), (u.input + u.output).into());
    if u.cache_read > 0 {
        m.insert("cachedContentTokenCount".into(), u.cache_read.into());
    }
    if u.reasoning > 0 {
        m.insert("thoughtsTokenCount".into(), u.reasoning.into());
    }
    Value::Object(m)
}

// ------------------------------------------------------------ request: Gemini → IR

/// Calls of the history not answered yet, for matching id-less results by name and order.
#[derive(Default)]
struct PendingCalls {
    calls: Vec<(String, String)>, // (id, name)
}

impl PendingCalls {
    fn take(&mut self, name: &str) -> Option<String> {
        let i = self.calls.iter().position(|(_, n)| n == name)?;
        Some(self.calls.remove(i).0)
    }
}

fn decode_signature(o: &Map<String, Value>, path: &str) -> Result<Option<String>, TranslateError> {
    match field(o, "thoughtSignature", "thought_signature") {
        None => Ok(None),
        Some(Value::String(s)) => std_base64(s).map(|s| Some(s.into_owned())).ok_or_else(|| {
            bad(
                format!("'{path}.thoughtSignature' is not base64"),
                &format!("{path}.thoughtSignature"),
            )
        }),
        Some(_) => Err(bad(
            format!("'{path}.thoughtSignature' must be a string"),
            &format!("{path}.thoughtSignature"),
        )),
    }
}

fn json_args_text(v: Option<&Value>) -> String {
    match v {
        None => "{}".to_string(),
        Some(v) => serde_json::to_string(v).unwrap_or_else(|_| "{}".to_string()),
    }
}

/// A `functionResponse.response` object → tool result text.
fn result_text(resp: &Value) -> (String, bool) {
    if let Some(o) = resp.as_object()
        && o.len() == 1
    {
        for key in ["output", "result"] {
            if let Some(v) = o.get(key) {
                return match v {
                    Value::String(s) => (s.clone(), false),
                    v => (v.to_string(), false),
                };
            }
        }
        if let Some(v) = o.get("error") {
            return match v {
                Value::String(s) => (s.clone(), true),
                v => (v.to_string(), true),
            };
        }
    }
    (resp.to_string(), false)
}

fn decode_part(
    p: &Value,
    path: &str,
    turn: usize,
    idx: usize,
    pending: &mut PendingCalls,
) -> Result<Option<Part>, TranslateError> {
    let o = p
        .as_object()
        .ok_or_else(|| bad(format!("'{path}' must be an object"), path))?;
    let sig = decode_signature(o, path)?;
    if let Some(t) = o.get("text") {
        let text = t.as_str().ok_or_else(|| {
            bad(
                format!("'{path}.text' must be a string"),
                &format!("{path}.text"),
            )
        })?;
        if o.get("thought").and_then(Value::as_bool) == Some(true) {
            return Ok(Some(thinking_from_gemini(text, sig)));
        }
        return Ok(Some(Part::Text(ir::TextPart {
            text: text.to_string(),
            cache_control: None,
            signature: sig,
        })));
    }
    if let Some(d) = field(o, "inlineData", "inline_data") {
        let dp = format!("{path}.inlineData");
        let mime = d
            .as_object()
            .and_then(|d| field(d, "mimeType", "mime_type"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                bad(
                    format!("'{dp}.mimeType' is required"),
                    &format!("{dp}.mimeType"),
                )
            })?;
        let data = d
            .get("data")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("'{dp}.data' is required"), &format!("{dp}.data")))?;
        let data = std_base64(data)
            .ok_or_else(|| bad(format!("'{dp}.data' is not base64"), &format!("{dp}.data")))?;
        if !mime.starts_with("image/") {
            return Ok(Some(Part::Raw(ir::Raw {
                format: Format::Gemini,
                value: p.clone(),
            })));
        }
        return Ok(Some(Part::Image(ir::ImagePart {
            source: ir::ImageSource::Base64 {
                media_type: mime.to_string(),
                data: data.into_owned(),
            },
            detail: None,
            cache_control: None,
        })));
    }
    if let Some(d) = field(o, "fileData", "file_data") {
        let dp = format!("{path}.fileData");
        let d = d
            .as_object()
            .ok_or_else(|| bad(format!("'{dp}' must be an object"), &dp))?;
        let uri = field(d, "fileUri", "file_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                bad(
                    format!("'{dp}.fileUri' is required"),
                    &format!("{dp}.fileUri"),
                )
            })?;
        let mime = field(d, "mimeType", "mime_type")
            .and_then(Value::as_str)
            .unwrap_or("image/*");
        if !mime.starts_with("image/")
            || !(uri.starts_with("http://") || uri.starts_with("https://"))
        {
            // Files API URIs and non-image files only mean something to Gemini.
            return Ok(Some(Part::Raw(ir::Raw {
                format: Format::Gemini,
                value: p.clone(),
            })));
        }
        return Ok(Some(Part::Image(ir::ImagePart {
            source: ir::ImageSource::Url {
                url: uri.to_string(),
            },
            detail: None,
            cache_control: None,
        })));
    }
    if let Some(fc) = field(o, "functionCall", "function_call") {
        let fp = format!("{path}.functionCall");
        let fc = fc
            .as_object()
            .ok_or_else(|| bad(format!("'{fp}' must be an object"), &fp))?;
        let name = fc
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad(format!("'{fp}.name' is required"), &format!("{fp}.name")))?;
        let args = fc.get("args").filter(|a| !a.is_null());
        if let Some(a) = args
            && !a.is_object()
        {
            return Err(bad(
                format!("'{fp}.args' must be an object"),
                &format!("{fp}.args"),
            ));
        }
        let id = match fc
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            Some(id) => id.to_string(),
            None => call_id(&format!("req{turn}"), idx, name),
        };
        pending.calls.push((id.clone(), name.to_string()));
        return Ok(Some(Part::ToolCall(ir::ToolCall {
            id,
            name: name.to_string(),
            arguments: json_args_text(args),
            cache_control: None,
            signature: sig,
        })));
    }
    if let Some(fr) = field(o, "functionResponse", "function_response") {
        let fp = format!("{path}.functionResponse");
        let fr = fr
            .as_object()
            .ok_or_else(|| bad(format!("'{fp}' must be an object"), &fp))?;
        let name = fr
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad(format!("'{fp}.name' is required"), &format!("{fp}.name")))?;
        let id = match fr
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            Some(id) => {
                if let Some(i) = pending.calls.iter().position(|(cid, _)| cid == id) {
                    pending.calls.remove(i);
                }
                id.to_string()
            }
            None => pending
                .take(name)
                .unwrap_or_else(|| call_id(&format!("orphan{turn}"), idx, name)),
        };
        let (text, is_error) = result_text(fr.get("response").unwrap_or(&Value::Null));
        let mut content = vec![Part::Text(ir::TextPart::new(text))];
        // Multimodal function responses (Gemini 3): `parts` with inline data.
        if let Some(Value::Array(parts)) = fr.get("parts") {
            for (j, rp) in parts.iter().enumerate() {
                if let Some(part) = decode_part(rp, &format!("{fp}.parts[{j}]"), turn, j, pending)?
                {
                    content.push(part);
                }
            }
        }
        return Ok(Some(Part::ToolResult(ir::ToolResult {
            id,
            name: Some(name.to_string()),
            content,
            is_error,
            cache_control: None,
        })));
    }
    if o.is_empty() || (o.len() == 1 && sig.is_some()) {
        // A bare signature part: keep it on an empty text part.
        return Ok(sig.map(|s| {
            Part::Text(ir::TextPart {
                text: String::new(),
                cache_control: None,
                signature: Some(s),
            })
        }));
    }
    // executableCode, codeExecutionResult, videoMetadata...: Gemini-only.
    Ok(Some(Part::Raw(ir::Raw {
        format: Format::Gemini,
        value: p.clone(),
    })))
}

fn thinking_from_gemini(text: &str, sig: Option<String>) -> Part {
    if let Some(w) = sig.as_deref().and_then(unwrap_signature) {
        if w.kind == "redacted" {
            return Part::RedactedThinking(ir::RedactedThinking {
                data: w.sig,
                origin: w.origin,
            });
        }
        return Part::Thinking(ir::Thinking {
            text: text.to_string(),
            signature: Some(w.sig),
            origin: w.origin,
            id: w.id,
        });
    }
    Part::Thinking(ir::Thinking {
        text: text.to_string(),
        origin: sig.as_ref().map(|_| Format::Gemini),
        signature: sig,
        id: None,
    })
}

fn system_from(v: &Value, out: &mut Vec<ir::TextPart>) -> Result<(), TranslateError> {
    match v {
        Value::String(s) => out.push(ir::TextPart::new(s.clone())),
        Value::Object(o) => {
            let parts = o.get("parts").and_then(Value::as_array).ok_or_else(|| {
                bad(
                    "'systemInstruction.parts' must be an array",
                    "systemInstruction.parts",
                )
            })?;
            for (i, p) in parts.iter().enumerate() {
                let t = p.get("text").and_then(Value::as_str).ok_or_else(|| {
                    bad(
                        format!("'systemInstruction.parts[{i}]' must be a text part"),
                        &format!("systemInstruction.parts[{i}]"),
                    )
                })?;
                out.push(ir::TextPart::new(t));
            }
        }
        _ => {
            return Err(bad(
                "'systemInstruction' must be an object",
                "systemInstruction",
            ));
        }
    }
    Ok(())
}

const KNOWN_TOP: &[&str] = &[
    "contents",
    "systemInstruction",
    "system_instruction",
    "tools",
    "toolConfig",
    "tool_config",
    "generationConfig",
    "generation_config",
    "model",
];

const KNOWN_GEN: &[(&str, &str)] = &[
    ("temperature", "temperature"),
    ("topP", "top_p"),
    ("topK", "top_k"),
    ("maxOutputTokens", "max_output_tokens"),
    ("stopSequences", "stop_sequences"),
    ("candidateCount", "candidate_count"),
    ("seed", "seed"),
    ("presencePenalty", "presence_penalty"),
    ("frequencyPenalty", "frequency_penalty"),
    ("responseMimeType", "response_mime_type"),
    ("responseSchema", "response_schema"),
    ("responseJsonSchema", "response_json_schema"),
    ("thinkingConfig", "thinking_config"),
    ("responseModalities", "response_modalities"),
];

fn f64_field(
    o: &Map<String, Value>,
    camel: &str,
    snake: &str,
    path: &str,
) -> Result<Option<f64>, TranslateError> {
    match field(o, camel, snake) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| {
            bad(
                format!("'{path}.{camel}' must be a number"),
                &format!("{path}.{camel}"),
            )
        }),
    }
}

fn u64_field(
    o: &Map<String, Value>,
    camel: &str,
    snake: &str,
    path: &str,
) -> Result<Option<u64>, TranslateError> {
    match field(o, camel, snake) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .or_else(|| whole(v.as_f64()?))
            .map(Some)
            .ok_or_else(|| {
                bad(
                    format!("'{path}.{camel}' must be a non-negative integer"),
                    &format!("{path}.{camel}"),
                )
            }),
    }
}

/// A whole non-negative float as an integer: google-genai types `top_k` (and
/// other counts) as floats, so Gemini CLI sends `"topK": 64.0`, which Gemini
/// accepts.
fn whole(f: f64) -> Option<u64> {
    (f >= 0.0 && f.fract() == 0.0 && f < u64::MAX as f64).then_some(f as u64)
}

/// A Gemini client request body → IR. Model and stream come from the URL
/// (`RequestOpts`), not the body.
pub fn decode_request(body: &Value) -> Result<ir::Request, TranslateError> {
    let o = body
        .as_object()
        .ok_or_else(|| TranslateError::bad_request("request body must be a JSON object", None))?;
    let mut req = ir::Request {
        extra: ir::Extra {
            format: Format::Gemini,
            fields: Map::new(),
            hints: Map::new(),
            ..ir::Extra::default()
        },
        ..Default::default()
    };
    if let Some(m) = o.get("model").and_then(Value::as_str) {
        req.model = m.strip_prefix("models/").unwrap_or(m).to_string();
    }
    for (k, v) in o {
        if k == "labels" {
            // Billing tags (Vertex): other upstreams leave them out, named.
            req.extra.hints.insert(k.clone(), v.clone());
        } else if !KNOWN_TOP.contains(&k.as_str()) {
            req.extra.fields.insert(k.clone(), v.clone());
        }
    }
    if let Some(si) = field(o, "systemInstruction", "system_instruction") {
        system_from(si, &mut req.system)?;
    }
    let contents = match o.get("contents") {
        Some(Value::Array(a)) => a.as_slice(),
        Some(Value::Object(_)) => std::slice::from_ref(&o["contents"]),
        None => return Err(bad("missing required field 'contents'", "contents")),
        Some(_) => return Err(bad("'contents' must be an array", "contents")),
    };
    let mut pending = PendingCalls::default();
    for (i, c) in contents.iter().enumerate() {
        let path = format!("contents[{i}]");
        let co = c
            .as_object()
            .ok_or_else(|| bad(format!("'{path}' must be an object"), &path))?;
        let role = match co.get("role").and_then(Value::as_str) {
            None | Some("user") | Some("function") | Some("tool") => ir::Role::User,
            Some("model") | Some("assistant") => ir::Role::Assistant,
            Some(r) => {
                return Err(bad(
                    format!("'{path}.role' must be \"user\" or \"model\", got {r:?}"),
                    &format!("{path}.role"),
                ));
            }
        };
        let parts = match co.get("parts") {
            Some(Value::Array(p)) => p.as_slice(),
            None | Some(Value::Null) => &[],
            Some(_) => {
                return Err(bad(
                    format!("'{path}.parts' must be an array"),
                    &format!("{path}.parts"),
                ));
            }
        };
        let mut content = Vec::with_capacity(parts.len());
        for (j, p) in parts.iter().enumerate() {
            if let Some(part) = decode_part(p, &format!("{path}.parts[{j}]"), i, j, &mut pending)? {
                content.push(part);
            }
        }
        req.messages.push(ir::Message {
            role,
            content,
            name: None,
        });
    }
    if let Some(tools) = o.get("tools") {
        let tools = tools
            .as_array()
            .ok_or_else(|| bad("'tools' must be an array", "tools"))?;
        for (i, t) in tools.iter().enumerate() {
            let to = t.as_object().ok_or_else(|| {
                bad(
                    format!("'tools[{i}]' must be an object"),
                    &format!("tools[{i}]"),
                )
            })?;
            let mut rest = Map::new();
            for (k, v) in to {
                if k == "functionDeclarations" || k == "function_declarations" {
                    let decls = v.as_array().ok_or_else(|| {
                        bad(
                            format!("'tools[{i}].functionDeclarations' must be an array"),
                            &format!("tools[{i}].functionDeclarations"),
                        )
                    })?;
                    for (j, d) in decls.iter().enumerate() {
                        req.tools.push(ir::Tool::Function(decode_function(
                            d,
                            &format!("tools[{i}].functionDeclarations[{j}]"),
                        )?));
                    }
                } else {
                    rest.insert(k.clone(), v.clone());
                }
            }
            if !rest.is_empty() {
                // googleSearch, codeExecution, urlContext...: Gemini built-in tools.
                req.tools.push(ir::Tool::Raw(ir::Raw {
                    format: Format::Gemini,
                    value: Value::Object(rest),
                }));
            }
        }
    }
    if let Some(tc) = field(o, "toolConfig", "tool_config") {
        decode_tool_config(tc, &mut req)?;
    }
    if let Some(gc) = field(o, "generationConfig", "generation_config") {
        decode_generation_config(gc, &mut req)?;
    }
    Ok(req)
}

fn decode_function(d: &Value, path: &str) -> Result<ir::FunctionTool, TranslateError> {
    let d = d
        .as_object()
        .ok_or_else(|| bad(format!("'{path}' must be an object"), path))?;
    let name = d
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            bad(
                format!("'{path}.name' is required"),
                &format!("{path}.name"),
            )
        })?;
    let parameters = if let Some(js) = field(d, "parametersJsonSchema", "parameters_json_schema") {
        js.clone()
    } else if let Some(p) = d.get("parameters").filter(|p| !p.is_null()) {
        gemini_schema::from_gemini(p)
    } else {
        json!({"type": "object", "properties": {}})
    };
    Ok(ir::FunctionTool {
        name: name.to_string(),
        description: d
            .get("description")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        parameters,
        strict: None,
        cache_control: None,
        hints: Map::new(),
    })
}

fn decode_tool_config(tc: &Value, req: &mut ir::Request) -> Result<(), TranslateError> {
    let Some(fcc) = tc
        .as_object()
        .and_then(|o| field(o, "functionCallingConfig", "function_calling_config"))
        .and_then(Value::as_object)
    else {
        return Ok(());
    };
    let allowed: Vec<String> = match field(fcc, "allowedFunctionNames", "allowed_function_names") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(_) => {
            return Err(bad(
                "'toolConfig.functionCallingConfig.allowedFunctionNames' must be an array",
                "toolConfig.functionCallingConfig.allowedFunctionNames",
            ));
        }
    };
    let mode = fcc.get("mode").and_then(Value::as_str).unwrap_or("AUTO");
    req.tool_choice = Some(match mode {
        "AUTO" | "MODE_UNSPECIFIED" => ir::ToolChoice::Auto,
        "NONE" => ir::ToolChoice::None,
        "ANY" | "VALIDATED" if allowed.len() == 1 => ir::ToolChoice::Tool(allowed[0].clone()),
        "ANY" | "VALIDATED" => ir::ToolChoice::Required,
        other => {
            return Err(bad(
                format!("unknown toolConfig.functionCallingConfig.mode {other:?}"),
                "toolConfig.functionCallingConfig.mode",
            ));
        }
    });
    if !allowed.is_empty() {
        // Other formats cannot restrict choice to a subset: the tools outside
        // it are not offered at all, which has the same effect.
        req.tools.retain(|t| match t {
            ir::Tool::Function(f) => allowed.contains(&f.name),
            ir::Tool::Raw(_) => true,
        });
    }
    Ok(())
}

fn decode_generation_config(gc: &Value, req: &mut ir::Request) -> Result<(), TranslateError> {
    let p = "generationConfig";
    let g = gc
        .as_object()
        .ok_or_else(|| bad("'generationConfig' must be an object", p))?;
    let s = &mut req.sampling;
    s.temperature = f64_field(g, "temperature", "temperature", p)?;
    s.top_p = f64_field(g, "topP", "top_p", p)?;
    s.top_k = u64_field(g, "topK", "top_k", p)?;
    s.max_tokens = u64_field(g, "maxOutputTokens", "max_output_tokens", p)?;
    s.n = u64_field(g, "candidateCount", "candidate_count", p)?;
    s.presence_penalty = f64_field(g, "presencePenalty", "presence_penalty", p)?;
    s.frequency_penalty = f64_field(g, "frequencyPenalty", "frequency_penalty", p)?;
    s.seed = match field(g, "seed", "seed") {
        None => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| {
            bad(
                "'generationConfig.seed' must be an integer",
                "generationConfig.seed",
            )
        })?),
    };
    match field(g, "stopSequences", "stop_sequences") {
        None => {}
        Some(Value::Array(a)) => {
            for (i, x) in a.iter().enumerate() {
                s.stop.push(
                    x.as_str()
                        .ok_or_else(|| {
                            bad(
                                format!("'generationConfig.stopSequences[{i}]' must be a string"),
                                "generationConfig.stopSequences",
                            )
                        })?
                        .to_string(),
                );
            }
        }
        Some(_) => {
            return Err(bad(
                "'generationConfig.stopSequences' must be an array",
                "generationConfig.stopSequences",
            ));
        }
    }
    let mime = field(g, "responseMimeType", "response_mime_type").and_then(Value::as_str);
    let schema = field(g, "responseJsonSchema", "response_json_schema")
        .cloned()
        .or_else(|| field(g, "responseSchema", "response_schema").map(gemini_schema::from_gemini));
    req.response_format = match (mime, schema) {
        (_, Some(schema)) => Some(ir::ResponseFormat::JsonSchema {
            name: "response".to_string(),
            description: None,
            schema,
            strict: None,
        }),
        (Some("application/json"), None) => Some(ir::ResponseFormat::JsonObject),
        (Some("text/plain") | None, None) => None,
        (Some(other), None) => {
            return Err(bad(
                format!(
                    "responseMimeType {other:?} cannot be converted; use application/json or text/plain"
                ),
                "generationConfig.responseMimeType",
            ));
        }
    };
    if let Some(tc) = field(g, "thinkingConfig", "thinking_config").and_then(Value::as_object) {
        let mut r = ir::Reasoning::default();
        let budget = field(tc, "thinkingBudget", "thinking_budget").and_then(Value::as_i64);
        match budget {
            Some(0) => r.disabled = true,
            Some(b) if b > 0 => r.budget_tokens = Some(b as u64),
            _ => {}
        }
        if let Some(level) = field(tc, "thinkingLevel", "thinking_level").and_then(Value::as_str) {
            r.effort = Some(level.to_ascii_lowercase());
        }
        if field(tc, "includeThoughts", "include_thoughts").and_then(Value::as_bool) == Some(true) {
            r.summary = Some("auto".to_string());
        }
        req.reasoning = Some(r);
    }
    if let Some(Value::Array(m)) = field(g, "responseModalities", "response_modalities")
        && m.iter().any(|x| x.as_str() != Some("TEXT"))
    {
        req.extra.fields.insert(
            "generationConfig.responseModalities".into(),
            Value::Array(m.clone()),
        );
    }
    for (k, v) in g {
        if !KNOWN_GEN.iter().any(|(c, s)| k == c || k == s) && !v.is_null() {
            req.extra
                .fields
                .insert(format!("generationConfig.{k}"), v.clone());
        }
    }
    Ok(())
}

// ------------------------------------------------------------ request: IR → Gemini

fn refuse_extra(req: &ir::Request) -> Result<(), TranslateError> {
    if req.extra.format != Format::Gemini
        && let Some(k) = req.extra.fields.keys().next()
    {
        return Err(bad(
            format!("'{k}' cannot be expressed for a Gemini upstream"),
            k,
        ));
    }
    Ok(())
}

fn tool_result_response(r: &ir::ToolResult) -> Value {
    let mut text = String::new();
    for p in &r.content {
        if let Part::Text(t) = p {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&t.text);
        }
    }
    if r.is_error {
        return json!({ "error": text });
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({ "output": text }),
    }
}

fn image_part(img: &ir::ImagePart) -> Value {
    match &img.source {
        ir::ImageSource::Base64 { media_type, data } => {
            json!({"inlineData": {"mimeType": media_type, "data": data}})
        }
        ir::ImageSource::Url { url } => match parse_data_url(url) {
            Some((mime, data)) => json!({"inlineData": {"mimeType": mime, "data": data}}),
            None => json!({"fileData": {"mimeType": mime_from_url(url), "fileUri": url}}),
        },
    }
}

/// IR → Gemini `generateContent` body (no model: it is in the URL the proxy builds).
pub fn encode_request(
    req: &ir::Request,
    _opts: &RequestOpts,
    dropped: &mut Dropped,
) -> Result<Vec<u8>, TranslateError> {
    refuse_extra(req)?;
    // Gemini has no end-user field: `user` is named with the other hints.
    dropped::name_common(req, Format::Gemini, false, dropped);
    let mut body = Map::new();
    // id → name of every call in the history, for functionResponse names.
    let mut call_names: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for m in &req.messages {
        for p in &m.content {
            if let Part::ToolCall(c) = p {
                call_names.insert(&c.id, &c.name);
            }
        }
    }
    let mut system: Vec<Value> = req.system.iter().map(|t| json!({"text": t.text})).collect();
    let mut contents: Vec<Value> = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        let role = match m.role {
            ir::Role::User => "user",
            ir::Role::Assistant => "model",
            ir::Role::System => {
                // Gemini has one system instruction: later system turns join it.
                for p in &m.content {
                    if let Part::Text(t) = p {
                        system.push(json!({"text": t.text}));
                    }
                }
                continue;
            }
        };
        let mut parts: Vec<Value> = Vec::with_capacity(m.content.len());
        for (j, p) in m.content.iter().enumerate() {
            let path = format!("messages[{i}].content[{j}]");
            match p {
                Part::Text(t) => {
                    let mut v = json!({"text": t.text});
                    if let Some(s) = &t.signature {
                        v["thoughtSignature"] = Value::String(s.clone());
                    }
                    parts.push(v);
                }
                Part::Image(img) => parts.push(image_part(img)),
                Part::ToolCall(c) => {
                    let args: Value = if c.arguments.trim().is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(&c.arguments).map_err(|_| {
                            bad(
                                format!("tool call arguments at '{path}' are not valid JSON"),
                                &path,
                            )
                        })?
                    };
                    if !args.is_object() {
                        return Err(bad(
                            format!(
                                "tool call arguments at '{path}' must be a JSON object for Gemini"
                            ),
                            &path,
                        ));
                    }
                    let mut v = json!({"functionCall": {"name": c.name, "args": args}});
                    if let Some(s) = &c.signature {
                        v["thoughtSignature"] = Value::String(s.clone());
                    }
                    parts.push(v);
                }
                Part::ToolResult(r) => {
                    let name = match r
                        .name
                        .as_deref()
                        .or_else(|| call_names.get(r.id.as_str()).copied())
                    {
                        Some(n) => n,
                        None => {
                            return Err(bad(
                                format!(
                                    "tool result at '{path}' answers call id {:?}, which is not in the history (Gemini needs the tool's name)",
                                    r.id
                                ),
                                &path,
                            ));
                        }
                    };
                    parts.push(json!({"functionResponse": {"name": name, "response": tool_result_response(r)}}));
                    for rp in &r.content {
                        if let Part::Image(img) = rp {
                            parts.push(image_part(img));
                        }
                    }
                }
                Part::Thinking(t) => {
                    // Only Gemini's own signed thoughts can be replayed to Gemini;
                    // another provider's reasoning cannot be verified by it.
                    if t.origin == Some(Format::Gemini)
                        && let Some(s) = &t.signature
                    {
                        parts.push(json!({"text": t.text, "thought": true, "thoughtSignature": s}));
                    }
                }
                Part::RedactedThinking(_) => {}
                Part::Raw(raw) if raw.format == Format::Gemini => parts.push(raw.value.clone()),
                Part::Raw(raw) => {
                    return Err(bad(
                        format!(
                            "'{}' content at '{path}' cannot be expressed for a Gemini upstream",
                            raw.kind()
                        ),
                        &path,
                    ));
                }
            }
        }
        if parts.is_empty() {
            parts.push(json!({"text": ""}));
        }
        // Consecutive turns of one role (e.g. tool results then text) merge.
        if let Some(last) = contents.last_mut()
            && last["role"] == role
            && let Some(a) = last["parts"].as_array_mut()
        {
            a.extend(parts);
            continue;
        }
        contents.push(json!({"role": role, "parts": parts}));
    }
    body.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({ "parts": system }));
    }
    let mut decls = Vec::new();
    let mut tools = Vec::new();
    for (i, t) in req.tools.iter().enumerate() {
        match t {
            ir::Tool::Function(f) => {
                let mut d = Map::new();
                d.insert("name".into(), Value::String(f.name.clone()));
                if let Some(desc) = &f.description {
                    d.insert("description".into(), Value::String(desc.clone()));
                }
                let has_params = f
                    .parameters
                    .get("properties")
                    .and_then(Value::as_object)
                    .is_some_and(|p| !p.is_empty())
                    || f.parameters.get("$ref").is_some()
                    || f.parameters.get("anyOf").is_some();
                if has_params {
                    d.insert("parameters".into(), gemini_schema::to_gemini(&f.parameters));
                }
                decls.push(Value::Object(d));
            }
            ir::Tool::Raw(raw) if raw.format == Format::Gemini => tools.push(raw.value.clone()),
            ir::Tool::Raw(raw) if dropped::is_tool_search(raw) => {
                dropped.push(format!("tools[{i}]"));
            }
            ir::Tool::Raw(raw) => {
                // Named by its name when it has one (a namespace, a custom
                // tool), else by its type (`web_search`, `code_execution`).
                let what = match raw.value.get("name").and_then(Value::as_str) {
                    Some(n) => format!("'{n}' (type {:?})", raw.kind()),
                    None => format!("of type {:?}", raw.kind()),
                };
                return Err(bad(
                    format!(
                        "tools[{i}]: tool {what} is another provider's kind of tool and cannot be sent to Gemini"
                    ),
                    &format!("tools[{i}]"),
                ));
            }
        }
    }
    if !decls.is_empty() {
        tools.insert(0, json!({ "functionDeclarations": decls }));
    }
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(tc) = &req.tool_choice {
        let fcc = match tc {
            ir::ToolChoice::Auto => json!({"mode": "AUTO"}),
            ir::ToolChoice::None => json!({"mode": "NONE"}),
            ir::ToolChoice::Required => json!({"mode": "ANY"}),
            ir::ToolChoice::Tool(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
        };
        body.insert("toolConfig".into(), json!({ "functionCallingConfig": fcc }));
    }
    let mut gcfg = Map::new();
    let s = &req.sampling;
    if let Some(t) = s.temperature {
        gcfg.insert("temperature".into(), t.into());
    }
    if let Some(t) = s.top_p {
        gcfg.insert("topP".into(), t.into());
    }
    if let Some(t) = s.top_k {
        gcfg.insert("topK".into(), t.into());
    }
    if let Some(t) = s.max_tokens {
        gcfg.insert("maxOutputTokens".into(), t.into());
    }
    if !s.stop.is_empty() {
        gcfg.insert("stopSequences".into(), json!(s.stop));
    }
    if let Some(n) = s.n.filter(|n| *n != 1) {
        gcfg.insert("candidateCount".into(), n.into());
    }
    if let Some(x) = s.seed {
        gcfg.insert("seed".into(), x.into());
    }
    if let Some(x) = s.presence_penalty {
        gcfg.insert("presencePenalty".into(), x.into());
    }
    if let Some(x) = s.frequency_penalty {
        gcfg.insert("frequencyPenalty".into(), x.into());
    }
    match &req.response_format {
        None | Some(ir::ResponseFormat::Text) => {}
        Some(ir::ResponseFormat::JsonObject) => {
            gcfg.insert("responseMimeType".into(), "application/json".into());
        }
        Some(ir::ResponseFormat::JsonSchema { schema, .. }) => {
            gcfg.insert("responseMimeType".into(), "application/json".into());
            gcfg.insert("responseSchema".into(), gemini_schema::to_gemini(schema));
        }
    }
    if let Some(r) = &req.reasoning {
        let mut tc = Map::new();
        if r.disabled {
            tc.insert("thinkingBudget".into(), 0.into());
        } else {
            if let Some(b) = r
                .budget_tokens
                .or_else(|| r.effort.as_deref().and_then(ir::effort_to_budget))
            {
                tc.insert("thinkingBudget".into(), b.into());
            }
            tc.insert("includeThoughts".into(), true.into());
        }
        gcfg.insert("thinkingConfig".into(), Value::Object(tc));
    }
    // Gemini's own extras (only from a Gemini client; refuse_extra above).
    if req.extra.format == Format::Gemini {
        for (k, v) in req.extra.fields.iter().chain(req.extra.hints.iter()) {
            if let Some(g) = k.strip_prefix("generationConfig.") {
                gcfg.insert(g.to_string(), v.clone());
            } else {
                body.insert(k.clone(), v.clone());
            }
        }
    }
    if !gcfg.is_empty() {
        body.insert("generationConfig".into(), Value::Object(gcfg));
    }
    serde_json::to_vec(&Value::Object(body))
        .map_err(|e| TranslateError::bad_request(e.to_string(), None))
}

// ------------------------------------------------------------ response: Gemini → IR

fn upstream_bad(msg: impl Into<String>) -> TranslateError {
    TranslateError {
        status: 502,
        message: msg.into(),
        param: None,
    }
}

/// Parts of one candidate → IR parts (ids generated from `resp_id`).
fn parts_from_candidate(
    parts: &[Value],
    resp_id: &str,
    call_index: &mut usize,
    out: &mut Vec<Part>,
) {
    for p in parts {
        let Some(o) = p.as_object() else { continue };
        let sig = field(o, "thoughtSignature", "thought_signature")
            .and_then(Value::as_str)
            .and_then(std_base64)
            .map(Cow::into_owned);
        if let Some(t) = o.get("text").and_then(Value::as_str) {
            if o.get("thought").and_then(Value::as_bool) == Some(true) {
                out.push(Part::Thinking(ir::Thinking {
                    text: t.to_string(),
                    origin: sig.as_ref().map(|_| Format::Gemini),
                    signature: sig,
                    id: None,
                }));
            } else if !t.is_empty() || sig.is_some() {
                out.push(Part::Text(ir::TextPart {
                    text: t.to_string(),
                    cache_control: None,
                    signature: sig,
                }));
            }
        } else if let Some(fc) =
            field(o, "functionCall", "function_call").and_then(Value::as_object)
        {
            let name = fc.get("name").and_then(Value::as_str).unwrap_or_default();
            let id = fc
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| call_id(resp_id, *call_index, name));
            *call_index += 1;
            out.push(Part::ToolCall(ir::ToolCall {
                id,
                name: name.to_string(),
                arguments: json_args_text(fc.get("args").filter(|a| !a.is_null())),
                cache_control: None,
                signature: sig,
            }));
        } else if let Some(d) = field(o, "inlineData", "inline_data").and_then(Value::as_object) {
            let mime = field(d, "mimeType", "mime_type")
                .and_then(Value::as_str)
                .unwrap_or("");
            let data = d.get("data").and_then(Value::as_str).and_then(std_base64);
            match data {
                Some(data) if mime.starts_with("image/") => out.push(Part::Image(ir::ImagePart {
                    source: ir::ImageSource::Base64 {
                        media_type: mime.to_string(),
                        data: data.into_owned(),
                    },
                    detail: None,
                    cache_control: None,
                })),
                _ => out.push(Part::Raw(ir::Raw {
                    format: Format::Gemini,
                    value: p.clone(),
                })),
            }
        } else if !o.is_empty() {
            out.push(Part::Raw(ir::Raw {
                format: Format::Gemini,
                value: p.clone(),
            }));
        }
    }
}

/// A whole Gemini answer → IR.
/// Usage of a whole answer, without decoding the rest of it (passthrough
/// metering). `None` when the answer reports none.
pub fn answer_usage(body: &[u8]) -> Option<ir::Usage> {
    use super::tail_field::{Found, last_top_level};
    // The decoder takes either spelling; so does the byte search, when the
    // other one is absent.
    let (a, b) = (
        last_top_level(body, "usageMetadata"),
        last_top_level(body, "usage_metadata"),
    );
    let fast = match (a, b) {
        (Found::Value(v), Found::Absent) | (Found::Absent, Found::Value(v)) => Some(v),
        (Found::Absent, Found::Absent) => return None,
        _ => None,
    };
    if let Some(v) = fast {
        return serde_json::from_slice::<Value>(v)
            .ok()
            .filter(Value::is_object)
            .map(|u| usage_from_gemini(&u));
    }
    #[derive(serde::Deserialize)]
    struct OnlyUsage {
        #[serde(rename = "usageMetadata", alias = "usage_metadata")]
        usage: Option<Value>,
    }
    let w: OnlyUsage = serde_json::from_slice(body).ok()?;
    w.usage
        .filter(Value::is_object)
        .map(|u| usage_from_gemini(&u))
}

pub fn decode_response(body: &[u8]) -> Result<ir::Response, TranslateError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| upstream_bad(format!("Gemini answer is not JSON: {e}")))?;
    // A streamGenerateContent answer without alt=sse is an array of chunks.
    if let Value::Array(chunks) = &v {
        return decode_chunks(chunks);
    }
    decode_chunks(std::slice::from_ref(&v))
}

fn decode_chunks(chunks: &[Value]) -> Result<ir::Response, TranslateError> {
    let mut resp = ir::Response::default();
    let mut call_index = 0;
    let mut any = false;
    for v in chunks {
        let o = v
            .as_object()
            .ok_or_else(|| upstream_bad("Gemini answer is not a JSON object"))?;
        if let Some(e) = o.get("error") {
            return Err(upstream_bad(format!(
                "Gemini error: {}",
                e.get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
            )));
        }
        if let Some(id) = field(o, "responseId", "response_id").and_then(Value::as_str) {
            resp.id = id.to_string();
        }
        if let Some(m) = field(o, "modelVersion", "model_version").and_then(Value::as_str) {
            resp.model = m.to_string();
        }
        if let Some(u) = field(o, "usageMetadata", "usage_metadata") {
            resp.usage = usage_from_gemini(u);
        }
        if let Some(c) = o
            .get("candidates")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        {
            any = true;
            if let Some(parts) = c
                .get("content")
                .and_then(|c| c.get("parts"))
                .and_then(Value::as_array)
            {
                let mut new_parts = Vec::new();
                parts_from_candidate(parts, &resp.id, &mut call_index, &mut new_parts);
                // Streamed chunks continue the previous part of the same kind.
                for p in new_parts {
                    match (resp.content.last_mut(), p) {
                        (Some(Part::Text(a)), Part::Text(b)) if a.signature.is_none() => {
                            a.text.push_str(&b.text);
                            a.signature = b.signature;
                        }
                        (Some(Part::Thinking(a)), Part::Thinking(b)) if a.signature.is_none() => {
                            a.text.push_str(&b.text);
                            a.signature = b.signature;
                            a.origin = b.origin;
                        }
                        (_, p) => resp.content.push(p),
                    }
                }
            }
            if let Some(fr) = field(
                c.as_object().unwrap_or(&Map::new()),
                "finishReason",
                "finish_reason",
            )
            .and_then(Value::as_str)
            {
                resp.finish = Some(finish_from_gemini(fr));
            }
        } else if let Some(block) = field(o, "promptFeedback", "prompt_feedback")
            .and_then(|f| f.get("blockReason").or_else(|| f.get("block_reason")))
            .and_then(Value::as_str)
        {
            any = true;
            let _ = block;
            resp.finish = Some(ir::FinishReason::ContentFilter);
        }
    }
    if !any && resp.usage == ir::Usage::default() {
        return Err(upstream_bad("Gemini answer has no candidates"));
    }
    if resp.finish.is_none() {
        resp.finish = Some(ir::FinishReason::Stop);
    }
    Ok(resp)
}

// ------------------------------------------------------------ response: IR → Gemini

fn foreign_sig(origin: Option<Format>, sig: &str, id: Option<&str>, kind: &str) -> String {
    if origin == Some(Format::Gemini) {
        sig.to_string()
    } else {
        wrap_signature(origin, sig, id, kind)
    }
}

fn part_to_gemini(p: &Part) -> Option<Value> {
    Some(match p {
        Part::Text(t) => {
            let mut v = json!({"text": t.text});
            if let Some(s) = &t.signature {
                v["thoughtSignature"] = Value::String(s.clone());
            }
            v
        }
        Part::Thinking(t) => {
            let mut v = json!({"text": t.text, "thought": true});
            if let Some(s) = &t.signature {
                v["thoughtSignature"] =
                    Value::String(foreign_sig(t.origin, s, t.id.as_deref(), "thinking"));
            }
            v
        }
        Part::RedactedThinking(r) => {
            json!({"text": "", "thought": true, "thoughtSignature": wrap_signature(r.origin, &r.data, None, "redacted")})
        }
        Part::ToolCall(c) => {
            let args: Value = serde_json::from_str(&c.arguments)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({}));
            let mut v = json!({"functionCall": {"id": c.id, "name": c.name, "args": args}});
            if let Some(s) = &c.signature {
                v["thoughtSignature"] = Value::String(s.clone());
            }
            v
        }
        Part::Image(img) => image_part(img),
        Part::Raw(raw) if raw.format == Format::Gemini => raw.value.clone(),
        Part::ToolResult(_) | Part::Raw(_) => return None,
    })
}

/// IR → a whole Gemini answer for a Gemini client.
pub fn encode_response(resp: &ir::Response, opts: &ResponseOpts) -> Vec<u8> {
    let parts: Vec<Value> = resp.content.iter().filter_map(part_to_gemini).collect();
    let finish = finish_to_gemini(resp.finish.as_ref().unwrap_or(&ir::FinishReason::Stop));
    let model = if resp.model.is_empty() {
        &opts.client_model
    } else {
        &resp.model
    };
    let body = json!({
        "candidates": [{
            "content": {"role": "model", "parts": parts},
            "finishReason": finish,
            "index": 0,
        }],
        "usageMetadata": usage_to_gemini(&resp.usage),
        "modelVersion": model,
        "responseId": resp.id,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

// ------------------------------------------------------------ stream: Gemini → IR

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenKind {
    Text,
    Thinking,
}

/// Gemini SSE (`alt=sse`) → IR events. Every chunk is a whole
/// `GenerateContentResponse`; text parts continue the open block, each
/// `functionCall` part is a complete call (Gemini never splits arguments).
#[derive(Debug, Default)]
pub struct StreamDecode {
    started: bool,
    finished: bool,
    next_index: usize,
    open: Option<(usize, OpenKind)>,
    id: String,
    calls: usize,
    usage: ir::Usage,
}

impl StreamDecode {
    fn close(&mut self, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        if let Some((index, _)) = self.open.take() {
            sink(StreamEvent::BlockStop { index });
        }
    }

    fn ensure_open(&mut self, kind: OpenKind, sink: &mut dyn FnMut(StreamEvent<'_>)) -> usize {
        if let Some((i, k)) = self.open
            && k == kind
        {
            return i;
        }
        self.close(sink);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((index, kind));
        sink(StreamEvent::BlockStart {
            index,
            block: match kind {
                OpenKind::Text => ir::BlockStart::Text,
                OpenKind::Thinking => ir::BlockStart::Thinking,
            },
        });
        index
    }

    fn error(&mut self, status: u16, message: String, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        self.finished = true;
        sink(StreamEvent::Error(ir::StreamError { status, message }));
    }
}

fn status_from_gemini_error(e: &Value) -> u16 {
    if let Some(c) = e
        .get("code")
        .and_then(Value::as_u64)
        .filter(|c| (400..600).contains(c))
    {
        return c as u16;
    }
    match e.get("status").and_then(Value::as_str).unwrap_or("") {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" => 400,
        "UNAUTHENTICATED" => 401,
        "PERMISSION_DENIED" => 403,
        "NOT_FOUND" => 404,
        "RESOURCE_EXHAUSTED" => 429,
        "UNAVAILABLE" => 503,
        "DEADLINE_EXCEEDED" => 504,
        _ => 500,
    }
}

impl StreamDecoder for StreamDecode {
    fn event(&mut self, ev: sse::Event<'_>, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        if self.finished {
            return;
        }
        let v: Value = match serde_json::from_slice(ev.data) {
            Ok(v) => v,
            Err(e) => return self.error(502, format!("malformed Gemini stream event: {e}"), sink),
        };
        let Some(o) = v.as_object() else {
            return self.error(
                502,
                "malformed Gemini stream event: not an object".into(),
                sink,
            );
        };
        if let Some(e) = o.get("error") {
            let msg = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("Gemini stream error")
                .to_string();
            return self.error(status_from_gemini_error(e), msg, sink);
        }
        if !self.started {
            self.started = true;
            self.id = field(o, "responseId", "response_id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let model = field(o, "modelVersion", "model_version")
                .and_then(Value::as_str)
                .unwrap_or("");
            sink(StreamEvent::Start(ir::StreamStart {
                id: Cow::Borrowed(&self.id),
                model: Cow::Borrowed(model),
                created: None,
                usage: ir::Usage::default(),
                origin: Some(Format::Gemini),
            }));
        }
        let cand = o
            .get("candidates")
            .and_then(Value::as_array)
            .and_then(|c| c.first());
        if let Some(parts) = cand
            .and_then(|c| c.get("content"))
            .and_then(|c| c.get("parts"))
            .and_then(Value::as_array)
        {
            for p in parts {
                let Some(po) = p.as_object() else { continue };
                let sig = field(po, "thoughtSignature", "thought_signature")
                    .and_then(Value::as_str)
                    .and_then(std_base64);
                if let Some(t) = po.get("text").and_then(Value::as_str) {
                    let thought = po.get("thought").and_then(Value::as_bool) == Some(true);
                    if t.is_empty() && sig.is_none() {
                        continue;
                    }
                    let kind = if thought {
                        OpenKind::Thinking
                    } else {
                        OpenKind::Text
                    };
                    let index = self.ensure_open(kind, sink);
                    if !t.is_empty() {
                        let delta = if thought {
                            ir::Delta::Thinking(Cow::Borrowed(t))
                        } else {
                            ir::Delta::Text(Cow::Borrowed(t))
                        };
                        sink(StreamEvent::Delta { index, delta });
                    }
                    if let Some(s) = sig {
                        sink(StreamEvent::Delta {
                            index,
                            delta: ir::Delta::Signature(s),
                        });
                    }
                } else if let Some(fc) =
                    field(po, "functionCall", "function_call").and_then(Value::as_object)
                {
                    self.close(sink);
                    let name = fc.get("name").and_then(Value::as_str).unwrap_or_default();
                    let id = fc
                        .get("id")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .unwrap_or_else(|| call_id(&self.id, self.calls, name));
                    self.calls += 1;
                    let index = self.next_index;
                    self.next_index += 1;
                    sink(StreamEvent::BlockStart {
                        index,
                        block: ir::BlockStart::ToolCall {
                            id: Cow::Owned(id),
                            name: Cow::Borrowed(name),
                        },
                    });
                    // The signature first: an OpenAI Chat client gets it on
                    // the call's first delta, next to the name.
                    if let Some(s) = sig {
                        sink(StreamEvent::Delta {
                            index,
                            delta: ir::Delta::Signature(s),
                        });
                    }
                    let args = json_args_text(fc.get("args").filter(|a| !a.is_null()));
                    sink(StreamEvent::Delta {
                        index,
                        delta: ir::Delta::ToolArgs(Cow::Owned(args)),
                    });
                    sink(StreamEvent::BlockStop { index });
                } else if !po.is_empty() {
                    self.close(sink);
                    let index = self.next_index;
                    self.next_index += 1;
                    sink(StreamEvent::BlockStart {
                        index,
                        block: ir::BlockStart::Raw(ir::Raw {
                            format: Format::Gemini,
                            value: p.clone(),
                        }),
                    });
                    sink(StreamEvent::BlockStop { index });
                }
            }
        }
        if let Some(u) = field(o, "usageMetadata", "usage_metadata") {
            let u = usage_from_gemini(u);
            if u != self.usage {
                self.usage = u;
                sink(StreamEvent::Usage(u));
            }
        }
        let finish = cand
            .and_then(Value::as_object)
            .and_then(|c| field(c, "finishReason", "finish_reason"))
            .and_then(Value::as_str)
            .map(finish_from_gemini)
            .or_else(|| {
                field(o, "promptFeedback", "prompt_feedback")
                    .and_then(|f| f.get("blockReason").or_else(|| f.get("block_reason")))
                    .map(|_| ir::FinishReason::ContentFilter)
            });
        if let Some(reason) = finish {
            self.close(sink);
            self.finished = true;
            sink(StreamEvent::Finish {
                reason,
                usage: self.usage,
            });
        }
    }

    fn end(&mut self, _sink: &mut dyn FnMut(StreamEvent<'_>)) {
        // A Gemini stream that ends without a finishReason was cut short: emit
        // nothing, so the client gets an error rather than a clean end.
    }
}

// ------------------------------------------------------------ stream: IR → Gemini client

/// One streamed `GenerateContentResponse`, serialized from borrowed fields.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ChunkOut<'a> {
    candidates: [CandidateOut<'a>; 1],
    usage_metadata: UsageOut,
    model_version: &'a str,
    response_id: &'a str,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct CandidateOut<'a> {
    content: ContentOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_reason: Option<&'a str>,
    index: u32,
}

#[derive(serde::Serialize)]
struct ContentOut<'a> {
    role: &'static str,
    parts: &'a [Value],
}

/// `usageMetadata` as [`usage_to_gemini`] writes it (zero cache/thoughts omitted).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct UsageOut {
    prompt_token_count: u64,
    candidates_token_count: u64,
    total_token_count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    cached_content_token_count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    thoughts_token_count: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// IR events → Gemini client stream: SSE `data: {chunk}\r\n\r\n` (as Gemini
/// frames it) with `alt=sse`, else one JSON array written incrementally
/// (`[` chunk `,\r\n` chunk ... `]`). Text and thinking deltas go out as they
/// come; a tool call goes out whole when its block closes (Gemini never
/// streams partial arguments).
#[derive(Debug)]
pub struct StreamEncode {
    sse: bool,
    wrote_open: bool,
    chunks: usize,
    done: bool,
    id: String,
    model: String,
    usage: ir::Usage,
    /// The upstream format: which provider minted the signatures in the stream.
    upstream: Option<Format>,
    /// Open block: kind, plus buffered tool call (id, name, args, signature).
    open: Option<EncBlock>,
}

#[derive(Debug)]
enum EncBlock {
    Text,
    Thinking {
        sig: Option<String>,
        /// The upstream's reasoning item id, wrapped into the signature.
        id: Option<String>,
    },
    Tool {
        id: String,
        name: String,
        args: String,
        sig: Option<String>,
    },
    Other,
}

impl StreamEncode {
    pub fn new(opts: &ResponseOpts) -> Self {
        StreamEncode {
            sse: opts.gemini_sse,
            wrote_open: false,
            chunks: 0,
            done: false,
            id: String::new(),
            model: opts.client_model.clone(),
            usage: ir::Usage::default(),
            upstream: None,
            open: None,
        }
    }

    fn write(&mut self, v: &Value, out: &mut Vec<u8>) {
        let buf = serde_json::to_vec(v).unwrap_or_default();
        self.write_raw(&buf, out);
    }

    /// One chunk (`json`: a serialized object) in the client's framing.
    fn write_raw(&mut self, json: &[u8], out: &mut Vec<u8>) {
        if self.sse {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(json);
            out.extend_from_slice(b"\r\n\r\n");
        } else {
            if !self.wrote_open {
                self.wrote_open = true;
                out.push(b'[');
            } else if self.chunks > 0 {
                out.extend_from_slice(b",\r\n");
            }
            out.extend_from_slice(json);
        }
        self.chunks += 1;
    }

    fn chunk(&mut self, parts: Vec<Value>, finish: Option<&str>, out: &mut Vec<u8>) {
        let usage = self.usage;
        let chunk = ChunkOut {
            candidates: [CandidateOut {
                content: ContentOut {
                    role: "model",
                    parts: &parts,
                },
                finish_reason: finish,
                index: 0,
            }],
            usage_metadata: UsageOut {
                prompt_token_count: usage.input,
                candidates_token_count: usage.output.saturating_sub(usage.reasoning),
                total_token_count: usage.input + usage.output,
                cached_content_token_count: usage.cache_read,
                thoughts_token_count: usage.reasoning,
            },
            model_version: &self.model,
            response_id: &self.id,
        };
        let mut buf = Vec::with_capacity(256);
        let _ = serde_json::to_writer(&mut buf, &chunk);
        self.write_raw(&buf, out);
    }

    fn close_array(&mut self, out: &mut Vec<u8>) {
        if !self.sse {
            if !self.wrote_open {
                self.wrote_open = true;
                out.push(b'[');
            }
            out.push(b']');
        }
    }
}

impl StreamEncoder for StreamEncode {
    fn event(&mut self, ev: &StreamEvent<'_>, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        match ev {
            StreamEvent::Start(s) => {
                self.upstream = s.origin;
                self.id = s.id.to_string();
                if !s.model.is_empty() {
                    self.model = s.model.to_string();
                }
                self.usage.merge(&s.usage);
            }
            StreamEvent::BlockStart { block, .. } => {
                self.open = Some(match block {
                    ir::BlockStart::Text => EncBlock::Text,
                    ir::BlockStart::Thinking => EncBlock::Thinking {
                        sig: None,
                        id: None,
                    },
                    ir::BlockStart::ToolCall { id, name } => EncBlock::Tool {
                        id: id.to_string(),
                        name: name.to_string(),
                        args: String::new(),
                        sig: None,
                    },
                    ir::BlockStart::RedactedThinking { data } => {
                        let sig = wrap_signature(self.upstream, data, None, "redacted");
                        self.chunk(
                            vec![json!({"text": "", "thought": true, "thoughtSignature": sig})],
                            None,
                            out,
                        );
                        EncBlock::Other
                    }
                    ir::BlockStart::Raw(raw) => {
                        if raw.format == Format::Gemini {
                            self.chunk(vec![raw.value.clone()], None, out);
                        }
                        EncBlock::Other
                    }
                });
            }
            StreamEvent::Delta { delta, .. } => match (delta, self.open.as_mut()) {
                (ir::Delta::Text(t), _) if !t.is_empty() => {
                    self.chunk(vec![json!({"text": t})], None, out)
                }
                (ir::Delta::Thinking(t), _) if !t.is_empty() => {
                    self.chunk(vec![json!({"text": t, "thought": true})], None, out)
                }
                (ir::Delta::ToolArgs(a), Some(EncBlock::Tool { args, .. })) => args.push_str(a),
                (ir::Delta::Signature(s), Some(EncBlock::Tool { sig, .. })) => {
                    sig.get_or_insert_with(String::new).push_str(s)
                }
                (ir::Delta::Signature(s), Some(EncBlock::Text)) => {
                    // Per-part signatures on text only come from Gemini.
                    self.chunk(vec![json!({"text": "", "thoughtSignature": s})], None, out)
                }
                (ir::Delta::Signature(s), Some(EncBlock::Thinking { sig, .. })) => {
                    // Whole before wrapping: it may come in pieces.
                    sig.get_or_insert_with(String::new).push_str(s)
                }
                (ir::Delta::ThinkingId(s), Some(EncBlock::Thinking { id, .. })) => {
                    *id = Some(s.to_string())
                }
                _ => {}
            },
            StreamEvent::BlockStop { .. } => {
                if let Some(EncBlock::Thinking { sig: Some(sig), id }) = &self.open {
                    let sig = foreign_sig(self.upstream, sig, id.as_deref(), "thinking");
                    self.open = None;
                    self.chunk(
                        vec![json!({"text": "", "thought": true, "thoughtSignature": sig})],
                        None,
                        out,
                    );
                }
                if let Some(EncBlock::Tool {
                    id,
                    name,
                    args,
                    sig,
                }) = self.open.take()
                {
                    let args: Value = serde_json::from_str(&args)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| json!({}));
                    let mut part = json!({"functionCall": {"id": id, "name": name, "args": args}});
                    if let Some(s) = sig {
                        part["thoughtSignature"] = Value::String(s);
                    }
                    self.chunk(vec![part], None, out);
                }
            }
            StreamEvent::Usage(u) => self.usage.merge(u),
            StreamEvent::Ping => {}
            StreamEvent::Finish { reason, usage } => {
                self.usage.merge(usage);
                let f = finish_to_gemini(reason);
                self.chunk(vec![json!({"text": ""})], Some(&f), out);
                self.close_array(out);
                self.done = true;
            }
            StreamEvent::Error(e) => {
                let v = super::errors::error_value(Format::Gemini, e.status, &e.message, None);
                self.write(&v, out);
                self.close_array(out);
                self.done = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::{StreamTranslator, convert_request, convert_response};

    fn ro() -> RequestOpts {
        RequestOpts {
            model: "gemini-2.5-flash".into(),
            stream: false,
        }
    }

    fn encode(req: &ir::Request) -> Value {
        serde_json::from_slice(
            &encode_request(req, &ro(), &mut Dropped::default()).expect("encodes"),
        )
        .unwrap()
    }

    fn call(id: &str, name: &str, args: &str, sig: Option<&str>) -> Part {
        Part::ToolCall(ir::ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: args.into(),
            cache_control: None,
            signature: sig.map(str::to_string),
        })
    }

    fn result(id: &str, text: &str, is_error: bool) -> Part {
        Part::ToolResult(ir::ToolResult {
            id: id.into(),
            name: None,
            content: vec![Part::Text(ir::TextPart::new(text))],
            is_error,
            cache_control: None,
        })
    }

    #[test]
    fn base64_alphabets_and_padding() {
        assert_eq!(std_base64("_9j_4A").as_deref(), Some("/9j/4A=="));
        assert_eq!(std_base64("ab-_cd==").as_deref(), Some("ab+/cd=="));
        assert!(
            matches!(std_base64("QUJD"), Some(Cow::Borrowed("QUJD"))),
            "standard input is not copied"
        );
        assert_eq!(std_base64("QUJDRA").as_deref(), Some("QUJDRA=="));
        assert_eq!(std_base64("a"), None, "impossible length");
        assert_eq!(std_base64("ab$c"), None);
        assert_eq!(std_base64("ab=c"), None, "data after padding");
    }

    #[test]
    fn tool_results_get_names_from_history_and_object_responses() {
        // As an OpenAI/Anthropic client sends it: ids, no names on results.
        let req = ir::Request {
            messages: vec![
                ir::Message {
                    role: ir::Role::User,
                    content: vec![Part::Text(ir::TextPart::new("weather?"))],
                    name: None,
                },
                ir::Message {
                    role: ir::Role::Assistant,
                    content: vec![
                        call("toolu_1", "get_weather", r#"{"city":"Paris"}"#, None),
                        call("toolu_2", "get_time", "", None),
                    ],
                    name: None,
                },
                ir::Message {
                    role: ir::Role::User,
                    content: vec![
                        result("toolu_2", "12:00", false),
                        result("toolu_1", r#"{"temp": 21}"#, false),
                    ],
                    name: None,
                },
                ir::Message {
                    role: ir::Role::User,
                    content: vec![result("toolu_1", "boom", true)],
                    name: None,
                },
            ],
            ..Default::default()
        };
        let g = encode(&req);
        let c = g["contents"].as_array().unwrap();
        assert_eq!(c.len(), 3, "the two user turns after the calls merge");
        assert_eq!(
            c[1]["parts"][0]["functionCall"]["args"],
            json!({"city": "Paris"})
        );
        assert_eq!(
            c[1]["parts"][1]["functionCall"]["args"],
            json!({}),
            "empty arguments → {{}}"
        );
        assert_eq!(c[2]["parts"][0]["functionResponse"]["name"], "get_time");
        assert_eq!(
            c[2]["parts"][0]["functionResponse"]["response"],
            json!({"output": "12:00"})
        );
        assert_eq!(c[2]["parts"][1]["functionResponse"]["name"], "get_weather");
        assert_eq!(
            c[2]["parts"][1]["functionResponse"]["response"],
            json!({"temp": 21})
        );
        assert_eq!(
            c[2]["parts"][2]["functionResponse"]["response"],
            json!({"error": "boom"})
        );

        let mut orphan = req.clone();
        orphan.messages[2].content[0] = result("nope", "x", false);
        let e = encode_request(&orphan, &ro(), &mut Dropped::default()).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[2].content[0]"));
        let mut bad_args = req;
        bad_args.messages[1].content[0] = call("toolu_1", "get_weather", "{not json", None);
        assert_eq!(
            encode_request(&bad_args, &ro(), &mut Dropped::default())
                .unwrap_err()
                .param
                .as_deref(),
            Some("messages[1].content[0]")
        );
    }

    #[test]
    fn id_less_gemini_history_maps_results_by_name_and_order() {
        let body = json!({"contents": [
            {"role": "user", "parts": [{"text": "go"}]},
            {"role": "model", "parts": [
                {"functionCall": {"name": "f", "args": {"n": 1}}},
                {"functionCall": {"name": "f", "args": {"n": 2}}},
                {"functionCall": {"name": "g", "args": {}}}
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "g", "response": {"output": "G"}}},
                {"functionResponse": {"name": "f", "response": {"result": "F1"}}},
                {"functionResponse": {"name": "f", "response": {"a": 1, "b": 2}}}
            ]}
        ]});
        let req = decode_request(&body).unwrap();
        let ids: Vec<String> = req.messages[1]
            .content
            .iter()
            .map(|p| match p {
                Part::ToolCall(c) => c.id.clone(),
                _ => panic!(),
            })
            .collect();
        let uniq: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(uniq.len(), 3, "distinct ids: {ids:?}");
        let res: Vec<(String, String)> = req.messages[2]
            .content
            .iter()
            .map(|p| match p {
                Part::ToolResult(r) => (
                    r.id.clone(),
                    match &r.content[0] {
                        Part::Text(t) => t.text.clone(),
                        _ => panic!(),
                    },
                ),
                _ => panic!(),
            })
            .collect();
        assert_eq!(res[0], (ids[2].clone(), "G".to_string()));
        assert_eq!(
            res[1],
            (ids[0].clone(), "F1".to_string()),
            "first f result answers the first f call"
        );
        assert_eq!(res[2].0, ids[1]);
        assert_eq!(
            serde_json::from_str::<Value>(&res[2].1).unwrap(),
            json!({"a": 1, "b": 2})
        );
        // Same request decodes to the same ids (stable).
        let again = decode_request(&body).unwrap();
        assert_eq!(again, req);
    }

    #[test]
    fn gemini_signature_round_trips_through_responses_client() {
        // Gemini answer with a signed function call → Responses client →
        // history back → Gemini upstream: the signature is on the call again.
        let answer = br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"let me check","thoughtSignature":"VEVYVFNJRw=="},{"functionCall":{"name":"lookup","args":{"k":"v"}},"thoughtSignature":"Q0FMTFNJRw=="}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":3,"thoughtsTokenCount":2,"totalTokenCount":10},"responseId":"abc"}"#;
        let out = convert_response(
            Format::Gemini,
            Format::OpenAiResponses,
            answer,
            &ResponseOpts::default(),
        )
        .unwrap();
        let r: Value = serde_json::from_slice(&out).unwrap();
        let kinds: Vec<&str> = r["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            ["message", "reasoning", "function_call", "reasoning"]
        );
        let mut input = vec![json!({"role": "user", "content": "q"})];
        input.extend(r["output"].as_array().unwrap().iter().cloned());
        input.push(json!({"type": "function_call_output", "call_id": r["output"][2]["call_id"], "output": "42"}));
        let next = json!({"model": "m", "input": input});
        let g: Value = serde_json::from_slice(
            &convert_request(Format::OpenAiResponses, Format::Gemini, &next, &ro())
                .unwrap()
                .body,
        )
        .unwrap();
        let model_turn = &g["contents"][1];
        assert_eq!(model_turn["role"], "model");
        assert_eq!(model_turn["parts"][0]["text"], "let me check");
        assert_eq!(model_turn["parts"][0]["thoughtSignature"], "VEVYVFNJRw==");
        assert_eq!(model_turn["parts"][1]["functionCall"]["name"], "lookup");
        assert_eq!(model_turn["parts"][1]["thoughtSignature"], "Q0FMTFNJRw==");
        assert_eq!(
            g["contents"][2]["parts"][0]["functionResponse"]["name"],
            "lookup"
        );
        // …and never reaches a Responses upstream (it would be rejected there).
        let o: Value = serde_json::from_slice(
            &convert_request(
                Format::OpenAiResponses,
                Format::OpenAiResponses,
                &next,
                &ro(),
            )
            .unwrap()
            .body,
        )
        .unwrap();
        assert!(
            o["input"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["type"] != "reasoning")
        );
    }

    #[test]
    fn foreign_thinking_signatures_are_wrapped_for_gemini_clients() {
        let resp = ir::Response {
            id: "msg_1".into(),
            content: vec![
                Part::Thinking(ir::Thinking {
                    text: "hmm".into(),
                    signature: Some("EqQBanthropicSig".into()),
                    origin: Some(Format::Anthropic),
                    id: None,
                }),
                Part::RedactedThinking(ir::RedactedThinking {
                    data: "opaque".into(),
                    origin: Some(Format::Anthropic),
                }),
                Part::Text(ir::TextPart::new("hi")),
            ],
            finish: Some(ir::FinishReason::Stop),
            ..Default::default()
        };
        let g: Value =
            serde_json::from_slice(&encode_response(&resp, &ResponseOpts::default())).unwrap();
        let parts = g["candidates"][0]["content"]["parts"].clone();
        let back = json!({"contents": [{"role": "user", "parts": [{"text": "q"}]}, {"role": "model", "parts": parts}]});
        let req = decode_request(&back).unwrap();
        assert_eq!(
            req.messages[1].content[0],
            Part::Thinking(ir::Thinking {
                text: "hmm".into(),
                signature: Some("EqQBanthropicSig".into()),
                origin: Some(Format::Anthropic),
                id: None
            })
        );
        assert_eq!(
            req.messages[1].content[1],
            Part::RedactedThinking(ir::RedactedThinking {
                data: "opaque".into(),
                origin: Some(Format::Anthropic)
            })
        );
        // Sent to Gemini, another provider's thinking is left out.
        let g = encode(&req);
        assert_eq!(g["contents"][1]["parts"], json!([{"text": "hi"}]));
    }

    #[test]
    fn request_mapping_of_config_and_tools() {
        let req = ir::Request {
            system: vec![ir::TextPart::new("be brief")],
            messages: vec![
                ir::Message {
                    role: ir::Role::User,
                    content: vec![
                        Part::Text(ir::TextPart::new("look")),
                        Part::Image(ir::ImagePart {
                            source: ir::ImageSource::Url {
                                url: "data:image/png;base64,iVBO-_w".into(),
                            },
                            detail: None,
                            cache_control: None,
                        }),
                        Part::Image(ir::ImagePart {
                            source: ir::ImageSource::Url {
                                url: "https://x.test/cat.webp?x=1".into(),
                            },
                            detail: None,
                            cache_control: None,
                        }),
                    ],
                    name: None,
                },
                ir::Message {
                    role: ir::Role::System,
                    content: vec![Part::Text(ir::TextPart::new("later rule"))],
                    name: None,
                },
            ],
            tools: vec![ir::Tool::Function(ir::FunctionTool {
                name: "f".into(),
                description: Some("d".into()),
                parameters: json!({"type": "object", "properties": {"a": {"type": "string", "const": "x"}}, "additionalProperties": false, "$schema": "x"}),
                strict: Some(true),
                cache_control: None,
                hints: Map::new(),
            })],
            tool_choice: Some(ir::ToolChoice::Tool("f".into())),
            sampling: ir::Sampling {
                temperature: Some(0.2),
                top_p: Some(0.9),
                top_k: Some(40),
                max_tokens: Some(100),
                stop: vec!["END".into()],
                seed: Some(7),
                ..Default::default()
            },
            reasoning: Some(ir::Reasoning {
                effort: Some("high".into()),
                ..Default::default()
            }),
            response_format: Some(ir::ResponseFormat::JsonSchema {
                name: "out".into(),
                description: None,
                schema: json!({"type": "object", "properties": {"n": {"type": ["integer", "null"]}}, "additionalProperties": false}),
                strict: Some(true),
            }),
            ..Default::default()
        };
        let g = encode(&req);
        assert_eq!(
            g["systemInstruction"]["parts"],
            json!([{"text": "be brief"}, {"text": "later rule"}])
        );
        assert_eq!(g["contents"].as_array().unwrap().len(), 1);
        assert_eq!(
            g["contents"][0]["parts"][1]["inlineData"],
            json!({"mimeType": "image/png", "data": "iVBO+/w="})
        );
        assert_eq!(
            g["contents"][0]["parts"][2]["fileData"],
            json!({"mimeType": "image/webp", "fileUri": "https://x.test/cat.webp?x=1"})
        );
        let d = &g["tools"][0]["functionDeclarations"][0];
        assert_eq!(
            d["parameters"],
            json!({"type": "OBJECT", "properties": {"a": {"type": "STRING", "enum": ["x"]}}})
        );
        assert_eq!(
            g["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}})
        );
        let gc = &g["generationConfig"];
        assert_eq!(gc["temperature"], 0.2);
        assert_eq!(gc["topP"], 0.9);
        assert_eq!(gc["topK"], 40);
        assert_eq!(gc["maxOutputTokens"], 100);
        assert_eq!(gc["stopSequences"], json!(["END"]));
        assert_eq!(gc["seed"], 7);
        assert_eq!(
            gc["thinkingConfig"],
            json!({"thinkingBudget": 16384, "includeThoughts": true})
        );
        assert_eq!(gc["responseMimeType"], "application/json");
        assert_eq!(
            gc["responseSchema"]["properties"]["n"],
            json!({"type": "INTEGER", "nullable": true})
        );
        assert!(g.get("model").is_none());

        // Another format's extras / built-in tools are refused by name.
        let mut r2 = req.clone();
        r2.extra = ir::Extra {
            format: Format::Anthropic,
            fields: [("container".to_string(), json!("x"))]
                .into_iter()
                .collect(),
            hints: Map::new(),
            ..ir::Extra::default()
        };
        assert_eq!(
            encode_request(&r2, &ro(), &mut Dropped::default())
                .unwrap_err()
                .param
                .as_deref(),
            Some("container")
        );
        let mut r3 = req;
        r3.tools.push(ir::Tool::Raw(ir::Raw {
            format: Format::OpenAiResponses,
            value: json!({"type": "web_search"}),
        }));
        assert_eq!(
            encode_request(&r3, &ro(), &mut Dropped::default())
                .unwrap_err()
                .param
                .as_deref(),
            Some("tools[1]")
        );
    }

    #[test]
    fn gemini_client_request_decoding_and_extras() {
        let body = json!({
            "contents": [{"role": "user", "parts": [{"text": "hi"}, {"inline_data": {"mime_type": "image/png", "data": "iVBO-_w"}}, {"file_data": {"file_uri": "files/abc", "mime_type": "application/pdf"}}]}],
            "system_instruction": {"parts": [{"text": "sys"}]},
            "tools": [{"function_declarations": [{"name": "f", "parameters": {"type": "OBJECT", "properties": {"x": {"type": "STRING", "nullable": true}}}}]}, {"googleSearch": {}}],
            "tool_config": {"function_calling_config": {"mode": "NONE"}},
            "generation_config": {"max_output_tokens": 5, "thinking_config": {"thinking_budget": 0}, "response_mime_type": "application/json", "responseLogprobs": true},
            "safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_NONE"}]
        });
        let req = decode_request(&body).unwrap();
        assert_eq!(req.system[0].text, "sys");
        assert!(
            matches!(&req.messages[0].content[1], Part::Image(ir::ImagePart { source: ir::ImageSource::Base64 { data, .. }, .. }) if data == "iVBO+/w=")
        );
        assert!(matches!(&req.messages[0].content[2], Part::Raw(r) if r.format == Format::Gemini));
        assert!(
            matches!(&req.tools[0], ir::Tool::Function(f) if f.parameters["properties"]["x"]["type"] == json!(["string", "null"]))
        );
        assert!(matches!(&req.tools[1], ir::Tool::Raw(_)));
        assert_eq!(req.tool_choice, Some(ir::ToolChoice::None));
        assert_eq!(req.sampling.max_tokens, Some(5));
        assert!(req.reasoning.as_ref().unwrap().disabled);
        assert_eq!(req.response_format, Some(ir::ResponseFormat::JsonObject));
        assert!(req.extra.fields.contains_key("safetySettings"));
        assert!(
            req.extra
                .fields
                .contains_key("generationConfig.responseLogprobs")
        );
        // Gemini → Gemini keeps its own extras in place.
        let g = encode(&req);
        assert_eq!(g["safetySettings"], body["safetySettings"]);
        assert_eq!(g["generationConfig"]["responseLogprobs"], true);
        assert_eq!(g["tools"][1], json!({"googleSearch": {}}));
        assert_eq!(
            g["contents"][0]["parts"][2],
            body["contents"][0]["parts"][2]
        );
    }

    #[test]
    fn bad_gemini_requests_are_400s_naming_the_field() {
        for (body, param) in [
            (json!({}), "contents"),
            (json!({"contents": 3}), "contents"),
            (json!({"contents": [5]}), "contents[0]"),
            (
                json!({"contents": [{"role": "robot", "parts": []}]}),
                "contents[0].role",
            ),
            (
                json!({"contents": [{"parts": [{"text": 1}]}]}),
                "contents[0].parts[0].text",
            ),
            (
                json!({"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "%%%"}}]}]}),
                "contents[0].parts[0].inlineData.data",
            ),
            (
                json!({"contents": [{"parts": [{"inlineData": {"data": "AAAA"}}]}]}),
                "contents[0].parts[0].inlineData.mimeType",
            ),
            (
                json!({"contents": [{"parts": [{"functionCall": {"args": {}}}]}]}),
                "contents[0].parts[0].functionCall.name",
            ),
            (
                json!({"contents": [{"parts": [{"functionCall": {"name": "f", "args": [1]}}]}]}),
                "contents[0].parts[0].functionCall.args",
            ),
            (
                json!({"contents": [{"parts": [{"text": "x", "thoughtSignature": "!!"}]}]}),
                "contents[0].parts[0].thoughtSignature",
            ),
            (
                json!({"contents": [], "generationConfig": {"temperature": "hot"}}),
                "generationConfig.temperature",
            ),
            (
                json!({"contents": [], "generationConfig": {"stopSequences": "x"}}),
                "generationConfig.stopSequences",
            ),
            (
                json!({"contents": [], "generationConfig": {"responseMimeType": "text/x.enum"}}),
                "generationConfig.responseMimeType",
            ),
            (
                json!({"contents": [], "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}}),
                "toolConfig.functionCallingConfig.mode",
            ),
            (
                json!({"contents": [], "tools": [{"functionDeclarations": [{"description": "no name"}]}]}),
                "tools[0].functionDeclarations[0].name",
            ),
            (
                json!({"contents": [], "systemInstruction": {"parts": [{"inlineData": {}}]}}),
                "systemInstruction.parts[0]",
            ),
        ] {
            let e = decode_request(&body).unwrap_err();
            assert_eq!(e.status, 400);
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
        }
        assert!(decode_request(&json!([1])).is_err());
    }

    #[test]
    fn finish_reasons_and_usage_both_ways() {
        use ir::FinishReason as F;
        for (g, ir_reason) in [
            ("STOP", F::Stop),
            ("MAX_TOKENS", F::Length),
            ("SAFETY", F::ContentFilter),
            ("RECITATION", F::ContentFilter),
            ("PROHIBITED_CONTENT", F::ContentFilter),
            (
                "MALFORMED_FUNCTION_CALL",
                F::Other("MALFORMED_FUNCTION_CALL".into()),
            ),
        ] {
            assert_eq!(finish_from_gemini(g), ir_reason);
        }
        assert_eq!(finish_to_gemini(&F::ToolCalls), "STOP");
        assert_eq!(finish_to_gemini(&F::StopSequence(Some("x".into()))), "STOP");
        assert_eq!(finish_to_gemini(&F::Length), "MAX_TOKENS");
        assert_eq!(finish_to_gemini(&F::Refusal), "SAFETY");
        assert_eq!(
            finish_to_gemini(&F::Other("MALFORMED_FUNCTION_CALL".into())),
            "MALFORMED_FUNCTION_CALL"
        );
        assert_eq!(finish_to_gemini(&F::Other("weird".into())), "OTHER");
        let u = usage_from_gemini(
            &json!({"promptTokenCount": 100, "cachedContentTokenCount": 60, "candidatesTokenCount": 10, "thoughtsTokenCount": 5, "toolUsePromptTokenCount": 3, "totalTokenCount": 118}),
        );
        assert_eq!(
            (u.input, u.cache_read, u.output, u.reasoning),
            (103, 60, 15, 5)
        );
        let back = usage_to_gemini(&u);
        assert_eq!(
            back,
            json!({"promptTokenCount": 103, "candidatesTokenCount": 10, "totalTokenCount": 118, "cachedContentTokenCount": 60, "thoughtsTokenCount": 5})
        );
    }

    fn gemini_stream(to_sse: bool, upstream: &[u8]) -> Vec<u8> {
        let mut t = StreamTranslator::new(
            Format::Gemini,
            Format::Gemini,
            ResponseOpts {
                gemini_sse: to_sse,
                ..Default::default()
            },
        );
        let mut out = Vec::new();
        t.feed(upstream, &mut out);
        t.finish(&mut out);
        out
    }

    #[test]
    fn json_array_stream_framing_and_errors() {
        let up = b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}],\"role\":\"model\"}}],\"responseId\":\"r\"}\r\n\r\ndata: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"b\"}],\"role\":\"model\"},\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":2,\"candidatesTokenCount\":2,\"totalTokenCount\":4},\"responseId\":\"r\"}\r\n\r\n";
        let out = gemini_stream(false, up);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("[{") && text.ends_with("}]"), "{text}");
        assert_eq!(
            text.matches(",\r\n{").count(),
            2,
            "elements separated by ,CRLF: {text}"
        );
        let arr: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(arr[2]["usageMetadata"]["totalTokenCount"], 4);
        assert_eq!(arr[2]["candidates"][0]["finishReason"], "STOP");
        // an in-stream error ends the array well-formed
        let up = b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]}\r\n\r\ndata: {\"error\":{\"code\":503,\"message\":\"overloaded\",\"status\":\"UNAVAILABLE\"}}\r\n\r\n";
        let arr: Value = serde_json::from_slice(&gemini_stream(false, up)).unwrap();
        assert_eq!(arr[1]["error"]["code"], 503);
        assert_eq!(arr[1]["error"]["status"], "UNAVAILABLE");
        // cut short: an error, not a clean end
        let out = gemini_stream(
            true,
            b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]}\r\n\r\n",
        );
        let last = String::from_utf8(out).unwrap();
        assert!(
            last.trim_end()
                .rsplit("\r\n\r\n")
                .next()
                .unwrap()
                .contains("\"error\""),
            "{last}"
        );
    }

    /// Mutations of every corpus Gemini body (truncations, byte flips) never
    /// panic any decoder; they give a value or an error.
    #[test]
    fn decoders_survive_mutated_corpus_inputs() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
        assert!(dir.is_dir(), "corpus required");
        let mut n = 0;
        for fmt in ["gemini", "openai-responses"] {
            for case in std::fs::read_dir(dir.join(fmt)).unwrap() {
                let case = case.unwrap().path();
                for file in ["request.json", "response.json", "response.sse"] {
                    let Ok(body) = std::fs::read(case.join(file)) else {
                        continue;
                    };
                    let mut seed = body.len() as u64;
                    for i in 0..40 {
                        seed = seed
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let mut m = body.clone();
                        let pos = (seed >> 20) as usize % m.len().max(1);
                        match i % 4 {
                            0 => m.truncate(pos),
                            1 => m[pos] ^= (seed >> 8) as u8 | 1,
                            2 => m.insert(pos, b"{}[]\",:\\"[(seed % 8) as usize]),
                            _ => {
                                m.drain(pos..(pos + 7).min(m.len()));
                            }
                        }
                        let from = if fmt == "gemini" {
                            Format::Gemini
                        } else {
                            Format::OpenAiResponses
                        };
                        if let Ok(v) = serde_json::from_slice::<Value>(&m) {
                            for to in [Format::Gemini, Format::OpenAiResponses] {
                                let _ = convert_request(from, to, &v, &ro());
                            }
                        }
                        for to in [Format::Gemini, Format::OpenAiResponses] {
                            let _ = convert_response(from, to, &m, &ResponseOpts::default());
                            let mut t = StreamTranslator::new(from, to, ResponseOpts::default());
                            let mut out = Vec::new();
                            t.feed(&m, &mut out);
                            t.finish(&mut out);
                            assert!(t.is_finished(), "a stream always ends");
                        }
                        n += 1;
                    }
                }
            }
        }
        assert!(n > 1000, "{n} mutations");
    }
}
