//! The read endpoints' answers, built from the snapshot, the request log and
//! the key store (plain functions; `admin::Api::serve` does the HTTP).

use super::requests::{self, Filter, RequestLog};
use super::store::KeyRecord;
use super::{stats, usage};
use crate::auth::GatewayKey;
use crate::config::file::Strategy;
use crate::limits::Limiter;
use crate::providers::Provider;
use crate::runtime::Snapshot;
use serde_json::{Value, json};

/// The `?a=b&c=d` pairs, percent-decoded (`+` is a space).
pub fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = |c: u8| (c as char).to_digit(16);
                    match (hex(b[i + 1]), hex(b[i + 2])) {
                        (Some(h), Some(l)) => {
                            out.push((h * 16 + l) as u8);
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    q.unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Unix seconds (fractions allowed) or RFC 3339 -> unix ms.
pub fn parse_time(s: &str) -> Option<u64> {
    if let Ok(secs) = s.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then_some((secs * 1000.0) as u64);
    }
    let t: jiff::Timestamp = s.parse().ok()?;
    u64::try_from(t.as_millisecond()).ok()
}

fn now_ms() -> u64 {
    crate::limits::store::unix_ms()
}

fn rfc3339(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|m| jiff::Timestamp::from_millisecond(m).ok())
        .map_or_else(String::new, |t| t.to_string())
}

pub fn config(snap: &Snapshot, source: &str) -> Value {
    let loaded_ms = snap
        .loaded_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    json!({
        "source": source,
        "loaded_at": rfc3339(loaded_ms),
        "reload_count": super::reload::count(),
        "config": snap.redacted,
    })
}

/// Why a provider cannot take requests now (None: it can).
fn unusable_because(p: &Provider, now: u64) -> Option<&'static str> {
    if p.disabled {
        Some("disabled: every credential key is empty")
    } else if !p.health.up() {
        Some("its health check fails")
    } else if !p.balancer.is_resolved() {
        Some("its host does not resolve")
    } else if p.breaker.is_open(now) {
        Some("circuit open")
    } else if p.rest.all_resting(now) {
        Some("every credential is resting")
    } else {
        None
    }
}

fn provider_state(p: &Provider, now: u64) -> Value {
    let resting: Vec<Value> = (0..p.credentials.len())
        .map(|i| json!({"index": i, "resting": p.rest.resting(i, now)}))
        .collect();
    let addresses: Vec<Value> = p
        .balancer
        .health()
        .into_iter()
        .map(|(a, healthy)| json!({"address": a.to_string(), "healthy": healthy}))
        .collect();
    json!({
        "usable": p.usable(),
        "why": unusable_because(p, now),
        "addresses": addresses,
        "circuit_open": p.breaker.is_open(now),
        "credentials": resting,
        "resting_credentials": p.rest.resting_count(now),
    })
}

fn strategy(s: Strategy) -> &'static str {
    match s {
        Strategy::Ordered => "ordered",
        Strategy::RoundRobin => "round-robin",
        Strategy::Weighted => "weighted",
        Strategy::LeastInflight => "least-inflight",
    }
}

fn price(snap: &Snapshot, model: &str) -> Value {
    snap.prices.lookup(model).map_or(Value::Null, |p| {
        json!({"input": p.input, "output": p.output, "cached_input": p.cached_input, "cache_write": p.cache_write})
    })
}

/// A target's limits with what each has left now, e.g.
/// `{"label": "oa/gpt", "rpm": {"limit": 10, "left": 7}}` (`left` null when
/// the store does not answer).
async fn quota(limiter: &Limiter, t: &crate::limits::TargetLimits) -> Value {
    let mut v = json!({"label": t.label});
    for (unit, q) in crate::limits::TARGET_UNITS
        .iter()
        .zip(limiter.target_left(t).await)
    {
        if let Some((limit, left)) = q {
            v[*unit] = json!({"limit": limit, "left": left});
        }
    }
    v
}

pub async fn models(snap: &Snapshot, limiter: &Limiter) -> Value {
    let now = crate::resilience::now_ms();
    let mut list = Vec::with_capacity(snap.models.len());
    for m in &snap.models {
        let mut targets = Vec::with_capacity(m.targets.len());
        for (t, w) in m
            .targets
            .iter()
            .zip(m.weights.iter().chain(std::iter::repeat(&1)))
        {
            let p = &snap.providers[t.provider];
            let upstream = t.model.clone().unwrap_or_else(|| m.name.clone());
            let mut v = provider_state(p, now);
            v["provider"] = json!(p.name);
            v["model"] = json!(t.model);
            v["weight"] = json!(w);
            v["quota"] = match &t.limits {
                Some(l) => quota(limiter, l).await,
                None => Value::Null,
            };
            v["price"] = price(snap, &upstream);
            targets.push(v);
        }
        list.push(json!({"name": m.name, "glob": m.is_glob, "strategy": strategy(m.strategy), "targets": targets}));
    }
    json!({"models": list})
}

pub fn providers(snap: &Snapshot, log: &RequestLog, limiter: &Limiter) -> Value {
    let now = crate::resilience::now_ms();
    // Recent: the last five minutes of the request log.
    let recent = stats::summarize(&log.all(), now_ms().saturating_sub(300_000));
    let list: Vec<Value> = snap
        .providers
        .iter()
        .map(|p| {
            let mut v = provider_state(p, now);
            v["name"] = json!(p.name);
            v["kind"] = json!(p.kind.as_str());
            v["in_flight"] = json!(p.inflight.load(std::sync::atomic::Ordering::Relaxed));
            v["recent"] = recent["providers"]
                .get(&p.name)
                .cloned()
                .unwrap_or(Value::Null);
            v
        })
        .collect();
    let (ok, limits) = limiter.health();
    json!({"providers": list, "limits": {"ok": ok, "state": limits}})
}

fn remaining(budget: Option<f64>, spent: f64) -> Value {
    budget.map_or(Value::Null, |b| {
        json!(((b - spent).max(0.0) * 1e9).round() / 1e9)
    })
}

fn usage_json(id: &str, budgets: [Option<f64>; 2]) -> (Value, Value) {
    let [day, month] = usage::get(id, now_ms());
    (
        json!({"today": day, "month": month}),
        json!({"daily": remaining(budgets[0], day.cost_usd), "monthly": remaining(budgets[1], month.cost_usd)}),
    )
}

pub fn runtime_key(r: &KeyRecord) -> Value {
    let (usage, left) = usage_json(&r.id, [r.budget_usd_daily, r.budget_usd_monthly]);
    json!({
        "id": r.id, "source": "runtime", "read_only": false,
        "models": r.models, "rpm": r.rpm, "tpm": r.tpm, "max_concurrent": r.max_concurrent,
        "budget_usd_daily": r.budget_usd_daily, "budget_usd_monthly": r.budget_usd_monthly,
        "disabled": r.disabled, "created": rfc3339(r.created_ms), "created_by": r.created_by,
        "usage": usage, "remaining_budget_usd": left,
    })
}

fn config_key(snap: &Snapshot, k: &GatewayKey) -> Value {
    // The globs as written (the compiled set cannot list them).
    let models = snap.redacted["keys"]
        .as_array()
        .and_then(|ks| ks.iter().find(|c| c["id"] == k.id.as_str()))
        .map_or(Value::Null, |c| c["models"].clone());
    let budgets = k.budgets.map(|b| b.map(|m| m as f64 / 1e6));
    let (usage, left) = usage_json(&k.id, budgets);
    json!({
        "id": k.id, "source": "config", "read_only": true,
        "models": models, "rpm": k.rpm, "tpm": k.tpm, "max_concurrent": k.max_concurrent,
        "budget_usd_daily": budgets[0], "budget_usd_monthly": budgets[1],
        "disabled": false, "usage": usage, "remaining_budget_usd": left,
    })
}

pub fn keys(snap: &Snapshot, runtime: &[KeyRecord]) -> Value {
    let mut list: Vec<Value> = snap.keys.iter().map(|k| config_key(snap, k)).collect();
    list.extend(runtime.iter().map(runtime_key));
    json!({"keys": list})
}

/// `GET /admin/requests?key=&model=&provider=&status=&since=&until=&before=&limit=`.
pub fn requests(log: &RequestLog, q: &[(String, String)]) -> Result<Value, String> {
    let mut f = Filter::default();
    let mut limit = 100usize;
    for (k, v) in q {
        match k.as_str() {
            "key" => f.key = Some(v.clone()),
            "model" => f.model = Some(v.clone()),
            "provider" => f.provider = Some(v.clone()),
            "status" if requests::valid_status(v) => f.status = Some(v.clone()),
            "status" => return Err(format!("status: '{v}' is not a status or a class like 5xx")),
            "since" | "until" => {
                let t = parse_time(v).ok_or_else(|| {
                    format!("{k}: '{v}' is neither unix seconds nor an RFC 3339 time")
                })?;
                if k == "since" {
                    f.since_ms = Some(t);
                } else {
                    f.until_ms = Some(t);
                }
            }
            "before" => {
                f.before = Some(
                    v.parse()
                        .map_err(|_| format!("before: '{v}' is not a seq number"))?,
                )
            }
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| format!("limit: '{v}' is not a number from 1 to 1000"))?
            }
            _ => return Err(format!("unknown parameter '{k}'")),
        }
    }
    let all = log.all();
    let (items, matched) = requests::page(&all, &f, limit);
    let next = (matched > items.len())
        .then(|| items.last().map(|e| e.seq))
        .flatten();
    Ok(json!({
        "requests": items.iter().map(|e| &**e).collect::<Vec<_>>(),
        "matched": matched,
        "next_before": next,
        "capacity": log.capacity(),
    }))
}

/// `GET /admin/stats?window=1h` (default 1h).
pub fn stats(log: &RequestLog, q: &[(String, String)]) -> Result<Value, String> {
    let mut window = "1h".to_string();
    let mut buckets = None;
    for (k, v) in q {
        match k.as_str() {
            "window" => window.clone_from(v),
            "buckets" => {
                buckets = Some(
                    v.parse::<usize>()
                        .ok()
                        .filter(|n| (1..=stats::MAX_BUCKETS).contains(n))
                        .ok_or_else(|| {
                            format!(
                                "buckets: '{v}' is not a number from 1 to {}",
                                stats::MAX_BUCKETS
                            )
                        })?,
                )
            }
            _ => return Err(format!("unknown parameter '{k}'")),
        }
    }
    let ms = crate::config::admin::parse_window(&window)
        .ok_or_else(|| format!("window: '{window}' is not a duration like 30s, 15m, 1h, 7d"))?;
    let all = log.all();
    let now = now_ms();
    let since = now.saturating_sub(ms);
    let mut v = stats::summarize(&all, since);
    v["window"] = json!(window);
    if let Some(n) = buckets {
        v["series"] = stats::key_series(&all, since, now, n);
    }
    // Older requests may have left the ring: say what the numbers cover.
    v["log_covers_since"] = json!(all.first().map(|e| rfc3339(e.time_ms)));
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding_and_times() {
        let q = query_pairs(Some("model=gpt%2D4o&x=a+b&bad=%zz&end=%4"));
        assert_eq!(q[0], ("model".into(), "gpt-4o".into()));
        assert_eq!(q[1].1, "a b");
        assert_eq!(q[2].1, "%zz");
        assert_eq!(q[3].1, "%4");
        assert_eq!(parse_time("1.5"), Some(1500));
        assert_eq!(parse_time("1970-01-01T00:00:02Z"), Some(2000));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn request_filters_are_checked() {
        let log = RequestLog::new(10);
        for s in [200, 500, 200] {
            log.push(requests::entry("a", "m", s, 1.0));
        }
        let q = |s: &str| requests(&log, &query_pairs(Some(s)));
        assert_eq!(q("status=5xx").unwrap()["matched"], 1);
        let p = q("limit=2").unwrap();
        assert_eq!(p["requests"].as_array().unwrap().len(), 2);
        assert_eq!(p["next_before"], 2);
        assert_eq!(q("before=2").unwrap()["matched"], 1);
        for bad in ["status=5x", "since=later", "limit=0", "color=red"] {
            assert!(q(bad).is_err(), "{bad}");
        }
    }
}
