//! Admit: what a request is (route, CORS, built-in endpoints, configured
//! routes) and who sends it (the gateway key); once its targets are known,
//! the key's and the gateway's limits.

use super::intake::Ask;
use super::{Entry, Step, answered};
use crate::auth::GatewayKey;
use crate::auth::{self, Found};
use crate::limits;
use crate::metrics::{self, METRICS};
use crate::providers::Op;
use crate::proxy::Gateway;
use crate::proxy::ctx::RequestCtx;
use crate::proxy::{models, respond};
use crate::routes;
use crate::routing::{Route, route};
use crate::runtime::Snapshot;
use crate::runtime::snapshot::Resolved;
use crate::translate::Format;
use pingora_core::protocols::http::ServerSession as Session;
use serde_json::json;

/// Route the request; answer CORS preflights, the admin API, configured
/// routes (or leave them to the proxy phases, `pass`) and the built-in
/// endpoints here.
pub async fn admit(gw: &Gateway, s: &mut Session, ctx: &mut RequestCtx) -> Step<Entry> {
    // Pingora's session read timeout is the wait between two body reads
    // (nginx's `client_body_timeout`), HTTP/1 only.
    s.set_read_timeout(Some(ctx.snap.client_body_timeout));
    ctx.request_id = request_id(s);
    ctx.debug = s
        .req_header()
        .headers
        .get("x-aigate-debug")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true") || v.as_bytes() == b"1");
    let (method, path, query) = {
        let h = s.req_header();
        (
            h.method.as_str().to_string(),
            h.uri.path().to_string(),
            h.uri.query().map(str::to_string),
        )
    };
    if cors(s, ctx, &method).await? {
        return Ok(None);
    }
    ctx.route = route(&method, &path);
    if gw.admin && gw.admin_api.owns(&path) {
        let r = gw
            .admin_api
            .serve(&gw.limiter, s, ctx, &method, &path, query.as_deref())
            .await;
        return answered(r);
    }
    if configured(gw, s, ctx, &method, &path, query.as_deref()).await? {
        return Ok(None);
    }
    let models = models::Shape::of(&ctx.route, || {
        s.req_header().headers.contains_key("anthropic-version")
    });
    let efmt = models.map_or_else(|| ctx.route.error_format(&path), |m| m.error_format());
    if builtin(gw, s, ctx, efmt, &method, &path).await? {
        return Ok(None);
    }
    Ok(Some(Entry {
        efmt,
        query,
        models,
    }))
}

fn request_id(s: &Session) -> String {
    s.req_header()
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| hex32(rand::random::<u128>()))
}

/// `format!("{:032x}", n)` without the formatting machinery (per request).
fn hex32(n: u128) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let bytes: Vec<u8> = (0..32)
        .map(|i| DIGITS[((n >> (124 - 4 * i)) & 0xf) as usize])
        .collect();
    String::from_utf8(bytes).expect("ascii")
}

#[cfg(test)]
#[test]
fn hex32_is_zero_padded_lower_hex() {
    for n in [
        0u128,
        1,
        0xabc,
        u128::MAX,
        0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
    ] {
        assert_eq!(hex32(n), format!("{n:032x}"));
    }
}

/// CORS: a preflight is answered here (true); an allowed origin's headers go
/// on whatever answer follows.
async fn cors(s: &mut Session, ctx: &mut RequestCtx, method: &str) -> pingora_core::Result<bool> {
    if let Some(cors) = &ctx.snap.cors
        && let Some(origin) = s
            .req_header()
            .headers
            .get("origin")
            .and_then(|v| v.to_str().ok())
    {
        let origin = origin.to_string();
        if method == "OPTIONS" {
            let snap = ctx.snap.clone();
            let cors = snap.cors.as_ref().expect("checked");
            match cors.preflight(&origin) {
                Some(h) => respond::send(s, ctx, 204, "text/plain", vec![], &h).await?,
                None => {
                    respond::error(s, ctx, Format::OpenAiChat, 403, "origin not allowed", None)
                        .await?
                }
            }
            return Ok(true);
        }
        ctx.extra_headers.extend(cors.response_headers(&origin));
    }
    Ok(false)
}

/// A configured route (true): answered, or left to the proxy phases.
async fn configured(
    gw: &Gateway,
    s: &mut Session,
    ctx: &mut RequestCtx,
    method: &str,
    path: &str,
    query: Option<&str>,
) -> pingora_core::Result<bool> {
    if gw.admin || ctx.snap.routes.is_empty() {
        return Ok(false);
    }
    let builtin = ctx.route != Route::NotFound;
    let snap = ctx.snap.clone();
    match snap.routes.lookup(method, path, builtin) {
        // A built-in endpoint that takes this method wins over an
        // exact route for other methods.
        Some(routes::Lookup::WrongMethod { .. })
            if builtin && ctx.route != Route::MethodNotAllowed =>
        {
            Ok(false)
        }
        Some(l) => {
            gw.begin_pass(s, ctx, l, method, path, query).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Health, readiness, metrics, and the 404 and 405 answers (true: answered).
async fn builtin(
    gw: &Gateway,
    s: &mut Session,
    ctx: &mut RequestCtx,
    efmt: Format,
    method: &str,
    path: &str,
) -> pingora_core::Result<bool> {
    match (&ctx.route, gw.admin) {
        (Route::Health, _) => {
            let body = json!({"status": "ok",
                "uptime_seconds": crate::process::uptime().as_secs(),
                "resident_memory_bytes": crate::process::resident_bytes()});
            respond::json(s, ctx, 200, &body).await?;
        }
        (Route::Ready, _) => ready(gw, s, ctx).await?,
        (Route::Metrics, _) => metrics(s, ctx).await?,
        (Route::NotFound, _) | (_, true) => {
            let msg = format!("no route for {method} {path}");
            respond::error(s, ctx, efmt, 404, &msg, None).await?;
        }
        (Route::MethodNotAllowed, _) => {
            let msg = format!("method {method} not allowed on {path}");
            respond::error(s, ctx, efmt, 405, &msg, None).await?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

async fn ready(gw: &Gateway, s: &mut Session, ctx: &mut RequestCtx) -> pingora_core::Result<()> {
    let snap = ctx.snap.clone();
    // With `on_error: closed` a node that cannot reach the shared
    // store refuses limited requests: not ready, so balancers
    // prefer a node that can.
    let (limits_ok, limits) = gw.limiter.health();
    let ready = snap.ready() && limits_ok;
    let body = json!({"status": if ready { "ready" } else { "not ready" },
        "limits": limits,
        "providers": snap.providers.iter().map(|p| json!({"name": p.name, "usable": p.usable()})).collect::<Vec<_>>()});
    respond::json(s, ctx, if ready { 200 } else { 503 }, &body).await
}

async fn metrics(s: &mut Session, ctx: &mut RequestCtx) -> pingora_core::Result<()> {
    let now = crate::resilience::now_ms();
    for p in &ctx.snap.providers {
        METRICS
            .resting_credentials
            .with_label_values(&[&p.name])
            .set(p.rest.resting_count(now) as i64);
        METRICS
            .provider_usable
            .with_label_values(&[&p.name])
            .set(i64::from(p.usable()));
    }
    let body = metrics::render();
    respond::send(s, ctx, 200, "text/plain; version=0.0.4", body, &[]).await
}

/// The gateway key the request presents, when keys are required (`Some(None)`
/// when they are not); `None` when the client has its 401.
pub async fn gateway_key<'k>(
    s: &mut Session,
    ctx: &mut RequestCtx,
    snap: &'k Snapshot,
    entry: &Entry,
) -> Step<Option<Found<'k>>> {
    if !auth::keys_required(&snap.keys) {
        return Ok(Some(None));
    }
    let h = &s.req_header().headers;
    let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
    match auth::check(&snap.keys, &header, entry.query.as_deref()) {
        Ok(k) => Ok(Some(Some(k))),
        Err(msg) => answered(respond::error(s, ctx, entry.efmt, 401, msg, None).await),
    }
}

/// The key's limits (requests, concurrency, tokens, budget) and the
/// gateway's own; `None` when the client has its 429.
#[allow(clippy::too_many_arguments)]
pub async fn limits(
    gw: &Gateway,
    s: &mut Session,
    ctx: &mut RequestCtx,
    snap: &Snapshot,
    key: Option<&GatewayKey>,
    efmt: Format,
    ask: &Ask,
    targets: &[Resolved],
) -> Step<()> {
    if let Some(k) = key {
        let kl = k.limits();
        let estimate = key_estimate(&kl, snap, ask, targets);
        let r = gw
            .limiter
            .admit_key(&kl, estimate, &mut ctx.extra_headers, &mut ctx.holds)
            .await;
        if let Err(refusal) = r {
            return answered(respond::refusal(s, ctx, efmt, refusal).await);
        }
    }
    let global = limits::GlobalLimits {
        rpm: snap.limit_store.rpm,
        max_concurrent: snap.limit_store.max_concurrent,
    };
    if let Err(refusal) = gw.limiter.admit_global(global, &mut ctx.holds).await {
        return answered(respond::refusal(s, ctx, efmt, refusal).await);
    }
    Ok(Some(()))
}

/// What a request reserves of its key's tokens and budget.
fn key_estimate(
    kl: &limits::KeyLimits<'_>,
    snap: &Snapshot,
    ask: &Ask,
    targets: &[Resolved],
) -> limits::Estimate {
    let body_len = ask.body.len();
    // A count is a request (rpm, concurrency) that generates and
    // bills nothing: it reserves no tokens and no cost.
    let counting = ask.op == Op::CountTokens;
    let mut estimate = limits::Estimate {
        tokens: if counting {
            0
        } else {
            limits::estimate_tokens(body_len, ask.peeked.max_output)
        },
        cost_micro_usd: 0,
    };
    if kl.has_budget() && !counting {
        // Priced as the first target; reconciled with the real cost.
        let price = targets.first().and_then(|t| snap.prices.lookup(&t.model));
        estimate.cost_micro_usd = price.map_or(0, |p| {
            p.estimate_micro_usd(
                (body_len as u64).div_ceil(4),
                ask.peeked.max_output.unwrap_or(0),
            )
        });
    }
    estimate
}
