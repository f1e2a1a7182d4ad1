//! An upstream answer's body read by the client's request: chunk by chunk
//! under the provider's idle and total time limits, or whole, capped and held
//! in the process's buffer budget (`max_buffered_bytes`).

use super::outcome::{Failure, classify, get_str};
use crate::providers::Provider;
use crate::proxy::budget::{BUFFERED, Held};
use crate::proxy::ctx::RequestCtx;
use crate::proxy::subreq::Answer;
use bytes::{Bytes, BytesMut};
use std::time::Instant;

/// Upstream error bodies and non-streaming answers are read whole; cap them.
pub(crate) const MAX_ERROR_BODY: usize = 1024 * 1024;

pub(crate) const MAX_ANSWER_BODY: usize = 64 * 1024 * 1024;

/// Read a whole upstream body (bounded by `cap`), with the idle and total
/// timeouts, held in the process's buffer budget (`max_buffered_bytes`) until
/// the returned hold is dropped.
pub(crate) async fn read_all(
    up: &mut Answer,
    ctx: &mut RequestCtx,
    p: &Provider,
    cap: usize,
) -> Result<(Bytes, Held), Failure> {
    let limit = ctx.snap.max_buffered_bytes;
    let mut held = BUFFERED.hold();
    let too_large = || Failure::Io(format!("upstream body larger than {cap} bytes"));
    // A declared length is taken from the budget (and allocated) at once: no
    // regrowth copies, and a refusal before the body is read.
    let declared = get_str(up.head(), "content-length").and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(n) = declared {
        if n > cap as u64 {
            return Err(too_large());
        }
        if !held.grow_to(n, limit) {
            return Err(over_budget(limit));
        }
    }
    // Most answers come in one read: that chunk is the body, uncopied.
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    loop {
        match next_chunk(up, ctx, p).await? {
            Some(chunk) => {
                let held_now = first.as_ref().map_or(0, Bytes::len);
                let total = held_now + buf.len() + chunk.len();
                if total > cap {
                    return Err(too_large());
                }
                if !held.grow_to(total as u64, limit) {
                    return Err(over_budget(limit));
                }
                match first.take() {
                    None if buf.is_empty() => first = Some(chunk),
                    held_chunk => {
                        if buf.is_empty() {
                            buf.reserve(declared.map_or(0, |n| n as usize).max(total));
                        }
                        if let Some(h) = held_chunk {
                            buf.extend_from_slice(&h);
                        }
                        buf.extend_from_slice(&chunk);
                    }
                }
            }
            None => return Ok((first.unwrap_or_else(|| buf.freeze()), held)),
        }
    }
}

fn over_budget(limit: u64) -> Failure {
    Failure::Busy(format!(
        "the gateway is holding its limit of {limit} bytes of buffered answers; retry shortly"
    ))
}

/// The next upstream body chunk, bounded by the idle timeout and the total deadline.
pub(crate) async fn next_chunk(
    up: &mut Answer,
    ctx: &mut RequestCtx,
    p: &Provider,
) -> Result<Option<Bytes>, Failure> {
    let left = p.timeouts.total.saturating_sub(ctx.start.elapsed());
    let limit = p.timeouts.idle.min(left);
    let t = Instant::now();
    let r = pingora_timeout::timeout(limit, up.body()).await;
    ctx.upstream_wait += t.elapsed();
    match r {
        Err(_) => Err(Failure::Timeout("waiting for the upstream body".into())),
        Ok(Err(e)) => Err(classify(&e, "reading upstream body")),
        Ok(Ok(b)) => Ok(b),
    }
}
