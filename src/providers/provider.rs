//! A provider as requests use it: its endpoint, credentials, headers,
//! timeouts, policies and the live state of its addresses, compiled from its
//! `providers:` entry.

use super::balance::{Balancer, CheckSpec};
use super::credentials::Credentials;
use super::{Endpoint, chat_format, default_base_url};
use crate::config::file::{CredentialStrategy, OpenAiApi, ProviderConf, ProviderKind};
use crate::resilience::{Breaker, CredentialRest, Health, RetryPolicy, retry_policy};
use crate::translate::Format;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
    pub total: Duration,
}

/// Defaults for upstream timeouts; reasoning models can think for minutes
/// before their first byte, so first-byte and idle are generous.
impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(300),
            idle: Duration::from_secs(300),
            total: Duration::from_secs(1800),
        }
    }
}

pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    pub api: OpenAiApi,
    pub format: Format,
    pub endpoint: Endpoint,
    /// Empty when the provider needs none (local servers).
    pub credentials: Credentials,
    /// True when credentials were configured but every key was empty.
    pub disabled: bool,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub timeouts: Timeouts,
    /// Its host's addresses, their health and the picker (resolved at load,
    /// then again off the request path by `server::Upstreams`).
    pub balancer: Balancer,
    pub retry: RetryPolicy,
    pub fill_first: bool,
    pub rest: CredentialRest,
    pub breaker: Breaker,
    /// Requests in flight to this provider (for `least-inflight`).
    pub inflight: AtomicU64,
    /// Active health checks (`health_check`), when configured.
    pub health_check: Option<CheckSpec>,
    /// Up while an address passed its last active health check (always
    /// when checks are off); set after each check (`server::Upstreams`).
    pub health: Health,
    /// `ca_file`: the roots this https upstream must chain to (else the system's).
    pub upstream_ca: Option<crate::tls::UpstreamCa>,
    /// False only with `tls_verify: false`.
    pub tls_verify: bool,
    /// `http2: true`: HTTP/2 offered by ALPN (h2c over plain http).
    pub http2: bool,
}

impl Provider {
    /// Compile a validated `providers:` entry. Resolves its host (blocking).
    pub fn compile(p: &ProviderConf, retry: &RetryPolicy) -> Result<Provider, String> {
        let url = match (&p.base_url, default_base_url(p.kind)) {
            (Some(u), _) => u.clone(),
            (None, Some(d)) => d.to_string(),
            (None, None) => return Err(format!("provider '{}' needs a base_url", p.name)),
        };
        let endpoint = Endpoint::parse(&url)?;
        let creds: Vec<(String, u32)> = p
            .credentials
            .iter()
            .map(|c| (c.key.clone(), c.weight))
            .collect();
        let credentials = Credentials::new(&creds);
        let credentials_len = credentials.len();
        let disabled = !p.credentials.is_empty() && credentials.is_empty();
        let headers = p
            .headers
            .iter()
            .map(|(k, v)| {
                Ok((
                    http::HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?,
                    http::HeaderValue::from_str(v).map_err(|e| format!("header {k}: {e}"))?,
                ))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let d = Timeouts::default();
        let t = &p.timeouts;
        let timeouts = Timeouts {
            connect: t.connect_ms.map_or(d.connect, Duration::from_millis),
            first_byte: t.first_byte_ms.map_or(d.first_byte, Duration::from_millis),
            idle: t.idle_ms.map_or(d.idle, Duration::from_millis),
            total: t.total_ms.map_or(d.total, Duration::from_millis),
        };
        let api = p.api.unwrap_or_default();
        let upstream_ca = p
            .ca_file
            .as_deref()
            .map(crate::tls::load_ca_file)
            .transpose()
            .map_err(|e| format!("provider '{}': {e}", p.name))?;
        let addrs = if disabled {
            vec![]
        } else {
            super::balance::resolve(&endpoint.host, endpoint.port)
        };
        let health_check = p.health_check.as_ref().map(|h| CheckSpec {
            interval: Duration::from_secs(h.interval_seconds),
            timeout: Duration::from_millis(h.timeout_ms),
        });
        let tls_verify = p.tls_verify.unwrap_or(true);
        let trust = super::peer::Trust {
            verify: tls_verify,
            ca: upstream_ca.as_ref(),
            http2: p.http2,
        };
        let balancer = Balancer::new(&endpoint, addrs, trust, health_check);
        Ok(Provider {
            name: p.name.clone(),
            kind: p.kind,
            api,
            format: chat_format(p.kind, api),
            endpoint,
            credentials,
            disabled,
            headers,
            timeouts,
            balancer,
            retry: retry_policy(retry, p.retry.as_ref()),
            fill_first: p.credential_strategy == CredentialStrategy::FillFirst,
            rest: CredentialRest::new(credentials_len),
            breaker: Breaker::default(),
            inflight: AtomicU64::new(0),
            health_check,
            health: Health::default(),
            upstream_ca,
            tls_verify,
            http2: p.http2,
        })
    }

    /// How its upstream is trusted (`ca_file`, `tls_verify`) and spoken to
    /// (`http2`), on every path that dials it (`peer`).
    pub fn trust(&self) -> super::peer::Trust<'_> {
        super::peer::Trust {
            verify: self.tls_verify,
            ca: self.upstream_ca.as_ref(),
            http2: self.http2,
        }
    }

    /// Can take a request now: enabled, resolved, circuit not open, and a
    /// credential not resting (when it needs credentials).
    pub fn usable(&self) -> bool {
        let now = crate::resilience::now_ms();
        !self.disabled
            && self.health.up()
            && self.balancer.is_resolved()
            && !self.breaker.is_open(now)
            && !self.rest.all_resting(now)
    }
}
