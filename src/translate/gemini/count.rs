//! Gemini's token counting (`:countTokens`): its body and its answer.

use crate::translate::TranslateError;
use serde_json::{Map, Value, json};

/// The chat request inside a Gemini client's counting body: either
/// `{"contents": [...]}` or `{"generateContentRequest": {...}}` (the form
/// that carries a system instruction and tools).
pub fn chat_request(body: Value) -> Result<Value, TranslateError> {
    let Value::Object(mut o) = body else {
        return Err(TranslateError::bad_request(
            "request body must be a JSON object",
            None,
        ));
    };
    match o.remove("generateContentRequest") {
        Some(Value::Object(mut inner)) => {
            // The model is the path's (mapped per target), not this one.
            inner.remove("model");
            Ok(Value::Object(inner))
        }
        Some(_) => Err(TranslateError::bad_request(
            "`generateContentRequest` must be an object",
            Some("generateContentRequest"),
        )),
        None => Ok(Value::Object(o)),
    }
}

/// A converted Gemini body as a counting body, wrapped as
/// `generateContentRequest` (so system instruction and tools are counted).
pub fn request(mut o: Map<String, Value>, model: &str) -> Value {
    o.insert("model".into(), Value::String(model_name(model)));
    json!({ "generateContentRequest": Value::Object(o) })
}

/// Gemini names models `models/{id}`.
fn model_name(model: &str) -> String {
    if model.starts_with("models/") {
        model.to_string()
    } else {
        format!("models/{model}")
    }
}

/// A Gemini client's counting body for a Gemini target serving `model`:
/// the body as it came, unless it names a model inside
/// `generateContentRequest` (then that one is the target's).
pub fn same_format(body: &[u8], model: &str) -> Result<Option<Vec<u8>>, TranslateError> {
    // Most bodies are `{"contents": ...}` and pass untouched, unparsed.
    if !contains(body, b"generateContentRequest") {
        return Ok(None);
    }
    let mut v: Value = serde_json::from_slice(body).map_err(|e| {
        TranslateError::bad_request(format!("request body is not valid JSON: {e}"), None)
    })?;
    match v.get_mut("generateContentRequest") {
        Some(Value::Object(inner)) if inner.contains_key("model") => {
            inner.insert("model".into(), Value::String(model_name(model)));
            Ok(Some(serde_json::to_vec(&v).unwrap_or_default()))
        }
        _ => Ok(None),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The count in a counting answer; Gemini leaves out zero counts (proto3 JSON).
pub fn answer_count(v: &Value) -> Option<u64> {
    match v.get("totalTokens") {
        None if v.is_object() => Some(0),
        n => n?.as_u64(),
    }
}

/// A count in Gemini's answer shape.
pub fn answer(tokens: u64) -> Value {
    json!({ "totalTokens": tokens })
}
