//! Anthropic's token counting (`/v1/messages/count_tokens`): its body and its answer.

use serde_json::{Map, Value, json};

/// Fields Anthropic's counting endpoint accepts; it refuses the rest
/// (`max_tokens`, `stream`, sampling settings) as extra inputs.
const COUNT_FIELDS: &[&str] = &[
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "mcp_servers",
];

/// A converted Messages body as a counting body: trimmed to what Anthropic counts.
pub fn request(mut o: Map<String, Value>) -> Value {
    o.retain(|k, _| COUNT_FIELDS.contains(&k.as_str()));
    Value::Object(o)
}

/// The count in a counting answer.
pub fn answer_count(v: &Value) -> Option<u64> {
    v.get("input_tokens")?.as_u64()
}

/// A count in Anthropic's answer shape.
pub fn answer(tokens: u64) -> Value {
    json!({ "input_tokens": tokens })
}
