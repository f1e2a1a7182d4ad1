//! Configured routes and provider passthrough through Pingora's own proxy
//! phases: `request_filter` checks the key and answers static routes
//! (`begin`), then returns `Ok(false)`; `upstream_peer`, `upstream_request_filter`,
//! `response_filter`, `fail_to_connect`, `error_while_proxy` and
//! `fail_to_proxy` call the functions below. The body is never read by
//! aigate: it streams both ways with no size limit and no buffering (but
//! Pingora's own 64 KiB retry buffer).

use super::body_rate::{BodyClock, Limit};
use super::ctx::{PassState, RequestCtx};
use super::head::{self, Body, Marks};
use super::{Gateway, respond};
use crate::auth;
use crate::metrics::METRICS;
use crate::providers::Provider;
use crate::providers::peer::{self, PeerTimeouts, Trust};
use crate::providers::{Endpoint, auth_header, default_version};
use crate::routes::{self, Action, CompiledRoute, Lookup, ProxyRoute, headers};
use crate::routing::Route;
use crate::translate::Format;
use bytes::Bytes;
use pingora_core::protocols::http::ServerSession as Session;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorSource, ErrorType};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::FailToProxy;
use std::net::SocketAddr;
use std::time::Instant;

/// How much of an upstream error answer is held for redaction; a larger one
/// (no provider writes such errors) goes on as it came.
const MAX_HELD_ERROR: usize = 1 << 20;

fn route_of(ctx: &RequestCtx) -> Option<(&PassState, &CompiledRoute, &ProxyRoute)> {
    let st = ctx.pass.as_ref()?;
    let r = &ctx.snap.routes.routes[st.route];
    match &r.action {
        Action::Proxy(p) => Some((st, r, p)),
        Action::Static(_) => None,
    }
}

impl Gateway {
    /// A request matched a configured route (`lookup`): answer it here (405,
    /// auth errors, static answers) or leave `ctx.pass` set for the proxy phases.
    pub(super) async fn begin_pass(
        &self,
        s: &mut Session,
        ctx: &mut RequestCtx,
        lookup: Lookup,
        method: &str,
        path: &str,
        query: Option<&str>,
    ) -> pingora_core::Result<()> {
        let snap = ctx.snap.clone();
        let (i, rest) = match lookup {
            Lookup::WrongMethod { allow } => {
                ctx.route = Route::MethodNotAllowed;
                ctx.extra_headers.push(("allow", allow));
                let efmt = ctx.route.error_format(path);
                let msg = format!("method {method} not allowed on {path}");
                return respond::error(s, ctx, efmt, 405, &msg, None).await;
            }
            Lookup::Hit { route, rest } => (route, rest),
        };
        let r = &snap.routes.routes[i];
        ctx.route = Route::Pass(r.kind);
        let efmt = r.error_format;
        let provider = match &r.action {
            Action::Proxy(p) => p.provider.map(|i| &snap.providers[i]),
            Action::Static(_) => None,
        };
        if let Some(p) = provider {
            ctx.provider.clone_from(&p.name);
        }
        if routes::has_dot_segment(&rest) {
            let msg = "'.' and '..' path segments are not forwarded";
            return respond::error(s, ctx, efmt, 400, msg, None).await;
        }
        if r.auth && auth::keys_required(&snap.keys) {
            let h = &s.req_header().headers;
            let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
            let k = match auth::check(&snap.keys, &header, query) {
                Ok(k) => k,
                Err(msg) => return respond::error(s, ctx, efmt, 401, msg, None).await,
            };
            ctx.key_id = Some(k.id.clone());
            if r.keys.as_ref().is_some_and(|ids| !ids.contains(&k.id)) {
                let msg = format!("gateway key '{}' may not use {}", k.id, r.path);
                return respond::error(s, ctx, efmt, 403, &msg, None).await;
            }
            // rpm and concurrency count route requests too; the body is not
            // read, so no tokens are reserved (an exhausted tpm still refuses).
            let nothing = crate::limits::Estimate {
                tokens: 0,
                cost_micro_usd: 0,
            };
            let admitted = self
                .limiter
                .admit_key(&k.limits(), nothing, &mut ctx.extra_headers, &mut ctx.holds)
                .await;
            if let Err(refusal) = admitted {
                return respond::refusal(s, ctx, efmt, refusal).await;
            }
        }
        let proxy = match &r.action {
            Action::Static(a) => return static_answer(s, ctx, a).await,
            Action::Proxy(p) => p,
        };
        if let Some(p) = provider
            && p.disabled
        {
            let msg = format!(
                "provider '{}' is disabled: no credential key is set",
                p.name
            );
            return respond::error(s, ctx, efmt, 503, &msg, None).await;
        }
        let query = match query {
            Some(q) if proxy.strip_credentials => Some(auth::strip_key_param(q)),
            q => q.map(str::to_string),
        };
        ctx.pass = Some(PassState {
            route: i,
            rest,
            query,
            target: 0,
            credential: None,
            proxy_start: None,
            held: None,
            body: None,
        });
        Ok(())
    }
}

async fn static_answer(
    s: &mut Session,
    ctx: &mut RequestCtx,
    a: &routes::StaticAnswer,
) -> pingora_core::Result<()> {
    let mut h = ResponseHeader::build(a.status, Some(a.headers.len() + 6))?;
    for (k, v) in &a.headers {
        h.append_header(k.clone(), v.clone())?;
    }
    let body = Body::Length(a.body.len());
    head::complete(&mut h, &Marks::of(ctx), body, s.is_http2())?;
    respond::write_head(s, ctx, h).await?;
    let t = Instant::now();
    if !a.body.is_empty() {
        s.write_response_body(a.body.clone(), true).await?;
    }
    ctx.client_wait += t.elapsed();
    Ok(())
}

/// The endpoint and address of attempt `n`: targets in turn, each picking
/// its next address not yet `tried` by this request (`providers::balance`).
fn upstream_for<'a>(
    p: &'a ProxyRoute,
    provider: Option<&'a Provider>,
    n: usize,
    tried: &[SocketAddr],
) -> Option<(usize, &'a Endpoint, SocketAddr)> {
    let (t, ep, balancer) = if p.targets.is_empty() {
        let pr = provider?;
        (0, &pr.endpoint, &pr.balancer)
    } else {
        let t = n % p.targets.len();
        let u = &p.targets[t];
        (t, &u.endpoint, &u.balancer)
    };
    Some((t, ep, balancer.pick(tried)?))
}

/// `upstream_peer`: the next target, address and credential; per-route timeouts.
pub fn peer(ctx: &mut RequestCtx) -> pingora_core::Result<Box<HttpPeer>> {
    let snap = ctx.snap.clone();
    let Some((_, _, p)) = route_of(ctx) else {
        return Error::e_explain(ErrorType::InternalError, "no upstream for this route");
    };
    let provider = p.provider.map(|i| &snap.providers[i]);
    let Some((t, ep, addr)) = upstream_for(p, provider, ctx.attempts as usize, &ctx.tried_addrs)
    else {
        let host = p
            .targets
            .first()
            .map(|u| &u.endpoint)
            .or(provider.map(|x| &x.endpoint))
            .map_or("", |e| e.host.as_str());
        return Error::e_explain(
            ErrorType::ConnectNoRoute,
            format!("address of {host} not resolved"),
        );
    };
    let credential = match provider {
        Some(pr) if !pr.credentials.is_empty() => {
            let now = crate::resilience::now_ms();
            let picked = pr
                .credentials
                .pick_where(pr.fill_first, |i| !pr.rest.resting(i, now))
                .map(|(i, _)| i);
            // Every credential resting: the one out longest is tried anyway,
            // unless the upstream itself said when to come back.
            match pr.rest.choose(picked, now) {
                Ok(i) => i.and_then(|i| Some((i, pr.credentials.key(i)?.to_string()))),
                Err(until) => {
                    let secs = until.saturating_sub(now).div_ceil(1000).max(1);
                    ctx.extra_headers.push(("retry-after", secs.to_string()));
                    return Error::e_explain(
                        ErrorType::HTTPStatus(429),
                        format!(
                            "provider '{}' is rate limited: the upstream asked to retry after {secs}s",
                            pr.name
                        ),
                    );
                }
            }
        }
        _ => None,
    };
    // The provider's `ca_file` / `tls_verify` are about its server: they hold
    // for a route target on the provider's own host and port, as for AI requests.
    let trust = match provider {
        Some(pr) if pr.endpoint.host == ep.host && pr.endpoint.port == ep.port => pr.trust(),
        _ => Trust::SYSTEM,
    };
    let timeouts = PeerTimeouts {
        connect: p.connect_timeout,
        io: Some(p.timeout),
    };
    let peer = peer::peer(addr, ep, trust, timeouts);
    ctx.attempts += 1;
    ctx.tried_addrs.push(addr);
    let st = ctx.pass.as_mut().expect("checked");
    st.target = t;
    st.credential = credential;
    st.proxy_start.get_or_insert_with(Instant::now);
    Ok(Box::new(peer))
}

/// `upstream_request_filter`: path, headers, credential.
pub fn upstream_request(req: &mut RequestHeader, ctx: &RequestCtx) -> pingora_core::Result<()> {
    let Some((st, _, p)) = route_of(ctx) else {
        return Ok(());
    };
    let provider = p.provider.map(|i| &ctx.snap.providers[i]);
    let ep = match p.targets.get(st.target) {
        Some(u) => &u.endpoint,
        None => match provider {
            Some(pr) => &pr.endpoint,
            None => return Error::e_explain(ErrorType::InternalError, "route has no upstream"),
        },
    };
    let path = routes::upstream_path(p.join, &ep.prefix, &st.rest, st.query.as_deref());
    let uri: http::Uri = path
        .parse()
        .map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "bad upstream path"))?;
    req.set_uri(uri);
    let drop: Vec<http::HeaderName> = req
        .headers
        .keys()
        .filter(|n| {
            !headers::forward_request(n.as_str(), p.forward_request.as_ref(), p.strip_credentials)
        })
        .cloned()
        .collect();
    for n in drop {
        req.remove_header(&n);
    }
    req.insert_header("host", &ep.authority)?;
    req.insert_header("x-request-id", &ctx.request_id)?;
    if let Some(pr) = provider {
        if let Some((_, key)) = &st.credential {
            let (name, value) = auth_header(pr.kind, key);
            req.insert_header(name, value)?;
        }
        if let Some((name, value)) = default_version(pr.kind)
            && req.headers.get(name).is_none()
        {
            req.insert_header(name, value)?;
        }
        for (k, v) in &pr.headers {
            req.insert_header(k.clone(), v.clone())?;
        }
    }
    for (k, v) in &p.headers {
        req.insert_header(k.clone(), v.clone())?;
    }
    Ok(())
}

fn outcome(status: u16) -> &'static str {
    match status {
        429 => "http_429",
        500.. => "http_5xx",
        400.. => "http_4xx",
        _ => "ok",
    }
}

/// `response_filter`: credential cool-down, attempt outcome, response headers.
pub fn response(
    resp: &mut ResponseHeader,
    ctx: &mut RequestCtx,
    http2: bool,
) -> pingora_core::Result<()> {
    if resp.status.is_informational() {
        return Ok(());
    }
    let Some((st, _, p)) = route_of(ctx) else {
        return Ok(());
    };
    let status = resp.status.as_u16();
    let holds_error = status >= 400 && st.credential.is_some();
    if let Some(pr) = p.provider.map(|i| &ctx.snap.providers[i]) {
        if let Some((i, _)) = &st.credential {
            let now = crate::resilience::now_ms();
            judge_status(pr, &ctx.snap.cooldown, *i, status, resp, now);
        }
        METRICS
            .attempts
            .with_label_values(&[&pr.name, outcome(status)])
            .inc();
    }
    let drop: Vec<http::HeaderName> = resp
        .headers
        .keys()
        .filter(|n| !headers::forward_response(n.as_str(), p.forward_response.as_ref()))
        .cloned()
        .collect();
    for n in drop {
        resp.remove_header(&n);
    }
    // A held error answer may change length (redaction): streamed.
    let body = if holds_error {
        if let Some(st) = ctx.pass.as_mut() {
            st.held = Some(Vec::new());
        }
        Body::Streamed
    } else {
        Body::Proxied
    };
    head::complete(resp, &Marks::of(ctx), body, http2)
}

/// A passthrough answer's status applied to its credential, by the same
/// rule as AI routes (`resilience::verdict`); routes have no circuit.
fn judge_status(
    pr: &Provider,
    cooldown: &crate::resilience::CooldownPolicy,
    i: usize,
    status: u16,
    resp: &ResponseHeader,
    now: u64,
) {
    use crate::resilience::{Ended, Verdict, reset_hint, verdict};
    let hint = (status == 429)
        .then(|| reset_hint(|n| resp.headers.get(n).and_then(|v| v.to_str().ok())))
        .flatten();
    let other = pr.rest.other_usable(i, now);
    match verdict(Ended::Status(status, hint), true, other, cooldown) {
        Verdict::Rest { rest, hinted } => {
            pr.rest.rest(i, rest, hinted, now);
            if status != 429 && pr.rest.news(i) {
                log::warn!(
                    "provider '{}' credential #{} rejected with {status}: resting it for {}s",
                    pr.name,
                    i + 1,
                    rest.as_secs()
                );
            }
        }
        Verdict::Refused if pr.rest.news(i) => {
            log::warn!(
                "provider '{}' credential #{} rejected with {status}: not resting it, it is the provider's last usable one (logged once until it works)",
                pr.name,
                i + 1
            );
        }
        // The credential works: a rest it was forced through is over.
        _ if status < 400 => {
            pr.rest.ok(i);
            pr.rest.lift(i);
        }
        _ => {}
    }
}

/// `fail_to_connect`: nothing was sent, so a retry is always safe.
pub fn connect_failed(ctx: &RequestCtx, mut e: Box<Error>) -> Box<Error> {
    if let Some((_, _, p)) = route_of(ctx) {
        if let Some(pr) = p.provider.map(|i| &ctx.snap.providers[i]) {
            METRICS
                .attempts
                .with_label_values(&[&pr.name, "connect_error"])
                .inc();
        }
        if ctx.attempts < p.max_attempts {
            e.set_retry(true);
        }
    }
    e
}

/// `error_while_proxy`: retry a failure after sending only before the answer
/// started, with the body whole in Pingora's retry buffer (≤ 64 KiB), and for
/// idempotent methods unless the route allows others. Otherwise Pingora's
/// default (a stale reused connection is retried).
pub fn proxy_error(
    peer: &HttpPeer,
    s: &Session,
    e: Box<Error>,
    ctx: &RequestCtx,
    client_reused: bool,
) -> Box<Error> {
    let mut e = e.more_context(format!("Peer: {peer}"));
    let idempotent = s.req_header().method.is_idempotent();
    let truncated = s.retry_buffer_truncated();
    if let Some((_, _, p)) = route_of(ctx) {
        if let Some(pr) = p.provider.map(|i| &ctx.snap.providers[i]) {
            let o = match e.etype() {
                ErrorType::ReadTimedout | ErrorType::WriteTimedout => "timeout",
                _ => "io_error",
            };
            if e.esource() == &ErrorSource::Upstream {
                METRICS.attempts.with_label_values(&[&pr.name, o]).inc();
            }
        }
        if ctx.attempts < p.max_attempts
            && e.esource() == &ErrorSource::Upstream
            && s.response_written().is_none()
            && !truncated
            && (idempotent || p.non_idempotent)
        {
            e.set_retry(true);
            return e;
        }
    }
    if !idempotent || truncated {
        e.set_retry(false);
    } else {
        e.retry.decide_reuse(client_reused);
    }
    e
}

/// A route's client hung up or broke its connection: `fail` counts it, and
/// Pingora's error line for it is suppressed (the access line names it).
pub fn client_left(e: &Error) -> bool {
    e.esource() == &ErrorSource::Downstream
        && matches!(
            e.etype(),
            ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed
        )
}

/// `fail_to_proxy` for a route: the error in the route's format (502, or 504
/// for an upstream timeout), unless the answer had started (then the
/// connection is closed, so the client sees it incomplete).
pub async fn fail(s: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
    let upstream = e.esource() == &ErrorSource::Upstream;
    let refused = (e.esource() == &ErrorSource::Downstream)
        .then(|| super::pipeline::intake::body_read_refusal(e))
        .flatten();
    // Which rule ended a slow body: the clock knows the wait it handed out.
    let clock = ctx.pass.as_ref().and_then(|st| st.body.as_ref());
    let refused = match (refused, clock) {
        (Some((408, _)), Some(c)) => Some((408, c.message(c.last()))),
        (r, _) => r,
    };
    if refused.as_ref().is_some_and(|(c, _)| *c == 408) {
        let phase = clock.map_or(Limit::Pause, BodyClock::last).phase();
        crate::metrics::client_timeout(phase);
    }
    let left = refused.is_none() && client_left(e);
    let code = match e.etype() {
        _ if refused.is_some() => refused.as_ref().map_or(400, |r| r.0),
        ErrorType::HTTPStatus(c) => *c,
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
            if upstream =>
        {
            504
        }
        _ if left => 0,
        _ if e.esource() == &ErrorSource::Downstream => 400,
        _ => 502,
    };
    let fmt = route_of(ctx).map_or(Format::OpenAiChat, |(_, r, _)| r.error_format);
    if left {
        // The client's doing, counted as on the AI path.
        ctx.error = Some("client disconnected".into());
        crate::metrics::METRICS
            .client_disconnects
            .with_label_values(&[ctx.route.ingress()])
            .inc();
    }
    ctx.error.get_or_insert_with(|| e.to_string());
    // The connection is not reused (below): say so, or a keep-alive client
    // sends its next request into the close and gets a reset.
    s.set_keepalive(None);
    if code > 0 && s.response_written().is_none() {
        let what = e.etype().as_str();
        let msg = match code {
            _ if refused.is_some() => refused.map(|r| r.1).unwrap_or_default(),
            504 => format!("upstream timed out ({what})"),
            502 => format!("upstream unavailable ({what})"),
            _ => e
                .context
                .as_ref()
                .map_or_else(|| what.to_string(), |c| c.as_str().to_string()),
        };
        if let Err(err) = respond::error(s, ctx, fmt, code, &msg, None).await {
            log::debug!("could not send the route error: {err}");
        }
    }
    FailToProxy {
        error_code: code,
        can_reuse_downstream: false,
    }
}

/// Pingora's default `fail_to_proxy` rule, for everything that is not a
/// route; the error is the gateway's own answer (client's format, header set).
pub async fn default_fail(s: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
    let code = match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    };
    s.set_keepalive(None);
    if code > 0 && s.response_written().is_none() {
        let fmt = ctx.route.error_format(s.req_header().uri.path());
        let what = e.etype().as_str();
        let msg = match code {
            502 => format!("upstream unavailable ({what})"),
            500 => format!("internal error ({what})"),
            _ => format!("request failed ({what})"),
        };
        ctx.error.get_or_insert_with(|| e.to_string());
        if let Err(err) = respond::error(s, ctx, fmt, code, &msg, None).await {
            log::error!("failed to send error response to downstream: {err}");
        }
    }
    FailToProxy {
        error_code: code,
        can_reuse_downstream: false,
    }
}

/// `upstream_request_filter`: Pingora reads the client's body from now on;
/// its clock starts (once, not again on a retry).
pub fn body_awaited(s: &mut Session, ctx: &mut RequestCtx) {
    let (pause, rate) = (ctx.snap.client_body_timeout, ctx.snap.client_body_min_rate);
    let Some(st) = ctx.pass.as_mut() else {
        return;
    };
    if st.body.is_some() || s.is_body_done() {
        return;
    }
    let now = Instant::now();
    let mut clock = BodyClock::new(pause, rate, now);
    next_read(s, &mut clock, now);
    st.body = Some(clock);
}

/// `request_body_filter`: `n` more bytes of the client's body (`end`: its
/// last). A body behind its minimum rate ends here, as a 408 (`fail`).
pub fn body_read(
    s: &mut Session,
    n: usize,
    end: bool,
    ctx: &mut RequestCtx,
) -> pingora_core::Result<()> {
    let pause = ctx.snap.client_body_timeout;
    let Some(clock) = ctx.pass.as_mut().and_then(|st| st.body.as_mut()) else {
        return Ok(());
    };
    let now = Instant::now();
    if clock.too_slow(now) {
        clock.next_wait(now);
        super::h2_limits::watch_body(None, Limit::Rate);
        let mut e = Error::explain(ErrorType::ReadTimedout, clock.message(Limit::Rate));
        e.esource = ErrorSource::Downstream;
        return Err(e);
    }
    clock.received(n);
    if end {
        // The answer may take as long as the upstream does.
        s.set_read_timeout(Some(pause));
        super::h2_limits::watch_body(None, Limit::Pause);
    } else {
        next_read(s, clock, now);
    }
    Ok(())
}

/// Bound the next body read: Pingora's read timeout on HTTP/1, the stream's
/// watch on HTTP/2 (`h2`), where Pingora has none.
fn next_read(s: &mut Session, clock: &mut BodyClock, now: Instant) {
    let (wait, rule) = clock.next_wait(now);
    s.set_read_timeout(Some(wait));
    super::h2_limits::watch_body(Some(now + wait), rule);
}

/// `logging`: time after the first upstream pick is not the gateway's own.
pub fn finish(ctx: &mut RequestCtx) {
    if let Some(t) = ctx.pass.as_ref().and_then(|st| st.proxy_start) {
        ctx.upstream_wait = t.elapsed();
    }
}

/// `response_body_filter`: the first body byte to the client (TTFB); an
/// upstream error answer is held to its end and sent with the provider's
/// credentials redacted.
pub fn body_chunk(ctx: &mut RequestCtx, body: &mut Option<Bytes>, end: bool) {
    if let Some(st) = ctx.pass.as_mut()
        && let Some(held) = st.held.as_mut()
    {
        if let Some(b) = body.take() {
            held.extend_from_slice(&b);
        }
        if !end && held.len() <= MAX_HELD_ERROR {
            return;
        }
        let whole = std::mem::take(held);
        st.held = None;
        let provider = route_of(ctx).and_then(|(_, _, p)| p.provider);
        let redacted = provider.and_then(|i| ctx.snap.providers[i].credentials.redact(&whole));
        *body = Some(redacted.map_or_else(|| Bytes::from(whole), Bytes::from));
    }
    if ctx.first_byte.is_none() && body.as_ref().is_some_and(|b| !b.is_empty()) {
        ctx.first_byte = Some(Instant::now());
    }
}
