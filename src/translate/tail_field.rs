//! The value of one top-level field of a JSON object, found from the end of
//! the text without decoding the rest: answers put their usage last, and a
//! passthrough answer is metered for its usage alone (decoding a whole answer
//! to read it cost more than the rest of the request's own work).
//!
//! Why a byte search is sound: inside a JSON string every `"` is escaped, so
//! the bytes `e"` never occur in one, and a match of `"usage"` is always a
//! whole string token. It is the key looked for when `:` follows it, and it is
//! at the top level when the text after its value closes exactly one object.
//! Anything else (a nested key of that name after the real one, text that is
//! not JSON) is `Unsure`, and the caller decodes the whole answer.

use serde_json::value::RawValue;

#[derive(Debug, PartialEq, Eq)]
pub enum Found<'a> {
    /// The raw JSON of the field's value (it may be `null`).
    Value(&'a [u8]),
    /// The key occurs nowhere in the text, so no level has it.
    Absent,
    /// The key occurs, but the scan cannot prove which one is top-level.
    Unsure,
}

/// The last top-level `"key": value` of the object `body`. `key` is the
/// field name without quotes and must need no escaping.
pub fn last_top_level<'a>(body: &'a [u8], key: &str) -> Found<'a> {
    match locate(body, key) {
        Loc::Absent => Found::Absent,
        Loc::Unsure => Found::Unsure,
        Loc::At(at) => {
            let value = &body[at..];
            match decode_one::<&RawValue>(value) {
                Some((_, len)) if closes_one_object(&value[len..]) => Found::Value(&value[..len]),
                _ => Found::Unsure,
            }
        }
    }
}

/// A whole answer's top-level `usage` as `T`: by the byte search when it
/// decides, else by decoding the whole answer (`None`: absent, `null`, or
/// not valid JSON). The formats whose usage field is `usage` share it.
pub fn usage<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    if let Some(u) = decode_last::<T>(body, "usage") {
        return u;
    }
    #[derive(serde::Deserialize)]
    struct OnlyUsage<T> {
        usage: Option<T>,
    }
    serde_json::from_slice::<OnlyUsage<T>>(body).ok()?.usage
}

/// The field decoded as `T` when the byte search decides (`Some(None)`: absent
/// or `null`); `None` when the caller must decode the whole text (also when
/// the value is not a `T`: the full decode then says so).
pub fn decode_last<T: serde::de::DeserializeOwned>(body: &[u8], key: &str) -> Option<Option<T>> {
    match locate(body, key) {
        Loc::Absent => Some(None),
        Loc::Unsure => None,
        Loc::At(at) => {
            let value = &body[at..];
            // One pass: the value is decoded where it stands, and its end found.
            match decode_one::<Option<T>>(value) {
                Some((t, len)) if closes_one_object(&value[len..]) => Some(t),
                _ => None,
            }
        }
    }
}

enum Loc {
    Absent,
    Unsure,
    /// Offset of the value of the last `"key":`.
    At(usize),
}

fn locate(body: &[u8], key: &str) -> Loc {
    let key = key.as_bytes();
    let mut end = body.len();
    let mut seen = false;
    let mut tries = 0;
    // Quotes from the end: the usage is near it, so few are looked at. Up to
    // four string values equal to the key ("type": "usage") are passed over.
    while let Some(q) = memchr::memrchr(b'"', &body[..end]) {
        end = q;
        let Some(open) = q.checked_sub(key.len() + 1) else {
            break;
        };
        if body[open] != b'"' || &body[open + 1..q] != key || escaped(body, open) {
            continue;
        }
        seen = true;
        let rest = skip_ws(&body[q + 1..]);
        if let Some(value) = rest.strip_prefix(b":") {
            return Loc::At(body.len() - skip_ws(value).len());
        }
        tries += 1;
        if tries == 4 {
            return Loc::Unsure;
        }
        end = open;
    }
    if seen { Loc::Unsure } else { Loc::Absent }
}

/// Whether the quote at `at` is escaped (an odd run of backslashes before
/// it): then it is inside a string (`"x\"usage": 1` has no key `usage`).
fn escaped(body: &[u8], at: usize) -> bool {
    body[..at].iter().rev().take_while(|&&c| c == b'\\').count() % 2 == 1
}

fn skip_ws(b: &[u8]) -> &[u8] {
    let n = b
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        .unwrap_or(b.len());
    &b[n..]
}

/// The one JSON value at the start of `b`, decoded, and its length.
fn decode_one<'a, T: serde::Deserialize<'a>>(b: &'a [u8]) -> Option<(T, usize)> {
    let mut de = serde_json::Deserializer::from_slice(b).into_iter::<T>();
    match de.next() {
        Some(Ok(t)) => Some((t, de.byte_offset())),
        _ => None,
    }
}

/// `tail` is the rest of an object's text after one of its values: more
/// members, then the `}` that closes it, then only white space. Members are
/// skipped by a string-aware bracket count (the decoder checks nothing here,
/// so a malformed tail is merely "not proven").
fn closes_one_object(tail: &[u8]) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    while i < tail.len() {
        match tail[i] {
            b'"' => {
                i += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &tail[i..]) {
                        None => return false,
                        Some(j) if tail[i + j] == b'\\' => i += j + 2,
                        Some(j) => {
                            i += j;
                            break;
                        }
                    }
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                if depth == 0 {
                    return tail[i] == b'}' && skip_ws(&tail[i + 1..]).is_empty();
                }
                depth -= 1;
            }
            _ => {}
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(body: &str) -> Found<'_> {
        last_top_level(body.as_bytes(), "usage")
    }

    fn v(s: &str) -> Found<'_> {
        Found::Value(s.as_bytes())
    }

    #[test]
    fn finds_the_last_top_level_value() {
        assert_eq!(value(r#"{"id":"x","usage":{"a":1}}"#), v(r#"{"a":1}"#));
        assert_eq!(
            value("{\"usage\" :\n {\"a\": [1, {\"b\": 2}]} , \"z\": \"}\" }\n"),
            v(r#"{"a": [1, {"b": 2}]}"#)
        );
        assert_eq!(value(r#"{"usage":null}"#), v("null"));
        // A string value equal to the key is passed over.
        assert_eq!(
            value(r#"{"usage":{"a":1},"type":"usage"}"#),
            v(r#"{"a":1}"#)
        );
        // The tail's strings may hold brackets, quotes and backslashes.
        assert_eq!(
            value(r#"{"usage":{"a":1},"s":"]}\"\\","t":["{"]}"#),
            v(r#"{"a":1}"#)
        );
    }

    #[test]
    fn text_inside_strings_is_never_taken_for_the_key() {
        // The escaped key inside a string does not match; the real one does.
        assert_eq!(
            value(r#"{"usage":{"a":1},"c":"x\"usage\":{\"a\":2}"}"#),
            v(r#"{"a":1}"#)
        );
        // A key that ends in the name after an escaped quote is another key.
        assert_eq!(
            value(r#"{"usage":{"a":1},"x\"usage":{"a":2}}"#),
            v(r#"{"a":1}"#)
        );
        assert_eq!(value(r#"{"usage":{"a":1},"x\\":"usage"}"#), v(r#"{"a":1}"#));
        // Only in a string: the key itself is absent.
        assert_eq!(value(r#"{"c":"\"usage\": 1"}"#), Found::Absent);
    }

    /// Random objects with the key at any level, in strings, and with tricky
    /// strings around: whenever the search decides, it agrees with a decoder.
    #[test]
    fn agrees_with_a_full_decode_on_random_objects() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        use serde_json::{Map, Value, json};
        fn random_value(r: &mut StdRng, depth: u32) -> Value {
            let strs = ["usage", "\"usage\":", "}]\\", "a\"b", "{["];
            match r.random_range(0..if depth > 2 { 3 } else { 5 }) {
                0 => json!(r.random_range(0..100)),
                1 => Value::String(strs[r.random_range(0..strs.len())].into()),
                2 => Value::Null,
                3 => Value::Array(
                    (0..r.random_range(0..3))
                        .map(|_| random_value(r, depth + 1))
                        .collect(),
                ),
                _ => {
                    let mut m = Map::new();
                    for i in 0..r.random_range(0..4) {
                        let k = match r.random_range(0..10) {
                            0..3 => "usage".to_string(),
                            3 => "x\"usage".to_string(),
                            4 => "x\\\"usage".to_string(),
                            5 => "x\\".to_string(),
                            _ => format!("k{i}"),
                        };
                        m.insert(k, random_value(r, depth + 1));
                    }
                    Value::Object(m)
                }
            }
        }
        fn has_key(v: &Value, key: &str) -> bool {
            match v {
                Value::Object(m) => m.iter().any(|(k, v)| k == key || has_key(v, key)),
                Value::Array(a) => a.iter().any(|v| has_key(v, key)),
                _ => false,
            }
        }
        let mut r = StdRng::seed_from_u64(7);
        let (mut decided, mut n) = (0, 0);
        while n < 20_000 {
            let Value::Object(top) = random_value(&mut r, 0) else {
                continue;
            };
            n += 1;
            let text = if r.random_bool(0.5) {
                serde_json::to_string(&top).unwrap()
            } else {
                serde_json::to_string_pretty(&top).unwrap()
            };
            match last_top_level(text.as_bytes(), "usage") {
                Found::Value(v) => {
                    decided += 1;
                    let got: Value = serde_json::from_slice(v).unwrap();
                    assert_eq!(Some(&got), top.get("usage"), "{text}");
                }
                Found::Absent => assert!(!has_key(&Value::Object(top), "usage"), "{text}"),
                Found::Unsure => {}
            }
        }
        assert!(decided > 2_000, "the search decided only {decided} times");
    }

    #[test]
    fn absent_and_unsure() {
        assert_eq!(value(r#"{"id":"x"}"#), Found::Absent);
        // A nested key after the top-level one: not provably top-level.
        assert_eq!(
            value(r#"{"usage":{"a":1},"x":{"usage":{"a":2}}}"#),
            Found::Unsure
        );
        // Only nested.
        assert_eq!(value(r#"{"x":{"usage":{"a":2}}}"#), Found::Unsure);
        // Not JSON, cut short, or trailing garbage.
        assert_eq!(value(r#"{"usage":{"a":"#), Found::Unsure);
        assert_eq!(value(r#"{"usage":{"a":1}"#), Found::Unsure);
        assert_eq!(value(r#"{"usage":{"a":1}} x"#), Found::Unsure);
        assert_eq!(value(r#"{"usage":{"a":1},"s":"}"#), Found::Unsure);
        // Only string values equal to the key.
        assert_eq!(value(r#"{"a":"usage","b":"usage"}"#), Found::Unsure);
    }
}
