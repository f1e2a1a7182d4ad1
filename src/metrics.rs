//! Every Prometheus metric in one place (SPEC "Metrics"): base units, and
//! low-cardinality labels (key ids, never keys; model names as configured).

use once_cell::sync::Lazy;
use prometheus::{
    CounterVec, Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub ttfb: HistogramVec,
    pub overhead: HistogramVec,
    pub attempts: IntCounterVec,
    pub tokens: IntCounterVec,
    pub cost: CounterVec,
    pub inflight: IntGauge,
    pub rate_limited: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub client_disconnects: IntCounterVec,
    pub resting_credentials: IntGaugeVec,
    pub provider_usable: IntGaugeVec,
    pub limits_backend_up: IntGaugeVec,
    pub limits_backend_errors: IntCounterVec,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric");
    r.register(Box::new(c.clone())).expect("register");
    c
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("metric");
    r.register(Box::new(g.clone())).expect("register");
    g
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let h =
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels).expect("metric");
    r.register(Box::new(h.clone())).expect("register");
    h
}

/// Request-scale buckets: LLM calls run from milliseconds to minutes.
fn slow_buckets() -> Vec<f64> {
    vec![
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    ]
}

/// The gateway's own cost is microseconds.
fn overhead_buckets() -> Vec<f64> {
    vec![
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    ]
}

pub static METRICS: Lazy<Metrics> = Lazy::new(|| {
    let r = Registry::new();
    let inflight =
        IntGauge::new("aigate_inflight_requests", "Requests being served now").expect("metric");
    r.register(Box::new(inflight.clone())).expect("register");
    Metrics {
        requests: counter(
            &r,
            "aigate_requests_total",
            "Requests answered",
            &["ingress", "provider", "model", "status"],
        ),
        duration: histogram(
            &r,
            "aigate_request_duration_seconds",
            "Whole request time, first byte in to last byte out",
            &["ingress", "provider", "model"],
            slow_buckets(),
        ),
        ttfb: histogram(
            &r,
            "aigate_time_to_first_byte_seconds",
            "From the request's arrival to the first response body byte sent to the client",
            &["provider", "model"],
            slow_buckets(),
        ),
        overhead: histogram(
            &r,
            "aigate_overhead_seconds",
            "Total time minus time spent waiting on the upstream and the client",
            &["ingress", "provider"],
            overhead_buckets(),
        ),
        attempts: counter(
            &r,
            "aigate_upstream_attempts_total",
            "Upstream attempts by outcome (ok, http_4xx, http_5xx, http_429, connect_error, timeout, io_error, ...)",
            &["provider", "outcome"],
        ),
        tokens: counter(
            &r,
            "aigate_tokens_total",
            "Tokens by kind (input, output, cached, reasoning)",
            &["provider", "model", "kind"],
        ),
        cost: {
            let c = CounterVec::new(
                Opts::new(
                    "aigate_cost_usd_total",
                    "Cost of the answers in USD, priced by the upstream model actually used",
                ),
                &["key", "provider", "model"],
            )
            .expect("metric");
            r.register(Box::new(c.clone())).expect("register");
            c
        },
        inflight,
        rate_limited: counter(
            &r,
            "aigate_rate_limited_total",
            "Requests refused by a rate limit",
            &["key"],
        ),
        config_reloads: counter(
            &r,
            "aigate_config_reloads_total",
            "Config reloads by result (ok, error)",
            &["result"],
        ),
        client_disconnects: counter(
            &r,
            "aigate_client_disconnects_total",
            "Clients that went away before their answer was complete",
            &["ingress"],
        ),
        resting_credentials: gauge(
            &r,
            "aigate_resting_credentials",
            "Provider credentials resting after a 429 or an auth failure",
            &["provider"],
        ),
        provider_usable: gauge(
            &r,
            "aigate_provider_usable",
            "1 when the provider can take requests (enabled, resolved, healthy, circuit closed, a credential free)",
            &["provider"],
        ),
        limits_backend_up: gauge(
            &r,
            "aigate_limits_backend_up",
            "1 while the shared limit store answers, 0 while limits fall back (limits.on_error)",
            &["backend"],
        ),
        limits_backend_errors: counter(
            &r,
            "aigate_limits_backend_errors_total",
            "Limit-store operations that failed (timeout, connection, server, down: skipped while the store is down)",
            &["backend", "kind"],
        ),
        registry: r,
    }
});

/// The Prometheus text exposition of every metric. Families with no samples
/// yet still get their HELP/TYPE lines, so scrapers and dashboards see every
/// SPEC metric from the first scrape.
pub fn render() -> Vec<u8> {
    let m = &*METRICS;
    let mut buf = Vec::with_capacity(16 * 1024);
    let families = m.registry.gather();
    let _ = TextEncoder::new().encode(&families, &mut buf);
    let descs: [(&dyn prometheus::core::Collector, &str); 12] = [
        (&m.requests, "counter"),
        (&m.duration, "histogram"),
        (&m.ttfb, "histogram"),
        (&m.overhead, "histogram"),
        (&m.attempts, "counter"),
        (&m.tokens, "counter"),
        (&m.cost, "counter"),
        (&m.rate_limited, "counter"),
        (&m.config_reloads, "counter"),
        (&m.client_disconnects, "counter"),
        (&m.limits_backend_up, "gauge"),
        (&m.limits_backend_errors, "counter"),
    ];
    for (c, kind) in descs {
        for d in c.desc() {
            if !families.iter().any(|f| f.name() == d.fq_name) {
                buf.extend_from_slice(
                    format!(
                        "# HELP {} {}\n# TYPE {} {}\n",
                        d.fq_name, d.help, d.fq_name, kind
                    )
                    .as_bytes(),
                );
            }
        }
    }
    buf
}

/// Token counts of one answer, added to `aigate_tokens_total`.
pub fn add_tokens(provider: &str, model: &str, u: &crate::translate::Usage) {
    for (kind, n) in [
        ("input", u.input),
        ("output", u.output),
        ("cached", u.cached),
        ("reasoning", u.reasoning),
    ] {
        METRICS
            .tokens
            .with_label_values(&[provider, model, kind])
            .inc_by(n);
    }
}

/// Decrements the in-flight gauge when the request ends, however it ends.
pub struct InflightGuard(());

impl InflightGuard {
    pub fn new() -> Self {
        METRICS.inflight.inc();
        InflightGuard(())
    }
}

impl Default for InflightGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        METRICS.inflight.dec();
    }
}
