//! Every Prometheus metric in one place (SPEC "Metrics"): base units, and
//! low-cardinality labels (key ids, never keys; model names as configured).

use once_cell::sync::Lazy;
use once_cell::unsync::OnceCell;
use prometheus::{
    Counter, CounterVec, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
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
    pub client_timeouts: IntCounterVec,
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
    // process_* (CPU, resident memory, fds, start time): read from /proc at
    // each scrape, nothing per request.
    #[cfg(target_os = "linux")]
    r.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))
    .expect("register");
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
        client_timeouts: counter(
            &r,
            "aigate_client_timeouts_total",
            "Client connections closed for sending a request head or body too slowly",
            &["phase"],
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

/// A slow client closed (`phase`: `header` or `body`).
pub fn client_timeout(phase: &str) {
    METRICS.client_timeouts.with_label_values(&[phase]).inc();
}

/// The Prometheus text exposition of every metric. Families with no samples
/// yet still get their HELP/TYPE lines, so scrapers and dashboards see every
/// SPEC metric from the first scrape.
pub fn render() -> Vec<u8> {
    let m = &*METRICS;
    let mut buf = Vec::with_capacity(16 * 1024);
    let families = m.registry.gather();
    let _ = TextEncoder::new().encode(&families, &mut buf);
    let descs: [(&dyn prometheus::core::Collector, &str); 13] = [
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
        (&m.client_timeouts, "counter"),
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

/// The series one AI request updates, for one (ingress, provider, model,
/// status, key id). Prometheus hashes the label values and takes a lock on
/// every `with_label_values`, nine per request; these handles are looked up
/// once per thread and label set (`request_series`). A series is created in
/// the registry when first used, as before: none appears before its first value.
pub struct RequestSeries {
    labels: [String; 5],
    requests: OnceCell<IntCounter>,
    duration: OnceCell<Histogram>,
    ttfb: OnceCell<Histogram>,
    overhead: OnceCell<Histogram>,
    tokens: OnceCell<[IntCounter; 4]>,
    cost: OnceCell<Counter>,
}

impl RequestSeries {
    fn l(&self, i: usize) -> &str {
        &self.labels[i]
    }

    pub fn count(&self) {
        let [ingress, provider, model, status, _] = &self.labels;
        self.requests
            .get_or_init(|| {
                METRICS
                    .requests
                    .with_label_values(&[ingress, provider, model, status])
            })
            .inc();
    }

    pub fn duration(&self, secs: f64) {
        self.duration
            .get_or_init(|| {
                METRICS
                    .duration
                    .with_label_values(&[self.l(0), self.l(1), self.l(2)])
            })
            .observe(secs);
    }

    pub fn ttfb(&self, secs: f64) {
        self.ttfb
            .get_or_init(|| METRICS.ttfb.with_label_values(&[self.l(1), self.l(2)]))
            .observe(secs);
    }

    pub fn overhead(&self, secs: f64) {
        self.overhead
            .get_or_init(|| METRICS.overhead.with_label_values(&[self.l(0), self.l(1)]))
            .observe(secs);
    }

    /// Token counts of one answer, added to `aigate_tokens_total`.
    pub fn tokens(&self, u: &crate::ir::Usage) {
        let c = self.tokens.get_or_init(|| {
            ["input", "output", "cached", "reasoning"].map(|kind| {
                METRICS
                    .tokens
                    .with_label_values(&[self.l(1), self.l(2), kind])
            })
        });
        for (c, n) in c.iter().zip([u.input, u.output, u.cache_read, u.reasoning]) {
            c.inc_by(n);
        }
    }

    pub fn cost(&self, usd: f64) {
        self.cost
            .get_or_init(|| {
                METRICS
                    .cost
                    .with_label_values(&[self.l(4), self.l(1), self.l(2)])
            })
            .inc_by(usd);
    }
}

/// The reusable key buffer and the series by key.
type SeriesCache = (
    Vec<u8>,
    std::collections::HashMap<Box<[u8]>, std::rc::Rc<RequestSeries>>,
);

thread_local! {
    /// Key: the label values, each length-prefixed (so no two label sets
    /// share one); the buffer is reused to build it.
    static SERIES: std::cell::RefCell<SeriesCache> =
        Default::default();
}

/// The series of one AI request's labels (see `RequestSeries`). As many
/// entries per thread as the registry has label sets, which the labels bound
/// (key ids and configured models only).
pub fn request_series(
    ingress: &str,
    provider: &str,
    model: &str,
    status: u16,
    key: &str,
) -> std::rc::Rc<RequestSeries> {
    SERIES.with_borrow_mut(|(buf, map)| {
        buf.clear();
        for part in [ingress, provider, model, key] {
            buf.extend_from_slice(&(part.len() as u32).to_le_bytes());
            buf.extend_from_slice(part.as_bytes());
        }
        buf.extend_from_slice(&status.to_le_bytes());
        if let Some(s) = map.get(buf.as_slice()) {
            return s.clone();
        }
        let s = std::rc::Rc::new(RequestSeries {
            labels: [
                ingress.to_string(),
                provider.to_string(),
                model.to_string(),
                status.to_string(),
                key.to_string(),
            ],
            requests: OnceCell::new(),
            duration: OnceCell::new(),
            ttfb: OnceCell::new(),
            overhead: OnceCell::new(),
            tokens: OnceCell::new(),
            cost: OnceCell::new(),
        });
        map.insert(buf.as_slice().into(), s.clone());
        s
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn count(ingress: &str, provider: &str, model: &str, status: &str) -> u64 {
        METRICS
            .requests
            .with_label_values(&[ingress, provider, model, status])
            .get()
    }

    #[test]
    fn request_series_are_per_label_set_and_unambiguous() {
        let a = request_series("test-ingress", "p", "m\0x", 200, "k");
        let b = request_series("test-ingress", "p", "m", 200, "\0x");
        assert!(
            !std::rc::Rc::ptr_eq(&a, &b),
            "length-prefixed labels never collide"
        );
        assert!(std::rc::Rc::ptr_eq(
            &a,
            &request_series("test-ingress", "p", "m\0x", 200, "k")
        ));
        let c = request_series("test-ingress", "p", "m\0x", 404, "k");
        a.count();
        a.count();
        c.count();
        assert_eq!(count("test-ingress", "p", "m\0x", "200"), 2);
        assert_eq!(count("test-ingress", "p", "m\0x", "404"), 1);
        assert_eq!(count("test-ingress", "p", "m", "200"), 0);
        // Series appear only when used: no token series before a usage.
        let fresh = request_series("test-ingress", "p", "fresh-model", 200, "k");
        fresh.count();
        let lines = |name: &str| {
            String::from_utf8(render())
                .unwrap()
                .lines()
                .filter(|l| l.starts_with(name) && l.contains("model=\"fresh-model\""))
                .count()
        };
        assert_eq!(lines("aigate_requests_total{"), 1);
        assert_eq!(lines("aigate_tokens_total{"), 0);
        fresh.tokens(&crate::ir::Usage::default());
        assert_eq!(lines("aigate_tokens_total{"), 4);
        a.tokens(&crate::ir::Usage {
            input: 3,
            output: 4,
            ..Default::default()
        });
        let t = |kind: &str| METRICS.tokens.with_label_values(&["p", "m\0x", kind]).get();
        assert_eq!((t("input"), t("output"), t("cached")), (3, 4, 0));
    }
}
