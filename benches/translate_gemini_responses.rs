//! Criterion benchmarks for the Gemini and OpenAI Responses formats (issue 4):
//! whole answers of ~20 KB converted each way, requests, and streams (per
//! event). Inputs are recorded corpus bodies (`../shared/corpus`).
//!
//! `CARGO_TARGET_DIR=/work/main/target cargo bench --bench translate_gemini_responses`

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};

// ---- Gemini and OpenAI Responses (issue 4) ----------------------------------

fn corpus_file(format: &str, case: &str, file: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpus")
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

criterion_group!(benches, bench_gemini_responses);
criterion_main!(benches);
