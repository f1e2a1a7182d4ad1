//! The compiled config every request reads: globs built, keys hashed, URLs
//! parsed, addresses resolved. Swapped whole on reload (`ArcSwap<Snapshot>`),
//! so a request sees one consistent config from start to end.

use crate::auth::GatewayKey;
use crate::config::Loaded;
use crate::config::file::*;
use crate::limits::TargetLimits;
use crate::providers::Provider;
use crate::resilience::{BreakerPolicy, CooldownPolicy, RetryPolicy, retry_policy};
use globset::{Glob, GlobMatcher};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Target {
    pub provider: usize,
    /// None: send the name the client asked for.
    pub model: Option<String>,
    /// Body edits for this target (the entry's, then its own).
    pub payload: Option<std::sync::Arc<crate::payload::Payload>>,
    pub limits: Option<Arc<TargetLimits>>,
}

pub struct ModelEntry {
    pub name: String,
    pub is_glob: bool,
    pub targets: Vec<Target>,
    pub strategy: Strategy,
    pub weights: Vec<u32>,
    rr: AtomicUsize,
}

impl ModelEntry {
    /// Target indices in the order this request tries them.
    fn order(&self, providers: &[Provider]) -> Vec<usize> {
        let n = self.targets.len();
        let mut idx: Vec<usize> = (0..n).collect();
        match self.strategy {
            Strategy::Ordered => {}
            Strategy::RoundRobin => {
                idx.rotate_left(self.rr.fetch_add(1, Ordering::Relaxed) % n.max(1))
            }
            Strategy::Weighted => {
                // First pick by weight; the rest keep their order as fallbacks.
                let total: u64 = self.weights.iter().map(|&w| u64::from(w)).sum();
                let mut r = rand::random_range(0..total.max(1));
                let first = self
                    .weights
                    .iter()
                    .position(|&w| {
                        let hit = r < u64::from(w);
                        r = r.saturating_sub(u64::from(w));
                        hit
                    })
                    .unwrap_or(0);
                idx.remove(first);
                idx.insert(0, first);
            }
            Strategy::LeastInflight => {
                idx.sort_by_key(|&i| {
                    providers[self.targets[i].provider]
                        .inflight
                        .load(Ordering::Relaxed)
                });
            }
        }
        idx
    }
}

/// One resolved attempt: which provider, which upstream model name.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub provider: usize,
    pub model: String,
    pub payload: Option<std::sync::Arc<crate::payload::Payload>>,
    /// The target's own rate limits, checked before each attempt.
    pub limits: Option<Arc<TargetLimits>>,
}

/// Listener TLS as configured, with the certificate its files held at load.
pub struct ListenerTls {
    pub conf: TlsConf,
    pub cert: crate::tls::ServerCert,
}

pub struct Snapshot {
    pub listen: Vec<String>,
    pub tls: Option<ListenerTls>,
    pub admin_listen: Option<String>,
    pub threads: Option<usize>,
    pub max_body_bytes: u64,
    pub max_buffered_bytes: u64,
    pub client_header_timeout: Duration,
    pub client_body_timeout: Duration,
    /// Bytes per second; 0: no minimum.
    pub client_body_min_rate: u64,
    pub pid_file: Option<String>,
    pub upgrade_sock: Option<String>,
    pub grace_period_seconds: Option<u64>,
    pub graceful_shutdown_timeout_seconds: Option<u64>,
    pub keys: Vec<GatewayKey>,
    pub providers: Vec<Provider>,
    pub provider_index: HashMap<String, usize>,
    pub models: Vec<ModelEntry>,
    pub retry: RetryPolicy,
    pub cooldown: CooldownPolicy,
    pub breaker: BreakerPolicy,
    pub stream_keepalive: Option<Duration>,
    pub rate_limit_window: Duration,
    /// Where counters live (read at start, like `rate_limit_window`).
    pub limit_store: LimitsConf,
    pub prices: crate::pricing::PriceBook,
    pub cors: Option<crate::cors::CorsConf>,
    pub log_json: bool,
    /// Configured routes and provider passthrough (`crate::routes`).
    pub routes: crate::routes::RouteTable,
    pub watch_config: bool,
    /// Peers whose forwarding headers name the client (`client_addr`).
    pub trusted_proxies: Vec<crate::client_addr::Cidr>,
    /// `admin:` (token and users apply on reload; store and log size at start).
    pub admin: crate::config::admin::AdminConf,
    /// The file as loaded, secrets redacted.
    pub redacted: serde_json::Value,
    pub loaded_at: std::time::SystemTime,
    exact: HashMap<String, usize>,
    globs: Vec<(GlobMatcher, usize)>,
}

impl Snapshot {
    /// Compile a validated file. Resolves provider hosts (blocking).
    pub fn compile(loaded: &Loaded) -> Result<Snapshot, String> {
        let f = &loaded.file;
        let s = &f.settings;
        let keys = f
            .keys
            .iter()
            .map(GatewayKey::compile)
            .collect::<Result<Vec<_>, String>>()?;

        let retry = retry_policy(&RetryPolicy::default(), s.retry.as_ref());
        let mut cooldown = CooldownPolicy::default();
        if let Some(c) = &s.cooldown {
            cooldown.rate_limited = c
                .rate_limited_seconds
                .map_or(cooldown.rate_limited, Duration::from_secs);
            cooldown.auth_failed = c
                .auth_failed_seconds
                .map_or(cooldown.auth_failed, Duration::from_secs);
        }
        let mut breaker = BreakerPolicy::default();
        if let Some(b) = &s.circuit_breaker {
            breaker.failure_threshold = b.failure_threshold.unwrap_or(breaker.failure_threshold);
            breaker.open_for = b.open_seconds.map_or(breaker.open_for, Duration::from_secs);
        }
        let mut providers = vec![];
        let mut provider_index = HashMap::new();
        for p in &f.providers {
            provider_index.insert(p.name.clone(), providers.len());
            providers.push(Provider::compile(p, &retry)?);
        }

        let mut models = vec![];
        let mut exact = HashMap::new();
        let mut globs = vec![];
        for m in &f.models {
            let targets: Vec<Target> = m
                .targets
                .iter()
                .filter_map(|t| {
                    provider_index.get(&t.provider).map(|&i| Target {
                        provider: i,
                        model: t.model.clone(),
                        payload: crate::payload::Payload::compile(
                            m.payload.as_ref(),
                            t.payload.as_ref(),
                        )
                        .map(std::sync::Arc::new),
                        // Counted per provider and upstream model (or, for a
                        // target that passes the client's name, per entry).
                        limits: TargetLimits::new(
                            format!("{}/{}", t.provider, t.model.as_deref().unwrap_or(&m.name)),
                            [t.rpm, t.rph, t.rpd, t.tpm],
                        )
                        .map(Arc::new),
                    })
                })
                .collect();
            let is_glob = m.name.contains(['*', '?', '[', '{']);
            let idx = models.len();
            if is_glob {
                let g = Glob::new(&m.name)
                    .map_err(|e| e.to_string())?
                    .compile_matcher();
                globs.push((g, idx));
            } else {
                exact.entry(m.name.clone()).or_insert(idx);
            }
            let weights = m
                .targets
                .iter()
                .filter(|t| provider_index.contains_key(&t.provider))
                .map(|t| t.weight)
                .collect();
            models.push(ModelEntry {
                name: m.name.clone(),
                is_glob,
                targets,
                strategy: m.strategy,
                weights,
                rr: AtomicUsize::new(0),
            });
        }

        let routes = crate::routes::RouteTable::compile(f, &provider_index, &providers)?;
        Ok(Snapshot {
            listen: s
                .listen
                .as_ref()
                .map(|l| l.to_vec())
                .unwrap_or_else(|| vec![DEFAULT_LISTEN.to_string()]),
            tls: s
                .tls
                .as_ref()
                .map(|t| {
                    crate::tls::load_server_cert(&t.cert_file, &t.key_file).map(|cert| {
                        ListenerTls {
                            conf: t.clone(),
                            cert,
                        }
                    })
                })
                .transpose()
                .map_err(|e| format!("tls: {e}"))?,
            admin_listen: s.admin_listen.clone(),
            threads: s.threads,
            max_body_bytes: s.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
            max_buffered_bytes: s.max_buffered_bytes.unwrap_or(DEFAULT_MAX_BUFFERED_BYTES),
            client_header_timeout: Duration::from_secs(
                s.client_header_timeout_seconds
                    .unwrap_or(DEFAULT_CLIENT_HEADER_TIMEOUT_SECONDS),
            ),
            client_body_timeout: Duration::from_secs(
                s.client_body_timeout_seconds
                    .unwrap_or(DEFAULT_CLIENT_BODY_TIMEOUT_SECONDS),
            ),
            client_body_min_rate: s
                .client_body_min_rate
                .unwrap_or(DEFAULT_CLIENT_BODY_MIN_RATE),
            pid_file: s.pid_file.clone(),
            upgrade_sock: s.upgrade_sock.clone(),
            grace_period_seconds: s.grace_period_seconds,
            graceful_shutdown_timeout_seconds: s.graceful_shutdown_timeout_seconds,
            keys,
            providers,
            provider_index,
            models,
            retry,
            cooldown,
            breaker,
            stream_keepalive: match s.stream_keepalive_seconds {
                Some(0) => None,
                Some(n) => Some(Duration::from_secs(n)),
                None => Some(Duration::from_secs(15)),
            },
            rate_limit_window: Duration::from_secs(s.rate_limit_window_seconds.unwrap_or(60)),
            limit_store: s.limits.clone().unwrap_or_default(),
            prices: crate::pricing::PriceBook::new(
                s.model_prices.as_ref().map_or(&[][..], |t| &t.0),
            ),
            cors: s.cors.clone(),
            log_json: s.log_format == Some(LogFormat::Json),
            routes,
            watch_config: s.watch_config.unwrap_or(false),
            trusted_proxies: s
                .trusted_proxies
                .iter()
                .flatten()
                .map(|c| c.parse())
                .collect::<Result<_, String>>()?,
            admin: s.admin.clone().unwrap_or_default(),
            redacted: loaded.redacted.clone(),
            loaded_at: std::time::SystemTime::now(),
            exact,
            globs,
        })
    }

    /// Model name -> ordered attempts: exact entries first, then globs in file
    /// order, then the `provider/model` form.
    pub fn resolve_model(&self, name: &str) -> Option<Vec<Resolved>> {
        let entry = self.exact.get(name).or_else(|| {
            self.globs
                .iter()
                .find(|(g, _)| g.is_match(name))
                .map(|(_, i)| i)
        });
        if let Some(&i) = entry {
            let m = &self.models[i];
            return Some(
                m.order(&self.providers)
                    .into_iter()
                    .map(|k| {
                        let t = &m.targets[k];
                        Resolved {
                            provider: t.provider,
                            model: t.model.clone().unwrap_or_else(|| name.to_string()),
                            payload: t.payload.clone(),
                            limits: t.limits.clone(),
                        }
                    })
                    .collect(),
            );
        }
        let (prov, model) = name.split_once('/')?;
        let &p = self.provider_index.get(prov)?;
        if model.is_empty() {
            return None;
        }
        Some(vec![Resolved {
            provider: p,
            model: model.to_string(),
            payload: None,
            limits: None,
        }])
    }

    /// At least one provider can take requests (for `/health/ready`).
    pub fn ready(&self) -> bool {
        self.providers.iter().any(Provider::usable)
    }
}
