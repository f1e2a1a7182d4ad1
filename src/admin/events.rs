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
    let mut seen = crate::events::totals();
    let mut due = tokio::time::Instant::now() + TOTALS_EVERY;
    loop {
        // Checked every second and before every write (a busy feed never idles).
        if !allowed() {
            let _ = s
                .write_response_body(Bytes::from_static(EXPIRED), false)
                .await;
            break;
        }
        let mut b = Vec::new();
        match tokio::time::timeout_at(due, rx.recv()).await {
            Ok(Ok(e)) => {
                // Under load, events arrive faster than one write each would
                // be cheap: what is already waiting goes out in one write.
                b.extend_from_slice(e.as_bytes());
                drain_ready(&mut rx, &mut b);
            }
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                b.extend_from_slice(lagged(n).as_bytes())
            }
            Ok(Err(broadcast::error::RecvError::Closed)) => break,
            Err(_) if crate::upgrade::draining() => break,
            Err(_) => {}
        }
        let now = tokio::time::Instant::now();
        if now >= due {
            due = (due + TOTALS_EVERY).max(now);
            let t = crate::events::totals();
            if t != seen {
                b.extend_from_slice(totals_event(seen, t).as_bytes());
                seen = t;
            } else if b.is_empty() {
                quiet += TOTALS_EVERY;
                if quiet >= KEEPALIVE {
                    b.extend_from_slice(b": keepalive\n\n");
                }
            }
        }
        if b.is_empty() {
            continue;
        }
        quiet = Duration::ZERO;
        // A write error is the client gone: the feed ends.
        if s.write_response_body(Bytes::from(b), false).await.is_err() {
            return Ok(());
        }
    }
    let _ = s.write_response_body(Bytes::new(), true).await;
    Ok(())
}

/// How often a feed gets a `totals` event (when anything was counted).
const TOTALS_EVERY: Duration = Duration::from_secs(1);

/// The requests, errors and tokens counted between two readings of
/// `events::totals`: the dashboard's live numbers, exact at any rate.
fn totals_event(from: [u64; 3], to: [u64; 3]) -> String {
    let [r, e, t] = [0, 1, 2].map(|i| to[i].saturating_sub(from[i]));
    let time = crate::process::unix_ms();
    format!(
        "event: totals\ndata: {{\"type\":\"totals\",\"time_ms\":{time},\"data\":{{\"requests\":{r},\"errors\":{e},\"tokens\":{t}}}}}\n\n"
    )
}

/// Most bytes gathered into one write of the feed.
const BATCH: usize = 64 * 1024;

fn lagged(n: u64) -> String {
    format!("event: lagged\ndata: {{\"missed\":{n}}}\n\n")
}

/// Append the events already waiting in `rx` to `b`, up to `BATCH` bytes.
fn drain_ready(rx: &mut broadcast::Receiver<std::sync::Arc<str>>, b: &mut Vec<u8>) {
    while b.len() < BATCH {
        match rx.try_recv() {
            Ok(e) => b.extend_from_slice(e.as_bytes()),
            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                b.extend_from_slice(lagged(n).as_bytes())
            }
            Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_events_go_out_together_in_order_and_bounded() {
        let (tx, mut rx) = broadcast::channel::<std::sync::Arc<str>>(16);
        for i in 0..3 {
            tx.send(std::sync::Arc::from(format!("data: {i}\n\n")))
                .unwrap();
        }
        let mut b = Vec::new();
        drain_ready(&mut rx, &mut b);
        assert_eq!(b, b"data: 0\n\ndata: 1\n\ndata: 2\n\n");
        // A full batch stops taking more.
        let big: std::sync::Arc<str> = std::sync::Arc::from("x".repeat(BATCH));
        tx.send(big).unwrap();
        tx.send(std::sync::Arc::from("data: after\n\n")).unwrap();
        let mut b = Vec::new();
        drain_ready(&mut rx, &mut b);
        assert_eq!(b.len(), BATCH);
        let mut b = Vec::new();
        drain_ready(&mut rx, &mut b);
        assert_eq!(b, b"data: after\n\n");
        // Missed events are reported, not silently skipped.
        for i in 0..20 {
            tx.send(std::sync::Arc::from(format!("data: {i}\n\n")))
                .unwrap();
        }
        let mut b = Vec::new();
        drain_ready(&mut rx, &mut b);
        assert!(
            String::from_utf8(b)
                .unwrap()
                .starts_with("event: lagged\ndata: {\"missed\":4}")
        );
    }
}
