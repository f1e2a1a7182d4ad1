//! Responses the gateway writes itself: errors in the client's format, health,
//! metrics, the model list.

use super::ctx::RequestCtx;
use crate::translate::{Format, error_body_param};
use bytes::Bytes;
use pingora_core::protocols::http::ServerSession as Session;
use pingora_http::ResponseHeader;
use std::time::Instant;

/// Write a whole response with a body and a Content-Length.
pub async fn send(
    s: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    content_type: &str,
    body: Vec<u8>,
    extra: &[(&'static str, String)],
) -> pingora_core::Result<()> {
    let mut h = ResponseHeader::build(status, Some(4 + extra.len()))?;
    h.insert_header("content-type", content_type)?;
    h.insert_header("content-length", body.len().to_string())?;
    if !ctx.request_id.is_empty() {
        h.insert_header("x-request-id", &ctx.request_id)?;
    }
    for (k, v) in extra {
        h.insert_header(*k, v)?;
    }
    answer_headers(ctx, &mut h)?;
    for (k, v) in &ctx.extra_headers {
        h.insert_header(*k, v)?;
    }
    ctx.status = status;
    super::drain::close_if_draining(s);
    let t = Instant::now();
    s.write_response_header(Box::new(h)).await?;
    s.write_response_body(Bytes::from(body), true).await?;
    ctx.client_wait += t.elapsed();
    Ok(())
}

/// The gateway's own headers on an answer: what the conversion left out
/// (`x-aigate-dropped`, SPEC drop-and-name rule) and, with `x-aigate-debug:
/// true` on the request, where it went (SPEC "Headers").
pub fn answer_headers(ctx: &RequestCtx, h: &mut ResponseHeader) -> pingora_core::Result<()> {
    if !ctx.dropped.is_empty() {
        h.insert_header("x-aigate-dropped", ctx.dropped.header_value())?;
    }
    if ctx.debug && !ctx.provider.is_empty() {
        h.insert_header("x-aigate-provider", &ctx.provider)?;
        h.insert_header("x-aigate-model", &ctx.upstream_model)?;
        h.insert_header("x-aigate-attempts", ctx.attempts.to_string())?;
    }
    Ok(())
}

/// An error the gateway makes itself, in the client's format (SPEC "Errors").
pub async fn error(
    s: &mut Session,
    ctx: &mut RequestCtx,
    format: Format,
    status: u16,
    message: &str,
    param: Option<&str>,
) -> pingora_core::Result<()> {
    ctx.error.get_or_insert_with(|| message.to_string());
    let body = error_body_param(format, status, message, param);
    send(s, ctx, status, "application/json", body, &[]).await
}

pub async fn json(
    s: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    v: &serde_json::Value,
) -> pingora_core::Result<()> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    send(s, ctx, status, "application/json", body, &[]).await
}

/// A request the limits refused: 429 (or 503) in the client's format, with
/// `Retry-After` in whole seconds; 429s count in `aigate_rate_limited_total`.
pub async fn refusal(
    s: &mut Session,
    ctx: &mut RequestCtx,
    format: Format,
    r: crate::limits::Refusal,
) -> pingora_core::Result<()> {
    if r.status == 429 {
        let key = ctx.key_id.as_deref().unwrap_or("");
        crate::metrics::METRICS
            .rate_limited
            .with_label_values(&[key])
            .inc();
    }
    let retry = r.retry_after.as_secs_f64().ceil().max(1.0).to_string();
    ctx.extra_headers.push(("retry-after", retry));
    error(s, ctx, format, r.status, &r.message, None).await
}
