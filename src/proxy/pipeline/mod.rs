//! The gateway pipeline: every request the gateway answers itself, driven
//! from `request_filter`, one module a step — admit (route, built-in
//! endpoints, gateway key, limits), intake (body, `Ask`), plan (targets in
//! order, their gates, the retry loop), attempt (one upstream try as a
//! subrequest), respond (the answer to the client) — and finish (usage,
//! cost, metrics, the access line), from `logging`.
//!
//! Design decision (README "Design: one request, one subrequest per
//! attempt"): Pingora picks the upstream before it reads the body and replays
//! a pre-read body only from a 64 KiB retry buffer, so AI routes read the
//! whole body here, then make each attempt a Pingora subrequest (`subreq`)
//! with that target's converted body, and relay its answer themselves,
//! converting it chunk by chunk and holding the head until the first content.

pub mod admit;
pub mod attempt;
pub mod finish;
pub mod intake;
pub mod outcome;
pub mod plan;
pub mod read;
pub mod respond;

use super::Gateway;
use super::ctx::RequestCtx;
use super::models;
use pingora_core::protocols::http::ServerSession as Session;

/// What `admit` hands on: a request for the gateway's own endpoints (models,
/// AI routes), past its route and CORS.
pub struct Entry {
    /// The format its errors are answered in.
    pub efmt: crate::translate::Format,
    pub query: Option<String>,
    /// The client shape of a models request.
    pub models: Option<models::Shape>,
}

/// A step's outcome: `None` when the client has its answer already.
pub type Step<T> = pingora_core::Result<Option<T>>;

/// An answer the step wrote itself ends the pipeline.
fn answered<T>(r: pingora_core::Result<()>) -> Step<T> {
    r.map(|()| None)
}

/// Answer a request (configured routes that proxy leave it with `ctx.pass` set).
pub async fn serve(
    gw: &Gateway,
    s: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora_core::Result<()> {
    let Some(entry) = admit::admit(gw, s, ctx).await? else {
        return Ok(());
    };
    let snap = ctx.snap.clone();
    let Some(found) = admit::gateway_key(s, ctx, &snap, &entry).await? else {
        return Ok(());
    };
    let key = found.as_deref();
    ctx.key_id = key.map(|k| k.id.clone());
    if let Some(shape) = entry.models {
        return models::answer(s, ctx, key, shape).await;
    }
    let Some((mut ask, models)) = intake::intake(s, ctx, &entry).await? else {
        return Ok(());
    };
    let Some(targets) = plan::targets(s, ctx, &snap, key, entry.efmt, &models).await? else {
        return Ok(());
    };
    let limits = admit::limits(gw, s, ctx, &snap, key, entry.efmt, &ask, &targets);
    if limits.await?.is_none() {
        return Ok(());
    }
    let Some(spawner) = ctx.spawner.take() else {
        return pingora_core::Error::e_explain(
            pingora_core::ErrorType::InternalError,
            "no subrequest spawner on this listener",
        );
    };
    plan::run(&spawner, &gw.limiter, s, ctx, &mut ask, targets).await
}
