//! Conversion cost (criterion). Run:
//!   cargo bench --bench translate
//! - whole answers of ~20 KB, each way;
//! - a 200-event stream through `StreamTranslator`, each way, next to the same
//!   bytes through `UsageTap` (what a same-format passthrough does), so the
//!   per-event cost of converting can be read against passthrough;
//! - one typical chat request (system, history, tools) each way;
//! - Gemini and OpenAI Responses (issue 4): recorded corpus answers, requests
//!   and streams to every other format (`answer/`, `request/`, `stream/` groups).

use aigate::translate::{
    Format, RequestOpts, ResponseOpts, StreamTranslator, UsageTap, convert_request,
    convert_response,
};
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
fn per_event(stream: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..stream.len() {
        if stream[i] == b'\n' && stream[i - 1] == b'\n' {
            out.push(&stream[start..=i]);
            start = i + 1;
        }
    }
    out
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
        b.iter(|| convert_response(AN, OA, black_box(&an), &opts).unwrap())
    });
    g.throughput(Throughput::Bytes(oa.len() as u64));
    g.bench_function("openai_to_anthropic", |b| {
        b.iter(|| convert_response(OA, AN, black_box(&oa), &opts).unwrap())
    });
    g.finish();

    let req = chat_request();
    let ropts = RequestOpts {
        model: "claude-sonnet-4-5".into(),
        stream: true,
    };
    let areq: Value =
        serde_json::from_slice(&convert_request(OA, AN, &req, &ropts).unwrap().body).unwrap();
    let mut g = c.benchmark_group("request");
    g.bench_function("openai_to_anthropic", |b| {
        b.iter(|| convert_request(OA, AN, black_box(&req), &ropts).unwrap())
    });
    g.bench_function("anthropic_to_openai", |b| {
        b.iter(|| convert_request(AN, OA, black_box(&areq), &ropts).unwrap())
    });
    g.bench_function("parse_body_then_openai_to_anthropic", |b| {
        let bytes = serde_json::to_vec(&req).unwrap();
        b.iter(|| {
            let v: Value = serde_json::from_slice(black_box(&bytes)).unwrap();
            convert_request(OA, AN, &v, &ropts).unwrap()
        })
    });
    g.finish();

    for (name, from, to, stream) in [
        ("anthropic_to_openai", AN, OA, anthropic_stream()),
        ("openai_to_anthropic", OA, AN, openai_stream()),
    ] {
        let pieces = per_event(&stream);
        assert_eq!(pieces.len(), 200, "{name}: 200 events");
        let mut g = c.benchmark_group(format!("stream_200_events/{name}"));
        g.throughput(Throughput::Elements(200));
        g.bench_function("convert", |b| {
            let mut out = Vec::with_capacity(64 * 1024);
            b.iter(|| {
                out.clear();
                let mut t = StreamTranslator::new(from, to, opts.clone());
                for p in &pieces {
                    t.feed(black_box(p), &mut out);
                }
                t.finish(&mut out);
                black_box(out.len())
            })
        });
        g.bench_function("passthrough_usage_tap", |b| {
            b.iter(|| {
                let mut tap = UsageTap::new(from, true);
                for p in &pieces {
                    tap.feed(black_box(p));
                }
                black_box(tap.usage())
            })
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
    use aigate::translate::{
        Format, RequestOpts, ResponseOpts, StreamTranslator, convert_request, convert_response,
    };
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
            b.iter(|| {
                convert_response(Format::Gemini, to, black_box(&gemini_answer), &ropts).unwrap()
            })
        });
    }
    for to in [Format::OpenAiChat, Format::Anthropic, Format::Gemini] {
        g.throughput(Throughput::Bytes(responses_answer.len() as u64));
        g.bench_function(format!("responses->{}", to.as_str()), |b| {
            b.iter(|| {
                convert_response(
                    Format::OpenAiResponses,
                    to,
                    black_box(&responses_answer),
                    &ropts,
                )
                .unwrap()
            })
        });
    }
    g.finish();

    // Requests: an agent turn with reasoning + tool items, a Gemini request with an image.
    let rq: serde_json::Value = serde_json::from_slice(&corpus_file(
        "openai-responses",
        "parallel-function-calls-reasoning",
        "request.json",
    ))
    .unwrap();
    let gq: serde_json::Value = serde_json::from_slice(&corpus_file(
        "gemini",
        "function-response-followup",
        "request.json",
    ))
    .unwrap();
    let mut g = c.benchmark_group("request");
    for to in [Format::OpenAiChat, Format::Anthropic, Format::Gemini] {
        g.bench_function(format!("responses->{}", to.as_str()), |b| {
            b.iter(|| convert_request(Format::OpenAiResponses, to, black_box(&rq), &qopts).unwrap())
        });
    }
    for to in [
        Format::OpenAiChat,
        Format::Anthropic,
        Format::OpenAiResponses,
    ] {
        g.bench_function(format!("gemini->{}", to.as_str()), |b| {
            b.iter(|| convert_request(Format::Gemini, to, black_box(&gq), &qopts).unwrap())
        });
    }
    g.finish();

    // Streams: the whole recorded stream per iteration (throughput in bytes of
    // upstream SSE); per-event cost = time / events.
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
        for to in [
            Format::OpenAiChat,
            Format::Anthropic,
            Format::OpenAiResponses,
            Format::Gemini,
        ] {
            if to == *from {
                continue;
            }
            g.throughput(Throughput::Elements(events as u64));
            g.bench_function(
                format!("{}->{} ({events} events)", from.as_str(), to.as_str()),
                |b| {
                    b.iter(|| {
                        let mut t =
                            StreamTranslator::new_at(*from, to, ropts.clone(), 1_700_000_000);
                        let mut out = Vec::with_capacity(body.len() * 2);
                        for piece in body.chunks(1400) {
                            t.feed(black_box(piece), &mut out);
                        }
                        t.finish(&mut out);
                        out
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_main!(benches);
