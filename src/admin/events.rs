//! `GET /admin/events`: a live feed (SSE) of request completions, reloads,
//! key changes and state changes (circuit opened, credential resting, Redis
//! down/up), read from the channel in `crate::events`.

use crate::proxy::ctx::RequestCtx;
use bytes::Bytes;
use pingora_core::protocols::http::ServerSession;
use pingora_http::ResponseHeader;
use std::time::Duration;
use tokio::sync::broadcast;

const KEEPALIVE: Duration = Duration::from_secs(15);
/// The last event of a feed whose session expired (the dashboard logs in again).
const EXPIRED: &[u8] = b"event: expired\ndata: {\"type\":\"expired\"}\n\n";

/// Stream events to one client until it leaves, the process drains or
/// `allowed` says no more (the session that opened the feed expired): an
/// open feed must not outlive the credential that opened it.
pub async fn stream(
    s: &mut ServerSession,
    ctx: &mut RequestCtx,
    allowed: impl Fn() -> bool,
) -> pingora_core::Result<()> {
    let mut rx = crate::events::subscribe();
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
