//! Error bodies in each client's format (SPEC "Errors"), for errors the gateway
//! makes itself and for upstream errors converted across formats: dispatch to
//! each format's shape (in its folder; both OpenAI formats' in `shared`), and
//! the message read out of an upstream error of any format.

use super::Format;
use serde_json::Value;

/// The error value (not yet serialized) in `format`: each format's own shape.
pub fn error_value(format: Format, status: u16, message: &str, param: Option<&str>) -> Value {
    match format {
        Format::OpenAiChat | Format::OpenAiResponses => {
            super::shared::openai_error_value(status, message, param)
        }
        Format::Anthropic => super::anthropic::error_value(status, message),
        Format::Gemini => super::gemini::error_value(status, message),
    }
}

/// An error event that ends a stream of `format`, framed as that format's
/// streams carry errors.
pub fn write_stream_error(format: Format, status: u16, message: &str, out: &mut Vec<u8>) {
    let body = error_body(format, status, message);
    match format {
        Format::OpenAiChat => super::openai_chat::write_error_event(&body, out),
        Format::OpenAiResponses => super::openai_responses::write_error_event(&body, out),
        Format::Anthropic => super::anthropic::write_error_event(&body, out),
        Format::Gemini => super::gemini::write_error_event(&body, out),
    }
}

/// A gateway-made error body in the client's format.
pub fn error_body(format: Format, status: u16, message: &str) -> Vec<u8> {
    error_body_param(format, status, message, None)
}

/// Like [`error_body`], naming the offending field where the format has a slot for it.
pub fn error_body_param(
    format: Format,
    status: u16,
    message: &str,
    param: Option<&str>,
) -> Vec<u8> {
    serde_json::to_vec(&error_value(format, status, message, param)).unwrap_or_default()
}

/// The human message inside an upstream error body of any format (or its raw text).
pub fn upstream_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        // OpenAI, Anthropic and Gemini all nest it as error.message; some
        // OpenAI-compatible servers send a bare {"message"} or {"detail"}.
        let e = v.get("error").unwrap_or(&v);
        if let Some(m) = e.get("message").and_then(Value::as_str) {
            return m.to_string();
        }
        if let Some(m) = e.as_str() {
            return m.to_string();
        }
        if let Some(m) = v.get("detail").and_then(Value::as_str) {
            return m.to_string();
        }
        // Gemini's streaming endpoint without alt=sse wraps errors in an array.
        if let Some(m) = v
            .get(0)
            .and_then(|x| x.get("error"))
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
        {
            return m.to_string();
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "upstream returned an error with no body".to_string()
    } else {
        text.chars().take(2000).collect()
    }
}

/// An upstream error body (`from`) re-expressed in the client's format (`to`),
/// keeping the upstream status. Same format: returned untouched.
pub fn convert_error(from: Format, to: Format, status: u16, body: &[u8]) -> Vec<u8> {
    if from == to && serde_json::from_slice::<Value>(body).is_ok() {
        return body.to_vec();
    }
    error_body(to, status, &upstream_message(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_per_format() {
        let v: Value =
            serde_json::from_slice(&error_body(Format::OpenAiChat, 401, "no key")).unwrap();
        assert_eq!(v["error"]["message"], "no key");
        assert_eq!(v["error"]["type"], "authentication_error");
        assert_eq!(v["error"]["code"], "invalid_api_key");
        let v: Value = serde_json::from_slice(&error_body(Format::Anthropic, 429, "slow")).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        let v: Value = serde_json::from_slice(&error_body(Format::Gemini, 404, "nope")).unwrap();
        assert_eq!(v["error"]["code"], 404);
        assert_eq!(v["error"]["status"], "NOT_FOUND");
    }

    #[test]
    fn converts_upstream_errors() {
        let anthropic =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let v: Value = serde_json::from_slice(&convert_error(
            Format::Anthropic,
            Format::OpenAiChat,
            529,
            anthropic,
        ))
        .unwrap();
        assert_eq!(v["error"]["message"], "Overloaded");
        assert_eq!(v["error"]["type"], "overloaded_error");
        let same = convert_error(Format::Anthropic, Format::Anthropic, 529, anthropic);
        assert_eq!(same, anthropic.to_vec());
        let v: Value = serde_json::from_slice(&convert_error(
            Format::Gemini,
            Format::Anthropic,
            502,
            b"<html>bad</html>",
        ))
        .unwrap();
        assert_eq!(v["error"]["message"], "<html>bad</html>");
    }
}
