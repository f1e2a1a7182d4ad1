//! Whole answers: Gemini answer → IR (with its usage), and IR → Gemini answer.

use super::*;

pub(super) fn finish_from_gemini(reason: &str) -> ir::FinishReason {
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

pub(super) fn finish_to_gemini(reason: &ir::FinishReason) -> Cow<'static, str> {
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

pub(super) fn num(o: &Map<String, Value>, camel: &str, snake: &str) -> u64 {
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

pub(super) fn upstream_bad(msg: impl Into<String>) -> TranslateError {
    TranslateError {
        status: 502,
        message: msg.into(),
        param: None,
    }
}

/// Parts of one candidate → IR parts (ids generated from `resp_id`).
pub(super) fn parts_from_candidate(
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

/// Usage of a whole answer, without decoding the rest of it (passthrough
/// metering). `None` when the answer reports none.
pub fn answer_usage(body: &[u8]) -> Option<ir::Usage> {
    use crate::translate::tail_field::{Found, last_top_level};
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

/// A whole Gemini answer → IR.
pub fn decode_response(body: &[u8]) -> Result<ir::Response, TranslateError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| upstream_bad(format!("Gemini answer is not JSON: {e}")))?;
    // A streamGenerateContent answer without alt=sse is an array of chunks.
    if let Value::Array(chunks) = &v {
        return decode_chunks(chunks);
    }
    decode_chunks(std::slice::from_ref(&v))
}

pub(super) fn decode_chunks(chunks: &[Value]) -> Result<ir::Response, TranslateError> {
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

pub(super) fn foreign_sig(
    origin: Option<Format>,
    sig: &str,
    id: Option<&str>,
    kind: &str,
) -> String {
    if origin == Some(Format::Gemini) {
        sig.to_string()
    } else {
        wrap_signature(origin, sig, id, kind)
    }
}

pub(super) fn part_to_gemini(p: &Part) -> Option<Value> {
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

/// Gemini's error body for a status (SPEC "Errors").
pub fn error_value(status: u16, message: &str) -> Value {
    let kind = match status {
        400 | 422 | 413 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        504 => "DEADLINE_EXCEEDED",
        529 | 503 => "UNAVAILABLE",
        500..=599 => "INTERNAL",
        _ => "UNKNOWN",
    };
    json!({"error": {"code": status, "message": message, "status": kind}})
}
