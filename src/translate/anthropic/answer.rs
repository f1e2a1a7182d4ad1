//! Whole answers: Anthropic Messages answer → IR (with its usage), and IR →
//! Anthropic Messages answer.

use super::*;

impl WireUsage {
    pub(super) fn to_ir(&self) -> ir::Usage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let write = self.cache_creation_input_tokens.unwrap_or(0);
        let input = self.input_tokens.unwrap_or(0);
        ir::Usage {
            input: if self.input_tokens.is_some() || read.saturating_add(write) > 0 {
                input.saturating_add(read).saturating_add(write)
            } else {
                0
            },
            output: self.output_tokens.unwrap_or(0),
            cache_read: read,
            cache_write: write,
            reasoning: self
                .output_tokens_details
                .as_ref()
                .and_then(|d| d.thinking_tokens)
                .unwrap_or(0),
        }
    }
}

pub(crate) fn finish_from_anthropic(s: &str, sequence: Option<&str>) -> FinishReason {
    match s {
        "end_turn" => FinishReason::Stop,
        "max_tokens" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "stop_sequence" => FinishReason::StopSequence(sequence.map(str::to_string)),
        "refusal" => FinishReason::Refusal,
        "pause_turn" => FinishReason::PauseTurn,
        "model_context_window_exceeded" => FinishReason::ContextWindowExceeded,
        other => FinishReason::Other(other.to_string()),
    }
}

/// (stop_reason, stop_sequence) for Anthropic clients; unknown values verbatim.
pub(crate) fn finish_to_anthropic(r: &FinishReason) -> (&str, Option<&str>) {
    match r {
        FinishReason::Stop => ("end_turn", None),
        FinishReason::Length => ("max_tokens", None),
        FinishReason::ToolCalls => ("tool_use", None),
        FinishReason::ContentFilter | FinishReason::Refusal => ("refusal", None),
        FinishReason::StopSequence(s) => ("stop_sequence", s.as_deref()),
        FinishReason::PauseTurn => ("pause_turn", None),
        FinishReason::ContextWindowExceeded => ("model_context_window_exceeded", None),
        FinishReason::Other(s) => (s, None),
    }
}

pub(super) fn upstream_err(e: impl std::fmt::Display) -> TranslateError {
    TranslateError {
        status: 502,
        message: format!("upstream answer is not valid Anthropic Messages JSON: {e}"),
        param: None,
    }
}

/// Usage of a whole answer, without decoding the rest of it (passthrough
/// metering). `None` when the answer reports none.
pub fn answer_usage(body: &[u8]) -> Option<ir::Usage> {
    crate::translate::tail_field::usage::<WireUsage>(body).map(|u| u.to_ir())
}

/// A whole Messages answer → IR.
pub fn decode_response(body: &[u8]) -> Result<ir::Response, TranslateError> {
    let w: WireMessage = serde_json::from_slice(body).map_err(upstream_err)?;
    if w.kind.as_deref().is_some_and(|k| k != "message") {
        return Err(upstream_err(format_args!(
            "type {:?} is not a message",
            w.kind.as_deref().unwrap_or("")
        )));
    }
    let mut content = Vec::with_capacity(w.content.len());
    for (i, b) in w.content.iter().enumerate() {
        content
            .push(decode_plain_block(b, &idx("content", i)).map_err(|e| upstream_err(e.message))?);
    }
    Ok(ir::Response {
        id: w.id,
        model: w.model,
        created: None,
        content,
        finish: w
            .stop_reason
            .as_deref()
            .map(|r| finish_from_anthropic(r, w.stop_sequence.as_deref())),
        usage: w.usage.to_ir(),
    })
}

impl From<&ir::Usage> for OutUsage {
    fn from(u: &ir::Usage) -> Self {
        OutUsage {
            input_tokens: u.uncached_input(),
            cache_creation_input_tokens: u.cache_write,
            cache_read_input_tokens: u.cache_read,
            output_tokens: u.output,
            output_tokens_details: (u.reasoning > 0).then_some(OutDetails {
                thinking_tokens: u.reasoning,
            }),
        }
    }
}

pub(super) fn empty_object() -> &'static RawValue {
    static EMPTY: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| RawValue::from_string("{}".to_string()).expect("valid JSON"))
}

pub(super) fn out_tool_input(arguments: &str) -> ToolInput<'_> {
    if arguments.trim().is_empty() {
        return ToolInput::Raw(empty_object());
    }
    match serde_json::from_str::<&RawValue>(arguments) {
        Ok(raw) if raw.get().starts_with('{') => ToolInput::Raw(raw),
        _ => ToolInput::Value(json!({"_raw_arguments": arguments})),
    }
}

/// IR → a Messages answer for the client.
pub fn encode_response(resp: &ir::Response, opts: &ResponseOpts) -> Vec<u8> {
    let mut content = Vec::with_capacity(resp.content.len());
    for p in &resp.content {
        let block = match p {
            Part::Text(t) if t.text.is_empty() => continue,
            Part::Text(t) => OutBlock::Text {
                kind: "text",
                text: &t.text,
            },
            // A signed block is kept even with empty text; an unsigned one from
            // an OpenAI-style upstream gets an empty signature.
            Part::Thinking(t) if t.text.is_empty() && t.signature.is_none() => continue,
            Part::Thinking(t) => OutBlock::Thinking {
                kind: "thinking",
                thinking: &t.text,
                signature: client_signature(t.origin, t.signature.as_deref(), t.id.as_deref()),
            },
            Part::RedactedThinking(r) => OutBlock::Redacted {
                kind: "redacted_thinking",
                data: &r.data,
            },
            Part::ToolCall(c) => {
                content.push(OutBlock::ToolUse {
                    kind: "tool_use",
                    id: &c.id,
                    name: &c.name,
                    input: out_tool_input(&c.arguments),
                });
                match c.signature.as_deref().filter(|s| !s.is_empty()) {
                    Some(s) => OutBlock::Thinking {
                        kind: "thinking",
                        thinking: "",
                        signature: Cow::Owned(call_signature(&c.id, s)),
                    },
                    None => continue,
                }
            }
            Part::Raw(r) if r.format == Format::Anthropic => OutBlock::Raw(&r.value),
            Part::Raw(_) | Part::Image(_) | Part::ToolResult(_) => continue,
        };
        content.push(block);
    }
    let (stop_reason, stop_sequence) = match &resp.finish {
        Some(f) => {
            let (r, s) = finish_to_anthropic(f);
            (Some(r), s)
        }
        None => (Some("end_turn"), None),
    };
    let model = if opts.client_model.is_empty() {
        &resp.model
    } else {
        &opts.client_model
    };
    let out = OutMessage {
        id: &resp.id,
        kind: "message",
        role: "assistant",
        model,
        content,
        stop_reason,
        stop_sequence,
        usage: (&resp.usage).into(),
    };
    serde_json::to_vec(&out).unwrap_or_default()
}

/// Anthropic's error body for a status (SPEC "Errors").
pub fn error_value(status: u16, message: &str) -> Value {
    let kind = match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 | 503 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": message}})
}
