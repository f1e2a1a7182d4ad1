use super::*;
use crate::config::parse::parse;
use crate::providers::Provider;
use crate::resilience::RetryPolicy;
use std::collections::HashMap;

fn no_env(_: &str) -> Option<String> {
    None
}

fn table(yaml: &str) -> RouteTable {
    // Parsed, not validated: validation (`runtime::load`) is tested there.
    let p = parse(yaml, &no_env).unwrap_or_else(|p| panic!("{p:?}"));
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    let f = &p.loaded.file;
    let mut providers = vec![];
    let mut index = HashMap::new();
    for c in &f.providers {
        index.insert(c.name.clone(), providers.len());
        providers.push(Provider::compile(c, &RetryPolicy::default()).unwrap());
    }
    RouteTable::compile(f, &index, &providers).unwrap()
}

const BASE: &str = r#"
keys: [{id: a, key: ka}, {id: b, key: kb}]
providers:
  - {name: oa, kind: openai, base_url: "http://127.0.0.1:9/v1", credentials: [{key: x}]}
  - {name: groq, kind: openai-compatible, base_url: "http://127.0.0.1:9/openai/v1", credentials: [{key: x}]}
"#;

fn hit(l: Option<Lookup>) -> (usize, String) {
    match l {
        Some(Lookup::Hit { route, rest }) => (route, rest),
        other => panic!("{other:?}"),
    }
}

#[test]
fn exact_before_prefix_longest_prefix_first() {
    let t = table(&format!(
        "{BASE}
routes:
  - {{path: /*, target: 'http://127.0.0.1:9/all'}}
  - {{path: /v1/audio/*, target: 'http://127.0.0.1:9/a'}}
  - {{path: /v1/audio/speech, methods: [post], target: 'http://127.0.0.1:9/s'}}
  - {{path: /v1/audio/speech, methods: [GET], static: {{body: {{ok: 1}}}}}}
  - {{path: /v1/files/*, provider: oa, methods: [GET, DELETE]}}
"
    ));
    assert_eq!(hit(t.lookup("POST", "/v1/audio/speech", false)).0, 2);
    assert_eq!(hit(t.lookup("GET", "/v1/audio/speech", true)).0, 3);
    assert_eq!(
        hit(t.lookup("PUT", "/v1/audio/x/y", false)),
        (1, "/x/y".into())
    );
    assert_eq!(hit(t.lookup("GET", "/v1/audio", false)), (1, "".into()));
    // Not a segment boundary: the catch-all takes it.
    assert_eq!(
        hit(t.lookup("GET", "/v1/audiox", false)),
        (0, "/v1/audiox".into())
    );
    // Provider routes without a target get the whole path.
    assert_eq!(
        hit(t.lookup("GET", "/v1/files/f1", false)),
        (4, "/v1/files/f1".into())
    );
    assert_eq!(
        t.lookup("POST", "/v1/files/f1", false),
        Some(Lookup::WrongMethod {
            allow: "DELETE, GET".into()
        })
    );
    assert_eq!(
        t.lookup("DELETE", "/v1/audio/speech", false),
        Some(Lookup::WrongMethod {
            allow: "GET, POST".into()
        })
    );
    // Built-in paths see exact routes only.
    assert_eq!(t.lookup("POST", "/v1/chat/completions", true), None);
    assert_eq!(hit(t.lookup("POST", "/v1/chat/completions", false)).0, 0);
}

#[test]
fn provider_passthrough_prefixes() {
    let t = table(&format!(
        "{BASE}provider_passthrough: {{prefix: /p/}}\nroutes: [{{path: /p/oa/v1/files/*, target: 'http://127.0.0.1:9/f'}}]\n"
    ));
    assert_eq!(
        hit(t.lookup("POST", "/p/oa/v1/embeddings", false)).1,
        "/v1/embeddings"
    );
    assert_eq!(hit(t.lookup("GET", "/p/groq", false)).1, "");
    // A longer configured prefix wins over the provider's.
    assert_eq!(
        hit(t.lookup("GET", "/p/oa/v1/files/x", false)),
        (0, "/x".into())
    );
    assert_eq!(t.lookup("GET", "/p/other/x", false), None);
    assert_eq!(t.lookup("GET", "/oa/x", false), None);
    let off = table(&format!("{BASE}provider_passthrough: {{enabled: false}}\n"));
    assert!(off.is_empty());
}

#[test]
fn upstream_paths() {
    use Join::*;
    assert_eq!(
        upstream_path(Append, "/v1/audio", "/speech", None),
        "/v1/audio/speech"
    );
    assert_eq!(upstream_path(Append, "", "", Some("a=1")), "/?a=1");
    assert_eq!(upstream_path(Append, "/x", "", Some("")), "/x");
    assert_eq!(
        upstream_path(Provider, "/v1", "/v1/embeddings", None),
        "/v1/embeddings"
    );
    assert_eq!(upstream_path(Provider, "/v1", "/v1", None), "/v1");
    assert_eq!(
        upstream_path(Provider, "/v1", "/embeddings", Some("x=1")),
        "/v1/embeddings?x=1"
    );
    assert_eq!(
        upstream_path(Provider, "/v1", "/v1beta/x", None),
        "/v1/v1beta/x"
    );
    assert_eq!(
        upstream_path(Provider, "/openai/v1", "/v1/embeddings", None),
        "/openai/v1/embeddings"
    );
    assert_eq!(
        upstream_path(Provider, "", "/v1/messages/count_tokens", None),
        "/v1/messages/count_tokens"
    );
}

#[test]
fn dot_segments() {
    for p in ["/a/../b", "/..", "/a/./b", "/a/%2e%2E/b", "/a/.%2e", "/%2E"] {
        assert!(has_dot_segment(p), "{p}");
    }
    for p in [
        "/a/b",
        "/a..b/c",
        "/.well-known/x",
        "/v1/models/x:countTokens",
        "",
    ] {
        assert!(!has_dot_segment(p), "{p}");
    }
}

#[test]
fn static_and_proxy_settings_compile() {
    let t = table(&format!(
        "{BASE}
routes:
  - path: /api/event
    static: {{status: 202, headers: {{x-s: '1'}}, body: {{ok: true, n: [1]}}}}
  - path: /t/*
    auth: false
    target: ['http://127.0.0.1:9/a', 'http://127.0.0.1:8/b']
    forward_request_headers: [authorization, x-*]
    timeout_ms: 1500
    retry: {{max_attempts: 3, non_idempotent: true}}
  - {{path: /g/*, provider: groq}}
"
    ));
    match &t.routes[0].action {
        Action::Static(a) => {
            assert_eq!(a.status, 202);
            assert_eq!(&a.body[..], br#"{"n":[1],"ok":true}"#);
            assert!(
                a.headers
                    .iter()
                    .any(|(k, v)| k == "content-type" && v == "application/json")
            );
        }
        Action::Proxy(_) => panic!("static expected"),
    }
    assert!(t.routes[0].auth);
    match &t.routes[1].action {
        Action::Proxy(p) => {
            assert!(!t.routes[1].auth);
            assert!(!p.strip_credentials);
            assert_eq!(p.targets.len(), 2);
            assert_eq!(p.join, Join::Append);
            assert_eq!(p.timeout, Duration::from_millis(1500));
            assert_eq!((p.max_attempts, p.non_idempotent), (3, true));
            assert!(p.forward_request.as_ref().unwrap().contains("x-anything"));
        }
        Action::Static(_) => panic!("proxy expected"),
    }
    match &t.routes[2].action {
        Action::Proxy(p) => {
            assert_eq!(
                (p.join, p.provider, p.strip_credentials),
                (Join::Provider, Some(1), true)
            );
            assert_eq!(p.timeout, Duration::from_secs(300));
            assert_eq!(t.routes[2].error_format, Format::OpenAiChat);
        }
        Action::Static(_) => panic!("proxy expected"),
    }
    assert_eq!(t.upstreams().count(), 2);
}
