//! Every recorded Gemini and OpenAI Responses case of `tests/corpus`
//! through the converters, field by field: answers into the other formats
//! (text, tool calls, finish reasons, usage with SPEC arithmetic), requests
//! into the other formats, and every recorded stream fed whole, cut at every
//! byte and in random small pieces (same output required), its converted
//! event grammar re-parsed and checked.
//!
//! The corpus is required: a missing corpus fails the suite, it is never skipped.

use aigate::translate::{
    self, Format, RequestOpts, ResponseOpts, StreamTranslator, convert_error, convert_request,
    convert_response,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn corpus_dir(format: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(format);
    assert!(
        dir.is_dir(),
        "corpus directory {} is missing: the recorded traffic corpus is required",
        dir.display()
    );
    dir
}

struct Case {
    name: String,
    request: Value,
    response_json: Option<Vec<u8>>,
    response_sse: Option<Vec<u8>>,
    status: u16,
}

fn cases(format: &str) -> Vec<Case> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(corpus_dir(format))
        .expect("read corpus")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    entries.sort();
    for dir in entries {
        let meta: Value =
            serde_json::from_slice(&std::fs::read(dir.join("meta.json")).expect("meta.json"))
                .unwrap();
        out.push(Case {
            name: dir.file_name().unwrap().to_string_lossy().into_owned(),
            request: serde_json::from_slice(
                &std::fs::read(dir.join("request.json")).expect("request.json"),
            )
            .expect("request is JSON"),
            response_json: std::fs::read(dir.join("response.json")).ok(),
            response_sse: std::fs::read(dir.join("response.sse")).ok(),
            status: meta["http_status"].as_u64().unwrap() as u16,
        });
    }
    assert!(
        out.len() >= 17,
        "expected the whole {format} corpus, found {} cases",
        out.len()
    );
    out
}

fn ropts(gemini_sse: bool) -> ResponseOpts {
    ResponseOpts {
        client_model: "client-model".into(),
        include_usage: true,
        gemini_sse,
        ..Default::default()
    }
}

fn qopts(stream: bool) -> RequestOpts {
    RequestOpts {
        model: "target-model".into(),
        stream,
    }
}

// ------------------------------------------------------------------ expectations

#[derive(Debug, Default, PartialEq, Clone)]
struct Expect {
    text: String,
    thinking: String,
    calls: Vec<(String, Value)>,
    /// canonical finish: stop | length | tool_calls | content_filter
    finish: String,
    input: u64,
    cached: u64,
    output: u64,
    reasoning: u64,
}

fn gemini_expect(chunks: &[Value]) -> Expect {
    let mut e = Expect::default();
    for v in chunks {
        if let Some(parts) = v["candidates"][0]["content"]["parts"].as_array() {
            for p in parts {
                if let Some(t) = p["text"].as_str() {
                    if p["thought"] == true {
                        e.thinking.push_str(t);
                    } else {
                        e.text.push_str(t);
                    }
                }
                if p.get("functionCall").is_some() {
                    e.calls.push((
                        p["functionCall"]["name"].as_str().unwrap().to_string(),
                        p["functionCall"]["args"].clone(),
                    ));
                }
            }
        }
        if let Some(f) = v["candidates"][0]["finishReason"].as_str() {
            e.finish = match f {
                "STOP" => "stop",
                "MAX_TOKENS" => "length",
                "SAFETY" | "RECITATION" => "content_filter",
                _ => "other",
            }
            .into();
        }
        let u = &v["usageMetadata"];
        if u.is_object() {
            let n = |k: &str| u[k].as_u64().unwrap_or(0);
            e.input = n("promptTokenCount");
            e.cached = n("cachedContentTokenCount");
            e.output = n("candidatesTokenCount") + n("thoughtsTokenCount");
            e.reasoning = n("thoughtsTokenCount");
        }
    }
    if !e.calls.is_empty() && e.finish == "stop" {
        e.finish = "tool_calls".into();
    }
    e
}

fn responses_expect(resp: &Value) -> Expect {
    let mut e = Expect::default();
    for item in resp["output"].as_array().unwrap() {
        match item["type"].as_str().unwrap() {
            "message" => {
                for c in item["content"].as_array().unwrap() {
                    e.text.push_str(c["text"].as_str().unwrap_or_default());
                }
            }
            "reasoning" => {
                for (i, s) in item["summary"].as_array().unwrap().iter().enumerate() {
                    if i > 0 || !e.thinking.is_empty() {
                        e.thinking.push_str("\n\n");
                    }
                    e.thinking.push_str(s["text"].as_str().unwrap());
                }
            }
            "function_call" => e.calls.push((
                item["name"].as_str().unwrap().to_string(),
                serde_json::from_str(item["arguments"].as_str().unwrap()).unwrap(),
            )),
            other => panic!("unexpected output item {other}"),
        }
    }
    e.finish = match (
        resp["status"].as_str().unwrap(),
        resp["incomplete_details"]["reason"].as_str(),
    ) {
        ("completed", _) if !e.calls.is_empty() => "tool_calls",
        ("completed", _) => "stop",
        ("incomplete", Some("max_output_tokens")) => "length",
        ("incomplete", Some("content_filter")) => "content_filter",
        _ => "other",
    }
    .into();
    let u = &resp["usage"];
    e.input = u["input_tokens"].as_u64().unwrap();
    e.cached = u["input_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or(0);
    e.output = u["output_tokens"].as_u64().unwrap();
    e.reasoning = u["output_tokens_details"]["reasoning_tokens"]
        .as_u64()
        .unwrap_or(0);
    e
}

/// What a Responses answer (non-streaming, or rebuilt from a stream) says, in the same terms.
fn read_responses(resp: &Value) -> Expect {
    responses_expect(resp)
}

/// What a Gemini answer (one body or the chunks of a stream) says.
fn read_gemini(chunks: &[Value]) -> Expect {
    let mut e = gemini_expect(chunks);
    // thoughtsTokenCount is the reasoning share of output; a converted answer
    // gives the same numbers back.
    if e.finish == "stop" && !e.calls.is_empty() {
        e.finish = "tool_calls".into();
    }
    e
}

fn assert_same(case: &str, route: &str, want: &Expect, got: &Expect) {
    assert_eq!(got.text, want.text, "{case} {route}: text");
    assert_eq!(got.thinking, want.thinking, "{case} {route}: thinking");
    assert_eq!(
        got.calls, want.calls,
        "{case} {route}: tool calls (name, args)"
    );
    assert_eq!(got.finish, want.finish, "{case} {route}: finish");
    assert_eq!(
        (got.input, got.cached, got.output, got.reasoning),
        (want.input, want.cached, want.output, want.reasoning),
        "{case} {route}: usage (input, cached, output, reasoning)"
    );
}

// ------------------------------------------------------------------ stream helpers

fn split_feed(from: Format, to: Format, opts: &ResponseOpts, pieces: &[&[u8]]) -> Vec<u8> {
    let mut t = StreamTranslator::new_at(from, to, opts.clone(), 1_700_000_000);
    let mut out = Vec::new();
    for p in pieces {
        t.feed(p, &mut out);
    }
    t.finish(&mut out);
    out
}

/// Feed whole, cut at every byte offset, and in pseudo-random small pieces;
/// every way must give the bytes of the whole feed.
fn stream_all_ways(
    case: &str,
    from: Format,
    to: Format,
    opts: &ResponseOpts,
    body: &[u8],
) -> Vec<u8> {
    stream_split(case, from, to, opts, body, true)
}

/// Like [`stream_all_ways`]; `every_cut: false` skips the every-offset pass
/// (for the second and third client format of one recorded stream: the
/// decoder's split-invariance is proven on the first at every offset).
fn stream_split(
    case: &str,
    from: Format,
    to: Format,
    opts: &ResponseOpts,
    body: &[u8],
    every_cut: bool,
) -> Vec<u8> {
    let whole = split_feed(from, to, opts, &[body]);
    assert!(!whole.is_empty(), "{case}: no output");
    // Every single cut point (two pieces), every offset.
    for cut in (0..=body.len()).filter(|_| every_cut) {
        let got = split_feed(from, to, opts, &[&body[..cut], &body[cut..]]);
        assert!(
            got == whole,
            "{case} {from:?}->{to:?}: output differs when cut at byte {cut}"
        );
    }
    // One byte at a time.
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    assert!(
        split_feed(from, to, opts, &bytes) == whole,
        "{case}: byte-by-byte feed differs"
    );
    // Random small pieces (deterministic LCG so failures reproduce).
    let mut seed: u64 = 0x9e3779b97f4a7c15 ^ body.len() as u64;
    for _ in 0..6 {
        let mut pieces = Vec::new();
        let mut i = 0;
        while i < body.len() {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let n = 1 + (seed >> 33) as usize % 17;
            let end = (i + n).min(body.len());
            pieces.push(&body[i..end]);
            i = end;
        }
        assert!(
            split_feed(from, to, opts, &pieces) == whole,
            "{case}: random-piece feed differs"
        );
    }
    whole
}

/// Parse a Responses client stream, checking its grammar the way the `openai`
/// SDK rebuilds the final response; returns the final response object.
fn responses_stream_final(case: &str, bytes: &[u8]) -> Value {
    let text = std::str::from_utf8(bytes).expect("utf8");
    assert!(text.ends_with("\n\n"), "{case}: stream ends mid-frame");
    let mut snapshot = Value::Null;
    let mut final_resp = Value::Null;
    let mut seq = -1i64;
    let mut names = Vec::new();
    let mut open_items: Vec<bool> = Vec::new();
    for frame in text.split("\n\n").filter(|f| !f.is_empty()) {
        let mut lines = frame.lines();
        let ev = lines
            .next()
            .and_then(|l| l.strip_prefix("event: "))
            .expect("event line");
        let data = lines
            .next()
            .and_then(|l| l.strip_prefix("data: "))
            .expect("data line");
        let v: Value = serde_json::from_str(data).expect("data JSON");
        assert_eq!(v["type"], ev, "{case}: event name = data.type");
        let s = v["sequence_number"].as_i64().expect("sequence_number");
        assert_eq!(s, seq + 1, "{case}: sequence_number increments");
        seq = s;
        assert!(
            final_resp.is_null(),
            "{case}: event {ev} after the terminal event"
        );
        names.push(ev.to_string());
        let oi = v["output_index"].as_u64().map(|x| x as usize);
        match ev {
            "response.created" => {
                assert_eq!(names.len(), 1, "{case}: created first");
                snapshot = v["response"].clone();
            }
            "response.in_progress" => assert_eq!(names.len(), 2, "{case}: in_progress second"),
            "response.output_item.added" => {
                let out = snapshot["output"].as_array_mut().unwrap();
                assert_eq!(oi.unwrap(), out.len(), "{case}: output_index of a new item");
                assert!(
                    open_items.iter().all(|o| !o),
                    "{case}: one item open at a time"
                );
                out.push(v["item"].clone());
                open_items.push(true);
            }
            "response.content_part.added" => {
                let item = &mut snapshot["output"][oi.unwrap()];
                assert_eq!(item["id"], v["item_id"], "{case}: item_id");
                let c = item["content"].as_array_mut().unwrap();
                assert_eq!(v["content_index"].as_u64().unwrap() as usize, c.len());
                c.push(v["part"].clone());
            }
            "response.output_text.delta" => {
                let item = &mut snapshot["output"][oi.unwrap()];
                assert_eq!(item["id"], v["item_id"], "{case}: item_id");
                assert!(open_items[oi.unwrap()], "{case}: delta to a closed item");
                let p = &mut item["content"][v["content_index"].as_u64().unwrap() as usize];
                p["text"] = json!(format!(
                    "{}{}",
                    p["text"].as_str().unwrap(),
                    v["delta"].as_str().unwrap()
                ));
            }
            "response.output_text.done" => {
                let item = &snapshot["output"][oi.unwrap()];
                assert_eq!(
                    item["content"][v["content_index"].as_u64().unwrap() as usize]["text"],
                    v["text"],
                    "{case}: text.done carries the whole text"
                );
            }
            "response.function_call_arguments.delta" => {
                let item = &mut snapshot["output"][oi.unwrap()];
                assert_eq!(item["id"], v["item_id"]);
                item["arguments"] = json!(format!(
                    "{}{}",
                    item["arguments"].as_str().unwrap(),
                    v["delta"].as_str().unwrap()
                ));
            }
            "response.function_call_arguments.done" => {
                assert_eq!(
                    snapshot["output"][oi.unwrap()]["arguments"],
                    v["arguments"],
                    "{case}: arguments.done"
                );
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_summary_part.added" => {
                assert_eq!(snapshot["output"][oi.unwrap()]["type"], "reasoning");
            }
            "response.output_item.done" => {
                let idx = oi.unwrap();
                assert!(open_items[idx], "{case}: item closed twice");
                open_items[idx] = false;
                let item = &snapshot["output"][idx];
                assert_eq!(item["id"], v["item"]["id"]);
                if item["type"] == "message" {
                    assert_eq!(
                        item["content"], v["item"]["content"],
                        "{case}: deltas rebuild the message"
                    );
                }
                if item["type"] == "function_call" {
                    assert_eq!(
                        item["arguments"], v["item"]["arguments"],
                        "{case}: deltas rebuild the arguments"
                    );
                }
                snapshot["output"][idx] = v["item"].clone();
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                assert!(
                    open_items.iter().all(|o| !o),
                    "{case}: items left open at the end"
                );
                final_resp = v["response"].clone();
                assert_eq!(
                    final_resp["output"], snapshot["output"],
                    "{case}: final output = rebuilt output"
                );
            }
            "error" => {}
            "response.content_part.done"
            | "response.reasoning_summary_text.done"
            | "response.reasoning_summary_part.done" => {}
            other => panic!("{case}: unexpected event {other}"),
        }
    }
    assert!(!final_resp.is_null(), "{case}: no terminal event");
    final_resp
}

/// Parse a Gemini client stream (SSE with CRLF framing, or a JSON array).
fn gemini_stream_chunks(case: &str, bytes: &[u8], sse: bool) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).expect("utf8");
    if sse {
        assert!(
            text.ends_with("\r\n\r\n"),
            "{case}: Gemini SSE events end with CRLF CRLF"
        );
        text.split("\r\n\r\n")
            .filter(|f| !f.is_empty())
            .map(|f| {
                serde_json::from_str(f.strip_prefix("data: ").expect("data: prefix"))
                    .expect("chunk JSON")
            })
            .collect()
    } else {
        let v: Value = serde_json::from_str(text).expect("the array stream is one JSON array");
        v.as_array().expect("array").clone()
    }
}

fn sse_data_events(body: &[u8]) -> Vec<Value> {
    let text = String::from_utf8_lossy(body).replace("\r\n", "\n");
    text.split("\n\n")
        .filter_map(|f| {
            f.lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(str::to_string)
        })
        .map(|d| serde_json::from_str(&d).expect("recorded data is JSON"))
        .collect()
}

// ------------------------------------------------------------------ Gemini answers

#[test]
fn gemini_answers_to_every_format() {
    let mut checked = 0;
    for c in cases("gemini") {
        let Some(body) = &c.response_json else {
            continue;
        };
        if c.status != 200 {
            for to in [
                Format::OpenAiResponses,
                Format::OpenAiChat,
                Format::Anthropic,
            ] {
                let e: Value =
                    serde_json::from_slice(&convert_error(Format::Gemini, to, c.status, body))
                        .unwrap();
                let orig: Value = serde_json::from_slice(body).unwrap();
                assert_eq!(
                    e["error"]["message"], orig["error"]["message"],
                    "{}: error message survives into {to:?}",
                    c.name
                );
            }
            checked += 1;
            continue;
        }
        let orig: Value = serde_json::from_slice(body).unwrap();
        let want = gemini_expect(std::slice::from_ref(&orig));
        // → Responses
        let out = convert_response(Format::Gemini, Format::OpenAiResponses, body, &ropts(false))
            .expect("converts");
        let r: Value = serde_json::from_slice(&out).unwrap();
        assert_same(&c.name, "gemini->responses", &want, &read_responses(&r));
        assert_eq!(
            r["usage"]["total_tokens"],
            want.input + want.output,
            "{}: total_tokens",
            c.name
        );
        if c.name == "safety-block" {
            assert_eq!(r["status"], "incomplete");
            assert_eq!(r["incomplete_details"]["reason"], "content_filter");
        }
        // → Gemini (through the IR)
        let out = convert_response(Format::Gemini, Format::Gemini, body, &ropts(false))
            .expect("converts");
        let g: Value = serde_json::from_slice(&out).unwrap();
        assert_same(
            &c.name,
            "gemini->gemini",
            &want,
            &read_gemini(std::slice::from_ref(&g)),
        );
        // signatures are given back on the same parts
        let sigs = |v: &Value| -> Vec<String> {
            v["candidates"][0]["content"]["parts"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|p| p["thoughtSignature"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(
            sigs(&g),
            sigs(&orig),
            "{}: thoughtSignatures survive",
            c.name
        );
        if !want.calls.is_empty() {
            assert_eq!(
                g["candidates"][0]["finishReason"], "STOP",
                "{}: Gemini clients get STOP with calls",
                c.name
            );
            let ids: Vec<&str> = r["output"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["type"] == "function_call")
                .map(|i| i["call_id"].as_str().unwrap())
                .collect();
            let mut uniq = ids.clone();
            uniq.sort();
            uniq.dedup();
            assert_eq!(
                uniq.len(),
                ids.len(),
                "{}: generated call ids are unique",
                c.name
            );
            // stable: converting again gives the same ids
            let again: Value = serde_json::from_slice(
                &convert_response(Format::Gemini, Format::OpenAiResponses, body, &ropts(false))
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(again["output"], r["output"], "{}: ids are stable", c.name);
        }
        checked += 1;
    }
    assert_eq!(checked, 12, "every non-streaming Gemini case checked");
}

#[test]
fn gemini_streams_split_anywhere_to_every_format() {
    let mut checked = 0;
    for c in cases("gemini") {
        let Some(body) = &c.response_sse else {
            continue;
        };
        let chunks = sse_data_events(body);
        let want = gemini_expect(&chunks);
        // → Responses client
        let out = stream_all_ways(
            &c.name,
            Format::Gemini,
            Format::OpenAiResponses,
            &ropts(false),
            body,
        );
        let fin = responses_stream_final(&c.name, &out);
        assert_same(&c.name, "gemini~>responses", &want, &read_responses(&fin));
        // → Gemini client, SSE and JSON array
        for sse in [true, false] {
            let out = stream_split(
                &c.name,
                Format::Gemini,
                Format::Gemini,
                &ropts(sse),
                body,
                sse,
            );
            let got = gemini_stream_chunks(&c.name, &out, sse);
            assert_same(&c.name, "gemini~>gemini", &want, &read_gemini(&got));
            assert_eq!(
                got.iter()
                    .filter(|c| c["candidates"][0]["finishReason"].is_string())
                    .count(),
                1,
                "{}: one finish chunk",
                c.name
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 6, "every Gemini stream checked");
}

// ------------------------------------------------------------------ Responses answers

#[test]
fn responses_answers_to_every_format() {
    let mut checked = 0;
    for c in cases("openai-responses") {
        let Some(body) = &c.response_json else {
            continue;
        };
        if c.status != 200 {
            let orig: Value = serde_json::from_slice(body).unwrap();
            for to in [Format::Gemini, Format::OpenAiChat, Format::Anthropic] {
                let e: Value = serde_json::from_slice(&convert_error(
                    Format::OpenAiResponses,
                    to,
                    c.status,
                    body,
                ))
                .unwrap();
                assert_eq!(
                    e["error"]["message"], orig["error"]["message"],
                    "{}: message into {to:?}",
                    c.name
                );
            }
            let g: Value = serde_json::from_slice(&convert_error(
                Format::OpenAiResponses,
                Format::Gemini,
                c.status,
                body,
            ))
            .unwrap();
            assert_eq!(
                g["error"]["code"], c.status,
                "{}: Gemini error code is the status",
                c.name
            );
            checked += 1;
            continue;
        }
        let orig: Value = serde_json::from_slice(body).unwrap();
        let want = responses_expect(&orig);
        let out = convert_response(Format::OpenAiResponses, Format::Gemini, body, &ropts(false))
            .expect("converts");
        let g: Value = serde_json::from_slice(&out).unwrap();
        assert_same(
            &c.name,
            "responses->gemini",
            &want,
            &read_gemini(std::slice::from_ref(&g)),
        );
        let um = &g["usageMetadata"];
        assert_eq!(
            um["candidatesTokenCount"].as_u64().unwrap()
                + um["thoughtsTokenCount"].as_u64().unwrap_or(0),
            want.output,
            "{}: candidates + thoughts = output",
            c.name
        );
        assert_eq!(um["totalTokenCount"], want.input + want.output);
        // → Responses through the IR: reasoning items keep id + encrypted_content
        let out = convert_response(
            Format::OpenAiResponses,
            Format::OpenAiResponses,
            body,
            &ropts(false),
        )
        .unwrap();
        let r: Value = serde_json::from_slice(&out).unwrap();
        assert_same(&c.name, "responses->responses", &want, &read_responses(&r));
        for (a, b) in orig["output"]
            .as_array()
            .unwrap()
            .iter()
            .zip(r["output"].as_array().unwrap())
        {
            assert_eq!(a["type"], b["type"], "{}: item order", c.name);
            if a["type"] == "reasoning" {
                assert_eq!(
                    a["encrypted_content"], b["encrypted_content"],
                    "{}: encrypted_content",
                    c.name
                );
                assert_eq!(a["id"], b["id"], "{}: reasoning id", c.name);
            }
            if a["type"] == "function_call" {
                assert_eq!(a["call_id"], b["call_id"], "{}: call_id", c.name);
            }
        }
        // Gemini clients get other providers' reasoning state wrapped, and it comes back.
        if orig["output"][0]["type"] == "reasoning" {
            let part = &g["candidates"][0]["content"]["parts"][0];
            assert_eq!(
                part["thought"], true,
                "{}: reasoning → thought part",
                c.name
            );
            let sig = part["thoughtSignature"]
                .as_str()
                .expect("wrapped signature");
            let back = json!({"contents": [
                {"role": "user", "parts": [{"text": "q"}]},
                {"role": "model", "parts": [part.clone(), {"text": "a"}]},
                {"role": "user", "parts": [{"text": "again"}]}
            ]});
            let req = translate::decode_request(Format::Gemini, &back).unwrap();
            let body = translate::encode_request(
                Format::OpenAiResponses,
                &req,
                &qopts(false),
                &mut translate::Dropped::default(),
            )
            .unwrap();
            let v: Value = serde_json::from_slice(&body).unwrap();
            let item = v["input"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["type"] == "reasoning")
                .expect("reasoning replayed");
            assert_eq!(
                item["encrypted_content"], orig["output"][0]["encrypted_content"],
                "{}: {sig:.20}… unwraps to the original",
                c.name
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 11, "every non-streaming Responses case checked");
}

#[test]
fn responses_streams_split_anywhere_to_every_format() {
    let mut checked = 0;
    for c in cases("openai-responses") {
        let Some(body) = &c.response_sse else {
            continue;
        };
        let events = sse_data_events(body);
        let last = events.last().unwrap();
        let want = responses_expect(&last["response"]);
        // Cutting at every byte costs O(n^2): the 190 KB stream is cut at
        // every byte of its first and last 8 KB (its middle repeats the same
        // event kinds); the others at every byte on the route to Gemini SSE.
        let opts = ropts(false);
        let out = if body.len() > 40_000 {
            let whole = split_feed(
                Format::OpenAiResponses,
                Format::OpenAiResponses,
                &opts,
                &[body],
            );
            for cut in (0..8192).chain(body.len() - 8192..=body.len()) {
                let got = split_feed(
                    Format::OpenAiResponses,
                    Format::OpenAiResponses,
                    &opts,
                    &[&body[..cut], &body[cut..]],
                );
                assert!(got == whole, "{}: cut at {cut}", c.name);
            }
            let bytes: Vec<&[u8]> = body.chunks(7).collect();
            assert!(
                split_feed(
                    Format::OpenAiResponses,
                    Format::OpenAiResponses,
                    &opts,
                    &bytes
                ) == whole
            );
            whole
        } else {
            stream_split(
                &c.name,
                Format::OpenAiResponses,
                Format::OpenAiResponses,
                &opts,
                body,
                false,
            )
        };
        let fin = responses_stream_final(&c.name, &out);
        assert_same(
            &c.name,
            "responses~>responses",
            &want,
            &read_responses(&fin),
        );
        for sse in [true, false] {
            let out = if body.len() > 40_000 {
                split_feed(
                    Format::OpenAiResponses,
                    Format::Gemini,
                    &ropts(sse),
                    &[body],
                )
            } else {
                stream_split(
                    &c.name,
                    Format::OpenAiResponses,
                    Format::Gemini,
                    &ropts(sse),
                    body,
                    sse,
                )
            };
            let got = gemini_stream_chunks(&c.name, &out, sse);
            assert_same(&c.name, "responses~>gemini", &want, &read_gemini(&got));
        }
        checked += 1;
    }
    assert_eq!(checked, 6, "every Responses stream checked");
}

#[test]
fn responses_in_stream_errors_fail_the_client_stream() {
    // insufficient_quota after response.created, as OpenAI sends it.
    let body = b"event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-4o\",\"output\":[]}}\n\nevent: response.failed\ndata: {\"type\":\"response.failed\",\"sequence_number\":1,\"response\":{\"id\":\"resp_1\",\"status\":\"failed\",\"error\":{\"code\":\"insufficient_quota\",\"message\":\"You exceeded your current quota\"}}}\n\n";
    let mut t = StreamTranslator::new(Format::OpenAiResponses, Format::Gemini, ropts(true));
    let mut out = Vec::new();
    t.feed(body, &mut out);
    assert_eq!(
        t.upstream_error(),
        Some((429, "You exceeded your current quota"))
    );
    assert!(!t.content_started());
    let chunks = gemini_stream_chunks("failed", &out, true);
    assert_eq!(chunks.last().unwrap()["error"]["code"], 429);
    // an `error` event
    let body = b"event: error\ndata: {\"type\":\"error\",\"sequence_number\":2,\"code\":\"server_error\",\"message\":\"boom\",\"param\":null}\n\n";
    let mut t = StreamTranslator::new(
        Format::OpenAiResponses,
        Format::OpenAiResponses,
        ropts(false),
    );
    let mut out = Vec::new();
    t.feed(b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_2\",\"model\":\"m\"}}\n\n", &mut out);
    t.feed(body, &mut out);
    assert_eq!(t.upstream_error(), Some((500, "boom")));
    let fin = responses_stream_final("error-event", &out);
    assert_eq!(fin["status"], "failed");
    // a stream cut before response.completed is an error, not a clean end
    let mut t = StreamTranslator::new(Format::Gemini, Format::OpenAiResponses, ropts(false));
    let mut out = Vec::new();
    t.feed(b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hel\"}],\"role\":\"model\"}}],\"responseId\":\"r\"}\r\n\r\n", &mut out);
    t.finish(&mut out);
    let fin = responses_stream_final("cut", &out);
    assert_eq!(fin["status"], "failed");
    assert_eq!(fin["output"][0]["content"][0]["text"], "Hel");
}

// ------------------------------------------------------------------ requests

fn gemini_texts(contents: &Value) -> Vec<String> {
    contents
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["parts"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["text"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn gemini_requests_to_every_format() {
    let mut checked = 0;
    for c in cases("gemini") {
        let req = &c.request;
        // Gemini → IR → Gemini keeps everything it understood.
        let out = convert_request(Format::Gemini, Format::Gemini, req, &qopts(false))
            .unwrap_or_else(|e| panic!("{}: {e:?}", c.name));
        let g: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(
            gemini_texts(&g["contents"]),
            gemini_texts(&req["contents"]),
            "{}: texts",
            c.name
        );
        let sys = |v: &Value| {
            v.get("systemInstruction")
                .or_else(|| v.get("system_instruction"))
                .map(|s| gemini_texts(&json!([s])))
        };
        assert_eq!(sys(&g), sys(req), "{}: system instruction", c.name);
        let calls = |v: &Value| -> Vec<(String, Value, Option<Vec<u8>>)> {
            use base64::Engine;
            v["contents"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|c| c["parts"].as_array().cloned().unwrap_or_default())
                .filter_map(|p| {
                    let fc = p.get("functionCall").or_else(|| p.get("function_call"))?;
                    let sig = p
                        .get("thoughtSignature")
                        .or_else(|| p.get("thought_signature"))
                        .and_then(Value::as_str)
                        .map(|s| {
                            base64::engine::general_purpose::URL_SAFE_NO_PAD
                                .decode(s.trim_end_matches('=').replace('+', "-").replace('/', "_"))
                                .expect("base64 signature")
                        });
                    Some((
                        fc["name"].as_str().unwrap().to_string(),
                        fc["args"].clone(),
                        sig,
                    ))
                })
                .collect()
        };
        assert_eq!(
            calls(&g),
            calls(req),
            "{}: function calls and their signature bytes",
            c.name
        );
        for p in g["contents"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["parts"].as_array().unwrap())
        {
            if let Some(s) = p["thoughtSignature"].as_str() {
                assert!(
                    !s.contains('-') && !s.contains('_'),
                    "{}: signatures go out as standard base64",
                    c.name
                );
            }
            if let Some(d) = p["inlineData"]["data"].as_str() {
                assert!(
                    !d.contains('-') && !d.contains('_') && d.len() % 4 == 0,
                    "{}: inline data as standard base64",
                    c.name
                );
            }
        }
        // tools keep names; parameters pass the allow-list
        let names = |v: &Value| -> Vec<String> {
            v["tools"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .flat_map(|t| {
                            t["functionDeclarations"]
                                .as_array()
                                .cloned()
                                .unwrap_or_default()
                        })
                        .map(|d| d["name"].as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(names(&g), names(req), "{}: tool names", c.name);
        assert!(
            !String::from_utf8_lossy(&out.body).contains("additionalProperties"),
            "{}: schema sanitised",
            c.name
        );
        // toolConfig: same mode; a restriction to names becomes the tool list itself.
        let fcc = |v: &Value| v["toolConfig"]["functionCallingConfig"].clone();
        assert_eq!(
            fcc(&g)["mode"],
            fcc(req)["mode"],
            "{}: toolConfig mode",
            c.name
        );
        if let Some(allowed) = fcc(req)["allowedFunctionNames"].as_array() {
            for n in names(&g) {
                assert!(
                    allowed.contains(&json!(n)),
                    "{}: only allowed tools offered",
                    c.name
                );
            }
        }

        // Gemini → Responses
        match convert_request(Format::Gemini, Format::OpenAiResponses, req, &qopts(true)) {
            Ok(out) => {
                let r: Value = serde_json::from_slice(&out.body).unwrap();
                assert_eq!(r["model"], "target-model");
                assert_eq!(r["stream"], true);
                assert_eq!(r["store"], false);
                if let Some(s) = sys(req) {
                    assert_eq!(
                        r["instructions"],
                        s.join("\n\n"),
                        "{}: instructions",
                        c.name
                    );
                }
                let items = r["input"].as_array().unwrap();
                let fc: Vec<&Value> = items
                    .iter()
                    .filter(|i| i["type"] == "function_call")
                    .collect();
                let fo: Vec<&Value> = items
                    .iter()
                    .filter(|i| i["type"] == "function_call_output")
                    .collect();
                assert_eq!(
                    fc.len(),
                    calls(req).len(),
                    "{}: function_call items",
                    c.name
                );
                assert_eq!(fc.len(), fo.len(), "{}: every call answered", c.name);
                for (a, b) in fc.iter().zip(&fo) {
                    assert_eq!(
                        a["call_id"], b["call_id"],
                        "{}: output answers its call",
                        c.name
                    );
                }
                let gc = req.get("generationConfig").cloned().unwrap_or(json!({}));
                if let Some(m) = gc.get("maxOutputTokens") {
                    assert_eq!(&r["max_output_tokens"], m);
                }
                if let Some(t) = gc.get("temperature") {
                    assert_eq!(&r["temperature"], t);
                }
                for t in r["tools"].as_array().cloned().unwrap_or_default() {
                    assert_eq!(t["type"], "function");
                    assert_eq!(
                        t["parameters"]["type"], "object",
                        "{}: JSON schema types are lower-case",
                        c.name
                    );
                }
                if c.name == "image-input" {
                    let img = &items[0]["content"][1];
                    assert_eq!(img["type"], "input_image");
                    let url = img["image_url"].as_str().unwrap();
                    assert!(
                        url.starts_with("data:image/jpeg;base64,/9j/"),
                        "{}: url-safe base64 re-encoded",
                        c.name
                    );
                }
            }
            Err(e) => {
                // Only what Responses cannot express is refused, by name.
                let p = e.param.clone().unwrap_or_default();
                assert_eq!(e.status, 400);
                assert!(
                    [
                        "stop",
                        "safetySettings",
                        "generationConfig.responseModalities"
                    ]
                    .contains(&p.as_str())
                        || p.starts_with("messages["),
                    "{}: unexpected refusal {e:?}",
                    c.name
                );
                if c.name == "stop-sequence" {
                    assert_eq!(p, "stop");
                }
                if c.name == "safety-block" {
                    assert_eq!(p, "safetySettings");
                }
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 18);
}

#[test]
fn responses_requests_to_every_format() {
    let mut checked = 0;
    for c in cases("openai-responses") {
        let req = &c.request;
        let ir = translate::decode_request(Format::OpenAiResponses, req)
            .unwrap_or_else(|e| panic!("{}: {e:?}", c.name));
        assert_eq!(ir.model, req["model"].as_str().unwrap());
        // → Gemini
        let out = convert_request(Format::OpenAiResponses, Format::Gemini, req, &qopts(false))
            .unwrap_or_else(|e| panic!("{}: {e:?}", c.name));
        let g: Value = serde_json::from_slice(&out.body).unwrap();
        assert!(
            g.get("model").is_none(),
            "{}: Gemini bodies carry no model",
            c.name
        );
        if let Some(i) = req["instructions"].as_str().filter(|s| !s.is_empty()) {
            assert_eq!(
                g["systemInstruction"]["parts"][0]["text"], i,
                "{}: instructions",
                c.name
            );
        }
        let input_texts: Vec<String> = match &req["input"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .filter_map(|i| match &i["content"] {
                    Value::String(s) => Some(vec![s.clone()]),
                    Value::Array(p) => Some(
                        p.iter()
                            .filter_map(|p| p["text"].as_str().map(str::to_string))
                            .collect(),
                    ),
                    _ => None,
                })
                .flatten()
                .collect(),
            _ => unreachable!(),
        };
        assert_eq!(
            gemini_texts(&g["contents"]),
            input_texts,
            "{}: message texts",
            c.name
        );
        // roles alternate user/model after merging
        let roles: Vec<&str> = g["contents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["role"].as_str().unwrap())
            .collect();
        assert!(
            roles.windows(2).all(|w| w[0] != w[1]),
            "{}: consecutive turns merged: {roles:?}",
            c.name
        );
        // function calls and responses pair up by name
        let parts: Vec<&Value> = g["contents"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["parts"].as_array().unwrap())
            .collect();
        let calls: Vec<&str> = parts
            .iter()
            .filter_map(|p| p["functionCall"]["name"].as_str())
            .collect();
        let resps: Vec<&str> = parts
            .iter()
            .filter_map(|p| p["functionResponse"]["name"].as_str())
            .collect();
        assert_eq!(
            calls, resps,
            "{}: functionResponse names from the calls",
            c.name
        );
        for p in &parts {
            if let Some(r) = p.get("functionResponse") {
                assert!(
                    r["response"].is_object(),
                    "{}: response is an object",
                    c.name
                );
            }
        }
        if let Some(tools) = req["tools"].as_array() {
            let decls = g["tools"][0]["functionDeclarations"].as_array().unwrap();
            assert_eq!(decls.len(), tools.len());
            assert!(
                !String::from_utf8_lossy(&out.body).contains("additionalProperties"),
                "{}: sanitised",
                c.name
            );
        }
        if let Some(m) = req.get("max_output_tokens") {
            assert_eq!(&g["generationConfig"]["maxOutputTokens"], m);
        }
        if let Some(e) = req["reasoning"]["effort"].as_str() {
            let budget = g["generationConfig"]["thinkingConfig"]["thinkingBudget"]
                .as_u64()
                .unwrap();
            assert_eq!(
                Some(budget),
                aigate::ir::effort_to_budget(e),
                "{}: effort → budget",
                c.name
            );
            assert_eq!(
                g["generationConfig"]["thinkingConfig"]["includeThoughts"],
                true
            );
        }
        if c.name == "image-input" {
            assert_eq!(
                parts[1]["fileData"]["fileUri"],
                req["input"][0]["content"][1]["image_url"]
            );
            assert_eq!(parts[1]["fileData"]["mimeType"], "image/jpeg");
        }
        // → Responses through the IR: reasoning/function items first-class, in order
        let out = convert_request(
            Format::OpenAiResponses,
            Format::OpenAiResponses,
            req,
            &qopts(false),
        )
        .unwrap();
        let r: Value = serde_json::from_slice(&out.body).unwrap();
        if let Value::Array(items) = &req["input"] {
            let kinds = |a: &[Value]| -> Vec<String> {
                a.iter()
                    .map(|i| i["type"].as_str().unwrap_or("message").to_string())
                    .collect()
            };
            assert_eq!(
                kinds(r["input"].as_array().unwrap()),
                kinds(items),
                "{}: item kinds in order",
                c.name
            );
            for (a, b) in items.iter().zip(r["input"].as_array().unwrap()) {
                for k in ["call_id", "name", "encrypted_content", "id", "output"] {
                    if a.get(k).is_some_and(|v| !v.is_null()) {
                        assert_eq!(a[k], b[k], "{}: {k}", c.name);
                    }
                }
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 17);
}

#[test]
fn responses_features_other_upstreams_cannot_express_are_400s() {
    for (body, param) in [
        (
            json!({"model": "m", "input": "hi", "previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
        (
            json!({"model": "m", "input": "hi", "tools": [{"type": "web_search"}]}),
            "tools[0]",
        ),
        (
            json!({"model": "m", "input": [{"type": "web_search_call", "id": "ws_1", "status": "completed"}]}),
            "messages[0].content[0]",
        ),
    ] {
        for to in [Format::Gemini, Format::OpenAiChat, Format::Anthropic] {
            if to == Format::Anthropic && body["tools"][0]["type"] == "web_search" {
                // Anthropic runs a web search of its own (README "What a target
                // cannot express").
                let c = convert_request(Format::OpenAiResponses, to, &body, &qopts(false)).unwrap();
                let v: Value = serde_json::from_slice(&c.body).unwrap();
                assert_eq!(v["tools"][0]["type"], "web_search_20250305");
                continue;
            }
            let e = convert_request(Format::OpenAiResponses, to, &body, &qopts(false)).unwrap_err();
            assert_eq!(e.status, 400, "{body} -> {to:?}");
            let p = e.param.clone().unwrap_or_default();
            // the field itself, or the item/tool holding it
            assert!(
                p == param
                    || p.starts_with(param.split('[').next().unwrap())
                    || e.message.contains(param),
                "{body} -> {to:?}: {e:?}"
            );
            if to == Format::Gemini {
                assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
            }
        }
    }
    // store (and other hints) are fine everywhere: left out and named, but
    // for store: false, which every other upstream does anyway
    for to in [Format::Gemini, Format::OpenAiChat, Format::Anthropic] {
        for (store, named) in [
            (false, &["metadata", "prompt_cache_key"][..]),
            (true, &["metadata", "prompt_cache_key", "store"][..]),
        ] {
            let c = convert_request(
                Format::OpenAiResponses,
                to,
                &json!({"model": "m", "input": "hi", "store": store, "metadata": {"k": "v"}, "prompt_cache_key": "x"}),
                &qopts(false),
            )
            .unwrap_or_else(|e| panic!("{to:?}: {e:?}"));
            assert_eq!(c.dropped.paths(), named, "{to:?}");
        }
    }
    // bad input: 400 naming the field, never a panic
    for (body, param) in [
        (json!({"model": "m"}), "input"),
        (json!({"model": "m", "input": 5}), "input"),
        (
            json!({"model": "m", "input": [{"type": "function_call", "name": "f"}]}),
            "input[0].call_id",
        ),
        (
            json!({"model": "m", "input": "x", "temperature": "hot"}),
            "temperature",
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema"}}}),
            "text.format.schema",
        ),
    ] {
        let e = translate::decode_request(Format::OpenAiResponses, &body).unwrap_err();
        assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
    }
}

// ------------------------------------------------------------------ fuzzing

/// Structure-aware random inputs for the Gemini and Responses converters: JSON
/// trees built from the field names and values these formats use, plus byte
/// mutations and splices of the corpus. Nothing may panic; every stream must
/// end. `AIGATE_FUZZ_ITERS` raises the iteration count (default 3000) for a
/// longer bounded run: `AIGATE_FUZZ_ITERS=2000000 cargo test --release --test
/// corpus_gemini_responses fuzz_`.
#[test]
fn fuzz_gemini_and_responses_converters() {
    const KEYS: &[&str] = &[
        "contents",
        "parts",
        "role",
        "text",
        "thought",
        "thoughtSignature",
        "thought_signature",
        "functionCall",
        "functionResponse",
        "name",
        "args",
        "id",
        "response",
        "inlineData",
        "inline_data",
        "mimeType",
        "data",
        "fileData",
        "fileUri",
        "systemInstruction",
        "tools",
        "functionDeclarations",
        "parameters",
        "parametersJsonSchema",
        "toolConfig",
        "functionCallingConfig",
        "mode",
        "allowedFunctionNames",
        "generationConfig",
        "temperature",
        "maxOutputTokens",
        "stopSequences",
        "thinkingConfig",
        "thinkingBudget",
        "includeThoughts",
        "responseSchema",
        "responseMimeType",
        "candidates",
        "content",
        "finishReason",
        "usageMetadata",
        "promptTokenCount",
        "candidatesTokenCount",
        "thoughtsTokenCount",
        "responseId",
        "error",
        "code",
        "message",
        "status",
        "type",
        "properties",
        "items",
        "$ref",
        "$defs",
        "anyOf",
        "enum",
        "const",
        "required",
        "input",
        "instructions",
        "call_id",
        "arguments",
        "output",
        "summary",
        "encrypted_content",
        "tool_choice",
        "reasoning",
        "effort",
        "format",
        "schema",
        "max_output_tokens",
        "store",
        "previous_response_id",
        "item",
        "output_index",
        "content_index",
        "delta",
        "sequence_number",
        "usage",
        "input_tokens",
        "output_tokens",
        "incomplete_details",
        "reason",
        "image_url",
        "model",
    ];
    const STRS: &[&str] = &[
        "user",
        "model",
        "assistant",
        "system",
        "developer",
        "message",
        "function_call",
        "function_call_output",
        "reasoning",
        "input_text",
        "input_image",
        "output_text",
        "STOP",
        "MAX_TOKENS",
        "SAFETY",
        "ANY",
        "AUTO",
        "NONE",
        "OBJECT",
        "STRING",
        "object",
        "string",
        "array",
        "null",
        "image/png",
        "application/pdf",
        "response.created",
        "response.output_item.added",
        "response.output_text.delta",
        "response.function_call_arguments.delta",
        "response.output_item.done",
        "response.completed",
        "response.incomplete",
        "response.failed",
        "response.reasoning_summary_text.delta",
        "json_schema",
        "#/$defs/A",
        "data:image/png;base64,iVBO",
        "YWlnYXRlMTp7fQ==",
        "_-_-",
        "",
        "{}",
        "{\"a\":",
        "f",
    ];
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }
    fn arb(r: &mut Rng, depth: usize) -> Value {
        match r.below(if depth > 5 { 4 } else { 8 }) {
            0 => Value::Null,
            1 => json!(r.below(3) == 0),
            2 => json!(r.next() as i64 % 1000 - 10),
            3 => json!(STRS[r.below(STRS.len())]),
            4 | 5 => Value::Array((0..r.below(4)).map(|_| arb(r, depth + 1)).collect()),
            _ => {
                let mut m = serde_json::Map::new();
                for _ in 0..1 + r.below(5) {
                    m.insert(KEYS[r.below(KEYS.len())].to_string(), arb(r, depth + 1));
                }
                Value::Object(m)
            }
        }
    }
    let iters: usize = std::env::var("AIGATE_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for f in ["gemini", "openai-responses"] {
        for c in cases(f) {
            seeds.extend(c.response_json.clone());
            seeds.extend(c.response_sse.clone());
            seeds.push(serde_json::to_vec(&c.request).unwrap());
        }
    }
    let formats = [
        Format::Gemini,
        Format::OpenAiResponses,
        Format::OpenAiChat,
        Format::Anthropic,
    ];
    let mut r = Rng(0x2545F4914F6CDD1D);
    let started = std::time::Instant::now();
    for i in 0..iters {
        let from = [Format::Gemini, Format::OpenAiResponses][i % 2];
        let to = formats[r.below(4)];
        let bytes: Vec<u8> = match r.below(3) {
            0 => serde_json::to_vec(&arb(&mut r, 0)).unwrap(),
            1 => {
                // an SSE stream of generated events
                let mut b = Vec::new();
                for _ in 0..1 + r.below(6) {
                    b.extend_from_slice(b"data: ");
                    b.extend_from_slice(&serde_json::to_vec(&arb(&mut r, 0)).unwrap());
                    b.extend_from_slice(if r.below(2) == 0 {
                        b"\r\n\r\n"
                    } else {
                        b"\n\n"
                    });
                }
                b
            }
            _ => {
                let a = &seeds[r.below(seeds.len())];
                let b = &seeds[r.below(seeds.len())];
                let (x, y) = (r.below(a.len() + 1), r.below(b.len() + 1));
                let mut m = a[..x].to_vec();
                m.extend_from_slice(&b[y..]);
                for _ in 0..r.below(4) {
                    if !m.is_empty() {
                        let p = r.below(m.len());
                        m[p] = r.next() as u8;
                    }
                }
                m
            }
        };
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
            let _ = translate::convert_request(from, to, &v, &qopts(i % 3 == 0));
        }
        let _ = convert_response(from, to, &bytes, &ropts(i % 2 == 0));
        let mut t = StreamTranslator::new(from, to, ropts(i % 2 == 0));
        let mut out = Vec::new();
        let cut = r.below(bytes.len() + 1);
        t.feed(&bytes[..cut], &mut out);
        t.feed(&bytes[cut..], &mut out);
        t.finish(&mut out);
        assert!(
            t.is_finished(),
            "iteration {i}: the client stream was not ended"
        );
    }
    eprintln!(
        "fuzz: {iters} inputs in {:.1}s, no panic",
        started.elapsed().as_secs_f64()
    );
}

// ------------------------------------------------------------------ into OpenAI Chat and Anthropic

/// What an OpenAI Chat answer says.
fn read_chat(v: &Value) -> Expect {
    let m = &v["choices"][0]["message"];
    let mut e = Expect {
        text: m["content"].as_str().unwrap_or_default().to_string(),
        thinking: m["reasoning_content"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        finish: v["choices"][0]["finish_reason"]
            .as_str()
            .unwrap()
            .to_string(),
        ..Default::default()
    };
    for c in m["tool_calls"].as_array().cloned().unwrap_or_default() {
        e.calls.push((
            c["function"]["name"].as_str().unwrap().to_string(),
            serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap(),
        ));
    }
    read_chat_usage(&v["usage"], &mut e);
    e
}

fn read_chat_usage(u: &Value, e: &mut Expect) {
    e.input = u["prompt_tokens"].as_u64().unwrap();
    e.cached = u["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or(0);
    e.output = u["completion_tokens"].as_u64().unwrap();
    e.reasoning = u["completion_tokens_details"]["reasoning_tokens"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        e.input + e.output,
        "chat total_tokens"
    );
}

fn anthropic_finish(s: &str) -> String {
    match s {
        "end_turn" => "stop",
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        other => other,
    }
    .to_string()
}

/// What an Anthropic answer says (the reasoning count is
/// `output_tokens_details.thinking_tokens`).
fn read_anthropic(v: &Value) -> Expect {
    let mut e = Expect::default();
    for b in v["content"].as_array().unwrap() {
        match b["type"].as_str().unwrap() {
            "text" => e.text.push_str(b["text"].as_str().unwrap()),
            "thinking" => e.thinking.push_str(b["thinking"].as_str().unwrap()),
            "tool_use" => e
                .calls
                .push((b["name"].as_str().unwrap().to_string(), b["input"].clone())),
            _ => {}
        }
    }
    e.finish = anthropic_finish(v["stop_reason"].as_str().unwrap());
    let u = &v["usage"];
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    e.cached = n("cache_read_input_tokens");
    e.input = n("input_tokens") + e.cached + n("cache_creation_input_tokens");
    e.output = n("output_tokens");
    e.reasoning = u["output_tokens_details"]["thinking_tokens"]
        .as_u64()
        .unwrap_or(0);
    e
}

/// Parse an OpenAI Chat client stream (checking its framing) into what it says.
fn chat_stream(case: &str, bytes: &[u8]) -> Expect {
    let text = std::str::from_utf8(bytes).unwrap();
    assert!(
        text.ends_with("data: [DONE]\n\n"),
        "{case}: chat stream ends with [DONE]"
    );
    let mut e = Expect::default();
    let mut calls: Vec<(String, String)> = Vec::new();
    let mut first = true;
    for frame in text.split("\n\n").filter(|f| !f.is_empty()) {
        let data = frame.strip_prefix("data: ").expect("data frame");
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        if let Some(ch) = v["choices"].get(0) {
            let d = &ch["delta"];
            if first {
                assert_eq!(
                    d["role"], "assistant",
                    "{case}: first chunk carries the role"
                );
                first = false;
            }
            e.text.push_str(d["content"].as_str().unwrap_or_default());
            e.thinking
                .push_str(d["reasoning_content"].as_str().unwrap_or_default());
            for tc in d["tool_calls"].as_array().cloned().unwrap_or_default() {
                let i = tc["index"].as_u64().unwrap() as usize;
                if i == calls.len() {
                    assert!(
                        tc["id"].is_string(),
                        "{case}: first delta of a call has its id"
                    );
                    calls.push((
                        tc["function"]["name"].as_str().unwrap().to_string(),
                        String::new(),
                    ));
                }
                calls[i]
                    .1
                    .push_str(tc["function"]["arguments"].as_str().unwrap_or_default());
            }
            if let Some(f) = ch["finish_reason"].as_str() {
                e.finish = f.to_string();
            }
        }
        if v["usage"].is_object() {
            read_chat_usage(&v["usage"], &mut e);
        }
    }
    e.calls = calls
        .into_iter()
        .map(|(n, a)| (n, serde_json::from_str(&a).unwrap()))
        .collect();
    e
}

/// Parse an Anthropic client stream, checking the event grammar Claude Code relies on.
fn anthropic_stream(case: &str, bytes: &[u8]) -> Expect {
    let text = std::str::from_utf8(bytes).unwrap();
    let mut e = Expect::default();
    let mut names = Vec::new();
    let mut open: Option<(u64, String)> = None;
    let mut next_index = 0;
    let mut args = String::new();
    let mut start_usage = Value::Null;
    let mut delta_usage = Value::Null;
    for frame in text.split("\n\n").filter(|f| !f.is_empty()) {
        let mut lines = frame.lines();
        let ev = lines
            .next()
            .and_then(|l| l.strip_prefix("event: "))
            .expect("event line");
        let v: Value = serde_json::from_str(
            lines
                .next()
                .and_then(|l| l.strip_prefix("data: "))
                .expect("data"),
        )
        .unwrap();
        assert_eq!(v["type"], ev, "{case}");
        names.push(ev.to_string());
        match ev {
            "message_start" => {
                assert_eq!(names.len(), 1, "{case}: message_start first");
                start_usage = v["message"]["usage"].clone();
            }
            "content_block_start" => {
                assert!(open.is_none(), "{case}: one block at a time");
                assert_eq!(v["index"], next_index, "{case}: block indices in order");
                next_index += 1;
                let b = &v["content_block"];
                let ty = b["type"].as_str().unwrap().to_string();
                if ty == "tool_use" {
                    e.calls
                        .push((b["name"].as_str().unwrap().to_string(), Value::Null));
                    args.clear();
                }
                open = Some((v["index"].as_u64().unwrap(), ty));
            }
            "content_block_delta" => {
                let (i, ty) = open.clone().expect("delta inside a block");
                assert_eq!(v["index"], i);
                let d = &v["delta"];
                match d["type"].as_str().unwrap() {
                    "text_delta" => e.text.push_str(d["text"].as_str().unwrap()),
                    "thinking_delta" => e.thinking.push_str(d["thinking"].as_str().unwrap()),
                    "input_json_delta" => args.push_str(d["partial_json"].as_str().unwrap()),
                    "signature_delta" => {
                        assert_eq!(ty, "thinking", "{case}: signature on a thinking block")
                    }
                    other => panic!("{case}: delta {other}"),
                }
            }
            "content_block_stop" => {
                let (i, ty) = open.take().expect("stop of an open block");
                assert_eq!(v["index"], i);
                if ty == "tool_use" {
                    e.calls.last_mut().unwrap().1 = if args.is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(&args).unwrap()
                    };
                }
            }
            "message_delta" => {
                assert!(open.is_none(), "{case}: blocks closed before message_delta");
                e.finish = anthropic_finish(v["delta"]["stop_reason"].as_str().unwrap());
                delta_usage = v["usage"].clone();
            }
            "message_stop" | "ping" => {}
            other => panic!("{case}: unexpected event {other}"),
        }
    }
    assert_eq!(
        names.last().map(String::as_str),
        Some("message_stop"),
        "{case}: message_stop last"
    );
    assert_eq!(
        names.iter().filter(|n| *n == "message_delta").count(),
        1,
        "{case}: exactly one message_delta"
    );
    let n = |k: &str| {
        delta_usage[k]
            .as_u64()
            .or_else(|| start_usage[k].as_u64())
            .unwrap_or(0)
    };
    e.cached = n("cache_read_input_tokens");
    e.input = n("input_tokens") + e.cached + n("cache_creation_input_tokens");
    e.output = n("output_tokens");
    e.reasoning = delta_usage["output_tokens_details"]["thinking_tokens"]
        .as_u64()
        .unwrap_or(0);
    e
}

#[test]
fn gemini_and_responses_answers_to_chat_and_anthropic() {
    let mut checked = 0;
    for (fmt, from) in [
        ("gemini", Format::Gemini),
        ("openai-responses", Format::OpenAiResponses),
    ] {
        for c in cases(fmt) {
            let Some(body) = &c.response_json else {
                continue;
            };
            if c.status != 200 {
                continue;
            }
            let orig: Value = serde_json::from_slice(body).unwrap();
            let want = if from == Format::Gemini {
                gemini_expect(std::slice::from_ref(&orig))
            } else {
                responses_expect(&orig)
            };
            let chat: Value = serde_json::from_slice(
                &convert_response(from, Format::OpenAiChat, body, &ropts(false)).unwrap(),
            )
            .unwrap();
            assert_same(&c.name, "->chat", &want, &read_chat(&chat));
            let an: Value = serde_json::from_slice(
                &convert_response(from, Format::Anthropic, body, &ropts(false)).unwrap(),
            )
            .unwrap();
            assert_same(&c.name, "->anthropic", &want, &read_anthropic(&an));
            checked += 1;
        }
    }
    assert_eq!(checked, 12 + 6, "every successful non-streaming answer");
}

#[test]
fn gemini_and_responses_streams_to_chat_and_anthropic() {
    let mut checked = 0;
    for (fmt, from) in [
        ("gemini", Format::Gemini),
        ("openai-responses", Format::OpenAiResponses),
    ] {
        for c in cases(fmt) {
            let Some(body) = &c.response_sse else {
                continue;
            };
            let events = sse_data_events(body);
            let want = if from == Format::Gemini {
                gemini_expect(&events)
            } else {
                responses_expect(&events.last().unwrap()["response"])
            };
            let big = body.len() > 40_000;
            let chat = if big {
                split_feed(from, Format::OpenAiChat, &ropts(false), &[body])
            } else {
                stream_split(
                    &c.name,
                    from,
                    Format::OpenAiChat,
                    &ropts(false),
                    body,
                    false,
                )
            };
            assert_same(&c.name, "~>chat", &want, &chat_stream(&c.name, &chat));
            let an = if big {
                split_feed(from, Format::Anthropic, &ropts(false), &[body])
            } else {
                stream_split(&c.name, from, Format::Anthropic, &ropts(false), body, false)
            };
            assert_same(
                &c.name,
                "~>anthropic",
                &want,
                &anthropic_stream(&c.name, &an),
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 12, "every stream");
}

/// Texts of a Chat request's messages, in order (system excluded).
fn chat_texts(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for m in v["messages"].as_array().unwrap() {
        if m["role"] == "system" || m["role"] == "developer" || m["role"] == "tool" {
            continue;
        }
        match &m["content"] {
            Value::String(s) => out.push(s.clone()),
            Value::Array(parts) => out.extend(
                parts
                    .iter()
                    .filter_map(|p| p["text"].as_str().map(str::to_string)),
            ),
            _ => {}
        }
    }
    out
}

fn anthropic_texts(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for m in v["messages"].as_array().unwrap() {
        match &m["content"] {
            Value::String(s) => out.push(s.clone()),
            Value::Array(parts) => out.extend(
                parts
                    .iter()
                    .filter(|p| p["type"] == "text")
                    .filter_map(|p| p["text"].as_str().map(str::to_string)),
            ),
            _ => {}
        }
    }
    out
}

#[test]
fn gemini_and_responses_requests_to_chat_and_anthropic() {
    let mut checked = 0;
    for (fmt, from) in [
        ("gemini", Format::Gemini),
        ("openai-responses", Format::OpenAiResponses),
    ] {
        for c in cases(fmt) {
            let ir = translate::decode_request(from, &c.request).unwrap();
            let texts: Vec<String> = ir
                .messages
                .iter()
                .flat_map(|m| m.content.iter())
                .filter_map(|p| match p {
                    aigate::ir::Part::Text(t) if !t.text.is_empty() => Some(t.text.clone()),
                    _ => None,
                })
                .collect();
            let ncalls = ir
                .messages
                .iter()
                .flat_map(|m| m.content.iter())
                .filter(|p| matches!(p, aigate::ir::Part::ToolCall(_)))
                .count();
            for to in [Format::OpenAiChat, Format::Anthropic] {
                match convert_request(from, to, &c.request, &qopts(false)) {
                    Ok(out) => {
                        let v: Value = serde_json::from_slice(&out.body).unwrap();
                        assert_eq!(v["model"], "target-model", "{} {to:?}", c.name);
                        let got: Vec<String> = if to == Format::OpenAiChat {
                            chat_texts(&v)
                        } else {
                            anthropic_texts(&v)
                        }
                        .into_iter()
                        .filter(|t| !t.is_empty())
                        .collect();
                        // (a target that needs a non-empty first turn may repeat the system text there)
                        let sys: Vec<&str> = ir.system.iter().map(|t| t.text.as_str()).collect();
                        let got: Vec<String> = got
                            .into_iter()
                            .filter(|t| texts.contains(t) || !sys.contains(&t.as_str()))
                            .collect();
                        assert_eq!(got, texts, "{} {to:?}: message texts in order", c.name);
                        // every call answered by a result carrying its id
                        let s = String::from_utf8_lossy(&out.body);
                        if to == Format::OpenAiChat {
                            let calls: Vec<String> = v["messages"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .flat_map(|m| {
                                    m["tool_calls"].as_array().cloned().unwrap_or_default()
                                })
                                .map(|t| t["id"].as_str().unwrap().to_string())
                                .collect();
                            assert_eq!(calls.len(), ncalls, "{}: tool calls", c.name);
                            for id in &calls {
                                assert!(
                                    v["messages"]
                                        .as_array()
                                        .unwrap()
                                        .iter()
                                        .any(|m| m["role"] == "tool" && m["tool_call_id"] == **id),
                                    "{}: result for {id}",
                                    c.name
                                );
                            }
                        } else {
                            assert_eq!(
                                s.matches("\"tool_use\"").count(),
                                ncalls,
                                "{}: tool_use blocks",
                                c.name
                            );
                            assert_eq!(
                                s.matches("\"tool_result\"").count(),
                                ncalls,
                                "{}: tool_result blocks",
                                c.name
                            );
                        }
                    }
                    Err(e) => {
                        assert_eq!(e.status, 400, "{} {to:?}: {e:?}", c.name);
                        let p = e.param.clone().unwrap_or_default();
                        assert!(
                            ["safetySettings", "generationConfig.responseModalities"]
                                .contains(&p.as_str())
                                || p.starts_with("messages[")
                                || p.starts_with("input["),
                            "{} {to:?}: unexpected refusal {e:?}",
                            c.name
                        );
                    }
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 35);
}

/// Passthrough metering reads only the usage of an answer; it must agree with
/// the full decode on every recorded answer of every format.
#[test]
fn answer_usage_matches_the_full_decode_on_every_recorded_answer() {
    let mut checked = 0;
    for (dir, format) in [
        ("openai-chat", Format::OpenAiChat),
        ("anthropic-messages", Format::Anthropic),
        ("gemini", Format::Gemini),
        ("openai-responses", Format::OpenAiResponses),
    ] {
        for case in cases(dir) {
            let (Some(body), 200) = (&case.response_json, case.status) else {
                continue;
            };
            let full = aigate::translate::decode_response(format, body)
                .unwrap_or_else(|e| panic!("{dir}/{}: {e:?}", case.name));
            let quick = aigate::translate::response_usage(format, body);
            // The byte search decides on real answers: the full decode is
            // only a fallback.
            let key = if format == Format::Gemini {
                "usageMetadata"
            } else {
                "usage"
            };
            assert!(
                matches!(
                    aigate::translate::tail_field::last_top_level(body, key),
                    aigate::translate::tail_field::Found::Value(_)
                ),
                "{dir}/{}: usage not found by the byte search",
                case.name
            );
            assert_eq!(
                quick,
                Some(full.usage),
                "{dir}/{}: usage read alone differs from the full decode",
                case.name
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} recorded answers checked");
}
