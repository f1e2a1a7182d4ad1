//! Loading a file: read, parse (`config::parse`), then the checks serde
//! cannot do, each module checking its own section (routes, payload, admin,
//! limits, prices, TLS files).

use crate::config::file::*;
use crate::config::parse::{Parsed, problem};
use crate::config::{EMBEDDED_DEFAULT, Loaded, Problem};
use std::collections::HashSet;

/// Parse and validate config text. `lookup` reads environment variables.
pub fn parse(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, Vec<Problem>> {
    let Parsed {
        mut loaded,
        mut problems,
    } = crate::config::parse::parse(text, lookup)?;
    validate(&loaded.file, &mut problems, &mut loaded.warnings);
    if problems.is_empty() {
        Ok(loaded)
    } else {
        Err(problems)
    }
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Parse config text against the process environment.
pub fn parse_text(text: &str) -> Result<Loaded, Vec<Problem>> {
    parse(text, &process_env)
}

/// Read and parse a file, or the embedded default when `path` is None.
pub fn read(path: Option<&str>) -> Result<Loaded, Vec<Problem>> {
    match path {
        None => parse_text(EMBEDDED_DEFAULT),
        Some(p) => match std::fs::read_to_string(p) {
            Ok(text) => parse_text(&text),
            Err(e) => Err(vec![Problem {
                path: p.to_string(),
                message: format!("cannot read: {e}"),
            }]),
        },
    }
}

/// No gateway keys on an address beyond this machine lends the provider keys
/// to anyone who reaches it: refused unless `allow_unauthenticated: true`.
fn check_exposure(f: &ConfigFile, problems: &mut Vec<Problem>, warnings: &mut Vec<String>) {
    if !f.keys.is_empty() {
        return;
    }
    let listen = f
        .settings
        .listen
        .as_ref()
        .map_or_else(|| vec![DEFAULT_LISTEN.to_string()], OneOrMany::to_vec);
    let exposed: Vec<&String> = listen
        .iter()
        .filter(|a| {
            a.parse::<std::net::SocketAddr>()
                .is_ok_and(|a| !a.ip().is_loopback())
        })
        .collect();
    if exposed.is_empty() {
        warnings.push(
            "no gateway keys configured: the gateway is open to anyone who can reach its loopback address".into(),
        );
    } else if f.settings.allow_unauthenticated == Some(true) {
        warnings.push(format!(
            "no gateway keys configured and allow_unauthenticated: true: the gateway is open to anyone who can reach {}",
            join(&exposed)
        ));
    } else {
        problems.push(problem(
            "keys",
            format!(
                "none configured, but listen has {} (not loopback): anyone who reaches it would spend the provider keys. Add gateway keys under `keys:` (with the embedded default or conf/aigate.yaml, set AIGATE_KEY), or set `allow_unauthenticated: true` to serve it open",
                join(&exposed)
            ),
        ));
    }
}

fn join(addrs: &[&String]) -> String {
    addrs
        .iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The highest `client_body_min_rate` accepted (1 GiB/s).
const MAX_BODY_MIN_RATE: u64 = 1 << 30;

fn check_addr(s: &str, path: &str, problems: &mut Vec<Problem>) {
    if s.parse::<std::net::SocketAddr>().is_err() {
        problems.push(problem(
            path,
            format!("'{s}' is not an address like 127.0.0.1:8080 or [::1]:8080"),
        ));
    }
}

fn check_glob(g: &str, path: &str, problems: &mut Vec<Problem>) {
    if let Err(e) = globset::Glob::new(g) {
        problems.push(problem(path, format!("bad glob '{g}': {e}")));
    }
}

fn check_retry(r: Option<&RetryConf>, path: &str, problems: &mut Vec<Problem>) {
    let Some(r) = r else { return };
    if r.max_attempts == Some(0) {
        problems.push(problem(
            format!("{path}.max_attempts"),
            "must be at least 1",
        ));
    }
    if let Some(m) = r.multiplier
        && !(1.0..=100.0).contains(&m)
    {
        problems.push(problem(
            format!("{path}.multiplier"),
            "must be between 1 and 100",
        ));
    }
    for (i, s) in r.on_status.iter().flatten().enumerate() {
        if !(400..=599).contains(s) {
            problems.push(problem(
                format!("{path}.on_status[{i}]"),
                "must be an HTTP error status (400-599)",
            ));
        }
    }
}

/// TLS files load (so `--test` and a reload catch a bad certificate before it
/// is needed) and provider TLS options fit their `base_url`.
fn check_tls(f: &ConfigFile, problems: &mut Vec<Problem>, warnings: &mut Vec<String>) {
    if let Some(t) = &f.settings.tls
        && let Err(e) = crate::tls::load_server_cert(&t.cert_file, &t.key_file)
    {
        problems.push(problem("tls", e));
    }
    for (i, p) in f.providers.iter().enumerate() {
        let path = format!("providers[{i}]");
        let url = p
            .base_url
            .as_deref()
            .or(crate::providers::default_base_url(p.kind));
        let https = url.is_some_and(|u| u.starts_with("https://"));
        if (p.ca_file.is_some() || p.tls_verify.is_some()) && !https {
            let key = if p.ca_file.is_some() {
                "ca_file"
            } else {
                "tls_verify"
            };
            problems.push(problem(
                format!("{path}.{key}"),
                "needs an https:// base_url",
            ));
            continue;
        }
        match (&p.ca_file, p.tls_verify) {
            (Some(_), Some(false)) => problems.push(problem(
                format!("{path}.tls_verify"),
                "give `ca_file` or `tls_verify: false`, not both",
            )),
            (Some(ca), _) => {
                if let Err(e) = crate::tls::load_ca_file(ca) {
                    problems.push(problem(format!("{path}.ca_file"), e));
                }
            }
            (None, Some(false)) => warnings.push(format!(
                "provider '{}': upstream TLS certificates are not verified (tls_verify: false)",
                p.name
            )),
            (None, _) => {}
        }
    }
}

fn check_limits(l: Option<&LimitsConf>, problems: &mut Vec<Problem>) {
    let Some(l) = l else { return };
    for (name, v) in [
        ("rpm", l.rpm),
        ("max_concurrent", l.max_concurrent),
        ("timeout_ms", l.timeout_ms),
    ] {
        if v == Some(0) {
            problems.push(problem(
                format!("limits.{name}"),
                "must be at least 1 (omit it for no limit)",
            ));
        }
    }
    match (l.backend, &l.url) {
        (LimitBackend::Memory, Some(_)) => {
            problems.push(problem("limits.url", "only `backend: redis` takes a url"))
        }
        (LimitBackend::Memory, None) if l.key_prefix.is_some() || l.timeout_ms.is_some() => {
            problems.push(problem(
                "limits",
                "key_prefix and timeout_ms are for `backend: redis` only",
            ))
        }
        (LimitBackend::Redis, None) => problems.push(problem(
            "limits.url",
            "`backend: redis` needs a url (redis://host:port)",
        )),
        (LimitBackend::Redis, Some(u)) => {
            if !(u.starts_with("redis://")
                || u.starts_with("rediss://")
                || u.starts_with("redis+unix://")
                || u.starts_with("unix://"))
            {
                problems.push(problem(
                    "limits.url",
                    format!("'{u}' is not a redis:// or rediss:// URL"),
                ));
            } else if let Err(e) = crate::limits::redis::RedisLimits::new(u, "") {
                // e.g. rediss:// without TLS support; the text never holds the URL.
                problems.push(problem("limits.url", e));
            }
        }
        (LimitBackend::Memory, None) => {}
    }
}

/// Semantic checks serde cannot do.
fn validate(f: &ConfigFile, problems: &mut Vec<Problem>, warnings: &mut Vec<String>) {
    check_tls(f, problems, warnings);
    let s = &f.settings;
    if let Some(l) = &s.listen {
        let list = l.to_vec();
        if list.is_empty() {
            problems.push(problem("listen", "at least one address is needed"));
        }
        for (i, a) in list.iter().enumerate() {
            let path = match l {
                OneOrMany::One(_) => "listen".to_string(),
                OneOrMany::Many(_) => format!("listen[{i}]"),
            };
            check_addr(a, &path, problems);
        }
    }
    if let Some(a) = &s.admin_listen {
        check_addr(a, "admin_listen", problems);
    }
    if s.rate_limit_window_seconds == Some(0) {
        problems.push(problem("rate_limit_window_seconds", "must be at least 1"));
    }
    if s.threads == Some(0) {
        problems.push(problem("threads", "must be at least 1"));
    }
    for (name, v) in [
        ("max_body_bytes", s.max_body_bytes),
        ("max_buffered_bytes", s.max_buffered_bytes),
        (
            "client_header_timeout_seconds",
            s.client_header_timeout_seconds,
        ),
        ("client_body_timeout_seconds", s.client_body_timeout_seconds),
    ] {
        if v == Some(0) {
            problems.push(problem(name, "must be greater than 0"));
        }
    }
    // A client's body may not be required faster than any network carries it.
    if s.client_body_min_rate
        .is_some_and(|r| r > MAX_BODY_MIN_RATE)
    {
        problems.push(problem(
            "client_body_min_rate",
            format!("must be at most {MAX_BODY_MIN_RATE} bytes/s (0 turns the rule off)"),
        ));
    }
    for (name, v) in [("pid_file", &s.pid_file), ("upgrade_sock", &s.upgrade_sock)] {
        if let Some(p) = v
            && !p.starts_with('/')
        {
            // Pingora resolves these after daemonizing (chdir /): relative paths break (pingora #331).
            problems.push(problem(name, "must be an absolute path"));
        }
    }

    check_limits(s.limits.as_ref(), problems);
    for (name, p) in s.model_prices.iter().flat_map(|t| &t.0) {
        let path = format!("model_prices.{name}");
        if name.is_empty() {
            problems.push(problem(&path, "a model name or glob is needed"));
        }
        if crate::pricing::is_glob(name) {
            check_glob(name, &path, problems);
        }
        let rates = [
            ("input", Some(p.input)),
            ("output", Some(p.output)),
            ("cached_input", p.cached_input),
            ("cache_write", p.cache_write),
        ];
        for (field, v) in rates {
            if let Some(v) = v
                && !(v.is_finite() && v >= 0.0)
            {
                problems.push(problem(
                    format!("{path}.{field}"),
                    "must be a price in USD per million tokens (0 or more)",
                ));
            }
        }
    }
    check_retry(s.retry.as_ref(), "retry", problems);
    if let Some(b) = &s.circuit_breaker
        && b.open_seconds == Some(0)
    {
        problems.push(problem(
            "circuit_breaker.open_seconds",
            "must be at least 1",
        ));
    }

    let mut ids = HashSet::new();
    for (i, k) in f.keys.iter().enumerate() {
        let path = format!("keys[{i}]");
        if k.id.is_empty() {
            problems.push(problem(format!("{path}.id"), "must not be empty"));
        } else if !ids.insert(k.id.as_str()) {
            problems.push(problem(
                format!("{path}.id"),
                format!("duplicate key id '{}'", k.id),
            ));
        }
        match (&k.key, &k.sha256) {
            (None, None) => problems.push(problem(&path, "needs `key` or `sha256`")),
            (Some(_), Some(_)) => problems.push(problem(&path, "give `key` or `sha256`, not both")),
            (Some(key), None) if key.is_empty() => problems.push(problem(
                format!("{path}.key"),
                "is empty (an unset environment variable?)",
            )),
            (None, Some(h)) if h.len() != 64 || hex::decode(h).is_err() => problems.push(problem(
                format!("{path}.sha256"),
                "must be 64 hex characters (the SHA-256 of the key)",
            )),
            _ => {}
        }
        for (name, v) in [
            ("rpm", k.rpm),
            ("tpm", k.tpm),
            ("max_concurrent", k.max_concurrent),
        ] {
            if v == Some(0) {
                problems.push(problem(
                    format!("{path}.{name}"),
                    "must be at least 1 (omit it for no limit)",
                ));
            }
        }
        for (name, v) in [
            ("budget_usd_daily", k.budget_usd_daily),
            ("budget_usd_monthly", k.budget_usd_monthly),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0)
            {
                problems.push(problem(
                    format!("{path}.{name}"),
                    "must be an amount in USD greater than 0 (omit it for no budget)",
                ));
            }
        }
        for (j, g) in k.models.iter().flatten().enumerate() {
            check_glob(g, &format!("{path}.models[{j}]"), problems);
        }
    }

    let mut names = HashSet::new();
    for (i, p) in f.providers.iter().enumerate() {
        let path = format!("providers[{i}]");
        if p.name.is_empty() || p.name.contains('/') {
            problems.push(problem(
                format!("{path}.name"),
                "must be non-empty and contain no '/'",
            ));
        } else if !names.insert(p.name.as_str()) {
            problems.push(problem(
                format!("{path}.name"),
                format!("duplicate provider '{}'", p.name),
            ));
        }
        if let Some(u) = &p.base_url
            && let Err(e) = crate::providers::Endpoint::parse(u)
        {
            problems.push(problem(format!("{path}.base_url"), e));
        }
        if p.api.is_some() && matches!(p.kind, ProviderKind::Anthropic | ProviderKind::Gemini) {
            problems.push(problem(
                format!("{path}.api"),
                "only openai and openai-compatible providers take `api`",
            ));
        }
        check_retry(p.retry.as_ref(), &format!("{path}.retry"), problems);
        if let Some(h) = &p.health_check
            && (h.interval_seconds == 0 || h.timeout_ms == 0)
        {
            problems.push(problem(
                format!("{path}.health_check"),
                "interval_seconds and timeout_ms must be at least 1",
            ));
        }
        for (j, c) in p.credentials.iter().enumerate() {
            if c.weight == 0 {
                problems.push(problem(
                    format!("{path}.credentials[{j}].weight"),
                    "must be at least 1",
                ));
            }
        }
        if !p.credentials.is_empty() && p.credentials.iter().all(|c| c.key.is_empty()) {
            warnings.push(format!(
                "provider '{}' is disabled: every credential key is empty",
                p.name
            ));
        }
        for (h, _) in p.headers.iter() {
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                problems.push(problem(
                    format!("{path}.headers.{h}"),
                    "not a valid header name",
                ));
            }
        }
    }

    for (i, m) in f.models.iter().enumerate() {
        let path = format!("models[{i}]");
        if m.name.is_empty() {
            problems.push(problem(format!("{path}.name"), "must not be empty"));
        }
        check_glob(&m.name, &format!("{path}.name"), problems);
        if m.targets.is_empty() {
            problems.push(problem(
                format!("{path}.targets"),
                "needs at least one target",
            ));
        }
        for (j, t) in m.targets.iter().enumerate() {
            if t.weight == 0 {
                problems.push(problem(
                    format!("{path}.targets[{j}].weight"),
                    "must be at least 1",
                ));
            }
            for (name, v) in [
                ("rpm", t.rpm),
                ("rph", t.rph),
                ("rpd", t.rpd),
                ("tpm", t.tpm),
            ] {
                if v == Some(0) {
                    problems.push(problem(
                        format!("{path}.targets[{j}].{name}"),
                        "must be at least 1 (omit it for no limit)",
                    ));
                }
            }
            if !f.providers.iter().any(|p| p.name == t.provider) {
                problems.push(problem(
                    format!("{path}.targets[{j}].provider"),
                    format!("no provider named '{}'", t.provider),
                ));
            }
        }
    }
    crate::routes::validate(f, problems);
    crate::payload::validate(f, problems);
    check_exposure(f, problems, warnings);
    crate::config::admin::validate(s.admin.as_ref(), problems, warnings);
    for (i, p) in s.trusted_proxies.iter().flatten().enumerate() {
        if let Err(e) = p.parse::<crate::client_addr::Cidr>() {
            problems.push(problem(format!("trusted_proxies[{i}]"), e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn no_keys_beyond_loopback_is_refused_unless_allowed() {
        let p = parse("listen: [\"127.0.0.1:1\", \"0.0.0.0:2\"]\n", &no_env).unwrap_err();
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].path, "keys");
        assert!(p[0].message.contains("0.0.0.0:2") && !p[0].message.contains("127.0.0.1:1"));
        assert!(parse("listen: \"[::]:2\"\n", &no_env).is_err());
        let open = parse(
            "listen: \"0.0.0.0:2\"\nallow_unauthenticated: true\n",
            &no_env,
        )
        .unwrap();
        assert!(
            open.warnings
                .iter()
                .any(|w| w.contains("allow_unauthenticated"))
        );
        let local = parse("listen: [\"127.0.0.1:1\", \"[::1]:2\"]\n", &no_env).unwrap();
        assert!(local.warnings.iter().any(|w| w.contains("no gateway keys")));
        assert!(parse("listen: \"0.0.0.0:2\"\nkeys: [{id: a, key: k}]\n", &no_env).is_ok());
    }

    #[test]
    fn client_body_min_rate_is_bounded_and_zero_turns_it_off() {
        assert!(parse("client_body_min_rate: 0\n", &no_env).is_ok());
        assert!(parse("client_body_min_rate: 1073741824\n", &no_env).is_ok());
        let p = parse("client_body_min_rate: 1073741825\n", &no_env).unwrap_err();
        assert_eq!(p[0].path, "client_body_min_rate", "{p:?}");
        assert!(parse("client_body_min_rate: -1\n", &no_env).is_err());
    }

    #[test]
    fn an_optional_key_with_an_unset_variable_is_left_out() {
        let text = "keys: [{id: d, key: \"${K}\", optional: true}]\n";
        let l = parse(text, &no_env).unwrap();
        assert!(l.file.keys.is_empty());
        assert!(
            l.warnings
                .iter()
                .any(|w| w.contains("'d'") && w.contains("left out"))
        );
        let set = |_: &str| Some("sk".to_string());
        assert_eq!(parse(text, &set).unwrap().file.keys.len(), 1);
        // Not optional: still an error.
        assert!(parse("keys: [{id: d, key: \"${K}\"}]\n", &no_env).is_err());
        // Unset and public: refused, naming AIGATE_KEY's way out.
        let p = parse(&format!("listen: \"0.0.0.0:1\"\n{text}"), &no_env).unwrap_err();
        assert!(p[0].message.contains("AIGATE_KEY"), "{p:?}");
    }

    #[test]
    fn every_problem_with_its_path() {
        let text = r#"
listen: 8080
bogus: 1
keys:
  - {id: a, key: k, extra: 1}
providers:
  - {name: p, kind: openai, credentials: [{key: x, weight: "heavy"}]}
  - {name: q, kind: martian}
models:
  - name: m
    targets: [{provider: nope}]
"#;
        let problems = parse(text, &no_env).unwrap_err();
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "keys[0]",
            "providers[0].credentials[0].weight",
            "providers[1].kind",
            "models[0].targets[0].provider",
        ] {
            assert!(
                paths.iter().any(|p| p.starts_with(want)),
                "missing {want} in {problems:?}"
            );
        }
        assert!(
            problems.iter().any(|p| p.message.contains("bogus")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.message.contains("extra")),
            "{problems:?}"
        );
    }

    #[test]
    fn valid_with_defaults_and_env() {
        let env = |n: &str| (n == "K").then(|| "secret".to_string());
        let text = r#"
listen: "${AIGATE_LISTEN:-127.0.0.1:9999}"
keys: [{id: a, key: "${K}"}]
providers: [{name: o, kind: openai, credentials: [{key: "${MISSING}"}]}]
models: [{name: "gpt-*", targets: [{provider: o}]}]
"#;
        let l = parse(text, &env).unwrap();
        assert_eq!(
            l.file.settings.listen,
            Some(OneOrMany::One("127.0.0.1:9999".into()))
        );
        assert_eq!(l.file.keys[0].key.as_deref(), Some("secret"));
        assert!(l.warnings.iter().any(|w| w.contains("MISSING")));
        assert!(l.warnings.iter().any(|w| w.contains("disabled")));
    }

    #[test]
    fn limits_backend_checks() {
        let problems = |text: &str| {
            parse(text, &no_env)
                .err()
                .unwrap_or_default()
                .into_iter()
                .map(|p| format!("{p}"))
                .collect::<Vec<_>>()
        };
        assert!(problems("limits: {backend: memory, on_error: closed}").is_empty());
        let p = problems("limits: {backend: redis}");
        assert!(
            p.iter()
                .any(|p| p.starts_with("limits.url") && p.contains("needs a url")),
            "{p:?}"
        );
        assert!(
            problems("limits: {backend: redis, url: \"redis://127.0.0.1:6379\", key_prefix: \"x:\", timeout_ms: 20}")
                .is_empty()
        );
        let p =
            problems("limits: {backend: redis, url: \"redis://127.0.0.1:6379\", timeout_ms: 0}");
        assert!(
            p.iter().any(|p| p.starts_with("limits.timeout_ms")),
            "{p:?}"
        );
        let p = problems("limits: {timeout_ms: 20}");
        assert!(
            p.iter().any(|p| p.contains("for `backend: redis` only")),
            "{p:?}"
        );
        let p = problems("limits: {backend: redis, url: \"http://x\"}");
        assert!(p.iter().any(|p| p.contains("not a redis://")), "{p:?}");
        let p = problems("limits: {url: \"redis://x\"}");
        assert!(
            p.iter().any(|p| p.contains("only `backend: redis`")),
            "{p:?}"
        );
        let p = problems("keys: [{id: a, key: k, budget_usd_daily: 0, budget_usd_monthly: .nan}]");
        assert!(
            p.iter().any(|p| p.starts_with("keys[0].budget_usd_daily")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.starts_with("keys[0].budget_usd_monthly")),
            "{p:?}"
        );
        let p = problems("limits: {rpm: 0}");
        assert!(p.iter().any(|p| p.starts_with("limits.rpm")), "{p:?}");
        let p =
            problems("model_prices: {\"m-[\": {input: 1, output: 1}, x: {input: -1, output: 1}}");
        assert!(
            p.iter()
                .any(|p| p.starts_with("model_prices.m-[") && p.contains("bad glob")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|p| p.starts_with("model_prices.x.input")),
            "{p:?}"
        );
        let p = problems("model_prices: {y: {input: 1, outptu: 2}}");
        assert!(
            p.iter()
                .any(|p| p.starts_with("model_prices.y") && p.contains("outptu")),
            "{p:?}"
        );
        let l = parse("model_prices: {b: {input: 1, output: 2}, \"a*\": {input: 3, output: 4, cached_input: 0.5, cache_write: 5}}", &no_env).unwrap();
        let t = l.file.settings.model_prices.unwrap().0;
        assert_eq!(
            t.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
            ["b", "a*"],
            "file order kept"
        );
        assert_eq!(t[1].1.cached_input, Some(0.5));
        let p = problems("limits: {backend: etcd, on_error: maybe}");
        assert!(p.iter().any(|p| p.starts_with("limits")), "{p:?}");
    }

    // Route problems are reported with those of every other section.
    const ROUTES_BASE: &str = r#"
    keys: [{id: a, key: ka}, {id: b, key: kb}]
    providers:
      - {name: oa, kind: openai, base_url: "http://127.0.0.1:9/v1", credentials: [{key: x}]}
      - {name: groq, kind: openai-compatible, base_url: "http://127.0.0.1:9/openai/v1", credentials: [{key: x}]}
    "#;

    #[test]
    fn invalid_routes_are_reported_with_paths() {
        let text = format!(
            "{ROUTES_BASE}
    provider_passthrough: {{prefix: 'p/', keys: [nobody]}}
    routes:
      - {{path: v1/x, target: 'http://127.0.0.1:9'}}
      - {{path: /a/*/b, target: 'http://127.0.0.1:9'}}
      - {{path: /dup, methods: [GET, POST], target: 'http://127.0.0.1:9'}}
      - {{path: /dup, methods: [POST], static: {{}}}}
      - {{path: /metrics, static: {{}}}}
      - {{path: /n}}
      - {{path: /s, static: {{status: 99}}, target: 'http://x'}}
      - {{path: /u, target: 'ftp://x', provider: nope, methods: ['B A D']}}
      - {{path: /k, auth: false, keys: [a], target: 'http://127.0.0.1:9'}}
      - {{path: /c, provider: oa, forward_request_headers: [X-Api-Key, 'bad name']}}
      - {{path: /r, target: 'http://127.0.0.1:9', retry: {{max_attempts: 0}}, timeout_ms: 0, headers: {{'bad name': v}}}}
      - {{path: /z, target: ['http://127.0.0.1:9', 'nope']}}
      - {{path: /y, target: 'http://127.0.0.1:9', retry: {{max_attempts: 17}}}}
    models:
      - name: m
        payload: {{remove: [stream], defaults: {{'a..b': 1}}}}
        targets: [{{provider: oa, payload: {{overrides: {{'': 1}}}}}}]
    "
        );
        let problems = parse(&text, &no_env).unwrap_err();
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "provider_passthrough.prefix",
            "provider_passthrough.keys[0]",
            "routes[0].path",
            "routes[1].path",
            "routes[3].path",
            "routes[4].path",
            "routes[5]",
            "routes[6].target",
            "routes[6].static.status",
            "routes[7].target",
            "routes[7].provider",
            "routes[7].methods[0]",
            "routes[8].keys",
            "routes[9].forward_request_headers[0]",
            "routes[9].forward_request_headers[1]",
            "routes[10].retry.max_attempts",
            "routes[10].timeout_ms",
            "routes[10].headers.bad name",
            "routes[11].target[1]",
            "routes[12].retry.max_attempts",
            "models[0].payload.remove[0]",
            "models[0].payload.defaults.a..b",
            "models[0].targets[0].payload.overrides.",
        ] {
            assert!(paths.contains(&want), "missing {want} in {problems:#?}");
        }
        assert!(!paths.contains(&"routes[2].path"), "{problems:#?}");
    }

    #[test]
    fn passthrough_conflicts() {
        let text = "
    providers:
      - {name: v1, kind: openai, base_url: 'http://127.0.0.1:9/v1'}
      - {name: oa, kind: openai, base_url: 'http://127.0.0.1:9/v1'}
    provider_passthrough: {}
    routes: [{path: /oa/*, target: 'http://127.0.0.1:9'}]
    ";
        let problems = parse(text, &no_env).unwrap_err();
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["providers[0].name", "routes[0].path"],
            "{problems:#?}"
        );
    }
}

#[cfg(test)]
mod tls_tests {
    use super::*;

    fn data(f: &str) -> String {
        format!("{}/tests/data/tls/{f}", env!("CARGO_MANIFEST_DIR"))
    }

    fn parse_env(text: &str) -> Result<Loaded, Vec<Problem>> {
        let dir = |n: &str| (n == "D").then(|| data(""));
        parse(text, &dir)
    }

    #[test]
    fn listener_tls() {
        let l = parse_env("tls: {cert_file: '${D}leaf.pem', key_file: '${D}leaf.key'}\n").unwrap();
        let t = l.file.settings.tls.unwrap();
        assert!(t.http2, "HTTP/2 is offered unless turned off");
        assert!(t.cert_file.ends_with("leaf.pem"));

        let off = "tls: {cert_file: '${D}leaf.pem', key_file: '${D}leaf.key', http2: false}\n";
        assert!(!parse_env(off).unwrap().file.settings.tls.unwrap().http2);

        for (text, want) in [
            (
                "tls: {cert_file: '${D}leaf.pem', key_file: '${D}other.key'}\n",
                "does not go with",
            ),
            (
                "tls: {cert_file: '${D}nope.pem', key_file: '${D}leaf.key'}\n",
                "cannot read cert_file",
            ),
            ("tls: {cert_file: '${D}leaf.pem'}\n", "key_file"),
            (
                "tls: {cert_file: a, key_file: b, ciphers: all}\n",
                "unknown field",
            ),
        ] {
            let problems = parse_env(text).unwrap_err();
            assert!(
                problems
                    .iter()
                    .any(|p| p.path.starts_with("tls") && p.message.contains(want)),
                "{text}: want '{want}' in {problems:?}"
            );
        }
    }

    #[test]
    fn provider_tls_options() {
        let ok = r#"
providers:
  - {name: a, kind: openai-compatible, base_url: "https://127.0.0.1:9/v1", ca_file: "${D}ca.pem"}
  - {name: b, kind: anthropic, tls_verify: false}
  - {name: c, kind: openai, tls_verify: true}
"#;
        let l = parse_env(ok).unwrap();
        assert!(
            l.warnings
                .iter()
                .any(|w| w.contains("'b'") && w.contains("not verified")),
            "{:?}",
            l.warnings
        );
        assert!(!l.warnings.iter().any(|w| w.contains("'c'")));

        let bad = r#"
providers:
  - {name: a, kind: openai-compatible, base_url: "http://127.0.0.1:9/v1", ca_file: "${D}ca.pem"}
  - {name: b, kind: openai, ca_file: "${D}ca.pem", tls_verify: false}
  - {name: c, kind: openai, ca_file: "${D}leaf.key"}
  - {name: d, kind: openai, ca_file: "${D}missing.pem"}
  - {name: e, kind: openai-compatible, base_url: "http://127.0.0.1:9/v1", tls_verify: false}
"#;
        let problems = parse_env(bad).unwrap_err();
        for (path, want) in [
            ("providers[0].ca_file", "https://"),
            ("providers[1].tls_verify", "not both"),
            ("providers[2].ca_file", "no PEM certificate"),
            ("providers[3].ca_file", "cannot read"),
            ("providers[4].tls_verify", "https://"),
        ] {
            assert!(
                problems
                    .iter()
                    .any(|p| p.path == path && p.message.contains(want)),
                "want {path}: '{want}' in {problems:?}"
            );
        }
    }

    #[test]
    fn provider_http2_is_off_by_default_and_a_boolean() {
        let ok = r#"
providers:
  - {name: a, kind: openai}
  - {name: b, kind: anthropic, http2: true}
  - {name: c, kind: openai-compatible, base_url: "http://127.0.0.1:9/v1", http2: true}
"#;
        let l = parse_env(ok).unwrap();
        let on: Vec<bool> = l.file.providers.iter().map(|p| p.http2).collect();
        assert_eq!(on, [false, true, true]);

        let bad =
            "providers:\n  - {name: a, kind: openai}\n  - {name: b, kind: openai, http2: h2c}\n";
        let problems = parse_env(bad).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.path.contains("providers[1].http2")),
            "{problems:?}"
        );
    }
}
