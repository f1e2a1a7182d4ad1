//! Streams: OpenAI Responses upstream events → IR events (`StreamDecode`), and
//! IR events → OpenAI Responses client stream (`StreamEncode`).

use super::*;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum DecOpen {
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
    pub(super) started: bool,
    pub(super) finished: bool,
    pub(super) next_index: usize,
    pub(super) open: Option<(usize, DecOpen)>,
    pub(super) usage: ir::Usage,
}

impl StreamDecode {
    pub(super) fn close(&mut self, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        if let Some((index, _)) = self.open.take() {
            sink(StreamEvent::BlockStop { index });
        }
    }

    pub(super) fn open_block(
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

    pub(super) fn start(&mut self, r: &Value, sink: &mut dyn FnMut(StreamEvent<'_>)) {
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

    pub(super) fn error(
        &mut self,
        status: u16,
        message: String,
        sink: &mut dyn FnMut(StreamEvent<'_>),
    ) {
        self.finished = true;
        sink(StreamEvent::Error(ir::StreamError { status, message }));
    }
}

pub(super) fn error_status(code: Option<&str>) -> u16 {
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

/// IR events → Responses typed events, over [`ResponsesEncoder`].
#[derive(Debug)]
pub struct StreamEncode {
    pub(super) enc: ResponsesEncoder,
    pub(super) upstream: Option<Format>,
    pub(super) usage: ir::Usage,
    /// Gemini per-part signature of the open text / call block, given to the
    /// client as a reasoning item after it (kind "text" / "call").
    pub(super) pending_sig: Option<(String, &'static str)>,
    /// Signature of the open thinking block, wrapped once it is whole.
    pub(super) thinking_sig: Option<String>,
    pub(super) open_call: bool,
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

    pub(super) fn flush_sig(&mut self, out: &mut Vec<u8>) {
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

/// The fields whose string values are generated text (answer, reasoning,
/// tool arguments) in this format's stream events (`sniff::text_chars`).
/// Only deltas: the `.done` events and `response.completed` repeat the text.
pub const TEXT_KEYS: &[&[u8]] = &[b"\"delta\":"];

/// An error body ending a stream of this format: an `error` event.
pub fn write_error_event(body: &[u8], out: &mut Vec<u8>) {
    sse::write_raw(out, Some("error"), body);
}
