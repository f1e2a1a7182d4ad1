//! The live event feed's channel: request completions, reloads, key changes
//! and state changes (circuit opened, credential resting, Redis down/up) go
//! into one tokio broadcast channel that `admin::events` streams to its
//! listeners. It sits below everything that reports, so limits and the proxy
//! emit without knowing the admin API. Nothing is serialized when no one
//! listens, so the AI path pays one atomic load per request.

use once_cell::sync::Lazy;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::broadcast;

/// A listener slower than this many events loses the oldest (and is told).
const BACKLOG: usize = 1024;

static TX: Lazy<broadcast::Sender<Arc<str>>> = Lazy::new(|| broadcast::channel(BACKLOG).0);

/// A new listener: every event from now on.
pub fn subscribe() -> broadcast::Receiver<Arc<str>> {
    TX.subscribe()
}

pub fn listening() -> bool {
    TX.receiver_count() > 0
}

/// Every finished request counted (the feed's `totals` events): three
/// relaxed atomic adds per request, whoever listens.
static REQUESTS: AtomicU64 = AtomicU64::new(0);
static ERRORS: AtomicU64 = AtomicU64::new(0);
static TOKENS: AtomicU64 = AtomicU64::new(0);

/// Most `request` events a second: the live tail is a sample under load, so
/// an open dashboard costs the AI path the same at 20 or 20,000 requests/s;
/// the counts come from `totals`.
pub const REQUEST_EVENTS_PER_SECOND: u64 = 20;
/// The second the cap counts in, and its count so far (second << 32 | n).
static CAP: AtomicU64 = AtomicU64::new(0);

/// Count one finished request.
pub fn count_request(error: bool, tokens: u64) {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    if error {
        ERRORS.fetch_add(1, Ordering::Relaxed);
    }
    TOKENS.fetch_add(tokens, Ordering::Relaxed);
}

/// Requests, errors and tokens counted since start.
pub fn totals() -> [u64; 3] {
    [&REQUESTS, &ERRORS, &TOKENS].map(|a| a.load(Ordering::Relaxed))
}

/// Whether this second still has room for a `request` event (`now_ms`).
pub fn request_event_allowed(now_ms: u64) -> bool {
    let sec = now_ms / 1000;
    let mut cur = CAP.load(Ordering::Relaxed);
    loop {
        let (s, n) = (cur >> 32, cur & 0xffff_ffff);
        let next = if s == sec & 0xffff_ffff {
            if n >= REQUEST_EVENTS_PER_SECOND {
                return false;
            }
            cur + 1
        } else {
            ((sec & 0xffff_ffff) << 32) | 1
        };
        match CAP.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(c) => cur = c,
        }
    }
}

/// Send `{type, time_ms, data}` to every listener (`data` built only then).
pub fn emit(kind: &str, data: impl FnOnce() -> Value) {
    if !listening() {
        return;
    }
    let v = json!({"type": kind, "time_ms": crate::process::unix_ms(), "data": data()});
    let _ = TX.send(Arc::from(format!("event: {kind}\ndata: {v}\n\n")));
}

/// A provider's circuit opened (`circuit` event).
pub fn circuit_opened(provider: &str) {
    emit("circuit", || json!({"provider": provider, "open": true}));
}

/// A provider credential (by index) rests for `d` (`credential` event).
pub fn credential_resting(provider: &str, index: usize, d: Duration) {
    emit(
        "credential",
        || json!({"provider": provider, "index": index, "resting_seconds": d.as_secs_f64()}),
    );
}

/// The shared limit store went down or came back (`store` event).
pub fn store_state(backend: &str, up: bool) {
    emit("store", || json!({"backend": backend, "up": up}));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_events_are_capped_per_second() {
        // A second far from the wall clock, so no other test shares it.
        let t = 7_000_000_000_000;
        let allowed = (0..50).filter(|_| request_event_allowed(t)).count() as u64;
        assert_eq!(allowed, REQUEST_EVENTS_PER_SECOND);
        assert!(
            request_event_allowed(t + 1000),
            "the next second has room again"
        );
    }
}
