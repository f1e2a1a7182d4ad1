//! Small JSON helpers shared by the format modules: walking a client body with
//! errors that name the offending field (SPEC: "400, message names the field")
//! by a [`Path`] rendered only then, a string type that borrows from the input
//! when it can, and decimal digits written without `fmt` (stream events, the access line).

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

/// `token` is one JSON string, quotes included, and nothing else: its
/// decoded value. The scan only proves where the string ends (no unescaped
/// quote before the last byte); serde decodes it (escapes, UTF-8, control
/// characters), so a fast path built on this agrees with a full decode.
pub fn whole_string(token: &[u8]) -> Option<CowStr<'_>> {
    let inner = token.strip_prefix(b"\"")?;
    let mut i = 0;
    loop {
        let at = i + memchr::memchr2(b'"', b'\\', &inner[i..])?;
        if inner[at] == b'\\' {
            i = at + 2;
            if i >= inner.len() {
                return None;
            }
            continue;
        }
        if at + 1 != inner.len() {
            return None;
        }
        break;
    }
    serde_json::from_slice(token).ok()
}

/// A 400 naming `path`.
pub fn bad(
    path: &(impl std::fmt::Display + ?Sized),
    what: impl std::fmt::Display,
) -> TranslateError {
    let path = path.to_string();
    TranslateError::bad_request(format!("{path}: {what}"), Some(&path))
}

/// A 400 for a field the target format cannot express.
pub fn inexpressible(path: &(impl std::fmt::Display + ?Sized), target: &str) -> TranslateError {
    let path = path.to_string();
    TranslateError::bad_request(
        format!(
            "{path}: cannot be expressed in the {target} format of the selected model's provider"
        ),
        Some(&path),
    )
}

/// Like [`inexpressible`], for a block or tool of a given `type`.
pub fn inexpressible_kind(
    path: &(impl std::fmt::Display + ?Sized),
    kind: &str,
    target: &str,
) -> TranslateError {
    let path = path.to_string();
    TranslateError::bad_request(
        format!(
            "{path}: type {kind:?} cannot be expressed in the {target} format of the selected model's provider"
        ),
        Some(&path),
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

pub fn as_object<'a, 'p>(
    v: &'a Value,
    path: impl Into<Up<'p>>,
) -> Result<&'a Map<String, Value>, TranslateError> {
    v.as_object().ok_or_else(|| {
        bad(
            &path.into(),
            format_args!("expected an object, got {}", type_name(v)),
        )
    })
}

/// `Some` when present and not null.
pub fn field<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.get(key).filter(|v| !v.is_null())
}

pub fn opt_str<'a, 'p>(
    m: &'a Map<String, Value>,
    key: &'p str,
    path: impl Into<Up<'p>>,
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

pub fn req_str<'a, 'p>(
    m: &'a Map<String, Value>,
    key: &'p str,
    path: impl Into<Up<'p>>,
) -> Result<&'a str, TranslateError> {
    let path = path.into();
    opt_str(m, key, path)?.ok_or_else(|| bad(&join(path, key), "required string missing"))
}

pub fn opt_f64<'p>(
    m: &Map<String, Value>,
    key: &'p str,
    path: impl Into<Up<'p>>,
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

pub fn opt_u64<'p>(
    m: &Map<String, Value>,
    key: &'p str,
    path: impl Into<Up<'p>>,
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

pub fn opt_i64<'p>(
    m: &Map<String, Value>,
    key: &'p str,
    path: impl Into<Up<'p>>,
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

pub fn opt_bool<'p>(
    m: &Map<String, Value>,
    key: &'p str,
    path: impl Into<Up<'p>>,
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

pub fn opt_array<'a, 'p>(
    m: &'a Map<String, Value>,
    key: &'p str,
    path: impl Into<Up<'p>>,
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

/// Where a field sits in a client body (`messages[2].content`), kept as
/// borrowed pieces and rendered only when an error or a dropped-field list
/// names it: most requests convert without one, and building every path as
/// a `String` up front was a measurable share of a conversion (benches/README.md,
/// "Ninth session").
#[derive(Clone, Copy)]
pub enum Path<'a> {
    /// A whole path given as text (`""` is the body itself).
    Str(&'a str),
    /// `parent.key`, or `key` when the parent is the body itself.
    Key(Up<'a>, &'a str),
    /// `parent[i]`.
    Idx(Up<'a>, usize),
}

/// The path a [`Path`] extends: text or another `Path`.
#[derive(Clone, Copy)]
pub enum Up<'a> {
    Str(&'a str),
    Path(&'a Path<'a>),
}

/// The body itself.
pub const ROOT: &Path<'static> = &Path::Str("");

impl<'a> From<&'a str> for Up<'a> {
    fn from(s: &'a str) -> Self {
        Up::Str(s)
    }
}

impl<'a> From<&'a String> for Up<'a> {
    fn from(s: &'a String) -> Self {
        Up::Str(s)
    }
}

impl<'a> From<&'a Path<'a>> for Up<'a> {
    fn from(p: &'a Path<'a>) -> Self {
        Up::Path(p)
    }
}

impl<'a> From<&'a str> for Path<'a> {
    fn from(s: &'a str) -> Self {
        Path::Str(s)
    }
}

impl Up<'_> {
    fn is_empty(&self) -> bool {
        matches!(self, Up::Str("") | Up::Path(Path::Str("")))
    }
}

impl std::fmt::Display for Up<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Up::Str(s) => f.write_str(s),
            Up::Path(p) => p.fmt(f),
        }
    }
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Path::Str(s) => f.write_str(s),
            Path::Key(up, key) if up.is_empty() => f.write_str(key),
            Path::Key(up, key) => write!(f, "{up}.{key}"),
            Path::Idx(up, i) => write!(f, "{up}[{i}]"),
        }
    }
}

impl std::fmt::Debug for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

/// `a.b`, or `b` at the top level.
pub fn join<'a>(path: impl Into<Up<'a>>, key: &'a str) -> Path<'a> {
    Path::Key(path.into(), key)
}

/// `a[i]`.
pub fn idx<'a>(path: impl Into<Up<'a>>, i: usize) -> Path<'a> {
    Path::Idx(path.into(), i)
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
    fn paths_render_as_the_strings_they_replace() {
        let m = idx("messages", 2);
        let c = join(&m, "content");
        assert_eq!(idx(&c, 0).to_string(), "messages[2].content[0]");
        assert_eq!(
            join(&idx(&c, 0), "text").to_string(),
            "messages[2].content[0].text"
        );
        assert_eq!(join("", "model").to_string(), "model");
        assert_eq!(join(ROOT, "model").to_string(), "model");
        assert_eq!(join(&join(ROOT, "a"), "b").to_string(), "a.b");
        assert_eq!(idx("", 1).to_string(), "[1]");
        let owned = String::from("tools[0]");
        assert_eq!(join(&owned, "function").to_string(), "tools[0].function");
        let e = bad(
            &join(&idx("tools", 3), "function"),
            "required object missing",
        );
        assert_eq!(e.message, "tools[3].function: required object missing");
        assert_eq!(e.param.as_deref(), Some("tools[3].function"));
        let v = json!({"a": {"b": 5}});
        let e = opt_str(v["a"].as_object().unwrap(), "b", &idx("x", 1)).unwrap_err();
        assert_eq!(e.message, "x[1].b: expected a string, got a number");
        assert_eq!(e.param.as_deref(), Some("x[1].b"));
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
