//! Token counting requests (Anthropic `/v1/messages/count_tokens`, Gemini
//! `:countTokens`): the request bodies each counting endpoint takes, the
//! count in each client's answer shape, and an estimate for targets whose
//! API has no counting endpoint (OpenAI).
//!
//! A counting body is a chat body without the generation settings, so the
//! chat converters do the conversion; each counting format's own wrapping,
//! trimming and answer shape is in its folder (`anthropic::count`,
//! `gemini::count`); this module dispatches and estimates.

use super::{Format, TranslateError};
use serde_json::{Map, Value};

/// Whether a target speaking `format` has an endpoint that counts tokens.
pub fn has_endpoint(format: Format) -> bool {
    matches!(format, Format::Anthropic | Format::Gemini)
}

/// The chat request inside a client's counting body (Gemini's may be
/// wrapped); Anthropic's counting body is a Messages body already.
pub fn chat_request(ingress: Format, body: Value) -> Result<Value, TranslateError> {
    match ingress {
        Format::Gemini => super::gemini::count::chat_request(body),
        _ => Ok(body),
    }
}

/// A converted chat body (the target's format) as that target's counting body.
pub fn request_for(to: Format, chat: Value, model: &str) -> Value {
    match (to, chat) {
        (Format::Anthropic, Value::Object(o)) => super::anthropic::count::request(o),
        (Format::Gemini, Value::Object(o)) => super::gemini::count::request(o, model),
        (_, chat) => chat,
    }
}

/// A Gemini client's counting body for a Gemini target serving `model`
/// (`None`: the body goes as it came).
pub fn gemini_same_format(body: &[u8], model: &str) -> Result<Option<Vec<u8>>, TranslateError> {
    super::gemini::count::same_format(body, model)
}

/// The count in an upstream counting answer of format `from`.
pub fn answer_count(from: Format, body: &[u8]) -> Option<u64> {
    let v: Value = serde_json::from_slice(body).ok()?;
    match from {
        Format::Anthropic => super::anthropic::count::answer_count(&v),
        Format::Gemini => super::gemini::count::answer_count(&v),
        _ => None,
    }
}

/// A count in the client's own answer shape.
pub fn answer_body(ingress: Format, tokens: u64) -> Vec<u8> {
    let v = match ingress {
        Format::Gemini => super::gemini::count::answer(tokens),
        _ => super::anthropic::count::answer(tokens),
    };
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Tokens of a converted request, for a target that cannot count them:
/// about four characters of text per token (the usual rule of thumb for
/// English and code), plus four per message (the system prompt counting as
/// one) for the role and framing.
/// The model name and field names are not text the model reads.
pub fn estimate(request: &Value) -> u64 {
    let chars = text_chars(request, true);
    let turns = ["messages", "input", "contents"]
        .iter()
        .filter_map(|k| request.get(*k).and_then(Value::as_array))
        .map(Vec::len)
        .sum::<usize>() as u64;
    // A system prompt kept apart from the turns is a message too.
    let system = ["instructions", "system", "systemInstruction"]
        .iter()
        .any(|k| request.get(*k).is_some()) as u64;
    chars.div_ceil(4) + 4 * (turns + system)
}

fn text_chars(v: &Value, top: bool) -> u64 {
    match v {
        Value::String(s) => s.chars().count() as u64,
        Value::Array(a) => a.iter().map(|x| text_chars(x, false)).sum(),
        Value::Object(o) => object_chars(o, top),
        _ => 0,
    }
}

fn object_chars(o: &Map<String, Value>, top: bool) -> u64 {
    o.iter()
        // Routing and framing fields, not prompt text.
        .filter(|(k, _)| !(top && matches!(k.as_str(), "model" | "stream" | "user")))
        .filter(|(k, _)| !matches!(k.as_str(), "role" | "type"))
        .map(|(_, v)| text_chars(v, false))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn gemini_bodies_unwrap_and_wrap() {
        let inner = json!({"model": "models/x", "contents": [], "systemInstruction": {}});
        let got = chat_request(Format::Gemini, json!({"generateContentRequest": inner})).unwrap();
        assert_eq!(got, json!({"contents": [], "systemInstruction": {}}));
        let plain = json!({"contents": [{"parts": [{"text": "hi"}]}]});
        assert_eq!(chat_request(Format::Gemini, plain.clone()).unwrap(), plain);
        assert!(chat_request(Format::Gemini, json!({"generateContentRequest": 1})).is_err());
        let wrapped = request_for(Format::Gemini, json!({"contents": []}), "gem");
        assert_eq!(
            wrapped,
            json!({"generateContentRequest": {"contents": [], "model": "models/gem"}})
        );
    }

    #[test]
    fn anthropic_count_body_drops_generation_settings() {
        let chat = json!({"model": "c", "max_tokens": 4096, "stream": false,
            "messages": [], "system": "s", "temperature": 1, "tools": []});
        assert_eq!(
            request_for(Format::Anthropic, chat, "c"),
            json!({"model": "c", "messages": [], "system": "s", "tools": []})
        );
    }

    #[test]
    fn same_format_gemini_maps_only_a_named_model() {
        let b = br#"{"contents":[]}"#;
        assert_eq!(gemini_same_format(b, "m").unwrap(), None);
        let b = br#"{"generateContentRequest":{"model":"models/alias","contents":[]}}"#;
        let out = gemini_same_format(b, "real").unwrap().unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["generateContentRequest"]["model"], "models/real");
    }

    #[test]
    fn counts_in_and_out() {
        assert_eq!(
            answer_count(Format::Anthropic, br#"{"input_tokens":12}"#),
            Some(12)
        );
        assert_eq!(
            answer_count(
                Format::Gemini,
                br#"{"totalTokens":7,"promptTokensDetails":[]}"#
            ),
            Some(7)
        );
        assert_eq!(answer_count(Format::Gemini, b"{}"), Some(0));
        assert_eq!(answer_count(Format::Anthropic, b"{}"), None);
        assert_eq!(answer_count(Format::Anthropic, b"nope"), None);
        assert_eq!(answer_body(Format::Gemini, 3), br#"{"totalTokens":3}"#);
        assert_eq!(answer_body(Format::Anthropic, 3), br#"{"input_tokens":3}"#);
    }

    #[test]
    fn estimate_counts_text_not_framing() {
        let short = json!({"model": "a-very-long-model-name-that-is-not-text",
            "messages": [{"role": "user", "content": "abcd"}]});
        assert_eq!(estimate(&short), 1 + 4);
        let long = json!({"model": "m",
            "messages": [{"role": "system", "content": "x".repeat(400)},
                         {"role": "user", "content": "y".repeat(400)}]});
        assert_eq!(estimate(&long), 200 + 8);
        // Responses keeps the system prompt in `instructions`: the same estimate.
        let resp = json!({"model": "m", "instructions": "x".repeat(400),
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "y".repeat(400)}]}]});
        assert_eq!(estimate(&resp), 200 + 8);
    }
}
