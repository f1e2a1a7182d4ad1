//! The main listener's front door. HTTP/1 requests for aigate's own
//! endpoints (the AI routes, models, health, metrics) are served here on
//! pingora-core's session, without Pingora's proxy layer. Everything else
//! goes to Pingora's `HttpProxy`, unchanged: configured routes and provider
//! passthrough, HTTP/2, and anything unusual.
//!
//! Why: per request the proxy layer built and boxed a ~15 KB future, then a
//! proxy `Session` (cache state, module contexts), and our ~10 KB request
//! future was boxed again inside `request_filter`. The two copies alone were
//! ~25k of the ~131k instructions of a passthrough request (callgrind). Here a
//! connection is one future: its keep-alive loop and its requests run inline,
//! and nothing is boxed per request.
//!
//! How a request is routed without consuming it: the request line is read
//! here and classified (`serves_here`), and the bytes read so far become the
//! next session's pipelined prefix (pingora-core's `set_pipelined_prefix`).
//! Either side then parses the request from its first byte, with no extra
//! syscall. A request is served here only when its method and path are
//! plain and name a built-in endpoint that no configured route takes;
//! anything else Pingora's path handles, as it handled every request before.

use super::Gateway;
use super::ctx::RequestCtx;
use super::upstream::Kept;
use crate::config::Snapshot;
use crate::routing::{Route, route};
use async_trait::async_trait;
use bytes::BytesMut;
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::{ALPN, Stream};
use pingora_core::server::ShutdownWatch;
use pingora_core::{Error, ErrorType};
use pingora_proxy::HttpProxy;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;

/// Pingora's keep-alive for a client connection (set on every new one).
const KEEPALIVE: Duration = Duration::from_secs(60);

/// A request line longer than this goes to Pingora, which answers it.
const MAX_LINE: usize = 8 * 1024;

/// A head is read to its end before either side parses it (so
/// `client_header_timeout` bounds it), up to Pingora's own limit for a head.
const MAX_HEAD: usize = 1024 * 1024;

/// The first read's buffer; it becomes Pingora's header buffer (same size).
const READ_BUF: usize = 4096;

/// A kept upstream connection (`upstream::Kept`) goes to the pool when the
/// client sends nothing for this long.
const KEPT_IDLE: Duration = Duration::from_secs(1);

pub struct Front {
    gw: Gateway,
    proxy: Arc<HttpProxy<Gateway>>,
    /// Set (and `stop` notified) when the service stops accepting.
    stopping: AtomicBool,
    stop: Notify,
}

/// What the connection carries into its next request.
struct Carry {
    stream: Stream,
    settings: Option<HttpPersistentSettings>,
    /// Bytes already read of the next request.
    prefix: BytesMut,
    /// The last request went to Pingora, whose settings may hold bytes of
    /// the next request we cannot see (only while draining, see `serve_h1`).
    delegated: bool,
}

impl Front {
    pub fn new(gw: Gateway, proxy: HttpProxy<Gateway>) -> Self {
        let proxy = Arc::new(proxy);
        // The proxy shares this gateway's cell: both paths spawn AI attempts
        // as subrequests of this proxy.
        let _ = gw
            .spawner
            .set(pingora_proxy::SubrequestSpawner::new(proxy.clone()));
        Front {
            gw,
            proxy,
            stopping: AtomicBool::new(false),
            stop: Notify::new(),
        }
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Serve an HTTP/1 connection: one request after another while it is
    /// kept alive.
    async fn serve_h1(&self, stream: Stream, shutdown: &ShutdownWatch) {
        let mut kept = Kept::default();
        self.serve_h1_with(stream, shutdown, &mut kept).await;
        // The upstream connection outlives this client's.
        self.gw.connector.pool(&mut kept);
    }

    async fn serve_h1_with(&self, stream: Stream, shutdown: &ShutdownWatch, kept: &mut Kept) {
        let mut c = Carry {
            stream,
            settings: None,
            prefix: BytesMut::new(),
            delegated: false,
        };
        let mut first = true;
        loop {
            // After a request Pingora served, its settings may carry the next
            // request's first bytes, invisibly (a pipelined request, or
            // Pingora's linger on a draining connection, `drain`): the next
            // request is Pingora's too, and so on for the connection.
            let here = if c.delegated {
                None
            } else {
                match self
                    .read_head(&mut c.stream, &mut c.prefix, kept, first)
                    .await
                {
                    Some(here) => here,
                    None => return,
                }
            };
            first = false;
            let mut session = ServerSession::new_http1(c.stream);
            match c.settings.take() {
                Some(s) => s.apply_to_session(&mut session),
                None => {
                    session.set_keepalive(if *shutdown.borrow() {
                        None
                    } else {
                        Some(KEEPALIVE.as_secs())
                    });
                    // A request sent before the previous answer was read is
                    // served after it (RFC 9112 9.3.2), not dropped with the
                    // connection; the settings carry this to later sessions.
                    session.set_pipelining_enabled(true);
                }
            }
            if !c.prefix.is_empty() {
                session.set_pipelined_prefix(std::mem::take(&mut c.prefix));
            }
            let next = if let Some(snap) = here {
                self.serve_one(session, snap, shutdown, kept).await
            } else {
                self.gw.connector.pool(kept);
                self.proxy
                    .process_new_http(session, shutdown)
                    .await
                    .map(|r| {
                        let (stream, settings) = r.consume();
                        // Without bytes of the next request held by Pingora,
                        // the next head is read here, under
                        // `client_header_timeout` (Pingora bounds each read of
                        // a head by the keep-alive, never the whole head).
                        let delegated = settings.as_ref().is_some_and(holds_next_bytes);
                        Carry {
                            stream,
                            settings,
                            prefix: BytesMut::new(),
                            delegated,
                        }
                    })
            };
            match next {
                Some(n) => c = n,
                None => return,
            }
        }
    }

    /// Read until `buf` holds the whole request head; `Some(Some(snapshot))`
    /// when this module serves it, on the snapshot it was classified with,
    /// and `Some(None)` when Pingora does. `None`: the client closed, stayed
    /// idle past the keep-alive, took longer than `client_header_timeout`
    /// over the head (counted), or the service stops while no request has
    /// begun. `first`: the connection's first request, whose clock starts at
    /// accept (a client that connects and sends nothing is a slow head too).
    async fn read_head(
        &self,
        stream: &mut Stream,
        buf: &mut BytesMut,
        kept: &mut Kept,
        first: bool,
    ) -> Option<Option<Arc<Snapshot>>> {
        let limit = self.gw.config.load().client_header_timeout;
        let mut deadline = (first || !buf.is_empty()).then(|| Instant::now() + limit);
        loop {
            if let Some(line_end) = head_complete(buf) {
                let snap = self.gw.config.load_full();
                let here = line_end <= MAX_LINE && serves_here(&buf[..line_end], &snap);
                return Some(here.then_some(snap));
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(READ_BUF);
            }
            // Registered on creation: a stop between the check and the read
            // still wakes it.
            let stop = self.stop.notified();
            let idle = buf.is_empty();
            if idle && self.stopping() {
                return None;
            }
            // While an upstream connection is kept, a short wait first; the
            // keep-alive wait then starts afresh (it may run KEPT_IDLE longer).
            let keep = idle && kept.is_some();
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None if keep => KEPT_IDLE,
                None => KEEPALIVE,
            };
            let read = pingora_timeout::timeout(wait, stream.read_buf(buf));
            let r = tokio::select! {
                biased;
                r = read => r,
                _ = stop, if idle => return None,
            };
            match r {
                Ok(Ok(n)) if n > 0 => {
                    deadline.get_or_insert_with(|| Instant::now() + limit);
                }
                Err(_) if deadline.is_some() => {
                    crate::metrics::client_timeout("header");
                    return None;
                }
                Err(_) if keep => self.gw.connector.pool(kept),
                // Closed, failed or timed out: as Pingora, quietly.
                _ => return None,
            }
        }
    }

    /// One request on this module's path: Pingora's `process_request` for a
    /// `request_filter` that answers, without the proxy session.
    async fn serve_one(
        &self,
        mut s: ServerSession,
        snap: Arc<Snapshot>,
        shutdown: &ShutdownWatch,
        kept: &mut Kept,
    ) -> Option<Carry> {
        match s.read_request().await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                if matches!(e.etype(), ErrorType::InvalidHTTPHeader) {
                    let _ = s.respond_error(400).await;
                }
                s.shutdown().await;
                return None;
            }
        }
        if *shutdown.borrow() {
            s.set_keepalive(None);
        }
        let mut ctx = RequestCtx::new(snap);
        ctx.kept = Some(std::mem::take(kept));
        let mut r = self.gw.serve(&mut s, &mut ctx).await;
        *kept = ctx.kept.take().unwrap_or_default();
        if r.is_ok() && ctx.pass.is_some() {
            // `serves_here` let a configured route through: it checked this
            // snapshot's routes, so this is a bug, answered as one.
            r = Error::e_explain(
                ErrorType::InternalError,
                "a configured route reached the front door",
            );
        }
        if let Err(e) = &r {
            if e.esource() != &pingora_core::ErrorSource::Downstream {
                log::error!("Fail to serve request: {e}");
            }
            super::pass::default_fail(&mut s, e, &mut ctx).await;
        }
        self.gw
            .finish_request(
                &mut s,
                r.as_ref().err().map(|e| &**e),
                &mut ctx,
                self.stopping(),
            )
            .await;
        if r.is_err() {
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&s);
        let (stream, prefix) = s.finish().await.ok().flatten()?.into_parts();
        Some(Carry {
            stream,
            settings: Some(settings),
            prefix: prefix.unwrap_or_default(),
            delegated: false,
        })
    }
}

/// Whether Pingora's settings for a connection carry bytes already read of
/// the next request (a pipelined request, or `drain`'s linger). Pingora 0.9.1
/// has no getter for them (`apps/mod.rs`, `HttpPersistentSettings`, private
/// `pipelined_prefix`, empty ones dropped by `reuse`), so its derived `Debug`
/// is read; the unit test below pins that form.
fn holds_next_bytes(s: &HttpPersistentSettings) -> bool {
    !format!("{s:?}").contains("pipelined_prefix: None")
}

/// Where the request line ends (its `\n`) once `buf` holds a whole request
/// head (or more than Pingora would take for one, which Pingora then refuses).
fn head_complete(buf: &[u8]) -> Option<usize> {
    let line_end = memchr::memchr(b'\n', buf)?;
    // An empty line ends the head; a bare-LF line counts, as for Pingora's parser.
    let rest = &buf[line_end..];
    let ended = memchr::memmem::find(rest, b"\n\r\n").is_some()
        || memchr::memmem::find(rest, b"\n\n").is_some()
        || buf.len() >= MAX_HEAD;
    ended.then_some(line_end)
}

/// Whether a request line names one of our own endpoints, plainly enough
/// that Pingora's parse gives the same method and path, and no configured
/// route of `snap` takes it (only Pingora's path can proxy a route).
fn serves_here(line: &[u8], snap: &Snapshot) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    if !version.starts_with(b"HTTP/1.")
        || !path.starts_with(b"/")
        || !path.iter().all(|&b| plain(b))
    {
        return false;
    }
    let (Ok(method), Ok(path)) = (std::str::from_utf8(method), std::str::from_utf8(path)) else {
        return false;
    };
    matches!(
        route(method, path),
        Route::Chat { .. }
            | Route::Embeddings
            | Route::Models
            | Route::Health
            | Route::Ready
            | Route::Metrics
    ) && (snap.routes.is_empty() || snap.routes.lookup(method, path, true).is_none())
}

/// Path bytes that every HTTP parser on the way leaves as they are.
fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~/:%@!$&'()*+,;=".contains(&b)
}

#[async_trait]
impl ServerApp for Front {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        match stream.selected_alpn_proto() {
            None | Some(ALPN::H1) => {}
            // HTTP/2 over TLS: Pingora's own loop, with the time limits it lacks.
            Some(ALPN::H2) => {
                let limit = self.gw.config.load().client_header_timeout;
                return super::h2_limits::serve(&self.proxy, stream, shutdown, limit).await;
            }
            // A custom protocol: Pingora's own loop.
            Some(_) => return self.proxy.process_new(stream, shutdown).await,
        }
        self.serve_h1(stream, shutdown).await;
        None
    }

    async fn cleanup(&self) {
        self.stopping.store(true, Ordering::Release);
        self.stop.notify_waiters();
        self.proxy.http_cleanup().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(extra: &str) -> Snapshot {
        let yaml = format!(
            "providers:\n  - {{name: oa, kind: openai, base_url: \"http://127.0.0.1:9/v1\", credentials: [{{key: x}}]}}\nmodels: [{{name: m, targets: [{{provider: oa}}]}}]\n{extra}"
        );
        let l =
            crate::config::load::parse(&yaml, &|_: &str| None).unwrap_or_else(|p| panic!("{p:?}"));
        Snapshot::compile(&l).unwrap()
    }

    #[test]
    fn built_in_endpoints_with_plain_lines_are_served_here() {
        let s = snap("");
        for line in [
            "POST /v1/chat/completions HTTP/1.1\r",
            "POST /chat/completions HTTP/1.0",
            "POST /v1/responses HTTP/1.1\r",
            "POST /v1/messages?beta=true HTTP/1.1\r",
            "POST /v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key=k HTTP/1.1\r",
            "POST /v1/embeddings HTTP/1.1\r",
            "GET /v1/models HTTP/1.1\r",
            "HEAD /health HTTP/1.1\r",
            "GET /health/ready HTTP/1.1\r",
            "GET /metrics HTTP/1.1\r",
        ] {
            assert!(serves_here(line.as_bytes(), &s), "{line}");
        }
    }

    #[test]
    fn anything_else_goes_to_pingora() {
        let s = snap("");
        for line in [
            // not a built-in endpoint, or not its method (Pingora's path answers)
            "GET /v1/chat/completions HTTP/1.1\r",
            "OPTIONS /v1/chat/completions HTTP/1.1\r",
            "post /v1/chat/completions HTTP/1.1\r",
            "POST /v1/other HTTP/1.1\r",
            "CONNECT /v1/messages HTTP/1.1\r",
            // not plain: Pingora's parser would rewrite or refuse it
            "POST http://gw/v1/chat/completions HTTP/1.1\r",
            "POST /v1/chat/completions\"x HTTP/1.1\r",
            "POST /v1/chat/completions{} HTTP/1.1\r",
            "POST /v1/chat/compl\u{e9}tions HTTP/1.1\r",
            "POST  /v1/chat/completions HTTP/1.1\r",
            "POST /v1/chat/completions HTTP/1.1 extra\r",
            "POST /v1/chat/completions HTTP/2.0\r",
            "POST /v1/chat/completions\r",
            "",
            "\r",
        ] {
            assert!(!serves_here(line.as_bytes(), &s), "{line}");
        }
        assert!(!serves_here(
            b"POST /v1/chat/completions\x00 HTTP/1.1\r",
            &s
        ));
    }

    #[test]
    fn a_head_is_complete_at_its_empty_line() {
        let line = "POST /v1/chat/completions HTTP/1.1\r\n".len() - 1;
        for (wire, want) in [
            (
                "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n\r\n",
                Some(line),
            ),
            (
                "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n\r\n{\"x\"",
                Some(line),
            ),
            (
                "POST /v1/chat/completions HTTP/1.1\nHost: gw\n\n",
                Some(line - 1),
            ),
            ("GET / HTTP/1.1\r\n\r\n", Some(15)),
            ("POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n", None),
            ("POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n\r", None),
            ("POST /v1/chat/completions HTTP/1.1", None),
            ("", None),
        ] {
            assert_eq!(head_complete(wire.as_bytes()), want, "{wire:?}");
        }
        // Past Pingora's limit for a head, Pingora takes it (and refuses it).
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD, b'a');
        assert_eq!(head_complete(&big), Some(15));
    }

    #[test]
    fn pingoras_settings_tell_whether_they_hold_the_next_requests_bytes() {
        let stream: Stream = Box::new(tokio::io::duplex(64).0);
        let mut s = HttpPersistentSettings::for_session(&ServerSession::new_http1(stream));
        assert!(!holds_next_bytes(&s));
        s.set_pipelined_prefix(BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]));
        assert!(holds_next_bytes(&s));
    }

    #[test]
    fn a_configured_route_on_a_built_in_path_goes_to_pingora() {
        let s = snap(
            "routes:\n  - {path: /v1/models, methods: [GET], provider: oa}\n  - {path: /v1/embeddings, methods: [GET], static: {body: {}}}\n  - {path: /v1/*, target: \"http://127.0.0.1:9/x\"}\n",
        );
        assert!(!serves_here(b"GET /v1/models HTTP/1.1\r", &s));
        // An exact route for other methods: Pingora's path answers, as
        // `serve` decides (the built-in endpoint wins for its own method).
        assert!(!serves_here(b"POST /v1/embeddings HTTP/1.1\r", &s));
        // Prefix routes never take a built-in path.
        assert!(serves_here(b"POST /v1/chat/completions HTTP/1.1\r", &s));
    }
}
