//! Keep-alive connections while the process drains (upgrade or SIGTERM): no
//! client may send a request on a connection that is closed under it.
//!
//! Two cases. An answer whose header goes out while draining says
//! `Connection: close` (`close_if_draining`). An answer whose header went out
//! before (a long stream in flight at the upgrade) promised keep-alive; once
//! the process stops accepting, Pingora closes such a connection right after
//! the answer, and a client that sends its next request in that instant gets
//! a reset (seen in the zero-drop tests). So the connection is held a moment
//! for that request (`linger_for_next_request`), which Pingora then serves
//! here with `Connection: close`.

use pingora_core::protocols::http::ServerSession as Session;
use std::future::Future;
use std::task::Poll;
use std::time::Duration;

/// The longest a connection is held for a next request that is not coming
/// (or, rarely, for one whose first byte was already there when the wait
/// began: that one is served when the wait ends).
const LINGER: Duration = Duration::from_millis(500);

/// Before a response header goes out.
pub fn close_if_draining(s: &mut Session) {
    if crate::upgrade::draining() {
        s.set_keepalive(None);
    }
}

/// After an answer is complete and logged: when this process no longer
/// accepts but the answer promised keep-alive, wait until the client sends
/// its next request (its first byte is kept for the next session on this
/// connection), closes, or `LINGER` passes. `shutting_down`: the service
/// has stopped accepting.
pub async fn linger_for_next_request(down: &mut Session, shutting_down: bool) {
    if !shutting_down || down.response_written().is_none() {
        return;
    }
    if !down.as_http1().is_some_and(|h| h.will_keepalive()) || !down.is_body_done() {
        return;
    }
    // Pingora's idle read: with pipelining on, a byte that arrives is stashed
    // as the start of the next request (then the read stays pending); a close
    // is an error. It is woken once for either, so the first wake-up ends the
    // wait (a spurious one only ends it early, which is the plain close).
    down.set_pipelining_enabled(true);
    let mut idle = Box::pin(down.read_body_or_idle(true));
    let mut polls = 0u32;
    let woken = std::future::poll_fn(|cx| {
        polls += 1;
        match idle.as_mut().poll(cx) {
            Poll::Pending if polls == 1 => Poll::Pending,
            _ => Poll::Ready(()),
        }
    });
    let _ = tokio::time::timeout(LINGER, woken).await;
}
