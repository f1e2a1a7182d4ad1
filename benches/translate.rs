//! Conversion cost (criterion), through the calls the gateway makes for an
//! AI request (`src/proxy/pipeline/`). Run:
//!   cargo bench --bench translate
//! - whole answers (~20 KB, and recorded Gemini / Responses answers): the
//!   usage read (`response_usage`) and `convert_response`, as for a converted
//!   JSON answer;
//! - requests: the client body parsed into a `Value`, then `convert_request`
//!   (one typical agent turn each way, recorded Responses / Gemini requests);
//! - streams (a 200-event stream each way, recorded Gemini / Responses
//!   streams): upstream reads fed as `Bytes` to `proxy::stream::Pipe` —
//!   `Pipe::Convert` (a `StreamTranslator`) next to `Pipe::Pass` (the
//!   same-format observer that reads usage and holds the preamble), so the
//!   per-event cost of converting reads against passthrough.
//!
//! Figures and their history: benches/README.md.

use aigate::ir::Usage;
use aigate::proxy::stream::{Observer, Pipe};
use aigate::translate::{
    Converted, Format, RequestOpts, ResponseOpts, StreamTranslator, convert_request,
    convert_response, response_usage,
};
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use std::hint::black_box;

const OA: Format = Format::OpenAiChat;
const AN: Format = Format::Anthropic;

fn paragraph(i: usize) -> String {
    format!(
        "Paragraph {i}: the gateway converts every format to every other, streaming chunk by chunk, \
         keeping tool calls, thinking signatures and usage arithmetic intact. \"Quotes\" and \\ escapes\n"
    )
}

/// ~20 KB Anthropic answer: thinking, long text, three tool calls.
fn anthropic_answer() -> Vec<u8> {
    let text: String = (0..90).map(paragraph).collect();
    let body = json!({"id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [
            {"type": "thinking", "thinking": (0..10).map(paragraph).collect::<String>(), "signature": "EqQBCkgIBBABGAIiQL".repeat(20)},
            {"type": "text", "text": text},
            {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "src/main.rs", "lines": [1, 200]}},
            {"type": "tool_use", "id": "toolu_2", "name": "grep", "input": {"pattern": "fn main", "glob": "**/*.rs"}},
            {"type": "tool_use", "id": "toolu_3", "name": "run", "input": {"cmd": "cargo test", "timeout": 600}}],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 1200, "cache_read_input_tokens": 30000, "cache_creation_input_tokens": 0, "output_tokens": 4100}});
    serde_json::to_vec(&body).unwrap()
}

/// ~20 KB OpenAI answer with the same content.
fn openai_answer() -> Vec<u8> {
    let text: String = (0..100).map(paragraph).collect();
    let body = json!({"id": "chatcmpl-bench", "object": "chat.completion", "created": 1_700_000_000, "model": "gpt-4o",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": text,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\":\"src/main.rs\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "grep", "arguments": "{\"pattern\":\"fn main\"}"}}]}}],
        "usage": {"prompt_tokens": 31200, "completion_tokens": 4100, "total_tokens": 35300,
            "prompt_tokens_details": {"cached_tokens": 30000}, "completion_tokens_details": {"reasoning_tokens": 0}}});
    serde_json::to_vec(&body).unwrap()
}

/// 200 Anthropic events: start, one text block of 194 deltas, stop, delta, stop.
fn anthropic_stream() -> Vec<u8> {
    let mut s = String::new();
    let ev = |s: &mut String, v: Value| {
        s.push_str(&format!(
            "event: {}\ndata: {v}\n\n",
            v["type"].as_str().unwrap()
        ))
    };
    ev(
        &mut s,
        json!({"type": "message_start", "message": {"id": "msg_b", "type": "message", "role": "assistant", "model": "claude", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 900, "output_tokens": 1}}}),
    );
    ev(
        &mut s,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    ev(&mut s, json!({"type": "ping"}));
    for i in 0..194 {
        ev(
            &mut s,
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": format!("token {i} of the answer, ")}}),
        );
    }
    ev(&mut s, json!({"type": "content_block_stop", "index": 0}));
    ev(
        &mut s,
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 600}}),
    );
    ev(&mut s, json!({"type": "message_stop"}));
    s.into_bytes()
}

/// 200 OpenAI chunks: role, 196 content deltas, finish, usage, [DONE].
fn openai_stream() -> Vec<u8> {
    let mut s = String::new();
    let head = json!({"id": "chatcmpl-b", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "gpt-4o", "system_fingerprint": "fp_1"});
    let chunk = |s: &mut String, choices: Value, usage: Value| {
        let mut c = head.clone();
        c["choices"] = choices;
        c["usage"] = usage;
        s.push_str(&format!("data: {c}\n\n"));
    };
    chunk(
        &mut s,
        json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]),
        Value::Null,
    );
    for i in 0..196 {
        chunk(
            &mut s,
            json!([{"index": 0, "delta": {"content": format!("token {i} of the answer, ")}, "finish_reason": null}]),
            Value::Null,
        );
    }
    chunk(
        &mut s,
        json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
        Value::Null,
    );
    chunk(
        &mut s,
        json!([]),
        json!({"prompt_tokens": 900, "completion_tokens": 600, "total_tokens": 1500}),
    );
    s.push_str("data: [DONE]\n\n");
    s.into_bytes()
}

fn chat_request() -> Value {
    json!({"model": "gpt-4o", "stream": true, "temperature": 0.2, "max_tokens": 2048,
        "messages": [
            {"role": "system", "content": "You are a coding agent. Use tools to inspect the repository before answering."},
            {"role": "user", "content": "Why does the build fail?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "run", "arguments": "{\"cmd\":\"cargo build\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "error[E0432]: unresolved import `crate::foo`\n --> src/lib.rs:3:5"},
            {"role": "assistant", "content": "The import `crate::foo` does not resolve. Let me look at src/lib.rs."},
            {"role": "user", "content": "Fix it please."}],
        "tools": [
            {"type": "function", "function": {"name": "run", "description": "Run a shell command", "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}},
            {"type": "function", "function": {"name": "read_file", "description": "Read a file", "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}},
            {"type": "function", "function": {"name": "write_file", "description": "Write a file", "parameters": {"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}, "required": ["path", "content"]}}}]})
}

/// Upstream bytes as they arrive: one read per event.
fn per_event(stream: &[u8]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..stream.len() {
        if stream[i] == b'\n' && stream[i - 1] == b'\n' {
            out.push(Bytes::copy_from_slice(&stream[start..=i]));
            start = i + 1;
        }
    }
    out
}

/// A converted JSON answer: its usage is read, then it is converted.
fn answer(from: Format, to: Format, body: &[u8], opts: &ResponseOpts) -> (Option<Usage>, Vec<u8>) {
    let usage = response_usage(from, body);
    (usage, convert_response(from, to, body, opts).unwrap())
}

/// A converted request: the client's bytes parsed, then converted.
fn request(from: Format, to: Format, body: &[u8], opts: &RequestOpts) -> Converted {
    let v: Value = serde_json::from_slice(body).unwrap();
    convert_request(from, to, &v, opts).unwrap()
}

/// One upstream stream through an attempt's pipe, read by read.
fn pipe_through(mut pipe: Pipe, reads: &[Bytes], out: &mut Vec<u8>) -> Option<Usage> {
    out.clear();
    for r in reads {
        pipe.feed(black_box(r), out);
    }
    pipe.finish(out);
    pipe.usage()
}

fn bench(c: &mut Criterion) {
    let opts = ResponseOpts {
        client_model: "client".into(),
        include_usage: true,
        gemini_sse: false,
        ..Default::default()
    };

    let an = anthropic_answer();
    let oa = openai_answer();
    let mut g = c.benchmark_group("answer_20kb");
    g.throughput(Throughput::Bytes(an.len() as u64));
    g.bench_function("anthropic_to_openai", |b| {
        b.iter(|| answer(AN, OA, black_box(&an), &opts))
    });
    g.throughput(Throughput::Bytes(oa.len() as u64));
    g.bench_function("openai_to_anthropic", |b| {
        b.iter(|| answer(OA, AN, black_box(&oa), &opts))
    });
    g.finish();

    let req = serde_json::to_vec(&chat_request()).unwrap();
    let ropts = RequestOpts {
        model: "claude-sonnet-4-5".into(),
        stream: true,
    };
    let areq = request(OA, AN, &req, &ropts).body;
    let mut g = c.benchmark_group("request");
    g.bench_function("openai_to_anthropic", |b| {
        b.iter(|| request(OA, AN, black_box(&req), &ropts))
    });
    g.bench_function("anthropic_to_openai", |b| {
        b.iter(|| request(AN, OA, black_box(&areq), &ropts))
    });
    g.finish();

    for (name, from, to, stream) in [
        ("anthropic_to_openai", AN, OA, anthropic_stream()),
        ("openai_to_anthropic", OA, AN, openai_stream()),
    ] {
        let reads = per_event(&stream);
        assert_eq!(reads.len(), 200, "{name}: 200 events");
        let mut g = c.benchmark_group(format!("stream_200_events/{name}"));
        g.throughput(Throughput::Elements(200));
        let mut out = Vec::with_capacity(64 * 1024);
        g.bench_function("convert", |b| {
            b.iter(|| {
                let t = StreamTranslator::new(from, to, opts.clone());
                pipe_through(Pipe::Convert(t), &reads, &mut out)
            })
        });
        g.bench_function("passthrough", |b| {
            b.iter(|| pipe_through(Pipe::Pass(Observer::new(from), None), &reads, &mut out))
        });
        g.finish();
    }
}

criterion_group!(benches, bench, bench_gemini_responses);
// ---- Gemini and OpenAI Responses (issue 4) ----------------------------------

fn corpus_file(format: &str, case: &str, file: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(format)
        .join(case)
        .join(file);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn bench_gemini_responses(c: &mut Criterion) {
    let ropts = ResponseOpts {
        client_model: "m".into(),
        include_usage: true,
        gemini_sse: true,
        ..Default::default()
    };
    let qopts = RequestOpts {
        model: "m".into(),
        stream: true,
    };
    // Whole answers of about 20 KB each way.
    let gemini_answer = corpus_file("gemini", "thought-parts", "response.json");
    let responses_answer = corpus_file("openai-responses", "reasoning-summary", "response.json");
    let mut g = c.benchmark_group("answer");
    for to in [
        Format::OpenAiChat,
        Format::Anthropic,
        Format::OpenAiResponses,
    ] {
        g.throughput(Throughput::Bytes(gemini_answer.len() as u64));
        g.bench_function(format!("gemini->{}", to.as_str()), |b| {
            b.iter(|| answer(Format::Gemini, to, black_box(&gemini_answer), &ropts))
        });
    }
    for to in [Format::OpenAiChat, Format::Anthropic, Format::Gemini] {
        g.throughput(Throughput::Bytes(responses_answer.len() as u64));
        g.bench_function(format!("responses->{}", to.as_str()), |b| {
            b.iter(|| {
                answer(
                    Format::OpenAiResponses,
                    to,
                    black_box(&responses_answer),
                    &ropts,
                )
            })
        });
    }
    g.finish();

    // Requests: an agent turn with reasoning + tool items, a Gemini request with an image.
    let rq = corpus_file(
        "openai-responses",
        "parallel-function-calls-reasoning",
        "request.json",
    );
    let gq = corpus_file("gemini", "function-response-followup", "request.json");
    let mut g = c.benchmark_group("request");
    for to in [Format::OpenAiChat, Format::Anthropic, Format::Gemini] {
        g.bench_function(format!("responses->{}", to.as_str()), |b| {
            b.iter(|| request(Format::OpenAiResponses, to, black_box(&rq), &qopts))
        });
    }
    for to in [
        Format::OpenAiChat,
        Format::Anthropic,
        Format::OpenAiResponses,
    ] {
        g.bench_function(format!("gemini->{}", to.as_str()), |b| {
            b.iter(|| request(Format::Gemini, to, black_box(&gq), &qopts))
        });
    }
    g.finish();

    // Streams: the whole recorded stream per iteration, in reads of 1400
    // bytes (throughput in upstream events; per-event cost = time / events),
    // converted to every other format and passed through.
    let streams = [
        (
            Format::Gemini,
            corpus_file("gemini", "stream-thoughts", "response.sse"),
        ),
        (
            Format::OpenAiResponses,
            corpus_file(
                "openai-responses",
                "stream-reasoning-summary",
                "response.sse",
            ),
        ),
    ];
    let mut g = c.benchmark_group("stream");
    for (from, body) in &streams {
        let events = body.windows(5).filter(|w| w == b"data:").count().max(1);
        let reads: Vec<Bytes> = body.chunks(1400).map(Bytes::copy_from_slice).collect();
        let mut out = Vec::with_capacity(body.len() * 2);
        g.throughput(Throughput::Elements(events as u64));
        for to in [
            Format::OpenAiChat,
            Format::Anthropic,
            Format::OpenAiResponses,
            Format::Gemini,
        ] {
            let label = format!("{}->{} ({events} events)", from.as_str(), to.as_str());
            g.bench_function(label, |b| {
                b.iter(|| {
                    let pipe = if to == *from {
                        Pipe::Pass(Observer::new(*from), None)
                    } else {
                        Pipe::Convert(StreamTranslator::new_at(
                            *from,
                            to,
                            ropts.clone(),
                            1_700_000_000,
                        ))
                    };
                    pipe_through(pipe, &reads, &mut out)
                })
            });
        }
    }
    g.finish();
}

criterion_main!(benches);
