//! HTTP/2 client connections: the time limits Pingora 0.9.1 does not apply.
//!
//! Pingora reads an HTTP/2 request body with no timeout
//! (pingora-core-0.9.1 `protocols/http/v2/server.rs`: `set_read_timeout` has
//! no HTTP/2 arm, and `read_body` awaits the stream's next DATA frame
//! unbounded), and waits for a connection's preface and first request with
//! none either (`apps/mod.rs` `process_new`: `server::handshake`, then the
//! accept loop, whose idle timeout is off by default). So:
//!
//! - a connection's first request must arrive within `client_header_timeout`
//!   of the connection (`serve`), and a connection with no open stream is
//!   closed after `client_header_timeout` (Pingora's `h2_idle_timeout`, set per
//!   connection from the live config): for HTTP/2 the header limit is also the
//!   idle limit, as nothing else bounds a head sent in slow CONTINUATION frames;
//! - a proxied route's body is bounded per stream (`watch_body`): the AI
//!   endpoints time their own reads (`pipeline::intake::read_body`), but a route's
//!   body is read inside Pingora's proxy loop, so the stream's task is ended
//!   when its deadline passes; the client sees the stream reset.

use super::Gateway;
use super::body_rate::Limit;
use async_trait::async_trait;
use pingora_core::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream, ServerApp};
use pingora_core::protocols::Stream;
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::http::v2::server::H2Options;
use pingora_core::server::ShutdownWatch;
use pingora_proxy::HttpProxy;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// One HTTP/2 connection: Pingora's own loop, with its options taken from the
/// live config and each stream's body watched.
struct H2App {
    proxy: Arc<HttpProxy<Gateway>>,
    options: HttpServerOptions,
    /// A stream (a whole request head) has arrived.
    started: AtomicBool,
}

/// Serve an HTTP/2 connection (after ALPN chose `h2`).
pub async fn serve(
    proxy: &Arc<HttpProxy<Gateway>>,
    stream: Stream,
    shutdown: &ShutdownWatch,
    header_timeout: Duration,
) -> Option<Stream> {
    let mut options = proxy.server_options().cloned().unwrap_or_default();
    options.h2_idle_timeout = Some(header_timeout);
    let app = Arc::new(H2App {
        proxy: proxy.clone(),
        options,
        started: AtomicBool::new(false),
    });
    let conn = ServerApp::process_new(&app, stream, shutdown);
    // The preface and the first request head, together.
    let first = async {
        pingora_timeout::sleep(header_timeout).await;
        if app.started.load(Ordering::Acquire) {
            std::future::pending::<()>().await;
        }
    };
    // `first` before `conn`: when Pingora's idle timeout (which starts after
    // the handshake, so never earlier) ends the connection in the same tick,
    // the slow first request is still counted.
    tokio::select! {
        biased;
        () = first => {
            crate::metrics::client_timeout("header");
            None
        }
        r = conn => r,
    }
}

#[async_trait]
impl HttpServerApp for H2App {
    async fn process_new_http(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        self.started.store(true, Ordering::Release);
        let watch = Arc::new(Watch::default());
        let run = BODY.scope(
            watch.clone(),
            self.proxy.process_new_http(session, shutdown),
        );
        watch.bound(run).await.flatten()
    }

    fn h2_options(&self) -> Option<H2Options> {
        self.proxy.h2_options()
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.options)
    }
}

tokio::task_local! {
    /// The body deadline of the HTTP/2 stream this task serves.
    static BODY: Arc<Watch>;
}

/// Set (`Some`) or clear the current HTTP/2 stream's body deadline, and the
/// rule behind it; nothing outside an HTTP/2 stream's task (HTTP/1 has
/// Pingora's read timeout).
pub fn watch_body(at: Option<Instant>, rule: Limit) {
    let _ = BODY.try_with(|w| {
        *w.state.lock().unwrap_or_else(|p| p.into_inner()) = (at, rule);
        // A stored permit: a change made while `bound` is not waiting is seen.
        w.changed.notify_one();
    });
}

struct Watch {
    state: Mutex<(Option<Instant>, Limit)>,
    changed: Notify,
}

impl Default for Watch {
    fn default() -> Self {
        Watch {
            state: Mutex::new((None, Limit::Pause)),
            changed: Notify::new(),
        }
    }
}

impl Watch {
    fn get(&self) -> (Option<Instant>, Limit) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `run` to its end, or `None` (counted) once the deadline passes.
    async fn bound<F: Future>(&self, run: F) -> Option<F::Output> {
        tokio::pin!(run);
        loop {
            let (at, rule) = self.get();
            let expiry = async {
                match at {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = &mut run => return Some(r),
                () = self.changed.notified() => {}
                () = expiry => {
                    if self.get().0 == at {
                        crate::metrics::client_timeout(rule.phase());
                        return None;
                    }
                }
            }
        }
    }
}
