//! Payload rules: edits of the upstream JSON body, per model entry and per
//! target (`payload: {defaults, overrides, remove}`), applied to the body
//! after it was converted for the target's format.
//!
//! Order: the model entry's block, then the target's; within a block
//! `defaults` (set when absent), then `overrides` (always set), then `remove`
//! (so a removed field is surely gone). A request with no rule pays nothing:
//! the body bytes pass untouched, never parsed.

use crate::config::file::{ConfigFile, PayloadConf};
use crate::config::problem::Problem;
use bytes::Bytes;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Edit {
    Default(Vec<String>, Value),
    Override(Vec<String>, Value),
    Remove(Vec<String>),
}

/// Compiled rules, in application order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payload {
    edits: Vec<Edit>,
}

fn split(path: &str) -> Vec<String> {
    path.split('.').map(str::to_string).collect()
}

/// What is wrong with a dotted path, if anything.
fn path_problem(path: &str) -> Option<&'static str> {
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Some("a dotted path with no empty segment is needed");
    }
    if path == "stream" || path.starts_with("stream.") {
        // The answer is read as a stream or not from the client's request.
        return Some("`stream` cannot be changed by payload rules");
    }
    None
}

impl Payload {
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }

    /// Append one config block (validated in `validate`).
    pub fn push(&mut self, c: &PayloadConf) {
        for (k, v) in &c.defaults {
            self.edits.push(Edit::Default(split(k), v.clone()));
        }
        for (k, v) in &c.overrides {
            self.edits.push(Edit::Override(split(k), v.clone()));
        }
        for k in &c.remove {
            self.edits.push(Edit::Remove(split(k)));
        }
    }

    /// The rules of a model entry then of one of its targets; None when neither has any.
    pub fn compile(entry: Option<&PayloadConf>, target: Option<&PayloadConf>) -> Option<Payload> {
        let mut p = Payload::default();
        for c in [entry, target].into_iter().flatten() {
            p.push(c);
        }
        (!p.is_empty()).then_some(p)
    }

    pub fn apply(&self, v: &mut Value) {
        for e in &self.edits {
            match e {
                Edit::Default(path, val) => set(v, path, val, true),
                Edit::Override(path, val) => set(v, path, val, false),
                Edit::Remove(path) => remove(v, path),
            }
        }
    }

    /// The body with the rules applied. A body that is not a JSON object
    /// (it always is: aigate built it) is returned unchanged.
    pub fn apply_bytes(&self, body: Bytes) -> Bytes {
        let Ok(mut v) = serde_json::from_slice::<Value>(&body) else {
            return body;
        };
        if !v.is_object() {
            return body;
        }
        self.apply(&mut v);
        serde_json::to_vec(&v).map(Bytes::from).unwrap_or(body)
    }
}

/// Write `val` at `path`, creating missing intermediate objects. A path that
/// runs into a scalar, or past the end of an array, is left alone.
fn set(v: &mut Value, path: &[String], val: &Value, only_if_absent: bool) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for seg in parents {
        cur = match cur {
            Value::Object(m) => m
                .entry(seg.clone())
                .or_insert_with(|| Value::Object(Default::default())),
            Value::Array(a) => match seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(x) => x,
                None => return,
            },
            _ => return,
        };
    }
    match cur {
        Value::Object(m) if !(only_if_absent && m.contains_key(last)) => {
            m.insert(last.clone(), val.clone());
        }
        Value::Array(a) => {
            // An array item always exists: only overrides replace it.
            if let Some(x) = last.parse::<usize>().ok().and_then(|i| a.get_mut(i))
                && !only_if_absent
            {
                *x = val.clone();
            }
        }
        _ => {}
    }
}

fn remove(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for seg in parents {
        cur = match cur {
            Value::Object(m) => match m.get_mut(seg) {
                Some(x) => x,
                None => return,
            },
            Value::Array(a) => match seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(x) => x,
                None => return,
            },
            _ => return,
        };
    }
    match cur {
        Value::Object(m) => {
            m.remove(last);
        }
        Value::Array(a) => {
            if let Ok(i) = last.parse::<usize>()
                && i < a.len()
            {
                a.remove(i);
            }
        }
        _ => {}
    }
}

/// `--test` checks of every `payload:` block, with YAML paths.
pub fn validate(f: &ConfigFile, problems: &mut Vec<Problem>) {
    let mut check = |c: &PayloadConf, at: String| {
        let keys = c
            .defaults
            .keys()
            .map(|k| (format!("{at}.defaults.{k}"), k))
            .chain(
                c.overrides
                    .keys()
                    .map(|k| (format!("{at}.overrides.{k}"), k)),
            )
            .chain(
                c.remove
                    .iter()
                    .enumerate()
                    .map(|(i, k)| (format!("{at}.remove[{i}]"), k)),
            );
        for (path, k) in keys {
            if let Some(m) = path_problem(k) {
                problems.push(Problem {
                    path,
                    message: m.to_string(),
                });
            }
        }
    };
    for (i, m) in f.models.iter().enumerate() {
        if let Some(c) = &m.payload {
            check(c, format!("models[{i}].payload"));
        }
        for (j, t) in m.targets.iter().enumerate() {
            if let Some(c) = &t.payload {
                check(c, format!("models[{i}].targets[{j}].payload"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conf(y: &str) -> PayloadConf {
        serde_yaml::from_str(y).unwrap()
    }

    #[test]
    fn defaults_overrides_remove_in_order() {
        let entry = conf(
            "{defaults: {temperature: 0.5, max_tokens: 100, 'generationConfig.topK': 3}, \
             overrides: {'metadata.user': gw, 'messages.0.role': system}, \
             remove: [seed, 'tools.1', 'nope.deeper']}",
        );
        let target = conf("{overrides: {temperature: 0.1}, remove: [metadata]}");
        let p = Payload::compile(Some(&entry), Some(&target)).unwrap();
        let mut v = json!({"max_tokens": 7, "seed": 1, "messages": [{"role": "user"}],
            "tools": [1, 2, 3]});
        p.apply(&mut v);
        assert_eq!(
            v,
            json!({"max_tokens": 7, "temperature": 0.1, "generationConfig": {"topK": 3},
                "messages": [{"role": "system"}], "tools": [1, 3]})
        );
    }

    #[test]
    fn paths_into_scalars_or_past_arrays_are_left_alone() {
        let p = Payload::compile(
            Some(&conf(
                "{overrides: {'a.b': 1, 'list.5': 2, 'list.x': 3}, defaults: {'list.0': 9}}",
            )),
            None,
        )
        .unwrap();
        let mut v = json!({"a": "scalar", "list": [0]});
        p.apply(&mut v);
        assert_eq!(v, json!({"a": "scalar", "list": [0]}));
    }

    #[test]
    fn no_rules_no_payload_and_bytes_round_trip() {
        assert!(Payload::compile(None, Some(&PayloadConf::default())).is_none());
        let p = Payload::compile(Some(&conf("{remove: [x]}")), None).unwrap();
        let out = p.apply_bytes(Bytes::from_static(br#"{"x":1,"y":[true]}"#));
        assert_eq!(&out[..], br#"{"y":[true]}"#);
        let not_obj = Bytes::from_static(b"[1]");
        assert_eq!(p.apply_bytes(not_obj.clone()), not_obj);
    }

    #[test]
    fn bad_paths_are_reported() {
        assert!(path_problem("a..b").is_some());
        assert!(path_problem("").is_some());
        assert!(path_problem("stream").is_some());
        assert!(path_problem("stream_options.include_usage").is_none());
        assert!(path_problem("generationConfig.temperature").is_none());
    }
}
