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
    if base.is_empty() { "0".to_string() } else { base }
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
/// `response.*` lifecycle events.
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
        }
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

    fn lifecycle(&self, status: &str, usage: Option<RespUsage>, outcome: Option<Outcome>, error: Option<Value>) -> Value {
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
        self.emit(out, "response.in_progress", Self::obj(json!({ "response": r })));
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
                let part = json!({"type": "output_text", "annotations": [], "logprobs": [], "text": text});
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
            OpenItem::FunctionCall { id, call_id, name, args } => {
                self.emit(
                    out,
                    "response.function_call_arguments.done",
                    Self::obj(json!({"item_id": id, "output_index": idx, "arguments": args})),
                );
                json!({"id": id, "type": "function_call", "status": "completed", "arguments": args, "call_id": call_id, "name": name})
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
            self.open = Some(OpenItem::Message { id, text: String::new() });
        }
        if delta.is_empty() {
            return;
        }
        let idx = self.next_index();
        if let Some(OpenItem::Message { id, text }) = &mut self.open {
            text.push_str(delta);
            let id = id.clone();
            self.emit(
                out,
                "response.output_text.delta",
                Self::obj(json!({"item_id": id, "output_index": idx, "content_index": 0, "delta": delta, "logprobs": []})),
            );
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
        let mut events: Vec<(&str, Value)> = Vec::new();
        if let Some(OpenItem::Reasoning { id, text, part_open, .. }) = &mut self.open {
            if !*part_open {
                *part_open = true;
                events.push((
                    "response.reasoning_summary_part.added",
                    json!({"item_id": id, "output_index": idx, "summary_index": 0, "part": {"type": "summary_text", "text": ""}}),
                ));
            }
            if !delta.is_empty() {
                text.push_str(delta);
                events.push((
                    "response.reasoning_summary_text.delta",
                    json!({"item_id": id, "output_index": idx, "summary_index": 0, "delta": delta}),
                ));
            }
        }
        for (ty, v) in events {
            self.emit(out, ty, Self::obj(v));
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

    /// Open a function call item.
    pub fn tool_call_start(&mut self, call_id: &str, name: &str, out: &mut Vec<u8>) {
        self.start(out);
        self.close_item(out);
        let id = self.item_id("fc");
        let idx = self.next_index();
        self.emit(
            out,
            "response.output_item.added",
            Self::obj(json!({"output_index": idx, "item": {"id": id, "type": "function_call", "status": "in_progress", "arguments": "", "call_id": call_id, "name": name}})),
        );
        self.open = Some(OpenItem::FunctionCall {
            id,
            call_id: call_id.to_string(),
            name: name.to_string(),
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
            let id = id.clone();
            self.emit(
                out,
                "response.function_call_arguments.delta",
                Self::obj(json!({"item_id": id, "output_index": idx, "delta": delta})),
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Parse encoder output into (event name, data) pairs, checking framing.
    pub(crate) fn parse_frames(bytes: &[u8]) -> Vec<(String, Value)> {
        let text = std::str::from_utf8(bytes).expect("utf8");
        assert!(text.is_empty() || text.ends_with("\n\n"), "stream ends mid-frame");
        text.split("\n\n")
            .filter(|f| !f.is_empty())
            .map(|f| {
                let mut lines = f.lines();
                let ev = lines.next().and_then(|l| l.strip_prefix("event: ")).expect("event line");
                let data = lines.next().and_then(|l| l.strip_prefix("data: ")).expect("data line");
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
            assert_eq!(seq, last_seq + 1, "sequence_number increases by one at {ev}");
            last_seq = seq;
            match ev.as_str() {
                "response.created" => snapshot = v["response"].clone(),
                "response.output_item.added" => {
                    let out = snapshot["output"].as_array_mut().expect("created first");
                    assert_eq!(v["output_index"].as_u64().unwrap() as usize, out.len(), "output_index of added item");
                    out.push(v["item"].clone());
                }
                "response.content_part.added" => {
                    let item = &mut snapshot["output"][v["output_index"].as_u64().unwrap() as usize];
                    assert_eq!(item["id"], v["item_id"]);
                    let content = item["content"].as_array_mut().unwrap();
                    assert_eq!(v["content_index"].as_u64().unwrap() as usize, content.len());
                    content.push(v["part"].clone());
                }
                "response.output_text.delta" => {
                    let item = &mut snapshot["output"][v["output_index"].as_u64().unwrap() as usize];
                    assert_eq!(item["id"], v["item_id"]);
                    let part = &mut item["content"][v["content_index"].as_u64().unwrap() as usize];
                    assert_eq!(part["type"], "output_text");
                    let t = format!("{}{}", part["text"].as_str().unwrap(), v["delta"].as_str().unwrap());
                    part["text"] = Value::String(t);
                }
                "response.function_call_arguments.delta" => {
                    let item = &mut snapshot["output"][v["output_index"].as_u64().unwrap() as usize];
                    assert_eq!(item["id"], v["item_id"]);
                    assert_eq!(item["type"], "function_call");
                    let t = format!("{}{}", item["arguments"].as_str().unwrap(), v["delta"].as_str().unwrap());
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
        assert_eq!(fin["output"], snapshot["output"], "events rebuild the final output");
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
        let ids: Vec<&str> = fin["output"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
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
        assert_eq!(fin["output"][0]["content"][0]["text"], "partial", "partial output is closed, not lost");
    }
}
