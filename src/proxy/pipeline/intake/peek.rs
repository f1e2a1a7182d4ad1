//! Reading what the client sent: the body (bounded), and the few fields
//! routing needs, without building a JSON tree for same-format routes.

use serde::Deserialize;
use serde_json::value::RawValue;

/// The routing fields of a chat body, borrowed from it.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    stream: Option<bool>,
    /// Request-level fallback (OpenAI formats): tried in order when `model` is absent.
    models: Option<Vec<String>>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    max_output_tokens: Option<u64>,
    stream_options: Option<StreamOptions>,
    #[serde(rename = "generationConfig", alias = "generation_config")]
    generation_config: Option<GenerationConfig>,
}

#[derive(Deserialize)]
struct GenerationConfig {
    #[serde(rename = "maxOutputTokens", alias = "max_output_tokens")]
    max_output_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Peeked {
    pub model: Option<String>,
    /// Byte range of the `model` value (with quotes) in the body, for splicing.
    pub model_span: Option<(usize, usize)>,
    pub stream: bool,
    pub models: Option<Vec<String>>,
    /// The output the request allows itself (for token-limit reservations).
    pub max_output: Option<u64>,
    /// `stream_options`: None when absent, else its `include_usage`.
    pub include_usage: Option<bool>,
}

/// A client-body problem: the message names the field.
#[derive(Debug, Clone, PartialEq)]
pub struct BadBody {
    pub message: String,
    pub param: Option<String>,
}

fn bad(message: impl Into<String>, param: Option<&str>) -> BadBody {
    BadBody {
        message: message.into(),
        param: param.map(str::to_string),
    }
}

/// Find `model` and `stream` in a JSON object body.
pub fn peek(body: &[u8]) -> Result<Peeked, BadBody> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("request body is empty; expected a JSON object", None));
    }
    // serde accepts a struct written as an array; a request body must be an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => bad("request body must be a JSON object", None),
                Err(e) => bad(format!("request body is not valid JSON: {e}"), None),
            },
        );
    }
    // The fast path has no path tracking; only a failure is parsed again for
    // the path of the offending field.
    let fast = serde_json::from_slice::<Peek>(body);
    let mut de = serde_json::Deserializer::from_slice(body);
    let p: Peek = match fast.map_err(|_| serde_path_to_error::deserialize::<_, Peek>(&mut de)) {
        Ok(p) => p,
        Err(Ok(_)) => return Err(bad("request body is not valid JSON", None)),
        Err(Err(e)) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            return Err(if let Some(key) = duplicate_key(&inner) {
                // Which of two values a provider would read is anyone's
                // guess: refuse rather than route by one and send both.
                bad(
                    format!("duplicate key `{key}` in the request body"),
                    Some(&key),
                )
            } else if inner.is_syntax() || inner.is_eof() {
                bad(format!("request body is not valid JSON: {inner}"), None)
            } else if path == "." {
                bad("request body must be a JSON object", None)
            } else {
                bad(format!("invalid `{path}`: {inner}"), Some(&path))
            });
        }
    };
    let (model, model_span) = match p.model {
        None => (None, None),
        Some(raw) => {
            let text = raw.get();
            let name: String = serde_json::from_str(text)
                .map_err(|_| bad("`model` must be a string", Some("model")))?;
            let start = text.as_ptr() as usize - body.as_ptr() as usize;
            (Some(name), Some((start, start + text.len())))
        }
    };
    Ok(Peeked {
        model,
        model_span,
        stream: p.stream.unwrap_or(false),
        models: p.models,
        max_output: p
            .max_completion_tokens
            .or(p.max_tokens)
            .or(p.max_output_tokens)
            .or(p.generation_config.and_then(|g| g.max_output_tokens)),
        include_usage: p.stream_options.map(|o| o.include_usage.unwrap_or(false)),
    })
}

/// The key a "duplicate field" error names (serde's message is the only
/// place that says which).
fn duplicate_key(e: &serde_json::Error) -> Option<String> {
    let msg = e.to_string();
    let rest = msg.strip_prefix("duplicate field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

/// `body` (a JSON object) with `"stream_options":{"include_usage":true}` added
/// before its closing brace, for a body that has no `stream_options`.
pub fn add_include_usage(mut body: Vec<u8>) -> Vec<u8> {
    if let Some(end) = body.iter().rposition(|&b| b == b'}') {
        let empty = body[..end].iter().rev().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        let field: &[u8] = if empty {
            br#""stream_options":{"include_usage":true}"#
        } else {
            br#","stream_options":{"include_usage":true}"#
        };
        body.splice(end..end, field.iter().copied());
    }
    body
}

/// `body` with the model value at `span` replaced by `model`.
pub fn splice_model(body: &[u8], span: (usize, usize), model: &str) -> Vec<u8> {
    let quoted = serde_json::to_string(model).unwrap_or_default();
    let mut out = Vec::with_capacity(body.len() + quoted.len());
    out.extend_from_slice(&body[..span.0]);
    out.extend_from_slice(quoted.as_bytes());
    out.extend_from_slice(&body[span.1..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peeks_and_splices() {
        let body = br#"{"messages":[{"role":"user","content":"hi \"model\""}], "model" : "gpt-4o", "stream":true}"#;
        let p = peek(body).unwrap();
        assert_eq!(p.model.as_deref(), Some("gpt-4o"));
        assert!(p.stream);
        let out = splice_model(body, p.model_span.unwrap(), "gpt-4o-2024-08-06");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "gpt-4o-2024-08-06");
        assert_eq!(v["messages"][0]["content"], "hi \"model\"");
        // Everything else byte-identical.
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8_lossy(body).replace("\"gpt-4o\"", "\"gpt-4o-2024-08-06\"")
        );
    }

    #[test]
    fn adds_include_usage() {
        let out = add_include_usage(br#"{"model":"m","stream":true} "#.to_vec());
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["model"], "m");
        let v: serde_json::Value =
            serde_json::from_slice(&add_include_usage(b"{ }".to_vec())).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(
            peek(br#"{"model":"m","stream_options":{"include_usage":true}}"#)
                .unwrap()
                .include_usage,
            Some(true)
        );
        assert_eq!(
            peek(br#"{"model":"m","stream_options":{}}"#)
                .unwrap()
                .include_usage,
            Some(false)
        );
    }

    #[test]
    fn escaped_model_names() {
        let body = br#"{"model":"a\/b"}"#;
        let p = peek(body).unwrap();
        assert_eq!(p.model.as_deref(), Some("a/b"));
        assert_eq!(p.model_span, Some((9, 15)));
    }

    #[test]
    fn bad_bodies_name_the_field() {
        assert!(
            peek(b"not json")
                .unwrap_err()
                .message
                .contains("not valid JSON")
        );
        assert!(peek(b"").unwrap_err().message.contains("empty"));
        assert!(peek(b"[1,2]").unwrap_err().message.contains("JSON object"));
        let e = peek(br#"{"model": 5}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("model"));
        let e = peek(br#"{"model": "m", "stream": "yes"}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("stream"));
        assert!(peek(br#"{"model": "m"} x"#).is_err());
        assert_eq!(peek(br#"{"stream": false}"#).unwrap().model, None);
        assert_eq!(
            peek(br#"{"models": ["a", "b"]}"#).unwrap().models,
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            peek(br#"{"models": "a"}"#).unwrap_err().param.as_deref(),
            Some("models")
        );
    }

    #[test]
    fn a_duplicate_key_is_named() {
        let e = peek(br#"{"model": "a", "messages": [], "model": "b"}"#).unwrap_err();
        assert!(e.message.contains("duplicate key `model`"), "{}", e.message);
        assert_eq!(e.param.as_deref(), Some("model"));
        let e = peek(br#"{"model": "a", "stream": true, "stream": false}"#).unwrap_err();
        assert!(
            e.message.contains("duplicate key `stream`"),
            "{}",
            e.message
        );
        // Keys routing does not read may repeat (the provider decides).
        assert!(peek(br#"{"model": "a", "x": 1, "x": 2}"#).is_ok());
    }
}
