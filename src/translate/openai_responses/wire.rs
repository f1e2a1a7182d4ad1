//! The OpenAI Responses wire shapes (response object, usage, outcome) and
//! the typed-event writer (`ResponsesEncoder`) the stream encoder drives.

use super::*;

/// One open output item of the stream being encoded.
#[derive(Debug, Clone)]
pub(super) enum OpenItem {
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
pub(super) struct DeltaEvent<'a> {
    #[serde(rename = "type")]
    pub(super) ty: &'a str,
    pub(super) sequence_number: u64,
    pub(super) item_id: &'a str,
    pub(super) output_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) content_index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) summary_index: Option<u32>,
    pub(super) delta: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) logprobs: Option<[u8; 0]>,
}

pub(super) fn write_delta(out: &mut Vec<u8>, ev: &DeltaEvent<'_>) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(ev.ty.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    let _ = serde_json::to_writer(&mut *out, ev);
    out.extend_from_slice(b"\n\n");
}

/// The Responses client stream encoder (see the module doc for the grammar).
#[derive(Debug, Clone)]
pub struct ResponsesEncoder {
    pub(super) seq: u64,
    pub(super) id: String,
    pub(super) model: String,
    pub(super) created_at: u64,
    pub(super) started: bool,
    pub(super) done: bool,
    /// Finished output items, in `output_index` order.
    pub(super) output: Vec<Value>,
    pub(super) open: Option<OpenItem>,
    pub(super) namespaces: Namespaces,
}

pub(super) fn frame(out: &mut Vec<u8>, ty: &str, data: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(ty.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Serializing a Value cannot fail.
    let _ = serde_json::to_writer(&mut *out, data);
    out.extend_from_slice(b"\n\n");
}

/// Base of generated item ids: the response id without its `resp_` prefix,
/// reduced to characters that are safe in ids.
pub(super) fn id_base(resp_id: &str) -> String {
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

    pub(super) fn emit(&mut self, out: &mut Vec<u8>, ty: &str, mut data: Map<String, Value>) {
        data.insert("type".into(), Value::String(ty.to_string()));
        data.insert("sequence_number".into(), Value::from(self.seq));
        self.seq += 1;
        frame(out, ty, &Value::Object(data));
    }

    pub(super) fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    pub(super) fn lifecycle(
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

    pub(super) fn next_index(&self) -> usize {
        self.output.len()
    }

    pub(super) fn item_id(&self, prefix: &str) -> String {
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

    pub(super) fn open_reasoning(&mut self, out: &mut Vec<u8>) {
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
