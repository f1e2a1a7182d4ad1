//! The Pingora service: thin phases calling plain modules.

pub mod body_rate;
pub mod budget;
pub mod ctx;
pub mod drain;
pub mod front;
pub mod h2_limits;
pub mod head;
pub mod headers;
pub mod models;
pub mod pass;
pub mod pipeline;
pub mod respond;
pub mod stream;
pub mod subreq;

use crate::auth;
use crate::config::Snapshot;
use crate::limits::{self, Limiter};
use crate::metrics::{self, METRICS};
use crate::providers::Op;
use crate::routes;
use crate::routing::{self, Route, route};
use crate::translate::Format;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use ctx::RequestCtx;
use pingora_core::protocols::http::ServerSession;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_proxy::{ProxyHttp, Session};
use pipeline::intake::{self, Ask};
use serde_json::json;
use std::sync::Arc;

/// Cheap to clone: the main and admin listeners each hold one.
#[derive(Clone)]
pub struct Gateway {
    pub config: Arc<ArcSwap<Snapshot>>,
    pub limiter: Arc<Limiter>,
    /// The admin listener serves health, metrics and the admin API (`crate::admin`).
    pub admin: bool,
}

impl Gateway {
    /// `limiter` is the process's one (both listeners share it, and with it
    /// one Redis connection and one view of the store's health).
    pub fn new(config: Arc<ArcSwap<Snapshot>>, limiter: Arc<Limiter>, admin: bool) -> Self {
        Gateway {
            config,
            limiter,
            admin,
        }
    }
}

fn request_id(s: &ServerSession) -> String {
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

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.config.load_full())
    }

    /// The client's request runs each AI attempt as a subrequest (`subreq`).
    fn allow_spawning_subrequest(&self, s: &Session, _ctx: &RequestCtx) -> bool {
        s.subrequest_ctx.is_none()
    }

    /// Every phase runs for the client's request and again for each
    /// attempt's subrequest (P4): a subrequest takes its attempt here and
    /// runs only the upstream phases.
    async fn early_request_filter(
        &self,
        s: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora_core::Result<()> {
        if let Some(job) = subreq::job_of(s) {
            // Not a request of its own: no in-flight count, no access line.
            ctx.inflight = None;
            subreq::early(s, &job)?;
            ctx.sub = Some(job);
        }
        Ok(())
    }

    /// Every request is answered here — local endpoints directly, AI routes by
    /// `exchange` (see its module doc for why not through `upstream_peer`) —
    /// but proxied configured routes (`pass`), which continue to `upstream_peer`.
    async fn request_filter(
        &self,
        s: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora_core::Result<bool> {
        if ctx.sub.is_some() {
            return Ok(false);
        }
        ctx.spawner = s.subrequest_spawner.take();
        // Boxed: the whole exchange is a large future; inlined into Pingora's
        // per-connection future it would be copied around on every poll.
        Box::pin(self.serve(s.as_downstream_mut(), ctx)).await?;
        Ok(ctx.pass.is_none())
    }

    /// Reached only by proxied routes; called again on each retry.
    async fn upstream_peer(
        &self,
        _s: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora_core::Result<Box<HttpPeer>> {
        if let Some(job) = &ctx.sub {
            return Ok(Box::new(job.peer.clone()));
        }
        pass::peer(ctx)
    }

    async fn connected_to_upstream(
        &self,
        _s: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora_core::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> pingora_core::Result<()> {
        if let Some(job) = &ctx.sub {
            subreq::connected(job);
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        s: &mut Session,
        req: &mut pingora_http::RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora_core::Result<()> {
        if let Some(job) = &ctx.sub {
            subreq::upstream_request(req, job);
            return Ok(());
        }
        pass::upstream_request(req, ctx)?;
        pass::body_awaited(s.as_downstream_mut(), ctx);
        Ok(())
    }

    /// Per chunk of a proxied request's body: its pause and rate limits
    /// (a subrequest's body is the preset one, already read).
    async fn request_body_filter(
        &self,
        s: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end: bool,
        ctx: &mut RequestCtx,
    ) -> pingora_core::Result<()> {
        if ctx.sub.is_some() {
            return Ok(());
        }
        let n = body.as_ref().map_or(0, bytes::Bytes::len);
        pass::body_read(s.as_downstream_mut(), n, end, ctx)
    }

    /// Also called for 1xx answers (skipped by `pass::response`).
    async fn response_filter(
        &self,
        s: &mut Session,
        resp: &mut pingora_http::ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora_core::Result<()> {
        if ctx.sub.is_some() {
            return Ok(());
        }
        pass::response(resp, ctx, s.as_downstream().is_http2())
    }

    /// Sync, per chunk (not the whole body): the first byte; error answers
    /// held for credential redaction (`pass::body_chunk`).
    fn response_body_filter(
        &self,
        _s: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end: bool,
        ctx: &mut RequestCtx,
    ) -> pingora_core::Result<Option<std::time::Duration>> {
        if ctx.sub.is_some() {
            return Ok(None);
        }
        pass::body_chunk(ctx, body, end);
        Ok(None)
    }

    fn fail_to_connect(
        &self,
        _s: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<pingora_core::Error>,
    ) -> Box<pingora_core::Error> {
        if ctx.sub.is_some() {
            return subreq::no_retry(e);
        }
        pass::connect_failed(ctx, e)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        s: &mut Session,
        e: Box<pingora_core::Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<pingora_core::Error> {
        if ctx.sub.is_some() {
            return subreq::no_retry(e);
        }
        pass::proxy_error(peer, s.as_downstream(), e, ctx, client_reused)
    }

    async fn fail_to_proxy(
        &self,
        s: &mut Session,
        e: &pingora_core::Error,
        ctx: &mut RequestCtx,
    ) -> pingora_proxy::FailToProxy {
        if ctx.sub.is_some() {
            // The client's request answers, in the client's format.
            return pingora_proxy::FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        let down = s.as_downstream_mut();
        if ctx.pass.is_some() {
            pass::fail(down, e, ctx).await
        } else {
            pass::default_fail(down, e, ctx).await
        }
    }

    /// A client's broken or slow body is the client's error: answered (400,
    /// 408) and counted, not logged as the gateway's.
    /// A subrequest's errors are the attempt's, judged and logged by the
    /// client's request (P8).
    fn suppress_error_log(&self, _s: &Session, ctx: &RequestCtx, e: &pingora_core::Error) -> bool {
        ctx.sub.is_some()
            || e.esource() == &pingora_core::ErrorSource::Downstream
                && intake::body_read_refusal(e).is_some()
    }

    async fn logging(
        &self,
        s: &mut Session,
        e: Option<&pingora_core::Error>,
        ctx: &mut RequestCtx,
    ) {
        if ctx.sub.is_some() {
            return;
        }
        let shutting_down = s.is_process_shutting_down();
        self.finish_request(s.as_downstream_mut(), e, ctx, shutting_down)
            .await;
    }
}

impl Gateway {
    /// Access log, request metrics and limit reconciliation; runs once per
    /// request, however it ended (Pingora's `logging`).
    async fn finish_request(
        &self,
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
            self.limiter
                .reconcile(&mut ctx.holds, used, cost, failed)
                .await;
        }
        let peer = s.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        let client =
            crate::client_addr::client(peer, &ctx.snap.trusted_proxies, &s.req_header().headers);
        record(ctx, client);
        drain::linger_for_next_request(s, shutting_down).await;
    }
}

/// Metrics and the access line of one finished request; `client`: the
/// client's address (`client_addr`).
fn record(ctx: &RequestCtx, client: Option<std::net::IpAddr>) {
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
        crate::admin::observe(ctx, ingress, total);
        if ctx.snap.log_json {
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
            return;
        }
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

impl Gateway {
    async fn serve(&self, s: &mut ServerSession, ctx: &mut RequestCtx) -> pingora_core::Result<()> {
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
                return match cors.preflight(&origin) {
                    Some(h) => respond::send(s, ctx, 204, "text/plain", vec![], &h).await,
                    None => {
                        respond::error(s, ctx, Format::OpenAiChat, 403, "origin not allowed", None)
                            .await
                    }
                };
            }
            ctx.extra_headers.extend(cors.response_headers(&origin));
        }
        ctx.route = route(&method, &path);
        if self.admin && crate::admin::owns(&path) {
            return crate::admin::serve(&self.limiter, s, ctx, &method, &path, query.as_deref())
                .await;
        }
        if !self.admin && !ctx.snap.routes.is_empty() {
            let builtin = ctx.route != Route::NotFound;
            let snap = ctx.snap.clone();
            match snap.routes.lookup(&method, &path, builtin) {
                // A built-in endpoint that takes this method wins over an
                // exact route for other methods.
                Some(routes::Lookup::WrongMethod { .. })
                    if builtin && ctx.route != Route::MethodNotAllowed => {}
                Some(l) => {
                    return self
                        .begin_pass(s, ctx, l, &method, &path, query.as_deref())
                        .await;
                }
                None => {}
            }
        }
        let models_shape = models::Shape::of(&ctx.route, || {
            s.req_header().headers.contains_key("anthropic-version")
        });
        let efmt = models_shape.map_or_else(|| ctx.route.error_format(&path), |m| m.error_format());
        let snap = ctx.snap.clone();

        match (&ctx.route, self.admin) {
            (Route::Health, _) => {
                let body = json!({"status": "ok",
                    "uptime_seconds": crate::process::uptime().as_secs(),
                    "resident_memory_bytes": crate::process::resident_bytes()});
                return respond::json(s, ctx, 200, &body).await;
            }
            (Route::Ready, _) => {
                // With `on_error: closed` a node that cannot reach the shared
                // store refuses limited requests: not ready, so balancers
                // prefer a node that can.
                let (limits_ok, limits) = self.limiter.health();
                let ready = snap.ready() && limits_ok;
                let body = json!({"status": if ready { "ready" } else { "not ready" },
                    "limits": limits,
                    "providers": snap.providers.iter().map(|p| json!({"name": p.name, "usable": p.usable()})).collect::<Vec<_>>()});
                return respond::json(s, ctx, if ready { 200 } else { 503 }, &body).await;
            }
            (Route::Metrics, _) => {
                let now = crate::resilience::now_ms();
                for p in &snap.providers {
                    METRICS
                        .resting_credentials
                        .with_label_values(&[&p.name])
                        .set(p.rest.resting_count(now) as i64);
                    METRICS
                        .provider_usable
                        .with_label_values(&[&p.name])
                        .set(i64::from(p.usable()));
                }
                return respond::send(
                    s,
                    ctx,
                    200,
                    "text/plain; version=0.0.4",
                    metrics::render(),
                    &[],
                )
                .await;
            }
            (Route::NotFound, _) | (_, true) => {
                return respond::error(
                    s,
                    ctx,
                    efmt,
                    404,
                    &format!("no route for {method} {path}"),
                    None,
                )
                .await;
            }
            (Route::MethodNotAllowed, _) => {
                return respond::error(
                    s,
                    ctx,
                    efmt,
                    405,
                    &format!("method {method} not allowed on {path}"),
                    None,
                )
                .await;
            }
            _ => {}
        }

        // Gateway key.
        let found = if !auth::keys_required(&snap) {
            None
        } else {
            let h = &s.req_header().headers;
            let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
            match auth::check(&snap, &header, query.as_deref()) {
                Ok(k) => Some(k),
                Err(msg) => return respond::error(s, ctx, efmt, 401, msg, None).await,
            }
        };
        let key = found.as_deref();
        ctx.key_id = key.map(|k| k.id.clone());

        if let Some(shape) = models_shape {
            return models::answer(s, ctx, key, shape).await;
        }

        let (ingress, gemini) = match &ctx.route {
            Route::Chat { format, gemini } | Route::CountTokens { format, gemini } => {
                (*format, gemini.clone())
            }
            _ => (Format::OpenAiChat, None),
        };
        let body = match intake::read_body(s, ctx, snap.max_body_bytes).await? {
            intake::ClientBody::Whole(b) => b,
            intake::ClientBody::TooLarge => {
                let msg = format!(
                    "request body is larger than the limit of {} bytes",
                    snap.max_body_bytes
                );
                return respond::error(s, ctx, efmt, 413, &msg, None).await;
            }
            intake::ClientBody::Refused(status, msg) => {
                return respond::error(s, ctx, efmt, status, &msg, None).await;
            }
        };
        let peeked = match intake::peek::peek(&body) {
            Ok(p) => p,
            Err(b) => {
                return respond::error(s, ctx, efmt, 400, &b.message, b.param.as_deref()).await;
            }
        };
        let fallback = match (&gemini, &peeked.model, &peeked.models) {
            (None, None, Some(list))
                if matches!(ingress, Format::OpenAiChat | Format::OpenAiResponses) =>
            {
                if list.is_empty() || list.iter().any(String::is_empty) {
                    return respond::error(
                        s,
                        ctx,
                        efmt,
                        400,
                        "`models` must list model names",
                        Some("models"),
                    )
                    .await;
                }
                Some(list.clone())
            }
            _ => None,
        };
        let (models, stream) = match (&gemini, fallback) {
            (Some(g), _) => (vec![g.model.clone()], g.stream),
            (None, Some(list)) => (list, peeked.stream),
            (None, None) => match &peeked.model {
                Some(m) if !m.is_empty() => (vec![m.clone()], peeked.stream),
                _ => {
                    return respond::error(
                        s,
                        ctx,
                        efmt,
                        400,
                        "missing required field `model`",
                        Some("model"),
                    )
                    .await;
                }
            },
        };
        if let Some(msg) = models
            .iter()
            .find_map(|m| routing::check_model_name(m).err())
        {
            return respond::error(s, ctx, efmt, 400, &msg, Some("model")).await;
        }
        ctx.model.clone_from(&models[0]);
        let mut targets = vec![];
        for model in &models {
            if let Some(k) = key
                && !k.allows(model)
            {
                let msg = format!("gateway key '{}' may not use model '{}'", k.id, model);
                return respond::error(s, ctx, efmt, 403, &msg, Some("model")).await;
            }
            let Some(t) = snap.resolve_model(model) else {
                let msg = format!("model '{model}' is not configured on this gateway");
                return respond::error(s, ctx, efmt, 404, &msg, Some("model")).await;
            };
            for r in t {
                // The same target under two names is tried once.
                if !targets.iter().any(|x: &crate::config::runtime::Resolved| {
                    x.provider == r.provider && x.model == r.model
                }) {
                    targets.push(r);
                }
            }
        }
        let op = match ctx.route {
            Route::Embeddings => Op::Embeddings,
            Route::CountTokens { .. } => Op::CountTokens,
            Route::Completions => Op::Completions { stream },
            _ => Op::Chat { stream },
        };
        if let Some(k) = key {
            let kl = k.limits();
            // A count is a request (rpm, concurrency) that generates and
            // bills nothing: it reserves no tokens and no cost.
            let counting = op == Op::CountTokens;
            let mut estimate = limits::Estimate {
                tokens: if counting {
                    0
                } else {
                    limits::estimate_tokens(body.len(), peeked.max_output)
                },
                cost_micro_usd: 0,
            };
            if kl.has_budget() && !counting {
                // Priced as the first target; reconciled with the real cost.
                let price = targets.first().and_then(|t| snap.prices.lookup(&t.model));
                estimate.cost_micro_usd = price.map_or(0, |p| {
                    p.estimate_micro_usd(
                        (body.len() as u64).div_ceil(4),
                        peeked.max_output.unwrap_or(0),
                    )
                });
            }
            let r = self
                .limiter
                .admit_key(&kl, estimate, &mut ctx.extra_headers, &mut ctx.holds)
                .await;
            if let Err(refusal) = r {
                return respond::refusal(s, ctx, efmt, refusal).await;
            }
        }
        let global = limits::GlobalLimits {
            rpm: snap.limit_store.rpm,
            max_concurrent: snap.limit_store.max_concurrent,
        };
        if let Err(refusal) = self.limiter.admit_global(global, &mut ctx.holds).await {
            return respond::refusal(s, ctx, efmt, refusal).await;
        }
        let gemini_query = gemini
            .as_ref()
            .map(|_| auth::strip_key_param(query.as_deref().unwrap_or("")));
        let mut ask = Ask::new(ingress, op, body, peeked, gemini_query);
        let Some(spawner) = ctx.spawner.take() else {
            return pingora_core::Error::e_explain(
                pingora_core::ErrorType::InternalError,
                "no subrequest spawner on this listener",
            );
        };
        pipeline::plan::run(&spawner, &self.limiter, s, ctx, &mut ask, targets).await
    }
}
