//! Every recorded OpenAI Chat and Anthropic Messages case in `tests/corpus`
//! through the converters: requests, whole answers and streams, each checked
//! field by field against the recording, streams checked against each
//! format's event grammar by checkers written here (not the library's own
//! decoders), and every stream fed split at every byte.
//!
//! The corpus is part of the contract: if it is missing these tests fail.

use aigate::sse;
use aigate::translate::{
    Format, RequestOpts, ResponseOpts, StreamTranslator, TranslateError, convert_error,
    convert_request, convert_response, response_usage,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

// ------------------------------------------------------------------ corpus

struct Case {
    name: String,
    request: Value,
    json: Option<Vec<u8>>,
    sse: Option<Vec<u8>>,
    status: u16,
}

fn corpus_dir() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    assert!(
        p.join("openai-chat").is_dir() && p.join("anthropic-messages").is_dir(),
        "recorded corpus missing at {} — these tests need it",
        p.display()
    );
    p
}

fn cases(dir: &str) -> Vec<Case> {
    let root = corpus_dir().join(dir);
    let mut out = Vec::new();
    for e in std::fs::read_dir(&root).expect("corpus dir readable") {
        let p = e.expect("dir entry").path();
        if !p.is_dir() {
            continue;
        }
        let meta: Value =
            serde_json::from_slice(&std::fs::read(p.join("meta.json")).expect("meta.json"))
                .expect("meta json");
        out.push(Case {
            name: format!("{dir}/{}", p.file_name().unwrap().to_string_lossy()),
            request: serde_json::from_slice(
                &std::fs::read(p.join("request.json")).expect("request.json"),
            )
            .expect("request json"),
            json: std::fs::read(p.join("response.json")).ok(),
            sse: std::fs::read(p.join("response.sse")).ok(),
            status: meta["http_status"].as_u64().expect("http_status") as u16,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(
        out.len() >= 15,
        "expected the whole corpus under {}, found {}",
        root.display(),
        out.len()
    );
    out
}

fn opts(include_usage: bool) -> ResponseOpts {
    ResponseOpts {
        client_model: "client-model".into(),
        include_usage,
        gemini_sse: false,
        ..Default::default()
    }
}

fn translate(
    from: Format,
    to: Format,
    o: ResponseOpts,
    pieces: &[&[u8]],
) -> (Vec<u8>, aigate::ir::Usage) {
    let mut t = StreamTranslator::new_at(from, to, o, 1_700_000_000);
    let mut out = Vec::new();
    for p in pieces {
        t.feed(p, &mut out);
    }
    t.finish(&mut out);
    (out, t.usage())
}

fn events(bytes: &[u8]) -> Vec<(String, String)> {
    let mut p = sse::Parser::default();
    let mut got = Vec::new();
    let mut on = |e: sse::Event<'_>| {
        got.push((
            e.event.to_string(),
            String::from_utf8(e.data.to_vec()).expect("utf-8 data"),
        ))
    };
    p.feed(bytes, &mut on).expect("no overflow");
    p.finish(&mut on).expect("no overflow");
    got
}

fn parse(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn parse_args(s: &str) -> Value {
    if s.trim().is_empty() {
        json!({})
    } else {
        parse(s)
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

// ------------------------------------------------------------------ OpenAI stream: source accumulation + grammar

#[derive(Debug, Default, PartialEq)]
struct OaStream {
    id: String,
    model: String,
    content: String,
    reasoning: String,
    details: Vec<Value>,
    /// (id, name, arguments) by index.
    calls: Vec<(String, String, String)>,
    finish: Option<String>,
    usage: Option<Value>,
    error: Option<Value>,
    done: bool,
}

/// Accumulate an OpenAI stream the way the SDKs do (no grammar demands): for sources.
fn accumulate_openai(bytes: &[u8]) -> OaStream {
    let mut s = OaStream::default();
    for (_, data) in events(bytes) {
        if data == "[DONE]" {
            s.done = true;
            continue;
        }
        let v = parse(&data);
        if let Some(e) = v.get("error") {
            s.error = Some(e.clone());
            continue;
        }
        if s.id.is_empty() {
            s.id = v["id"].as_str().unwrap_or("").to_string();
            s.model = v["model"].as_str().unwrap_or("").to_string();
        }
        if let Some(us) = v.get("usage").filter(|u| u.is_object()) {
            s.usage = Some(us.clone());
        }
        for c in v["choices"].as_array().into_iter().flatten() {
            let d = &c["delta"];
            if let Some(t) = d["content"].as_str() {
                s.content.push_str(t);
            }
            if let Some(t) = d["reasoning_content"].as_str() {
                s.reasoning.push_str(t);
            }
            for det in d["reasoning_details"].as_array().into_iter().flatten() {
                s.details.push(det.clone());
            }
            for tc in d["tool_calls"].as_array().into_iter().flatten() {
                let i = tc["index"].as_u64().expect("tool_calls[].index") as usize;
                if s.calls.len() <= i {
                    s.calls.resize(i + 1, Default::default());
                }
                if let Some(id) = tc["id"].as_str() {
                    s.calls[i].0 = id.to_string();
                }
                if let Some(n) = tc["function"]["name"].as_str() {
                    s.calls[i].1.push_str(n);
                }
                if let Some(a) = tc["function"]["arguments"].as_str() {
                    s.calls[i].2.push_str(a);
                }
            }
            if let Some(f) = c["finish_reason"].as_str() {
                s.finish = Some(f.to_string());
            }
        }
    }
    s
}

/// Check a converted OpenAI stream against the Chat Completions grammar, then accumulate it.
fn check_openai_grammar(bytes: &[u8], include_usage: bool, case: &str) -> OaStream {
    let evs = events(bytes);
    assert!(!evs.is_empty(), "{case}: empty stream");
    let mut first: Option<(Value, Value, Value)> = None;
    let mut seen_finish = false;
    let mut seen_usage = false;
    let mut next_tool = 0usize;
    let mut current_tool: Option<usize> = None;
    for (n, (name, data)) in evs.iter().enumerate() {
        assert!(
            name.is_empty(),
            "{case}: OpenAI streams have no event names, got {name:?}"
        );
        let last = n + 1 == evs.len();
        if data == "[DONE]" {
            assert!(last, "{case}: [DONE] must be last");
            assert!(seen_finish, "{case}: [DONE] before a finish_reason");
            assert_eq!(
                seen_usage, include_usage,
                "{case}: usage chunk iff the client asked"
            );
            continue;
        }
        let v = parse(data);
        if v.get("error").is_some() {
            assert!(last, "{case}: an error chunk ends the stream");
            assert!(
                v["error"]["message"].is_string() && v["error"]["type"].is_string(),
                "{case}: {v}"
            );
            continue;
        }
        assert_eq!(v["object"], "chat.completion.chunk", "{case}");
        let key = (v["id"].clone(), v["created"].clone(), v["model"].clone());
        assert!(
            key.0.is_string() && key.1.is_u64() && key.2 == "client-model",
            "{case}: {v}"
        );
        match &first {
            None => {
                assert_eq!(
                    v["choices"][0]["delta"]["role"], "assistant",
                    "{case}: first chunk carries the role"
                );
                first = Some(key);
            }
            Some(k) => assert_eq!(k, &key, "{case}: every chunk shares id/created/model"),
        }
        let choices = v["choices"].as_array().expect("choices array");
        if choices.is_empty() {
            assert!(
                seen_finish && !seen_usage,
                "{case}: one usage chunk, after the finish chunk"
            );
            assert!(v["usage"]["prompt_tokens"].is_u64(), "{case}: {v}");
            seen_usage = true;
            continue;
        }
        assert!(!seen_finish, "{case}: no content after finish_reason");
        let c = &choices[0];
        if c["finish_reason"].is_string() {
            seen_finish = true;
            assert_eq!(
                c["delta"],
                json!({}),
                "{case}: the finish chunk carries no delta"
            );
        }
        for tc in c["delta"]["tool_calls"].as_array().into_iter().flatten() {
            let i = tc["index"].as_u64().expect("index") as usize;
            if tc.get("id").is_some() {
                assert_eq!(i, next_tool, "{case}: tool calls open in index order");
                assert_eq!(tc["type"], "function", "{case}: {tc}");
                assert!(
                    tc["function"]["name"]
                        .as_str()
                        .is_some_and(|n| !n.is_empty()),
                    "{case}: {tc}"
                );
                assert_eq!(
                    tc["function"]["arguments"], "",
                    "{case}: first delta has empty arguments"
                );
                next_tool += 1;
                current_tool = Some(i);
            } else {
                assert_eq!(
                    Some(i),
                    current_tool,
                    "{case}: argument deltas go to the open call"
                );
                let keys: Vec<&String> = tc.as_object().unwrap().keys().collect();
                assert_eq!(
                    keys,
                    ["function", "index"],
                    "{case}: continuation carries only index+arguments: {tc}"
                );
                assert!(tc["function"].get("name").is_none(), "{case}: {tc}");
                assert!(tc["function"]["arguments"].is_string(), "{case}: {tc}");
            }
        }
    }
    accumulate_openai(bytes)
}

// ------------------------------------------------------------------ Anthropic stream: source accumulation + grammar

#[derive(Debug, Default, Clone, PartialEq)]
struct AnBlock {
    kind: String,
    text: String,
    thinking: String,
    signature: Option<String>,
    data: String,
    id: String,
    name: String,
    json: String,
}

#[derive(Debug, Default)]
struct AnStream {
    id: String,
    start_usage: Value,
    blocks: Vec<AnBlock>,
    stop_reason: Option<String>,
    stop_sequence: Value,
    delta_usage: Value,
    error: Option<Value>,
    stopped: bool,
}

fn accumulate_anthropic(bytes: &[u8]) -> AnStream {
    let mut s = AnStream::default();
    for (_, data) in events(bytes) {
        let v = parse(&data);
        match v["type"].as_str().unwrap_or("") {
            "message_start" => {
                s.id = v["message"]["id"].as_str().unwrap_or("").to_string();
                s.start_usage = v["message"]["usage"].clone();
            }
            "content_block_start" => {
                let b = &v["content_block"];
                s.blocks.push(AnBlock {
                    kind: b["type"].as_str().unwrap_or("").to_string(),
                    text: b["text"].as_str().unwrap_or("").to_string(),
                    thinking: b["thinking"].as_str().unwrap_or("").to_string(),
                    signature: b["signature"]
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                    data: b["data"].as_str().unwrap_or("").to_string(),
                    id: b["id"].as_str().unwrap_or("").to_string(),
                    name: b["name"].as_str().unwrap_or("").to_string(),
                    json: String::new(),
                });
            }
            "content_block_delta" => {
                let b = s.blocks.last_mut().expect("delta inside a block");
                let d = &v["delta"];
                match d["type"].as_str().unwrap_or("") {
                    "text_delta" => b.text.push_str(d["text"].as_str().unwrap()),
                    "thinking_delta" => b.thinking.push_str(d["thinking"].as_str().unwrap()),
                    "signature_delta" => {
                        b.signature = Some(d["signature"].as_str().unwrap().to_string())
                    }
                    "input_json_delta" => b.json.push_str(d["partial_json"].as_str().unwrap()),
                    _ => {}
                }
            }
            "message_delta" => {
                s.stop_reason = v["delta"]["stop_reason"].as_str().map(str::to_string);
                s.stop_sequence = v["delta"]["stop_sequence"].clone();
                s.delta_usage = v["usage"].clone();
            }
            "message_stop" => s.stopped = true,
            "error" => s.error = Some(v["error"].clone()),
            _ => {}
        }
    }
    s
}

/// Check a converted Anthropic stream against the strict grammar Claude Code
/// relies on, then accumulate it.
fn check_anthropic_grammar(bytes: &[u8], case: &str) -> AnStream {
    let evs = events(bytes);
    assert!(evs.len() >= 2, "{case}: too short");
    let mut open: Option<(u64, String, bool)> = None;
    let mut next = 0u64;
    let mut deltas = 0;
    let mut stops = 0;
    for (n, (name, data)) in evs.iter().enumerate() {
        let v = parse(data);
        let kind = v["type"].as_str().expect("type").to_string();
        assert_eq!(name, &kind, "{case}: event name matches data.type");
        let last = n + 1 == evs.len();
        match (n, kind.as_str()) {
            (0, "message_start") => {
                let m = &v["message"];
                assert_eq!(m["role"], "assistant", "{case}");
                assert_eq!(m["content"], json!([]), "{case}");
                assert_eq!(m["model"], "client-model", "{case}");
                assert!(m["usage"]["input_tokens"].is_u64(), "{case}: {m}");
            }
            (0, "error") => assert!(last, "{case}"),
            (0, other) => panic!("{case}: first event must be message_start, got {other}"),
            (1, "ping") => {}
            (1, other) => panic!("{case}: ping must follow message_start, got {other}"),
            (_, "ping") => {}
            (_, "content_block_start") => {
                assert!(open.is_none(), "{case}: block opened while another is open");
                assert_eq!(deltas, 0, "{case}: content after message_delta");
                assert_eq!(v["index"], next, "{case}: indices increase by one");
                let b = &v["content_block"];
                let bk = b["type"].as_str().unwrap().to_string();
                match bk.as_str() {
                    "text" => assert_eq!(b["text"], "", "{case}"),
                    "thinking" => assert_eq!(
                        (&b["thinking"], &b["signature"]),
                        (&json!(""), &json!("")),
                        "{case}"
                    ),
                    "tool_use" => {
                        assert!(
                            b["id"].as_str().is_some_and(|s| !s.is_empty()),
                            "{case}: {b}"
                        );
                        assert!(
                            b["name"].as_str().is_some_and(|s| !s.is_empty()),
                            "{case}: {b}"
                        );
                        assert_eq!(b["input"], json!({}), "{case}");
                    }
                    "redacted_thinking" => assert!(b["data"].is_string(), "{case}"),
                    other => panic!("{case}: unexpected block type {other}"),
                }
                open = Some((next, bk, false));
                next += 1;
            }
            (_, "content_block_delta") => {
                let (i, bk, signed) = open
                    .as_mut()
                    .unwrap_or_else(|| panic!("{case}: delta outside a block"));
                assert_eq!(v["index"], *i, "{case}: delta for the open block");
                let dk = v["delta"]["type"].as_str().unwrap();
                let ok = match (bk.as_str(), dk) {
                    ("text", "text_delta") | ("tool_use", "input_json_delta") => true,
                    ("thinking", "thinking_delta") => !*signed,
                    ("thinking", "signature_delta") => {
                        *signed = true;
                        true
                    }
                    _ => false,
                };
                assert!(ok, "{case}: {dk} in a {bk} block (after its signature?)");
            }
            (_, "content_block_stop") => {
                let (i, bk, signed) = open
                    .take()
                    .unwrap_or_else(|| panic!("{case}: stop outside a block"));
                assert_eq!(v["index"], i, "{case}");
                if bk == "thinking" {
                    assert!(
                        signed,
                        "{case}: a thinking block ends with a signature_delta"
                    );
                }
            }
            (_, "message_delta") => {
                assert!(open.is_none(), "{case}: message_delta with a block open");
                deltas += 1;
                assert_eq!(deltas, 1, "{case}: exactly one message_delta");
                assert!(v["delta"]["stop_reason"].is_string(), "{case}: {v}");
                assert!(v["usage"]["output_tokens"].is_u64(), "{case}: {v}");
            }
            (_, "message_stop") => {
                assert_eq!(deltas, 1, "{case}: message_stop after one message_delta");
                assert!(last, "{case}: message_stop is last");
                stops += 1;
            }
            (_, "error") => {
                assert!(last, "{case}: error is last");
                assert_eq!(
                    v["error"]["type"].as_str().map(|t| t.ends_with("error")),
                    Some(true),
                    "{case}: {v}"
                );
            }
            (_, other) => panic!("{case}: unexpected event {other}"),
        }
    }
    let s = accumulate_anthropic(bytes);
    assert!(
        stops == 1 || s.error.is_some(),
        "{case}: ends with message_stop or error"
    );
    s
}

// ------------------------------------------------------------------ mappings under test

fn oa_to_an_stop(f: &str) -> &'static str {
    match f {
        "stop" => "end_turn",
        "length" => "max_tokens",
        "tool_calls" => "tool_use",
        "content_filter" => "refusal",
        other => panic!("no corpus case has finish_reason {other}"),
    }
}

fn an_to_oa_finish(r: &str) -> &'static str {
    match r {
        "end_turn" | "stop_sequence" => "stop",
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        other => panic!("no corpus case has stop_reason {other}"),
    }
}

// ------------------------------------------------------------------ streams

#[test]
fn openai_streams_convert_to_anthropic() {
    let mut n = 0;
    for c in cases("openai-chat") {
        let Some(src) = &c.sse else { continue };
        n += 1;
        let (out, usage) = translate(Format::OpenAiChat, Format::Anthropic, opts(false), &[src]);
        let got = check_anthropic_grammar(&out, &c.name);
        let want = accumulate_openai(src);
        assert!(want.done, "{}: source is complete", c.name);
        let text: String = got
            .blocks
            .iter()
            .filter(|b| b.kind == "text")
            .map(|b| b.text.as_str())
            .collect();
        assert_eq!(text, want.content, "{}: text", c.name);
        let tools: Vec<(String, String, Value)> = got
            .blocks
            .iter()
            .filter(|b| b.kind == "tool_use")
            .map(|b| (b.id.clone(), b.name.clone(), parse_args(&b.json)))
            .collect();
        let want_tools: Vec<(String, String, Value)> = want
            .calls
            .iter()
            .map(|(i, n, a)| (i.clone(), n.clone(), parse_args(a)))
            .collect();
        assert_eq!(
            tools, want_tools,
            "{}: tool calls (ids, names, args)",
            c.name
        );
        assert_eq!(got.id, want.id, "{}: id kept", c.name);
        assert_eq!(
            got.stop_reason.as_deref(),
            Some(oa_to_an_stop(want.finish.as_deref().unwrap())),
            "{}: stop reason",
            c.name
        );
        let wu = want.usage.clone().unwrap_or(json!({}));
        let cached = u(&wu["prompt_tokens_details"]["cached_tokens"]);
        let du = &got.delta_usage;
        assert_eq!(
            u(&du["input_tokens"])
                + u(&du["cache_read_input_tokens"])
                + u(&du["cache_creation_input_tokens"]),
            u(&wu["prompt_tokens"]),
            "{}: prompt_tokens = input + cache read + cache creation",
            c.name
        );
        assert_eq!(u(&du["cache_read_input_tokens"]), cached, "{}", c.name);
        assert_eq!(
            u(&du["output_tokens"]),
            u(&wu["completion_tokens"]),
            "{}",
            c.name
        );
        assert_eq!(
            u(&du["output_tokens_details"]["thinking_tokens"]),
            u(&wu["completion_tokens_details"]["reasoning_tokens"]),
            "{}: reasoning_tokens become thinking_tokens",
            c.name
        );
        assert_eq!(
            usage.input,
            u(&wu["prompt_tokens"]),
            "{}: metered input",
            c.name
        );
        assert_eq!(
            usage.output,
            u(&wu["completion_tokens"]),
            "{}: metered output",
            c.name
        );
        assert_eq!(
            usage.reasoning,
            u(&wu["completion_tokens_details"]["reasoning_tokens"]),
            "{}: metered reasoning",
            c.name
        );
    }
    assert_eq!(n, 5, "all OpenAI corpus streams seen");
}

#[test]
fn anthropic_streams_convert_to_openai() {
    let mut n = 0;
    for c in cases("anthropic-messages") {
        let Some(src) = &c.sse else { continue };
        n += 1;
        let want = accumulate_anthropic(src);
        assert!(want.stopped, "{}: source is complete", c.name);
        for include_usage in [false, true] {
            let (out, usage) = translate(
                Format::Anthropic,
                Format::OpenAiChat,
                opts(include_usage),
                &[src],
            );
            let got = check_openai_grammar(&out, include_usage, &c.name);
            let text: String = want
                .blocks
                .iter()
                .filter(|b| b.kind == "text")
                .map(|b| b.text.as_str())
                .collect();
            assert_eq!(got.content, text, "{}: text", c.name);
            let thinking: String = want
                .blocks
                .iter()
                .filter(|b| b.kind == "thinking")
                .map(|b| b.thinking.as_str())
                .collect();
            assert_eq!(got.reasoning, thinking, "{}: reasoning_content", c.name);
            // Signed thinking and redacted blocks travel in reasoning_details.
            let want_details: Vec<Value> = want
                .blocks
                .iter()
                .filter_map(|b| match b.kind.as_str() {
                    "thinking" => Some(json!({"type": "reasoning.text", "text": b.thinking, "signature": b.signature})),
                    "redacted_thinking" => Some(json!({"type": "reasoning.encrypted", "data": b.data})),
                    _ => None,
                })
                .collect();
            let got_details: Vec<Value> = got
                .details
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    assert_eq!(d["index"], i, "{}: details index", c.name);
                    assert_eq!(d["format"], "anthropic-claude-v1", "{}", c.name);
                    let mut d = d.clone();
                    d.as_object_mut()
                        .unwrap()
                        .retain(|k, _| k != "index" && k != "format");
                    d
                })
                .collect();
            assert_eq!(got_details, want_details, "{}: reasoning_details", c.name);
            // Only client tool_use blocks become tool calls (server tools run upstream).
            let want_calls: Vec<(String, String, Value)> = want
                .blocks
                .iter()
                .filter(|b| b.kind == "tool_use")
                .map(|b| (b.id.clone(), b.name.clone(), parse_args(&b.json)))
                .collect();
            let got_calls: Vec<(String, String, Value)> = got
                .calls
                .iter()
                .map(|(i, n, a)| (i.clone(), n.clone(), parse(a)))
                .collect();
            assert_eq!(got_calls, want_calls, "{}: tool calls", c.name);
            assert_eq!(got.id, want.id, "{}: id kept", c.name);
            assert_eq!(
                got.finish.as_deref(),
                Some(an_to_oa_finish(want.stop_reason.as_deref().unwrap())),
                "{}",
                c.name
            );
            // message_start carries input, message_delta output (newer API repeats input there).
            let input_src = if want.delta_usage.get("input_tokens").is_some() {
                &want.delta_usage
            } else {
                &want.start_usage
            };
            let prompt = u(&input_src["input_tokens"])
                + u(&input_src["cache_read_input_tokens"])
                + u(&input_src["cache_creation_input_tokens"]);
            let output = u(&want.delta_usage["output_tokens"]);
            let thinking_tokens = u(&want.delta_usage["output_tokens_details"]["thinking_tokens"]);
            if include_usage {
                let gu = got.usage.as_ref().expect("usage chunk");
                assert_eq!(
                    u(&gu["prompt_tokens"]),
                    prompt,
                    "{}: prompt arithmetic",
                    c.name
                );
                assert_eq!(
                    u(&gu["prompt_tokens_details"]["cached_tokens"]),
                    u(&input_src["cache_read_input_tokens"]),
                    "{}",
                    c.name
                );
                assert_eq!(u(&gu["completion_tokens"]), output, "{}", c.name);
                assert_eq!(u(&gu["total_tokens"]), prompt + output, "{}", c.name);
                assert_eq!(
                    u(&gu["completion_tokens_details"]["reasoning_tokens"]),
                    thinking_tokens,
                    "{}",
                    c.name
                );
            } else {
                assert!(
                    got.usage.is_none(),
                    "{}: no usage chunk unless asked",
                    c.name
                );
            }
            assert_eq!(
                (usage.input, usage.output, usage.reasoning),
                (prompt, output, thinking_tokens),
                "{}",
                c.name
            );
            assert_eq!(
                usage.cache_read,
                u(&input_src["cache_read_input_tokens"]),
                "{}",
                c.name
            );
        }
    }
    assert_eq!(n, 9, "all Anthropic corpus streams seen");
}

/// Deterministic xorshift: random piece sizes without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn streams_split_at_every_byte_give_identical_output() {
    let mut checked = 0;
    for (dir, from, to) in [
        ("openai-chat", Format::OpenAiChat, Format::Anthropic),
        ("anthropic-messages", Format::Anthropic, Format::OpenAiChat),
    ] {
        for c in cases(dir) {
            let Some(src) = &c.sse else { continue };
            let (whole, whole_usage) = translate(from, to, opts(true), &[src]);
            assert!(whole.len() > 100, "{}: produced output", c.name);
            for i in 0..=src.len() {
                let (split, usage) = translate(from, to, opts(true), &[&src[..i], &src[i..]]);
                assert!(
                    split == whole,
                    "{}: output differs when cut at byte {i}",
                    c.name
                );
                assert_eq!(
                    usage, whole_usage,
                    "{}: usage differs when cut at byte {i}",
                    c.name
                );
            }
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ src.len() as u64);
            for round in 0..20 {
                let mut pieces = Vec::new();
                let mut at = 0;
                while at < src.len() {
                    let len = 1 + (rng.next() % if round % 2 == 0 { 7 } else { 64 }) as usize;
                    let end = (at + len).min(src.len());
                    pieces.push(&src[at..end]);
                    at = end;
                }
                let (split, _) = translate(from, to, opts(true), &pieces);
                assert!(
                    split == whole,
                    "{}: output differs in random pieces (round {round})",
                    c.name
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 14, "5 OpenAI + 9 Anthropic corpus streams");
}

#[test]
fn converted_output_is_emitted_as_soon_as_upstream_events_complete() {
    // Streaming, not buffering: after each complete upstream event the client
    // has already received everything that event allows.
    for (dir, from, to) in [
        ("openai-chat", Format::OpenAiChat, Format::Anthropic),
        ("anthropic-messages", Format::Anthropic, Format::OpenAiChat),
    ] {
        for c in cases(dir) {
            let Some(src) = &c.sse else { continue };
            let mut t = StreamTranslator::new_at(from, to, opts(true), 1);
            let mut out = Vec::new();
            let mut grew_mid_stream = 0;
            let text = String::from_utf8(src.clone()).unwrap();
            let total = text.split_inclusive("\n\n").count();
            for (k, ev) in text.split_inclusive("\n\n").enumerate() {
                let before = out.len();
                t.feed(ev.as_bytes(), &mut out);
                if out.len() > before && k + 1 < total {
                    grew_mid_stream += 1;
                }
            }
            assert!(
                grew_mid_stream >= 1,
                "{}: output must flow while the upstream streams",
                c.name
            );
            assert!(!out.is_empty() && events(&out).len() >= 2, "{}", c.name);
            assert!(!t.is_finished() || out.ends_with(b"\n\n"), "{}", c.name);
        }
    }
}

#[test]
fn truncated_or_failed_streams_end_with_an_error_event_never_a_clean_end() {
    for (dir, from, to) in [
        ("openai-chat", Format::OpenAiChat, Format::Anthropic),
        ("anthropic-messages", Format::Anthropic, Format::OpenAiChat),
    ] {
        for c in cases(dir) {
            let Some(src) = &c.sse else { continue };
            // Cut before the terminal event: finish() must not look complete.
            let cut = src.len() * 2 / 3;
            let (out, _) = translate(from, to, opts(true), &[&src[..cut]]);
            let text = String::from_utf8_lossy(&out);
            match to {
                Format::Anthropic => {
                    let s = check_anthropic_grammar(&out, &c.name);
                    assert!(
                        !s.stopped,
                        "{}: no message_stop after a truncated upstream",
                        c.name
                    );
                    assert!(s.error.is_some(), "{}: error event: {text}", c.name);
                }
                _ => {
                    let s = check_openai_grammar(&out, true, &c.name);
                    assert!(!s.done, "{}: no [DONE] after a truncated upstream", c.name);
                    assert!(s.error.is_some(), "{}: error chunk: {text}", c.name);
                }
            }
            // fail() mid-stream: same, with the given message; later calls add nothing.
            let mut t = StreamTranslator::new_at(from, to, opts(true), 1);
            let mut out = Vec::new();
            t.feed(&src[..src.len() / 2], &mut out);
            t.fail("upstream connection reset", &mut out);
            let len = out.len();
            t.feed(&src[src.len() / 2..], &mut out);
            t.finish(&mut out);
            t.fail("again", &mut out);
            assert_eq!(out.len(), len, "{}: nothing after the error event", c.name);
            let last = events(&out).pop().expect("an event");
            let v = parse(&last.1);
            assert_eq!(
                v["error"]["message"], "upstream connection reset",
                "{}",
                c.name
            );
            if to == Format::Anthropic {
                assert_eq!(
                    (last.0.as_str(), &v["type"]),
                    ("error", &json!("error")),
                    "{}",
                    c.name
                );
            }
        }
    }
}

// ------------------------------------------------------------------ whole answers

#[test]
fn openai_answers_convert_to_anthropic() {
    let mut n = 0;
    for c in cases("openai-chat") {
        let Some(body) = &c.json else { continue };
        let src: Value = serde_json::from_slice(body).unwrap();
        if c.status != 200 {
            // Error bodies go through convert_error with the upstream status.
            let out: Value = serde_json::from_slice(&convert_error(
                Format::OpenAiChat,
                Format::Anthropic,
                c.status,
                body,
            ))
            .unwrap();
            assert_eq!(out["type"], "error", "{}", c.name);
            assert_eq!(
                out["error"]["message"], src["error"]["message"],
                "{}",
                c.name
            );
            assert!(
                out["error"]["type"].as_str().unwrap().ends_with("error"),
                "{}",
                c.name
            );
            continue;
        }
        n += 1;
        let out: Value = serde_json::from_slice(
            &convert_response(Format::OpenAiChat, Format::Anthropic, body, &opts(false)).unwrap(),
        )
        .unwrap();
        let msg = &src["choices"][0]["message"];
        assert_eq!(out["type"], "message", "{}", c.name);
        assert_eq!(out["role"], "assistant", "{}", c.name);
        assert_eq!(out["model"], "client-model", "{}", c.name);
        assert_eq!(out["id"], src["id"], "{}", c.name);
        let blocks = out["content"].as_array().unwrap();
        let text: String = blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .map(|b| b["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            text,
            msg["content"].as_str().unwrap_or(""),
            "{}: text",
            c.name
        );
        assert!(
            blocks
                .iter()
                .all(|b| b["type"] != "text" || b["text"] != ""),
            "{}: no empty text blocks",
            c.name
        );
        let calls: Vec<(Value, Value, Value)> = blocks
            .iter()
            .filter(|b| b["type"] == "tool_use")
            .map(|b| (b["id"].clone(), b["name"].clone(), b["input"].clone()))
            .collect();
        let want: Vec<(Value, Value, Value)> = msg["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                (
                    t["id"].clone(),
                    t["function"]["name"].clone(),
                    parse(t["function"]["arguments"].as_str().unwrap()),
                )
            })
            .collect();
        assert_eq!(calls, want, "{}: tool calls", c.name);
        assert_eq!(
            out["stop_reason"],
            oa_to_an_stop(src["choices"][0]["finish_reason"].as_str().unwrap()),
            "{}",
            c.name
        );
        let su = &src["usage"];
        let cached = u(&su["prompt_tokens_details"]["cached_tokens"]);
        assert_eq!(
            u(&out["usage"]["input_tokens"]),
            u(&su["prompt_tokens"]) - cached,
            "{}",
            c.name
        );
        assert_eq!(
            u(&out["usage"]["cache_read_input_tokens"]),
            cached,
            "{}",
            c.name
        );
        assert_eq!(
            u(&out["usage"]["output_tokens"]),
            u(&su["completion_tokens"]),
            "{}",
            c.name
        );
        assert_eq!(
            u(&out["usage"]["output_tokens_details"]["thinking_tokens"]),
            u(&su["completion_tokens_details"]["reasoning_tokens"]),
            "{}: reasoning_tokens become thinking_tokens",
            c.name
        );
        let mu = response_usage(Format::OpenAiChat, body).expect("usage");
        assert_eq!(
            (mu.input, mu.output, mu.cache_read, mu.reasoning),
            (
                u(&su["prompt_tokens"]),
                u(&su["completion_tokens"]),
                cached,
                u(&su["completion_tokens_details"]["reasoning_tokens"])
            ),
            "{}",
            c.name
        );
        // Round trip back to OpenAI keeps what the client sees.
        let back: Value = serde_json::from_slice(
            &convert_response(
                Format::Anthropic,
                Format::OpenAiChat,
                &serde_json::to_vec(&out).unwrap(),
                &opts(false),
            )
            .unwrap(),
        )
        .unwrap();
        let bm = &back["choices"][0]["message"];
        assert_eq!(
            bm["content"].as_str().unwrap_or(""),
            msg["content"].as_str().unwrap_or(""),
            "{}",
            c.name
        );
        assert_eq!(
            back["choices"][0]["finish_reason"], src["choices"][0]["finish_reason"],
            "{}: finish reason round trip",
            c.name
        );
        assert_eq!(
            back["usage"]["prompt_tokens"], su["prompt_tokens"],
            "{}",
            c.name
        );
        assert_eq!(
            back["usage"]["completion_tokens"], su["completion_tokens"],
            "{}",
            c.name
        );
        for (a, b) in bm["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(msg["tool_calls"].as_array().into_iter().flatten())
        {
            assert_eq!(a["id"], b["id"], "{}", c.name);
            assert_eq!(
                parse(a["function"]["arguments"].as_str().unwrap()),
                parse(b["function"]["arguments"].as_str().unwrap())
            );
        }
    }
    assert_eq!(n, 9, "all OpenAI corpus answers seen");
}

#[test]
fn anthropic_answers_convert_to_openai() {
    let mut n = 0;
    for c in cases("anthropic-messages") {
        let Some(body) = &c.json else { continue };
        let src: Value = serde_json::from_slice(body).unwrap();
        if c.status != 200 {
            let out: Value = serde_json::from_slice(&convert_error(
                Format::Anthropic,
                Format::OpenAiChat,
                c.status,
                body,
            ))
            .unwrap();
            assert_eq!(
                out["error"]["message"], src["error"]["message"],
                "{}",
                c.name
            );
            assert_eq!(
                out["error"]["type"], src["error"]["type"],
                "{}: same error kind",
                c.name
            );
            continue;
        }
        n += 1;
        let out: Value = serde_json::from_slice(
            &convert_response(Format::Anthropic, Format::OpenAiChat, body, &opts(false)).unwrap(),
        )
        .unwrap();
        assert_eq!(out["object"], "chat.completion", "{}", c.name);
        assert_eq!(out["model"], "client-model", "{}", c.name);
        assert!(out["created"].is_u64(), "{}", c.name);
        let blocks = src["content"].as_array().unwrap();
        let msg = &out["choices"][0]["message"];
        assert_eq!(msg["role"], "assistant", "{}", c.name);
        let text: String = blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .map(|b| b["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            msg["content"].as_str().unwrap_or(""),
            text,
            "{}: text",
            c.name
        );
        let thinking: String = blocks
            .iter()
            .filter(|b| b["type"] == "thinking")
            .map(|b| b["thinking"].as_str().unwrap())
            .collect();
        assert_eq!(
            msg["reasoning_content"].as_str().unwrap_or(""),
            thinking,
            "{}",
            c.name
        );
        let want_details: Vec<Value> = blocks
            .iter()
            .filter_map(|b| match b["type"].as_str() {
                Some("thinking") => Some((b["signature"].clone(), Value::Null)),
                Some("redacted_thinking") => Some((Value::Null, b["data"].clone())),
                _ => None,
            })
            .map(|(s, d)| json!([s, d]))
            .collect();
        let got_details: Vec<Value> = msg["reasoning_details"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| json!([d["signature"], d["data"]]))
            .collect();
        assert_eq!(
            got_details, want_details,
            "{}: signatures and redacted data kept",
            c.name
        );
        let want_calls: Vec<(Value, Value, Value)> = blocks
            .iter()
            .filter(|b| b["type"] == "tool_use")
            .map(|b| (b["id"].clone(), b["name"].clone(), b["input"].clone()))
            .collect();
        let got_calls: Vec<(Value, Value, Value)> = msg["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                assert_eq!(t["type"], "function");
                (
                    t["id"].clone(),
                    t["function"]["name"].clone(),
                    parse(t["function"]["arguments"].as_str().unwrap()),
                )
            })
            .collect();
        assert_eq!(got_calls, want_calls, "{}: tool calls", c.name);
        assert_eq!(
            out["choices"][0]["finish_reason"],
            an_to_oa_finish(src["stop_reason"].as_str().unwrap()),
            "{}",
            c.name
        );
        let su = &src["usage"];
        let prompt = u(&su["input_tokens"])
            + u(&su["cache_read_input_tokens"])
            + u(&su["cache_creation_input_tokens"]);
        assert_eq!(
            u(&out["usage"]["prompt_tokens"]),
            prompt,
            "{}: prompt arithmetic",
            c.name
        );
        assert_eq!(
            u(&out["usage"]["prompt_tokens_details"]["cached_tokens"]),
            u(&su["cache_read_input_tokens"]),
            "{}",
            c.name
        );
        assert_eq!(
            u(&out["usage"]["completion_tokens"]),
            u(&su["output_tokens"]),
            "{}",
            c.name
        );
        assert_eq!(
            u(&out["usage"]["total_tokens"]),
            prompt + u(&su["output_tokens"]),
            "{}",
            c.name
        );
        // Round trip: Anthropic → OpenAI → Anthropic keeps blocks, signatures, redactions, stop.
        let back: Value = serde_json::from_slice(
            &convert_response(
                Format::OpenAiChat,
                Format::Anthropic,
                &serde_json::to_vec(&out).unwrap(),
                &opts(false),
            )
            .unwrap(),
        )
        .unwrap();
        let strip = |bs: &Value| -> Vec<Value> {
            bs.as_array()
                .unwrap()
                .iter()
                .map(|b| {
                    let mut b = b.clone();
                    b.as_object_mut().unwrap().retain(|k, _| k != "citations");
                    b
                })
                .collect()
        };
        assert_eq!(
            strip(&back["content"]),
            strip(&src["content"]),
            "{}: content round trip",
            c.name
        );
        assert_eq!(back["stop_reason"], src["stop_reason"], "{}", c.name);
        if src["stop_reason"] != "stop_sequence" {
            assert_eq!(back["stop_sequence"], src["stop_sequence"], "{}", c.name);
        }
        assert_eq!(
            u(&back["usage"]["input_tokens"]),
            u(&su["input_tokens"]) + u(&su["cache_creation_input_tokens"]),
            "{}",
            c.name
        );
    }
    assert_eq!(n, 10, "all Anthropic corpus answers seen");
}

#[test]
fn anthropic_stop_sequence_is_kept_for_anthropic_clients() {
    let c = cases("anthropic-messages")
        .into_iter()
        .find(|c| c.name.ends_with("/stop-sequence"))
        .expect("case");
    let body = c.json.unwrap();
    let out: Value = serde_json::from_slice(
        &convert_response(Format::Anthropic, Format::Anthropic, &body, &opts(false)).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (out["stop_reason"].as_str(), out["stop_sequence"].as_str()),
        (Some("stop_sequence"), Some("Paris"))
    );
    let s = cases("anthropic-messages")
        .into_iter()
        .find(|c| c.name.ends_with("/stream-stop-sequence-prefill"))
        .unwrap();
    let (out, _) = translate(
        Format::Anthropic,
        Format::Anthropic,
        opts(false),
        &[&s.sse.unwrap()],
    );
    let got = check_anthropic_grammar(&out, &s.name);
    assert_eq!(
        (got.stop_reason.as_deref(), got.stop_sequence.as_str()),
        (Some("stop_sequence"), Some("```"))
    );
}

// ------------------------------------------------------------------ requests

fn req_opts(stream: bool) -> RequestOpts {
    RequestOpts {
        model: "upstream-model".into(),
        stream,
    }
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        // Text-only content goes to OpenAI-format upstreams as one string,
        // blocks joined with a blank line.
        Value::Array(a) => a
            .iter()
            .filter(|b| b["type"] == "text")
            .map(|b| b["text"].as_str().unwrap())
            .collect::<Vec<_>>()
            .join("\n\n"),
        _ => String::new(),
    }
}

#[test]
fn openai_requests_convert_to_anthropic() {
    for c in cases("openai-chat") {
        let src = &c.request;
        let stream = src["stream"] == true;
        let res = convert_request(
            Format::OpenAiChat,
            Format::Anthropic,
            src,
            &req_opts(stream),
        );
        if c.name.ends_with("/error-400-unsupported-parameter") {
            let e = res.expect_err("user content null");
            assert_eq!(
                (e.status, e.param.as_deref()),
                (400, Some("messages[0].content")),
                "{}",
                e.message
            );
            continue;
        }
        if src["n"].as_u64().is_some_and(|n| n > 1) {
            let e: TranslateError = res.expect_err("n>1 is inexpressible");
            assert_eq!(
                (e.status, e.param.as_deref()),
                (400, Some("n")),
                "{}",
                c.name
            );
            continue;
        }
        let out: Value =
            serde_json::from_slice(&res.unwrap_or_else(|e| panic!("{}: {e:?}", c.name)).body)
                .unwrap();
        assert_eq!(out["model"], "upstream-model");
        assert_eq!(
            out["stream"].as_bool().unwrap_or(false),
            stream,
            "{}",
            c.name
        );
        let client_max = src
            .get("max_completion_tokens")
            .or(src.get("max_tokens"))
            .and_then(Value::as_u64);
        assert_eq!(
            out["max_tokens"].as_u64(),
            Some(client_max.unwrap_or(4096)),
            "{}: max_tokens kept or defaulted",
            c.name
        );
        assert_eq!(
            out["temperature"].as_f64(),
            src["temperature"].as_f64(),
            "{}",
            c.name
        );
        let stop: Vec<Value> = match &src["stop"] {
            Value::String(s) => vec![json!(s)],
            Value::Array(a) => a.clone(),
            _ => vec![],
        };
        assert_eq!(
            out["stop_sequences"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            stop,
            "{}",
            c.name
        );
        // System: leading system/developer messages.
        let sys: Vec<String> = src["messages"]
            .as_array()
            .unwrap()
            .iter()
            .take_while(|m| m["role"] == "system" || m["role"] == "developer")
            .map(|m| text_of(&m["content"]))
            .collect();
        let rest: Vec<&Value> = src["messages"]
            .as_array()
            .unwrap()
            .iter()
            .skip(sys.len())
            .collect();
        if rest.is_empty() {
            // System-only conversation: the text becomes the one user turn.
            assert_eq!(
                text_of(&out["messages"][0]["content"]),
                sys.join(""),
                "{}",
                c.name
            );
            assert!(out.get("system").is_none(), "{}", c.name);
        } else {
            assert_eq!(
                text_of(out.get("system").unwrap_or(&Value::Null)),
                sys.join(""),
                "{}: system",
                c.name
            );
        }
        // Every message block is non-empty; roles alternate; tool results lead their turn.
        let msgs = out["messages"].as_array().unwrap();
        for w in msgs.windows(2) {
            assert_ne!(w[0]["role"], w[1]["role"], "{}: roles alternate", c.name);
        }
        for m in msgs {
            if let Some(bs) = m["content"].as_array() {
                assert!(!bs.is_empty(), "{}", c.name);
                for b in bs {
                    assert!(
                        b["type"] != "text" || b["text"] != "",
                        "{}: no empty text blocks",
                        c.name
                    );
                }
                let first_non_result = bs
                    .iter()
                    .position(|b| b["type"] != "tool_result")
                    .unwrap_or(bs.len());
                assert!(
                    bs[first_non_result..]
                        .iter()
                        .all(|b| b["type"] != "tool_result"),
                    "{}: tool_result first",
                    c.name
                );
            }
        }
        // Tool calls and results keep ids, names, arguments.
        let mut want_calls = Vec::new();
        let mut want_results = Vec::new();
        for m in &rest {
            for t in m["tool_calls"].as_array().into_iter().flatten() {
                want_calls.push((
                    t["id"].clone(),
                    t["function"]["name"].clone(),
                    parse(t["function"]["arguments"].as_str().unwrap()),
                ));
            }
            if m["role"] == "tool" {
                want_results.push((m["tool_call_id"].clone(), json!(text_of(&m["content"]))));
            }
        }
        let blocks: Vec<&Value> = msgs
            .iter()
            .flat_map(|m| m["content"].as_array().into_iter().flatten())
            .collect();
        let got_calls: Vec<_> = blocks
            .iter()
            .filter(|b| b["type"] == "tool_use")
            .map(|b| (b["id"].clone(), b["name"].clone(), b["input"].clone()))
            .collect();
        let got_results: Vec<_> = blocks
            .iter()
            .filter(|b| b["type"] == "tool_result")
            .map(|b| (b["tool_use_id"].clone(), json!(text_of(&b["content"]))))
            .collect();
        assert_eq!(got_calls, want_calls, "{}: tool_use", c.name);
        assert_eq!(got_results, want_results, "{}: tool_result", c.name);
        // Images: data URL → base64 source.
        for m in &rest {
            for p in m["content"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["type"] == "image_url")
            {
                let url = p["image_url"]["url"].as_str().unwrap();
                let img = blocks
                    .iter()
                    .find(|b| b["type"] == "image")
                    .expect("image block");
                let (meta, data) = url.strip_prefix("data:").unwrap().split_once(',').unwrap();
                assert_eq!(img["source"]["type"], "base64", "{}", c.name);
                assert_eq!(
                    img["source"]["media_type"],
                    meta.strip_suffix(";base64").unwrap()
                );
                assert_eq!(img["source"]["data"], data);
            }
        }
        // Tools and tool choice.
        let tools = src["tools"].as_array().cloned().unwrap_or_default();
        assert_eq!(
            out["tools"].as_array().map(Vec::len).unwrap_or(0),
            tools.len(),
            "{}",
            c.name
        );
        for (a, t) in out["tools"].as_array().into_iter().flatten().zip(&tools) {
            assert_eq!(a["name"], t["function"]["name"], "{}", c.name);
            assert_eq!(a["input_schema"], t["function"]["parameters"], "{}", c.name);
        }
        let want_choice = match src["tool_choice"].as_str() {
            Some("auto") => json!({"type": "auto"}),
            Some("required") => json!({"type": "any"}),
            Some("none") => json!({"type": "none"}),
            None => Value::Null,
            Some(o) => panic!("corpus tool_choice {o}"),
        };
        assert_eq!(
            out.get("tool_choice").cloned().unwrap_or(Value::Null),
            want_choice,
            "{}",
            c.name
        );
        if let Some(user) = src["user"].as_str() {
            assert_eq!(out["metadata"]["user_id"], user, "{}", c.name);
        }
        // Round trip back to OpenAI: same messages content, tool calls, results.
        let back: Value = serde_json::from_slice(
            &convert_request(
                Format::Anthropic,
                Format::OpenAiChat,
                &out,
                &req_opts(stream),
            )
            .unwrap_or_else(|e| panic!("{}: {e:?}", c.name))
            .body,
        )
        .unwrap();
        if stream {
            assert_eq!(back["stream_options"]["include_usage"], true, "{}", c.name);
        }
        let norm = |ms: &Value| -> Vec<(String, String, Vec<Value>, Value)> {
            ms.as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    let role = match m["role"].as_str().unwrap() {
                        "developer" => "system".to_string(),
                        r => r.to_string(),
                    };
                    let calls = m["tool_calls"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|t| {
                            json!([
                                t["id"],
                                t["function"]["name"],
                                parse(t["function"]["arguments"].as_str().unwrap())
                            ])
                        })
                        .collect();
                    (
                        role,
                        text_of(&m["content"]),
                        calls,
                        m["tool_call_id"].clone(),
                    )
                })
                .collect()
        };
        if !rest.is_empty() {
            assert_eq!(
                norm(&back["messages"]),
                norm(&src["messages"]),
                "{}: messages round trip",
                c.name
            );
        }
    }
}

#[test]
fn anthropic_requests_convert_to_openai() {
    for c in cases("anthropic-messages") {
        let src = &c.request;
        let stream = src["stream"] == true;
        let res = convert_request(
            Format::Anthropic,
            Format::OpenAiChat,
            src,
            &req_opts(stream),
        );
        let name = c.name.rsplit('/').next().unwrap();
        match name {
            "error-400-invalid-request" => {
                let e = res.expect_err("messages[0] is a bare string");
                assert_eq!(
                    (e.status, e.param.as_deref()),
                    (400, Some("messages[0]")),
                    "{}",
                    e.message
                );
                continue;
            }
            "stream-server-tool-then-tool-use" => {
                // Tool search only finds deferred tools; OpenAI gets the
                // deferred tool in full, so both hints are left out, named.
                let c = res.expect("tool-loading hints are dropped, not refused");
                assert_eq!(c.dropped.paths(), ["tools[1].defer_loading", "tools[0]"]);
                let out: Value = serde_json::from_slice(&c.body).unwrap();
                let tools = out["tools"].as_array().unwrap();
                assert_eq!(tools.len(), 1);
                assert_eq!(tools[0]["function"]["name"], "get_weather");
                assert!(tools[0].get("defer_loading").is_none());
                continue;
            }
            "stream-stop-sequence-prefill" => {
                let e = res.expect_err("assistant prefill has no OpenAI form");
                assert_eq!(e.status, 400);
                assert_eq!(e.param.as_deref(), Some("messages[1]"), "{}", e.message);
                continue;
            }
            _ => {}
        }
        let out: Value =
            serde_json::from_slice(&res.unwrap_or_else(|e| panic!("{}: {e:?}", c.name)).body)
                .unwrap();
        assert_eq!(out["model"], "upstream-model");
        assert_eq!(
            out["max_completion_tokens"], src["max_tokens"],
            "{}",
            c.name
        );
        assert_eq!(
            out["temperature"].as_f64(),
            src["temperature"].as_f64(),
            "{}",
            c.name
        );
        assert_eq!(out.get("stop"), src.get("stop_sequences"), "{}", c.name);
        if stream {
            assert_eq!(out["stream"], true);
            assert_eq!(
                out["stream_options"]["include_usage"], true,
                "{}: gateway always asks for usage",
                c.name
            );
        } else {
            assert!(out.get("stream_options").is_none());
        }
        if let Some(b) = src["thinking"]["budget_tokens"].as_u64() {
            let want = match b {
                0..=2048 => "low",
                2049..=8192 => "medium",
                _ => "high",
            };
            assert_eq!(out["reasoning_effort"], want, "{}", c.name);
        }
        let msgs = out["messages"].as_array().unwrap();
        let mut k = 0;
        if let Some(sys) = src.get("system") {
            assert_eq!(msgs[0]["role"], "system", "{}", c.name);
            assert_eq!(
                text_of(&msgs[0]["content"]),
                text_of(sys).trim_end_matches(""),
                "{}",
                c.name
            );
            k = 1;
        }
        // Walk the Anthropic turns against the OpenAI messages.
        for m in src["messages"].as_array().unwrap() {
            let blocks: Vec<Value> = match &m["content"] {
                Value::String(s) => vec![json!({"type": "text", "text": s})],
                Value::Array(a) => a.clone(),
                _ => unreachable!(),
            };
            for r in blocks.iter().filter(|b| b["type"] == "tool_result") {
                assert_eq!(msgs[k]["role"], "tool", "{}", c.name);
                assert_eq!(msgs[k]["tool_call_id"], r["tool_use_id"], "{}", c.name);
                assert_eq!(
                    text_of(&msgs[k]["content"]),
                    text_of(&r["content"]),
                    "{}",
                    c.name
                );
                k += 1;
            }
            let texts: String = blocks
                .iter()
                .filter(|b| b["type"] == "text")
                .map(|b| b["text"].as_str().unwrap())
                .collect::<Vec<_>>()
                .join("\n\n");
            let images: Vec<&Value> = blocks.iter().filter(|b| b["type"] == "image").collect();
            let calls: Vec<&Value> = blocks.iter().filter(|b| b["type"] == "tool_use").collect();
            if texts.is_empty() && images.is_empty() && calls.is_empty() {
                continue;
            }
            let om = &msgs[k];
            k += 1;
            assert_eq!(om["role"], m["role"], "{}", c.name);
            assert_eq!(text_of(&om["content"]), texts, "{}", c.name);
            for (img, part) in images.iter().zip(
                om["content"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["type"] == "image_url"),
            ) {
                let s = &img["source"];
                let want = match s["type"].as_str().unwrap() {
                    "base64" => format!(
                        "data:{};base64,{}",
                        s["media_type"].as_str().unwrap(),
                        s["data"].as_str().unwrap()
                    ),
                    _ => s["url"].as_str().unwrap().to_string(),
                };
                assert_eq!(part["image_url"]["url"], want, "{}", c.name);
            }
            let got_calls: Vec<Value> = om["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    json!([
                        t["id"],
                        t["function"]["name"],
                        parse(t["function"]["arguments"].as_str().unwrap())
                    ])
                })
                .collect();
            let want_calls: Vec<Value> = calls
                .iter()
                .map(|b| json!([b["id"], b["name"], b["input"]]))
                .collect();
            assert_eq!(got_calls, want_calls, "{}", c.name);
        }
        assert_eq!(k, msgs.len(), "{}: nothing extra", c.name);
        let tools = src["tools"].as_array().cloned().unwrap_or_default();
        for (t, o) in tools
            .iter()
            .zip(out["tools"].as_array().into_iter().flatten())
        {
            assert_eq!(o["type"], "function");
            assert_eq!(o["function"]["name"], t["name"], "{}", c.name);
            assert_eq!(o["function"]["parameters"], t["input_schema"], "{}", c.name);
            assert_eq!(
                o["function"].get("description"),
                t.get("description"),
                "{}",
                c.name
            );
        }
        if let Some(tc) = src.get("tool_choice") {
            let want = match tc["type"].as_str().unwrap() {
                "auto" => json!("auto"),
                "any" => json!("required"),
                "none" => json!("none"),
                _ => json!({"type": "function", "function": {"name": tc["name"]}}),
            };
            assert_eq!(out["tool_choice"], want, "{}", c.name);
        }
        // Round trip to Anthropic: same turns (signed thinking is not sent to
        // an OpenAI-format upstream, so it is absent after the trip).
        let back: Value = serde_json::from_slice(
            &convert_request(
                Format::OpenAiChat,
                Format::Anthropic,
                &out,
                &req_opts(stream),
            )
            .unwrap_or_else(|e| panic!("{}: {e:?}", c.name))
            .body,
        )
        .unwrap();
        assert_eq!(back["max_tokens"], src["max_tokens"], "{}", c.name);
        let norm = |ms: &Value| -> Vec<Value> {
            ms.as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    let blocks: Vec<Value> = match &m["content"] {
                        Value::String(s) => vec![json!({"type": "text", "text": s})],
                        Value::Array(a) => a
                            .iter()
                            .filter(|b| b["type"] != "thinking" && b["type"] != "redacted_thinking")
                            // Whitespace-only text blocks are not sent to Anthropic.
                            .filter(|b| {
                                b["type"] != "text"
                                    || !b["text"].as_str().unwrap().trim().is_empty()
                            })
                            .map(|b| {
                                let mut b = b.clone();
                                let o = b.as_object_mut().unwrap();
                                if o.get("is_error") == Some(&json!(false)) {
                                    o.remove("is_error");
                                }
                                if let Some(Value::String(s)) = o.get("content").cloned() {
                                    o.insert(
                                        "content".into(),
                                        json!([{"type": "text", "text": s}]),
                                    );
                                }
                                b
                            })
                            .collect(),
                        _ => unreachable!(),
                    };
                    // Adjacent text blocks come back as one (see text_of).
                    let mut merged: Vec<Value> = Vec::new();
                    for b in blocks {
                        match merged.last_mut() {
                            Some(prev)
                                if prev["type"] == "text"
                                    && b["type"] == "text"
                                    && b.get("cache_control").is_none() =>
                            {
                                let t = format!(
                                    "{}\n\n{}",
                                    prev["text"].as_str().unwrap(),
                                    b["text"].as_str().unwrap()
                                );
                                prev["text"] = json!(t);
                            }
                            _ => merged.push(b),
                        }
                    }
                    json!({"role": m["role"], "content": merged})
                })
                .collect()
        };
        assert_eq!(
            norm(&back["messages"]),
            norm(&src["messages"]),
            "{}: messages round trip",
            c.name
        );
    }
}

/// The usage object in a converted answer or stream of format `to` (the last one seen).
fn client_usage(to: Format, v: &Value) -> Option<Value> {
    let usage = match to {
        Format::OpenAiChat | Format::Anthropic => &v["usage"],
        // A whole answer has it at the top, a stream in its final response.
        Format::OpenAiResponses if v["usage"].is_object() => &v["usage"],
        Format::OpenAiResponses => &v["response"]["usage"],
        Format::Gemini => &v["usageMetadata"],
    };
    usage.is_object().then(|| usage.clone())
}

/// The reasoning count a client of format `to` reads from its usage object.
fn client_reasoning(to: Format, usage: &Value) -> u64 {
    match to {
        Format::OpenAiChat => u(&usage["completion_tokens_details"]["reasoning_tokens"]),
        Format::OpenAiResponses => u(&usage["output_tokens_details"]["reasoning_tokens"]),
        Format::Gemini => u(&usage["thoughtsTokenCount"]),
        Format::Anthropic => u(&usage["output_tokens_details"]["thinking_tokens"]),
    }
}

/// Anthropic's `usage.output_tokens_details.thinking_tokens` reaches the reasoning
/// count of every other format (answers and streams) and the metered usage (also
/// for same-format passthrough). The recorded stream `stream-thinking-tool-use`
/// carries it (53 in its `message_delta`); no recorded whole answer does, so the
/// recorded `thinking` answer gets the field added here.
#[test]
fn anthropic_thinking_tokens_reach_every_format() {
    let dir = corpus_dir().join("anthropic-messages");
    let sse_body = std::fs::read(dir.join("stream-thinking-tool-use/response.sse")).unwrap();
    let stream_thinking = events(&sse_body)
        .iter()
        .filter(|(e, _)| e == "message_delta")
        .map(|(_, d)| u(&parse(d)["usage"]["output_tokens_details"]["thinking_tokens"]))
        .next_back()
        .expect("a message_delta");
    assert_eq!(stream_thinking, 53, "the recording's thinking_tokens");
    let mut answer = parse(&std::fs::read_to_string(dir.join("thinking/response.json")).unwrap());
    let output = u(&answer["usage"]["output_tokens"]);
    assert!(output > 1, "the recorded answer has output tokens");
    let thinking = output - 1; // added: the recording predates the field
    answer["usage"]["output_tokens_details"] = json!({"thinking_tokens": thinking});
    let body = serde_json::to_vec(&answer).unwrap();

    for to in [Format::OpenAiChat, Format::OpenAiResponses, Format::Gemini] {
        let o = ResponseOpts {
            gemini_sse: true,
            ..opts(true)
        };
        let v = parse(
            &String::from_utf8(convert_response(Format::Anthropic, to, &body, &o).unwrap())
                .unwrap(),
        );
        let cu = client_usage(to, &v).unwrap_or_else(|| panic!("{to:?}: usage in {v}"));
        assert_eq!(client_reasoning(to, &cu), thinking, "{to:?} answer: {cu}");

        let (bytes, metered) = translate(Format::Anthropic, to, o, &[&sse_body]);
        let last = events(&bytes)
            .iter()
            .filter(|(_, d)| d.starts_with('{'))
            .filter_map(|(_, d)| client_usage(to, &parse(d)))
            .next_back()
            .unwrap_or_else(|| panic!("{to:?}: usage in the converted stream"));
        assert_eq!(
            client_reasoning(to, &last),
            stream_thinking,
            "{to:?} stream: {last}"
        );
        assert_eq!(
            metered.reasoning, stream_thinking,
            "{to:?}: metered reasoning"
        );
    }
    // Same-format passthrough metering (aigate_tokens_total{kind="reasoning"}).
    let metered = response_usage(Format::Anthropic, &body).expect("usage");
    assert_eq!((metered.output, metered.reasoning), (output, thinking));
    let mut pipe = aigate::proxy::stream::Pipe::Pass(
        aigate::proxy::stream::Observer::new(Format::Anthropic),
        None,
    );
    pipe.feed(&sse_body.clone().into(), &mut Vec::new());
    assert_eq!(pipe.usage().expect("usage").reasoning, stream_thinking);
}
