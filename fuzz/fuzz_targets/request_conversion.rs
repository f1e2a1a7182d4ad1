//! Request conversion on arbitrary JSON: a 400 naming a field or a valid JSON
//! body, never a panic, for every format pair.
#![no_main]

use aigate::translate::{Format, RequestOpts, convert_request, convert_request_compatible};
use libfuzzer_sys::fuzz_target;

const FORMATS: [Format; 2] = [Format::OpenAiChat, Format::Anthropic];

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    for from in FORMATS {
        for to in FORMATS {
            for stream in [false, true] {
                let opts = RequestOpts {
                    model: "m".into(),
                    stream,
                };
                let compat = convert_request_compatible(from, to, &body, &opts);
                assert_eq!(
                    compat.is_ok(),
                    convert_request(from, to, &body, &opts).is_ok()
                );
                match compat {
                    Ok(out) => {
                        let v: serde_json::Value =
                            serde_json::from_slice(&out.body).expect("converted body is JSON");
                        assert!(v.is_object());
                    }
                    Err(e) => {
                        assert_eq!(e.status, 400);
                        assert!(!e.message.is_empty());
                    }
                }
            }
        }
    }
});
