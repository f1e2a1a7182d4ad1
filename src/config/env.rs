//! `${VAR}` / `${VAR:-default}` interpolation in every string value of the YAML tree.

use serde_yaml::Value;

/// Replace `${VAR}` and `${VAR:-default}` in `s` using `lookup`. An unset variable
/// without a default becomes the empty string (as in a shell); `unset` collects
/// its name so `--test` can warn about it.
pub fn interpolate_str(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            // No closing brace: keep the text as written.
            out.push_str(&rest[start..]);
            return out;
        };
        let expr = &after[..end];
        let (name, default) = match expr.find(":-") {
            Some(i) => (&expr[..i], Some(&expr[i + 2..])),
            None => (expr, None),
        };
        match lookup(name).filter(|v| !v.is_empty() || default.is_none()) {
            Some(v) => out.push_str(&v),
            None => match default {
                Some(d) => out.push_str(d),
                None => unset.push(name.to_string()),
            },
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Interpolate every string scalar (not mapping keys) in place.
pub fn interpolate(
    v: &mut Value,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) {
    match v {
        Value::String(s) if s.contains("${") => *s = interpolate_str(s, lookup, unset),
        Value::Sequence(seq) => seq.iter_mut().for_each(|x| interpolate(x, lookup, unset)),
        Value::Mapping(m) => m
            .iter_mut()
            .for_each(|(_, x)| interpolate(x, lookup, unset)),
        Value::Tagged(t) => interpolate(&mut t.value, lookup, unset),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn forms() {
        let mut unset = vec![];
        assert_eq!(interpolate_str("x${A}y", &env, &mut unset), "xalphay");
        assert_eq!(
            interpolate_str("${B:-127.0.0.1:8080}", &env, &mut unset),
            "127.0.0.1:8080"
        );
        assert_eq!(interpolate_str("${A:-d}", &env, &mut unset), "alpha");
        // As in a shell, `:-` also applies when the variable is set but empty.
        assert_eq!(interpolate_str("${EMPTY:-d}", &env, &mut unset), "d");
        assert_eq!(interpolate_str("${EMPTY}", &env, &mut unset), "");
        assert!(unset.is_empty());
        assert_eq!(interpolate_str("k=${NOPE}", &env, &mut unset), "k=");
        assert_eq!(unset, vec!["NOPE".to_string()]);
        assert_eq!(interpolate_str("${open", &env, &mut unset), "${open");
    }

    #[test]
    fn walks_tree() {
        let mut v: Value = serde_yaml::from_str("a: ['${A}', {b: '${B:-x}'}]\nn: 3").unwrap();
        interpolate(&mut v, &env, &mut vec![]);
        assert_eq!(v["a"][0].as_str(), Some("alpha"));
        assert_eq!(v["a"][1]["b"].as_str(), Some("x"));
        assert_eq!(v["n"].as_i64(), Some(3));
    }
}
