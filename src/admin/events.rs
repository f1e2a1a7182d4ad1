//! `GET /admin/events`: a live feed (SSE) of request completions, reloads,
//! key changes and state changes (circuit opened, credential resting, Redis
//! down/up), through one tokio broadcast channel. Nothing is serialized when
//! no one listens, so the AI path pays one atomic load per request.

use crate::proxy::ctx::RequestCtx;
use bytes::Bytes;
use once_cell::sync::Lazy;
use pingora_core::protocols::http::ServerSession;
use pingora_http::ResponseHeader;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// A listener slower than this many events loses the oldest (and is told).
const BACKLOG: usize = 1024;
const KEEPALIVE: Duration = Duration::from_secs(15);
/// The last event of a feed whose session expired (the dashboard logs in again).
const EXPIRED: &[u8] = b"event: expired\ndata: {\"type\":\"expired\"}\n\n";

static TX: Lazy<broadcast::Sender<Arc<str>>> = Lazy::new(|| broadcast::channel(BACKLOG).0);

pub fn listening() -> bool {
    TX.receiver_count() > 0
}

/// Send `{type, time_ms, data}` to every listener (`data` built only then).
pub fn emit(kind: &str, data: impl FnOnce() -> Value) {
    if !listening() {
        return;
    }
    let v = json!({"type": kind, "time_ms": crate::limits::store::unix_ms(), "data": data()});
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

/// Stream events to one client until it leaves, the process drains or
/// `allowed` says no more (the session that opened the feed expired): an
/// open feed must not outlive the credential that opened it.
pub async fn stream(
    s: &mut ServerSession,
    ctx: &mut RequestCtx,
    allowed: impl Fn() -> bool,
) -> pingora_core::Result<()> {
    let mut rx = TX.subscribe();
    let mut h = ResponseHeader::build(200, Some(5))?;
    h.insert_header("content-type", "text/event-stream")?;
    h.insert_header("cache-control", "no-cache")?;
    h.insert_header("transfer-encoding", "chunked")?;
    h.insert_header("x-request-id", &ctx.request_id)?;
    ctx.status = 200;
    s.write_response_header(Box::new(h)).await?;
    s.write_response_body(Bytes::from_static(b": aigate events\n\n"), false)
        .await?;
    let mut quiet = Duration::ZERO;
    let tick = Duration::from_secs(1);
    loop {
        // Checked every tick and before every event (a busy feed never idles).
        if !allowed() {
            let _ = s
                .write_response_body(Bytes::from_static(EXPIRED), false)
                .await;
            break;
        }
        let chunk = match tokio::time::timeout(tick, rx.recv()).await {
            Ok(Ok(e)) => Bytes::copy_from_slice(e.as_bytes()),
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                Bytes::from(format!("event: lagged\ndata: {{\"missed\":{n}}}\n\n"))
            }
            Ok(Err(broadcast::error::RecvError::Closed)) => break,
            Err(_) => {
                if crate::upgrade::draining() {
                    break;
                }
                quiet += tick;
                if quiet < KEEPALIVE {
                    continue;
                }
                Bytes::from_static(b": keepalive\n\n")
            }
        };
        quiet = Duration::ZERO;
        // A write error is the client gone: the feed ends.
        if s.write_response_body(chunk, false).await.is_err() {
            return Ok(());
        }
    }
    let _ = s.write_response_body(Bytes::new(), true).await;
    Ok(())
}
