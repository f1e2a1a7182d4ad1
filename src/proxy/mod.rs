//! The Pingora adapter: the only `impl ProxyHttp`, each phase a few lines
//! calling the gateway pipeline (`pipeline`), the proxied routes (`pass`) or
//! an attempt's subrequest (`subreq`).

pub mod body_rate;
pub mod budget;
pub mod ctx;
pub mod drain;
pub mod front;
pub mod h2_limits;
pub mod head;
pub mod models;
pub mod pass;
pub mod pipeline;
pub mod respond;
pub mod stream;
pub mod subreq;

use crate::limits::Limiter;
use crate::runtime::Snapshot;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use ctx::RequestCtx;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_proxy::{ProxyHttp, Session};
use pipeline::intake;
use std::sync::Arc;

/// The admin API as this adapter sees it. `crate::admin` builds on the
/// proxy's request context and answers, so server.rs plugs it in here
/// rather than the proxy importing it (no cycle between the two).
#[async_trait]
pub trait AdminApi: Send + Sync {
    /// Whether `path` is the admin API's or the dashboard's.
    fn owns(&self, path: &str) -> bool;
    /// Answer an admin request (admin listener only).
    async fn serve(
        &self,
        limiter: &Limiter,
        s: &mut pingora_core::protocols::http::ServerSession,
        ctx: &mut RequestCtx,
        method: &str,
        path: &str,
        query: Option<&str>,
    ) -> pingora_core::Result<()>;
    /// One finished request, from the place the access line is written.
    fn observe(&self, ctx: &RequestCtx, ingress: &'static str, total: std::time::Duration);
}

/// Cheap to clone: the main and admin listeners each hold one.
#[derive(Clone)]
pub struct Gateway {
    pub config: Arc<ArcSwap<Snapshot>>,
    pub limiter: Arc<Limiter>,
    /// The admin listener serves health, metrics and the admin API (`admin_api`).
    pub admin: bool,
    /// The admin API: serves on the admin listener, observes on both.
    pub admin_api: Arc<dyn AdminApi>,
}

impl Gateway {
    /// `limiter` is the process's one (both listeners share it, and with it
    /// one Redis connection and one view of the store's health).
    pub fn new(
        config: Arc<ArcSwap<Snapshot>>,
        limiter: Arc<Limiter>,
        admin: bool,
        admin_api: Arc<dyn AdminApi>,
    ) -> Self {
        Gateway {
            config,
            limiter,
            admin,
            admin_api,
        }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.config.load_full())
    }

    /// No modules: Pingora's default is a response-compression module at
    /// level 0 (off), which aigate never turns on (answers pass as the
    /// upstream framed them, and converted ones are written here), yet it is
    /// built and consulted on every session, a subrequest's too.
    fn init_downstream_modules(&self, _modules: &mut pingora_core::modules::http::HttpModules) {}

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
    /// the gateway pipeline (see its module doc for why not through `upstream_peer`) —
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
        // Boxed: the whole pipeline is a large future; inlined into Pingora's
        // per-connection future it would be copied around on every poll.
        Box::pin(pipeline::serve(self, s.as_downstream_mut(), ctx)).await?;
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
    /// 408) and counted, not logged as the gateway's; so is a route's client
    /// leaving (`pass::client_left`).
    /// A subrequest's errors are the attempt's, judged and logged by the
    /// client's request (P8).
    fn suppress_error_log(&self, _s: &Session, ctx: &RequestCtx, e: &pingora_core::Error) -> bool {
        ctx.sub.is_some()
            || e.esource() == &pingora_core::ErrorSource::Downstream
                && intake::body_read_refusal(e).is_some()
            || ctx.pass.is_some() && pass::client_left(e)
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
        let down = s.as_downstream_mut();
        pipeline::finish::finish(&self.limiter, &*self.admin_api, down, e, ctx, shutting_down)
            .await;
    }
}
