//! Streams: Anthropic Messages upstream events → IR events (`StreamDecode`),
//! and IR events → Anthropic Messages client stream (`StreamEncode`).

use super::*;

pub(super) fn malformed(e: impl std::fmt::Display) -> StreamEvent<'static> {
    StreamEvent::Error(ir::StreamError {
        status: 502,
        message: format!("upstream sent a malformed Anthropic stream event: {e}"),
    })
}

/// Anthropic stream events → IR events. `message_start` usage (input) and
/// `message_delta` usage (output) are both kept; `Finish` goes out at `message_stop`.
#[derive(Debug, Default)]
pub struct StreamDecode {
    pub(super) started: bool,
    pub(super) done: bool,
    /// (Anthropic index, IR index) of the open block.
    pub(super) open: Option<(u64, usize)>,
    pub(super) next: usize,
    pub(super) usage: ir::Usage,
    pub(super) reason: Option<FinishReason>,
}

impl StreamDecode {
    pub(super) fn close(&mut self, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        if let Some((_, index)) = self.open.take() {
            sink(StreamEvent::BlockStop { index });
        }
    }

    pub(super) fn block_start(
        &mut self,
        an: u64,
        raw: &RawValue,
        sink: &mut dyn FnMut(StreamEvent<'_>),
    ) -> Result<(), String> {
        self.close(sink);
        let b: WireBlock<'_> = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
        let index = self.next;
        self.next += 1;
        self.open = Some((an, index));
        let delta = |d| StreamEvent::Delta { index, delta: d };
        match b.kind.as_str() {
            "text" => {
                sink(StreamEvent::BlockStart {
                    index,
                    block: BlockStart::Text,
                });
                if let Some(t) = b.text.filter(|t| !t.0.is_empty()) {
                    sink(delta(Delta::Text(t.0)));
                }
            }
            "thinking" => {
                sink(StreamEvent::BlockStart {
                    index,
                    block: BlockStart::Thinking,
                });
                if let Some(t) = b.thinking.filter(|t| !t.0.is_empty()) {
                    sink(delta(Delta::Thinking(t.0)));
                }
                if let Some(s) = b.signature.filter(|s| !s.0.is_empty()) {
                    sink(delta(Delta::Signature(s.0)));
                }
            }
            "redacted_thinking" => sink(StreamEvent::BlockStart {
                index,
                block: BlockStart::RedactedThinking {
                    data: b.data.map(|d| d.0).unwrap_or_default(),
                },
            }),
            "tool_use" => {
                sink(StreamEvent::BlockStart {
                    index,
                    block: BlockStart::ToolCall {
                        id: b.id.map(|d| d.0).unwrap_or_default(),
                        name: b.name.map(|d| d.0).unwrap_or_default(),
                    },
                });
                // Input is normally streamed; some servers put it here whole.
                if let Some(input) = b.input.filter(|i| i.get() != "{}") {
                    sink(delta(Delta::ToolArgs(Cow::Borrowed(input.get()))));
                }
            }
            _ => {
                let value: Value = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
                sink(StreamEvent::BlockStart {
                    index,
                    block: BlockStart::Raw(ir::Raw {
                        format: Format::Anthropic,
                        value,
                    }),
                });
            }
        }
        Ok(())
    }
}

impl StreamDecoder for StreamDecode {
    fn event(&mut self, ev: sse::Event<'_>, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        if self.done {
            return;
        }
        // Most of a stream: read without building a `WireEvent`.
        if let Some((an, delta)) = compact_delta(ev.data) {
            if let Some((open, index)) = self.open
                && open == an
            {
                sink(StreamEvent::Delta { index, delta });
            }
            return;
        }
        let w: WireEvent<'_> = match serde_json::from_slice(ev.data) {
            Ok(w) => w,
            Err(e) => {
                self.done = true;
                sink(malformed(e));
                return;
            }
        };
        match w.kind.as_str() {
            "message_start" => {
                let m = w.message;
                let usage = m
                    .as_ref()
                    .and_then(|m| m.usage.as_ref())
                    .map(WireUsage::to_ir)
                    .unwrap_or_default();
                self.usage.merge(&usage);
                if !self.started {
                    self.started = true;
                    let (id, model) = match m {
                        Some(m) => (m.id.map(|s| s.0), m.model.map(|s| s.0)),
                        None => (None, None),
                    };
                    sink(StreamEvent::Start(ir::StreamStart {
                        id: id.unwrap_or_default(),
                        model: model.unwrap_or_default(),
                        created: None,
                        usage,
                        origin: Some(Format::Anthropic),
                    }));
                }
            }
            "content_block_start" => {
                let (Some(an), Some(raw)) = (w.index, w.content_block) else {
                    self.done = true;
                    sink(malformed(
                        "content_block_start without index or content_block",
                    ));
                    return;
                };
                if let Err(e) = self.block_start(an, raw, sink) {
                    self.done = true;
                    sink(malformed(e));
                }
            }
            "content_block_delta" => {
                let (Some((an, index)), Some(d)) = (self.open, w.delta) else {
                    return;
                };
                if w.index != Some(an) {
                    return;
                }
                let delta = match d.kind.as_ref().map(CowStr::as_str) {
                    Some("text_delta") => d.text.map(|t| Delta::Text(t.0)),
                    Some("thinking_delta") => d.thinking.map(|t| Delta::Thinking(t.0)),
                    Some("signature_delta") => d.signature.map(|t| Delta::Signature(t.0)),
                    Some("input_json_delta") => d.partial_json.map(|t| Delta::ToolArgs(t.0)),
                    // citations_delta and future kinds have no IR form.
                    _ => None,
                };
                if let Some(delta) = delta {
                    sink(StreamEvent::Delta { index, delta });
                }
            }
            "content_block_stop" if self.open.is_some_and(|(an, _)| w.index == Some(an)) => {
                self.close(sink);
            }
            "message_delta" => {
                if let Some(d) = &w.delta
                    && let Some(r) = &d.stop_reason
                {
                    self.reason = Some(finish_from_anthropic(
                        r.as_str(),
                        d.stop_sequence.as_ref().map(CowStr::as_str),
                    ));
                }
                if let Some(u) = &w.usage {
                    let u = u.to_ir();
                    self.usage.merge(&u);
                    sink(StreamEvent::Usage(u));
                }
            }
            "message_stop" => {
                self.close(sink);
                self.done = true;
                sink(StreamEvent::Finish {
                    reason: self.reason.take().unwrap_or(FinishReason::Stop),
                    usage: self.usage,
                });
            }
            "ping" => sink(StreamEvent::Ping),
            "error" => {
                self.done = true;
                let e = w.error.unwrap_or(Value::Null);
                let kind = e.get("type").and_then(Value::as_str).unwrap_or("api_error");
                sink(StreamEvent::Error(ir::StreamError {
                    status: ir::status_for_error_type(kind),
                    message: e
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("upstream error")
                        .to_string(),
                }));
            }
            _ => {}
        }
    }

    fn end(&mut self, _sink: &mut dyn FnMut(StreamEvent<'_>)) {
        // Without message_stop the answer is not known to be complete.
    }
}

/// A `content_block_delta` carrying text, thinking or tool arguments in the
/// compact form Anthropic sends, `{"type":"content_block_delta","index":N,
/// "delta":{"type":"text_delta","text":"…"}}`: (index, delta). Building a
/// `WireEvent` for each was most of a converted stream's cost (figures in
/// benches/README.md, "Eighth session"). Any other shape (spacing, field order,
/// extra fields, other kinds) is `None` and goes through serde as before;
/// the string itself is always decoded by serde (escapes, UTF-8, control
/// characters), so both paths agree on every input.
pub(super) fn compact_delta(data: &[u8]) -> Option<(u64, Delta<'_>)> {
    let rest = data.strip_prefix(br#"{"type":"content_block_delta","index":"#)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 18 || (digits > 1 && rest[0] == b'0') {
        return None;
    }
    let an = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let rest = rest[digits..].strip_prefix(br#","delta":{"type":""#)?;
    const KINDS: [&[u8]; 3] = [
        br#"text_delta","text":"#,
        br#"thinking_delta","thinking":"#,
        br#"input_json_delta","partial_json":"#,
    ];
    let (s, kind) = KINDS
        .iter()
        .enumerate()
        .find_map(|(i, k)| rest.strip_prefix(*k).map(|s| (s, i)))?;
    // `s` is the quoted string and what follows: the string must be all
    // that is left but the two closing braces.
    let text = json::whole_string(s.strip_suffix(b"}}")?)?;
    let delta = match kind {
        0 => Delta::Text(text.0),
        1 => Delta::Thinking(text.0),
        _ => Delta::ToolArgs(text.0),
    };
    Some((an, delta))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OutKind {
    Text,
    Thinking { signed: bool },
    Tool,
    Other,
}

/// IR events → Anthropic SSE: `message_start`, `ping`, content blocks with
/// increasing indices as start/delta/stop triples, exactly one `message_delta`,
/// then `message_stop` — or an `error` event.
pub struct StreamEncode {
    pub(super) client_model: String,
    pub(super) started: bool,
    pub(super) done: bool,
    /// (IR index, output index, kind) of the open block.
    pub(super) open: Option<(usize, usize, OutKind)>,
    pub(super) next: usize,
    /// The upstream format: which provider minted the stream's signatures.
    pub(super) origin: Option<Format>,
    /// Id of the open tool call and its per-call signature (Gemini), given
    /// in a thinking block right after the `tool_use` block.
    pub(super) call_id: String,
    pub(super) call_sig: Option<String>,
    /// The upstream's id of the open thinking block (Responses reasoning
    /// item), wrapped into its signature as in a whole answer.
    pub(super) thinking_id: Option<String>,
}

impl StreamEncode {
    pub fn new(opts: &ResponseOpts) -> Self {
        StreamEncode {
            client_model: opts.client_model.clone(),
            started: false,
            done: false,
            open: None,
            next: 0,
            origin: None,
            call_id: String::new(),
            call_sig: None,
            thinking_id: None,
        }
    }

    pub(super) fn start(&mut self, id: &str, model: &str, usage: &ir::Usage, out: &mut Vec<u8>) {
        self.started = true;
        #[derive(Serialize)]
        struct Msg<'a> {
            id: &'a str,
            #[serde(rename = "type")]
            kind: &'static str,
            role: &'static str,
            model: &'a str,
            content: [(); 0],
            stop_reason: Option<()>,
            stop_sequence: Option<()>,
            usage: OutUsage,
        }
        #[derive(Serialize)]
        struct Start<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            message: Msg<'a>,
        }
        let model = if self.client_model.is_empty() {
            model
        } else {
            &self.client_model
        };
        let id = if id.is_empty() { "msg_aigate" } else { id };
        let mut u = OutUsage::from(usage);
        // Output (thinking included) is told once, in message_delta.
        u.output_tokens = 0;
        u.output_tokens_details = None;
        let ev = Start {
            kind: "message_start",
            message: Msg {
                id,
                kind: "message",
                role: "assistant",
                model,
                content: [],
                stop_reason: None,
                stop_sequence: None,
                usage: u,
            },
        };
        sse::write_json(out, Some("message_start"), &ev);
        sse::write_raw(out, Some("ping"), br#"{"type":"ping"}"#);
    }

    pub(super) fn block_start<T: Serialize>(&mut self, out: &mut Vec<u8>, block: &T) -> usize {
        #[derive(Serialize)]
        struct S<'a, T> {
            #[serde(rename = "type")]
            kind: &'static str,
            index: usize,
            content_block: &'a T,
        }
        let index = self.next;
        self.next += 1;
        sse::write_json(
            out,
            Some("content_block_start"),
            &S {
                kind: "content_block_start",
                index,
                content_block: block,
            },
        );
        index
    }

    /// `content_block_delta` with `{"type":<kind>,<field>:<value>}`.
    pub(super) fn delta(out: &mut Vec<u8>, index: usize, kind: &str, field: &str, value: &str) {
        out.extend_from_slice(
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":",
        );
        push_uint(out, index as u64);
        out.extend_from_slice(b",\"delta\":{\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"");
        out.extend_from_slice(field.as_bytes());
        out.extend_from_slice(b"\":");
        let _ = serde_json::to_writer(&mut *out, value);
        out.extend_from_slice(b"}}\n\n");
    }

    pub(super) fn close(&mut self, out: &mut Vec<u8>) {
        let Some((_, index, kind)) = self.open.take() else {
            return;
        };
        if kind == (OutKind::Thinking { signed: false }) {
            // Strict clients expect every thinking block to carry a signature.
            Self::delta(out, index, "signature_delta", "signature", "");
        }
        Self::stop(out, index);
        if kind == OutKind::Tool
            && let Some(sig) = self.call_sig.take()
        {
            let index = self.block_start(
                out,
                &OutBlock::Thinking {
                    kind: "thinking",
                    thinking: "",
                    signature: Cow::Borrowed(""),
                },
            );
            let sig = call_signature(&self.call_id, &sig);
            Self::delta(out, index, "signature_delta", "signature", &sig);
            Self::stop(out, index);
        }
    }

    pub(super) fn stop(out: &mut Vec<u8>, index: usize) {
        out.extend_from_slice(
            b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":",
        );
        push_uint(out, index as u64);
        out.extend_from_slice(b"}\n\n");
    }
}

impl StreamEncoder for StreamEncode {
    fn event(&mut self, ev: &StreamEvent<'_>, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if !self.started && !matches!(ev, StreamEvent::Start(_) | StreamEvent::Error(_)) {
            self.start("", "", &ir::Usage::default(), out);
        }
        match ev {
            StreamEvent::Start(s) => {
                if !self.started {
                    self.origin = s.origin;
                    self.start(&s.id, &s.model, &s.usage, out);
                }
            }
            StreamEvent::BlockStart { index, block } => {
                self.close(out);
                self.thinking_id = None;
                let (out_index, kind) = match block {
                    BlockStart::Text => (
                        self.block_start(
                            out,
                            &OutBlock::Text {
                                kind: "text",
                                text: "",
                            },
                        ),
                        OutKind::Text,
                    ),
                    BlockStart::Thinking => (
                        self.block_start(
                            out,
                            &OutBlock::Thinking {
                                kind: "thinking",
                                thinking: "",
                                signature: Cow::Borrowed(""),
                            },
                        ),
                        OutKind::Thinking { signed: false },
                    ),
                    BlockStart::RedactedThinking { data } => (
                        self.block_start(
                            out,
                            &OutBlock::Redacted {
                                kind: "redacted_thinking",
                                data,
                            },
                        ),
                        OutKind::Other,
                    ),
                    BlockStart::ToolCall { id, name } => {
                        self.call_id.clear();
                        self.call_id.push_str(id);
                        self.call_sig = None;
                        (
                            self.block_start(
                                out,
                                &OutBlock::ToolUse {
                                    kind: "tool_use",
                                    id,
                                    name,
                                    input: ToolInput::Raw(empty_object()),
                                },
                            ),
                            OutKind::Tool,
                        )
                    }
                    BlockStart::Raw(r) if r.format == Format::Anthropic => {
                        // Server tool blocks stream their input like tool_use.
                        (self.block_start(out, &r.value), OutKind::Tool)
                    }
                    // No Anthropic form: the block is skipped entirely.
                    BlockStart::Raw(_) => return,
                };
                self.open = Some((*index, out_index, kind));
            }
            StreamEvent::Delta { index, delta } => {
                let Some((ir, out_index, kind)) = &mut self.open else {
                    return;
                };
                if *ir != *index {
                    return;
                }
                match (kind, delta) {
                    (OutKind::Text, Delta::Text(s)) if !s.is_empty() => {
                        Self::delta(out, *out_index, "text_delta", "text", s)
                    }
                    (OutKind::Thinking { .. }, Delta::Thinking(s)) if !s.is_empty() => {
                        Self::delta(out, *out_index, "thinking_delta", "thinking", s)
                    }
                    (OutKind::Thinking { signed }, Delta::Signature(s)) if !s.is_empty() => {
                        *signed = true;
                        // An OpenAI-format upstream relays other providers'
                        // signatures (OpenRouter): their origin is unknown here.
                        let origin = self.origin.filter(|o| *o != Format::OpenAiChat);
                        let s = client_signature(origin, Some(s), self.thinking_id.as_deref());
                        Self::delta(out, *out_index, "signature_delta", "signature", &s)
                    }
                    (OutKind::Tool, Delta::Signature(s)) if !s.is_empty() => {
                        self.call_sig = Some(s.to_string());
                    }
                    (OutKind::Thinking { .. }, Delta::ThinkingId(id)) => {
                        self.thinking_id = Some(id.to_string());
                    }
                    (OutKind::Tool, Delta::ToolArgs(s)) if !s.is_empty() => {
                        Self::delta(out, *out_index, "input_json_delta", "partial_json", s)
                    }
                    _ => {}
                }
            }
            StreamEvent::BlockStop { index } => {
                if self.open.is_some_and(|(ir, _, _)| ir == *index) {
                    self.close(out);
                }
            }
            StreamEvent::Usage(_) => {}
            StreamEvent::Ping => sse::write_raw(out, Some("ping"), br#"{"type":"ping"}"#),
            StreamEvent::Finish { reason, usage } => {
                self.close(out);
                #[derive(Serialize)]
                struct D<'a> {
                    stop_reason: &'a str,
                    stop_sequence: Option<&'a str>,
                }
                #[derive(Serialize)]
                struct MessageDelta<'a> {
                    #[serde(rename = "type")]
                    kind: &'static str,
                    delta: D<'a>,
                    usage: OutUsage,
                }
                let (stop_reason, stop_sequence) = finish_to_anthropic(reason);
                let md = MessageDelta {
                    kind: "message_delta",
                    delta: D {
                        stop_reason,
                        stop_sequence,
                    },
                    usage: usage.into(),
                };
                sse::write_json(out, Some("message_delta"), &md);
                sse::write_raw(out, Some("message_stop"), br#"{"type":"message_stop"}"#);
                self.done = true;
            }
            StreamEvent::Error(e) => {
                let body = super::error_value(e.status, &e.message);
                sse::write_json(out, Some("error"), &body);
                self.done = true;
            }
        }
    }
}

/// The fields whose string values are generated text (answer, reasoning,
/// tool arguments) in this format's stream events (`sniff::text_chars`).
pub const TEXT_KEYS: &[&[u8]] = &[b"\"text\":", b"\"thinking\":", b"\"partial_json\":"];

/// An error body ending a stream of this format: an `error` event.
pub fn write_error_event(body: &[u8], out: &mut Vec<u8>) {
    sse::write_raw(out, Some("error"), body);
}
