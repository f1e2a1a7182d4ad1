//! Requests: Anthropic Messages request body → IR, and IR → Anthropic Messages
//! request body.

use super::*;

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
            "output_format" => req.response_format = Some(decode_output_format(v, &Path::Str(k))?),
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
                            req.extra.fields.insert(p.to_string(), cv.clone());
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

pub(super) fn decode_output_format(
    v: &Value,
    path: &Path<'_>,
) -> Result<ir::ResponseFormat, TranslateError> {
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

pub(super) fn decode_system(v: &Value) -> Result<Vec<ir::TextPart>, TranslateError> {
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

pub(super) fn decode_tool(t: &Value, path: &Path<'_>) -> Result<ir::Tool, TranslateError> {
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
pub(super) const TOOL_HINTS: &[&str] =
    &["defer_loading", "input_examples", "eager_input_streaming"];

pub(super) fn function_tool(
    o: &Map<String, Value>,
    path: &Path<'_>,
) -> Result<ir::FunctionTool, TranslateError> {
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
pub(super) fn decode_blocks(
    content: Option<&Value>,
    path: &Path<'_>,
) -> Result<Vec<Part>, TranslateError> {
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
pub(super) enum Block {
    Part(Part),
    CallSignature {
        id: Option<String>,
        sig: String,
        text: String,
    },
}

/// Put a per-call signature back on the call with that id; without an id (or
/// none matching), on the nearest call before the carrier, as it was given.
pub(super) fn attach_call_signature(parts: &mut [Part], id: Option<&str>, sig: String) {
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
pub(super) fn client_signature<'a>(
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
pub(super) fn call_signature(call_id: &str, sig: &str) -> String {
    wrap_signature(Some(Format::Gemini), sig, Some(call_id), "call")
}

pub(super) fn decode_block(b: &Value, path: &Path<'_>) -> Result<Block, TranslateError> {
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

pub(super) fn decode_plain_block(b: &Value, path: &Path<'_>) -> Result<Part, TranslateError> {
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
pub(super) fn anthropic_signed(origin: Option<Format>, signature: Option<&str>) -> bool {
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
pub(super) fn is_responses_web_search(r: &ir::Raw) -> bool {
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
pub(super) fn web_search_tool(
    r: &ir::Raw,
    path: &Path<'_>,
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
            "external_web_access" | "search_context_size" => dropped.push(p.to_string()),
            _ => return Err(inexpressible(&p, NAME)),
        }
    }
    Ok(v)
}

/// The conversation continues a tool loop (ends in tool results) whose last
/// assistant turn does not open with a thinking block.
pub(super) fn unsigned_tool_loop(messages: &[Value]) -> bool {
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

pub(super) fn text_block(t: &ir::TextPart) -> Value {
    let mut v = json!({"type": "text", "text": t.text});
    if let Some(c) = &t.cache_control {
        v["cache_control"] = c.clone();
    }
    v
}

pub(super) fn system_value(parts: Vec<&ir::TextPart>) -> Value {
    if let [one] = parts.as_slice()
        && one.cache_control.is_none()
    {
        return Value::String(one.text.clone());
    }
    Value::Array(parts.into_iter().map(text_block).collect())
}

pub(super) fn image_block(img: &ir::ImagePart) -> Value {
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

pub(super) fn raw_block(r: &ir::Raw, path: &Path<'_>) -> Result<Value, TranslateError> {
    if r.format == Format::Anthropic {
        Ok(r.value.clone())
    } else {
        Err(json::inexpressible_kind(path, r.kind(), NAME))
    }
}

/// The tool input object for `arguments` (JSON text), validated.
pub(super) fn tool_input(arguments: &str, path: &Path<'_>) -> Result<Value, TranslateError> {
    if arguments.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(bad(path, "tool call arguments must be a JSON object")),
    }
}

pub(super) fn encode_part(
    p: &Part,
    path: &Path<'_>,
    out: &mut Vec<Value>,
) -> Result<(), TranslateError> {
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
            let rp = join(path, "content");
            for (k, c) in r.content.iter().enumerate() {
                let cp = idx(&rp, k);
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
pub(super) fn encode_messages(
    req: &ir::Request,
) -> Result<(Vec<&ir::TextPart>, Vec<Value>), TranslateError> {
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
