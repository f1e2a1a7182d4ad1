//! Finish: once per request however it ended (Pingora's `logging`): the
//! cost of its usage, its limit holds settled, its metrics and access line.

use crate::limits::Limiter;
use crate::metrics;
use crate::proxy::ctx::RequestCtx;
use crate::proxy::{AdminApi, drain, pass};
use crate::routing::Route;
use pingora_core::protocols::http::ServerSession;
use serde_json::json;
use std::time::Duration;

/// Access log, request metrics and limit reconciliation; runs once per
/// request, however it ended (Pingora's `logging`).
pub async fn finish(
    limiter: &Limiter,
    admin: &dyn AdminApi,
    s: &mut ServerSession,
    e: Option<&pingora_core::Error>,
    ctx: &mut RequestCtx,
    shutting_down: bool,
) {
    pass::finish(ctx);
    if ctx.status == 0 {
        ctx.status = s.response_written().map_or(0, |h| h.status.as_u16());
    }
    if let Some(e) = e {
        ctx.error.get_or_insert_with(|| e.to_string());
    }
    settle(limiter, ctx).await;
    let peer = s.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
    let client =
        crate::client_addr::client(peer, &ctx.snap.trusted_proxies, &s.req_header().headers);
    record(ctx, client, admin);
    drain::linger_for_next_request(s, shutting_down).await;
}

/// The request's cost from its usage, and its limit holds settled with what
/// it used.
async fn settle(limiter: &Limiter, ctx: &mut RequestCtx) {
    if let Some(u) = &ctx.usage {
        ctx.cost_usd = ctx
            .snap
            .prices
            .lookup(&ctx.upstream_model)
            .map(|p| p.cost_usd(u));
    }
    if !ctx.holds.is_empty() {
        // A failed request used nothing: its reservations come back; an
        // answer that reported no usage keeps its estimate.
        let used = ctx.usage.map(|u| u.input + u.output);
        // Usage without a price costs nothing.
        let cost = ctx
            .usage
            .map(|_| ctx.cost_usd.map_or(0, |c| (c * 1e6).round() as u64));
        let failed = ctx.status >= 400 || ctx.status == 0;
        limiter.reconcile(&mut ctx.holds, used, cost, failed).await;
    }
}

/// Metrics and the access line of one finished request; `client`: the
/// client's address (`client_addr`); `admin`: the request log and event feed.
fn record(ctx: &RequestCtx, client: Option<std::net::IpAddr>, admin: &dyn AdminApi) {
    let total = ctx.start.elapsed();
    let ingress = ctx.route.ingress();
    let is_ai = matches!(
        ctx.route,
        Route::Chat { .. }
            | Route::Embeddings
            | Route::Pass(_)
            | Route::CountTokens { .. }
            | Route::Completions
    );
    if is_ai {
        let (provider, model) = (ctx.provider.as_str(), ctx.model_label());
        let key = ctx.key_id.as_deref().unwrap_or("");
        let series = metrics::request_series(ingress, provider, model, ctx.status, key);
        series.count();
        series.duration(total.as_secs_f64());
        if let Some(fb) = ctx.first_byte {
            series.ttfb((fb - ctx.start).as_secs_f64());
        }
        let own = total.saturating_sub(ctx.upstream_wait + ctx.client_wait);
        series.overhead(own.as_secs_f64());
        if let Some(u) = &ctx.usage {
            series.tokens(u);
        }
        if let Some(c) = ctx.cost_usd {
            series.cost(c);
        }
        admin.observe(ctx, ingress, total);
        if ctx.snap.log_json {
            json_line(ctx, client, ingress, total, own);
        } else {
            text_line(ctx, client, ingress, total);
        }
    } else {
        log::debug!(target: "access", "request_id={} ingress={} status={}", ctx.request_id, ingress, ctx.status);
    }
}

/// ` dropped=a,b` when a conversion left fields out; each path escaped like
/// the other client-influenced fields, the whole cut at 1 KiB.
fn push_dropped(b: &mut Vec<u8>, paths: &[String]) {
    if paths.is_empty() {
        return;
    }
    b.extend_from_slice(b" dropped=");
    let start = b.len();
    for (i, p) in paths.iter().enumerate() {
        if b.len() - start > 1024 {
            b.extend_from_slice(b"...");
            return;
        }
        if i > 0 {
            b.push(b',');
        }
        crate::access_log::push_text(b, p, 256, false);
    }
}

impl RequestCtx {
    /// The model label: the configured entry name would be lower-cardinality,
    /// but clients ask for few names; unknown models are never labelled.
    fn model_label(&self) -> &str {
        if self.provider.is_empty() {
            ""
        } else {
            &self.model
        }
    }
}

/// The access line as JSON (`log_json`).
fn json_line(
    ctx: &RequestCtx,
    client: Option<std::net::IpAddr>,
    ingress: &str,
    total: Duration,
    own: Duration,
) {
    let provider = ctx.provider.as_str();
    // Whole nano-dollars: no float noise in the log.
    let cost = ctx.cost_usd.map(|c| (c * 1e9).round() / 1e9);
    let line = json!({
        "request_id": ctx.request_id,
        "client": client,
        "key": ctx.key_id,
        "ingress": ingress,
        "provider": (!provider.is_empty()).then_some(provider),
        "model": (!ctx.model.is_empty()).then_some(&ctx.model),
        "upstream_model": (!ctx.upstream_model.is_empty()).then_some(&ctx.upstream_model),
        "status": ctx.status,
        "attempts": ctx.attempts,
        "duration_ms": (total.as_secs_f64() * 1e4).round() / 10.0,
        "overhead_us": own.as_micros() as u64,
        "tokens": ctx.usage.map(|u| json!({"input": u.input, "output": u.output, "cached": u.cache_read, "reasoning": u.reasoning})),
        "tokens_estimated": ctx.tokens_estimated,
        "cost_usd": cost,
        "dropped": (!ctx.dropped.is_empty()).then_some(ctx.dropped.paths()),
        "error": ctx.error,
    });
    if crate::access_log::enabled() {
        crate::access_log::write(true, format_args!("{line}"));
    }
}

/// The access line as `name=value` text.
fn text_line(ctx: &RequestCtx, client: Option<std::net::IpAddr>, ingress: &str, total: Duration) {
    let provider = ctx.provider.as_str();
    if !crate::access_log::enabled() {
        return;
    }
    crate::access_log::write_with(false, |b| {
        use crate::access_log::{push_ms, push_text, push_usd};
        use crate::translate::json::push_uint;
        b.extend_from_slice(b"request_id=");
        match ctx.request_id.as_str() {
            "" => b.push(b'-'),
            id => push_text(b, id, 256, false),
        }
        b.extend_from_slice(b" client=");
        match client {
            // An address has no bytes that need escaping.
            Some(ip) => {
                use std::io::Write;
                let _ = write!(b, "{ip}");
            }
            None => b.push(b'-'),
        }
        for (name, v) in [
            (" key=", ctx.key_id.as_deref().unwrap_or("")),
            (" ingress=", ingress),
            (" provider=", provider),
            (" model=", ctx.model.as_str()),
            (" upstream_model=", ctx.upstream_model.as_str()),
        ] {
            b.extend_from_slice(name.as_bytes());
            match v {
                "" => b.push(b'-'),
                v => push_text(b, v, 256, false),
            }
        }
        b.extend_from_slice(b" status=");
        push_uint(b, ctx.status.into());
        b.extend_from_slice(b" attempts=");
        push_uint(b, ctx.attempts.into());
        b.extend_from_slice(b" duration_ms=");
        push_ms(b, total);
        b.extend_from_slice(b" tokens_in=");
        push_uint(b, ctx.usage.map_or(0, |u| u.input));
        b.extend_from_slice(b" tokens_out=");
        push_uint(b, ctx.usage.map_or(0, |u| u.output));
        if ctx.tokens_estimated {
            b.extend_from_slice(b" tokens_estimated=true");
        }
        b.extend_from_slice(b" cost_usd=");
        match ctx.cost_usd {
            Some(c) => push_usd(b, c),
            None => b.push(b'-'),
        }
        push_dropped(b, ctx.dropped.paths());
        if let Some(e) = &ctx.error {
            b.extend_from_slice(b" error=\"");
            push_text(b, e, 1024, true);
            b.push(b'"');
        }
    });
}
