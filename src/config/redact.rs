//! The running config with every secret replaced, for `GET /admin/config`.
//!
//! Made once per load from the interpolated YAML tree (so `${VAR}` secrets are
//! covered too). Two passes: known secret places are redacted by path, and
//! their values are then looked for everywhere else (a key pasted into a
//! static answer or a header is redacted there too). Any mapping entry whose
//! name says secret (`key`, `token`, `password`, ...) is redacted wherever
//! it is.

use serde_json::Value as Json;
use serde_yaml::Value;

pub const REDACTED: &str = "[redacted]";

/// Names whose values are secrets wherever they appear.
fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "key",
        "sha256",
        "token",
        "password",
        "password_hash",
        "secret",
        "authorization",
        "api_key",
        "api-key",
        "x-api-key",
        "x-goog-api-key",
        "cookie",
    ]
    .contains(&n.as_str())
}

/// Header maps: every value is redacted (an upstream header is often a credential).
fn header_map(parent: &str) -> bool {
    parent == "headers"
}

/// `redis://user:pass@host` -> `redis://user:[redacted]@host`.
pub fn url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((auth, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    let user = auth.split_once(':').map_or("", |(u, _)| u);
    format!("{scheme}://{user}:{REDACTED}@{host}")
}

/// The redacted config as JSON.
pub fn tree(root: &Value) -> Json {
    let mut secrets = vec![];
    let mut out = walk(root, "", &mut secrets);
    // Short values would blank unrelated text; every real secret is longer.
    secrets.retain(|s| s.len() >= 6);
    secrets.sort();
    secrets.dedup();
    scrub(&mut out, &secrets);
    out
}

fn walk(v: &Value, name: &str, secrets: &mut Vec<String>) -> Json {
    match v {
        Value::Mapping(m) => {
            let mut o = serde_json::Map::new();
            for (k, v) in m {
                let k = match k {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                let child = if header_map(name) || (secret_name(&k) && !v.is_mapping()) {
                    collect(v, secrets);
                    Json::String(REDACTED.into())
                } else if k == "url"
                    && let Value::String(u) = v
                {
                    if let Some(p) = password_of(u) {
                        secrets.push(p);
                    }
                    Json::String(url_password(u))
                } else {
                    walk(v, &k, secrets)
                };
                o.insert(k, child);
            }
            Json::Object(o)
        }
        Value::Sequence(items) => {
            Json::Array(items.iter().map(|i| walk(i, name, secrets)).collect())
        }
        Value::String(s) => Json::String(s.clone()),
        Value::Bool(b) => Json::Bool(*b),
        Value::Number(n) => serde_json::to_value(n).unwrap_or(Json::Null),
        Value::Null => Json::Null,
        Value::Tagged(t) => walk(&t.value, name, secrets),
    }
}

fn password_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let auth = rest.rsplit_once('@')?.0;
    let pass = auth.split_once(':').map_or(auth, |(_, p)| p);
    (!pass.is_empty()).then(|| pass.to_string())
}

/// Every string under a redacted value, to look for elsewhere.
fn collect(v: &Value, secrets: &mut Vec<String>) {
    match v {
        Value::String(s) if !s.is_empty() => secrets.push(s.clone()),
        Value::Sequence(items) => items.iter().for_each(|i| collect(i, secrets)),
        Value::Mapping(m) => m.values().for_each(|i| collect(i, secrets)),
        _ => {}
    }
}

fn scrub(v: &mut Json, secrets: &[String]) {
    match v {
        Json::String(s) if secrets.iter().any(|x| s.contains(x.as_str())) => {
            *s = REDACTED.into();
        }
        Json::Array(a) => a.iter_mut().for_each(|i| scrub(i, secrets)),
        Json::Object(o) => o.values_mut().for_each(|i| scrub(i, secrets)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_secret_is_gone() {
        let text = r#"
keys: [{id: team-a, key: sk-gateway-secret-1, models: ["gpt-*"]}]
providers:
  - name: o
    kind: openai
    credentials: [{key: sk-provider-secret-2, weight: 2}]
    headers: {x-custom-auth: header-secret-3}
limits: {backend: redis, url: "redis://:redis-pass-4@127.0.0.1:6379/0"}
admin: {token: admin-token-secret-5, users: [{name: ops, password_hash: "$2b$04$hashhashhash"}]}
routes:
  - path: /x
    static: {body: {echo: "sk-provider-secret-2 leaked"}}
"#;
        let root: Value = serde_yaml::from_str(text).unwrap();
        let out = tree(&root).to_string();
        for s in [
            "sk-gateway-secret-1",
            "sk-provider-secret-2",
            "header-secret-3",
            "redis-pass-4",
            "admin-token-secret-5",
            "hashhashhash",
        ] {
            assert!(!out.contains(s), "{s} in {out}");
        }
        // What is not secret stays readable.
        for s in ["team-a", "gpt-*", "127.0.0.1:6379", "\"weight\":2", "ops"] {
            assert!(out.contains(s), "{s} missing in {out}");
        }
    }

    #[test]
    fn url_passwords() {
        assert_eq!(url_password("redis://127.0.0.1/0"), "redis://127.0.0.1/0");
        assert_eq!(
            url_password("redis://u:p@h:1/0"),
            "redis://u:[redacted]@h:1/0"
        );
    }
}
