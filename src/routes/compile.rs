//! `routes:` and `provider_passthrough:` from the file: `--test` checks with
//! YAML paths (`validate`), and the compiled table (`RouteTable::compile`).

use super::headers::{NameList, is_credential};
use super::*;
use crate::config::file::{ConfigFile, ProviderKind, RouteConf};
use crate::config::problem::Problem;
use crate::providers::Provider;
use crate::providers::balance::resolve;
use crate::providers::peer::Trust;

/// Upstream timeouts of a route that sets none and names no provider.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const TIMEOUT: Duration = Duration::from_secs(300);
/// Pingora's `ServerConf::max_retries` default: it stops retrying there.
const MAX_ATTEMPTS: u32 = 16;

/// Paths that must stay the unauthenticated operational endpoints.
const RESERVED: [&str; 4] = ["/health", "/health/live", "/health/ready", "/metrics"];
/// First path segments of the built-in endpoints: a provider of that name
/// under passthrough prefix "/" would take every other path below them.
const BUILTIN_SEGMENTS: [&str; 8] = [
    "v1",
    "v1beta",
    "health",
    "metrics",
    "chat",
    "responses",
    "embeddings",
    "models",
];

fn problem(path: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        path: path.into(),
        message: message.into(),
    }
}

pub fn passthrough_prefix(f: &ConfigFile) -> Option<&str> {
    let p = f.settings.provider_passthrough.as_ref()?;
    p.enabled.then(|| p.prefix.as_deref().unwrap_or("/"))
}

fn methods(r: &RouteConf) -> Option<Vec<Method>> {
    r.methods.as_ref().map(|ms| {
        ms.iter()
            .filter_map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
            .collect()
    })
}

fn check_header_names(names: &[String], at: &str, problems: &mut Vec<Problem>) {
    for (i, n) in names.iter().enumerate() {
        let base = n.strip_suffix('*').unwrap_or(n);
        if base.is_empty() || HeaderName::from_bytes(base.as_bytes()).is_err() {
            problems.push(problem(
                format!("{at}[{i}]"),
                format!("'{n}' is not a header name (a trailing * makes it a prefix)"),
            ));
        }
    }
}

fn check_headers(
    h: &std::collections::BTreeMap<String, String>,
    at: &str,
    problems: &mut Vec<Problem>,
) {
    for (k, v) in h {
        if HeaderName::from_bytes(k.as_bytes()).is_err() {
            problems.push(problem(format!("{at}.{k}"), "not a valid header name"));
        } else if HeaderValue::from_str(v).is_err() {
            problems.push(problem(format!("{at}.{k}"), "not a valid header value"));
        }
    }
}

/// `--test` checks of `routes:` and `provider_passthrough:`.
pub fn validate(f: &ConfigFile, problems: &mut Vec<Problem>) {
    let key_known = |id: &str| f.keys.iter().any(|k| k.id == id);
    let pass_prefix = passthrough_prefix(f);
    if let Some(pt) = &f.settings.provider_passthrough {
        let prefix = pt.prefix.as_deref().unwrap_or("/");
        if !prefix.starts_with('/') || !prefix.ends_with('/') || prefix.contains(['*', '?', '#']) {
            problems.push(problem(
                "provider_passthrough.prefix",
                "must start and end with '/' (\"/\", \"/providers/\")",
            ));
        } else if pt.enabled && prefix == "/" {
            for (i, p) in f.providers.iter().enumerate() {
                if BUILTIN_SEGMENTS.contains(&p.name.as_str()) {
                    problems.push(problem(
                        format!("providers[{i}].name"),
                        format!(
                            "with provider_passthrough.prefix \"/\", provider '{}' would take the paths of built-in endpoints; rename it or set another prefix",
                            p.name
                        ),
                    ));
                }
            }
        }
        for (i, k) in pt.keys.iter().flatten().enumerate() {
            if !key_known(k) {
                problems.push(problem(
                    format!("provider_passthrough.keys[{i}]"),
                    format!("no gateway key with id '{k}'"),
                ));
            }
        }
    }

    // (path, methods) of the routes seen so far, for overlaps.
    let mut seen: Vec<(usize, &str, Option<Vec<Method>>)> = vec![];
    for (i, r) in f.routes.iter().enumerate() {
        let at = format!("routes[{i}]");
        let path = r.path.as_str();
        let body = path.strip_suffix("/*").unwrap_or(path);
        if !path.starts_with('/') || body.contains(['*', '?', '#']) {
            problems.push(problem(
                format!("{at}.path"),
                "must start with '/' and may end in '/*' (a prefix); no other '*', '?' or '#'",
            ));
        } else if RESERVED.contains(&path) {
            problems.push(problem(
                format!("{at}.path"),
                format!("'{path}' is a built-in endpoint that stays unauthenticated"),
            ));
        } else if super::has_dot_segment(path) {
            problems.push(problem(format!("{at}.path"), "no '.' or '..' segments"));
        }
        for (j, m) in r.methods.iter().flatten().enumerate() {
            if m.is_empty() || Method::from_bytes(m.to_ascii_uppercase().as_bytes()).is_err() {
                problems.push(problem(
                    format!("{at}.methods[{j}]"),
                    format!("'{m}' is not an HTTP method"),
                ));
            }
        }
        if r.methods.as_ref().is_some_and(Vec::is_empty) {
            problems.push(problem(
                format!("{at}.methods"),
                "list at least one method (omit it for any)",
            ));
        }
        let ms = methods(r);
        for (j, other, oms) in &seen {
            let overlap = match (&ms, oms) {
                (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
                _ => true,
            };
            if *other == path && overlap {
                problems.push(problem(
                    format!("{at}.path"),
                    format!("'{path}' is already routed by routes[{j}] for the same methods"),
                ));
            }
        }
        seen.push((i, path, ms));
        if let (Some(pp), Some(p)) = (pass_prefix, path.strip_suffix("/*"))
            && let Some(name) = p.strip_prefix(pp)
            && f.providers.iter().any(|x| x.name == name)
        {
            problems.push(problem(
                format!("{at}.path"),
                format!("'{path}' is the passthrough prefix of provider '{name}'"),
            ));
        }

        let auth = r.auth.unwrap_or(true);
        if let Some(keys) = &r.keys {
            if !auth {
                problems.push(problem(
                    format!("{at}.keys"),
                    "a route with `auth: false` cannot restrict keys",
                ));
            }
            for (j, k) in keys.iter().enumerate() {
                if !key_known(k) {
                    problems.push(problem(
                        format!("{at}.keys[{j}]"),
                        format!("no gateway key with id '{k}'"),
                    ));
                }
            }
        }

        if let Some(st) = &r.static_answer {
            let extra = [
                ("target", r.target.is_some()),
                ("provider", r.provider.is_some()),
                (
                    "forward_request_headers",
                    r.forward_request_headers.is_some(),
                ),
                (
                    "forward_response_headers",
                    r.forward_response_headers.is_some(),
                ),
                ("headers", !r.headers.is_empty()),
                ("connect_timeout_ms", r.connect_timeout_ms.is_some()),
                ("timeout_ms", r.timeout_ms.is_some()),
                ("retry", r.retry.is_some()),
            ];
            for (k, set) in extra {
                if set {
                    problems.push(problem(
                        format!("{at}.{k}"),
                        "a static route answers itself: no upstream settings (answer headers go in static.headers)",
                    ));
                }
            }
            if !(200..=599).contains(&st.status) {
                problems.push(problem(format!("{at}.static.status"), "must be 200-599"));
            }
            check_headers(&st.headers, &format!("{at}.static.headers"), problems);
            continue;
        }

        let provider = r.provider.as_deref();
        if let Some(p) = provider
            && !f.providers.iter().any(|x| x.name == p)
        {
            problems.push(problem(
                format!("{at}.provider"),
                format!("no provider named '{p}'"),
            ));
        }
        match (&r.target, provider) {
            (None, None) => problems.push(problem(
                at.to_string(),
                "needs `target` (a URL), `provider`, or `static`",
            )),
            (Some(t), _) => {
                let list = t.to_vec();
                if list.is_empty() {
                    problems.push(problem(format!("{at}.target"), "list at least one URL"));
                }
                for (j, u) in list.iter().enumerate() {
                    if let Err(e) = Endpoint::parse(u) {
                        let p = match t {
                            crate::config::file::OneOrMany::One(_) => format!("{at}.target"),
                            crate::config::file::OneOrMany::Many(_) => format!("{at}.target[{j}]"),
                        };
                        problems.push(problem(p, e));
                    }
                }
            }
            (None, Some(_)) => {}
        }
        for (name, list) in [
            ("forward_request_headers", &r.forward_request_headers),
            ("forward_response_headers", &r.forward_response_headers),
        ] {
            if let Some(l) = list {
                check_header_names(l, &format!("{at}.{name}"), problems);
            }
        }
        if (auth || provider.is_some())
            && let Some(l) = &r.forward_request_headers
        {
            for (j, n) in l.iter().enumerate() {
                if is_credential(&n.to_ascii_lowercase()) {
                    problems.push(problem(
                        format!("{at}.forward_request_headers[{j}]"),
                        "a client credential is never forwarded on a route that checks gateway keys or injects a provider credential",
                    ));
                }
            }
        }
        check_headers(&r.headers, &format!("{at}.headers"), problems);
        for (name, v) in [
            ("connect_timeout_ms", r.connect_timeout_ms),
            ("timeout_ms", r.timeout_ms),
        ] {
            if v == Some(0) {
                problems.push(problem(format!("{at}.{name}"), "must be at least 1"));
            }
        }
        if let Some(n) = r.retry.as_ref().and_then(|x| x.max_attempts)
            && !(1..=MAX_ATTEMPTS).contains(&n)
        {
            problems.push(problem(
                format!("{at}.retry.max_attempts"),
                format!("must be 1-{MAX_ATTEMPTS} (Pingora's retry limit per request)"),
            ));
        }
    }
}

fn header_pairs(
    h: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    h.iter()
        .map(|(k, v)| {
            Ok((
                HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("header {k}: {e}"))?,
                HeaderValue::from_str(v).map_err(|e| format!("header {k}: {e}"))?,
            ))
        })
        .collect()
}

/// The error format of a route: its provider's, else by path (Gemini's under /v1beta/).
fn error_format(kind: Option<ProviderKind>, path: &str) -> Format {
    match kind {
        Some(ProviderKind::Anthropic) => Format::Anthropic,
        Some(ProviderKind::Gemini) => Format::Gemini,
        Some(_) => Format::OpenAiChat,
        None if path.starts_with("/v1beta/") => Format::Gemini,
        None => Format::OpenAiChat,
    }
}

impl RouteTable {
    /// Compile validated config. Resolves target hosts (blocking, like providers).
    pub fn compile(
        f: &ConfigFile,
        provider_index: &HashMap<String, usize>,
        providers: &[Provider],
    ) -> Result<RouteTable, String> {
        let mut t = RouteTable::default();
        for r in &f.routes {
            let auth = r.auth.unwrap_or(true);
            if let Some(st) = &r.static_answer {
                let mut headers = header_pairs(&st.headers)?;
                let body = match &st.body {
                    Some(v) => {
                        if !headers.iter().any(|(k, _)| k == http::header::CONTENT_TYPE) {
                            headers.push((
                                http::header::CONTENT_TYPE,
                                HeaderValue::from_static("application/json"),
                            ));
                        }
                        Bytes::from(serde_json::to_vec(v).map_err(|e| e.to_string())?)
                    }
                    None => Bytes::new(),
                };
                t.add(
                    CompiledRoute {
                        path: r.path.clone(),
                        kind: Kind::Static,
                        methods: methods(r),
                        auth,
                        keys: r.keys.clone(),
                        error_format: error_format(None, &r.path),
                        action: Action::Static(StaticAnswer {
                            status: st.status,
                            headers,
                            body,
                        }),
                    },
                    false,
                );
                continue;
            }
            let provider = match &r.provider {
                Some(name) => Some(
                    *provider_index
                        .get(name)
                        .ok_or_else(|| format!("route {}: no provider '{name}'", r.path))?,
                ),
                None => None,
            };
            let p = provider.map(|i| &providers[i]);
            let targets = r
                .target
                .as_ref()
                .map(|t| t.to_vec())
                .unwrap_or_default()
                .iter()
                .map(|u| {
                    let endpoint = Endpoint::parse(u)?;
                    let addrs = resolve(&endpoint.host, endpoint.port);
                    // No health check: a route target is dialled as configured.
                    let balancer = Balancer::new(&endpoint, addrs, Trust::SYSTEM, None);
                    Ok(Upstream { endpoint, balancer })
                })
                .collect::<Result<Vec<_>, String>>()?;
            let ms = |v: Option<u64>| v.map(Duration::from_millis);
            let join = if targets.is_empty() {
                Join::Provider
            } else {
                Join::Append
            };
            let proxy = ProxyRoute {
                join,
                provider,
                forward_request: r.forward_request_headers.as_deref().map(NameList::new),
                forward_response: r.forward_response_headers.as_deref().map(NameList::new),
                strip_credentials: auth || provider.is_some(),
                headers: header_pairs(&r.headers)?,
                connect_timeout: ms(r.connect_timeout_ms)
                    .or(p.map(|p| p.timeouts.connect))
                    .unwrap_or(CONNECT_TIMEOUT),
                timeout: ms(r.timeout_ms)
                    .or(p.map(|p| p.timeouts.first_byte.max(p.timeouts.idle)))
                    .unwrap_or(TIMEOUT),
                max_attempts: r.retry.as_ref().and_then(|x| x.max_attempts).unwrap_or(1),
                non_idempotent: r.retry.as_ref().is_some_and(|x| x.non_idempotent),
                targets,
            };
            t.add(
                CompiledRoute {
                    path: r.path.clone(),
                    kind: Kind::Route,
                    methods: methods(r),
                    auth,
                    keys: r.keys.clone(),
                    error_format: error_format(p.map(|p| p.kind), &r.path),
                    action: Action::Proxy(proxy),
                },
                join == Join::Provider,
            );
        }
        if let Some(prefix) = passthrough_prefix(f) {
            let keys = f
                .settings
                .provider_passthrough
                .as_ref()
                .and_then(|p| p.keys.clone());
            for (i, p) in providers.iter().enumerate() {
                t.add(
                    CompiledRoute {
                        path: format!("{prefix}{}/*", p.name),
                        kind: Kind::Passthrough,
                        methods: None,
                        auth: true,
                        keys: keys.clone(),
                        error_format: error_format(Some(p.kind), ""),
                        action: Action::Proxy(ProxyRoute {
                            targets: vec![],
                            provider: Some(i),
                            join: Join::Provider,
                            forward_request: None,
                            forward_response: None,
                            strip_credentials: true,
                            headers: vec![],
                            connect_timeout: p.timeouts.connect,
                            timeout: p.timeouts.first_byte.max(p.timeouts.idle),
                            max_attempts: 1,
                            non_idempotent: false,
                        }),
                    },
                    false,
                );
            }
        }
        Ok(t)
    }
}
