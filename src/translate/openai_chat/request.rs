//! Requests: OpenAI Chat Completions request body → IR, and IR → OpenAI Chat
//! Completions request body.

use super::*;

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

pub(super) fn decode_tool(t: &Value, path: &Path<'_>) -> Result<ir::Tool, TranslateError> {
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

pub(super) fn decode_tool_choice(v: &Value) -> Result<ir::ToolChoice, TranslateError> {
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

pub(super) fn decode_response_format(
    v: &Value,
) -> Result<Option<ir::ResponseFormat>, TranslateError> {
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

pub(super) fn decode_messages(arr: &[Value], req: &mut ir::Request) -> Result<(), TranslateError> {
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
pub(super) fn apply_cache(parts: &mut [ir::TextPart], cache: Option<&Value>) {
    if let (Some(c), Some(last)) = (cache, parts.last_mut()) {
        last.cache_control = Some(c.clone());
    }
}

pub(super) fn apply_cache_parts(parts: &mut [Part], cache: Option<&Value>) {
    let Some(c) = cache else { return };
    match parts.last_mut() {
        Some(Part::Text(t)) => t.cache_control = Some(c.clone()),
        Some(Part::Image(t)) => t.cache_control = Some(c.clone()),
        Some(Part::ToolCall(t)) => t.cache_control = Some(c.clone()),
        Some(Part::ToolResult(t)) => t.cache_control = Some(c.clone()),
        _ => {}
    }
}

pub(super) fn decode_text_parts(
    content: Option<&Value>,
    path: &Path<'_>,
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

pub(super) fn decode_user_content(
    content: Option<&Value>,
    path: &Path<'_>,
) -> Result<Vec<Part>, TranslateError> {
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

pub(super) fn image_source(url: &str) -> ir::ImageSource {
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

pub(super) fn details_origin(s: Option<&str>) -> Option<Format> {
    match s? {
        "anthropic-claude-v1" => Some(Format::Anthropic),
        "openai-responses-v1" => Some(Format::OpenAiResponses),
        "google-gemini-v1" => Some(Format::Gemini),
        _ => None,
    }
}

/// Thinking parts from `reasoning_details` (authoritative when present) or
/// `reasoning_content` / `reasoning`.
pub(super) fn decode_reasoning(
    m: &Map<String, Value>,
    path: &Path<'_>,
) -> Result<Vec<Part>, TranslateError> {
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

pub(super) fn decode_assistant(
    m: &Map<String, Value>,
    path: &Path<'_>,
) -> Result<Vec<Part>, TranslateError> {
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
                dropped.push(idx("tools", i).to_string());
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
pub(super) const TEXT_JOIN: &str = "\n\n";

pub(super) fn text_content(parts: &[&ir::TextPart]) -> Value {
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

pub(super) fn image_url(img: &ir::ImagePart) -> Value {
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

pub(super) fn raw_part(r: &ir::Raw, path: &Path<'_>) -> Result<Value, TranslateError> {
    if r.format == Format::OpenAiChat {
        Ok(r.value.clone())
    } else {
        Err(json::inexpressible_kind(path, r.kind(), NAME))
    }
}

pub(super) fn encode_messages(req: &ir::Request) -> Result<Vec<Value>, TranslateError> {
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

pub(super) fn encode_user(
    m: &ir::Message,
    path: &Path<'_>,
    out: &mut Vec<Value>,
) -> Result<(), TranslateError> {
    let mut content = Vec::new();
    let mut only_text = true;
    let mut result_images = Vec::new();
    let cp = join(path, "content");
    for (j, p) in m.content.iter().enumerate() {
        let pp = idx(&cp, j);
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

pub(super) fn encode_assistant(m: &ir::Message, path: &Path<'_>) -> Result<Value, TranslateError> {
    let mut texts: Vec<&str> = Vec::new();
    let mut calls = Vec::new();
    let mut reasoning = String::new();
    let cp = join(path, "content");
    for (j, p) in m.content.iter().enumerate() {
        let pp = idx(&cp, j);
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

/// A tool call's Gemini signature as a client gives it back (see [`ExtraContent`]).
pub(super) fn decode_call_signature(
    o: &Map<String, Value>,
    path: &Path<'_>,
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
