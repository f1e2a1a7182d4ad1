//! Small JSON helpers shared by the format modules: walking a client body with
//! errors that name the offending field (SPEC: "400, message names the field"),
//! a string type that borrows from the input when it can, and decimal digits
//! written without `fmt` (stream events, the access line).

use super::TranslateError;
use serde::de::{Deserialize, Deserializer, Visitor};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// A JSON string borrowed from the input unless it had escapes. Unlike
/// `Cow<str>` with `#[serde(borrow)]`, it borrows inside `Option`/`Vec` too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CowStr<'a>(pub Cow<'a, str>);

impl<'a> CowStr<'a> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = CowStr<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// A 400 naming `path`.
pub fn bad(path: &str, what: impl std::fmt::Display) -> TranslateError {
    TranslateError::bad_request(format!("{path}: {what}"), Some(path))
}

/// A 400 for a field the target format cannot express.
pub fn inexpressible(path: &str, target: &str) -> TranslateError {
    TranslateError::bad_request(
        format!(
            "{path}: cannot be expressed in the {target} format of the selected model's provider"
        ),
        Some(path),
    )
}

/// Like [`inexpressible`], for a block or tool of a given `type`.
pub fn inexpressible_kind(path: &str, kind: &str, target: &str) -> TranslateError {
    TranslateError::bad_request(
        format!(
            "{path}: type {kind:?} cannot be expressed in the {target} format of the selected model's provider"
        ),
        Some(path),
    )
}

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub fn as_object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, TranslateError> {
    v.as_object().ok_or_else(|| {
        bad(
            path,
            format_args!("expected an object, got {}", type_name(v)),
        )
    })
}

/// `Some` when present and not null.
pub fn field<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.get(key).filter(|v| !v.is_null())
}

pub fn opt_str<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, TranslateError> {
    match field(m, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(bad(
            &join(path, key),
            format_args!("expected a string, got {}", type_name(v)),
        )),
    }
}

pub fn req_str<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a str, TranslateError> {
    opt_str(m, key, path)?.ok_or_else(|| bad(&join(path, key), "required string missing"))
}

pub fn opt_f64(
    m: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<f64>, TranslateError> {
    match field(m, key) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(v) => Err(bad(
            &join(path, key),
            format_args!("expected a number, got {}", type_name(v)),
        )),
    }
}

pub fn opt_u64(
    m: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<u64>, TranslateError> {
    match field(m, key) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(u) => Ok(Some(u)),
            // 1024.0 is an integer to most clients.
            None => match n.as_f64() {
                Some(f) if f >= 0.0 && f.fract() == 0.0 && f < 1e15 => Ok(Some(f as u64)),
                _ => Err(bad(&join(path, key), "expected a non-negative integer")),
            },
        },
        Some(v) => Err(bad(
            &join(path, key),
            format_args!("expected an integer, got {}", type_name(v)),
        )),
    }
}

pub fn opt_i64(
    m: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<i64>, TranslateError> {
    match field(m, key) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| bad(&join(path, key), "expected an integer")),
        Some(v) => Err(bad(
            &join(path, key),
            format_args!("expected an integer, got {}", type_name(v)),
        )),
    }
}

pub fn opt_bool(
    m: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<bool>, TranslateError> {
    match field(m, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(bad(
            &join(path, key),
            format_args!("expected a boolean, got {}", type_name(v)),
        )),
    }
}

pub fn opt_array<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a [Value]>, TranslateError> {
    match field(m, key) {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(v) => Err(bad(
            &join(path, key),
            format_args!("expected an array, got {}", type_name(v)),
        )),
    }
}

/// `a.b`, or `b` at the top level.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub fn idx(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// A number from a JSON-ish `Value` for usage fields (absent/invalid = 0).
pub fn num(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_u64).unwrap_or(0)
}

/// Parse `data:<media>;base64,<data>` into (media type, base64 payload).
pub fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media = meta.strip_suffix(";base64")?;
    Some((
        if media.is_empty() {
            "application/octet-stream"
        } else {
            media
        },
        data,
    ))
}

/// Current Unix time in seconds (OpenAI `created` when the upstream gave none).
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Decimal digits of `n` without allocating (per-delta and per-request hot paths).
pub fn push_uint(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn push_uint_writes_decimal() {
        for n in [0u64, 7, 10, 99, 1234567890, u64::MAX] {
            let mut out = Vec::new();
            push_uint(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }

    #[test]
    fn cow_str_borrows_unless_escaped() {
        #[derive(serde::Deserialize)]
        struct T<'a> {
            #[serde(borrow)]
            a: Option<CowStr<'a>>,
            #[serde(borrow)]
            b: Vec<CowStr<'a>>,
        }
        let t: T = serde_json::from_slice(br#"{"a":"plain","b":["x\ny","z"]}"#).unwrap();
        assert!(matches!(t.a.unwrap().0, Cow::Borrowed("plain")));
        assert!(matches!(&t.b[0].0, Cow::Owned(s) if s == "x\ny"));
        assert!(matches!(t.b[1].0, Cow::Borrowed("z")));
    }

    #[test]
    fn errors_name_the_field() {
        let v = json!({"max_tokens": "ten", "n": 1.0, "t": -1});
        let m = v.as_object().unwrap();
        let e = opt_u64(m, "max_tokens", "").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("max_tokens"));
        assert!(e.message.contains("max_tokens"), "{}", e.message);
        assert_eq!(opt_u64(m, "n", "").unwrap(), Some(1));
        assert!(
            opt_u64(m, "t", "x")
                .unwrap_err()
                .message
                .starts_with("x.t:")
        );
        assert_eq!(
            req_str(m, "model", "").unwrap_err().param.as_deref(),
            Some("model")
        );
    }

    #[test]
    fn data_urls() {
        assert_eq!(
            parse_data_url("data:image/png;base64,AAAA"),
            Some(("image/png", "AAAA"))
        );
        assert_eq!(parse_data_url("https://x/y.png"), None);
        assert_eq!(parse_data_url("data:text/plain,hi"), None);
    }
}
