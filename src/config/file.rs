//! The YAML file as written: a serde mirror with unknown fields denied. Nothing
//! here is used by requests directly; `runtime.rs` compiles it into a Snapshot.

use serde::Deserialize;
use std::collections::BTreeMap;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;

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

/// Top-level scalars; the list sections are parsed item by item (see `load.rs`)
/// so that one bad item does not hide the problems of the others.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub listen: Option<OneOrMany>,
    pub admin_listen: Option<String>,
    pub threads: Option<usize>,
    pub max_body_bytes: Option<u64>,
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
    /// Reload when the config file changes, as on SIGHUP (see `watch.rs`).
    pub watch_config: Option<bool>,
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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConf {
    pub name: String,
    pub targets: Vec<TargetConf>,
    #[serde(default)]
    pub strategy: Strategy,
}

/// The whole file after parsing.
#[derive(Debug, Clone, Default)]
pub struct ConfigFile {
    pub settings: Settings,
    pub keys: Vec<KeyConf>,
    pub providers: Vec<ProviderConf>,
    pub models: Vec<ModelConf>,
}
