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
//!   (`gemini::wrap_signature`, `aigate1:`); a Gemini functionCall part's
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

use super::dropped::{self, Dropped};
use super::gemini::{unwrap_signature, wrap_signature};
use super::json::{self, CowStr, bad, field, idx, inexpressible, join, push_uint};
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

// ======================================================================= requests

/// A client's Messages body → IR.
pub fn decode_request(body: &Value) -> Result<ir::Request, TranslateError> {
    let m = json::as_object(body, "body")?;
    let mut req = ir::Request {
        extra: ir::Extra::new(Format::Anthropic),
        ..Default::default()
    };
    let mut effort = None;
    for (k, v) in m {
        if v.is_null() {
            continue;
        }
        let s = &mut req.sampling;
        match k.as_str() {
            "model" => req.model = json::req_str(m, k, "")?.to_string(),
            "messages" | "tools" => {}
            "system" => req.system = decode_system(v)?,
            "max_tokens" => s.max_tokens = json::opt_u64(m, k, "")?,
            "temperature" => s.temperature = json::opt_f64(m, k, "")?,
            "top_p" => s.top_p = json::opt_f64(m, k, "")?,
            "top_k" => s.top_k = json::opt_u64(m, k, "")?,
            "stream" => req.stream = json::opt_bool(m, k, "")?.unwrap_or(false),
            "stop_sequences" => {
                let a = json::opt_array(m, k, "")?.unwrap_or_default();
                s.stop = a
                    .iter()
                    .enumerate()
                    .map(|(i, x)| {
                        x.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| bad(&idx("stop_sequences", i), "expected a string"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "metadata" => {
                let o = json::as_object(v, k)?;
                req.user = json::opt_str(o, "user_id", k)?.map(str::to_string);
                if let Some(other) = o.keys().find(|x| *x != "user_id") {
                    return Err(bad(&join(k, other), "unknown metadata field"));
                }
            }
            "tool_choice" => {
                let o = json::as_object(v, k)?;
                req.tool_choice = Some(match json::req_str(o, "type", k)? {
                    "auto" => ir::ToolChoice::Auto,
                    "any" => ir::ToolChoice::Required,
                    "none" => ir::ToolChoice::None,
                    "tool" => ir::ToolChoice::Tool(json::req_str(o, "name", k)?.to_string()),
                    other => {
                        return Err(bad(
                            "tool_choice.type",
                            format_args!("unknown value {other:?}"),
                        ));
                    }
                });
                if json::opt_bool(o, "disable_parallel_tool_use", k)? == Some(true) {
                    req.parallel_tool_calls = Some(false);
                }
            }
            "thinking" => {
                let o = json::as_object(v, k)?;
                req.reasoning = Some(match json::req_str(o, "type", k)? {
                    "enabled" => ir::Reasoning {
                        budget_tokens: Some(json::opt_u64(o, "budget_tokens", k)?.ok_or_else(
                            || bad("thinking.budget_tokens", "required integer missing"),
                        )?),
                        ..Default::default()
                    },
                    "disabled" => ir::Reasoning {
                        disabled: true,
                        ..Default::default()
                    },
                    // The model decides how much to think.
                    "adaptive" => ir::Reasoning::default(),
                    other => {
                        return Err(bad(
                            "thinking.type",
                            format_args!("unknown value {other:?}"),
                        ));
                    }
                });
            }
            "output_format" => req.response_format = Some(decode_output_format(v, k)?),
            "output_config" => {
                for (ck, cv) in json::as_object(v, k)? {
                    let p = join(k, ck);
                    match ck.as_str() {
                        _ if cv.is_null() => {}
                        "format" => req.response_format = Some(decode_output_format(cv, &p)?),
                        "effort" => {
                            let e = cv.as_str().ok_or_else(|| bad(&p, "expected a string"))?;
                            effort = Some(e.to_string());
                        }
                        // Anything else may be a feature: only Anthropic gets it.
                        _ => {
                            req.extra.fields.insert(p, cv.clone());
                        }
                    }
                }
            }
            _ if HINTS.contains(&k.as_str()) => {
                req.extra.hints.insert(k.clone(), v.clone());
            }
            _ => {
                req.extra.fields.insert(k.clone(), v.clone());
            }
        }
    }
    // `output_config.effort` (low, medium, high, xhigh, max: how much work the
    // answer gets, thinking or not) is the other formats' reasoning effort.
    // With thinking disabled they have no slot for it: a hint, named.
    if let Some(e) = effort {
        match &mut req.reasoning {
            Some(r) if r.disabled => {
                req.extra
                    .hints
                    .insert("output_config.effort".into(), Value::String(e));
            }
            Some(r) => r.effort = Some(e),
            None => {
                req.reasoning = Some(ir::Reasoning {
                    effort: Some(e),
                    effort_only: true,
                    ..Default::default()
                })
            }
        }
    }
    if let Some(tools) = json::opt_array(m, "tools", "")? {
        for (i, t) in tools.iter().enumerate() {
            req.tools.push(decode_tool(t, &idx("tools", i))?);
        }
    }
    req.extra.user_from = "metadata.user_id";
    req.extra.cache_paths = dropped::cache_control_paths(m);
    let messages = json::opt_array(m, "messages", "")?
        .ok_or_else(|| bad("messages", "required array missing"))?;
    for (i, mv) in messages.iter().enumerate() {
        let path = idx("messages", i);
        let mo = json::as_object(mv, &path)?;
        let role = match json::req_str(mo, "role", &path)? {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            // Mid-conversation system text (Claude Code 2.1, beta
            // `mid-conversation-system-2026-04-07`): a system turn at its place.
            "system" => Role::System,
            other => {
                return Err(bad(
                    &join(&path, "role"),
                    format_args!("expected user, assistant or system, got {other:?}"),
                ));
            }
        };
        let content = decode_blocks(field(mo, "content"), &join(&path, "content"))?;
        if role == Role::System
            && let Some(j) = content.iter().position(|p| !matches!(p, Part::Text(_)))
        {
            return Err(bad(
                &idx(&join(&path, "content"), j),
                "a system message holds text blocks only",
            ));
        }
        req.messages.push(ir::Message::new(role, content));
    }
    Ok(req)
}

fn decode_output_format(v: &Value, path: &str) -> Result<ir::ResponseFormat, TranslateError> {
    let o = json::as_object(v, path)?;
    match json::req_str(o, "type", path)? {
        "json_schema" => Ok(ir::ResponseFormat::JsonSchema {
            name: "response".into(),
            description: None,
            schema: field(o, "schema")
                .cloned()
                .ok_or_else(|| bad(&join(path, "schema"), "required object missing"))?,
            strict: Some(true),
        }),
        other => Err(bad(
            &join(path, "type"),
            format_args!("unknown value {other:?}"),
        )),
    }
}

fn decode_system(v: &Value) -> Result<Vec<ir::TextPart>, TranslateError> {
    match v {
        Value::String(s) => Ok(vec![ir::TextPart::new(s.clone())]),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let p = idx("system", i);
                let o = json::as_object(b, &p)?;
                match json::req_str(o, "type", &p)? {
                    "text" => Ok(ir::TextPart {
                        text: json::req_str(o, "text", &p)?.to_string(),
                        cache_control: field(o, "cache_control").cloned(),
                        signature: None,
                    }),
                    other => Err(bad(
                        &join(&p, "type"),
                        format_args!("expected \"text\", got {other:?}"),
                    )),
                }
            })
            .collect(),
        _ => Err(bad(
            "system",
            "expected a string or an array of text blocks",
        )),
    }
}

fn decode_tool(t: &Value, path: &str) -> Result<ir::Tool, TranslateError> {
    let o = json::as_object(t, path)?;
    // Client tools have no type or "custom"; server tools (web search, tool
    // search, code execution, ...) only Anthropic can run.
    match json::opt_str(o, "type", path)? {
        None | Some("custom") => {}
        Some(_) => {
            return Ok(ir::Tool::Raw(ir::Raw {
                format: Format::Anthropic,
                value: t.clone(),
            }));
        }
    }
    // Another field unknown here may be a feature: only Anthropic gets it.
    let unknown = o.iter().any(|(k, v)| {
        !matches!(
            k.as_str(),
            "type" | "name" | "description" | "input_schema" | "cache_control" | "strict"
        ) && !TOOL_HINTS.contains(&k.as_str())
            && !matches!(v, Value::Null | Value::Bool(false))
    });
    if unknown {
        return Ok(ir::Tool::Raw(ir::Raw {
            format: Format::Anthropic,
            value: t.clone(),
        }));
    }
    let mut f = function_tool(o, path)?;
    for (k, v) in o {
        if TOOL_HINTS.contains(&k.as_str()) && !v.is_null() {
            f.hints.insert(k.clone(), v.clone());
        }
    }
    Ok(ir::Tool::Function(f))
}

/// Anthropic-only tool fields that tune loading and streaming, not what the
/// tool does: another target gets the tool without them (and their names).
/// `defer_loading` tools are sent in full (nothing searches for them there),
/// `input_examples` are not copied into the description (that would change
/// the prompt), `eager_input_streaming` only changes chunking.
const TOOL_HINTS: &[&str] = &["defer_loading", "input_examples", "eager_input_streaming"];

fn function_tool(o: &Map<String, Value>, path: &str) -> Result<ir::FunctionTool, TranslateError> {
    Ok(ir::FunctionTool {
        name: json::req_str(o, "name", path)?.to_string(),
        description: json::opt_str(o, "description", path)?.map(str::to_string),
        parameters: field(o, "input_schema")
            .cloned()
            .ok_or_else(|| bad(&join(path, "input_schema"), "required object missing"))?,
        strict: json::opt_bool(o, "strict", path)?,
        cache_control: field(o, "cache_control").cloned(),
        hints: Map::new(),
    })
}

/// Content of a message (string or blocks) → parts.
fn decode_blocks(content: Option<&Value>, path: &str) -> Result<Vec<Part>, TranslateError> {
    match content {
        None => Err(bad(path, "required content missing")),
        Some(Value::String(s)) => Ok(vec![Part::Text(ir::TextPart::new(s.clone()))]),
        Some(Value::Array(a)) => {
            let mut parts = Vec::with_capacity(a.len());
            for (i, b) in a.iter().enumerate() {
                match decode_block(b, &idx(path, i))? {
                    Block::Part(p) => parts.push(p),
                    Block::CallSignature { id, sig, text } => {
                        attach_call_signature(&mut parts, id.as_deref(), sig);
                        if !text.is_empty() {
                            parts.push(Part::Thinking(ir::Thinking {
                                text,
                                ..Default::default()
                            }));
                        }
                    }
                }
            }
            Ok(parts)
        }
        Some(v) => Err(bad(
            path,
            format_args!("expected a string or an array, got {}", json::type_name(v)),
        )),
    }
}

/// A decoded content block: a part, or the carrier of another provider's
/// per-call signature (Gemini `thoughtSignature` on a functionCall part),
/// which goes back onto its tool call.
enum Block {
    Part(Part),
    CallSignature {
        id: Option<String>,
        sig: String,
        text: String,
    },
}

/// Put a per-call signature back on the call with that id; without an id (or
/// none matching), on the nearest call before the carrier, as it was given.
fn attach_call_signature(parts: &mut [Part], id: Option<&str>, sig: String) {
    let mut calls = parts.iter_mut().rev().filter_map(|p| match p {
        Part::ToolCall(c) => Some(c),
        _ => None,
    });
    let target = match id {
        Some(id) => calls.find(|c| c.id == id),
        None => calls.next(),
    };
    if let Some(c) = target {
        c.signature = Some(sig);
    }
}

/// The signature shown to Anthropic clients in a thinking block: Anthropic's
/// own as is; another provider's wrapped with its origin
/// ([`wrap_signature`]) so that it comes back recognisable and is never sent
/// to Anthropic, only to the provider that minted it.
fn client_signature<'a>(
    origin: Option<Format>,
    sig: Option<&'a str>,
    id: Option<&str>,
) -> Cow<'a, str> {
    match sig.filter(|s| !s.is_empty()) {
        None => Cow::Borrowed(""),
        Some(s) if matches!(origin, None | Some(Format::Anthropic)) => Cow::Borrowed(s),
        Some(s) => Cow::Owned(wrap_signature(origin, s, id, "thinking")),
    }
}

/// The thinking block that carries a Gemini functionCall part's signature to
/// an Anthropic client, placed right after the call's `tool_use` block.
fn call_signature(call_id: &str, sig: &str) -> String {
    wrap_signature(Some(Format::Gemini), sig, Some(call_id), "call")
}

fn decode_block(b: &Value, path: &str) -> Result<Block, TranslateError> {
    if let Some(o) = b.as_object()
        && field(o, "type").and_then(Value::as_str) == Some("thinking")
        && let Some(w) = field(o, "signature")
            .and_then(Value::as_str)
            .and_then(unwrap_signature)
    {
        let text = json::opt_str(o, "thinking", path)?
            .unwrap_or("")
            .to_string();
        return Ok(match w.kind.as_str() {
            "call" => Block::CallSignature {
                id: w.id,
                sig: w.sig,
                text,
            },
            "redacted" => Block::Part(Part::RedactedThinking(ir::RedactedThinking {
                data: w.sig,
                origin: w.origin,
            })),
            _ => Block::Part(Part::Thinking(ir::Thinking {
                text,
                signature: Some(w.sig),
                origin: w.origin,
                id: w.id,
            })),
        });
    }
    decode_plain_block(b, path).map(Block::Part)
}

fn decode_plain_block(b: &Value, path: &str) -> Result<Part, TranslateError> {
    let o = json::as_object(b, path)?;
    let cache = field(o, "cache_control").cloned();
    let raw = || {
        Part::Raw(ir::Raw {
            format: Format::Anthropic,
            value: b.clone(),
        })
    };
    Ok(match json::req_str(o, "type", path)? {
        // Citation metadata has no form elsewhere; the text itself must survive.
        "text" => Part::Text(ir::TextPart {
            text: json::req_str(o, "text", path)?.to_string(),
            cache_control: cache,
            signature: None,
        }),
        "image" => {
            let sp = join(path, "source");
            let so = json::as_object(
                field(o, "source").ok_or_else(|| bad(&sp, "required object missing"))?,
                &sp,
            )?;
            let source = match json::req_str(so, "type", &sp)? {
                "base64" => ir::ImageSource::Base64 {
                    media_type: json::req_str(so, "media_type", &sp)?.to_string(),
                    data: json::req_str(so, "data", &sp)?.to_string(),
                },
                "url" => ir::ImageSource::Url {
                    url: json::req_str(so, "url", &sp)?.to_string(),
                },
                _ => return Ok(raw()),
            };
            Part::Image(ir::ImagePart {
                source,
                detail: None,
                cache_control: cache,
            })
        }
        "tool_use" => {
            let input = field(o, "input").cloned().unwrap_or_else(|| json!({}));
            if !input.is_object() {
                return Err(bad(&join(path, "input"), "expected an object"));
            }
            Part::ToolCall(ir::ToolCall {
                id: json::req_str(o, "id", path)?.to_string(),
                name: json::req_str(o, "name", path)?.to_string(),
                arguments: input.to_string(),
                cache_control: cache,
                signature: None,
            })
        }
        "tool_result" => {
            let cp = join(path, "content");
            let content = match field(o, "content") {
                None => Vec::new(),
                Some(Value::String(s)) => vec![Part::Text(ir::TextPart::new(s.clone()))],
                Some(Value::Array(a)) => a
                    .iter()
                    .enumerate()
                    .map(|(i, x)| decode_plain_block(x, &idx(&cp, i)))
                    .collect::<Result<_, _>>()?,
                Some(v) => {
                    return Err(bad(
                        &cp,
                        format_args!("expected a string or an array, got {}", json::type_name(v)),
                    ));
                }
            };
            Part::ToolResult(ir::ToolResult {
                id: json::req_str(o, "tool_use_id", path)?.to_string(),
                name: None,
                content,
                is_error: json::opt_bool(o, "is_error", path)?.unwrap_or(false),
                cache_control: cache,
            })
        }
        "thinking" => {
            let signature = json::opt_str(o, "signature", path)?.filter(|s| !s.is_empty());
            Part::Thinking(ir::Thinking {
                text: json::opt_str(o, "thinking", path)?
                    .unwrap_or("")
                    .to_string(),
                signature: signature.map(str::to_string),
                origin: signature.map(|_| Format::Anthropic),
                id: None,
            })
        }
        "redacted_thinking" => Part::RedactedThinking(ir::RedactedThinking {
            data: json::req_str(o, "data", path)?.to_string(),
            origin: Some(Format::Anthropic),
        }),
        _ => raw(),
    })
}

/// Whether a thinking part may be sent to Anthropic (it checks signatures).
fn anthropic_signed(origin: Option<Format>, signature: Option<&str>) -> bool {
    signature.is_some_and(|s| !s.is_empty()) && matches!(origin, None | Some(Format::Anthropic))
}

/// IR → a Messages body for an Anthropic upstream.
pub fn encode_request(
    req: &ir::Request,
    opts: &RequestOpts,
    dropped: &mut Dropped,
) -> Result<Vec<u8>, TranslateError> {
    let same = req.extra.format == Format::Anthropic;
    if !same && let Some(k) = req.extra.fields.keys().next() {
        return Err(inexpressible(k, NAME));
    }
    let s = &req.sampling;
    // More than one choice would change the answer's shape: refused.
    if s.n.is_some_and(|n| n > 1) {
        return Err(inexpressible("n", NAME));
    }
    dropped::name_common(req, Format::Anthropic, true, dropped);
    // Sampling hints Anthropic has no field for (0 penalties ask for nothing).
    for (name, set) in [
        ("seed", s.seed.is_some()),
        (
            "frequency_penalty",
            s.frequency_penalty.is_some_and(|v| v != 0.0),
        ),
        (
            "presence_penalty",
            s.presence_penalty.is_some_and(|v| v != 0.0),
        ),
    ] {
        if set {
            dropped.push(dropped::sampling_path(req.extra.format, name));
        }
    }
    let mut o = Map::new();
    let model = if opts.model.is_empty() {
        &req.model
    } else {
        &opts.model
    };
    o.insert("model".into(), Value::String(model.clone()));

    // Thinking and max_tokens (the client's max_tokens is never changed).
    let mut thinking_on = false;
    let mut max_tokens = s.max_tokens;
    if let Some(r) = &req.reasoning {
        // An Anthropic client's own effort goes back as `output_config.effort`.
        if same && let Some(e) = &r.effort {
            o.insert("output_config".into(), json!({"effort": e}));
        }
        if r.disabled {
            o.insert("thinking".into(), json!({"type": "disabled"}));
        } else if same && r.effort_only {
            // Effort without thinking: nothing to turn on.
        } else {
            let budget =
                match (r.budget_tokens, r.effort.as_deref()) {
                    (Some(b), _) => Some(b),
                    (None, Some(_)) if same => None,
                    (None, Some(e)) => Some(ir::effort_to_budget(e).ok_or_else(|| {
                        bad("reasoning_effort", format_args!("unknown value {e:?}"))
                    })?),
                    (None, None) => None,
                };
            match budget {
                Some(mut b) => {
                    if let Some(max) = max_tokens {
                        if r.budget_tokens.is_none() {
                            // A budget we derived must fit under the client's max.
                            b = b.min(max.saturating_sub(1));
                        }
                        if b < 1024 {
                            return Err(bad(
                                "reasoning_effort",
                                format_args!(
                                    "thinking on Anthropic needs a budget of at least 1024 tokens below max_tokens ({max})"
                                ),
                            ));
                        }
                    }
                    max_tokens.get_or_insert(b.saturating_add(DEFAULT_MAX_TOKENS));
                    o.insert(
                        "thinking".into(),
                        json!({"type": "enabled", "budget_tokens": b}),
                    );
                }
                None => {
                    o.insert("thinking".into(), json!({"type": "adaptive"}));
                }
            }
            thinking_on = true;
        }
    }
    o.insert(
        "max_tokens".into(),
        max_tokens.unwrap_or(DEFAULT_MAX_TOKENS).into(),
    );

    let (system, messages) = encode_messages(req)?;
    if thinking_on && !same && unsigned_tool_loop(&messages) {
        // With thinking on, Anthropic rejects a tool-use continuation whose
        // assistant turn does not start with its signed thinking. Clients of
        // other formats that did not send the thinking back (most OpenAI SDKs
        // drop `reasoning_details`) would get that 400 on every tool round;
        // instead this one request goes without thinking (README "Conversions").
        log::debug!("thinking turned off: tool-use continuation without signed thinking");
        o.remove("thinking");
        thinking_on = false;
    }
    if !system.is_empty() {
        o.insert("system".into(), system_value(system));
    }
    o.insert("messages".into(), Value::Array(messages));
    if let Some(v) = s.temperature {
        o.insert("temperature".into(), v.into());
    }
    if let Some(v) = s.top_p {
        o.insert("top_p".into(), v.into());
    }
    if let Some(v) = s.top_k {
        o.insert("top_k".into(), v.into());
    }
    if !s.stop.is_empty() {
        o.insert("stop_sequences".into(), json!(s.stop));
    }
    if opts.stream {
        o.insert("stream".into(), Value::Bool(true));
    }
    if let Some(u) = &req.user {
        o.insert("metadata".into(), json!({"user_id": u}));
    }

    // Tools, tool choice, and response_format as a forced tool.
    let mut tools = Vec::with_capacity(req.tools.len() + 1);
    for (i, t) in req.tools.iter().enumerate() {
        tools.push(match t {
            ir::Tool::Function(f) => {
                let mut v = json!({"name": f.name, "input_schema": f.parameters});
                if let Some(d) = f.description.as_ref().filter(|d| !d.is_empty()) {
                    v["description"] = Value::String(d.clone());
                }
                if let Some(c) = &f.cache_control {
                    v["cache_control"] = c.clone();
                }
                if let (Some(st), true) = (f.strict, same) {
                    v["strict"] = Value::Bool(st);
                }
                for (k, h) in &f.hints {
                    v[k.as_str()] = h.clone();
                }
                v
            }
            ir::Tool::Raw(r) if r.format == Format::Anthropic => r.value.clone(),
            ir::Tool::Raw(r) if is_responses_web_search(r) => {
                web_search_tool(r, &idx("tools", i), dropped)?
            }
            ir::Tool::Raw(r) => {
                return Err(json::inexpressible_kind(&idx("tools", i), r.kind(), NAME));
            }
        });
    }
    let mut choice = req.tool_choice.as_ref().map(|c| match c {
        ir::ToolChoice::Auto => json!({"type": "auto"}),
        ir::ToolChoice::None => json!({"type": "none"}),
        ir::ToolChoice::Required => json!({"type": "any"}),
        ir::ToolChoice::Tool(n) => json!({"type": "tool", "name": n}),
    });
    let schema = match &req.response_format {
        None | Some(ir::ResponseFormat::Text) => None,
        // An Anthropic client's own `output_format` goes back as it came.
        Some(ir::ResponseFormat::JsonSchema { schema, .. }) if same => {
            o.insert(
                "output_format".into(),
                json!({"type": "json_schema", "schema": schema}),
            );
            None
        }
        Some(ir::ResponseFormat::JsonObject) => Some((None, json!({"type": "object"}))),
        Some(ir::ResponseFormat::JsonSchema {
            description,
            schema,
            ..
        }) => Some((description.as_deref(), schema.clone())),
    };
    if let Some((description, schema)) = schema {
        if thinking_on {
            return Err(bad(
                "response_format",
                "cannot be combined with reasoning on an Anthropic upstream (it is expressed as forced tool use, which thinking forbids)",
            ));
        }
        if schema.get("type").and_then(Value::as_str) != Some("object") {
            return Err(bad(
                "response_format.json_schema.schema",
                "an Anthropic upstream needs an object at the root",
            ));
        }
        let mut desc =
            String::from("Give your final answer by calling this tool; its input is the answer.");
        if let Some(d) = description {
            desc.push(' ');
            desc.push_str(d);
        }
        let forced = match req.tool_choice {
            // A tool call is demanded this turn: the answer format does not apply.
            Some(ir::ToolChoice::Required) | Some(ir::ToolChoice::Tool(_)) => None,
            Some(ir::ToolChoice::None) => {
                Some(json!({"type": "tool", "name": RESPONSE_FORMAT_TOOL}))
            }
            Some(ir::ToolChoice::Auto) | None if !tools.is_empty() => Some(json!({"type": "any"})),
            Some(ir::ToolChoice::Auto) | None => {
                Some(json!({"type": "tool", "name": RESPONSE_FORMAT_TOOL}))
            }
        };
        if let Some(f) = forced {
            tools.push(
                json!({"name": RESPONSE_FORMAT_TOOL, "description": desc, "input_schema": schema}),
            );
            choice = Some(f);
        }
    }
    if !tools.is_empty() {
        o.insert("tools".into(), Value::Array(tools));
        if req.parallel_tool_calls == Some(false) {
            let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
            if c["type"] != "none" {
                c["disable_parallel_tool_use"] = Value::Bool(true);
            }
        }
        if let Some(c) = choice {
            o.insert("tool_choice".into(), c);
        }
    }
    if same {
        for (k, v) in req.extra.fields.iter().chain(req.extra.hints.iter()) {
            // `output_config.<key>` fields go back inside `output_config`.
            if let Some(ck) = k.strip_prefix("output_config.") {
                let c = o.entry("output_config").or_insert_with(|| json!({}));
                c[ck] = v.clone();
            } else {
                o.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    serde_json::to_vec(&o).map_err(|e| TranslateError::bad_request(e.to_string(), None))
}

/// A Responses client's web search tool (Codex sends `web_search`).
fn is_responses_web_search(r: &ir::Raw) -> bool {
    r.format == Format::OpenAiResponses
        && matches!(
            r.kind(),
            "web_search"
                | "web_search_2025_08_26"
                | "web_search_preview"
                | "web_search_preview_2025_03_11"
        )
}

/// Anthropic's own web search server tool for a Responses `web_search`
/// tool: the model searches on Anthropic's side as it would on OpenAI's.
/// `filters.allowed_domains` and `user_location` are converted;
/// `search_context_size` (how much of the results the model reads) and
/// `external_web_access: false` (OpenAI's cached-only index; Anthropic
/// always searches live) have no Anthropic field: dropped and named.
/// Anything else is refused.
fn web_search_tool(
    r: &ir::Raw,
    path: &str,
    dropped: &mut Dropped,
) -> Result<Value, TranslateError> {
    let mut v = json!({"type": "web_search_20250305", "name": "web_search"});
    for (k, x) in r.value.as_object().into_iter().flatten() {
        let p = join(path, k);
        match k.as_str() {
            _ if x.is_null() => {}
            "type" => {}
            "filters" => {
                let f = json::as_object(x, &p)?;
                for (fk, fx) in f {
                    match fk.as_str() {
                        _ if fx.is_null() => {}
                        "allowed_domains" => v["allowed_domains"] = fx.clone(),
                        _ => return Err(inexpressible(&join(&p, fk), NAME)),
                    }
                }
            }
            "user_location" => {
                // Same shape on both sides: {"type": "approximate", city, region, country, timezone}.
                let mut loc = json!({"type": "approximate"});
                for (lk, lx) in json::as_object(x, &p)? {
                    match lk.as_str() {
                        _ if lx.is_null() => {}
                        "type" => {}
                        "city" | "region" | "country" | "timezone" => loc[lk.as_str()] = lx.clone(),
                        _ => return Err(inexpressible(&join(&p, lk), NAME)),
                    }
                }
                v["user_location"] = loc;
            }
            "external_web_access" if x == &Value::Bool(true) => {}
            "external_web_access" | "search_context_size" => dropped.push(p),
            _ => return Err(inexpressible(&p, NAME)),
        }
    }
    Ok(v)
}

/// The conversation continues a tool loop (ends in tool results) whose last
/// assistant turn does not open with a thinking block.
fn unsigned_tool_loop(messages: &[Value]) -> bool {
    let Some(last) = messages.last() else {
        return false;
    };
    let ends_in_results = last["role"] == "user"
        && last["content"]
            .as_array()
            .is_some_and(|b| b.first().is_some_and(|b| b["type"] == "tool_result"));
    if !ends_in_results || messages.len() < 2 {
        return false;
    }
    let assistant = &messages[messages.len() - 2]["content"];
    let first = assistant.as_array().and_then(|b| b.first());
    !first.is_some_and(|b| b["type"] == "thinking" || b["type"] == "redacted_thinking")
}

fn text_block(t: &ir::TextPart) -> Value {
    let mut v = json!({"type": "text", "text": t.text});
    if let Some(c) = &t.cache_control {
        v["cache_control"] = c.clone();
    }
    v
}

fn system_value(parts: Vec<&ir::TextPart>) -> Value {
    if let [one] = parts.as_slice()
        && one.cache_control.is_none()
    {
        return Value::String(one.text.clone());
    }
    Value::Array(parts.into_iter().map(text_block).collect())
}

fn image_block(img: &ir::ImagePart) -> Value {
    let source = match &img.source {
        ir::ImageSource::Base64 { media_type, data } => {
            json!({"type": "base64", "media_type": media_type, "data": data})
        }
        ir::ImageSource::Url { url } => json!({"type": "url", "url": url}),
    };
    let mut v = json!({"type": "image", "source": source});
    if let Some(c) = &img.cache_control {
        v["cache_control"] = c.clone();
    }
    v
}

fn raw_block(r: &ir::Raw, path: &str) -> Result<Value, TranslateError> {
    if r.format == Format::Anthropic {
        Ok(r.value.clone())
    } else {
        Err(json::inexpressible_kind(path, r.kind(), NAME))
    }
}

/// The tool input object for `arguments` (JSON text), validated.
fn tool_input(arguments: &str, path: &str) -> Result<Value, TranslateError> {
    if arguments.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(bad(path, "tool call arguments must be a JSON object")),
    }
}

fn encode_part(p: &Part, path: &str, out: &mut Vec<Value>) -> Result<(), TranslateError> {
    match p {
        // Anthropic rejects empty and whitespace-only text blocks.
        Part::Text(t) if t.text.trim().is_empty() => {}
        Part::Text(t) => out.push(text_block(t)),
        Part::Image(img) => out.push(image_block(img)),
        Part::ToolCall(c) => {
            let mut v = json!({
                "type": "tool_use",
                "id": c.id,
                "name": c.name,
                "input": tool_input(&c.arguments, &join(path, "arguments"))?,
            });
            if let Some(cc) = &c.cache_control {
                v["cache_control"] = cc.clone();
            }
            out.push(v);
        }
        Part::ToolResult(r) => {
            let mut blocks = Vec::new();
            for (k, c) in r.content.iter().enumerate() {
                let cp = idx(&join(path, "content"), k);
                match c {
                    Part::Text(_) | Part::Image(_) | Part::Raw(_) => {
                        encode_part(c, &cp, &mut blocks)?
                    }
                    _ => return Err(bad(&cp, "not allowed in a tool result")),
                }
            }
            let mut v = json!({"type": "tool_result", "tool_use_id": r.id});
            let all_plain_text = blocks
                .iter()
                .all(|b| b["type"] == "text" && b.get("cache_control").is_none());
            if let ([one], true) = (blocks.as_slice(), all_plain_text) {
                v["content"] = one["text"].clone();
            } else if !blocks.is_empty() {
                v["content"] = Value::Array(blocks);
            }
            if r.is_error {
                v["is_error"] = Value::Bool(true);
            }
            if let Some(cc) = &r.cache_control {
                v["cache_control"] = cc.clone();
            }
            out.push(v);
        }
        Part::Thinking(t) => {
            if anthropic_signed(t.origin, t.signature.as_deref()) {
                out.push(json!({"type": "thinking", "thinking": t.text, "signature": t.signature}));
            }
        }
        Part::RedactedThinking(r) => {
            if matches!(r.origin, None | Some(Format::Anthropic)) {
                out.push(json!({"type": "redacted_thinking", "data": r.data}));
            }
        }
        Part::Raw(r) => out.push(raw_block(r, path)?),
    }
    Ok(())
}

/// (system blocks, messages): system turns hoisted (an Anthropic client's
/// own stay where they were), empty turns dropped, same-role neighbours
/// merged with tool results first.
fn encode_messages(req: &ir::Request) -> Result<(Vec<&ir::TextPart>, Vec<Value>), TranslateError> {
    let same = req.extra.format == Format::Anthropic;
    let mut system: Vec<&ir::TextPart> = req.system.iter().filter(|t| !t.text.is_empty()).collect();
    let mut turns: Vec<(Role, Vec<Value>)> = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        let path = idx("messages", i);
        if m.name.is_some() {
            return Err(inexpressible(&join(&path, "name"), NAME));
        }
        if m.role == Role::System && !same {
            for p in &m.content {
                if let Part::Text(t) = p
                    && !t.text.is_empty()
                {
                    system.push(t);
                }
            }
            continue;
        }
        let mut blocks = Vec::with_capacity(m.content.len());
        for (j, p) in m.content.iter().enumerate() {
            encode_part(p, &idx(&join(&path, "content"), j), &mut blocks)?;
        }
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((role, prev)) if *role == m.role => prev.extend(blocks),
            _ => turns.push((m.role, blocks)),
        }
    }
    if turns.is_empty() && !system.is_empty() {
        // OpenAI accepts a conversation of only system/developer text; Anthropic
        // needs one message, so that text becomes the user turn.
        let blocks = system.drain(..).map(text_block).collect();
        turns.push((Role::User, blocks));
    }
    let messages = turns
        .into_iter()
        .map(|(role, mut blocks)| {
            if role == Role::User {
                // Tool results must open the turn that answers tool_use blocks.
                blocks.sort_by_key(|b| b["type"] != "tool_result");
            }
            let role = match role {
                Role::User => "user",
                Role::Assistant => "assistant",
                Role::System => "system",
            };
            let content = match blocks.as_mut_slice() {
                [one] if one["type"] == "text" && one.get("cache_control").is_none() => {
                    one["text"].take()
                }
                _ => Value::Array(blocks),
            };
            json!({"role": role, "content": content})
        })
        .collect();
    Ok((system, messages))
}

// ======================================================================= responses

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    output_tokens_details: Option<OutputDetails>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct OutputDetails {
    thinking_tokens: Option<u64>,
}

impl WireUsage {
    fn to_ir(&self) -> ir::Usage {
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

#[derive(Deserialize)]
struct WireMessage {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    /// Required: an answer without content blocks is not an answer.
    content: Vec<Value>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    stop_sequence: Option<String>,
    #[serde(default)]
    usage: WireUsage,
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

fn upstream_err(e: impl std::fmt::Display) -> TranslateError {
    TranslateError {
        status: 502,
        message: format!("upstream answer is not valid Anthropic Messages JSON: {e}"),
        param: None,
    }
}

/// A whole Messages answer → IR.
/// Usage of a whole answer, without decoding the rest of it (passthrough
/// metering). `None` when the answer reports none.
pub fn answer_usage(body: &[u8]) -> Option<ir::Usage> {
    if let Some(u) = super::tail_field::decode_last::<WireUsage>(body, "usage") {
        return u.map(|u| u.to_ir());
    }
    #[derive(Deserialize)]
    struct OnlyUsage {
        usage: Option<WireUsage>,
    }
    let w: OnlyUsage = serde_json::from_slice(body).ok()?;
    w.usage.map(|u| u.to_ir())
}

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

#[derive(Serialize)]
struct OutUsage {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
    /// Only when some output was reasoning: the field is new, and an answer
    /// without thinking reads as it always did.
    #[serde(skip_serializing_if = "Option::is_none")]
    output_tokens_details: Option<OutDetails>,
}

/// `usage.output_tokens_details`: the thinking share of `output_tokens`.
#[derive(Serialize)]
struct OutDetails {
    thinking_tokens: u64,
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

#[derive(Serialize)]
#[serde(untagged)]
enum ToolInput<'a> {
    Raw(&'a RawValue),
    Value(Value),
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutBlock<'a> {
    Text {
        #[serde(rename = "type")]
        kind: &'static str,
        text: &'a str,
    },
    Thinking {
        #[serde(rename = "type")]
        kind: &'static str,
        thinking: &'a str,
        signature: Cow<'a, str>,
    },
    Redacted {
        #[serde(rename = "type")]
        kind: &'static str,
        data: &'a str,
    },
    ToolUse {
        #[serde(rename = "type")]
        kind: &'static str,
        id: &'a str,
        name: &'a str,
        input: ToolInput<'a>,
    },
    Raw(&'a Value),
}

#[derive(Serialize)]
struct OutMessage<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<OutBlock<'a>>,
    stop_reason: Option<&'a str>,
    stop_sequence: Option<&'a str>,
    usage: OutUsage,
}

fn empty_object() -> &'static RawValue {
    static EMPTY: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| RawValue::from_string("{}".to_string()).expect("valid JSON"))
}

fn out_tool_input(arguments: &str) -> ToolInput<'_> {
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

// ======================================================================= streams

#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: CowStr<'a>,
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    message: Option<StartMessage<'a>>,
    #[serde(borrow, default)]
    content_block: Option<&'a RawValue>,
    #[serde(borrow, default)]
    delta: Option<WireDelta<'a>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct StartMessage<'a> {
    #[serde(borrow, default)]
    id: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    model: Option<CowStr<'a>>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireDelta<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    text: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    thinking: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    signature: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    partial_json: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    stop_reason: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    stop_sequence: Option<CowStr<'a>>,
}

#[derive(Deserialize)]
struct WireBlock<'a> {
    #[serde(rename = "type", borrow)]
    kind: CowStr<'a>,
    #[serde(borrow, default)]
    text: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    thinking: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    signature: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    data: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    id: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    name: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
}

fn malformed(e: impl std::fmt::Display) -> StreamEvent<'static> {
    StreamEvent::Error(ir::StreamError {
        status: 502,
        message: format!("upstream sent a malformed Anthropic stream event: {e}"),
    })
}

/// Anthropic stream events → IR events. `message_start` usage (input) and
/// `message_delta` usage (output) are both kept; `Finish` goes out at `message_stop`.
#[derive(Debug, Default)]
pub struct StreamDecode {
    started: bool,
    done: bool,
    /// (Anthropic index, IR index) of the open block.
    open: Option<(u64, usize)>,
    next: usize,
    usage: ir::Usage,
    reason: Option<FinishReason>,
}

impl StreamDecode {
    fn close(&mut self, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        if let Some((_, index)) = self.open.take() {
            sink(StreamEvent::BlockStop { index });
        }
    }

    fn block_start(
        &mut self,
        an: u64,
        raw: &RawValue,
        sink: &mut dyn FnMut(StreamEvent<'_>),
    ) -> Result<(), String> {
        self.close(sink);
        let b: WireBlock<'_> = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
        let index = self.next;
        self.next += 1;
        self.open = Some((an, index));
        let delta = |d| StreamEvent::Delta { index, delta: d };
        match b.kind.as_str() {
            "text" => {
                sink(StreamEvent::BlockStart {
                    index,
                    block: BlockStart::Text,
                });
                if let Some(t) = b.text.filter(|t| !t.0.is_empty()) {
                    sink(delta(Delta::Text(t.0)));
                }
            }
            "thinking" => {
                sink(StreamEvent::BlockStart {
                    index,
                    block: BlockStart::Thinking,
                });
                if let Some(t) = b.thinking.filter(|t| !t.0.is_empty()) {
                    sink(delta(Delta::Thinking(t.0)));
                }
                if let Some(s) = b.signature.filter(|s| !s.0.is_empty()) {
                    sink(delta(Delta::Signature(s.0)));
                }
            }
            "redacted_thinking" => sink(StreamEvent::BlockStart {
                index,
                block: BlockStart::RedactedThinking {
                    data: b.data.map(|d| d.0).unwrap_or_default(),
                },
            }),
            "tool_use" => {
                sink(StreamEvent::BlockStart {
                    index,
                    block: BlockStart::ToolCall {
                        id: b.id.map(|d| d.0).unwrap_or_default(),
                        name: b.name.map(|d| d.0).unwrap_or_default(),
                    },
                });
                // Input is normally streamed; some servers put it here whole.
                if let Some(input) = b.input.filter(|i| i.get() != "{}") {
                    sink(delta(Delta::ToolArgs(Cow::Borrowed(input.get()))));
                }
            }
            _ => {
                let value: Value = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
                sink(StreamEvent::BlockStart {
                    index,
                    block: BlockStart::Raw(ir::Raw {
                        format: Format::Anthropic,
                        value,
                    }),
                });
            }
        }
        Ok(())
    }
}

impl StreamDecoder for StreamDecode {
    fn event(&mut self, ev: sse::Event<'_>, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        if self.done {
            return;
        }
        let w: WireEvent<'_> = match serde_json::from_slice(ev.data) {
            Ok(w) => w,
            Err(e) => {
                self.done = true;
                sink(malformed(e));
                return;
            }
        };
        match w.kind.as_str() {
            "message_start" => {
                let m = w.message;
                let usage = m
                    .as_ref()
                    .and_then(|m| m.usage.as_ref())
                    .map(WireUsage::to_ir)
                    .unwrap_or_default();
                self.usage.merge(&usage);
                if !self.started {
                    self.started = true;
                    let (id, model) = match m {
                        Some(m) => (m.id.map(|s| s.0), m.model.map(|s| s.0)),
                        None => (None, None),
                    };
                    sink(StreamEvent::Start(ir::StreamStart {
                        id: id.unwrap_or_default(),
                        model: model.unwrap_or_default(),
                        created: None,
                        usage,
                        origin: Some(Format::Anthropic),
                    }));
                }
            }
            "content_block_start" => {
                let (Some(an), Some(raw)) = (w.index, w.content_block) else {
                    self.done = true;
                    sink(malformed(
                        "content_block_start without index or content_block",
                    ));
                    return;
                };
                if let Err(e) = self.block_start(an, raw, sink) {
                    self.done = true;
                    sink(malformed(e));
                }
            }
            "content_block_delta" => {
                let (Some((an, index)), Some(d)) = (self.open, w.delta) else {
                    return;
                };
                if w.index != Some(an) {
                    return;
                }
                let delta = match d.kind.as_ref().map(CowStr::as_str) {
                    Some("text_delta") => d.text.map(|t| Delta::Text(t.0)),
                    Some("thinking_delta") => d.thinking.map(|t| Delta::Thinking(t.0)),
                    Some("signature_delta") => d.signature.map(|t| Delta::Signature(t.0)),
                    Some("input_json_delta") => d.partial_json.map(|t| Delta::ToolArgs(t.0)),
                    // citations_delta and future kinds have no IR form.
                    _ => None,
                };
                if let Some(delta) = delta {
                    sink(StreamEvent::Delta { index, delta });
                }
            }
            "content_block_stop" if self.open.is_some_and(|(an, _)| w.index == Some(an)) => {
                self.close(sink);
            }
            "message_delta" => {
                if let Some(d) = &w.delta
                    && let Some(r) = &d.stop_reason
                {
                    self.reason = Some(finish_from_anthropic(
                        r.as_str(),
                        d.stop_sequence.as_ref().map(CowStr::as_str),
                    ));
                }
                if let Some(u) = &w.usage {
                    let u = u.to_ir();
                    self.usage.merge(&u);
                    sink(StreamEvent::Usage(u));
                }
            }
            "message_stop" => {
                self.close(sink);
                self.done = true;
                sink(StreamEvent::Finish {
                    reason: self.reason.take().unwrap_or(FinishReason::Stop),
                    usage: self.usage,
                });
            }
            "ping" => sink(StreamEvent::Ping),
            "error" => {
                self.done = true;
                let e = w.error.unwrap_or(Value::Null);
                let kind = e.get("type").and_then(Value::as_str).unwrap_or("api_error");
                sink(StreamEvent::Error(ir::StreamError {
                    status: ir::status_for_error_type(kind),
                    message: e
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("upstream error")
                        .to_string(),
                }));
            }
            _ => {}
        }
    }

    fn end(&mut self, _sink: &mut dyn FnMut(StreamEvent<'_>)) {
        // Without message_stop the answer is not known to be complete.
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutKind {
    Text,
    Thinking { signed: bool },
    Tool,
    Other,
}

/// IR events → Anthropic SSE: `message_start`, `ping`, content blocks with
/// increasing indices as start/delta/stop triples, exactly one `message_delta`,
/// then `message_stop` — or an `error` event.
pub struct StreamEncode {
    client_model: String,
    started: bool,
    done: bool,
    /// (IR index, output index, kind) of the open block.
    open: Option<(usize, usize, OutKind)>,
    next: usize,
    /// The upstream format: which provider minted the stream's signatures.
    origin: Option<Format>,
    /// Id of the open tool call and its per-call signature (Gemini), given
    /// in a thinking block right after the `tool_use` block.
    call_id: String,
    call_sig: Option<String>,
    /// The upstream's id of the open thinking block (Responses reasoning
    /// item), wrapped into its signature as in a whole answer.
    thinking_id: Option<String>,
}

impl StreamEncode {
    pub fn new(opts: &ResponseOpts) -> Self {
        StreamEncode {
            client_model: opts.client_model.clone(),
            started: false,
            done: false,
            open: None,
            next: 0,
            origin: None,
            call_id: String::new(),
            call_sig: None,
            thinking_id: None,
        }
    }

    fn start(&mut self, id: &str, model: &str, usage: &ir::Usage, out: &mut Vec<u8>) {
        self.started = true;
        #[derive(Serialize)]
        struct Msg<'a> {
            id: &'a str,
            #[serde(rename = "type")]
            kind: &'static str,
            role: &'static str,
            model: &'a str,
            content: [(); 0],
            stop_reason: Option<()>,
            stop_sequence: Option<()>,
            usage: OutUsage,
        }
        #[derive(Serialize)]
        struct Start<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            message: Msg<'a>,
        }
        let model = if self.client_model.is_empty() {
            model
        } else {
            &self.client_model
        };
        let id = if id.is_empty() { "msg_aigate" } else { id };
        let mut u = OutUsage::from(usage);
        // Output (thinking included) is told once, in message_delta.
        u.output_tokens = 0;
        u.output_tokens_details = None;
        let ev = Start {
            kind: "message_start",
            message: Msg {
                id,
                kind: "message",
                role: "assistant",
                model,
                content: [],
                stop_reason: None,
                stop_sequence: None,
                usage: u,
            },
        };
        sse::write_json(out, Some("message_start"), &ev);
        sse::write_raw(out, Some("ping"), br#"{"type":"ping"}"#);
    }

    fn block_start<T: Serialize>(&mut self, out: &mut Vec<u8>, block: &T) -> usize {
        #[derive(Serialize)]
        struct S<'a, T> {
            #[serde(rename = "type")]
            kind: &'static str,
            index: usize,
            content_block: &'a T,
        }
        let index = self.next;
        self.next += 1;
        sse::write_json(
            out,
            Some("content_block_start"),
            &S {
                kind: "content_block_start",
                index,
                content_block: block,
            },
        );
        index
    }

    /// `content_block_delta` with `{"type":<kind>,<field>:<value>}`.
    fn delta(out: &mut Vec<u8>, index: usize, kind: &str, field: &str, value: &str) {
        out.extend_from_slice(
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":",
        );
        push_uint(out, index as u64);
        out.extend_from_slice(b",\"delta\":{\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"");
        out.extend_from_slice(field.as_bytes());
        out.extend_from_slice(b"\":");
        let _ = serde_json::to_writer(&mut *out, value);
        out.extend_from_slice(b"}}\n\n");
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        let Some((_, index, kind)) = self.open.take() else {
            return;
        };
        if kind == (OutKind::Thinking { signed: false }) {
            // Strict clients expect every thinking block to carry a signature.
            Self::delta(out, index, "signature_delta", "signature", "");
        }
        Self::stop(out, index);
        if kind == OutKind::Tool
            && let Some(sig) = self.call_sig.take()
        {
            let index = self.block_start(
                out,
                &OutBlock::Thinking {
                    kind: "thinking",
                    thinking: "",
                    signature: Cow::Borrowed(""),
                },
            );
            let sig = call_signature(&self.call_id, &sig);
            Self::delta(out, index, "signature_delta", "signature", &sig);
            Self::stop(out, index);
        }
    }

    fn stop(out: &mut Vec<u8>, index: usize) {
        out.extend_from_slice(
            b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":",
        );
        push_uint(out, index as u64);
        out.extend_from_slice(b"}\n\n");
    }
}

impl StreamEncoder for StreamEncode {
    fn event(&mut self, ev: &StreamEvent<'_>, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if !self.started && !matches!(ev, StreamEvent::Start(_) | StreamEvent::Error(_)) {
            self.start("", "", &ir::Usage::default(), out);
        }
        match ev {
            StreamEvent::Start(s) => {
                if !self.started {
                    self.origin = s.origin;
                    self.start(&s.id, &s.model, &s.usage, out);
                }
            }
            StreamEvent::BlockStart { index, block } => {
                self.close(out);
                self.thinking_id = None;
                let (out_index, kind) = match block {
                    BlockStart::Text => (
                        self.block_start(
                            out,
                            &OutBlock::Text {
                                kind: "text",
                                text: "",
                            },
                        ),
                        OutKind::Text,
                    ),
                    BlockStart::Thinking => (
                        self.block_start(
                            out,
                            &OutBlock::Thinking {
                                kind: "thinking",
                                thinking: "",
                                signature: Cow::Borrowed(""),
                            },
                        ),
                        OutKind::Thinking { signed: false },
                    ),
                    BlockStart::RedactedThinking { data } => (
                        self.block_start(
                            out,
                            &OutBlock::Redacted {
                                kind: "redacted_thinking",
                                data,
                            },
                        ),
                        OutKind::Other,
                    ),
                    BlockStart::ToolCall { id, name } => {
                        self.call_id.clear();
                        self.call_id.push_str(id);
                        self.call_sig = None;
                        (
                            self.block_start(
                                out,
                                &OutBlock::ToolUse {
                                    kind: "tool_use",
                                    id,
                                    name,
                                    input: ToolInput::Raw(empty_object()),
                                },
                            ),
                            OutKind::Tool,
                        )
                    }
                    BlockStart::Raw(r) if r.format == Format::Anthropic => {
                        // Server tool blocks stream their input like tool_use.
                        (self.block_start(out, &r.value), OutKind::Tool)
                    }
                    // No Anthropic form: the block is skipped entirely.
                    BlockStart::Raw(_) => return,
                };
                self.open = Some((*index, out_index, kind));
            }
            StreamEvent::Delta { index, delta } => {
                let Some((ir, out_index, kind)) = &mut self.open else {
                    return;
                };
                if *ir != *index {
                    return;
                }
                match (kind, delta) {
                    (OutKind::Text, Delta::Text(s)) if !s.is_empty() => {
                        Self::delta(out, *out_index, "text_delta", "text", s)
                    }
                    (OutKind::Thinking { .. }, Delta::Thinking(s)) if !s.is_empty() => {
                        Self::delta(out, *out_index, "thinking_delta", "thinking", s)
                    }
                    (OutKind::Thinking { signed }, Delta::Signature(s)) if !s.is_empty() => {
                        *signed = true;
                        // An OpenAI-format upstream relays other providers'
                        // signatures (OpenRouter): their origin is unknown here.
                        let origin = self.origin.filter(|o| *o != Format::OpenAiChat);
                        let s = client_signature(origin, Some(s), self.thinking_id.as_deref());
                        Self::delta(out, *out_index, "signature_delta", "signature", &s)
                    }
                    (OutKind::Tool, Delta::Signature(s)) if !s.is_empty() => {
                        self.call_sig = Some(s.to_string());
                    }
                    (OutKind::Thinking { .. }, Delta::ThinkingId(id)) => {
                        self.thinking_id = Some(id.to_string());
                    }
                    (OutKind::Tool, Delta::ToolArgs(s)) if !s.is_empty() => {
                        Self::delta(out, *out_index, "input_json_delta", "partial_json", s)
                    }
                    _ => {}
                }
            }
            StreamEvent::BlockStop { index } => {
                if self.open.is_some_and(|(ir, _, _)| ir == *index) {
                    self.close(out);
                }
            }
            StreamEvent::Usage(_) => {}
            StreamEvent::Ping => sse::write_raw(out, Some("ping"), br#"{"type":"ping"}"#),
            StreamEvent::Finish { reason, usage } => {
                self.close(out);
                #[derive(Serialize)]
                struct D<'a> {
                    stop_reason: &'a str,
                    stop_sequence: Option<&'a str>,
                }
                #[derive(Serialize)]
                struct MessageDelta<'a> {
                    #[serde(rename = "type")]
                    kind: &'static str,
                    delta: D<'a>,
                    usage: OutUsage,
                }
                let (stop_reason, stop_sequence) = finish_to_anthropic(reason);
                let md = MessageDelta {
                    kind: "message_delta",
                    delta: D {
                        stop_reason,
                        stop_sequence,
                    },
                    usage: usage.into(),
                };
                sse::write_json(out, Some("message_delta"), &md);
                sse::write_raw(out, Some("message_stop"), br#"{"type":"message_stop"}"#);
                self.done = true;
            }
            StreamEvent::Error(e) => {
                let body =
                    super::errors::error_value(Format::Anthropic, e.status, &e.message, None);
                sse::write_json(out, Some("error"), &body);
                self.done = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_not_answers() {
        let e = decode_response(
            br#"{"type":"error","error":{"type":"overloaded_error","message":"x"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.status, 502);
        assert!(decode_response(b"[]").is_err());
        assert!(decode_response(b"{}").is_err());
        assert!(decode_response(br#"{"type":"message","content":[]}"#).is_ok());
    }

    #[test]
    fn usage_arithmetic_both_directions() {
        let w: WireUsage = serde_json::from_str(
            r#"{"input_tokens": 20, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5, "output_tokens": 9,
                "output_tokens_details": {"thinking_tokens": 4}}"#,
        )
        .unwrap();
        let u = w.to_ir();
        assert_eq!(
            (u.input, u.output, u.cache_read, u.cache_write, u.reasoning),
            (125, 9, 100, 5, 4)
        );
        let out = OutUsage::from(&u);
        assert_eq!(
            (
                out.input_tokens,
                out.cache_read_input_tokens,
                out.cache_creation_input_tokens,
                out.output_tokens
            ),
            (20, 100, 5, 9)
        );
        assert_eq!(
            serde_json::to_value(&out).unwrap()["output_tokens_details"],
            json!({"thinking_tokens": 4}),
            "thinking tokens reach Anthropic clients"
        );
        let plain = serde_json::to_value(OutUsage::from(&ir::Usage::default())).unwrap();
        assert!(
            plain.get("output_tokens_details").is_none(),
            "no details without thinking: {plain}"
        );
        // A message_delta with output only leaves the input known from message_start.
        let d: WireUsage = serde_json::from_str(r#"{"output_tokens": 30}"#).unwrap();
        let mut merged = u;
        merged.merge(&d.to_ir());
        assert_eq!((merged.input, merged.output), (125, 30));
    }

    // ------------------------------------------- Gemini per-call signatures

    use crate::translate::{RequestOpts, StreamTranslator, convert_request, convert_response};

    /// A Gemini answer: an unsigned thought, then three calls, the first and
    /// the last with their own `thoughtSignature`.
    const GEMINI_THOUGHT: &str = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"plan","thought":true}]}}],"responseId":"r1"}"#;
    const GEMINI_CALLS: &str = r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"get_weather","args":{"city":"Paris"}},"thoughtSignature":"U0lHQQ=="},{"functionCall":{"name":"get_time","args":{}}},{"functionCall":{"name":"get_news","args":{}},"thoughtSignature":"U0lHQg=="}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":3,"totalTokenCount":8},"responseId":"r1"}"#;

    fn gemini_answer() -> String {
        let mut a: Value = serde_json::from_str(GEMINI_CALLS).unwrap();
        let parts = a["candidates"][0]["content"]["parts"]
            .as_array_mut()
            .unwrap();
        parts.insert(0, json!({"text": "plan", "thought": true}));
        a.to_string()
    }

    fn gemini_sse() -> String {
        format!("data: {GEMINI_THOUGHT}\r\n\r\ndata: {GEMINI_CALLS}\r\n\r\n")
    }

    /// The Anthropic client's next request: its history with the answer's
    /// content as given, then the results → the Gemini upstream's model turn
    /// as (functionCall name, thoughtSignature).
    fn next_gemini_turn(content: &Value) -> Vec<(String, Option<String>)> {
        let results: Vec<Value> = content
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == "tool_use")
            .map(|b| json!({"type": "tool_result", "tool_use_id": b["id"], "content": "ok"}))
            .collect();
        let next = json!({"model": "m", "max_tokens": 2048,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": content},
            {"role": "user", "content": results},
        ]});
        let ro = RequestOpts {
            model: "gemini-3-pro".into(),
            stream: false,
        };
        let g: Value = serde_json::from_slice(
            &convert_request(Format::Anthropic, Format::Gemini, &next, &ro)
                .unwrap()
                .body,
        )
        .unwrap();
        let turns: Vec<&Value> = g["contents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["role"] == "model")
            .collect();
        assert_eq!(turns.len(), 1, "{g}");
        assert_eq!(
            g["contents"][2]["parts"][0]["functionResponse"]["name"], "get_weather",
            "{g}"
        );
        // The same history to Anthropic: Gemini's signatures never go there.
        let a: Value = serde_json::from_slice(
            &convert_request(Format::Anthropic, Format::Anthropic, &next, &ro)
                .unwrap()
                .body,
        )
        .unwrap();
        let sent = a["messages"][1]["content"].as_array().unwrap();
        assert!(sent.iter().all(|b| b["type"] == "tool_use"), "{a}");
        turns[0]["parts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p.get("functionCall").is_some())
            .map(|p| {
                (
                    p["functionCall"]["name"].as_str().unwrap().to_string(),
                    p["thoughtSignature"].as_str().map(str::to_string),
                )
            })
            .collect()
    }

    fn want() -> Vec<(String, Option<String>)> {
        vec![
            ("get_weather".into(), Some("U0lHQQ==".into())),
            ("get_time".into(), None),
            ("get_news".into(), Some("U0lHQg==".into())),
        ]
    }

    fn kinds(content: &Value) -> Vec<&str> {
        content
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["type"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn gemini_call_signatures_round_trip_through_anthropic_client() {
        let out = convert_response(
            Format::Gemini,
            Format::Anthropic,
            gemini_answer().as_bytes(),
            &ResponseOpts::default(),
        )
        .unwrap();
        let r: Value = serde_json::from_slice(&out).unwrap();
        let content = &r["content"];
        assert_eq!(
            kinds(content),
            [
                "thinking", "tool_use", "thinking", "tool_use", "tool_use", "thinking"
            ],
            "{r}"
        );
        assert_eq!(
            content[0]["signature"], "",
            "the thought itself was unsigned"
        );
        // The carrier names Gemini and the call it belongs to.
        let w = unwrap_signature(content[2]["signature"].as_str().unwrap()).unwrap();
        assert_eq!(
            (w.origin, w.sig.as_str(), w.id.as_deref(), w.kind.as_str()),
            (
                Some(Format::Gemini),
                "U0lHQQ==",
                content[1]["id"].as_str(),
                "call"
            )
        );
        assert_eq!(next_gemini_turn(content), want());
    }

    #[test]
    fn gemini_call_signatures_round_trip_through_anthropic_stream() {
        let mut t =
            StreamTranslator::new(Format::Gemini, Format::Anthropic, ResponseOpts::default());
        let mut out = Vec::new();
        t.feed(gemini_sse().as_bytes(), &mut out);
        t.finish(&mut out);
        // Rebuild the message as the Anthropic SDK's accumulator does.
        let mut blocks: Vec<Value> = Vec::new();
        let mut json_parts: Vec<String> = Vec::new();
        let mut p = sse::Parser::default();
        let mut on = |e: sse::Event<'_>| {
            let v: Value = serde_json::from_slice(e.data).unwrap();
            let i = v["index"].as_u64().unwrap_or(0) as usize;
            match v["type"].as_str().unwrap() {
                "content_block_start" => {
                    assert_eq!(i, blocks.len(), "indices increase by one");
                    blocks.push(v["content_block"].clone());
                    json_parts.push(String::new());
                }
                "content_block_delta" => {
                    let d = &v["delta"];
                    let b = &mut blocks[i];
                    match d["type"].as_str().unwrap() {
                        "thinking_delta" => {
                            let t = format!(
                                "{}{}",
                                b["thinking"].as_str().unwrap(),
                                d["thinking"].as_str().unwrap()
                            );
                            b["thinking"] = json!(t);
                        }
                        "signature_delta" => b["signature"] = d["signature"].clone(),
                        "input_json_delta" => {
                            json_parts[i].push_str(d["partial_json"].as_str().unwrap())
                        }
                        other => panic!("unexpected delta {other}"),
                    }
                }
                "content_block_stop"
                    if blocks[i]["type"] == "tool_use" && !json_parts[i].is_empty() =>
                {
                    blocks[i]["input"] = serde_json::from_str(&json_parts[i]).unwrap();
                }
                _ => {}
            }
        };
        p.feed(&out, &mut on).unwrap();
        p.finish(&mut on).unwrap();
        let content = Value::Array(blocks);
        assert_eq!(
            kinds(&content),
            [
                "thinking", "tool_use", "thinking", "tool_use", "tool_use", "thinking"
            ],
            "{content}"
        );
        assert_eq!(content[0]["thinking"], "plan");
        assert_eq!(content[1]["input"], json!({"city": "Paris"}));
        assert_eq!(next_gemini_turn(&content), want());
    }

    #[test]
    fn foreign_thinking_signatures_are_wrapped_for_anthropic_clients() {
        // A Gemini-signed thought comes back to Gemini, never to Anthropic.
        let answer = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"plan","thought":true,"thoughtSignature":"VEhPVUdIVA=="},{"text":"hi"}]},"finishReason":"STOP"}],"responseId":"r2"}"#;
        let r: Value = serde_json::from_slice(
            &convert_response(
                Format::Gemini,
                Format::Anthropic,
                answer.as_bytes(),
                &ResponseOpts::default(),
            )
            .unwrap(),
        )
        .unwrap();
        let sig = r["content"][0]["signature"].as_str().unwrap();
        assert_ne!(sig, "VEhPVUdIVA==");
        let parts = decode_blocks(Some(&r["content"]), "content").unwrap();
        assert_eq!(
            parts[0],
            Part::Thinking(ir::Thinking {
                text: "plan".into(),
                signature: Some("VEhPVUdIVA==".into()),
                origin: Some(Format::Gemini),
                id: None,
            })
        );
        // Anthropic's own signatures pass as they are.
        let own = json!([{"type": "thinking", "thinking": "t", "signature": "EqAnthropic"}]);
        assert_eq!(
            decode_blocks(Some(&own), "content").unwrap()[0],
            Part::Thinking(ir::Thinking {
                text: "t".into(),
                signature: Some("EqAnthropic".into()),
                origin: Some(Format::Anthropic),
                id: None,
            })
        );
    }
}
