//! Spike (issue 14): can Pingora's own phases carry large AI bodies?
//!
//! Not product code. A minimal `ProxyHttp` that does what aigate's one-path
//! design needs, through Pingora 0.9.1's subrequests:
//!
//! - the main request's `request_filter` reads the whole body (bounded), peeks
//!   `model`, and for each attempt (provider A, then B) converts the body for
//!   that provider and runs it as a *subrequest* on the same `ProxyHttp` with
//!   the converted body preset;
//! - the subrequest runs the ordinary phases: `upstream_peer`,
//!   `upstream_request_filter` (path, length), `upstream_response_filter`
//!   (marks a 5xx as "retry elsewhere"), `response_body_filter` (converts an
//!   SSE stream event by event);
//! - the subrequest's answer is relayed to the client, either by Pingora's
//!   `pipe_subrequest` (`--mode pipe`) or by a small driver of the
//!   subrequest's channels that holds the answer head back until the first
//!   content (`--mode drive`);
//! - `--mode plain` is Pingora's ordinary proxy path without subrequests and
//!   without reading the body early (the cost baseline);
//! - `--mode preread` is the alternative without subrequests: the body read in
//!   `request_filter`, then injected (converted) by `request_body_filter` when
//!   Pingora replays its retry buffer; shows where that stops (64 KiB).
//!
//! The upstream and the checks are in `benches/subrequest/` (Python).
//!
//! Run: `spike_subrequest --listen 127.0.0.1:7000 --a 127.0.0.1:7001
//! --b 127.0.0.1:7002 --mode drive [--threads 1]` (cleartext HTTP/1 and h2c).

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::header;
use pingora_core::apps::HttpServerOptions;
use pingora_core::protocols::http::HttpTask;
use pingora_core::protocols::http::subrequest::server::SubrequestHandle;
use pingora_core::server::Server;
use pingora_core::server::configuration::ServerConf;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::subrequest::Ctx as SubCtx;
use pingora_proxy::subrequest::pipe::{InputBody, InputBodyType, pipe_subrequest};
use pingora_proxy::{ProxyHttp, Session};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};

// The same allocator as aigate, so instruction counts compare.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bound on the client body read in `request_filter` (aigate: `max_body_bytes`).
const MAX_BODY: usize = 32 << 20;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Plain,
    Preread,
    Pipe,
    Drive,
}

/// The two "provider kinds" of the spike: each wants its own body framing and
/// path, so a fallback from A to B must re-convert the body.
#[derive(Clone, Copy, Debug)]
enum Kind {
    A,
    B,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::A => "/a/v1/chat/completions",
            Kind::B => "/b/v1/messages",
        }
    }

    /// Stand-in for a format conversion: a different length per kind, so the
    /// upstream's length and digest prove which conversion it received.
    fn convert(self, body: &[u8]) -> Bytes {
        let (pre, post): (&[u8], &[u8]) = match self {
            Kind::A => (b"A:", b""),
            Kind::B => (b"BB:", b":BB"),
        };
        let mut out = BytesMut::with_capacity(pre.len() + body.len() + post.len());
        out.extend_from_slice(pre);
        out.extend_from_slice(body);
        out.extend_from_slice(post);
        out.freeze()
    }
}

/// One attempt, shared by the main request (which plans it and reads the
/// outcome) and its subrequest (which runs the phases). Travels in the
/// subrequest's user context.
struct Attempt {
    kind: Kind,
    peer: SocketAddr,
    body_len: usize,
    /// Another attempt follows: a 5xx answer is not relayed but retried.
    has_next: bool,
    /// Set by the subrequest's `upstream_response_filter`.
    retry_elsewhere: AtomicBool,
    status: AtomicU16,
}

#[derive(Default)]
struct Ctx {
    attempt: Option<Arc<Attempt>>,
    /// Bytes of an SSE event not yet complete at the end of a chunk.
    carry: BytesMut,
    convert_stream: bool,
    /// `--mode preread`: the converted body, to be injected upstream.
    preread: Option<Bytes>,
}

struct Spike {
    mode: Mode,
    a: SocketAddr,
    b: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Spike {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    fn allow_spawning_subrequest(&self, session: &Session, _ctx: &Ctx) -> bool {
        session.subrequest_ctx.is_none()
    }

    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        let Some(attempt) = attempt_of(session) else {
            return Ok(());
        };
        // The subrequest's head is the client's raw HTTP/1 head (its original
        // Content-Length); its body reader is set up from this header on the
        // first body read, so the converted length must be put here, before.
        let req = session.req_header_mut();
        req.remove_header(&header::TRANSFER_ENCODING);
        req.insert_header(header::CONTENT_LENGTH, attempt.body_len)?;
        ctx.attempt = Some(attempt);
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        if self.mode == Mode::Plain || ctx.attempt.is_some() {
            return Ok(false);
        }
        if self.mode == Mode::Preread {
            // Pingora replays an early-read body only from its retry buffer,
            // which exists only if enabled before the read.
            session.enable_retry_buffering();
            let body = read_body(session).await?;
            ctx.preread = Some(Kind::A.convert(&body));
            return Ok(false);
        }
        let body = read_body(session).await?;
        let model = peek_model(&body);
        let plan = self.plan(&model);
        serve_attempts(self.mode, session, &body, &plan).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let addr = ctx.attempt.as_ref().map_or(self.a, |a| a.peer);
        Ok(Box::new(HttpPeer::new(addr, false, String::new())))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut pingora_http::RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let kind = ctx.attempt.as_ref().map_or(Kind::A, |a| a.kind);
        req.set_uri(http::Uri::from_static(kind.path()));
        if let Some(b) = &ctx.preread {
            req.insert_header(header::CONTENT_LENGTH, b.len())?;
        }
        req.insert_header(header::HOST, "upstream")?;
        // The body is already in hand: an upstream `100 Continue` would come
        // back through the subrequest as an extra informational head.
        req.remove_header(&header::EXPECT);
        req.insert_header("x-spike-kind", format!("{kind:?}"))?;
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(a) = &ctx.attempt {
            a.status.store(resp.status.as_u16(), Ordering::Relaxed);
            if resp.status.is_server_error() && a.has_next {
                a.retry_elsewhere.store(true, Ordering::Relaxed);
            }
        }
        let sse = resp
            .headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if sse && ctx.attempt.is_some() {
            // The converted stream has another length: re-framed chunked (H1).
            ctx.convert_stream = true;
            resp.remove_header(&header::CONTENT_LENGTH);
            resp.insert_header(header::TRANSFER_ENCODING, "chunked")?;
        }
        Ok(())
    }

    /// `--mode preread`: Pingora calls this for an already-read body only
    /// when it replays its retry buffer (or the body is empty); the converted
    /// body replaces the replayed one at its end.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(b) = ctx.preread.take_if(|_| end) {
            *body = Some(b);
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<std::time::Duration>> {
        if ctx.convert_stream {
            *body = convert_events(&mut ctx.carry, body.take(), end);
        }
        Ok(None)
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, _ctx: &mut Ctx) {
        // One line per client request: the subrequests' own runs are quiet.
        if let Some(e) = e
            && session.subrequest_ctx.is_none()
        {
            log::warn!("request failed: {e}");
        }
    }
}

impl Spike {
    /// A then B (upstream A answers 500 to a request with `x-fail-first`);
    /// model "only-b" gets B alone.
    fn plan(&self, model: &str) -> Vec<(Kind, SocketAddr)> {
        match model {
            "only-b" => vec![(Kind::B, self.b)],
            _ => vec![(Kind::A, self.a), (Kind::B, self.b)],
        }
    }
}

/// The subrequest's attempt, if this session is one.
fn attempt_of(session: &Session) -> Option<Arc<Attempt>> {
    let user = session.subrequest_ctx.as_ref()?.user_ctx()?;
    user.downcast_ref::<Arc<Attempt>>().cloned()
}

async fn read_body(session: &mut Session) -> Result<Bytes> {
    // Nothing in Pingora answers `Expect: 100-continue` for a body read in
    // `request_filter`: the client would wait its own timeout (curl: 1 s).
    let expects = session
        .get_header(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects {
        session.write_continue_response().await?;
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = session.read_request_body().await? {
        if buf.len() + chunk.len() > MAX_BODY {
            return Error::e_explain(ErrorType::HTTPStatus(413), "body over the limit");
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn peek_model(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Peek {
        #[serde(default)]
        model: String,
    }
    serde_json::from_slice::<Peek>(body)
        .map(|p| p.model)
        .unwrap_or_default()
}

/// Runs the attempts in order; the first whose answer is not marked "retry
/// elsewhere" is relayed. Nothing reaches the client from a retried attempt.
async fn serve_attempts(
    mode: Mode,
    session: &mut Session,
    body: &Bytes,
    plan: &[(Kind, SocketAddr)],
) -> Result<()> {
    for (i, (kind, peer)) in plan.iter().enumerate() {
        let converted = kind.convert(body);
        let attempt = Arc::new(Attempt {
            kind: *kind,
            peer: *peer,
            body_len: converted.len(),
            has_next: i + 1 < plan.len(),
            retry_elsewhere: AtomicBool::new(false),
            status: AtomicU16::new(0),
        });
        let relayed = match mode {
            Mode::Drive => drive(session, &attempt, converted).await?,
            _ => pipe(session, &attempt, converted).await?,
        };
        if relayed {
            return Ok(());
        }
        log::info!(
            "attempt {kind:?} answered {}: retry on the next provider",
            attempt.status.load(Ordering::Relaxed)
        );
    }
    session.respond_error(502).await
}

fn subrequest(
    session: &mut Session,
    attempt: &Arc<Attempt>,
) -> Result<(pingora_proxy::PreparedSubrequest, SubrequestHandle)> {
    // The subrequest parses an HTTP/1 rendering of the client's head; for an
    // HTTP/2 client that rendering says "HTTP/2", which the HTTP/1 parser
    // refuses (the subrequest then ends without a word).
    if session.req_header().version == http::Version::HTTP_2 {
        session.req_header_mut().set_version(http::Version::HTTP_11);
    }
    let spawner = session
        .subrequest_spawner
        .as_ref()
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "no subrequest spawner"))?;
    let ctx = SubCtx::builder()
        .body_mode(pingora_proxy::subrequest::BodyMode::ExpectBody)
        .user_ctx(Box::new(attempt.clone()))
        .build();
    Ok(spawner.create_subrequest(session.as_downstream(), ctx))
}

/// Pingora's pipe. Returns whether the answer was relayed (false: retry).
/// The task filter cannot hold the head back until the first content: it maps
/// one task to at most one task, so a held head could never be re-emitted
/// together with the body that follows it.
async fn pipe(session: &mut Session, attempt: &Arc<Attempt>, body: Bytes) -> Result<bool> {
    let (sub, handle) = subrequest(session, attempt)?;
    let a = attempt.clone();
    // `upstream_response_filter` ran in the subrequest before its head was
    // sent into the channel, so the flag is set when the head gets here.
    let filter = move |task: HttpTask| {
        if a.retry_elsewhere.load(Ordering::Relaxed) {
            return Ok(None);
        }
        Ok(Some(task))
    };
    let preset = InputBodyType::Preset(InputBody::Bytes(vec![body]));
    match pipe_subrequest(session, sub, handle, filter, preset).await {
        Ok(state) => {
            if let Some(j) = state.join_handle {
                let _ = j.await;
            }
            Ok(!attempt.retry_elsewhere.load(Ordering::Relaxed))
        }
        Err(e) => Err(e.error),
    }
}

/// Own driver of the subrequest's channels: sends the preset body when the
/// subrequest asks for it, holds the answer head until the first content (or
/// the end), drops a "retry elsewhere" answer, and aborts the subrequest (its
/// upstream connection with it) when the client goes away.
async fn drive(session: &mut Session, attempt: &Arc<Attempt>, body: Bytes) -> Result<bool> {
    let (sub, handle) = subrequest(session, attempt)?;
    let SubrequestHandle {
        tx,
        mut rx,
        subreq_wants_body,
        subreq_proxy_error: _,
    } = handle;
    let task = tokio::spawn(sub.run());
    let feed = async move {
        if subreq_wants_body.await.is_ok() {
            let _ = tx.send(HttpTask::Body(Some(body), true)).await;
        }
        // Keep the sender open while the answer is relayed: a closed input
        // channel reads as a client that went away.
        std::future::pending::<()>().await
    };
    let outcome = tokio::select! {
        r = relay(session, attempt, &mut rx) => r,
        _ = feed => unreachable!("the feed never ends"),
    };
    if outcome.is_err() {
        task.abort();
    }
    outcome
}

async fn relay(
    session: &mut Session,
    attempt: &Attempt,
    rx: &mut tokio::sync::mpsc::Receiver<HttpTask>,
) -> Result<bool> {
    let mut held: Option<Box<ResponseHeader>> = None;
    let mut head_sent = false;
    while let Some(task) = rx.recv().await {
        if attempt.retry_elsewhere.load(Ordering::Relaxed) {
            // Drain: the subrequest finishes reading the failed answer and
            // keeps its upstream connection.
            continue;
        }
        let end = task.is_end();
        let out = match task {
            HttpTask::Header(h, false) if !head_sent => {
                held = Some(h);
                continue;
            }
            HttpTask::Body(Some(b), _) if b.is_empty() && !end => continue,
            // Ends the loop; decided below (retry while nothing was sent).
            HttpTask::Failed(_) if !head_sent => break,
            t => t,
        };
        let mut tasks = Vec::with_capacity(2);
        if let Some(h) = held.take() {
            tasks.push(HttpTask::Header(h, false));
        }
        head_sent = true;
        tasks.push(out);
        session.write_response_tasks(tasks).await?;
        if end {
            break;
        }
    }
    if !head_sent && attempt.has_next {
        // The answer failed before its first content (the head was held):
        // nothing reached the client, so the next provider may still answer.
        attempt.retry_elsewhere.store(true, Ordering::Relaxed);
    }
    let retry = attempt.retry_elsewhere.load(Ordering::Relaxed);
    if !retry && !head_sent {
        // e.g. the subrequest could not parse its head: it just ends.
        return Error::e_explain(
            ErrorType::HTTPStatus(502),
            "subrequest ended without an answer",
        );
    }
    Ok(!retry)
}

/// Converts complete SSE events (`data: X` -> `data: conv:X`), keeping an
/// incomplete tail for the next chunk, as a real stream converter must.
fn convert_events(carry: &mut BytesMut, chunk: Option<Bytes>, end: bool) -> Option<Bytes> {
    if let Some(c) = chunk {
        carry.extend_from_slice(&c);
    }
    let cut = if end {
        carry.len()
    } else {
        match memchr::memmem::rfind(carry, b"\n\n") {
            Some(i) => i + 2,
            None => return Some(Bytes::new()),
        }
    };
    let done = carry.split_to(cut);
    let mut out = BytesMut::with_capacity(done.len() + done.len() / 8);
    for line in done.split_inclusive(|&b| b == b'\n') {
        match line.strip_prefix(b"data: ") {
            Some(rest) => {
                out.extend_from_slice(b"data: conv:");
                out.extend_from_slice(rest);
            }
            None => out.extend_from_slice(line),
        }
    }
    Some(out.freeze())
}

struct Args {
    listen: String,
    a: SocketAddr,
    b: SocketAddr,
    mode: Mode,
    threads: usize,
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        listen: "127.0.0.1:7000".into(),
        a: "127.0.0.1:7001".parse().unwrap(),
        b: "127.0.0.1:7002".parse().unwrap(),
        mode: Mode::Drive,
        threads: 1,
    };
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_default();
        match k.as_str() {
            "--listen" => a.listen = v,
            "--a" => a.a = v.parse().expect("--a addr"),
            "--b" => a.b = v.parse().expect("--b addr"),
            "--threads" => a.threads = v.parse().expect("--threads n"),
            "--mode" => {
                a.mode = match v.as_str() {
                    "plain" => Mode::Plain,
                    "preread" => Mode::Preread,
                    "pipe" => Mode::Pipe,
                    "drive" => Mode::Drive,
                    _ => panic!("--mode plain|preread|pipe|drive"),
                }
            }
            _ => panic!("unknown option {k}"),
        }
    }
    a
}

fn main() {
    env_logger::init();
    let args = args();
    let conf = ServerConf {
        threads: args.threads,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let spike = Spike {
        mode: args.mode,
        a: args.a,
        b: args.b,
    };
    let mut svc = pingora_proxy::http_proxy_service(&server.configuration, spike);
    if let Some(app) = svc.app_logic_mut() {
        let mut opts = HttpServerOptions::default();
        opts.h2c = true;
        app.server_options = Some(opts);
    }
    svc.add_tcp(&args.listen);
    server.add_service(svc);
    server.run_forever();
}
