//! Intake: the client's body, read whole (bounded by `max_body_bytes`,
//! `Expect: 100-continue` answered), and what it asks for (`Ask`).

mod ask;
pub mod peek;

pub use ask::Ask;

use crate::proxy::ctx::RequestCtx;
use bytes::Bytes;
use bytes::BytesMut;
use pingora_core::ErrorType;
use pingora_core::protocols::http::ServerSession as Session;
use std::time::Instant;

/// What reading the client's body gave.
pub enum ClientBody {
    Whole(Bytes),
    /// Over `max_body_bytes`.
    TooLarge,
    /// A body the client framed badly or sent too slowly: answered with this
    /// status and message, and the connection closed (its framing is lost).
    Refused(u16, String),
}

/// The answer to a failed client body read: a broken chunked framing is the
/// client's error (400), a read that timed out is 408 (nginx's
/// `client_body_timeout`); `None` for anything else (the client went away).
pub fn body_read_refusal(e: &pingora_core::Error) -> Option<(u16, String)> {
    match e.etype() {
        ErrorType::ReadTimedout => Some((408, "request body timed out".into())),
        ErrorType::Custom("InvalidChunk") => {
            Some((400, "request body has malformed chunked encoding".into()))
        }
        _ => None,
    }
}

/// Read the client's body, bounded by `limit`.
pub async fn read_body(
    s: &mut Session,
    ctx: &mut RequestCtx,
    limit: u64,
) -> pingora_core::Result<ClientBody> {
    if let Some(len) = s
        .req_header()
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit
    {
        return Ok(ClientBody::TooLarge);
    }
    let expects_continue = s
        .req_header()
        .headers
        .get("expect")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        s.write_continue_response().await?;
    }
    let mut buf = BytesMut::new();
    let t = Instant::now();
    // Each read waits at most the pause limit or what the minimum rate leaves
    // (`body_rate`); timed here, not by the session, so HTTP/2 (which Pingora
    // reads with no timeout) is bounded alike.
    let mut clock = crate::proxy::body_rate::BodyClock::new(
        ctx.snap.client_body_timeout,
        ctx.snap.client_body_min_rate,
        t,
    );
    let r: pingora_core::Result<Read> = async {
        loop {
            let (wait, rule) = clock.next_wait(Instant::now());
            let Ok(read) = pingora_timeout::timeout(wait, s.read_request_body()).await else {
                return Ok(Read::Slow(rule));
            };
            let Some(chunk) = read? else {
                return Ok(Read::Whole);
            };
            if (buf.len() + chunk.len()) as u64 > limit {
                return Ok(Read::TooLarge);
            }
            clock.received(chunk.len());
            buf.extend_from_slice(&chunk);
        }
    }
    .await;
    ctx.client_wait += t.elapsed();
    let refused = |s: &mut Session, status: u16, msg: String| {
        // The body's framing is lost: the connection ends after the answer.
        s.set_keepalive(None);
        Ok(ClientBody::Refused(status, msg))
    };
    match r {
        Ok(Read::Whole) => Ok(ClientBody::Whole(buf.freeze())),
        Ok(Read::TooLarge) => Ok(ClientBody::TooLarge),
        Ok(Read::Slow(rule)) => {
            crate::metrics::client_timeout(rule.phase());
            refused(s, 408, clock.message(rule))
        }
        Err(e) => match body_read_refusal(&e) {
            Some((status, msg)) => {
                if status == 408 {
                    crate::metrics::client_timeout("body");
                }
                refused(s, status, msg)
            }
            None => Err(e.into_down()),
        },
    }
}

/// How a body read ended, short of an error.
enum Read {
    Whole,
    TooLarge,
    Slow(crate::proxy::body_rate::Limit),
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_core::Error;

    #[test]
    fn client_body_failures_are_answered_by_kind() {
        let chunk = Error::explain(
            ErrorType::Custom("InvalidChunk"),
            "Invalid chunked encoding",
        );
        assert_eq!(body_read_refusal(&chunk).map(|r| r.0), Some(400));
        let slow = Error::explain(ErrorType::ReadTimedout, "reading body, timeout: 1s");
        assert_eq!(body_read_refusal(&slow).map(|r| r.0), Some(408));
        // A client that went away gets no answer.
        for gone in [ErrorType::ConnectionClosed, ErrorType::ReadError] {
            assert_eq!(body_read_refusal(&Error::new(gone)).map(|r| r.0), None);
        }
    }
}
