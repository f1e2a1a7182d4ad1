//! Requests: OpenAI Responses request body → IR, and IR → OpenAI Responses
//! request body.

use super::*;

pub(super) fn bad(
    msg: impl Into<String>,
    field: &(impl std::fmt::Display + ?Sized),
) -> TranslateError {
    TranslateError::bad_request(msg, Some(&field.to_string()))
}

pub(super) fn upstream_bad(msg: impl Into<String>) -> TranslateError {
    TranslateError {
        status: 502,
        message: msg.into(),
        param: None,
    }
}

/// Request fields kept as IR hints (`Extra::hints`): they change nothing in
/// the answer's content (routing, caching, storage, billing, logging tags), so
/// an upstream of another format leaves them out and they are named
/// (`x-aigate-dropped`). `metadata` and `client_metadata` (Codex) are tags
/// for the client's own records; `include` asks for encrypted reasoning,
/// which aigate requests itself from a Responses upstream whenever reasoning
/// is on; `store` keeps the answer on OpenAI's side for later reference.
pub(super) const HINT_FIELDS: &[&str] = &[
    "stream_options",
    "prompt_cache_key",
    "prompt_cache_retention",
    "include",
    "service_tier",
    "metadata",
    "client_metadata",
    "store",
    "safety_identifier",
];

/// The hint key of `text.verbosity` (kept by its client path).
pub(super) const TEXT_VERBOSITY: &str = "text.verbosity";

/// The function tools a Responses client grouped in `namespace` tools
/// (Codex's `multi_agent_v1`). Other formats have no namespaces: each such
/// function goes upstream as one function named `{namespace}__{name}`
/// ([`flat_name`]), and a call of that name comes back to the client as a
/// `function_call` item with `namespace` and `name` apart, in whole answers
/// and streams. Only names the client declared are split back, so a plain
/// function whose name holds `__` (`mcp__server__tool`) is never touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespaces(pub(super) Vec<(String, String, String)>);

impl Namespaces {
    /// The namespaced functions a client request body declares (empty, no
    /// allocation, for the usual request without namespaces).
    pub fn of_request(body: &Value) -> Self {
        let mut out = Vec::new();
        for t in body
            .get("tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some((ns, fns)) = namespace_tool(t) {
                for f in fns {
                    if let Some(n) = f.get("name").and_then(Value::as_str) {
                        out.push((flat_name(ns, n), ns.to_string(), n.to_string()));
                    }
                }
            }
        }
        Namespaces(out)
    }

    /// (namespace, name) of a flattened function name the client declared.
    pub fn split(&self, flat: &str) -> Option<(&str, &str)> {
        self.0
            .iter()
            .find(|(f, _, _)| f == flat)
            .map(|(_, ns, n)| (ns.as_str(), n.as_str()))
    }
}

/// The one function name a namespaced function has for other formats.
pub fn flat_name(namespace: &str, name: &str) -> String {
    format!("{namespace}__{name}")
}

/// (name, function tools) of a `namespace` tool holding only function tools;
/// None for any other tool (a namespace with a custom tool stays whole, and
/// is refused by other formats).
pub(super) fn namespace_tool(t: &Value) -> Option<(&str, &[Value])> {
    if t.get("type").and_then(Value::as_str) != Some("namespace") {
        return None;
    }
    let name = t
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())?;
    let fns = t.get("tools").and_then(Value::as_array)?;
    let all_functions = !fns.is_empty()
        && fns
            .iter()
            .all(|f| f.get("type").and_then(Value::as_str) == Some("function"));
    all_functions.then_some((name, fns.as_slice()))
}

/// A Responses function tool (top-level or inside a namespace) → IR, its
/// name given (flattened for a namespace's).
pub(super) fn function_tool(
    to: &Map<String, Value>,
    name: String,
    path: &Path<'_>,
) -> Result<ir::FunctionTool, TranslateError> {
    if name.is_empty() {
        return Err(bad(
            format!("'{path}.name' is required"),
            &format!("{path}.name"),
        ));
    }
    Ok(ir::FunctionTool {
        name,
        description: to
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string),
        parameters: to
            .get("parameters")
            .filter(|p| !p.is_null())
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        strict: to.get("strict").and_then(Value::as_bool),
        cache_control: None,
        hints: Map::new(),
    })
}

/// A client's `tools` → IR. A namespace of functions is flattened
/// ([`Namespaces`]); its first function takes the namespace's place and the
/// others follow every client tool, so every other tool keeps its client
/// index (the paths refusals and dropped names give). The namespace's
/// description opens each of its functions' descriptions.
pub(super) fn decode_tools(req: &mut ir::Request, tools: &[Value]) -> Result<(), TranslateError> {
    let mut later = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        let path = at("tools", i);
        let to = t
            .as_object()
            .ok_or_else(|| bad(format!("'{path}' must be an object"), &path))?;
        if to.get("type").and_then(Value::as_str) == Some("function") {
            let name = to.get("name").and_then(Value::as_str).unwrap_or("");
            req.tools.push(ir::Tool::Function(function_tool(
                to,
                name.to_string(),
                &path,
            )?));
        } else if let Some((ns, fns)) = namespace_tool(t) {
            let about = to
                .get("description")
                .and_then(Value::as_str)
                .filter(|d| !d.is_empty());
            let tp = join(&path, "tools");
            for (j, f) in fns.iter().enumerate() {
                let fp = at(&tp, j);
                let fo = f
                    .as_object()
                    .ok_or_else(|| bad(format!("'{fp}' must be an object"), &fp))?;
                let name = fo.get("name").and_then(Value::as_str).unwrap_or("");
                let flat = if name.is_empty() {
                    String::new()
                } else {
                    flat_name(ns, name)
                };
                let mut ft = function_tool(fo, flat, &fp)?;
                if let Some(about) = about {
                    ft.description = Some(match ft.description {
                        Some(d) => format!("({ns}: {about}) {d}"),
                        None => format!("({ns}: {about})"),
                    });
                }
                if j == 0 {
                    req.tools.push(ir::Tool::Function(ft));
                } else {
                    later.push(ft);
                }
            }
        } else {
            req.tools.push(ir::Tool::Raw(ir::Raw {
                format: Format::OpenAiResponses,
                value: t.clone(),
            }));
        }
    }
    for ft in later {
        req.tools.push(ir::Tool::Function(ft));
    }
    // Two tools of one name would make calls ambiguous.
    let mut names: Vec<&str> = req
        .tools
        .iter()
        .filter_map(|t| match t {
            ir::Tool::Function(f) => Some(f.name.as_str()),
            ir::Tool::Raw(_) => None,
        })
        .collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(bad(
            format!(
                "two tools are named {:?} (a namespaced function is sent to other formats as `namespace__name`)",
                w[0]
            ),
            "tools",
        ));
    }
    Ok(())
}

pub(super) fn push_part(req: &mut ir::Request, role: ir::Role, part: Part) {
    if let Some(last) = req.messages.last_mut()
        && last.role == role
    {
        // Tool results join the user turn they follow only when that turn holds
        // tool results (a new user message after them is a new turn).
        let joinable = match (&part, role) {
            (Part::ToolResult(_), ir::Role::User) => last
                .content
                .iter()
                .all(|p| matches!(p, Part::ToolResult(_))),
            (_, ir::Role::Assistant) => true,
            _ => false,
        };
        if joinable {
            last.content.push(part);
            return;
        }
    }
    req.messages.push(ir::Message {
        role,
        content: vec![part],
        name: None,
    });
}

pub(super) fn image_from(o: &Map<String, Value>, path: &Path<'_>) -> Result<Part, TranslateError> {
    let url = match o.get("image_url") {
        Some(Value::String(u)) => u.clone(),
        Some(Value::Object(u)) => u
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        _ => {
            if o.get("file_id").is_some() {
                return Ok(Part::Raw(ir::Raw {
                    format: Format::OpenAiResponses,
                    value: Value::Object(o.clone()),
                }));
            }
            return Err(bad(
                format!("'{path}.image_url' is required"),
                &format!("{path}.image_url"),
            ));
        }
    };
    let source = match url.strip_prefix("data:").and_then(|r| r.split_once(',')) {
        Some((meta, data)) if meta.ends_with(";base64") => ir::ImageSource::Base64 {
            media_type: meta.trim_end_matches(";base64").to_string(),
            data: crate::translate::shared::std_base64(data)
                .ok_or_else(|| {
                    bad(
                        format!("'{path}.image_url' has invalid base64"),
                        &format!("{path}.image_url"),
                    )
                })?
                .into_owned(),
        },
        _ => ir::ImageSource::Url { url },
    };
    Ok(Part::Image(ir::ImagePart {
        source,
        detail: o
            .get("detail")
            .and_then(Value::as_str)
            .filter(|d| *d != "auto")
            .map(str::to_string),
        cache_control: None,
    }))
}

pub(super) fn content_parts(content: &Value, path: &Path<'_>) -> Result<Vec<Part>, TranslateError> {
    match content {
        Value::String(s) => Ok(vec![Part::Text(ir::TextPart::new(s.clone()))]),
        Value::Array(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                let pp = at(path, j);
                let o = p
                    .as_object()
                    .ok_or_else(|| bad(format!("'{pp}' must be an object"), &pp))?;
                match o.get("type").and_then(Value::as_str).unwrap_or("") {
                    "input_text" | "output_text" | "text" | "summary_text" | "reasoning_text" => {
                        let t = o.get("text").and_then(Value::as_str).ok_or_else(|| {
                            bad(
                                format!("'{pp}.text' must be a string"),
                                &format!("{pp}.text"),
                            )
                        })?;
                        out.push(Part::Text(ir::TextPart::new(t)));
                    }
                    "refusal" => {
                        let t = o.get("refusal").and_then(Value::as_str).unwrap_or_default();
                        out.push(Part::Text(ir::TextPart::new(t)));
                    }
                    "input_image" => out.push(image_from(o, &pp)?),
                    _ => out.push(Part::Raw(ir::Raw {
                        format: Format::OpenAiResponses,
                        value: p.clone(),
                    })),
                }
            }
            Ok(out)
        }
        Value::Null => Ok(Vec::new()),
        _ => Err(bad(format!("'{path}' must be a string or an array"), path)),
    }
}

/// Attach a Gemini per-part signature carried by a wrapper reasoning item to
/// the part it was minted for (the last text / tool call of the turn).
pub(super) fn attach_signature(req: &mut ir::Request, kind: &str, sig: String) -> bool {
    let Some(last) = req
        .messages
        .last_mut()
        .filter(|m| m.role == ir::Role::Assistant)
    else {
        return false;
    };
    for p in last.content.iter_mut().rev() {
        match (kind, p) {
            ("text", Part::Text(t)) if t.signature.is_none() => {
                t.signature = Some(sig);
                return true;
            }
            ("call", Part::ToolCall(c)) if c.signature.is_none() => {
                c.signature = Some(sig);
                return true;
            }
            _ => {}
        }
    }
    false
}

pub(super) fn reasoning_text(o: &Map<String, Value>) -> String {
    let mut text = String::new();
    for key in ["summary", "content"] {
        if let Some(Value::Array(parts)) = o.get(key) {
            for p in parts {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    if !text.is_empty() {
                        text.push_str("\n\n");
                    }
                    text.push_str(t);
                }
            }
        }
        if !text.is_empty() {
            break;
        }
    }
    text
}

/// A reasoning item (request input or response output) → IR part, or a
/// signature for the previous part when it is one of aigate's wrappers.
pub(super) enum ReasoningOut {
    Part(Part),
    Signature { kind: String, sig: String },
}

pub(super) fn reasoning_from(o: &Map<String, Value>) -> ReasoningOut {
    let text = reasoning_text(o);
    let id = o.get("id").and_then(Value::as_str).map(str::to_string);
    let enc = o.get("encrypted_content").and_then(Value::as_str);
    if let Some(w) = enc.and_then(unwrap_signature) {
        return match w.kind.as_str() {
            "text" | "call" => ReasoningOut::Signature {
                kind: w.kind,
                sig: w.sig,
            },
            "redacted" => ReasoningOut::Part(Part::RedactedThinking(ir::RedactedThinking {
                data: w.sig,
                origin: w.origin,
            })),
            _ => ReasoningOut::Part(Part::Thinking(ir::Thinking {
                text,
                signature: Some(w.sig),
                origin: w.origin,
                id: w.id,
            })),
        };
    }
    ReasoningOut::Part(Part::Thinking(ir::Thinking {
        text,
        origin: enc.map(|_| Format::OpenAiResponses),
        signature: enc.map(str::to_string),
        id,
    }))
}

pub(super) fn decode_input_item(
    req: &mut ir::Request,
    item: &Value,
    path: &Path<'_>,
) -> Result<(), TranslateError> {
    let o = item
        .as_object()
        .ok_or_else(|| bad(format!("'{path}' must be an object"), path))?;
    let ty = o.get("type").and_then(Value::as_str).unwrap_or("message");
    match ty {
        "message" => {
            let role = o.get("role").and_then(Value::as_str).unwrap_or("user");
            let parts = content_parts(
                o.get("content").unwrap_or(&Value::Null),
                &join(path, "content"),
            )?;
            match role {
                "system" | "developer" => {
                    let texts = parts.into_iter().filter_map(|p| match p {
                        Part::Text(t) => Some(t),
                        _ => None,
                    });
                    if req.messages.is_empty() {
                        req.system.extend(texts);
                    } else {
                        req.messages.push(ir::Message {
                            role: ir::Role::System,
                            content: texts.map(Part::Text).collect(),
                            name: None,
                        });
                    }
                }
                "user" => req.messages.push(ir::Message {
                    role: ir::Role::User,
                    content: parts,
                    name: None,
                }),
                "assistant" => {
                    for p in parts {
                        push_part(req, ir::Role::Assistant, p);
                    }
                }
                other => {
                    return Err(bad(
                        format!("unknown role {other:?} at '{path}.role'"),
                        &format!("{path}.role"),
                    ));
                }
            }
        }
        "function_call" => {
            let call_id = o.get("call_id").and_then(Value::as_str).ok_or_else(|| {
                bad(
                    format!("'{path}.call_id' is required"),
                    &format!("{path}.call_id"),
                )
            })?;
            let name = o.get("name").and_then(Value::as_str).ok_or_else(|| {
                bad(
                    format!("'{path}.name' is required"),
                    &format!("{path}.name"),
                )
            })?;
            // A namespaced function's call: the flat name it was declared under.
            let name = match o.get("namespace").and_then(Value::as_str) {
                Some(ns) if !ns.is_empty() => flat_name(ns, name),
                _ => name.to_string(),
            };
            let arguments = match o.get("arguments") {
                Some(Value::String(s)) => s.clone(),
                None | Some(Value::Null) => "{}".to_string(),
                Some(v) => v.to_string(),
            };
            push_part(
                req,
                ir::Role::Assistant,
                Part::ToolCall(ir::ToolCall {
                    id: call_id.to_string(),
                    name,
                    arguments,
                    cache_control: None,
                    signature: None,
                }),
            );
        }
        "function_call_output" => {
            let call_id = o.get("call_id").and_then(Value::as_str).ok_or_else(|| {
                bad(
                    format!("'{path}.call_id' is required"),
                    &format!("{path}.call_id"),
                )
            })?;
            let content = match o.get("output") {
                Some(Value::String(s)) => vec![Part::Text(ir::TextPart::new(s.clone()))],
                Some(v @ Value::Array(_)) => content_parts(v, &join(path, "output"))?,
                None | Some(Value::Null) => vec![Part::Text(ir::TextPart::new(""))],
                Some(v) => vec![Part::Text(ir::TextPart::new(v.to_string()))],
            };
            // The tool's name, for formats that need it (Gemini), from the call.
            let name = req.messages.iter().rev().find_map(|m| {
                m.content.iter().find_map(|p| match p {
                    Part::ToolCall(c) if c.id == call_id => Some(c.name.clone()),
                    _ => None,
                })
            });
            push_part(
                req,
                ir::Role::User,
                Part::ToolResult(ir::ToolResult {
                    id: call_id.to_string(),
                    name,
                    content,
                    is_error: false,
                    cache_control: None,
                }),
            );
        }
        "reasoning" => match reasoning_from(o) {
            ReasoningOut::Part(p) => push_part(req, ir::Role::Assistant, p),
            ReasoningOut::Signature { kind, sig } => {
                attach_signature(req, &kind, sig);
            }
        },
        _ => {
            // Built-in tool calls and outputs, item references...: Responses only.
            let role = if ty.ends_with("_output") {
                ir::Role::User
            } else {
                ir::Role::Assistant
            };
            push_part(
                req,
                role,
                Part::Raw(ir::Raw {
                    format: Format::OpenAiResponses,
                    value: item.clone(),
                }),
            );
        }
    }
    Ok(())
}

/// A Responses client request body → IR.
pub fn decode_request(body: &Value) -> Result<ir::Request, TranslateError> {
    let o = body
        .as_object()
        .ok_or_else(|| TranslateError::bad_request("request body must be a JSON object", None))?;
    let mut req = ir::Request {
        extra: ir::Extra {
            format: Format::OpenAiResponses,
            fields: Map::new(),
            hints: Map::new(),
            ..ir::Extra::default()
        },
        ..Default::default()
    };
    for (k, v) in o {
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "model" => {
                req.model = v
                    .as_str()
                    .ok_or_else(|| bad("'model' must be a string", "model"))?
                    .to_string()
            }
            "stream" => req.stream = v.as_bool().unwrap_or(false),
            "instructions" => match v {
                Value::String(s) if !s.is_empty() => req.system.push(ir::TextPart::new(s.clone())),
                Value::String(_) => {}
                Value::Array(items) => {
                    for (i, it) in items.iter().enumerate() {
                        let before = req.messages.len();
                        decode_input_item(&mut req, it, &at("instructions", i))?;
                        // instructions are system text whatever their item role
                        for m in req.messages.drain(before..).collect::<Vec<_>>() {
                            for p in m.content {
                                if let Part::Text(t) = p {
                                    req.system.push(t);
                                }
                            }
                        }
                    }
                }
                _ => return Err(bad("'instructions' must be a string", "instructions")),
            },
            "input" => {}
            "tools" => {
                let tools = v
                    .as_array()
                    .ok_or_else(|| bad("'tools' must be an array", "tools"))?;
                decode_tools(&mut req, tools)?;
            }
            "tool_choice" => {
                req.tool_choice = Some(match v {
                    Value::String(s) if s == "auto" => ir::ToolChoice::Auto,
                    Value::String(s) if s == "none" => ir::ToolChoice::None,
                    Value::String(s) if s == "required" => ir::ToolChoice::Required,
                    Value::Object(c)
                        if c.get("type").and_then(Value::as_str) == Some("function") =>
                    {
                        let name = c.get("name").and_then(Value::as_str).ok_or_else(|| {
                            bad("'tool_choice.name' is required", "tool_choice.name")
                        })?;
                        ir::ToolChoice::Tool(match c.get("namespace").and_then(Value::as_str) {
                            Some(ns) if !ns.is_empty() => flat_name(ns, name),
                            _ => name.to_string(),
                        })
                    }
                    _ => {
                        req.extra.fields.insert(k.clone(), v.clone());
                        continue;
                    }
                });
            }
            "parallel_tool_calls" => req.parallel_tool_calls = v.as_bool(),
            "temperature" => {
                req.sampling.temperature = Some(
                    v.as_f64()
                        .ok_or_else(|| bad("'temperature' must be a number", "temperature"))?,
                )
            }
            "top_p" => {
                req.sampling.top_p = Some(
                    v.as_f64()
                        .ok_or_else(|| bad("'top_p' must be a number", "top_p"))?,
                )
            }
            "max_output_tokens" => {
                req.sampling.max_tokens = Some(v.as_u64().ok_or_else(|| {
                    bad(
                        "'max_output_tokens' must be a positive integer",
                        "max_output_tokens",
                    )
                })?)
            }
            "reasoning" => {
                let r = v
                    .as_object()
                    .ok_or_else(|| bad("'reasoning' must be an object", "reasoning"))?;
                let effort = r.get("effort").and_then(Value::as_str);
                req.reasoning = Some(ir::Reasoning {
                    disabled: effort == Some("none"),
                    effort: effort.filter(|e| *e != "none").map(str::to_string),
                    budget_tokens: None,
                    summary: r
                        .get("summary")
                        .or_else(|| r.get("generate_summary"))
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    effort_only: false,
                });
            }
            "text" => {
                let t = v
                    .as_object()
                    .ok_or_else(|| bad("'text' must be an object", "text"))?;
                if let Some(f) = t.get("format").and_then(Value::as_object) {
                    req.response_format = match f.get("type").and_then(Value::as_str) {
                        Some("text") | None => None,
                        Some("json_object") => Some(ir::ResponseFormat::JsonObject),
                        Some("json_schema") => Some(ir::ResponseFormat::JsonSchema {
                            name: f
                                .get("name")
                                .and_then(Value::as_str)
                                .unwrap_or("response")
                                .to_string(),
                            description: f
                                .get("description")
                                .and_then(Value::as_str)
                                .map(str::to_string),
                            schema: f.get("schema").cloned().ok_or_else(|| {
                                bad("'text.format.schema' is required", "text.format.schema")
                            })?,
                            strict: f.get("strict").and_then(Value::as_bool),
                        }),
                        Some(other) => {
                            return Err(bad(
                                format!("unknown text.format.type {other:?}"),
                                "text.format.type",
                            ));
                        }
                    };
                }
                // A length hint (GPT-5); `medium` is every model's default.
                if let Some(verb) = t.get("verbosity").and_then(Value::as_str)
                    && verb != "medium"
                {
                    req.extra
                        .hints
                        .insert(TEXT_VERBOSITY.into(), Value::String(verb.to_string()));
                }
            }
            "user" => {
                req.user = v.as_str().map(str::to_string);
                req.extra.user_from = "user";
            }
            "safety_identifier" => {
                if req.user.is_none() {
                    req.user = v.as_str().map(str::to_string);
                    req.extra.user_from = "safety_identifier";
                }
                req.extra.hints.insert(k.clone(), v.clone());
            }
            // Defaults: what every other upstream does anyway.
            "truncation" if v == "disabled" => {
                req.extra.hints.insert(k.clone(), v.clone());
            }
            "background" if v == &Value::Bool(false) => {
                req.extra.hints.insert(k.clone(), v.clone());
            }
            "top_logprobs" if v.as_u64() == Some(0) => {}
            k if HINT_FIELDS.contains(&k) => {
                req.extra.hints.insert(k.to_string(), v.clone());
            }
            _ => {
                req.extra.fields.insert(k.clone(), v.clone());
            }
        }
    }
    match o.get("input") {
        Some(Value::String(s)) => req.messages.push(ir::Message {
            role: ir::Role::User,
            content: vec![Part::Text(ir::TextPart::new(s.clone()))],
            name: None,
        }),
        Some(Value::Array(items)) => {
            for (i, it) in items.iter().enumerate() {
                decode_input_item(&mut req, it, &at("input", i))?;
            }
        }
        None | Some(Value::Null) => {
            if !req.extra.fields.contains_key("previous_response_id") {
                return Err(bad("missing required field 'input'", "input"));
            }
        }
        Some(_) => return Err(bad("'input' must be a string or an array", "input")),
    }
    Ok(req)
}

pub(super) fn image_url_of(img: &ir::ImagePart) -> String {
    match &img.source {
        ir::ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        ir::ImageSource::Url { url } => url.clone(),
    }
}

pub(super) fn input_image(img: &ir::ImagePart) -> Value {
    json!({"type": "input_image", "image_url": image_url_of(img), "detail": img.detail.as_deref().unwrap_or("auto")})
}

/// IR → a Responses upstream body (`api: responses`).
pub fn encode_request(
    req: &ir::Request,
    opts: &RequestOpts,
    dropped: &mut Dropped,
) -> Result<Vec<u8>, TranslateError> {
    if req.extra.format != Format::OpenAiResponses
        && let Some(k) = req.extra.fields.keys().next()
    {
        return Err(bad(
            format!("'{k}' cannot be expressed for an OpenAI Responses upstream"),
            k,
        ));
    }
    let s = &req.sampling;
    // Where the answer stops, and how many answers, change the answer.
    if !s.stop.is_empty() {
        return Err(bad(
            "stop sequences cannot be expressed for an OpenAI Responses upstream",
            "stop",
        ));
    }
    if s.n.is_some_and(|n| n != 1) {
        return Err(bad(
            "'n' cannot be expressed for an OpenAI Responses upstream",
            "n",
        ));
    }
    dropped::name_common(req, Format::OpenAiResponses, true, dropped);
    // Sampling hints Responses has no field for (0 penalties ask for nothing).
    for (set, name) in [
        (s.top_k.is_some(), "top_k"),
        (s.seed.is_some(), "seed"),
        (
            s.frequency_penalty.is_some_and(|v| v != 0.0),
            "frequency_penalty",
        ),
        (
            s.presence_penalty.is_some_and(|v| v != 0.0),
            "presence_penalty",
        ),
    ] {
        if set {
            dropped.push(dropped::sampling_path(req.extra.format, name));
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), Value::String(opts.model.clone()));
    let instructions: Vec<&str> = req.system.iter().map(|t| t.text.as_str()).collect();
    if !instructions.is_empty() {
        body.insert(
            "instructions".into(),
            Value::String(instructions.join("\n\n")),
        );
    }
    let mut input: Vec<Value> = Vec::new();
    let mut replay_reasoning = false;
    for (i, m) in req.messages.iter().enumerate() {
        match m.role {
            ir::Role::User | ir::Role::System => {
                let role = if m.role == ir::Role::User {
                    "user"
                } else {
                    "system"
                };
                let mut content: Vec<Value> = Vec::new();
                let flush = |content: &mut Vec<Value>, input: &mut Vec<Value>| {
                    if !content.is_empty() {
                        input.push(json!({"role": role, "content": std::mem::take(content)}));
                    }
                };
                for (j, p) in m.content.iter().enumerate() {
                    let mp = at("messages", i);
                    let mc = join(&mp, "content");
                    let path = at(&mc, j);
                    match p {
                        Part::Text(t) => {
                            content.push(json!({"type": "input_text", "text": t.text}))
                        }
                        Part::Image(img) => content.push(input_image(img)),
                        Part::ToolResult(r) => {
                            flush(&mut content, &mut input);
                            let has_images = r.content.iter().any(|p| matches!(p, Part::Image(_)));
                            let output = if has_images {
                                Value::Array(
                                    r.content
                                        .iter()
                                        .filter_map(|p| match p {
                                            Part::Text(t) => {
                                                Some(json!({"type": "input_text", "text": t.text}))
                                            }
                                            Part::Image(img) => Some(input_image(img)),
                                            _ => None,
                                        })
                                        .collect(),
                                )
                            } else {
                                let texts: Vec<&str> = r
                                    .content
                                    .iter()
                                    .filter_map(|p| match p {
                                        Part::Text(t) => Some(t.text.as_str()),
                                        _ => None,
                                    })
                                    .collect();
                                Value::String(texts.join("\n"))
                            };
                            input.push(json!({"type": "function_call_output", "call_id": r.id, "output": output}));
                        }
                        Part::Raw(raw) if raw.format == Format::OpenAiResponses => {
                            flush(&mut content, &mut input);
                            input.push(raw.value.clone());
                        }
                        Part::Raw(raw) => {
                            return Err(bad(
                                format!(
                                    "'{}' content at '{path}' cannot be expressed for an OpenAI Responses upstream",
                                    raw.kind()
                                ),
                                &path,
                            ));
                        }
                        // Thinking in a user turn has no meaning; nothing to send.
                        Part::Thinking(_) | Part::RedactedThinking(_) | Part::ToolCall(_) => {}
                    }
                }
                flush(&mut content, &mut input);
            }
            ir::Role::Assistant => {
                let mut texts: Vec<Value> = Vec::new();
                let flush = |texts: &mut Vec<Value>, input: &mut Vec<Value>| {
                    if !texts.is_empty() {
                        input.push(json!({"type": "message", "role": "assistant", "content": std::mem::take(texts)}));
                    }
                };
                for (j, p) in m.content.iter().enumerate() {
                    let mp = at("messages", i);
                    let mc = join(&mp, "content");
                    let path = at(&mc, j);
                    match p {
                        Part::Text(t) => {
                            if !t.text.is_empty() {
                                texts.push(json!({"type": "output_text", "text": t.text}));
                            }
                        }
                        Part::ToolCall(c) => {
                            flush(&mut texts, &mut input);
                            input.push(json!({"type": "function_call", "call_id": c.id, "name": c.name, "arguments": c.arguments}));
                        }
                        Part::Thinking(t) => {
                            // Only OpenAI's own encrypted reasoning can be replayed to it.
                            if t.origin == Some(Format::OpenAiResponses)
                                && let Some(sig) = &t.signature
                            {
                                flush(&mut texts, &mut input);
                                let summary: Vec<Value> = if t.text.is_empty() {
                                    Vec::new()
                                } else {
                                    vec![json!({"type": "summary_text", "text": t.text})]
                                };
                                let mut item = json!({"type": "reasoning", "summary": summary, "encrypted_content": sig});
                                if let Some(id) = &t.id {
                                    item["id"] = Value::String(id.clone());
                                }
                                input.push(item);
                                replay_reasoning = true;
                            }
                        }
                        Part::RedactedThinking(_) => {}
                        Part::Image(_) => {
                            return Err(bad(
                                format!(
                                    "an image in an assistant turn ('{path}') cannot be expressed for an OpenAI Responses upstream"
                                ),
                                &path,
                            ));
                        }
                        Part::Raw(raw) if raw.format == Format::OpenAiResponses => {
                            flush(&mut texts, &mut input);
                            input.push(raw.value.clone());
                        }
                        Part::Raw(raw) => {
                            return Err(bad(
                                format!(
                                    "'{}' content at '{path}' cannot be expressed for an OpenAI Responses upstream",
                                    raw.kind()
                                ),
                                &path,
                            ));
                        }
                        Part::ToolResult(_) => {}
                    }
                }
                flush(&mut texts, &mut input);
            }
        }
    }
    body.insert("input".into(), Value::Array(input));
    if !req.tools.is_empty() {
        let mut tools = Vec::with_capacity(req.tools.len());
        for (i, t) in req.tools.iter().enumerate() {
            match t {
                ir::Tool::Function(f) => {
                    let mut v =
                        json!({"type": "function", "name": f.name, "parameters": f.parameters});
                    if let Some(d) = &f.description {
                        v["description"] = Value::String(d.clone());
                    }
                    if let Some(st) = f.strict {
                        v["strict"] = Value::Bool(st);
                    }
                    tools.push(v);
                }
                ir::Tool::Raw(raw) if raw.format == Format::OpenAiResponses => {
                    tools.push(raw.value.clone())
                }
                ir::Tool::Raw(raw) if dropped::is_tool_search(raw) => {
                    dropped.push(format!("tools[{i}]"));
                }
                ir::Tool::Raw(raw) => {
                    let what = match raw.value.get("name").and_then(Value::as_str) {
                        Some(n) => format!("'{n}' (type {:?})", raw.kind()),
                        None => format!("of type {:?}", raw.kind()),
                    };
                    return Err(bad(
                        format!(
                            "tools[{i}]: tool {what} is another provider's kind of tool and cannot be sent to OpenAI Responses"
                        ),
                        &format!("tools[{i}]"),
                    ));
                }
            }
        }
        if !tools.is_empty() {
            body.insert("tools".into(), Value::Array(tools));
        }
    }
    if let Some(tc) = &req.tool_choice {
        body.insert(
            "tool_choice".into(),
            match tc {
                ir::ToolChoice::Auto => json!("auto"),
                ir::ToolChoice::None => json!("none"),
                ir::ToolChoice::Required => json!("required"),
                ir::ToolChoice::Tool(n) => json!({"type": "function", "name": n}),
            },
        );
    }
    if let Some(p) = req.parallel_tool_calls {
        body.insert("parallel_tool_calls".into(), Value::Bool(p));
    }
    if let Some(t) = s.temperature {
        body.insert("temperature".into(), t.into());
    }
    if let Some(t) = s.top_p {
        body.insert("top_p".into(), t.into());
    }
    if let Some(t) = s.max_tokens {
        body.insert("max_output_tokens".into(), t.into());
    }
    let mut include_reasoning = replay_reasoning;
    if let Some(r) = &req.reasoning
        && !r.disabled
    {
        let effort = r
            .effort
            .clone()
            .or_else(|| r.budget_tokens.map(|b| ir::budget_to_effort(b).to_string()));
        let mut rv = Map::new();
        if let Some(e) = effort {
            rv.insert("effort".into(), Value::String(e));
        }
        // Other formats show thinking: ask for the summary unless told otherwise.
        rv.insert(
            "summary".into(),
            Value::String(r.summary.clone().unwrap_or_else(|| "auto".to_string())),
        );
        body.insert("reasoning".into(), Value::Object(rv));
        include_reasoning = true;
    }
    if include_reasoning {
        body.insert("include".into(), json!(["reasoning.encrypted_content"]));
    }
    match &req.response_format {
        None | Some(ir::ResponseFormat::Text) => {}
        Some(ir::ResponseFormat::JsonObject) => {
            body.insert("text".into(), json!({"format": {"type": "json_object"}}));
        }
        Some(ir::ResponseFormat::JsonSchema {
            name,
            description,
            schema,
            strict,
        }) => {
            let mut f = json!({"type": "json_schema", "name": name, "schema": schema});
            if let Some(d) = description {
                f["description"] = Value::String(d.clone());
            }
            if let Some(st) = strict {
                f["strict"] = Value::Bool(*st);
            }
            body.insert("text".into(), json!({ "format": f }));
        }
    }
    if let Some(u) = &req.user {
        body.insert("user".into(), Value::String(u.clone()));
    }
    body.insert("store".into(), Value::Bool(false));
    body.insert("stream".into(), Value::Bool(opts.stream));
    if req.extra.format == Format::OpenAiResponses {
        for (k, v) in req.extra.fields.iter().chain(req.extra.hints.iter()) {
            if k == TEXT_VERBOSITY {
                let text = body.entry("text").or_insert_with(|| json!({}));
                text["verbosity"] = v.clone();
            } else {
                body.insert(k.clone(), v.clone());
            }
        }
    }
    serde_json::to_vec(&Value::Object(body))
        .map_err(|e| TranslateError::bad_request(e.to_string(), None))
}
