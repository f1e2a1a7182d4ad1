//! Intake: the client's body, read whole (bounded by `max_body_bytes`,
//! `Expect: 100-continue` answered), and what it asks for (`Ask`).

mod ask;
pub mod peek;

pub use ask::Ask;

use super::Entry;
use super::{Step, answered};
use crate::auth;
use crate::providers::Op;
use crate::proxy::body_rate::BodyClock;
use crate::proxy::ctx::RequestCtx;
use crate::proxy::respond;
use crate::routing::{self, GeminiPath, Route};
use crate::translate::Format;
use bytes::{Bytes, BytesMut};
use peek::Peeked;
use pingora_core::ErrorType;
use pingora_core::protocols::http::ServerSession as Session;
use std::time::Instant;

/// Read the body and find what it asks for: the `Ask`, and the models
/// to try in order (its `model`, the Gemini path's, or the `models` list).
pub async fn intake(
    s: &mut Session,
    ctx: &mut RequestCtx,
    entry: &Entry,
) -> Step<(Ask, Vec<String>)> {
    let efmt = entry.efmt;
    let (ingress, gemini) = match &ctx.route {
        Route::Chat { format, gemini } | Route::CountTokens { format, gemini } => {
            (*format, gemini.clone())
        }
        _ => (Format::OpenAiChat, None),
    };
    let limit = ctx.snap.max_body_bytes;
    let body = match read_body(s, ctx, limit).await? {
        ClientBody::Whole(b) => b,
        ClientBody::TooLarge => {
            let msg = format!("request body is larger than the limit of {limit} bytes");
            return answered(respond::error(s, ctx, efmt, 413, &msg, None).await);
        }
        ClientBody::Refused(status, msg) => {
            return answered(respond::error(s, ctx, efmt, status, &msg, None).await);
        }
    };
    let peeked = match peek::peek(&body) {
        Ok(p) => p,
        Err(b) => {
            let r = respond::error(s, ctx, efmt, 400, &b.message, b.param.as_deref()).await;
            return answered(r);
        }
    };
    let Some((models, stream)) = models(s, ctx, efmt, ingress, gemini.as_ref(), &peeked).await?
    else {
        return Ok(None);
    };
    if let Some(msg) = models
        .iter()
        .find_map(|m| routing::check_model_name(m).err())
    {
        return answered(respond::error(s, ctx, efmt, 400, &msg, Some("model")).await);
    }
    ctx.model.clone_from(&models[0]);
    let op = match ctx.route {
        Route::Embeddings => Op::Embeddings,
        Route::CountTokens { .. } => Op::CountTokens,
        Route::Completions => Op::Completions { stream },
        _ => Op::Chat { stream },
    };
    let gemini_query = gemini
        .as_ref()
        .map(|_| auth::strip_key_param(entry.query.as_deref().unwrap_or("")));
    Ok(Some((
        Ask::new(ingress, op, body, peeked, gemini_query),
        models,
    )))
}

/// The models asked for and whether to stream: from a Gemini path, a
/// `models` fallback list (OpenAI formats, when `model` is absent), or `model`.
async fn models(
    s: &mut Session,
    ctx: &mut RequestCtx,
    efmt: Format,
    ingress: Format,
    gemini: Option<&GeminiPath>,
    peeked: &Peeked,
) -> Step<(Vec<String>, bool)> {
    let fallback = match (gemini, &peeked.model, &peeked.models) {
        (None, None, Some(list))
            if matches!(ingress, Format::OpenAiChat | Format::OpenAiResponses) =>
        {
            if list.is_empty() || list.iter().any(String::is_empty) {
                let msg = "`models` must list model names";
                return answered(respond::error(s, ctx, efmt, 400, msg, Some("models")).await);
            }
            Some(list.clone())
        }
        _ => None,
    };
    Ok(Some(match (gemini, fallback) {
        (Some(g), _) => (vec![g.model.clone()], g.stream),
        (None, Some(list)) => (list, peeked.stream),
        (None, None) => match &peeked.model {
            Some(m) if !m.is_empty() => (vec![m.clone()], peeked.stream),
            _ => {
                let msg = "missing required field `model`";
                return answered(respond::error(s, ctx, efmt, 400, msg, Some("model")).await);
            }
        },
    }))
}

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
    let mut clock = BodyClock::new(
        ctx.snap.client_body_timeout,
        ctx.snap.client_body_min_rate,
        t,
    );
    let r = read_chunks(s, &mut clock, &mut buf, limit).await;
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

/// The body's chunks into `buf`, each read bounded by `clock`.
async fn read_chunks(
    s: &mut Session,
    clock: &mut BodyClock,
    buf: &mut BytesMut,
    limit: u64,
) -> pingora_core::Result<Read> {
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
