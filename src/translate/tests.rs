//! Behaviour of the OpenAI Chat ⇄ Anthropic conversions on hand-made inputs:
//! each test is one rule from issue 3 ("where the peers break") or SPEC.
//! The recorded corpus is exercised by tests/corpus_chat_anthropic.rs.

use super::*;
use serde_json::{Value, json};

const OA: Format = Format::OpenAiChat;
const AN: Format = Format::Anthropic;

fn ropts(stream: bool) -> RequestOpts {
    RequestOpts {
        model: "up".into(),
        stream,
    }
}

fn req(from: Format, to: Format, body: Value) -> Result<Value, TranslateError> {
    convert_request(from, to, &body, &ropts(body["stream"] == true))
        .map(|c| serde_json::from_slice(&c.body).unwrap())
}

fn ok(from: Format, to: Format, body: Value) -> Value {
    req(from, to, body).unwrap_or_else(|e| panic!("conversion failed: {e:?}"))
}

fn err(from: Format, to: Format, body: Value) -> TranslateError {
    req(from, to, body).expect_err("expected a 400")
}

fn resp(from: Format, to: Format, body: Value) -> Value {
    let o = ResponseOpts {
        client_model: "cm".into(),
        ..Default::default()
    };
    serde_json::from_slice(&convert_response(from, to, body.to_string().as_bytes(), &o).unwrap())
        .unwrap()
}

fn stream_with(
    from: Format,
    to: Format,
    include_usage: bool,
    input: &str,
) -> (Vec<(String, Value)>, StreamTranslator) {
    let o = ResponseOpts {
        client_model: "cm".into(),
        include_usage,
        gemini_sse: false,
        ..Default::default()
    };
    let mut t = StreamTranslator::new_at(from, to, o, 7);
    let mut out = Vec::new();
    t.feed(input.as_bytes(), &mut out);
    t.finish(&mut out);
    (parse_events(&out), t)
}

fn stream(from: Format, to: Format, input: &str) -> Vec<(String, Value)> {
    stream_with(from, to, false, input).0
}

fn parse_events(out: &[u8]) -> Vec<(String, Value)> {
    let mut p = sse::Parser::default();
    let mut evs = Vec::new();
    let mut on = |e: sse::Event<'_>| {
        let v = if e.data == b"[DONE]" {
            json!("[DONE]")
        } else {
            serde_json::from_slice(e.data)
                .unwrap_or_else(|x| panic!("bad JSON {x}: {:?}", String::from_utf8_lossy(e.data)))
        };
        evs.push((e.event.to_string(), v));
    };
    p.feed(out, &mut on).unwrap();
    p.finish(&mut on).unwrap();
    evs
}

/// `data:` lines of OpenAI chunks, from JSON values.
fn oa_sse(chunks: &[Value]) -> String {
    let mut s = String::new();
    for c in chunks {
        let mut c = c.clone();
        if c.is_object() {
            c["id"] = json!("chatcmpl-1");
            c["model"] = json!("gpt");
            c["created"] = json!(5);
            c["object"] = json!("chat.completion.chunk");
        }
        s.push_str(&format!("data: {c}\n\n"));
    }
    s.push_str("data: [DONE]\n\n");
    s
}

fn delta(d: Value) -> Value {
    json!({"choices": [{"index": 0, "delta": d, "finish_reason": null}]})
}

fn finish(f: &str) -> Value {
    json!({"choices": [{"index": 0, "delta": {}, "finish_reason": f}]})
}

fn an_sse(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect()
}

fn an_start(input: u64) -> Value {
    json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": input, "output_tokens": 1, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 10}}})
}

fn an_end(reason: &str, output: u64) -> [Value; 2] {
    [
        json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": null}, "usage": {"output_tokens": output}}),
        json!({"type": "message_stop"}),
    ]
}

fn kinds(evs: &[(String, Value)]) -> Vec<String> {
    evs.iter()
        .map(|(n, v)| match v["type"].as_str() {
            Some("content_block_start") => {
                format!("start:{}", v["content_block"]["type"].as_str().unwrap())
            }
            Some("content_block_delta") => {
                format!("delta:{}", v["delta"]["type"].as_str().unwrap())
            }
            Some(t) => {
                assert_eq!(n, t, "event name matches type");
                t.to_string()
            }
            None => n.clone(),
        })
        .collect()
}

// ============================================================ OpenAI upstream → Anthropic client stream

#[test]
fn reasoning_content_becomes_a_signed_thinking_block_closed_before_text_and_tools() {
    let input = oa_sse(&[
        delta(json!({"role": "assistant", "content": ""})),
        delta(json!({"reasoning_content": "Let me "})),
        delta(json!({"reasoning_content": "think."})),
        delta(json!({"content": "Answer"})),
        delta(
            json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": ""}}]}),
        ),
        delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"x\":"}}]})),
        delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]})),
        finish("tool_calls"),
        json!({"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 20, "prompt_tokens_details": {"cached_tokens": 30}, "completion_tokens_details": {"reasoning_tokens": 5}}}),
    ]);
    let evs = stream(OA, AN, &input);
    assert_eq!(
        kinds(&evs),
        [
            "message_start",
            "ping",
            "start:thinking",
            "delta:thinking_delta",
            "delta:thinking_delta",
            "delta:signature_delta",
            "content_block_stop",
            "start:text",
            "delta:text_delta",
            "content_block_stop",
            "start:tool_use",
            "delta:input_json_delta",
            "delta:input_json_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let idx: Vec<u64> = evs
        .iter()
        .filter_map(|(_, v)| v["index"].as_u64())
        .collect();
    assert_eq!(
        idx,
        [0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2],
        "block indices increase"
    );
    assert_eq!(evs[0].1["message"]["model"], "cm");
    assert_eq!(evs[0].1["message"]["id"], "chatcmpl-1");
    assert_eq!(
        evs[10].1["content_block"],
        json!({"type": "tool_use", "id": "call_a", "name": "f", "input": {}})
    );
    let md = &evs[14].1;
    assert_eq!(md["delta"]["stop_reason"], "tool_use");
    // prompt 50 of which 30 cached: Anthropic input excludes cached tokens;
    // reasoning_tokens become output_tokens_details.thinking_tokens.
    assert_eq!(
        md["usage"],
        json!({"input_tokens": 20, "cache_read_input_tokens": 30, "cache_creation_input_tokens": 0, "output_tokens": 20,
               "output_tokens_details": {"thinking_tokens": 5}})
    );
}

#[test]
fn tool_call_continuations_with_null_or_empty_names_never_open_blocks() {
    let input = oa_sse(&[
        delta(json!({"role": "assistant"})),
        delta(
            json!({"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "a", "arguments": ""}}]}),
        ),
        delta(
            json!({"tool_calls": [{"index": 0, "id": null, "function": {"name": null, "arguments": "{}"}}]}),
        ),
        delta(json!({"tool_calls": [{"index": 0, "function": {"name": "", "arguments": ""}}]})),
        delta(
            json!({"tool_calls": [{"index": 1, "id": "c2", "type": "function", "function": {"name": "b", "arguments": "{\"q\""}}]}),
        ),
        delta(json!({"tool_calls": [{"index": 1, "function": {"arguments": ":2}"}}]})),
        finish("tool_calls"),
    ]);
    let evs = stream(OA, AN, &input);
    let starts: Vec<&Value> = evs
        .iter()
        .filter(|(n, _)| n == "content_block_start")
        .map(|(_, v)| &v["content_block"])
        .collect();
    assert_eq!(starts.len(), 2, "{evs:?}");
    assert_eq!(
        (starts[0]["id"].as_str(), starts[1]["id"].as_str()),
        (Some("c1"), Some("c2"))
    );
    let json: Vec<(u64, &str)> = evs
        .iter()
        .filter(|(_, v)| v["delta"]["type"] == "input_json_delta")
        .map(|(_, v)| {
            (
                v["index"].as_u64().unwrap(),
                v["delta"]["partial_json"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(json, [(0, "{}"), (1, "{\"q\""), (1, ":2}")]);
}

#[test]
fn a_reused_index_with_a_new_id_is_a_new_parallel_call() {
    // Some OpenAI-compatible servers number every parallel call 0.
    let input = oa_sse(&[
        delta(
            json!({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "a", "arguments": "{}"}}]}),
        ),
        delta(
            json!({"tool_calls": [{"index": 0, "id": "c2", "function": {"name": "b", "arguments": "{}"}}]}),
        ),
        finish("tool_calls"),
    ]);
    let (evs, _) = stream_with(OA, OA, true, &input);
    let calls: Vec<&Value> = evs
        .iter()
        .flat_map(|(_, v)| {
            v["choices"][0]["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .collect();
    assert_eq!(calls.len(), 4);
    assert_eq!(
        (calls[0]["index"].as_u64(), calls[0]["id"].as_str()),
        (Some(0), Some("c1"))
    );
    assert_eq!(
        (calls[2]["index"].as_u64(), calls[2]["id"].as_str()),
        (Some(1), Some("c2"))
    );
}

#[test]
fn interleaved_parallel_arguments_end_in_an_error_not_corruption() {
    let input = oa_sse(&[
        delta(
            json!({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "a", "arguments": "{"}}]}),
        ),
        delta(
            json!({"tool_calls": [{"index": 1, "id": "c2", "function": {"name": "b", "arguments": "{"}}]}),
        ),
        delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]})),
        finish("tool_calls"),
    ]);
    let evs = stream(OA, AN, &input);
    let (name, last) = evs.last().unwrap();
    assert_eq!(name, "error");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("interleaved")
    );
    assert!(!evs.iter().any(|(n, _)| n == "message_stop"));
}

#[test]
fn openai_stream_without_done_but_with_finish_reason_completes() {
    let mut input = oa_sse(&[delta(json!({"content": "hi"})), finish("stop")]);
    input.truncate(input.len() - "data: [DONE]\n\n".len());
    let evs = stream(OA, AN, &input);
    assert_eq!(evs.last().unwrap().0, "message_stop");
    // ...but without a finish_reason either, it is an error.
    let cut = oa_sse(&[delta(json!({"content": "hi"}))]);
    let evs = stream(OA, AN, &cut[..cut.len() - "data: [DONE]\n\n".len()]);
    assert_eq!(evs.last().unwrap().0, "error");
}

#[test]
fn openai_in_stream_error_and_garbage_become_client_error_events() {
    let input = format!(
        "{}data: {}\n\n",
        &oa_sse(&[delta(json!({"content": "partial"}))]).replace("data: [DONE]\n\n", ""),
        json!({"error": {"message": "rate limited", "type": "rate_limit_error", "code": 429}})
    );
    let (evs, t) = stream_with(OA, AN, false, &input);
    let (name, v) = evs.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(
        v["error"],
        json!({"type": "rate_limit_error", "message": "rate limited"})
    );
    assert_eq!(t.upstream_error(), Some((429, "rate limited")));
    assert!(t.content_started());
    let evs = stream(OA, AN, "data: {not json\n\n");
    assert_eq!(evs.last().unwrap().0, "error");
}

#[test]
fn vllm_stop_reason_is_kept_as_the_stop_sequence() {
    let input = oa_sse(&[
        delta(json!({"content": "x"})),
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "stop_reason": "END"}]}),
    ]);
    let evs = stream(OA, AN, &input);
    let md = &evs.iter().find(|(n, _)| n == "message_delta").unwrap().1;
    assert_eq!(
        md["delta"],
        json!({"stop_reason": "stop_sequence", "stop_sequence": "END"})
    );
}

// ============================================================ Anthropic upstream → OpenAI client stream

#[test]
fn anthropic_overloaded_error_in_stream_becomes_an_openai_error_chunk() {
    let input = an_sse(&[
        an_start(10),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ]);
    let (evs, t) = stream_with(AN, OA, true, &input);
    assert_eq!(evs.len(), 2, "role chunk then error: {evs:?}");
    assert_eq!(evs[0].1["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(evs[1].1["error"]["type"], "overloaded_error");
    assert_eq!(evs[1].1["error"]["message"], "Overloaded");
    assert!(
        !evs.iter().any(|(_, v)| v == "[DONE]"),
        "an error never looks complete"
    );
    assert_eq!(t.upstream_error(), Some((529, "Overloaded")));
    assert!(
        !t.content_started(),
        "a failover candidate: nothing was sent but the role"
    );
    assert!(t.is_finished());
}

#[test]
fn anthropic_tool_calls_stream_with_ids_names_then_argument_fragments() {
    let input = an_sse(&[
        an_start(10),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me check."}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
        json!({"type": "content_block_stop", "index": 1}),
        // Whole input in the start event (some servers): still arrives.
        json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_2", "name": "t", "input": {"a": 1}}}),
        json!({"type": "content_block_stop", "index": 2}),
        an_end("tool_use", 33)[0].clone(),
        an_end("tool_use", 33)[1].clone(),
    ]);
    let (evs, t) = stream_with(AN, OA, true, &input);
    let deltas: Vec<&Value> = evs
        .iter()
        .filter_map(|(_, v)| v["choices"].get(0))
        .map(|c| &c["delta"])
        .collect();
    assert_eq!(deltas[0], &json!({"role": "assistant", "content": ""}));
    assert_eq!(deltas[1], &json!({"content": "Let me check."}));
    assert_eq!(
        deltas[2],
        &json!({"tool_calls": [{"index": 0, "id": "toolu_1", "type": "function", "function": {"name": "w", "arguments": ""}}]})
    );
    assert_eq!(
        deltas[3],
        &json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]})
    );
    assert_eq!(
        deltas[4],
        &json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]})
    );
    assert_eq!(deltas[5]["tool_calls"][0]["id"], "toolu_2");
    assert_eq!(
        deltas[6],
        &json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\"a\":1}"}}]})
    );
    let fin = evs
        .iter()
        .find(|(_, v)| v["choices"][0]["finish_reason"].is_string())
        .unwrap();
    assert_eq!(fin.1["choices"][0]["finish_reason"], "tool_calls");
    // message_start input (10 + 100 cache read + 10 cache write) and message_delta output.
    let usage = &evs[evs.len() - 2].1;
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 120);
    assert_eq!(
        usage["usage"]["prompt_tokens_details"]["cached_tokens"],
        100
    );
    assert_eq!(usage["usage"]["completion_tokens"], 33);
    assert_eq!(usage["usage"]["total_tokens"], 153);
    assert_eq!(evs.last().unwrap().1, "[DONE]");
    let u = t.usage();
    assert_eq!((u.input, u.output, u.cache_read), (120, 33, 100));
    assert!(t.content_started());
}

#[test]
fn a_turn_with_tool_calls_reports_tool_calls_whatever_the_upstream_said() {
    let body = |reason: &str| {
        json!({"id": "m", "model": "c", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
               "stop_reason": reason, "usage": {"input_tokens": 1, "output_tokens": 1}})
    };
    assert_eq!(
        resp(AN, OA, body("end_turn"))["choices"][0]["finish_reason"],
        "tool_calls"
    );
    // A truncated call is not a finished one.
    assert_eq!(
        resp(AN, OA, body("max_tokens"))["choices"][0]["finish_reason"],
        "length"
    );
    let oa = json!({"id": "x", "model": "g", "choices": [{"index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}]});
    assert_eq!(resp(OA, AN, oa)["stop_reason"], "tool_use");
}

#[test]
fn every_stop_reason_maps_both_ways_and_unknown_ones_are_kept() {
    let an = |r: &str, seq: Value| json!({"id": "m", "model": "c", "content": [{"type": "text", "text": "x"}], "stop_reason": r, "stop_sequence": seq, "usage": {}});
    for (a, o) in [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("stop_sequence", "stop"),
        ("refusal", "content_filter"),
        ("pause_turn", "length"),
        ("model_context_window_exceeded", "length"),
        ("brand_new_reason", "brand_new_reason"),
    ] {
        let out = resp(AN, OA, an(a, json!("##")));
        assert_eq!(out["choices"][0]["finish_reason"], o, "{a}");
        // Anthropic → Anthropic through the IR keeps every value (and the sequence).
        let same = resp(AN, AN, an(a, json!("##")));
        assert_eq!(same["stop_reason"], a);
        if a == "stop_sequence" {
            assert_eq!(same["stop_sequence"], "##");
            assert_eq!(
                out["choices"][0]["stop_reason"], "##",
                "sequence kept for OpenAI clients"
            );
        }
    }
    let oa = |f: &str| json!({"id": "x", "model": "g", "choices": [{"index": 0, "finish_reason": f, "message": {"role": "assistant", "content": "x"}}]});
    for (o, a) in [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        ("something_else", "something_else"),
    ] {
        assert_eq!(resp(OA, AN, oa(o))["stop_reason"], a, "{o}");
    }
    // An OpenAI refusal is text plus a refusal stop.
    let r = json!({"id": "x", "model": "g", "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": null, "refusal": "I can't."}}]});
    let out = resp(OA, AN, r);
    assert_eq!(
        (
            out["stop_reason"].as_str(),
            out["content"][0]["text"].as_str()
        ),
        (Some("refusal"), Some("I can't."))
    );
}

// ============================================================ thinking survives

#[test]
fn signed_and_redacted_thinking_round_trip_through_an_openai_client_history() {
    // Claude answers an OpenAI client...
    let answer = json!({"id": "m", "model": "c", "stop_reason": "tool_use", "usage": {"input_tokens": 1, "output_tokens": 1},
        "content": [
            {"type": "thinking", "thinking": "", "signature": "SIG-EMPTY"},
            {"type": "redacted_thinking", "data": "REDACTED"},
            {"type": "thinking", "thinking": "plan", "signature": "SIG2"},
            {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]});
    let oa = resp(AN, OA, answer.clone());
    let msg = oa["choices"][0]["message"].clone();
    assert_eq!(msg["reasoning_content"], "plan");
    assert_eq!(
        msg["reasoning_details"].as_array().unwrap().len(),
        3,
        "a signed block with empty text is kept"
    );
    // ...which sends the message back in its history; the next turn goes to Claude.
    let next = json!({"model": "x", "max_tokens": 3000, "messages": [
        {"role": "user", "content": "go"},
        msg,
        {"role": "tool", "tool_call_id": "t1", "content": "done"}]});
    let an = ok(OA, AN, next);
    assert_eq!(
        an["messages"][1]["content"], answer["content"],
        "thinking, signatures and redactions survive"
    );
    assert_eq!(an["messages"][2]["content"][0]["type"], "tool_result");
}

#[test]
fn unsigned_thinking_is_not_sent_to_anthropic_and_signed_thinking_not_to_openai() {
    let history = json!({"model": "x", "messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "mine", "signature": ""},
            {"type": "thinking", "thinking": "claude's", "signature": "S"},
            {"type": "text", "text": "a"}]},
        {"role": "user", "content": "q2"}], "max_tokens": 10});
    let an = ok(AN, AN, history.clone());
    assert_eq!(
        an["messages"][1]["content"],
        json!([{"type": "thinking", "thinking": "claude's", "signature": "S"}, {"type": "text", "text": "a"}])
    );
    let oa = ok(AN, OA, history);
    assert_eq!(
        oa["messages"][1],
        json!({"role": "assistant", "content": "a", "reasoning_content": "mine"})
    );
}

// ============================================================ requests to Anthropic

#[test]
fn anthropic_request_rules_empty_text_tool_results_cache_control() {
    let body = json!({"model": "gpt", "messages": [
        {"role": "system", "content": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}},
            {"id": "b", "type": "function", "function": {"name": "g", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "a", "content": "ra"},
        {"role": "tool", "tool_call_id": "b", "content": [{"type": "text", "text": "rb"}]},
        {"role": "user", "content": "thanks", "cache_control": {"type": "ephemeral"}},
        {"role": "assistant", "content": "   "},
        {"role": "developer", "content": "late system note"},
        {"role": "user", "content": "more"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}, "cache_control": {"type": "ephemeral"}}]});
    let out = ok(OA, AN, body);
    assert_eq!(
        out["system"],
        json!([{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "late system note"}])
    );
    let m = out["messages"].as_array().unwrap();
    assert_eq!(
        m[0],
        json!({"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]})
    );
    assert_eq!(
        m[1]["content"],
        json!([{"type": "tool_use", "id": "a", "name": "f", "input": {"x": 1}}, {"type": "tool_use", "id": "b", "name": "g", "input": {}}])
    );
    // Both tool results and the following user text: one turn, results first.
    assert_eq!(
        m[2],
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "a", "content": "ra"},
            {"type": "tool_result", "tool_use_id": "b", "content": "rb"},
            {"type": "text", "text": "thanks", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "more"}]})
    );
    assert_eq!(
        m.len(),
        3,
        "the whitespace-only assistant turn is dropped: {m:?}"
    );
    assert_eq!(
        out["tools"][0]["cache_control"],
        json!({"type": "ephemeral"})
    );
    assert_eq!(out["max_tokens"], 4096, "documented default");
}

#[test]
fn images_convert_both_ways() {
    let oa = json!({"model": "g", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}}]}]});
    let an = ok(OA, AN, oa);
    assert_eq!(
        an["messages"][0]["content"],
        json!([{"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"}},
               {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}])
    );
    let back = ok(AN, OA, an);
    assert_eq!(
        back["messages"][0]["content"],
        json!([{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}},
               {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}])
    );
}

#[test]
fn tool_choice_and_parallel_calls_map_both_ways() {
    let tools = json!([{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object", "properties": {}}}}]);
    for (oa, an) in [
        (json!("auto"), json!({"type": "auto"})),
        (json!("none"), json!({"type": "none"})),
        (json!("required"), json!({"type": "any"})),
        (
            json!({"type": "function", "function": {"name": "f"}}),
            json!({"type": "tool", "name": "f"}),
        ),
    ] {
        let out = ok(
            OA,
            AN,
            json!({"model": "g", "messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": oa}),
        );
        assert_eq!(out["tool_choice"], an);
        assert_eq!(
            out["tools"][0],
            json!({"name": "f", "description": "d", "input_schema": {"type": "object", "properties": {}}})
        );
        let back = ok(AN, OA, out);
        assert_eq!(back["tool_choice"], oa);
        assert_eq!(back["tools"], tools);
    }
    let out = ok(
        OA,
        AN,
        json!({"model": "g", "messages": [{"role": "user", "content": "x"}], "tools": tools, "parallel_tool_calls": false}),
    );
    assert_eq!(
        out["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
    assert_eq!(ok(AN, OA, out)["parallel_tool_calls"], false);
}

#[test]
fn max_tokens_thinking_budget_and_effort() {
    let base = |extra: Value| {
        let mut b = json!({"model": "g", "messages": [{"role": "user", "content": "x"}]});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    // Effort → budget; no client max: budget + 4096.
    let out = ok(OA, AN, base(json!({"reasoning_effort": "medium"})));
    assert_eq!(
        out["thinking"],
        json!({"type": "enabled", "budget_tokens": 4096})
    );
    assert_eq!(out["max_tokens"], 8192);
    // The client's max is never changed; the derived budget fits under it.
    let out = ok(
        OA,
        AN,
        base(json!({"reasoning_effort": "high", "max_completion_tokens": 5000})),
    );
    assert_eq!(
        (
            out["max_tokens"].as_u64(),
            out["thinking"]["budget_tokens"].as_u64()
        ),
        (Some(5000), Some(4999))
    );
    let e = err(
        OA,
        AN,
        base(json!({"reasoning_effort": "low", "max_tokens": 500})),
    );
    assert_eq!(e.param.as_deref(), Some("reasoning_effort"));
    let out = ok(
        OA,
        AN,
        base(json!({"reasoning_effort": "none", "max_tokens": 7})),
    );
    assert_eq!(
        (out["thinking"]["type"].as_str(), out["max_tokens"].as_u64()),
        (Some("disabled"), Some(7))
    );
    // Budget → effort.
    for (b, e) in [(1024, "low"), (4096, "medium"), (16384, "high")] {
        let out = ok(
            AN,
            OA,
            base(json!({"max_tokens": 20000, "thinking": {"type": "enabled", "budget_tokens": b}})),
        );
        assert_eq!(out["reasoning_effort"], e);
        assert_eq!(out["max_completion_tokens"], 20000);
    }
}

#[test]
fn response_format_is_forced_tool_use_on_anthropic_and_unwrapped_back() {
    let schema =
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
    let body = json!({"model": "g", "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "place", "schema": schema, "strict": true}}});
    let out = ok(OA, AN, body.clone());
    assert_eq!(out["tools"][0]["name"], RESPONSE_FORMAT_TOOL);
    assert_eq!(out["tools"][0]["input_schema"], schema);
    assert_eq!(
        out["tool_choice"],
        json!({"type": "tool", "name": RESPONSE_FORMAT_TOOL})
    );
    // With the client's own tools the model may call those or answer.
    let mut with_tools = body.clone();
    with_tools["tools"] =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    assert_eq!(
        ok(OA, AN, with_tools)["tool_choice"],
        json!({"type": "any"})
    );
    // Thinking forbids forced tool use: say so.
    let mut thinking = body;
    thinking["reasoning_effort"] = json!("low");
    assert_eq!(
        err(OA, AN, thinking).param.as_deref(),
        Some("response_format")
    );

    // Whole answer: the tool input is the message text, finish stop.
    let answer = json!({"id": "m", "model": "c", "stop_reason": "tool_use", "usage": {"input_tokens": 1, "output_tokens": 2},
        "content": [{"type": "tool_use", "id": "t", "name": RESPONSE_FORMAT_TOOL, "input": {"city": "Paris"}}]});
    let oa = resp(AN, OA, answer);
    assert_eq!(
        oa["choices"][0]["message"]["content"],
        "{\"city\":\"Paris\"}"
    );
    assert!(oa["choices"][0]["message"].get("tool_calls").is_none());
    assert_eq!(oa["choices"][0]["finish_reason"], "stop");
    // Stream: the input_json_delta fragments are content deltas.
    let input = an_sse(&[
        an_start(1),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t", "name": RESPONSE_FORMAT_TOOL, "input": {}}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": " \"Paris\"}"}}),
        json!({"type": "content_block_stop", "index": 0}),
        an_end("tool_use", 5)[0].clone(),
        an_end("tool_use", 5)[1].clone(),
    ]);
    let evs = stream(AN, OA, &input);
    let content: String = evs
        .iter()
        .filter_map(|(_, v)| v["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "{\"city\": \"Paris\"}");
    assert!(
        !evs.iter()
            .any(|(_, v)| v["choices"][0]["delta"].get("tool_calls").is_some())
    );
    let fin: Vec<&Value> = evs
        .iter()
        .filter_map(|(_, v)| v["choices"][0]["finish_reason"].as_str().map(|_| v))
        .collect();
    assert_eq!(fin[0]["choices"][0]["finish_reason"], "stop");
}

#[test]
fn inexpressible_fields_are_400s_naming_the_field() {
    let base = || json!({"model": "g", "messages": [{"role": "user", "content": "x"}]});
    for (k, v, param) in [
        ("n", json!(2), "n"),
        ("logprobs", json!(true), "logprobs"),
        ("audio", json!({"voice": "x"}), "audio"),
    ] {
        let mut b = base();
        b[k] = v;
        let e = err(OA, AN, b);
        assert_eq!(
            (e.status, e.param.as_deref()),
            (400, Some(param)),
            "{k}: {}",
            e.message
        );
        assert!(e.message.contains(param));
    }
    let mut b = base();
    b["messages"][0]["name"] = json!("alice");
    assert_eq!(err(OA, AN, b).param.as_deref(), Some("messages[0].name"));
    let mut b = base();
    b["messages"][0]["content"] =
        json!([{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]);
    assert_eq!(
        err(OA, AN, b).param.as_deref(),
        Some("messages[0].content[0]")
    );
    // Hints with no effect on the answer are dropped (and named, see
    // dropped.rs), not refused; n=1 is fine.
    let mut b = base();
    b["store"] = json!(true);
    b["n"] = json!(1);
    b["user"] = json!("u-1");
    b["frequency_penalty"] = json!(0);
    b["seed"] = json!(1);
    let out = ok(OA, AN, b);
    assert!(out.get("store").is_none() && out.get("seed").is_none());
    assert_eq!(out["metadata"], json!({"user_id": "u-1"}));
    assert_eq!(ok(AN, OA, out)["user"], "u-1");
    // Anthropic-only features to OpenAI: top_k is a hint, a container is not.
    let mut a =
        json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
    a["top_k"] = json!(5);
    assert!(ok(AN, OA, a.clone()).get("top_k").is_none());
    a.as_object_mut().unwrap().remove("top_k");
    a["container"] = json!("c1");
    assert_eq!(err(AN, OA, a).param.as_deref(), Some("container"));
}

#[test]
fn malformed_requests_are_400s_naming_the_field_never_panics() {
    for (body, param) in [
        (json!([]), "body"),
        (json!({"model": "g"}), "messages"),
        (json!({"messages": {}}), "messages"),
        (json!({"messages": [1]}), "messages[0]"),
        (json!({"messages": [{"content": "x"}]}), "messages[0].role"),
        (
            json!({"messages": [{"role": "user", "content": 5}]}),
            "messages[0].content",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "text"}]}]}),
            "messages[0].content[0].text",
        ),
        (
            json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": 3}}]}]}),
            "messages[0].tool_calls[0].function.arguments",
        ),
        (json!({"messages": [], "temperature": "hot"}), "temperature"),
        (
            json!({"messages": [], "tools": [{"type": "function"}]}),
            "tools[0].function",
        ),
        (
            json!({"messages": [], "tool_choice": "sometimes"}),
            "tool_choice",
        ),
    ] {
        for to in [OA, AN] {
            let e = err(OA, to, body.clone());
            assert_eq!(
                (e.status, e.param.as_deref()),
                (400, Some(param)),
                "{body}: {}",
                e.message
            );
        }
    }
    for (body, param) in [
        (json!({"max_tokens": 1}), "messages"),
        (
            json!({"messages": [{"role": "tool", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"messages": [{"role": "system", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}]}),
            "messages[0].content[0]",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64"}}]}]}),
            "messages[0].content[0].source.media_type",
        ),
        (
            json!({"messages": [], "thinking": {"type": "enabled"}}),
            "thinking.budget_tokens",
        ),
        (json!({"messages": [], "system": 3}), "system"),
    ] {
        let e = err(AN, OA, body.clone());
        assert_eq!(
            (e.status, e.param.as_deref()),
            (400, Some(param)),
            "{body}: {}",
            e.message
        );
    }
    // Arguments that are not a JSON object cannot become an Anthropic tool input.
    let b = json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "[1"}}]}]});
    assert_eq!(
        err(OA, AN, b).param.as_deref(),
        Some("messages[0].content[0].arguments")
    );
}

#[test]
fn tool_results_with_errors_and_images_reach_openai() {
    let body = json!({"model": "c", "max_tokens": 9, "messages": [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "shot", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "is_error": true,
            "content": [{"type": "text", "text": "partial"}, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}]}]}]});
    let out = ok(AN, OA, body);
    let m = out["messages"].as_array().unwrap();
    assert_eq!(
        m[1],
        json!({"role": "tool", "tool_call_id": "t", "content": "Error: partial"})
    );
    assert_eq!(
        m[2],
        json!({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]})
    );
    assert_eq!(m[0]["tool_calls"][0]["function"]["arguments"], "{}");
}

#[test]
fn streaming_requests_to_openai_always_ask_for_usage_and_it_is_dropped_unless_asked() {
    let body =
        json!({"model": "g", "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let out = ok(OA, OA, body.clone());
    assert_eq!(out["stream_options"], json!({"include_usage": true}));
    let out = ok(
        AN,
        OA,
        json!({"model": "c", "max_tokens": 3, "stream": true, "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(out["stream_options"], json!({"include_usage": true}));
    let input = oa_sse(&[
        delta(json!({"content": "x"})),
        finish("stop"),
        json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}),
    ]);
    for asked in [false, true] {
        let (evs, t) = stream_with(OA, OA, asked, &input);
        let usage_chunks = evs
            .iter()
            .filter(|(_, v)| v["choices"] == json!([]))
            .count();
        assert_eq!(usage_chunks, usize::from(asked));
        assert_eq!(t.usage().input, 3, "metered either way");
    }
}

#[test]
fn same_format_conversion_keeps_format_specific_fields() {
    let body = json!({"model": "g", "messages": [{"role": "user", "content": "x"}], "logit_bias": {"1": 2}, "store": true, "top_k": 3});
    let out = ok(OA, OA, body);
    assert_eq!(
        (
            out["logit_bias"].clone(),
            out["store"].clone(),
            out["top_k"].clone()
        ),
        (json!({"1": 2}), json!(true), json!(3))
    );
    assert_eq!(out["model"], "up");
    let a = json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "top_k": 4,
        "tools": [{"type": "web_search_20250305", "name": "web_search"}], "container": "c1"});
    let out = ok(AN, AN, a);
    assert_eq!(
        (out["top_k"].clone(), out["container"].clone()),
        (json!(4), json!("c1"))
    );
    assert_eq!(out["tools"][0]["type"], "web_search_20250305");
}

// ============================================================ usage and dispatch

// Same-format streams are metered by `proxy::stream::Observer` (tested there).
#[test]
fn response_usage_reads_a_whole_answer() {
    let body = json!({"id": "m", "content": [], "usage": {"input_tokens": 5, "cache_read_input_tokens": 2, "output_tokens": 1}}).to_string();
    assert_eq!(
        response_usage(AN, body.as_bytes()),
        Some(Usage {
            input: 7,
            output: 1,
            cache_read: 2,
            reasoning: 0,
            cache_write: 0
        })
    );
    let body = json!({"id": "c", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 4}}}).to_string();
    assert_eq!(
        response_usage(OA, body.as_bytes()).map(|u| (u.input, u.output, u.cache_read)),
        Some((9, 2, 4))
    );
    assert_eq!(
        response_usage(OA, b"{\"id\": \"c\", \"choices\": []}"),
        None
    );
}

#[test]
fn bad_gemini_input_is_a_clear_error_not_a_panic() {
    // (Gemini became a supported format in issue 4; this used to check the
    // "not supported yet" refusal.)
    let e = convert_request(Format::Gemini, AN, &json!({}), &ropts(false)).unwrap_err();
    assert_eq!(e.status, 400);
    assert_eq!(e.param.as_deref(), Some("contents"));
    let mut t = StreamTranslator::new(AN, Format::Gemini, ResponseOpts::default());
    let mut out = Vec::new();
    t.feed(b"event: ping\ndata: {}\n\n", &mut out);
    t.finish(&mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("\"error\""),
        "an unfinished stream ends with an error: {text}"
    );
    assert!(t.is_finished());
}

#[test]
fn anthropic_output_format_maps_to_openai_response_format() {
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
    let a = json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
        "output_format": {"type": "json_schema", "schema": schema}});
    let out = ok(AN, OA, a.clone());
    assert_eq!(
        out["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "response", "schema": schema, "strict": true}})
    );
    assert_eq!(
        ok(AN, AN, a)["output_format"],
        json!({"type": "json_schema", "schema": schema})
    );
}

#[test]
fn cited_text_survives_and_context_management_is_a_hint() {
    let answer = json!({"id": "m", "model": "c", "stop_reason": "end_turn", "usage": {},
        "content": [{"type": "text", "text": "Paris", "citations": [{"type": "web_search_result_location", "url": "u"}]},
                    {"type": "text", "text": " is the capital."}]});
    assert_eq!(
        resp(AN, OA, answer)["choices"][0]["message"]["content"],
        "Paris is the capital."
    );
    let r = json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}});
    let out = ok(AN, OA, r.clone());
    assert!(out.get("context_management").is_none());
    assert_eq!(
        ok(AN, AN, r)["context_management"]["edits"][0]["type"],
        "clear_tool_uses_20250919"
    );
}

#[test]
fn tool_loop_without_returned_thinking_goes_without_thinking() {
    let convo = |assistant: Value| {
        json!({"model": "g", "reasoning_effort": "low", "messages": [
            {"role": "user", "content": "q"},
            assistant,
            {"role": "tool", "tool_call_id": "c", "content": "r"}]})
    };
    let call =
        json!([{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]);
    let out = ok(
        OA,
        AN,
        convo(json!({"role": "assistant", "content": null, "tool_calls": call})),
    );
    assert!(
        out.get("thinking").is_none(),
        "Anthropic would reject thinking here"
    );
    assert_eq!(
        out["max_tokens"],
        1024 + 4096,
        "max_tokens as computed for the client"
    );
    let with = json!({"role": "assistant", "content": null, "tool_calls": call,
        "reasoning_details": [{"type": "reasoning.text", "text": "t", "signature": "S", "format": "anthropic-claude-v1"}]});
    assert_eq!(ok(OA, AN, convo(with))["thinking"]["type"], "enabled");
    // A fresh user turn keeps thinking.
    let fresh = json!({"model": "g", "reasoning_effort": "low", "messages": [{"role": "user", "content": "q"}]});
    assert_eq!(ok(OA, AN, fresh)["thinking"]["type"], "enabled");
}

#[test]
fn output_limit_field_depends_on_openai_or_compatible() {
    let body =
        json!({"model": "c", "max_tokens": 77, "messages": [{"role": "user", "content": "x"}]});
    let official: Value =
        serde_json::from_slice(&convert_request(AN, OA, &body, &ropts(false)).unwrap().body)
            .unwrap();
    assert_eq!(
        (
            official["max_completion_tokens"].as_u64(),
            official.get("max_tokens")
        ),
        (Some(77), None)
    );
    let compat: Value = serde_json::from_slice(
        &convert_request_compatible(AN, OA, &body, &ropts(false))
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(
        (
            compat["max_tokens"].as_u64(),
            compat.get("max_completion_tokens")
        ),
        (Some(77), None)
    );
    let to_an: Value = serde_json::from_slice(
        &convert_request_compatible(OA, AN, &body, &ropts(false))
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(to_an["max_tokens"], 77);
}

#[test]
fn a_call_whose_name_comes_after_its_id_opens_when_the_name_arrives() {
    let input = oa_sse(&[
        delta(
            json!({"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"arguments": ""}}]}),
        ),
        delta(
            json!({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "{\"a\""}}]}),
        ),
        delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]})),
        finish("tool_calls"),
    ]);
    let evs = stream(OA, AN, &input);
    assert_eq!(
        kinds(&evs),
        [
            "message_start",
            "ping",
            "start:tool_use",
            "delta:input_json_delta",
            "delta:input_json_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(evs[2].1["content_block"]["id"], "c1");
    assert_eq!(evs[2].1["content_block"]["name"], "f");
    assert_eq!(evs[3].1["delta"]["partial_json"], "{\"a\"");
}

/// Field paths are rendered only when an error names them (`json::Path`);
/// the whole message a client gets must read exactly as it did when every
/// path was built as a string up front.
#[test]
fn error_messages_name_nested_fields_exactly() {
    const RS: Format = Format::OpenAiResponses;
    const GE: Format = Format::Gemini;
    let cases = [
        (
            OA,
            AN,
            json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": 3}}]}]}),
            "messages[0].tool_calls[0].function.arguments: expected a string, got a number",
        ),
        (
            OA,
            AN,
            json!({"messages": [{"role": "user", "content": [{"type": "text"}]}]}),
            "messages[0].content[0].text: required string missing",
        ),
        (
            OA,
            AN,
            json!({"messages": [], "tools": [{"type": "function"}]}),
            "tools[0].function: required object missing",
        ),
        (
            OA,
            AN,
            json!({"messages": [{"role": "user", "content": "x"}, {"role": "function", "content": "x"}]}),
            "messages[1].role: legacy `function` messages are not supported; use `tool`",
        ),
        (
            OA,
            AN,
            json!({"messages": [{"role": "user", "content": "x", "name": "alice"}]}),
            "messages[0].name: cannot be expressed in the anthropic format of the selected model's provider",
        ),
        (
            OA,
            RS,
            json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}]}),
            "'input_audio' content at 'messages[0].content[0]' cannot be expressed for an OpenAI Responses upstream",
        ),
        (
            AN,
            OA,
            json!({"max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64"}}]}]}),
            "messages[0].content[0].source.media_type: required string missing",
        ),
        (
            AN,
            OA,
            json!({"max_tokens": 1, "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": [{"type": "text", "text": "prefill"}]}]}),
            "messages[1]: a final assistant message (prefill) cannot be expressed in the openai-chat format",
        ),
        (
            GE,
            OA,
            json!({"contents": [{"parts": [{"text": 1}]}]}),
            "'contents[0].parts[0].text' must be a string",
        ),
        (
            GE,
            AN,
            json!({"contents": [{"parts": [{"functionCall": {"args": {}}}]}]}),
            "'contents[0].parts[0].functionCall.name' is required",
        ),
        (
            GE,
            OA,
            json!({"contents": [], "tools": [{"functionDeclarations": [{"description": "no name"}]}]}),
            "'tools[0].functionDeclarations[0].name' is required",
        ),
        (
            GE,
            OA,
            json!({"contents": [{"parts": [{"functionResponse": {"name": "f", "response": {}, "parts": [5]}}]}]}),
            "'contents[0].parts[0].functionResponse.parts[0]' must be an object",
        ),
        (
            RS,
            OA,
            json!({"input": [{"type": "message", "role": "user", "content": [5]}]}),
            "'input[0].content[0]' must be an object",
        ),
        (
            RS,
            AN,
            json!({"input": [{"type": "function_call", "name": "f"}]}),
            "'input[0].call_id' is required",
        ),
        (
            RS,
            OA,
            json!({"input": "x", "tools": [5]}),
            "'tools[0]' must be an object",
        ),
        (
            RS,
            OA,
            json!({"input": "x", "instructions": [{"type": "message", "role": "system", "content": [5]}]}),
            "'instructions[0].content[0]' must be an object",
        ),
    ];
    for (from, to, body, message) in cases {
        let e = err(from, to, body.clone());
        assert_eq!(e.message, message, "{from:?} -> {to:?}: {body}");
        assert_eq!(e.status, 400);
        assert!(
            e.param.as_deref().is_some_and(|p| message.contains(p)),
            "{message}: {:?}",
            e.param
        );
    }
}
