//! `POST /v1/embeddings` (OpenAI format) to a Gemini upstream:
//! OpenAI embeddings request → Gemini `batchEmbedContents` request, and the
//! Gemini answer → OpenAI embeddings response. OpenAI-kind upstreams get the
//! body untouched (same format), so only this pair lives here.
//!
//! Mapping:
//! - `input`: a string or an array of strings → one `requests[i]` each, with
//!   `model: "models/{model}"` and `content.parts[0].text`. Token-id inputs
//!   (`[1, 2]`, `[[1, 2]]`) cannot be expressed for Gemini → 400 naming `input`.
//! - `dimensions` → `outputDimensionality` on every request.
//! - `encoding_format`: `"float"` (default) or `"base64"` (little-endian f32,
//!   as OpenAI encodes it) is honoured in the converted answer; anything else → 400.
//! - `user` is accepted and not forwarded (Gemini has no such field; it only
//!   tags the caller for abuse monitoring on OpenAI's side).
//! - usage: Gemini's embedding answers carry no token counts on the Gemini API
//!   host; when `usageMetadata.promptTokenCount` is present it is used, else the
//!   count is estimated from the input text (UTF-8 bytes / 4, rounded up, at
//!   least 1 per input) and [`EmbeddingsInfo::estimated`] says so.

use super::TranslateError;
use base64::Engine as _;
use serde::Serialize;
use serde_json::{Value, json};

/// What the response conversion needs to remember from the request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EmbeddingsInfo {
    /// Number of inputs sent (the answer must have as many embeddings).
    pub count: usize,
    /// Token estimate of all inputs, used when the upstream reports none.
    pub estimated_tokens: u64,
    /// `encoding_format: "base64"` was asked for.
    pub base64: bool,
    /// Model named by the client (echoed in the answer).
    pub client_model: String,
}

/// Result of converting a Gemini answer: the client body plus the usage used.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingsAnswer {
    pub body: Vec<u8>,
    pub prompt_tokens: u64,
    /// True when `prompt_tokens` is an estimate (Gemini reported none).
    pub estimated: bool,
}

#[derive(Serialize)]
struct GeminiBatchRequest<'a> {
    requests: Vec<GeminiEmbedRequest<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GeminiEmbedRequest<'a> {
    model: &'a str,
    content: GeminiContent<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimensionality: Option<u64>,
}

#[derive(Serialize)]
struct GeminiContent<'a> {
    parts: [GeminiText<'a>; 1],
}

#[derive(Serialize)]
struct GeminiText<'a> {
    text: &'a str,
}

fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4).max(1)
}

/// OpenAI embeddings request → Gemini `batchEmbedContents` body for `model`
/// (the proxy posts it to `/v1beta/models/{model}:batchEmbedContents`).
pub fn openai_to_gemini_request(
    body: &Value,
    model: &str,
) -> Result<(Vec<u8>, EmbeddingsInfo), TranslateError> {
    let obj = body
        .as_object()
        .ok_or_else(|| TranslateError::bad_request("request body must be a JSON object", None))?;
    let input = obj.get("input").ok_or_else(|| {
        TranslateError::bad_request("missing required field 'input'", Some("input"))
    })?;
    let texts: Vec<&str> = match input {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) if !items.is_empty() => {
            let mut texts = Vec::with_capacity(items.len());
            for (i, it) in items.iter().enumerate() {
                match it {
                    Value::String(s) => texts.push(s.as_str()),
                    Value::Number(_) | Value::Array(_) => {
                        return Err(TranslateError::bad_request(
                            "token-id inputs cannot be sent to a Gemini embedding model; send text",
                            Some("input"),
                        ));
                    }
                    _ => {
                        return Err(TranslateError::bad_request(
                            format!("'input[{i}]' must be a string"),
                            Some("input"),
                        ));
                    }
                }
            }
            texts
        }
        Value::Array(_) => {
            return Err(TranslateError::bad_request(
                "'input' must not be empty",
                Some("input"),
            ));
        }
        _ => {
            return Err(TranslateError::bad_request(
                "'input' must be a string or an array of strings",
                Some("input"),
            ));
        }
    };
    let dims = match obj.get("dimensions") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().filter(|d| *d > 0).ok_or_else(|| {
            TranslateError::bad_request(
                "'dimensions' must be a positive integer",
                Some("dimensions"),
            )
        })?),
    };
    let base64 = match obj.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) if s == "float" => false,
        Some(Value::String(s)) if s == "base64" => true,
        Some(_) => {
            return Err(TranslateError::bad_request(
                "'encoding_format' must be \"float\" or \"base64\"",
                Some("encoding_format"),
            ));
        }
    };
    let client_model = obj
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(model)
        .to_string();
    let model_path = if model.starts_with("models/") {
        model.to_string()
    } else {
        format!("models/{model}")
    };
    let requests = texts
        .iter()
        .map(|t| GeminiEmbedRequest {
            model: &model_path,
            content: GeminiContent {
                parts: [GeminiText { text: t }],
            },
            output_dimensionality: dims,
        })
        .collect();
    let out = serde_json::to_vec(&GeminiBatchRequest { requests })
        .map_err(|e| TranslateError::bad_request(format!("cannot encode request: {e}"), None))?;
    let info = EmbeddingsInfo {
        count: texts.len(),
        estimated_tokens: texts.iter().map(|t| estimate_tokens(t)).sum(),
        base64,
        client_model,
    };
    Ok((out, info))
}

/// Gemini `batchEmbedContents` answer → OpenAI embeddings response.
pub fn gemini_to_openai_response(
    body: &[u8],
    info: &EmbeddingsInfo,
) -> Result<EmbeddingsAnswer, TranslateError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| upstream_error(format!("Gemini embeddings answer is not JSON: {e}")))?;
    let embeddings = v
        .get("embeddings")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            upstream_error("Gemini embeddings answer has no 'embeddings' array".into())
        })?;
    if embeddings.len() != info.count {
        return Err(upstream_error(format!(
            "Gemini returned {} embeddings for {} inputs",
            embeddings.len(),
            info.count
        )));
    }
    let mut data = Vec::with_capacity(embeddings.len());
    for (i, e) in embeddings.iter().enumerate() {
        let values = e
            .get("values")
            .and_then(Value::as_array)
            .ok_or_else(|| upstream_error(format!("embeddings[{i}] has no 'values'")))?;
        let embedding = if info.base64 {
            let mut bytes = Vec::with_capacity(values.len() * 4);
            for x in values {
                let f = x.as_f64().ok_or_else(|| {
                    upstream_error(format!("embeddings[{i}] has a non-number value"))
                })?;
                bytes.extend_from_slice(&(f as f32).to_le_bytes());
            }
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        } else {
            if !values.iter().all(Value::is_number) {
                return Err(upstream_error(format!(
                    "embeddings[{i}] has a non-number value"
                )));
            }
            Value::Array(values.clone())
        };
        data.push(json!({"object": "embedding", "index": i, "embedding": embedding}));
    }
    let reported = v
        .get("usageMetadata")
        .and_then(|u| u.get("promptTokenCount"))
        .and_then(Value::as_u64);
    let (prompt_tokens, estimated) = match reported {
        Some(n) => (n, false),
        None => (info.estimated_tokens, true),
    };
    let out = json!({
        "object": "list",
        "data": data,
        "model": info.client_model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    });
    let body = serde_json::to_vec(&out)
        .map_err(|e| upstream_error(format!("cannot encode answer: {e}")))?;
    Ok(EmbeddingsAnswer {
        body,
        prompt_tokens,
        estimated,
    })
}

fn upstream_error(message: String) -> TranslateError {
    TranslateError {
        status: 502,
        message,
        param: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> Result<(Value, EmbeddingsInfo), TranslateError> {
        let (b, info) = openai_to_gemini_request(&v, "text-embedding-004")?;
        Ok((serde_json::from_slice(&b).unwrap(), info))
    }

    #[test]
    fn single_and_batch_inputs() {
        let (g, info) = req(json!({"model": "embed", "input": "hello world"})).unwrap();
        assert_eq!(g["requests"][0]["model"], "models/text-embedding-004");
        assert_eq!(
            g["requests"][0]["content"]["parts"][0]["text"],
            "hello world"
        );
        assert!(g["requests"][0].get("outputDimensionality").is_none());
        assert_eq!(info.count, 1);
        assert_eq!(info.estimated_tokens, 3);
        assert_eq!(info.client_model, "embed");

        let (g, info) =
            req(json!({"model": "embed", "input": ["a", "bb"], "dimensions": 256, "user": "u1"}))
                .unwrap();
        assert_eq!(g["requests"].as_array().unwrap().len(), 2);
        assert_eq!(g["requests"][1]["content"]["parts"][0]["text"], "bb");
        assert_eq!(g["requests"][1]["outputDimensionality"], 256);
        assert_eq!(info.count, 2);
        assert_eq!(info.estimated_tokens, 2);
    }

    #[test]
    fn inexpressible_inputs_are_400s_naming_the_field() {
        for (v, param) in [
            (json!({"input": [1, 2, 3]}), "input"),
            (json!({"input": [[1, 2]]}), "input"),
            (json!({"input": []}), "input"),
            (json!({"input": 5}), "input"),
            (json!({"input": [null]}), "input"),
            (json!({"model": "m"}), "input"),
            (json!({"input": "x", "dimensions": -1}), "dimensions"),
            (
                json!({"input": "x", "encoding_format": "int8"}),
                "encoding_format",
            ),
        ] {
            let e = req(v.clone()).unwrap_err();
            assert_eq!(e.status, 400, "{v}");
            assert_eq!(e.param.as_deref(), Some(param), "{v}: {}", e.message);
        }
        assert_eq!(req(json!([1])).unwrap_err().status, 400);
    }

    #[test]
    fn answer_with_estimated_and_reported_usage() {
        let (_, info) = req(json!({"model": "embed", "input": ["hello", "world!!!"]})).unwrap();
        let up = br#"{"embeddings":[{"values":[0.1,-0.2]},{"values":[0.3,0.4]}]}"#;
        let a = gemini_to_openai_response(up, &info).unwrap();
        let v: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], "embed");
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(v["data"][1]["object"], "embedding");
        assert_eq!(v["data"][0]["embedding"], json!([0.1, -0.2]));
        assert!(a.estimated);
        assert_eq!(v["usage"]["prompt_tokens"], 4);
        assert_eq!(v["usage"]["total_tokens"], 4);

        let up = br#"{"embeddings":[{"values":[1.0]},{"values":[2.0]}],"usageMetadata":{"promptTokenCount":7,"totalTokenCount":7}}"#;
        let a = gemini_to_openai_response(up, &info).unwrap();
        assert!(!a.estimated);
        assert_eq!(a.prompt_tokens, 7);
    }

    #[test]
    fn base64_encoding_matches_openai_layout() {
        let (_, info) = req(json!({"input": "x", "encoding_format": "base64"})).unwrap();
        let a =
            gemini_to_openai_response(br#"{"embeddings":[{"values":[1.0,-2.5]}]}"#, &info).unwrap();
        let v: Value = serde_json::from_slice(&a.body).unwrap();
        let b = base64::engine::general_purpose::STANDARD
            .decode(v["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        assert_eq!(b.len(), 8);
        assert_eq!(f32::from_le_bytes(b[0..4].try_into().unwrap()), 1.0);
        assert_eq!(f32::from_le_bytes(b[4..8].try_into().unwrap()), -2.5);
    }

    #[test]
    fn malformed_upstream_answers_are_502() {
        let (_, info) = req(json!({"input": ["a", "b"]})).unwrap();
        for body in [
            &b"not json"[..],
            br#"{"embeddings":[{"values":[1]}]}"#,
            br#"{"foo":1}"#,
            br#"{"embeddings":[{"values":[1]},{"values":["x"]}]}"#,
            br#"{"embeddings":[{"values":[1]},{}]}"#,
        ] {
            let e = gemini_to_openai_response(body, &info).unwrap_err();
            assert_eq!(e.status, 502, "{}", String::from_utf8_lossy(body));
        }
    }
}
