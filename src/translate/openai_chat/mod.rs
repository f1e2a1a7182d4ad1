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

use super::dropped::{self, Dropped};
use super::json::{self, CowStr, bad, field, idx, inexpressible, join};
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

// ======================================================================= requests

/// A client's Chat Completions body → IR.
pub fn decode_request(body: &Value) -> Result<ir::Request, TranslateError> {
    let m = json::as_object(body, "body")?;
    let mut req = ir::Request {
        extra: ir::Extra::new(Format::OpenAiChat),
        ..Default::default()
    };
    let mut max_completion = None;
    for (k, v) in m {
        if v.is_null() {
            continue;
        }
        let s = &mut req.sampling;
        match k.as_str() {
            "model" => req.model = json::req_str(m, "model", "")?.to_string(),
            "messages" => {}
            "stream" => req.stream = json::opt_bool(m, k, "")?.unwrap_or(false),
            "stream_options" => {
                let o = json::as_object(v, k)?;
                req.stream_include_usage = json::opt_bool(o, "include_usage", k)?.unwrap_or(false);
                req.extra.hints.insert(k.clone(), v.clone());
            }
            "temperature" => s.temperature = json::opt_f64(m, k, "")?,
            "top_p" => s.top_p = json::opt_f64(m, k, "")?,
            "top_k" => s.top_k = json::opt_u64(m, k, "")?,
            "max_tokens" => s.max_tokens = json::opt_u64(m, k, "")?,
            "max_completion_tokens" => max_completion = json::opt_u64(m, k, "")?,
            "stop" => {
                s.stop = match v {
                    Value::String(x) => vec![x.clone()],
                    Value::Array(a) => a
                        .iter()
                        .enumerate()
                        .map(|(i, x)| {
                            x.as_str()
                                .map(str::to_string)
                                .ok_or_else(|| bad(&idx("stop", i), "expected a string"))
                        })
                        .collect::<Result<_, _>>()?,
                    _ => return Err(bad("stop", "expected a string or an array of strings")),
                }
            }
            "seed" => s.seed = json::opt_i64(m, k, "")?,
            "frequency_penalty" => s.frequency_penalty = json::opt_f64(m, k, "")?,
            "presence_penalty" => s.presence_penalty = json::opt_f64(m, k, "")?,
            "n" => s.n = json::opt_u64(m, k, "")?,
            "user" => req.user = Some(json::req_str(m, k, "")?.to_string()),
            "tools" => {}
            "tool_choice" => req.tool_choice = Some(decode_tool_choice(v)?),
            "parallel_tool_calls" => req.parallel_tool_calls = json::opt_bool(m, k, "")?,
            "reasoning_effort" => {
                let e = json::req_str(m, k, "")?;
                req.reasoning = Some(ir::Reasoning {
                    disabled: e == "none",
                    effort: (e != "none").then(|| e.to_string()),
                    ..Default::default()
                });
            }
            "response_format" => req.response_format = decode_response_format(v)?,
            // `logprobs: false` and text-only `modalities` ask for nothing.
            "logprobs" if v == &Value::Bool(false) => {
                req.extra.hints.insert(k.clone(), v.clone());
            }
            "modalities" if v == &json!(["text"]) => {
                req.extra.hints.insert(k.clone(), v.clone());
            }
            _ if HINTS.contains(&k.as_str()) => {
                req.extra.hints.insert(k.clone(), v.clone());
            }
            _ => {
                req.extra.fields.insert(k.clone(), v.clone());
            }
        }
    }
    if max_completion.is_some() {
        req.sampling.max_tokens = max_completion;
    }
    if req.user.is_none()
        && let Some(Value::String(id)) = m.get("safety_identifier")
    {
        req.user = Some(id.clone());
        req.extra.user_from = "safety_identifier";
    }
    req.extra.cache_paths = dropped::cache_control_paths(m);
    if let Some(tools) = json::opt_array(m, "tools", "")? {
        for (i, t) in tools.iter().enumerate() {
            req.tools.push(decode_tool(t, &idx("tools", i))?);
        }
    }
    let messages = json::opt_array(m, "messages", "")?
        .ok_or_else(|| bad("messages", "required array missing"))?;
    decode_messages(messages, &mut req)?;
    Ok(req)
}

fn decode_tool(t: &Value, path: &str) -> Result<ir::Tool, TranslateError> {
    let o = json::as_object(t, path)?;
    if json::opt_str(o, "type", path)?.unwrap_or("function") != "function" {
        return Ok(ir::Tool::Raw(ir::Raw {
            format: Format::OpenAiChat,
            value: t.clone(),
        }));
    }
    let fp = join(path, "function");
    let f = json::as_object(
        field(o, "function").ok_or_else(|| bad(&fp, "required object missing"))?,
        &fp,
    )?;
    Ok(ir::Tool::Function(ir::FunctionTool {
        name: json::req_str(f, "name", &fp)?.to_string(),
        description: json::opt_str(f, "description", &fp)?.map(str::to_string),
        parameters: field(f, "parameters").cloned().unwrap_or_else(empty_schema),
        strict: json::opt_bool(f, "strict", &fp)?,
        cache_control: field(o, "cache_control").cloned(),
        hints: Map::new(),
    }))
}

pub(crate) fn empty_schema() -> Value {
    json!({"type": "object", "properties": {}})
}

fn decode_tool_choice(v: &Value) -> Result<ir::ToolChoice, TranslateError> {
    match v {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(ir::ToolChoice::Auto),
            "none" => Ok(ir::ToolChoice::None),
            "required" => Ok(ir::ToolChoice::Required),
            _ => Err(bad("tool_choice", format_args!("unknown value {s:?}"))),
        },
        Value::Object(o) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| bad("tool_choice.function.name", "required string missing"))?;
            Ok(ir::ToolChoice::Tool(name.to_string()))
        }
        _ => Err(bad("tool_choice", "expected a string or an object")),
    }
}

fn decode_response_format(v: &Value) -> Result<Option<ir::ResponseFormat>, TranslateError> {
    let o = json::as_object(v, "response_format")?;
    match json::req_str(o, "type", "response_format")? {
        "text" => Ok(Some(ir::ResponseFormat::Text)),
        "json_object" => Ok(Some(ir::ResponseFormat::JsonObject)),
        "json_schema" => {
            let p = "response_format.json_schema";
            let js = json::as_object(
                field(o, "json_schema").ok_or_else(|| bad(p, "required object missing"))?,
                p,
            )?;
            Ok(Some(ir::ResponseFormat::JsonSchema {
                name: json::opt_str(js, "name", p)?
                    .unwrap_or("response")
                    .to_string(),
                description: json::opt_str(js, "description", p)?.map(str::to_string),
                schema: field(js, "schema").cloned().unwrap_or_else(empty_schema),
                strict: json::opt_bool(js, "strict", p)?,
            }))
        }
        other => Err(bad(
            "response_format.type",
            format_args!("unknown value {other:?}"),
        )),
    }
}

fn decode_messages(arr: &[Value], req: &mut ir::Request) -> Result<(), TranslateError> {
    let mut leading = true;
    let mut last_was_tool = false;
    for (i, mv) in arr.iter().enumerate() {
        let path = idx("messages", i);
        let m = json::as_object(mv, &path)?;
        let role = json::req_str(m, "role", &path)?;
        let name = json::opt_str(m, "name", &path)?.map(str::to_string);
        let msg_cache = field(m, "cache_control");
        let is_tool = role == "tool";
        match role {
            "system" | "developer" => {
                let mut parts = decode_text_parts(field(m, "content"), &join(&path, "content"))?;
                apply_cache(&mut parts, msg_cache);
                if leading && name.is_none() {
                    req.system.extend(parts);
                } else {
                    let mut msg =
                        ir::Message::new(Role::System, parts.into_iter().map(Part::Text).collect());
                    msg.name = name;
                    req.messages.push(msg);
                }
            }
            "user" => {
                leading = false;
                let cp = join(&path, "content");
                let content = field(m, "content")
                    .ok_or_else(|| bad(&cp, "required string or array missing"))?;
                let mut parts = decode_user_content(Some(content), &cp)?;
                apply_cache_parts(&mut parts, msg_cache);
                let mut msg = ir::Message::new(Role::User, parts);
                msg.name = name;
                req.messages.push(msg);
            }
            "assistant" => {
                leading = false;
                let mut parts = decode_assistant(m, &path)?;
                apply_cache_parts(&mut parts, msg_cache);
                let mut msg = ir::Message::new(Role::Assistant, parts);
                msg.name = name;
                req.messages.push(msg);
            }
            "tool" => {
                leading = false;
                let id = json::req_str(m, "tool_call_id", &path)?.to_string();
                let content = decode_user_content(field(m, "content"), &join(&path, "content"))?;
                let part = Part::ToolResult(ir::ToolResult {
                    id,
                    name,
                    content,
                    is_error: false,
                    cache_control: msg_cache.cloned(),
                });
                match req.messages.last_mut() {
                    Some(last) if last_was_tool => last.content.push(part),
                    _ => req.messages.push(ir::Message::new(Role::User, vec![part])),
                }
            }
            "function" => {
                return Err(bad(
                    &join(&path, "role"),
                    "legacy `function` messages are not supported; use `tool`",
                ));
            }
            other => {
                return Err(bad(
                    &join(&path, "role"),
                    format_args!("unknown role {other:?}"),
                ));
            }
        }
        last_was_tool = is_tool;
    }
    Ok(())
}

/// Message-level `cache_control` (LiteLLM style) marks the message's last block.
fn apply_cache(parts: &mut [ir::TextPart], cache: Option<&Value>) {
    if let (Some(c), Some(last)) = (cache, parts.last_mut()) {
        last.cache_control = Some(c.clone());
    }
}

fn apply_cache_parts(parts: &mut [Part], cache: Option<&Value>) {
    let Some(c) = cache else { return };
    match parts.last_mut() {
        Some(Part::Text(t)) => t.cache_control = Some(c.clone()),
        Some(Part::Image(t)) => t.cache_control = Some(c.clone()),
        Some(Part::ToolCall(t)) => t.cache_control = Some(c.clone()),
        Some(Part::ToolResult(t)) => t.cache_control = Some(c.clone()),
        _ => {}
    }
}

fn decode_text_parts(
    content: Option<&Value>,
    path: &str,
) -> Result<Vec<ir::TextPart>, TranslateError> {
    match content {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![ir::TextPart::new(s.clone())]),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let pp = idx(path, i);
                let o = json::as_object(p, &pp)?;
                match json::req_str(o, "type", &pp)? {
                    "text" => Ok(ir::TextPart {
                        text: json::req_str(o, "text", &pp)?.to_string(),
                        cache_control: field(o, "cache_control").cloned(),
                        signature: None,
                    }),
                    other => Err(bad(
                        &join(&pp, "type"),
                        format_args!("expected \"text\", got {other:?}"),
                    )),
                }
            })
            .collect(),
        Some(v) => Err(bad(
            path,
            format_args!("expected a string or an array, got {}", json::type_name(v)),
        )),
    }
}

fn decode_user_content(content: Option<&Value>, path: &str) -> Result<Vec<Part>, TranslateError> {
    let a = match content {
        None => return Ok(Vec::new()),
        Some(Value::String(s)) => return Ok(vec![Part::Text(ir::TextPart::new(s.clone()))]),
        Some(Value::Array(a)) => a,
        Some(v) => {
            return Err(bad(
                path,
                format_args!("expected a string or an array, got {}", json::type_name(v)),
            ));
        }
    };
    let mut parts = Vec::with_capacity(a.len());
    for (i, p) in a.iter().enumerate() {
        let pp = idx(path, i);
        let o = json::as_object(p, &pp)?;
        let cache = field(o, "cache_control").cloned();
        match json::req_str(o, "type", &pp)? {
            "text" => parts.push(Part::Text(ir::TextPart {
                text: json::req_str(o, "text", &pp)?.to_string(),
                cache_control: cache,
                signature: None,
            })),
            "image_url" => {
                let ip = join(&pp, "image_url");
                let (url, detail) = match field(o, "image_url") {
                    Some(Value::String(u)) => (u.as_str(), None),
                    Some(Value::Object(io)) => (
                        json::req_str(io, "url", &ip)?,
                        json::opt_str(io, "detail", &ip)?.map(str::to_string),
                    ),
                    _ => return Err(bad(&ip, "expected an object with `url`")),
                };
                parts.push(Part::Image(ir::ImagePart {
                    source: image_source(url),
                    detail,
                    cache_control: cache,
                }));
            }
            _ => parts.push(Part::Raw(ir::Raw {
                format: Format::OpenAiChat,
                value: p.clone(),
            })),
        }
    }
    Ok(parts)
}

fn image_source(url: &str) -> ir::ImageSource {
    match json::parse_data_url(url) {
        Some((media, data)) => ir::ImageSource::Base64 {
            media_type: media.to_string(),
            data: data.to_string(),
        },
        None => ir::ImageSource::Url {
            url: url.to_string(),
        },
    }
}

/// `reasoning_details[].format` ⇄ the format whose signature it carries.
pub(crate) fn details_format(f: Option<Format>) -> &'static str {
    match f {
        Some(Format::Anthropic) => "anthropic-claude-v1",
        Some(Format::OpenAiResponses) => "openai-responses-v1",
        Some(Format::Gemini) => "google-gemini-v1",
        Some(Format::OpenAiChat) | None => "unknown",
    }
}

fn details_origin(s: Option<&str>) -> Option<Format> {
    match s? {
        "anthropic-claude-v1" => Some(Format::Anthropic),
        "openai-responses-v1" => Some(Format::OpenAiResponses),
        "google-gemini-v1" => Some(Format::Gemini),
        _ => None,
    }
}

/// Thinking parts from `reasoning_details` (authoritative when present) or
/// `reasoning_content` / `reasoning`.
fn decode_reasoning(m: &Map<String, Value>, path: &str) -> Result<Vec<Part>, TranslateError> {
    let mut parts = Vec::new();
    if let Some(details) = json::opt_array(m, "reasoning_details", path)? {
        let dp = join(path, "reasoning_details");
        for (i, d) in details.iter().enumerate() {
            let p = idx(&dp, i);
            let o = json::as_object(d, &p)?;
            let origin = details_origin(json::opt_str(o, "format", &p)?);
            let id = json::opt_str(o, "id", &p)?.map(str::to_string);
            match json::req_str(o, "type", &p)? {
                "reasoning.text" => parts.push(Part::Thinking(ir::Thinking {
                    text: json::opt_str(o, "text", &p)?.unwrap_or("").to_string(),
                    signature: json::opt_str(o, "signature", &p)?.map(str::to_string),
                    origin,
                    id,
                })),
                "reasoning.summary" => parts.push(Part::Thinking(ir::Thinking {
                    text: json::opt_str(o, "summary", &p)?.unwrap_or("").to_string(),
                    signature: None,
                    origin,
                    id,
                })),
                "reasoning.encrypted" => {
                    let data = json::req_str(o, "data", &p)?.to_string();
                    if origin == Some(Format::Anthropic) || origin.is_none() {
                        parts.push(Part::RedactedThinking(ir::RedactedThinking {
                            data,
                            origin,
                        }));
                    } else {
                        parts.push(Part::Thinking(ir::Thinking {
                            text: String::new(),
                            signature: Some(data),
                            origin,
                            id,
                        }));
                    }
                }
                other => {
                    return Err(bad(
                        &join(&p, "type"),
                        format_args!("unknown value {other:?}"),
                    ));
                }
            }
        }
        if !parts.is_empty() {
            return Ok(parts);
        }
    }
    let text = match json::opt_str(m, "reasoning_content", path)? {
        Some(t) => Some(t),
        None => json::opt_str(m, "reasoning", path)?,
    };
    if let Some(t) = text.filter(|t| !t.is_empty()) {
        parts.push(Part::Thinking(ir::Thinking {
            text: t.to_string(),
            ..Default::default()
        }));
    }
    Ok(parts)
}

fn decode_assistant(m: &Map<String, Value>, path: &str) -> Result<Vec<Part>, TranslateError> {
    let mut parts = decode_reasoning(m, path)?;
    let cp = join(path, "content");
    match field(m, "content") {
        None => {}
        Some(Value::String(s)) => parts.push(Part::Text(ir::TextPart::new(s.clone()))),
        Some(Value::Array(a)) => {
            for (i, p) in a.iter().enumerate() {
                let pp = idx(&cp, i);
                let o = json::as_object(p, &pp)?;
                let text = match json::req_str(o, "type", &pp)? {
                    "text" => json::req_str(o, "text", &pp)?,
                    "refusal" => json::req_str(o, "refusal", &pp)?,
                    other => {
                        return Err(bad(
                            &join(&pp, "type"),
                            format_args!("unsupported in assistant content: {other:?}"),
                        ));
                    }
                };
                parts.push(Part::Text(ir::TextPart {
                    text: text.to_string(),
                    cache_control: field(o, "cache_control").cloned(),
                    signature: None,
                }));
            }
        }
        Some(v) => {
            return Err(bad(
                &cp,
                format_args!(
                    "expected a string, an array or null, got {}",
                    json::type_name(v)
                ),
            ));
        }
    }
    if let Some(r) = json::opt_str(m, "refusal", path)? {
        parts.push(Part::Text(ir::TextPart::new(r)));
    }
    if field(m, "function_call").is_some() {
        return Err(bad(
            &join(path, "function_call"),
            "legacy function_call is not supported; use tool_calls",
        ));
    }
    if let Some(calls) = json::opt_array(m, "tool_calls", path)? {
        let tp = join(path, "tool_calls");
        for (i, c) in calls.iter().enumerate() {
            let p = idx(&tp, i);
            let o = json::as_object(c, &p)?;
            let fp = join(&p, "function");
            let f = json::as_object(
                field(o, "function").ok_or_else(|| bad(&fp, "required object missing"))?,
                &fp,
            )?;
            let arguments = match field(f, "arguments") {
                None => String::new(),
                Some(Value::String(s)) => s.clone(),
                // Some clients send the object itself.
                Some(v @ Value::Object(_)) => v.to_string(),
                Some(v) => {
                    return Err(bad(
                        &join(&fp, "arguments"),
                        format_args!("expected a string, got {}", json::type_name(v)),
                    ));
                }
            };
            parts.push(Part::ToolCall(ir::ToolCall {
                id: json::req_str(o, "id", &p)?.to_string(),
                name: json::req_str(f, "name", &fp)?.to_string(),
                arguments,
                cache_control: field(o, "cache_control").cloned(),
                signature: decode_call_signature(o, &p)?,
            }));
        }
    }
    Ok(parts)
}

/// IR → a Chat Completions body for OpenAI itself.
pub fn encode_request(
    req: &ir::Request,
    opts: &RequestOpts,
    dropped: &mut Dropped,
) -> Result<Vec<u8>, TranslateError> {
    encode_request_for(req, opts, false, dropped)
}

/// IR → a Chat Completions body; `compatible`: for an OpenAI-compatible server
/// rather than OpenAI, which takes the output limit as `max_tokens` (Mistral and
/// others reject `max_completion_tokens`; OpenAI's reasoning models reject
/// `max_tokens`).
pub fn encode_request_for(
    req: &ir::Request,
    opts: &RequestOpts,
    compatible: bool,
    dropped: &mut Dropped,
) -> Result<Vec<u8>, TranslateError> {
    let same = req.extra.format == Format::OpenAiChat;
    if !same && let Some(k) = req.extra.fields.keys().next() {
        return Err(inexpressible(k, NAME));
    }
    dropped::name_common(req, Format::OpenAiChat, true, dropped);
    let mut o = Map::new();
    let model = if opts.model.is_empty() {
        &req.model
    } else {
        &opts.model
    };
    o.insert("model".into(), Value::String(model.clone()));
    o.insert("messages".into(), Value::Array(encode_messages(req)?));
    if opts.stream {
        o.insert("stream".into(), Value::Bool(true));
        // The gateway needs usage; the client's own wish is honoured on the way back.
        o.insert("stream_options".into(), json!({"include_usage": true}));
    }
    let s = &req.sampling;
    if let Some(v) = s.max_tokens {
        let key = if compatible {
            "max_tokens"
        } else {
            "max_completion_tokens"
        };
        o.insert(key.into(), v.into());
    }
    if let Some(v) = s.temperature {
        o.insert("temperature".into(), v.into());
    }
    if let Some(v) = s.top_p {
        o.insert("top_p".into(), v.into());
    }
    if let Some(v) = s.top_k {
        // A sampling hint OpenAI has no field for (README table).
        if same {
            o.insert("top_k".into(), v.into());
        } else {
            dropped.push(dropped::sampling_path(req.extra.format, "top_k"));
        }
    }
    if !s.stop.is_empty() {
        o.insert("stop".into(), json!(s.stop));
    }
    if let Some(v) = s.seed {
        o.insert("seed".into(), v.into());
    }
    if let Some(v) = s.frequency_penalty {
        o.insert("frequency_penalty".into(), v.into());
    }
    if let Some(v) = s.presence_penalty {
        o.insert("presence_penalty".into(), v.into());
    }
    if let Some(v) = s.n {
        o.insert("n".into(), v.into());
    }
    if let Some(u) = &req.user {
        o.insert("user".into(), Value::String(u.clone()));
    }
    let mut tools = Vec::with_capacity(req.tools.len());
    for (i, t) in req.tools.iter().enumerate() {
        tools.push(match t {
            ir::Tool::Function(f) => {
                let mut func = json!({"name": f.name, "parameters": f.parameters});
                if let Some(d) = &f.description {
                    func["description"] = Value::String(d.clone());
                }
                if let (Some(st), true) = (f.strict, same) {
                    func["strict"] = Value::Bool(st);
                }
                json!({"type": "function", "function": func})
            }
            ir::Tool::Raw(r) if r.format == Format::OpenAiChat => r.value.clone(),
            ir::Tool::Raw(r) if dropped::is_tool_search(r) => {
                dropped.push(idx("tools", i));
                continue;
            }
            ir::Tool::Raw(r) => {
                return Err(json::inexpressible_kind(&idx("tools", i), r.kind(), NAME));
            }
        });
    }
    if !tools.is_empty() {
        o.insert("tools".into(), Value::Array(tools));
        if let Some(tc) = &req.tool_choice {
            o.insert(
                "tool_choice".into(),
                match tc {
                    ir::ToolChoice::Auto => json!("auto"),
                    ir::ToolChoice::None => json!("none"),
                    ir::ToolChoice::Required => json!("required"),
                    ir::ToolChoice::Tool(n) => json!({"type": "function", "function": {"name": n}}),
                },
            );
        }
        if let Some(p) = req.parallel_tool_calls {
            o.insert("parallel_tool_calls".into(), Value::Bool(p));
        }
    }
    if let Some(r) = &req.reasoning
        && !r.disabled
    {
        let effort = match (&r.effort, r.budget_tokens) {
            (Some(e), _) => Some(e.clone()),
            (None, Some(b)) => Some(ir::budget_to_effort(b).to_string()),
            (None, None) => None,
        };
        if let Some(e) = effort {
            o.insert("reasoning_effort".into(), Value::String(e));
        }
    }
    if let Some(rf) = &req.response_format {
        o.insert(
            "response_format".into(),
            match rf {
                ir::ResponseFormat::Text => json!({"type": "text"}),
                ir::ResponseFormat::JsonObject => json!({"type": "json_object"}),
                ir::ResponseFormat::JsonSchema {
                    name,
                    description,
                    schema,
                    strict,
                } => {
                    let mut js = json!({"name": name, "schema": schema});
                    if let Some(d) = description {
                        js["description"] = Value::String(d.clone());
                    }
                    if let Some(s) = strict {
                        js["strict"] = Value::Bool(*s);
                    }
                    json!({"type": "json_schema", "json_schema": js})
                }
            },
        );
    }
    if same {
        for (k, v) in req.extra.fields.iter().chain(req.extra.hints.iter()) {
            if k != "stream_options" {
                o.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    serde_json::to_vec(&o).map_err(|e| TranslateError::bad_request(e.to_string(), None))
}

/// Text-only content as one string: many OpenAI-compatible servers (DeepSeek,
/// Groq, ...) reject arrays of text parts, and the blocks are read as one text
/// anyway. Only content with images keeps the array form.
const TEXT_JOIN: &str = "\n\n";

fn text_content(parts: &[&ir::TextPart]) -> Value {
    match parts {
        [one] => Value::String(one.text.clone()),
        many => Value::String(
            many.iter()
                .map(|p| p.text.as_str())
                .collect::<Vec<_>>()
                .join(TEXT_JOIN),
        ),
    }
}

fn image_url(img: &ir::ImagePart) -> Value {
    let url = match &img.source {
        ir::ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        ir::ImageSource::Url { url } => url.clone(),
    };
    let mut iu = json!({"url": url});
    if let Some(d) = &img.detail {
        iu["detail"] = Value::String(d.clone());
    }
    json!({"type": "image_url", "image_url": iu})
}

fn raw_part(r: &ir::Raw, path: &str) -> Result<Value, TranslateError> {
    if r.format == Format::OpenAiChat {
        Ok(r.value.clone())
    } else {
        Err(json::inexpressible_kind(path, r.kind(), NAME))
    }
}

fn encode_messages(req: &ir::Request) -> Result<Vec<Value>, TranslateError> {
    // Anthropic/Gemini continue a final assistant turn (prefill); Chat
    // Completions would answer after it instead.
    if req.extra.format != Format::OpenAiChat
        && let Some(last) = req.messages.last()
        && last.role == Role::Assistant
        && last
            .content
            .iter()
            .any(|p| matches!(p, Part::Text(t) if !t.text.is_empty()))
    {
        return Err(bad(
            &idx("messages", req.messages.len() - 1),
            "a final assistant message (prefill) cannot be expressed in the openai-chat format",
        ));
    }
    let mut out = Vec::with_capacity(req.messages.len() + 1);
    if !req.system.is_empty() {
        let parts: Vec<&ir::TextPart> = req.system.iter().collect();
        out.push(json!({"role": "system", "content": text_content(&parts)}));
    }
    for (i, m) in req.messages.iter().enumerate() {
        let path = idx("messages", i);
        match m.role {
            Role::System => {
                let parts: Vec<&ir::TextPart> = m
                    .content
                    .iter()
                    .filter_map(|p| match p {
                        Part::Text(t) => Some(t),
                        _ => None,
                    })
                    .collect();
                let mut v = json!({"role": "system", "content": text_content(&parts)});
                if let Some(n) = &m.name {
                    v["name"] = Value::String(n.clone());
                }
                out.push(v);
            }
            Role::User => encode_user(m, &path, &mut out)?,
            Role::Assistant => out.push(encode_assistant(m, &path)?),
        }
    }
    Ok(out)
}

fn encode_user(m: &ir::Message, path: &str, out: &mut Vec<Value>) -> Result<(), TranslateError> {
    let mut content = Vec::new();
    let mut only_text = true;
    let mut result_images = Vec::new();
    for (j, p) in m.content.iter().enumerate() {
        let pp = idx(&join(path, "content"), j);
        match p {
            Part::ToolResult(r) => {
                let mut texts = Vec::new();
                for (k, c) in r.content.iter().enumerate() {
                    match c {
                        Part::Text(t) => texts.push(t.text.as_str()),
                        Part::Image(img) => result_images.push(image_url(img)),
                        Part::Raw(raw) => {
                            raw_part(raw, &idx(&join(&pp, "content"), k))?;
                        }
                        _ => return Err(inexpressible(&idx(&join(&pp, "content"), k), NAME)),
                    }
                }
                let mut text = texts.join(TEXT_JOIN);
                if r.is_error {
                    text.insert_str(0, "Error: ");
                }
                out.push(json!({"role": "tool", "tool_call_id": r.id, "content": text}));
            }
            Part::Text(t) => content.push(json!({"type": "text", "text": t.text})),
            Part::Image(img) => {
                only_text = false;
                content.push(image_url(img));
            }
            Part::Raw(r) => {
                only_text = false;
                content.push(raw_part(r, &pp)?);
            }
            Part::ToolCall(_) | Part::Thinking(_) | Part::RedactedThinking(_) => {
                return Err(bad(&pp, "not allowed in a user message"));
            }
        }
    }
    if !result_images.is_empty() {
        out.push(json!({"role": "user", "content": result_images}));
    }
    if !content.is_empty() {
        let c = if only_text {
            let texts: Vec<&str> = content.iter().filter_map(|v| v["text"].as_str()).collect();
            Value::String(texts.join(TEXT_JOIN))
        } else {
            Value::Array(content)
        };
        let mut v = json!({"role": "user", "content": c});
        if let Some(n) = &m.name {
            v["name"] = Value::String(n.clone());
        }
        out.push(v);
    }
    Ok(())
}

fn encode_assistant(m: &ir::Message, path: &str) -> Result<Value, TranslateError> {
    let mut texts: Vec<&str> = Vec::new();
    let mut calls = Vec::new();
    let mut reasoning = String::new();
    for (j, p) in m.content.iter().enumerate() {
        let pp = idx(&join(path, "content"), j);
        match p {
            Part::Text(t) => texts.push(&t.text),
            Part::ToolCall(c) => calls.push(json!({
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": if c.arguments.is_empty() { "{}" } else { &c.arguments }},
            })),
            // Only unsigned thinking is meaningful to an OpenAI-format upstream.
            Part::Thinking(t) if t.signature.is_none() => reasoning.push_str(&t.text),
            Part::Thinking(_) | Part::RedactedThinking(_) => {}
            Part::Raw(r) => {
                raw_part(r, &pp)?;
            }
            Part::Image(_) | Part::ToolResult(_) => return Err(bad(&pp, "not allowed in an assistant message")),
        }
    }
    let mut v = json!({"role": "assistant"});
    v["content"] = match texts.as_slice() {
        [] => Value::Null,
        many => Value::String(many.join(TEXT_JOIN)),
    };
    if !calls.is_empty() {
        v["tool_calls"] = Value::Array(calls);
    }
    if !reasoning.is_empty() {
        v["reasoning_content"] = Value::String(reasoning);
    }
    if let Some(n) = &m.name {
        v["name"] = Value::String(n.clone());
    }
    Ok(v)
}

// ======================================================================= responses

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct WireUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<PromptDetails>,
    completion_tokens_details: Option<CompletionDetails>,
    /// DeepSeek reports cache hits here.
    prompt_cache_hit_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PromptDetails {
    cached_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CompletionDetails {
    reasoning_tokens: Option<u64>,
}

impl WireUsage {
    fn to_ir(&self) -> ir::Usage {
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

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    created: Option<u64>,
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    #[serde(default)]
    message: Option<Map<String, Value>>,
    #[serde(default)]
    finish_reason: Option<String>,
    /// vLLM: the stop string that ended the answer.
    #[serde(default)]
    stop_reason: Option<Value>,
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

fn upstream_err(e: impl std::fmt::Display) -> TranslateError {
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
        let mut parts = decode_reasoning(m, "message").map_err(|e| upstream_err(e.message))?;
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

#[derive(Serialize)]
struct OutUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: OutPromptDetails,
    completion_tokens_details: OutCompletionDetails,
}

#[derive(Serialize)]
struct OutPromptDetails {
    cached_tokens: u64,
}

#[derive(Serialize)]
struct OutCompletionDetails {
    reasoning_tokens: u64,
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

#[derive(Serialize)]
struct OutToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: OutFunction<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extra_content: Option<ExtraContent<'a>>,
}

/// Gemini's own OpenAI-compatible carrier of a functionCall part's
/// `thoughtSignature`: `tool_calls[i].extra_content.google.thought_signature`.
#[derive(Serialize)]
struct ExtraContent<'a> {
    google: GoogleExtra<'a>,
}

#[derive(Serialize)]
struct GoogleExtra<'a> {
    thought_signature: &'a str,
}

fn extra_content(sig: Option<&str>) -> Option<ExtraContent<'_>> {
    sig.filter(|s| !s.is_empty()).map(|s| ExtraContent {
        google: GoogleExtra {
            thought_signature: s,
        },
    })
}

/// A tool call's Gemini signature as a client gives it back (see [`ExtraContent`]).
fn decode_call_signature(
    o: &Map<String, Value>,
    path: &str,
) -> Result<Option<String>, TranslateError> {
    let Some(g) = field(o, "extra_content")
        .and_then(|e| e.get("google"))
        .and_then(|g| g.get("thought_signature"))
    else {
        return Ok(None);
    };
    match g {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        v => Err(bad(
            &join(path, "extra_content.google.thought_signature"),
            format_args!("expected a string, got {}", json::type_name(v)),
        )),
    }
}

#[derive(Serialize)]
struct OutFunction<'a> {
    name: &'a str,
    arguments: &'a str,
}

/// One `reasoning_details` entry (OpenRouter convention).
#[derive(Serialize)]
struct OutDetail<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    format: &'static str,
    index: usize,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    content: Option<Cow<'a, str>>,
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OutToolCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reasoning_details: Vec<OutDetail<'a>>,
}

#[derive(Serialize)]
struct OutChoice<'a> {
    index: u32,
    message: OutMessage<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
    /// The matched stop sequence (vLLM's extension; OpenAI SDKs ignore it).
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_reason: Option<&'a str>,
}

fn stop_sequence(r: Option<&FinishReason>) -> Option<&str> {
    match r {
        Some(FinishReason::StopSequence(Some(s))) => Some(s),
        _ => None,
    }
}

#[derive(Serialize)]
struct OutResponse<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [OutChoice<'a>; 1],
    usage: OutUsage,
}

fn concat<'a>(pieces: &[&'a str]) -> Option<Cow<'a, str>> {
    match pieces {
        [] => None,
        [one] => Some(Cow::Borrowed(one)),
        many => Some(Cow::Owned(many.concat())),
    }
}

/// Tool-call arguments as sent to OpenAI clients (`""` is not valid JSON).
fn args_or_empty_object(a: &str) -> &str {
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

// ======================================================================= streams

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default)]
    id: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    model: Option<CowStr<'a>>,
    #[serde(default)]
    created: Option<u64>,
    #[serde(borrow, default)]
    choices: Vec<ChunkChoice<'a>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkChoice<'a> {
    #[serde(default)]
    index: u64,
    #[serde(borrow, default)]
    delta: Option<ChunkDelta<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<CowStr<'a>>,
    #[serde(default)]
    stop_reason: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkDelta<'a> {
    #[serde(borrow, default)]
    content: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    reasoning_content: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    reasoning: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    refusal: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolCallDelta<'a>>>,
    #[serde(default)]
    reasoning_details: Option<Vec<Value>>,
}

#[derive(Deserialize)]
struct ToolCallDelta<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    id: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
struct FunctionDelta<'a> {
    #[serde(borrow, default)]
    name: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    arguments: Option<CowStr<'a>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text(usize),
    Thinking(usize),
    /// Position in `tools`.
    Tool(usize),
}

#[derive(Debug)]
struct ToolSlot {
    oa_index: u64,
    id: String,
    name: String,
    /// IR block index once the block is open (a call opens when its name is known).
    ir: Option<usize>,
    pending_args: String,
}

/// OpenAI chunks → IR events. Per-index tool state; a new call opens only on a
/// new index (or a new id on a reused index) and once its name is known, so a
/// continuation delta with a null/empty name never opens a block.
#[derive(Debug)]
pub struct StreamDecode {
    started: bool,
    done: bool,
    open: Open,
    next: usize,
    tools: Vec<ToolSlot>,
    finish: Option<FinishReason>,
    refused: bool,
    usage: ir::Usage,
}

impl Default for StreamDecode {
    fn default() -> Self {
        StreamDecode {
            started: false,
            done: false,
            open: Open::None,
            next: 0,
            tools: Vec::new(),
            finish: None,
            refused: false,
            usage: ir::Usage::default(),
        }
    }
}

fn malformed(e: impl std::fmt::Display) -> StreamEvent<'static> {
    StreamEvent::Error(ir::StreamError {
        status: 502,
        message: format!("upstream sent a malformed OpenAI stream event: {e}"),
    })
}

/// An in-stream `{"error": ...}` object → IR error.
fn stream_error(e: &Value) -> ir::StreamError {
    let kind = e.get("type").and_then(Value::as_str).unwrap_or("");
    let status = match e.get("code") {
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| (400..600).contains(c)),
        _ => None,
    }
    .unwrap_or_else(|| ir::status_for_error_type(kind));
    ir::StreamError {
        status,
        message: e
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("upstream error")
            .to_string(),
    }
}

impl StreamDecode {
    fn close(&mut self, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        let index = match self.open {
            Open::None => return,
            Open::Text(i) | Open::Thinking(i) => i,
            Open::Tool(p) => self.tools[p].ir.unwrap_or(0),
        };
        self.open = Open::None;
        sink(StreamEvent::BlockStop { index });
    }

    fn open_block(
        &mut self,
        block: BlockStart<'_>,
        sink: &mut dyn FnMut(StreamEvent<'_>),
    ) -> usize {
        self.close(sink);
        let index = self.next;
        self.next += 1;
        sink(StreamEvent::BlockStart { index, block });
        index
    }

    fn text(&mut self, s: Cow<'_, str>, thinking: bool, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        if s.is_empty() {
            return;
        }
        let index = match (self.open, thinking) {
            (Open::Text(i), false) | (Open::Thinking(i), true) => i,
            (_, false) => {
                let i = self.open_block(BlockStart::Text, sink);
                self.open = Open::Text(i);
                i
            }
            (_, true) => {
                let i = self.open_block(BlockStart::Thinking, sink);
                self.open = Open::Thinking(i);
                i
            }
        };
        let delta = if thinking {
            Delta::Thinking(s)
        } else {
            Delta::Text(s)
        };
        sink(StreamEvent::Delta { index, delta });
    }

    fn start_tool(&mut self, pos: usize, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        self.close(sink);
        let index = self.next;
        self.next += 1;
        let slot = &mut self.tools[pos];
        slot.ir = Some(index);
        if slot.id.is_empty() {
            slot.id = format!("call_{index}");
        }
        sink(StreamEvent::BlockStart {
            index,
            block: BlockStart::ToolCall {
                id: Cow::Borrowed(&slot.id),
                name: Cow::Borrowed(&slot.name),
            },
        });
        self.open = Open::Tool(pos);
        if !slot.pending_args.is_empty() {
            let args = std::mem::take(&mut slot.pending_args);
            sink(StreamEvent::Delta {
                index,
                delta: Delta::ToolArgs(Cow::Owned(args)),
            });
        }
    }

    fn tool_delta(&mut self, tc: ToolCallDelta<'_>, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        let id = tc.id.as_ref().map(CowStr::as_str).unwrap_or("");
        let oa = match tc.index {
            Some(i) => i,
            None if !id.is_empty() => self.tools.len() as u64,
            None => match self.open {
                Open::Tool(p) => self.tools[p].oa_index,
                _ => 0,
            },
        };
        let pos = match self.tools.iter().rposition(|s| s.oa_index == oa) {
            // Some servers reuse index 0 for parallel calls; a new id is a new call.
            Some(p) if id.is_empty() || self.tools[p].id == id => p,
            _ => {
                self.tools.push(ToolSlot {
                    oa_index: oa,
                    id: id.to_string(),
                    name: String::new(),
                    ir: None,
                    pending_args: String::new(),
                });
                self.tools.len() - 1
            }
        };
        let (name, args) = match tc.function {
            Some(f) => (f.name, f.arguments),
            None => (None, None),
        };
        if self.tools[pos].ir.is_none() {
            if let Some(n) = name.filter(|n| !n.0.is_empty()) {
                self.tools[pos].name = n.0.into_owned();
                if let Some(a) = &args {
                    self.tools[pos].pending_args.push_str(a.as_str());
                }
                self.start_tool(pos, sink);
                return;
            }
            if let Some(a) = &args {
                self.tools[pos].pending_args.push_str(a.as_str());
            }
            return;
        }
        let Some(a) = args.filter(|a| !a.0.is_empty()) else {
            return;
        };
        if self.open == Open::Tool(pos) {
            let index = self.tools[pos].ir.unwrap_or(0);
            sink(StreamEvent::Delta {
                index,
                delta: Delta::ToolArgs(a.0),
            });
        } else {
            // Arguments for a call that is no longer the open one: the client
            // formats with ordered blocks cannot carry that. Say so, loudly.
            sink(StreamEvent::Error(ir::StreamError {
                status: 502,
                message: "upstream interleaved the arguments of parallel tool calls".into(),
            }));
            self.done = true;
        }
    }

    /// A `reasoning_details` entry from an upstream speaking that convention
    /// (OpenRouter): signatures and redacted blocks. The text itself also comes
    /// as `reasoning`/`reasoning_content` and is taken from there.
    fn detail(&mut self, det: &Value, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        let s = |k: &str| det.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
        match det.get("type").and_then(Value::as_str) {
            Some("reasoning.text") => {
                if let Some(sig) = s("signature") {
                    let index = match self.open {
                        Open::Thinking(i) => i,
                        _ => {
                            let i = self.open_block(BlockStart::Thinking, sink);
                            self.open = Open::Thinking(i);
                            i
                        }
                    };
                    sink(StreamEvent::Delta {
                        index,
                        delta: Delta::Signature(Cow::Borrowed(sig)),
                    });
                }
            }
            Some("reasoning.encrypted") => {
                if let Some(data) = s("data") {
                    let index = self.open_block(
                        BlockStart::RedactedThinking {
                            data: Cow::Borrowed(data),
                        },
                        sink,
                    );
                    sink(StreamEvent::BlockStop { index });
                }
            }
            _ => {}
        }
    }

    fn complete(&mut self, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        // Calls whose name never came are still calls.
        for pos in 0..self.tools.len() {
            if self.tools[pos].ir.is_none() {
                self.start_tool(pos, sink);
            }
        }
        self.close(sink);
        let mut reason = self.finish.take().unwrap_or(FinishReason::Stop);
        if self.refused && reason == FinishReason::Stop {
            reason = FinishReason::Refusal;
        }
        self.done = true;
        sink(StreamEvent::Finish {
            reason,
            usage: self.usage,
        });
    }
}

impl StreamDecoder for StreamDecode {
    fn event(&mut self, ev: sse::Event<'_>, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        if self.done {
            return;
        }
        let data = ev.data.trim_ascii();
        if data == b"[DONE]" {
            if !self.started {
                sink(StreamEvent::Start(ir::StreamStart {
                    origin: Some(Format::OpenAiChat),
                    ..Default::default()
                }));
                self.started = true;
            }
            self.complete(sink);
            return;
        }
        if data.is_empty() {
            return;
        }
        let chunk: Chunk<'_> = match serde_json::from_slice(data) {
            Ok(c) => c,
            Err(e) => {
                self.done = true;
                sink(malformed(e));
                return;
            }
        };
        if let Some(e) = &chunk.error {
            self.done = true;
            sink(StreamEvent::Error(stream_error(e)));
            return;
        }
        if !self.started {
            self.started = true;
            sink(StreamEvent::Start(ir::StreamStart {
                id: chunk.id.map(|s| s.0).unwrap_or_default(),
                model: chunk.model.map(|s| s.0).unwrap_or_default(),
                created: chunk.created,
                usage: ir::Usage::default(),
                origin: Some(Format::OpenAiChat),
            }));
        }
        for choice in chunk.choices {
            // Only the first choice: the other formats have one answer.
            if choice.index != 0 {
                continue;
            }
            if let Some(d) = choice.delta {
                if let Some(r) = d.reasoning_content.or(d.reasoning) {
                    self.text(r.0, true, sink);
                }
                for det in d.reasoning_details.iter().flatten() {
                    self.detail(det, sink);
                }
                if let Some(c) = d.content {
                    self.text(c.0, false, sink);
                }
                if let Some(r) = d.refusal.filter(|r| !r.0.is_empty()) {
                    self.refused = true;
                    self.text(r.0, false, sink);
                }
                for tc in d.tool_calls.unwrap_or_default() {
                    self.tool_delta(tc, sink);
                    if self.done {
                        return;
                    }
                }
            }
            if let Some(f) = choice.finish_reason {
                self.finish = Some(finish_from_openai(f.as_str(), choice.stop_reason.as_ref()));
            }
        }
        if let Some(u) = chunk.usage {
            let u = u.to_ir();
            self.usage.merge(&u);
            sink(StreamEvent::Usage(u));
        }
    }

    fn end(&mut self, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        // Some compatible servers end after the finish_reason without [DONE].
        if !self.done && self.started && self.finish.is_some() {
            self.complete(sink);
        }
    }
}

/// One slot of the client stream: what the open IR block is.
#[derive(Debug)]
enum OutOpen {
    None,
    Text(usize),
    /// Thinking text is also kept for its `reasoning_details` entry, with
    /// the upstream's id of the block (Responses reasoning item) when known.
    Thinking(usize, String, Option<String>),
    /// `announced`: its first delta (id, name) went out. That delta waits for
    /// the call's first IR delta so a Gemini signature can ride on it: the
    /// OpenAI SDK's stream helper wants `function` on every tool-call delta.
    Tool {
        ir: usize,
        pos: usize,
        args: bool,
        announced: bool,
    },
    /// A block with no Chat Completions form; its events are dropped.
    Skip(usize),
}

/// IR events → Chat Completions chunks: role first, one id/created/model for
/// all chunks, `tool_calls[i]` with id/type/name on the first delta of each call
/// then `index` + argument fragments, a finish chunk, the usage chunk only when
/// the client asked (`include_usage`), then `data: [DONE]`.
pub struct StreamEncode {
    client_model: String,
    include_usage: bool,
    created: u64,
    /// `{"id":…,"object":"chat.completion.chunk","created":…,"model":…,` shared by every chunk.
    head: Vec<u8>,
    started: bool,
    done: bool,
    origin: Option<Format>,
    open: OutOpen,
    tools: usize,
    details: usize,
    /// Id and name of the open tool call until its first delta is written
    /// (buffers reused from call to call).
    call_id: String,
    call_name: String,
}

impl StreamEncode {
    pub fn new(opts: &ResponseOpts) -> Self {
        Self::with_created(opts, json::now_unix())
    }

    /// With a fixed `created` (used when the upstream gives none), for reproducible output.
    pub fn with_created(opts: &ResponseOpts, created: u64) -> Self {
        StreamEncode {
            client_model: opts.client_model.clone(),
            include_usage: opts.include_usage,
            created,
            head: Vec::new(),
            started: false,
            done: false,
            origin: None,
            open: OutOpen::None,
            tools: 0,
            details: 0,
            call_id: String::new(),
            call_name: String::new(),
        }
    }

    fn start(&mut self, id: &str, model: &str, created: Option<u64>, out: &mut Vec<u8>) {
        self.started = true;
        let model = if self.client_model.is_empty() {
            model
        } else {
            &self.client_model
        };
        let id = if id.is_empty() { "chatcmpl-aigate" } else { id };
        let created = created.unwrap_or(self.created);
        self.head.clear();
        self.head.extend_from_slice(b"{\"id\":");
        let _ = serde_json::to_writer(&mut self.head, id);
        self.head
            .extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        self.head.extend_from_slice(created.to_string().as_bytes());
        self.head.extend_from_slice(b",\"model\":");
        let _ = serde_json::to_writer(&mut self.head, model);
        self.head.push(b',');
        self.chunk(
            out,
            &RoleDelta {
                role: "assistant",
                content: "",
            },
            None,
        );
    }

    /// `data: {head"choices":[{"index":0,"delta":<delta>,"logprobs":null,"finish_reason":<f>}]}`
    fn chunk<T: Serialize>(&self, out: &mut Vec<u8>, delta: &T, finish: Option<&str>) {
        self.chunk_stop(out, delta, finish, None);
    }

    fn chunk_stop<T: Serialize>(
        &self,
        out: &mut Vec<u8>,
        delta: &T,
        finish: Option<&str>,
        stop: Option<&str>,
    ) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&self.head);
        out.extend_from_slice(b"\"choices\":[{\"index\":0,\"delta\":");
        let _ = serde_json::to_writer(&mut *out, delta);
        out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
        match finish {
            Some(f) => {
                let _ = serde_json::to_writer(&mut *out, f);
            }
            None => out.extend_from_slice(b"null"),
        }
        if let Some(seq) = stop {
            out.extend_from_slice(b",\"stop_reason\":");
            let _ = serde_json::to_writer(&mut *out, seq);
        }
        out.extend_from_slice(b"}]}\n\n");
    }

    /// The first delta of tool call `pos`: id, type, name, and the call's
    /// signature when it has one.
    fn announce(&self, pos: usize, sig: Option<&str>, out: &mut Vec<u8>) {
        let d = ToolDelta {
            tool_calls: [ToolDeltaItem {
                index: pos,
                id: Some(&self.call_id),
                kind: Some("function"),
                function: Some(ToolDeltaFunction {
                    name: Some(&self.call_name),
                    arguments: "",
                }),
                extra_content: extra_content(sig),
            }],
        };
        self.chunk(out, &d, None);
    }

    /// One IR delta of the open tool call.
    fn tool_delta(&mut self, delta: &Delta<'_>, out: &mut Vec<u8>) {
        let OutOpen::Tool {
            pos,
            args,
            announced,
            ..
        } = &mut self.open
        else {
            return;
        };
        let (pos, was_announced) = (*pos, *announced);
        *announced = true;
        match delta {
            Delta::Signature(sig) if !sig.is_empty() => {
                if was_announced {
                    // Late signature: still with `function`, as the helper wants.
                    let mut d = ToolDelta::args(pos, "");
                    d.tool_calls[0].extra_content = extra_content(Some(sig));
                    self.chunk(out, &d, None);
                } else {
                    self.announce(pos, Some(sig), out);
                }
            }
            Delta::ToolArgs(a) => {
                if !a.is_empty() {
                    *args = true;
                }
                if !was_announced {
                    self.announce(pos, None, out);
                }
                if !a.is_empty() {
                    self.chunk(out, &ToolDelta::args(pos, a), None);
                }
            }
            _ => {
                if !was_announced {
                    self.announce(pos, None, out);
                }
            }
        }
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        match std::mem::replace(&mut self.open, OutOpen::None) {
            OutOpen::Tool {
                pos,
                args,
                announced,
                ..
            } => {
                if !announced {
                    self.announce(pos, None, out);
                }
                if !args {
                    // A call without arguments still needs valid JSON for the client.
                    self.chunk(out, &ToolDelta::args(pos, "{}"), None);
                }
            }
            // An unsigned block the upstream named: its id still goes to the
            // client (as from a whole answer), to be given back.
            OutOpen::Thinking(_, text, Some(id)) => {
                self.thinking_detail(&text, None, Some(&id), out)
            }
            OutOpen::Thinking(_, _, None) | OutOpen::Text(_) | OutOpen::Skip(_) | OutOpen::None => {
            }
        }
    }

    /// The `reasoning_details` entry of a thinking block.
    fn thinking_detail(
        &mut self,
        text: &str,
        sig: Option<&str>,
        id: Option<&str>,
        out: &mut Vec<u8>,
    ) {
        let d = DetailsDelta {
            reasoning_details: [OutDetail {
                kind: "reasoning.text",
                text: Some(text),
                signature: sig,
                data: None,
                id,
                format: details_format(self.origin),
                index: self.details,
            }],
        };
        self.details += 1;
        self.chunk(out, &d, None);
    }

    fn open_index(&self) -> Option<usize> {
        match &self.open {
            OutOpen::None => None,
            OutOpen::Text(i) | OutOpen::Thinking(i, _, _) | OutOpen::Skip(i) => Some(*i),
            OutOpen::Tool { ir, .. } => Some(*ir),
        }
    }
}

#[derive(Serialize)]
struct RoleDelta<'a> {
    role: &'a str,
    content: &'a str,
}

#[derive(Serialize)]
struct ContentDelta<'a> {
    content: &'a str,
}

#[derive(Serialize)]
struct ReasoningDelta<'a> {
    reasoning_content: &'a str,
}

#[derive(Serialize)]
struct DetailsDelta<'a> {
    reasoning_details: [OutDetail<'a>; 1],
}

#[derive(Serialize)]
struct ToolDelta<'a> {
    tool_calls: [ToolDeltaItem<'a>; 1],
}

#[derive(Serialize)]
struct ToolDeltaItem<'a> {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    function: Option<ToolDeltaFunction<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extra_content: Option<ExtraContent<'a>>,
}

#[derive(Serialize)]
struct ToolDeltaFunction<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

impl<'a> ToolDelta<'a> {
    fn args(index: usize, arguments: &'a str) -> Self {
        ToolDelta {
            tool_calls: [ToolDeltaItem {
                index,
                id: None,
                kind: None,
                function: Some(ToolDeltaFunction {
                    name: None,
                    arguments,
                }),
                extra_content: None,
            }],
        }
    }
}

#[derive(Serialize)]
struct Empty {}

impl StreamEncoder for StreamEncode {
    fn event(&mut self, ev: &StreamEvent<'_>, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if !self.started
            && !matches!(
                ev,
                StreamEvent::Start(_)
                    | StreamEvent::Error(_)
                    | StreamEvent::Ping
                    | StreamEvent::Usage(_)
            )
        {
            self.start("", "", None, out);
        }
        match ev {
            StreamEvent::Start(s) => {
                if !self.started {
                    self.origin = s.origin;
                    self.start(&s.id, &s.model, s.created, out);
                }
            }
            StreamEvent::BlockStart { index, block } => {
                self.close(out);
                self.open = match block {
                    BlockStart::Text => OutOpen::Text(*index),
                    BlockStart::Thinking => OutOpen::Thinking(*index, String::new(), None),
                    BlockStart::ToolCall { id, name } => {
                        let pos = self.tools;
                        self.tools += 1;
                        self.call_id.clear();
                        self.call_id.push_str(id);
                        self.call_name.clear();
                        self.call_name.push_str(name);
                        OutOpen::Tool {
                            ir: *index,
                            pos,
                            args: false,
                            announced: false,
                        }
                    }
                    BlockStart::RedactedThinking { data } => {
                        let d = DetailsDelta {
                            reasoning_details: [OutDetail {
                                kind: "reasoning.encrypted",
                                text: None,
                                signature: None,
                                data: Some(data),
                                id: None,
                                format: details_format(self.origin),
                                index: self.details,
                            }],
                        };
                        self.details += 1;
                        self.chunk(out, &d, None);
                        OutOpen::Skip(*index)
                    }
                    BlockStart::Raw(_) => OutOpen::Skip(*index),
                };
            }
            StreamEvent::Delta { index, delta } => {
                if self.open_index() != Some(*index) {
                    return;
                }
                match (&mut self.open, delta) {
                    (OutOpen::Text(_), Delta::Text(s)) if !s.is_empty() => {
                        self.chunk(out, &ContentDelta { content: s }, None);
                    }
                    (OutOpen::Thinking(_, buf, _), Delta::Thinking(s)) if !s.is_empty() => {
                        buf.push_str(s);
                        self.chunk(
                            out,
                            &ReasoningDelta {
                                reasoning_content: s,
                            },
                            None,
                        );
                    }
                    (OutOpen::Thinking(_, buf, id), Delta::Signature(sig)) if !sig.is_empty() => {
                        let (text, id) = (std::mem::take(buf), id.take());
                        self.thinking_detail(&text, Some(sig), id.as_deref(), out);
                    }
                    (OutOpen::Thinking(_, _, id), Delta::ThinkingId(s)) => {
                        *id = Some(s.to_string());
                    }
                    (OutOpen::Tool { .. }, d) => self.tool_delta(d, out),
                    _ => {}
                }
            }
            StreamEvent::BlockStop { index } => {
                if self.open_index() == Some(*index) {
                    self.close(out);
                }
            }
            StreamEvent::Usage(_) => {}
            // OpenAI streams carry no keep-alives; some hand-written clients
            // choke on anything but `data:` lines.
            StreamEvent::Ping => {}
            StreamEvent::Finish { reason, usage } => {
                self.close(out);
                self.chunk_stop(
                    out,
                    &Empty {},
                    Some(finish_to_openai(reason)),
                    stop_sequence(Some(reason)),
                );
                if self.include_usage {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(&self.head);
                    out.extend_from_slice(b"\"choices\":[],\"usage\":");
                    let _ = serde_json::to_writer(&mut *out, &OutUsage::from(usage));
                    out.extend_from_slice(b"}\n\n");
                }
                sse::write_raw(out, None, b"[DONE]");
                self.done = true;
            }
            StreamEvent::Error(e) => {
                // The OpenAI SDKs raise on a chunk with an `error` key; no [DONE]
                // follows, so nothing mistakes this for a complete answer.
                let body =
                    super::errors::error_value(Format::OpenAiChat, e.status, &e.message, None);
                sse::write_json(out, None, &body);
                self.done = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::{StreamTranslator, convert_request, convert_response};

    // ------------------------------------------- Gemini per-call signatures

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

    fn ro() -> RequestOpts {
        RequestOpts {
            model: "gemini-3-pro".into(),
            stream: false,
        }
    }

    /// The Chat client's next request: its history with the assistant
    /// message as given, then the tool results → the Gemini upstream's model
    /// turn as (functionCall name, thoughtSignature).
    fn next_gemini_turn(message: &Value) -> Vec<(String, Option<String>)> {
        let mut msgs = vec![json!({"role": "user", "content": "q"}), message.clone()];
        for c in message["tool_calls"].as_array().unwrap() {
            msgs.push(json!({"role": "tool", "tool_call_id": c["id"], "content": "ok"}));
        }
        let next = json!({"model": "m", "reasoning_effort": "low", "messages": msgs});
        let g: Value = serde_json::from_slice(
            &convert_request(Format::OpenAiChat, Format::Gemini, &next, &ro())
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
        // The same history to an OpenAI-format upstream: no Gemini signatures.
        let o = String::from_utf8(
            convert_request(Format::OpenAiChat, Format::OpenAiChat, &next, &ro())
                .unwrap()
                .body,
        )
        .unwrap();
        assert!(!o.contains("U0lHQQ=="), "{o}");
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

    fn sigs(message: &Value) -> Vec<Value> {
        message["tool_calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["extra_content"]["google"]["thought_signature"].clone())
            .collect()
    }

    #[test]
    fn gemini_call_signatures_round_trip_through_chat_client() {
        let out = convert_response(
            Format::Gemini,
            Format::OpenAiChat,
            gemini_answer().as_bytes(),
            &ResponseOpts::default(),
        )
        .unwrap();
        let r: Value = serde_json::from_slice(&out).unwrap();
        let m = &r["choices"][0]["message"];
        assert_eq!(m["reasoning_content"], "plan");
        assert_eq!(
            sigs(m),
            [json!("U0lHQQ=="), Value::Null, json!("U0lHQg==")],
            "{m}"
        );
        assert_eq!(next_gemini_turn(m), want());
        // A client that drops the extra field: no signature, no error.
        let mut bare = m.clone();
        for c in bare["tool_calls"].as_array_mut().unwrap() {
            c.as_object_mut().unwrap().remove("extra_content");
        }
        assert!(next_gemini_turn(&bare).iter().all(|(_, s)| s.is_none()));
    }

    #[test]
    fn gemini_call_signatures_round_trip_through_chat_stream() {
        let mut t =
            StreamTranslator::new(Format::Gemini, Format::OpenAiChat, ResponseOpts::default());
        let mut out = Vec::new();
        let sse = format!("data: {GEMINI_THOUGHT}\r\n\r\ndata: {GEMINI_CALLS}\r\n\r\n");
        t.feed(sse.as_bytes(), &mut out);
        t.finish(&mut out);
        // Rebuild the message as a client accumulating deltas does: fields
        // of `tool_calls[i]` merged by index, arguments concatenated.
        let mut calls: Vec<Value> = Vec::new();
        let mut reasoning = String::new();
        let mut p = sse::Parser::default();
        let mut on = |e: sse::Event<'_>| {
            if e.data == b"[DONE]" {
                return;
            }
            let v: Value = serde_json::from_slice(e.data).unwrap();
            let d = &v["choices"][0]["delta"];
            reasoning.push_str(d["reasoning_content"].as_str().unwrap_or(""));
            for tc in d["tool_calls"].as_array().into_iter().flatten() {
                let i = tc["index"].as_u64().unwrap() as usize;
                // The openai SDK's stream helper asserts `function` on every delta.
                assert!(tc["function"].is_object(), "function on every delta: {tc}");
                if i == calls.len() {
                    assert!(tc["id"].is_string(), "the first delta has the id: {tc}");
                    let sig = &tc["extra_content"]["google"]["thought_signature"];
                    assert!(
                        sig.is_string() || i == 1,
                        "the signature rides on the call's first delta: {tc}"
                    );
                    calls.push(json!({"id": tc["id"], "type": "function", "function": {"name": tc["function"]["name"], "arguments": ""}}));
                } else {
                    assert!(tc.get("id").is_none(), "one id per call: {tc}");
                }
                let c = &mut calls[i];
                if let Some(a) = tc["function"]["arguments"].as_str() {
                    let all = format!("{}{a}", c["function"]["arguments"].as_str().unwrap());
                    c["function"]["arguments"] = json!(all);
                }
                if let Some(x) = tc.get("extra_content") {
                    c["extra_content"] = x.clone();
                }
            }
        };
        p.feed(&out, &mut on).unwrap();
        p.finish(&mut on).unwrap();
        let m = json!({"role": "assistant", "content": null, "reasoning_content": reasoning, "tool_calls": calls});
        assert_eq!(m["reasoning_content"], "plan");
        assert_eq!(
            m["tool_calls"][0]["function"]["arguments"],
            r#"{"city":"Paris"}"#
        );
        assert_eq!(
            sigs(&m),
            [json!("U0lHQQ=="), Value::Null, json!("U0lHQg==")],
            "{m}"
        );
        assert_eq!(next_gemini_turn(&m), want());
    }

    #[test]
    fn call_signature_must_be_a_string() {
        let m = json!({"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "f", "arguments": "{}"}, "extra_content": {"google": {"thought_signature": 7}}}]});
        let e = decode_assistant(m.as_object().unwrap(), "messages[1]").unwrap_err();
        assert_eq!(
            e.param.as_deref(),
            Some("messages[1].tool_calls[0].extra_content.google.thought_signature")
        );
    }
}
