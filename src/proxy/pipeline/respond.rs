//! Respond: the client's answer from a successful attempt (whole, counted,
//! embeddings; streams in `stream`), and the error answer when every attempt
//! failed or a target has to wait.

mod stream;

use super::intake::Ask;
use super::outcome::{Attempt, Failure, answered_ok, get_str};
use super::read::{MAX_ANSWER_BODY, MAX_ERROR_BODY, read_all};
use crate::config::file::ProviderKind;
use crate::providers::Op;
use crate::providers::Provider;
use crate::providers::headers::client_response;
use crate::proxy::ctx::RequestCtx;
use crate::proxy::head::{self, Body, Marks};
use crate::proxy::respond;
use crate::proxy::subreq::Answer;
use crate::resilience;
use crate::runtime::snapshot::Resolved;
use crate::translate::{self, Format};
use bytes::Bytes;
use pingora_core::protocols::http::ServerSession as Session;
use pingora_http::ResponseHeader;
use serde_json::Value;
use std::time::{Duration, Instant};
use stream::stream_answer;

/// A successful upstream answer (head read, status < 400) to the client, by
/// kind: embeddings converted from Gemini, a token count, a stream, a whole
/// answer.
pub(crate) async fn answer(
    s: &mut Session,
    ctx: &mut RequestCtx,
    up: Answer,
    p: &Provider,
    ask: &Ask,
    to: Format,
) -> pingora_core::Result<Attempt> {
    if let (Op::Embeddings, Format::Gemini, Some(info)) = (ask.op, to, &ask.embeddings) {
        return embeddings_answer(s, ctx, up, p, ask, info).await;
    }
    if ask.op == Op::CountTokens {
        return count_answer(s, ctx, up, p, ask, to).await;
    }
    if ask.stream() {
        return Box::pin(stream_answer(s, ctx, up, p, ask, to)).await;
    }
    whole_answer(s, ctx, up, p, ask, to).await
}

/// A Gemini embeddings answer, read whole and converted to OpenAI's shape.
async fn embeddings_answer(
    s: &mut Session,
    ctx: &mut RequestCtx,
    mut up: Answer,
    p: &Provider,
    ask: &Ask,
    info: &translate::embeddings::EmbeddingsInfo,
) -> pingora_core::Result<Attempt> {
    let status = up.status();
    let (body, _held) = match read_all(&mut up, ctx, p, MAX_ANSWER_BODY).await {
        Ok(b) => b,
        Err(f) => return Ok(Attempt::Failed(f)),
    };
    up.finish().await;
    match translate::embeddings::gemini_to_openai_response(&body, info) {
        Ok(a) => {
            ctx.usage = Some(crate::ir::Usage {
                input: a.prompt_tokens,
                ..Default::default()
            });
            if a.estimated {
                ctx.tokens_estimated = true;
                ctx.error = Some("usage estimated: Gemini reported no token count".into());
            }
            ctx.first_byte = Some(Instant::now());
            answered_ok(ctx, p);
            respond::send(s, ctx, status, "application/json", a.body, &[]).await?;
        }
        Err(e) => {
            let msg = format!("could not convert the upstream answer: {}", e.message);
            respond::error(s, ctx, ask.ingress, 502, &msg, None).await?;
        }
    }
    Ok(Attempt::Done)
}

/// A whole (non-streamed) answer: as it came when the formats match, else
/// converted to the client's format.
async fn whole_answer(
    s: &mut Session,
    ctx: &mut RequestCtx,
    mut up: Answer,
    p: &Provider,
    ask: &Ask,
    to: Format,
) -> pingora_core::Result<Attempt> {
    let status = up.status();
    // The client's head, from the upstream's before the session goes.
    let head = if to == ask.ingress {
        let header = up.head();
        let mut h = client_response(header, status, false, None)?;
        if let Some(ct) = header.headers.get("content-type") {
            h.insert_header("content-type", ct.clone())?;
        }
        Some(h)
    } else {
        None
    };
    // A whole answer is read before anything is sent, so one cut short
    // fails over like any other failed attempt.
    let (body, _held) = match read_all(&mut up, ctx, p, MAX_ANSWER_BODY).await {
        Ok(b) => b,
        Err(f) => return Ok(Attempt::Failed(f)),
    };
    up.finish().await;
    ctx.usage = translate::response_usage(to, &body);
    answered_ok(ctx, p);
    if let Some(h) = head {
        send_whole(s, ctx, h, body).await?;
        return Ok(Attempt::Done);
    }
    match translate::convert_response(to, ask.ingress, &body, &ask.resp_opts) {
        Ok(out) => {
            ctx.first_byte = Some(Instant::now());
            respond::send(s, ctx, status, "application/json", out, &[]).await?;
        }
        Err(e) => {
            let msg = format!("could not convert the upstream answer: {}", e.message);
            respond::error(s, ctx, ask.ingress, 502, &msg, None).await?;
        }
    }
    Ok(Attempt::Done)
}

/// A same-format answer read whole: its head completed for that length, then
/// head and body to the client.
async fn send_whole(
    s: &mut Session,
    ctx: &mut RequestCtx,
    mut h: ResponseHeader,
    body: Bytes,
) -> pingora_core::Result<()> {
    head::complete(
        &mut h,
        &Marks::of(ctx),
        Body::Length(body.len()),
        s.is_http2(),
    )?;
    respond::write_head(s, ctx, h).await?;
    write_body(s, ctx, body, true).await
}

/// A counting answer (status < 400) to the client: as it came when the
/// formats match, else its count in the client's shape. Counting uses no
/// tokens, so none are recorded.
#[allow(clippy::too_many_arguments)]
async fn count_answer(
    s: &mut Session,
    ctx: &mut RequestCtx,
    mut up: Answer,
    p: &Provider,
    ask: &Ask,
    from: Format,
) -> pingora_core::Result<Attempt> {
    let status = up.status();
    let head = if from == ask.ingress {
        let mut h = client_response(up.head(), status, false, None)?;
        h.insert_header("content-type", "application/json")?;
        Some(h)
    } else {
        None
    };
    let (body, _held) = match read_all(&mut up, ctx, p, MAX_ERROR_BODY).await {
        Ok(b) => b,
        Err(f) => return Ok(Attempt::Failed(f)),
    };
    up.finish().await;
    answered_ok(ctx, p);
    if let Some(h) = head {
        send_whole(s, ctx, h, body).await?;
        return Ok(Attempt::Done);
    }
    match translate::count::answer_count(from, &body) {
        Some(n) => {
            let out = translate::count::answer_body(ask.ingress, n);
            ctx.first_byte = Some(Instant::now());
            respond::send(s, ctx, status, "application/json", out, &[]).await?;
        }
        None => {
            let msg = "could not read the token count in the upstream answer";
            respond::error(s, ctx, ask.ingress, 502, msg, None).await?;
        }
    }
    Ok(Attempt::Done)
}

/// A count for a target whose API cannot count (OpenAI): estimated from the
/// request converted for it, and marked `x-aigate-estimated: true`. Nothing
/// is sent upstream, so no attempt is made or counted.
pub(crate) async fn estimate_count(
    s: &mut Session,
    ctx: &mut RequestCtx,
    ask: &mut Ask,
    p: &Provider,
    t: &Resolved,
) -> pingora_core::Result<()> {
    let compatible = p.kind == ProviderKind::OpenaiCompatible;
    let body = match ask.count_body_for(p.format, &t.model, compatible) {
        // The estimate is made from the converted body: named like an answer.
        Ok((b, dropped)) => {
            ctx.dropped = dropped;
            b
        }
        Err(e) => {
            return respond::error(
                s,
                ctx,
                ask.ingress,
                e.status,
                &e.message,
                e.param.as_deref(),
            )
            .await;
        }
    };
    let tree: Value = serde_json::from_slice(&body).unwrap_or_default();
    let n = translate::count::estimate(&tree);
    ctx.provider.clone_from(&p.name);
    ctx.upstream_model.clone_from(&t.model);
    let out = translate::count::answer_body(ask.ingress, n);
    ctx.first_byte = Some(Instant::now());
    let mark = [("x-aigate-estimated", "true".to_string())];
    respond::send(s, ctx, 200, "application/json", out, &mark).await
}

/// Every target failed: the last upstream status (converted), else 502/504.
pub(crate) async fn fail(
    s: &mut Session,
    ctx: &mut RequestCtx,
    ingress: Format,
    last: Option<Failure>,
) -> pingora_core::Result<()> {
    let Some(f) = last else {
        return respond::error(
            s,
            ctx,
            ingress,
            502,
            "no upstream target is configured for this model",
            None,
        )
        .await;
    };
    match f {
        Failure::Status(status, header, body, from) => {
            relay_error(s, ctx, ingress, from, status, &header, &body).await
        }
        Failure::Convert(e) => {
            respond::error(s, ctx, ingress, e.status, &e.message, e.param.as_deref()).await
        }
        Failure::Timeout(m) => {
            respond::error(
                s,
                ctx,
                ingress,
                504,
                &format!("upstream timed out ({m})"),
                None,
            )
            .await
        }
        Failure::Unusable(m) | Failure::Busy(m) => {
            respond::error(s, ctx, ingress, 503, &m, None).await
        }
        // Every target is at its limit: 429 with the shortest Retry-After.
        Failure::Limited(r) => respond::refusal(s, ctx, ingress, r).await,
        Failure::Connect(m) | Failure::Io(m) => {
            respond::error(
                s,
                ctx,
                ingress,
                502,
                &format!("upstream unavailable ({m})"),
                None,
            )
            .await
        }
    }
}

/// An upstream error answer, in the client's format, with the upstream status.
async fn relay_error(
    s: &mut Session,
    ctx: &mut RequestCtx,
    ingress: Format,
    from: Format,
    status: u16,
    header: &ResponseHeader,
    body: &[u8],
) -> pingora_core::Result<()> {
    ctx.error = Some(format!("upstream status {status}"));
    let converted = translate::convert_error(from, ingress, status, body);
    let mut extra = vec![];
    if let Some(ra) = get_str(header, "retry-after") {
        extra.push(("retry-after", ra.to_string()));
    }
    respond::send(s, ctx, status, "application/json", converted, &extra).await
}

/// Every candidate rests under the upstream's own reset time: the client
/// gets 429 with the remaining `Retry-After`, since the upstream said when.
pub(crate) async fn upstream_wait(
    s: &mut Session,
    ctx: &mut RequestCtx,
    ingress: Format,
    provider: &str,
    until: u64,
) -> pingora_core::Result<()> {
    let left = Duration::from_millis(until.saturating_sub(resilience::now_ms()));
    let secs = left.as_secs_f64().ceil().max(1.0);
    ctx.extra_headers.push(("retry-after", secs.to_string()));
    let msg =
        format!("provider '{provider}' is rate limited: the upstream asked to retry after {secs}s");
    respond::error(s, ctx, ingress, 429, &msg, None).await
}

pub(super) async fn write_body(
    s: &mut Session,
    ctx: &mut RequestCtx,
    data: Bytes,
    end: bool,
) -> pingora_core::Result<()> {
    if ctx.first_byte.is_none() && !data.is_empty() {
        ctx.first_byte = Some(Instant::now());
    }
    let t = Instant::now();
    let r = s.write_response_body(data, end).await;
    ctx.client_wait += t.elapsed();
    r
}
