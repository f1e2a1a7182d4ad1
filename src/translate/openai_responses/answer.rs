//! Whole answers: OpenAI Responses answer → IR (with its usage), and IR →
//! OpenAI Responses answer.

use super::*;

pub(super) fn usage_from(u: &Value) -> ir::Usage {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    ir::Usage {
        input: n(&u["input_tokens"]),
        output: n(&u["output_tokens"]),
        cache_read: n(&u["input_tokens_details"]["cached_tokens"]),
        cache_write: 0,
        reasoning: n(&u["output_tokens_details"]["reasoning_tokens"]),
    }
}

pub(super) fn finish_from(resp: &Value) -> ir::FinishReason {
    match resp.get("status").and_then(Value::as_str) {
        Some("incomplete") => match resp["incomplete_details"]["reason"].as_str() {
            Some("max_output_tokens") => ir::FinishReason::Length,
            Some("content_filter") => ir::FinishReason::ContentFilter,
            Some(other) => ir::FinishReason::Other(other.to_string()),
            None => ir::FinishReason::Other("incomplete".to_string()),
        },
        _ => ir::FinishReason::Stop,
    }
}

pub(super) fn output_item_parts(item: &Value, out: &mut Vec<Part>) {
    let Some(o) = item.as_object() else { return };
    match o.get("type").and_then(Value::as_str).unwrap_or("") {
        "message" => {
            if let Some(Value::Array(c)) = o.get("content") {
                for p in c {
                    match p.get("type").and_then(Value::as_str) {
                        Some("output_text") => out.push(Part::Text(ir::TextPart::new(
                            p["text"].as_str().unwrap_or_default(),
                        ))),
                        Some("refusal") => out.push(Part::Text(ir::TextPart::new(
                            p["refusal"].as_str().unwrap_or_default(),
                        ))),
                        _ => {}
                    }
                }
            }
        }
        "function_call" => out.push(Part::ToolCall(ir::ToolCall {
            id: o
                .get("call_id")
                .or_else(|| o.get("id"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            name: o
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            arguments: o
                .get("arguments")
                .and_then(Value::as_str)
                .unwrap_or("{}")
                .to_string(),
            cache_control: None,
            signature: None,
        })),
        "reasoning" => match reasoning_from(o) {
            ReasoningOut::Part(p) => out.push(p),
            ReasoningOut::Signature { .. } => {}
        },
        _ => out.push(Part::Raw(ir::Raw {
            format: Format::OpenAiResponses,
            value: item.clone(),
        })),
    }
}

/// Usage of a whole answer, without decoding the rest of it (passthrough
/// metering). `None` when the answer reports none.
pub fn answer_usage(body: &[u8]) -> Option<ir::Usage> {
    crate::translate::tail_field::usage::<Value>(body)
        .filter(Value::is_object)
        .map(|u| usage_from(&u))
}

/// A whole Responses answer → IR.
pub fn decode_response(body: &[u8]) -> Result<ir::Response, TranslateError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| upstream_bad(format!("Responses answer is not JSON: {e}")))?;
    if !v.is_object() {
        return Err(upstream_bad("Responses answer is not a JSON object"));
    }
    if v.get("status").and_then(Value::as_str) == Some("failed") {
        let msg = v["error"]["message"].as_str().unwrap_or("response failed");
        return Err(upstream_bad(format!("upstream response failed: {msg}")));
    }
    let mut content = Vec::new();
    if let Some(Value::Array(items)) = v.get("output") {
        for it in items {
            output_item_parts(it, &mut content);
        }
    }
    Ok(ir::Response {
        id: v
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        model: v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        created: v.get("created_at").and_then(Value::as_u64),
        content,
        finish: Some(finish_from(&v)),
        usage: v.get("usage").map(usage_from).unwrap_or_default(),
    })
}

pub(super) fn resp_usage(u: &ir::Usage) -> RespUsage {
    RespUsage {
        input: u.input,
        cached: u.cache_read,
        output: u.output,
        reasoning: u.reasoning,
    }
}

pub(super) fn outcome_of(f: Option<&ir::FinishReason>) -> Outcome {
    match f {
        Some(ir::FinishReason::Length | ir::FinishReason::ContextWindowExceeded) => {
            Outcome::MaxOutputTokens
        }
        Some(ir::FinishReason::ContentFilter) => Outcome::ContentFilter,
        _ => Outcome::Completed,
    }
}

pub(super) fn sig_for_client(
    origin: Option<Format>,
    sig: &str,
    id: Option<&str>,
    kind: &str,
) -> String {
    if origin == Some(Format::OpenAiResponses) {
        sig.to_string()
    } else {
        wrap_signature(origin, sig, id, kind)
    }
}

/// IR → a whole Responses answer for a Responses client.
pub fn encode_response(resp: &ir::Response, opts: &ResponseOpts) -> Vec<u8> {
    let id = response_id(if resp.id.is_empty() { "0" } else { &resp.id });
    let base = id_base(&id);
    let mut output: Vec<Value> = Vec::new();
    let mut texts: Vec<Value> = Vec::new();
    let mut pending_sig: Vec<Value> = Vec::new();
    let status_item = if outcome_of(resp.finish.as_ref()) == Outcome::Completed {
        "completed"
    } else {
        "incomplete"
    };
    let flush = |texts: &mut Vec<Value>, output: &mut Vec<Value>, pending: &mut Vec<Value>| {
        if !texts.is_empty() {
            let n = output.len();
            output.push(json!({"id": format!("msg_{base}{n:03}"), "type": "message", "status": status_item, "role": "assistant", "content": std::mem::take(texts)}));
        }
        output.append(pending);
    };
    for p in &resp.content {
        match p {
            Part::Text(t) => {
                texts.push(json!({"type": "output_text", "annotations": [], "logprobs": [], "text": t.text}));
                if let Some(s) = &t.signature {
                    pending_sig.push(json!({"type": "reasoning", "summary": [], "encrypted_content": wrap_signature(Some(Format::Gemini), s, None, "text")}));
                }
            }
            Part::ToolCall(c) => {
                flush(&mut texts, &mut output, &mut pending_sig);
                let n = output.len();
                let mut item = json!({"id": format!("fc_{base}{n:03}"), "type": "function_call", "status": "completed", "arguments": c.arguments, "call_id": c.id, "name": c.name});
                if let Some((ns, name)) = opts.namespaces.split(&c.name) {
                    item["name"] = Value::String(name.to_string());
                    item["namespace"] = Value::String(ns.to_string());
                }
                output.push(item);
                if let Some(s) = &c.signature {
                    let n = output.len();
                    output.push(json!({"id": format!("rs_{base}{n:03}"), "type": "reasoning", "summary": [], "encrypted_content": wrap_signature(Some(Format::Gemini), s, None, "call")}));
                }
            }
            Part::Thinking(t) => {
                flush(&mut texts, &mut output, &mut pending_sig);
                let n = output.len();
                let summary: Vec<Value> = if t.text.is_empty() {
                    Vec::new()
                } else {
                    vec![json!({"type": "summary_text", "text": t.text})]
                };
                let mut item = json!({"id": t.id.clone().unwrap_or_else(|| format!("rs_{base}{n:03}")), "type": "reasoning", "summary": summary});
                if let Some(s) = &t.signature {
                    item["encrypted_content"] =
                        Value::String(sig_for_client(t.origin, s, t.id.as_deref(), "thinking"));
                }
                output.push(item);
            }
            Part::RedactedThinking(r) => {
                flush(&mut texts, &mut output, &mut pending_sig);
                let n = output.len();
                output.push(json!({"id": format!("rs_{base}{n:03}"), "type": "reasoning", "summary": [], "encrypted_content": wrap_signature(r.origin, &r.data, None, "redacted")}));
            }
            Part::Raw(raw) if raw.format == Format::OpenAiResponses => {
                flush(&mut texts, &mut output, &mut pending_sig);
                output.push(raw.value.clone());
            }
            // No Responses output item for images or other providers' blocks.
            Part::Image(_) | Part::Raw(_) | Part::ToolResult(_) => {}
        }
    }
    flush(&mut texts, &mut output, &mut pending_sig);
    let outcome = outcome_of(resp.finish.as_ref());
    let status = if outcome == Outcome::Completed {
        "completed"
    } else {
        "incomplete"
    };
    let model = if resp.model.is_empty() {
        &opts.client_model
    } else {
        &resp.model
    };
    let v = response_object(
        &id,
        model,
        resp.created
            .unwrap_or_else(crate::translate::json::now_unix),
        status,
        output,
        Some(resp_usage(&resp.usage)),
        Some(outcome),
        None,
    );
    serde_json::to_vec(&v).unwrap_or_default()
}
