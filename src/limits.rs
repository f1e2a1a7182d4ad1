//! Per-key limits: requests and tokens per minute over a sliding window, and
//! concurrency. State lives outside the config snapshot so a reload keeps
//! the counts.
//!
//! The window is the two-bucket sliding approximation (Cloudflare's): the
//! previous minute's count weighted by how much of it still overlaps the
//! window, plus this minute's. Unlike fixed buckets it never admits 2x the
//! limit across a boundary, and it is O(1) per check.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

#[derive(Debug)]
pub struct Window {
    len_ms: u64,
    /// (start of the current bucket, previous bucket's count, current count)
    state: Mutex<(u64, f64, f64)>,
}

/// What a limited dimension reports in `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    pub limit: u64,
    pub remaining: u64,
    /// Admitted: until the window is empty again. Refused: until this
    /// request would be admitted (the `Retry-After`).
    pub reset: Duration,
}

impl Window {
    pub fn new(len: Duration) -> Self {
        Window {
            len_ms: len.as_millis().max(1) as u64,
            state: Mutex::new((0, 0.0, 0.0)),
        }
    }

    fn roll(&self, st: &mut (u64, f64, f64), now: u64) {
        let elapsed = now.saturating_sub(st.0);
        if elapsed >= 2 * self.len_ms {
            *st = (now - now % self.len_ms, 0.0, 0.0);
        } else if elapsed >= self.len_ms {
            *st = (st.0 + self.len_ms, st.2, 0.0);
        }
    }

    fn count(&self, st: &(u64, f64, f64), now: u64) -> f64 {
        let into = now.saturating_sub(st.0) as f64 / self.len_ms as f64;
        st.1 * (1.0 - into).max(0.0) + st.2
    }

    /// Time until the count falls to `target`, assuming no new arrivals.
    fn wait_for(&self, st: &(u64, f64, f64), now: u64, target: f64) -> Duration {
        let c = self.count(st, now);
        if c <= target {
            return Duration::ZERO;
        }
        // The previous bucket drains linearly over the rest of this bucket;
        // whatever is in the current one leaves when it becomes the previous.
        let into = now.saturating_sub(st.0);
        let left = self.len_ms.saturating_sub(into);
        let excess = c - target;
        let drain_rate = st.1 / self.len_ms as f64;
        if drain_rate > 0.0 && excess <= st.1 * left as f64 / self.len_ms as f64 {
            return Duration::from_millis((excess / drain_rate).ceil() as u64);
        }
        // Else wait into the next bucket, where the current count drains.
        let rest = excess - st.1 * left as f64 / self.len_ms as f64;
        let rate = (st.2 / self.len_ms as f64).max(f64::MIN_POSITIVE);
        Duration::from_millis(left + (rest / rate).ceil() as u64)
    }

    /// Take `amount` if the window stays within `limit`.
    pub fn try_take(&self, now: u64, amount: u64, limit: u64) -> Result<Quota, Quota> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.roll(&mut st, now);
        let c = self.count(&st, now);
        if c + amount as f64 > limit as f64 {
            let reset = self.wait_for(&st, now, limit.saturating_sub(amount) as f64);
            return Err(Quota {
                limit,
                remaining: (limit as f64 - c).max(0.0) as u64,
                reset: reset.max(Duration::from_secs(1)),
            });
        }
        st.2 += amount as f64;
        let c = c + amount as f64;
        Ok(Quota {
            limit,
            remaining: (limit as f64 - c).max(0.0) as u64,
            // OpenAI's meaning: until the window is back to its initial state.
            reset: self.wait_for(&st, now, 0.0),
        })
    }

    /// Correct an earlier reservation by `delta` (reported minus estimated).
    pub fn adjust(&self, now: u64, delta: i64) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.roll(&mut st, now);
        st.2 = (st.2 + delta as f64).max(0.0);
    }
}

/// Counters of one gateway key.
#[derive(Debug)]
pub struct KeyState {
    pub requests: Window,
    pub tokens: Window,
    pub inflight: AtomicU64,
}

/// Every key's counters, by key id.
#[derive(Debug, Default)]
pub struct Limiter {
    keys: RwLock<HashMap<String, Arc<KeyState>>>,
    pub window: Option<Duration>,
}

impl Limiter {
    pub fn new(window: Duration) -> Self {
        Limiter {
            keys: RwLock::default(),
            window: Some(window),
        }
    }

    pub fn key(&self, id: &str) -> Arc<KeyState> {
        if let Some(k) = self.keys.read().unwrap_or_else(|e| e.into_inner()).get(id) {
            return k.clone();
        }
        let len = self.window.unwrap_or(Duration::from_secs(60));
        self.keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.to_string())
            .or_insert_with(|| {
                Arc::new(KeyState {
                    requests: Window::new(len),
                    tokens: Window::new(len),
                    inflight: AtomicU64::new(0),
                })
            })
            .clone()
    }
}

/// Releases a concurrency slot when the request ends.
pub struct Slot(pub Arc<KeyState>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Take a concurrency slot if fewer than `max` are in use.
pub fn try_slot(k: &Arc<KeyState>, max: u64) -> Option<Slot> {
    let prev = k.inflight.fetch_add(1, Ordering::Relaxed);
    if prev >= max {
        k.inflight.fetch_sub(1, Ordering::Relaxed);
        return None;
    }
    Some(Slot(k.clone()))
}

/// Tokens a request may use, reserved before it runs: its size in tokens
/// (about 4 bytes each) plus the output it allows itself.
pub fn estimate_tokens(body_len: usize, max_output: Option<u64>) -> u64 {
    (body_len as u64).div_ceil(4) + max_output.unwrap_or(0)
}

/// `x-ratelimit-reset-*` value in OpenAI's style ("1s", "6m0s").
pub fn reset_text(d: Duration) -> String {
    let s = d.as_secs_f64().ceil() as u64;
    if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_window_never_doubles_at_the_boundary() {
        let w = Window::new(Duration::from_secs(60));
        for i in 0..10 {
            assert!(w.try_take(59_000 + i, 1, 10).is_ok(), "request {i}");
        }
        assert!(w.try_take(59_500, 1, 10).is_err());
        // Just past the bucket boundary the previous minute still counts.
        let e = w.try_take(60_100, 1, 10).unwrap_err();
        assert!(e.reset >= Duration::from_secs(1));
        assert_eq!(e.remaining, 0);
        // Halfway through the next minute half of the old requests have aged out.
        let mut admitted = 0;
        for _ in 0..10 {
            if w.try_take(90_000, 1, 10).is_ok() {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 5);
        // Two windows later everything has aged out.
        assert_eq!(w.try_take(200_000, 10, 10).unwrap().remaining, 0);
    }

    #[test]
    fn tokens_reserve_then_reconcile() {
        let w = Window::new(Duration::from_secs(60));
        assert!(w.try_take(0, 800, 1000).is_ok());
        assert!(
            w.try_take(0, 300, 1000).is_err(),
            "reservation counts at once"
        );
        w.adjust(0, -600); // the answer used 200, not 800
        assert_eq!(w.try_take(0, 300, 1000).unwrap().remaining, 500);
    }

    #[test]
    fn slots_and_helpers() {
        let l = Limiter::default();
        let k = l.key("a");
        let a = try_slot(&k, 1).unwrap();
        assert!(try_slot(&k, 1).is_none());
        drop(a);
        assert!(try_slot(&k, 1).is_some());
        assert!(Arc::ptr_eq(&k, &l.key("a")));
        assert_eq!(estimate_tokens(4001, Some(100)), 1101);
        assert_eq!(reset_text(Duration::from_millis(61_500)), "1m2s");
        assert_eq!(reset_text(Duration::from_millis(200)), "1s");
    }
}
