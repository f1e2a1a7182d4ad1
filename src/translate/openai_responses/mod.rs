//! OpenAI Responses (`POST /v1/responses`) as a format of the internal model.
//!
//! Client side: request decode, response encode, and the typed-event stream
//! encoder ([`ResponsesEncoder`]). Upstream side (`api: responses`): request
//! encode, response decode, and the typed-event stream decoder.
//!
//! The stream encoder is a sync state machine over explicit state: each call
//! appends finished SSE frames (`event: <type>\ndata: {...}\n\n`) to `out`.
//! Event grammar (what the official `openai` SDK rebuilds the final response
//! from, so item ids / `output_index` / `content_index` must agree):
//! ```text
//! response.created, response.in_progress,
//! ( reasoning item:  output_item.added, (reasoning_summary_part.added,
//!                    reasoning_summary_text.delta*, reasoning_summary_text.done,
//!                    reasoning_summary_part.done)?, output_item.done
//! | message item:    output_item.added, content_part.added, output_text.delta*,
//!                    output_text.done, content_part.done, output_item.done
//! | function call:   output_item.added, function_call_arguments.delta*,
//!                    function_call_arguments.done, output_item.done )*
//! response.completed | response.incomplete | (error, response.failed)
//! ```
//! `sequence_number` starts at 0 and grows by one per event.

use serde_json::{Map, Value, json};

/// One open output item of the stream being encoded.
#[derive(Debug, Clone)]
enum OpenItem {
    Message {
        id: String,
        text: String,
    },
    Reasoning {
        id: String,
        text: String,
        /// A summary part has been opened (`reasoning_summary_part.added` sent).
        part_open: bool,
        encrypted: Option<String>,
    },
    FunctionCall {
        id: String,
        call_id: String,
        name: String,
        /// The client's namespace of the function ([`Namespaces`]).
        namespace: Option<String>,
        args: String,
    },
}

/// Final state of a response, for `response.completed` / `response.incomplete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    /// `incomplete_details.reason = "max_output_tokens"`
    MaxOutputTokens,
    /// `incomplete_details.reason = "content_filter"`
    ContentFilter,
}

/// Canonical usage numbers as the Responses format reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RespUsage {
    pub input: u64,
    pub cached: u64,
    pub output: u64,
    pub reasoning: u64,
}

impl RespUsage {
    pub fn to_value(self) -> Value {
        json!({
            "input_tokens": self.input,
            "input_tokens_details": {"cached_tokens": self.cached},
            "output_tokens": self.output,
            "output_tokens_details": {"reasoning_tokens": self.reasoning},
            "total_tokens": self.input + self.output,
        })
    }
}

/// A delta event, the hot path of a stream: serialized straight from borrowed
/// fields (no intermediate `Value`).
#[derive(serde::Serialize)]
struct DeltaEvent<'a> {
    #[serde(rename = "type")]
    ty: &'a str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary_index: Option<u32>,
    delta: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<[u8; 0]>,
}

fn write_delta(out: &mut Vec<u8>, ev: &DeltaEvent<'_>) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(ev.ty.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    let _ = serde_json::to_writer(&mut *out, ev);
    out.extend_from_slice(b"\n\n");
}

/// The Responses client stream encoder (see the module doc for the grammar).
#[derive(Debug, Clone)]
pub struct ResponsesEncoder {
    seq: u64,
    id: String,
    model: String,
    created_at: u64,
    started: bool,
    done: bool,
    /// Finished output items, in `output_index` order.
    output: Vec<Value>,
    open: Option<OpenItem>,
    namespaces: Namespaces,
}

fn frame(out: &mut Vec<u8>, ty: &str, data: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(ty.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Serializing a Value cannot fail.
    let _ = serde_json::to_writer(&mut *out, data);
    out.extend_from_slice(b"\n\n");
}

/// Base of generated item ids: the response id without its `resp_` prefix,
/// reduced to characters that are safe in ids.
fn id_base(resp_id: &str) -> String {
    let base: String = resp_id
        .strip_prefix("resp_")
        .unwrap_or(resp_id)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(48)
        .collect();
    if base.is_empty() {
        "0".to_string()
    } else {
        base
    }
}

/// A Responses `id` for an answer whose upstream id is `upstream_id`.
pub fn response_id(upstream_id: &str) -> String {
    if upstream_id.starts_with("resp_") {
        upstream_id.to_string()
    } else {
        format!("resp_{}", id_base(upstream_id))
    }
}

/// The response object shared by the non-streaming answer and the stream's
/// `response.*` lifecycle events. (One flat list of the object's variable
/// fields reads better at the call sites than a builder.)
#[allow(clippy::too_many_arguments)]
pub fn response_object(
    id: &str,
    model: &str,
    created_at: u64,
    status: &str,
    output: Vec<Value>,
    usage: Option<RespUsage>,
    outcome: Option<Outcome>,
    error: Option<Value>,
) -> Value {
    let incomplete = match outcome {
        Some(Outcome::MaxOutputTokens) => json!({"reason": "max_output_tokens"}),
        Some(Outcome::ContentFilter) => json!({"reason": "content_filter"}),
        _ => Value::Null,
    };
    json!({
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": false,
        "error": error.unwrap_or(Value::Null),
        "incomplete_details": incomplete,
        "instructions": null,
        "max_output_tokens": null,
        "model": model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null},
        "store": false,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "truncation": "disabled",
        "usage": usage.map(RespUsage::to_value).unwrap_or(Value::Null),
        "metadata": {},
    })
}

impl ResponsesEncoder {
    pub fn new(id: &str, model: &str, created_at: u64) -> Self {
        ResponsesEncoder {
            seq: 0,
            id: response_id(id),
            model: model.to_string(),
            created_at,
            started: false,
            done: false,
            output: Vec::new(),
            open: None,
            namespaces: Namespaces::default(),
        }
    }

    /// The client's namespaced functions, to give their calls back split.
    pub fn with_namespaces(mut self, namespaces: Namespaces) -> Self {
        self.namespaces = namespaces;
        self
    }

    /// Whether a reasoning item is open.
    pub fn reasoning_open(&self) -> bool {
        matches!(self.open, Some(OpenItem::Reasoning { .. }))
    }

    /// Whether the terminal event has been written.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Set the id/model once the upstream has told them (before anything is sent).
    pub fn set_identity(&mut self, id: &str, model: &str, created_at: u64) {
        if !self.started {
            if !id.is_empty() {
                self.id = response_id(id);
            }
            if !model.is_empty() {
                self.model = model.to_string();
            }
            if created_at != 0 {
                self.created_at = created_at;
            }
        }
    }

    fn emit(&mut self, out: &mut Vec<u8>, ty: &str, mut data: Map<String, Value>) {
        data.insert("type".into(), Value::String(ty.to_string()));
        data.insert("sequence_number".into(), Value::from(self.seq));
        self.seq += 1;
        frame(out, ty, &Value::Object(data));
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn lifecycle(
        &self,
        status: &str,
        usage: Option<RespUsage>,
        outcome: Option<Outcome>,
        error: Option<Value>,
    ) -> Value {
        response_object(
            &self.id,
            &self.model,
            self.created_at,
            status,
            self.output.clone(),
            usage,
            outcome,
            error,
        )
    }

    /// `response.created` + `response.in_progress`, once.
    pub fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let r = self.lifecycle("in_progress", None, None, None);
        self.emit(out, "response.created", Self::obj(json!({ "response": r })));
        let r = self.lifecycle("in_progress", None, None, None);
        self.emit(
            out,
            "response.in_progress",
            Self::obj(json!({ "response": r })),
        );
    }

    fn next_index(&self) -> usize {
        self.output.len()
    }

    fn item_id(&self, prefix: &str) -> String {
        format!("{prefix}_{}{:03}", id_base(&self.id), self.next_index())
    }

    /// Close whatever item is open (writing its `.done` events).
    pub fn close_item(&mut self, out: &mut Vec<u8>) {
        let Some(item) = self.open.take() else { return };
        let idx = self.next_index();
        let done_item = match item {
            OpenItem::Message { id, text } => {
                self.emit(
                    out,
                    "response.output_text.done",
                    Self::obj(json!({"item_id": id, "output_index": idx, "content_index": 0, "text": text, "logprobs": []})),
                );
                let part =
                    json!({"type": "output_text", "annotations": [], "logprobs": [], "text": text});
                self.emit(
                    out,
                    "response.content_part.done",
                    Self::obj(json!({"item_id": id, "output_index": idx, "content_index": 0, "part": part})),
                );
                json!({"id": id, "type": "message", "status": "completed", "role": "assistant", "content": [part]})
            }
            OpenItem::Reasoning {
                id,
                text,
                part_open,
                encrypted,
            } => {
                let mut summary = Vec::new();
                if part_open {
                    self.emit(
                        out,
                        "response.reasoning_summary_text.done",
                        Self::obj(json!({"item_id": id, "output_index": idx, "summary_index": 0, "text": text})),
                    );
                    let part = json!({"type": "summary_text", "text": text});
                    self.emit(
                        out,
                        "response.reasoning_summary_part.done",
                        Self::obj(json!({"item_id": id, "output_index": idx, "summary_index": 0, "part": part})),
                    );
                    summary.push(part);
                }
                let mut item = json!({"id": id, "type": "reasoning", "summary": summary});
                if let Some(enc) = encrypted {
                    item["encrypted_content"] = Value::String(enc);
                }
                item
            }
            OpenItem::FunctionCall {
                id,
                call_id,
                name,
                namespace,
                args,
            } => {
                self.emit(
                    out,
                    "response.function_call_arguments.done",
                    Self::obj(json!({"item_id": id, "output_index": idx, "arguments": args})),
                );
                let mut item = json!({"id": id, "type": "function_call", "status": "completed", "arguments": args, "call_id": call_id, "name": name});
                if let Some(ns) = namespace {
                    item["namespace"] = Value::String(ns);
                }
                item
            }
        };
        self.emit(
            out,
            "response.output_item.done",
            Self::obj(json!({"output_index": idx, "item": done_item})),
        );
        self.output.push(done_item);
    }

    /// Append assistant text (opens a message item when needed).
    pub fn text_delta(&mut self, delta: &str, out: &mut Vec<u8>) {
        self.start(out);
        if !matches!(self.open, Some(OpenItem::Message { .. })) {
            self.close_item(out);
            let id = self.item_id("msg");
            let idx = self.next_index();
            self.emit(
                out,
                "response.output_item.added",
                Self::obj(json!({"output_index": idx, "item": {"id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}})),
            );
            self.emit(
                out,
                "response.content_part.added",
                Self::obj(json!({"item_id": id, "output_index": idx, "content_index": 0, "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}})),
            );
            self.open = Some(OpenItem::Message {
                id,
                text: String::new(),
            });
        }
        if delta.is_empty() {
            return;
        }
        let idx = self.next_index();
        if let Some(OpenItem::Message { id, text }) = &mut self.open {
            text.push_str(delta);
            let ev = DeltaEvent {
                ty: "response.output_text.delta",
                sequence_number: self.seq,
                item_id: id,
                output_index: idx,
                content_index: Some(0),
                summary_index: None,
                delta,
                logprobs: Some([]),
            };
            write_delta(out, &ev);
            self.seq += 1;
        }
    }

    fn open_reasoning(&mut self, out: &mut Vec<u8>) {
        self.start(out);
        if !matches!(self.open, Some(OpenItem::Reasoning { .. })) {
            self.close_item(out);
            let id = self.item_id("rs");
            let idx = self.next_index();
            self.emit(
                out,
                "response.output_item.added",
                Self::obj(json!({"output_index": idx, "item": {"id": id, "type": "reasoning", "summary": []}})),
            );
            self.open = Some(OpenItem::Reasoning {
                id,
                text: String::new(),
                part_open: false,
                encrypted: None,
            });
        }
    }

    /// Append reasoning text, shown to Responses clients as a reasoning summary.
    pub fn reasoning_delta(&mut self, delta: &str, out: &mut Vec<u8>) {
        self.open_reasoning(out);
        let idx = self.next_index();
        if let Some(OpenItem::Reasoning { id, part_open, .. }) = &mut self.open
            && !*part_open
        {
            *part_open = true;
            let v = json!({"item_id": id, "output_index": idx, "summary_index": 0, "part": {"type": "summary_text", "text": ""}});
            self.emit(out, "response.reasoning_summary_part.added", Self::obj(v));
        }
        if delta.is_empty() {
            return;
        }
        if let Some(OpenItem::Reasoning { id, text, .. }) = &mut self.open {
            text.push_str(delta);
            let ev = DeltaEvent {
                ty: "response.reasoning_summary_text.delta",
                sequence_number: self.seq,
                item_id: id,
                output_index: idx,
                content_index: None,
                summary_index: Some(0),
                delta,
                logprobs: None,
            };
            write_delta(out, &ev);
            self.seq += 1;
        }
    }

    /// Attach opaque reasoning state (`encrypted_content`) to the reasoning item,
    /// opening one when none is open (a signed, text-less thinking block).
    pub fn reasoning_encrypted(&mut self, data: &str, out: &mut Vec<u8>) {
        self.open_reasoning(out);
        if let Some(OpenItem::Reasoning { encrypted, .. }) = &mut self.open {
            match encrypted {
                Some(e) => e.push_str(data),
                None => *encrypted = Some(data.to_string()),
            }
        }
    }

    /// Open a function call item; a flattened namespaced name is given back
    /// as the client declared it ([`Namespaces`]).
    pub fn tool_call_start(&mut self, call_id: &str, name: &str, out: &mut Vec<u8>) {
        self.start(out);
        self.close_item(out);
        let id = self.item_id("fc");
        let idx = self.next_index();
        let (namespace, name) = match self.namespaces.split(name) {
            Some((ns, n)) => (Some(ns.to_string()), n.to_string()),
            None => (None, name.to_string()),
        };
        let mut item = json!({"id": id, "type": "function_call", "status": "in_progress", "arguments": "", "call_id": call_id, "name": name});
        if let Some(ns) = &namespace {
            item["namespace"] = Value::String(ns.clone());
        }
        self.emit(
            out,
            "response.output_item.added",
            Self::obj(json!({"output_index": idx, "item": item})),
        );
        self.open = Some(OpenItem::FunctionCall {
            id,
            call_id: call_id.to_string(),
            name,
            namespace,
            args: String::new(),
        });
    }

    /// Append argument text to the open function call (ignored when none is open).
    pub fn tool_args_delta(&mut self, delta: &str, out: &mut Vec<u8>) {
        if delta.is_empty() {
            return;
        }
        let idx = self.next_index();
        if let Some(OpenItem::FunctionCall { id, args, .. }) = &mut self.open {
            args.push_str(delta);
            let ev = DeltaEvent {
                ty: "response.function_call_arguments.delta",
                sequence_number: self.seq,
                item_id: id,
                output_index: idx,
                content_index: None,
                summary_index: None,
                delta,
                logprobs: None,
            };
            write_delta(out, &ev);
            self.seq += 1;
        }
    }

    /// Close everything and write `response.completed` / `response.incomplete`.
    pub fn finish(&mut self, outcome: Outcome, usage: Option<RespUsage>, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.start(out);
        self.close_item(out);
        self.done = true;
        let (ty, status) = match outcome {
            Outcome::Completed => ("response.completed", "completed"),
            _ => ("response.incomplete", "incomplete"),
        };
        let r = self.lifecycle(status, usage, Some(outcome), None);
        self.emit(out, ty, Self::obj(json!({ "response": r })));
    }

    /// The upstream failed: an `error` event, then `response.failed`.
    pub fn fail(&mut self, code: &str, message: &str, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.start(out);
        self.close_item(out);
        self.done = true;
        self.emit(
            out,
            "error",
            Self::obj(json!({"code": code, "message": message, "param": null})),
        );
        let err = json!({"code": code, "message": message});
        let r = self.lifecycle("failed", None, None, Some(err));
        self.emit(out, "response.failed", Self::obj(json!({ "response": r })));
    }
}

// ================================================================ IR conversions

use super::dropped::{self, Dropped};
use super::gemini::{unwrap_signature, wrap_signature};
use super::{RequestOpts, ResponseOpts, StreamDecoder, StreamEncoder, TranslateError};
use crate::ir::{self, Part, StreamEvent};
use crate::sse;
use crate::translate::Format;
use std::borrow::Cow;

fn bad(msg: impl Into<String>, field: &str) -> TranslateError {
    TranslateError::bad_request(msg, Some(field))
}

fn upstream_bad(msg: impl Into<String>) -> TranslateError {
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
const HINT_FIELDS: &[&str] = &[
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
const TEXT_VERBOSITY: &str = "text.verbosity";

/// The function tools a Responses client grouped in `namespace` tools
/// (Codex's `multi_agent_v1`). Other formats have no namespaces: each such
/// function goes upstream as one function named `{namespace}__{name}`
/// ([`flat_name`]), and a call of that name comes back to the client as a
/// `function_call` item with `namespace` and `name` apart, in whole answers
/// and streams. Only names the client declared are split back, so a plain
/// function whose name holds `__` (`mcp__server__tool`) is never touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespaces(Vec<(String, String, String)>);

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
fn namespace_tool(t: &Value) -> Option<(&str, &[Value])> {
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
fn function_tool(
    to: &Map<String, Value>,
    name: String,
    path: &str,
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
fn decode_tools(req: &mut ir::Request, tools: &[Value]) -> Result<(), TranslateError> {
    let mut later = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        let path = format!("tools[{i}]");
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
            for (j, f) in fns.iter().enumerate() {
                let fp = format!("{path}.tools[{j}]");
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
                    later.push((fp, ft));
                }
            }
        } else {
            req.tools.push(ir::Tool::Raw(ir::Raw {
                format: Format::OpenAiResponses,
                value: t.clone(),
            }));
        }
    }
    for (_, ft) in later {
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

fn push_part(req: &mut ir::Request, role: ir::Role, part: Part) {
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

fn image_from(o: &Map<String, Value>, path: &str) -> Result<Part, TranslateError> {
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
            data: super::gemini::std_base64(data)
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

fn content_parts(content: &Value, path: &str) -> Result<Vec<Part>, TranslateError> {
    match content {
        Value::String(s) => Ok(vec![Part::Text(ir::TextPart::new(s.clone()))]),
        Value::Array(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                let pp = format!("{path}[{j}]");
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
fn attach_signature(req: &mut ir::Request, kind: &str, sig: String) -> bool {
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

fn reasoning_text(o: &Map<String, Value>) -> String {
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
enum ReasoningOut {
    Part(Part),
    Signature { kind: String, sig: String },
}

fn reasoning_from(o: &Map<String, Value>) -> ReasoningOut {
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

fn decode_input_item(
    req: &mut ir::Request,
    item: &Value,
    path: &str,
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
                &format!("{path}.content"),
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
                Some(v @ Value::Array(_)) => content_parts(v, &format!("{path}.output"))?,
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
                        decode_input_item(&mut req, it, &format!("instructions[{i}]"))?;
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
                decode_input_item(&mut req, it, &format!("input[{i}]"))?;
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

// ---------------------------------------------------------------- IR → Responses request

fn image_url_of(img: &ir::ImagePart) -> String {
    match &img.source {
        ir::ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        ir::ImageSource::Url { url } => url.clone(),
    }
}

fn input_image(img: &ir::ImagePart) -> Value {
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
                    let path = format!("messages[{i}].content[{j}]");
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
                    let path = format!("messages[{i}].content[{j}]");
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

// ---------------------------------------------------------------- Responses answer → IR

fn usage_from(u: &Value) -> ir::Usage {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    ir::Usage {
        input: n(&u["input_tokens"]),
        output: n(&u["output_tokens"]),
        cache_read: n(&u["input_tokens_details"]["cached_tokens"]),
        cache_write: 0,
        reasoning: n(&u["output_tokens_details"]["reasoning_tokens"]),
    }
}

fn finish_from(resp: &Value) -> ir::FinishReason {
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

fn output_item_parts(item: &Value, out: &mut Vec<Part>) {
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

/// A whole Responses answer → IR.
/// Usage of a whole answer, without decoding the rest of it (passthrough
/// metering). `None` when the answer reports none.
pub fn answer_usage(body: &[u8]) -> Option<ir::Usage> {
    if let Some(u) = super::tail_field::decode_last::<Value>(body, "usage") {
        return u.filter(Value::is_object).map(|u| usage_from(&u));
    }
    #[derive(serde::Deserialize)]
    struct OnlyUsage {
        usage: Option<Value>,
    }
    let w: OnlyUsage = serde_json::from_slice(body).ok()?;
    w.usage.filter(Value::is_object).map(|u| usage_from(&u))
}

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

// ---------------------------------------------------------------- IR → Responses answer

fn resp_usage(u: &ir::Usage) -> RespUsage {
    RespUsage {
        input: u.input,
        cached: u.cache_read,
        output: u.output,
        reasoning: u.reasoning,
    }
}

fn outcome_of(f: Option<&ir::FinishReason>) -> Outcome {
    match f {
        Some(ir::FinishReason::Length | ir::FinishReason::ContextWindowExceeded) => {
            Outcome::MaxOutputTokens
        }
        Some(ir::FinishReason::ContentFilter) => Outcome::ContentFilter,
        _ => Outcome::Completed,
    }
}

fn sig_for_client(origin: Option<Format>, sig: &str, id: Option<&str>, kind: &str) -> String {
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
        resp.created.unwrap_or_else(super::json::now_unix),
        status,
        output,
        Some(resp_usage(&resp.usage)),
        Some(outcome),
        None,
    );
    serde_json::to_vec(&v).unwrap_or_default()
}

// ---------------------------------------------------------------- stream: Responses → IR

#[derive(Debug, Clone, PartialEq)]
enum DecOpen {
    /// Message content part (output_index, content_index).
    Text(u64, u64),
    /// Reasoning item (output_index); summary parts seen so far.
    Reasoning(u64, u64),
    /// Function call item (output_index); whether argument deltas came.
    Call(u64, bool),
}

/// Responses typed SSE events → IR events.
#[derive(Debug, Default)]
pub struct StreamDecode {
    started: bool,
    finished: bool,
    next_index: usize,
    open: Option<(usize, DecOpen)>,
    usage: ir::Usage,
}

impl StreamDecode {
    fn close(&mut self, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        if let Some((index, _)) = self.open.take() {
            sink(StreamEvent::BlockStop { index });
        }
    }

    fn open_block(
        &mut self,
        kind: DecOpen,
        block: ir::BlockStart<'_>,
        sink: &mut dyn FnMut(StreamEvent<'_>),
    ) -> usize {
        self.close(sink);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((index, kind));
        sink(StreamEvent::BlockStart { index, block });
        index
    }

    fn start(&mut self, r: &Value, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        if self.started {
            return;
        }
        self.started = true;
        sink(StreamEvent::Start(ir::StreamStart {
            id: Cow::Borrowed(r.get("id").and_then(Value::as_str).unwrap_or("")),
            model: Cow::Borrowed(r.get("model").and_then(Value::as_str).unwrap_or("")),
            created: r.get("created_at").and_then(Value::as_u64),
            usage: ir::Usage::default(),
            origin: Some(Format::OpenAiResponses),
        }));
    }

    fn error(&mut self, status: u16, message: String, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        self.finished = true;
        sink(StreamEvent::Error(ir::StreamError { status, message }));
    }
}

fn error_status(code: Option<&str>) -> u16 {
    match code {
        Some("server_error") | None => 500,
        Some(c) => match ir::status_for_error_type(c) {
            500 if c.contains("invalid") => 400,
            s => s,
        },
    }
}

impl StreamDecoder for StreamDecode {
    fn event(&mut self, ev: sse::Event<'_>, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        if self.finished {
            return;
        }
        if ev.data == b"[DONE]" {
            return;
        }
        let v: Value = match serde_json::from_slice(ev.data) {
            Ok(v) => v,
            Err(e) => {
                return self.error(502, format!("malformed Responses stream event: {e}"), sink);
            }
        };
        let ty = v.get("type").and_then(Value::as_str).unwrap_or(ev.event);
        let oi = v.get("output_index").and_then(Value::as_u64).unwrap_or(0);
        match ty {
            "response.created" | "response.in_progress" | "response.queued" => {
                self.start(v.get("response").unwrap_or(&Value::Null), sink);
            }
            "response.output_item.added" => {
                self.start(&Value::Null, sink);
                let item = &v["item"];
                match item.get("type").and_then(Value::as_str) {
                    Some("reasoning") => {
                        self.open_block(DecOpen::Reasoning(oi, 0), ir::BlockStart::Thinking, sink);
                    }
                    Some("function_call") => {
                        let id = item
                            .get("call_id")
                            .or_else(|| item.get("id"))
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        let name = item.get("name").and_then(Value::as_str).unwrap_or("");
                        self.open_block(
                            DecOpen::Call(oi, false),
                            ir::BlockStart::ToolCall {
                                id: Cow::Borrowed(id),
                                name: Cow::Borrowed(name),
                            },
                            sink,
                        );
                    }
                    _ => {}
                }
            }
            "response.content_part.added" => {
                let ci = v.get("content_index").and_then(Value::as_u64).unwrap_or(0);
                self.open_block(DecOpen::Text(oi, ci), ir::BlockStart::Text, sink);
            }
            "response.output_text.delta" | "response.refusal.delta" => {
                let ci = v.get("content_index").and_then(Value::as_u64).unwrap_or(0);
                let index = match &self.open {
                    Some((i, DecOpen::Text(o, c))) if *o == oi && *c == ci => *i,
                    _ => self.open_block(DecOpen::Text(oi, ci), ir::BlockStart::Text, sink),
                };
                if let Some(d) = v
                    .get("delta")
                    .and_then(Value::as_str)
                    .filter(|d| !d.is_empty())
                {
                    sink(StreamEvent::Delta {
                        index,
                        delta: ir::Delta::Text(Cow::Borrowed(d)),
                    });
                }
            }
            "response.content_part.done" => {
                if matches!(&self.open, Some((_, DecOpen::Text(o, _))) if *o == oi) {
                    self.close(sink);
                }
            }
            "response.reasoning_summary_part.added" => {
                let (index, sep) = match &mut self.open {
                    Some((i, DecOpen::Reasoning(o, parts))) if *o == oi => {
                        *parts += 1;
                        (*i, *parts > 1)
                    }
                    _ => (
                        self.open_block(DecOpen::Reasoning(oi, 1), ir::BlockStart::Thinking, sink),
                        false,
                    ),
                };
                if sep {
                    sink(StreamEvent::Delta {
                        index,
                        delta: ir::Delta::Thinking(Cow::Borrowed("\n\n")),
                    });
                }
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                let index = match &self.open {
                    Some((i, DecOpen::Reasoning(o, _))) if *o == oi => *i,
                    _ => self.open_block(DecOpen::Reasoning(oi, 1), ir::BlockStart::Thinking, sink),
                };
                if let Some(d) = v
                    .get("delta")
                    .and_then(Value::as_str)
                    .filter(|d| !d.is_empty())
                {
                    sink(StreamEvent::Delta {
                        index,
                        delta: ir::Delta::Thinking(Cow::Borrowed(d)),
                    });
                }
            }
            "response.function_call_arguments.delta" => {
                if let Some((index, DecOpen::Call(o, seen))) = &mut self.open
                    && *o == oi
                {
                    *seen = true;
                    let index = *index;
                    if let Some(d) = v
                        .get("delta")
                        .and_then(Value::as_str)
                        .filter(|d| !d.is_empty())
                    {
                        sink(StreamEvent::Delta {
                            index,
                            delta: ir::Delta::ToolArgs(Cow::Borrowed(d)),
                        });
                    }
                }
            }
            "response.output_item.done" => {
                let item = &v["item"];
                match item.get("type").and_then(Value::as_str) {
                    Some("reasoning") => {
                        let index = match &self.open {
                            Some((i, DecOpen::Reasoning(o, _))) if *o == oi => *i,
                            _ => self.open_block(
                                DecOpen::Reasoning(oi, 0),
                                ir::BlockStart::Thinking,
                                sink,
                            ),
                        };
                        if let Some(id) = item
                            .get("id")
                            .and_then(Value::as_str)
                            .filter(|s| !s.is_empty())
                        {
                            sink(StreamEvent::Delta {
                                index,
                                delta: ir::Delta::ThinkingId(Cow::Borrowed(id)),
                            });
                        }
                        if let Some(enc) = item.get("encrypted_content").and_then(Value::as_str) {
                            sink(StreamEvent::Delta {
                                index,
                                delta: ir::Delta::Signature(Cow::Borrowed(enc)),
                            });
                        }
                        self.close(sink);
                    }
                    Some("function_call") => {
                        let index = match &self.open {
                            Some((i, DecOpen::Call(o, _))) if *o == oi => *i,
                            _ => {
                                let id = item.get("call_id").and_then(Value::as_str).unwrap_or("");
                                let name = item.get("name").and_then(Value::as_str).unwrap_or("");
                                self.open_block(
                                    DecOpen::Call(oi, false),
                                    ir::BlockStart::ToolCall {
                                        id: Cow::Borrowed(id),
                                        name: Cow::Borrowed(name),
                                    },
                                    sink,
                                )
                            }
                        };
                        if let Some((_, DecOpen::Call(_, false))) = &self.open
                            && let Some(a) = item
                                .get("arguments")
                                .and_then(Value::as_str)
                                .filter(|a| !a.is_empty())
                        {
                            sink(StreamEvent::Delta {
                                index,
                                delta: ir::Delta::ToolArgs(Cow::Borrowed(a)),
                            });
                        }
                        self.close(sink);
                    }
                    Some("message") => {
                        if matches!(&self.open, Some((_, DecOpen::Text(o, _))) if *o == oi) {
                            self.close(sink);
                        }
                    }
                    _ => {
                        self.close(sink);
                        let index = self.next_index;
                        self.next_index += 1;
                        sink(StreamEvent::BlockStart {
                            index,
                            block: ir::BlockStart::Raw(ir::Raw {
                                format: Format::OpenAiResponses,
                                value: item.clone(),
                            }),
                        });
                        sink(StreamEvent::BlockStop { index });
                    }
                }
            }
            "response.completed" | "response.incomplete" => {
                let r = v.get("response").unwrap_or(&Value::Null);
                self.start(r, sink);
                self.close(sink);
                if let Some(u) = r.get("usage").filter(|u| u.is_object()) {
                    self.usage = usage_from(u);
                }
                self.finished = true;
                sink(StreamEvent::Finish {
                    reason: finish_from(r),
                    usage: self.usage,
                });
            }
            "response.failed" => {
                let e = &v["response"]["error"];
                let msg = e["message"]
                    .as_str()
                    .unwrap_or("upstream response failed")
                    .to_string();
                self.error(error_status(e["code"].as_str()), msg, sink);
            }
            "error" => {
                let e = v.get("error").filter(|e| e.is_object()).unwrap_or(&v);
                let msg = e["message"]
                    .as_str()
                    .unwrap_or("upstream stream error")
                    .to_string();
                let code = e["code"].as_str().or_else(|| e["type"].as_str());
                self.error(error_status(code), msg, sink);
            }
            _ => {}
        }
    }

    fn end(&mut self, _sink: &mut dyn FnMut(StreamEvent<'_>)) {
        // No response.completed: the answer was cut short; the caller reports it.
    }
}

// ---------------------------------------------------------------- stream: IR → Responses client

/// IR events → Responses typed events, over [`ResponsesEncoder`].
#[derive(Debug)]
pub struct StreamEncode {
    enc: ResponsesEncoder,
    upstream: Option<Format>,
    usage: ir::Usage,
    /// Gemini per-part signature of the open text / call block, given to the
    /// client as a reasoning item after it (kind "text" / "call").
    pending_sig: Option<(String, &'static str)>,
    /// Signature of the open thinking block, wrapped once it is whole.
    thinking_sig: Option<String>,
    open_call: bool,
}

impl StreamEncode {
    pub fn new(opts: &ResponseOpts) -> Self {
        Self::with_created(opts, 0)
    }

    /// `created` (Unix seconds) stamps answers whose upstream gave no time.
    pub fn with_created(opts: &ResponseOpts, created: u64) -> Self {
        StreamEncode {
            enc: ResponsesEncoder::new("0", &opts.client_model, created)
                .with_namespaces(opts.namespaces.clone()),
            upstream: None,
            usage: ir::Usage::default(),
            pending_sig: None,
            thinking_sig: None,
            open_call: false,
        }
    }

    fn flush_sig(&mut self, out: &mut Vec<u8>) {
        if let Some(sig) = self.thinking_sig.take() {
            let sig = sig_for_client(self.upstream, &sig, None, "thinking");
            self.enc.reasoning_encrypted(&sig, out);
        }
        if let Some((sig, kind)) = self.pending_sig.take() {
            self.enc.close_item(out);
            let wrapped = wrap_signature(Some(Format::Gemini), &sig, None, kind);
            self.enc.reasoning_encrypted(&wrapped, out);
            self.enc.close_item(out);
        }
    }
}

impl StreamEncoder for StreamEncode {
    fn event(&mut self, ev: &StreamEvent<'_>, out: &mut Vec<u8>) {
        if self.enc.is_done() {
            return;
        }
        match ev {
            StreamEvent::Start(s) => {
                self.upstream = s.origin;
                self.enc
                    .set_identity(&s.id, &s.model, s.created.unwrap_or(0));
                self.usage.merge(&s.usage);
                self.enc.start(out);
            }
            StreamEvent::BlockStart { block, .. } => {
                self.flush_sig(out);
                self.open_call = false;
                match block {
                    ir::BlockStart::Text => self.enc.text_delta("", out),
                    ir::BlockStart::Thinking => self.enc.reasoning_delta("", out),
                    ir::BlockStart::ToolCall { id, name } => {
                        self.open_call = true;
                        self.enc.tool_call_start(id, name, out)
                    }
                    ir::BlockStart::RedactedThinking { data } => {
                        self.enc.close_item(out);
                        self.enc.reasoning_encrypted(
                            &wrap_signature(self.upstream, data, None, "redacted"),
                            out,
                        );
                    }
                    ir::BlockStart::Raw(_) => self.enc.close_item(out),
                }
            }
            StreamEvent::Delta { delta, .. } => match delta {
                ir::Delta::Text(t) => self.enc.text_delta(t, out),
                ir::Delta::Thinking(t) => self.enc.reasoning_delta(t, out),
                ir::Delta::ToolArgs(a) => self.enc.tool_args_delta(a, out),
                // Only a Responses upstream names its reasoning items, and a
                // Responses client of one gets its bytes untouched.
                ir::Delta::ThinkingId(_) => {}
                ir::Delta::Signature(s) => {
                    if self.enc.reasoning_open() {
                        // Whole before wrapping: it may come in pieces.
                        self.thinking_sig
                            .get_or_insert_with(String::new)
                            .push_str(s);
                    } else {
                        let kind = if self.open_call { "call" } else { "text" };
                        match &mut self.pending_sig {
                            Some((p, _)) => p.push_str(s),
                            None => self.pending_sig = Some((s.to_string(), kind)),
                        }
                    }
                }
            },
            StreamEvent::BlockStop { .. } => {
                if let Some(sig) = self.thinking_sig.take() {
                    let sig = sig_for_client(self.upstream, &sig, None, "thinking");
                    self.enc.reasoning_encrypted(&sig, out);
                }
                self.enc.close_item(out);
                self.flush_sig(out);
                self.open_call = false;
            }
            StreamEvent::Usage(u) => self.usage.merge(u),
            StreamEvent::Ping => {}
            StreamEvent::Finish { reason, usage } => {
                self.flush_sig(out);
                self.usage.merge(usage);
                self.enc
                    .finish(outcome_of(Some(reason)), Some(resp_usage(&self.usage)), out);
            }
            StreamEvent::Error(e) => {
                let code = match e.status {
                    429 => "rate_limit_exceeded",
                    400 => "invalid_request_error",
                    401 => "invalid_api_key",
                    _ => "server_error",
                };
                self.enc.fail(code, &e.message, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parse encoder output into (event name, data) pairs, checking framing.
    pub(crate) fn parse_frames(bytes: &[u8]) -> Vec<(String, Value)> {
        let text = std::str::from_utf8(bytes).expect("utf8");
        assert!(
            text.is_empty() || text.ends_with("\n\n"),
            "stream ends mid-frame"
        );
        text.split("\n\n")
            .filter(|f| !f.is_empty())
            .map(|f| {
                let mut lines = f.lines();
                let ev = lines
                    .next()
                    .and_then(|l| l.strip_prefix("event: "))
                    .expect("event line");
                let data = lines
                    .next()
                    .and_then(|l| l.strip_prefix("data: "))
                    .expect("data line");
                assert!(lines.next().is_none(), "one data line per frame");
                let v: Value = serde_json::from_str(data).expect("data is JSON");
                assert_eq!(v["type"], ev, "event name matches data.type");
                (ev.to_string(), v)
            })
            .collect()
    }

    /// Rebuild the final response the way the `openai` SDK's ResponseStreamState
    /// does, asserting the indices agree, and return (snapshot, final response).
    pub(crate) fn replay_like_sdk(frames: &[(String, Value)]) -> (Value, Value) {
        let mut snapshot = Value::Null;
        let mut last_seq: i64 = -1;
        let mut final_resp = Value::Null;
        for (ev, v) in frames {
            let seq = v["sequence_number"].as_i64().expect("sequence_number");
            assert_eq!(
                seq,
                last_seq + 1,
                "sequence_number increases by one at {ev}"
            );
            last_seq = seq;
            match ev.as_str() {
                "response.created" => snapshot = v["response"].clone(),
                "response.output_item.added" => {
                    let out = snapshot["output"].as_array_mut().expect("created first");
                    assert_eq!(
                        v["output_index"].as_u64().unwrap() as usize,
                        out.len(),
                        "output_index of added item"
                    );
                    out.push(v["item"].clone());
                }
                "response.content_part.added" => {
                    let item =
                        &mut snapshot["output"][v["output_index"].as_u64().unwrap() as usize];
                    assert_eq!(item["id"], v["item_id"]);
                    let content = item["content"].as_array_mut().unwrap();
                    assert_eq!(v["content_index"].as_u64().unwrap() as usize, content.len());
                    content.push(v["part"].clone());
                }
                "response.output_text.delta" => {
                    let item =
                        &mut snapshot["output"][v["output_index"].as_u64().unwrap() as usize];
                    assert_eq!(item["id"], v["item_id"]);
                    let part = &mut item["content"][v["content_index"].as_u64().unwrap() as usize];
                    assert_eq!(part["type"], "output_text");
                    let t = format!(
                        "{}{}",
                        part["text"].as_str().unwrap(),
                        v["delta"].as_str().unwrap()
                    );
                    part["text"] = Value::String(t);
                }
                "response.function_call_arguments.delta" => {
                    let item =
                        &mut snapshot["output"][v["output_index"].as_u64().unwrap() as usize];
                    assert_eq!(item["id"], v["item_id"]);
                    assert_eq!(item["type"], "function_call");
                    let t = format!(
                        "{}{}",
                        item["arguments"].as_str().unwrap(),
                        v["delta"].as_str().unwrap()
                    );
                    item["arguments"] = Value::String(t);
                }
                "response.output_item.done" => {
                    let idx = v["output_index"].as_u64().unwrap() as usize;
                    assert_eq!(snapshot["output"][idx]["id"], v["item"]["id"]);
                    snapshot["output"][idx] = v["item"].clone();
                }
                "response.completed" | "response.incomplete" | "response.failed" => {
                    final_resp = v["response"].clone();
                }
                _ => {}
            }
        }
        (snapshot, final_resp)
    }

    #[test]
    fn encoder_grammar_text_reasoning_and_parallel_calls() {
        let mut e = ResponsesEncoder::new("chatcmpl-abc", "m", 7);
        let mut out = Vec::new();
        e.reasoning_delta("think", &mut out);
        e.reasoning_delta("ing", &mut out);
        e.reasoning_encrypted("sig", &mut out);
        e.text_delta("Hel", &mut out);
        e.text_delta("lo", &mut out);
        e.tool_call_start("call_1", "f", &mut out);
        e.tool_args_delta("{\"a\":", &mut out);
        e.tool_args_delta("1}", &mut out);
        e.tool_call_start("call_2", "g", &mut out);
        e.tool_args_delta("{}", &mut out);
        e.finish(
            Outcome::Completed,
            Some(RespUsage {
                input: 10,
                cached: 2,
                output: 5,
                reasoning: 3,
            }),
            &mut out,
        );
        let frames = parse_frames(&out);
        let (snapshot, fin) = replay_like_sdk(&frames);
        assert_eq!(frames[0].0, "response.created");
        assert_eq!(frames[1].0, "response.in_progress");
        assert_eq!(frames.last().unwrap().0, "response.completed");
        assert_eq!(
            fin["output"], snapshot["output"],
            "events rebuild the final output"
        );
        assert_eq!(fin["id"], "resp_chatcmplabc");
        assert_eq!(fin["output"][0]["summary"][0]["text"], "thinking");
        assert_eq!(fin["output"][0]["encrypted_content"], "sig");
        assert_eq!(fin["output"][1]["content"][0]["text"], "Hello");
        assert_eq!(fin["output"][2]["arguments"], "{\"a\":1}");
        assert_eq!(fin["output"][2]["call_id"], "call_1");
        assert_eq!(fin["output"][3]["name"], "g");
        assert_eq!(fin["usage"]["total_tokens"], 15);
        assert_eq!(fin["usage"]["input_tokens_details"]["cached_tokens"], 2);
        assert_eq!(fin["usage"]["output_tokens_details"]["reasoning_tokens"], 3);
        let ids: Vec<&str> = fin["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        let mut uniq = ids.clone();
        uniq.dedup();
        assert_eq!(ids.len(), uniq.len(), "item ids are unique: {ids:?}");
    }

    #[test]
    fn encoder_incomplete_and_failed() {
        let mut e = ResponsesEncoder::new("resp_x", "m", 1);
        let mut out = Vec::new();
        e.text_delta("a", &mut out);
        e.finish(Outcome::MaxOutputTokens, None, &mut out);
        e.text_delta("ignored after done?", &mut Vec::new());
        let frames = parse_frames(&out);
        let (_, fin) = replay_like_sdk(&frames);
        assert_eq!(frames.last().unwrap().0, "response.incomplete");
        assert_eq!(fin["status"], "incomplete");
        assert_eq!(fin["incomplete_details"]["reason"], "max_output_tokens");

        let mut e = ResponsesEncoder::new("resp_y", "m", 1);
        let mut out = Vec::new();
        e.text_delta("partial", &mut out);
        e.fail("server_error", "upstream died", &mut out);
        let frames = parse_frames(&out);
        let names: Vec<&str> = frames.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(&names[names.len() - 2..], ["error", "response.failed"]);
        let (_, fin) = replay_like_sdk(&frames);
        assert_eq!(fin["status"], "failed");
        assert_eq!(fin["error"]["message"], "upstream died");
        assert_eq!(
            fin["output"][0]["content"][0]["text"], "partial",
            "partial output is closed, not lost"
        );
    }

    use crate::translate::{StreamTranslator, convert_request, convert_response};

    fn ro() -> RequestOpts {
        RequestOpts {
            model: "gpt-5".into(),
            stream: false,
        }
    }

    #[test]
    fn input_items_are_first_class() {
        let body = json!({
            "model": "m",
            "instructions": "sys",
            "input": [
                {"role": "developer", "content": "dev rule"},
                {"role": "user", "content": [{"type": "input_text", "text": "hi"}, {"type": "input_image", "image_url": "data:image/png;base64,iVBO-_w", "detail": "high"}]},
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "a"}, {"type": "summary_text", "text": "b"}], "encrypted_content": "gAAAA"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "calling"}]},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{\"x\":1}"},
                {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "one"},
                {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]},
                {"role": "user", "content": "thanks"},
                {"role": "system", "content": "late system"}
            ],
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": true}],
            "tool_choice": {"type": "function", "name": "f"},
            "parallel_tool_calls": false,
            "reasoning": {"effort": "low", "summary": "detailed"},
            "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": true}},
            "max_output_tokens": 64,
            "temperature": 0.5,
            "top_p": 0.5,
            "safety_identifier": "u-1",
            "store": false,
            "include": ["reasoning.encrypted_content"]
        });
        let r = decode_request(&body).unwrap();
        assert_eq!(
            r.system.iter().map(|t| t.text.as_str()).collect::<Vec<_>>(),
            ["sys", "dev rule"]
        );
        assert_eq!(r.messages.len(), 5, "{:#?}", r.messages);
        assert_eq!(r.messages[0].role, ir::Role::User);
        assert!(
            matches!(&r.messages[0].content[1], Part::Image(i) if i.detail.as_deref() == Some("high") && matches!(&i.source, ir::ImageSource::Base64 { data, .. } if data == "iVBO+/w="))
        );
        let a = &r.messages[1];
        assert_eq!(a.role, ir::Role::Assistant);
        assert!(
            matches!(&a.content[0], Part::Thinking(t) if t.text == "a\n\nb" && t.signature.as_deref() == Some("gAAAA") && t.origin == Some(Format::OpenAiResponses) && t.id.as_deref() == Some("rs_1"))
        );
        assert!(matches!(&a.content[1], Part::Text(t) if t.text == "calling"));
        assert!(
            matches!(&a.content[2], Part::ToolCall(c) if c.id == "c1" && c.arguments == "{\"x\":1}")
        );
        assert!(matches!(&a.content[3], Part::ToolCall(c) if c.id == "c2"));
        let t = &r.messages[2];
        assert_eq!(t.role, ir::Role::User);
        assert!(
            matches!(&t.content[0], Part::ToolResult(x) if x.id == "c1" && x.name.as_deref() == Some("f"))
        );
        assert!(
            matches!(&t.content[1], Part::ToolResult(x) if x.id == "c2" && matches!(&x.content[0], Part::Text(tt) if tt.text == "two"))
        );
        assert!(
            matches!(&r.messages[3].content[0], Part::Text(x) if x.text == "thanks"),
            "a new user message is a new turn"
        );
        assert_eq!(r.messages[4].role, ir::Role::System);
        assert_eq!(r.tool_choice, Some(ir::ToolChoice::Tool("f".into())));
        assert_eq!(r.parallel_tool_calls, Some(false));
        assert_eq!(r.reasoning.as_ref().unwrap().effort.as_deref(), Some("low"));
        assert_eq!(
            r.reasoning.as_ref().unwrap().summary.as_deref(),
            Some("detailed")
        );
        assert!(
            matches!(&r.response_format, Some(ir::ResponseFormat::JsonSchema { name, strict: Some(true), .. }) if name == "out")
        );
        assert_eq!(r.sampling.max_tokens, Some(64));
        assert_eq!(r.user.as_deref(), Some("u-1"));
        assert!(r.extra.fields.is_empty(), "{:?}", r.extra.fields);

        // and back out to a Responses upstream, same items in the same order
        let out: Value =
            serde_json::from_slice(&encode_request(&r, &ro(), &mut Dropped::default()).unwrap())
                .unwrap();
        let kinds: Vec<&str> = out["input"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["type"].as_str().or_else(|| i["role"].as_str()).unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "user",
                "reasoning",
                "message",
                "function_call",
                "function_call",
                "function_call_output",
                "function_call_output",
                "user",
                "system"
            ]
        );
        assert_eq!(out["instructions"], "sys\n\ndev rule");
        assert_eq!(out["include"], json!(["reasoning.encrypted_content"]));
        assert_eq!(
            out["reasoning"],
            json!({"effort": "low", "summary": "detailed"})
        );
        assert_eq!(out["text"]["format"]["name"], "out");
        assert_eq!(out["store"], false);
        assert_eq!(
            out["input"][0]["content"][1]["image_url"],
            "data:image/png;base64,iVBO+/w="
        );
    }

    #[test]
    fn other_formats_features_refused_by_name() {
        let base = ir::Request {
            messages: vec![ir::Message {
                role: ir::Role::User,
                content: vec![Part::Text(ir::TextPart::new("x"))],
                name: None,
            }],
            ..Default::default()
        };
        for (mutate, param) in [
            (
                Box::new(|r: &mut ir::Request| r.sampling.stop = vec!["x".into()])
                    as Box<dyn Fn(&mut ir::Request)>,
                "stop",
            ),
            (Box::new(|r: &mut ir::Request| r.sampling.n = Some(2)), "n"),
            (
                Box::new(|r: &mut ir::Request| {
                    r.extra = ir::Extra {
                        format: Format::Gemini,
                        fields: [("safetySettings".to_string(), json!([]))]
                            .into_iter()
                            .collect(),
                        hints: Map::new(),
                        ..ir::Extra::default()
                    }
                }),
                "safetySettings",
            ),
            (
                Box::new(|r: &mut ir::Request| {
                    r.tools.push(ir::Tool::Raw(ir::Raw {
                        format: Format::Anthropic,
                        value: json!({"type": "web_search_20250305"}),
                    }))
                }),
                "tools[0]",
            ),
        ] {
            let mut r = base.clone();
            mutate(&mut r);
            let e = encode_request(&r, &ro(), &mut Dropped::default()).unwrap_err();
            assert_eq!(e.status, 400);
            assert_eq!(e.param.as_deref(), Some(param), "{}", e.message);
        }
        // thinking from another provider is not replayed; a thinking budget becomes an effort
        let mut r = base;
        r.messages.push(ir::Message {
            role: ir::Role::Assistant,
            content: vec![
                Part::Thinking(ir::Thinking {
                    text: "t".into(),
                    signature: Some("sig".into()),
                    origin: Some(Format::Anthropic),
                    id: None,
                }),
                Part::Text(ir::TextPart::new("a")),
            ],
            name: None,
        });
        r.reasoning = Some(ir::Reasoning {
            budget_tokens: Some(10000),
            ..Default::default()
        });
        let out: Value =
            serde_json::from_slice(&encode_request(&r, &ro(), &mut Dropped::default()).unwrap())
                .unwrap();
        assert!(
            out["input"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["type"] != "reasoning")
        );
        assert_eq!(
            out["reasoning"],
            json!({"effort": "high", "summary": "auto"})
        );
    }

    fn feed(from: Format, to: Format, body: &[u8]) -> Vec<u8> {
        let mut t = StreamTranslator::new(from, to, ResponseOpts::default());
        let mut out = Vec::new();
        t.feed(body, &mut out);
        t.finish(&mut out);
        out
    }

    #[test]
    fn parallel_streamed_calls_from_the_ir() {
        // IR events as an OpenAI Chat / Anthropic upstream would produce them.
        let mut e = StreamEncode::new(&ResponseOpts::default());
        let mut out = Vec::new();
        let evs = vec![
            StreamEvent::Start(ir::StreamStart {
                id: "msg_01".into(),
                model: "claude".into(),
                created: None,
                usage: ir::Usage {
                    input: 10,
                    ..Default::default()
                },
                origin: Some(Format::Anthropic),
            }),
            StreamEvent::BlockStart {
                index: 0,
                block: ir::BlockStart::Thinking,
            },
            StreamEvent::Delta {
                index: 0,
                delta: ir::Delta::Thinking("hm".into()),
            },
            StreamEvent::Delta {
                index: 0,
                delta: ir::Delta::Signature("EqSig".into()),
            },
            StreamEvent::BlockStop { index: 0 },
            StreamEvent::BlockStart {
                index: 1,
                block: ir::BlockStart::ToolCall {
                    id: "toolu_a".into(),
                    name: "f".into(),
                },
            },
            StreamEvent::Delta {
                index: 1,
                delta: ir::Delta::ToolArgs("{\"a\"".into()),
            },
            StreamEvent::Delta {
                index: 1,
                delta: ir::Delta::ToolArgs(":1}".into()),
            },
            StreamEvent::BlockStop { index: 1 },
            StreamEvent::BlockStart {
                index: 2,
                block: ir::BlockStart::ToolCall {
                    id: "toolu_b".into(),
                    name: "g".into(),
                },
            },
            StreamEvent::Delta {
                index: 2,
                delta: ir::Delta::ToolArgs("{}".into()),
            },
            StreamEvent::BlockStop { index: 2 },
            StreamEvent::Finish {
                reason: ir::FinishReason::ToolCalls,
                usage: ir::Usage {
                    input: 10,
                    output: 7,
                    reasoning: 2,
                    ..Default::default()
                },
            },
        ];
        for ev in &evs {
            e.event(ev, &mut out);
        }
        let frames = parse_frames(&out);
        let (_, fin) = replay_like_sdk(&frames);
        assert_eq!(fin["status"], "completed");
        assert_eq!(fin["model"], "claude");
        assert_eq!(fin["output"][1]["call_id"], "toolu_a");
        assert_eq!(fin["output"][1]["arguments"], "{\"a\":1}");
        assert_eq!(fin["output"][2]["call_id"], "toolu_b");
        let enc = fin["output"][0]["encrypted_content"].as_str().unwrap();
        let w = unwrap_signature(enc).expect("wrapped with its origin");
        assert_eq!(
            (w.origin, w.sig.as_str()),
            (Some(Format::Anthropic), "EqSig")
        );
        assert_eq!(fin["usage"]["input_tokens"], 10);
        assert_eq!(fin["usage"]["output_tokens"], 7);
        assert_eq!(fin["usage"]["output_tokens_details"]["reasoning_tokens"], 2);
        // Replayed by the client, the thinking goes back to Anthropic signed.
        let body = json!({"model": "m", "input": [{"role": "user", "content": "q"}, fin["output"][0].clone(), fin["output"][1].clone(), {"type": "function_call_output", "call_id": "toolu_a", "output": "1"}]});
        let r = decode_request(&body).unwrap();
        assert!(
            matches!(&r.messages[1].content[0], Part::Thinking(t) if t.origin == Some(Format::Anthropic) && t.signature.as_deref() == Some("EqSig") && t.text == "hm")
        );
    }

    #[test]
    fn upstream_stream_decoder_handles_parallel_calls_and_lazy_parts() {
        // Two calls, arguments only in output_item.done for the second; text without content_part.added.
        let body = concat!(
            "data: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"model\":\"gpt\",\"created_at\":5}}\n\n",
            "data: {\"type\":\"response.output_text.delta\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi\"}\n\n",
            "data: {\"type\":\"response.output_item.done\",\"output_index\":0,\"item\":{\"type\":\"message\"}}\n\n",
            "data: {\"type\":\"response.output_item.added\",\"output_index\":1,\"item\":{\"type\":\"function_call\",\"call_id\":\"c1\",\"name\":\"f\"}}\n\n",
            "data: {\"type\":\"response.function_call_arguments.delta\",\"output_index\":1,\"delta\":\"{\\\"a\\\":\"}\n\n",
            "data: {\"type\":\"response.function_call_arguments.delta\",\"output_index\":1,\"delta\":\"2}\"}\n\n",
            "data: {\"type\":\"response.output_item.done\",\"output_index\":1,\"item\":{\"type\":\"function_call\",\"call_id\":\"c1\",\"name\":\"f\",\"arguments\":\"{\\\"a\\\":2}\"}}\n\n",
            "data: {\"type\":\"response.output_item.done\",\"output_index\":2,\"item\":{\"type\":\"function_call\",\"call_id\":\"c2\",\"name\":\"g\",\"arguments\":\"{\\\"b\\\":3}\"}}\n\n",
            "data: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"status\":\"completed\",\"usage\":{\"input_tokens\":9,\"input_tokens_details\":{\"cached_tokens\":4},\"output_tokens\":3,\"output_tokens_details\":{\"reasoning_tokens\":1}}}}\n\n",
            "data: [DONE]\n\n"
        );
        let out = feed(
            Format::OpenAiResponses,
            Format::OpenAiResponses,
            body.as_bytes(),
        );
        let (_, fin) = replay_like_sdk(&parse_frames(&out));
        assert_eq!(fin["output"][0]["content"][0]["text"], "Hi");
        assert_eq!(
            fin["output"][1]["arguments"], "{\"a\":2}",
            "arguments not doubled by output_item.done"
        );
        assert_eq!(fin["output"][2]["arguments"], "{\"b\":3}");
        assert_eq!(fin["usage"]["input_tokens_details"]["cached_tokens"], 4);
        // to Gemini: both calls whole, STOP, usage arithmetic
        let g = feed(Format::OpenAiResponses, Format::Gemini, body.as_bytes());
        let arr: Value = serde_json::from_slice(&g).unwrap();
        let parts: Vec<&Value> = arr
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["candidates"][0]["content"]["parts"].as_array().unwrap())
            .collect();
        let calls: Vec<(&str, &Value)> = parts
            .iter()
            .filter_map(|p| {
                p.get("functionCall")
                    .map(|f| (f["name"].as_str().unwrap(), &f["args"]))
            })
            .collect();
        assert_eq!(calls, [("f", &json!({"a": 2})), ("g", &json!({"b": 3}))]);
        let last = arr.as_array().unwrap().last().unwrap();
        assert_eq!(last["candidates"][0]["finishReason"], "STOP");
        assert_eq!(
            last["usageMetadata"],
            json!({"promptTokenCount": 9, "candidatesTokenCount": 2, "totalTokenCount": 12, "cachedContentTokenCount": 4, "thoughtsTokenCount": 1})
        );
    }

    /// Every data object of a client stream (SSE, or Gemini's JSON array).
    fn data_objects(out: &[u8]) -> Vec<Value> {
        if let Ok(Value::Array(a)) = serde_json::from_slice::<Value>(out) {
            return a;
        }
        let mut got = Vec::new();
        let mut p = sse::Parser::default();
        let mut on = |e: sse::Event<'_>| {
            if let Ok(v) = serde_json::from_slice::<Value>(e.data) {
                got.push(v);
            }
        };
        p.feed(out, &mut on).unwrap();
        p.finish(&mut on).unwrap();
        got
    }

    /// The reasoning item id a client of `to` would give back, wherever it sits.
    fn reasoning_id_seen(to: Format, objects: &[Value]) -> Option<String> {
        let unwrap_id = |s: &str| unwrap_signature(s).and_then(|w| w.id);
        objects.iter().find_map(|v| match to {
            Format::OpenAiChat => v["choices"][0]["message"]["reasoning_details"][0]["id"]
                .as_str()
                .or(v["choices"][0]["delta"]["reasoning_details"][0]["id"].as_str())
                .map(str::to_string),
            Format::Anthropic => v["content"][0]["signature"]
                .as_str()
                .or(v["delta"]["signature"].as_str())
                .and_then(unwrap_id),
            Format::Gemini => v["candidates"][0]["content"]["parts"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|p| p["thoughtSignature"].as_str().and_then(unwrap_id)),
            Format::OpenAiResponses => None,
        })
    }

    #[test]
    fn streamed_reasoning_item_ids_reach_clients_as_from_a_whole_answer() {
        // The id names the item when the client gives the reasoning back; a
        // stream lost it (the whole answer kept it).
        let item = json!({"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "plan"}], "encrypted_content": "gAAAenc"});
        let message = json!({"type": "message", "id": "msg_1", "role": "assistant", "content": [{"type": "output_text", "text": "Hi"}]});
        let whole = json!({"id": "resp_1", "object": "response", "model": "gpt", "status": "completed", "output": [item, message]});
        let events = [
            json!({"type": "response.created", "response": {"id": "resp_1", "model": "gpt", "status": "in_progress", "output": []}}),
            json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "reasoning", "id": "rs_1", "summary": []}}),
            json!({"type": "response.reasoning_summary_text.delta", "output_index": 0, "summary_index": 0, "delta": "plan"}),
            json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
            json!({"type": "response.output_text.delta", "output_index": 1, "content_index": 0, "delta": "Hi"}),
            json!({"type": "response.output_item.done", "output_index": 1, "item": message}),
            json!({"type": "response.completed", "response": whole}),
        ];
        let body: String = events
            .iter()
            .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
            .collect();
        for to in [Format::OpenAiChat, Format::Anthropic, Format::Gemini] {
            let answer = convert_response(
                Format::OpenAiResponses,
                to,
                whole.to_string().as_bytes(),
                &ResponseOpts::default(),
            )
            .unwrap();
            let answer: Value = serde_json::from_slice(&answer).unwrap();
            let streamed = data_objects(&feed(Format::OpenAiResponses, to, body.as_bytes()));
            assert_eq!(
                reasoning_id_seen(to, std::slice::from_ref(&answer)).as_deref(),
                Some("rs_1"),
                "{to:?} answer: {answer}"
            );
            assert_eq!(
                reasoning_id_seen(to, &streamed).as_deref(),
                Some("rs_1"),
                "{to:?} stream: {streamed:?}"
            );
        }
    }

    #[test]
    fn gemini_json_schema_for_structured_output() {
        let body = json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "p", "strict": true, "schema": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"], "additionalProperties": false}}}});
        let g: Value = serde_json::from_slice(
            &convert_request(Format::OpenAiResponses, Format::Gemini, &body, &ro())
                .unwrap()
                .body,
        )
        .unwrap();
        assert_eq!(
            g["generationConfig"]["responseMimeType"],
            "application/json"
        );
        assert_eq!(
            g["generationConfig"]["responseSchema"],
            json!({"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}, "required": ["n"]})
        );
    }

    /// What Codex 0.169 declares: a namespace of functions (multi_agent_v1).
    fn codex_namespaced() -> Value {
        json!({"model": "m", "input": "spawn one", "tools": [
            {"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}},
            {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.", "tools": [
                {"type": "function", "name": "spawn_agent", "description": "Spawn one.", "strict": false,
                 "parameters": {"type": "object", "properties": {"task": {"type": "string"}}}},
                {"type": "function", "name": "close_agent", "parameters": {"type": "object", "properties": {"target": {"type": "string"}}}}
            ]},
            {"type": "function", "name": "mcp__db__query", "parameters": {"type": "object", "properties": {}}}
        ]})
    }

    fn conv(to: Format, body: &Value) -> Value {
        serde_json::from_slice(
            &convert_request(Format::OpenAiResponses, to, body, &ro())
                .unwrap_or_else(|e| panic!("{to:?}: {e:?}"))
                .body,
        )
        .unwrap()
    }

    #[test]
    fn namespaced_functions_go_to_other_formats_flattened() {
        let body = codex_namespaced();
        // Every other tool keeps its client index: the namespace's first
        // function takes its place, the rest follow.
        let want = [
            "exec_command",
            "multi_agent_v1__spawn_agent",
            "mcp__db__query",
            "multi_agent_v1__close_agent",
        ];
        let an = conv(Format::Anthropic, &body);
        let names: Vec<&str> = an["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, want);
        assert_eq!(
            an["tools"][1]["description"],
            "(multi_agent_v1: Sub-agents.) Spawn one."
        );
        assert_eq!(
            an["tools"][1]["input_schema"]["properties"]["task"]["type"],
            "string"
        );
        let oa = conv(Format::OpenAiChat, &body);
        assert_eq!(oa["tools"][3]["function"]["name"], want[3]);
        let ge = conv(Format::Gemini, &body);
        assert_eq!(
            ge["tools"][0]["functionDeclarations"][1]["name"],
            "multi_agent_v1__spawn_agent"
        );
        // The history: a namespaced call and its output, and tool_choice.
        let mut b = body.clone();
        b["input"] = json!([
            {"type": "message", "role": "user", "content": "spawn one"},
            {"type": "function_call", "call_id": "c1", "namespace": "multi_agent_v1", "name": "spawn_agent", "arguments": "{\"task\":\"x\"}"},
            {"type": "function_call_output", "call_id": "c1", "namespace": "multi_agent_v1", "name": "spawn_agent", "output": "agent-1"}
        ]);
        b["tool_choice"] =
            json!({"type": "function", "namespace": "multi_agent_v1", "name": "close_agent"});
        let an = conv(Format::Anthropic, &b);
        assert_eq!(
            an["messages"][1]["content"][0]["name"],
            "multi_agent_v1__spawn_agent"
        );
        assert_eq!(an["messages"][2]["content"][0]["tool_use_id"], "c1");
        assert_eq!(
            an["tool_choice"],
            json!({"type": "tool", "name": "multi_agent_v1__close_agent"})
        );
        let ge = conv(Format::Gemini, &b);
        assert_eq!(
            ge["contents"][2]["parts"][0]["functionResponse"]["name"],
            "multi_agent_v1__spawn_agent"
        );
    }

    #[test]
    fn namespaces_that_cannot_be_flattened_are_refused_by_name() {
        // A flat name that is already another tool's.
        let mut b = codex_namespaced();
        b["tools"][2]["name"] = json!("multi_agent_v1__close_agent");
        let e = convert_request(Format::OpenAiResponses, Format::Anthropic, &b, &ro()).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("tools")));
        assert!(
            e.message.contains("multi_agent_v1__close_agent"),
            "{}",
            e.message
        );
        // A namespace holding a freeform (custom) tool stays whole: refused,
        // named by its name.
        let mut b = codex_namespaced();
        b["tools"][1]["tools"][1] = json!({"type": "custom", "name": "apply_patch"});
        for to in [Format::Anthropic, Format::OpenAiChat, Format::Gemini] {
            let e = convert_request(Format::OpenAiResponses, to, &b, &ro()).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("tools[1]"), "{to:?}");
            assert!(e.message.contains("namespace"), "{to:?}: {}", e.message);
        }
        let e = convert_request(Format::OpenAiResponses, Format::Gemini, &b, &ro()).unwrap_err();
        assert!(e.message.contains("'multi_agent_v1'"), "{}", e.message);
        assert_eq!(
            Namespaces::of_request(&b),
            Namespaces(vec![]),
            "a namespace with a custom tool is not flattened"
        );
    }

    fn namespaces() -> ResponseOpts {
        ResponseOpts {
            namespaces: Namespaces::of_request(&codex_namespaced()),
            ..Default::default()
        }
    }

    #[test]
    fn calls_of_namespaced_functions_come_back_split() {
        // A whole Anthropic answer calling a namespaced function and a plain
        // function whose name holds `__`.
        let answer = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "multi_agent_v1__spawn_agent", "input": {"task": "x"}},
                {"type": "tool_use", "id": "toolu_2", "name": "mcp__db__query", "input": {}}
            ],
            "stop_reason": "tool_use", "usage": {"input_tokens": 5, "output_tokens": 3}});
        let chat = json!({"id": "c", "object": "chat.completion", "model": "gpt", "choices": [{"index": 0,
            "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "multi_agent_v1__spawn_agent", "arguments": "{\"task\":\"x\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "mcp__db__query", "arguments": "{}"}}
            ]}, "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}});
        for (from, body) in [(Format::Anthropic, &answer), (Format::OpenAiChat, &chat)] {
            let out: Value = serde_json::from_slice(
                &convert_response(
                    from,
                    Format::OpenAiResponses,
                    body.to_string().as_bytes(),
                    &namespaces(),
                )
                .unwrap(),
            )
            .unwrap();
            let calls: Vec<&Value> = out["output"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["type"] == "function_call")
                .collect();
            assert_eq!(calls[0]["name"], "spawn_agent", "{from:?}");
            assert_eq!(calls[0]["namespace"], "multi_agent_v1", "{from:?}");
            assert_eq!(calls[1]["name"], "mcp__db__query", "{from:?}");
            assert!(calls[1].get("namespace").is_none(), "{from:?}");
        }
        // Without the client's namespaces (another client), names are kept.
        let out: Value = serde_json::from_slice(
            &convert_response(
                Format::Anthropic,
                Format::OpenAiResponses,
                answer.to_string().as_bytes(),
                &ResponseOpts::default(),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(out["output"][0]["name"], "multi_agent_v1__spawn_agent");
        // Streamed: added and done items, from Anthropic and OpenAI Chat.
        let anthropic = [
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "content": [], "usage": {"input_tokens": 5, "output_tokens": 0}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "multi_agent_v1__spawn_agent", "input": {}}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"task\":\"x\"}"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 3}}),
            json!({"type": "message_stop"}),
        ]
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect::<String>();
        let chat = [
            json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt", "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "multi_agent_v1__spawn_agent", "arguments": ""}}]}}]}),
            json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"task\":\"x\"}"}}]}}]}),
            json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        ]
        .iter()
        .map(|e| format!("data: {e}\n\n"))
        .chain(std::iter::once("data: [DONE]\n\n".to_string()))
        .collect::<String>();
        for (from, body) in [(Format::Anthropic, anthropic), (Format::OpenAiChat, chat)] {
            let mut t = StreamTranslator::new(from, Format::OpenAiResponses, namespaces());
            let mut out = Vec::new();
            t.feed(body.as_bytes(), &mut out);
            t.finish(&mut out);
            let evs = data_objects(&out);
            let items: Vec<&Value> = evs
                .iter()
                .filter(|e| {
                    matches!(
                        e["type"].as_str(),
                        Some("response.output_item.added" | "response.output_item.done")
                    )
                })
                .map(|e| &e["item"])
                .collect();
            assert_eq!(items.len(), 2, "{from:?}: {evs:?}");
            for item in items {
                assert_eq!(
                    (item["name"].as_str(), item["namespace"].as_str()),
                    (Some("spawn_agent"), Some("multi_agent_v1")),
                    "{from:?}"
                );
            }
            let done = evs
                .iter()
                .find(|e| e["type"] == "response.completed")
                .unwrap();
            assert_eq!(
                done["response"]["output"][0]["namespace"], "multi_agent_v1",
                "{from:?}"
            );
            assert_eq!(
                done["response"]["output"][0]["arguments"],
                "{\"task\":\"x\"}"
            );
        }
    }
}
