//! Responses the gateway writes itself: errors in the client's format, health,
//! metrics, the model list.

use super::ctx::RequestCtx;
use super::head::{self, Body, Marks};
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
    let mut h = ResponseHeader::build(status, Some(6 + extra.len()))?;
    h.insert_header("content-type", content_type)?;
    for (k, v) in extra {
        h.insert_header(*k, v)?;
    }
    head::complete(
        &mut h,
        &Marks::of(ctx),
        Body::Length(body.len()),
        s.is_http2(),
    )?;
    write_head(s, ctx, h).await?;
    let t = Instant::now();
    s.write_response_body(Bytes::from(body), true).await?;
    ctx.client_wait += t.elapsed();
    Ok(())
}

/// Send an answer head that went through [`head::complete`]; the status is
/// the request's (access log, metrics).
pub async fn write_head(
    s: &mut Session,
    ctx: &mut RequestCtx,
    h: ResponseHeader,
) -> pingora_core::Result<()> {
    ctx.status = h.status.as_u16();
    super::drain::close_if_draining(s);
    let t = Instant::now();
    let r = s.write_response_header(Box::new(h)).await;
    ctx.client_wait += t.elapsed();
    r
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
