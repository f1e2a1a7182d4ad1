//! A streamed answer relayed chunk by chunk: the head held back until the
//! first content, keepalive ticks while the upstream is quiet, an error
//! event when the upstream fails after content, and the stream's usage.

use super::write_body;
use crate::providers::Op;
use crate::providers::Provider;
use crate::providers::headers::client_response;
use crate::proxy::ctx::RequestCtx;
use crate::proxy::head::{self, Body, Marks};
use crate::proxy::pipeline::intake::Ask;
use crate::proxy::pipeline::outcome::{
    Attempt, Failure, answered_ok, classify, count_outcome, failure_text, status_failure,
};
use crate::proxy::pipeline::read::next_chunk;
use crate::proxy::subreq::{Answer, ready_now};
use crate::proxy::{respond, stream};
use crate::sse;
use crate::translate::{self, Format, StreamTranslator};
use bytes::Bytes;
use pingora_core::ErrorType;
use pingora_core::protocols::http::ServerSession as Session;
use pingora_http::ResponseHeader;
use std::time::Duration;

/// Gathering stops past this many bytes for the client (the client-side
/// write buffer is 16 KiB; a larger write goes out directly).
const GATHER_LIMIT: usize = 64 * 1024;

/// What the client connection did while we waited on the upstream.
enum Wait {
    Chunk(Result<Option<Bytes>, Failure>),
    Tick,
    ClientGone,
}

/// The next upstream chunk; meanwhile notice a client that disconnects and,
/// every `keepalive`, come back with `Tick` (the chunk read stays pending).
async fn wait_chunk(
    fut: &mut std::pin::Pin<&mut impl std::future::Future<Output = Result<Option<Bytes>, Failure>>>,
    s: &mut Session,
    keepalive: Option<Duration>,
    watch_client: bool,
) -> Wait {
    if !watch_client {
        // A sized answer can be complete for the client before the upstream's
        // end is read; the client may then send its next request on the same
        // connection, which an idle watch would take for a protocol error.
        return Wait::Chunk(fut.as_mut().await);
    }
    let idle = async {
        tokio::select! {
            r = s.read_body_or_idle(true) => match r {
                // Data from a client that sent its whole body is not a disconnect.
                Ok(Some(_)) => std::future::pending().await,
                _ => Wait::ClientGone,
            },
            _ = async {
                match keepalive {
                    // tokio's: pingora's fast sleep would start its clock thread.
                    Some(k) => tokio::time::sleep(k).await,
                    None => std::future::pending().await,
                }
            } => Wait::Tick,
        }
    };
    tokio::select! {
        // Upstream first: when its end is already there as the client hangs
        // up (SDKs close right after `[DONE]`), the answer was complete and
        // counts as such, not as a disconnect.
        biased;
        r = fut.as_mut() => Wait::Chunk(r),
        w = idle => w,
    }
}

/// A stream on its way to the client.
struct Relay<'a> {
    p: &'a Provider,
    ask: &'a Ask,
    from: Format,
    /// The client gets SSE events (not Gemini's JSON array).
    sse: bool,
    keepalive: Option<Duration>,
    pipe: stream::Pipe,
    /// The client's head, completed, until it is sent: held back until the
    /// first content, or until a keepalive tick commits to this upstream.
    header: Option<ResponseHeader>,
    pending: Vec<u8>,
    /// An end or failure met while gathering chunks, handled next round.
    carry: Option<Result<Option<Bytes>, Failure>>,
}

/// Send a streamed upstream answer (header already read, status < 400) to the
/// client, passing or converting it chunk by chunk. Before the first real
/// content nothing is sent (for SSE streams), so a failure there returns
/// `Attempt::Failed` and the next target can still answer.
pub(super) async fn stream_answer(
    s: &mut Session,
    ctx: &mut RequestCtx,
    mut up: Answer,
    p: &Provider,
    ask: &Ask,
    from: Format,
) -> pingora_core::Result<Attempt> {
    let mut r = open(s, ctx, &up, p, ask, from)?;
    loop {
        let w = match r.carry.take() {
            Some(c) => Wait::Chunk(c),
            None => next(s, ctx, &mut up, &mut r).await?,
        };
        match w {
            Wait::Tick => unreachable!("handled by `next`"),
            Wait::ClientGone => return client_gone(s, ctx, up, r).await,
            Wait::Chunk(Ok(Some(chunk))) => {
                if let Some(failed) = on_chunk(s, ctx, &mut up, &mut r, chunk).await? {
                    return Ok(failed);
                }
            }
            Wait::Chunk(Ok(None)) => return end(s, ctx, up, r).await,
            Wait::Chunk(Err(f)) => return failed(s, ctx, up, r, f).await,
        }
    }
}

/// The client's head and the pipe that passes or converts the stream.
fn open<'a>(
    s: &Session,
    ctx: &RequestCtx,
    up: &Answer,
    p: &'a Provider,
    ask: &'a Ask,
    from: Format,
) -> pingora_core::Result<Relay<'a>> {
    let same = from == ask.ingress;
    let sse = ask.stream() && (ask.ingress != Format::Gemini || ask.resp_opts.gemini_sse);
    // Streamed bodies are re-framed, and may change length (`Body::Streamed`).
    let mut h = if same {
        client_response(up.head(), up.status(), true, None)?
    } else {
        let ct = if sse {
            "text/event-stream"
        } else {
            "application/json"
        };
        let mut h = client_response(up.head(), 200, false, Some(ct))?;
        h.insert_header("cache-control", "no-cache")?;
        h
    };
    // Complete now: a keepalive tick may have to send it before any content.
    head::complete(&mut h, &Marks::of(ctx), Body::Streamed, s.is_http2())?;
    let pipe = if same {
        let strip =
            ask.ingress == Format::OpenAiChat && ask.stream() && !ask.resp_opts.include_usage;
        // Legacy completions chunks carry no deltas the chat decoder knows:
        // they go out from the first event (usage is still read).
        let observer = match ask.op {
            Op::Completions { .. } => stream::Observer::committed(ask.ingress),
            _ => stream::Observer::new(ask.ingress),
        };
        stream::Pipe::Pass(observer, strip.then(sse::Parser::default))
    } else {
        stream::Pipe::Convert(StreamTranslator::new(
            from,
            ask.ingress,
            ask.resp_opts.clone(),
        ))
    };
    Ok(Relay {
        p,
        ask,
        from,
        sse,
        keepalive: if sse { ctx.snap.stream_keepalive } else { None },
        pipe,
        header: Some(h),
        pending: Vec::with_capacity(4096),
        carry: None,
    })
}

/// The next upstream chunk, or the client leaving; a quiet upstream gets
/// keepalive ticks meanwhile (`tick`).
async fn next(
    s: &mut Session,
    ctx: &mut RequestCtx,
    up: &mut Answer,
    r: &mut Relay<'_>,
) -> pingora_core::Result<Wait> {
    let fut = next_chunk(up, ctx, r.p);
    tokio::pin!(fut);
    loop {
        match wait_chunk(&mut fut, s, r.keepalive, r.ask.stream()).await {
            Wait::Tick => tick(s, &mut r.header, &mut r.pending).await?,
            other => return Ok(other),
        }
    }
}

/// A quiet stream: commit to this upstream (a long silence is thinking, not
/// failure) and keep intermediaries from cutting the connection.
async fn tick(
    s: &mut Session,
    header: &mut Option<ResponseHeader>,
    pending: &mut Vec<u8>,
) -> pingora_core::Result<()> {
    if let Some(h) = header.take() {
        // `h` went through `head::complete` in `open` (ctx is lent to the
        // pending read here).
        crate::proxy::drain::close_if_draining(s);
        s.write_response_header(Box::new(h)).await?;
    }
    let mut c = std::mem::take(pending);
    sse::write_comment(&mut c, "keepalive");
    s.write_response_body(Bytes::from(c), false).await
}

/// One chunk, with what else is already there, through the pipe to the
/// client; the head is held back until the first content. `Some`: the
/// attempt failed before the client got anything.
async fn on_chunk(
    s: &mut Session,
    ctx: &mut RequestCtx,
    up: &mut Answer,
    r: &mut Relay<'_>,
    chunk: Bytes,
) -> pingora_core::Result<Option<Attempt>> {
    let lone = gather(up, r, chunk);
    if r.header.is_some() && r.sse {
        if let Some((status, msg)) = r.pipe.upstream_error()
            && !r.pipe.content_started()
        {
            // An error event before any content (e.g. overloaded
            // inside a 200 stream): fail over like a status.
            up.shutdown().await;
            let body = Bytes::from(translate::error_body(r.from, status, &msg));
            let head = up.head().clone();
            let f = status_failure(r.p, status, head, body, r.from);
            return Ok(Some(Attempt::Failed(f)));
        }
        if !r.pipe.content_started() {
            return Ok(None);
        }
    }
    if matches!(r.carry, Some(Ok(None))) {
        // The end is already here: it goes out with this data.
        if let Some(c) = lone {
            r.pending.extend_from_slice(&c);
        }
        return Ok(None);
    }
    if let Some(h) = r.header.take() {
        respond::write_head(s, ctx, h).await?;
    }
    let data = if let Some(chunk) = lone {
        Some(chunk)
    } else if !r.pending.is_empty() {
        Some(Bytes::from(std::mem::replace(
            &mut r.pending,
            Vec::with_capacity(4096),
        )))
    } else {
        None
    };
    if let Some(data) = data
        && let Err(e) = write_body(s, ctx, data, false).await
    {
        disconnected(ctx, r);
        up.shutdown().await;
        return Err(e);
    }
    Ok(None)
}

/// Providers send each event as its own HTTP chunk, several per read: the
/// chunks already received go out in one write (one syscall and one client
/// wake-up, not one per event). Only what is there now: nothing waits for
/// more. Returns the chunk when it goes out alone, as it came.
fn gather(up: &mut Answer, r: &mut Relay<'_>, chunk: Bytes) -> Option<Bytes> {
    let mut lone = r.pipe.feed(&chunk, &mut r.pending).then_some(chunk);
    while r.pending.len() < GATHER_LIMIT {
        // A read that is ready needs no deadline.
        let Some(res) = ready_now(up.body()) else {
            break;
        };
        match res.map_err(|e| classify(&e, "reading upstream body")) {
            Ok(Some(more)) => {
                if let Some(c) = lone.take() {
                    r.pending.extend_from_slice(&c);
                }
                if r.pipe.feed(&more, &mut r.pending) {
                    r.pending.extend_from_slice(&more);
                }
            }
            other => {
                r.carry = Some(other);
                break;
            }
        }
    }
    lone
}

/// The client left. SDKs hang up as soon as they read the final event, which
/// can be before the upstream's own end is in: if that end is all that was
/// still to come, the answer was complete.
async fn client_gone(
    s: &mut Session,
    ctx: &mut RequestCtx,
    mut up: Answer,
    mut r: Relay<'_>,
) -> pingora_core::Result<Attempt> {
    if r.header.is_none() && r.pending.is_empty() && upstream_ends(&mut up).await {
        let mut tail = Vec::new();
        r.pipe.finish(&mut tail);
        if tail.is_empty() {
            stream_usage(ctx, &r.pipe, r.ask);
            answered_ok(ctx, r.p);
            // A client that only half-closed still gets a proper end.
            let _ = write_body(s, ctx, Bytes::new(), true).await;
            up.finish().await;
            return Ok(Attempt::Done);
        }
    }
    disconnected(ctx, &r);
    up.shutdown().await;
    pingora_core::Error::e_explain(
        ErrorType::ConnectionClosed,
        "client disconnected mid-answer",
    )
}

/// A client gone mid-answer: named, counted, and its usage so far recorded.
fn disconnected(ctx: &mut RequestCtx, r: &Relay<'_>) {
    ctx.error = Some("client disconnected".into());
    crate::metrics::METRICS
        .client_disconnects
        .with_label_values(&[r.ask.ingress.as_str()])
        .inc();
    stream_usage(ctx, &r.pipe, r.ask);
}

/// The upstream's end: the rest of the stream (and the head, if still held)
/// to the client.
async fn end(
    s: &mut Session,
    ctx: &mut RequestCtx,
    up: Answer,
    mut r: Relay<'_>,
) -> pingora_core::Result<Attempt> {
    if r.sse && r.header.is_some() && !r.pipe.saw_events() {
        // An empty 200 would read as an answer with no content:
        // nothing reached the client, so it fails over (and ends
        // as a 502 in the client's format).
        up.finish().await;
        return Ok(Attempt::Failed(Failure::Io(
            "upstream stream ended with no events".into(),
        )));
    }
    r.pipe.finish(&mut r.pending);
    stream_usage(ctx, &r.pipe, r.ask);
    if let Some(h) = r.header.take() {
        respond::write_head(s, ctx, h).await?;
    }
    answered_ok(ctx, r.p);
    write_body(s, ctx, Bytes::from(r.pending), true).await?;
    up.finish().await;
    Ok(Attempt::Done)
}

/// The upstream failed mid-answer. Before anything reached the client another
/// target may answer; after, an SSE client gets an error event in its own
/// format, and a plain body is cut short.
async fn failed(
    s: &mut Session,
    ctx: &mut RequestCtx,
    mut up: Answer,
    mut r: Relay<'_>,
    f: Failure,
) -> pingora_core::Result<Attempt> {
    up.shutdown().await;
    if r.header.is_some() {
        // Nothing reached the client: another target may answer.
        return Ok(Attempt::Failed(f));
    }
    let msg = failure_text(&f);
    ctx.error = Some(msg.clone());
    stream_usage(ctx, &r.pipe, r.ask);
    if !r.sse {
        // A plain body cut short: end the connection so the client
        // sees it incomplete, never complete.
        return pingora_core::Error::e_explain(ErrorType::ReadError, "upstream failed mid-answer");
    }
    r.pipe.fail(
        r.ask.ingress,
        &format!("upstream failed mid-stream: {msg}"),
        &mut r.pending,
    );
    count_outcome(r.p, "io_error");
    write_body(s, ctx, Bytes::from(r.pending), true).await?;
    Ok(Attempt::Done)
}

/// How long a stream's upstream may take to end after its client left, for
/// the answer to count as complete (`client_gone`).
const END_GRACE: Duration = Duration::from_millis(50);

/// Whether the upstream's end, and nothing else, arrives within `END_GRACE`.
async fn upstream_ends(up: &mut Answer) -> bool {
    matches!(
        tokio::time::timeout(END_GRACE, up.body()).await,
        Ok(Ok(None))
    )
}

/// A stream's usage for accounting: what it reported, with what it did not
/// report estimated (and so marked in the access log).
fn stream_usage(ctx: &mut RequestCtx, pipe: &stream::Pipe, ask: &Ask) {
    let (u, estimated) = pipe.settled_usage((ask.body.len() as u64).div_ceil(4));
    ctx.usage = Some(u);
    ctx.tokens_estimated = estimated;
}
