//! The main listener's HTTP/1 connection loop: it reads each request head
//! whole under `client_header_timeout`, then hands the request to Pingora's
//! `HttpProxy`, which serves every request (AI endpoints, routes, built-ins).
//!
//! Why this loop exists: Pingora 0.9.1 bounds each read of a head by the
//! keep-alive time, never the whole head, so a client trickling a head one
//! byte at a time would hold a connection forever (test_hostile.py). The
//! bytes read here become the session's pipelined prefix (pingora-core's
//! `set_pipelined_prefix`): Pingora parses the request from its first byte,
//! with no extra syscall.

use super::Gateway;
use async_trait::async_trait;
use bytes::BytesMut;
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::{ALPN, Stream};
use pingora_core::server::ShutdownWatch;
use pingora_proxy::HttpProxy;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;

/// Pingora's keep-alive for a client connection (set on every new one).
const KEEPALIVE: Duration = Duration::from_secs(60);

/// A head is read to its end before Pingora parses it (so
/// `client_header_timeout` bounds it), up to Pingora's own limit for a head.
const MAX_HEAD: usize = 1024 * 1024;

/// The first read's buffer; it becomes Pingora's header buffer (same size).
const READ_BUF: usize = 4096;

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
    /// Pingora's settings hold bytes of the next request we cannot see (a
    /// pipelined request, or `drain`'s linger): Pingora reads its head.
    delegated: bool,
}

impl Front {
    pub fn new(gw: Gateway, proxy: HttpProxy<Gateway>) -> Self {
        let proxy = Arc::new(proxy);
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
        let mut c = Carry {
            stream,
            settings: None,
            prefix: BytesMut::new(),
            delegated: false,
        };
        let mut first = true;
        loop {
            if !c.delegated && !self.read_head(&mut c.stream, &mut c.prefix, first).await {
                return;
            }
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
            let Some(r) = self.proxy.process_new_http(session, shutdown).await else {
                return;
            };
            let (stream, settings) = r.consume();
            // Without bytes of the next request held by Pingora, the next
            // head is read here, under `client_header_timeout`.
            let delegated = settings.as_ref().is_some_and(holds_next_bytes);
            c = Carry {
                stream,
                settings,
                prefix: BytesMut::new(),
                delegated,
            };
        }
    }

    /// Read until `buf` holds the whole request head. False: the client
    /// closed, stayed idle past the keep-alive, took longer than
    /// `client_header_timeout` over the head (counted), or the service stops
    /// while no request has begun. `first`: the connection's first request,
    /// whose clock starts at accept (a client that connects and sends
    /// nothing is a slow head too).
    async fn read_head(&self, stream: &mut Stream, buf: &mut BytesMut, first: bool) -> bool {
        let limit = self.gw.config.load().client_header_timeout;
        let mut deadline = (first || !buf.is_empty()).then(|| Instant::now() + limit);
        loop {
            if head_complete(buf) {
                return true;
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(READ_BUF);
            }
            // Registered on creation: a stop between the check and the read
            // still wakes it.
            let stop = self.stop.notified();
            let idle = buf.is_empty();
            if idle && self.stopping() {
                return false;
            }
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => KEEPALIVE,
            };
            let read = pingora_timeout::timeout(wait, stream.read_buf(buf));
            let r = tokio::select! {
                biased;
                r = read => r,
                _ = stop, if idle => return false,
            };
            match r {
                Ok(Ok(n)) if n > 0 => {
                    deadline.get_or_insert_with(|| Instant::now() + limit);
                }
                Err(_) if deadline.is_some() => {
                    crate::metrics::client_timeout("header");
                    return false;
                }
                // Closed, failed or timed out: as Pingora, quietly.
                _ => return false,
            }
        }
    }
}

/// Whether Pingora's settings for a connection carry bytes already read of
/// the next request (a pipelined request, or `drain`'s linger). Pingora 0.9.1
/// has no getter for them (`apps/mod.rs`, `HttpPersistentSettings`, private
/// `pipelined_prefix`, empty ones dropped by `reuse`), so its derived `Debug`
/// is read; the unit test below pins that form. Read as it is written and
/// no further than the field's first word (the formatting is then cut
/// short): per request, with no string built.
fn holds_next_bytes(s: &HttpPersistentSettings) -> bool {
    use std::fmt::Write;
    /// The derived `Debug` writes a field's name, then ": ", then its value.
    #[derive(Default)]
    struct Reader {
        at_field: bool,
        after_colon: bool,
        holds: Option<bool>,
    }
    impl std::fmt::Write for Reader {
        fn write_str(&mut self, piece: &str) -> std::fmt::Result {
            if self.after_colon {
                self.holds = Some(piece != "None");
                return Err(std::fmt::Error);
            }
            self.after_colon = self.at_field && piece == ": ";
            self.at_field = piece == "pipelined_prefix";
            Ok(())
        }
    }
    let mut r = Reader::default();
    let _ = write!(r, "{s:?}");
    // A form this reading does not know: the safe answer (Pingora reads the head).
    r.holds.unwrap_or(true)
}

/// Whether `buf` holds a whole request head (or more than Pingora would
/// take for one, which Pingora then refuses).
fn head_complete(buf: &[u8]) -> bool {
    let Some(line_end) = memchr::memchr(b'\n', buf) else {
        return false;
    };
    // An empty line ends the head; a bare-LF line counts, as for Pingora's parser.
    let rest = &buf[line_end..];
    memchr::memmem::find(rest, b"\n\r\n").is_some()
        || memchr::memmem::find(rest, b"\n\n").is_some()
        || buf.len() >= MAX_HEAD
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

    #[test]
    fn a_head_is_complete_at_its_empty_line() {
        for (wire, want) in [
            (
                "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n\r\n",
                true,
            ),
            (
                "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n\r\n{\"x\"",
                true,
            ),
            ("POST /v1/chat/completions HTTP/1.1\nHost: gw\n\n", true),
            ("GET / HTTP/1.1\r\n\r\n", true),
            ("POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n", false),
            (
                "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n\r",
                false,
            ),
            ("POST /v1/chat/completions HTTP/1.1", false),
            ("", false),
        ] {
            assert_eq!(head_complete(wire.as_bytes()), want, "{wire:?}");
        }
        // Past Pingora's limit for a head, Pingora takes it (and refuses it).
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD, b'a');
        assert!(head_complete(&big));
    }

    #[test]
    fn pingoras_settings_tell_whether_they_hold_the_next_requests_bytes() {
        let stream: Stream = Box::new(tokio::io::duplex(64).0);
        let mut s = HttpPersistentSettings::for_session(&ServerSession::new_http1(stream));
        assert!(!holds_next_bytes(&s));
        s.set_pipelined_prefix(BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]));
        assert!(holds_next_bytes(&s));
    }
}
