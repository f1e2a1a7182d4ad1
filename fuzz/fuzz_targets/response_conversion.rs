//! Whole-answer conversion on arbitrary bytes: an error or a valid JSON body.
#![no_main]

use aigate::translate::{Format, ResponseOpts, convert_response, response_usage};
use libfuzzer_sys::fuzz_target;

const FORMATS: [Format; 2] = [Format::OpenAiChat, Format::Anthropic];

fuzz_target!(|data: &[u8]| {
    for from in FORMATS {
        let _ = response_usage(from, data);
        for to in FORMATS {
            if let Ok(out) = convert_response(from, to, data, &ResponseOpts::default()) {
                serde_json::from_slice::<serde_json::Value>(&out)
                    .expect("converted answer is JSON");
            }
        }
    }
});
