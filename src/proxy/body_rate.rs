//! How long the next read of a client's request body may wait: the pause
//! limit (`client_body_timeout_seconds`, nginx's `client_body_timeout`) and a
//! minimum rate (`client_body_min_rate`, Apache mod_reqtimeout's
//! `body=…,MinRate=…`): the body's deadline starts `client_body_timeout`
//! after its first byte is awaited and moves 1 s later for every `min_rate`
//! bytes received. A body trickled in small pieces, each within the pause
//! limit, still ends at its deadline.
//!
//! Plain clock arithmetic on given instants, used by both body paths: the AI
//! endpoints' `pipeline::intake::read_body` and the proxied routes'
//! `request_body_filter` (`pass`).

use std::time::{Duration, Instant};

/// Which rule ends a body read that times out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The pause between two reads (`aigate_client_timeouts_total{phase="body"}`).
    Pause,
    /// The minimum rate (`phase="body_rate"`).
    Rate,
}

impl Limit {
    /// The `phase` label of `aigate_client_timeouts_total`.
    pub fn phase(self) -> &'static str {
        match self {
            Limit::Pause => "body",
            Limit::Rate => "body_rate",
        }
    }
}

#[derive(Debug, Clone)]
pub struct BodyClock {
    pause: Duration,
    /// Bytes per second; 0: no rate rule.
    min_rate: u64,
    /// The rate deadline (unused with `min_rate` 0).
    deadline: Instant,
    /// The rule that bounded the last wait handed out.
    last: Limit,
}

impl BodyClock {
    /// The body's first byte is awaited from `now`.
    pub fn new(pause: Duration, min_rate: u64, now: Instant) -> Self {
        BodyClock {
            pause,
            min_rate,
            deadline: now + pause,
            last: Limit::Pause,
        }
    }

    /// `n` more bytes arrived: the deadline moves `n / min_rate` seconds.
    pub fn received(&mut self, n: usize) {
        if self.min_rate > 0 && n > 0 {
            let nanos = (n as u128 * 1_000_000_000) / u128::from(self.min_rate);
            self.deadline += Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        }
    }

    /// How long the next read may wait from `now`, and which rule bounds it
    /// (remembered for `last`). Zero once the rate deadline has passed.
    pub fn next_wait(&mut self, now: Instant) -> (Duration, Limit) {
        let left = self.deadline.saturating_duration_since(now);
        self.last = if self.min_rate > 0 && left < self.pause {
            Limit::Rate
        } else {
            Limit::Pause
        };
        match self.last {
            Limit::Rate => (left, Limit::Rate),
            Limit::Pause => (self.pause, Limit::Pause),
        }
    }

    /// Whether the rate deadline has passed at `now`.
    pub fn too_slow(&self, now: Instant) -> bool {
        self.min_rate > 0 && now >= self.deadline
    }

    /// The rule that bounded the last wait handed out by `next_wait`.
    pub fn last(&self) -> Limit {
        self.last
    }

    /// The 408 message for a body that `limit` ended.
    pub fn message(&self, limit: Limit) -> String {
        match limit {
            Limit::Pause => "request body timed out".into(),
            Limit::Rate => format!(
                "request body timed out: sent slower than {} bytes/s",
                self.min_rate
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_first_wait_is_the_pause_limit() {
        let t = Instant::now();
        let mut c = BodyClock::new(10 * S, 500, t);
        assert_eq!(c.next_wait(t), (10 * S, Limit::Pause));
        assert!(!c.too_slow(t + 9 * S));
        // Nothing received: the deadline is the pause limit itself.
        assert!(c.too_slow(t + 10 * S));
    }

    #[test]
    fn every_min_rate_bytes_buy_one_second() {
        let t = Instant::now();
        let mut c = BodyClock::new(10 * S, 500, t);
        c.received(500);
        c.received(250);
        // 10 s + 1.5 s.
        assert!(!c.too_slow(t + Duration::from_millis(11_499)));
        assert!(c.too_slow(t + Duration::from_millis(11_500)));
        // 5 s in, the deadline is 6.5 s away: the pause (10 s) is longer.
        assert_eq!(
            c.next_wait(t + 5 * S),
            (Duration::from_millis(6_500), Limit::Rate)
        );
        assert_eq!(c.last(), Limit::Rate);
        // Early on, the pause limit is the shorter one.
        assert_eq!(c.next_wait(t + S), (10 * S, Limit::Pause));
        assert_eq!(c.last(), Limit::Pause);
    }

    #[test]
    fn a_trickle_within_the_pause_limit_still_ends() {
        // One byte every 0.5 s, each well within a 2 s pause limit, at a
        // minimum rate of 10 bytes/s: the deadline (2 s + n/10 s) falls
        // behind the clock after 2.5 s.
        let t = Instant::now();
        let mut c = BodyClock::new(2 * S, 10, t);
        let mut now = t;
        let mut ended = None;
        for i in 1..100 {
            now += Duration::from_millis(500);
            if c.too_slow(now) {
                ended = Some(i);
                break;
            }
            c.received(1);
        }
        assert_eq!(ended, Some(5));
        assert_eq!(c.next_wait(now), (Duration::ZERO, Limit::Rate));
    }

    #[test]
    fn a_body_at_the_minimum_rate_never_ends() {
        let t = Instant::now();
        let mut c = BodyClock::new(2 * S, 1000, t);
        for i in 1..=600u32 {
            c.received(1000);
            assert!(!c.too_slow(t + S * i), "{i}");
        }
    }

    #[test]
    fn rate_zero_is_only_the_pause_limit() {
        let t = Instant::now();
        let mut c = BodyClock::new(2 * S, 0, t);
        c.received(1);
        assert!(!c.too_slow(t + 3600 * S));
        assert_eq!(c.next_wait(t + 3600 * S), (2 * S, Limit::Pause));
        assert_eq!(c.message(Limit::Pause), "request body timed out");
    }
}
