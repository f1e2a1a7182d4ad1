//! Whole answers: OpenAI Chat Completions answer → IR (with its usage), and IR
//! → OpenAI Chat Completions answer.

use super::*;

impl WireUsage {
    pub(super) fn to_ir(&self) -> ir::Usage {
        let cached = self
            .prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cached_tokens)
            .or(self.prompt_cache_hit_tokens)
            .unwrap_or(0);
        ir::Usage {
            input: self.prompt_tokens.unwrap_or(0),
            output: self.completion_tokens.unwrap_or(0),
            cache_read: cached,
            cache_write: 0,
            reasoning: self
                .completion_tokens_details
                .as_ref()
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
        }
    }
}

/// Finish reason of an OpenAI-format upstream (aliases some compatible servers use included).
pub(crate) fn finish_from_openai(s: &str, stop_reason: Option<&Value>) -> FinishReason {
    match s {
        "stop" | "eos" | "eos_token" | "end_turn" => match stop_reason.and_then(Value::as_str) {
            Some(seq) => FinishReason::StopSequence(Some(seq.to_string())),
            None => FinishReason::Stop,
        },
        "length" | "max_tokens" => FinishReason::Length,
        "tool_calls" | "function_call" | "tool_use" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        "stop_sequence" => {
            FinishReason::StopSequence(stop_reason.and_then(Value::as_str).map(str::to_string))
        }
        "refusal" => FinishReason::Refusal,
        "pause_turn" => FinishReason::PauseTurn,
        "model_context_window_exceeded" => FinishReason::ContextWindowExceeded,
        other => FinishReason::Other(other.to_string()),
    }
}

/// The client-facing value; unknown upstream values are passed through verbatim.
pub(crate) fn finish_to_openai(r: &FinishReason) -> &str {
    match r {
        FinishReason::Stop | FinishReason::StopSequence(_) => "stop",
        FinishReason::Length | FinishReason::ContextWindowExceeded | FinishReason::PauseTurn => {
            "length"
        }
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter | FinishReason::Refusal => "content_filter",
        FinishReason::Other(s) => s,
    }
}

pub(super) fn upstream_err(e: impl std::fmt::Display) -> TranslateError {
    TranslateError {
        status: 502,
        message: format!("upstream answer is not valid OpenAI Chat JSON: {e}"),
        param: None,
    }
}

/// A whole Chat Completions answer → IR (choice 0).
/// Usage of a whole answer, without decoding the rest of it (passthrough
/// metering). `None` when the answer reports none.
pub fn answer_usage(body: &[u8]) -> Option<ir::Usage> {
    crate::translate::tail_field::usage::<WireUsage>(body).map(|u| u.to_ir())
}

pub fn decode_response(body: &[u8]) -> Result<ir::Response, TranslateError> {
    let w: WireResponse = serde_json::from_slice(body).map_err(upstream_err)?;
    let mut resp = ir::Response {
        id: w.id.unwrap_or_default(),
        model: w.model.unwrap_or_default(),
        created: w.created,
        usage: w.usage.map(|u| u.to_ir()).unwrap_or_default(),
        ..Default::default()
    };
    let Some(choice) = w.choices.into_iter().next() else {
        return Err(upstream_err("no choices"));
    };
    let mut refused = false;
    if let Some(m) = &choice.message {
        let mut parts =
            decode_reasoning(m, &Path::Str("message")).map_err(|e| upstream_err(e.message))?;
        if let Some(Value::String(s)) = m.get("content")
            && !s.is_empty()
        {
            parts.push(Part::Text(ir::TextPart::new(s.clone())));
        }
        if let Some(Value::String(s)) = m.get("refusal")
            && !s.is_empty()
        {
            parts.push(Part::Text(ir::TextPart::new(s.clone())));
            refused = true;
        }
        if let Some(Value::Array(calls)) = m.get("tool_calls") {
            for (i, c) in calls.iter().enumerate() {
                let f = c.get("function");
                let arguments = match f.and_then(|f| f.get("arguments")) {
                    Some(Value::String(s)) => s.clone(),
                    Some(v @ Value::Object(_)) => v.to_string(),
                    _ => String::new(),
                };
                parts.push(Part::ToolCall(ir::ToolCall {
                    id: c
                        .get("id")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("call_{i}")),
                    name: f
                        .and_then(|f| f.get("name"))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    arguments,
                    ..Default::default()
                }));
            }
        }
        resp.content = parts;
    }
    resp.finish = choice.finish_reason.as_deref().map(|f| {
        let r = finish_from_openai(f, choice.stop_reason.as_ref());
        if refused && r == FinishReason::Stop {
            FinishReason::Refusal
        } else {
            r
        }
    });
    Ok(resp)
}

impl From<&ir::Usage> for OutUsage {
    fn from(u: &ir::Usage) -> Self {
        OutUsage {
            prompt_tokens: u.input,
            completion_tokens: u.output,
            total_tokens: u.input.saturating_add(u.output),
            prompt_tokens_details: OutPromptDetails {
                cached_tokens: u.cache_read,
            },
            completion_tokens_details: OutCompletionDetails {
                reasoning_tokens: u.reasoning,
            },
        }
    }
}

pub(super) fn stop_sequence(r: Option<&FinishReason>) -> Option<&str> {
    match r {
        Some(FinishReason::StopSequence(Some(s))) => Some(s),
        _ => None,
    }
}

pub(super) fn concat<'a>(pieces: &[&'a str]) -> Option<Cow<'a, str>> {
    match pieces {
        [] => None,
        [one] => Some(Cow::Borrowed(one)),
        many => Some(Cow::Owned(many.concat())),
    }
}

/// Tool-call arguments as sent to OpenAI clients (`""` is not valid JSON).
pub(super) fn args_or_empty_object(a: &str) -> &str {
    if a.trim().is_empty() { "{}" } else { a }
}

/// IR → a Chat Completions answer for the client.
pub fn encode_response(resp: &ir::Response, opts: &ResponseOpts) -> Vec<u8> {
    let mut texts = Vec::new();
    let mut thinking = Vec::new();
    let mut details = Vec::new();
    let mut calls = Vec::new();
    for p in &resp.content {
        match p {
            Part::Text(t) => texts.push(t.text.as_str()),
            Part::Thinking(t) => {
                thinking.push(t.text.as_str());
                if t.signature.is_some() || t.id.is_some() {
                    details.push(OutDetail {
                        kind: "reasoning.text",
                        text: Some(&t.text),
                        signature: t.signature.as_deref(),
                        data: None,
                        id: t.id.as_deref(),
                        format: details_format(t.origin),
                        index: details.len(),
                    });
                }
            }
            Part::RedactedThinking(r) => details.push(OutDetail {
                kind: "reasoning.encrypted",
                text: None,
                signature: None,
                data: Some(&r.data),
                id: None,
                format: details_format(r.origin),
                index: details.len(),
            }),
            Part::ToolCall(c) => calls.push(OutToolCall {
                id: &c.id,
                kind: "function",
                function: OutFunction {
                    name: &c.name,
                    arguments: args_or_empty_object(&c.arguments),
                },
                extra_content: extra_content(c.signature.as_deref()),
            }),
            // Provider-specific blocks (e.g. Anthropic server tool use) have no
            // Chat Completions form; the answer's text already reports on them.
            Part::Raw(_) | Part::Image(_) | Part::ToolResult(_) => {}
        }
    }
    let model = if opts.client_model.is_empty() {
        &resp.model
    } else {
        &opts.client_model
    };
    let out = OutResponse {
        id: &resp.id,
        object: "chat.completion",
        created: resp.created.unwrap_or_else(json::now_unix),
        model,
        choices: [OutChoice {
            index: 0,
            message: OutMessage {
                role: "assistant",
                content: concat(&texts),
                refusal: None,
                tool_calls: calls,
                reasoning_content: concat(&thinking),
                reasoning_details: details,
            },
            logprobs: None,
            finish_reason: Some(resp.finish.as_ref().map(finish_to_openai).unwrap_or("stop")),
            stop_reason: stop_sequence(resp.finish.as_ref()),
        }],
        usage: (&resp.usage).into(),
    };
    serde_json::to_vec(&out).unwrap_or_default()
}
