//! One upstream attempt of an AI request as a Pingora subrequest (README
//! "Design: one request, one subrequest per attempt").
//!
//! The client's request (`pipeline`) has the whole body; for each attempt it
//! runs a subrequest on the same `ProxyHttp` with that attempt's converted
//! body preset. The subrequest goes through Pingora's phases (`upstream_peer`,
//! `upstream_request_filter`, its client, pool and time-outs); its answer
//! comes back over the subrequest's channel into an [`Answer`], which the
//! pipeline reads as head, chunks and end. Pitfalls (benches/subrequest
//! README, P1–P12) are named where they are met.

use bytes::Bytes;
use http::header;
use pingora_core::protocols::http::HttpTask;
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::http::subrequest::server::SubrequestHandle;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::subrequest::{BodyMode, Ctx as SubCtx};
use pingora_proxy::{Session, SubrequestSpawner};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};

/// What one attempt's subrequest needs, shared by the client's request
/// (which makes it) and the subrequest (whose fresh ctx holds it, P5).
pub struct Job {
    pub peer: HttpPeer,
    /// The upstream request head, taken by the subrequest's
    /// `upstream_request_filter`.
    head: Mutex<Option<RequestHeader>>,
    body_len: usize,
    connected: AtomicBool,
    on_connect: Notify,
}

impl Job {
    pub fn new(peer: HttpPeer, head: RequestHeader, body_len: usize) -> Arc<Job> {
        Arc::new(Job {
            peer,
            head: Mutex::new(Some(head)),
            body_len,
            connected: AtomicBool::new(false),
            on_connect: Notify::new(),
        })
    }

    /// Whether the subrequest got an upstream connection (an error before
    /// that is a connect failure).
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

/// The attempt this session runs, if it is one of our subrequests.
pub fn job_of(s: &Session) -> Option<Arc<Job>> {
    let user = s.subrequest_ctx.as_ref()?.user_ctx()?;
    user.downcast_ref::<Arc<Job>>().cloned()
}

/// The subrequest's `early_request_filter`: its own head is the stand-in
/// head (`TEMPLATE`), so the preset body's length goes here, before anything
/// reads the body (P1). A subrequest made from the client's session instead
/// (the fallback) carries the client's head: its framing and `Expect` go
/// too, the body being in hand already (P6).
pub fn early(s: &mut Session, job: &Job) -> Result<()> {
    let req = s.req_header_mut();
    req.remove_header(&header::TRANSFER_ENCODING);
    req.remove_header(&header::EXPECT);
    req.insert_header(header::CONTENT_LENGTH, job.body_len)
}

/// The head a subrequest's session is parsed from. Pingora builds a
/// subrequest's session by rendering the session it is given as HTTP/1 and
/// parsing that again; given the client's session, that is the client's whole
/// head, parsed a second time (and cloned once more by the proxy phases) only
/// to be replaced by the attempt's head in `upstream_request_filter`. None of
/// the client's head is needed there (`early` sets the length, `Job` has the
/// rest), so a one-line stand-in is parsed instead; it also spares the
/// HTTP/2 client's head, which would render as an unparsable "HTTP/2" (P3).
const TEMPLATE_HEAD: &[u8] = b"POST / HTTP/1.1\r\n\r\n";

thread_local! {
    /// Parsed once per thread; only read (rendered) by `create_subrequest`.
    static TEMPLATE: Option<ServerSession> = template();
}

fn template() -> Option<ServerSession> {
    let io = std::io::Cursor::new(TEMPLATE_HEAD.to_vec());
    let mut s = ServerSession::new_http1(Box::new(io));
    // An in-memory read: done at its first poll.
    match ready_now(s.read_request()) {
        Some(Ok(true)) => Some(s),
        _ => None,
    }
}

/// The subrequest's `upstream_request_filter`: the head made by the client's
/// request for this attempt (path, credential, the provider's headers). On an
/// h2 upstream connection (a provider's `http2`) Pingora has set the head to
/// HTTP/2 and expects it to stay so.
pub fn upstream_request(req: &mut RequestHeader, job: &Job) {
    if let Some(mut h) = job.head.lock().expect("not poisoned").take() {
        // An HTTP/1.0 client's attempt still goes upstream as HTTP/1.1.
        if req.version == http::Version::HTTP_2 {
            h.set_version(http::Version::HTTP_2);
        }
        *req = h;
    }
}

/// The subrequest's `connected_to_upstream`: the first-byte clock starts.
pub fn connected(job: &Job) {
    job.connected.store(true, Ordering::Relaxed);
    job.on_connect.notify_one();
}

/// An error in a subrequest is reported to the client's request (through
/// the handle's error channel) and never retried inside the subrequest,
/// whose body replay is capped at 64 KiB (P9): the pipeline moves on.
pub fn no_retry(mut e: Box<Error>) -> Box<Error> {
    e.set_retry(false);
    e
}

/// The running subrequest; aborted (closing its upstream connection) when
/// dropped before its answer ended.
struct Task {
    handle: tokio::task::JoinHandle<()>,
    ended: bool,
}

impl Drop for Task {
    fn drop(&mut self) {
        if !self.ended {
            self.handle.abort();
        }
    }
}

/// A started attempt, before its answer head.
pub struct Pending {
    task: Task,
    /// Held, not used: the subrequest takes its closing as the client
    /// leaving.
    _tx: mpsc::Sender<HttpTask>,
    rx: mpsc::Receiver<HttpTask>,
    errors: oneshot::Receiver<Box<Error>>,
    job: Arc<Job>,
}

/// Start `job`'s subrequest with `body` as its input.
pub fn start(
    spawner: &SubrequestSpawner,
    s: &mut ServerSession,
    job: Arc<Job>,
    body: Bytes,
) -> Pending {
    let ctx = SubCtx::builder()
        .body_mode(BodyMode::ExpectBody)
        .user_ctx(Box::new(job.clone()))
        .build();
    let made = TEMPLATE.with(|t| t.as_ref().map(|t| spawner.create_subrequest(t, ctx)));
    let (sub, handle) = match made {
        Some(m) => m,
        None => from_client(spawner, s, &job),
    };
    let SubrequestHandle {
        tx,
        rx,
        subreq_wants_body: _,
        subreq_proxy_error,
    } = handle;
    // The whole body goes in now (the first task on an empty channel of 4:
    // never waits), not when the subrequest first asks for it: an upstream
    // may answer before it reads the request (a static file, an early 401),
    // and an answer head taken before the ask would leave the body unsent
    // and the subrequest waiting for it, the answer's body stuck behind (P13).
    let _ = tx.try_send(HttpTask::Body(Some(body), true));
    Pending {
        task: Task {
            handle: tokio::spawn(sub.run()),
            ended: false,
        },
        _tx: tx,
        rx,
        errors: subreq_proxy_error,
        job,
    }
}

/// The fallback should the stand-in head ever fail to parse: the subrequest
/// made from the client's own session.
#[cold]
fn from_client(
    spawner: &SubrequestSpawner,
    s: &mut ServerSession,
    job: &Arc<Job>,
) -> (pingora_proxy::PreparedSubrequest, SubrequestHandle) {
    let ctx = SubCtx::builder()
        .body_mode(BodyMode::ExpectBody)
        .user_ctx(Box::new(job.clone()))
        .build();
    // The subrequest parses an HTTP/1 rendering of the client's head, which
    // for an HTTP/2 client would say "HTTP/2" and be refused (P3).
    let h2 = s.req_header().version == http::Version::HTTP_2;
    if h2 {
        s.req_header_mut().set_version(http::Version::HTTP_11);
    }
    let made = spawner.create_subrequest(s, ctx);
    if h2 {
        s.req_header_mut().set_version(http::Version::HTTP_2);
    }
    made
}

impl Pending {
    /// Wait for the answer head: within `connect + first_byte`, the second
    /// counted from the connection. Errors as the subrequest met them.
    pub async fn head(mut self, connect: Duration, first_byte: Duration) -> Result<Answer> {
        enum Ev {
            Connected,
            Late,
            Task(Option<HttpTask>),
        }
        let deadline = tokio::time::sleep(connect + first_byte);
        tokio::pin!(deadline);
        let job = self.job.clone();
        let mut connect_seen = false;
        loop {
            let ev = tokio::select! {
                _ = job.on_connect.notified(), if !connect_seen => Ev::Connected,
                _ = &mut deadline => Ev::Late,
                t = self.rx.recv() => Ev::Task(t),
            };
            match ev {
                Ev::Connected => {
                    connect_seen = true;
                    deadline
                        .as_mut()
                        .reset(tokio::time::Instant::now() + first_byte);
                }
                Ev::Late => {
                    return Error::e_explain(
                        ErrorType::ReadTimedout,
                        "waiting for the upstream answer",
                    );
                }
                Ev::Task(Some(HttpTask::Header(h, end))) if !h.status.is_informational() => {
                    return Ok(Answer {
                        head: h,
                        ended: end,
                        p: self,
                    });
                }
                Ev::Task(Some(HttpTask::Failed(e))) => return Err(e),
                Ev::Task(Some(_)) => {}
                Ev::Task(None) => return Err(self.error()),
            }
        }
    }

    /// Why the subrequest ended early (its error channel, P8).
    fn error(&mut self) -> Box<Error> {
        self.errors.try_recv().unwrap_or_else(|_| {
            Error::explain(
                ErrorType::ConnectionClosed,
                "the upstream attempt ended without an answer",
            )
        })
    }
}

/// An upstream answer whose head has arrived; its body comes chunk by chunk.
pub struct Answer {
    head: Box<ResponseHeader>,
    ended: bool,
    p: Pending,
}

impl Answer {
    pub fn head(&self) -> &ResponseHeader {
        &self.head
    }

    pub fn status(&self) -> u16 {
        self.head.status.as_u16()
    }

    /// The next non-empty body chunk, `None` at the end.
    pub async fn body(&mut self) -> Result<Option<Bytes>> {
        while !self.ended {
            match self.p.rx.recv().await {
                Some(HttpTask::Body(b, end)) | Some(HttpTask::UpgradedBody(b, end)) => {
                    self.ended = end;
                    if let Some(b) = b.filter(|b| !b.is_empty()) {
                        return Ok(Some(b));
                    }
                }
                Some(HttpTask::Done) => self.ended = true,
                Some(HttpTask::Failed(e)) => return Err(e),
                Some(HttpTask::Header(..) | HttpTask::Trailer(_)) => {}
                None => return Err(self.p.error()),
            }
        }
        Ok(None)
    }

    /// After the end: let the subrequest finish, so its upstream connection
    /// goes back to Pingora's pool before the client's next request (P10).
    pub async fn finish(mut self) {
        if self.ended {
            self.p.task.ended = true;
            while self.p.rx.recv().await.is_some() {}
        }
    }

    /// Give up on this answer: the subrequest and its connection end.
    pub async fn shutdown(&mut self) {
        self.p.task.handle.abort();
    }
}

/// The output of `f` if it is ready at its first poll, else `None` (and `f`
/// is dropped). For reads that keep their progress outside the future
/// (`Answer::body`): nothing is lost when one is dropped.
pub fn ready_now<F: std::future::Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stand_in_head_parses_at_once_and_carries_nothing_of_a_client() {
        let t = template().expect("the stand-in head parses at its first poll");
        let h = t.req_header();
        assert_eq!(h.method, http::Method::POST);
        assert_eq!(h.uri.path(), "/");
        assert_eq!(h.version, http::Version::HTTP_11);
        assert!(h.headers.is_empty());
        // What `create_subrequest` renders and the subrequest parses.
        assert_eq!(&t.to_h1_raw()[..], TEMPLATE_HEAD);
    }
}
