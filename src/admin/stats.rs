//! `GET /admin/stats`: per key, model and provider over a window of the
//! request log — requests, errors, p50/p95 latency, tokens, cost.

use super::requests::Entry;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Nearest-rank percentile of sorted values (`p` in 0..=100).
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[derive(Default)]
struct Group {
    requests: u64,
    errors: u64,
    latencies: Vec<f64>,
    tokens_in: u64,
    tokens_out: u64,
    cost_usd: f64,
}

impl Group {
    fn add(&mut self, e: &Entry) {
        self.requests += 1;
        self.errors += u64::from(e.failed());
        self.latencies.push(e.duration_ms);
        self.tokens_in += e.tokens_in;
        self.tokens_out += e.tokens_out;
        self.cost_usd += e.cost_usd.unwrap_or(0.0);
    }

    fn json(mut self) -> Value {
        self.latencies.sort_by(f64::total_cmp);
        json!({
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": if self.requests == 0 { 0.0 } else { self.errors as f64 / self.requests as f64 },
            "p50_ms": percentile(&self.latencies, 50.0),
            "p95_ms": percentile(&self.latencies, 95.0),
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost_usd": (self.cost_usd * 1e9).round() / 1e9,
        })
    }
}

/// Totals and groups of the entries that started at or after `since_ms`.
pub fn summarize(entries: &[Arc<Entry>], since_ms: u64) -> Value {
    let mut total = Group::default();
    let mut by: [BTreeMap<String, Group>; 3] = Default::default();
    for e in entries.iter().filter(|e| e.time_ms >= since_ms) {
        total.add(e);
        for (map, label) in by.iter_mut().zip([&e.key, &e.model, &e.provider]) {
            let name = label.clone().unwrap_or_else(|| "-".into());
            map.entry(name).or_default().add(e);
        }
    }
    let [keys, models, providers] =
        by.map(|m| Value::Object(m.into_iter().map(|(k, g)| (k, g.json())).collect()));
    json!({"total": total.json(), "keys": keys, "models": models, "providers": providers})
}

/// Most buckets a series may ask for (`/admin/stats?buckets=`).
pub const MAX_BUCKETS: usize = 240;

/// Per key, requests / tokens / cost in `n` equal buckets from `since_ms` to
/// `now_ms`, oldest first (the dashboard's usage and spend chart per key).
pub fn key_series(entries: &[Arc<Entry>], since_ms: u64, now_ms: u64, n: usize) -> Value {
    let n = n.clamp(1, MAX_BUCKETS);
    let span = now_ms.saturating_sub(since_ms).max(1);
    let bucket_ms = span.div_ceil(n as u64);
    let mut by: BTreeMap<String, [Vec<f64>; 3]> = BTreeMap::new();
    for e in entries
        .iter()
        .filter(|e| e.time_ms >= since_ms && e.time_ms <= now_ms)
    {
        let i = (((e.time_ms - since_ms) / bucket_ms) as usize).min(n - 1);
        let name = e.key.clone().unwrap_or_else(|| "-".into());
        let s = by
            .entry(name)
            .or_insert_with(|| std::array::from_fn(|_| vec![0.0; n]));
        s[0][i] += 1.0;
        s[1][i] += (e.tokens_in + e.tokens_out) as f64;
        s[2][i] += e.cost_usd.unwrap_or(0.0);
    }
    let keys: serde_json::Map<String, Value> = by
        .into_iter()
        .map(|(k, [req, tok, cost])| {
            let cost: Vec<f64> = cost.iter().map(|c| (c * 1e9).round() / 1e9).collect();
            (k, json!({"requests": req, "tokens": tok, "cost_usd": cost}))
        })
        .collect();
    json!({"since_ms": since_ms, "bucket_ms": bucket_ms, "buckets": n, "keys": keys})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::requests::entry;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 95.0), Some(95.0));
        assert_eq!(percentile(&[7.0], 95.0), Some(7.0));
        assert_eq!(percentile(&[1.0, 2.0], 50.0), Some(1.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn groups_add_up() {
        let mut es = vec![];
        for (i, (k, s)) in [("a", 200), ("a", 500), ("b", 200), ("a", 200)]
            .iter()
            .enumerate()
        {
            let mut e = entry(k, "m", *s, (i + 1) as f64 * 10.0);
            e.time_ms = 1_000 + i as u64;
            es.push(Arc::new(e));
        }
        let v = summarize(&es, 1_001);
        assert_eq!(v["total"]["requests"], 3, "the first is before the window");
        assert_eq!(v["keys"]["a"]["requests"], 2);
        assert_eq!(v["keys"]["a"]["errors"], 1);
        assert_eq!(v["keys"]["b"]["tokens_in"], 10);
        assert_eq!(v["models"]["m"]["p50_ms"], 30.0);
        assert_eq!(v["models"]["m"]["p95_ms"], 40.0);
        assert_eq!(v["providers"]["p"]["cost_usd"], 0.003);
    }

    #[test]
    fn key_series_buckets_by_time() {
        let mut es = vec![];
        for (k, t) in [
            ("a", 999),
            ("a", 1_000),
            ("a", 1_050),
            ("b", 1_099),
            ("a", 1_100),
        ] {
            let mut e = entry(k, "m", 200, 1.0);
            e.time_ms = t;
            es.push(Arc::new(e));
        }
        let v = key_series(&es, 1_000, 1_100, 4);
        assert_eq!(v["bucket_ms"], 25);
        // 999 is before the window; 1_100 (now) falls in the last bucket.
        assert_eq!(v["keys"]["a"]["requests"], json!([1.0, 0.0, 1.0, 1.0]));
        assert_eq!(v["keys"]["a"]["tokens"], json!([15.0, 0.0, 15.0, 15.0]));
        assert_eq!(v["keys"]["b"]["cost_usd"], json!([0.0, 0.0, 0.0, 0.001]));
        assert_eq!(
            key_series(&es, 1_000, 1_100, 100_000)["buckets"],
            MAX_BUCKETS
        );
    }
}
