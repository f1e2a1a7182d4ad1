//! Streams: Gemini upstream events → IR events (`StreamDecode`), and IR events
//! → Gemini client stream (`StreamEncode`).

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OpenKind {
    Text,
    Thinking,
}

/// Gemini SSE (`alt=sse`) → IR events. Every chunk is a whole
/// `GenerateContentResponse`; text parts continue the open block, each
/// `functionCall` part is a complete call (Gemini never splits arguments).
#[derive(Debug, Default)]
pub struct StreamDecode {
    pub(super) started: bool,
    pub(super) finished: bool,
    pub(super) next_index: usize,
    pub(super) open: Option<(usize, OpenKind)>,
    pub(super) id: String,
    pub(super) calls: usize,
    pub(super) usage: ir::Usage,
}

impl StreamDecode {
    pub(super) fn close(&mut self, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        if let Some((index, _)) = self.open.take() {
            sink(StreamEvent::BlockStop { index });
        }
    }

    pub(super) fn ensure_open(
        &mut self,
        kind: OpenKind,
        sink: &mut dyn FnMut(StreamEvent<'_>),
    ) -> usize {
        if let Some((i, k)) = self.open
            && k == kind
        {
            return i;
        }
        self.close(sink);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((index, kind));
        sink(StreamEvent::BlockStart {
            index,
            block: match kind {
                OpenKind::Text => ir::BlockStart::Text,
                OpenKind::Thinking => ir::BlockStart::Thinking,
            },
        });
        index
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

pub(super) fn status_from_gemini_error(e: &Value) -> u16 {
    if let Some(c) = e
        .get("code")
        .and_then(Value::as_u64)
        .filter(|c| (400..600).contains(c))
    {
        return c as u16;
    }
    match e.get("status").and_then(Value::as_str).unwrap_or("") {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" => 400,
        "UNAUTHENTICATED" => 401,
        "PERMISSION_DENIED" => 403,
        "NOT_FOUND" => 404,
        "RESOURCE_EXHAUSTED" => 429,
        "UNAVAILABLE" => 503,
        "DEADLINE_EXCEEDED" => 504,
        _ => 500,
    }
}

impl StreamDecoder for StreamDecode {
    fn event(&mut self, ev: sse::Event<'_>, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        if self.finished {
            return;
        }
        let v: Value = match serde_json::from_slice(ev.data) {
            Ok(v) => v,
            Err(e) => return self.error(502, format!("malformed Gemini stream event: {e}"), sink),
        };
        let Some(o) = v.as_object() else {
            return self.error(
                502,
                "malformed Gemini stream event: not an object".into(),
                sink,
            );
        };
        if let Some(e) = o.get("error") {
            let msg = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("Gemini stream error")
                .to_string();
            return self.error(status_from_gemini_error(e), msg, sink);
        }
        if !self.started {
            self.started = true;
            self.id = field(o, "responseId", "response_id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let model = field(o, "modelVersion", "model_version")
                .and_then(Value::as_str)
                .unwrap_or("");
            sink(StreamEvent::Start(ir::StreamStart {
                id: Cow::Borrowed(&self.id),
                model: Cow::Borrowed(model),
                created: None,
                usage: ir::Usage::default(),
                origin: Some(Format::Gemini),
            }));
        }
        let cand = o
            .get("candidates")
            .and_then(Value::as_array)
            .and_then(|c| c.first());
        if let Some(parts) = cand
            .and_then(|c| c.get("content"))
            .and_then(|c| c.get("parts"))
            .and_then(Value::as_array)
        {
            for p in parts {
                let Some(po) = p.as_object() else { continue };
                let sig = field(po, "thoughtSignature", "thought_signature")
                    .and_then(Value::as_str)
                    .and_then(std_base64);
                if let Some(t) = po.get("text").and_then(Value::as_str) {
                    let thought = po.get("thought").and_then(Value::as_bool) == Some(true);
                    if t.is_empty() && sig.is_none() {
                        continue;
                    }
                    let kind = if thought {
                        OpenKind::Thinking
                    } else {
                        OpenKind::Text
                    };
                    let index = self.ensure_open(kind, sink);
                    if !t.is_empty() {
                        let delta = if thought {
                            ir::Delta::Thinking(Cow::Borrowed(t))
                        } else {
                            ir::Delta::Text(Cow::Borrowed(t))
                        };
                        sink(StreamEvent::Delta { index, delta });
                    }
                    if let Some(s) = sig {
                        sink(StreamEvent::Delta {
                            index,
                            delta: ir::Delta::Signature(s),
                        });
                    }
                } else if let Some(fc) =
                    field(po, "functionCall", "function_call").and_then(Value::as_object)
                {
                    self.close(sink);
                    let name = fc.get("name").and_then(Value::as_str).unwrap_or_default();
                    let id = fc
                        .get("id")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .unwrap_or_else(|| call_id(&self.id, self.calls, name));
                    self.calls += 1;
                    let index = self.next_index;
                    self.next_index += 1;
                    sink(StreamEvent::BlockStart {
                        index,
                        block: ir::BlockStart::ToolCall {
                            id: Cow::Owned(id),
                            name: Cow::Borrowed(name),
                        },
                    });
                    // The signature first: an OpenAI Chat client gets it on
                    // the call's first delta, next to the name.
                    if let Some(s) = sig {
                        sink(StreamEvent::Delta {
                            index,
                            delta: ir::Delta::Signature(s),
                        });
                    }
                    let args = json_args_text(fc.get("args").filter(|a| !a.is_null()));
                    sink(StreamEvent::Delta {
                        index,
                        delta: ir::Delta::ToolArgs(Cow::Owned(args)),
                    });
                    sink(StreamEvent::BlockStop { index });
                } else if !po.is_empty() {
                    self.close(sink);
                    let index = self.next_index;
                    self.next_index += 1;
                    sink(StreamEvent::BlockStart {
                        index,
                        block: ir::BlockStart::Raw(ir::Raw {
                            format: Format::Gemini,
                            value: p.clone(),
                        }),
                    });
                    sink(StreamEvent::BlockStop { index });
                }
            }
        }
        if let Some(u) = field(o, "usageMetadata", "usage_metadata") {
            let u = usage_from_gemini(u);
            if u != self.usage {
                self.usage = u;
                sink(StreamEvent::Usage(u));
            }
        }
        let finish = cand
            .and_then(Value::as_object)
            .and_then(|c| field(c, "finishReason", "finish_reason"))
            .and_then(Value::as_str)
            .map(finish_from_gemini)
            .or_else(|| {
                field(o, "promptFeedback", "prompt_feedback")
                    .and_then(|f| f.get("blockReason").or_else(|| f.get("block_reason")))
                    .map(|_| ir::FinishReason::ContentFilter)
            });
        if let Some(reason) = finish {
            self.close(sink);
            self.finished = true;
            sink(StreamEvent::Finish {
                reason,
                usage: self.usage,
            });
        }
    }

    fn end(&mut self, _sink: &mut dyn FnMut(StreamEvent<'_>)) {
        // A Gemini stream that ends without a finishReason was cut short: emit
        // nothing, so the client gets an error rather than a clean end.
    }
}

/// IR events → Gemini client stream: SSE `data: {chunk}\r\n\r\n` (as Gemini
/// frames it) with `alt=sse`, else one JSON array written incrementally
/// (`[` chunk `,\r\n` chunk ... `]`). Text and thinking deltas go out as they
/// come; a tool call goes out whole when its block closes (Gemini never
/// streams partial arguments).
#[derive(Debug)]
pub struct StreamEncode {
    pub(super) sse: bool,
    pub(super) wrote_open: bool,
    pub(super) chunks: usize,
    pub(super) done: bool,
    pub(super) id: String,
    pub(super) model: String,
    pub(super) usage: ir::Usage,
    /// The upstream format: which provider minted the signatures in the stream.
    pub(super) upstream: Option<Format>,
    /// Open block: kind, plus buffered tool call (id, name, args, signature).
    pub(super) open: Option<EncBlock>,
}

#[derive(Debug)]
pub(super) enum EncBlock {
    Text,
    Thinking {
        sig: Option<String>,
        /// The upstream's reasoning item id, wrapped into the signature.
        id: Option<String>,
    },
    Tool {
        id: String,
        name: String,
        args: String,
        sig: Option<String>,
    },
    Other,
}

impl StreamEncode {
    pub fn new(opts: &ResponseOpts) -> Self {
        StreamEncode {
            sse: opts.gemini_sse,
            wrote_open: false,
            chunks: 0,
            done: false,
            id: String::new(),
            model: opts.client_model.clone(),
            usage: ir::Usage::default(),
            upstream: None,
            open: None,
        }
    }

    pub(super) fn write(&mut self, v: &Value, out: &mut Vec<u8>) {
        let buf = serde_json::to_vec(v).unwrap_or_default();
        self.write_raw(&buf, out);
    }

    /// One chunk (`json`: a serialized object) in the client's framing.
    pub(super) fn write_raw(&mut self, json: &[u8], out: &mut Vec<u8>) {
        if self.sse {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(json);
            out.extend_from_slice(b"\r\n\r\n");
        } else {
            if !self.wrote_open {
                self.wrote_open = true;
                out.push(b'[');
            } else if self.chunks > 0 {
                out.extend_from_slice(b",\r\n");
            }
            out.extend_from_slice(json);
        }
        self.chunks += 1;
    }

    pub(super) fn chunk(&mut self, parts: Vec<Value>, finish: Option<&str>, out: &mut Vec<u8>) {
        let usage = self.usage;
        let chunk = ChunkOut {
            candidates: [CandidateOut {
                content: ContentOut {
                    role: "model",
                    parts: &parts,
                },
                finish_reason: finish,
                index: 0,
            }],
            usage_metadata: UsageOut {
                prompt_token_count: usage.input,
                candidates_token_count: usage.output.saturating_sub(usage.reasoning),
                total_token_count: usage.input + usage.output,
                cached_content_token_count: usage.cache_read,
                thoughts_token_count: usage.reasoning,
            },
            model_version: &self.model,
            response_id: &self.id,
        };
        let mut buf = Vec::with_capacity(256);
        let _ = serde_json::to_writer(&mut buf, &chunk);
        self.write_raw(&buf, out);
    }

    pub(super) fn close_array(&mut self, out: &mut Vec<u8>) {
        if !self.sse {
            if !self.wrote_open {
                self.wrote_open = true;
                out.push(b'[');
            }
            out.push(b']');
        }
    }
}

impl StreamEncoder for StreamEncode {
    fn event(&mut self, ev: &StreamEvent<'_>, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        match ev {
            StreamEvent::Start(s) => {
                self.upstream = s.origin;
                self.id = s.id.to_string();
                if !s.model.is_empty() {
                    self.model = s.model.to_string();
                }
                self.usage.merge(&s.usage);
            }
            StreamEvent::BlockStart { block, .. } => {
                self.open = Some(match block {
                    ir::BlockStart::Text => EncBlock::Text,
                    ir::BlockStart::Thinking => EncBlock::Thinking {
                        sig: None,
                        id: None,
                    },
                    ir::BlockStart::ToolCall { id, name } => EncBlock::Tool {
                        id: id.to_string(),
                        name: name.to_string(),
                        args: String::new(),
                        sig: None,
                    },
                    ir::BlockStart::RedactedThinking { data } => {
                        let sig = wrap_signature(self.upstream, data, None, "redacted");
                        self.chunk(
                            vec![json!({"text": "", "thought": true, "thoughtSignature": sig})],
                            None,
                            out,
                        );
                        EncBlock::Other
                    }
                    ir::BlockStart::Raw(raw) => {
                        if raw.format == Format::Gemini {
                            self.chunk(vec![raw.value.clone()], None, out);
                        }
                        EncBlock::Other
                    }
                });
            }
            StreamEvent::Delta { delta, .. } => match (delta, self.open.as_mut()) {
                (ir::Delta::Text(t), _) if !t.is_empty() => {
                    self.chunk(vec![json!({"text": t})], None, out)
                }
                (ir::Delta::Thinking(t), _) if !t.is_empty() => {
                    self.chunk(vec![json!({"text": t, "thought": true})], None, out)
                }
                (ir::Delta::ToolArgs(a), Some(EncBlock::Tool { args, .. })) => args.push_str(a),
                (ir::Delta::Signature(s), Some(EncBlock::Tool { sig, .. })) => {
                    sig.get_or_insert_with(String::new).push_str(s)
                }
                (ir::Delta::Signature(s), Some(EncBlock::Text)) => {
                    // Per-part signatures on text only come from Gemini.
                    self.chunk(vec![json!({"text": "", "thoughtSignature": s})], None, out)
                }
                (ir::Delta::Signature(s), Some(EncBlock::Thinking { sig, .. })) => {
                    // Whole before wrapping: it may come in pieces.
                    sig.get_or_insert_with(String::new).push_str(s)
                }
                (ir::Delta::ThinkingId(s), Some(EncBlock::Thinking { id, .. })) => {
                    *id = Some(s.to_string())
                }
                _ => {}
            },
            StreamEvent::BlockStop { .. } => {
                if let Some(EncBlock::Thinking { sig: Some(sig), id }) = &self.open {
                    let sig = foreign_sig(self.upstream, sig, id.as_deref(), "thinking");
                    self.open = None;
                    self.chunk(
                        vec![json!({"text": "", "thought": true, "thoughtSignature": sig})],
                        None,
                        out,
                    );
                }
                if let Some(EncBlock::Tool {
                    id,
                    name,
                    args,
                    sig,
                }) = self.open.take()
                {
                    let args: Value = serde_json::from_str(&args)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| json!({}));
                    let mut part = json!({"functionCall": {"id": id, "name": name, "args": args}});
                    if let Some(s) = sig {
                        part["thoughtSignature"] = Value::String(s);
                    }
                    self.chunk(vec![part], None, out);
                }
            }
            StreamEvent::Usage(u) => self.usage.merge(u),
            StreamEvent::Ping => {}
            StreamEvent::Finish { reason, usage } => {
                self.usage.merge(usage);
                let f = finish_to_gemini(reason);
                self.chunk(vec![json!({"text": ""})], Some(&f), out);
                self.close_array(out);
                self.done = true;
            }
            StreamEvent::Error(e) => {
                let v = super::error_value(e.status, &e.message);
                self.write(&v, out);
                self.close_array(out);
                self.done = true;
            }
        }
    }
}

/// The fields whose string values are generated text (answer, reasoning,
/// tool arguments) in this format's stream events (`sniff::text_chars`).
pub const TEXT_KEYS: &[&[u8]] = &[b"\"text\":"];

/// An error body ending a stream of this format: a data-only event (Gemini streams name no events).
pub fn write_error_event(body: &[u8], out: &mut Vec<u8>) {
    sse::write_raw(out, None, body);
}
