//! Each key's use today and this month (UTC) on this node since it started:
//! requests, tokens, cost, for `GET /admin/keys`. One small entry per key.

use crate::limits::period::Period;
use once_cell::sync::Lazy;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq)]
pub struct Tally {
    pub requests: u64,
    pub tokens: u64,
    pub cost_usd: f64,
}

/// (period start, tally) for the day and the month.
type KeyUse = [(u64, Tally); 2];

static USAGE: Lazy<Mutex<HashMap<String, KeyUse>>> = Lazy::new(Default::default);

const PERIODS: [Period; 2] = [Period::Day, Period::Month];

pub fn add(key: &str, now_ms: u64, tokens: u64, cost_usd: f64) {
    let mut m = USAGE.lock().unwrap_or_else(|e| e.into_inner());
    if !m.contains_key(key) {
        m.insert(key.to_string(), Default::default());
    }
    let u = m.get_mut(key).expect("inserted");
    for (slot, p) in u.iter_mut().zip(PERIODS) {
        let start = p.bounds(now_ms).0;
        if slot.0 != start {
            *slot = (start, Tally::default());
        }
        slot.1.requests += 1;
        slot.1.tokens += tokens;
        slot.1.cost_usd += cost_usd;
    }
}

/// Today's and this month's use of `key`.
pub fn get(key: &str, now_ms: u64) -> [Tally; 2] {
    let m = USAGE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(u) = m.get(key) else {
        return Default::default();
    };
    [0, 1].map(|i| {
        if u[i].0 == PERIODS[i].bounds(now_ms).0 {
            u[i].1
        } else {
            Tally::default()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_roll_over() {
        let day = 86_400_000;
        let t0 = 20_000 * day + 5;
        add("usage-test", t0, 10, 0.5);
        add("usage-test", t0 + 1, 5, 0.25);
        let [d, m] = get("usage-test", t0 + 2);
        assert_eq!((d.requests, d.tokens, d.cost_usd), (2, 15, 0.75));
        assert_eq!(m.requests, 2);
        let [d, _] = get("usage-test", t0 + day);
        assert_eq!(d, Tally::default(), "a new day starts at zero");
        assert_eq!(get("nobody", t0), [Tally::default(); 2]);
    }
}
