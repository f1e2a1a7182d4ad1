//! Requests: Gemini request body → IR, and IR → Gemini request body.

use super::*;

/// Calls of the history not answered yet, for matching id-less results by name and order.
#[derive(Default)]
pub(super) struct PendingCalls {
    pub(super) calls: Vec<(String, String)>, // (id, name)
}

impl PendingCalls {
    pub(super) fn take(&mut self, name: &str) -> Option<String> {
        let i = self.calls.iter().position(|(_, n)| n == name)?;
        Some(self.calls.remove(i).0)
    }
}

pub(super) fn decode_signature(
    o: &Map<String, Value>,
    path: &Path<'_>,
) -> Result<Option<String>, TranslateError> {
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

pub(super) fn json_args_text(v: Option<&Value>) -> String {
    match v {
        None => "{}".to_string(),
        Some(v) => serde_json::to_string(v).unwrap_or_else(|_| "{}".to_string()),
    }
}

/// A `functionResponse.response` object → tool result text.
pub(super) fn result_text(resp: &Value) -> (String, bool) {
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

pub(super) fn decode_part(
    p: &Value,
    path: &Path<'_>,
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
        let dp = join(path, "inlineData");
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
        let dp = join(path, "fileData");
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
        let fp = join(path, "functionCall");
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
        let fp = join(path, "functionResponse");
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
            let pp = join(&fp, "parts");
            for (j, rp) in parts.iter().enumerate() {
                if let Some(part) = decode_part(rp, &at(&pp, j), turn, j, pending)? {
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

pub(super) fn thinking_from_gemini(text: &str, sig: Option<String>) -> Part {
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

pub(super) fn system_from(v: &Value, out: &mut Vec<ir::TextPart>) -> Result<(), TranslateError> {
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

pub(super) const KNOWN_TOP: &[&str] = &[
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

pub(super) const KNOWN_GEN: &[(&str, &str)] = &[
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

pub(super) fn f64_field(
    o: &Map<String, Value>,
    camel: &str,
    snake: &str,
    path: &(impl std::fmt::Display + ?Sized),
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

pub(super) fn u64_field(
    o: &Map<String, Value>,
    camel: &str,
    snake: &str,
    path: &(impl std::fmt::Display + ?Sized),
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
pub(super) fn whole(f: f64) -> Option<u64> {
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
        let path = at("contents", i);
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
        let pp = join(&path, "parts");
        for (j, p) in parts.iter().enumerate() {
            if let Some(part) = decode_part(p, &at(&pp, j), i, j, &mut pending)? {
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
                    let tp = at("tools", i);
                    let dp = join(&tp, "functionDeclarations");
                    for (j, d) in decls.iter().enumerate() {
                        req.tools
                            .push(ir::Tool::Function(decode_function(d, &at(&dp, j))?));
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

pub(super) fn decode_function(
    d: &Value,
    path: &Path<'_>,
) -> Result<ir::FunctionTool, TranslateError> {
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
        schema::from_gemini(p)
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

pub(super) fn decode_tool_config(tc: &Value, req: &mut ir::Request) -> Result<(), TranslateError> {
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

pub(super) fn decode_generation_config(
    gc: &Value,
    req: &mut ir::Request,
) -> Result<(), TranslateError> {
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
        .or_else(|| field(g, "responseSchema", "response_schema").map(schema::from_gemini));
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

pub(super) fn refuse_extra(req: &ir::Request) -> Result<(), TranslateError> {
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

pub(super) fn tool_result_response(r: &ir::ToolResult) -> Value {
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

pub(super) fn image_part(img: &ir::ImagePart) -> Value {
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
                    d.insert("parameters".into(), schema::to_gemini(&f.parameters));
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
            gcfg.insert("responseSchema".into(), schema::to_gemini(schema));
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
