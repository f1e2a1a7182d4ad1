//! Gemini and OpenAI Responses (issue 4) on arbitrary bytes, against every
//! other format: request conversion gives a 400 with a message or a JSON
//! object; answer conversion an error or JSON; stream conversion never
//! panics, gives the same client bytes however the upstream is cut, and ends
//! well-formed in the client's framing (Responses: `event:`/`data:` SSE with
//! JSON data; Gemini: CRLF-framed SSE, or one JSON array without `alt=sse`).
#![no_main]

use aigate::translate::{Format, RequestOpts, ResponseOpts, StreamTranslator, convert_request, convert_response};
use libfuzzer_sys::fuzz_target;

const ALL: [Format; 4] = [Format::OpenAiChat, Format::Anthropic, Format::OpenAiResponses, Format::Gemini];
const MINE: [Format; 2] = [Format::OpenAiResponses, Format::Gemini];

fn run(from: Format, to: Format, sse: bool, pieces: &[&[u8]]) -> Vec<u8> {
    let opts = ResponseOpts {
        client_model: "c".into(),
        include_usage: true,
        gemini_sse: sse,
        namespaces: Default::default(),
    };
    let mut t = StreamTranslator::new_at(from, to, opts, 1);
    let mut out = Vec::new();
    for p in pieces {
        t.feed(p, &mut out);
    }
    t.finish(&mut out);
    assert!(t.is_finished(), "finish() always ends the client stream");
    out
}

fn check_framing(to: Format, sse: bool, out: &[u8]) {
    let text = std::str::from_utf8(out).expect("client stream is UTF-8");
    match (to, sse) {
        (Format::Gemini, false) => {
            let v: serde_json::Value = serde_json::from_str(text).expect("one JSON array");
            assert!(v.is_array());
        }
        (Format::Gemini, true) => {
            assert!(text.ends_with("\r\n\r\n"));
            for f in text.split("\r\n\r\n").filter(|f| !f.is_empty()) {
                let d = f.strip_prefix("data: ").expect("data frame");
                serde_json::from_str::<serde_json::Value>(d).expect("chunk is JSON");
            }
        }
        (Format::OpenAiResponses, _) => {
            assert!(text.ends_with("\n\n"));
            let mut last = -1i64;
            for f in text.split("\n\n").filter(|f| !f.is_empty()) {
                let mut lines = f.lines();
                let ev = lines.next().and_then(|l| l.strip_prefix("event: ")).expect("event line");
                let d = lines.next().and_then(|l| l.strip_prefix("data: ")).expect("data line");
                let v: serde_json::Value = serde_json::from_str(d).expect("event data is JSON");
                assert_eq!(v["type"], ev);
                let seq = v["sequence_number"].as_i64().expect("sequence_number");
                assert_eq!(seq, last + 1, "sequence_number increments");
                last = seq;
            }
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) {
        for from in ALL {
            for to in ALL {
                if !MINE.contains(&from) && !MINE.contains(&to) {
                    continue;
                }
                let opts = RequestOpts {
                    model: "m".into(),
                    stream: data.len() % 2 == 0,
                };
                match convert_request(from, to, &body, &opts) {
                    Ok(out) => assert!(serde_json::from_slice::<serde_json::Value>(&out.body).expect("JSON").is_object()),
                    Err(e) => {
                        assert_eq!(e.status, 400);
                        assert!(!e.message.is_empty());
                    }
                }
            }
        }
    }
    for from in ALL {
        for to in ALL {
            if !MINE.contains(&from) && !MINE.contains(&to) {
                continue;
            }
            if let Ok(out) = convert_response(from, to, data, &ResponseOpts::default()) {
                serde_json::from_slice::<serde_json::Value>(&out).expect("converted answer is JSON");
            }
            for sse in [true, false] {
                let whole = run(from, to, sse, &[data]);
                let cut = data.len() / 3;
                assert_eq!(whole, run(from, to, sse, &[&data[..cut], &data[cut..]]), "cut at {cut}");
                let small: Vec<&[u8]> = data.chunks(5).collect();
                assert_eq!(whole, run(from, to, sse, &small), "5-byte pieces");
                check_framing(to, sse, &whole);
            }
        }
    }
});
