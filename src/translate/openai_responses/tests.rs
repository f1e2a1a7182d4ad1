use super::*;

/// Parse encoder output into (event name, data) pairs, checking framing.
pub(crate) fn parse_frames(bytes: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(bytes).expect("utf8");
    assert!(
        text.is_empty() || text.ends_with("\n\n"),
        "stream ends mid-frame"
    );
    text.split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| {
            let mut lines = f.lines();
            let ev = lines
                .next()
                .and_then(|l| l.strip_prefix("event: "))
                .expect("event line");
            let data = lines
                .next()
                .and_then(|l| l.strip_prefix("data: "))
                .expect("data line");
            assert!(lines.next().is_none(), "one data line per frame");
            let v: Value = serde_json::from_str(data).expect("data is JSON");
            assert_eq!(v["type"], ev, "event name matches data.type");
            (ev.to_string(), v)
        })
        .collect()
}

/// Rebuild the final response the way the `openai` SDK's ResponseStreamState
/// does, asserting the indices agree, and return (snapshot, final response).
pub(crate) fn replay_like_sdk(frames: &[(String, Value)]) -> (Value, Value) {
    let mut snapshot = Value::Null;
    let mut last_seq: i64 = -1;
    let mut final_resp = Value::Null;
    for (ev, v) in frames {
        let seq = v["sequence_number"].as_i64().expect("sequence_number");
        assert_eq!(
            seq,
            last_seq + 1,
            "sequence_number increases by one at {ev}"
        );
        last_seq = seq;
        match ev.as_str() {
            "response.created" => snapshot = v["response"].clone(),
            "response.output_item.added" => {
                let out = snapshot["output"].as_array_mut().expect("created first");
                assert_eq!(
                    v["output_index"].as_u64().unwrap() as usize,
                    out.len(),
                    "output_index of added item"
                );
                out.push(v["item"].clone());
            }
            "response.content_part.added" => {
                let item = &mut snapshot["output"][v["output_index"].as_u64().unwrap() as usize];
                assert_eq!(item["id"], v["item_id"]);
                let content = item["content"].as_array_mut().unwrap();
                assert_eq!(v["content_index"].as_u64().unwrap() as usize, content.len());
                content.push(v["part"].clone());
            }
            "response.output_text.delta" => {
                let item = &mut snapshot["output"][v["output_index"].as_u64().unwrap() as usize];
                assert_eq!(item["id"], v["item_id"]);
                let part = &mut item["content"][v["content_index"].as_u64().unwrap() as usize];
                assert_eq!(part["type"], "output_text");
                let t = format!(
                    "{}{}",
                    part["text"].as_str().unwrap(),
                    v["delta"].as_str().unwrap()
                );
                part["text"] = Value::String(t);
            }
            "response.function_call_arguments.delta" => {
                let item = &mut snapshot["output"][v["output_index"].as_u64().unwrap() as usize];
                assert_eq!(item["id"], v["item_id"]);
                assert_eq!(item["type"], "function_call");
                let t = format!(
                    "{}{}",
                    item["arguments"].as_str().unwrap(),
                    v["delta"].as_str().unwrap()
                );
                item["arguments"] = Value::String(t);
            }
            "response.output_item.done" => {
                let idx = v["output_index"].as_u64().unwrap() as usize;
                assert_eq!(snapshot["output"][idx]["id"], v["item"]["id"]);
                snapshot["output"][idx] = v["item"].clone();
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                final_resp = v["response"].clone();
            }
            _ => {}
        }
    }
    (snapshot, final_resp)
}

#[test]
fn encoder_grammar_text_reasoning_and_parallel_calls() {
    let mut e = ResponsesEncoder::new("chatcmpl-abc", "m", 7);
    let mut out = Vec::new();
    e.reasoning_delta("think", &mut out);
    e.reasoning_delta("ing", &mut out);
    e.reasoning_encrypted("sig", &mut out);
    e.text_delta("Hel", &mut out);
    e.text_delta("lo", &mut out);
    e.tool_call_start("call_1", "f", &mut out);
    e.tool_args_delta("{\"a\":", &mut out);
    e.tool_args_delta("1}", &mut out);
    e.tool_call_start("call_2", "g", &mut out);
    e.tool_args_delta("{}", &mut out);
    e.finish(
        Outcome::Completed,
        Some(RespUsage {
            input: 10,
            cached: 2,
            output: 5,
            reasoning: 3,
        }),
        &mut out,
    );
    let frames = parse_frames(&out);
    let (snapshot, fin) = replay_like_sdk(&frames);
    assert_eq!(frames[0].0, "response.created");
    assert_eq!(frames[1].0, "response.in_progress");
    assert_eq!(frames.last().unwrap().0, "response.completed");
    assert_eq!(
        fin["output"], snapshot["output"],
        "events rebuild the final output"
    );
    assert_eq!(fin["id"], "resp_chatcmplabc");
    assert_eq!(fin["output"][0]["summary"][0]["text"], "thinking");
    assert_eq!(fin["output"][0]["encrypted_content"], "sig");
    assert_eq!(fin["output"][1]["content"][0]["text"], "Hello");
    assert_eq!(fin["output"][2]["arguments"], "{\"a\":1}");
    assert_eq!(fin["output"][2]["call_id"], "call_1");
    assert_eq!(fin["output"][3]["name"], "g");
    assert_eq!(fin["usage"]["total_tokens"], 15);
    assert_eq!(fin["usage"]["input_tokens_details"]["cached_tokens"], 2);
    assert_eq!(fin["usage"]["output_tokens_details"]["reasoning_tokens"], 3);
    let ids: Vec<&str> = fin["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    let mut uniq = ids.clone();
    uniq.dedup();
    assert_eq!(ids.len(), uniq.len(), "item ids are unique: {ids:?}");
}

#[test]
fn encoder_incomplete_and_failed() {
    let mut e = ResponsesEncoder::new("resp_x", "m", 1);
    let mut out = Vec::new();
    e.text_delta("a", &mut out);
    e.finish(Outcome::MaxOutputTokens, None, &mut out);
    e.text_delta("ignored after done?", &mut Vec::new());
    let frames = parse_frames(&out);
    let (_, fin) = replay_like_sdk(&frames);
    assert_eq!(frames.last().unwrap().0, "response.incomplete");
    assert_eq!(fin["status"], "incomplete");
    assert_eq!(fin["incomplete_details"]["reason"], "max_output_tokens");

    let mut e = ResponsesEncoder::new("resp_y", "m", 1);
    let mut out = Vec::new();
    e.text_delta("partial", &mut out);
    e.fail("server_error", "upstream died", &mut out);
    let frames = parse_frames(&out);
    let names: Vec<&str> = frames.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(&names[names.len() - 2..], ["error", "response.failed"]);
    let (_, fin) = replay_like_sdk(&frames);
    assert_eq!(fin["status"], "failed");
    assert_eq!(fin["error"]["message"], "upstream died");
    assert_eq!(
        fin["output"][0]["content"][0]["text"], "partial",
        "partial output is closed, not lost"
    );
}

use crate::translate::{StreamTranslator, convert_request, convert_response};

fn ro() -> RequestOpts {
    RequestOpts {
        model: "gpt-5".into(),
        stream: false,
    }
}

#[test]
fn input_items_are_first_class() {
    let body = json!({
        "model": "m",
        "instructions": "sys",
        "input": [
            {"role": "developer", "content": "dev rule"},
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}, {"type": "input_image", "image_url": "data:image/png;base64,iVBO-_w", "detail": "high"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "a"}, {"type": "summary_text", "text": "b"}], "encrypted_content": "gAAAA"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "calling"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{\"x\":1}"},
            {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]},
            {"role": "user", "content": "thanks"},
            {"role": "system", "content": "late system"}
        ],
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": true}],
        "tool_choice": {"type": "function", "name": "f"},
        "parallel_tool_calls": false,
        "reasoning": {"effort": "low", "summary": "detailed"},
        "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": true}},
        "max_output_tokens": 64,
        "temperature": 0.5,
        "top_p": 0.5,
        "safety_identifier": "u-1",
        "store": false,
        "include": ["reasoning.encrypted_content"]
    });
    let r = decode_request(&body).unwrap();
    assert_eq!(
        r.system.iter().map(|t| t.text.as_str()).collect::<Vec<_>>(),
        ["sys", "dev rule"]
    );
    assert_eq!(r.messages.len(), 5, "{:#?}", r.messages);
    assert_eq!(r.messages[0].role, ir::Role::User);
    assert!(
        matches!(&r.messages[0].content[1], Part::Image(i) if i.detail.as_deref() == Some("high") && matches!(&i.source, ir::ImageSource::Base64 { data, .. } if data == "iVBO+/w="))
    );
    let a = &r.messages[1];
    assert_eq!(a.role, ir::Role::Assistant);
    assert!(
        matches!(&a.content[0], Part::Thinking(t) if t.text == "a\n\nb" && t.signature.as_deref() == Some("gAAAA") && t.origin == Some(Format::OpenAiResponses) && t.id.as_deref() == Some("rs_1"))
    );
    assert!(matches!(&a.content[1], Part::Text(t) if t.text == "calling"));
    assert!(
        matches!(&a.content[2], Part::ToolCall(c) if c.id == "c1" && c.arguments == "{\"x\":1}")
    );
    assert!(matches!(&a.content[3], Part::ToolCall(c) if c.id == "c2"));
    let t = &r.messages[2];
    assert_eq!(t.role, ir::Role::User);
    assert!(
        matches!(&t.content[0], Part::ToolResult(x) if x.id == "c1" && x.name.as_deref() == Some("f"))
    );
    assert!(
        matches!(&t.content[1], Part::ToolResult(x) if x.id == "c2" && matches!(&x.content[0], Part::Text(tt) if tt.text == "two"))
    );
    assert!(
        matches!(&r.messages[3].content[0], Part::Text(x) if x.text == "thanks"),
        "a new user message is a new turn"
    );
    assert_eq!(r.messages[4].role, ir::Role::System);
    assert_eq!(r.tool_choice, Some(ir::ToolChoice::Tool("f".into())));
    assert_eq!(r.parallel_tool_calls, Some(false));
    assert_eq!(r.reasoning.as_ref().unwrap().effort.as_deref(), Some("low"));
    assert_eq!(
        r.reasoning.as_ref().unwrap().summary.as_deref(),
        Some("detailed")
    );
    assert!(
        matches!(&r.response_format, Some(ir::ResponseFormat::JsonSchema { name, strict: Some(true), .. }) if name == "out")
    );
    assert_eq!(r.sampling.max_tokens, Some(64));
    assert_eq!(r.user.as_deref(), Some("u-1"));
    assert!(r.extra.fields.is_empty(), "{:?}", r.extra.fields);

    // and back out to a Responses upstream, same items in the same order
    let out: Value =
        serde_json::from_slice(&encode_request(&r, &ro(), &mut Dropped::default()).unwrap())
            .unwrap();
    let kinds: Vec<&str> = out["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().or_else(|| i["role"].as_str()).unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "user",
            "reasoning",
            "message",
            "function_call",
            "function_call",
            "function_call_output",
            "function_call_output",
            "user",
            "system"
        ]
    );
    assert_eq!(out["instructions"], "sys\n\ndev rule");
    assert_eq!(out["include"], json!(["reasoning.encrypted_content"]));
    assert_eq!(
        out["reasoning"],
        json!({"effort": "low", "summary": "detailed"})
    );
    assert_eq!(out["text"]["format"]["name"], "out");
    assert_eq!(out["store"], false);
    assert_eq!(
        out["input"][0]["content"][1]["image_url"],
        "data:image/png;base64,iVBO+/w="
    );
}

#[test]
fn other_formats_features_refused_by_name() {
    let base = ir::Request {
        messages: vec![ir::Message {
            role: ir::Role::User,
            content: vec![Part::Text(ir::TextPart::new("x"))],
            name: None,
        }],
        ..Default::default()
    };
    for (mutate, param) in [
        (
            Box::new(|r: &mut ir::Request| r.sampling.stop = vec!["x".into()])
                as Box<dyn Fn(&mut ir::Request)>,
            "stop",
        ),
        (Box::new(|r: &mut ir::Request| r.sampling.n = Some(2)), "n"),
        (
            Box::new(|r: &mut ir::Request| {
                r.extra = ir::Extra {
                    format: Format::Gemini,
                    fields: [("safetySettings".to_string(), json!([]))]
                        .into_iter()
                        .collect(),
                    hints: Map::new(),
                    ..ir::Extra::default()
                }
            }),
            "safetySettings",
        ),
        (
            Box::new(|r: &mut ir::Request| {
                r.tools.push(ir::Tool::Raw(ir::Raw {
                    format: Format::Anthropic,
                    value: json!({"type": "web_search_20250305"}),
                }))
            }),
            "tools[0]",
        ),
    ] {
        let mut r = base.clone();
        mutate(&mut r);
        let e = encode_request(&r, &ro(), &mut Dropped::default()).unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.param.as_deref(), Some(param), "{}", e.message);
    }
    // thinking from another provider is not replayed; a thinking budget becomes an effort
    let mut r = base;
    r.messages.push(ir::Message {
        role: ir::Role::Assistant,
        content: vec![
            Part::Thinking(ir::Thinking {
                text: "t".into(),
                signature: Some("sig".into()),
                origin: Some(Format::Anthropic),
                id: None,
            }),
            Part::Text(ir::TextPart::new("a")),
        ],
        name: None,
    });
    r.reasoning = Some(ir::Reasoning {
        budget_tokens: Some(10000),
        ..Default::default()
    });
    let out: Value =
        serde_json::from_slice(&encode_request(&r, &ro(), &mut Dropped::default()).unwrap())
            .unwrap();
    assert!(
        out["input"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["type"] != "reasoning")
    );
    assert_eq!(
        out["reasoning"],
        json!({"effort": "high", "summary": "auto"})
    );
}

fn feed(from: Format, to: Format, body: &[u8]) -> Vec<u8> {
    let mut t = StreamTranslator::new(from, to, ResponseOpts::default());
    let mut out = Vec::new();
    t.feed(body, &mut out);
    t.finish(&mut out);
    out
}

#[test]
fn parallel_streamed_calls_from_the_ir() {
    // IR events as an OpenAI Chat / Anthropic upstream would produce them.
    let mut e = StreamEncode::new(&ResponseOpts::default());
    let mut out = Vec::new();
    let evs = vec![
        StreamEvent::Start(ir::StreamStart {
            id: "msg_01".into(),
            model: "claude".into(),
            created: None,
            usage: ir::Usage {
                input: 10,
                ..Default::default()
            },
            origin: Some(Format::Anthropic),
        }),
        StreamEvent::BlockStart {
            index: 0,
            block: ir::BlockStart::Thinking,
        },
        StreamEvent::Delta {
            index: 0,
            delta: ir::Delta::Thinking("hm".into()),
        },
        StreamEvent::Delta {
            index: 0,
            delta: ir::Delta::Signature("EqSig".into()),
        },
        StreamEvent::BlockStop { index: 0 },
        StreamEvent::BlockStart {
            index: 1,
            block: ir::BlockStart::ToolCall {
                id: "toolu_a".into(),
                name: "f".into(),
            },
        },
        StreamEvent::Delta {
            index: 1,
            delta: ir::Delta::ToolArgs("{\"a\"".into()),
        },
        StreamEvent::Delta {
            index: 1,
            delta: ir::Delta::ToolArgs(":1}".into()),
        },
        StreamEvent::BlockStop { index: 1 },
        StreamEvent::BlockStart {
            index: 2,
            block: ir::BlockStart::ToolCall {
                id: "toolu_b".into(),
                name: "g".into(),
            },
        },
        StreamEvent::Delta {
            index: 2,
            delta: ir::Delta::ToolArgs("{}".into()),
        },
        StreamEvent::BlockStop { index: 2 },
        StreamEvent::Finish {
            reason: ir::FinishReason::ToolCalls,
            usage: ir::Usage {
                input: 10,
                output: 7,
                reasoning: 2,
                ..Default::default()
            },
        },
    ];
    for ev in &evs {
        e.event(ev, &mut out);
    }
    let frames = parse_frames(&out);
    let (_, fin) = replay_like_sdk(&frames);
    assert_eq!(fin["status"], "completed");
    assert_eq!(fin["model"], "claude");
    assert_eq!(fin["output"][1]["call_id"], "toolu_a");
    assert_eq!(fin["output"][1]["arguments"], "{\"a\":1}");
    assert_eq!(fin["output"][2]["call_id"], "toolu_b");
    let enc = fin["output"][0]["encrypted_content"].as_str().unwrap();
    let w = unwrap_signature(enc).expect("wrapped with its origin");
    assert_eq!(
        (w.origin, w.sig.as_str()),
        (Some(Format::Anthropic), "EqSig")
    );
    assert_eq!(fin["usage"]["input_tokens"], 10);
    assert_eq!(fin["usage"]["output_tokens"], 7);
    assert_eq!(fin["usage"]["output_tokens_details"]["reasoning_tokens"], 2);
    // Replayed by the client, the thinking goes back to Anthropic signed.
    let body = json!({"model": "m", "input": [{"role": "user", "content": "q"}, fin["output"][0].clone(), fin["output"][1].clone(), {"type": "function_call_output", "call_id": "toolu_a", "output": "1"}]});
    let r = decode_request(&body).unwrap();
    assert!(
        matches!(&r.messages[1].content[0], Part::Thinking(t) if t.origin == Some(Format::Anthropic) && t.signature.as_deref() == Some("EqSig") && t.text == "hm")
    );
}

#[test]
fn upstream_stream_decoder_handles_parallel_calls_and_lazy_parts() {
    // Two calls, arguments only in output_item.done for the second; text without content_part.added.
    let body = concat!(
        "data: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"model\":\"gpt\",\"created_at\":5}}\n\n",
        "data: {\"type\":\"response.output_text.delta\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi\"}\n\n",
        "data: {\"type\":\"response.output_item.done\",\"output_index\":0,\"item\":{\"type\":\"message\"}}\n\n",
        "data: {\"type\":\"response.output_item.added\",\"output_index\":1,\"item\":{\"type\":\"function_call\",\"call_id\":\"c1\",\"name\":\"f\"}}\n\n",
        "data: {\"type\":\"response.function_call_arguments.delta\",\"output_index\":1,\"delta\":\"{\\\"a\\\":\"}\n\n",
        "data: {\"type\":\"response.function_call_arguments.delta\",\"output_index\":1,\"delta\":\"2}\"}\n\n",
        "data: {\"type\":\"response.output_item.done\",\"output_index\":1,\"item\":{\"type\":\"function_call\",\"call_id\":\"c1\",\"name\":\"f\",\"arguments\":\"{\\\"a\\\":2}\"}}\n\n",
        "data: {\"type\":\"response.output_item.done\",\"output_index\":2,\"item\":{\"type\":\"function_call\",\"call_id\":\"c2\",\"name\":\"g\",\"arguments\":\"{\\\"b\\\":3}\"}}\n\n",
        "data: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"status\":\"completed\",\"usage\":{\"input_tokens\":9,\"input_tokens_details\":{\"cached_tokens\":4},\"output_tokens\":3,\"output_tokens_details\":{\"reasoning_tokens\":1}}}}\n\n",
        "data: [DONE]\n\n"
    );
    let out = feed(
        Format::OpenAiResponses,
        Format::OpenAiResponses,
        body.as_bytes(),
    );
    let (_, fin) = replay_like_sdk(&parse_frames(&out));
    assert_eq!(fin["output"][0]["content"][0]["text"], "Hi");
    assert_eq!(
        fin["output"][1]["arguments"], "{\"a\":2}",
        "arguments not doubled by output_item.done"
    );
    assert_eq!(fin["output"][2]["arguments"], "{\"b\":3}");
    assert_eq!(fin["usage"]["input_tokens_details"]["cached_tokens"], 4);
    // to Gemini: both calls whole, STOP, usage arithmetic
    let g = feed(Format::OpenAiResponses, Format::Gemini, body.as_bytes());
    let arr: Value = serde_json::from_slice(&g).unwrap();
    let parts: Vec<&Value> = arr
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["candidates"][0]["content"]["parts"].as_array().unwrap())
        .collect();
    let calls: Vec<(&str, &Value)> = parts
        .iter()
        .filter_map(|p| {
            p.get("functionCall")
                .map(|f| (f["name"].as_str().unwrap(), &f["args"]))
        })
        .collect();
    assert_eq!(calls, [("f", &json!({"a": 2})), ("g", &json!({"b": 3}))]);
    let last = arr.as_array().unwrap().last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(
        last["usageMetadata"],
        json!({"promptTokenCount": 9, "candidatesTokenCount": 2, "totalTokenCount": 12, "cachedContentTokenCount": 4, "thoughtsTokenCount": 1})
    );
}

/// Every data object of a client stream (SSE, or Gemini's JSON array).
fn data_objects(out: &[u8]) -> Vec<Value> {
    if let Ok(Value::Array(a)) = serde_json::from_slice::<Value>(out) {
        return a;
    }
    let mut got = Vec::new();
    let mut p = sse::Parser::default();
    let mut on = |e: sse::Event<'_>| {
        if let Ok(v) = serde_json::from_slice::<Value>(e.data) {
            got.push(v);
        }
    };
    p.feed(out, &mut on).unwrap();
    p.finish(&mut on).unwrap();
    got
}

/// The reasoning item id a client of `to` would give back, wherever it sits.
fn reasoning_id_seen(to: Format, objects: &[Value]) -> Option<String> {
    let unwrap_id = |s: &str| unwrap_signature(s).and_then(|w| w.id);
    objects.iter().find_map(|v| match to {
        Format::OpenAiChat => v["choices"][0]["message"]["reasoning_details"][0]["id"]
            .as_str()
            .or(v["choices"][0]["delta"]["reasoning_details"][0]["id"].as_str())
            .map(str::to_string),
        Format::Anthropic => v["content"][0]["signature"]
            .as_str()
            .or(v["delta"]["signature"].as_str())
            .and_then(unwrap_id),
        Format::Gemini => v["candidates"][0]["content"]["parts"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|p| p["thoughtSignature"].as_str().and_then(unwrap_id)),
        Format::OpenAiResponses => None,
    })
}

#[test]
fn streamed_reasoning_item_ids_reach_clients_as_from_a_whole_answer() {
    // The id names the item when the client gives the reasoning back; a
    // stream lost it (the whole answer kept it).
    let item = json!({"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "plan"}], "encrypted_content": "gAAAenc"});
    let message = json!({"type": "message", "id": "msg_1", "role": "assistant", "content": [{"type": "output_text", "text": "Hi"}]});
    let whole = json!({"id": "resp_1", "object": "response", "model": "gpt", "status": "completed", "output": [item, message]});
    let events = [
        json!({"type": "response.created", "response": {"id": "resp_1", "model": "gpt", "status": "in_progress", "output": []}}),
        json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "reasoning", "id": "rs_1", "summary": []}}),
        json!({"type": "response.reasoning_summary_text.delta", "output_index": 0, "summary_index": 0, "delta": "plan"}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
        json!({"type": "response.output_text.delta", "output_index": 1, "content_index": 0, "delta": "Hi"}),
        json!({"type": "response.output_item.done", "output_index": 1, "item": message}),
        json!({"type": "response.completed", "response": whole}),
    ];
    let body: String = events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect();
    for to in [Format::OpenAiChat, Format::Anthropic, Format::Gemini] {
        let answer = convert_response(
            Format::OpenAiResponses,
            to,
            whole.to_string().as_bytes(),
            &ResponseOpts::default(),
        )
        .unwrap();
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        let streamed = data_objects(&feed(Format::OpenAiResponses, to, body.as_bytes()));
        assert_eq!(
            reasoning_id_seen(to, std::slice::from_ref(&answer)).as_deref(),
            Some("rs_1"),
            "{to:?} answer: {answer}"
        );
        assert_eq!(
            reasoning_id_seen(to, &streamed).as_deref(),
            Some("rs_1"),
            "{to:?} stream: {streamed:?}"
        );
    }
}

#[test]
fn gemini_json_schema_for_structured_output() {
    let body = json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "p", "strict": true, "schema": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"], "additionalProperties": false}}}});
    let g: Value = serde_json::from_slice(
        &convert_request(Format::OpenAiResponses, Format::Gemini, &body, &ro())
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(
        g["generationConfig"]["responseMimeType"],
        "application/json"
    );
    assert_eq!(
        g["generationConfig"]["responseSchema"],
        json!({"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}, "required": ["n"]})
    );
}

/// What Codex 0.169 declares: a namespace of functions (multi_agent_v1).
fn codex_namespaced() -> Value {
    json!({"model": "m", "input": "spawn one", "tools": [
        {"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}},
        {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.", "tools": [
            {"type": "function", "name": "spawn_agent", "description": "Spawn one.", "strict": false,
             "parameters": {"type": "object", "properties": {"task": {"type": "string"}}}},
            {"type": "function", "name": "close_agent", "parameters": {"type": "object", "properties": {"target": {"type": "string"}}}}
        ]},
        {"type": "function", "name": "mcp__db__query", "parameters": {"type": "object", "properties": {}}}
    ]})
}

fn conv(to: Format, body: &Value) -> Value {
    serde_json::from_slice(
        &convert_request(Format::OpenAiResponses, to, body, &ro())
            .unwrap_or_else(|e| panic!("{to:?}: {e:?}"))
            .body,
    )
    .unwrap()
}

#[test]
fn namespaced_functions_go_to_other_formats_flattened() {
    let body = codex_namespaced();
    // Every other tool keeps its client index: the namespace's first
    // function takes its place, the rest follow.
    let want = [
        "exec_command",
        "multi_agent_v1__spawn_agent",
        "mcp__db__query",
        "multi_agent_v1__close_agent",
    ];
    let an = conv(Format::Anthropic, &body);
    let names: Vec<&str> = an["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, want);
    assert_eq!(
        an["tools"][1]["description"],
        "(multi_agent_v1: Sub-agents.) Spawn one."
    );
    assert_eq!(
        an["tools"][1]["input_schema"]["properties"]["task"]["type"],
        "string"
    );
    let oa = conv(Format::OpenAiChat, &body);
    assert_eq!(oa["tools"][3]["function"]["name"], want[3]);
    let ge = conv(Format::Gemini, &body);
    assert_eq!(
        ge["tools"][0]["functionDeclarations"][1]["name"],
        "multi_agent_v1__spawn_agent"
    );
    // The history: a namespaced call and its output, and tool_choice.
    let mut b = body.clone();
    b["input"] = json!([
        {"type": "message", "role": "user", "content": "spawn one"},
        {"type": "function_call", "call_id": "c1", "namespace": "multi_agent_v1", "name": "spawn_agent", "arguments": "{\"task\":\"x\"}"},
        {"type": "function_call_output", "call_id": "c1", "namespace": "multi_agent_v1", "name": "spawn_agent", "output": "agent-1"}
    ]);
    b["tool_choice"] =
        json!({"type": "function", "namespace": "multi_agent_v1", "name": "close_agent"});
    let an = conv(Format::Anthropic, &b);
    assert_eq!(
        an["messages"][1]["content"][0]["name"],
        "multi_agent_v1__spawn_agent"
    );
    assert_eq!(an["messages"][2]["content"][0]["tool_use_id"], "c1");
    assert_eq!(
        an["tool_choice"],
        json!({"type": "tool", "name": "multi_agent_v1__close_agent"})
    );
    let ge = conv(Format::Gemini, &b);
    assert_eq!(
        ge["contents"][2]["parts"][0]["functionResponse"]["name"],
        "multi_agent_v1__spawn_agent"
    );
}

#[test]
fn namespaces_that_cannot_be_flattened_are_refused_by_name() {
    // A flat name that is already another tool's.
    let mut b = codex_namespaced();
    b["tools"][2]["name"] = json!("multi_agent_v1__close_agent");
    let e = convert_request(Format::OpenAiResponses, Format::Anthropic, &b, &ro()).unwrap_err();
    assert_eq!((e.status, e.param.as_deref()), (400, Some("tools")));
    assert!(
        e.message.contains("multi_agent_v1__close_agent"),
        "{}",
        e.message
    );
    // A namespace holding a freeform (custom) tool stays whole: refused,
    // named by its name.
    let mut b = codex_namespaced();
    b["tools"][1]["tools"][1] = json!({"type": "custom", "name": "apply_patch"});
    for to in [Format::Anthropic, Format::OpenAiChat, Format::Gemini] {
        let e = convert_request(Format::OpenAiResponses, to, &b, &ro()).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tools[1]"), "{to:?}");
        assert!(e.message.contains("namespace"), "{to:?}: {}", e.message);
    }
    let e = convert_request(Format::OpenAiResponses, Format::Gemini, &b, &ro()).unwrap_err();
    assert!(e.message.contains("'multi_agent_v1'"), "{}", e.message);
    assert_eq!(
        Namespaces::of_request(&b),
        Namespaces(vec![]),
        "a namespace with a custom tool is not flattened"
    );
}

fn namespaces() -> ResponseOpts {
    ResponseOpts {
        namespaces: Namespaces::of_request(&codex_namespaced()),
        ..Default::default()
    }
}

#[test]
fn calls_of_namespaced_functions_come_back_split() {
    // A whole Anthropic answer calling a namespaced function and a plain
    // function whose name holds `__`.
    let answer = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
        "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "multi_agent_v1__spawn_agent", "input": {"task": "x"}},
            {"type": "tool_use", "id": "toolu_2", "name": "mcp__db__query", "input": {}}
        ],
        "stop_reason": "tool_use", "usage": {"input_tokens": 5, "output_tokens": 3}});
    let chat = json!({"id": "c", "object": "chat.completion", "model": "gpt", "choices": [{"index": 0,
        "message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "multi_agent_v1__spawn_agent", "arguments": "{\"task\":\"x\"}"}},
            {"id": "call_2", "type": "function", "function": {"name": "mcp__db__query", "arguments": "{}"}}
        ]}, "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}});
    for (from, body) in [(Format::Anthropic, &answer), (Format::OpenAiChat, &chat)] {
        let out: Value = serde_json::from_slice(
            &convert_response(
                from,
                Format::OpenAiResponses,
                body.to_string().as_bytes(),
                &namespaces(),
            )
            .unwrap(),
        )
        .unwrap();
        let calls: Vec<&Value> = out["output"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["type"] == "function_call")
            .collect();
        assert_eq!(calls[0]["name"], "spawn_agent", "{from:?}");
        assert_eq!(calls[0]["namespace"], "multi_agent_v1", "{from:?}");
        assert_eq!(calls[1]["name"], "mcp__db__query", "{from:?}");
        assert!(calls[1].get("namespace").is_none(), "{from:?}");
    }
    // Without the client's namespaces (another client), names are kept.
    let out: Value = serde_json::from_slice(
        &convert_response(
            Format::Anthropic,
            Format::OpenAiResponses,
            answer.to_string().as_bytes(),
            &ResponseOpts::default(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(out["output"][0]["name"], "multi_agent_v1__spawn_agent");
    // Streamed: added and done items, from Anthropic and OpenAI Chat.
    let anthropic = [
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "content": [], "usage": {"input_tokens": 5, "output_tokens": 0}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "multi_agent_v1__spawn_agent", "input": {}}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"task\":\"x\"}"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 3}}),
        json!({"type": "message_stop"}),
    ]
    .iter()
    .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
    .collect::<String>();
    let chat = [
        json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt", "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "multi_agent_v1__spawn_agent", "arguments": ""}}]}}]}),
        json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"task\":\"x\"}"}}]}}]}),
        json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
    ]
    .iter()
    .map(|e| format!("data: {e}\n\n"))
    .chain(std::iter::once("data: [DONE]\n\n".to_string()))
    .collect::<String>();
    for (from, body) in [(Format::Anthropic, anthropic), (Format::OpenAiChat, chat)] {
        let mut t = StreamTranslator::new(from, Format::OpenAiResponses, namespaces());
        let mut out = Vec::new();
        t.feed(body.as_bytes(), &mut out);
        t.finish(&mut out);
        let evs = data_objects(&out);
        let items: Vec<&Value> = evs
            .iter()
            .filter(|e| {
                matches!(
                    e["type"].as_str(),
                    Some("response.output_item.added" | "response.output_item.done")
                )
            })
            .map(|e| &e["item"])
            .collect();
        assert_eq!(items.len(), 2, "{from:?}: {evs:?}");
        for item in items {
            assert_eq!(
                (item["name"].as_str(), item["namespace"].as_str()),
                (Some("spawn_agent"), Some("multi_agent_v1")),
                "{from:?}"
            );
        }
        let done = evs
            .iter()
            .find(|e| e["type"] == "response.completed")
            .unwrap();
        assert_eq!(
            done["response"]["output"][0]["namespace"], "multi_agent_v1",
            "{from:?}"
        );
        assert_eq!(
            done["response"]["output"][0]["arguments"],
            "{\"task\":\"x\"}"
        );
    }
}
