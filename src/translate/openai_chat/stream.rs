//! Streams: OpenAI Chat Completions upstream events → IR events
//! (`StreamDecode`), and IR events → OpenAI Chat Completions client stream
//! (`StreamEncode`).

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Open {
    None,
    Text(usize),
    Thinking(usize),
    /// Position in `tools`.
    Tool(usize),
}

#[derive(Debug)]
pub(super) struct ToolSlot {
    pub(super) oa_index: u64,
    pub(super) id: String,
    pub(super) name: String,
    /// IR block index once the block is open (a call opens when its name is known).
    pub(super) ir: Option<usize>,
    pub(super) pending_args: String,
}

/// OpenAI chunks → IR events. Per-index tool state; a new call opens only on a
/// new index (or a new id on a reused index) and once its name is known, so a
/// continuation delta with a null/empty name never opens a block.
#[derive(Debug)]
pub struct StreamDecode {
    pub(super) started: bool,
    pub(super) done: bool,
    pub(super) open: Open,
    pub(super) next: usize,
    pub(super) tools: Vec<ToolSlot>,
    pub(super) finish: Option<FinishReason>,
    pub(super) refused: bool,
    pub(super) usage: ir::Usage,
    /// What comes before `"choices"` in this stream's text-only chunks
    /// (id, object, created, model, ...), learned from one decoded in full:
    /// later chunks that repeat it byte for byte are read by `plain_text`.
    pub(super) text_head: Option<Vec<u8>>,
}

impl Default for StreamDecode {
    fn default() -> Self {
        StreamDecode {
            started: false,
            done: false,
            open: Open::None,
            next: 0,
            tools: Vec::new(),
            finish: None,
            refused: false,
            usage: ir::Usage::default(),
            text_head: None,
        }
    }
}

pub(super) fn malformed(e: impl std::fmt::Display) -> StreamEvent<'static> {
    StreamEvent::Error(ir::StreamError {
        status: 502,
        message: format!("upstream sent a malformed OpenAI stream event: {e}"),
    })
}

/// An in-stream `{"error": ...}` object → IR error.
pub(super) fn stream_error(e: &Value) -> ir::StreamError {
    let kind = e.get("type").and_then(Value::as_str).unwrap_or("");
    let status = match e.get("code") {
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| (400..600).contains(c)),
        _ => None,
    }
    .unwrap_or_else(|| ir::status_for_error_type(kind));
    ir::StreamError {
        status,
        message: e
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("upstream error")
            .to_string(),
    }
}

impl StreamDecode {
    pub(super) fn close(&mut self, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        let index = match self.open {
            Open::None => return,
            Open::Text(i) | Open::Thinking(i) => i,
            Open::Tool(p) => self.tools[p].ir.unwrap_or(0),
        };
        self.open = Open::None;
        sink(StreamEvent::BlockStop { index });
    }

    pub(super) fn open_block(
        &mut self,
        block: BlockStart<'_>,
        sink: &mut dyn FnMut(StreamEvent<'_>),
    ) -> usize {
        self.close(sink);
        let index = self.next;
        self.next += 1;
        sink(StreamEvent::BlockStart { index, block });
        index
    }

    pub(super) fn text(
        &mut self,
        s: Cow<'_, str>,
        thinking: bool,
        sink: &mut dyn FnMut(StreamEvent<'_>),
    ) {
        if s.is_empty() {
            return;
        }
        let index = match (self.open, thinking) {
            (Open::Text(i), false) | (Open::Thinking(i), true) => i,
            (_, false) => {
                let i = self.open_block(BlockStart::Text, sink);
                self.open = Open::Text(i);
                i
            }
            (_, true) => {
                let i = self.open_block(BlockStart::Thinking, sink);
                self.open = Open::Thinking(i);
                i
            }
        };
        let delta = if thinking {
            Delta::Thinking(s)
        } else {
            Delta::Text(s)
        };
        sink(StreamEvent::Delta { index, delta });
    }

    pub(super) fn start_tool(&mut self, pos: usize, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        self.close(sink);
        let index = self.next;
        self.next += 1;
        let slot = &mut self.tools[pos];
        slot.ir = Some(index);
        if slot.id.is_empty() {
            slot.id = format!("call_{index}");
        }
        sink(StreamEvent::BlockStart {
            index,
            block: BlockStart::ToolCall {
                id: Cow::Borrowed(&slot.id),
                name: Cow::Borrowed(&slot.name),
            },
        });
        self.open = Open::Tool(pos);
        if !slot.pending_args.is_empty() {
            let args = std::mem::take(&mut slot.pending_args);
            sink(StreamEvent::Delta {
                index,
                delta: Delta::ToolArgs(Cow::Owned(args)),
            });
        }
    }

    pub(super) fn tool_delta(
        &mut self,
        tc: ToolCallDelta<'_>,
        sink: &mut dyn FnMut(StreamEvent<'_>),
    ) {
        let id = tc.id.as_ref().map(CowStr::as_str).unwrap_or("");
        let oa = match tc.index {
            Some(i) => i,
            None if !id.is_empty() => self.tools.len() as u64,
            None => match self.open {
                Open::Tool(p) => self.tools[p].oa_index,
                _ => 0,
            },
        };
        let pos = match self.tools.iter().rposition(|s| s.oa_index == oa) {
            // Some servers reuse index 0 for parallel calls; a new id is a new call.
            Some(p) if id.is_empty() || self.tools[p].id == id => p,
            _ => {
                self.tools.push(ToolSlot {
                    oa_index: oa,
                    id: id.to_string(),
                    name: String::new(),
                    ir: None,
                    pending_args: String::new(),
                });
                self.tools.len() - 1
            }
        };
        let (name, args) = match tc.function {
            Some(f) => (f.name, f.arguments),
            None => (None, None),
        };
        if self.tools[pos].ir.is_none() {
            if let Some(n) = name.filter(|n| !n.0.is_empty()) {
                self.tools[pos].name = n.0.into_owned();
                if let Some(a) = &args {
                    self.tools[pos].pending_args.push_str(a.as_str());
                }
                self.start_tool(pos, sink);
                return;
            }
            if let Some(a) = &args {
                self.tools[pos].pending_args.push_str(a.as_str());
            }
            return;
        }
        let Some(a) = args.filter(|a| !a.0.is_empty()) else {
            return;
        };
        if self.open == Open::Tool(pos) {
            let index = self.tools[pos].ir.unwrap_or(0);
            sink(StreamEvent::Delta {
                index,
                delta: Delta::ToolArgs(a.0),
            });
        } else {
            // Arguments for a call that is no longer the open one: the client
            // formats with ordered blocks cannot carry that. Say so, loudly.
            sink(StreamEvent::Error(ir::StreamError {
                status: 502,
                message: "upstream interleaved the arguments of parallel tool calls".into(),
            }));
            self.done = true;
        }
    }

    /// A `reasoning_details` entry from an upstream speaking that convention
    /// (OpenRouter): signatures and redacted blocks. The text itself also comes
    /// as `reasoning`/`reasoning_content` and is taken from there.
    pub(super) fn detail(&mut self, det: &Value, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        let s = |k: &str| det.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
        match det.get("type").and_then(Value::as_str) {
            Some("reasoning.text") => {
                if let Some(sig) = s("signature") {
                    let index = match self.open {
                        Open::Thinking(i) => i,
                        _ => {
                            let i = self.open_block(BlockStart::Thinking, sink);
                            self.open = Open::Thinking(i);
                            i
                        }
                    };
                    sink(StreamEvent::Delta {
                        index,
                        delta: Delta::Signature(Cow::Borrowed(sig)),
                    });
                }
            }
            Some("reasoning.encrypted") => {
                if let Some(data) = s("data") {
                    let index = self.open_block(
                        BlockStart::RedactedThinking {
                            data: Cow::Borrowed(data),
                        },
                        sink,
                    );
                    sink(StreamEvent::BlockStop { index });
                }
            }
            _ => {}
        }
    }

    pub(super) fn complete(&mut self, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        // Calls whose name never came are still calls.
        for pos in 0..self.tools.len() {
            if self.tools[pos].ir.is_none() {
                self.start_tool(pos, sink);
            }
        }
        self.close(sink);
        let mut reason = self.finish.take().unwrap_or(FinishReason::Stop);
        if self.refused && reason == FinishReason::Stop {
            reason = FinishReason::Refusal;
        }
        self.done = true;
        sink(StreamEvent::Finish {
            reason,
            usage: self.usage,
        });
    }
}

impl StreamDecoder for StreamDecode {
    fn event(&mut self, ev: sse::Event<'_>, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        if self.done {
            return;
        }
        let data = ev.data.trim_ascii();
        if data == b"[DONE]" {
            if !self.started {
                sink(StreamEvent::Start(ir::StreamStart {
                    origin: Some(Format::OpenAiChat),
                    ..Default::default()
                }));
                self.started = true;
            }
            self.complete(sink);
            return;
        }
        if data.is_empty() {
            return;
        }
        // Most of a stream: read without building a `Chunk`.
        if let Some(text) = self.plain_text(data) {
            self.text(text.0, false, sink);
            return;
        }
        let chunk: Chunk<'_> = match serde_json::from_slice(data) {
            Ok(c) => c,
            Err(e) => {
                self.done = true;
                sink(malformed(e));
                return;
            }
        };
        if let Some(e) = &chunk.error {
            self.done = true;
            sink(StreamEvent::Error(stream_error(e)));
            return;
        }
        if self.started && self.text_head.is_none() {
            self.text_head = text_only(&chunk).and_then(|t| learn_head(data, t));
        }
        if !self.started {
            self.started = true;
            sink(StreamEvent::Start(ir::StreamStart {
                id: chunk.id.map(|s| s.0).unwrap_or_default(),
                model: chunk.model.map(|s| s.0).unwrap_or_default(),
                created: chunk.created,
                usage: ir::Usage::default(),
                origin: Some(Format::OpenAiChat),
            }));
        }
        for choice in chunk.choices {
            // Only the first choice: the other formats have one answer.
            if choice.index != 0 {
                continue;
            }
            if let Some(d) = choice.delta {
                if let Some(r) = d.reasoning_content.or(d.reasoning) {
                    self.text(r.0, true, sink);
                }
                for det in d.reasoning_details.iter().flatten() {
                    self.detail(det, sink);
                }
                if let Some(c) = d.content {
                    self.text(c.0, false, sink);
                }
                if let Some(r) = d.refusal.filter(|r| !r.0.is_empty()) {
                    self.refused = true;
                    self.text(r.0, false, sink);
                }
                for tc in d.tool_calls.unwrap_or_default() {
                    self.tool_delta(tc, sink);
                    if self.done {
                        return;
                    }
                }
            }
            if let Some(f) = choice.finish_reason {
                self.finish = Some(finish_from_openai(f.as_str(), choice.stop_reason.as_ref()));
            }
        }
        if let Some(u) = chunk.usage {
            let u = u.to_ir();
            self.usage.merge(&u);
            sink(StreamEvent::Usage(u));
        }
    }

    fn end(&mut self, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        // Some compatible servers end after the finish_reason without [DONE].
        if !self.done && self.started && self.finish.is_some() {
            self.complete(sink);
        }
    }
}

/// The text-only chunk's fixed middle: the top-level `choices` key up to
/// the content string's opening quote.
const TEXT_MID: &[u8] = br#""choices":[{"index":0,"delta":{"content":"#;

impl StreamDecode {
    /// A text-only chunk of this stream in OpenAI's compact form: the learned
    /// head, `TEXT_MID`, the content string, a `text_tail`. Building a
    /// `Chunk` for each was most of a converted stream's cost (figures in
    /// benches/README.md, "Tenth session"). The string is decoded by serde;
    /// everything else is the same bytes, or fixed members, as in a chunk
    /// serde read in full, so both paths agree; any other chunk is `None`.
    pub(super) fn plain_text<'a>(&self, data: &'a [u8]) -> Option<CowStr<'a>> {
        let head = self.text_head.as_deref()?;
        let token = text_tail(data)?
            .strip_prefix(head)?
            .strip_prefix(TEXT_MID)?;
        json::whole_string(token)
    }
}

/// The content of a chunk that carries nothing else (one choice, index 0,
/// only `content` in its delta; no finish, usage or error): the chunks whose
/// head `learn_head` may keep.
fn text_only<'c>(chunk: &'c Chunk<'_>) -> Option<&'c str> {
    let [c] = chunk.choices.as_slice() else {
        return None;
    };
    let d = c.delta.as_ref()?;
    let only_content = d.reasoning_content.is_none()
        && d.reasoning.is_none()
        && d.refusal.is_none()
        && d.tool_calls.is_none()
        && d.reasoning_details.is_none();
    let plain = c.index == 0 && c.finish_reason.is_none() && c.stop_reason.is_none();
    (only_content && plain && chunk.usage.is_none() && chunk.error.is_none())
        .then_some(d.content.as_ref()?.as_str())
}

/// The bytes before `TEXT_MID` of `data`, a text-only chunk whose content
/// serde decoded as `content`, when `data` has the compact form.
fn learn_head(data: &[u8], content: &str) -> Option<Vec<u8>> {
    let body = text_tail(data)?;
    let at = memchr::memmem::find(body, TEXT_MID)?;
    let token = &body[at + TEXT_MID.len()..];
    (json::whole_string(token)?.as_str() == content).then(|| body[..at].to_vec())
}

/// `data` without what follows a text-only chunk's content string: the
/// delta's `}`, an optional `"logprobs":null`, `"finish_reason":null}]`, and
/// the optional `"usage":null` (with `include_usage`) and `"obfuscation"`
/// padding (letters and digits) before the closing `}`. All fixed members
/// whose values a full decode ignores or reads as absent.
fn text_tail(data: &[u8]) -> Option<&[u8]> {
    let mut d = data.strip_suffix(b"}")?;
    if let Some(rest) = d.strip_suffix(b"\"") {
        let pad = rest
            .iter()
            .rev()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        d = rest[..rest.len() - pad].strip_suffix(br#","obfuscation":""#)?;
    }
    d = d.strip_suffix(br#","usage":null"#).unwrap_or(d);
    d = d.strip_suffix(br#","finish_reason":null}]"#)?;
    d = d.strip_suffix(br#","logprobs":null"#).unwrap_or(d);
    d.strip_suffix(b"}")
}

/// One slot of the client stream: what the open IR block is.
#[derive(Debug)]
pub(super) enum OutOpen {
    None,
    Text(usize),
    /// Thinking text is also kept for its `reasoning_details` entry, with
    /// the upstream's id of the block (Responses reasoning item) when known.
    Thinking(usize, String, Option<String>),
    /// `announced`: its first delta (id, name) went out. That delta waits for
    /// the call's first IR delta so a Gemini signature can ride on it: the
    /// OpenAI SDK's stream helper wants `function` on every tool-call delta.
    Tool {
        ir: usize,
        pos: usize,
        args: bool,
        announced: bool,
    },
    /// A block with no Chat Completions form; its events are dropped.
    Skip(usize),
}

/// IR events → Chat Completions chunks: role first, one id/created/model for
/// all chunks, `tool_calls[i]` with id/type/name on the first delta of each call
/// then `index` + argument fragments, a finish chunk, the usage chunk only when
/// the client asked (`include_usage`), then `data: [DONE]`.
pub struct StreamEncode {
    pub(super) client_model: String,
    pub(super) include_usage: bool,
    pub(super) created: u64,
    /// `{"id":…,"object":"chat.completion.chunk","created":…,"model":…,` shared by every chunk.
    pub(super) head: Vec<u8>,
    pub(super) started: bool,
    pub(super) done: bool,
    pub(super) origin: Option<Format>,
    pub(super) open: OutOpen,
    pub(super) tools: usize,
    pub(super) details: usize,
    /// Id and name of the open tool call until its first delta is written
    /// (buffers reused from call to call).
    pub(super) call_id: String,
    pub(super) call_name: String,
}

impl StreamEncode {
    pub fn new(opts: &ResponseOpts) -> Self {
        Self::with_created(opts, json::now_unix())
    }

    /// With a fixed `created` (used when the upstream gives none), for reproducible output.
    pub fn with_created(opts: &ResponseOpts, created: u64) -> Self {
        StreamEncode {
            client_model: opts.client_model.clone(),
            include_usage: opts.include_usage,
            created,
            head: Vec::new(),
            started: false,
            done: false,
            origin: None,
            open: OutOpen::None,
            tools: 0,
            details: 0,
            call_id: String::new(),
            call_name: String::new(),
        }
    }

    pub(super) fn start(&mut self, id: &str, model: &str, created: Option<u64>, out: &mut Vec<u8>) {
        self.started = true;
        let model = if self.client_model.is_empty() {
            model
        } else {
            &self.client_model
        };
        let id = if id.is_empty() { "chatcmpl-aigate" } else { id };
        let created = created.unwrap_or(self.created);
        self.head.clear();
        self.head.extend_from_slice(b"{\"id\":");
        let _ = serde_json::to_writer(&mut self.head, id);
        self.head
            .extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        self.head.extend_from_slice(created.to_string().as_bytes());
        self.head.extend_from_slice(b",\"model\":");
        let _ = serde_json::to_writer(&mut self.head, model);
        self.head.push(b',');
        self.chunk(
            out,
            &RoleDelta {
                role: "assistant",
                content: "",
            },
            None,
        );
    }

    /// `data: {head"choices":[{"index":0,"delta":<delta>,"logprobs":null,"finish_reason":<f>}]}`
    pub(super) fn chunk<T: Serialize>(&self, out: &mut Vec<u8>, delta: &T, finish: Option<&str>) {
        self.chunk_stop(out, delta, finish, None);
    }

    pub(super) fn chunk_stop<T: Serialize>(
        &self,
        out: &mut Vec<u8>,
        delta: &T,
        finish: Option<&str>,
        stop: Option<&str>,
    ) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&self.head);
        out.extend_from_slice(b"\"choices\":[{\"index\":0,\"delta\":");
        let _ = serde_json::to_writer(&mut *out, delta);
        out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
        match finish {
            Some(f) => {
                let _ = serde_json::to_writer(&mut *out, f);
            }
            None => out.extend_from_slice(b"null"),
        }
        if let Some(seq) = stop {
            out.extend_from_slice(b",\"stop_reason\":");
            let _ = serde_json::to_writer(&mut *out, seq);
        }
        out.extend_from_slice(b"}]}\n\n");
    }

    /// The first delta of tool call `pos`: id, type, name, and the call's
    /// signature when it has one.
    pub(super) fn announce(&self, pos: usize, sig: Option<&str>, out: &mut Vec<u8>) {
        let d = ToolDelta {
            tool_calls: [ToolDeltaItem {
                index: pos,
                id: Some(&self.call_id),
                kind: Some("function"),
                function: Some(ToolDeltaFunction {
                    name: Some(&self.call_name),
                    arguments: "",
                }),
                extra_content: extra_content(sig),
            }],
        };
        self.chunk(out, &d, None);
    }

    /// One IR delta of the open tool call.
    pub(super) fn tool_delta(&mut self, delta: &Delta<'_>, out: &mut Vec<u8>) {
        let OutOpen::Tool {
            pos,
            args,
            announced,
            ..
        } = &mut self.open
        else {
            return;
        };
        let (pos, was_announced) = (*pos, *announced);
        *announced = true;
        match delta {
            Delta::Signature(sig) if !sig.is_empty() => {
                if was_announced {
                    // Late signature: still with `function`, as the helper wants.
                    let mut d = ToolDelta::args(pos, "");
                    d.tool_calls[0].extra_content = extra_content(Some(sig));
                    self.chunk(out, &d, None);
                } else {
                    self.announce(pos, Some(sig), out);
                }
            }
            Delta::ToolArgs(a) => {
                if !a.is_empty() {
                    *args = true;
                }
                if !was_announced {
                    self.announce(pos, None, out);
                }
                if !a.is_empty() {
                    self.chunk(out, &ToolDelta::args(pos, a), None);
                }
            }
            _ => {
                if !was_announced {
                    self.announce(pos, None, out);
                }
            }
        }
    }

    pub(super) fn close(&mut self, out: &mut Vec<u8>) {
        match std::mem::replace(&mut self.open, OutOpen::None) {
            OutOpen::Tool {
                pos,
                args,
                announced,
                ..
            } => {
                if !announced {
                    self.announce(pos, None, out);
                }
                if !args {
                    // A call without arguments still needs valid JSON for the client.
                    self.chunk(out, &ToolDelta::args(pos, "{}"), None);
                }
            }
            // An unsigned block the upstream named: its id still goes to the
            // client (as from a whole answer), to be given back.
            OutOpen::Thinking(_, text, Some(id)) => {
                self.thinking_detail(&text, None, Some(&id), out)
            }
            OutOpen::Thinking(_, _, None) | OutOpen::Text(_) | OutOpen::Skip(_) | OutOpen::None => {
            }
        }
    }

    /// The `reasoning_details` entry of a thinking block.
    pub(super) fn thinking_detail(
        &mut self,
        text: &str,
        sig: Option<&str>,
        id: Option<&str>,
        out: &mut Vec<u8>,
    ) {
        let d = DetailsDelta {
            reasoning_details: [OutDetail {
                kind: "reasoning.text",
                text: Some(text),
                signature: sig,
                data: None,
                id,
                format: details_format(self.origin),
                index: self.details,
            }],
        };
        self.details += 1;
        self.chunk(out, &d, None);
    }

    pub(super) fn open_index(&self) -> Option<usize> {
        match &self.open {
            OutOpen::None => None,
            OutOpen::Text(i) | OutOpen::Thinking(i, _, _) | OutOpen::Skip(i) => Some(*i),
            OutOpen::Tool { ir, .. } => Some(*ir),
        }
    }
}

impl<'a> ToolDelta<'a> {
    pub(super) fn args(index: usize, arguments: &'a str) -> Self {
        ToolDelta {
            tool_calls: [ToolDeltaItem {
                index,
                id: None,
                kind: None,
                function: Some(ToolDeltaFunction {
                    name: None,
                    arguments,
                }),
                extra_content: None,
            }],
        }
    }
}

impl StreamEncoder for StreamEncode {
    fn event(&mut self, ev: &StreamEvent<'_>, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if !self.started
            && !matches!(
                ev,
                StreamEvent::Start(_)
                    | StreamEvent::Error(_)
                    | StreamEvent::Ping
                    | StreamEvent::Usage(_)
            )
        {
            self.start("", "", None, out);
        }
        match ev {
            StreamEvent::Start(s) => {
                if !self.started {
                    self.origin = s.origin;
                    self.start(&s.id, &s.model, s.created, out);
                }
            }
            StreamEvent::BlockStart { index, block } => {
                self.close(out);
                self.open = match block {
                    BlockStart::Text => OutOpen::Text(*index),
                    BlockStart::Thinking => OutOpen::Thinking(*index, String::new(), None),
                    BlockStart::ToolCall { id, name } => {
                        let pos = self.tools;
                        self.tools += 1;
                        self.call_id.clear();
                        self.call_id.push_str(id);
                        self.call_name.clear();
                        self.call_name.push_str(name);
                        OutOpen::Tool {
                            ir: *index,
                            pos,
                            args: false,
                            announced: false,
                        }
                    }
                    BlockStart::RedactedThinking { data } => {
                        let d = DetailsDelta {
                            reasoning_details: [OutDetail {
                                kind: "reasoning.encrypted",
                                text: None,
                                signature: None,
                                data: Some(data),
                                id: None,
                                format: details_format(self.origin),
                                index: self.details,
                            }],
                        };
                        self.details += 1;
                        self.chunk(out, &d, None);
                        OutOpen::Skip(*index)
                    }
                    BlockStart::Raw(_) => OutOpen::Skip(*index),
                };
            }
            StreamEvent::Delta { index, delta } => {
                if self.open_index() != Some(*index) {
                    return;
                }
                match (&mut self.open, delta) {
                    (OutOpen::Text(_), Delta::Text(s)) if !s.is_empty() => {
                        self.chunk(out, &ContentDelta { content: s }, None);
                    }
                    (OutOpen::Thinking(_, buf, _), Delta::Thinking(s)) if !s.is_empty() => {
                        buf.push_str(s);
                        self.chunk(
                            out,
                            &ReasoningDelta {
                                reasoning_content: s,
                            },
                            None,
                        );
                    }
                    (OutOpen::Thinking(_, buf, id), Delta::Signature(sig)) if !sig.is_empty() => {
                        let (text, id) = (std::mem::take(buf), id.take());
                        self.thinking_detail(&text, Some(sig), id.as_deref(), out);
                    }
                    (OutOpen::Thinking(_, _, id), Delta::ThinkingId(s)) => {
                        *id = Some(s.to_string());
                    }
                    (OutOpen::Tool { .. }, d) => self.tool_delta(d, out),
                    _ => {}
                }
            }
            StreamEvent::BlockStop { index } => {
                if self.open_index() == Some(*index) {
                    self.close(out);
                }
            }
            StreamEvent::Usage(_) => {}
            // OpenAI streams carry no keep-alives; some hand-written clients
            // choke on anything but `data:` lines.
            StreamEvent::Ping => {}
            StreamEvent::Finish { reason, usage } => {
                self.close(out);
                self.chunk_stop(
                    out,
                    &Empty {},
                    Some(finish_to_openai(reason)),
                    stop_sequence(Some(reason)),
                );
                if self.include_usage {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(&self.head);
                    out.extend_from_slice(b"\"choices\":[],\"usage\":");
                    let _ = serde_json::to_writer(&mut *out, &OutUsage::from(usage));
                    out.extend_from_slice(b"}\n\n");
                }
                sse::write_raw(out, None, b"[DONE]");
                self.done = true;
            }
            StreamEvent::Error(e) => {
                // The OpenAI SDKs raise on a chunk with an `error` key; no [DONE]
                // follows, so nothing mistakes this for a complete answer.
                let body = crate::translate::shared::openai_error_value(e.status, &e.message, None);
                sse::write_json(out, None, &body);
                self.done = true;
            }
        }
    }
}

/// The final `choices: []` chunk `stream_options.include_usage` adds.
pub fn is_usage_chunk(data: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Chunk<'a> {
        #[serde(borrow)]
        choices: Option<Vec<&'a serde_json::value::RawValue>>,
        #[serde(borrow)]
        usage: Option<&'a serde_json::value::RawValue>,
    }
    matches!(serde_json::from_slice::<Chunk>(data),
        Ok(Chunk { choices: Some(c), usage: Some(u) }) if c.is_empty() && u.get() != "null")
}

/// The fields whose string values are generated text (answer, reasoning,
/// tool arguments) in this format's stream events (`sniff::text_chars`).
/// `content":` also finds `"reasoning_content":`.
pub const TEXT_KEYS: &[&[u8]] = &[b"content\":", b"\"arguments\":", b"\"refusal\":"];

/// An error body ending a stream of this format: a data-only event (Chat streams name no events).
pub fn write_error_event(body: &[u8], out: &mut Vec<u8>) {
    sse::write_raw(out, None, body);
}
