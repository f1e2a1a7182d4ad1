//! Configured routes (`routes:`) and provider-prefixed passthrough
//! (`provider_passthrough:`), compiled into one table, matched without
//! touching the body.
//!
//! Matching order (README "Routes"): an exact configured route, then the
//! built-in endpoints (SPEC), then configured prefix routes and passthrough
//! prefixes together, longest prefix first. A path that matches but not with
//! this method is a 405 — a shorter prefix is not tried.
//!
//! Proxied routes go through Pingora's own proxy phases (`proxy::pass`): the
//! body streams both ways, unbuffered and unbounded.

mod compile;
pub mod headers;

pub use compile::validate;

use crate::providers::Endpoint;
use crate::providers::balance::Balancer;
use crate::translate::Format;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use std::collections::HashMap;
use std::time::Duration;

/// What a matched route is, for the `ingress` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Route,
    Static,
    Passthrough,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Route => "route",
            Kind::Static => "static",
            Kind::Passthrough => "passthrough",
        }
    }
}

pub struct CompiledRoute {
    /// As configured (`/v1/audio/*`), or `/{prefix}{provider}/*`.
    pub path: String,
    pub kind: Kind,
    /// None: any method.
    pub methods: Option<Vec<Method>>,
    pub auth: bool,
    /// Gateway key ids allowed; None: every key.
    pub keys: Option<Vec<String>>,
    /// The format of the errors aigate writes for this route.
    pub error_format: Format,
    pub action: Action,
}

pub enum Action {
    Static(StaticAnswer),
    Proxy(ProxyRoute),
}

pub struct StaticAnswer {
    pub status: u16,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

/// How the upstream path is built from the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    /// `target` path + the part of the request path after the route's prefix.
    Append,
    /// Provider `base_url` path + the request path (the whole path for a
    /// configured route, the part after `/{prefix}{name}` for passthrough),
    /// the base's last segment not repeated: `/v1` + `/v1/embeddings` is
    /// `/v1/embeddings`, `/openai/v1` + `/embeddings` is `/openai/v1/embeddings`.
    Provider,
}

pub struct ProxyRoute {
    /// Upstreams tried in turn on retries; empty: the provider's `base_url`.
    pub targets: Vec<Upstream>,
    pub provider: Option<usize>,
    pub join: Join,
    /// Allow-lists (None: the defaults of `headers`).
    pub forward_request: Option<headers::NameList>,
    pub forward_response: Option<headers::NameList>,
    /// The client's credential headers and `?key=` are dropped: they carry
    /// a gateway key, or a provider credential replaces them.
    pub strip_credentials: bool,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub connect_timeout: Duration,
    /// Longest wait for an upstream read (answer header, next chunk) or write.
    pub timeout: Duration,
    pub max_attempts: u32,
    pub non_idempotent: bool,
}

/// A route target: parsed URL and its addresses, resolved off the request
/// path (at load, then by `server::Upstreams`).
pub struct Upstream {
    pub endpoint: Endpoint,
    pub balancer: Balancer,
}

/// A match: which route, and the path part that goes upstream (see `Join`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Hit {
        route: usize,
        rest: String,
    },
    /// The path has a route, not for this method; `allow` lists the methods.
    WrongMethod {
        allow: String,
    },
}

#[derive(Default)]
pub struct RouteTable {
    pub routes: Vec<CompiledRoute>,
    exact: HashMap<String, Vec<usize>>,
    /// (prefix without the trailing `/*`, routes), longest prefix first.
    prefixes: Vec<(String, Vec<usize>)>,
    /// Routes that name a provider but no target get the whole request path.
    whole_path: Vec<bool>,
}

impl RouteTable {
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Add a route under `path` (exact, or a prefix ending in `/*`).
    fn add(&mut self, r: CompiledRoute, whole_path: bool) {
        let i = self.routes.len();
        match r.path.strip_suffix("/*") {
            Some(p) => match self.prefixes.iter_mut().find(|(q, _)| q == p) {
                Some((_, v)) => v.push(i),
                None => self.prefixes.push((p.to_string(), vec![i])),
            },
            None => self.exact.entry(r.path.clone()).or_default().push(i),
        }
        self.routes.push(r);
        self.whole_path.push(whole_path);
        self.prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
    }

    fn pick(&self, list: &[usize], method: &str) -> Lookup {
        for &i in list {
            if self.routes[i]
                .methods
                .as_ref()
                .is_none_or(|m| m.iter().any(|m| m.as_str() == method))
            {
                return Lookup::Hit {
                    route: i,
                    rest: String::new(),
                };
            }
        }
        let mut allow: Vec<&str> = list
            .iter()
            .flat_map(|&i| self.routes[i].methods.iter().flatten().map(Method::as_str))
            .collect();
        allow.sort_unstable();
        allow.dedup();
        Lookup::WrongMethod {
            allow: allow.join(", "),
        }
    }

    /// The route for `method path`: exact routes only (`exact_only`, when a
    /// built-in endpoint has the path), else exact then prefixes, longest first.
    pub fn lookup(&self, method: &str, path: &str, exact_only: bool) -> Option<Lookup> {
        if let Some(list) = self.exact.get(path) {
            return Some(self.with_rest(self.pick(list, method), path, ""));
        }
        if exact_only {
            return None;
        }
        for (p, list) in &self.prefixes {
            let rest = match path.strip_prefix(p.as_str()) {
                Some(r) if r.is_empty() || r.starts_with('/') => r,
                _ => continue,
            };
            return Some(self.with_rest(self.pick(list, method), path, rest));
        }
        None
    }

    fn with_rest(&self, l: Lookup, path: &str, rest: &str) -> Lookup {
        match l {
            Lookup::Hit { route, .. } => Lookup::Hit {
                route,
                rest: if self.whole_path[route] { path } else { rest }.to_string(),
            },
            w => w,
        }
    }

    /// Every route target, for the upstream refresher (`server::Upstreams`).
    pub fn upstreams(&self) -> impl Iterator<Item = &Upstream> {
        self.routes.iter().flat_map(|r| match &r.action {
            Action::Proxy(p) => p.targets.as_slice(),
            Action::Static(_) => &[],
        })
    }
}

/// The upstream path and query: see `Join`. `query` is already cleaned.
pub fn upstream_path(join: Join, base: &str, rest: &str, query: Option<&str>) -> String {
    let mut out = String::with_capacity(base.len() + rest.len() + 1);
    out.push_str(base);
    let last = base.rsplit('/').next().unwrap_or("");
    let dup = join == Join::Provider
        && !last.is_empty()
        && rest
            .strip_prefix('/')
            .and_then(|r| r.strip_prefix(last))
            .is_some_and(|r| r.is_empty() || r.starts_with('/'));
    out.push_str(if dup { &rest[last.len() + 1..] } else { rest });
    if out.is_empty() {
        out.push('/');
    }
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A `.` or `..` segment (also percent-encoded): refused, so a route cannot
/// be used to reach other paths of its upstream with the injected credential.
pub fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|seg| {
        let s = seg.to_ascii_lowercase().replace("%2e", ".");
        s == "." || s == ".."
    })
}

#[cfg(test)]
mod tests;
