//! What every limit store speaks: the answer of a check-and-reserve
//! ([`Admit`]), its failure ([`StoreError`]) and the clocks counters are kept
//! by. The three primitives every limit is built on (sliding-log windows,
//! concurrency slots, fixed-period counters) are implemented twice, in
//! `memory.rs` and `redis.rs`; `backend.rs` picks one.
//!
//! Names are plain strings built by the limiter (`key:team-a:rpm`,
//! `target:openai/gpt-4o:rpd`, `global:rpm`, `key:team-a:usd:day:2026-11-23`);
//! amounts are integers (requests, tokens, micro-USD).

/// The answer of a check-and-reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Taken. `remaining` = limit - total after this take; `reset_ms` = until
    /// the window (or period) is empty again; `ticket` names the entry for
    /// `window_adjust`.
    Yes {
        remaining: u64,
        reset_ms: u64,
        ticket: u64,
    },
    /// Refused; nothing was taken. `retry_after_ms` = until this amount would fit.
    No { remaining: u64, retry_after_ms: u64 },
}

impl Admit {
    pub fn remaining(&self) -> u64 {
        match *self {
            Admit::Yes { remaining, .. } | Admit::No { remaining, .. } => remaining,
        }
    }

    /// Admitted: until the window is empty; refused: until the amount fits.
    pub fn reset_ms(&self) -> u64 {
        match *self {
            Admit::Yes { reset_ms, .. } => reset_ms,
            Admit::No { retry_after_ms, .. } => retry_after_ms,
        }
    }

    pub fn ticket(&self) -> Option<u64> {
        match *self {
            Admit::Yes { ticket, .. } => Some(ticket),
            Admit::No { .. } => None,
        }
    }
}

/// A store that could not answer (unreachable, timed out, bad reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The process clock windows use (monotonic).
pub fn now_ms() -> u64 {
    crate::resilience::now_ms()
}

/// Wall-clock time, for calendar periods.
pub fn unix_ms() -> u64 {
    crate::process::unix_ms()
}
