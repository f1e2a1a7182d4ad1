use super::*;

#[test]
fn error_bodies_are_not_answers() {
    let e =
        decode_response(br#"{"type":"error","error":{"type":"overloaded_error","message":"x"}}"#)
            .unwrap_err();
    assert_eq!(e.status, 502);
    assert!(decode_response(b"[]").is_err());
    assert!(decode_response(b"{}").is_err());
    assert!(decode_response(br#"{"type":"message","content":[]}"#).is_ok());
}

#[test]
fn usage_arithmetic_both_directions() {
    let w: WireUsage = serde_json::from_str(
        r#"{"input_tokens": 20, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5, "output_tokens": 9,
            "output_tokens_details": {"thinking_tokens": 4}}"#,
    )
    .unwrap();
    let u = w.to_ir();
    assert_eq!(
        (u.input, u.output, u.cache_read, u.cache_write, u.reasoning),
        (125, 9, 100, 5, 4)
    );
    let out = OutUsage::from(&u);
    assert_eq!(
        (
            out.input_tokens,
            out.cache_read_input_tokens,
            out.cache_creation_input_tokens,
            out.output_tokens
        ),
        (20, 100, 5, 9)
    );
    assert_eq!(
        serde_json::to_value(&out).unwrap()["output_tokens_details"],
        json!({"thinking_tokens": 4}),
        "thinking tokens reach Anthropic clients"
    );
    let plain = serde_json::to_value(OutUsage::from(&ir::Usage::default())).unwrap();
    assert!(
        plain.get("output_tokens_details").is_none(),
        "no details without thinking: {plain}"
    );
    // A message_delta with output only leaves the input known from message_start.
    let d: WireUsage = serde_json::from_str(r#"{"output_tokens": 30}"#).unwrap();
    let mut merged = u;
    merged.merge(&d.to_ir());
    assert_eq!((merged.input, merged.output), (125, 30));
}

// ------------------------------------------- Gemini per-call signatures

use crate::translate::{RequestOpts, StreamTranslator, convert_request, convert_response};

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

fn gemini_sse() -> String {
    format!("data: {GEMINI_THOUGHT}\r\n\r\ndata: {GEMINI_CALLS}\r\n\r\n")
}

/// The Anthropic client's next request: its history with the answer's
/// content as given, then the results → the Gemini upstream's model turn
/// as (functionCall name, thoughtSignature).
fn next_gemini_turn(content: &Value) -> Vec<(String, Option<String>)> {
    let results: Vec<Value> = content
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .map(|b| json!({"type": "tool_result", "tool_use_id": b["id"], "content": "ok"}))
        .collect();
    let next = json!({"model": "m", "max_tokens": 2048,
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": content},
        {"role": "user", "content": results},
    ]});
    let ro = RequestOpts {
        model: "gemini-3-pro".into(),
        stream: false,
    };
    let g: Value = serde_json::from_slice(
        &convert_request(Format::Anthropic, Format::Gemini, &next, &ro)
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
    // The same history to Anthropic: Gemini's signatures never go there.
    let a: Value = serde_json::from_slice(
        &convert_request(Format::Anthropic, Format::Anthropic, &next, &ro)
            .unwrap()
            .body,
    )
    .unwrap();
    let sent = a["messages"][1]["content"].as_array().unwrap();
    assert!(sent.iter().all(|b| b["type"] == "tool_use"), "{a}");
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

fn kinds(content: &Value) -> Vec<&str> {
    content
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect()
}

#[test]
fn gemini_call_signatures_round_trip_through_anthropic_client() {
    let out = convert_response(
        Format::Gemini,
        Format::Anthropic,
        gemini_answer().as_bytes(),
        &ResponseOpts::default(),
    )
    .unwrap();
    let r: Value = serde_json::from_slice(&out).unwrap();
    let content = &r["content"];
    assert_eq!(
        kinds(content),
        [
            "thinking", "tool_use", "thinking", "tool_use", "tool_use", "thinking"
        ],
        "{r}"
    );
    assert_eq!(
        content[0]["signature"], "",
        "the thought itself was unsigned"
    );
    // The carrier names Gemini and the call it belongs to.
    let w = unwrap_signature(content[2]["signature"].as_str().unwrap()).unwrap();
    assert_eq!(
        (w.origin, w.sig.as_str(), w.id.as_deref(), w.kind.as_str()),
        (
            Some(Format::Gemini),
            "U0lHQQ==",
            content[1]["id"].as_str(),
            "call"
        )
    );
    assert_eq!(next_gemini_turn(content), want());
}

#[test]
fn gemini_call_signatures_round_trip_through_anthropic_stream() {
    let mut t = StreamTranslator::new(Format::Gemini, Format::Anthropic, ResponseOpts::default());
    let mut out = Vec::new();
    t.feed(gemini_sse().as_bytes(), &mut out);
    t.finish(&mut out);
    // Rebuild the message as the Anthropic SDK's accumulator does.
    let mut blocks: Vec<Value> = Vec::new();
    let mut json_parts: Vec<String> = Vec::new();
    let mut p = sse::Parser::default();
    let mut on = |e: sse::Event<'_>| {
        let v: Value = serde_json::from_slice(e.data).unwrap();
        let i = v["index"].as_u64().unwrap_or(0) as usize;
        match v["type"].as_str().unwrap() {
            "content_block_start" => {
                assert_eq!(i, blocks.len(), "indices increase by one");
                blocks.push(v["content_block"].clone());
                json_parts.push(String::new());
            }
            "content_block_delta" => {
                let d = &v["delta"];
                let b = &mut blocks[i];
                match d["type"].as_str().unwrap() {
                    "thinking_delta" => {
                        let t = format!(
                            "{}{}",
                            b["thinking"].as_str().unwrap(),
                            d["thinking"].as_str().unwrap()
                        );
                        b["thinking"] = json!(t);
                    }
                    "signature_delta" => b["signature"] = d["signature"].clone(),
                    "input_json_delta" => {
                        json_parts[i].push_str(d["partial_json"].as_str().unwrap())
                    }
                    other => panic!("unexpected delta {other}"),
                }
            }
            "content_block_stop"
                if blocks[i]["type"] == "tool_use" && !json_parts[i].is_empty() =>
            {
                blocks[i]["input"] = serde_json::from_str(&json_parts[i]).unwrap();
            }
            _ => {}
        }
    };
    p.feed(&out, &mut on).unwrap();
    p.finish(&mut on).unwrap();
    let content = Value::Array(blocks);
    assert_eq!(
        kinds(&content),
        [
            "thinking", "tool_use", "thinking", "tool_use", "tool_use", "thinking"
        ],
        "{content}"
    );
    assert_eq!(content[0]["thinking"], "plan");
    assert_eq!(content[1]["input"], json!({"city": "Paris"}));
    assert_eq!(next_gemini_turn(&content), want());
}

#[test]
fn foreign_thinking_signatures_are_wrapped_for_anthropic_clients() {
    // A Gemini-signed thought comes back to Gemini, never to Anthropic.
    let answer = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"plan","thought":true,"thoughtSignature":"VEhPVUdIVA=="},{"text":"hi"}]},"finishReason":"STOP"}],"responseId":"r2"}"#;
    let r: Value = serde_json::from_slice(
        &convert_response(
            Format::Gemini,
            Format::Anthropic,
            answer.as_bytes(),
            &ResponseOpts::default(),
        )
        .unwrap(),
    )
    .unwrap();
    let sig = r["content"][0]["signature"].as_str().unwrap();
    assert_ne!(sig, "VEhPVUdIVA==");
    let parts = decode_blocks(Some(&r["content"]), &"content".into()).unwrap();
    assert_eq!(
        parts[0],
        Part::Thinking(ir::Thinking {
            text: "plan".into(),
            signature: Some("VEhPVUdIVA==".into()),
            origin: Some(Format::Gemini),
            id: None,
        })
    );
    // Anthropic's own signatures pass as they are.
    let own = json!([{"type": "thinking", "thinking": "t", "signature": "EqAnthropic"}]);
    assert_eq!(
        decode_blocks(Some(&own), &"content".into()).unwrap()[0],
        Part::Thinking(ir::Thinking {
            text: "t".into(),
            signature: Some("EqAnthropic".into()),
            origin: Some(Format::Anthropic),
            id: None,
        })
    );
}

/// What the general (serde) path reads from a `content_block_delta`.
fn serde_delta(data: &[u8]) -> Option<(u64, Delta<'_>)> {
    let w: WireEvent<'_> = serde_json::from_slice(data).ok()?;
    if w.kind.as_str() != "content_block_delta" {
        return None;
    }
    let d = w.delta?;
    let delta = match d.kind.as_ref().map(CowStr::as_str) {
        Some("text_delta") => Delta::Text(d.text?.0),
        Some("thinking_delta") => Delta::Thinking(d.thinking?.0),
        Some("input_json_delta") => Delta::ToolArgs(d.partial_json?.0),
        _ => return None,
    };
    Some((w.index?, delta))
}

#[test]
fn compact_deltas_read_as_serde_reads_them() {
    let read: &[&str] = &[
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
        r#"{"type":"content_block_delta","index":12,"delta":{"type":"text_delta","text":""}}"#,
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"thinking_delta","thinking":"hm \"quoted\" \\ back"}}"#,
        r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"a\": 1"}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"caf\u00e9 \ud83d\ude00 é\n\t"}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"ends in \\"}}"#,
    ];
    for data in read {
        let fast = stream::compact_delta(data.as_bytes());
        assert!(fast.is_some(), "{data}");
        assert_eq!(fast, serde_delta(data.as_bytes()), "{data}");
    }
    // Everything else goes through serde: other spacing or order, extra
    // fields, other kinds, and strings serde refuses.
    let general: &[&[u8]] = &[
        br#"{"type": "content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}"#,
        br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}} "#,
        br#"{"index":0,"type":"content_block_delta","delta":{"type":"text_delta","text":"x"}}"#,
        br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x","citations":[]}}"#,
        br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"},"x":1}"#,
        br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"b"}}"#,
        br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a\"}}"#,
        br#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"s"}}"#,
        br#"{"type":"content_block_delta","index":01,"delta":{"type":"text_delta","text":"x"}}"#,
        br#"{"type":"content_block_delta","index":,"delta":{"type":"text_delta","text":"x"}}"#,
        b"{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\x01\"}}",
        b"{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"\xff\"}}",
        br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\u12"}}"#,
    ];
    for data in general {
        assert_eq!(
            stream::compact_delta(data),
            None,
            "{}",
            String::from_utf8_lossy(data)
        );
    }
}

#[test]
fn compact_deltas_follow_the_open_block() {
    let mut d = StreamDecode::default();
    let mut got = Vec::new();
    let events: &[&[u8]] = &[
        br#"{"type":"message_start","message":{"id":"m","model":"c","usage":{"input_tokens":3,"output_tokens":1}}}"#,
        br#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a\"b"}}"#,
        // Not the open block: dropped, as the general path drops it.
        br#"{"type":"content_block_delta","index":5,"delta":{"type":"text_delta","text":"x"}}"#,
        br#"{"type":"content_block_stop","index":0}"#,
        br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"late"}}"#,
    ];
    for data in events {
        d.event(sse::Event { event: "", data }, &mut |e| {
            if let StreamEvent::Delta { index, delta } = e {
                got.push((index, format!("{delta:?}")));
            }
        });
    }
    assert_eq!(got, vec![(0, format!("{:?}", Delta::Text("a\"b".into())))]);
}
