//! Retry policy, credential cooldowns and per-provider circuit breaking, as
//! plain state machines over atomics (no locks on the request path).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Milliseconds since the process started: a cheap monotonic clock for atomics.
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Upstream attempts per request, across credentials and targets.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub multiplier: f64,
    /// Upstream statuses that move on to the next credential / target.
    pub on_status: Vec<u16>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(2000),
            multiplier: 2.0,
            on_status: vec![429, 500, 502, 503, 504, 520, 522, 524, 529],
        }
    }
}

impl RetryPolicy {
    pub fn retries_status(&self, status: u16) -> bool {
        self.on_status.contains(&status)
    }

    /// Exponential backoff with full jitter before retry number `n` (1-based):
    /// uniform in [0, min(max, base * multiplier^(n-1))].
    pub fn backoff(&self, n: u32, unit: f64) -> Duration {
        let exp = self
            .multiplier
            .max(1.0)
            .powi(n.saturating_sub(1).min(30) as i32);
        let cap = (self.base_delay.as_secs_f64() * exp).min(self.max_delay.as_secs_f64());
        Duration::from_secs_f64(cap * unit.clamp(0.0, 1.0))
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CooldownPolicy {
    /// Rest after a 429 that names no Retry-After.
    pub rate_limited: Duration,
    /// Rest after 401/403: the key is likely revoked or out of quota.
    pub auth_failed: Duration,
}

impl Default for CooldownPolicy {
    fn default() -> Self {
        CooldownPolicy {
            rate_limited: Duration::from_secs(30),
            auth_failed: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the circuit (0 = never).
    pub failure_threshold: u32,
    pub open_for: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
        }
    }
}

/// When each credential of a provider may be used again.
#[derive(Debug)]
pub struct CredentialRest {
    until: Vec<AtomicU64>,
    /// Logged once per disablement, not per request.
    logged: Vec<AtomicBool>,
}

impl CredentialRest {
    pub fn new(n: usize) -> Self {
        CredentialRest {
            until: (0..n).map(|_| AtomicU64::new(0)).collect(),
            logged: (0..n).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    pub fn resting(&self, i: usize, now: u64) -> bool {
        self.until
            .get(i)
            .is_some_and(|u| u.load(Ordering::Relaxed) > now)
    }

    pub fn resting_count(&self, now: u64) -> usize {
        (0..self.until.len())
            .filter(|&i| self.resting(i, now))
            .count()
    }

    pub fn all_resting(&self, now: u64) -> bool {
        !self.until.is_empty() && self.resting_count(now) == self.until.len()
    }

    /// Rest credential `i` for `d`; returns true when this is news worth a log line.
    pub fn rest(&self, i: usize, d: Duration, now: u64) -> bool {
        let Some(u) = self.until.get(i) else {
            return false;
        };
        u.fetch_max(now + d.as_millis() as u64, Ordering::Relaxed);
        !self.logged[i].swap(true, Ordering::Relaxed)
    }

    pub fn ok(&self, i: usize) {
        if let Some(l) = self.logged.get(i) {
            l.store(false, Ordering::Relaxed);
        }
    }
}

/// Consecutive-failure circuit breaker with one half-open probe.
#[derive(Debug, Default)]
pub struct Breaker {
    failures: AtomicU32,
    open_until: AtomicU64,
    probing: AtomicBool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Closed,
    /// The one request allowed through after the open period.
    Probe,
    Open,
}

impl Breaker {
    pub fn admit(&self, now: u64) -> Admit {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Admit::Closed;
        }
        if now < until {
            return Admit::Open;
        }
        if self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            Admit::Probe
        } else {
            Admit::Open
        }
    }

    pub fn is_open(&self, now: u64) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        until != 0 && (now < until || self.probing.load(Ordering::Relaxed))
    }

    pub fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.open_until.store(0, Ordering::Release);
        self.probing.store(false, Ordering::Release);
    }

    /// Returns true when this failure opened the circuit.
    pub fn failure(&self, p: &BreakerPolicy, now: u64) -> bool {
        if p.failure_threshold == 0 {
            return false;
        }
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let was_probe = self.probing.swap(false, Ordering::AcqRel);
        if n >= p.failure_threshold || was_probe {
            self.open_until
                .store(now + p.open_for.as_millis() as u64 + 1, Ordering::Release);
            return true;
        }
        false
    }
}

/// Seconds (or an HTTP date we don't parse: then None) from `Retry-After`.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    v.parse::<u64>().ok().map(Duration::from_secs).or_else(|| {
        v.parse::<f64>()
            .ok()
            .filter(|s| *s >= 0.0 && s.is_finite())
            .map(Duration::from_secs_f64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_full_jitter() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(2, 1.0), Duration::from_millis(200));
        assert_eq!(p.backoff(10, 1.0), Duration::from_millis(2000));
        assert_eq!(p.backoff(3, 0.0), Duration::ZERO);
        assert_eq!(p.backoff(2, 0.5), Duration::from_millis(100));
        assert!(p.retries_status(529) && !p.retries_status(400));
    }

    #[test]
    fn credentials_rest_and_recover() {
        let r = CredentialRest::new(2);
        assert!(!r.resting(0, 10));
        assert!(r.rest(0, Duration::from_millis(100), 10));
        assert!(!r.rest(0, Duration::from_millis(50), 20), "logged once");
        assert!(r.resting(0, 109) && !r.resting(0, 110));
        assert!(!r.all_resting(50));
        r.rest(1, Duration::from_millis(100), 10);
        assert!(r.all_resting(50));
        assert_eq!(r.resting_count(200), 0);
    }

    #[test]
    fn breaker_opens_probes_and_closes() {
        let p = BreakerPolicy {
            failure_threshold: 2,
            open_for: Duration::from_millis(100),
        };
        let b = Breaker::default();
        assert_eq!(b.admit(0), Admit::Closed);
        assert!(!b.failure(&p, 0));
        assert!(b.failure(&p, 0));
        assert_eq!(b.admit(50), Admit::Open);
        assert_eq!(b.admit(200), Admit::Probe);
        assert_eq!(b.admit(200), Admit::Open, "only one probe");
        assert!(b.failure(&p, 200), "failed probe re-opens");
        assert_eq!(b.admit(250), Admit::Open);
        assert_eq!(b.admit(400), Admit::Probe);
        b.success();
        assert_eq!(b.admit(400), Admit::Closed);
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
