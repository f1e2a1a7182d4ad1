//! Stream conversion on arbitrary upstream bytes, every format pair: never a
//! panic; the same client bytes however the upstream is cut; the client stream
//! is well-formed SSE whose data is JSON (or OpenAI's `[DONE]`).
#![no_main]

use aigate::sse::{Event, Parser};
use aigate::translate::{Format, ResponseOpts, StreamTranslator};
use libfuzzer_sys::fuzz_target;

const FORMATS: [Format; 2] = [Format::OpenAiChat, Format::Anthropic];

fn run(from: Format, to: Format, pieces: &[&[u8]]) -> Vec<u8> {
    let opts = ResponseOpts {
        client_model: "c".into(),
        include_usage: true,
        gemini_sse: false,
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

fuzz_target!(|data: &[u8]| {
    for from in FORMATS {
        for to in FORMATS {
            let whole = run(from, to, &[data]);
            let cut = data.len() / 3;
            assert_eq!(
                whole,
                run(from, to, &[&data[..cut], &data[cut..]]),
                "cut at {cut}"
            );
            let small: Vec<&[u8]> = data.chunks(7).collect();
            assert_eq!(whole, run(from, to, &small), "7-byte pieces");
            let mut p = Parser::default();
            let mut n = 0;
            let mut on = |e: Event<'_>| {
                n += 1;
                if e.data != b"[DONE]" {
                    serde_json::from_slice::<serde_json::Value>(e.data)
                        .expect("client event data is JSON");
                }
            };
            p.feed(&whole, &mut on)
                .expect("client stream within the cap");
            p.finish(&mut on).expect("client stream within the cap");
            assert!(
                whole.is_empty() || whole.ends_with(b"\n\n"),
                "ends on an event boundary"
            );
            assert!(n >= 1, "at least the terminal or error event");
        }
    }
});
