//! The YAML file as written: a serde mirror with unknown fields denied. Nothing
//! here is used by requests directly; `runtime::snapshot` compiles it into a Snapshot.

use serde::Deserialize;
use std::collections::BTreeMap;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
/// Whole upstream answers held in memory at once, over all requests.
pub const DEFAULT_MAX_BUFFERED_BYTES: u64 = 256 * 1024 * 1024;
/// A request head must arrive within this (nginx's `client_header_timeout`).
pub const DEFAULT_CLIENT_HEADER_TIMEOUT_SECONDS: u64 = 20;
/// The longest wait between two reads of a request body (nginx's `client_body_timeout`).
pub const DEFAULT_CLIENT_BODY_TIMEOUT_SECONDS: u64 = 30;
/// The slowest a request body may arrive, in bytes per second (Apache
/// mod_reqtimeout's `MinRate`, same default); 0 turns the rule off.
pub const DEFAULT_CLIENT_BODY_MIN_RATE: u64 = 500;

#[derive(Debug, Clone, PartialEq)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_yaml::Value::deserialize(d)? {
            serde_yaml::Value::String(s) => Ok(OneOrMany::One(s)),
            serde_yaml::Value::Sequence(items) => items
                .into_iter()
                .map(|v| match v {
                    serde_yaml::Value::String(s) => Ok(s),
                    _ => Err(D::Error::custom("expected a list of strings")),
                })
                .collect::<Result<_, _>>()
                .map(OneOrMany::Many),
            _ => Err(D::Error::custom("expected a string or a list of strings")),
        }
    }
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// Top-level scalars; the list sections are parsed item by item (see `parse.rs`)
/// so that one bad item does not hide the problems of the others.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub listen: Option<OneOrMany>,
    pub admin_listen: Option<String>,
    pub threads: Option<usize>,
    pub max_body_bytes: Option<u64>,
    /// Bytes of whole upstream answers (non-streamed, error bodies) held at
    /// once by all requests; past it a request gets 503.
    pub max_buffered_bytes: Option<u64>,
    pub client_header_timeout_seconds: Option<u64>,
    pub client_body_timeout_seconds: Option<u64>,
    /// Bytes per second (`proxy::body_rate`).
    pub client_body_min_rate: Option<u64>,
    pub pid_file: Option<String>,
    pub upgrade_sock: Option<String>,
    pub grace_period_seconds: Option<u64>,
    pub graceful_shutdown_timeout_seconds: Option<u64>,
    pub retry: Option<RetryConf>,
    pub cooldown: Option<CooldownConf>,
    pub circuit_breaker: Option<BreakerConf>,
    /// An SSE comment goes to a client stream quiet for this long (0 = never).
    pub stream_keepalive_seconds: Option<u64>,
    /// Length of the rpm/tpm sliding window (default 60; shorter for tests).
    /// Read at start; a reload does not change it.
    pub rate_limit_window_seconds: Option<u64>,
    pub cors: Option<crate::cors::CorsConf>,
    /// `text` (default) or `json`: one JSON object per access-log line.
    pub log_format: Option<LogFormat>,
    /// TLS on every `listen` address (`admin_listen` stays plain HTTP).
    pub tls: Option<TlsConf>,
    /// `/{prefix}{provider}/...` forwards to that provider's API (off by default).
    pub provider_passthrough: Option<PassthroughConf>,
    /// Where limit counters live, and gateway-wide limits.
    pub limits: Option<LimitsConf>,
    /// Prices (USD per million tokens) by model name or glob, over the
    /// built-in table.
    pub model_prices: Option<PriceTable>,
    /// Reload when the config file changes, as on SIGHUP (see `watch.rs`).
    pub watch_config: Option<bool>,
    /// Serve a non-loopback `listen` address without gateway keys (refused
    /// otherwise: anyone reaching the port would spend the provider keys).
    pub allow_unauthenticated: Option<bool>,
    /// Peers (IPs or CIDRs) whose `X-Forwarded-For` / `Forwarded` names the
    /// client in the access line; from anyone else the socket's address is logged.
    pub trusted_proxies: Option<Vec<String>>,
    /// The admin API (`super::admin`).
    pub admin: Option<super::admin::AdminConf>,
}

/// Listener TLS: PEM files, re-read on every SIGHUP.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConf {
    /// Leaf certificate first, then intermediates.
    pub cert_file: String,
    pub key_file: String,
    /// Offer HTTP/2 by ALPN (default), else HTTP/1.1 only.
    #[serde(default = "yes")]
    pub http2: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PriceConf {
    pub input: f64,
    pub output: f64,
    /// Default: `input`.
    pub cached_input: Option<f64>,
    /// Default: `input`.
    pub cache_write: Option<f64>,
}

/// `model_prices` in file order (globs are tried in that order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable(pub Vec<(String, PriceConf)>);

impl<'de> Deserialize<'de> for PriceTable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = PriceTable;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a mapping of model names (or globs) to prices")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<PriceTable, A::Error> {
                let mut out = vec![];
                while let Some(e) = m.next_entry::<String, PriceConf>()? {
                    out.push(e);
                }
                Ok(PriceTable(out))
            }
        }
        d.deserialize_map(Entries)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConf {
    #[serde(default)]
    pub backend: LimitBackend,
    /// `redis://host:port/db` for `backend: redis`.
    pub url: Option<String>,
    /// Redis keys are `<key_prefix>{<name>}:<kind>` (default `aigate:`).
    pub key_prefix: Option<String>,
    /// Longest wait for one Redis round trip (default 50 ms).
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub on_error: OnError,
    /// AI requests in flight at once, whole gateway.
    pub max_concurrent: Option<u64>,
    /// AI requests per minute (sliding window), whole gateway.
    pub rpm: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LimitBackend {
    #[default]
    Memory,
    Redis,
}

/// What the limits do when a shared store fails: count locally (`open`) or
/// refuse limited requests (`closed`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    #[default]
    Open,
    Closed,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConf {
    pub max_attempts: Option<u32>,
    pub base_delay_ms: Option<u64>,
    pub max_delay_ms: Option<u64>,
    pub multiplier: Option<f64>,
    pub on_status: Option<Vec<u16>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CooldownConf {
    pub rate_limited_seconds: Option<u64>,
    pub auth_failed_seconds: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConf {
    pub failure_threshold: Option<u32>,
    pub open_seconds: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    #[default]
    Ordered,
    RoundRobin,
    Weighted,
    LeastInflight,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialStrategy {
    #[default]
    RoundRobin,
    FillFirst,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConf {
    pub id: String,
    pub key: Option<String>,
    pub sha256: Option<String>,
    pub models: Option<Vec<String>>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    /// Requests of this key in flight at once.
    pub max_concurrent: Option<u64>,
    /// Spend limits in USD per UTC calendar day / month.
    pub budget_usd_daily: Option<f64>,
    pub budget_usd_monthly: Option<f64>,
    /// An empty `key` (its variable unset) drops this entry with a warning
    /// instead of being an error (the embedded default's `AIGATE_KEY`).
    #[serde(default)]
    pub optional: bool,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    Openai,
    Anthropic,
    Gemini,
    OpenaiCompatible,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::OpenaiCompatible => "openai-compatible",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OpenAiApi {
    #[default]
    Chat,
    Responses,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialConf {
    pub key: String,
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConf {
    pub connect_ms: Option<u64>,
    pub first_byte_ms: Option<u64>,
    pub idle_ms: Option<u64>,
    pub total_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConf {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: Option<String>,
    pub api: Option<OpenAiApi>,
    #[serde(default)]
    pub credentials: Vec<CredentialConf>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub timeouts: TimeoutsConf,
    /// Overrides of the global `retry` for this provider.
    pub retry: Option<RetryConf>,
    #[serde(default)]
    pub credential_strategy: CredentialStrategy,
    /// Active health checks (off unless given).
    pub health_check: Option<HealthCheckConf>,
    /// PEM file of the CA certificate(s) an https upstream is verified
    /// against instead of the system's roots.
    pub ca_file: Option<String>,
    /// `false` turns upstream certificate verification off (warned).
    pub tls_verify: Option<bool>,
    /// Offer HTTP/2 to the upstream: by ALPN over https (h2, else HTTP/1.1),
    /// h2c with prior knowledge over http. Off: HTTP/1.1 only.
    #[serde(default)]
    pub http2: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConf {
    #[serde(default = "ten")]
    pub interval_seconds: u64,
    #[serde(default = "one_thousand")]
    pub timeout_ms: u64,
}

fn ten() -> u64 {
    10
}

fn one_thousand() -> u64 {
    1000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConf {
    pub provider: String,
    pub model: Option<String>,
    /// For `strategy: weighted`.
    #[serde(default = "one")]
    pub weight: u32,
    /// Applied after the model entry's own `payload`.
    pub payload: Option<PayloadConf>,
    /// Requests per minute / hour / day and tokens per minute this target
    /// may take (a provider's published quota); at its limit it is skipped.
    pub rpm: Option<u64>,
    pub rph: Option<u64>,
    pub rpd: Option<u64>,
    pub tpm: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConf {
    pub name: String,
    pub targets: Vec<TargetConf>,
    #[serde(default)]
    pub strategy: Strategy,
    /// Edits of the upstream body, for every target of this entry.
    pub payload: Option<PayloadConf>,
}

/// Edits of the upstream JSON body, after conversion. Paths are dotted
/// (`generationConfig.temperature`); a numeric segment indexes an array.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadConf {
    /// Set when absent.
    #[serde(default)]
    pub defaults: BTreeMap<String, serde_json::Value>,
    /// Always set.
    #[serde(default)]
    pub overrides: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// `provider_passthrough:` — `/{prefix}{provider}/rest` goes to the provider's
/// `base_url` + `rest`, with its credential.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassthroughConf {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Starts and ends with '/'; default "/".
    pub prefix: Option<String>,
    /// Gateway key ids allowed (default: every key).
    pub keys: Option<Vec<String>>,
}

/// One entry of `routes:`: a passthrough route or a static answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConf {
    /// An exact path, or a prefix ending in `/*`.
    pub path: String,
    /// Allowed methods (default: any).
    pub methods: Option<Vec<String>>,
    /// Upstream URL (or a list, tried in turn on retries); the part of the
    /// path after a prefix is appended, the query is kept.
    pub target: Option<OneOrMany>,
    /// Inject this provider's credential and headers; its `base_url` when no `target`.
    pub provider: Option<String>,
    /// Require a gateway key (default true).
    pub auth: Option<bool>,
    /// Gateway key ids allowed (default: every key).
    pub keys: Option<Vec<String>>,
    pub forward_request_headers: Option<Vec<String>>,
    pub forward_response_headers: Option<Vec<String>>,
    /// Extra upstream headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub connect_timeout_ms: Option<u64>,
    /// Longest wait for the upstream's answer or its next chunk (and for a write).
    pub timeout_ms: Option<u64>,
    pub retry: Option<RouteRetryConf>,
    #[serde(rename = "static")]
    pub static_answer: Option<StaticConf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRetryConf {
    pub max_attempts: Option<u32>,
    /// Also retry POST/PATCH after the request was sent (body ≤ 64 KiB only).
    #[serde(default)]
    pub non_idempotent: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConf {
    #[serde(default = "two_hundred")]
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Any JSON value, sent as `application/json`; none: an empty body.
    pub body: Option<serde_json::Value>,
}

fn two_hundred() -> u16 {
    200
}

/// The whole file after parsing.
#[derive(Debug, Clone, Default)]
pub struct ConfigFile {
    pub settings: Settings,
    pub keys: Vec<KeyConf>,
    pub providers: Vec<ProviderConf>,
    pub models: Vec<ModelConf>,
    pub routes: Vec<RouteConf>,
}
