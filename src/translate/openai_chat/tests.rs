use super::*;
use crate::translate::{StreamTranslator, convert_request, convert_response};

// ------------------------------------------- Gemini per-call signatures

/// A Gemini answer: an unsigned thought, then three calls, the first and
/// the last with their own `thoughtSignature`.
const GEMINI_THOUGHT: &str = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"plan","thought":true}]}}],"responseId":"r1"}"#;
const GEMINI_CALLS: &str = r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"get_weather","args":{"city":"Paris"}},"thoughtSignature":"U0lHQQ=="},{"functionCall":{"name":"get_time","args":{}}},{"functionCall":{"name":"get_news","args":{}},"thoughtSignature":"U0lHQg=="}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":3,"totalTokenCount":8},"responseId":"r1"}"#;

fn gemini_answer() -> String {
    let mut a: Value = serde_json::from_str(GEMINI_CALLS).unwrap();
    let parts = a["candidates"][0]["content"]["parts"]
        .as_array_mut()
        .unwrap();
    parts.insert(0, json!({"text": "plan", "thought": true}));
    a.to_string()
}

fn ro() -> RequestOpts {
    RequestOpts {
        model: "gemini-3-pro".into(),
        stream: false,
    }
}

/// The Chat client's next request: its history with the assistant
/// message as given, then the tool results → the Gemini upstream's model
/// turn as (functionCall name, thoughtSignature).
fn next_gemini_turn(message: &Value) -> Vec<(String, Option<String>)> {
    let mut msgs = vec![json!({"role": "user", "content": "q"}), message.clone()];
    for c in message["tool_calls"].as_array().unwrap() {
        msgs.push(json!({"role": "tool", "tool_call_id": c["id"], "content": "ok"}));
    }
    let next = json!({"model": "m", "reasoning_effort": "low", "messages": msgs});
    let g: Value = serde_json::from_slice(
        &convert_request(Format::OpenAiChat, Format::Gemini, &next, &ro())
            .unwrap()
            .body,
    )
    .unwrap();
    let turns: Vec<&Value> = g["contents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["role"] == "model")
        .collect();
    assert_eq!(turns.len(), 1, "{g}");
    assert_eq!(
        g["contents"][2]["parts"][0]["functionResponse"]["name"], "get_weather",
        "{g}"
    );
    // The same history to an OpenAI-format upstream: no Gemini signatures.
    let o = String::from_utf8(
        convert_request(Format::OpenAiChat, Format::OpenAiChat, &next, &ro())
            .unwrap()
            .body,
    )
    .unwrap();
    assert!(!o.contains("U0lHQQ=="), "{o}");
    turns[0]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p.get("functionCall").is_some())
        .map(|p| {
            (
                p["functionCall"]["name"].as_str().unwrap().to_string(),
                p["thoughtSignature"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn want() -> Vec<(String, Option<String>)> {
    vec![
        ("get_weather".into(), Some("U0lHQQ==".into())),
        ("get_time".into(), None),
        ("get_news".into(), Some("U0lHQg==".into())),
    ]
}

fn sigs(message: &Value) -> Vec<Value> {
    message["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["extra_content"]["google"]["thought_signature"].clone())
        .collect()
}

#[test]
fn gemini_call_signatures_round_trip_through_chat_client() {
    let out = convert_response(
        Format::Gemini,
        Format::OpenAiChat,
        gemini_answer().as_bytes(),
        &ResponseOpts::default(),
    )
    .unwrap();
    let r: Value = serde_json::from_slice(&out).unwrap();
    let m = &r["choices"][0]["message"];
    assert_eq!(m["reasoning_content"], "plan");
    assert_eq!(
        sigs(m),
        [json!("U0lHQQ=="), Value::Null, json!("U0lHQg==")],
        "{m}"
    );
    assert_eq!(next_gemini_turn(m), want());
    // A client that drops the extra field: no signature, no error.
    let mut bare = m.clone();
    for c in bare["tool_calls"].as_array_mut().unwrap() {
        c.as_object_mut().unwrap().remove("extra_content");
    }
    assert!(next_gemini_turn(&bare).iter().all(|(_, s)| s.is_none()));
}

#[test]
fn gemini_call_signatures_round_trip_through_chat_stream() {
    let mut t = StreamTranslator::new(Format::Gemini, Format::OpenAiChat, ResponseOpts::default());
    let mut out = Vec::new();
    let sse = format!("data: {GEMINI_THOUGHT}\r\n\r\ndata: {GEMINI_CALLS}\r\n\r\n");
    t.feed(sse.as_bytes(), &mut out);
    t.finish(&mut out);
    // Rebuild the message as a client accumulating deltas does: fields
    // of `tool_calls[i]` merged by index, arguments concatenated.
    let mut calls: Vec<Value> = Vec::new();
    let mut reasoning = String::new();
    let mut p = sse::Parser::default();
    let mut on = |e: sse::Event<'_>| {
        if e.data == b"[DONE]" {
            return;
        }
        let v: Value = serde_json::from_slice(e.data).unwrap();
        let d = &v["choices"][0]["delta"];
        reasoning.push_str(d["reasoning_content"].as_str().unwrap_or(""));
        for tc in d["tool_calls"].as_array().into_iter().flatten() {
            let i = tc["index"].as_u64().unwrap() as usize;
            // The openai SDK's stream helper asserts `function` on every delta.
            assert!(tc["function"].is_object(), "function on every delta: {tc}");
            if i == calls.len() {
                assert!(tc["id"].is_string(), "the first delta has the id: {tc}");
                let sig = &tc["extra_content"]["google"]["thought_signature"];
                assert!(
                    sig.is_string() || i == 1,
                    "the signature rides on the call's first delta: {tc}"
                );
                calls.push(json!({"id": tc["id"], "type": "function", "function": {"name": tc["function"]["name"], "arguments": ""}}));
            } else {
                assert!(tc.get("id").is_none(), "one id per call: {tc}");
            }
            let c = &mut calls[i];
            if let Some(a) = tc["function"]["arguments"].as_str() {
                let all = format!("{}{a}", c["function"]["arguments"].as_str().unwrap());
                c["function"]["arguments"] = json!(all);
            }
            if let Some(x) = tc.get("extra_content") {
                c["extra_content"] = x.clone();
            }
        }
    };
    p.feed(&out, &mut on).unwrap();
    p.finish(&mut on).unwrap();
    let m = json!({"role": "assistant", "content": null, "reasoning_content": reasoning, "tool_calls": calls});
    assert_eq!(m["reasoning_content"], "plan");
    assert_eq!(
        m["tool_calls"][0]["function"]["arguments"],
        r#"{"city":"Paris"}"#
    );
    assert_eq!(
        sigs(&m),
        [json!("U0lHQQ=="), Value::Null, json!("U0lHQg==")],
        "{m}"
    );
    assert_eq!(next_gemini_turn(&m), want());
}

#[test]
fn call_signature_must_be_a_string() {
    let m = json!({"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
        "function": {"name": "f", "arguments": "{}"}, "extra_content": {"google": {"thought_signature": 7}}}]});
    let e = decode_assistant(m.as_object().unwrap(), &"messages[1]".into()).unwrap_err();
    assert_eq!(
        e.param.as_deref(),
        Some("messages[1].tool_calls[0].extra_content.google.thought_signature")
    );
}

// ------------------------------------------- text-only chunks read without serde

const HEAD: &str = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1755137933,"model":"gpt-4o","service_tier":"default","system_fingerprint":"fp_1","#;

fn text_chunk(text_token: &str, tail: &str) -> String {
    format!(r#"{HEAD}"choices":[{{"index":0,"delta":{{"content":{text_token}}}{tail}"#)
}

/// Every IR event a decoder gives for `events`, as text; `learn: false`
/// forgets the learned head after each event, so only serde reads.
fn decoded(events: &[String], learn: bool) -> (Vec<String>, usize) {
    let mut d = StreamDecode::default();
    let mut got = Vec::new();
    let mut fast = 0;
    for data in events {
        if d.plain_text(data.as_bytes()).is_some() {
            fast += 1;
        }
        d.event(
            sse::Event {
                event: "",
                data: data.as_bytes(),
            },
            &mut |e| got.push(format!("{e:?}")),
        );
        if !learn {
            d.text_head = None;
        }
    }
    (got, fast)
}

#[test]
fn plain_text_chunks_read_as_serde_reads_them() {
    let tails = [
        r#","logprobs":null,"finish_reason":null}]}"#,
        r#","finish_reason":null}]}"#,
        r#","logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#","finish_reason":null}],"obfuscation":"UC"}"#,
        r#","logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"auU6fTns"}"#,
        r#","finish_reason":null}],"obfuscation":""}"#,
    ];
    let texts = [
        r#""Hello""#,
        r#""""#,
        r#""hm \"quoted\" \\ back""#,
        r#""caf\u00e9 \ud83d\ude00 é\n\t""#,
        r#""ends in \\""#,
        r#""{\"a\": 1""#,
    ];
    let mut events = vec![format!(
        r#"{HEAD}"choices":[{{"index":0,"delta":{{"role":"assistant","content":"","refusal":null}},"logprobs":null,"finish_reason":null}}]}}"#
    )];
    for tail in tails {
        for text in texts {
            events.push(text_chunk(text, tail));
        }
    }
    events.push(format!(
        r#"{HEAD}"choices":[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"stop"}}]}}"#
    ));
    events.push("[DONE]".into());
    let (fast, used) = decoded(&events, true);
    let (slow, none) = decoded(&events, false);
    assert_eq!(fast, slow);
    assert_eq!(none, 0);
    // All text chunks but the one the head is learned from.
    assert_eq!(used, tails.len() * texts.len() - 1);
    assert!(fast.iter().any(|e| e.contains("ends in \\\\")), "{fast:?}");
}

#[test]
fn other_chunks_go_through_serde() {
    let mut d = StreamDecode::default();
    let start = text_chunk(r#""""#, r#","finish_reason":null}]}"#);
    let learn = text_chunk(r#""a""#, r#","finish_reason":null}]}"#);
    for data in [&start, &learn] {
        d.event(
            sse::Event {
                event: "",
                data: data.as_bytes(),
            },
            &mut |_| {},
        );
    }
    assert!(d.plain_text(learn.as_bytes()).is_some());
    let other_head = learn.replace("1755137933", "1755137934");
    let general: Vec<Vec<u8>> = vec![
        other_head.into_bytes(),
        text_chunk("null", r#","finish_reason":null}]}"#).into_bytes(),
        text_chunk(r#""a"b""#, r#","finish_reason":null}]}"#).into_bytes(),
        text_chunk(r#""a\""#, r#","finish_reason":null}]}"#).into_bytes(),
        text_chunk(r#""a","role":"assistant""#, r#","finish_reason":null}]}"#).into_bytes(),
        text_chunk(r#""a""#, r#","finish_reason":"stop"}]}"#).into_bytes(),
        text_chunk(
            r#""a""#,
            r#","logprobs":{"content":[]},"finish_reason":null}]}"#,
        )
        .into_bytes(),
        text_chunk(
            r#""a""#,
            r#","finish_reason":null}],"usage":{"total_tokens":1}}"#,
        )
        .into_bytes(),
        text_chunk(r#""a""#, r#","finish_reason":null}],"obfuscation":"a-b"}"#).into_bytes(),
        text_chunk(r#""a""#, r#","finish_reason":null}],"obfuscation":1}"#).into_bytes(),
        text_chunk(r#""a""#, r#","finish_reason":null}] }"#).into_bytes(),
        text_chunk(r#""a""#, r#","finish_reason":null},{"index":1}]}"#).into_bytes(),
        text_chunk(r#""\u12""#, r#","finish_reason":null}]}"#).into_bytes(),
        text_chunk("\"a\x01\"", r#","finish_reason":null}]}"#).into_bytes(),
        [
            format!(r#"{HEAD}"choices":[{{"index":0,"delta":{{"content":""#).as_bytes(),
            b"\xff\"},\"finish_reason\":null}]}",
        ]
        .concat(),
    ];
    for data in &general {
        assert!(
            d.plain_text(data).is_none(),
            "{}",
            String::from_utf8_lossy(data)
        );
    }
}

#[test]
fn no_head_is_learned_from_chunks_that_carry_more_than_text() {
    for second in [
        text_chunk(r#""a""#, r#","finish_reason":"stop"}]}"#),
        text_chunk(
            r#""a""#,
            r#","finish_reason":null}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#,
        ),
        format!(
            r#"{HEAD}"choices":[{{"index":0,"delta":{{"content":"a","refusal":"no"}},"finish_reason":null}}]}}"#
        ),
        format!(
            r#"{HEAD}"choices":[{{"index":1,"delta":{{"content":"a"}},"finish_reason":null}}]}}"#
        ),
    ] {
        let mut d = StreamDecode::default();
        for data in [
            text_chunk(r#""""#, r#","finish_reason":null}]}"#),
            second.clone(),
        ] {
            d.event(
                sse::Event {
                    event: "",
                    data: data.as_bytes(),
                },
                &mut |_| {},
            );
        }
        assert_eq!(d.text_head, None, "{second}");
    }
}

#[test]
fn recorded_streams_decode_the_same_with_and_without_the_text_path() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/openai-chat");
    let mut fast_reads = 0;
    let mut streams = 0;
    for entry in std::fs::read_dir(dir).expect("the recorded corpus") {
        let path = entry.expect("a corpus entry").path().join("response.sse");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let events: Vec<String> = text
            .split("\n\n")
            .filter_map(|ev| ev.trim().strip_prefix("data: ").map(str::to_owned))
            .collect();
        let (fast, used) = decoded(&events, true);
        let (slow, _) = decoded(&events, false);
        assert_eq!(fast, slow, "{}", path.display());
        fast_reads += used;
        streams += 1;
    }
    assert!(streams >= 5, "{streams} recorded streams");
    // The recorded text answers (with `obfuscation`, with `usage: null`) take it.
    assert!(fast_reads > 10, "{fast_reads} chunks read on the text path");
}
