//! The live event feed's channel: request completions, reloads, key changes
//! and state changes (circuit opened, credential resting, Redis down/up) go
//! into one tokio broadcast channel that `admin::events` streams to its
//! listeners. It sits below everything that reports, so limits and the proxy
//! emit without knowing the admin API. Nothing is serialized when no one
//! listens, so the AI path pays one atomic load per request.

use once_cell::sync::Lazy;
use serde_json::{Value, json};
use std::sync::Arc;
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
