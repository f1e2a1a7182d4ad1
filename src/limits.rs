//! Per-key limits: requests and tokens per minute over a sliding window, and
//! concurrency. State lives outside the config snapshot so a reload keeps
//! the counts.
//!
//! Windows are sliding logs: every admitted request (or token reservation)
//! is kept with its time until it is older than the window, so no window of
//! that length ever holds more than the limit, wherever it starts. Memory is
//! one entry per admitted request in the window.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

#[derive(Debug)]
pub struct Window {
    len_ms: u64,
    state: Mutex<Log>,
}

#[derive(Debug, Default)]
struct Log {
    /// (time admitted, ticket, amount), oldest first.
    entries: VecDeque<(u64, u64, u64)>,
    total: u64,
    next_ticket: u64,
}

/// What a limited dimension reports in `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    pub limit: u64,
    pub remaining: u64,
    /// Admitted: until the window is empty again (OpenAI's meaning). Refused:
    /// until this request would be admitted (the `Retry-After`).
    pub reset: Duration,
    /// Names the admitted entry, for [`Window::adjust`].
    pub ticket: u64,
}

impl Window {
    pub fn new(len: Duration) -> Self {
        Window {
            len_ms: len.as_millis().max(1) as u64,
            state: Mutex::new(Log::default()),
        }
    }

    fn evict(&self, log: &mut Log, now: u64) {
        while let Some(&(t, _, a)) = log.entries.front() {
            if t + self.len_ms > now {
                break;
            }
            log.total -= a;
            log.entries.pop_front();
        }
    }

    /// Take `amount` if the window stays within `limit`.
    pub fn try_take(&self, now: u64, amount: u64, limit: u64) -> Result<Quota, Quota> {
        let mut log = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.evict(&mut log, now);
        if log.total + amount > limit {
            // Wait until enough of the oldest entries have left the window.
            let mut left = log.total;
            let mut until = now;
            for &(t, _, a) in &log.entries {
                if left + amount <= limit {
                    break;
                }
                left -= a;
                until = t + self.len_ms;
            }
            let wait = if left + amount <= limit {
                until - now
            } else {
                self.len_ms
            };
            return Err(Quota {
                limit,
                remaining: limit.saturating_sub(log.total),
                reset: Duration::from_millis(wait.max(1)),
                ticket: 0,
            });
        }
        let ticket = log.next_ticket;
        log.next_ticket += 1;
        log.entries.push_back((now, ticket, amount));
        log.total += amount;
        let empty_at = log.entries.back().map_or(now, |e| e.0 + self.len_ms);
        Ok(Quota {
            limit,
            remaining: limit - log.total,
            reset: Duration::from_millis(empty_at - now),
            ticket,
        })
    }

    /// Correct an admitted entry by `delta` (reported minus estimated); an
    /// entry already out of the window is left alone.
    pub fn adjust(&self, now: u64, ticket: u64, delta: i64) {
        let mut log = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.evict(&mut log, now);
        let idx = log.entries.binary_search_by_key(&ticket, |e| e.1);
        if let Ok(i) = idx {
            let old = log.entries[i].2;
            let new = (old as i64 + delta).max(0) as u64;
            log.entries[i].2 = new;
            log.total = log.total - old + new;
        }
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
    fn sliding_window_holds_the_limit_in_every_window() {
        let w = Window::new(Duration::from_secs(60));
        for i in 0..10 {
            assert!(w.try_take(59_000 + i, 1, 10).is_ok(), "request {i}");
        }
        let e = w.try_take(59_500, 1, 10).unwrap_err();
        assert_eq!(e.remaining, 0);
        // The oldest leaves at 59_000 + 60s: that is the Retry-After.
        assert_eq!(e.reset, Duration::from_millis(59_000 + 60_000 - 59_500));
        // Across the minute boundary the old requests still count.
        assert!(w.try_take(100_000, 1, 10).is_err());
        assert!(
            w.try_take(119_000, 1, 10).is_ok(),
            "the first entry has left"
        );
        assert!(w.try_take(119_000, 1, 10).is_err());
        assert_eq!(w.try_take(200_000, 10, 10).unwrap().remaining, 0);
    }

    #[test]
    fn tokens_reserve_then_reconcile() {
        let w = Window::new(Duration::from_secs(60));
        let q = w.try_take(0, 800, 1000).unwrap();
        assert!(
            w.try_take(0, 300, 1000).is_err(),
            "reservation counts at once"
        );
        w.adjust(0, q.ticket, -600); // the answer used 200, not 800
        assert_eq!(w.try_take(0, 300, 1000).unwrap().remaining, 500);
        let big = w.try_take(1, 500, 1000).unwrap();
        w.adjust(2, big.ticket, -500); // a failed request gives it all back
        assert_eq!(w.try_take(3, 500, 1000).unwrap().remaining, 0);
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
